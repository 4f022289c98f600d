/* blas.c: the BLAS kernel chosen right at start-up, and checked.
 *
 * OpenBLAS (DYNAMIC_ARCH) chooses its kernels once, in its load-time
 * constructor, from the CPU model number; a model it does not know gets a
 * generic SSE3 kernel (Prescott), with no message. The only knob is the
 * environment variable OPENBLAS_CORETYPE, read by that constructor, so
 * setting it from inside the process is too late: blas_startup sets it and
 * re-executes the program once (through /proc/self/exe, same argv, same
 * environment plus the marker SAM2AMG_BLAS_REEXEC that stops a second
 * re-run). At that point main has done nothing else: no file is open, no
 * thread of ours exists (execve ends OpenBLAS's own pool threads).
 *
 * A core is chosen only if cpuid reports every instruction set its kernels
 * use and the OS saves the registers (XCR0), so the re-run cannot die of
 * SIGILL; the SGEMM check then catches a core that runs but computes
 * wrong results (a library bug, a CPU erratum, a bad override). A failing
 * core is replaced by Prescott (SSE3: every x86-64 CPU OpenBLAS runs on)
 * with a warning; if that fails too the program stops.
 *
 * The OpenBLAS-only entry points are weak, so the same code links against
 * another CBLAS (the GPU bundle's mini_blas.c): there is then no core to
 * choose and only the check runs.
 */
#include "blas.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#pragma weak openblas_get_corename
#pragma weak openblas_get_config

#define BLAS_REEXEC_ENV "SAM2AMG_BLAS_REEXEC"
#define BLAS_SAFE_CORE  "Prescott"

static char blas_line[512] = "blas: not initialized";   /* holds every part whole */

void blas_cpu_detect(blas_cpu *f) {
    memset(f, 0, sizeof *f);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    uint64_t xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((uint64_t)hi << 32) | lo;
    }
    int os_avx = avx && (xcr0 & 0x6) == 0x6;             /* XMM, YMM state */
    int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;      /* opmask, ZMM state */
    int os_amx = (xcr0 & 0x60000) == 0x60000;            /* XTILECFG, XTILEDATA */
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    f->avx2 = os_avx && ((b >> 5) & 1);
    f->fma = os_avx && fma;
    f->avx512f = os_avx512 && ((b >> 16) & 1);
    f->avx512dq = os_avx512 && ((b >> 17) & 1);
    f->avx512cd = os_avx512 && ((b >> 28) & 1);
    f->avx512bw = os_avx512 && ((b >> 30) & 1);
    f->avx512vl = os_avx512 && ((b >> 31) & 1);
    f->amx_bf16 = os_amx && ((d >> 22) & 1);
    f->amx_tile = os_amx && ((d >> 24) & 1);
    unsigned max7 = a;
    if (max7 >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        f->avx512_bf16 = f->avx512f && ((a >> 5) & 1);
    }
#endif
}

int blas_core_is_generic(const char *core) {
    static const char *const good[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                       "SapphireRapids"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!strcasecmp(core, good[i])) return 0;
    return 1;
}

const char *blas_core_for_cpu(const blas_cpu *f) {
    int skx = f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512cd &&
              f->avx2 && f->fma;
    if (skx && f->avx512_bf16) return "Cooperlake";
    if (skx) return "SkylakeX";
    if (f->avx2 && f->fma) return "Haswell";
    return NULL;
}

/* check_one: C (M,N) = alpha * A (M,K) * op(B) + beta * C0 with op(B) = B^T
 * for B (N,K) when bt, B (K,N) otherwise; leading dimensions wider than the
 * rows, as the backend's strided calls are. Returns the largest error
 * relative to sum |terms| of its element. */
static double check_one(int bt, int M, int N, int K, float *A, float *B, float *C,
                        double *R) {
    int lda = K + 3, ldb = (bt ? K : N) + 5, ldc = N + 2;
    uint32_t s = 12345u + (uint32_t)bt;
    for (int i = 0; i < M * lda; i++) A[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.f - 1.f;
    int nb = bt ? N * ldb : K * ldb;
    for (int i = 0; i < nb; i++) B[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.f - 1.f;
    for (int i = 0; i < M * ldc; i++) C[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.f - 1.f;
    const float alpha = 0.75f, beta = 1.0f;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double t = (double)A[i * lda + k] * (bt ? B[j * ldb + k] : B[k * ldb + j]);
                acc += t, mag += fabs(t);
            }
            R[2 * (i * N + j)] = alpha * acc + beta * C[i * ldc + j];
            R[2 * (i * N + j) + 1] = fabs(alpha) * mag + fabs(C[i * ldc + j]) + 1e-30;
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, bt ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                lda, B, ldb, beta, C, ldc);
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double e = fabs(C[i * ldc + j] - R[2 * (i * N + j)]) / R[2 * (i * N + j) + 1];
            if (e != e) return INFINITY;   /* a NaN fails the check */
            if (e > worst) worst = e;
        }
    return worst;
}

