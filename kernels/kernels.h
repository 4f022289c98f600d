/* kernels.h: the CUDA kernel launchers behind the CUDA backend.
 *
 * Each kernels/<family>.cu holds `static __global__` kernels and one
 * extern "C" launcher per op that checks its shapes (a bad shape is a bug:
 * CHECK aborts), launches on the given stream and checks the launch with
 * cudaGetLastError. Launchers never synchronize and never allocate: the
 * caller (src/backend_cuda.c) owns the stream and any scratch memory.
 * All pointers are device memory; all tensors float32, row-major,
 * contiguous unless a stride is given. Semantics are those of the op of the
 * same name in include/backend.h.
 *
 * This header is included by nvcc (C++) and by the C compiler (C11), so it
 * only uses the C runtime API header.
 */
#ifndef SAM2AMG_KERNELS_H
#define SAM2AMG_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "backend.h"
#include "check.h"

/* CUDA_CHECK: a CUDA runtime call that must not fail (a failure is a bug or
 * a dead device: abort with the call text and the CUDA error string). */
#define CUDA_CHECK(call)                                                        \
    do {                                                                        \
        cudaError_t cuda_rc_ = (call);                                          \
        CHECK_MSG(cuda_rc_ == cudaSuccess, "%s returned %s", #call,             \
                  cudaGetErrorString(cuda_rc_));                                \
    } while (0)

/* CUDA_LAUNCH_CHECK: after every kernel launch; catches bad launch
 * configurations at once (does not synchronize). */
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

