/* backend.h: the one op interface the SAM 2.1 model is written against.
 *
 * A backend is a struct of function pointers (ggml's ggml-backend-impl.h,
 * SQLite's sqlite3_io_methods): memory (alloc/free/upload/download/sync) and
 * the ops the model needs. The CPU backend (src/backend_cpu.c: plain C,
 * OpenBLAS, pthreads) is the reference; the CUDA backend (src/backend_cuda.c
 * + kernels/) implements the same table. Model code never says #ifdef CUDA.
 *
 * Conventions, for every op:
 *   - all tensors are float32, row-major and contiguous unless a stride is
 *     given; image features are NHWC (B,H,W,C) so that a 1x1 convolution or
 *     a Linear layer is one GEMM over rows;
 *   - pointers are backend memory (host memory for the CPU backend, device
 *     memory for CUDA) obtained from alloc() or an arena on top of it;
 *   - weights keep PyTorch's layouts (Linear (out,in); Conv2d
 *     (Cout,Cin,kh,kw); ConvTranspose2d (Cin,Cout,kh,kw));
 *   - out may not alias an input unless the op says so;
 *   - ops are asynchronous on CUDA (one stream per backend instance); sync()
 *     waits. A shape error is a bug (abort); ops do not return errors.
 *   - Optional members may be NULL: the model checks before it calls them.
 */
#ifndef SAM2AMG_BACKEND_H
#define SAM2AMG_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#define BACKEND_API_VERSION 1

typedef struct backend backend_t;

struct backend {
    int         version;        /* BACKEND_API_VERSION */
    const char *name;           /* "cpu", "cuda:0", ... */
    void       *ctx;            /* backend-private state */
    /* attention_dh_max: the largest head dim attention() accepts; 0 = no
     * limit (callers with another way to compute pick it when exceeded). */
    int64_t     attention_dh_max;

    /* ---- memory ---- */
    /* alloc: size bytes of backend memory, 256-byte aligned; NULL on failure
     * (out of memory is a data error for the caller, not an abort). */
    void *(*alloc)(backend_t *be, size_t size);
    void  (*free)(backend_t *be, void *ptr);
    /* upload/download copy host<->backend memory; sync waits for all work. */
    void  (*upload)(backend_t *be, void *dst, const void *src, size_t size);
    void  (*download)(backend_t *be, void *dst, const void *src, size_t size);
    void  (*copy)(backend_t *be, void *dst, const void *src, size_t size);
    void  (*memset0)(backend_t *be, void *dst, size_t size);
    void  (*sync)(backend_t *be);
    void  (*destroy)(backend_t *be);   /* frees ctx and the struct itself */

    /* ---- dense algebra ---- */
    /* linear: y (M,N) = x (M,K) . w (N,K)^T + b (N) ; b may be NULL.
     * x has row stride ldx (>= K) floats, y has row stride ldy (>= N): this
     * lets a caller read or write a column slice of a packed tensor. */
    void (*linear)(backend_t *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                   const float *w, const float *b, int64_t M, int64_t K, int64_t N);
    /* bmm: for each of `batch` items, c (M,N) = a (M,K) . b (K,N), or with
     * trans_b, a . b^T where b is (N,K). Items are contiguous, strides are
     * the matrix sizes. */
    void (*bmm)(backend_t *be, float *c, const float *a, const float *b,
                int64_t batch, int64_t M, int64_t K, int64_t N, int trans_b);

    /* attention: scaled dot-product attention, per batch item b and head h:
     *   o[b,i,h,:] = softmax_j(scale * q[b,i,h,:].k[b,j,h,:]) . v[b,j,h,:]
     * q is (B,Lq,nh,dh) with row stride ldq floats per token (so q may sit
     * inside a packed qkv tensor); k,v are (B,Lk,nh,dh) with row strides
     * ldk, ldv; o is (B,Lq,nh*dh) contiguous. */
    void (*attention)(backend_t *be, float *o, const float *q, int64_t ldq,
                      const float *k, int64_t ldk, const float *v, int64_t ldv,
                      int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                      float scale);

