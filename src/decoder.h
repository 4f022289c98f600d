/* decoder.h: TEMPORARY copy of the decoder helper's interface (prompt
 * encoder + mask decoder, src/decoder.c), so model.c compiles before that
 * module lands; the decoder helper's file replaces this one. */
#ifndef SAM2AMG_DECODER_H
#define SAM2AMG_DECODER_H

#include <stddef.h>

#include "backend.h"
#include "check.h"
#include "model.h"
#include "weights.h"

typedef struct decoder decoder_t;

int  decoder_init(decoder_t **out, weights_t *w, const sam2_config *cfg, backend_t *be,
                  int max_prompts, err_t *err);
void decoder_free(decoder_t *d);
/* features in backend memory, NHWC: image_embed (S/16,S/16,C) already
 * including no_mem_embed, feat_s0 (S/4,S/4,C/8), feat_s1 (S/8,S/8,C/4) */
int  decoder_set_image(decoder_t *d, const float *image_embed, const float *feat_s0,
                       const float *feat_s1, err_t *err);
int  decoder_run(decoder_t *d, const sam2_prompts *p, float *low_res, float *iou, err_t *err);
size_t decoder_peak_bytes(const decoder_t *d);

#endif
