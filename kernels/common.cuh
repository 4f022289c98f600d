/* common.cuh: launch helpers shared by the kernel files (private).
 *
 * Elementwise kernels use grid-stride loops over int64 indices, so one
 * launch of a capped grid covers any n without overflowing int and any
 * thread whose index is past n does nothing: the bounds check is the loop
 * condition.
 */
#ifndef SAM2AMG_KERNELS_COMMON_CUH
#define SAM2AMG_KERNELS_COMMON_CUH

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

/* grid-stride loop over [0, n) */
#define KERN_FOR(i, n)                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);  \
         i += (int64_t)blockDim.x * gridDim.x)

#endif
