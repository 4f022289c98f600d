/* norm.cu: LayerNorm over the last dimension, one warp per row.
 *
 * Rows in SAM 2.1 are short (C = 32..1152), so a warp per row with
 * shuffle reductions needs no shared memory. Two passes (mean, then the
 * sum of squared deviations) match the CPU reference's numerics better
 * than the one-pass E[x^2] - E[x]^2 form. y may alias x: every lane reads
 * x[c] before it writes y[c] for the same c, and no other lane touches c.
 */
#include "common.cuh"

#define NORM_WARPS 8

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// x,y are (M,C); w,b are (C)
static __global__ void layer_norm_kernel(float *y, const float *x, const float *w,
                                         const float *b, int64_t M, int64_t C,
                                         float eps) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * NORM_WARPS + (threadIdx.x >> 5);
    if (row >= M) return;   // whole warp leaves together: row is warp-uniform
    const float *xr = x + row * C;
    float *yr = y + row * C;
    float s = 0.0f;
    for (int64_t c = lane; c < C; c += 32) s += xr[c];
    float mean = warp_sum(s) / (float)C;
    float v = 0.0f;
    for (int64_t c = lane; c < C; c += 32) {
        float d = xr[c] - mean;
        v += d * d;
    }
    float rstd = 1.0f / sqrtf(warp_sum(v) / (float)C + eps);
    for (int64_t c = lane; c < C; c += 32) yr[c] = (xr[c] - mean) * rstd * w[c] + b[c];
}

extern "C" void cuda_layer_norm(cudaStream_t s, float *y, const float *x, const float *w,
                                const float *b, int64_t M, int64_t C, float eps) {
    CHECK(M >= 0 && C > 0 && w && b);
    if (M == 0) return;
    int64_t blocks = (M + NORM_WARPS - 1) / NORM_WARPS;
    CHECK(blocks <= INT32_MAX);
    layer_norm_kernel<<<(unsigned)blocks, NORM_WARPS * 32, 0, s>>>(y, x, w, b, M, C, eps);
    CUDA_LAUNCH_CHECK();
}
