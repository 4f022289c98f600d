/* mini_blas.c: the two OpenBLAS entry points the CPU backend calls
 * (cblas_sgemm, openblas_set_num_threads), in plain C, for the GPU bundle.
 *
 * Why: the GPU machine has no OpenBLAS and cannot install it, and
 * Debian's libopenblas (36 MB, every CPU's kernels) does not fit the
 * ~15 MB bundle (tests/gpu/README in the top README's "GPU check"). The
 * bundle's programs still need a CPU backend as the reference for the
 * full-size CUDA parity runs (tests/gpu/gpu_model.c) and for test_ops, so
 * `make gpu-bundle` links this file ahead of libsam2amg.a instead of
 * -lopenblas. The normal build never uses it.
 *
 * The CPU backend calls cblas_sgemm single-threaded from each of its pool
 * threads on its own rows (src/backend_cpu.c), so this is a single-threaded
 * GEMM: B is packed in KC x NC panels (16 columns wide, zero padded), and a
 * 4 x 16 register tile of C accumulates over each panel's k; the compiler
 * vectorizes the tile (built -O3, with an AVX2/FMA clone picked at load
 * time where the CPU has it). Float32 accumulation; results differ from
 * OpenBLAS only in summation order.
 */
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "check.h"

#define MB_KC 256   /* k per packed panel */
#define MB_NC 512   /* columns per packed panel (multiple of MB_NR) */
#define MB_MR 4     /* rows of the register tile */
#define MB_NR 16    /* columns of the register tile */

/* openblas_set_num_threads: nothing to set; this GEMM is single-threaded. */
void openblas_set_num_threads(int n) {
    (void)n;
}

/* mb_tile: c (mr rows, row stride ldc, nr <= MB_NR valid columns) +=
 * alpha * a (mr rows, row stride lda, kc columns) . bp (kc rows of MB_NR
 * packed floats). */
__attribute__((target_clones("arch=haswell", "default")))
static void mb_tile(int mr, int nr, int kc, float alpha, const float *a, int64_t lda,
                    const float *bp, float *c, int64_t ldc) {
    float acc[MB_MR][MB_NR];
    memset(acc, 0, sizeof acc);
    if (mr == MB_MR) {
        for (int k = 0; k < kc; k++) {
            const float *b = bp + (int64_t)k * MB_NR;
            const float a0 = a[k], a1 = a[lda + k], a2 = a[2 * lda + k], a3 = a[3 * lda + k];
            for (int j = 0; j < MB_NR; j++) {
                acc[0][j] += a0 * b[j];
                acc[1][j] += a1 * b[j];
                acc[2][j] += a2 * b[j];
                acc[3][j] += a3 * b[j];
            }
        }
    } else {
        for (int r = 0; r < mr; r++)
            for (int k = 0; k < kc; k++) {
                const float *b = bp + (int64_t)k * MB_NR;
                const float ar = a[r * lda + k];
                for (int j = 0; j < MB_NR; j++) acc[r][j] += ar * b[j];
            }
    }
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) c[r * ldc + j] += alpha * acc[r][j];
}

/* mb_pack: bp = B(k0 .. k0+kc, j0 .. j0+nc) as ceil(nc/MB_NR) strips of
 * (kc, MB_NR), zero padded; B is (K,N) row stride ldb, or (N,K) with tb. */
static void mb_pack(float *bp, const float *B, int64_t ldb, int tb, int64_t k0, int kc,
                    int64_t j0, int nc) {
    for (int s = 0; s < nc; s += MB_NR) {
        float *strip = bp + (int64_t)s * kc;
        int w = nc - s < MB_NR ? nc - s : MB_NR;
        for (int k = 0; k < kc; k++) {
            float *dst = strip + (int64_t)k * MB_NR;
            for (int j = 0; j < w; j++)
                dst[j] = tb ? B[(j0 + s + j) * ldb + k0 + k] : B[(k0 + k) * ldb + j0 + s + j];
            for (int j = w; j < MB_NR; j++) dst[j] = 0.0f;
        }
    }
}

/* cblas_sgemm: C (M,N) = alpha op(A) op(B) + beta C, row-major (col-major
 * calls are turned into row-major ones by swapping the operands). beta 0:
 * C is only written, as in BLAS. A transposed A (never used by the backend)
 * is copied once into (M,K) order. Aborts on negative sizes or when out of
 * memory (a test harness, not a library). */
void cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER order, OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint M,
                 OPENBLAS_CONST blasint N, OPENBLAS_CONST blasint K, OPENBLAS_CONST float alpha,
                 OPENBLAS_CONST float *A, OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *B,
                 OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *C,
                 OPENBLAS_CONST blasint ldc) {
    if (order == CblasColMajor) {   // C^T = op(B)^T op(A)^T in row-major terms
        cblas_sgemm(CblasRowMajor, tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
        return;
    }
    CHECK(M >= 0 && N >= 0 && K >= 0);
    for (blasint i = 0; i < M; i++) {
        float *c = C + (int64_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (blasint j = 0; j < N; j++) c[j] *= beta;
    }
    if (M == 0 || N == 0 || K == 0 || alpha == 0.0f) return;
    const int trans_b = tb == CblasTrans || tb == CblasConjTrans;
    const int trans_a = ta == CblasTrans || ta == CblasConjTrans;
    const float *a = A;
    float *at = NULL;
    int64_t lda_ = lda;
    if (trans_a) {   // A is (K,M): make the (M,K) copy the tile reads
        at = malloc((size_t)M * K * sizeof(float));
        CHECK(at);
        for (blasint i = 0; i < M; i++)
            for (blasint k = 0; k < K; k++) at[(int64_t)i * K + k] = A[(int64_t)k * lda + i];
        a = at;
        lda_ = K;
    }
    float *bp = malloc((size_t)MB_KC * MB_NC * sizeof(float));
    CHECK(bp);
    for (int64_t j0 = 0; j0 < N; j0 += MB_NC) {
        const int nc = (int)(N - j0 < MB_NC ? N - j0 : MB_NC);
        for (int64_t k0 = 0; k0 < K; k0 += MB_KC) {
            const int kc = (int)(K - k0 < MB_KC ? K - k0 : MB_KC);
            mb_pack(bp, B, ldb, trans_b, k0, kc, j0, nc);
            for (int64_t i0 = 0; i0 < M; i0 += MB_MR) {
                const int mr = (int)(M - i0 < MB_MR ? M - i0 : MB_MR);
                for (int s = 0; s < nc; s += MB_NR)
                    mb_tile(mr, nc - s < MB_NR ? nc - s : MB_NR, kc, alpha,
                            a + i0 * lda_ + k0, lda_, bp + (int64_t)s * kc,
                            C + i0 * ldc + j0 + s, ldc);
            }
        }
    }
    free(bp);
    free(at);
}
