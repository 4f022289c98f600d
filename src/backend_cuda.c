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
 * Precision (be->precision, include/backend.h): the backend is created in
 * BACKEND_BF16, the fast mode: linear, bmm, conv2d and conv_transpose2x2
 * run on bf16 tensor cores through cuBLASLt with float32 accumulation and
 * output (see "bf16 GEMMs" below for how weights and activations become
 * bf16); every other op stays float32 (LayerNorm statistics, softmax), and
 * the decoder switches to BACKEND_FP32 around its IoU head. The caller may
 * set BACKEND_FP32 before building a model (--precision fp32): then every
 * op is float32.
 *
 * GEMM precision in BACKEND_FP32: float32 GEMMs are true float32
 * (CUBLAS_COMPUTE_32F), as PyTorch's default (allow_tf32 False for matmul)
 * computes the official model, so model-level parity holds at the CPU's
 * bounds. SAM2AMG_CUDA_GEMM=tf32 in the environment (read when the backend
 * is created) selects TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32:
 * inputs rounded to a 10-bit mantissa, float32 accumulation): about 5e-4
 * relative error per product, ~1e-3 normalized error (||y - ref|| / ||ref||)
 * on GEMM outputs, so tests bound GEMM-based ops by 2e-3 there instead of
 * 1e-5; tests/gpu/check.sh reports it as its own row. Any other value of
 * SAM2AMG_CUDA_GEMM than f32 or tf32 is refused at creation.
 * SAM2AMG_CUDA_FUSED=0 leaves out the fused ops (lowrank_expand,
 * lowrank_rstd_gram, attention_kv16, linear_ex: the model then composes
 * bmm, row_affine, attention on float32 keys, gelu, linear and add, as in
 * float32), to compare the two on a device; 1 (the default) keeps them;
 * anything else is refused at creation.
 * SAM2AMG_CUDA_SYNC=1 synchronizes and checks for errors after every op, so
 * an asynchronous kernel fault is reported at the op that caused it
 * (debugging); 0 or empty is off, anything else is refused at creation.
 *
 * Scratch: conv2d (im2col) and conv_transpose2x2 (GEMM before the scatter)
 * need an intermediate, and attention its key-split partial sums; the convs
 * process output rows in chunks that fit a scratch buffer of
 * CUDA_SCRATCH_BYTES allocated once at creation, attention splits only as
 * far as its partials fit, so no op ever allocates (ops on one stream never
 * overlap, so they share it). bf16 adds two fixed buffers (the bf16 operand
 * workspace and cuBLASLt's), and one bf16 copy per weight allocation, made
 * at its first use.
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
#include "cuda_env.h"

#ifdef SAM2AMG_CUDA

#include <limits.h>

#include <cublasLt.h>
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
#define CUDA_LT_WS_BYTES   ((size_t)32 << 20)   /* cuBLASLt's workspace */
#define LT_PLANS_MAX       512                  /* cached bf16 GEMM plans */

/* cuda_region_t: one alloc(), for the bf16 weight copies (see "bf16 GEMMs") */
typedef struct cuda_region {
    uint8_t  *base;      /* device memory from cudaMalloc */
    size_t    size;      /* bytes */
    int       written;   /* an op, copy() or memset0() wrote into it: activations */
    int       no_copy;   /* the bf16 copy could not be allocated: convert per call */
    int       stale;     /* bf16 must be converted again (an upload() since) */
    uint16_t *bf16;      /* (size / 4) bf16 values, or NULL */
} cuda_region_t;

/* lt_key_t: what a cached bf16 GEMM plan depends on (column-major view;
 * memset to 0 before filling, so memcmp sees no padding garbage) */
typedef struct lt_key {
    int32_t  ta;                       /* A (the weight operand) transposed */
    int32_t  batch;                    /* strided batch items */
    int64_t  m, n, k;                  /* D (m,n) = op(A) (m,k) . B (k,n) */
    int64_t  lda, ldb, ldd;            /* leading dimensions, elements */
    int64_t  sa, sb, sd;               /* batch strides, elements */
    uint32_t align[3];                 /* bytes: A, B, D pointers, lds and strides */
    int32_t  bias;                     /* CUBLASLT_EPILOGUE_BIAS (a float32 row of m) */
} lt_key_t;

typedef struct lt_plan {
    uint64_t               hash;       /* of key (FNV-1a): the cheap first compare */
    lt_key_t               key;
    cublasLtMatmulDesc_t   op;
    cublasLtMatrixLayout_t a, b, d;    /* bf16, bf16, float32 (C and D) */
    cublasLtMatmulAlgo_t   algo;       /* the heuristic's first choice */
    int                    ok;         /* 0: no algorithm (float32 fallback) */
} lt_plan_t;

typedef struct cuda_ctx {
    int                 device;        /* CUDA device ordinal */
    cudaStream_t        stream;        /* every op and copy is ordered on it */
    cublasHandle_t      blas;          /* bound to stream */
    cublasComputeType_t gemm_compute;  /* 32F (default) or FAST_TF32 */
    float              *scratch;       /* device, CUDA_SCRATCH_BYTES */
    int                 sync_each_op;  /* SAM2AMG_CUDA_SYNC=1 */
    int                 num_sms;       /* multiprocessors (attention's key split) */
    char                name[24];      /* "cuda:N" */
    cublasLtHandle_t    lt;            /* bf16 GEMMs */
    void               *lt_ws;         /* device, CUDA_LT_WS_BYTES */
    uint16_t           *ws16;          /* device, ws16_bytes: bf16 operands */
    size_t              ws16_bytes;    /* CUDA_ENV_WS16_MB MiB, or SAM2AMG_CUDA_BF16_WS_MB */
    cuda_region_t      *regions;       /* every alloc(), sorted by base */
    int                 n_regions, cap_regions;
    lt_plan_t          *plans;         /* host, LT_PLANS_MAX */
    int                 n_plans, plan_evict;
    int64_t             n_fallback;    /* bf16 GEMMs that ran in float32 */
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

static cuda_region_t *region_find(cuda_ctx_t *c, const void *p);
static void cuda_written(cuda_ctx_t *c, const void *p);
static void lt_plan_destroy(lt_plan_t *p);

static void *cuda_alloc(backend_t *be, size_t size) {
    cuda_ctx_t *c = cuda_enter(be);
    void *p = NULL;
    if (c->n_regions == c->cap_regions) {   // the region table, grown on the host
        int cap = c->cap_regions ? 2 * c->cap_regions : 16;
        cuda_region_t *r = realloc(c->regions, (size_t)cap * sizeof *r);
        if (!r) return NULL;
        c->regions = r, c->cap_regions = cap;
    }
    cudaError_t rc = cudaMalloc(&p, size ? size : 256);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();   // clear the error so later launch checks see only theirs
        return NULL;
    }
    CHECK(((uintptr_t)p & 255) == 0);
    int at = c->n_regions;
    while (at > 0 && c->regions[at - 1].base > (uint8_t *)p) at--;
    memmove(&c->regions[at + 1], &c->regions[at], (size_t)(c->n_regions - at) * sizeof *c->regions);
    c->regions[at] = (cuda_region_t){.base = p, .size = size ? size : 256};
    c->n_regions++;
    return p;
}

static void cuda_free(backend_t *be, void *ptr) {
    if (!ptr) return;
    cuda_ctx_t *c = cuda_enter(be);
    cuda_region_t *r = region_find(c, ptr);
    CHECK_MSG(r && r->base == ptr, "free of %p, which alloc() did not return", ptr);
    if (r->bf16) {   // the stream may still read the copy: wait first
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        CUDA_CHECK(cudaFree(r->bf16));
    }
    int at = (int)(r - c->regions);
    memmove(r, r + 1, (size_t)(c->n_regions - at - 1) * sizeof *r);
    c->n_regions--;
    CUDA_CHECK(cudaFree(ptr));
}

static void cuda_upload(backend_t *be, void *dst, const void *src, size_t size) {
    cuda_ctx_t *c = cuda_enter(be);
    if (size == 0) return;
    cuda_region_t *r = region_find(c, dst);
    if (r) r->stale = 1;   // its bf16 copy (if any) is converted again at its next use
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
    cuda_written(c, dst);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, size, cudaMemcpyDeviceToDevice, c->stream));
    cuda_leave(c);
}

