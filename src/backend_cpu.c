/* backend_cpu.c: the CPU reference backend (plain C, OpenBLAS, pthreads).
 *
 * Implements every op of include/backend.h on host memory. Work is spread
 * over a persistent pool of n_threads threads (the calling thread is thread
 * 0) by one primitive, cpu_parallel_for(), which cuts a range of rows into
 * at most n_threads contiguous chunks. GEMMs go to OpenBLAS's cblas_sgemm,
 * called from inside the pool on each thread's own rows with OpenBLAS
 * itself single-threaded: one set of threads, no oversubscription, and the
 * same partitioning code for GEMM and non-GEMM ops. bench/bench_ops.c
 * times it against one call to a multi-threaded OpenBLAS: on the 2-core
 * development machine the two were equal within noise at the Hiera and
 * decoder shapes, and the pool keeps several backends in one process from
 * fighting over OpenBLAS's global thread count.
 *
 * Nothing is allocated per op in steady state: scratch (attention score
 * rows, im2col tiles, permuted weights) comes from per-thread buffers that
 * grow to the largest request seen and are then reused.
 *
 * A backend instance is used by one caller thread at a time (each worker of
 * the job runner owns its own backend); the ops are synchronous, so sync()
 * has nothing to wait for.
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "thread.h"

/* ---- floating-point mode ----
 * Every op runs with subnormals flushed to zero (x86 MXCSR FTZ and DAZ,
 * aarch64 FPCR.FZ). Softmax probabilities of sharp attention rows fall
 * below FLT_MIN (1.2e-38), and the GEMMs that read them (attention's S.v,
 * the low-rank P.B products) then take a microcode assist per subnormal
 * operand or result on Intel cores: that made the decoder ~2.7x slower on
 * a trained-like checkpoint than on bench_decoder's random weights, whose
 * attention is flat. A flushed value differs from the exact one by less
 * than 1.2e-38, far below every tolerance. The caller's own mode is
 * restored after each op, so only the backend's work is affected. */
#if defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
typedef unsigned cpu_fpmode_t;
static cpu_fpmode_t cpu_fp_flush(void) {
    cpu_fpmode_t old = _mm_getcsr();
    _mm_setcsr(old | 0x8040);   /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}
static void cpu_fp_restore(cpu_fpmode_t old) { _mm_setcsr(old); }
#elif defined(__aarch64__)
typedef unsigned long long cpu_fpmode_t;
static cpu_fpmode_t cpu_fp_flush(void) {
    cpu_fpmode_t old;
    __asm__ volatile("mrs %0, fpcr" : "=r"(old));
    __asm__ volatile("msr fpcr, %0" : : "r"(old | (1ull << 24)));   /* FZ */
    return old;
}
static void cpu_fp_restore(cpu_fpmode_t old) { __asm__ volatile("msr fpcr, %0" : : "r"(old)); }
#else
typedef int cpu_fpmode_t;
static cpu_fpmode_t cpu_fp_flush(void) { return 0; }
static void cpu_fp_restore(cpu_fpmode_t old) { (void)old; }
#endif

/* ---- thread pool ---- */

typedef void (*cpu_task_fn)(void *arg, int64_t begin, int64_t end, int tid);

typedef struct cpu_scratch {
    void  *ptr;
    size_t cap;     /* bytes */
} cpu_scratch_t;

typedef struct cpu_ctx {
    int              n_threads;  /* pool size including the caller */
    pthread_t       *threads;    /* (n_threads-1) workers */
    pthread_mutex_t  mu;
    pthread_cond_t   cv_work;    /* workers wait here for a new generation */
    pthread_cond_t   cv_done;    /* the caller waits here for pending == 0 */
    uint64_t         gen;        /* bumped once per parallel job */
    int              quit;
    cpu_task_fn      fn;         /* the current job */
    void            *arg;
    int64_t          n;          /* items in the current job */
    int              chunks;     /* threads taking part (ids 0..chunks-1) */
    int              pending;    /* workers of this job not finished yet */
    cpu_scratch_t   *scratch;    /* (n_threads) per-thread buffers */
    cpu_scratch_t    shared;     /* filled by the caller before a job, read by all */
    int              simd;       /* floats per vector of cpu_kern.inc's tasks: 4, 8, 16 */
} cpu_ctx_t;

typedef struct cpu_worker_arg {
    cpu_ctx_t *ctx;
    int        tid;
} cpu_worker_arg_t;

static void cpu_run_chunk(cpu_ctx_t *c, int tid) {
    int64_t b = c->n * tid / c->chunks, e = c->n * (tid + 1) / c->chunks;
    if (e > b) c->fn(c->arg, b, e, tid);
}

static void *cpu_worker_main(void *p) {
    cpu_worker_arg_t *wa = p;
    cpu_ctx_t *c = wa->ctx;
    int tid = wa->tid;
    free(wa);
    cpu_fp_flush();   /* this thread only ever runs ops */
    uint64_t seen = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->gen == seen && !c->quit) pthread_cond_wait(&c->cv_work, &c->mu);
        if (c->quit) break;
        seen = c->gen;
        if (tid >= c->chunks) continue;   /* not needed for this job */
        pthread_mutex_unlock(&c->mu);
        cpu_run_chunk(c, tid);
        pthread_mutex_lock(&c->mu);
        if (--c->pending == 0) pthread_cond_signal(&c->cv_done);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* cpu_parallel_for: fn(arg, begin, end, tid) over [0,n) cut into at most
 * n_threads contiguous chunks of at least `grain` items; returns when all
 * are done. Small jobs run on the caller alone. */
