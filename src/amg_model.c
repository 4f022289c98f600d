/* amg_model.c: the SAM 2.1 model as the generator's amg_model: encode =
 * image_preprocess of the crop + sam2_model_encode, decode =
 * sam2_model_decode with one label-1 point per prompt (the official AMG
 * feeds no padding point: the prompt encoder adds it, see model.h).
 *
 * Also amg_batcher, the one place where an out of memory during an image
 * halves the batch and retries it, and where the generator's stages are
 * timed: `generate` and every `run` worker (jobs/engine.c) go through it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amg.h"
#include "backend.h"
#include "image.h"
#include "model.h"

typedef struct amg_sam2 {
    sam2_model *m;
    int         S, max_prompts;
    float      *input;   /* (3, S, S) preprocessed crop */
    int32_t    *labels;  /* (max_prompts) all 1 */
} amg_sam2;

static int sam2_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err) {
    amg_sam2 *c = ctx;
    int rc = image_preprocess(rgb, w, h, stride, c->S, c->input, err);
    return rc ? rc : sam2_model_encode(c->m, c->input, err);
}

static int sam2_decode(void *ctx, int n, const float *points, const float *mask_input,
                       int multimask, float *low_res, float *iou, err_t *err) {
    amg_sam2 *c = ctx;
    if (n > c->max_prompts)
        return err_set(err, ERR_INVALID, "amg: %d prompts in one call, model planned for %d", n,
                       c->max_prompts);
    sam2_prompts p = {n, 1, points, c->labels, mask_input, multimask};
    return sam2_model_decode(c->m, &p, low_res, iou, err);
}

static int sam2_decode_dev(void *ctx, int n, const float *points, float *low_dev, float *iou,
                           err_t *err) {
    amg_sam2 *c = ctx;
    if (n > c->max_prompts)
        return err_set(err, ERR_INVALID, "amg: %d prompts in one call, model planned for %d", n,
                       c->max_prompts);
    sam2_prompts p = {n, 1, points, c->labels, NULL, 1};
    return sam2_model_decode_dev(c->m, &p, low_dev, iou, err);
}

int amg_model_wrap(amg_model *out, struct sam2_model *m, int max_prompts, err_t *err) {
    amg_sam2 *c = calloc(1, sizeof *c);
    int S = sam2_model_config(m)->image_size;
    if (c) {
        c->input = malloc((size_t)3 * S * S * sizeof(float));
        c->labels = malloc((size_t)(max_prompts > 0 ? max_prompts : 1) * sizeof(int32_t));
    }
    if (!c || !c->input || !c->labels) {
        if (c) free(c->input), free(c->labels);
        free(c);
        return err_set(err, ERR_NOMEM, "amg: out of memory for the model input");
    }
    for (int i = 0; i < max_prompts; i++) c->labels[i] = 1;
    c->m = m;
    c->S = S;
    c->max_prompts = max_prompts;
    *out = (amg_model){.ctx = c, .S = S, .encode = sam2_encode, .decode = sam2_decode,
                       .backend = sam2_model_backend(m), .decode_dev = sam2_decode_dev};
    return 0;
}

void amg_model_unwrap(amg_model *mdl) {
    amg_sam2 *c = mdl ? mdl->ctx : NULL;
    if (!c) return;
    free(c->input), free(c->labels), free(c);
    mdl->ctx = NULL;
}

/* ---- amg_batcher ---- */

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int amg_batcher_init(amg_batcher *b, const amg_params *p, int S, int threads, const char *device,
                     err_t *err) {
    memset(b, 0, sizeof *b);
    b->p = *p;
    b->threads = threads;
    snprintf(b->device, sizeof b->device, "%s", device ? device : "cpu");
    snprintf(b->who, sizeof b->who, "sam2amg");
    const char *f = getenv("SAM2AMG_FAULT_BATCH_MAX");
    b->fault_max = f && *f ? atoi(f) : 0;
    int rc = amg_create(&b->g, &b->p, S, err);
    if (!rc && threads > 0) rc = amg_set_threads(b->g, threads, err);
    return rc;
}