static void cuda_memset0(backend_t *be, void *dst, size_t size) {
    cuda_ctx_t *c = cuda_enter(be);
    if (size == 0) return;
    cuda_written(c, dst);
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
    for (int i = 0; i < c->n_plans; i++) lt_plan_destroy(&c->plans[i]);
    free(c->plans);
    for (int i = 0; i < c->n_regions; i++)   // memory the model did not free: its bf16 copies
        if (c->regions[i].bf16) CUDA_CHECK(cudaFree(c->regions[i].bf16));
    free(c->regions);
    CUBLAS_CHECK(cublasLtDestroy(c->lt));
    CUDA_CHECK(cudaFree(c->ws16));
    CUDA_CHECK(cudaFree(c->lt_ws));
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

/* ---- bf16 GEMMs (precision BACKEND_BF16) ----
 *
 * cuBLASLt with bf16 A and B, float32 accumulation (CUBLAS_COMPUTE_32F) and
 * a float32 C/D, so a product differs from the float32 one only by the
 * rounding of its operands: ops_ref's bf16 mode (src/ops_ref.c) computes
 * exactly that and is the reference of tests/test_ops.c's bf16 column.
 *
 * Weights: the backend keeps every alloc() in a table (cuda_region_t). A
 * region that only upload() ever wrote (the model's weight allocations)
 * gets, at its first use as a GEMM's weight operand, one bf16 copy of the
 * whole region (cudaMalloc'd then, so once per weight allocation: at the
 * first image), and every later GEMM reads the weight from that copy at
 * the same offset. A region that an op, copy() or memset0() wrote is
 * activations for good (sticky) and is never copied: a weight operand in
 * it (the decoder's low-rank terms) is converted per call, like any
 * activation. An upload() into a copied region marks the copy stale; it is
 * converted again at its next use. Chosen over having the model mark its
 * weights because it needs no interface change and cannot go stale: the
 * only writers of device memory are this file's functions. (The attention
 * op writes only into the activation arena, which GEMMs write too.)
 *
 * Activations: converted on the fly into ws16, a bf16 workspace of
 * CUDA_ENV_WS16_MB MiB (SAM2AMG_CUDA_BF16_WS_MB=N sets N MiB, 1..4096: tests
 * shrink it to reach the chunked paths on small shapes) allocated at
 * creation, with rows padded to 8 values
 * (16 bytes, as tensor-core kernels want); a GEMM whose operands exceed it
 * runs in row (or batch) chunks. A shape for which cuBLASLt offers no
 * algorithm (or whose algorithm cublasLtMatmul refuses) runs through
 * cublasGemmEx on the same bf16 operands, the same numbers up to
 * accumulation order; only a single weight, row or bmm item too large for
 * ws16 (none in SAM 2.1: the largest is 5.3M values) runs as the float32
 * GEMM. Either is said once on stderr.
 *
 * Plans: the matmul descriptor, the three layouts and the heuristic's
 * algorithm are cached per shape (dimensions, strides, batch, pointer
 * alignments) in a table of LT_PLANS_MAX entries (round-robin eviction), so
 * a steady-state GEMM costs one cublasLtMatmul call. */

static uint32_t align_of(const void *p, int64_t ld_bytes, int64_t stride_bytes) {
    uint32_t a = 256;
    while (a > 1 && (((uintptr_t)p % a) || (ld_bytes % a) || (stride_bytes % a))) a >>= 1;
    return a;
}

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* region_find: the region holding device address p, or NULL */
static cuda_region_t *region_find(cuda_ctx_t *c, const void *p) {
    const uint8_t *q = p;
    int lo = 0, hi = c->n_regions - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        cuda_region_t *r = &c->regions[mid];
        if (q < r->base) hi = mid - 1;
        else if (q >= r->base + r->size) lo = mid + 1;
        else return r;
    }
    return NULL;
}

/* cuda_written: an op (or copy/memset0) wrote at p: its region holds
 * activations from now on, and its bf16 copy, if any, is never used again */
static void cuda_written(cuda_ctx_t *c, const void *p) {
    cuda_region_t *r = region_find(c, p);
    if (r) r->written = 1;
}

/* cuda_weight_bf16: the bf16 copy of the weight w (span floats from w), or
 * NULL when w is not in a weight region, the copy cannot be allocated, or
 * w and its row stride ld are not 16-byte aligned in the copy (the caller
 * then converts it per call) */
