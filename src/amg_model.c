/* amg_model.c: the SAM 2.1 model as the generator's amg_model: encode =
 * image_preprocess of the crop + sam2_model_encode, decode =
 * sam2_model_decode with one label-1 point per prompt (the official AMG
 * feeds no padding point: the prompt encoder adds it, see model.h). */
#include <stdlib.h>

#include "amg.h"
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
    *out = (amg_model){c, S, sam2_encode, sam2_decode, sam2_model_backend(m)};
    return 0;
}

void amg_model_unwrap(amg_model *mdl) {
    amg_sam2 *c = mdl ? mdl->ctx : NULL;
    if (!c) return;
    free(c->input), free(c->labels), free(c);
    mdl->ctx = NULL;
}