void amg_batcher_free(amg_batcher *b) {
    if (!b) return;
    amg_free(b->g);
    b->g = NULL;
}

/* the model behind the batcher's timing and fault hook */
static int batcher_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err) {
    amg_batcher *b = ctx;
    const amg_model *m = b->inner;
    double t0 = mono_s();
    int rc = m->encode(m->ctx, rgb, w, h, stride, err);
    /* sam2_model_encode ends with a sync (decoder_set_image) today; this
     * one keeps the encoder's device work inside t_encode if that changes,
     * and costs nothing on an idle stream */
    if (!rc && m->backend && m->backend->sync) m->backend->sync(m->backend);
    b->t_encode += mono_s() - t0;
    return rc;
}

static int batcher_decode(void *ctx, int n, const float *points, const float *mask_input,
                          int multimask, float *low_res, float *iou, err_t *err) {
    amg_batcher *b = ctx;
    if (b->fault_max > 0 && n > b->fault_max)
        return err_set(err, ERR_NOMEM, "%s: out of memory for a decoder batch of %d prompts "
                       "(SAM2AMG_FAULT_BATCH_MAX=%d)", b->device, n, b->fault_max);
    const amg_model *m = b->inner;
    return m->decode(m->ctx, n, points, mask_input, multimask, low_res, iou, err);
}

static int batcher_decode_dev(void *ctx, int n, const float *points, float *low_dev, float *iou,
                              err_t *err) {
    amg_batcher *b = ctx;
    if (b->fault_max > 0 && n > b->fault_max)
        return err_set(err, ERR_NOMEM, "%s: out of memory for a decoder batch of %d prompts "
                       "(SAM2AMG_FAULT_BATCH_MAX=%d)", b->device, n, b->fault_max);
    const amg_model *m = b->inner;
    return m->decode_dev(m->ctx, n, points, low_dev, iou, err);
}

int amg_batcher_generate(amg_batcher *b, const amg_model *m, const uint8_t *rgb, int w, int h,
                         amg_result *res, err_t *err) {
    amg_model outer = {.ctx = b, .S = m->S, .encode = batcher_encode, .decode = batcher_decode,
                       .backend = m->backend,
                       .decode_dev = m->decode_dev ? batcher_decode_dev : NULL};
    b->inner = m;
    b->t_encode = b->t_decode = b->t_post = 0;
    b->halvings = 0;
    int rc;
    for (;;) {
        double t0 = mono_s(), e0 = b->t_encode;
        rc = amg_generate(b->g, &outer, rgb, w, h, res, err);
        double all = mono_s() - t0;
        amg_stats st;
        amg_get_stats(b->g, &st);   /* this try's decoder time */
        b->t_decode += st.t_decode;
        double post = all - (b->t_encode - e0) - st.t_decode;
        b->t_post += post > 0 ? post : 0;
        if (rc != ERR_NOMEM || b->p.points_per_batch == 1) break;
        int half = b->p.points_per_batch / 2;
        if (b->verbose)
            fprintf(stderr, "%s: %s; points_per_batch %d -> %d, retrying the image\n", b->who,
                    err->msg, b->p.points_per_batch, half);
        /* the new generator before the old one goes: if it cannot be made,
         * the batcher keeps a usable one (never NULL) for the next image */
        amg_params hp = b->p;
        hp.points_per_batch = half;
        amg_t *ng = NULL;
        if ((rc = amg_create(&ng, &hp, m->S, err)) ||
            (b->threads > 0 && (rc = amg_set_threads(ng, b->threads, err)))) {
            amg_free(ng);
            break;
        }
        amg_free(b->g);
        b->g = ng;
        b->p = hp;
        b->halvings++;
    }
    b->inner = NULL;
    return rc;
}