static void cpu_parallel_for(cpu_ctx_t *c, int64_t n, int64_t grain, cpu_task_fn fn,
                             void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t chunks = (n + grain - 1) / grain;
    if (chunks > c->n_threads) chunks = c->n_threads;
    cpu_fpmode_t fp = cpu_fp_flush();
    if (chunks <= 1) {
        fn(arg, 0, n, 0);
        cpu_fp_restore(fp);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->fn = fn;
    c->arg = arg;
    c->n = n;
    c->chunks = (int)chunks;
    c->pending = (int)chunks - 1;
    c->gen++;
    pthread_cond_broadcast(&c->cv_work);
    pthread_mutex_unlock(&c->mu);
    cpu_run_chunk(c, 0);
    pthread_mutex_lock(&c->mu);
    while (c->pending > 0) pthread_cond_wait(&c->cv_done, &c->mu);
    pthread_mutex_unlock(&c->mu);
    cpu_fp_restore(fp);
}

/* scratch of at least `bytes` for thread tid; grows (rarely), never shrinks */
static void *cpu_scratch_get(cpu_scratch_t *s, size_t bytes) {
    if (bytes > s->cap) {
        free(s->ptr);
        size_t cap = (bytes + 4095) / 4096 * 4096;
        if (cap < s->cap * 2) cap = (s->cap * 2 + 4095) / 4096 * 4096;
        s->ptr = aligned_alloc(256, cap);
        CHECK_MSG(s->ptr, "cpu backend: scratch of %zu bytes", cap);
        s->cap = cap;
    }
    return s->ptr;
}

static cpu_ctx_t *cpu_ctx(backend_t *be) { return be->ctx; }


/* ---- vector math: GCC vector extensions, no intrinsics. 4 floats wide
 * (16 bytes: SSE2 on every x86-64, NEON on aarch64) without extra flags,
 * which the rest of this file uses; on x86-64 also 8 (AVX2 + FMA) and 16
 * (AVX-512) wide under target attributes, for the hottest elementwise
 * tasks (cpu_kern.inc), picked at run time by cpu_simd_width. ---- */

#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_SIMD_X86 1
#else
#define CPU_SIMD_X86 0
#endif
#define CPU_TARGET_AVX2   __attribute__((target("avx2,fma")))
#define CPU_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))

#define KW 4
#define KS _v4
#define KTARGET
#include "cpu_vec.inc"
#undef KW
#undef KS
#undef KTARGET
#if CPU_SIMD_X86
#define KW 8
#define KS _v8
#define KTARGET CPU_TARGET_AVX2
#include "cpu_vec.inc"
#undef KW
#undef KS
#undef KTARGET
#define KW 16
#define KS _v16
#define KTARGET CPU_TARGET_AVX512
#include "cpu_vec.inc"
#undef KW
#undef KS
#undef KTARGET
#endif


/* ---- job shapes of the tasks in cpu_kern.inc ---- */

typedef struct ew_job {
    float       *y;
    const float *x, *a, *b, *w;
    int64_t      M, C;
    float        alpha, beta, eps;
} ew_job_t;

typedef struct lr_job {
    float       *y;
    const float *x, *a, *s, *sa, *u, *q, *k, *e, *pg, *xx;
    int64_t      ldy, ldx, lds, ldu, ldq, ldk, B, M, N, Lq, Lk, nh, dh, r, C;
    float        scale, eps;
} lr_job_t;

typedef struct up2_job {
    float       *masks;
    const float *x, *wp, *b, *skip, *hyper;
    int64_t      H, W, Cin, Cout, nm;
    cpu_ctx_t   *ctx;
} up2_job_t;

typedef struct att_job {
    float       *o;
    const float *q, *k, *v;
    int64_t      ldq, ldk, ldv;
    int64_t      sq;    /* probs_task: q's item stride (0: shared) */
    int64_t      B, Lq, Lk, nh, dh, qb, nqb;
    float        scale;
    int          raw;   /* attention_scores: no softmax */
    cpu_ctx_t   *ctx;
} att_job_t;

/* the tasks of cpu_kern.inc at each width */
#define KW 4
#define KS _v4
#define KTARGET
#include "cpu_kern.inc"
#if CPU_SIMD_X86
#define KW 8
#define KS _v8
#define KTARGET CPU_TARGET_AVX2
#include "cpu_kern.inc"
#define KW 16
#define KS _v16
#define KTARGET CPU_TARGET_AVX512
#include "cpu_kern.inc"
#endif

#define VW 4   /* floats per vector, outside cpu_kern.inc */
typedef vf_v4 vf;
typedef vi_v4 vi;
#define v_load   v_load_v4
#define v_store  v_store_v4
#define v_set1   v_set1_v4
#define v_select v_select_v4
#define v_hsum   v_hsum_v4
#define v_hmax   v_hmax_v4
#define v_exp    v_exp_v4
#define v_gelu   v_gelu_v4

/* CPU_TASK(c, name): the task `name` at the context's vector width */
#if CPU_SIMD_X86
#define CPU_TASK(c, name) \
    ((c)->simd == 16 ? name##_v16 : (c)->simd == 8 ? name##_v8 : name##_v4)
#else
#define CPU_TASK(c, name) name##_v4
#endif

/* ---- memory ---- */

static void *cpu_alloc(backend_t *be, size_t size) {
    (void)be;
    size_t n = (size + 255) / 256 * 256;
    return aligned_alloc(256, n ? n : 256);
}
static void cpu_free(backend_t *be, void *ptr) {
    (void)be;
    free(ptr);
}
static void cpu_memcpy(backend_t *be, void *dst, const void *src, size_t size) {
    (void)be;
    if (size) memcpy(dst, src, size);
}
static void cpu_memset0(backend_t *be, void *dst, size_t size) {
    (void)be;
    if (size) memset(dst, 0, size);
}
static void cpu_sync(backend_t *be) { (void)be; }

/* ---- dense algebra ---- */

/* a batch of `batch` GEMMs c_t (M,N) = a_t (M,K) . op(b_t) + bias, with
 * general strides. The (batch*M rows) x (N columns) output is cut into a
 * pm x pn grid of tiles, one per thread: each single-threaded sgemm then
 * packs its own rows of a and columns of b, so the grid is chosen to keep
 * those panels small (many rows: split rows; few rows and a wide output,
 * as in the decoder's token MLP: split columns). */
typedef struct gemm_job {
    float       *c;
    const float *a, *b, *bias;
    int64_t      lda, ldb, ldc;      /* row strides */
    int64_t      sa, sb, sc;         /* item strides */
    int64_t      batch, M, K, N;
    int          trans_b;            /* b is (N,K) when set, else (K,N) */
    int64_t      pm, pn;             /* tile grid */
} gemm_job_t;

static void gemm_block(const gemm_job_t *g, int64_t t, int64_t r0, int64_t r1, int64_t n0,
                       int64_t n1) {
    int64_t m = r1 - r0, n = n1 - n0;
    if (m <= 0 || n <= 0) return;
    float *c = g->c + t * g->sc + r0 * g->ldc + n0;
    const float *a = g->a + t * g->sa + r0 * g->lda;
    const float *b = g->b + t * g->sb + (g->trans_b ? n0 * g->ldb : n0);
    /* with a bias, c starts as the bias rows and sgemm accumulates (beta 1):
     * one pass over c instead of OpenBLAS zeroing it and a bias pass after */
    if (g->bias)
        for (int64_t i = 0; i < m; i++)
            memcpy(c + i * g->ldc, g->bias + n0, (size_t)n * sizeof(float));
    else if (g->K == 0)
        for (int64_t i = 0; i < m; i++) memset(c + i * g->ldc, 0, (size_t)n * sizeof(float));
    if (g->K > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                    (int)m, (int)n, (int)g->K, 1.0f, a, (int)g->lda, b, (int)g->ldb,
                    g->bias ? 1.0f : 0.0f, c, (int)g->ldc);
}

static void gemm_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const gemm_job_t *g = arg;
    int64_t rows = g->batch * g->M;
    for (int64_t tile = begin; tile < end; tile++) {
        int64_t tm = tile / g->pn, tn = tile % g->pn;
        int64_t lo = rows * tm / g->pm, hi = rows * (tm + 1) / g->pm;
        /* column edges on multiples of 16 floats (whole cache lines) */
        int64_t n0 = (g->N * tn / g->pn + 8) / 16 * 16, n1 = (g->N * (tn + 1) / g->pn + 8) / 16 * 16;
        if (tn == 0) n0 = 0;
        if (tn == g->pn - 1) n1 = g->N;
        if (n1 > g->N) n1 = g->N;
        while (lo < hi) {   /* rows lo..hi of the flattened (batch*M) row space */
            int64_t t = lo / g->M, r0 = lo % g->M;
            int64_t r1 = r0 + (hi - lo) < g->M ? r0 + (hi - lo) : g->M;
            gemm_block(g, t, r0, r1, n0, n1);
            lo += r1 - r0;
        }
    }
}

static void cpu_gemm_run(cpu_ctx_t *c, gemm_job_t *g) {
    if (g->batch <= 0 || g->M <= 0 || g->N <= 0) return;
    int64_t rows = g->batch * g->M;
    /* threads: at most one per ~2 MFLOP, so tiny GEMMs stay on the caller */
    double flops = 2.0 * (double)rows * (double)g->N * (double)(g->K + 1);
    int64_t nt = (int64_t)(flops / 2e6) + 1;
    if (nt > c->n_threads) nt = c->n_threads;
    if (nt > rows * ((g->N + 15) / 16)) nt = rows * ((g->N + 15) / 16);
    /* grid pm x pn = nt minimizing the panel sizes rows/pm + N/pn */
    int64_t best_pn = 1;
    double best = 1e300;
    for (int64_t pn = 1; pn <= nt; pn++) {
        if (nt % pn || (pn > 1 && g->N / pn < 16) || nt / pn > rows) continue;
        double cost = (double)rows / (double)(nt / pn) + (double)g->N / (double)pn;
        if (cost < best) best = cost, best_pn = pn;
    }
    g->pn = best_pn;
    g->pm = nt / best_pn;
    cpu_parallel_for(c, g->pm * g->pn, 1, gemm_task, g);
}

static void cpu_linear(backend_t *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                       const float *w, const float *b, int64_t M, int64_t K, int64_t N) {
    // y is (M,N) stride ldy; x is (M,K) stride ldx; w is (N,K); b is (N) or NULL
    CHECK(M >= 0 && K >= 0 && N >= 0 && ldx >= K && ldy >= N);
    gemm_job_t g = {.c = y, .a = x, .b = w, .bias = b, .lda = ldx, .ldb = K, .ldc = ldy,
                    .batch = 1, .M = M, .K = K, .N = N, .trans_b = 1};
    cpu_gemm_run(cpu_ctx(be), &g);
}

static void cpu_bmm(backend_t *be, float *c, const float *a, const float *b, int64_t batch,
                    int64_t M, int64_t K, int64_t N, int trans_b) {
    // c is (batch,M,N); a is (batch,M,K); b is (batch,K,N), or (batch,N,K) with trans_b
    CHECK(batch >= 0 && M >= 0 && K >= 0 && N >= 0);
    gemm_job_t g = {.c = c, .a = a, .b = b, .lda = K, .ldb = trans_b ? K : N, .ldc = N,
                    .sa = M * K, .sb = K * N, .sc = M * N, .batch = batch, .M = M, .K = K,
                    .N = N, .trans_b = trans_b};
    cpu_gemm_run(cpu_ctx(be), &g);
}

/* attention: items are (batch, head, block of qb query rows). Per item
 * the scores S (qb,Lk) = scale q k^T go to the thread's scratch, each row
 * is softmaxed in place (max subtracted, float), and o = S v is written
 * straight into the output's head slice. q, k, v of one head are strided
 * matrices already (row strides ldq/ldk/ldv), so nothing is gathered. */
#define ATT_QB_MIN 64           /* query rows per block, at least ... */
#define ATT_SCORES (1 << 16)    /* ... and up to this many scores per block */




/* att_query_block: query rows per attention work item. Big blocks amortize
 * the GEMM calls when Lk is short (windows, 8 decoder tokens); they are
 * halved while there are too few items to share among the threads. */
static int64_t att_query_block(const cpu_ctx_t *c, int64_t B, int64_t Lq, int64_t Lk,
                               int64_t nh) {
    int64_t qb = ATT_SCORES / Lk;
    qb = qb < ATT_QB_MIN ? ATT_QB_MIN : qb;
    qb = qb > Lq ? (Lq > 0 ? Lq : 1) : qb;
    while (qb > ATT_QB_MIN && B * nh * ((Lq + qb - 1) / qb) < 4 * c->n_threads) qb = (qb + 1) / 2;
    return qb;
}

static void cpu_attention(backend_t *be, float *o, const float *q, int64_t ldq,
                          const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t B,
                          int64_t Lq, int64_t Lk, int64_t nh, int64_t dh, float scale) {
    // o is (B,Lq,nh*dh); q is (B,Lq,nh,dh) stride ldq; k, v are (B,Lk,nh,dh) strides ldk, ldv
    CHECK(B >= 0 && Lq >= 0 && Lk > 0 && nh > 0 && dh > 0);
    CHECK(ldq >= nh * dh && ldk >= nh * dh && ldv >= nh * dh);
    cpu_ctx_t *c = cpu_ctx(be);
    int64_t qb = att_query_block(c, B, Lq, Lk, nh);
    att_job_t A = {.o = o, .q = q, .k = k, .v = v, .ldq = ldq, .ldk = ldk, .ldv = ldv, .B = B,
                   .Lq = Lq, .Lk = Lk, .nh = nh, .dh = dh, .qb = qb, .nqb = (Lq + qb - 1) / qb,
                   .scale = scale, .ctx = c};
    int64_t flops_item = 4 * qb * Lk * dh + 1;
    cpu_parallel_for(c, B * nh * A.nqb, (int64_t)(2e6 / (double)flops_item) + 1,
                     CPU_TASK(c, att_task), &A);
}

/* ---- normalization and elementwise ---- */


/* floats per chunk for cheap elementwise ops: waking a pool thread costs
 * about as much as streaming 64K floats (measured with `add` on 2 cores) */
#define EW_GRAIN 65536


static void cpu_layer_norm(backend_t *be, float *y, const float *x, const float *w,
                           const float *b, int64_t M, int64_t C, float eps) {
    // y, x are (M,C) (may alias); w, b are (C)
    CHECK(M >= 0 && C > 0);
    ew_job_t J = {.y = y, .x = x, .w = w, .b = b, .M = M, .C = C, .eps = eps};
    cpu_parallel_for(cpu_ctx(be), M, EW_GRAIN / C + 1, CPU_TASK(cpu_ctx(be), ln_task), &J);
}


static void cpu_gelu(backend_t *be, float *y, const float *x, int64_t n) {
    ew_job_t J = {.y = y, .x = x};
    cpu_parallel_for(cpu_ctx(be), n, EW_GRAIN / 4, CPU_TASK(cpu_ctx(be), gelu_task), &J);
}

static void relu_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const ew_job_t *J = arg;
    for (int64_t i = begin; i < end; i++) J->y[i] = J->x[i] > 0.0f ? J->x[i] : 0.0f;
}

