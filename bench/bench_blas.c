/* bench_blas.c: SGEMM through OpenBLAS, BLIS and oneDNN, side by side, on
 * the GEMM shapes the model runs.
 *
 * The shapes (SHAPES below) were logged from the CPU backend's cblas_sgemm
 * calls (an LD_PRELOAD shim counting (M, N, K, transposes) and time) during
 * `generate` on the full-size `tiny` shapes (1024x768 image, 16x16 grid,
 * points_per_batch 64, 1 thread so each call is a whole product) and
 * grouped into classes; each shape carries the number of calls one such
 * `generate` made, so the weighted total is the GEMM time of that run,
 * estimated per library: sum(calls * flops) / sum(calls * seconds).
 *
 * OpenBLAS is the library the program links; BLIS (libblis.so.4) and
 * oneDNN (libdnnl.so.2) are opened with dlopen, so this builds and runs
 * without them ("skip: ... not installed"). BLIS is called through its own
 * bli_sgemm, not its cblas_sgemm: that one calls sgemm_ through the PLT,
 * which would bind to OpenBLAS's, already loaded. Every library gets the
 * same thread count (its own pool: openblas_set_num_threads,
 * bli_thread_set_num_threads, omp_set_num_threads for oneDNN's OpenMP).
 *
 * Where the CPU has AVX512-BF16 the oneDNN bf16 GEMM (bf16 inputs, fp32
 * accumulation and output, dnnl_gemm_bf16bf16f32) is timed too, with the
 * conversion of the activation operands to bf16 inside the timed region
 * (A always; B only for activation-by-activation products, a weight would
 * be converted once at load).
 *
 * Each library's result is checked against a double-precision naive
 * product (bf16: of the bf16-rounded inputs) on every shape before it is
 * timed: every element within 1e-4 of the sum of its terms' magnitudes.
 * A library that fails is reported and not timed; the program then exits 1.
 *
 * With n_threads 1 (the CPU backend's own mode: each pool thread calls a
 * single-threaded BLAS on its rows) calls are timed in thread CPU time.
 *
 * usage: bench_blas [cpu] [n_threads (2)] [seconds per measurement (0.15)]
 *   (a leading device argument, as bench/run.sh passes to every bench: only
 *   cpu runs, another device prints a skip line)
 */
#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"

typedef struct shape {
    const char *cls;   /* shape class, for the per-class table */
    int tb;            /* B is (N,K) (weights of a Linear, Q K^T) if set, else (K,N) */
    int M, N, K;
    int w_b;           /* B is a weight (bf16: converted once, not per call) */
    long calls;        /* calls in one `generate` (see the file comment) */
} shape_t;

/* The 32 products that took 92.5% of the GEMM time of that run (by the
 * shim's clock), classes: dec_4096xK = the decoder's per-prompt products
 * over the 64x64 image tokens, dec_attn_small = its attention products
 * with 8..16-wide heads or tokens, dec_other = the rest of the decoder,
 * enc_linear = Hiera's and the neck's Linear layers, enc_bmm = the
 * encoder's remaining products. {class, tb, M, N, K, w_b, calls} */
