/* decoder_stub.c: TEMPORARY placeholder for the prompt encoder + mask
 * decoder (src/decoder.c, being written by the decoder helper), so that the
 * encoder, its tests and `dump` link before that module lands. It claims
 * the decoder's checkpoint keys (so the unexpected-key check sees what the
 * real decoder will read) and refuses to decode. Deleted when decoder.c is
 * merged. */
#include <stdlib.h>
#include <string.h>

#include "decoder.h"

struct decoder {
    int unused;
};

int decoder_init(decoder_t **out, weights_t *w, const sam2_config *cfg, backend_t *be,
                 int max_prompts, err_t *err) {
    (void)cfg, (void)be, (void)max_prompts, (void)err;
    for (int i = 0; i < weights_count(w); i++) {
        wtensor_t *t = weights_at(w, i);
        if ((!strncmp(t->name, "sam_prompt_encoder.", 19) ||
             !strncmp(t->name, "sam_mask_decoder.", 17)) &&
            strncmp(t->name, "sam_mask_decoder.conv_s", 23))
            t->used = 1;
    }
    *out = calloc(1, sizeof **out);
    CHECK(*out);
    return 0;
}

void decoder_free(decoder_t *d) { free(d); }

int decoder_set_image(decoder_t *d, const float *image_embed, const float *feat_s0,
                      const float *feat_s1, err_t *err) {
    (void)d, (void)image_embed, (void)feat_s0, (void)feat_s1, (void)err;
    return 0;
}

int decoder_run(decoder_t *d, const sam2_prompts *p, float *low_res, float *iou, err_t *err) {
    (void)d, (void)p, (void)low_res, (void)iou;
    return err_set(err, ERR_INVALID, "decoder: placeholder build, the mask decoder is not merged yet");
}

size_t decoder_peak_bytes(const decoder_t *d) {
    (void)d;
    return 0;
}
