/* ops_ref.h: naive, single-threaded reference versions of every backend op.
 *
 * Each function computes exactly what the matching member of struct backend
 * (include/backend.h) documents, on host memory, written straight from the
 * definition with double accumulators (llm.c's matmul_forward_naive). They
 * are the ground truth of tests/test_ops.c and of the CUDA parity test, and
 * the "checked before timed" baseline of bench/bench_ops.c. Slow on purpose:
 * never call them from the model.
 */
#ifndef SAM2AMG_OPS_REF_H
#define SAM2AMG_OPS_REF_H

#include <stdint.h>

/* ops_ref_set_bf16: 1 = bf16 mode for the matrix ops (linear, bmm,
 * attention, attention_probs, conv2d, conv_transpose2x2): their product
 * operands are rounded to bfloat16 first, as bf16 tensor cores see them;
 * 0 = exact (the default). Process-wide; not thread-safe. */
void  ops_ref_set_bf16(int on);
/* ops_ref_bf16_round: f rounded to the nearest bfloat16 (ties to even),
 * returned as a float; Inf and NaN unchanged. */
float ops_ref_bf16_round(float f);

/* y (M,N), row stride ldy = x (M,K), row stride ldx . w (N,K)^T + b (N|NULL) */
void ops_ref_linear(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w,
                    const float *b, int64_t M, int64_t K, int64_t N);
/* c (batch,M,N) = a (batch,M,K) . b (batch,K,N)  [or b (batch,N,K)^T] */
void ops_ref_bmm(float *c, const float *a, const float *b, int64_t batch, int64_t M,
                 int64_t K, int64_t N, int trans_b);
/* o (B,Lq,nh*dh) = softmax(scale q k^T) v per (batch, head); q,k,v (B,L,nh,dh)
 * with token row strides ldq, ldk, ldv floats. */
void ops_ref_attention(float *o, const float *q, int64_t ldq, const float *k, int64_t ldk,
                       const float *v, int64_t ldv, int64_t B, int64_t Lq, int64_t Lk,
                       int64_t nh, int64_t dh, float scale);
/* y (M,C) = (x - mean) / sqrt(biased var + eps) * w + b, per row; y may alias x */
void ops_ref_layer_norm(float *y, const float *x, const float *w, const float *b, int64_t M,
                        int64_t C, float eps);
/* y = 0.5 x (1 + erf(x / sqrt 2)) over n floats */
void ops_ref_gelu(float *y, const float *x, int64_t n);
/* y = max(x, 0) over n floats */
void ops_ref_relu(float *y, const float *x, int64_t n);
/* y = a + b over n floats */
void ops_ref_add(float *y, const float *a, const float *b, int64_t n);
/* y (M,C) = x (M,C) + row (C) */
void ops_ref_add_row(float *y, const float *x, const float *row, int64_t M, int64_t C);
/* y = alpha x + beta y over n floats */
void ops_ref_scale_add(float *y, const float *x, float alpha, float beta, int64_t n);
/* x (B,H,W,Cin) -> y (B,Ho,Wo,Cout); w (Cout,Cin,kh,kw), b (Cout|NULL) */
void ops_ref_conv2d(float *y, const float *x, const float *w, const float *b, int64_t B,
                    int64_t H, int64_t W, int64_t Cin, int64_t Cout, int kh, int kw,
                    int stride, int pad);
/* x (B,H,W,Cin) -> y (B,2H,2W,Cout); w (Cin,Cout,2,2), b (Cout|NULL) */
void ops_ref_conv_transpose2x2(float *y, const float *x, const float *w, const float *b,
                               int64_t B, int64_t H, int64_t W, int64_t Cin, int64_t Cout);