/* clang-format off */
static const shape_t SHAPES[] = {
    {"dec_4096xK", 0, 4096, 129, 129, 0, 256},
    {"dec_4096xK", 0, 4096, 384, 64, 0, 256},
    {"dec_4096xK", 0, 4096, 512, 129, 0, 256},
    {"dec_4096xK", 0, 4096, 64, 64, 0, 256},
    {"dec_4096xK", 1, 4096, 129, 256, 0, 256},
    {"dec_4096xK", 1, 4096, 64, 256, 0, 256},
    {"dec_attn_small", 0, 8, 16, 4096, 0, 4096},
    {"dec_attn_small", 1, 3, 512, 32, 0, 32768},
    {"dec_attn_small", 1, 4096, 8, 16, 0, 4096},
    {"dec_attn_small", 1, 64, 4096, 16, 0, 256},
    {"dec_attn_small", 1, 8, 4096, 16, 0, 4096},
    {"dec_other", 0, 128, 128, 64, 0, 32768},
    {"dec_other", 0, 64, 96, 4096, 0, 768},
    {"dec_other", 1, 64, 4096, 96, 0, 768},
    {"enc_bmm", 1, 128, 2048, 256, 0, 32},
    {"enc_linear", 1, 1024, 3072, 768, 1, 2},
    {"enc_linear", 1, 1024, 768, 3072, 1, 2},
    {"enc_linear", 1, 16384, 192, 768, 1, 2},
    {"enc_linear", 1, 16384, 576, 192, 1, 1},
    {"enc_linear", 1, 16384, 768, 192, 1, 3},
    {"enc_linear", 1, 2064, 512, 256, 1, 16},
    {"enc_linear", 1, 4096, 1152, 384, 1, 3},
    {"enc_linear", 1, 4096, 1536, 384, 1, 7},
    {"enc_linear", 1, 4096, 384, 1536, 1, 7},
    {"enc_linear", 1, 4096, 384, 384, 1, 7},
    {"enc_linear", 1, 4900, 1152, 384, 1, 3},
    {"enc_linear", 1, 4900, 1536, 384, 1, 1},
    {"enc_linear", 1, 65536, 192, 96, 1, 2},
    {"enc_linear", 1, 65536, 256, 96, 1, 1},
    {"enc_linear", 1, 65536, 288, 96, 1, 1},
    {"enc_linear", 1, 65536, 384, 96, 1, 2},
    {"enc_linear", 1, 65536, 96, 384, 1, 1},
};
/* clang-format on */
#define N_SHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))

enum { LIB_OPENBLAS, LIB_BLIS, LIB_DNNL, LIB_DNNL_BF16, N_LIBS };
static const char *const LIB_NAME[N_LIBS] = {"OpenBLAS", "BLIS", "oneDNN", "oneDNN bf16"};

/* BLIS's typed API (blis.h is not needed: dim_t/inc_t are int64_t in
 * Debian's build, trans_t is an enum where BLIS_TRANSPOSE is bit 3) */
typedef void (*bli_sgemm_fn)(int, int, int64_t, int64_t, int64_t, const float *, const float *,
                             int64_t, int64_t, const float *, int64_t, int64_t, const float *,
                             float *, int64_t, int64_t);
#define BLI_NO_TRANSPOSE 0
#define BLI_TRANSPOSE    8
static bli_sgemm_fn bli_sgemm_p;
/* oneDNN's row-major GEMMs; 0 = dnnl_success */
typedef int (*dnnl_sgemm_fn)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t,
                             const float *, int64_t, float, float *, int64_t);
typedef int (*dnnl_bf16_fn)(char, char, int64_t, int64_t, int64_t, float, const uint16_t *,
                            int64_t, const uint16_t *, int64_t, float, float *, int64_t);
static dnnl_sgemm_fn dnnl_sgemm_p;
static dnnl_bf16_fn dnnl_bf16_p;
static int have[N_LIBS];

/* With one thread every library computes on the calling thread, so its
 * CPU time is the measure: on a shared, overloaded machine wall time
 * mostly counts the waits for a core. With more threads wall time is the
 * only honest measure (a pool's spinning would count as CPU). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now_s(void) {
    struct timespec t;
    clock_gettime(bench_clock, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint16_t to_bf16(float f) {   /* round to nearest even */
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void to_bf16_n(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = to_bf16(src[i]);
}

/* buffers of the largest shape: A (M,K), B (N,K) or (K,N), C (M,N) */
static float *A, *B, *C;
static uint16_t *Ah, *Bh;

/* run_lib: C = A op(B) once through library lib (bf16: converting A, and
 * B unless it is a weight, first). Returns 0, or -1 if the library said no. */
