/* amg.h: the automatic mask generator, everything the official
 * SAM2AutomaticMaskGenerator does after (and around) the network: point
 * grids, crop boxes, batching, m2m refinement, low-res hole/island cleanup,
 * upsampling, IoU and stability filters, boxes, crop-edge filter, NMS within
 * and across crops, COCO RLE.
 *
 * The module does not know the model: it calls an amg_model_t (encode one
 * crop, decode one batch of points), which is the real SAM 2.1 model or the
 * replay of recorded decoder outputs used by the tests. Memory per image is
 * bounded by one batch: full-resolution masks are never all held at once.
 */
#ifndef SAM2AMG_AMG_H
#define SAM2AMG_AMG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"

/* amg_params: the official parameter names and meanings. */
#define AMG_POINTS_PER_BATCH_AUTO 0   /* --points-per-batch auto */

typedef struct amg_params {
    int    points_per_side;              /* 32; 0 only with point_grids */
    int    points_per_batch;             /* 64; AMG_POINTS_PER_BATCH_AUTO: sized by
                                            the caller (include/batch.h) before
                                            amg_create, which refuses it */
    double pred_iou_thresh;              /* 0.8 */
    double stability_score_thresh;       /* 0.95 */
    double stability_score_offset;       /* 1.0 */
    double mask_threshold;               /* 0.0 */
    double box_nms_thresh;               /* 0.7 */
    int    crop_n_layers;                /* 0 */
    double crop_nms_thresh;              /* 0.7 */
    double crop_overlap_ratio;           /* 512/1500 */
    int    crop_n_points_downscale_factor; /* 1 */
    int    min_mask_region_area;         /* 0 (low-res pixels, see SAM2-NOTES) */
    int    use_m2m;                      /* 0 */
    int    multimask_output;             /* 1 */
    /* user-supplied grids: one per crop layer, points in [0,1]^2 (x, y);
     * NULL = grids built from points_per_side. */
    int          n_point_grids;
    const int   *point_grid_sizes;       /* (n_point_grids) points per grid */
    const float *point_grids;            /* concatenated (sum sizes, 2) */
} amg_params;

/* amg_params_default: the official defaults. */
void amg_params_default(amg_params *p);
/* amg_params_validate: ERR_INVALID with one line naming the parameter and
 * why (points_per_side 0 without grids, thresholds outside their range,
 * crop settings that make no crops, ...). */
int  amg_params_validate(const amg_params *p, err_t *err);
/* amg_params_from_json: override fields from a JSON object text (the "amg"
 * object of a config file; keys are the official names). */
int  amg_params_from_json(amg_params *p, const char *json, err_t *err);
/* amg_params_from_config: the same from the "amg" object of a config file
 * (absent: nothing changes). ERR_IO / ERR_INVALID naming the file. */
int  amg_params_from_config(amg_params *p, const char *path, err_t *err);
/* amg_params_layer_points: the grid points of crop layer `layer` (every
 * crop of it has them): the layer's user grid's size (*side 0), else
 * side^2 with *side = points_per_side / downscale_factor^layer. */
int  amg_params_layer_points(const amg_params *p, int layer, int *side);
/* amg_params_grids_from_file: user point grids from a JSON file
 * [[[x, y], ...], ...] (one grid per crop layer, points in [0,1]^2); sets
 * the grid fields of p (points_per_side = 0) to arrays returned in *pts and
 * *sizes, which the caller frees after amg_create. */
int  amg_params_grids_from_file(amg_params *p, const char *path, float **pts, int **sizes,
                                err_t *err);
/* amg_params_parse_flag: if argv[*i] is one of the --dashed-names of the
 * parameters (--points-per-side N, --use-m2m, --no-multimask-output, ...),
 * consume it (and its value), advance *i and return 1; return 0 if it is
 * not an AMG flag; -1 on a bad value (usage message printed, naming cmd). */
int  amg_params_parse_flag(amg_params *p, const char *cmd, int argc, char **argv, int *i);
/* amg_params_help: the AMG flag lines for a command's --help. */
void amg_params_help(FILE *f);

/* The model as the generator sees it. S is the model input size; low-res
 * masks are (S/4, S/4). */
typedef struct amg_model {
    void *ctx;
    int   S;
    /* encode one crop of the image: rgb (h, w, 3) with row stride bytes. */
    int (*encode)(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err);
    /* decode n single-point prompts (label 1), points (n, 2) in model input
     * coordinates (0..S) of the current crop. mask_input (n, S/4, S/4) or
     * NULL. multimask: k = 3 outputs per prompt, else k = 1.
     * Outputs: low_res (n, k, S/4, S/4) logits, iou (n, k). */
    int (*decode)(void *ctx, int n, const float *points, const float *mask_input,
                  int multimask, float *low_res, float *iou, err_t *err);
    /* the backend the model runs on, or NULL; when it offers the
     * post-processing (backend.h's amg table), amg_generate uses it */
    struct backend *backend;
    /* decode_dev (optional, NULL where missing): decode with multimask on
     * (k = 3), the logits (n, 3, S/4, S/4) written to low_dev, memory of
     * backend (given by the caller), iou (n, 3) on the host. The same
     * values as decode. With it, the generator post-processing on backend
     * never brings the logits to the host. */
    int (*decode_dev)(void *ctx, int n, const float *points, float *low_dev, float *iou,
                      err_t *err);
} amg_model;