int blas_check_sgemm(double *max_err) {
    /* big enough to go through the packed kernels (not only the small-matrix
     * path), odd so every edge case of the register tiles runs */
    enum { M = 97, N = 83, K = 203 };
    float *A = malloc(sizeof(float) * M * (K + 3));
    float *B = malloc(sizeof(float) * (K + 5) * (N + 5) * 2);
    float *C = malloc(sizeof(float) * M * (N + 2));
    double *R = malloc(sizeof(double) * 2 * M * N);
    if (!A || !B || !C || !R) {
        fprintf(stderr, "sam2amg: blas: out of memory for the SGEMM check\n");
        exit(1);
    }
    double e1 = check_one(1, M, N, K, A, B, C, R);
    double e2 = check_one(0, M, N, K, A, B, C, R);
    free(A), free(B), free(C), free(R);
    double e = e1 > e2 ? e1 : e2;
    *max_err = e;
    const char *fail = getenv("SAM2AMG_BLAS_TEST_FAIL");
    if (fail && *fail && openblas_get_corename && !strcasecmp(fail, openblas_get_corename()))
        return -1;
    return e <= 1e-4 ? 0 : -1;
}

/* blas_reexec: set the core and the marker, run ourselves again; returns
 * only if exec failed */
static void blas_reexec(char **argv, const char *core, const char *marker) {
    if (setenv("OPENBLAS_CORETYPE", core, 1) || setenv(BLAS_REEXEC_ENV, marker, 1)) return;
    fflush(NULL);
    execv("/proc/self/exe", argv);
}

/* version: "OpenBLAS 0.3.21" from the config string's first two words */
static void blas_version(char *out, size_t cap) {
    const char *cfgs = openblas_get_config ? openblas_get_config() : NULL;
    if (!cfgs) {
        snprintf(out, cap, "OpenBLAS");
        return;
    }
    const char *sp = strchr(cfgs, ' ');
    sp = sp ? strchr(sp + 1, ' ') : NULL;
    int n = sp ? (int)(sp - cfgs) : (int)strlen(cfgs);
    snprintf(out, cap, "%.*s", n, cfgs);
}

void blas_startup(char **argv) {
    double err = 0;
    if (!openblas_get_corename) {   /* another CBLAS: nothing to choose */
        int bad = blas_check_sgemm(&err);
        snprintf(blas_line, sizeof blas_line, "blas: not OpenBLAS (no core choice), SGEMM check %s",
                 bad ? "FAILED" : "ok");
        if (bad) {
            fprintf(stderr, "sam2amg: blas: the CBLAS library fails the SGEMM check (max error "
                            "%.2g); stopping\n", err);
            exit(1);
        }
        return;
    }
    char core[64], marker[128] = "";
    snprintf(core, sizeof core, "%s", openblas_get_corename());
    const char *mk = getenv(BLAS_REEXEC_ENV);
    if (mk) {
        snprintf(marker, sizeof marker, "%s", mk);
        unsetenv(BLAS_REEXEC_ENV);   /* children of ours start afresh */
    }
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *ov = getenv("SAM2AMG_BLAS_TEST_OVERRIDE");
    int user_set = user && *user && !*marker && !(ov && !strcmp(ov, "1"));
    const char *au = getenv("SAM2AMG_BLAS_AUTO");
    int auto_on = !(au && !strcmp(au, "0"));
    char note[160] = "";
    if (!*marker && auto_on && !user_set && blas_core_is_generic(core)) {
        blas_cpu f;
        blas_cpu_detect(&f);
        const char *want = blas_core_for_cpu(&f);
        if (want) {
            char m[128];
            snprintf(m, sizeof m, "auto:%s", core);
            blas_reexec(argv, want, m);
            snprintf(note, sizeof note, " (auto: %s wanted, re-run failed: %s)", want,
                     strerror(errno));
            unsetenv(BLAS_REEXEC_ENV);
        }
    }
    if (!strncmp(marker, "auto:", 5))
        snprintf(note, sizeof note, " (auto: was %.60s)", marker + 5);
    else if (!strncmp(marker, "fallback:", 9))
        snprintf(note, sizeof note, " (fallback: %.60s failed the SGEMM check)", marker + 9);
    else if (user_set)
        snprintf(note, sizeof note, " (OPENBLAS_CORETYPE=%.60s)", user);

    int bad = blas_check_sgemm(&err);
    if (bad) {
        if (strncmp(marker, "fallback:", 9) && strcasecmp(core, BLAS_SAFE_CORE)) {
            fprintf(stderr, "sam2amg: blas: OpenBLAS core %s fails the SGEMM check (max error "
                            "%.2g); running with %s instead\n", core, err, BLAS_SAFE_CORE);
            char m[128];
            snprintf(m, sizeof m, "fallback:%s", core);
            blas_reexec(argv, BLAS_SAFE_CORE, m);
        }
        fprintf(stderr, "sam2amg: blas: OpenBLAS core %s fails the SGEMM check (max error %.2g) "
                        "and no safe core is left; set OPENBLAS_CORETYPE to a core this CPU "
                        "runs correctly\n", core, err);
        exit(1);
    }
    char ver[64];
    blas_version(ver, sizeof ver);
    snprintf(blas_line, sizeof blas_line, "blas: %s core %s%s, SGEMM check ok (max rel err %.1e)",
             ver, core, note, err);
}

const char *blas_describe(void) { return blas_line; }