static int run_lib(int lib, const shape_t *s) {
    int M = s->M, N = s->N, K = s->K, ldb = s->tb ? K : N;
    switch (lib) {
    case LIB_OPENBLAS:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, M, N, K,
                    1.0f, A, K, B, ldb, 0.0f, C, N);
        return 0;
    case LIB_BLIS: {
        const float one = 1.0f, zero = 0.0f;
        /* row-major: row stride = leading dimension, column stride 1 */
        bli_sgemm_p(BLI_NO_TRANSPOSE, s->tb ? BLI_TRANSPOSE : BLI_NO_TRANSPOSE, M, N, K, &one,
                    A, K, 1, B, ldb, 1, &zero, C, N, 1);
        return 0;
    }
    case LIB_DNNL:
        return dnnl_sgemm_p('N', s->tb ? 'T' : 'N', M, N, K, 1.0f, A, K, B, ldb, 0.0f, C, N) ? -1
                                                                                             : 0;
    case LIB_DNNL_BF16:
        to_bf16_n(Ah, A, (size_t)M * K);
        if (!s->w_b) to_bf16_n(Bh, B, (size_t)N * K);
        return dnnl_bf16_p('N', s->tb ? 'T' : 'N', M, N, K, 1.0f, Ah, K, Bh, ldb, 0.0f, C, N) ? -1
                                                                                             : 0;
    }
    return -1;
}

/* check: C against the naive product of (bf16-rounded when bf16) A and B;
 * returns the largest error relative to the sum of |terms| of an element,
 * checked on a sample of rows (every row of small shapes). */
static double check(int lib, const shape_t *s) {
    int M = s->M, N = s->N, K = s->K, bf = lib == LIB_DNNL_BF16;
    if (bf) to_bf16_n(Bh, B, (size_t)N * K);   /* the weight, converted once */
    for (size_t i = 0; i < (size_t)M * N; i++) C[i] = NAN;
    if (run_lib(lib, s)) return INFINITY;
    double worst = 0;
    int step = M > 64 ? M / 61 : 1;
    for (int i = 0; i < M; i += step)
        for (int j = 0; j < N; j++) {
            double acc = 0, mag = 1e-30;
            for (int k = 0; k < K; k++) {
                float a = A[(size_t)i * K + k];
                float b = s->tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j];
                if (bf) a = from_bf16(to_bf16(a)), b = from_bf16(to_bf16(b));
                acc += (double)a * b, mag += fabs((double)a * b);
            }
            double e = fabs(C[(size_t)i * N + j] - acc) / mag;
            if (!(e <= worst)) worst = e;   /* NaN counts as the worst */
        }
    return worst;
}

/* seconds per call: best of 3 batches of calls lasting >= budget/3 each */
static double time_lib(int lib, const shape_t *s, double budget) {
    double t0 = now_s();
    run_lib(lib, s);
    double one = now_s() - t0;
    long reps = one > 0 ? (long)(budget / 3 / one) : 1;
    if (reps < 1) reps = 1;
    double best = INFINITY;
    for (int r = 0; r < 3; r++) {
        t0 = now_s();
        for (long i = 0; i < reps; i++) run_lib(lib, s);
        double t = (now_s() - t0) / reps;
        if (t < best) best = t;
    }
    return best;
}

