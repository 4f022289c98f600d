/* decoder.c: the SAM 2.1 prompt encoder and mask decoder on the backend op
 * table (see decoder.h for the life cycle).
 *
 * What runs per decoder_run, for a chunk of n prompts of T tokens each
 * (obj-score token, IoU token, 4 mask tokens, the prompt points, and the
 * padding point the image predictor always appends):
 *   host:    sparse prompt embedding (random-Fourier PE of the points plus
 *            the label embeddings), uploaded as the query PE (n*T, C);
 *   backend: two TwoWayAttentionBlocks (token self-attention, token->image
 *            cross-attention, MLP, image->token cross-attention), the final
 *            token->image attention, the upscaling path with the high-res
 *            features, the hypernetwork MLPs and the IoU head;
 *   host:    sigmoid of the IoU logits, the single-mask stability fallback.
 * Every op works on all n prompts at once (rows = n*T or n*HW), so a
 * decoder call is a few dozen large GEMMs, not n times that many small ones.
 *
 * Shared work: without a mask input, the image tokens that enter layer 0
 * are the same for every prompt (image_embed + no_mask_embed). Their
 * key/value projections for token->image attention and their query
 * projection for image->token attention are computed once per image in
 * decoder_set_image; layer 0's token->image attention then runs as one
 * attention with all n*T queries against the shared keys; image->token
 * attention reads the shared queries directly (one call for all prompts on
 * the low-rank path, q's item stride 0; one per prompt otherwise). With a
 * mask input (mask-to-mask refinement) the dense embedding differs per
 * prompt, but it enters the image tokens through a 1x1 conv from 16
 * channels: layer 0's key/query/value projections are the image part
 * (computed once per image, on the first mask-input call) plus the 16 mask
 * channels times the composed weights (computed at init), a K=16 GEMM per
 * prompt instead of K=C. Everything after layer 0 is computed per prompt.
 * Token->image attention of layer 1 and the final one never projects the
 * image tokens to keys and values (attn_unprojected): the few token queries
 * are mapped back through Wk into image-token space instead, and Wv is
 * applied to the attention-weighted image tokens, saving two
 * (n*HW, C) x (C, Ci) GEMMs per attention. That runs attention with head
 * dim C, so it is used only where be->attention_dh_max allows; otherwise
 * the keys are projected (the final keys' PE term then comes from a table
 * computed at init).
 *
 * Low-rank path (shared image tokens, nh*T <= DEC_LR_RANK, and a backend
 * with attention_probs, attention_scores, lowrank_rstd and row_affine;
 * otherwise the paths
 * above): image tokens change only through image->token attention, which
 * adds P.B per prompt (P the (HW, nh*T) probabilities, B the nh*T rows
 * V_h Wo_h^T), and then a LayerNorm. Every later image-side projection of
 * LN(x + P.B) is a per-row scale and shift of (a shared projection of x,
 * computed per image) + P.(B W^T), and the row variances come from Gram
 * terms (|x|^2 per image, x.B^T, P (B B^T) P^T), everything row-centered
 * first (centered x and centered weights) so that nothing cancels. After
 * layer 1 the form is rstd0 x' + Q.D with Q = [rstd0 P0 | P1 | 1] (rank
 * 2 nh T + 1). So no (n*HW, C) image-token tensor is ever materialized per
 * prompt: lowrank_layer0 gives layer 1's keys, values and queries,
 * lowrank_layer1 the final keys and values and the first transposed conv
 * (a per-pixel (C -> 4 C4) map, pixel-shuffled by window_unpartition, with
 * feat_s1 folded into its shared term). Exact up to float rounding. Where
 * the backend fuses them (lowrank_expand: CUDA in bf16), each of those
 * products and its row_affine is one kernel that never stores the
 * (n*HW, N) product, and dc1's goes through ln1 and GELU to the upscaling's
 * pixel-shuffled map in the same kernel; likewise the variances' quadratic
 * term (lowrank_rstd_gram) never stores P (B B^T).
 *
 * Memory: weights in one backend allocation (packed where two projections
 * read the same input), activations in one arena carved into fixed buffers
 * at init for `nc` prompts per chunk; decoder_run processes at most nc
 * prompts at a time (nc = max_prompts capped so that n*HW <= 65536 image
 * rows on the CPU, where beyond that GEMMs gain nothing from a bigger batch
 * and the memory would grow linearly; 524288 on a device, where each step
 * of a chunk is a kernel launch: decoder_chunk_rows). Nothing is allocated
 * per call.
 */
#include "decoder.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEC_HEADS      8        /* TwoWayTransformer num_heads (all SAM 2.1 sizes) */
#define DEC_MLP        2048     /* TwoWayTransformer mlp_dim */
#define DEC_IOU_HIDDEN 256      /* iou_head_hidden_dim */
#define DEC_MASK_CHANS 16       /* prompt encoder mask_in_chans */
#define DEC_MASKS      4        /* mask tokens: single + 3 multimask */
#define DEC_OUT_TOKENS 6        /* obj score, iou, 4 mask tokens */
#define DEC_ROWS       65536    /* image rows (n*HW) per chunk on the CPU */
#define DEC_ROWS_DEV   524288   /* and on a device (decoder_chunk_rows) */
#define STAB_DELTA     0.05f    /* dynamic_multimask_stability_delta */
#define STAB_THRESH    0.98f    /* dynamic_multimask_stability_thresh */
#define LN_EPS         1e-5f    /* nn.LayerNorm default */
#define LN2D_EPS       1e-6f    /* LayerNorm2d */
#define DEC_LR_RANK    128      /* low-rank path: at most this many heads x tokens */
#define DEC_LR_Q       (2 * DEC_LR_RANK + 1)   /* rank after layer 1 */

typedef struct layer_w {
    const float *sa_qkv_w, *sa_qkv_b;     /* (3C,C), (3C): self_attn q;k;v packed */
    const float *sa_out_w, *sa_out_b;     /* (C,C), (C) */
    const float *tq_w, *tq_b;             /* (2Ci,C): t2i.q ; i2t.k (read queries+pe) */
    const float *i2t_v_w, *i2t_v_b;       /* (Ci,C) (reads queries) */
    const float *kq_w, *kq_b;             /* (2Ci,C): t2i.k ; i2t.q (read keys+pe) */
    const float *t2i_v_w, *t2i_v_b;       /* (Ci,C) (reads keys) */
    const float *t2i_out_w, *t2i_out_b;   /* (C,Ci), (C) */
    const float *i2t_out_w, *i2t_out_b;   /* (C,Ci), (C) */
    const float *mlp1_w, *mlp1_b;         /* (MLP,C), (MLP) */
    const float *mlp2_w, *mlp2_b;         /* (C,MLP), (C) */
    const float *norm_w[4], *norm_b[4];   /* (C) norm1..norm4 */
} layer_w;

struct decoder {
    backend_t *be;
    int C, Ci, C4, C8;          /* d_model, cross-attention width C/2, C/4, C/8 */
    int S, hf, HW;              /* model input size, feature side S/16, hf*hf */
    int max_prompts, nc, Tm;    /* prompts per call, per chunk, max tokens per prompt */
    int64_t lrd_cc_T;           /* the T whose cc rows LRD holds (lowrank_layer1); 0: none */
    int have_image;
    int up_done;                /* this chunk's lowrank_layer1 fused (be->lowrank_expand):
                                   K holds the upscaling's gelu(ln1(dc1)) map */
    int kpe16;                  /* and KPE holds the final keys and values in bf16
                                   (be->attention_kv16 reads them) */
    int l1kv16;                 /* this chunk's lowrank_layer0 wrote layer 1's token->image
                                   keys and values in bf16 and its queries apart (big) */

    /* ---- weights: backend memory (one allocation) ---- */
    float  *wmem;
    layer_w L[2];
    const float *f_q_w, *f_q_b, *f_k_w, *f_k_b, *f_v_w, *f_v_b;   /* (Ci,C), (Ci) */
    const float *f_out_w, *f_out_b, *f_norm_w, *f_norm_b;          /* (C,Ci),(C),(C),(C) */
    const float *dc1_w, *dc1_b, *ln1_w, *ln1_b;   /* (C,C4,2,2),(C4),(C4),(C4) */
    const float *dc2_w, *dc2_b;                   /* (C4,C8,2,2),(C8) */
    const float *hyp_w[DEC_MASKS][3], *hyp_b[DEC_MASKS][3];  /* (C,C),(C,C),(C8,C) */
    const float *iou_w[3], *iou_b[3];             /* (256,C),(256,256),(4,256) */
    const float *md_w[5], *md_b[5];   /* mask downscaling: conv0 (4,1,2,2), ln1 (4),
                                         conv3 (16,4,2,2), ln4 (16), conv6 (C,16,1,1) */
    const float *no_mask_dev;         /* (C) */

    /* ---- weights: host copies (one allocation) ---- */
    float       *hmem;
    const float *gauss;               /* (2, C/2) random Fourier frequencies */
    const float *point_embed;         /* (4, C) by label 0..3 */
    const float *not_a_point;         /* (C) */
    const float *out_tokens;          /* (6, C): obj score, iou, 4 mask tokens */

    /* ---- per image (backend, from the arena) ---- */
    float *pe;       /* (HW, C) dense positional encoding, computed at init */
    float *img;      /* (HW, C) image_embed (no_mem_embed included) */
    float *fs0;      /* (4hf, 4hf, C8) */
    float *fs1;      /* (2hf, 2hf, C4) */
    float *k0;       /* (HW, C) img + no_mask_embed */
    float *kq0;      /* (HW, C) packed [t2i.k | i2t.q] of k0 + pe, layer 0 */
    float *kv0;      /* (HW, Ci) t2i.v of k0, layer 0 */
    float *fpk;      /* (HW, Ci) final t2i.k of pe, + its bias: computed at init */
    float *wkT[2];   /* (nh, C, dh) per-head transposed t2i.k weights: layer 1, final */
    int    unproj;   /* token->image keys of layer 1 / final left unprojected */
    float *mw;       /* (C+Ci, 16) [t2i.k; i2t.q; t2i.v] of layer 0 times the mask
                        embedding's last 1x1 conv: computed at init */
    float *kqv_img;  /* (HW, C+Ci) layer 0 [t2i.k | i2t.q | t2i.v] of the image tokens
                        with the mask embedding's bias (+pe for k, q): the part of
                        a mask-input prompt's projections that is the same for all */
    int   kqv_ready; /* kqv_img is for the current image */
    /* low-rank path (see lowrank_layer0): layer 0's output image tokens as
     * LayerNorm(x + P.B), x shared, P.B of rank nh*T per prompt */
    int    lowrank;  /* the backend has the three low-rank ops */
    float *wg1;      /* (3Ci, C) layer-1 [t2i.k; i2t.q; t2i.v] weights times layer 0's norm4 gain */
    float *c1;       /* (3Ci) those weights times norm4's bias, plus their biases */
    float *woc;      /* (nh, C, dh) layer 0's i2t out_proj per head, columns centered */
    float *xc;       /* (HW, C) k0 + i2t out bias, each row centered: per image */
    float *xx;       /* (HW) |xc row|^2 */
    float *S1;       /* (HW, 3Ci) xc . wg1^T */
    float *U1;       /* (HW, 3Ci) [pe . (t2i.k; i2t.q)^T | 0] + c1 */
    float *LRP;      /* (nc*HW, r) image->token probabilities, layer 0 */
    float *LRE;      /* (nc*HW, r) xc . B^T */
    float *LRG;      /* (nc*HW, r) P . (B B^T) */
    float *LRB;      /* (nc, r, C) B (centered rows) */
    float *LRBB;     /* (nc, r, r) B B^T */
    float *LRM;      /* (nc, r, 3Ci) B . wg1^T */
    float *RSTD;     /* (nc*HW) 1/std of layer 0's output image tokens */
    float *wg2;      /* (2C, C) [dc1 as (4 C4, C) | final k | final v] times layer 1's norm4 gain */
    float *c2;       /* (2C) those weights times norm4's bias, plus their biases */
    float *woc2;     /* (nh, C, dh) woc times norm4's gain, columns centered again */
    float *woc1;     /* (nh, C, dh) layer 1's i2t out_proj per head, columns centered */
    float *cc;       /* (C) layer 0's norm4 bias + layer 1's i2t out bias, centered */
    float *one;      /* (1) 1.0f */
    float *zeros;    /* (nc*HW) 0 */
    float *ones;     /* (max(HW, nc)) 1: filled at init */
    float *x2c;      /* (HW, C) xc times norm4's gain, rows centered again: per image */
    float *xx2;      /* (HW) |x2c row|^2 */
    float *S2;       /* (HW, 2C) x2c . wg2^T */
    float *U2;       /* (HW, 2C) [feat_s1 in dc1's per-pixel layout | pe . final k^T | 0]
                        + c2 */
    float *LRQ;      /* (nc*HW, 2r+1) [rstd P (layer 0) | P (layer 1) | 1] */
    float *LRD;      /* (nc, 2r+1, C) the matching rows (centered) */
    float *RSTD2;    /* (nc*HW) 1/std of layer 1's output image tokens */
    float *hlr;      /* host (HW*C + 2C + HW) scratch for the per-image centering */
    /* x . B^T without B: B's rows per head are V_h Woc_h^T, so x . B_h^T =
     * (x Woc_h) . V_h^T, with x Woc (HW, Ci) once per image and the
     * per-prompt part a (HW, T) score per head (attention_scores) */
    float *woT[3];   /* (Ci, C) woc, woc1, woc2 as (head, e) rows: Woc^T */
    float *XW[3];    /* (HW, Ci) xc . woc, x2c . woc1, x2c . woc2: per image */
    float *xcc;      /* (HW) x2c . cc: per image */

