/* backend_cuda.c: the CUDA backend, host side (include/backend.h op table).
 *
 * One instance owns one CUDA stream, one cuBLAS handle and one fixed
 * scratch buffer on one device. Every op is enqueued on that stream and
 * returns at once; sync() waits. Dense algebra goes to cuBLAS, everything
 * else to the kernels in kernels/<family>.cu through kernels/kernels.h.
 *
 * Memory: alloc() is cudaMalloc (256-byte aligned by CUDA); out of memory
 * returns NULL (a data error for the caller) after clearing CUDA's sticky
 * last-error slot. upload() and download() are synchronous with respect to
 * the host buffer: when they return, the host memory may be reused (upload)
 * or read (download); both therefore wait for the work queued before them.
 * copy() and memset0() are ordered on the stream like ops.
 *
 * GEMM precision: by default float32 GEMMs are true float32
 * (CUBLAS_COMPUTE_32F), as PyTorch's default (allow_tf32 False for matmul)
 * computes the official model, so model-level parity holds at the CPU's
 * bounds. SAM2AMG_CUDA_GEMM=tf32 in the environment (read when the backend
 * is created) selects TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32:
 * inputs rounded to a 10-bit mantissa, float32 accumulation): about 5e-4
 * relative error per product, ~1e-3 normalized error (||y - ref|| / ||ref||)
 * on GEMM outputs, so tests bound GEMM-based ops by 2e-3 there instead of
 * 1e-5; tests/gpu/check.sh reports it as its own row. Any other value of
 * SAM2AMG_CUDA_GEMM than f32 or tf32 is refused at creation.
 * SAM2AMG_CUDA_SYNC=1 synchronizes and checks for errors after every op, so
 * an asynchronous kernel fault is reported at the op that caused it
 * (debugging).
 *
 * Scratch: conv2d (im2col) and conv_transpose2x2 (GEMM before the scatter)
 * need an intermediate, and attention its key-split partial sums; the convs
 * process output rows in chunks that fit a scratch buffer of
 * CUDA_SCRATCH_BYTES allocated once at creation, attention splits only as
 * far as its partials fit, so no op ever allocates (ops on one stream never
 * overlap, so they share it).
 *
 * Without SAM2AMG_CUDA (a CPU-only build) this file compiles to nothing;
 * backend_create() then answers "cuda:N" with "this build has no CUDA".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"

#ifdef SAM2AMG_CUDA

#include <limits.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "../kernels/kernels.h"

/* CUBLAS_CHECK: a cuBLAS call that must not fail (abort with the call). */
#define CUBLAS_CHECK(call)                                                      \
    do {                                                                        \
        cublasStatus_t cublas_rc_ = (call);                                     \
        CHECK_MSG(cublas_rc_ == CUBLAS_STATUS_SUCCESS, "%s returned %s", #call, \
                  cublasGetStatusString(cublas_rc_));                           \
    } while (0)

#define CUDA_SCRATCH_BYTES ((size_t)64 << 20)

typedef struct cuda_ctx {
    int                 device;        /* CUDA device ordinal */
    cudaStream_t        stream;        /* every op and copy is ordered on it */
    cublasHandle_t      blas;          /* bound to stream */
    cublasComputeType_t gemm_compute;  /* 32F (default) or FAST_TF32 */
    float              *scratch;       /* device, CUDA_SCRATCH_BYTES */
    int                 sync_each_op;  /* SAM2AMG_CUDA_SYNC=1 */
    int                 num_sms;       /* multiprocessors (attention's key split) */
    char                name[24];      /* "cuda:N" */
} cuda_ctx_t;

/* cuda_enter: the context of be with its device made current on this thread
 * (backends may be driven from any thread). */
static cuda_ctx_t *cuda_enter(backend_t *be) {
    cuda_ctx_t *c = be->ctx;
    CUDA_CHECK(cudaSetDevice(c->device));
    return c;
}

/* cuda_leave: in SAM2AMG_CUDA_SYNC mode, wait for the op and check it. */
static void cuda_leave(cuda_ctx_t *c) {
    if (c->sync_each_op) {
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        CUDA_CHECK(cudaGetLastError());
    }
}

/* ---- memory ---- */