static void open_libs(int n_threads, const blas_cpu *cpu) {
    have[LIB_OPENBLAS] = 1;
    openblas_set_num_threads(n_threads);
    void *h = dlopen("libblis.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("skip: libblis not installed (apt-get install libblis4-pthread)\n");
    } else {
        bli_sgemm_p = (bli_sgemm_fn)(uintptr_t)dlsym(h, "bli_sgemm");
        void (*set_nt)(int64_t) = (void (*)(int64_t))(uintptr_t)dlsym(h, "bli_thread_set_num_threads");
        const char *(*ver)(void) = (const char *(*)(void))(uintptr_t)dlsym(h, "bli_info_get_version_str");
        int (*arch_id)(void) = (int (*)(void))(uintptr_t)dlsym(h, "bli_arch_query_id");
        const char *(*arch_str)(int) = (const char *(*)(int))(uintptr_t)dlsym(h, "bli_arch_string");
        if (!bli_sgemm_p || !set_nt) {
            printf("skip: libblis.so.4 lacks bli_sgemm or bli_thread_set_num_threads\n");
        } else {
            set_nt(n_threads);
            have[LIB_BLIS] = 1;
            printf("BLIS %s, kernels %s\n", ver ? ver() : "?",
                   arch_id && arch_str ? arch_str(arch_id()) : "?");
        }
    }
    h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("skip: libdnnl not installed (apt-get install libdnnl2)\n");
        return;
    }
    dnnl_sgemm_p = (dnnl_sgemm_fn)(uintptr_t)dlsym(h, "dnnl_sgemm");
    dnnl_bf16_p = (dnnl_bf16_fn)(uintptr_t)dlsym(h, "dnnl_gemm_bf16bf16f32");
    void (*omp_nt)(int) = (void (*)(int))(uintptr_t)dlsym(h, "omp_set_num_threads");
    typedef struct { int major, minor, patch; const char *hash; unsigned cpu_runtime, gpu_runtime; } ver_t;
    const ver_t *(*dver)(void) = (const ver_t *(*)(void))(uintptr_t)dlsym(h, "dnnl_version");
    int (*isa)(void) = (int (*)(void))(uintptr_t)dlsym(h, "dnnl_get_effective_cpu_isa");
    if (!dnnl_sgemm_p || !omp_nt) {
        printf("skip: libdnnl.so.2 lacks dnnl_sgemm or omp_set_num_threads\n");
        return;
    }
    omp_nt(n_threads);
    have[LIB_DNNL] = 1;
    const ver_t *v = dver ? dver() : NULL;
    printf("oneDNN %d.%d.%d, effective ISA 0x%x\n", v ? v->major : 0, v ? v->minor : 0,
           v ? v->patch : 0, isa ? (unsigned)isa() : 0u);
    if (!cpu->avx512_bf16)
        printf("skip: oneDNN bf16 (the CPU lacks AVX512-BF16)\n");
    else if (!dnnl_bf16_p)
        printf("skip: oneDNN bf16 (libdnnl.so.2 lacks dnnl_gemm_bf16bf16f32)\n");
    else
        have[LIB_DNNL_BF16] = 1;
}

