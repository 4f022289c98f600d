/* bench_blas.c: SGEMM through OpenBLAS, BLIS and oneDNN side by side in one
 * run, on the GEMM shapes the model runs (see `shapes` below), with the
 * same thread count for every library.
 *
 * OpenBLAS is the library the program links (after blas_startup's core
 * choice); BLIS (libblis.so.4, its native bli_sgemm) and oneDNN
 * (libdnnl.so.2, dnnl_sgemm and, where the CPU has AVX512-BF16,
 * dnnl_gemm_bf16bf16f32: bf16 inputs, fp32 accumulation and output;
 * timed with the inputs converted beforehand, and again with each tile of
 * both inputs converted inside the call) are
 * loaded with dlopen, so the bench builds and runs without them and says
 * "skip: ... not installed". Every library's result on every shape is
 * checked against a double-precision naive reference (on 61 sampled rows)
 * before it is timed; a failed check fails the bench.
 *
 * Threads: the CPU backend runs each GEMM as a grid of tiles, one per pool
 * thread, each tile one single-threaded BLAS call (src/backend_cpu.c,
 * cpu_gemm_run). "split" times exactly that with T threads (the library
 * set to 1 thread, the same tile grid rule), by the busiest thread's CPU
 * time (robust on a shared, loaded machine); with --own, "own" also gives
 * the whole GEMM to the library's own threading with T threads (wall time).
 *
 * Usage: bench_blas [--threads T] [--min-time S] [--own]   (T = 2, S = 0.2 s)
 * Prints per shape class GFLOP/s per library, then the total weighted by
 * the calls per image of the tiny-model `generate` the shapes came from.
 */
#include "blas.h"

#include <cblas.h>
#include <dlfcn.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* one shape class: C (M,N) = A (M,K) op(B), B (N,K) when tb (a linear's
 * weight, x.W^T) else (K,N); calls: how many such GEMMs one image's
 * `generate` runs (see the table's comment) */
typedef struct shape {
    const char *cls;
    int M, N, K, tb;
    double calls;
} shape_t;

/* Collected with an LD_PRELOAD wrapper around cblas_sgemm during
 * `sam2amg generate --threads 1` (so every call is a whole GEMM, not a
 * tile) on the real tiny shapes: 1024x768 image, 16x16 grid,
 * points_per_batch 64: the 34 shapes that took the most GEMM time, 93% of
 * it (83 shapes in all); `calls` is per image. "dec" shapes run per prompt
 * (256 prompts), "enc" once per image. */
static const shape_t shapes[] = {
    {"dec attn small-K", 4096, 8, 16, 1, 4096},
    {"dec attn small-K", 8, 16, 4096, 0, 4096},
    {"dec attn small-K", 8, 4096, 16, 1, 4096},
    {"dec per-prompt skinny", 4096, 129, 129, 0, 256},
    {"dec per-prompt skinny", 4096, 129, 256, 1, 256},
    {"dec per-prompt skinny", 4096, 384, 64, 0, 256},
    {"dec per-prompt skinny", 4096, 512, 129, 0, 256},
    {"dec per-prompt skinny", 4096, 64, 256, 1, 256},
    {"dec per-prompt skinny", 4096, 64, 64, 0, 256},
    {"dec tokens", 128, 2048, 256, 1, 32},
    {"dec tokens", 2064, 512, 256, 1, 16},
    {"dec upscale tail", 128, 128, 64, 0, 32768},
    {"dec upscale tail", 3, 512, 32, 1, 32768},
    {"enc attention", 196, 96, 196, 0, 300},
    {"enc attention", 64, 4096, 96, 1, 768},
    {"enc attention", 64, 96, 4096, 0, 768},
    {"enc linear", 1024, 3072, 768, 1, 2},
    {"enc linear", 1024, 768, 3072, 1, 2},
    {"enc linear", 16384, 192, 192, 1, 2},
    {"enc linear", 16384, 192, 768, 1, 2},
    {"enc linear", 16384, 384, 192, 1, 2},
    {"enc linear", 16384, 576, 192, 1, 1},
    {"enc linear", 16384, 768, 192, 1, 3},
    {"enc linear", 4096, 1152, 384, 1, 3},
    {"enc linear", 4096, 1536, 384, 1, 7},
    {"enc linear", 4096, 384, 1536, 1, 7},
    {"enc linear", 4096, 384, 384, 1, 7},
    {"enc linear", 4900, 1152, 384, 1, 3},
    {"enc linear", 65536, 192, 96, 1, 2},
    {"enc linear", 65536, 256, 96, 1, 1},
    {"enc linear", 65536, 288, 96, 1, 1},
    {"enc linear", 65536, 32, 256, 1, 1},
    {"enc linear", 65536, 384, 96, 1, 2},
    {"enc linear", 65536, 96, 384, 1, 1},
};
enum { NSHAPES = sizeof shapes / sizeof shapes[0] };

/* ---- libraries ---- */

typedef void (*bli_sgemm_t)(int, int, int64_t, int64_t, int64_t, const float *, const float *,
                            int64_t, int64_t, const float *, int64_t, int64_t, const float *,
                            float *, int64_t, int64_t);
typedef void (*bli_setnt_t)(int64_t);
typedef const char *(*bli_str_t)(void);
typedef int (*bli_arch_id_t)(void);
typedef const char *(*bli_arch_str_t)(int);
typedef int (*dnnl_sgemm_t)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t,
                            const float *, int64_t, float, float *, int64_t);
