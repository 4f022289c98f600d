/* engine.c: what one device worker of `sam2amg run` runs per image.
 *
 * The SAM 2.1 engine is the model (model.h) behind amg_model_wrap, exactly
 * as `generate` runs it. Each engine owns its backend, model and amg_t, so
 * nothing is shared between device workers. The decode callback checks the
 * stop flag: Ctrl-C interrupts an image between decoder batches.
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
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "model.h"

static int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

typedef struct sam2_engine {
    backend_t  *be;
    sam2_model *m;
    amg_t      *g;
    amg_model   wrap;   /* amg_model_wrap of m (shared with `generate`) */
    amg_model   am;     /* wrap behind the stop check */
    volatile sig_atomic_t *stop;
} sam2_engine;

static int sam2_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err) {
    sam2_engine *e = ctx;
    if (*e->stop) return err_set(err, ERR_INTERRUPTED, "interrupted");
    return e->wrap.encode(e->wrap.ctx, rgb, w, h, stride, err);
}

static int sam2_decode(void *ctx, int n, const float *points, const float *mask_input,
                       int multimask, float *low_res, float *iou, err_t *err) {
    sam2_engine *e = ctx;
    if (*e->stop) return err_set(err, ERR_INTERRUPTED, "interrupted");
    return e->wrap.decode(e->wrap.ctx, n, points, mask_input, multimask, low_res, iou, err);
}

static int sam2_process(void *ctx, const image_t *img, amg_result *res, err_t *err) {
    sam2_engine *e = ctx;
    return amg_generate(e->g, &e->am, img->rgb, img->w, img->h, res, err);
}

static void sam2_destroy(void *ctx) {
    sam2_engine *e = ctx;
    if (!e) return;
    amg_free(e->g);
    if (e->wrap.ctx) amg_model_unwrap(&e->wrap);
    sam2_model_free(e->m);
    if (e->be) e->be->destroy(e->be);
    free(e);
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
    e->be = backend_create(device, cfg->threads, err);
    if (!e->be) {
        sam2_destroy(e);
        return ERR_BACKEND;
    }
    int ppb = cfg->params.points_per_batch;
    if ((rc = sam2_model_load(&e->m, &c, cfg->model_path, e->be, ppb, err)) ||
        (rc = amg_model_wrap(&e->wrap, e->m, ppb, err)) ||
        (rc = amg_create(&e->g, &cfg->params, e->wrap.S, err)) ||
        (rc = amg_set_threads(e->g, cfg->threads > 0 ? cfg->threads : cpu_count(), err))) {
        sam2_destroy(e);
        return rc;
    }
    e->am = (amg_model){.ctx = e, .S = e->wrap.S, .encode = sam2_encode, .decode = sam2_decode,
                        .backend = e->wrap.backend};
    *out = (jobs_engine){.ctx = e, .process = sam2_process, .destroy = sam2_destroy};
    return 0;
}

/* ---- the test engine ---- */
#define TEST_S 256
#define TEST_L (TEST_S / 4)

typedef struct test_engine {
    amg_t      *g;
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

static int test_process(void *ctx, const image_t *img, amg_result *res, err_t *err) {
    test_engine *e = ctx;
    return amg_generate(e->g, &e->am, img->rgb, img->w, img->h, res, err);
}

static void test_destroy(void *ctx) {
    test_engine *e = ctx;
    if (!e) return;
    amg_free(e->g);
    free(e);
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
    int rc = amg_create(&e->g, &cfg->params, TEST_S, err);
    if (rc) {
        free(e);
        return rc;
    }
    e->am = (amg_model){.ctx = e, .S = TEST_S, .encode = test_encode, .decode = test_decode};
    *out = (jobs_engine){.ctx = e, .process = test_process, .destroy = test_destroy};
    return 0;
}