    /* ---- activations for one chunk (backend, from the arena) ---- */
    float *P;        /* (nc*Tm, C) query PE = initial tokens */
    float *Q;        /* (nc*Tm, C) queries */
    float *QP;       /* (nc*Tm, C) queries + PE */
    float *SA;       /* (nc*Tm, 3C) self-attention q, k, v */
    float *TQ;       /* (nc*Tm, C) packed [t2i.q | i2t.k] */
    float *TV;       /* (nc*Tm, Ci) i2t.v */
    float *TO;       /* (nc*Tm, C) attention output */
    float *TMP;      /* (nc*Tm, C) */
    float *QX;       /* (nc*Tm, nh, C) queries mapped back to image-token space */
    float *OX;       /* (nc*Tm, nh, C) their attention outputs (before t2i.v) */
    float *H;        /* (nc*Tm, MLP) */
    float *HH;       /* (2, nc, 256) hypernetwork / IoU head hidden */
    float *HYP;      /* (nc, 4, C8) */
    float *IOU;      /* (nc, 4) IoU logits */
    float *K;        /* (nc*HW, C) image tokens */
    float *KPE;      /* (nc*HW, C) image tokens + PE; later the first upscaled map */
    float *big;      /* (nc*HW*2C) carved: KQ (R,C) KV (R,Ci) AO (R,Ci); later the
                        second upscaled map (nc,4hf,4hf,C8); mask path scratch */
    float *MASKS;    /* (nc, 4, 4hf, 4hf) mask logits */
    arena_t arena;

    /* ---- host scratch ---- */
    float *htok;     /* (nc*Tm, C) */
    float *hmask;    /* (nc, 4, 4hf, 4hf) */
    float *hiou;     /* (nc, 4) */
};

/* ---- weight loading: two passes (count, then fill one staging buffer) ---- */

typedef struct loader {
    weights_t *w;
    err_t     *err;
    int        rc;
    int        fill;      /* 0: count sizes; 1: copy into the staging buffers */
    size_t     nd, nh;    /* floats taken so far: backend, host */
    float     *dstage;    /* (nd) host staging of the backend block (fill) */
    float     *dbase;     /* backend block (fill) */
    float     *hbase;     /* host block (fill) */
} loader_t;