static const uint16_t *cuda_weight_bf16(cuda_ctx_t *c, const float *w, int64_t span, int64_t ld) {
    cuda_region_t *r = region_find(c, w);
    if (!r || r->written || r->no_copy) return NULL;
    const size_t off = (size_t)((const uint8_t *)w - r->base);
    if (off % sizeof(float) || off + (size_t)span * sizeof(float) > r->size) return NULL;
    if ((off / sizeof(float)) % 8 || ld % 8) return NULL;
    const size_t nf = r->size / sizeof(float);
    if (!r->bf16) {
        cudaError_t rc = cudaMalloc((void **)&r->bf16, nf * sizeof(uint16_t));
        if (rc != cudaSuccess) {
            (void)cudaGetLastError();
            r->bf16 = NULL;
            r->no_copy = 1;   // out of memory: convert this region per call from now on
            return NULL;
        }
        r->stale = 1;
    }
    if (r->stale) {
        cuda_f32_to_bf16(c->stream, r->bf16, (const float *)r->base, (int64_t)nf);
        r->stale = 0;
    }
    return r->bf16 + off / sizeof(float);
}

static void lt_plan_destroy(lt_plan_t *p) {
    if (p->a) CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->a));
    if (p->b) CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->b));
    if (p->d) CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->d));
    if (p->op) CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->op));
    memset(p, 0, sizeof *p);
}

/* lt_layout: a column-major rows x cols layout of type t with leading
 * dimension ld, batch items `stride` elements apart */
static cublasLtMatrixLayout_t lt_layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                                        int32_t batch, int64_t stride) {
    cublasLtMatrixLayout_t l = NULL;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, (uint64_t)rows, (uint64_t)cols, ld));
    if (batch > 1) {
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                      &batch, sizeof batch));
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
            l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    }
    return l;
}

static void lt_fallback_note(cuda_ctx_t *c, const char *why, int64_t m, int64_t n, int64_t k);

/* lt_plan_get: the cached plan of key k (column-major view: D (m,n) =
 * op(A) (m,k) . B (k,n), A bf16 stored (k,m) when ta else (m,k), B bf16
 * (k,n), D float32), made on a miss; plan->ok is 0 when cuBLASLt has no
 * algorithm for it */
static lt_plan_t *lt_plan_get(cuda_ctx_t *c, const lt_key_t *k) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ ((const uint8_t *)k)[i]) * 1099511628211ull;
    for (int i = 0; i < c->n_plans; i++)
        if (c->plans[i].hash == h && memcmp(&c->plans[i].key, k, sizeof *k) == 0)
            return &c->plans[i];
    lt_plan_t *p;
    if (c->n_plans < LT_PLANS_MAX) {
        p = &c->plans[c->n_plans++];
    } else {
        p = &c->plans[c->plan_evict];
        c->plan_evict = (c->plan_evict + 1) % LT_PLANS_MAX;
        lt_plan_destroy(p);
    }
    memset(p, 0, sizeof *p);
    p->hash = h;
    p->key = *k;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const int32_t ta = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (k->bias) {
        const int32_t epi = CUBLASLT_EPILOGUE_BIAS;
        CUBLAS_CHECK(
            cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    }
    p->a = lt_layout(CUDA_R_16BF, k->ta ? k->k : k->m, k->ta ? k->m : k->k, k->lda, k->batch, k->sa);
    p->b = lt_layout(CUDA_R_16BF, k->k, k->n, k->ldb, k->batch, k->sb);
    p->d = lt_layout(CUDA_R_32F, k->m, k->n, k->ldd, k->batch, k->sd);
    cublasLtMatmulPreference_t pref = NULL;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t wsb = CUDA_LT_WS_BYTES;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    const cublasLtMatmulPreferenceAttributes_t al[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    const uint32_t av[4] = {k->align[0], k->align[1], k->align[2], k->align[2]};
    for (int i = 0; i < 4; i++)
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, al[i], &av[i], sizeof av[i]));
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    memset(&res, 0, sizeof res);
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->a, p->b, p->d, p->d, pref,
                                                       1, &res, &nres);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    p->ok = st == CUBLAS_STATUS_SUCCESS && nres > 0 && res.state == CUBLAS_STATUS_SUCCESS;
    if (p->ok) p->algo = res.algo;
    else if (!k->bias)   // without the bias epilogue the plain plan is tried: no note
        lt_fallback_note(c, "cuBLASLt has no algorithm for it", k->m, k->n, k->k);
    return p;
}

/* lt_fallback_note: a bf16 GEMM shape left cuBLASLt (for cublasGemmEx on
 * the same bf16 operands, or, where the workspace is too small, float32);
 * said once per backend on stderr */
static void lt_fallback_note(cuda_ctx_t *c, const char *why, int64_t m, int64_t n, int64_t k) {
    c->n_fallback++;
    if (c->n_fallback == 1)
        fprintf(stderr, "sam2amg: %s: a bf16 GEMM (m=%lld n=%lld k=%lld) leaves cuBLASLt: %s\n",
                c->name, (long long)m, (long long)n, (long long)k, why);
}

/* lt_run: D = op(A) . B with plan p on the stream, plus R when not NULL
 * (an (m,n) matrix of D's layout, through beta 1; R may be D), plus bias
 * when not NULL (a 16-byte aligned float32 row of key.m; p a plan of the
 * bias epilogue, key.bias). Returns 0, or -1 when the plan has no
 * algorithm or cuBLASLt refuses the heuristic's own for this call
 * (CUBLAS_STATUS_NOT_SUPPORTED): nothing was computed, the plan is marked
 * unusable (said once on stderr for a plain plan; a bias plan's caller
 * silently runs the plain one and adds the bias itself) and the caller
 * computes the product another way. Any other failure is a bug (abort). */
static int lt_run(cuda_ctx_t *c, lt_plan_t *p, const uint16_t *A, const uint16_t *B, float *D,
                  const float *R, const float *bias) {
    if (!p->ok) return -1;
    if (bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &bias, sizeof bias));
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasLtMatmul(c->lt, p->op, &one, A, p->a, B, p->b, R ? &one : &zero,
                                       R ? R : D, p->d, D, p->d, &p->algo, c->lt_ws,
                                       CUDA_LT_WS_BYTES, c->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
        p->ok = 0;
        if (!bias)
            lt_fallback_note(c, "cublasLtMatmul refused its algorithm", p->key.m, p->key.n,
                             p->key.k);
        return -1;
    }
    CHECK_MSG(st == CUBLAS_STATUS_SUCCESS, "cublasLtMatmul%s (%lld x %lld x %lld, batch %d) "
              "returned %s", bias ? " with bias" : "", (long long)p->key.m, (long long)p->key.n,
              (long long)p->key.k, (int)p->key.batch, cublasGetStatusString(st));
    return 0;
}

