/* blas.h: which BLAS kernel runs, chosen at start-up and checked.
 *
 * Debian's OpenBLAS is built DYNAMIC_ARCH: it picks its kernels from the
 * CPU model when it loads, and on a CPU model newer than the library it
 * silently falls back to a generic SSE kernel (Prescott), 2.5x slower on a
 * current Intel server. blas_startup, called first in main, sees that
 * fallback, picks the core this CPU's features (cpuid) allow, and re-runs
 * the program once with OPENBLAS_CORETYPE set, which OpenBLAS reads only
 * as it initializes. Whatever core runs is then checked with a small SGEMM
 * against a naive reference before any real work.
 *
 * Environment:
 *   OPENBLAS_CORETYPE      the user's own choice: honoured, never replaced
 *   SAM2AMG_BLAS_AUTO=0    no automatic choice (the check still runs)
 *   SAM2AMG_BLAS_REEXEC    set by blas_startup for the re-run (loop guard)
 *   SAM2AMG_BLAS_TEST_OVERRIDE=1   tests only: OPENBLAS_CORETYPE is treated
 *                          as the library's own choice, so a forced
 *                          generic core can be auto-corrected
 *   SAM2AMG_BLAS_TEST_FAIL=CORE    tests only: the SGEMM check fails
 *                          under CORE (to exercise the fallback)
 */
#ifndef SAM2AMG_BLAS_H
#define SAM2AMG_BLAS_H

/* blas_cpu: the CPU features the kernel choice depends on, as cpuid and
 * the OS (XCR0: the register state is saved) report them. */
typedef struct blas_cpu {
    int avx2, fma;                           /* Haswell kernels */
    int avx512f, avx512bw, avx512vl, avx512dq, avx512cd; /* SkylakeX kernels */
    int avx512_bf16;                         /* Cooperlake kernels */
    int amx_tile, amx_bf16;                  /* reported only (no OpenBLAS sgemm uses them) */
} blas_cpu;

/* blas_cpu_detect: fill f for the running CPU (all zero off x86). */
void blas_cpu_detect(blas_cpu *f);

/* blas_core_is_generic: 1 if core (an OpenBLAS core name, any case) has no
 * AVX2 SGEMM kernels (Prescott, Core2, Nehalem, Sandybridge, Atom,
 * Barcelona, ...): everything but Haswell, Zen, SkylakeX, Cooperlake and
 * SapphireRapids. */
int blas_core_is_generic(const char *core);

/* blas_core_for_cpu: the best OpenBLAS core whose required instructions f
 * reports: "Cooperlake" (AVX-512 F/BW/VL/DQ/CD + BF16), "SkylakeX"
 * (AVX-512 F/BW/VL/DQ/CD), "Haswell" (AVX2 + FMA), or NULL. */
const char *blas_core_for_cpu(const blas_cpu *f);

/* blas_check_sgemm: C = A B^T + C and C = A B on odd sizes (the two forms
 * the CPU backend calls) with the BLAS in use, against a double-precision
 * naive reference; 0 if every element is within 1e-4 relative to the
 * row's magnitude, -1 otherwise. *max_err: the largest such error. */
int blas_check_sgemm(double *max_err);

/* blas_startup: the start-up choice and check (see the file comment).
 * Call first in main, before any other BLAS call or thread; argv as main
 * got it (for the re-run through /proc/self/exe). Returns normally, or
 * does not return (the re-run replaced the process), or exits 1 with one
 * line on stderr when no core passes the SGEMM check. */
void blas_startup(char **argv);

/* blas_describe: one line (no newline) for -v and the benchmarks, e.g.
 * "blas: OpenBLAS 0.3.21 core Cooperlake (auto: was Prescott), SGEMM check
 * ok"; valid after blas_startup. */
const char *blas_describe(void);

#endif