static void *cuda_alloc(backend_t *be, size_t size) {
    cuda_ctx_t *c = cuda_enter(be);
    (void)c;
    void *p = NULL;
    cudaError_t rc = cudaMalloc(&p, size ? size : 256);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();   // clear the error so later launch checks see only theirs
        return NULL;
    }
    CHECK(((uintptr_t)p & 255) == 0);
    return p;
}

static void cuda_free(backend_t *be, void *ptr) {
    if (!ptr) return;
    cuda_enter(be);
    CUDA_CHECK(cudaFree(ptr));
}

static void cuda_upload(backend_t *be, void *dst, const void *src, size_t size) {
    cuda_ctx_t *c = cuda_enter(be);
    if (size == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, size, cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

static void cuda_download(backend_t *be, void *dst, const void *src, size_t size) {
    cuda_ctx_t *c = cuda_enter(be);
    if (size == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, size, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

static void cuda_copy(backend_t *be, void *dst, const void *src, size_t size) {
    cuda_ctx_t *c = cuda_enter(be);
    if (size == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, size, cudaMemcpyDeviceToDevice, c->stream));
    cuda_leave(c);
}

static void cuda_memset0(backend_t *be, void *dst, size_t size) {
    cuda_ctx_t *c = cuda_enter(be);
    if (size == 0) return;
    CUDA_CHECK(cudaMemsetAsync(dst, 0, size, c->stream));
    cuda_leave(c);
}

static void cuda_sync(backend_t *be) {
    cuda_ctx_t *c = cuda_enter(be);
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

static void cuda_destroy(backend_t *be) {
    if (!be) return;
    cuda_ctx_t *c = cuda_enter(be);
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    CUBLAS_CHECK(cublasDestroy(c->blas));
    CUDA_CHECK(cudaFree(c->scratch));
    CUDA_CHECK(cudaStreamDestroy(c->stream));
    free(c);
    free(be);
}

/* ---- GEMM (row-major view over column-major cuBLAS) ---- */

static int fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* gemm_rm: C (M,N) row stride ldc = A (M,K) row stride lda times B, where B
 * is (K,N) row stride ldb, or with tb, B is (N,K) and is used transposed.
 * Row-major C is column-major C^T, so cuBLAS computes C^T = op(B)^T A^T with
 * the operands swapped. beta = 0: C is only written. */
static void gemm_rm(cuda_ctx_t *c, float *C, int64_t ldc, const float *A, int64_t lda,
                    const float *B, int64_t ldb, int tb, int64_t M, int64_t K, int64_t N) {
    CHECK(fits_int(M) && fits_int(K) && fits_int(N) && fits_int(lda) && fits_int(ldb) &&
          fits_int(ldc));
    CHECK(lda >= K && ldc >= N && ldb >= (tb ? K : N) && K > 0);
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasGemmEx(c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, (int)N,
                              (int)M, (int)K, &one, B, CUDA_R_32F, (int)ldb, A, CUDA_R_32F,
                              (int)lda, &zero, C, CUDA_R_32F, (int)ldc, c->gemm_compute,
                              CUBLAS_GEMM_DEFAULT));
}

// y (M,N) row stride ldy; x (M,K) row stride ldx; w (N,K); b (N) or NULL
static void cuda_linear(backend_t *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                        const float *w, const float *b, int64_t M, int64_t K, int64_t N) {
    cuda_ctx_t *c = cuda_enter(be);
    CHECK(M >= 0 && K >= 0 && N >= 0 && ldy >= N && ldx >= K);
    if (M == 0 || N == 0) return;
    if (K == 0) {
        cuda_fill_rows(c->stream, y, ldy, b, M, N);   // empty sum: y = b (or 0)
    } else {
        gemm_rm(c, y, ldy, x, ldx, w, K, 1, M, K, N);
        if (b) cuda_add_bias_strided(c->stream, y, ldy, b, M, N);
    }
    cuda_leave(c);
}

// c (batch,M,N) = a (batch,M,K) . b (batch,K,N), or b (batch,N,K) transposed
static void cuda_bmm(backend_t *be, float *cm, const float *a, const float *bm,
                     int64_t batch, int64_t M, int64_t K, int64_t N, int trans_b) {
    cuda_ctx_t *c = cuda_enter(be);
    CHECK(batch >= 0 && M >= 0 && K >= 0 && N >= 0);
    if (batch == 0 || M == 0 || N == 0) return;
    if (K == 0) {
        CUDA_CHECK(cudaMemsetAsync(cm, 0, (size_t)(batch * M * N) * sizeof(float), c->stream));
        cuda_leave(c);
        return;
    }
    CHECK(fits_int(batch) && fits_int(M) && fits_int(K) && fits_int(N));
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, (int)N, (int)M, (int)K,
        &one, bm, CUDA_R_32F, (int)(trans_b ? K : N), (long long)(K * N), a, CUDA_R_32F,
        (int)K, (long long)(M * K), &zero, cm, CUDA_R_32F, (int)N, (long long)(M * N),
        (int)batch, c->gemm_compute, CUBLAS_GEMM_DEFAULT));
    cuda_leave(c);
}

/* ---- attention, norm, elementwise: straight to the kernels ---- */

static void cuda_attention_op(backend_t *be, float *o, const float *q, int64_t ldq,
                              const float *k, int64_t ldk, const float *v, int64_t ldv,
                              int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                              float scale) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_attention(c->stream, o, q, ldq, k, ldk, v, ldv, B, Lq, Lk, nh, dh, scale, c->scratch,
                   (int64_t)(CUDA_SCRATCH_BYTES / sizeof(float)), c->num_sms);
    cuda_leave(c);
}