/* lt_gemm: the product of plan p (made or not) on bf16 operands A, B into
 * D (plus R when not NULL, as lt_run's; one item): cublasLtMatmul with the
 * cached algorithm, or, where cuBLASLt has none
 * or refuses it, cuBLAS's cublasGemm(StridedBatched)Ex on the same bf16
 * operands (any alignment; the same rounding, float32 accumulation) */
static void lt_gemm(cuda_ctx_t *c, lt_plan_t *p, const uint16_t *A, const uint16_t *B, float *D,
                    const float *R) {
    if (lt_run(c, p, A, B, D, R, NULL) == 0) return;
    const lt_key_t *k = &p->key;
    CHECK(fits_int(k->m) && fits_int(k->n) && fits_int(k->k) && fits_int(k->lda) &&
          fits_int(k->ldb) && fits_int(k->ldd));
    CHECK(!R || k->batch <= 1);
    if (R && R != D)   // cuBLAS's beta reads C from D: R first
        CUDA_CHECK(cudaMemcpy2DAsync(D, (size_t)k->ldd * sizeof(float), R,
                                     (size_t)k->ldd * sizeof(float), (size_t)k->m * sizeof(float),
                                     (size_t)k->n, cudaMemcpyDeviceToDevice, c->stream));
    const float one = 1.0f, zero = R ? 1.0f : 0.0f;
    const cublasOperation_t ta = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (k->batch <= 1)
        CUBLAS_CHECK(cublasGemmEx(c->blas, ta, CUBLAS_OP_N, (int)k->m, (int)k->n, (int)k->k, &one, A,
                                  CUDA_R_16BF, (int)k->lda, B, CUDA_R_16BF, (int)k->ldb, &zero, D,
                                  CUDA_R_32F, (int)k->ldd, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            c->blas, ta, CUBLAS_OP_N, (int)k->m, (int)k->n, (int)k->k, &one, A, CUDA_R_16BF,
            (int)k->lda, (long long)k->sa, B, CUDA_R_16BF, (int)k->ldb, (long long)k->sb, &zero, D,
            CUDA_R_32F, (int)k->ldd, (long long)k->sd, (int)k->batch, CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT));
}

/* gemm_bf16_rm: gemm_rm with A and B rounded to bf16 (B is the weight-like
 * operand: from its bf16 copy when it has one), float32 accumulation; then
 * + bias (N) per row when bias is not NULL: in cuBLASLt's epilogue where it
 * has one for the shape and bias is 16-byte aligned (one pass over C
 * less), else by the bias kernel (the same float32 sum either way).
 * linear_ex's fusions: gelu_a rounds gelu(A) instead of A (in the
 * conversion A goes through anyway), and R (M,N), row stride ldc, is
 * added through the GEMM's beta (R may be C). Returns 0; or, only with
 * gelu_a or R, -1 before anything is written where the shape would leave
 * the bf16 workspace (the float32 fallback has no such fusions). */
static int gemm_bf16_rm(cuda_ctx_t *c, float *C, int64_t ldc, const float *A, int64_t lda,
                        const float *B, int64_t ldb, int tb, int64_t M, int64_t K, int64_t N,
                        const float *bias, int gelu_a, const float *R) {
    CHECK(lda >= K && ldc >= N && ldb >= (tb ? K : N) && K > 0 && M > 0 && N > 0);
    const int fused = gelu_a || R;
    const int64_t br = tb ? N : K, bc = tb ? K : N;   // B as stored: br rows of bc
    const int64_t cap = (int64_t)(c->ws16_bytes / sizeof(uint16_t));
    int64_t ldbh = ldb, off = 0;
    const uint16_t *Bh = cuda_weight_bf16(c, B, (br - 1) * ldb + bc, ldb);
    if (!Bh) {
        ldbh = round_up(bc, 8);
        if (br * ldbh > cap / 2) {
            if (fused) return -1;
            lt_fallback_note(c, "the weight operand exceeds the bf16 workspace", N, M, K);
            gemm_rm(c, C, ldc, A, lda, B, ldb, tb, M, K, N);
            if (bias) cuda_add_bias_strided(c->stream, C, ldc, bias, M, N);
            return 0;
        }
    }
    const int64_t ldah = round_up(K, 8), rows = (cap - (Bh ? 0 : round_up(br * ldbh, 128))) / ldah;
    if (rows < 1) {
        if (fused) return -1;
        lt_fallback_note(c, "one row exceeds the bf16 workspace", N, M, K);
        gemm_rm(c, C, ldc, A, lda, B, ldb, tb, M, K, N);
        if (bias) cuda_add_bias_strided(c->stream, C, ldc, bias, M, N);
        return 0;
    }
    if (!Bh) {
        cuda_f32_to_bf16_strided(c->stream, c->ws16, ldbh, 0, B, ldb, 0, 1, br, bc);
        Bh = c->ws16;
        off = round_up(br * ldbh, 128);   // 256 bytes
    }
    const int epi = bias && (uintptr_t)bias % 16 == 0;
    uint16_t *Ah = c->ws16 + off;
    for (int64_t m0 = 0; m0 < M; m0 += rows) {
        const int64_t mc = M - m0 < rows ? M - m0 : rows;
        float *D = C + m0 * ldc;
        const float *Rc = R ? R + m0 * ldc : NULL;
        lt_key_t k;
        memset(&k, 0, sizeof k);
        k.ta = tb, k.batch = 1, k.m = N, k.n = mc, k.k = K;
        k.lda = ldbh, k.ldb = ldah, k.ldd = ldc;
        k.align[0] = align_of(Bh, ldbh * 2, 0);
        k.align[1] = align_of(Ah, ldah * 2, 0);
        k.align[2] = align_of(D, ldc * 4, 0);
        if (Rc && align_of(Rc, ldc * 4, 0) < k.align[2]) k.align[2] = align_of(Rc, ldc * 4, 0);
        if (gelu_a) cuda_gelu_to_bf16_strided(c->stream, Ah, ldah, A + m0 * lda, lda, mc, K);
        else cuda_f32_to_bf16_strided(c->stream, Ah, ldah, 0, A + m0 * lda, lda, 0, 1, mc, K);
        if (epi) {
            lt_key_t kb = k;
            kb.bias = 1;
            if (lt_run(c, lt_plan_get(c, &kb), Bh, Ah, D, Rc, bias) == 0) continue;
        }
        lt_gemm(c, lt_plan_get(c, &k), Bh, Ah, D, Rc);
        if (bias) cuda_add_bias_strided(c->stream, D, ldc, bias, mc, N);
    }
    return 0;
}