typedef int (*dnnl_bf16_t)(char, char, int64_t, int64_t, int64_t, float, const uint16_t *,
                           int64_t, const uint16_t *, int64_t, float, float *, int64_t);
typedef struct { int major, minor, patch; const char *hash; unsigned cpu_runtime, gpu_runtime; }
    dnnl_version_t;
typedef const dnnl_version_t *(*dnnl_ver_t)(void);
typedef void (*omp_setnt_t)(int);

static bli_sgemm_t bli_sgemm_p;
static bli_setnt_t bli_setnt_p;
static dnnl_sgemm_t dnnl_sgemm_p;
static dnnl_bf16_t dnnl_bf16_p;
static omp_setnt_t omp_setnt_p;

/* LIB_DNNL_BF16: inputs in bf16 already; LIB_DNNL_BF16C: float32 inputs,
 * each tile of A and B converted to bf16 inside the timed call (what a
 * backend path pays when neither operand is a weight converted once) */
enum { LIB_OPENBLAS, LIB_BLIS, LIB_DNNL, LIB_DNNL_BF16, LIB_DNNL_BF16C, NLIB };
static const char *const lib_name[NLIB] = {"OpenBLAS", "BLIS", "oneDNN", "oneDNN-bf16",
                                           "bf16+conv"};
static int lib_on[NLIB];

/* set the library's own thread count for calls from the calling thread */
static void lib_threads(int lib, int n) {
    if (lib == LIB_OPENBLAS) openblas_set_num_threads(n);
    else if (lib == LIB_BLIS) bli_setnt_p(n);
    else omp_setnt_p(n);   /* oneDNN's OpenMP: per calling thread */
}

/* one GEMM tile: rows r0..r1, columns n0..n1 of the shape, by library lib */
typedef struct gemm_args {
    const shape_t *s;
    const float *A, *B;
    const uint16_t *Ah, *Bh;
    float *C;
    uint16_t *scratch[64];   /* per thread: a tile of A then one of B, bf16 */
} gemm_args_t;

/* n floats to bf16, round to nearest even (AVX512-BF16; only called where
 * the CPU has it: blas_cpu_detect finds no avx512_bf16 off x86) */
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bf16")))
#endif
static void cvt_bf16(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
#if defined(__x86_64__)
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
#endif
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        u += 0x7fffu + ((u >> 16) & 1u);
        dst[i] = (uint16_t)(u >> 16);
    }
}

