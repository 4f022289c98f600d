/* engine.c: what one device worker of `sam2amg run` runs per image.
 *
 * The SAM 2.1 engine wraps the model (model.h) into the generator's
 * amg_model callbacks, as `generate` does: encode = image_preprocess +
 * sam2_model_encode of the crop; decode = single positive points through
 * sam2_model_decode. Each engine owns its backend, model and amg_t, so
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
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "model.h"

/* The model module may not be linked into every build stage of the
 * project; weak references let this file link without it and say so. */
#pragma weak sam2_model_load
#pragma weak sam2_model_free
#pragma weak sam2_model_encode
#pragma weak sam2_model_decode
#pragma weak sam2_config_load
#pragma weak sam2_config_guess

typedef struct sam2_engine {
    backend_t     *be;
    sam2_model    *m;
    amg_t         *g;
    amg_model      am;
    int            S;
    float         *input;      /* (3, S, S) preprocessed crop */
    int32_t       *labels;     /* (max_prompts) all 1 */
    int            max_prompts;
    volatile sig_atomic_t *stop;
} sam2_engine;

static int sam2_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err) {
    sam2_engine *e = ctx;
    if (*e->stop) return err_set(err, ERR_INTERRUPTED, "interrupted");
    image_preprocess(rgb, w, h, stride, e->S, e->input);
    return sam2_model_encode(e->m, e->input, err);
}

static int sam2_decode(void *ctx, int n, const float *points, const float *mask_input,
                       int multimask, float *low_res, float *iou, err_t *err) {
    sam2_engine *e = ctx;
    if (*e->stop) return err_set(err, ERR_INTERRUPTED, "interrupted");
    CHECK(n <= e->max_prompts);
    sam2_prompts p = {.n = n, .n_pts = 1, .coords = points, .labels = e->labels,
                      .mask_input = mask_input, .multimask = multimask};
    return sam2_model_decode(e->m, &p, low_res, iou, err);
}

static int sam2_process(void *ctx, const image_t *img, amg_result *res, err_t *err) {
    sam2_engine *e = ctx;
    return amg_generate(e->g, &e->am, img->rgb, img->w, img->h, res, err);
}

static void sam2_destroy(void *ctx) {
    sam2_engine *e = ctx;
    if (!e) return;
    amg_free(e->g);
    if (e->m) sam2_model_free(e->m);
    if (e->be) e->be->destroy(e->be);
    free(e->input);
    free(e->labels);
    free(e);
}

static int sam2_engine_create(const jobs_config *cfg, const char *device,
                              volatile sig_atomic_t *stop, jobs_engine *out, err_t *err) {
    if (!sam2_model_load || !sam2_model_decode || !sam2_config_guess)
        return err_set(err, ERR_INVALID, "%s: the SAM 2.1 model is not part of this build yet",
                       cfg->model_path);
    sam2_config c;
    int rc = cfg->config ? sam2_config_load(cfg->config, &c, NULL, err)
                         : sam2_config_guess(cfg->model_path, &c, err);
    if (rc) return rc;
    sam2_engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(err, ERR_NOMEM, "out of memory");
    e->stop = stop;
    e->S = c.image_size;
    e->max_prompts = cfg->params.points_per_batch;
    e->input = malloc((size_t)3 * e->S * e->S * sizeof(float));
    e->labels = malloc((size_t)e->max_prompts * sizeof(int32_t));
    if (!e->input || !e->labels) {
        sam2_destroy(e);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < e->max_prompts; i++) e->labels[i] = 1;
    e->be = backend_create(device, cfg->threads, err);
    if (!e->be) {
        sam2_destroy(e);
        return ERR_BACKEND;
    }
    if ((rc = sam2_model_load(&e->m, &c, cfg->model_path, e->be, e->max_prompts, err)) ||
        (rc = amg_create(&e->g, &cfg->params, e->S, err))) {
        sam2_destroy(e);
        return rc;
    }
    e->am = (amg_model){.ctx = e, .S = e->S, .encode = sam2_encode, .decode = sam2_decode};
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
