/* decoder.h: the SAM 2.1 prompt encoder and two-way-transformer mask
 * decoder, written against backend.h (private to the model module).
 *
 * Life cycle: decoder_init (weights uploaded once, dense positional
 * encoding computed once, activation arena planned for max_prompts) ->
 * per image decoder_set_image (features copied in, the image-side
 * projections that every prompt without a mask input shares computed once)
 * -> any number of decoder_run calls. The encoder module (src/model.c)
 * applies conv_s0/conv_s1 and no_mem_embed before handing features over.
 */
#ifndef SAM2AMG_DECODER_H
#define SAM2AMG_DECODER_H

#include <stddef.h>

#include "backend.h"
#include "check.h"
#include "model.h"
#include "weights.h"

/* Most points (labels 0..3 and -1, box corners included) one prompt may
 * carry; the arena is planned for this many. */
#define DECODER_MAX_POINTS 64

typedef struct decoder decoder_t;

/* decoder_init: read every sam_prompt_encoder.* and sam_mask_decoder.*
 * tensor except sam_mask_decoder.conv_s0/conv_s1 from w with the shapes cfg
 * implies (so weights_check_unused sees them used), copy them to backend
 * memory, compute the dense positional encoding and plan the activation
 * arena for up to max_prompts prompts per decoder_run. w may be closed
 * afterwards; be must outlive the decoder. Returns 0, or a negative ERR_
 * class with one line in err (missing key or wrong shape: the weights
 * module's message; ERR_NOMEM); *out is NULL then. */
int decoder_init(decoder_t **out, weights_t *w, const sam2_config *cfg, backend_t *be,
                 int max_prompts, err_t *err);
void decoder_free(decoder_t *d);

/* decoder_set_image: the features of one image, in backend memory, NHWC:
 * image_embed (S/16,S/16,C) with no_mem_embed already added, feat_s0
 * (S/4,S/4,C/8), feat_s1 (S/8,S/8,C/4). They are copied, so the caller may
 * reuse its buffers afterwards. Returns 0 (the err argument is for
 * symmetry; nothing here fails on data). */
int decoder_set_image(decoder_t *d, const float *image_embed, const float *feat_s0,
                      const float *feat_s1, err_t *err);

/* decoder_run: decode p->n prompts (see sam2_prompts in model.h) on the
 * current image. low_res (n,k,S/4,S/4) and iou (n,k) are host memory, k = 3
 * with p->multimask, else 1 (token 0 with the dynamic stability fallback).
 * Logits are not clamped. n_pts may be 0 only with a mask input (then no
 * sparse tokens, as the official prompt encoder without points). ERR_INVALID
 * when n exceeds max_prompts, n_pts exceeds DECODER_MAX_POINTS, a label is
 * not in {-1,0,1,2,3} or no image was set. With low_dev (backend memory,
 * multimask only, else ERR_INVALID) the logits are written there and
 * low_res is not used. */
int decoder_run(decoder_t *d, const sam2_prompts *p, float *low_res, float *low_dev, float *iou,
                err_t *err);

/* decoder_peak_bytes: backend bytes the decoder holds for activations and
 * per-image state (arena high-water mark), weights excluded. */
size_t decoder_peak_bytes(const decoder_t *d);

/* decoder_chunk_rows: the image rows (prompts x HW) the decoder on be
 * processes per chunk: 65536 on the CPU (past that its GEMMs gain nothing
 * and the memory grows), 524288 on a device (128 prompts of a 1024 px
 * model: a GPU runs every per-chunk step as launches, so fewer, larger
 * chunks; ~4 GiB of arena for large). SAM2AMG_DECODER_ROWS=N overrides
 * both (tuning; N >= 1). */
int64_t decoder_chunk_rows(const backend_t *be);

/* decoder_arena_bytes: the backend bytes decoder_init's activation arena
 * takes for cfg's d_model and image_size and max_prompts prompts per call
 * with chunks of chunk_rows image rows (decoder_chunk_rows of the backend),
 * from the dims alone (no weights): what a caller sizing points_per_batch
 * to a device's free memory needs. It stops growing at one chunk. */
size_t decoder_arena_bytes(const sam2_config *cfg, int max_prompts, int64_t chunk_rows);

#endif