/* gemm_any: gemm_rm in the precision of be, then + bias (N) per row when
 * bias is not NULL */
static void gemm_any(backend_t *be, cuda_ctx_t *c, float *C, int64_t ldc, const float *A,
                     int64_t lda, const float *B, int64_t ldb, int tb, int64_t M, int64_t K,
                     int64_t N, const float *bias) {
    if (be->precision == BACKEND_BF16) {
        (void)gemm_bf16_rm(c, C, ldc, A, lda, B, ldb, tb, M, K, N, bias, 0, NULL);
        return;
    }
    gemm_rm(c, C, ldc, A, lda, B, ldb, tb, M, K, N);
    if (bias) cuda_add_bias_strided(c->stream, C, ldc, bias, M, N);
}

/* bmm_f32: cuda_bmm's float32 GEMM */
static void bmm_f32(cuda_ctx_t *c, float *cm, const float *a, const float *bm, int64_t batch,
                    int64_t M, int64_t K, int64_t N, int trans_b) {
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, (int)N, (int)M, (int)K,
        &one, bm, CUDA_R_32F, (int)(trans_b ? K : N), (long long)(K * N), a, CUDA_R_32F,
        (int)K, (long long)(M * K), &zero, cm, CUDA_R_32F, (int)N, (long long)(M * N),
        (int)batch, c->gemm_compute, CUBLAS_GEMM_DEFAULT));
}

/* bmm_bf16: cuda_bmm in bf16, in chunks of items that fit ws16 */
static void bmm_bf16(cuda_ctx_t *c, float *cm, const float *a, const float *bm, int64_t batch,
                     int64_t M, int64_t K, int64_t N, int trans_b) {
    const int64_t br = trans_b ? N : K, bc = trans_b ? K : N;
    const int64_t cap = (int64_t)(c->ws16_bytes / sizeof(uint16_t));
    const uint16_t *Bh = cuda_weight_bf16(c, bm, batch * K * N, bc);
    const int64_t ldbh = Bh ? bc : round_up(bc, 8), ldah = round_up(K, 8);
    const int64_t sbh = Bh ? K * N : round_up(br * ldbh, 128), sah = round_up(M * ldah, 128);
    const int64_t per = sah + (Bh ? 0 : sbh), items = cap / per;
    if (items < 1) {
        lt_fallback_note(c, "one bmm item exceeds the bf16 workspace", N, M, K);
        bmm_f32(c, cm, a, bm, batch, M, K, N, trans_b);
        return;
    }
    uint16_t *Bw = c->ws16, *Ah = c->ws16 + (Bh ? 0 : items * sbh);
    for (int64_t b0 = 0; b0 < batch; b0 += items) {
        const int64_t nb = batch - b0 < items ? batch - b0 : items;
        const uint16_t *Bp = Bh ? Bh + b0 * K * N : Bw;
        float *D = cm + b0 * M * N;
        lt_key_t k;
        memset(&k, 0, sizeof k);
        k.ta = trans_b, k.batch = (int32_t)nb, k.m = N, k.n = M, k.k = K;
        k.lda = ldbh, k.ldb = ldah, k.ldd = N;
        k.sa = sbh, k.sb = sah, k.sd = M * N;
        k.align[0] = align_of(Bp, ldbh * 2, nb > 1 ? sbh * 2 : 0);
        k.align[1] = align_of(Ah, ldah * 2, nb > 1 ? sah * 2 : 0);
        k.align[2] = align_of(D, N * 4, nb > 1 ? M * N * 4 : 0);
        if (!Bh)
            cuda_f32_to_bf16_strided(c->stream, Bw, ldbh, sbh, bm + b0 * K * N, bc, K * N, nb, br,
                                     bc);
        cuda_f32_to_bf16_strided(c->stream, Ah, ldah, sah, a + b0 * M * K, K, M * K, nb, M, K);
        lt_gemm(c, lt_plan_get(c, &k), Bp, Ah, D, NULL);
    }
}

// y (M,N) row stride ldy; x (M,K) row stride ldx; w (N,K); b (N) or NULL
static void cuda_linear(backend_t *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                        const float *w, const float *b, int64_t M, int64_t K, int64_t N) {
    cuda_ctx_t *c = cuda_enter(be);
    CHECK(M >= 0 && K >= 0 && N >= 0 && ldy >= N && ldx >= K);
    if (M == 0 || N == 0) return;
    cuda_written(c, y);
    if (K == 0) {
        cuda_fill_rows(c->stream, y, ldy, b, M, N);   // empty sum: y = b (or 0)
    } else {
        gemm_any(be, c, y, ldy, x, ldx, w, K, 1, M, K, N, b);
    }
    cuda_leave(c);
}

/* linear_ex (backend.h): bf16 only (float32 keeps the composed ops, whose
 * sums it must equal exactly), r with y's row stride (cuBLASLt reads C in
 * D's layout), and nothing past the bf16 workspace */
static int cuda_linear_ex(backend_t *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                          const float *w, const float *b, const float *r, int64_t ldr,
                          int gelu_x, int64_t M, int64_t K, int64_t N) {
    cuda_ctx_t *c = cuda_enter(be);
    CHECK(M >= 0 && K >= 0 && N >= 0 && ldy >= N && ldx >= K && (!r || ldr >= N));
    if (be->precision != BACKEND_BF16 || M == 0 || K == 0 || N == 0 || (r && (ldr != ldy)))
        return -1;
    if (gemm_bf16_rm(c, y, ldy, x, ldx, w, K, 1, M, K, N, b, gelu_x, r)) return -1;
    cuda_written(c, y);
    cuda_leave(c);
    return 0;
}