static void cpu_relu(backend_t *be, float *y, const float *x, int64_t n) {
    ew_job_t J = {.y = y, .x = x};
    cpu_parallel_for(cpu_ctx(be), n, EW_GRAIN, relu_task, &J);
}

static void add_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const ew_job_t *J = arg;
    for (int64_t i = begin; i < end; i++) J->y[i] = J->a[i] + J->b[i];
}

static void cpu_add(backend_t *be, float *y, const float *a, const float *b, int64_t n) {
    ew_job_t J = {.y = y, .a = a, .b = b};
    cpu_parallel_for(cpu_ctx(be), n, EW_GRAIN, add_task, &J);
}

static void add_row_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const ew_job_t *J = arg;
    int64_t C = J->C;
    for (int64_t i = begin; i < end; i++)
        for (int64_t c = 0; c < C; c++) J->y[i * C + c] = J->x[i * C + c] + J->a[c];
}

static void cpu_add_row(backend_t *be, float *y, const float *x, const float *row, int64_t M,
                        int64_t C) {
    // y, x are (M,C) (may alias); row is (C)
    CHECK(M >= 0 && C > 0);
    ew_job_t J = {.y = y, .x = x, .a = row, .M = M, .C = C};
    cpu_parallel_for(cpu_ctx(be), M, EW_GRAIN / C + 1, add_row_task, &J);
}

