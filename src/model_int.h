/* model_int.h: private structures of the SAM 2.1 image encoder (Hiera trunk
 * + FPN neck) shared by model.c, hiera.c and neck.c (SQLite's btreeInt.h
 * pattern: model.h is the public face, this is the inside).
 *
 * Weights live in one backend allocation made by model.c; the structures
 * below only point into it. Activations come from the model's arena.
 * All feature maps are NHWC with batch 1: a (H,W,C) map is H*W rows of C.
 */
#ifndef SAM2AMG_MODEL_INT_H
#define SAM2AMG_MODEL_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "check.h"
#include "model.h"
#include "weights.h"

#define HIERA_MAX_BLOCKS 64

/* wload: binds checkpoint tensors to backend memory in two passes. Pass 0
 * (base == NULL) checks every key and shape and sums the sizes; pass 1
 * uploads each tensor at its offset inside the one allocation `base`. The
 * first error sticks in rc/err and later calls return NULL. */
typedef struct wload {
    weights_t *w;
    backend_t *be;
    uint8_t   *base;     /* backend memory (pass 1) or NULL (pass 0) */
    size_t     off;      /* bytes placed so far */
    int        rc;       /* first error, 0 if none */
    err_t     *err;
} wload_t;

/* wload_get: the tensor named by fmt (printf style) with exactly the shape
 * dims[0..ndim); returns its backend pointer (pass 1), a non-NULL dummy
 * (pass 0), or NULL after an error (rc set). On a host_weights backend
 * (CPU) it returns the checkpoint's own float32 data in both passes and
 * takes no room in the allocation: only wload_reserve'd tensors (those the
 * model computes at load) are owned copies. */
const float *wload_get(wload_t *L, int ndim, const int64_t *dims, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* wload_reserve: n floats of backend memory in the same allocation for
 * data computed on the host at load (positional embeddings); the caller
 * uploads into it in pass 1. NULL in pass 0 and after an error. */
float *wload_reserve(wload_t *L, size_t n);

/* One Hiera block (MultiScaleBlock). */
typedef struct hiera_block {
    int dim, dim_out;           /* input / output width */
    int heads;                  /* attention heads (of dim_out) */
    int window;                 /* window size at the input resolution, 0 = global */
    int q_pool;                 /* 1: 2x2 max-pool of q and of the shortcut */
    const float *norm1_w, *norm1_b;   /* (dim) */
    const float *qkv_w, *qkv_b;       /* (3*dim_out, dim), (3*dim_out) */
    const float *attn_proj_w, *attn_proj_b; /* (dim_out, dim_out) */
    const float *proj_w, *proj_b;     /* (dim_out, dim) when dim != dim_out */
    const float *norm2_w, *norm2_b;   /* (dim_out) */
    const float *mlp0_w, *mlp0_b;     /* (4*dim_out, dim_out) */
    const float *mlp1_w, *mlp1_b;     /* (dim_out, 4*dim_out) */
} hiera_block_t;

typedef struct hiera {
    int n_blocks;
    int stage_end[SAM2_MAX_STAGES];   /* index of each stage's last block */
    int stage_dim[SAM2_MAX_STAGES];   /* width of each stage's output */
    int grid;                         /* S/4: token grid side after patch embed */
    const float *patch_w, *patch_b;   /* (C,3,7,7), (C) */
    float *pos_embed;                 /* (S/4,S/4,C), computed at load */
    hiera_block_t blocks[HIERA_MAX_BLOCKS];
} hiera_t;

/* FPN neck (scalp 1, top-down into level 2 only) and the decoder's
 * high-resolution projections conv_s0/conv_s1, plus no_mem_embed. */
typedef struct neck {
    int d;                               /* d_model */
    const float *lat_w[SAM2_MAX_STAGES]; /* lateral 1x1 conv of trunk stage i: (d, C_i) */
    const float *lat_b[SAM2_MAX_STAGES]; /* (d) */
    const float *s0_w, *s0_b;            /* (d/8, d), (d/8) */
    const float *s1_w, *s1_b;            /* (d/4, d), (d/4) */
    const float *no_mem_embed;           /* (d) */
} neck_t;

/* Encoder outputs, NHWC, in the arena (allocated once at load). */
typedef struct enc_out {
    float *image_embed;   /* (S/16,S/16,d) with no_mem_embed added */
    float *feat_s0;       /* (S/4,S/4,d/8) */
    float *feat_s1;       /* (S/8,S/8,d/4) */
} enc_out_t;

/* hiera_bind: fill h's shapes from cfg and its weight pointers through L
 * (both passes). Returns L->rc. */
int hiera_bind(hiera_t *h, const sam2_config *cfg, wload_t *L);
/* hiera_check_geometry: ERR_INVALID when the image size does not fit the
 * window spec (the official code would fail or misbehave there too). */
int hiera_check_geometry(const sam2_config *cfg, err_t *err);
/* hiera_pos_embed_host: the (S/4,S/4,C) positional embedding from the
 * checkpoint's pos_embed (1,C,bh,bw) and pos_embed_window (1,C,ws,ws),
 * host memory in, host memory out. */
void hiera_pos_embed_host(float *out, const float *bkg, int bh, int bw, const float *win,
                          int ws, int C, int grid);
/* hiera_forward: the trunk on input (S,S,3) NHWC in arena memory; after
 * each stage calls neck_stage on that stage's output. Scratch from A is
 * released before it returns. */
void hiera_forward(const hiera_t *h, const neck_t *n, backend_t *be, arena_t *A,
                   const float *x_in, int S, float *levels[SAM2_MAX_STAGES], enc_out_t *out);

/* neck_bind: weight pointers of the neck, conv_s0/s1 and no_mem_embed. */
int neck_bind(neck_t *n, const sam2_config *cfg, const int stage_dim[SAM2_MAX_STAGES],
              wload_t *L);
/* neck_stage: the neck's work on trunk stage `stage` output x (side,side,C):
 * its lateral 1x1 conv; for stages 0 and 1 followed at once by conv_s0 /
 * conv_s1 into out->feat_s0 / feat_s1 (scratch from A), for stages 2 and 3
 * kept in levels[stage] (side,side,d) for neck_finish. */
void neck_stage(const neck_t *n, backend_t *be, arena_t *A, int stage, const float *x,
                int side, int C, float *levels[SAM2_MAX_STAGES], enc_out_t *out);
/* neck_finish: image_embed = levels[2] + up2(levels[3]) + no_mem_embed;
 * grid is S/4. */
void neck_finish(const neck_t *n, backend_t *be, arena_t *A, float *levels[SAM2_MAX_STAGES],
                 int grid, enc_out_t *out);

#endif