// c (batch,M,N) = a (batch,M,K) . b (batch,K,N), or b (batch,N,K) transposed
static void cuda_bmm(backend_t *be, float *cm, const float *a, const float *bm,
                     int64_t batch, int64_t M, int64_t K, int64_t N, int trans_b) {
    cuda_ctx_t *c = cuda_enter(be);
    CHECK(batch >= 0 && M >= 0 && K >= 0 && N >= 0);
    if (batch == 0 || M == 0 || N == 0) return;
    cuda_written(c, cm);
    if (K == 0) {
        CUDA_CHECK(cudaMemsetAsync(cm, 0, (size_t)(batch * M * N) * sizeof(float), c->stream));
        cuda_leave(c);
        return;
    }
    CHECK(fits_int(batch) && fits_int(M) && fits_int(K) && fits_int(N));
    if (be->precision == BACKEND_BF16) bmm_bf16(c, cm, a, bm, batch, M, K, N, trans_b);
    else bmm_f32(c, cm, a, bm, batch, M, K, N, trans_b);
    cuda_leave(c);
}

/* ---- attention, norm, elementwise: straight to the kernels ---- */

static void cuda_attention_op(backend_t *be, float *o, const float *q, int64_t ldq,
                              const float *k, int64_t ldk, const float *v, int64_t ldv,
                              int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                              float scale) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, o);   // as every op's output: never a stale bf16 weight copy
    const int64_t sf = (int64_t)(CUDA_SCRATCH_BYTES / sizeof(float));
    if (be->precision == BACKEND_BF16 && cuda_flash_attn_supported(dh))   // tensor cores
        cuda_flash_attn(c->stream, o, q, ldq, k, ldk, v, ldv, B, Lq, Lk, nh, dh, scale,
                        c->scratch, sf, c->num_sms);
    else
        cuda_attention(c->stream, o, q, ldq, k, ldk, v, ldv, B, Lq, Lk, nh, dh, scale,
                       c->scratch, sf, c->num_sms);
    cuda_leave(c);
}

/* attention_kv16: the bf16 flash kernel reading bf16 keys and values (the
 * decoder's, dh 16), in BACKEND_BF16 only */
static int cuda_attention_kv16_op(backend_t *be, float *o, const float *q, int64_t ldq,
                                  const uint16_t *k, int64_t ldk, const uint16_t *v,
                                  int64_t ldv, int64_t B, int64_t Lq, int64_t Lk, int64_t nh,
                                  int64_t dh, float scale) {
    if (be->precision != BACKEND_BF16 || !cuda_flash_attn_kv16_supported(dh)) return -1;
    if (!o) return 0;
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, o);
    const int64_t sf = (int64_t)(CUDA_SCRATCH_BYTES / sizeof(float));
    cuda_flash_attn_kv16(c->stream, o, q, ldq, k, ldk, v, ldv, B, Lq, Lk, nh, dh, scale,
                         c->scratch, sf, c->num_sms);
    cuda_leave(c);
    return 0;
}

// masks (n,nm,2H,2W); x (n,H,W,Cin); w (Cin,Cout,2,2); b (Cout); skip
// (2H,2W,Cout) or NULL; hyper (n,nm,Cout): kernels/upscale_tail.cu
static void cuda_upscale2_masks_op(backend_t *be, float *masks, const float *x, const float *w,
                                   const float *b, const float *skip, const float *hyper,
                                   int64_t n, int64_t H, int64_t W, int64_t Cin, int64_t Cout,
                                   int64_t nm) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, masks);
    cuda_upscale2_masks(c->stream, masks, x, w, b, skip, hyper, n, H, W, Cin, Cout, nm,
                        be->precision == BACKEND_BF16);
    cuda_leave(c);
}

static void cuda_layer_norm_op(backend_t *be, float *y, const float *x, const float *w,
                               const float *b, int64_t M, int64_t C, float eps) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_layer_norm(c->stream, y, x, w, b, M, C, eps);
    cuda_leave(c);
}

static void cuda_gelu_op(backend_t *be, float *y, const float *x, int64_t n) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_gelu(c->stream, y, x, n);
    cuda_leave(c);
}

static void cuda_relu_op(backend_t *be, float *y, const float *x, int64_t n) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_relu(c->stream, y, x, n);
    cuda_leave(c);
}

static void cuda_add_op(backend_t *be, float *y, const float *a, const float *b, int64_t n) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_add(c->stream, y, a, b, n);
    cuda_leave(c);
}

static void cuda_add_row_op(backend_t *be, float *y, const float *x, const float *row,
                            int64_t M, int64_t C) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_add_row(c->stream, y, x, row, M, C);
    cuda_leave(c);
}

/* attention_probs and attention_scores: one kernel, softmax or not */
static void cuda_probs_op(backend_t *be, float *p, int64_t ldp, const float *q, int64_t ldq,
                          int64_t sq, const float *k, int64_t ldk, int64_t B, int64_t Lq,
                          int64_t Lk, int64_t nh, int64_t dh, float scale, int raw) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, p);
    cuda_attention_probs(c->stream, p, ldp, q, ldq, sq, k, ldk, B, Lq, Lk, nh, dh, scale, raw);
    cuda_leave(c);
}
static void cuda_attention_probs_op(backend_t *be, float *p, int64_t ldp, const float *q,
                                    int64_t ldq, int64_t sq, const float *k, int64_t ldk,
                                    int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                                    float scale) {
    cuda_probs_op(be, p, ldp, q, ldq, sq, k, ldk, B, Lq, Lk, nh, dh, scale, 0);
}
static void cuda_attention_scores_op(backend_t *be, float *p, int64_t ldp, const float *q,
                                     int64_t ldq, int64_t sq, const float *k, int64_t ldk,
                                     int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                                     float scale) {
    cuda_probs_op(be, p, ldp, q, ldq, sq, k, ldk, B, Lq, Lk, nh, dh, scale, 1);
}

static void cuda_lowrank_rstd_op(backend_t *be, float *rstd, const float *xx, const float *s,
                                 const float *p, int64_t ldp, const float *e, const float *pg,
                                 int64_t B, int64_t Mx, int64_t r, int64_t C, float eps) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, rstd);
    cuda_lowrank_rstd(c->stream, rstd, xx, s, p, ldp, e, pg, B, Mx, r, C, eps);
    cuda_leave(c);
}