static void scale_add_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const ew_job_t *J = arg;
    float al = J->alpha, be = J->beta;
    if (be == 0.0f)   /* as in BLAS, beta 0 does not read y (0 * NaN) */
        for (int64_t i = begin; i < end; i++) J->y[i] = al * J->x[i];
    else
        for (int64_t i = begin; i < end; i++) J->y[i] = al * J->x[i] + be * J->y[i];
}

static void cpu_scale_add(backend_t *be, float *y, const float *x, float alpha, float beta,
                          int64_t n) {
    ew_job_t J = {.y = y, .x = x, .alpha = alpha, .beta = beta};
    cpu_parallel_for(cpu_ctx(be), n, EW_GRAIN, scale_add_task, &J);
}

/* ---- low-rank LayerNorm helpers ---- */



static void probs_run(backend_t *be, float *p, int64_t ldp, const float *q, int64_t ldq,
                      int64_t sq, const float *k, int64_t ldk, int64_t B, int64_t Lq, int64_t Lk,
                      int64_t nh, int64_t dh, float scale, int raw) {
    // p is (B,Lq) rows of (nh,Lk) stride ldp; q is (B,Lq,nh,dh) stride ldq, item stride sq
    // (0: shared); k (B,Lk,nh,dh)
    CHECK(B >= 0 && Lq >= 0 && Lk > 0 && nh > 0 && dh > 0 && sq >= 0);
    CHECK(ldp >= nh * Lk && ldq >= nh * dh && ldk >= nh * dh);
    cpu_ctx_t *c = cpu_ctx(be);
    int64_t qb = att_query_block(c, B, Lq, Lk, nh);
    att_job_t A = {.o = p, .q = q, .k = k, .ldq = ldq, .ldk = ldk, .ldv = ldp, .sq = sq, .B = B,
                   .Lq = Lq, .Lk = Lk, .nh = nh, .dh = dh, .qb = qb, .nqb = (Lq + qb - 1) / qb,
                   .scale = scale, .raw = raw, .ctx = c};
    int64_t flops_item = 2 * qb * Lk * (dh + 8) + 1;
    cpu_parallel_for(c, B * nh * A.nqb, (int64_t)(2e6 / (double)flops_item) + 1,
                     CPU_TASK(c, probs_task), &A);
}

static void cpu_attention_probs(backend_t *be, float *p, int64_t ldp, const float *q,
                                int64_t ldq, int64_t sq, const float *k, int64_t ldk, int64_t B,
                                int64_t Lq, int64_t Lk, int64_t nh, int64_t dh, float scale) {
    probs_run(be, p, ldp, q, ldq, sq, k, ldk, B, Lq, Lk, nh, dh, scale, 0);
}

static void cpu_attention_scores(backend_t *be, float *p, int64_t ldp, const float *q,
                                 int64_t ldq, int64_t sq, const float *k, int64_t ldk, int64_t B,
                                 int64_t Lq, int64_t Lk, int64_t nh, int64_t dh, float scale) {
    probs_run(be, p, ldp, q, ldq, sq, k, ldk, B, Lq, Lk, nh, dh, scale, 1);
}

static void rstd_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const lr_job_t *J = arg;
    for (int64_t i = begin; i < end; i++) {
        double si = J->s ? J->s[i] : 1.0, acc = si * si * J->xx[i % J->M];
        const float *p = J->q + i * J->ldq, *e = J->e + i * J->r, *pg = J->pg + i * J->r;
        for (int64_t kk = 0; kk < J->r; kk++)
            acc += (double)p[kk] * (2.0 * si * e[kk] + pg[kk]);
        double var = acc / (double)J->C;
        J->y[i] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + J->eps));
    }
}

static void cpu_lowrank_rstd(backend_t *be, float *rstd, const float *xx, const float *s,
                             const float *p, int64_t ldp, const float *e, const float *pg,
                             int64_t B, int64_t Mx, int64_t r, int64_t C, float eps) {
    // rstd is (B*Mx); xx (Mx); s (B*Mx) or NULL; p (B*Mx,r) stride ldp; e, pg (B*Mx,r)
    CHECK(B >= 0 && Mx > 0 && r >= 0 && ldp >= r && C > 0);
    lr_job_t J = {.y = rstd, .xx = xx, .s = s, .q = p, .ldq = ldp, .e = e, .pg = pg, .M = Mx,
                  .r = r, .C = C, .eps = eps};
    cpu_parallel_for(cpu_ctx(be), B * Mx, EW_GRAIN / (4 * r + 4) + 1, rstd_task, &J);
}


