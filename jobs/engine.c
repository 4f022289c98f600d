/* engine.c: what one device worker of `sam2amg run` runs per image.
 *
 * The SAM 2.1 engine is the model (model.h) behind amg_model_wrap, exactly
 * as `generate` runs it. Each engine owns its backend, model and amg_t, so
 * nothing is shared between device workers. The decode callback checks the
 * stop flag: Ctrl-C interrupts an image between decoder batches.
 *
 * Batches: points_per_batch "auto" is sized per worker to its device's
 * free memory (include/batch.h; workers sharing a GPU size one after the
 * other, each getting an equal part of --gpu-memory-limit). An out of
 * memory during an image halves the batch and retries the image
 * (amg_batcher, shared with `generate`), so an image fails for memory only
 * at one prompt.
 *
 * The test engine ("--model test:") is a small deterministic stand-in for
 * the network, used by the runner's own tests before and besides the real
 * model: encode keeps a 64x64 grey thumbnail of the crop, decode returns
 * logits that are positive where the thumbnail is close in brightness to
 * the prompt point (three tolerances for the three multimask outputs). It
 * goes through the real generator (amg_generate), so its records, RLE and
 * filters are the product's.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "model.h"

static int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- what both engines share: amg_batcher (src/amg_model.c): the batch,
 * its halving on out of memory, the fault hook, the stage times ---- */

static int engine_batch_init(amg_batcher *b, const jobs_config *cfg, const char *device, int ppb,
                             int S, int threads, err_t *err) {
    amg_params p = cfg->params;
    p.points_per_batch = ppb;
    int rc = amg_batcher_init(b, &p, S, threads, device, err);
    b->verbose = cfg->verbose;
    snprintf(b->who, sizeof b->who, "sam2amg run: %s", device);
    return rc;
}

static void engine_batch_stages(const amg_batcher *b, jobs_stages *t) {
    *t = (jobs_stages){b->t_encode, b->t_decode, b->t_post};
}

typedef struct sam2_engine {
    backend_t  *be;
    sam2_model *m;
    amg_batcher b;
    amg_model   wrap;   /* amg_model_wrap of m (shared with `generate`) */
    amg_model   am;     /* wrap behind the stop check */
    volatile sig_atomic_t *stop;
    const float *pre;   /* the current image preprocessed (3,S,S), or NULL */
    const image_t *img; /* the current image */
} sam2_engine;

static int sam2_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err) {
    sam2_engine *e = ctx;
    if (*e->stop) return err_set(err, ERR_INTERRUPTED, "interrupted");
    /* the whole image (crop layer 0): the decode pool preprocessed it
     * already, with the same image_preprocess */
    if (e->pre && rgb == e->img->rgb && w == e->img->w && h == e->img->h &&
        stride == (size_t)e->img->w * 3)
        return sam2_model_encode(e->m, e->pre, err);
    return e->wrap.encode(e->wrap.ctx, rgb, w, h, stride, err);
}

static int sam2_decode(void *ctx, int n, const float *points, const float *mask_input,
                       int multimask, float *low_res, float *iou, err_t *err) {
    sam2_engine *e = ctx;
    if (*e->stop) return err_set(err, ERR_INTERRUPTED, "interrupted");
    return e->wrap.decode(e->wrap.ctx, n, points, mask_input, multimask, low_res, iou, err);
}

static int sam2_decode_dev(void *ctx, int n, const float *points, float *low_dev, float *iou,
                           err_t *err) {
    sam2_engine *e = ctx;
    if (*e->stop) return err_set(err, ERR_INTERRUPTED, "interrupted");
    return e->wrap.decode_dev(e->wrap.ctx, n, points, low_dev, iou, err);
}

static int sam2_process(void *ctx, const image_t *img, const float *pre, amg_result *res,
                        err_t *err) {
    sam2_engine *e = ctx;
    e->pre = pre, e->img = img;
    int rc = amg_batcher_generate(&e->b, &e->am, img->rgb, img->w, img->h, res, err);
    e->pre = NULL, e->img = NULL;
    return rc;
}

static void sam2_stages(void *ctx, jobs_stages *t) {
    engine_batch_stages(&((sam2_engine *)ctx)->b, t);
}

static void sam2_destroy(void *ctx) {
    sam2_engine *e = ctx;
    if (!e) return;
    amg_batcher_free(&e->b);
    if (e->wrap.ctx) amg_model_unwrap(&e->wrap);
    sam2_model_free(e->m);
    if (e->be) e->be->destroy(e->be);
    free(e);
}

/* workers_on: how many workers of cfg use device */
static int workers_on(const jobs_config *cfg, const char *device) {
    int n = 0;
    for (int i = 0; i < cfg->n_devices; i++) n += !strcmp(cfg->devices[i], device);
    return n;
}