int main(int argc, char **argv) {
    blas_startup(argv);
    if (argc > 1 && (argv[1][0] < '0' || argv[1][0] > '9')) {
        if (strcmp(argv[1], "cpu")) {
            printf("bench_blas: skip: device %s (CPU libraries only)\n", argv[1]);
            return 0;
        }
        argc--, argv++;
    }
    int n_threads = argc > 1 ? atoi(argv[1]) : 2;
    double budget = argc > 2 ? atof(argv[2]) : 0.15;
    if (n_threads < 1 || n_threads > 64 || !(budget > 0)) {
        fprintf(stderr, "usage: bench_blas [cpu] [n_threads 1..64] [seconds per measurement]\n");
        return 2;
    }
    if (n_threads == 1) bench_clock = CLOCK_THREAD_CPUTIME_ID;
    blas_cpu cpu;
    blas_cpu_detect(&cpu);
    double dummy;
    if (blas_check_sgemm(&dummy)) {
        fprintf(stderr, "bench_blas: the OpenBLAS SGEMM check failed\n");
        return 1;
    }
    printf("bench_blas: %d thread%s each (%s time); OpenBLAS core %s\n", n_threads,
           n_threads > 1 ? "s" : "", n_threads == 1 ? "thread CPU" : "wall",
           openblas_get_corename());
    open_libs(n_threads, &cpu);

    size_t na = 0, nb = 0, nc = 0;
    for (int i = 0; i < N_SHAPES; i++) {
        const shape_t *s = &SHAPES[i];
        if ((size_t)s->M * s->K > na) na = (size_t)s->M * s->K;
        if ((size_t)s->N * s->K > nb) nb = (size_t)s->N * s->K;
        if ((size_t)s->M * s->N > nc) nc = (size_t)s->M * s->N;
    }
    A = malloc(na * sizeof *A), B = malloc(nb * sizeof *B), C = malloc(nc * sizeof *C);
    Ah = malloc(na * sizeof *Ah), Bh = malloc(nb * sizeof *Bh);
    if (!A || !B || !C || !Ah || !Bh) {
        fprintf(stderr, "bench_blas: out of memory\n");
        return 1;
    }
    uint32_t r = 1;
    for (size_t i = 0; i < na; i++) A[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 8388608.f - 1.f;
    for (size_t i = 0; i < nb; i++) B[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 8388608.f - 1.f;

    /* per class and in total: flops and seconds weighted by calls */
    double cls_f[N_SHAPES] = {0}, cls_t[N_SHAPES][N_LIBS] = {{0}}, tot_t[N_LIBS] = {0}, tot_f = 0;
    const char *cls[N_SHAPES];
    int n_cls = 0, failed = 0;
    printf("%-14s %2s %5s %5s %5s %6s |", "class", "B", "M", "N", "K", "calls");
    for (int l = 0; l < N_LIBS; l++) printf(" %11s", LIB_NAME[l]);
    printf("   GFLOP/s\n");
    for (int i = 0; i < N_SHAPES; i++) {
        const shape_t *s = &SHAPES[i];
        double flops = 2.0 * s->M * s->N * s->K;
        int c;
        for (c = 0; c < n_cls && strcmp(cls[c], s->cls); c++) {}
        if (c == n_cls) cls[n_cls++] = s->cls;
        cls_f[c] += flops * s->calls;
        tot_f += flops * s->calls;
        printf("%-14s %2s %5d %5d %5d %6ld |", s->cls, s->tb ? "T" : "N", s->M, s->N, s->K,
               s->calls);
        for (int l = 0; l < N_LIBS; l++) {
            if (!have[l]) {
                printf(" %11s", "-");
                continue;
            }
            double e = check(l, s);
            if (!(e <= 1e-4)) {
                printf(" %11s", "WRONG");
                fprintf(stderr, "bench_blas: %s wrong on %s %dx%dx%d: error %.3g\n", LIB_NAME[l],
                        s->cls, s->M, s->N, s->K, e);
                have[l] = 0, failed = 1;
                continue;
            }
            double t = time_lib(l, s, budget);
            cls_t[c][l] += t * s->calls;
            tot_t[l] += t * s->calls;
            printf(" %11.1f", flops / t * 1e-9);
        }
        printf("\n");
    }
    printf("\nper class, weighted by calls (GFLOP/s; share of OpenBLAS's time):\n");
    for (int c = 0; c < n_cls; c++) {
        printf("%-14s %5.1f%% |", cls[c], 100 * cls_t[c][LIB_OPENBLAS] / tot_t[LIB_OPENBLAS]);
        for (int l = 0; l < N_LIBS; l++)
            if (have[l]) printf(" %s %.1f", LIB_NAME[l], cls_f[c] / cls_t[c][l] * 1e-9);
        printf("\n");
    }
    printf("weighted total (%.1f GFLOP per generate):", tot_f * 1e-9);
    for (int l = 0; l < N_LIBS; l++)
        if (have[l])
            printf(" %s %.1f GFLOP/s (%.2f s, %.2fx OpenBLAS);", LIB_NAME[l], tot_f / tot_t[l] * 1e-9,
                   tot_t[l], tot_t[LIB_OPENBLAS] / tot_t[l]);
    printf("\n");
    free(A), free(B), free(C), free(Ah), free(Bh);
    return failed;
}