static void cpu_row_affine(backend_t *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                           const float *a, const float *s, int64_t lds, const float *sa,
                           const float *u, int64_t ldu, int64_t B, int64_t M, int64_t N) {
    // y, x are (B*M,N) strides ldy, ldx (alias only with ldy == ldx); a, sa (B*M); s, u (M,N)
    CHECK(B >= 0 && M > 0 && N >= 0 && ldx >= N && ldy >= N && lds >= 0 && ldu >= 0);
    CHECK(y != x || ldy == ldx);
    lr_job_t J = {.y = y, .ldy = ldy, .x = x, .ldx = ldx, .a = a, .s = s, .lds = lds, .sa = sa,
                  .u = u, .ldu = ldu, .B = B, .M = M, .N = N};
    if (B == 0) return;
    cpu_parallel_for(cpu_ctx(be), B * M, EW_GRAIN / (N + 1) + 1,
                     CPU_TASK(cpu_ctx(be), row_affine_task), &J);
}

/* ---- spatial (NHWC) ---- */

/* conv2d: items are output rows (b, oy). Each row's patches are gathered
 * into an im2col tile (Wo, Cin*kh*kw) in the weight's (ci,ky,kx) order, so
 * the weight (Cout, Cin*kh*kw) is used as is, and one GEMM writes the row. */
typedef struct conv_job {
    float       *y;
    const float *x, *w, *b;
    int64_t      B, H, W, Cin, Cout, Ho, Wo;
    int          kh, kw, stride, pad;
    cpu_ctx_t   *ctx;
} conv_job_t;

static void conv_task(void *arg, int64_t begin, int64_t end, int tid) {
    const conv_job_t *J = arg;
    int64_t Kc = J->Cin * J->kh * J->kw;
    float *col = cpu_scratch_get(&J->ctx->scratch[tid], (size_t)J->Wo * Kc * sizeof(float));
    for (int64_t r = begin; r < end; r++) {
        int64_t b = r / J->Ho, oy = r % J->Ho;
        for (int64_t ox = 0; ox < J->Wo; ox++) {
            float *cr = col + ox * Kc;
            for (int ky = 0; ky < J->kh; ky++) {
                int64_t iy = oy * J->stride - J->pad + ky;
                for (int kx = 0; kx < J->kw; kx++) {
                    int64_t ix = ox * J->stride - J->pad + kx;
                    int64_t off = ky * J->kw + kx, step = J->kh * J->kw;
                    if (iy < 0 || iy >= J->H || ix < 0 || ix >= J->W) {
                        for (int64_t ci = 0; ci < J->Cin; ci++) cr[ci * step + off] = 0.0f;
                    } else {
                        const float *px = J->x + ((b * J->H + iy) * J->W + ix) * J->Cin;
                        for (int64_t ci = 0; ci < J->Cin; ci++) cr[ci * step + off] = px[ci];
                    }
                }
            }
        }
        float *yr = J->y + (b * J->Ho + oy) * J->Wo * J->Cout;
        if (J->b)   /* start from the bias, accumulate (see gemm_block) */
            for (int64_t i = 0; i < J->Wo; i++)
                memcpy(yr + i * J->Cout, J->b, (size_t)J->Cout * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)J->Wo, (int)J->Cout, (int)Kc,
                    1.0f, col, (int)Kc, J->w, (int)Kc, J->b ? 1.0f : 0.0f, yr, (int)J->Cout);
    }
}

static void cpu_conv2d(backend_t *be, float *y, const float *x, const float *w, const float *b,
                       int64_t B, int64_t H, int64_t W, int64_t Cin, int64_t Cout, int kh,
                       int kw, int stride, int pad) {
    // y is (B,Ho,Wo,Cout); x is (B,H,W,Cin); w is (Cout,Cin,kh,kw); b is (Cout) or NULL
    CHECK(B >= 0 && Cin > 0 && Cout > 0 && kh > 0 && kw > 0 && stride > 0 && pad >= 0);
    CHECK(H + 2 * pad >= kh && W + 2 * pad >= kw);
    int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {   /* a Linear over pixels */
        cpu_linear(be, y, Cout, x, Cin, w, b, B * H * W, Cin, Cout);
        return;
    }
    conv_job_t J = {.y = y, .x = x, .w = w, .b = b, .B = B, .H = H, .W = W, .Cin = Cin,
                    .Cout = Cout, .Ho = Ho, .Wo = Wo, .kh = kh, .kw = kw, .stride = stride,
                    .pad = pad, .ctx = cpu_ctx(be)};
    int64_t flops_row = 2 * Wo * Cout * Cin * kh * kw + 1;
    cpu_parallel_for(J.ctx, B * Ho, (int64_t)(2e6 / (double)flops_row) + 1, conv_task, &J);
}

/* conv_transpose2x2: output row 2i+dy of the (2W, Cout) grid is the input
 * row (W, Cin) times a permuted weight wp[dy] (Cin, 2*Cout) with
 * wp[dy][ci][dx*Cout+co] = w[ci][co][dy][dx]: two GEMMs per input row write
 * the output directly. wp is built once per call into the shared scratch. */
typedef struct convt_job {
    float       *y;
    const float *x, *wp, *b;
    int64_t      H, W, Cin, Cout;
} convt_job_t;

static void convt_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const convt_job_t *J = arg;
    int64_t W = J->W, Cin = J->Cin, Cout = J->Cout;
    for (int64_t r = begin; r < end; r++) {   /* r = b*H + i */
        const float *xr = J->x + r * W * Cin;
        for (int dy = 0; dy < 2; dy++) {
            int64_t b = r / J->H, i = r % J->H;
            float *yr = J->y + ((b * 2 * J->H) + 2 * i + dy) * 2 * W * Cout;
            if (J->b)   /* start from the bias, accumulate (see gemm_block) */
                for (int64_t p = 0; p < 2 * W; p++)
                    memcpy(yr + p * Cout, J->b, (size_t)Cout * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)W, (int)(2 * Cout),
                        (int)Cin, 1.0f, xr, (int)Cin, J->wp + dy * Cin * 2 * Cout,
                        (int)(2 * Cout), J->b ? 1.0f : 0.0f, yr, (int)(2 * Cout));
        }
    }
}