static void cuda_row_affine_op(backend_t *be, float *y, int64_t ldy, const float *x,
                               int64_t ldx, const float *a, const float *s, int64_t lds,
                               const float *sa, const float *u, int64_t ldu, int64_t B, int64_t M,
                               int64_t N) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_row_affine(c->stream, y, ldy, x, ldx, a, s, lds, sa, u, ldu, B, M, N);
    cuda_leave(c);
}

/* lowrank_expand: fused in bf16 (kernels/lowrank_expand.cu); in float32
 * the decoder composes bmm and row_affine (-1) */
static int cuda_lowrank_expand_op(backend_t *be, float *y, int64_t ldy, const float *p,
                                  int64_t ldp, const float *m, int64_t ldm, const float *a,
                                  const float *s, int64_t lds, const float *sa, const float *u,
                                  int64_t ldu, const float *ln_w, const float *ln_b, float eps,
                                  int64_t Wg, int64_t B, int64_t M, int64_t K, int64_t N,
                                  int y_bf16) {
    if (be->precision != BACKEND_BF16) return -1;
    cuda_ctx_t *c = cuda_enter(be);
    int rc = cuda_lowrank_expand(c->stream, c->ws16, c->ws16_bytes, y, ldy, p, ldp, m, ldm, a, s,
                                 lds, sa, u, ldu, ln_w, ln_b, eps, Wg, B, M, K, N, y_bf16);
    if (rc == 0) cuda_written(c, y);   // declined: nothing written
    cuda_leave(c);
    return rc;
}

/* lowrank_rstd_gram: fused in bf16, as lowrank_expand */
static int cuda_lowrank_rstd_gram_op(backend_t *be, float *rstd, const float *xx,
                                     const float *s, const float *p, int64_t ldp, const float *e,
                                     const float *bb, int64_t B, int64_t Mx, int64_t r, int64_t C,
                                     float eps) {
    if (be->precision != BACKEND_BF16) return -1;
    cuda_ctx_t *c = cuda_enter(be);
    int rc = cuda_lowrank_rstd_gram(c->stream, c->ws16, c->ws16_bytes, rstd, xx, s, p, ldp, e,
                                    bb, B, Mx, r, C, eps);
    if (rc == 0) cuda_written(c, rstd);
    cuda_leave(c);
    return rc;
}

static void cuda_scale_add_op(backend_t *be, float *y, const float *x, float alpha,
                              float beta, int64_t n) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
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
    cuda_written(c, y);
    if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {   // a 1x1 conv is a Linear
        gemm_any(be, c, y, Cout, x, Cin, w, Cin, 1, M, Cin, Cout, b);
    } else {
        const int64_t Kc = Cin * kh * kw;
        const int64_t rows = (int64_t)(CUDA_SCRATCH_BYTES / sizeof(float)) / Kc;
        CHECK_MSG(rows >= 1, "conv2d patch of %lld floats exceeds the scratch", (long long)Kc);
        for (int64_t m0 = 0; m0 < M; m0 += rows) {
            const int64_t mc = M - m0 < rows ? M - m0 : rows;
            cuda_im2col(c->stream, c->scratch, x, B, H, W, Cin, kh, kw, stride, pad, Ho, Wo,
                        m0, mc);
            gemm_any(be, c, y + m0 * Cout, Cout, c->scratch, Kc, w, Kc, 1, mc, Kc, Cout, b);
        }
    }
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
    cuda_written(c, y);
    const int64_t rows = (int64_t)(CUDA_SCRATCH_BYTES / sizeof(float)) / N4;
    CHECK_MSG(rows >= 1, "conv_transpose2x2 row of %lld floats exceeds the scratch",
              (long long)N4);
    for (int64_t m0 = 0; m0 < M; m0 += rows) {
        const int64_t mc = M - m0 < rows ? M - m0 : rows;
        // scratch (mc, Cout*4) = x rows (mc, Cin) . w viewed as (Cin, Cout*4)
        gemm_any(be, c, c->scratch, N4, x + m0 * Cin, Cin, w, N4, 0, mc, Cin, N4, NULL);
        cuda_convt2x2_scatter(c->stream, y, c->scratch, b, B, H, W, Cout, m0, mc);
    }
    cuda_leave(c);
}

static void cuda_maxpool2x2_op(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                               int64_t W, int64_t C) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_maxpool2x2(c->stream, y, x, B, H, W, C);
    cuda_leave(c);
}

static void cuda_upsample_nearest2x_op(backend_t *be, float *y, const float *x, int64_t B,
                                       int64_t H, int64_t W, int64_t C) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_upsample_nearest2x(c->stream, y, x, B, H, W, C);
    cuda_leave(c);
}

static void cuda_window_partition_op(backend_t *be, float *y, const float *x, int64_t B,
                                     int64_t H, int64_t W, int64_t C, int64_t ws) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_window_partition(c->stream, y, x, B, H, W, C, ws);
    cuda_leave(c);
}

static void cuda_window_unpartition_op(backend_t *be, float *y, const float *x, int64_t B,
                                       int64_t H, int64_t W, int64_t C, int64_t ws) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_window_unpartition(c->stream, y, x, B, H, W, C, ws);
    cuda_leave(c);
}

// x (B,H,W,C) -> y (B,C,H,W)
static void cuda_nhwc_to_nchw(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                              int64_t W, int64_t C) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_transpose_batched(c->stream, y, x, B, H * W, C);
    cuda_leave(c);
}

// x (B,C,H,W) -> y (B,H,W,C)
static void cuda_nchw_to_nhwc(backend_t *be, float *y, const float *x, int64_t B, int64_t C,
                              int64_t H, int64_t W) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_transpose_batched(c->stream, y, x, B, C, H * W);
    cuda_leave(c);
}

static void cuda_resize_bilinear_op(backend_t *be, float *y, const float *x, int64_t N,
                                    int64_t Hi, int64_t Wi, int64_t Ho, int64_t Wo) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_written(c, y);
    cuda_resize_bilinear(c->stream, y, x, N, Hi, Wi, Ho, Wo);
    cuda_leave(c);
}

/* ---- the generator's post-processing (kernels/amg_post.cu) ---- */

static void cuda_amg_columns_op(backend_t *be, const backend_amg_geom *g, const float *A,
                                const int32_t *ia, int64_t nm, int32_t *stat) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_amg_columns(c->stream, g, A, ia, nm, stat);
    cuda_leave(c);
}