    /* ---- normalization and elementwise ---- */
    /* layer_norm over the last dim: x,y (M,C); w,b (C); y may alias x. */
    void (*layer_norm)(backend_t *be, float *y, const float *x, const float *w,
                       const float *b, int64_t M, int64_t C, float eps);
    /* gelu (exact, erf form) and relu over n floats; y may alias x. */
    void (*gelu)(backend_t *be, float *y, const float *x, int64_t n);
    void (*relu)(backend_t *be, float *y, const float *x, int64_t n);
    /* add: y = a + b over n floats; y may alias a or b. */
    void (*add)(backend_t *be, float *y, const float *a, const float *b, int64_t n);
    /* add_row: y (M,C) = x (M,C) + row (C) broadcast; y may alias x. */
    void (*add_row)(backend_t *be, float *y, const float *x, const float *row,
                    int64_t M, int64_t C);
    /* scale_add: y = alpha * x + beta * y over n floats; as in BLAS, beta 0
     * means y is not read (it may be uninitialised). */
    void (*scale_add)(backend_t *be, float *y, const float *x, float alpha, float beta,
                      int64_t n);

    /* ---- spatial (NHWC) ---- */
    /* conv2d: x (B,H,W,Cin) -> y (B,Ho,Wo,Cout), w (Cout,Cin,kh,kw), b (Cout)
     * or NULL; Ho = (H + 2*pad - kh)/stride + 1, same for Wo. */
    void (*conv2d)(backend_t *be, float *y, const float *x, const float *w,
                   const float *b, int64_t B, int64_t H, int64_t W, int64_t Cin,
                   int64_t Cout, int kh, int kw, int stride, int pad);
    /* conv_transpose2x2: stride-2 kernel-2 transposed conv,
     * x (B,H,W,Cin) -> y (B,2H,2W,Cout), w (Cin,Cout,2,2), b (Cout). */
    void (*conv_transpose2x2)(backend_t *be, float *y, const float *x, const float *w,
                              const float *b, int64_t B, int64_t H, int64_t W,
                              int64_t Cin, int64_t Cout);
    /* maxpool2x2: x (B,H,W,C) -> y (B,H/2,W/2,C), kernel 2, stride 2. */
    void (*maxpool2x2)(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                       int64_t W, int64_t C);
    /* upsample_nearest2x: x (B,H,W,C) -> y (B,2H,2W,C). */
    void (*upsample_nearest2x)(backend_t *be, float *y, const float *x, int64_t B,
                               int64_t H, int64_t W, int64_t C);
    /* window_partition: x (B,H,W,C) zero-padded to multiples of ws, cut into
     * y (B*nwh*nww, ws, ws, C), windows in row-major order of the grid.
     * window_unpartition is the inverse (crops the padding). */
    void (*window_partition)(backend_t *be, float *y, const float *x, int64_t B,
                             int64_t H, int64_t W, int64_t C, int64_t ws);
    void (*window_unpartition)(backend_t *be, float *y, const float *x, int64_t B,
                               int64_t H, int64_t W, int64_t C, int64_t ws);
    /* nhwc_to_nchw / nchw_to_nhwc: layout changes for I/O. */
    void (*nhwc_to_nchw)(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                         int64_t W, int64_t C);
    void (*nchw_to_nhwc)(backend_t *be, float *y, const float *x, int64_t B, int64_t C,
                         int64_t H, int64_t W);
    /* resize_bilinear: x (N,Hi,Wi) planes -> y (N,Ho,Wo), align_corners=False,
     * no antialias (PyTorch F.interpolate(mode="bilinear")). */
    void (*resize_bilinear)(backend_t *be, float *y, const float *x, int64_t N,
                            int64_t Hi, int64_t Wi, int64_t Ho, int64_t Wo);