static void cpu_conv_transpose2x2(backend_t *be, float *y, const float *x, const float *w,
                                  const float *b, int64_t B, int64_t H, int64_t W, int64_t Cin,
                                  int64_t Cout) {
    // y is (B,2H,2W,Cout); x is (B,H,W,Cin); w is (Cin,Cout,2,2); b is (Cout) or NULL
    CHECK(B >= 0 && H >= 0 && W >= 0 && Cin > 0 && Cout > 0);
    cpu_ctx_t *c = cpu_ctx(be);
    float *wp = cpu_scratch_get(&c->shared, (size_t)4 * Cin * Cout * sizeof(float));
    for (int dy = 0; dy < 2; dy++)
        for (int64_t ci = 0; ci < Cin; ci++)
            for (int dx = 0; dx < 2; dx++)
                for (int64_t co = 0; co < Cout; co++)
                    wp[(dy * Cin + ci) * 2 * Cout + dx * Cout + co] = w[((ci * Cout + co) * 2 + dy) * 2 + dx];
    convt_job_t J = {.y = y, .x = x, .wp = wp, .b = b, .H = H, .W = W, .Cin = Cin, .Cout = Cout};
    int64_t flops_row = 8 * W * Cin * Cout + 1;
    cpu_parallel_for(c, B * H, (int64_t)(2e6 / (double)flops_row) + 1, convt_task, &J);
}



static void cpu_upscale2_masks(backend_t *be, float *masks, const float *x, const float *w,
                               const float *b, const float *skip, const float *hyper,
                               int64_t n, int64_t H, int64_t W, int64_t Cin, int64_t Cout,
                               int64_t nm) {
    // masks is (n,nm,2H,2W); x is (n,H,W,Cin); w is (Cin,Cout,2,2); b is (Cout);
    // skip is (2H,2W,Cout) or NULL; hyper is (n,nm,Cout)
    CHECK(n >= 0 && H >= 0 && W >= 0 && Cin > 0 && Cout > 0 && nm > 0 && b);
    if (n == 0 || H == 0 || W == 0) return;
    cpu_ctx_t *c = cpu_ctx(be);
    /* wp (Cin, [dy][dx][Cout]): one GEMM per input row gives all four taps */
    float *wp = cpu_scratch_get(&c->shared, (size_t)4 * Cin * Cout * sizeof(float));
    for (int64_t ci = 0; ci < Cin; ci++)
        for (int k = 0; k < 4; k++)
            for (int64_t co = 0; co < Cout; co++)
                wp[(ci * 4 + k) * Cout + co] = w[(ci * Cout + co) * 4 + k];
    up2_job_t J = {.masks = masks, .x = x, .wp = wp, .b = b, .skip = skip, .hyper = hyper,
                   .H = H, .W = W, .Cin = Cin, .Cout = Cout, .nm = nm, .ctx = c};
    int64_t flops_item = 8 * W * Cout * (Cin + nm + 8) + 1;
    cpu_parallel_for(c, n * H, (int64_t)(2e6 / (double)flops_item) + 1, CPU_TASK(c, up2_task),
                     &J);
}

/* the data-movement ops share one job shape: items are output rows */
typedef struct move_job {
    float       *y;
    const float *x;
    int64_t      B, H, W, C, ws, nwh, nww, Ho, Wo;
} move_job_t;

static void maxpool_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const move_job_t *J = arg;
    int64_t C = J->C, W = J->W;
    for (int64_t r = begin; r < end; r++) {   /* r = b*Ho + oy */
        int64_t b = r / J->Ho, oy = r % J->Ho;
        const float *x0 = J->x + ((b * J->H) + 2 * oy) * W * C, *x1 = x0 + W * C;
        float *yr = J->y + r * J->Wo * C;
        for (int64_t ox = 0; ox < J->Wo; ox++)
            for (int64_t c = 0; c < C; c++) {
                const int64_t p = 2 * ox * C + c;
                float m0 = x0[p] > x0[p + C] ? x0[p] : x0[p + C];
                float m1 = x1[p] > x1[p + C] ? x1[p] : x1[p + C];
                yr[ox * C + c] = m0 > m1 ? m0 : m1;
            }
    }
}

static void cpu_maxpool2x2(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                           int64_t W, int64_t C) {
    // y is (B,H/2,W/2,C); x is (B,H,W,C)
    move_job_t J = {.y = y, .x = x, .B = B, .H = H, .W = W, .C = C, .Ho = H / 2, .Wo = W / 2};
    cpu_parallel_for(cpu_ctx(be), B * J.Ho, EW_GRAIN / (J.Wo * C + 1) + 1, maxpool_task, &J);
}

static void upsample_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const move_job_t *J = arg;
    int64_t C = J->C, W = J->W;
    for (int64_t r = begin; r < end; r++) {   /* r = b*2H + oy */
        int64_t b = r / (2 * J->H), oy = r % (2 * J->H);
        const float *xr = J->x + (b * J->H + oy / 2) * W * C;
        float *yr = J->y + r * 2 * W * C;
        for (int64_t ix = 0; ix < W; ix++) {
            memcpy(yr + 2 * ix * C, xr + ix * C, (size_t)C * sizeof(float));
            memcpy(yr + (2 * ix + 1) * C, xr + ix * C, (size_t)C * sizeof(float));
        }
    }
}

static void cpu_upsample_nearest2x(backend_t *be, float *y, const float *x, int64_t B,
                                   int64_t H, int64_t W, int64_t C) {
    // y is (B,2H,2W,C); x is (B,H,W,C)
    move_job_t J = {.y = y, .x = x, .B = B, .H = H, .W = W, .C = C};
    cpu_parallel_for(cpu_ctx(be), B * 2 * H, EW_GRAIN / (2 * W * C + 1) + 1, upsample_task,
                     &J);
}

static void wpart_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const move_job_t *J = arg;
    int64_t ws = J->ws, C = J->C;
    for (int64_t r = begin; r < end; r++) {   /* r = window*ws + row-in-window */
        int64_t win = r / ws, wr = r % ws;
        int64_t b = win / (J->nwh * J->nww), wy = (win / J->nww) % J->nwh, wx = win % J->nww;
        int64_t iy = wy * ws + wr, ix0 = wx * ws;
        float *yr = J->y + r * ws * C;
        int64_t nvalid = iy < J->H ? (J->W - ix0 < ws ? J->W - ix0 : ws) : 0;
        if (nvalid > 0)
            memcpy(yr, J->x + ((b * J->H + iy) * J->W + ix0) * C, (size_t)(nvalid * C) * sizeof(float));
        if (nvalid < ws) memset(yr + nvalid * C, 0, (size_t)((ws - nvalid) * C) * sizeof(float));
    }
}