static void cuda_layer_norm_op(backend_t *be, float *y, const float *x, const float *w,
                               const float *b, int64_t M, int64_t C, float eps) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_layer_norm(c->stream, y, x, w, b, M, C, eps);
    cuda_leave(c);
}

static void cuda_gelu_op(backend_t *be, float *y, const float *x, int64_t n) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_gelu(c->stream, y, x, n);
    cuda_leave(c);
}

static void cuda_relu_op(backend_t *be, float *y, const float *x, int64_t n) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_relu(c->stream, y, x, n);
    cuda_leave(c);
}

static void cuda_add_op(backend_t *be, float *y, const float *a, const float *b, int64_t n) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_add(c->stream, y, a, b, n);
    cuda_leave(c);
}

static void cuda_add_row_op(backend_t *be, float *y, const float *x, const float *row,
                            int64_t M, int64_t C) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_add_row(c->stream, y, x, row, M, C);
    cuda_leave(c);
}

static void cuda_attention_probs_op(backend_t *be, float *p, int64_t ldp, const float *q,
                                    int64_t ldq, const float *k, int64_t ldk, int64_t B,
                                    int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                                    float scale) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_attention_probs(c->stream, p, ldp, q, ldq, k, ldk, B, Lq, Lk, nh, dh, scale);
    cuda_leave(c);
}

static void cuda_lowrank_rstd_op(backend_t *be, float *rstd, const float *xx, const float *s,
                                 const float *p, int64_t ldp, const float *e, const float *pg,
                                 int64_t B, int64_t Mx, int64_t r, int64_t C, float eps) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_lowrank_rstd(c->stream, rstd, xx, s, p, ldp, e, pg, B, Mx, r, C, eps);
    cuda_leave(c);
}

static void cuda_row_affine_op(backend_t *be, float *y, int64_t ldy, const float *x,
                               int64_t ldx, const float *a, const float *s, int64_t lds,
                               const float *sa, const float *u, int64_t ldu, int64_t B, int64_t M,
                               int64_t N) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_row_affine(c->stream, y, ldy, x, ldx, a, s, lds, sa, u, ldu, B, M, N);
    cuda_leave(c);
}

static void cuda_scale_add_op(backend_t *be, float *y, const float *x, float alpha,
                              float beta, int64_t n) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_scale_add(c->stream, y, x, alpha, beta, n);
    cuda_leave(c);
}

/* ---- spatial ---- */