static void run_tile(int lib, const gemm_args_t *g, int tid, int r0, int r1, int n0, int n1) {
    const shape_t *s = g->s;
    int m = r1 - r0, n = n1 - n0, K = s->K;
    if (m <= 0 || n <= 0) return;
    int ldb = s->tb ? K : s->N;
    size_t boff = s->tb ? (size_t)n0 * K : (size_t)n0;
    float *C = g->C + (size_t)r0 * s->N + n0;
    switch (lib) {
    case LIB_OPENBLAS:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, m, n, K, 1.0f,
                    g->A + (size_t)r0 * K, K, g->B + boff, ldb, 0.0f, C, s->N);
        break;
    case LIB_BLIS: {
        /* strides instead of a transpose flag: B^T as (K,N) has row stride
         * 1, column stride K */
        const float one = 1.0f, zero = 0.0f;
        bli_sgemm_p(0, 0, m, n, K, &one, g->A + (size_t)r0 * K, K, 1, g->B + boff,
                    s->tb ? 1 : ldb, s->tb ? K : 1, &zero, C, s->N, 1);
        break;
    }
    case LIB_DNNL:
        dnnl_sgemm_p('N', s->tb ? 'T' : 'N', m, n, K, 1.0f, g->A + (size_t)r0 * K, K, g->B + boff,
                     ldb, 0.0f, C, s->N);
        break;
    case LIB_DNNL_BF16:
        dnnl_bf16_p('N', s->tb ? 'T' : 'N', m, n, K, 1.0f, g->Ah + (size_t)r0 * K, K,
                    g->Bh + boff, ldb, 0.0f, C, s->N);
        break;
    case LIB_DNNL_BF16C: {
        uint16_t *ah = g->scratch[tid], *bh = ah + (size_t)m * K;
        cvt_bf16(ah, g->A + (size_t)r0 * K, (size_t)m * K);
        if (s->tb) cvt_bf16(bh, g->B + boff, (size_t)n * K);
        else
            for (int k = 0; k < K; k++) cvt_bf16(bh + (size_t)k * n, g->B + (size_t)k * ldb + n0, (size_t)n);
        dnnl_bf16_p('N', s->tb ? 'T' : 'N', m, n, K, 1.0f, ah, K, bh, s->tb ? K : n, 0.0f, C, s->N);
        break;
    }
    }
}

/* ---- the split runner: T threads, each its tile of the grid ---- */

typedef struct pool {
    int n;
    pthread_t th[64];
    pthread_barrier_t go, done;
    int lib, quit;
    const gemm_args_t *g;
    int pm, pn;
} pool_t;

static pool_t P;

static void tile_of(int tid, int *r0, int *r1, int *n0, int *n1) {
    const shape_t *s = P.g->s;
    int tm = tid / P.pn, tn = tid % P.pn;
    *r0 = (int)((int64_t)s->M * tm / P.pm), *r1 = (int)((int64_t)s->M * (tm + 1) / P.pm);
    /* the backend's column edges: multiples of 16 floats */
    *n0 = tn == 0 ? 0 : (s->N * tn / P.pn + 8) / 16 * 16;
    *n1 = tn == P.pn - 1 ? s->N : (s->N * (tn + 1) / P.pn + 8) / 16 * 16;
    if (*n1 > s->N) *n1 = s->N;
}

static void *worker(void *arg) {
    int tid = (int)(intptr_t)arg;
    int cur = -1;
    for (;;) {
        pthread_barrier_wait(&P.go);
        if (P.quit) return NULL;
        /* OpenMP's thread count is per calling thread (the others' are
         * global and set by run_split) */
        if (P.lib >= LIB_DNNL && cur != 1) omp_setnt_p(1), cur = 1;
        if (tid < P.pm * P.pn) {
            int r0, r1, n0, n1;
            tile_of(tid, &r0, &r1, &n0, &n1);
            run_tile(P.lib, P.g, tid, r0, r1, n0, n1);
        }
        pthread_barrier_wait(&P.done);
    }
}

/* the backend's grid rule (cpu_gemm_run): nt <= one thread per ~2 MFLOP,
 * pm x pn = nt minimizing rows/pm + N/pn */
static void plan_grid(const shape_t *s, int T) {
    double flops = 2.0 * s->M * s->N * (double)(s->K + 1);
    int64_t nt = (int64_t)(flops / 2e6) + 1;
    if (nt > T) nt = T;
    if (nt > (int64_t)s->M * ((s->N + 15) / 16)) nt = (int64_t)s->M * ((s->N + 15) / 16);
    int best_pn = 1;
    double best = 1e300;
    for (int pn = 1; pn <= nt; pn++) {
        if (nt % pn || (pn > 1 && s->N / pn < 16) || nt / pn > s->M) continue;
        double cost = (double)s->M / (double)(nt / pn) + (double)s->N / pn;
        if (cost < best) best = cost, best_pn = pn;
    }
    P.pn = best_pn;
    P.pm = (int)nt / best_pn;
}

static void run_split(int lib, const gemm_args_t *g) {
    lib_threads(lib, 1);
    P.lib = lib, P.g = g;
    pthread_barrier_wait(&P.go);   /* workers 1..n-1 */
    if (P.pm * P.pn > 0) {
        int r0, r1, n0, n1;
        tile_of(0, &r0, &r1, &n0, &n1);
        run_tile(lib, g, 0, r0, r1, n0, n1);
    }
    pthread_barrier_wait(&P.done);
}

