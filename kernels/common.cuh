/* common.cuh: launch helpers shared by the kernel files (private).
 *
 * Elementwise kernels use grid-stride loops over int64 indices, so one
 * launch of a capped grid covers any n without overflowing int and any
 * thread whose index is past n does nothing: the bounds check is the loop
 * condition.
 */
#ifndef SAM2AMG_KERNELS_COMMON_CUH
#define SAM2AMG_KERNELS_COMMON_CUH

#include <math.h>
#include <stdint.h>

#include "kernels.h"

#define KERN_THREADS 256

/* kern_grid: blocks for a grid-stride loop over n items, at least 1 and at
 * most 65536 (enough to fill any current GPU several times over). */
static inline unsigned kern_grid(int64_t n, int threads) {
    int64_t g = (n + threads - 1) / threads;
    if (g < 1) g = 1;
    if (g > 65536) g = 65536;
    return (unsigned)g;
}

/* kern_gelu: the exact (erf) GELU in float32, as ops_ref_gelu; every
 * kernel that applies it uses this one expression, so a fused GELU gives
 * the bits of the gelu op's */
static __device__ __forceinline__ float kern_gelu(float v) {
    return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
}

/* grid-stride loop over [0, n) */
#define KERN_FOR(i, n)                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);  \
         i += (int64_t)blockDim.x * gridDim.x)

/* attention_merge_splits: the splits of a key-split attention merged. part
 * is (rows, nsplit, dh + 2): per split its running max m, its softmax sum l
 * and its unnormalised output (dh); o is (rows, dh). LOG2: m is in log2
 * units (exp2), else natural (exp). One thread per output element. */
template <bool LOG2>
static __global__ void attention_merge_splits(float *o, const float *part, int64_t rows, int dh,
                                              int nsplit) {
    KERN_FOR(idx, rows * dh) {
        const int64_t row = idx / dh;
        const int d = (int)(idx % dh);
        const float *p = part + row * nsplit * (int64_t)(dh + 2);
        float M = -INFINITY;
        for (int sp = 0; sp < nsplit; sp++) M = fmaxf(M, p[sp * (dh + 2)]);
        float L = 0.0f, acc = 0.0f;
        for (int sp = 0; sp < nsplit; sp++) {
            const float *ps = p + sp * (dh + 2);
            const float w = LOG2 ? exp2f(ps[0] - M) : expf(ps[0] - M);
            L += ps[1] * w;
            acc += ps[2 + d] * w;
        }
        o[idx] = acc / L;
    }
}

#endif