// x (B,H,W,Cin) -> y (B,Ho,Wo,Cout); w (Cout,Cin,kh,kw); b (Cout) or NULL
static void cuda_conv2d(backend_t *be, float *y, const float *x, const float *w,
                        const float *b, int64_t B, int64_t H, int64_t W, int64_t Cin,
                        int64_t Cout, int kh, int kw, int stride, int pad) {
    cuda_ctx_t *c = cuda_enter(be);
    CHECK(B >= 0 && H > 0 && W > 0 && Cin > 0 && Cout > 0 && kh > 0 && kw > 0);
    CHECK(stride > 0 && pad >= 0);
    CHECK(H + 2 * pad >= kh && W + 2 * pad >= kw);
    const int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    const int64_t M = B * Ho * Wo;
    if (M == 0) return;
    if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {   // a 1x1 conv is a Linear
        gemm_rm(c, y, Cout, x, Cin, w, Cin, 1, M, Cin, Cout);
    } else {
        const int64_t Kc = Cin * kh * kw;
        const int64_t rows = (int64_t)(CUDA_SCRATCH_BYTES / sizeof(float)) / Kc;
        CHECK_MSG(rows >= 1, "conv2d patch of %lld floats exceeds the scratch", (long long)Kc);
        for (int64_t m0 = 0; m0 < M; m0 += rows) {
            const int64_t mc = M - m0 < rows ? M - m0 : rows;
            cuda_im2col(c->stream, c->scratch, x, B, H, W, Cin, kh, kw, stride, pad, Ho, Wo,
                        m0, mc);
            gemm_rm(c, y + m0 * Cout, Cout, c->scratch, Kc, w, Kc, 1, mc, Kc, Cout);
        }
    }
    if (b) cuda_add_bias_strided(c->stream, y, Cout, b, M, Cout);
    cuda_leave(c);
}

// x (B,H,W,Cin) -> y (B,2H,2W,Cout); w (Cin,Cout,2,2); b (Cout) or NULL
static void cuda_conv_transpose2x2(backend_t *be, float *y, const float *x, const float *w,
                                   const float *b, int64_t B, int64_t H, int64_t W,
                                   int64_t Cin, int64_t Cout) {
    cuda_ctx_t *c = cuda_enter(be);
    CHECK(B >= 0 && H > 0 && W > 0 && Cin > 0 && Cout > 0);
    const int64_t M = B * H * W, N4 = 4 * Cout;
    if (M == 0) return;
    const int64_t rows = (int64_t)(CUDA_SCRATCH_BYTES / sizeof(float)) / N4;
    CHECK_MSG(rows >= 1, "conv_transpose2x2 row of %lld floats exceeds the scratch",
              (long long)N4);
    for (int64_t m0 = 0; m0 < M; m0 += rows) {
        const int64_t mc = M - m0 < rows ? M - m0 : rows;
        // scratch (mc, Cout*4) = x rows (mc, Cin) . w viewed as (Cin, Cout*4)
        gemm_rm(c, c->scratch, N4, x + m0 * Cin, Cin, w, N4, 0, mc, Cin, N4);
        cuda_convt2x2_scatter(c->stream, y, c->scratch, b, B, H, W, Cout, m0, mc);
    }
    cuda_leave(c);
}

static void cuda_maxpool2x2_op(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                               int64_t W, int64_t C) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_maxpool2x2(c->stream, y, x, B, H, W, C);
    cuda_leave(c);
}

static void cuda_upsample_nearest2x_op(backend_t *be, float *y, const float *x, int64_t B,
                                       int64_t H, int64_t W, int64_t C) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_upsample_nearest2x(c->stream, y, x, B, H, W, C);
    cuda_leave(c);
}

static void cuda_window_partition_op(backend_t *be, float *y, const float *x, int64_t B,
                                     int64_t H, int64_t W, int64_t C, int64_t ws) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_window_partition(c->stream, y, x, B, H, W, C, ws);
    cuda_leave(c);
}

static void cuda_window_unpartition_op(backend_t *be, float *y, const float *x, int64_t B,
                                       int64_t H, int64_t W, int64_t C, int64_t ws) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_window_unpartition(c->stream, y, x, B, H, W, C, ws);
    cuda_leave(c);
}

// x (B,H,W,C) -> y (B,C,H,W)
static void cuda_nhwc_to_nchw(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                              int64_t W, int64_t C) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_transpose_batched(c->stream, y, x, B, H * W, C);
    cuda_leave(c);
}