/* amg_model_wrap: the SAM 2.1 model (model.h) as an amg_model: encode =
 * image_preprocess of the crop + sam2_model_encode, decode =
 * sam2_model_decode of one label-1 point per prompt. The model must be
 * loaded for at least max_prompts prompts (points_per_batch). Owns an input
 * buffer (3,S,S) until amg_model_unwrap; the model stays the caller's. */
struct sam2_model;
int  amg_model_wrap(amg_model *out, struct sam2_model *m, int max_prompts, err_t *err);
void amg_model_unwrap(amg_model *m);

/* One output mask, as SA-1B records it. */
typedef struct amg_record {
    char    *rle;              /* COCO compressed RLE counts string (column-major) */
    int64_t  area;             /* pixels */
    double   bbox[4];          /* x, y, w, h (official: w = x1 - x0) */
    double   predicted_iou;
    double   stability_score;
    double   point[2];         /* x, y in image pixels */
    double   crop_box[4];      /* x, y, w, h */
} amg_record;

typedef struct amg_result {
    int         width, height; /* image size */
    int         n;             /* records */
    amg_record *recs;          /* (n), strings owned by the result */
    char       *strings;       /* one block holding every recs[i].rle (owned) */
} amg_result;

/* amg_t: per-worker generator state (one arena for everything after the
 * decoder), reused across images. */
typedef struct amg amg_t;
int  amg_create(amg_t **out, const amg_params *p, int S, err_t *err);
void amg_free(amg_t *g);
/* amg_set_threads: post-process each batch's masks on n threads (the
 * caller's included; 1 = none started). Output is identical for any n.
 * ERR_NOMEM leaves g with one thread. */
int  amg_set_threads(amg_t *g, int n, err_t *err);

/* amg_use_backend: post-process on be with ops (backend.h
 * backend_amg_ops) instead of on the CPU threads; records are identical.
 * ops NULL: be->amg; be NULL or no table: back to the CPU path. Called by
 * amg_generate itself when the model's backend has a table and none was
 * chosen (on failure it stays on the CPU path); tests pass
 * amg_post_ops_ref (the table in plain C, on the CPU backend) to run the
 * device algorithm anywhere. When the model's backend is be and it has
 * decode_dev, batches that need no host logits (multimask, no m2m, no
 * min-area filling) keep them in be's memory. 0 or ERR_NOMEM (err set; g
 * stays on the CPU path). SAM2AMG_GPU_POST in the environment, for
 * amg_generate's own choice (comparisons, timings, tests): 0 = the CPU
 * path; staged = the device's, logits always through the host; ref =
 * amg_post_ops_ref on a backend whose memory is the host's. */
struct backend;
struct backend_amg_ops;
int  amg_use_backend(amg_t *g, struct backend *be, const struct backend_amg_ops *ops,
                     err_t *err);
extern const struct backend_amg_ops amg_post_ops_ref;

/* AMG_MAX_PIXELS: the largest w*h amg_generate takes: COCO RLE counts (and
 * pycocotools') are 32-bit unsigned, so one run of a bigger image could not
 * be stored. */
#define AMG_MAX_PIXELS ((int64_t)UINT32_MAX)

/* amg_generate: run the generator on one RGB image (h, w, 3). Fills res
 * (previous contents freed). Data errors for this image, err set:
 * ERR_INVALID an empty image or one too small for crop_n_layers (a crop box
 * of zero width or height, on which the official generator fails too),
 * ERR_TOO_BIG over AMG_MAX_PIXELS, ERR_NOMEM; the model's errors are
 * passed up. g stays usable for the next image after any of them. */
int  amg_generate(amg_t *g, const amg_model *model, const uint8_t *rgb, int w, int h,
                  amg_result *res, err_t *err);
/* amg_gpu_post_env: SAM2AMG_GPU_POST (0, staged, ref; empty or unset: the
 * default) into *mode (the value, or NULL for the default); ERR_INVALID
 * with a one-line message naming it otherwise. generate and run call it
 * before any image, as a usage error; amg_generate checks it again. */
int  amg_gpu_post_env(const char **mode, err_t *err);
void amg_result_free(amg_result *res);

/* amg_write_json: {"image": {"file_name", "width", "height"},
 * "annotations": [records]} with the official field names. */
int  amg_write_json(FILE *f, const char *file_name, const amg_result *res);