static void cpu_window_partition(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                                 int64_t W, int64_t C, int64_t ws) {
    // y is (B*nwh*nww,ws,ws,C); x is (B,H,W,C)
    CHECK(ws > 0);
    move_job_t J = {.y = y, .x = x, .B = B, .H = H, .W = W, .C = C, .ws = ws,
                    .nwh = (H + ws - 1) / ws, .nww = (W + ws - 1) / ws};
    cpu_parallel_for(cpu_ctx(be), B * J.nwh * J.nww * ws, EW_GRAIN / (ws * C) + 1, wpart_task,
                     &J);
}

static void wunpart_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const move_job_t *J = arg;
    int64_t ws = J->ws, C = J->C, W = J->W;
    for (int64_t r = begin; r < end; r++) {   /* r = b*H + iy */
        int64_t b = r / J->H, iy = r % J->H;
        float *yr = J->y + r * W * C;
        for (int64_t wx = 0; wx < J->nww; wx++) {
            int64_t win = (b * J->nwh + iy / ws) * J->nww + wx;
            int64_t n = W - wx * ws < ws ? W - wx * ws : ws;
            memcpy(yr + wx * ws * C, J->x + ((win * ws) + iy % ws) * ws * C,
                   (size_t)(n * C) * sizeof(float));
        }
    }
}

static void cpu_window_unpartition(backend_t *be, float *y, const float *x, int64_t B,
                                   int64_t H, int64_t W, int64_t C, int64_t ws) {
    // y is (B,H,W,C); x is (B*nwh*nww,ws,ws,C)
    CHECK(ws > 0);
    move_job_t J = {.y = y, .x = x, .B = B, .H = H, .W = W, .C = C, .ws = ws,
                    .nwh = (H + ws - 1) / ws, .nww = (W + ws - 1) / ws};
    cpu_parallel_for(cpu_ctx(be), B * H, EW_GRAIN / (W * C + 1) + 1, wunpart_task, &J);
}

/* transposes of (B, R, S) -> (B, S, R) in 32x32 tiles; items are tile rows */
#define TR_TILE 32

typedef struct tr_job {
    float       *y;
    const float *x;
    int64_t      B, R, S, nrt;   /* nrt: tile rows per batch item */
} tr_job_t;

static void transpose_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const tr_job_t *J = arg;
    int64_t R = J->R, S = J->S;
    for (int64_t it = begin; it < end; it++) {
        int64_t b = it / J->nrt, r0 = (it % J->nrt) * TR_TILE;
        int64_t r1 = r0 + TR_TILE < R ? r0 + TR_TILE : R;
        const float *x = J->x + b * R * S;
        float *y = J->y + b * R * S;
        for (int64_t s0 = 0; s0 < S; s0 += TR_TILE) {
            int64_t s1 = s0 + TR_TILE < S ? s0 + TR_TILE : S;
            for (int64_t s = s0; s < s1; s++)
                for (int64_t r = r0; r < r1; r++) y[s * R + r] = x[r * S + s];
        }
    }
}

static void cpu_transpose(cpu_ctx_t *c, float *y, const float *x, int64_t B, int64_t R,
                          int64_t S) {
    tr_job_t J = {.y = y, .x = x, .B = B, .R = R, .S = S, .nrt = (R + TR_TILE - 1) / TR_TILE};
    cpu_parallel_for(c, B * J.nrt, EW_GRAIN / (TR_TILE * S + 1) + 1, transpose_task, &J);
}

static void cpu_nhwc_to_nchw(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                             int64_t W, int64_t C) {
    // y is (B,C,H,W); x is (B,H,W,C)
    cpu_transpose(cpu_ctx(be), y, x, B, H * W, C);
}

static void cpu_nchw_to_nhwc(backend_t *be, float *y, const float *x, int64_t B, int64_t C,
                             int64_t H, int64_t W) {
    // y is (B,H,W,C); x is (B,C,H,W)
    cpu_transpose(cpu_ctx(be), y, x, B, C, H * W);
}

/* resize_bilinear: PyTorch's align_corners=False source index, computed in
 * float like PyTorch does for float tensors: src = (d + 0.5) * in/out - 0.5,
 * clamped at 0; lower neighbour floor(src) (at most in-1), upper one +1
 * unless at the edge. Column indices and weights are tabulated per thread. */
typedef struct rs_job {
    float       *y;
    const float *x;
    int64_t      N, Hi, Wi, Ho, Wo;
    cpu_ctx_t   *ctx;
} rs_job_t;

static void rs_index(int64_t d, int64_t n_in, int64_t n_out, int64_t *i0, int64_t *i1,
                     float *l1) {
    float scale = (float)n_in / (float)n_out;
    float src = scale * ((float)d + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    int64_t lo = (int64_t)src;   /* src >= 0: truncation is floor */
    if (lo > n_in - 1) lo = n_in - 1;
    float lam = src - (float)lo;
    *i0 = lo;
    *i1 = lo < n_in - 1 ? lo + 1 : lo;
    *l1 = lam < 0.0f ? 0.0f : lam > 1.0f ? 1.0f : lam;
}

static void resize_task(void *arg, int64_t begin, int64_t end, int tid) {
    const rs_job_t *J = arg;
    int64_t Wo = J->Wo, Wi = J->Wi;
    /* per thread: x0 (Wo) int64, x1 (Wo) int64, lx (Wo) float */
    int64_t *xi = cpu_scratch_get(&J->ctx->scratch[tid], (size_t)Wo * (2 * sizeof(int64_t) + sizeof(float)));
    float *lx = (float *)(xi + 2 * Wo);
    for (int64_t ox = 0; ox < Wo; ox++) rs_index(ox, Wi, Wo, &xi[ox], &xi[Wo + ox], &lx[ox]);
    for (int64_t r = begin; r < end; r++) {   /* r = n*Ho + oy */
        int64_t n = r / J->Ho, oy = r % J->Ho, y0, y1;
        float ly;
        rs_index(oy, J->Hi, J->Ho, &y0, &y1, &ly);
        const float *p0 = J->x + (n * J->Hi + y0) * Wi, *p1 = J->x + (n * J->Hi + y1) * Wi;
        float *yr = J->y + r * Wo;
        float ly0 = 1.0f - ly;
        for (int64_t ox = 0; ox < Wo; ox++) {
            int64_t a = xi[ox], c = xi[Wo + ox];
            float l1 = lx[ox], l0 = 1.0f - l1;
            yr[ox] = ly0 * (l0 * p0[a] + l1 * p0[c]) + ly * (l0 * p1[a] + l1 * p1[c]);
        }
    }
}

static void cpu_resize_bilinear(backend_t *be, float *y, const float *x, int64_t N, int64_t Hi,
                                int64_t Wi, int64_t Ho, int64_t Wo) {
    // y is (N,Ho,Wo); x is (N,Hi,Wi)
    CHECK(N >= 0 && Hi > 0 && Wi > 0 && Ho > 0 && Wo > 0);
    rs_job_t J = {.y = y, .x = x, .N = N, .Hi = Hi, .Wi = Wi, .Ho = Ho, .Wo = Wo,
                  .ctx = cpu_ctx(be)};
    cpu_parallel_for(J.ctx, N * Ho, EW_GRAIN / Wo + 1, resize_task, &J);
}

/* ---- lifetime ---- */

static void cpu_destroy(backend_t *be) {
    if (!be) return;
    cpu_ctx_t *c = be->ctx;
    pthread_mutex_lock(&c->mu);
    c->quit = 1;
    pthread_cond_broadcast(&c->cv_work);
    pthread_mutex_unlock(&c->mu);
    for (int t = 1; t < c->n_threads; t++) CHECK(pthread_join(c->threads[t - 1], NULL) == 0);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv_work);
    pthread_cond_destroy(&c->cv_done);
    for (int t = 0; t < c->n_threads; t++) free(c->scratch[t].ptr);
    free(c->shared.ptr);
    free(c->scratch);
    free(c->threads);
    free(c);
    free(be);
}

