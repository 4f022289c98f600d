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

/* 7: lowrank_expand, lowrank_rstd_gram; 8: linear_ex, attention_kv16,
 * lowrank_expand's y_bf16 */
#define BACKEND_API_VERSION 8

enum { BACKEND_FP32 = 0, BACKEND_BF16 = 1 };
typedef struct backend backend_t;

struct backend {
    int         version;        /* BACKEND_API_VERSION */
    const char *name;           /* "cpu", "cuda:0", ... */
    void       *ctx;            /* backend-private state */
    /* attention_dh_max: the largest head dim attention() accepts; 0 = no
     * limit (callers with another way to compute pick it when exceeded). */
    int64_t     attention_dh_max;
    /* precision: BACKEND_FP32 (every op in float32) or BACKEND_BF16 (GEMM and
     * attention inputs rounded to bf16, float32 accumulation); set by the
     * creator before the model is built. */
    int         precision;
    /* host_weights: 1 when backend memory is host memory, so the model
     * uses float32 checkpoint tensors where they lie (the file's read-only
     * mapping) instead of uploading a copy; 0 (CUDA) = upload. */
    int         host_weights;

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
    /* linear_ex (optional, NULL where missing): linear with its neighbours
     * fused, y (M,N) = act(x) . w^T + b + r: act the exact GELU when gelu_x
     * (the gelu op's), else none; r (M,N) with row stride ldr, or NULL; r
     * is y itself (ldr == ldy) or does not overlap it; x does not overlap
     * y. With gelu_x, x may be left holding gelu(x) (the caller treats x as
     * consumed). Returns 0, or -1 when this backend does not fuse the case:
     * nothing is written, and the caller runs gelu, linear and add. The
     * result may differ from those three ops in the last bit of the sums
     * (b and r added in another order). */
    int (*linear_ex)(backend_t *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                     const float *w, const float *b, const float *r, int64_t ldr, int gelu_x,
                     int64_t M, int64_t K, int64_t N);
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
    /* attention_kv16 (optional, NULL where missing): attention with k and
     * v stored as bf16 (raw bits, strides in bf16 elements; what
     * lowrank_expand writes with y_bf16), o and q float32: the result of
     * attention in BACKEND_BF16 on float32 copies of k and v, bit for bit.
     * With o NULL it computes nothing and says whether it would take the
     * shape. Returns 0, or -1 when it does not (precision, dh): nothing
     * written. */
    int (*attention_kv16)(backend_t *be, float *o, const float *q, int64_t ldq,
                          const uint16_t *k, int64_t ldk, const uint16_t *v, int64_t ldv,
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
     * q (B,Lq,nh,dh) row stride ldq, batch item b at q + b*sq: sq = Lq*ldq
     * for packed items, 0 for one q shared by every item (the decoder's
     * image tokens against each prompt's tokens, all prompts in one call);
     * k (B,Lk,nh,dh) row stride ldk, items packed; p is (B,Lq) rows of
     * nh*Lk floats (head-major) with row stride ldp >= nh*Lk. */
    void (*attention_probs)(backend_t *be, float *p, int64_t ldp, const float *q, int64_t ldq,
                            int64_t sq, const float *k, int64_t ldk, int64_t B, int64_t Lq,
                            int64_t Lk, int64_t nh, int64_t dh, float scale);
    /* attention_scores: attention_probs without the softmax (same layouts):
     *   p[b,i,h,j] = scale * q[b,i,h,:].k[b,j,h,:] */
    void (*attention_scores)(backend_t *be, float *p, int64_t ldp, const float *q, int64_t ldq,
                             int64_t sq, const float *k, int64_t ldk, int64_t B, int64_t Lq,
                             int64_t Lk, int64_t nh, int64_t dh, float scale);
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
    /* lowrank_expand (optional, NULL where missing): bmm then row_affine,
     * fused, so the (B*M, N) product is never stored. For item b < B and
     * row i < M (j = b*M + i):
     *   z[j,:] = a[j] * (p[j,:K] . m_b + sa[j] * s[i,:]) + u[i,:]
     * p (B*M rows, stride ldp); m_b (K,N) at m + b*K*ldm, row stride ldm;
     * a (B*M); sa (B*M) or NULL (1); s, u (M rows, strides lds, ldu) or
     * NULL (no term). Without ln_w: y[j,:N] = z, row stride ldy. With ln_w
     * (the decoder's first upscaling, N = 4G): each of z's 4 groups of G
     * columns is LayerNorm'ed (ln_w, ln_b (G), eps) then GELU'd (erf), and
     * group dy*2 + dx is written to pixel (2*(i/Wg) + dy, 2*(i%Wg) + dx) of
     * y (B, 2M/Wg, 2Wg, G) contiguous (window_unpartition, window 2);
     * ldy unused. y_bf16 (without ln_w): y holds z rounded to bf16 (raw
     * bits, nearest even; ldy in bf16 elements), for attention_kv16 to
     * read. Returns 0, or -1 when this backend does not fuse the case
     * (precision, shape, y_bf16): nothing is written, the caller composes
     * bmm, row_affine (and window_unpartition, layer_norm, gelu) in
     * float32. */
    int (*lowrank_expand)(backend_t *be, float *y, int64_t ldy, const float *p, int64_t ldp,
                          const float *m, int64_t ldm, const float *a, const float *s,
                          int64_t lds, const float *sa, const float *u, int64_t ldu,
                          const float *ln_w, const float *ln_b, float eps, int64_t Wg,
                          int64_t B, int64_t M, int64_t K, int64_t N, int y_bf16);
    /* lowrank_rstd_gram (optional, NULL where missing): lowrank_rstd with
     * its pg term computed in place from per-item Gram matrices, so the
     * (B*Mx, r) product is never stored: pg[i,:] = p[i,:r] . bb_b (b =
     * i / Mx), bb (B, r, r) contiguous; the rest as lowrank_rstd. Returns 0,
     * or -1 when this backend does not fuse the case (nothing written: the
     * caller runs bmm, then lowrank_rstd). */
    int (*lowrank_rstd_gram)(backend_t *be, float *rstd, const float *xx, const float *s,
                             const float *p, int64_t ldp, const float *e, const float *bb,
                             int64_t B, int64_t Mx, int64_t r, int64_t C, float eps);
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

    /* ---- memory information (optional, NULL on the CPU) ---- */
    /* mem_info: the device's free and total bytes now (cudaMemGetInfo);
     * 0, or ERR_BACKEND when the device cannot say. */
    int (*mem_info)(backend_t *be, size_t *free_bytes, size_t *total_bytes);

    /* ---- the generator's post-processing (optional, NULL on the CPU,
     * where src/amg.c does it itself; see backend_amg_ops below) ---- */
    const struct backend_amg_ops *amg;
};

/* backend_amg_geom: one crop of the automatic mask generator as its
 * post-processing sees it on a device (src/amg_gpu.c fills it). The
 * full-resolution logit of crop pixel (y, x) of a low-res map A (L, L) is
 * PyTorch's bilinear blend of A[ri0[y] | ri1[y], ci0[x] | ci1[x]] with row
 * weights rw0[y], rw1[y] and column weights cw0[x], cw1[x], evaluated in
 * the float order of src/amg.c (kernels/amg_post.h). Pointers are backend
 * memory. */
typedef struct backend_amg_geom {
    int32_t        L;                   /* low-res side */
    int32_t        ch, cw;              /* crop rows, columns (full resolution) */
    int32_t        single;              /* 1: the (N,1,h,w) expression, 0: the (N,3,h,w) one */
    float          t_hi, t_lo, t_mask;  /* stability thresholds, mask threshold */
    const int32_t *ri0, *ri1;           /* (ch) low-res rows of each crop row */
    const float   *rw0, *rw1;           /* (ch) their weights */
    const int32_t *rend;                /* (ch) the row after y's band: the rows from y
                                           with y's ri0 and ri1 end at rend[y] - 1 */
    const int32_t *ci0, *ci1;           /* (cw) low-res columns of each crop column */
    const float   *cw0, *cw1;           /* (cw) their weights */
} backend_amg_geom;

/* BACKEND_AMG_COLSTAT: int32 figures per mask column: [0] pixels > t_hi,
 * [1] > t_lo, [2] > t_mask, [3] first row > t_mask (-1 none), [4] last
 * such row, [5] number of rows y where (value > t_mask) differs from row
 * y-1's (row -1 counts as background): the column's run boundaries.
 * BACKEND_AMG_SUMS: int64 figures per mask: [0..2] the counts summed over
 * the columns, [3] xmin [4] xmax (-1 -1 when nothing is > t_mask), [5] ymin
 * [6] ymax (the same), [7] the boundaries summed. */
#define BACKEND_AMG_COLSTAT 6
#define BACKEND_AMG_SUMS    8

/* backend_amg_ops: the generator's post-processing, asynchronous like the
 * other ops; all pointers backend memory. Masks are (L, L) slices of A:
 * mask m is A + ia[m] * L * L, or A + m * L * L when ia is NULL (ia lets
 * the ops read the masks that passed the IoU filter where the decoder left
 * them, with no copy). Results must equal src/amg_gpu.c's reference table
 * (amg_post_ops_ref) bit for bit. */
typedef struct backend_amg_ops {
    /* columns: stat (nm, g->cw, BACKEND_AMG_COLSTAT) of masks 0..nm-1. */
    void (*columns)(backend_t *be, const backend_amg_geom *g, const float *A,
                    const int32_t *ia, int64_t nm, int32_t *stat);
    /* reduce: sums (nm, BACKEND_AMG_SUMS) and off (nm, cw): per mask the
     * exclusive prefix sum over x of stat[m, x, 5]. */
    void (*reduce)(backend_t *be, const backend_amg_geom *g, const int32_t *stat, int64_t nm,
                   int64_t *sums, int64_t *off);
    /* boundaries: for ns selected masks m = sel[s] (s < ns) with output
     * bases base (ns): trans[base[s] + off[m, x] + k] = the k-th boundary
     * row of column x of mask m (rows increasing), and soff[s, x] =
     * off[m, x] (the selected masks' offsets, compact: the host downloads
     * ns rows, not nm). */
    void (*boundaries)(backend_t *be, const backend_amg_geom *g, const float *A,
                       const int32_t *ia, int64_t ns, const int32_t *sel, const int64_t *base,
                       const int64_t *off, int32_t *trans, int64_t *soff);
    /* nms_mask: boxes (n, 4) int32 x0, y0, x1, y1 (inclusive) in score
     * order; mask (n, ceil(n/64)) uint64: bit j%64 of word j/64 of row i is
     * set iff j > i and the boxes' float IoU (torchvision's expression) >
     * thr. */
    void (*nms_mask)(backend_t *be, const int32_t *boxes, int64_t n, double thr,
                     uint64_t *mask);
} backend_amg_ops;

/* backend_cpu_open: the reference backend with n_threads worker threads
 * (0 = the number of online CPUs). NULL with err set ("cpu: cannot start
 * thread: ...") when the environment refuses a thread; programs reach it
 * through backend_create. */
struct err_t;
backend_t *backend_cpu_open(int n_threads, struct err_t *err);
/* backend_cpu_create: backend_cpu_open for tests and benchmarks, where a
 * thread that cannot start may abort. Never NULL. */
backend_t *backend_cpu_create(int n_threads);
/* backend_cpu_simd: floats per vector of a CPU backend's elementwise
 * kernels (4, 8 or 16: the widest the CPU has, lowered by the environment
 * variable SAM2AMG_CPU_SIMD=4|8) */
int backend_cpu_simd(const backend_t *be);

#ifdef SAM2AMG_CUDA
/* backend_cuda_create: the CUDA backend on device `device` (src/backend_cuda.c).
 * NULL with a message in err when the device cannot be opened. */
struct err_t;
backend_t *backend_cuda_create(int device, struct err_t *err);
#endif

/* ---- the CUDA plugin (src/plugin.c) ----
 * build/sam2amg does not link the CUDA runtime or cuBLAS: the CUDA backend
 * (src/backend_cuda.c + kernels/) is build/libsam2amg_cuda.so, dlopen'ed
 * the first time a CUDA device is asked for. Its one exported symbol,
 * BACKEND_PLUGIN_SYMBOL, returns this table; a plugin built for another
 * BACKEND_API_VERSION is refused. Programs linked with the CUDA objects
 * (tests, tests/gpu, the GPU bundle) use them directly, without a file. */
#define BACKEND_PLUGIN_SYMBOL "sam2amg_cuda_plugin_v1"
struct err_t;
typedef struct backend_plugin {
    int         api_version;   /* BACKEND_API_VERSION it was built with */
    /* create: as backend_cuda_create */
    backend_t *(*create)(int device, struct err_t *err);
    /* device_count: the visible devices (CUDA_VISIBLE_DEVICES honoured);
     * 0, or ERR_BACKEND with the reason (no driver, ...) in err */
    int        (*device_count)(int *n, struct err_t *err);
} backend_plugin_t;
const backend_plugin_t *sam2amg_cuda_plugin_v1(void);

/* backend_cuda_plugin: the CUDA plugin, loaded once (thread-safe) from
 * $SAM2AMG_CUDA_PLUGIN or libsam2amg_cuda.so beside the running program.
 * NULL with a one-line message naming the file and the reason (missing,
 * not loadable, not a sam2amg plugin, built for another API version). */
const backend_plugin_t *backend_cuda_plugin(struct err_t *err);

/* backend_parse_device: "cpu" -> *cuda_index -1; "cuda" or "cuda:N" (N a
 * decimal number in [0, 1023]) -> N. 0, or ERR_INVALID with a message. */
int backend_parse_device(const char *device, int *cuda_index, struct err_t *err);

/* backend_check_device: whether device could be created here, without
 * creating it: a valid name, and for cuda:N valid SAM2AMG_CUDA_* settings
 * (include/cuda_env.h), the plugin, a driver and a device N. 0,
 * ERR_INVALID (bad name or setting) or ERR_BACKEND (unavailable; err says
 * which part is missing). */
int backend_check_device(const char *device, struct err_t *err);


/* backend_cuda_count: the number of visible CUDA devices through the
 * plugin; 0, or ERR_BACKEND (no plugin, no driver) with err set. */
int backend_cuda_count(int *n, struct err_t *err);

/* backend_cuda_visible_entries: the devices CUDA_VISIBLE_DEVICES value cvd
 * lists, read as the CUDA runtime reads it: comma-separated decimal indices
 * or GPU-/MIG- UUIDs, up to the first entry that is neither ("0,,1" lists
 * one, "abc", "-1", "NoDevFiles" and "" none); -1 when cvd is NULL (unset:
 * every device). An upper bound: the driver drops indices it lacks. */
int backend_cuda_visible_entries(const char *cvd);

/* backend_cuda_driver_count: the devices the CUDA driver makes visible
 * (CUDA_VISIBLE_DEVICES applied by the driver itself), through libcuda.so.1
 * alone: the plugin, the runtime and cuBLAS are not loaded. 0, or
 * ERR_BACKEND with "no CUDA driver (...)" or the failing call in err. */
int backend_cuda_driver_count(int *n, struct err_t *err);

/* backend_create: by device name ("cpu", "cuda:N"). NULL with a message in
 * err when the name or, for cuda:N, a SAM2AMG_CUDA_* setting is bad
 * (ERR_INVALID: the setting is refused before the plugin is looked for) or
 * the device cannot be opened: no plugin, no driver, no such device, ...
 * (ERR_BACKEND). */
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