/* x (B,H,W,C) -> y (B,H/2,W/2,C), max over 2x2 blocks (floor for odd sizes) */
void ops_ref_maxpool2x2(float *y, const float *x, int64_t B, int64_t H, int64_t W, int64_t C);
/* x (B,H,W,C) -> y (B,2H,2W,C) */
void ops_ref_upsample_nearest2x(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                                int64_t C);
/* x (B,H,W,C) -> y (B*nwh*nww,ws,ws,C), zero padding; and back */
void ops_ref_window_partition(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                              int64_t C, int64_t ws);
void ops_ref_window_unpartition(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                                int64_t C, int64_t ws);
/* x (B,H,W,C) -> y (B,C,H,W); and x (B,C,H,W) -> y (B,H,W,C) */
void ops_ref_nhwc_to_nchw(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                          int64_t C);
void ops_ref_nchw_to_nhwc(float *y, const float *x, int64_t B, int64_t C, int64_t H,
                          int64_t W);
/* x (N,Hi,Wi) -> y (N,Ho,Wo), bilinear, align_corners=False, no antialias */
void ops_ref_resize_bilinear(float *y, const float *x, int64_t N, int64_t Hi, int64_t Wi,
                             int64_t Ho, int64_t Wo);

/* p (B,Lq) rows (stride ldp) of nh*Lk softmax(scale q.k) probabilities,
 * head-major; q's item b at q + b*sq (0: shared), k's items packed */
void ops_ref_attention_probs(float *p, int64_t ldp, const float *q, int64_t ldq, int64_t sq,
                             const float *k, int64_t ldk, int64_t B, int64_t Lq, int64_t Lk,
                             int64_t nh, int64_t dh, float scale);
void ops_ref_attention_scores(float *p, int64_t ldp, const float *q, int64_t ldq, int64_t sq,
                              const float *k, int64_t ldk, int64_t B, int64_t Lq, int64_t Lk,
                              int64_t nh, int64_t dh, float scale);
/* rstd (B*Mx) = 1/sqrt(max(0, (s^2 xx + p.(2 s e + pg)) / C) + eps) per row (s NULL: 1) */
void ops_ref_lowrank_rstd(float *rstd, const float *xx, const float *s, const float *p,
                          int64_t ldp, const float *e, const float *pg, int64_t B, int64_t Mx,
                          int64_t r, int64_t C, float eps);
/* y[j,:] = a[j] (x[j,:] + sa[j] s[i,:]) + u[i,:], j = b*M+i; s, sa, u NULL-able,
 * ld 0 = one row */
void ops_ref_row_affine(float *y, int64_t ldy, const float *x, int64_t ldx, const float *a,
                        const float *s, int64_t lds, const float *sa, const float *u,
                        int64_t ldu, int64_t B, int64_t M, int64_t N);
/* backend.h lowrank_rstd_gram: pg = p . bb_b per row (rounded to float as a
 * bmm's output), then ops_ref_lowrank_rstd */
void ops_ref_lowrank_rstd_gram(float *rstd, const float *xx, const float *s, const float *p,
                               int64_t ldp, const float *e, const float *bb, int64_t B,
                               int64_t Mx, int64_t r, int64_t C, float eps);
/* backend.h lowrank_expand: y = row_affine(bmm(p, m)) per item, and with
 * ln_w each row's 4 groups of G = N/4 LayerNorm'ed, GELU'd and written
 * pixel-shuffled to y (B, 2M/Wg, 2Wg, G) */
void ops_ref_lowrank_expand(float *y, int64_t ldy, const float *p, int64_t ldp, const float *m,
                            int64_t ldm, const float *a, const float *s, int64_t lds,
                            const float *sa, const float *u, int64_t ldu, const float *ln_w,
                            const float *ln_b, float eps, int64_t Wg, int64_t B, int64_t M,
                            int64_t K, int64_t N);
/* masks (n,nm,2H,2W) = hyper (n,nm,Cout) . gelu(conv_transpose2x2(x (n,H,W,Cin), w, b)
 * + skip (2H,2W,Cout) or NULL), per pixel (backend.h upscale2_masks) */
void ops_ref_upscale2_masks(float *masks, const float *x, const float *w, const float *b,
                            const float *skip, const float *hyper, int64_t n, int64_t H,
                            int64_t W, int64_t Cin, int64_t Cout, int64_t nm);

#endif