static const float *ld_take(loader_t *L, int host, int pack, int ndim, const int64_t *shape,
                            const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* ld_take: the tensor named by fmt with exactly `shape`; returns where it
 * will live (backend block unless host) in the fill pass, NULL in the count
 * pass or on error (L->rc set). pack: place right after the previous tensor
 * (no 256-byte alignment), so consecutive takes form one packed matrix. */
static const float *ld_take(loader_t *L, int host, int pack, int ndim, const int64_t *shape,
                            const char *fmt, ...) {
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (L->rc) return NULL;
    const float *src = weights_get(L->w, name, ndim, shape, L->err);
    if (!src) {
        L->rc = ERR_FORMAT;
        return NULL;
    }
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    size_t *used = host ? &L->nh : &L->nd;
    if (!pack) *used = (*used + 63) / 64 * 64;
    size_t off = *used;
    *used += n;
    if (!L->fill) return NULL;
    if (host) {
        memcpy(L->hbase + off, src, n * sizeof(float));
        return L->hbase + off;
    }
    memcpy(L->dstage + off, src, n * sizeof(float));
    return L->dbase + off;
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}
#define DEV(pack, nd, shape, ...) ld_take(L, 0, pack, nd, shape, __VA_ARGS__)
#define HOST(pack, nd, shape, ...) ld_take(L, 1, pack, nd, shape, __VA_ARGS__)

/* load_all: every decoder tensor, in one fixed order (the same in both
 * passes). Returns L->rc. */
static int load_all(decoder_t *d, loader_t *L) {
    const int64_t C = d->C, Ci = d->Ci, C4 = d->C4, C8 = d->C8;
    const char *T = "sam_mask_decoder.transformer";
    for (int l = 0; l < 2; l++) {
        layer_w *lw = &d->L[l];
        const char *pj[3] = {"q", "k", "v"};
        for (int i = 0; i < 3; i++)
            if (i == 0) lw->sa_qkv_w = DEV(0, 2, SHAPE(C, C), "%s.layers.%d.self_attn.%s_proj.weight", T, l, pj[i]);
            else DEV(1, 2, SHAPE(C, C), "%s.layers.%d.self_attn.%s_proj.weight", T, l, pj[i]);
        for (int i = 0; i < 3; i++)
            if (i == 0) lw->sa_qkv_b = DEV(0, 1, SHAPE(C), "%s.layers.%d.self_attn.%s_proj.bias", T, l, pj[i]);
            else DEV(1, 1, SHAPE(C), "%s.layers.%d.self_attn.%s_proj.bias", T, l, pj[i]);
        lw->sa_out_w = DEV(0, 2, SHAPE(C, C), "%s.layers.%d.self_attn.out_proj.weight", T, l);
        lw->sa_out_b = DEV(0, 1, SHAPE(C), "%s.layers.%d.self_attn.out_proj.bias", T, l);
        const char *t2i = "cross_attn_token_to_image", *i2t = "cross_attn_image_to_token";
        lw->tq_w = DEV(0, 2, SHAPE(Ci, C), "%s.layers.%d.%s.q_proj.weight", T, l, t2i);
        DEV(1, 2, SHAPE(Ci, C), "%s.layers.%d.%s.k_proj.weight", T, l, i2t);
        lw->tq_b = DEV(0, 1, SHAPE(Ci), "%s.layers.%d.%s.q_proj.bias", T, l, t2i);
        DEV(1, 1, SHAPE(Ci), "%s.layers.%d.%s.k_proj.bias", T, l, i2t);
        lw->kq_w = DEV(0, 2, SHAPE(Ci, C), "%s.layers.%d.%s.k_proj.weight", T, l, t2i);
        DEV(1, 2, SHAPE(Ci, C), "%s.layers.%d.%s.q_proj.weight", T, l, i2t);
        lw->kq_b = DEV(0, 1, SHAPE(Ci), "%s.layers.%d.%s.k_proj.bias", T, l, t2i);
        DEV(1, 1, SHAPE(Ci), "%s.layers.%d.%s.q_proj.bias", T, l, i2t);
        lw->i2t_v_w = DEV(0, 2, SHAPE(Ci, C), "%s.layers.%d.%s.v_proj.weight", T, l, i2t);
        lw->i2t_v_b = DEV(0, 1, SHAPE(Ci), "%s.layers.%d.%s.v_proj.bias", T, l, i2t);
        lw->t2i_v_w = DEV(0, 2, SHAPE(Ci, C), "%s.layers.%d.%s.v_proj.weight", T, l, t2i);
        lw->t2i_v_b = DEV(0, 1, SHAPE(Ci), "%s.layers.%d.%s.v_proj.bias", T, l, t2i);
        lw->t2i_out_w = DEV(0, 2, SHAPE(C, Ci), "%s.layers.%d.%s.out_proj.weight", T, l, t2i);
        lw->t2i_out_b = DEV(0, 1, SHAPE(C), "%s.layers.%d.%s.out_proj.bias", T, l, t2i);
        lw->i2t_out_w = DEV(0, 2, SHAPE(C, Ci), "%s.layers.%d.%s.out_proj.weight", T, l, i2t);
        lw->i2t_out_b = DEV(0, 1, SHAPE(C), "%s.layers.%d.%s.out_proj.bias", T, l, i2t);
        lw->mlp1_w = DEV(0, 2, SHAPE(DEC_MLP, C), "%s.layers.%d.mlp.layers.0.weight", T, l);
        lw->mlp1_b = DEV(0, 1, SHAPE(DEC_MLP), "%s.layers.%d.mlp.layers.0.bias", T, l);
        lw->mlp2_w = DEV(0, 2, SHAPE(C, DEC_MLP), "%s.layers.%d.mlp.layers.1.weight", T, l);
        lw->mlp2_b = DEV(0, 1, SHAPE(C), "%s.layers.%d.mlp.layers.1.bias", T, l);
        for (int i = 0; i < 4; i++) {
            lw->norm_w[i] = DEV(0, 1, SHAPE(C), "%s.layers.%d.norm%d.weight", T, l, i + 1);
            lw->norm_b[i] = DEV(0, 1, SHAPE(C), "%s.layers.%d.norm%d.bias", T, l, i + 1);
        }
    }
    const char *F = "final_attn_token_to_image";
    d->f_q_w = DEV(0, 2, SHAPE(Ci, C), "%s.%s.q_proj.weight", T, F);
    d->f_q_b = DEV(0, 1, SHAPE(Ci), "%s.%s.q_proj.bias", T, F);
    d->f_k_w = DEV(0, 2, SHAPE(Ci, C), "%s.%s.k_proj.weight", T, F);
    d->f_k_b = DEV(0, 1, SHAPE(Ci), "%s.%s.k_proj.bias", T, F);
    d->f_v_w = DEV(0, 2, SHAPE(Ci, C), "%s.%s.v_proj.weight", T, F);
    d->f_v_b = DEV(0, 1, SHAPE(Ci), "%s.%s.v_proj.bias", T, F);
    d->f_out_w = DEV(0, 2, SHAPE(C, Ci), "%s.%s.out_proj.weight", T, F);
    d->f_out_b = DEV(0, 1, SHAPE(C), "%s.%s.out_proj.bias", T, F);
    d->f_norm_w = DEV(0, 1, SHAPE(C), "%s.norm_final_attn.weight", T);
    d->f_norm_b = DEV(0, 1, SHAPE(C), "%s.norm_final_attn.bias", T);

    const char *M = "sam_mask_decoder";
    d->dc1_w = DEV(0, 4, SHAPE(C, C4, 2, 2), "%s.output_upscaling.0.weight", M);
    d->dc1_b = DEV(0, 1, SHAPE(C4), "%s.output_upscaling.0.bias", M);
    d->ln1_w = DEV(0, 1, SHAPE(C4), "%s.output_upscaling.1.weight", M);
    d->ln1_b = DEV(0, 1, SHAPE(C4), "%s.output_upscaling.1.bias", M);
    d->dc2_w = DEV(0, 4, SHAPE(C4, C8, 2, 2), "%s.output_upscaling.3.weight", M);
    d->dc2_b = DEV(0, 1, SHAPE(C8), "%s.output_upscaling.3.bias", M);
    for (int i = 0; i < DEC_MASKS; i++)
        for (int j = 0; j < 3; j++) {
            int64_t out = j == 2 ? C8 : C;
            d->hyp_w[i][j] = DEV(0, 2, SHAPE(out, C), "%s.output_hypernetworks_mlps.%d.layers.%d.weight", M, i, j);
            d->hyp_b[i][j] = DEV(0, 1, SHAPE(out), "%s.output_hypernetworks_mlps.%d.layers.%d.bias", M, i, j);
        }
    for (int j = 0; j < 3; j++) {
        int64_t in = j == 0 ? C : DEC_IOU_HIDDEN, out = j == 2 ? DEC_MASKS : DEC_IOU_HIDDEN;
        d->iou_w[j] = DEV(0, 2, SHAPE(out, in), "%s.iou_prediction_head.layers.%d.weight", M, j);
        d->iou_b[j] = DEV(0, 1, SHAPE(out), "%s.iou_prediction_head.layers.%d.bias", M, j);
    }
    const char *PE = "sam_prompt_encoder";
    const int64_t m4 = DEC_MASK_CHANS / 4, m16 = DEC_MASK_CHANS;
    d->md_w[0] = DEV(0, 4, SHAPE(m4, 1, 2, 2), "%s.mask_downscaling.0.weight", PE);
    d->md_b[0] = DEV(0, 1, SHAPE(m4), "%s.mask_downscaling.0.bias", PE);
    d->md_w[1] = DEV(0, 1, SHAPE(m4), "%s.mask_downscaling.1.weight", PE);
    d->md_b[1] = DEV(0, 1, SHAPE(m4), "%s.mask_downscaling.1.bias", PE);
    d->md_w[2] = DEV(0, 4, SHAPE(m16, m4, 2, 2), "%s.mask_downscaling.3.weight", PE);
    d->md_b[2] = DEV(0, 1, SHAPE(m16), "%s.mask_downscaling.3.bias", PE);
    d->md_w[3] = DEV(0, 1, SHAPE(m16), "%s.mask_downscaling.4.weight", PE);
    d->md_b[3] = DEV(0, 1, SHAPE(m16), "%s.mask_downscaling.4.bias", PE);
    d->md_w[4] = DEV(0, 4, SHAPE(C, m16, 1, 1), "%s.mask_downscaling.6.weight", PE);
    d->md_b[4] = DEV(0, 1, SHAPE(C), "%s.mask_downscaling.6.bias", PE);
    d->no_mask_dev = DEV(0, 2, SHAPE(1, C), "%s.no_mask_embed.weight", PE);

    d->gauss = HOST(0, 2, SHAPE(2, C / 2), "%s.pe_layer.positional_encoding_gaussian_matrix", PE);
    for (int i = 0; i < 4; i++) {
        const float *p = HOST(i > 0, 2, SHAPE(1, C), "%s.point_embeddings.%d.weight", PE, i);
        if (i == 0) d->point_embed = p;
    }
    d->not_a_point = HOST(0, 2, SHAPE(1, C), "%s.not_a_point_embed.weight", PE);
    d->out_tokens = HOST(0, 2, SHAPE(1, C), "%s.obj_score_token.weight", M);
    HOST(1, 2, SHAPE(1, C), "%s.iou_token.weight", M);
    HOST(1, 2, SHAPE(DEC_MASKS, C), "%s.mask_tokens.weight", M);

    /* the object-score head is part of the checkpoint but not of the image
     * predictor's output: asked for (shape-checked, marked used), not kept */
    if (!L->fill && !L->rc)
        for (int j = 0; j < 3; j++) {
            char name[128];
            int64_t out = j == 2 ? 1 : C;
            snprintf(name, sizeof name, "%s.pred_obj_score_head.layers.%d.weight", M, j);
            if (!weights_get(L->w, name, 2, SHAPE(out, C), L->err)) return L->rc = ERR_FORMAT;
            snprintf(name, sizeof name, "%s.pred_obj_score_head.layers.%d.bias", M, j);
            if (!weights_get(L->w, name, 1, SHAPE(out), L->err)) return L->rc = ERR_FORMAT;
        }
    return L->rc;
}

/* ---- prompt encoding (host) ---- */

/* pe_encode: random-Fourier encoding of a point normalized to [0,1]^2:
 * [sin(2 pi (2p-1) G), cos(2 pi (2p-1) G)], out (C). */
static void pe_encode(const decoder_t *d, float x, float y, float *out) {
    int half = d->C / 2;
    float cx = 2.0f * x - 1.0f, cy = 2.0f * y - 1.0f;
    const float two_pi = (float)(2.0 * M_PI);
    for (int k = 0; k < half; k++) {
        float v = cx * d->gauss[k] + cy * d->gauss[half + k];
        v = two_pi * v;
        out[k] = sinf(v);
        out[half + k] = cosf(v);
    }
}

/* tokens_build: the initial tokens of prompts [b0, b0+n) of p into
 * out (n, T, C): the 6 output tokens, then each point's embedding, then the
 * padding point (when there are points). */
static void tokens_build(const decoder_t *d, const sam2_prompts *p, int b0, int n, int T,
                         float *out) {
    int C = d->C;
    for (int b = 0; b < n; b++) {
        float *t = out + (size_t)b * T * C;
        memcpy(t, d->out_tokens, (size_t)DEC_OUT_TOKENS * C * sizeof(float));
        t += (size_t)DEC_OUT_TOKENS * C;
        for (int j = 0; j < p->n_pts; j++, t += C) {
            size_t idx = (size_t)(b0 + b) * p->n_pts + j;
            int lab = p->labels[idx];
            if (lab == -1) {
                memcpy(t, d->not_a_point, (size_t)C * sizeof(float));
                continue;
            }
            float x = (p->coords[2 * idx] + 0.5f) / (float)d->S;
            float y = (p->coords[2 * idx + 1] + 0.5f) / (float)d->S;
            pe_encode(d, x, y, t);
            const float *e = d->point_embed + (size_t)lab * C;
            for (int c = 0; c < C; c++) t[c] += e[c];
        }
        if (p->n_pts > 0) memcpy(t, d->not_a_point, (size_t)C * sizeof(float));
    }
}

/* ---- low-rank path: weights composed at init ---- */

/* upload_woT: wo (nh, C, dh) host, transposed to (nh*dh, C) rows into the
 * backend buffer dst; tmp is host scratch of C*Ci floats. */
static void upload_woT(decoder_t *d, float *dst, const float *wo, float *tmp) {
    const int64_t C = d->C, Ci = d->Ci, nh = DEC_HEADS, dh = Ci / nh;
    for (int64_t h = 0; h < nh; h++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t e = 0; e < dh; e++) tmp[(h * dh + e) * C + c] = wo[(h * C + c) * dh + e];
    d->be->upload(d->be, dst, tmp, (size_t)C * Ci * sizeof(float));
    d->be->sync(d->be);
}

/* lowrank_init2: the weights of the layer-1 end (wg2, c2, woc2, woc1, cc,
 * one, zeros); wocg (nh, C, dh) and beta0 (C) are lowrank_init's host
 * copies. 0 or ERR_NOMEM. */
static int lowrank_init2(decoder_t *d, const float *wocg, const float *beta0, err_t *err) {
    backend_t *be = d->be;
    const int64_t C = d->C, Ci = d->Ci, C4 = d->C4, nh = DEC_HEADS, dh = Ci / nh, N2 = 2 * C;
    size_t n2 = (size_t)N2 * C;
    float *w2 = malloc((n2 + N2 + 3 * C + C * Ci + 2 * (size_t)C * Ci + C * C4 * 4 + C4 + 1) *
                       sizeof(float));
    if (!w2) return err_set(err, ERR_NOMEM, "decoder: out of host memory");
    float *b2 = w2 + n2, *g = b2 + N2, *beta = g + C, *cc = beta + C, *wo = cc + C;
    float *woc1 = wo + C * Ci, *woc2 = woc1 + C * Ci, *dc = woc2 + C * Ci, *dcb = dc + C * C4 * 4;
    const layer_w *l1 = &d->L[1];
    be->download(be, dc, d->dc1_w, (size_t)C * C4 * 4 * sizeof(float));
    be->download(be, dcb, d->dc1_b, (size_t)C4 * sizeof(float));
    be->download(be, w2 + 4 * C4 * C, d->f_k_w, (size_t)Ci * C * sizeof(float));
    be->download(be, w2 + (4 * C4 + Ci) * C, d->f_v_w, (size_t)Ci * C * sizeof(float));
    be->download(be, b2 + 4 * C4, d->f_k_b, (size_t)Ci * sizeof(float));
    be->download(be, b2 + 4 * C4 + Ci, d->f_v_b, (size_t)Ci * sizeof(float));
    be->download(be, g, l1->norm_w[3], (size_t)C * sizeof(float));
    be->download(be, beta, l1->norm_b[3], (size_t)C * sizeof(float));
    be->download(be, cc, l1->i2t_out_b, (size_t)C * sizeof(float));
    be->download(be, wo, l1->i2t_out_w, (size_t)C * Ci * sizeof(float));
    be->sync(be);
    /* dc1 (Cin, Cout, 2, 2) as a per-pixel map: output o = (di*2 + dj)*C4 + co */
    for (int64_t q = 0; q < 4; q++)
        for (int64_t co = 0; co < C4; co++) {
            for (int64_t ci = 0; ci < C; ci++)
                w2[(q * C4 + co) * C + ci] = dc[(ci * C4 + co) * 4 + q];
            b2[q * C4 + co] = dcb[co];
        }
    for (int64_t o = 0; o < N2; o++) {
        double acc = b2[o];
        for (int64_t c = 0; c < C; c++) {
            acc += (double)w2[o * C + c] * beta[c];
            w2[o * C + c] *= g[c];
        }
        b2[o] = (float)acc;
    }
    for (int64_t h = 0; h < nh; h++)
        for (int64_t e = 0; e < dh; e++) {
            double m1 = 0.0, m2 = 0.0;
            for (int64_t c = 0; c < C; c++) {
                m1 += wo[c * Ci + h * dh + e];
                m2 += wocg[(h * C + c) * dh + e];
            }
            m1 /= (double)C, m2 /= (double)C;
            for (int64_t c = 0; c < C; c++) {
                woc1[(h * C + c) * dh + e] = (float)(wo[c * Ci + h * dh + e] - m1);
                woc2[(h * C + c) * dh + e] = (float)(wocg[(h * C + c) * dh + e] - m2);
            }
        }
    double mc = 0.0;
    for (int64_t c = 0; c < C; c++) mc += (double)cc[c] + beta0[c];
    mc /= (double)C;
    for (int64_t c = 0; c < C; c++) cc[c] = (float)((double)cc[c] + beta0[c] - mc);
    float one = 1.0f;
    be->upload(be, d->wg2, w2, n2 * sizeof(float));
    be->upload(be, d->c2, b2, (size_t)N2 * sizeof(float));
    be->upload(be, d->woc1, woc1, (size_t)C * Ci * sizeof(float));
    be->upload(be, d->woc2, woc2, (size_t)C * Ci * sizeof(float));
    be->sync(be);
    upload_woT(d, d->woT[1], woc1, wo);   /* wo is no longer needed: scratch */
    upload_woT(d, d->woT[2], woc2, wo);
    be->upload(be, d->cc, cc, (size_t)C * sizeof(float));
    be->upload(be, d->one, &one, sizeof(float));
    be->memset0(be, d->zeros, (size_t)d->nc * d->HW * sizeof(float));
    be->memset0(be, d->LRQ, (size_t)d->nc * d->HW * DEC_LR_Q * sizeof(float));
    be->sync(be);
    free(w2);
    return 0;
}

/* lowrank_init: wg1, c1, woc (see struct decoder) from the loaded weights,
 * composed on the host in double, then lowrank_init2. 0 or ERR_NOMEM. */
static int lowrank_init(decoder_t *d, err_t *err) {
    backend_t *be = d->be;
    const int64_t C = d->C, Ci = d->Ci, nh = DEC_HEADS, dh = Ci / nh;
    const layer_w *l0 = &d->L[0], *l1 = &d->L[1];
    size_t nw = (size_t)3 * Ci * C;
    float *w1 = malloc((nw + 3 * Ci + 2 * C + C * Ci + 2 * (size_t)C * Ci) * sizeof(float));
    if (!w1) return err_set(err, ERR_NOMEM, "decoder: out of host memory");
    float *b1 = w1 + nw, *g = b1 + 3 * Ci, *beta = g + C, *wo = beta + C, *woc = wo + C * Ci;
    float *wocg = woc + C * Ci;
    /* W1 (3Ci, C) = [t2i.k; i2t.q] (packed kq_w) then t2i.v */
    be->download(be, w1, l1->kq_w, (size_t)2 * Ci * C * sizeof(float));
    be->download(be, w1 + 2 * Ci * C, l1->t2i_v_w, (size_t)Ci * C * sizeof(float));
    be->download(be, b1, l1->kq_b, (size_t)2 * Ci * sizeof(float));
    be->download(be, b1 + 2 * Ci, l1->t2i_v_b, (size_t)Ci * sizeof(float));
    be->download(be, g, l0->norm_w[3], (size_t)C * sizeof(float));
    be->download(be, beta, l0->norm_b[3], (size_t)C * sizeof(float));
    be->download(be, wo, l0->i2t_out_w, (size_t)C * Ci * sizeof(float));
    be->sync(be);
    for (int64_t o = 0; o < 3 * Ci; o++) {
        double acc = b1[o];
        for (int64_t c = 0; c < C; c++) {
            acc += (double)w1[o * C + c] * beta[c];
            w1[o * C + c] *= g[c];
        }
        b1[o] = (float)acc;
    }
    for (int64_t h = 0; h < nh; h++)
        for (int64_t e = 0; e < dh; e++) {
            double mean = 0.0;
            for (int64_t c = 0; c < C; c++) mean += wo[c * Ci + h * dh + e];
            mean /= (double)C;
            for (int64_t c = 0; c < C; c++) {
                double v = wo[c * Ci + h * dh + e] - mean;
                woc[(h * C + c) * dh + e] = (float)v;
                wocg[(h * C + c) * dh + e] = (float)(v * g[c]);
            }
        }
    be->upload(be, d->wg1, w1, nw * sizeof(float));
    be->upload(be, d->c1, b1, (size_t)3 * Ci * sizeof(float));
    be->upload(be, d->woc, woc, (size_t)C * Ci * sizeof(float));
    be->sync(be);
    upload_woT(d, d->woT[0], woc, wo);   /* wo is no longer needed: scratch */
    int rc = lowrank_init2(d, wocg, beta, err);
    free(w1);
    return rc;
}

/* ---- the activation plan ---- */

/* decoder_plan: the arena's buffers, in floats and in decoder_init's
 * carving order, for d_model C, image size S and max_prompts prompts per
 * call; returns how many. The one source of the decoder's activation
 * memory: decoder_init carves these, decoder_arena_bytes sums them. */
#define DEC_N_BUFS 72
static int decoder_plan(int C, int S, int max_prompts, int64_t rows, size_t sizes[DEC_N_BUFS]) {
    size_t hf = (size_t)S / 16, HW = hf * hf;
    size_t nc = (size_t)rows / HW;
    if (nc < 1) nc = 1;
    if (nc > (size_t)max_prompts) nc = (size_t)max_prompts;
    size_t Cz = (size_t)C, Ci = Cz / 2, C4 = Cz / 4, C8 = Cz / 8;
    size_t R = nc * HW, NT = nc * (DEC_OUT_TOKENS + DECODER_MAX_POINTS + 1);
    size_t big = 2 * R * Cz;
    if (big < 48 * R) big = 48 * R;   /* the mask path's scratch (C < 24 only) */
    const size_t plan[] = {
        HW * Cz, HW * Cz, 16 * HW * C8, 4 * HW * C4, HW * Cz, HW * Cz, HW * Ci,
        HW * Ci, (Cz + Ci) * DEC_MASK_CHANS, HW * (Cz + Ci), Cz * Ci, Cz * Ci,
        NT * DEC_HEADS * Cz, NT * DEC_HEADS * Cz,
        NT * Cz, NT * Cz, NT * Cz, NT * 3 * Cz, NT * Cz, NT * Ci, NT * Cz, NT * Cz,
        NT * DEC_MLP, 2 * nc * (Cz > DEC_IOU_HIDDEN ? Cz : DEC_IOU_HIDDEN),
        nc * DEC_MASKS * C8, nc * DEC_MASKS, R * Cz, R * Cz, big,
        nc * DEC_MASKS * 16 * HW,
        3 * Ci * Cz, 3 * Ci, Cz * Ci, HW * Cz, HW,
        HW * 3 * Ci, HW * 3 * Ci, R * DEC_LR_RANK, R * DEC_LR_Q, R * DEC_LR_Q,
        nc * DEC_LR_RANK * Cz, nc * DEC_LR_Q * DEC_LR_Q, nc * DEC_LR_Q * 2 * Cz,
        R, 2 * Cz * Cz, 2 * Cz, Cz * Ci, Cz * Ci, Cz, 1, R, HW * Cz, HW, HW * 2 * Cz,
        HW * 2 * Cz, R * DEC_LR_Q, nc * DEC_LR_Q * Cz, R, HW > nc ? HW : nc, Ci * Cz, Ci * Cz,
        Ci * Cz,
        HW * Ci, HW * Ci, HW * Ci, HW};
    int n = (int)(sizeof plan / sizeof plan[0]);
    CHECK(n <= DEC_N_BUFS);
    memcpy(sizes, plan, sizeof plan);
    return n;
}

/* decoder_plan_bytes: what arena_alloc takes for these buffers (each
 * rounded up to its 256-byte alignment) */
static size_t decoder_plan_bytes(const size_t *sizes, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (sizes[i] * sizeof(float) + 255) / 256 * 256;
    return total;
}

size_t decoder_arena_bytes(const sam2_config *cfg, int max_prompts, int64_t chunk_rows) {
    size_t sizes[DEC_N_BUFS];
    int n = decoder_plan(cfg->d_model, cfg->image_size, max_prompts < 1 ? 1 : max_prompts,
                         chunk_rows, sizes);
    return decoder_plan_bytes(sizes, n);
}

/* chunk_prompts: the prompts per chunk for chunks of rows image rows */
static int chunk_prompts(int64_t rows, int64_t HW, int max_prompts) {
    int64_t nc = rows / HW;
    return nc < 1 ? 1 : nc > max_prompts ? max_prompts : (int)nc;
}

int64_t decoder_chunk_rows(const backend_t *be) {
    const char *v = getenv("SAM2AMG_DECODER_ROWS");
    const int64_t dflt = be->host_weights ? DEC_ROWS : DEC_ROWS_DEV;
    if (v && *v) {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (*end == 0 && errno == 0 && n >= 1 && n <= ((int64_t)1 << 40)) return (int64_t)n;
        /* a tuning knob: ignored, but said (once per process), not silently */
        static int warned;
        if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
            fprintf(stderr, "sam2amg: SAM2AMG_DECODER_ROWS='%s' ignored (image rows per decoder "
                    "chunk: a number from 1 to 2^40); %s chunks of %lld rows\n", v, be->name,
                    (long long)dflt);
    }
    return dflt;
}

/* ---- life cycle ---- */

int decoder_init(decoder_t **out, weights_t *w, const sam2_config *cfg, backend_t *be,
                 int max_prompts, err_t *err) {
    *out = NULL;
    int C = cfg->d_model, S = cfg->image_size;
    if (C <= 0 || C % 16 != 0 || S <= 0 || S % 16 != 0)
        return err_set(err, ERR_INVALID, "decoder: d_model %d / image_size %d: need multiples of 16",
                       C, S);
    if (max_prompts <= 0)
        return err_set(err, ERR_INVALID, "decoder: max_prompts %d: must be positive", max_prompts);
    decoder_t *d = calloc(1, sizeof *d);
    if (!d) return err_set(err, ERR_NOMEM, "decoder: out of host memory");
    d->be = be;
    d->C = C, d->Ci = C / 2, d->C4 = C / 4, d->C8 = C / 8;
    d->S = S, d->hf = S / 16, d->HW = d->hf * d->hf;
    d->max_prompts = max_prompts;
    int64_t rows = decoder_chunk_rows(be);
    d->nc = chunk_prompts(rows, d->HW, max_prompts);
    d->Tm = DEC_OUT_TOKENS + DECODER_MAX_POINTS + 1;

    /* weights: count, allocate, fill, upload once */
    loader_t L = {.w = w, .err = err};
    int rc = load_all(d, &L);
    if (rc) goto fail;
    L.fill = 1;
    L.dstage = calloc(L.nd ? L.nd : 1, sizeof(float));
    d->hmem = calloc(L.nh ? L.nh : 1, sizeof(float));
    d->wmem = be->alloc(be, L.nd * sizeof(float));
    if (!L.dstage || !d->hmem || !d->wmem) {
        free(L.dstage);
        rc = err_set(err, ERR_NOMEM, "decoder: cannot allocate %zu bytes of weights",
                     L.nd * sizeof(float));
        goto fail;
    }
    L.dbase = d->wmem, L.hbase = d->hmem;
    L.nd = L.nh = 0;
    rc = load_all(d, &L);
    if (rc == 0) be->upload(be, d->wmem, L.dstage, L.nd * sizeof(float));
    be->sync(be);
    free(L.dstage);
    if (rc) goto fail;

    /* activation arena: per-image state + one chunk's buffers. A device's
     * chunk (decoder_chunk_rows) that does not fit is halved down to the
     * CPU's, so that a fixed --points-per-batch that fitted with those
     * chunks still loads on a small GPU (the batch planner sizes auto
     * batches with the device's chunk, so there this does not happen) */
    size_t sizes[DEC_N_BUFS];
    int nbuf;
    size_t total;
    for (;;) {
        nbuf = decoder_plan(C, S, max_prompts, rows, sizes);
        total = decoder_plan_bytes(sizes, nbuf);
        if (arena_init(&d->arena, be, total) == 0) break;
        int64_t less = rows;   /* the next smaller chunk that holds fewer prompts */
        while (less > DEC_ROWS && chunk_prompts(less, d->HW, max_prompts) == d->nc)
            less = less / 2 > DEC_ROWS ? less / 2 : DEC_ROWS;
        if (less >= rows || chunk_prompts(less, d->HW, max_prompts) == d->nc) {
            rc = err_set(err, ERR_NOMEM, "decoder: cannot allocate %zu bytes of activations",
                         total);
            goto fail;
        }
        rows = less;
        d->nc = chunk_prompts(rows, d->HW, max_prompts);
    }
    size_t HW = d->HW, nc = d->nc, NT = nc * d->Tm, Cz = C;
    arena_t *a = &d->arena;
    int k = 0;
    d->pe = arena_alloc(a, sizes[k++]);
    d->img = arena_alloc(a, sizes[k++]);
    d->fs0 = arena_alloc(a, sizes[k++]);
    d->fs1 = arena_alloc(a, sizes[k++]);
    d->k0 = arena_alloc(a, sizes[k++]);
    d->kq0 = arena_alloc(a, sizes[k++]);
    d->kv0 = arena_alloc(a, sizes[k++]);
    d->fpk = arena_alloc(a, sizes[k++]);
    d->mw = arena_alloc(a, sizes[k++]);
    d->kqv_img = arena_alloc(a, sizes[k++]);
    d->wkT[0] = arena_alloc(a, sizes[k++]);
    d->wkT[1] = arena_alloc(a, sizes[k++]);
    d->QX = arena_alloc(a, sizes[k++]);
    d->OX = arena_alloc(a, sizes[k++]);
    d->P = arena_alloc(a, sizes[k++]);
    d->Q = arena_alloc(a, sizes[k++]);
    d->QP = arena_alloc(a, sizes[k++]);
    d->SA = arena_alloc(a, sizes[k++]);
    d->TQ = arena_alloc(a, sizes[k++]);
    d->TV = arena_alloc(a, sizes[k++]);
    d->TO = arena_alloc(a, sizes[k++]);
    d->TMP = arena_alloc(a, sizes[k++]);
    d->H = arena_alloc(a, sizes[k++]);
    d->HH = arena_alloc(a, sizes[k++]);
    d->HYP = arena_alloc(a, sizes[k++]);
    d->IOU = arena_alloc(a, sizes[k++]);
    d->K = arena_alloc(a, sizes[k++]);
    d->KPE = arena_alloc(a, sizes[k++]);
    d->big = arena_alloc(a, sizes[k++]);
    d->MASKS = arena_alloc(a, sizes[k++]);
    d->wg1 = arena_alloc(a, sizes[k++]);
    d->c1 = arena_alloc(a, sizes[k++]);
    d->woc = arena_alloc(a, sizes[k++]);
    d->xc = arena_alloc(a, sizes[k++]);
    d->xx = arena_alloc(a, sizes[k++]);
    d->S1 = arena_alloc(a, sizes[k++]);
    d->U1 = arena_alloc(a, sizes[k++]);
    d->LRP = arena_alloc(a, sizes[k++]);
    d->LRE = arena_alloc(a, sizes[k++]);
    d->LRG = arena_alloc(a, sizes[k++]);
    d->LRB = arena_alloc(a, sizes[k++]);
    d->LRBB = arena_alloc(a, sizes[k++]);
    d->LRM = arena_alloc(a, sizes[k++]);
    d->RSTD = arena_alloc(a, sizes[k++]);
    d->wg2 = arena_alloc(a, sizes[k++]);
    d->c2 = arena_alloc(a, sizes[k++]);
    d->woc2 = arena_alloc(a, sizes[k++]);
    d->woc1 = arena_alloc(a, sizes[k++]);
    d->cc = arena_alloc(a, sizes[k++]);
    d->one = arena_alloc(a, sizes[k++]);
    d->zeros = arena_alloc(a, sizes[k++]);
    d->x2c = arena_alloc(a, sizes[k++]);
    d->xx2 = arena_alloc(a, sizes[k++]);
    d->S2 = arena_alloc(a, sizes[k++]);
    d->U2 = arena_alloc(a, sizes[k++]);
    d->LRQ = arena_alloc(a, sizes[k++]);
    d->LRD = arena_alloc(a, sizes[k++]);
    d->RSTD2 = arena_alloc(a, sizes[k++]);
    d->ones = arena_alloc(a, sizes[k++]);
    for (int i = 0; i < 3; i++) d->woT[i] = arena_alloc(a, sizes[k++]);
    for (int i = 0; i < 3; i++) d->XW[i] = arena_alloc(a, sizes[k++]);
    d->xcc = arena_alloc(a, sizes[k++]);
    CHECK(k == nbuf);

    {   /* ones: add_bcast's and lowrank's scale of 1 */
        size_t n1 = HW > nc ? HW : nc;
        float *h1 = malloc(n1 * sizeof(float));
        if (!h1) {
            rc = err_set(err, ERR_NOMEM, "decoder: out of host memory");
            goto fail;
        }
        for (size_t i = 0; i < n1; i++) h1[i] = 1.0f;
        be->upload(be, d->ones, h1, n1 * sizeof(float));
        be->sync(be);
        free(h1);
    }
    d->htok = malloc(NT * Cz * sizeof(float));
    d->hmask = malloc(nc * DEC_MASKS * 16 * HW * sizeof(float));
    d->hiou = malloc(nc * DEC_MASKS * sizeof(float));
    d->hlr = malloc((HW * Cz + 2 * Cz + HW) * sizeof(float));
    float *hpe = malloc(HW * Cz * sizeof(float));
    if (!d->htok || !d->hmask || !d->hiou || !d->hlr || !hpe) {
        free(hpe);
        rc = err_set(err, ERR_NOMEM, "decoder: out of host memory");
        goto fail;
    }
    /* dense PE: the encoding of every feature cell's centre, once */
    for (int i = 0; i < d->hf; i++)
        for (int j = 0; j < d->hf; j++)
            pe_encode(d, ((float)j + 0.5f) / (float)d->hf, ((float)i + 0.5f) / (float)d->hf,
                      hpe + ((size_t)i * d->hf + j) * C);
    be->upload(be, d->pe, hpe, HW * Cz * sizeof(float));
    /* what depends on weights and pe only: the final keys' PE term, and
     * layer 0's image-side projections composed with the mask embedding's
     * 1x1 conv (a mask input enters the image tokens through 16 channels) */
    be->linear(be, d->fpk, d->Ci, d->pe, C, d->f_k_w, d->f_k_b, HW, C, d->Ci);
    /* per head, Wk_h (dh, C) -> (C, dh): a (nh, dh, 1, C) NHWC -> NCHW transpose */
    int64_t dh = d->Ci / DEC_HEADS;
    be->nhwc_to_nchw(be, d->wkT[0], d->L[1].kq_w, DEC_HEADS, dh, 1, C);
    be->nhwc_to_nchw(be, d->wkT[1], d->f_k_w, DEC_HEADS, dh, 1, C);
    d->unproj = be->attention_dh_max == 0 || be->attention_dh_max >= C;
    be->bmm(be, d->mw, d->L[0].kq_w, d->md_w[4], 1, C, C, DEC_MASK_CHANS, 0);
    be->bmm(be, d->mw + Cz * DEC_MASK_CHANS, d->L[0].t2i_v_w, d->md_w[4], 1, d->Ci, C,
            DEC_MASK_CHANS, 0);
    d->lowrank = be->attention_probs && be->attention_scores && be->lowrank_rstd &&
                 be->row_affine;
    if (d->lowrank && (rc = lowrank_init(d, err))) {
        free(hpe);
        goto fail;
    }
    be->sync(be);
    free(hpe);
    *out = d;
    return 0;
fail:
    decoder_free(d);
    return rc;
}

void decoder_free(decoder_t *d) {
    if (!d) return;
    if (d->arena.base) arena_free(&d->arena);
    if (d->wmem) d->be->free(d->be, d->wmem);
    free(d->hmem);
    free(d->htok);
    free(d->hmask);
    free(d->hiou);
    free(d->hlr);
    free(d);
}

size_t decoder_peak_bytes(const decoder_t *d) { return d->arena.peak; }

/* add_bcast: y[b] = x[b] + s for b < n, x, y (n, rows, C), s (rows, C).
 * On the CPU one add per block (each spread over the threads); on a device
 * one call for all blocks, as row_affine's 1 * (x + s) (exact: the same
 * floats), instead of n launches. */
static void add_bcast(const decoder_t *d, float *y, const float *x, const float *s, int n,
                      size_t block) {
    backend_t *be = d->be;
    if (be->host_weights || !be->row_affine || n == 1) {
        for (int b = 0; b < n; b++) be->add(be, y + b * block, x + b * block, s, (int64_t)block);
        return;
    }
    be->row_affine(be, y, (int64_t)block, x, (int64_t)block, d->ones, s, 0, NULL, NULL, 0, n, 1,
                   (int64_t)block);
}

/* lowrank_set_image: the per-image part of the low-rank path: x = k0 + the
 * layer-0 image->token out_proj bias, each row centered (host, double),
 * and its squared norms (xc, xx); the same for xc times layer 0's norm4
 * gain (x2c, xx2); their projections S1, U1, S2, U2. */
static void lowrank_set_image(decoder_t *d) {
    backend_t *be = d->be;
    const int64_t C = d->C, Ci = d->Ci, HW = d->HW;
    float *h = d->hlr, *hb = h + HW * C, *hg = hb + C, *hxx = hg + C;
    be->download(be, h, d->k0, (size_t)HW * C * sizeof(float));
    be->download(be, hb, d->L[0].i2t_out_b, (size_t)C * sizeof(float));
    be->download(be, hg, d->L[0].norm_w[3], (size_t)C * sizeof(float));
    be->sync(be);
    for (int64_t i = 0; i < HW; i++) {
        float *x = h + i * C;
        double mean = 0.0, ss = 0.0;
        for (int64_t c = 0; c < C; c++) mean += (double)x[c] + hb[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            double v = (double)x[c] + hb[c] - mean;
            x[c] = (float)v;
            ss += v * v;
        }
        hxx[i] = (float)ss;
    }
    be->upload(be, d->xc, h, (size_t)HW * C * sizeof(float));
    be->upload(be, d->xx, hxx, (size_t)HW * sizeof(float));
    be->linear(be, d->XW[0], Ci, d->xc, C, d->woT[0], NULL, HW, C, Ci);
    be->sync(be);
    for (int64_t i = 0; i < HW; i++)
        for (int64_t c = 0; c < C; c++) h[i * C + c] *= hg[c];
    for (int64_t i = 0; i < HW; i++) {   /* x2c: xc times the gain, rows centered again */
        float *x = h + i * C;
        double mean = 0.0, ss = 0.0;
        for (int64_t c = 0; c < C; c++) mean += x[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            double v = (double)x[c] - mean;
            x[c] = (float)v;
            ss += v * v;
        }
        hxx[i] = (float)ss;
    }
    be->upload(be, d->x2c, h, (size_t)HW * C * sizeof(float));
    be->upload(be, d->xx2, hxx, (size_t)HW * sizeof(float));
    be->linear(be, d->XW[1], Ci, d->x2c, C, d->woT[1], NULL, HW, C, Ci);
    be->linear(be, d->XW[2], Ci, d->x2c, C, d->woT[2], NULL, HW, C, Ci);
    be->linear(be, d->xcc, 1, d->x2c, C, d->cc, NULL, HW, C, 1);
    be->linear(be, d->S1, 3 * Ci, d->xc, C, d->wg1, NULL, HW, C, 3 * Ci);
    be->memset0(be, d->U1, (size_t)HW * 3 * Ci * sizeof(float));
    be->linear(be, d->U1, 3 * Ci, d->pe, C, d->L[1].kq_w, NULL, HW, C, 2 * Ci);
    be->add_row(be, d->U1, d->U1, d->c1, HW, 3 * Ci);
    be->linear(be, d->S2, 2 * C, d->x2c, C, d->wg2, NULL, HW, C, 2 * C);
    be->memset0(be, d->U2, (size_t)HW * 2 * C * sizeof(float));
    be->linear(be, d->U2 + C, 2 * C, d->pe, C, d->f_k_w, NULL, HW, C, Ci);
    be->add_row(be, d->U2, d->U2, d->c2, HW, 2 * C);
    /* feat_s1, added right after dc1, joins dc1's shared term (pre-shuffle) */
    be->window_partition(be, d->big, d->fs1, 1, 2 * d->hf, 2 * d->hf, d->C4, 2);
    be->row_affine(be, d->U2, 2 * C, d->big, C, d->ones, d->c2, 0, NULL, NULL, 0, 1, HW, C);
    be->sync(be);
}

int decoder_set_image(decoder_t *d, const float *image_embed, const float *feat_s0,
                      const float *feat_s1, err_t *err) {
    (void)err;
    backend_t *be = d->be;
    int64_t C = d->C, HW = d->HW;
    be->copy(be, d->img, image_embed, (size_t)HW * C * sizeof(float));
    be->copy(be, d->fs0, feat_s0, (size_t)16 * HW * d->C8 * sizeof(float));
    be->copy(be, d->fs1, feat_s1, (size_t)4 * HW * d->C4 * sizeof(float));
    /* layer 0's image tokens without a mask input, and what reads them */
    be->add_row(be, d->k0, d->img, d->no_mask_dev, HW, C);
    be->add(be, d->KPE, d->k0, d->pe, HW * C);
    const layer_w *l0 = &d->L[0];
    be->linear(be, d->kq0, C, d->KPE, C, l0->kq_w, l0->kq_b, HW, C, C);
    be->linear(be, d->kv0, d->Ci, d->k0, C, l0->t2i_v_w, l0->t2i_v_b, HW, C, d->Ci);
    if (d->lowrank) lowrank_set_image(d);
    be->sync(be);
    d->have_image = 1;
    d->kqv_ready = 0;
    return 0;
}

/* ---- one chunk of prompts ---- */

/* attn_unprojected: token->image attention without projecting the image
 * tokens. Per head h, q_h . (Wk_h x_j + bk_h) = (Wk_h^T q_h) . x_j + const,
 * and sum_j p_j (Wv_h y_j + bv_h) = Wv_h (sum_j p_j y_j) + bv_h, so each
 * query is mapped back to image-token space (C wide), all nh heads become
 * separate query rows of one single-head attention over x (keys) and y
 * (values), and the result is projected by Wv_h: the per-prompt cost is
 * nh*T rows against HW keys instead of two (HW, C) x (C, Ci) projections.
 * The constant q_h . bk_h drops out of the softmax.
 * o (n*T, Ci) = attention output before out_proj; tq (n*T, Ci) row stride
 * ldq = projected token queries; wkT (nh, C, dh); wv (Ci, C), bv (Ci);
 * x, y (n, HW, C). */
static void attn_unprojected(decoder_t *d, float *o, const float *tq, int64_t ldq,
                             const float *wkT, const float *wv, const float *bv, const float *x,
                             const float *y, int64_t n, int64_t T, float scale) {
    backend_t *be = d->be;
    const int64_t C = d->C, Ci = d->Ci, nh = DEC_HEADS, dh = Ci / nh, NT = n * T;
    for (int64_t h = 0; h < nh; h++)
        be->linear(be, d->QX + h * C, nh * C, tq + h * dh, ldq, wkT + h * C * dh, NULL, NT, dh,
                   C);
    be->attention(be, d->OX, d->QX, C, x, C, y, C, n, T * nh, d->HW, 1, C, scale);
    for (int64_t h = 0; h < nh; h++)
        be->linear(be, o + h * dh, Ci, d->OX + h * C, nh * C, wv + h * dh * C, bv + h * dh, NT, C,
                   dh);
}

/* heads_linear: for every prompt b < n, head h and token t < T, row
 * b*rows + off + h*T + t of y (C wide) = the head's dh columns of TV row
 * b*T + t times w_h^T (w: nh blocks (C, dh)).
 * On a device, when the (nh, n*T, C) products fit KPE (nh*T <= HW; KPE is
 * free until lowrank_layer1 writes it last): one GEMM per head over every
 * prompt's tokens into KPE, then per head one row_affine of scale 1 (an
 * exact copy) of each prompt's T rows to their place: 2*nh calls for the
 * chunk. Otherwise the same products as one call per (prompt, head) or as
 * one per (head, token) over all prompts at once (row strides T*Ci and
 * rows*C), whichever makes fewer calls; the CPU always takes this way (its
 * results stay those of the fixtures' runs). */
static void heads_linear(decoder_t *d, float *y, int64_t rows, int64_t off, const float *w,
                         int64_t n, int64_t T) {
    backend_t *be = d->be;
    const int64_t C = d->C, Ci = d->Ci, nh = DEC_HEADS, dh = Ci / nh;
    if (!be->host_weights && be->row_affine && n > 1 && nh * T <= d->HW) {
        float *z = d->KPE;   /* (nh, n*T, C) */
        for (int64_t h = 0; h < nh; h++)
            be->linear(be, z + h * n * T * C, C, d->TV + h * dh, Ci, w + h * C * dh, NULL, n * T,
                       dh, C);
        for (int64_t h = 0; h < nh; h++)
            be->row_affine(be, y + (off + h * T) * C, rows * C, z + h * n * T * C, T * C, d->ones,
                           NULL, 0, NULL, NULL, 0, 1, n, T * C);
        return;
    }
    if (n <= T) {
        for (int64_t b = 0; b < n; b++)
            for (int64_t h = 0; h < nh; h++)
                be->linear(be, y + (b * rows + off + h * T) * C, C, d->TV + b * T * Ci + h * dh, Ci,
                           w + h * C * dh, NULL, T, dh, C);
        return;
    }
    for (int64_t h = 0; h < nh; h++)
        for (int64_t t = 0; t < T; t++)
            be->linear(be, y + (off + h * T + t) * C, rows * C, d->TV + t * Ci + h * dh, T * Ci,
                       w + h * C * dh, NULL, n, dh, C);
}

/* lowrank_rstd_of: the rows' 1/std from the Gram terms (lowrank_rstd), P
 * (n, HW, r) contiguous, e in LRE, the Gram matrices P's rows meet in LRBB
 * (n, r, r): fused where the backend has lowrank_rstd_gram (the (n*HW, r)
 * product P . LRBB never stored), else that product in LRG first */
static void lowrank_rstd_of(decoder_t *d, float *rstd, const float *xx, const float *s,
                            const float *P, int64_t n, int64_t r) {
    backend_t *be = d->be;
    const int64_t C = d->C, HW = d->HW;
    if (be->lowrank_rstd_gram &&
        be->lowrank_rstd_gram(be, rstd, xx, s, P, r, d->LRE, d->LRBB, n, HW, r, C, LN_EPS) == 0)
        return;
    be->bmm(be, d->LRG, P, d->LRBB, n, HW, r, r, 0);
    be->lowrank_rstd(be, rstd, xx, s, P, r, d->LRE, d->LRG, n, HW, r, C, LN_EPS);
}

/* kv16_takes: the backend reads token->image keys and values stored in
 * bf16 (be->attention_kv16's probe) for n prompts of T tokens */
static int kv16_takes(const decoder_t *d, int64_t n, int64_t T) {
    backend_t *be = d->be;
    return be->attention_kv16 &&
           be->attention_kv16(be, NULL, NULL, 0, NULL, 0, NULL, 0, n, T, d->HW, DEC_HEADS,
                              d->Ci / DEC_HEADS, 0.0f) == 0;
}

/* expand0: layer 1's projections of layer 0's output, fused (see
 * lowrank_layer0): columns [c0, c0 + ncol) of [t2i.k | i2t.q | t2i.v] into
 * y (row stride ldy; bf16 values with y16). 0, or -1: declined */
static int expand0(decoder_t *d, float *y, int64_t ldy, int64_t c0, int64_t ncol, int y16,
                   int64_t n, int64_t r) {
    backend_t *be = d->be;
    const int64_t N1 = 3 * d->Ci;
    return be->lowrank_expand(be, y, ldy, d->LRP, r, d->LRM + c0, N1, d->RSTD, d->S1 + c0, N1,
                              NULL, d->U1 + c0, N1, NULL, NULL, 0.0f, 0, n, d->HW, r, ncol, y16);
}

/* lowrank_layer0: the image-token end of layer 0 and the image-side
 * projections of layer 1 through the low-rank form. Layer 0's image->token
 * attention adds sum_h P_h V_h Wo_h^T to the shared x (k0 + out bias): with
 * P (HW, nh*T) the probabilities and B (nh*T, C) the rows V_h Wo_h^T, the
 * tokens before norm4 are x + P.B, and after centering each row
 * xc + P.Bc (Bc: B with centered rows, from the centered Wo of init). So
 *   |row|^2 = |xc|^2 + 2 P.(xc Bc^T) + P (Bc Bc^T) P^T  (lowrank_rstd),
 *   any projection W of the normed tokens = rstd (xc Wg^T + P (Bc Wg^T)) + c
 * with Wg = W diag(gain), c = W bias + b (row_affine, S1/U1 per image).
 * Writes big (n, HW, 3Ci) = [t2i.k | i2t.q | t2i.v] of layer 1 (PE included
 * where layer 1 adds it; with l1kv16, big holds (n, HW, Ci) i2t.q, then
 * (n, HW, 2Ci) bf16 [t2i.k | t2i.v]), and for lowrank_layer1 the first r rows of LRD
 * and the first r columns of LRQ. Reads TQ[:, Ci:] (the token keys) and TV
 * (the token values) of layer 0. */
static void lowrank_layer0(decoder_t *d, int64_t n, int64_t T, float scale) {
    backend_t *be = d->be;
    const int64_t C = d->C, Ci = d->Ci, HW = d->HW, nh = DEC_HEADS, dh = Ci / nh;
    const int64_t r = nh * T, N1 = 3 * Ci;
    float *L1 = d->big;
    /* every prompt's tokens against the one shared image (q item stride 0) */
    be->attention_probs(be, d->LRP, r, d->kq0 + Ci, C, 0, d->TQ + Ci, C, n, HW, T, nh, dh, scale);
    heads_linear(d, d->LRB, r, 0, d->woc, n, T);
    /* xc . B^T = (xc Woc) . V^T per head */
    be->attention_scores(be, d->LRE, r, d->XW[0], Ci, 0, d->TV, Ci, n, HW, T, nh, dh, 1.0f);
    be->bmm(be, d->LRBB, d->LRB, d->LRB, n, r, C, r, 1);
    lowrank_rstd_of(d, d->RSTD, d->xx, NULL, d->LRP, n, r);
    be->linear(be, d->LRM, N1, d->LRB, C, d->wg1, NULL, n * r, C, N1);
    /* fused, where layer 1's token->image attention can read its keys and
     * values in bf16 (attention_kv16): those two (n*HW, 2Ci) bf16 after the
     * (n*HW, Ci) float32 queries in big, three calls of Ci columns (the
     * queries stay float32 for attention_probs); else one call for all */
    uint16_t *kv = (uint16_t *)(L1 + n * HW * Ci);
    d->l1kv16 = be->lowrank_expand && kv16_takes(d, n, T) &&
                expand0(d, (float *)kv, 2 * Ci, 0, Ci, 1, n, r) == 0 &&
                expand0(d, (float *)(kv + Ci), 2 * Ci, 2 * Ci, Ci, 1, n, r) == 0 &&
                expand0(d, L1, Ci, Ci, Ci, 0, n, r) == 0;
    if (!d->l1kv16 && (!be->lowrank_expand || expand0(d, L1, N1, 0, N1, 0, n, r))) {
        be->bmm(be, L1, d->LRP, d->LRM, n, HW, r, N1, 0);
        be->row_affine(be, L1, N1, L1, N1, d->RSTD, d->S1, N1, NULL, d->U1, N1, n, HW, N1);
    }
    /* what lowrank_layer1 needs of layer 0: rows 0..r-1 of D (Bc times the
     * gain, centered again) and of Q (rstd P) */
    const int64_t q = 2 * r + 1;
    heads_linear(d, d->LRD, q, 0, d->woc2, n, T);
    be->row_affine(be, d->LRQ, q, d->LRP, r, d->RSTD, NULL, 0, NULL, NULL, 0, n, HW, r);
    /* and the first r columns of lowrank_layer1's x2c . D^T, while TV is
     * still layer 0's (LRE is free again: lowrank_rstd consumed it) */
    be->attention_scores(be, d->LRE, q, d->XW[2], Ci, 0, d->TV, Ci, n, HW, T, nh, dh, 1.0f);
}

/* expand_kpe: lowrank_layer1's fused final keys and values into KPE (row
 * stride C; bf16 values with y16). 0, or -1: declined */
static int expand_kpe(decoder_t *d, int64_t n, int64_t q, int y16) {
    backend_t *be = d->be;
    const int64_t C = d->C, N2 = 2 * C;
    return be->lowrank_expand(be, d->KPE, C, d->LRQ, q, d->LRM + C, N2, d->RSTD2, d->S2 + C, N2,
                              d->RSTD, d->U2 + C, N2, NULL, NULL, 0.0f, 0, n, d->HW, q, C, y16);
}

/* lowrank_layer1: the image-token end of layer 1 and every later use of its
 * output, through the low-rank form again. Layer 1's output tokens before
 * norm4, centered, are rstd0 x2c + Q.D with Q = [rstd0 P0 | P1 | 1] (the
 * probabilities of both layers, LRQ: layer 0's block from lowrank_layer0,
 * layer 1's written by run_chunk) and D = [B0c gain | B1c | cc] (LRD), so
 *   |row|^2 = rstd0^2 |x2c|^2 + 2 rstd0 Q.(x2c D^T) + Q (D D^T) Q^T
 * and each later projection (dc1 as a per-pixel (4 C4, C) map, final keys
 * with PE, final values) is rstd1 (rstd0 S2 + Q (D Wg^T)) + U2. Reads TV
 * (layer 1's token values). Writes K (n, HW, 4 C4) = dc1 before the pixel
 * shuffle (fused: the upscaling's input, see up_done), KPE (n, HW, 2Ci) =
 * [final k | final v] (in bf16, row stride C bf16 values, when kpe16). */
static void lowrank_layer1(decoder_t *d, int64_t n, int64_t T) {
    backend_t *be = d->be;
    const int64_t C = d->C, Ci = d->Ci, HW = d->HW, nh = DEC_HEADS, dh = Ci / nh;
    const int64_t r = nh * T, q = 2 * r + 1, N2 = 2 * C;
    float *OUT = d->big;   /* (n, HW, 2C): layer 1's projections are consumed */
    heads_linear(d, d->LRD, q, r, d->woc1, n, T);
    if (d->lrd_cc_T != T) {   /* row 2r of every prompt's D is cc: written once per T */
        for (int64_t b = 0; b < d->nc; b++)
            be->copy(be, d->LRD + (b * q + 2 * r) * C, d->cc, (size_t)C * sizeof(float));
        d->lrd_cc_T = T;
    }
    be->row_affine(be, d->LRQ + 2 * r, q, d->LRQ + 2 * r, q, d->zeros, NULL, 0, NULL, d->one, 0,
                   n, HW, 1);
    /* x2c . D^T: columns 0..r-1 came from lowrank_layer0; r..2r-1 per
     * head from x2c Woc1 and layer 1's values; 2r is x2c . cc (per image) */
    be->attention_scores(be, d->LRE + r, q, d->XW[1], Ci, 0, d->TV, Ci, n, HW, T, nh, dh, 1.0f);
    be->row_affine(be, d->LRE + 2 * r, q, d->zeros, 1, d->zeros, NULL, 0, NULL, d->xcc, 1, n, HW,
                   1);
    be->bmm(be, d->LRBB, d->LRD, d->LRD, n, q, C, q, 1);
    lowrank_rstd_of(d, d->RSTD2, d->xx2, d->RSTD, d->LRQ, n, q);
    be->linear(be, d->LRM, N2, d->LRD, C, d->wg2, NULL, n * q, C, N2);
    /* fused (lowrank_expand): dc1's columns go through ln1 and GELU to the
     * upscaling's (n, 2hf, 2hf, C4) map in K directly, the final keys and
     * values to KPE; else the product, the affine maps, and run_chunk's tail
     * does the rest */
    d->kpe16 = 0;
    d->up_done = be->lowrank_expand &&
                 be->lowrank_expand(be, d->K, C, d->LRQ, q, d->LRM, N2, d->RSTD2, d->S2, N2,
                                    d->RSTD, d->U2, N2, d->ln1_w, d->ln1_b, LN2D_EPS, d->hf, n,
                                    HW, q, C, 0) == 0;
    /* the final keys and values, in bf16 where the final attention can read
     * them so (the bits it would round float32 ones to): half the bytes
     * written here and read there */
    if (d->up_done) {
        d->kpe16 = kv16_takes(d, n, T) && expand_kpe(d, n, q, 1) == 0;
        if (!d->kpe16) d->up_done = expand_kpe(d, n, q, 0) == 0;
    }
    if (d->up_done) return;
    be->bmm(be, OUT, d->LRQ, d->LRM, n, HW, q, N2, 0);
    be->row_affine(be, d->K, C, OUT, N2, d->RSTD2, d->S2, N2, d->RSTD, d->U2, N2, n, HW, C);
    be->row_affine(be, d->KPE, C, OUT + C, N2, d->RSTD2, d->S2 + C, N2, d->RSTD, d->U2 + C, N2,
                   n, HW, C);
}

/* run_chunk: prompts [b0, b0+n) of p; writes low_res (n,k,4hf,4hf) and
 * iou (n,k) host, k = 3 (multimask) or 1; with low_dev (backend memory,
 * multimask only) the logits go there instead of low_res. */
static void run_chunk(decoder_t *d, const sam2_prompts *p, int b0, int n, float *low_res,
                      float *low_dev, float *iou) {
    backend_t *be = d->be;
    const int64_t C = d->C, Ci = d->Ci, C4 = d->C4, C8 = d->C8, HW = d->HW, hf = d->hf;
    const int64_t T = DEC_OUT_TOKENS + (p->n_pts > 0 ? p->n_pts + 1 : 0);
    const int64_t NT = (int64_t)n * T, R = (int64_t)n * HW, L4 = 16 * HW;
    const int64_t nh = DEC_HEADS;
    const float sc_self = 1.0f / sqrtf((float)(C / nh)), sc_x = 1.0f / sqrtf((float)(Ci / nh));
    const int shared = p->mask_input == NULL;
    const int lr = shared && d->lowrank && nh * T <= DEC_LR_RANK;   /* lowrank_layer0 */
    /* big: layer 0 with a mask input: KQV (R, C+Ci) [t2i.k | i2t.q | t2i.v];
     * later layers: KQ (R,C) [t2i.k | i2t.q] then KV (R,Ci); AO (R,Ci) after */
    float *KQ = d->big, *KV = d->big + R * C, *AO = KV + R * Ci;

    tokens_build(d, p, b0, n, (int)T, d->htok);
    be->upload(be, d->P, d->htok, (size_t)NT * C * sizeof(float));
    be->copy(be, d->Q, d->P, (size_t)NT * C * sizeof(float));

    if (!shared) {
        /* dense prompt = mask downscaling of the mask input, per prompt:
         * (n,4hf,4hf,1) -> (n,2hf,2hf,4) -> (n,hf,hf,16) -> (n,hf,hf,C) */
        int64_t m4 = DEC_MASK_CHANS / 4, m16 = DEC_MASK_CHANS;
        float *min = d->big, *m1 = min + 16 * R, *m2 = d->KPE;
        be->upload(be, min, p->mask_input + (size_t)b0 * L4, (size_t)n * L4 * sizeof(float));
        be->conv2d(be, m1, min, d->md_w[0], d->md_b[0], n, 4 * hf, 4 * hf, 1, m4, 2, 2, 2, 0);
        be->layer_norm(be, m1, m1, d->md_w[1], d->md_b[1], n * 4 * HW, m4, LN2D_EPS);
        be->gelu(be, m1, m1, n * 4 * HW * m4);
        be->conv2d(be, m2, m1, d->md_w[2], d->md_b[2], n, 2 * hf, 2 * hf, m4, m16, 2, 2, 2, 0);
        be->layer_norm(be, m2, m2, d->md_w[3], d->md_b[3], R, m16, LN2D_EPS);
        be->gelu(be, m2, m2, R * m16);
        be->linear(be, d->K, C, m2, m16, d->md_w[4], d->md_b[4], R, m16, C);
        add_bcast(d, d->K, d->K, d->img, n, (size_t)HW * C);
        /* layer 0's image-side projections: image part once per image,
         * mask part through the 16 mask channels (K=16, not K=C) */
        if (!d->kqv_ready) {
            const layer_w *l0 = &d->L[0];
            float *tp = d->big;   /* (HW, C) scratch: the mask path's input is consumed */
            be->add_row(be, tp, d->img, d->md_b[4], HW, C);
            be->linear(be, d->kqv_img + C, C + Ci, tp, C, l0->t2i_v_w, l0->t2i_v_b, HW, C, Ci);
            be->add(be, tp, tp, d->pe, HW * C);
            be->linear(be, d->kqv_img, C + Ci, tp, C, l0->kq_w, l0->kq_b, HW, C, C);
            d->kqv_ready = 1;
        }
        be->linear(be, KQ, C + Ci, m2, m16, d->mw, NULL, R, m16, C + Ci);
        add_bcast(d, KQ, KQ, d->kqv_img, n, (size_t)HW * (C + Ci));
    }

    for (int l = 0; l < 2; l++) {
        const layer_w *lw = &d->L[l];
        const int sh = shared && l == 0;   /* image tokens still the shared k0 */
        const int mk = !shared && l == 0;  /* KQV already projected (mask input) */
        const int l1lr = lr && l == 1;     /* layer 1's projections came from lowrank_layer0 */
        /* image-side queries of image->token attention: (n, HW, Ci) rows of ld */
        const int kv16 = l1lr && d->l1kv16;   /* big: queries, then bf16 keys and values */
        const float *iq = sh ? d->kq0 + Ci : kv16 ? d->big : l1lr ? d->big + Ci : KQ + Ci;
        const int64_t ldk = mk ? C + Ci : kv16 ? Ci : l1lr ? 3 * Ci : C;
        const float *kv = mk ? KQ + C : KV;

        /* token self-attention (layer 0: no PE and no residual) */
        if (l == 0) {
            be->linear(be, d->SA, 3 * C, d->Q, C, lw->sa_qkv_w, lw->sa_qkv_b, NT, C, 3 * C);
        } else {
            be->add(be, d->QP, d->Q, d->P, NT * C);
            be->linear(be, d->SA, 3 * C, d->QP, C, lw->sa_qkv_w, lw->sa_qkv_b, NT, C, 2 * C);
            be->linear(be, d->SA + 2 * C, 3 * C, d->Q, C, lw->sa_qkv_w + 2 * C * C,
                       lw->sa_qkv_b + 2 * C, NT, C, C);
        }
        be->attention(be, d->TO, d->SA, 3 * C, d->SA + C, 3 * C, d->SA + 2 * C, 3 * C, n, T, T,
                      nh, C / nh, sc_self);
        if (l == 0) {
            be->linear(be, d->Q, C, d->TO, C, lw->sa_out_w, lw->sa_out_b, NT, C, C);
        } else {
            be->linear(be, d->TMP, C, d->TO, C, lw->sa_out_w, lw->sa_out_b, NT, C, C);
            be->add(be, d->Q, d->Q, d->TMP, NT * C);
        }
        be->layer_norm(be, d->Q, d->Q, lw->norm_w[0], lw->norm_b[0], NT, C, LN_EPS);

        /* tokens -> image */
        be->add(be, d->QP, d->Q, d->P, NT * C);
        be->linear(be, d->TQ, C, d->QP, C, lw->tq_w, lw->tq_b, NT, C, Ci);
        if (sh) {
            /* every prompt reads the same keys: one attention, n*T queries */
            be->attention(be, d->TO, d->TQ, C, d->kq0, C, d->kv0, Ci, 1, NT, HW, nh, Ci / nh,
                          sc_x);
        } else if (kv16) {
            const uint16_t *kv = (const uint16_t *)(d->big + R * Ci);
            CHECK(be->attention_kv16(be, d->TO, d->TQ, C, kv, 2 * Ci, kv + Ci, 2 * Ci, n, T, HW,
                                     nh, Ci / nh, sc_x) == 0);
        } else if (l1lr) {
            be->attention(be, d->TO, d->TQ, C, d->big, 3 * Ci, d->big + 2 * Ci, 3 * Ci, n, T, HW,
                          nh, Ci / nh, sc_x);
        } else {
            if (!mk) add_bcast(d, d->KPE, d->K, d->pe, n, (size_t)HW * C);
            if (!mk && d->unproj) {
                /* only image->token queries are projected here */
                be->linear(be, KQ + Ci, C, d->KPE, C, lw->kq_w + Ci * C, lw->kq_b + Ci, R, C,
                           Ci);
                attn_unprojected(d, d->TO, d->TQ, C, d->wkT[0], lw->t2i_v_w, lw->t2i_v_b,
                                 d->KPE, d->K, n, T, sc_x);
            } else {
                if (!mk) {
                    be->linear(be, KQ, C, d->KPE, C, lw->kq_w, lw->kq_b, R, C, C);
                    be->linear(be, KV, Ci, d->K, C, lw->t2i_v_w, lw->t2i_v_b, R, C, Ci);
                }
                be->attention(be, d->TO, d->TQ, C, KQ, ldk, kv, mk ? ldk : Ci, n, T, HW, nh,
                              Ci / nh, sc_x);
            }
        }
        be->linear(be, d->TMP, C, d->TO, Ci, lw->t2i_out_w, lw->t2i_out_b, NT, Ci, C);
        be->add(be, d->Q, d->Q, d->TMP, NT * C);
        be->layer_norm(be, d->Q, d->Q, lw->norm_w[1], lw->norm_b[1], NT, C, LN_EPS);

        /* MLP (ReLU) */
        be->linear(be, d->H, DEC_MLP, d->Q, C, lw->mlp1_w, lw->mlp1_b, NT, C, DEC_MLP);
        be->relu(be, d->H, d->H, NT * DEC_MLP);
        be->linear(be, d->TMP, C, d->H, DEC_MLP, lw->mlp2_w, lw->mlp2_b, NT, DEC_MLP, C);
        be->add(be, d->Q, d->Q, d->TMP, NT * C);
        be->layer_norm(be, d->Q, d->Q, lw->norm_w[2], lw->norm_b[2], NT, C, LN_EPS);

        /* image -> tokens: queries are the image tokens (+PE), computed above
         * in KQ[:, Ci:] (or kq0 when shared: the same queries for every
         * prompt, so one attention call per prompt against its own tokens) */
        be->add(be, d->QP, d->Q, d->P, NT * C);
        be->linear(be, d->TQ + Ci, C, d->QP, C, lw->tq_w + Ci * C, lw->tq_b + Ci, NT, C, Ci);
        be->linear(be, d->TV, Ci, d->Q, C, lw->i2t_v_w, lw->i2t_v_b, NT, C, Ci);
        if (lr && l == 0) {
            lowrank_layer0(d, n, T, sc_x);
            continue;
        }
        if (l1lr) {
            be->attention_probs(be, d->LRQ + nh * T, 2 * nh * T + 1, iq, ldk, HW * ldk,
                                d->TQ + Ci, C, n, HW, T, nh, Ci / nh, sc_x);
            lowrank_layer1(d, n, T);
            continue;
        }
        if (sh)
            for (int b = 0; b < n; b++)
                be->attention(be, AO + (size_t)b * HW * Ci, iq, C, d->TQ + Ci + (size_t)b * T * C,
                              C, d->TV + (size_t)b * T * Ci, Ci, 1, HW, T, nh, Ci / nh, sc_x);
        else
            be->attention(be, AO, iq, ldk, d->TQ + Ci, C, d->TV, Ci, n, HW, T, nh, Ci / nh,
                          sc_x);
        if (sh) {
            be->linear(be, d->K, C, AO, Ci, lw->i2t_out_w, lw->i2t_out_b, R, Ci, C);
            add_bcast(d, d->K, d->K, d->k0, n, (size_t)HW * C);
        } else {
            be->linear(be, d->KPE, C, AO, Ci, lw->i2t_out_w, lw->i2t_out_b, R, Ci, C);
            be->add(be, d->K, d->K, d->KPE, R * C);
        }
        be->layer_norm(be, d->K, d->K, lw->norm_w[3], lw->norm_b[3], R, C, LN_EPS);
    }

    /* final tokens -> image attention */
    be->add(be, d->QP, d->Q, d->P, NT * C);
    be->linear(be, d->TQ, Ci, d->QP, C, d->f_q_w, d->f_q_b, NT, C, Ci);
    if (lr && d->kpe16) {   /* keys and values from lowrank_layer1, in bf16 */
        const uint16_t *kv = (const uint16_t *)d->KPE;
        CHECK(be->attention_kv16(be, d->TO, d->TQ, Ci, kv, C, kv + Ci, C, n, T, HW, nh, Ci / nh,
                                 sc_x) == 0);
    } else if (lr) {   /* keys and values from lowrank_layer1 */
        be->attention(be, d->TO, d->TQ, Ci, d->KPE, C, d->KPE + Ci, C, n, T, HW, nh, Ci / nh, sc_x);
    } else if (d->unproj) {
        add_bcast(d, d->KPE, d->K, d->pe, n, (size_t)HW * C);
        attn_unprojected(d, d->TO, d->TQ, Ci, d->wkT[1], d->f_v_w, d->f_v_b, d->KPE, d->K, n, T,
                         sc_x);
    } else {
        be->linear(be, KQ, Ci, d->K, C, d->f_k_w, NULL, R, C, Ci);
        add_bcast(d, KQ, KQ, d->fpk, n, (size_t)HW * Ci);   /* + (pe Wk^T + bk) */
        be->linear(be, KV, Ci, d->K, C, d->f_v_w, d->f_v_b, R, C, Ci);
        be->attention(be, d->TO, d->TQ, Ci, KQ, Ci, KV, Ci, n, T, HW, nh, Ci / nh, sc_x);
    }
    be->linear(be, d->TMP, C, d->TO, Ci, d->f_out_w, d->f_out_b, NT, Ci, C);
    be->add(be, d->Q, d->Q, d->TMP, NT * C);
    be->layer_norm(be, d->Q, d->Q, d->f_norm_w, d->f_norm_b, NT, C, LN_EPS);

    /* upscaling: gelu(ln(dc1(K) + feat_s1)) -> gelu(dc2(.) + feat_s0) */
    float *up1 = d->KPE, *up2 = d->big;   /* (n,2hf,2hf,C4), (n,4hf,4hf,C8) */
    if (lr && d->up_done) {   /* lowrank_layer1 wrote gelu(ln(.)) to K, shuffled */
        up1 = d->K;
    } else {
        if (lr)   /* dc1 per pixel came from lowrank_layer1: shuffle the 2x2 outputs */
            be->window_unpartition(be, up1, d->K, n, 2 * hf, 2 * hf, C4, 2);
        else
            be->conv_transpose2x2(be, up1, d->K, d->dc1_w, d->dc1_b, n, hf, hf, C, C4);
        if (!lr) add_bcast(d, up1, up1, d->fs1, n, (size_t)4 * HW * C4);
        be->layer_norm(be, up1, up1, d->ln1_w, d->ln1_b, 4 * R, C4, LN2D_EPS);
        be->gelu(be, up1, up1, 4 * R * C4);
    }

    /* hypernetwork MLPs on the mask tokens that are wanted, then masks */
    const int first = p->multimask ? 1 : 0, k = DEC_MASKS - first;
    float *h1 = d->HH, *h2 = d->HH + (size_t)d->nc * (C > DEC_IOU_HIDDEN ? C : DEC_IOU_HIDDEN);
    for (int i = first; i < DEC_MASKS; i++) {
        const float *tok = d->Q + (2 + i) * C;   /* row 2+i of each prompt */
        be->linear(be, h1, C, tok, T * C, d->hyp_w[i][0], d->hyp_b[i][0], n, C, C);
        be->relu(be, h1, h1, n * C);
        be->linear(be, h2, C, h1, C, d->hyp_w[i][1], d->hyp_b[i][1], n, C, C);
        be->relu(be, h2, h2, n * C);
        be->linear(be, d->HYP + (i - first) * C8, k * C8, h2, C, d->hyp_w[i][2],
                   d->hyp_b[i][2], n, C, C8);
    }
    float *masks = low_dev ? low_dev : d->MASKS;
    if (be->upscale2_masks) {   /* the (n,4hf,4hf,C8) map is never stored */
        be->upscale2_masks(be, masks, up1, d->dc2_w, d->dc2_b, d->fs0, d->HYP, n, 2 * hf,
                           2 * hf, C4, C8, k);
    } else {
        be->conv_transpose2x2(be, up2, up1, d->dc2_w, d->dc2_b, n, 2 * hf, 2 * hf, C4, C8);
        add_bcast(d, up2, up2, d->fs0, n, (size_t)L4 * C8);
        be->gelu(be, up2, up2, 16 * R * C8);
        be->bmm(be, masks, d->HYP, up2, n, k, C8, L4, 1);
    }

    /* IoU head on token 1 */
    const int precision = be->precision;   /* float32 whatever the backend's: the */
    be->precision = BACKEND_FP32;          /* scores rank and filter the masks */
    be->linear(be, h1, DEC_IOU_HIDDEN, d->Q + C, T * C, d->iou_w[0], d->iou_b[0], n, C,
               DEC_IOU_HIDDEN);
    be->relu(be, h1, h1, n * DEC_IOU_HIDDEN);
    be->linear(be, h2, DEC_IOU_HIDDEN, h1, DEC_IOU_HIDDEN, d->iou_w[1], d->iou_b[1], n,
               DEC_IOU_HIDDEN, DEC_IOU_HIDDEN);
    be->relu(be, h2, h2, n * DEC_IOU_HIDDEN);
    be->linear(be, d->IOU, DEC_MASKS, h2, DEC_IOU_HIDDEN, d->iou_w[2], d->iou_b[2], n,
               DEC_IOU_HIDDEN, DEC_MASKS);
    be->precision = precision;

    be->download(be, d->hiou, d->IOU, (size_t)n * DEC_MASKS * sizeof(float));
    if (low_dev)
        ;   /* the caller reads them on the device */
    else if (p->multimask)
        be->download(be, low_res, d->MASKS, (size_t)n * 3 * L4 * sizeof(float));
    else
        be->download(be, d->hmask, d->MASKS, (size_t)n * DEC_MASKS * L4 * sizeof(float));
    be->sync(be);

    for (int b = 0; b < n; b++) {
        float s[DEC_MASKS];
        for (int i = 0; i < DEC_MASKS; i++) s[i] = 1.0f / (1.0f + expf(-d->hiou[b * DEC_MASKS + i]));
        if (p->multimask) {
            for (int i = 0; i < 3; i++) iou[b * 3 + i] = s[1 + i];
            continue;
        }
        /* single mask: token 0 unless its stability is below the threshold,
         * then the multimask token with the best predicted IoU */
        const float *m0 = d->hmask + (size_t)b * DEC_MASKS * L4;
        int64_t ai = 0, au = 0;
        for (int64_t q = 0; q < L4; q++) {
            ai += m0[q] > STAB_DELTA;
            au += m0[q] > -STAB_DELTA;
        }
        float stab = au > 0 ? (float)ai / (float)au : 1.0f;
        int pick = 0;
        if (!(stab >= STAB_THRESH)) {
            pick = 1;
            for (int i = 2; i < DEC_MASKS; i++)
                if (s[i] > s[pick]) pick = i;
        }
        memcpy(low_res + (size_t)b * L4, m0 + (size_t)pick * L4, (size_t)L4 * sizeof(float));
        iou[b] = s[pick];
    }
}

int decoder_run(decoder_t *d, const sam2_prompts *p, float *low_res, float *low_dev, float *iou,
                err_t *err) {
    if (!d->have_image) return err_set(err, ERR_INVALID, "decoder: no image set");
    if (low_dev && !p->multimask)
        return err_set(err, ERR_INVALID, "decoder: logits left on the device need multimask");
    if (p->n < 0 || p->n > d->max_prompts)
        return err_set(err, ERR_INVALID, "decoder: %d prompts, at most %d per call", p->n,
                       d->max_prompts);
    if (p->n_pts < 0 || p->n_pts > DECODER_MAX_POINTS)
        return err_set(err, ERR_INVALID, "decoder: %d points per prompt, at most %d", p->n_pts,
                       DECODER_MAX_POINTS);
    if (p->n_pts == 0 && !p->mask_input)
        return err_set(err, ERR_INVALID, "decoder: a prompt needs points or a mask input");
    for (int64_t i = 0; i < (int64_t)p->n * p->n_pts; i++)
        if (p->labels[i] < -1 || p->labels[i] > 3)
            return err_set(err, ERR_INVALID, "decoder: point label %d (expected -1, 0, 1, 2 or 3)",
                           (int)p->labels[i]);
    int k = p->multimask ? 3 : 1;
    size_t L4 = (size_t)16 * d->HW;
    for (int b0 = 0; b0 < p->n; b0 += d->nc) {
        int n = p->n - b0 < d->nc ? p->n - b0 : d->nc;
        run_chunk(d, p, b0, n, low_dev ? NULL : low_res + (size_t)b0 * k * L4,
                  low_dev ? low_dev + (size_t)b0 * k * L4 : NULL, iou + (size_t)b0 * k);
    }
    return 0;
}