// x (B,C,H,W) -> y (B,H,W,C)
static void cuda_nchw_to_nhwc(backend_t *be, float *y, const float *x, int64_t B, int64_t C,
                              int64_t H, int64_t W) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_transpose_batched(c->stream, y, x, B, C, H * W);
    cuda_leave(c);
}

static void cuda_resize_bilinear_op(backend_t *be, float *y, const float *x, int64_t N,
                                    int64_t Hi, int64_t Wi, int64_t Ho, int64_t Wo) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_resize_bilinear(c->stream, y, x, N, Hi, Wi, Ho, Wo);
    cuda_leave(c);
}

/* ---- the generator's post-processing (kernels/amg_post.cu) ---- */

static void cuda_amg_columns_op(backend_t *be, const backend_amg_geom *g, const float *A,
                                int64_t nm, int32_t *stat) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_amg_columns(c->stream, g, A, nm, stat);
    cuda_leave(c);
}

static void cuda_amg_reduce_op(backend_t *be, const backend_amg_geom *g, const int32_t *stat,
                               int64_t nm, int64_t *sums, int64_t *off) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_amg_reduce(c->stream, g, stat, nm, sums, off);
    cuda_leave(c);
}

static void cuda_amg_boundaries_op(backend_t *be, const backend_amg_geom *g, const float *A,
                                   int64_t ns, const int32_t *sel, const int64_t *base,
                                   const int64_t *off, int32_t *trans) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_amg_boundaries(c->stream, g, A, ns, sel, base, off, trans);
    cuda_leave(c);
}

static void cuda_amg_nms_mask_op(backend_t *be, const int32_t *boxes, int64_t n, double thr,
                                 uint64_t *mask) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_amg_nms_mask(c->stream, boxes, n, thr, mask);
    cuda_leave(c);
}

static const backend_amg_ops cuda_amg_ops = {
    .columns = cuda_amg_columns_op,
    .reduce = cuda_amg_reduce_op,
    .boundaries = cuda_amg_boundaries_op,
    .nms_mask = cuda_amg_nms_mask_op,
};

/* ---- creation ---- */

static int env_is(const char *name, const char *value) {
    const char *v = getenv(name);
    return v && strcmp(v, value) == 0;
}

/* cuda_gemm_mode: the GEMM compute type SAM2AMG_CUDA_GEMM asks for (unset
 * or "f32": true float32; "tf32": TF32 tensor cores), or -1 for another
 * value. */
static int cuda_gemm_mode(cublasComputeType_t *out) {
    const char *v = getenv("SAM2AMG_CUDA_GEMM");
    if (!v || !*v || strcmp(v, "f32") == 0) *out = CUBLAS_COMPUTE_32F;
    else if (strcmp(v, "tf32") == 0) *out = CUBLAS_COMPUTE_32F_FAST_TF32;
    else return -1;
    return 0;
}

/* backend_cuda_create: a CUDA backend on device ordinal `device`. Returns
 * NULL with a one-line message in err (when err is not NULL) when there is
 * no CUDA driver, no such device, the device is older than sm_80 (this build
 * has sm_80 and sm_90 code), SAM2AMG_CUDA_GEMM holds an unknown mode, or
 * the stream, cuBLAS handle or scratch cannot be created. The caller owns
 * the result and frees it with be->destroy(be). */