static int sam2_engine_create(const jobs_config *cfg, const char *device,
                              volatile sig_atomic_t *stop, jobs_engine *out, err_t *err) {
    sam2_config c;
    int rc = cfg->config ? sam2_config_load(cfg->config, &c, NULL, err)
                         : sam2_config_guess(cfg->model_path, &c, err);
    if (rc) return rc;
    sam2_engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(err, ERR_NOMEM, "out of memory");
    e->stop = stop;
    /* workers sharing a GPU start, load and size one after the other (a
     * lock per device), each seeing what the ones before it took and
     * leaving an equal part of the rest to those still to come (a count per
     * device for this process, which runs one jobs_run). The backend is
     * made under the lock too: another worker's context and scratch
     * appearing while this one measures its model would be counted as its
     * model (seen: "model 108 MiB" for a 12 MiB one, and a smaller batch) */
    /* counted per device: cuda:N at N (0..1023, backend_parse_device's
     * range), the CPU at 1024 of its own; the CPU at 0 made its workers
     * count as cuda:0's, so with --devices cpu,cuda:0,cuda:0 the first
     * cuda:0 worker sized after the cpu one took all the free memory as
     * if it were the last */
    static pthread_mutex_t sizing_mu[JOBS_MAX_DEVICES] = {
        [0 ... JOBS_MAX_DEVICES - 1] = PTHREAD_MUTEX_INITIALIZER};
    static int sized[1025];
    int dev = 0, ppb = 0, share = workers_on(cfg, device);
    char note[256];
    CHECK(backend_parse_device(device, &dev, NULL) == 0 && dev < 1024);
    dev = dev < 0 ? 1024 : dev;
    pthread_mutex_lock(&sizing_mu[dev % JOBS_MAX_DEVICES]);
    e->be = backend_create(device, cfg->threads, err);
    if (!e->be) {
        pthread_mutex_unlock(&sizing_mu[dev % JOBS_MAX_DEVICES]);
        sam2_destroy(e);
        return ERR_BACKEND;
    }
    if (cfg->precision == BACKEND_BF16 && e->be->precision != BACKEND_BF16) {
        pthread_mutex_unlock(&sizing_mu[dev % JOBS_MAX_DEVICES]);
        rc = err_set(err, ERR_INVALID, "%s computes in fp32 only, not bf16", e->be->name);
        sam2_destroy(e);
        return rc;
    }
    e->be->precision = cfg->precision;   /* before the model is built */
    int pending = share - sized[dev] % share;
    rc = batch_open_model(e->be, &c, cfg->model_path, cfg->params.points_per_batch,
                          batch_cap(&cfg->params), &cfg->gpu_limit, share, pending, &e->m, &ppb,
                          note, sizeof note, err);
    sized[dev]++;
    pthread_mutex_unlock(&sizing_mu[dev % JOBS_MAX_DEVICES]);
    if (!rc && note[0] && !cfg->quiet) fprintf(stderr, "sam2amg run: %s\n", note);
    int threads = cfg->threads > 0 ? cfg->threads : cpu_count();   /* kept for remakes */
    if (rc || (rc = amg_model_wrap(&e->wrap, e->m, ppb, err)) ||
        (rc = engine_batch_init(&e->b, cfg, device, ppb, e->wrap.S, threads, err))) {
        sam2_destroy(e);
        return rc;
    }
    e->am = (amg_model){.ctx = e, .S = e->wrap.S, .encode = sam2_encode, .decode = sam2_decode,
                        .backend = e->wrap.backend,
                        .decode_dev = e->wrap.decode_dev ? sam2_decode_dev : NULL};
    *out = (jobs_engine){.ctx = e, .process = sam2_process, .destroy = sam2_destroy,
                         .stages = sam2_stages, .input_size = e->wrap.S};
    return 0;
}

/* ---- the test engine ---- */
#define TEST_S 256
#define TEST_L (TEST_S / 4)

typedef struct test_engine {
    amg_batcher b;
    amg_model   am;
    float       grey[TEST_L * TEST_L];   /* (L, L) crop thumbnail, 0..1 */
    volatile sig_atomic_t *stop;
} test_engine;

static int test_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err) {
    test_engine *e = ctx;
    if (*e->stop) return err_set(err, ERR_INTERRUPTED, "interrupted");
    for (int y = 0; y < TEST_L; y++)
        for (int x = 0; x < TEST_L; x++) {
            const uint8_t *p = rgb + (size_t)(y * h / TEST_L) * stride + (size_t)(x * w / TEST_L) * 3;
            e->grey[y * TEST_L + x] = (p[0] + p[1] + p[2]) / (3.0f * 255.0f);
        }
    return 0;
}

