/* model.h: the SAM 2.1 image model (Hiera trunk, FPN neck, prompt encoder,
 * two-way mask decoder), written once against backend.h.
 *
 * Life cycle: config -> sam2_model_load (weights mapped, uploaded once, the
 * positional embeddings for the image size computed once, one activation
 * arena planned for max_prompts) -> per image sam2_model_encode -> any
 * number of sam2_model_decode calls on that image's features.
 */
#ifndef SAM2AMG_MODEL_H
#define SAM2AMG_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "check.h"

#define SAM2_MAX_STAGES 4
#define SAM2_MAX_GLOBAL 8

/* sam2_config: the architecture, with the names of the official yaml and of
 * the fixtures' meta.json "model" object. */
typedef struct sam2_config {
    char name[32];                          /* "tiny", "micro", a file name */
    int  embed_dim;                         /* Hiera stage-1 width (96 tiny) */
    int  num_heads;                         /* Hiera stage-1 heads */
    int  stages[SAM2_MAX_STAGES];           /* blocks per stage */
    int  global_att_blocks[SAM2_MAX_GLOBAL];/* block indices with global attention */
    int  n_global;                          /* entries used in global_att_blocks */
    int  window_spec[SAM2_MAX_STAGES];      /* window size per stage */
    int  window_pos_embed_bkg_spatial_size[2]; /* background pos-embed (h, w) */
    int  d_model;                           /* neck / decoder width (256) */
    int  image_size;                        /* S: model input is S x S (1024) */
} sam2_config;

/* sam2_config_builtin: "tiny", "small", "base_plus", "large" (official SAM
 * 2.1 hyperparameters; "sam2.1_hiera_t" style aliases accepted), and the
 * fixtures' "micro", "micro2". ERR_INVALID with a message for other names. */
int sam2_config_builtin(const char *name, sam2_config *cfg, err_t *err);

/* sam2_config_load: NAME (builtin) or a JSON FILE with a "model" object
 * holding the keys of meta.json. When amg_json is not NULL it receives a
 * malloc'd copy of the file's "amg" object text (or NULL if none); the
 * caller frees it. */
int sam2_config_load(const char *name_or_path, sam2_config *cfg, char **amg_json,
                     err_t *err);

/* sam2_config_guess: pick the builtin config whose parameter shapes match a
 * checkpoint (used when --config is not given). */
int sam2_config_guess(const char *weights_path, sam2_config *cfg, err_t *err);

/* sam2_config_load_hf: a transformers Sam2Config config.json (what
 * Sam2Model.save_pretrained writes: "vision_config"."backbone_config" with
 * hidden_size, blocks_per_stage, ...; keys equal to transformers' defaults
 * may be absent and take those defaults). cfg->name is the built-in name
 * when the values equal one, else "config.json". ERR_IO / ERR_FORMAT naming
 * the file and key (also for values sam2amg does not implement, such as
 * another mlp_ratio or patch size). */
int sam2_config_load_hf(const char *path, sam2_config *cfg, err_t *err);

typedef struct sam2_model sam2_model;

/* sam2_model_load: map the checkpoint (.pt or .safetensors), check every key
 * and shape against cfg, upload the weights to be, and plan the activation
 * arena for up to max_prompts prompts per decode call. On error returns a
 * negative ERR_ class with one line in err naming the file, key and shapes;
 * *out is then NULL. The model keeps a pointer to be (not owned). */
int sam2_model_load(sam2_model **out, const sam2_config *cfg, const char *weights_path,
                    backend_t *be, int max_prompts, err_t *err);
void sam2_model_free(sam2_model *m);

/* sam2_model_load_weights: the same from an already open checkpoint (e.g.
 * weights_open_random for benchmarks). The model does not close w; w must
 * stay open as long as the model lives. */
struct weights;
int sam2_model_load_weights(sam2_model **out, const sam2_config *cfg, struct weights *w,
                            backend_t *be, int max_prompts, err_t *err);

const sam2_config *sam2_model_config(const sam2_model *m);
/* sam2_model_backend: the backend m runs on (the caller's, not owned). */
backend_t *sam2_model_backend(const sam2_model *m);
/* Peak bytes used by the activation arena so far (for benchmarks). */
size_t sam2_model_peak_bytes(const sam2_model *m);
/* The decoder's activation arena, bytes (decoder_arena_bytes of the
 * config and max_prompts; tests/test_batch.c checks the two agree). */
size_t sam2_model_decoder_bytes(const sam2_model *m);

/* sam2_model_encode: run the image encoder on one preprocessed image,
 * input (3,S,S) host float32 (normalized, see image.h), and keep the
 * features (image_embed with no_mem_embed added, feat_s0, feat_s1) inside
 * the model for the following decode calls. */
int sam2_model_encode(sam2_model *m, const float *input, err_t *err);

/* sam2_model_features: copy the current features to host memory, NCHW, as
 * the fixtures store them: image_embed (1,C,S/16,S/16), feat_s0
 * (1,C/8,S/4,S/4), feat_s1 (1,C/4,S/8,S/8). Any pointer may be NULL. */
void sam2_model_features(sam2_model *m, float *image_embed, float *feat_s0,
                         float *feat_s1);

/* One decode call: n prompts of n_pts points each (boxes are given as two
 * points with labels 2 and 3, first, as the official predictor orders them).
 *   coords     (n, n_pts, 2) host, model input coordinates 0..S (x, y)
 *   labels     (n, n_pts) host, 1 fg, 0 bg, 2/3 box corners, -1 padding
 *   mask_input (n, S/4, S/4) host low-res logits, or NULL (no_mask_embed)
 *   multimask  1: tokens 1..3 (k=3 outputs); 0: token 0 with the official
 *              dynamic multimask-via-stability fallback (k=1)
 * Outputs (host): low_res (n, k, S/4, S/4) logits, iou (n, k) after the
 * sigmoid. n may be at most max_prompts given at load. */
typedef struct sam2_prompts {
    int          n;
    int          n_pts;
    const float *coords;
    const int32_t *labels;
    const float *mask_input;
    int          multimask;
} sam2_prompts;

int sam2_model_decode(sam2_model *m, const sam2_prompts *p, float *low_res, float *iou,
                      err_t *err);
/* sam2_model_decode_dev: sam2_model_decode with p->multimask (else
 * ERR_INVALID), the logits (n, 3, S/4, S/4) written to low_dev, memory of
 * the model's backend (sam2_model_backend), instead of the host; iou on the
 * host. The same values as sam2_model_decode. */
int sam2_model_decode_dev(sam2_model *m, const sam2_prompts *p, float *low_dev, float *iou,
                          err_t *err);

#endif