/* amg_draw_overlay: blend every record's mask into rgb (h, w, 3) in place,
 * half image, half a color fixed by the record's index, later records on
 * top (the PNG of `generate --format png` and `export --format png`).
 * 0, ERR_NOMEM, or ERR_FORMAT when a record's RLE is bad or does not cover
 * h x w (message names the record). */
int  amg_draw_overlay(uint8_t *rgb, int w, int h, const amg_result *res, err_t *err);

/* ---- replay decoder (tests): recorded decoder calls of a synthetic
 * oracle run (fixtures' expected.safetensors, keys syn_*). Decode call i
 * checks its points against syn_points[syn_call == i] (1e-3) and returns
 * syn_low_res_q / 4 and syn_iou (channel 0 when single-mask); encode checks
 * the crop size against syn_crop_hw. */
typedef struct amg_replay amg_replay_t;
/* amg_replay_open: read path (ERR_IO / ERR_FORMAT naming the file and key). */
int  amg_replay_open(amg_replay_t **out, const char *path, err_t *err);
void amg_replay_free(amg_replay_t *r);
/* amg_replay_model: a model whose ctx is r; S is the recorded model size.
 * Calls restart from the first one. */
void amg_replay_model(amg_replay_t *r, amg_model *m);
/* amg_replay_finish: ERR_FORMAT if recorded calls were left unused. */
int  amg_replay_finish(amg_replay_t *r, err_t *err);

/* amg_upsample: the full-resolution logits out (h, w) of one low-res map A
 * (L, L), L = S/4, exactly as the generator evaluates them (and as
 * PyTorch's bilinear resize does: single = 1 the (B,1,L,L) kernel of m2m and
 * single-mask output, 0 the (B,3,L,L) one). For tests: the generator itself
 * never stores them. Uses g's crop maps (call between images). 0 or
 * ERR_NOMEM. */
int  amg_upsample(amg_t *g, const float *A, int single, int h, int w, float *out);

/* amg_stats: what the last amg_generate did (benchmarks, logs). */
typedef struct amg_stats {
    int64_t decode_calls, masks, after_iou, after_stability, after_edge, records;
    int64_t dev_calls;               /* decode calls whose logits stayed on the device */
    double  t_decode, t_post;        /* seconds inside decode / after it */
    size_t  peak_bytes;              /* workspace bytes held by the amg_t */
    char    post_on[40];             /* where the post-processing ran: "cpu" (its
                                      * threads), the backend's name, or that with
                                      * " (ref)" for amg_post_ops_ref */
} amg_stats;
void amg_get_stats(const amg_t *g, amg_stats *st);

/* amg_batcher: a generator and the points_per_batch it was made for, as
 * `generate` and each `run` worker use it. An out of memory (ERR_NOMEM)
 * during an image halves the batch, remakes the generator (same threads)
 * and retries the image, down to one prompt: an image fails for memory
 * only when one prompt does not fit. The batch stays halved for the next
 * images (what filled the memory likely stays). It also times the stages
 * of each image, summed over its tries (seconds):
 *   t_encode  the model's encode calls, ended by a backend sync so that a
 *             CUDA encoder's device work is inside (one sync per crop; the
 *             decoder would wait for it anyway);
 *   t_decode  the decode calls (they end with host IoUs: device included);
 *   t_post    the rest of amg_generate: filters, NMS, RLE, the records.
 * Test-only: SAM2AMG_FAULT_BATCH_MAX=N fails every decoder batch of more
 * than N prompts with ERR_NOMEM, as a full device would. */
typedef struct amg_batcher {
    amg_t      *g;            /* never NULL after a successful init */
    amg_params  p;            /* p.points_per_batch: the batch now */
    int         threads;      /* amg_set_threads of every generator made; 0 = its default */
    int         fault_max;    /* SAM2AMG_FAULT_BATCH_MAX, 0 = off */
    int         verbose;      /* print each halving to stderr, after who */
    char        who[96];      /* "sam2amg run: cuda:0", set by the caller */
    char        device[32];   /* names the device in the fault's message */
    double      t_encode, t_decode, t_post;   /* the last image (see above) */
    int         halvings;     /* the last image's */
    const amg_model *inner;   /* during amg_batcher_generate */
} amg_batcher;

/* amg_batcher_init: *b for p (its points_per_batch must be a number, not
 * auto) and model size S, threads as above. ERR_NOMEM, ERR_INVALID (p). On
 * error b->g may be NULL; amg_batcher_free is safe either way. */
int  amg_batcher_init(amg_batcher *b, const amg_params *p, int S, int threads, const char *device,
                      err_t *err);
/* amg_batcher_generate: amg_generate with the rule above; the same errors.
 * The stage times and halvings describe this image afterwards. */
int  amg_batcher_generate(amg_batcher *b, const amg_model *m, const uint8_t *rgb, int w, int h,
                          amg_result *res, err_t *err);
void amg_batcher_free(amg_batcher *b);

#endif
