/* test_blas.c: the start-up kernel choice's pure parts (which core for
 * which cpuid features, which cores are generic) and the SGEMM check
 * itself: it passes with the real BLAS and fails when the BLAS computes a
 * wrong element or a NaN. The wrong BLAS is this file's cblas_sgemm,
 * which the program's own symbol table puts ahead of OpenBLAS's: it calls
 * the real one (dlsym RTLD_NEXT) and then damages the result on request.
 * The re-run with OPENBLAS_CORETYPE is tested end to end in test_blas.sh. */
#include <dlfcn.h>
#include <string.h>

#include <cblas.h>

#include "blas.h"
#include "check.h"
#include "test.h"

static int damage;   /* 0 none, 1 one element off by 1e-3 relative, 2 one NaN */

typedef void (*sgemm_fn)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE,
                         const enum CBLAS_TRANSPOSE, const blasint, const blasint,
                         const blasint, const float, const float *, const blasint,
                         const float *, const blasint, const float, float *, const blasint);

void cblas_sgemm(const enum CBLAS_ORDER o, const enum CBLAS_TRANSPOSE ta,
                 const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N,
                 const blasint K, const float alpha, const float *A, const blasint lda,
                 const float *B, const blasint ldb, const float beta, float *C,
                 const blasint ldc) {
    static sgemm_fn real;
    if (!real) real = (sgemm_fn)(uintptr_t)dlsym(RTLD_NEXT, "cblas_sgemm");
    CHECK(real);
    real(o, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (damage == 1) C[(M / 2) * ldc + N - 1] *= 1.01f;
    if (damage == 2) C[(M - 1) * ldc + N / 3] = NAN;
}

int main(void) {
    openblas_set_num_threads(1);   /* also links OpenBLAS in: RTLD_NEXT finds it */
    blas_cpu f = {0};
    TEST_CHECK(blas_core_for_cpu(&f) == NULL, "no AVX2: no core chosen", "got %s",
               blas_core_for_cpu(&f));
    f.avx2 = 1;
    TEST_CHECK(blas_core_for_cpu(&f) == NULL, "AVX2 without FMA: no core", "got %s",
               blas_core_for_cpu(&f));
    f.fma = 1;
    TEST_CHECK(!strcmp(blas_core_for_cpu(&f), "Haswell"), "AVX2+FMA: Haswell", "got %s",
               blas_core_for_cpu(&f));
    f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = 1;
    TEST_CHECK(!strcmp(blas_core_for_cpu(&f), "Haswell"), "AVX-512 without CD: Haswell",
               "got %s", blas_core_for_cpu(&f));
    f.avx512cd = 1;
    TEST_CHECK(!strcmp(blas_core_for_cpu(&f), "SkylakeX"), "AVX-512 F/BW/VL/DQ/CD: SkylakeX",
               "got %s", blas_core_for_cpu(&f));
    f.avx512_bf16 = 1;
    TEST_CHECK(!strcmp(blas_core_for_cpu(&f), "Cooperlake"), "AVX-512 + BF16: Cooperlake",
               "got %s", blas_core_for_cpu(&f));
    f.avx512bw = 0;
    TEST_CHECK(!strcmp(blas_core_for_cpu(&f), "Haswell"), "BF16 without BW: Haswell", "got %s",
               blas_core_for_cpu(&f));

    const char *generic[] = {"Prescott", "PRESCOTT", "Katmai", "Core2", "Penryn", "Dunnington",
                             "Nehalem", "Sandybridge", "Atom", "Barcelona", "Bulldozer"};
    const char *good[] = {"Haswell", "zen", "SkylakeX", "COOPERLAKE", "SapphireRapids"};
    int nbad = 0;
    for (size_t i = 0; i < sizeof generic / sizeof *generic; i++) nbad += !blas_core_is_generic(generic[i]);
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) nbad += blas_core_is_generic(good[i]);
    TEST_CHECK(nbad == 0, "generic and AVX2 cores told apart", "%d misclassified", nbad);

    blas_cpu me;
    blas_cpu_detect(&me);
    printf("# this CPU: avx2 %d fma %d avx512f %d bw %d vl %d dq %d cd %d bf16 %d amx %d -> %s\n",
           me.avx2, me.fma, me.avx512f, me.avx512bw, me.avx512vl, me.avx512dq, me.avx512cd,
           me.avx512_bf16, me.amx_tile, blas_core_for_cpu(&me) ? blas_core_for_cpu(&me) : "none");

    double e = -1;
    int rc = blas_check_sgemm(&e);
    TEST_CHECK(rc == 0 && e >= 0 && e < 1e-5, "SGEMM check passes on the real BLAS",
               "rc %d max err %g", rc, e);
    damage = 1;
    rc = blas_check_sgemm(&e);
    TEST_CHECK(rc != 0 && e > 1e-4, "SGEMM check catches one wrong element", "rc %d max err %g",
               rc, e);
    damage = 2;
    rc = blas_check_sgemm(&e);
    TEST_CHECK(rc != 0, "SGEMM check catches a NaN", "rc %d max err %g", rc, e);
    damage = 0;
    return TEST_REPORT();
}