/* Each pool thread may be inside cblas_sgemm at once, and OpenBLAS keeps a
 * fixed table of 2*MAX_THREADS work buffers (Debian's build: MAX_THREADS=64)
 * and terminates the process when concurrent callers exhaust it. So one
 * pool has at most 64 threads, and all CPU backends of a process together
 * should stay under 128. */
#define CPU_MAX_THREADS 64

/* cpu_simd_width: floats per vector for cpu_kern.inc's tasks: the widest
 * the CPU and the OS support (16: AVX-512 F/DQ/BW/VL, 8: AVX2 + FMA, else
 * 4), lowered (never raised) by SAM2AMG_CPU_SIMD=4|8|16, which tests use
 * to check every width on one machine. */
static int cpu_simd_width(void) {
    int w = 4;
#if CPU_SIMD_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) w = 8;
    if (w == 8 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        w = 16;
#endif
    const char *e = getenv("SAM2AMG_CPU_SIMD");
    if (e && (!strcmp(e, "4") || !strcmp(e, "8") || !strcmp(e, "16")) && atoi(e) < w) w = atoi(e);
    return w;
}

/* backend_cpu_simd: the vector width a CPU backend's elementwise tasks use */
int backend_cpu_simd(const backend_t *be) { return ((const cpu_ctx_t *)be->ctx)->simd; }

/* backend_cpu_open: the reference backend with a pool of n_threads
 * threads including the caller (0 = the number of online CPUs; at most
 * CPU_MAX_THREADS). Sets OpenBLAS to one thread for the whole process,
 * since all parallelism comes from the pool. NULL with err set when a pool
 * thread cannot start (pids.max, RLIMIT_NPROC: the environment, not a
 * bug); the threads already started are stopped and joined. Allocation
 * failure aborts. */
backend_t *backend_cpu_open(int n_threads, err_t *err) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > CPU_MAX_THREADS) n_threads = CPU_MAX_THREADS;
    openblas_set_num_threads(1);
    backend_t *be = calloc(1, sizeof *be);
    cpu_ctx_t *c = calloc(1, sizeof *c);
    CHECK(be && c);
    c->n_threads = n_threads;
    c->simd = cpu_simd_width();
    c->threads = calloc((size_t)n_threads, sizeof *c->threads);
    c->scratch = calloc((size_t)n_threads, sizeof *c->scratch);
    CHECK(c->threads && c->scratch);
    CHECK(pthread_mutex_init(&c->mu, NULL) == 0);
    CHECK(pthread_cond_init(&c->cv_work, NULL) == 0);
    CHECK(pthread_cond_init(&c->cv_done, NULL) == 0);
    for (int t = 1; t < n_threads; t++) {
        cpu_worker_arg_t *wa = malloc(sizeof *wa);
        CHECK(wa);
        wa->ctx = c;
        wa->tid = t;
        int e = thread_start(&c->threads[t - 1], cpu_worker_main, wa);
        if (e) {   /* a pool of the t threads that run: cpu_destroy joins them */
            free(wa);
            c->n_threads = t;
            be->ctx = c;
            cpu_destroy(be);
            err_set(err, ERR_NOMEM, "cpu: cannot start thread: %s", strerror(e));
            return NULL;
        }
    }
    *be = (backend_t){
        .version = BACKEND_API_VERSION,
        .name = "cpu",
        .ctx = c,
        .precision = BACKEND_FP32,   /* no bf16 path on the CPU */
        .host_weights = 1,
        .alloc = cpu_alloc,
        .free = cpu_free,
        .upload = cpu_memcpy,
        .download = cpu_memcpy,
        .copy = cpu_memcpy,
        .memset0 = cpu_memset0,
        .sync = cpu_sync,
        .destroy = cpu_destroy,
        .linear = cpu_linear,
        .bmm = cpu_bmm,
        .attention = cpu_attention,
        .layer_norm = cpu_layer_norm,
        .gelu = cpu_gelu,
        .relu = cpu_relu,
        .add = cpu_add,
        .add_row = cpu_add_row,
        .scale_add = cpu_scale_add,
        .conv2d = cpu_conv2d,
        .conv_transpose2x2 = cpu_conv_transpose2x2,
        .maxpool2x2 = cpu_maxpool2x2,
        .upsample_nearest2x = cpu_upsample_nearest2x,
        .window_partition = cpu_window_partition,
        .window_unpartition = cpu_window_unpartition,
        .nhwc_to_nchw = cpu_nhwc_to_nchw,
        .nchw_to_nhwc = cpu_nchw_to_nhwc,
        .resize_bilinear = cpu_resize_bilinear,
        .attention_probs = cpu_attention_probs,
        .attention_scores = cpu_attention_scores,
        .lowrank_rstd = cpu_lowrank_rstd,
        .row_affine = cpu_row_affine,
        .upscale2_masks = cpu_upscale2_masks,
    };
    return be;
}

backend_t *backend_cpu_create(int n_threads) {
    err_t err = {{0}};
    backend_t *be = backend_cpu_open(n_threads, &err);
    CHECK_MSG(be, "%s", err.msg);
    return be;
}