backend_t *backend_cuda_create(int device, struct err_t *err) {
    cublasComputeType_t gemm_compute;
    if (cuda_gemm_mode(&gemm_compute)) {
        err_set(err, ERR_INVALID, "cuda:%d: SAM2AMG_CUDA_GEMM='%s' (expected f32 or tf32)",
                device, getenv("SAM2AMG_CUDA_GEMM"));
        return NULL;
    }
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();
        if (rc == cudaErrorInsufficientDriver)   // also what a machine without a driver says
            err_set(err, ERR_BACKEND, "cuda:%d: no CUDA driver, or one older than this build's "
                    "CUDA runtime %d.%d", device, CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        else
            err_set(err, ERR_BACKEND, "cuda:%d: no usable CUDA device (%s)", device,
                    cudaGetErrorString(rc));
        return NULL;
    }
    if (device < 0 || device >= n) {
        err_set(err, ERR_BACKEND, "cuda:%d: no such device (%d CUDA device%s present)", device,
                n, n == 1 ? "" : "s");
        return NULL;
    }
    struct cudaDeviceProp prop;
    if ((rc = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (rc = cudaSetDevice(device)) != cudaSuccess) {
        (void)cudaGetLastError();
        err_set(err, ERR_BACKEND, "cuda:%d: cannot open device (%s)", device,
                cudaGetErrorString(rc));
        return NULL;
    }
    if (prop.major < 8) {
        err_set(err, ERR_BACKEND,
                "cuda:%d: %s has compute capability %d.%d; this build needs 8.0 or newer",
                device, prop.name, prop.major, prop.minor);
        return NULL;
    }
    cuda_ctx_t *c = calloc(1, sizeof *c);
    backend_t *be = calloc(1, sizeof *be);
    if (!c || !be) {
        free(c);
        free(be);
        err_set(err, ERR_NOMEM, "cuda:%d: out of host memory", device);
        return NULL;
    }
    c->device = device;
    c->num_sms = prop.multiProcessorCount;
    if ((rc = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        (void)cudaGetLastError();
        err_set(err, ERR_BACKEND, "cuda:%d: cannot create a stream (%s)", device,
                cudaGetErrorString(rc));
        free(c);
        free(be);
        return NULL;
    }
    cublasStatus_t st = cublasCreate(&c->blas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        err_set(err, ERR_BACKEND, "cuda:%d: cannot create a cuBLAS handle (%s)", device,
                cublasGetStatusString(st));
        CUDA_CHECK(cudaStreamDestroy(c->stream));
        free(c);
        free(be);
        return NULL;
    }
    CUBLAS_CHECK(cublasSetStream(c->blas, c->stream));
    if ((rc = cudaMalloc((void **)&c->scratch, CUDA_SCRATCH_BYTES)) != cudaSuccess) {
        (void)cudaGetLastError();
        err_set(err, ERR_NOMEM, "cuda:%d: cannot allocate %zu MiB of scratch (%s)", device,
                CUDA_SCRATCH_BYTES >> 20, cudaGetErrorString(rc));
        CUBLAS_CHECK(cublasDestroy(c->blas));
        CUDA_CHECK(cudaStreamDestroy(c->stream));
        free(c);
        free(be);
        return NULL;
    }
    c->gemm_compute = gemm_compute;
    c->sync_each_op = env_is("SAM2AMG_CUDA_SYNC", "1");
    snprintf(c->name, sizeof c->name, "cuda:%d", device);

    be->version = BACKEND_API_VERSION;
    be->name = c->name;
    be->ctx = c;
    be->attention_dh_max = 128;   /* kernels/attention.cu ATT_DHMAX */
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->copy = cuda_copy;
    be->memset0 = cuda_memset0;
    be->sync = cuda_sync;
    be->destroy = cuda_destroy;
    be->linear = cuda_linear;
    be->bmm = cuda_bmm;
    be->attention = cuda_attention_op;
    be->layer_norm = cuda_layer_norm_op;
    be->gelu = cuda_gelu_op;
    be->relu = cuda_relu_op;
    be->add = cuda_add_op;
    be->add_row = cuda_add_row_op;
    be->scale_add = cuda_scale_add_op;
    be->conv2d = cuda_conv2d;
    be->conv_transpose2x2 = cuda_conv_transpose2x2;
    be->maxpool2x2 = cuda_maxpool2x2_op;
    be->upsample_nearest2x = cuda_upsample_nearest2x_op;
    be->window_partition = cuda_window_partition_op;
    be->window_unpartition = cuda_window_unpartition_op;
    be->nhwc_to_nchw = cuda_nhwc_to_nchw;
    be->nchw_to_nhwc = cuda_nchw_to_nhwc;
    be->resize_bilinear = cuda_resize_bilinear_op;
    be->attention_probs = cuda_attention_probs_op;
    be->lowrank_rstd = cuda_lowrank_rstd_op;
    be->row_affine = cuda_row_affine_op;
    be->amg = &cuda_amg_ops;
    return be;
}

#endif /* SAM2AMG_CUDA */