static int test_decode(void *ctx, int n, const float *points, const float *mask_input,
                       int multimask, float *low_res, float *iou, err_t *err) {
    test_engine *e = ctx;
    (void)mask_input;
    if (*e->stop) return err_set(err, ERR_INTERRUPTED, "interrupted");
    int k = multimask ? 3 : 1;
    for (int i = 0; i < n; i++) {
        int px = (int)(points[2 * i] * TEST_L / TEST_S), py = (int)(points[2 * i + 1] * TEST_L / TEST_S);
        px = px < 0 ? 0 : px >= TEST_L ? TEST_L - 1 : px;
        py = py < 0 ? 0 : py >= TEST_L ? TEST_L - 1 : py;
        float g0 = e->grey[py * TEST_L + px];
        for (int j = 0; j < k; j++) {
            float tol = 0.06f * (float)(j + 1);
            float *out = low_res + ((size_t)i * k + j) * TEST_L * TEST_L;
            for (int q = 0; q < TEST_L * TEST_L; q++) out[q] = 40.0f * (tol - fabsf(e->grey[q] - g0));
            iou[i * k + j] = 0.9f + 0.03f * (float)j - 0.05f * g0;
        }
    }
    return 0;
}

static int test_process(void *ctx, const image_t *img, const float *pre, amg_result *res,
                        err_t *err) {
    test_engine *e = ctx;
    (void)pre;   /* input_size 0: never given */
    return amg_batcher_generate(&e->b, &e->am, img->rgb, img->w, img->h, res, err);
}

static void test_stages(void *ctx, jobs_stages *t) {
    engine_batch_stages(&((test_engine *)ctx)->b, t);
}

static void test_destroy(void *ctx) {
    test_engine *e = ctx;
    if (!e) return;
    amg_batcher_free(&e->b);
    free(e);
}

int jobs_parse_devices(const char *list, jobs_config *cfg, err_t *err) {
    cfg->n_devices = 0;
    if (!*list) return err_set(err, ERR_INVALID, "--devices is empty");
    int item = 0;
    for (const char *p = list;; item++) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        char name[32];
        if (n == 0)
            return err_set(err, ERR_INVALID, "--devices '%s': item %d is empty", list, item + 1);
        if (n >= sizeof name)
            return err_set(err, ERR_INVALID, "--devices '%s': item %d is not cpu or cuda:N", list,
                           item + 1);
        memcpy(name, p, n);
        name[n] = 0;
        int dev;
        err_t e;
        if (!strcmp(name, "all"))
            return err_set(err, ERR_INVALID, "--devices '%s': all stands alone, not in a list", list);
        if (backend_parse_device(name, &dev, &e))
            return err_set(err, ERR_INVALID, "--devices: %s", e.msg);
        if (cfg->n_devices == JOBS_MAX_DEVICES)
            return err_set(err, ERR_INVALID, "--devices '%s': more than %d workers", list,
                           JOBS_MAX_DEVICES);
        char *out = cfg->devices[cfg->n_devices++];
        if (dev < 0) snprintf(out, sizeof cfg->devices[0], "cpu");
        else snprintf(out, sizeof cfg->devices[0], "cuda:%d", dev);
        if (!c) break;
        p = c + 1;
    }
    return 0;
}

int jobs_workers_per_gpu(jobs_config *cfg, int per_gpu, err_t *err) {
    if (per_gpu <= 1) return 0;
    int n = 0;
    for (int i = 0; i < cfg->n_devices; i++) n += strcmp(cfg->devices[i], "cpu") ? per_gpu : 1;
    if (n > JOBS_MAX_DEVICES)
        return err_set(err, ERR_INVALID, "--workers-per-gpu %d: %d workers, more than %d", per_gpu,
                       n, JOBS_MAX_DEVICES);
    char out[JOBS_MAX_DEVICES][sizeof cfg->devices[0]];
    int o = 0;
    for (int i = 0; i < cfg->n_devices; i++)
        for (int k = 0; k < (strcmp(cfg->devices[i], "cpu") ? per_gpu : 1); k++)
            memcpy(out[o++], cfg->devices[i], sizeof out[0]);
    memcpy(cfg->devices, out, sizeof out[0] * (size_t)o);
    cfg->n_devices = o;
    return 0;
}

int jobs_engine_create(const jobs_config *cfg, const char *device, volatile sig_atomic_t *stop,
                       jobs_engine *out, err_t *err) {
    if (strncmp(cfg->model_path, "test:", 5) != 0)
        return sam2_engine_create(cfg, device, stop, out, err);
    if (strcmp(device, "cpu") != 0)
        return err_set(err, ERR_INVALID, "the test model runs on cpu only, not %s", device);
    test_engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(err, ERR_NOMEM, "out of memory");
    e->stop = stop;
    int ppb = cfg->params.points_per_batch;
    int rc = engine_batch_init(&e->b, cfg, device, ppb > 0 ? ppb : BATCH_CPU_AUTO, TEST_S, 0, err);
    if (rc) {
        amg_batcher_free(&e->b);
        free(e);
        return rc;
    }
    e->am = (amg_model){.ctx = e, .S = TEST_S, .encode = test_encode, .decode = test_decode};
    *out = (jobs_engine){.ctx = e, .process = test_process, .destroy = test_destroy,
                         .stages = test_stages};
    return 0;
}