#ifdef __cplusplus
extern "C" {
#endif

/* ---- norm.cu ---- */
/* y (M,C) = LayerNorm over C of x (M,C) with w,b (C); y may alias x. */
void cuda_layer_norm(cudaStream_t s, float *y, const float *x, const float *w,
                     const float *b, int64_t M, int64_t C, float eps);

/* ---- elementwise.cu ---- */
void cuda_gelu(cudaStream_t s, float *y, const float *x, int64_t n);
void cuda_relu(cudaStream_t s, float *y, const float *x, int64_t n);
void cuda_add(cudaStream_t s, float *y, const float *a, const float *b, int64_t n);
/* y (M,C) = x (M,C) + row (C); y may alias x. */
void cuda_add_row(cudaStream_t s, float *y, const float *x, const float *row,
                  int64_t M, int64_t C);
/* y = alpha*x + beta*y; with beta == 0, y is not read (BLAS convention). */
void cuda_scale_add(cudaStream_t s, float *y, const float *x, float alpha, float beta,
                    int64_t n);
/* y (M,N) with row stride ldy: y[i,j] += b[j] (the bias of a GEMM). */
void cuda_add_bias_strided(cudaStream_t s, float *y, int64_t ldy, const float *b,
                           int64_t M, int64_t N);
/* y (M,N) with row stride ldy: y[i,j] = b[j], or 0 when b is NULL. */
void cuda_fill_rows(cudaStream_t s, float *y, int64_t ldy, const float *b, int64_t M,
                    int64_t N);

/* ---- attention.cu ---- */
/* o (B,Lq,nh*dh) = softmax(scale q.k^T) v per batch item and head; q (B,Lq,nh,dh)
 * row stride ldq, k,v (B,Lk,nh,dh) row strides ldk, ldv. dh <= 128. When
 * there are too few (query tile, head) blocks to fill num_sms multiprocessors
 * and many keys, the keys are split across blocks and the partial softmax
 * sums merged afterwards (flash-decoding); the partials use up to
 * scratch_floats floats of scratch (device memory, stream-ordered). */
void cuda_attention(cudaStream_t s, float *o, const float *q, int64_t ldq,
                    const float *k, int64_t ldk, const float *v, int64_t ldv,
                    int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                    float scale, float *scratch, int64_t scratch_floats, int num_sms);

/* ---- flash_attn.cu ---- */
/* cuda_flash_attn: the bf16 tensor-core version of cuda_attention (same
 * arguments and semantics): q, k, v rounded to bf16, scores, softmax and
 * output in float32; any dh with cuda_flash_attn_supported(dh) (1..128).
 * Splits the keys like cuda_attention when the blocks are too few, using up
 * to scratch_floats floats of scratch. */
int  cuda_flash_attn_supported(int64_t dh);
void cuda_flash_attn(cudaStream_t s, float *o, const float *q, int64_t ldq,
                     const float *k, int64_t ldk, const float *v, int64_t ldv,
                     int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                     float scale, float *scratch, int64_t scratch_floats, int num_sms);
/* cuda_flash_attn_kv16: the same with k and v stored in bf16 (raw bits,
 * strides in bf16 elements), for the head dims cuda_flash_attn_kv16_supported
 * says (1..16: the decoder's) */
int  cuda_flash_attn_kv16_supported(int64_t dh);
void cuda_flash_attn_kv16(cudaStream_t s, float *o, const float *q, int64_t ldq,
                          const uint16_t *k, int64_t ldk, const uint16_t *v, int64_t ldv,
                          int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh, float scale,
                          float *scratch, int64_t scratch_floats, int num_sms);

/* ---- upscale_tail.cu ---- */
/* cuda_upscale2_masks: backend.h upscale2_masks (the decoder's second
 * transposed conv, bias, skip, GELU and the hypernetwork product, fused).
 * bf16 != 0 rounds x and w to bf16 and runs the conv on tensor cores (fp32
 * accumulation) when Cin % 16 == 0, Cin <= 64, Cout == 32 and nm <= 4;
 * otherwise, and with bf16 == 0, everything is float32 (a tiled kernel for
 * Cout == 32, Cin <= 64; a plain one for other shapes). */
void cuda_upscale2_masks(cudaStream_t s, float *masks, const float *x, const float *w,
                         const float *b, const float *skip, const float *hyper, int64_t n,
                         int64_t H, int64_t W, int64_t Cin, int64_t Cout, int64_t nm, int bf16);

/* ---- conv.cu ---- */
/* im2col rows [m0, m0+mc) of the (B*Ho*Wo, Cin*kh*kw) patch matrix of
 * x (B,H,W,Cin), columns in PyTorch weight order (ci, ky, kx), into
 * col (mc, Cin*kh*kw). Out-of-image taps are zero. */
void cuda_im2col(cudaStream_t s, float *col, const float *x, int64_t B, int64_t H,
                 int64_t W, int64_t Cin, int kh, int kw, int stride, int pad,
                 int64_t Ho, int64_t Wo, int64_t m0, int64_t mc);
/* conv_transpose2x2 scatter: t (mc, Cout*4) holds for input pixels
 * [m0, m0+mc) of x (B,H,W,.) the products in order (co, dy, dx); writes
 * y (B,2H,2W,Cout) pixel (2i+dy, 2j+dx) = t + b[co] (b may be NULL). */
void cuda_convt2x2_scatter(cudaStream_t s, float *y, const float *t, const float *b,
                           int64_t B, int64_t H, int64_t W, int64_t Cout, int64_t m0,
                           int64_t mc);

/* ---- resize.cu ---- */
/* y (N,Ho,Wo) = bilinear resize of x (N,Hi,Wi), align_corners=False. */
void cuda_resize_bilinear(cudaStream_t s, float *y, const float *x, int64_t N,
                          int64_t Hi, int64_t Wi, int64_t Ho, int64_t Wo);

/* ---- layout.cu ---- */
void cuda_maxpool2x2(cudaStream_t s, float *y, const float *x, int64_t B, int64_t H,
                     int64_t W, int64_t C);
void cuda_upsample_nearest2x(cudaStream_t s, float *y, const float *x, int64_t B,
                             int64_t H, int64_t W, int64_t C);
void cuda_window_partition(cudaStream_t s, float *y, const float *x, int64_t B,
                           int64_t H, int64_t W, int64_t C, int64_t ws);
void cuda_window_unpartition(cudaStream_t s, float *y, const float *x, int64_t B,
                             int64_t H, int64_t W, int64_t C, int64_t ws);
/* y (B,Cc,R) = transpose of each x (B,R,Cc): nhwc_to_nchw is R=H*W, Cc=C;
 * nchw_to_nhwc is R=C, Cc=H*W. */
void cuda_transpose_batched(cudaStream_t s, float *y, const float *x, int64_t B,
                            int64_t R, int64_t Cc);

/* ---- convert.cu ---- */
/* dst (n) = src (n) rounded to bfloat16 (nearest, ties to even), as raw
 * bf16 bits; and dst (batch, rows, cols) with row stride ldd and item
 * stride sd bf16 values = src (batch, rows, cols) with row stride lds and
 * item stride ss floats, the same rounding (dst's padding is not written;
 * the strides are unused when batch is 1). */
void cuda_f32_to_bf16(cudaStream_t s, uint16_t *dst, const float *src, int64_t n);
void cuda_f32_to_bf16_strided(cudaStream_t s, uint16_t *dst, int64_t ldd, int64_t sd,
                              const float *src, int64_t lds, int64_t ss, int64_t batch,
                              int64_t rows, int64_t cols);
/* the same with kern_gelu applied to each value before its rounding (one item) */
void cuda_gelu_to_bf16_strided(cudaStream_t s, uint16_t *dst, int64_t ldd, const float *src,
                               int64_t lds, int64_t rows, int64_t cols);
/* cuda_default_stream_sync: 0 once the work queued on stream 0 is done, -1
 * on an error (tests that launch on stream 0: test_cuda) */
int cuda_default_stream_sync(void);

/* lowrank.cu: the low-rank LayerNorm helpers (backend.h attention_probs,
 * attention_scores: raw 1 leaves out the softmax; lowrank_rstd, row_affine) */
void cuda_attention_probs(cudaStream_t s, float *p, int64_t ldp, const float *q, int64_t ldq,
                          int64_t sq, const float *k, int64_t ldk, int64_t B, int64_t Lq,
                          int64_t Lk, int64_t nh, int64_t dh, float scale, int raw);
void cuda_lowrank_rstd(cudaStream_t s, float *rstd, const float *xx, const float *sc,
                       const float *p, int64_t ldp, const float *e, const float *pg, int64_t B,
                       int64_t Mx, int64_t r, int64_t C, float eps);
void cuda_row_affine(cudaStream_t s, float *y, int64_t ldy, const float *x, int64_t ldx,
                     const float *a, const float *sv, int64_t lds, const float *sa,
                     const float *u, int64_t ldu, int64_t B, int64_t M, int64_t N);

/* lowrank_expand.cu: backend.h lowrank_expand in bf16 (tensor cores); ws
 * (ws_bytes) holds the bf16 copy of m. Returns -1 where it does not fuse
 * (K outside 49..160, the decoder's shapes; N not a multiple of 64;
 * LayerNorm mode with N != 256 or K <= 128, or with y16; ws too small for
 * one item), 0 when done. y16: y holds bf16 values (raw bits, ldy in bf16
 * elements), each the float32 result rounded to nearest even. */
int cuda_lowrank_expand(cudaStream_t s, uint16_t *ws, size_t ws_bytes, float *y, int64_t ldy,
                        const float *p, int64_t ldp, const float *m, int64_t ldm, const float *a,
                        const float *sv, int64_t lds, const float *sa, const float *u,
                        int64_t ldu, const float *lnw, const float *lnb, float eps, int64_t Wg,
                        int64_t B, int64_t M, int64_t K, int64_t N, int y16);

/* lowrank_expand.cu too: backend.h lowrank_rstd_gram in bf16 (pg by tensor
 * cores, the sums in double as cuda_lowrank_rstd); -1 where r is outside
 * 49..160 or one
 * item's Gram matrix does not fit ws */
int cuda_lowrank_rstd_gram(cudaStream_t s, uint16_t *ws, size_t ws_bytes, float *rstd,
                           const float *xx, const float *sc, const float *p, int64_t ldp,
                           const float *e, const float *bb, int64_t B, int64_t Mx, int64_t r,
                           int64_t C, float eps);

/* amg_post.cu: the generator's post-processing (backend.h backend_amg_ops;
 * g is a host struct whose pointers are device memory) */
void cuda_amg_columns(cudaStream_t s, const backend_amg_geom *g, const float *A,
                      const int32_t *ia, int64_t nm, int32_t *stat);
void cuda_amg_reduce(cudaStream_t s, const backend_amg_geom *g, const int32_t *stat,
                     int64_t nm, int64_t *sums, int64_t *off);
void cuda_amg_boundaries(cudaStream_t s, const backend_amg_geom *g, const float *A,
                         const int32_t *ia, int64_t ns, const int32_t *sel, const int64_t *base,
                         const int64_t *off, int32_t *trans, int64_t *soff);
void cuda_amg_nms_mask(cudaStream_t s, const int32_t *boxes, int64_t n, double thr,
                       uint64_t *mask);

#ifdef __cplusplus
}
#endif

#endif