static void run_own(int lib, const gemm_args_t *g, int T) {
    lib_threads(lib, T);
    run_tile(lib, g, 0, 0, g->s->M, 0, g->s->N);
}

/* ---- data, reference, check ---- */

static uint32_t rng = 2463534242u;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
    return (float)(rng >> 8) / 8388608.f - 1.f;
}

static uint16_t to_bf16(float x) {   /* round to nearest even (no NaN here) */
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

enum { CHECK_ROWS = 61 };

/* worst |C - R| / sum |terms| over the sampled rows (NaN counts as failure) */
static double check(const gemm_args_t *g, const double *R, const int *rows, int nr) {
    const shape_t *s = g->s;
    double worst = 0;
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < s->N; j++) {
            double e = fabs(g->C[(size_t)rows[r] * s->N + j] - R[2 * ((size_t)r * s->N + j)]) /
                       R[2 * ((size_t)r * s->N + j) + 1];
            if (e != e) return INFINITY;
            if (e > worst) worst = e;
        }
    return worst;
}

static double clock_s(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* seconds per call, the best of 3 rounds of >= min_time/3 wall each.
 * split: the CPU time of the busiest of the T threads (their thread CPU
 * clocks, read while the workers wait at the barrier), which is the wall
 * time on an idle machine and is not inflated by other processes sharing
 * the cores; own: wall time (the library's threads are not ours) */
static double time_it(int lib, int own, const gemm_args_t *g, int T, double min_time) {
    own ? run_own(lib, g, T) : run_split(lib, g);   /* warm-up */
    clockid_t ck[64];
    ck[0] = CLOCK_THREAD_CPUTIME_ID;
    for (int t = 1; t < T; t++)
        if (pthread_getcpuclockid(P.th[t], &ck[t])) ck[t] = CLOCK_THREAD_CPUTIME_ID;
    double best = 1e300;
    for (int round = 0; round < 3; round++) {
        int reps = 0;
        double c0[64], t0 = clock_s(CLOCK_MONOTONIC), t;
        for (int k = 0; k < T; k++) c0[k] = clock_s(ck[k]);
        do {
            own ? run_own(lib, g, T) : run_split(lib, g);
            reps++;
        } while ((t = clock_s(CLOCK_MONOTONIC) - t0) < min_time / 3);
        if (!own) {
            t = 0;
            for (int k = 0; k < T; k++) {
                double d = clock_s(ck[k]) - c0[k];
                if (d > t) t = d;
            }
        }
        if (t / reps < best) best = t / reps;
    }
    return best;
}

static void load_libs(void) {
    lib_on[LIB_OPENBLAS] = 1;
    printf("OpenBLAS: %s\n", blas_describe());
    void *h = dlopen("libblis.so.4", RTLD_NOW | RTLD_LOCAL);
    if (h && (bli_sgemm_p = (bli_sgemm_t)dlsym(h, "bli_sgemm")) &&
        (bli_setnt_p = (bli_setnt_t)dlsym(h, "bli_thread_set_num_threads"))) {
        bli_str_t ver = (bli_str_t)dlsym(h, "bli_info_get_version_str");
        bli_arch_id_t aid = (bli_arch_id_t)dlsym(h, "bli_arch_query_id");
        bli_arch_str_t astr = (bli_arch_str_t)dlsym(h, "bli_arch_string");
        printf("BLIS: %s, config %s\n", ver ? ver() : "?", aid && astr ? astr(aid()) : "?");
        lib_on[LIB_BLIS] = 1;
    } else {
        printf("skip: libblis not installed (libblis.so.4: apt-get install libblis4-pthread)\n");
    }
    h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (h && (dnnl_sgemm_p = (dnnl_sgemm_t)dlsym(h, "dnnl_sgemm")) &&
        (omp_setnt_p = (omp_setnt_t)dlsym(h, "omp_set_num_threads"))) {
        dnnl_ver_t ver = (dnnl_ver_t)dlsym(h, "dnnl_version");
        const dnnl_version_t *v = ver ? ver() : NULL;
        printf("oneDNN: %d.%d.%d\n", v ? v->major : 0, v ? v->minor : 0, v ? v->patch : 0);
        lib_on[LIB_DNNL] = 1;
        blas_cpu f;
        blas_cpu_detect(&f);
        dnnl_bf16_p = (dnnl_bf16_t)dlsym(h, "dnnl_gemm_bf16bf16f32");
        if (!f.avx512_bf16) printf("skip: oneDNN bf16 (the CPU has no avx512_bf16)\n");
        else if (!dnnl_bf16_p) printf("skip: oneDNN bf16 (no dnnl_gemm_bf16bf16f32)\n");
        else lib_on[LIB_DNNL_BF16] = lib_on[LIB_DNNL_BF16C] = 1;
    } else {
        printf("skip: oneDNN not installed (libdnnl.so.2: apt-get install libdnnl2)\n");
    }
}

static void print_pair(double split, double own, int with_own) {
    printf(with_own ? "       %6.1f %6.1f |" : "       %6.1f |", split, own);
}

int main(int argc, char **argv) {
    blas_startup(argv);
    int T = 2;
    double min_time = 0.2;
    int with_own = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) min_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "--own")) with_own = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "bench_blas: unknown option %s\n", argv[i]);
            return 2;
        }
        /* positional arguments (bench/run.sh passes `cpu 2` to every
         * program) are ignored */
    }
    if (T < 1 || T > 64 || !(min_time > 0)) {
        fprintf(stderr, "bench_blas: --threads must be 1..64 and --min-time > 0\n");
        return 2;
    }
    load_libs();
    P.n = T;
    pthread_barrier_init(&P.go, NULL, (unsigned)T);
    pthread_barrier_init(&P.done, NULL, (unsigned)T);
    for (int t = 1; t < T; t++) pthread_create(&P.th[t], NULL, worker, (void *)(intptr_t)t);

    size_t maxa = 0, maxb = 0, maxc = 0, maxn = 0;
    for (int i = 0; i < NSHAPES; i++) {
        const shape_t *s = &shapes[i];
        if ((size_t)s->M * s->K > maxa) maxa = (size_t)s->M * s->K;
        if ((size_t)s->N * s->K > maxb) maxb = (size_t)s->N * s->K;
        if ((size_t)s->M * s->N > maxc) maxc = (size_t)s->M * s->N;
        if ((size_t)s->N > maxn) maxn = (size_t)s->N;
    }
    float *A = malloc(maxa * 4), *B = malloc(maxb * 4), *C = malloc(maxc * 4);
    uint16_t *Ah = malloc(maxa * 2), *Bh = malloc(maxb * 2);
    double *R = malloc(sizeof(double) * 2 * CHECK_ROWS * maxn);
    uint16_t *scratch[64] = {0};
    int scratch_ok = 1;
    for (int t = 0; t < T && lib_on[LIB_DNNL_BF16C]; t++)
        scratch_ok &= (scratch[t] = malloc((maxa + maxb) * 2)) != NULL;
    if (!A || !B || !C || !Ah || !Bh || !R || !scratch_ok) {
        fprintf(stderr, "bench_blas: out of memory\n");
        return 1;
    }

    printf("threads %d; GFLOP/s; split: the backend's tile grid, the library at 1 thread, timed "
           "by the busiest thread's CPU time%s; oneDNN-bf16: inputs converted before timing, "
           "bf16+conv: both tiles converted (AVX512-BF16) inside each call\n", T,
           with_own ? "; own: the library's own threads, wall time" : "");
    printf("%-26s %6s %5s %5s %2s %7s |", "class", "M", "N", "K", "tb", "calls");
    for (int l = 0; l < NLIB; l++)
        if (lib_on[l]) printf(" %11.11s split%s |", lib_name[l], with_own ? "  own" : "");
    printf("\n");
    double tflop = 0, tsec[NLIB][2] = {{0}}, tcls[NSHAPES][NLIB][2] = {{{0}}};
    int failed = 0;
    for (int i = 0; i < NSHAPES; i++) {
        const shape_t *s = &shapes[i];
        size_t na = (size_t)s->M * s->K, nb = (size_t)s->N * s->K;
        for (size_t k = 0; k < na; k++) A[k] = frand(), Ah[k] = to_bf16(A[k]);
        for (size_t k = 0; k < nb; k++) B[k] = frand(), Bh[k] = to_bf16(B[k]);
        int rows[CHECK_ROWS], nr = s->M < CHECK_ROWS ? s->M : CHECK_ROWS;
        for (int r = 0; r < nr; r++) rows[r] = (int)((int64_t)r * (s->M - 1) / (nr > 1 ? nr - 1 : 1));
        for (int r = 0; r < nr; r++)
            for (int j = 0; j < s->N; j++) {
                double acc = 0, mag = 0;
                for (int k = 0; k < s->K; k++) {
                    double t = (double)A[(size_t)rows[r] * s->K + k] *
                               (s->tb ? B[(size_t)j * s->K + k] : B[(size_t)k * s->N + j]);
                    acc += t, mag += fabs(t);
                }
                R[2 * ((size_t)r * s->N + j)] = acc;
                R[2 * ((size_t)r * s->N + j) + 1] = mag + 1e-30;
            }
        gemm_args_t g = {.s = s, .A = A, .B = B, .Ah = Ah, .Bh = Bh, .C = C};
        memcpy(g.scratch, scratch, sizeof scratch);
        plan_grid(s, T);
        double flop = 2.0 * s->M * s->N * (double)s->K;
        tflop += flop * s->calls;
        printf("%-26s %6d %5d %5d %2d %7.0f |", s->cls, s->M, s->N, s->K, s->tb, s->calls);
        /* every library's split runs first, then the own-threads runs, so
         * a library's own pool threads still spinning after its calls
         * never share the cores with another library's split run */
        double gf[NLIB][2] = {{0}};
        for (int own = 0; own <= with_own; own++)
            for (int l = 0; l < NLIB; l++) {
                if (!lib_on[l]) continue;
                double tol = l >= LIB_DNNL_BF16 ? 1e-2 : 1e-4;
                memset(C, 0xff, (size_t)s->M * s->N * 4);   /* NaN: unwritten fails */
                own ? run_own(l, &g, T) : run_split(l, &g);
                double e = check(&g, R, rows, nr);
                if (!(e <= tol)) {
                    printf("\nbench_blas: %s (%s) on %s %dx%dx%d: max error %.3g > %.0e: FAILED\n",
                           lib_name[l], own ? "own" : "split", s->cls, s->M, s->N, s->K, e, tol);
                    failed = 1;
                    continue;
                }
                double t = time_it(l, own, &g, T, min_time);
                tsec[l][own] += t * s->calls;
                int c0 = 0;   /* the class's first shape */
                while (strcmp(shapes[c0].cls, s->cls)) c0++;
                tcls[c0][l][own] += t * s->calls;
                gf[l][own] = flop / t * 1e-9;
            }
        for (int l = 0; l < NLIB; l++)
            if (lib_on[l]) print_pair(gf[l][0], gf[l][1], with_own);
        printf("\n");
        fflush(stdout);
    }
    /* per class: its flops over its time, calls-weighted */
    for (int i = 0; i < NSHAPES; i++) {
        int first = 1;
        for (int j = 0; j < i; j++) first &= strcmp(shapes[j].cls, shapes[i].cls) != 0;
        if (!first) continue;
        double f = 0;
        for (int j = i; j < NSHAPES; j++)
            if (!strcmp(shapes[j].cls, shapes[i].cls))
                f += 2.0 * shapes[j].M * shapes[j].N * (double)shapes[j].K * shapes[j].calls;
        printf("%-26s %21.1f GFLOP |", shapes[i].cls, f * 1e-9);
        for (int l = 0; l < NLIB; l++)
            if (lib_on[l])
                print_pair(f / tcls[i][l][0] * 1e-9, f / tcls[i][l][1] * 1e-9, with_own);
        printf("\n");
    }
    printf("%-26s %21.1f GFLOP |", "weighted total", tflop * 1e-9);
    for (int l = 0; l < NLIB; l++)
        if (lib_on[l])
            print_pair(tflop / tsec[l][0] * 1e-9, tflop / tsec[l][1] * 1e-9, with_own);
    printf("\n");
    for (int l = 1; l < NLIB; l++)
        if (lib_on[l])
        {
            printf("%s / OpenBLAS, weighted: split %.2fx", lib_name[l],
                   tsec[LIB_OPENBLAS][0] / tsec[l][0]);
            if (with_own) printf(", own %.2fx", tsec[LIB_OPENBLAS][1] / tsec[l][1]);
            printf("\n");
        }
    P.quit = 1;
    pthread_barrier_wait(&P.go);
    for (int t = 1; t < T; t++) pthread_join(P.th[t], NULL);
    free(A), free(B), free(C), free(Ah), free(Bh), free(R);
    for (int t = 0; t < T; t++) free(scratch[t]);
    if (failed) printf("bench_blas: FAILED (a library's result is wrong)\n");
    return failed;
}