    /* ---- low-rank LayerNorm helpers (optional, NULL where missing: the
     * decoder then keeps its full-size path) ---- */
    /* attention_probs: the probabilities of attention() instead of its output:
     *   p[b,i,h,j] = softmax_j(scale * q[b,i,h,:].k[b,j,h,:])
     * q (B,Lq,nh,dh) row stride ldq; k (B,Lk,nh,dh) row stride ldk; p is
     * (B,Lq) rows of nh*Lk floats (head-major) with row stride ldp >= nh*Lk. */
    void (*attention_probs)(backend_t *be, float *p, int64_t ldp, const float *q, int64_t ldq,
                            const float *k, int64_t ldk, int64_t B, int64_t Lq, int64_t Lk,
                            int64_t nh, int64_t dh, float scale);
    /* lowrank_rstd: LayerNorm's 1/std of rows known by Gram terms. For each
     * of the M = B*Mx rows i, with si = s[i] (1 when s is NULL):
     *   var = (si^2 xx[i % Mx] + sum_k p[i,k] (2 si e[i,k] + pg[i,k])) / C
     *   rstd[i] = 1 / sqrt(max(var, 0) + eps), summed in double.
     * p (M,r) row stride ldp; e, pg (M,r) contiguous; xx (Mx); rstd (M). */
    void (*lowrank_rstd)(backend_t *be, float *rstd, const float *xx, const float *s,
                         const float *p, int64_t ldp, const float *e, const float *pg,
                         int64_t B, int64_t Mx, int64_t r, int64_t C, float eps);
    /* row_affine: per-row scale of a sum with shared rows (row j = b*M + i):
     *   y[j,:] = a[j] * (x[j,:] + sa[j] * s[i,:]) + u[i,:]   (b < B, i < M, N wide)
     * x, y (B*M rows) row strides ldx, ldy; a, sa (B*M), sa NULL = 1; s, u
     * (M rows, shared by every b) row strides lds, ldu (0: the same row for
     * every i); s or u may be NULL (no term). y may alias x when ldy == ldx. */
    void (*row_affine)(backend_t *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                       const float *a, const float *s, int64_t lds, const float *sa,
                       const float *u, int64_t ldu, int64_t B, int64_t M, int64_t N);

    /* ---- decoder tail (optional, NULL where missing) ---- */
    /* upscale2_masks: the decoder's second upscaling step fused with the mask
     * product, so the (n,2H,2W,Cout) map is never stored. For prompt p < n,
     * mask m < nm, pixel (Y,X) of the 2H x 2W output:
     *   masks[p,m,Y,X] = sum_c hyper[p,m,c] * gelu(b[c] + skip[Y,X,c]
     *                      + sum_ci x[p,Y/2,X/2,ci] * w[ci,c,Y%2,X%2])
     * x (n,H,W,Cin); w (Cin,Cout,2,2) (ConvTranspose2d); b (Cout); skip
     * (2H,2W,Cout) shared by all prompts, or NULL; hyper (n,nm,Cout);
     * masks (n,nm,2H,2W). gelu is the exact (erf) form. */
    void (*upscale2_masks)(backend_t *be, float *masks, const float *x, const float *w,
                           const float *b, const float *skip, const float *hyper,
                           int64_t n, int64_t H, int64_t W, int64_t Cin, int64_t Cout,
                           int64_t nm);
};

/* backend_cpu_create: the reference backend with n_threads worker threads
 * (0 = the number of online CPUs). Never NULL. */
backend_t *backend_cpu_create(int n_threads);

#ifdef SAM2AMG_CUDA
/* backend_cuda_create: the CUDA backend on device `device` (src/backend_cuda.c).
 * NULL with a message in err when the device cannot be opened. */
struct err_t;
backend_t *backend_cuda_create(int device, struct err_t *err);
#endif

/* backend_create: by device name ("cpu", "cuda:N"). NULL with a message in
 * err when the device does not exist or this build has no CUDA. */
struct err_t;
backend_t *backend_create(const char *device, int n_threads, struct err_t *err);

/* ---- arena: planned activation memory ----
 * One alloc() at start, sized by the caller from the config, image size and
 * points_per_batch; then bump allocation with mark/release. Nothing is
 * allocated per image, per prompt or per op in steady state. */
typedef struct arena {
    backend_t *be;
    uint8_t   *base;      /* backend memory */
    size_t     size;      /* bytes */
    size_t     used;      /* bytes */
    size_t     peak;      /* high-water mark, bytes */
} arena_t;

int    arena_init(arena_t *a, backend_t *be, size_t size);   /* 0 or ERR_NOMEM */
void   arena_free(arena_t *a);
/* arena_alloc: n floats (256-byte aligned); aborts when the plan was too
 * small, since that is a sizing bug, not a data error. */
float *arena_alloc(arena_t *a, size_t n_floats);
static inline size_t arena_mark(const arena_t *a) { return a->used; }
static inline void   arena_release(arena_t *a, size_t mark) { a->used = mark; }

#endif