static void cuda_amg_reduce_op(backend_t *be, const backend_amg_geom *g, const int32_t *stat,
                               int64_t nm, int64_t *sums, int64_t *off) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_amg_reduce(c->stream, g, stat, nm, sums, off);
    cuda_leave(c);
}

static void cuda_amg_boundaries_op(backend_t *be, const backend_amg_geom *g, const float *A,
                                   const int32_t *ia, int64_t ns, const int32_t *sel,
                                   const int64_t *base, const int64_t *off, int32_t *trans,
                                   int64_t *soff) {
    cuda_ctx_t *c = cuda_enter(be);
    cuda_amg_boundaries(c->stream, g, A, ia, ns, sel, base, off, trans, soff);
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

/* cuda_mem_info: the device's free and total memory (backend.h mem_info) */
static int cuda_mem_info(backend_t *be, size_t *free_bytes, size_t *total_bytes) {
    (void)cuda_enter(be);
    cudaError_t rc = cudaMemGetInfo(free_bytes, total_bytes);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();
        return ERR_BACKEND;
    }
    return 0;
}

/* backend_cuda_create: a CUDA backend on device ordinal `device`. Returns
 * NULL with a one-line message in err (when err is not NULL) when there is
 * no CUDA driver, no such device, the device is older than sm_80 (this build
 * has sm_80 and sm_90 code), a SAM2AMG_CUDA_* setting is bad, or
 * the stream, cuBLAS handle or scratch cannot be created. The caller owns
 * the result and frees it with be->destroy(be). */
backend_t *backend_cuda_create(int device, struct err_t *err) {
    cuda_env env;   /* include/cuda_env.h: the settings, refused by name if bad */
    if (cuda_env_read(device, &env, err)) return NULL;
    const cublasComputeType_t gemm_compute =
        env.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const size_t ws16_mb = env.ws16_mb;
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
    if ((st = cublasLtCreate(&c->lt)) != CUBLAS_STATUS_SUCCESS) {
        err_set(err, ERR_BACKEND, "cuda:%d: cannot create a cuBLASLt handle (%s)", device,
                cublasGetStatusString(st));
        CUBLAS_CHECK(cublasDestroy(c->blas));
        CUDA_CHECK(cudaStreamDestroy(c->stream));
        free(c);
        free(be);
        return NULL;
    }
    /* the fixed device buffers: scratch, bf16 operands, cuBLASLt workspace */
    struct { void **p; size_t bytes; const char *what; } bufs[] = {
        {(void **)&c->scratch, CUDA_SCRATCH_BYTES, "scratch"},
        {(void **)&c->ws16, ws16_mb << 20, "bf16 workspace"},
        {&c->lt_ws, CUDA_LT_WS_BYTES, "cuBLASLt workspace"},
    };
    c->plans = calloc(LT_PLANS_MAX, sizeof *c->plans);
    int nb = 0;
    rc = cudaSuccess;
    for (; nb < 3 && c->plans; nb++)
        if ((rc = cudaMalloc(bufs[nb].p, bufs[nb].bytes)) != cudaSuccess) break;
    if (!c->plans || rc != cudaSuccess) {
        (void)cudaGetLastError();
        if (!c->plans)
            err_set(err, ERR_NOMEM, "cuda:%d: out of host memory", device);
        else
            err_set(err, ERR_NOMEM, "cuda:%d: cannot allocate %zu MiB of %s (%s)", device,
                    bufs[nb].bytes >> 20, bufs[nb].what, cudaGetErrorString(rc));
        for (int i = 0; i < nb; i++) CUDA_CHECK(cudaFree(*bufs[i].p));
        free(c->plans);
        CUBLAS_CHECK(cublasLtDestroy(c->lt));
        CUBLAS_CHECK(cublasDestroy(c->blas));
        CUDA_CHECK(cudaStreamDestroy(c->stream));
        free(c);
        free(be);
        return NULL;
    }
    c->gemm_compute = gemm_compute;
    c->ws16_bytes = ws16_mb << 20;
    c->sync_each_op = env.sync;
    snprintf(c->name, sizeof c->name, "cuda:%d", device);

    be->version = BACKEND_API_VERSION;
    be->name = c->name;
    be->ctx = c;
    be->attention_dh_max = 128;   /* kernels/attention.cu ATT_DHMAX */
    be->precision = BACKEND_BF16; /* the default here; BACKEND_FP32 stays for parity */
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
    be->attention_scores = cuda_attention_scores_op;
    be->lowrank_rstd = cuda_lowrank_rstd_op;
    be->row_affine = cuda_row_affine_op;
    if (env.fused) {   /* SAM2AMG_CUDA_FUSED=0: the composed ops (A/B on a device) */
        be->linear_ex = cuda_linear_ex;
        be->attention_kv16 = cuda_attention_kv16_op;
        be->lowrank_expand = cuda_lowrank_expand_op;
        be->lowrank_rstd_gram = cuda_lowrank_rstd_gram_op;
    }
    be->mem_info = cuda_mem_info;
    be->upscale2_masks = cuda_upscale2_masks_op;
    be->amg = &cuda_amg_ops;
    return be;
}

/* ---- the plugin entry (src/plugin.c loads it from libsam2amg_cuda.so) ---- */

static int cuda_device_count(int *n, struct err_t *err) {
    *n = 0;
    cudaError_t rc = cudaGetDeviceCount(n);
    if (rc == cudaSuccess) return 0;
    (void)cudaGetLastError();
    *n = 0;
    if (rc == cudaErrorNoDevice) return 0;
    if (rc == cudaErrorInsufficientDriver)   // also what a machine without a driver says
        return err_set(err, ERR_BACKEND, "no CUDA driver (libcuda.so), or one older than this "
                       "build's CUDA runtime %d.%d", CUDART_VERSION / 1000,
                       CUDART_VERSION % 1000 / 10);
    return err_set(err, ERR_BACKEND, "no usable CUDA device (%s)", cudaGetErrorString(rc));
}

/* sam2amg_cuda_plugin_v1: the plugin's one entry (BACKEND_PLUGIN_SYMBOL);
 * the name carries the plugin ABI, api_version the struct backend layout. */
__attribute__((visibility("default"))) const backend_plugin_t *sam2amg_cuda_plugin_v1(void) {
    static const backend_plugin_t p = {
        .api_version = BACKEND_API_VERSION,
        .create = backend_cuda_create,
        .device_count = cuda_device_count,
    };
    return &p;
}

#endif /* SAM2AMG_CUDA */
