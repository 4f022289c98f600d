/* convert.cu: float32 -> bfloat16 conversion for the bf16 GEMM path.
 *
 * The CUDA backend's bf16 mode (src/backend_cuda.c) feeds cuBLASLt bf16
 * operands: weights are converted once into a bf16 copy of their
 * allocation, activations on the fly into a fixed workspace. Rounding is
 * to nearest, ties to even (__float2bfloat16_rn), exactly
 * ops_ref_bf16_round (src/ops_ref.c), so the reference's bf16 mode sees the
 * same operands as the tensor cores. Inf and NaN stay Inf and NaN.
 */
#include <cuda_bf16.h>

#include "common.cuh"

// dst (batch, rows, cols) bf16, row stride ldd, item stride sd = src (batch, rows, cols)
// float32, row stride lds, item stride ss
static __global__ void f32_to_bf16_3d_kernel(__nv_bfloat16 *dst, int64_t ldd, int64_t sd,
                                             const float *src, int64_t lds, int64_t ss,
                                             int64_t batch, int64_t rows, int64_t cols) {
    const int64_t per = rows * cols;
    KERN_FOR(i, batch * per) {
        const int64_t b = i / per, rem = i % per, r = rem / cols, col = rem % cols;
        dst[b * sd + r * ldd + col] = __float2bfloat16_rn(src[b * ss + r * lds + col]);
    }
}

// dst (n) bf16 = src (n) float32
static __global__ void f32_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n) {
    KERN_FOR(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

extern "C" void cuda_f32_to_bf16(cudaStream_t s, uint16_t *dst, const float *src, int64_t n) {
    CHECK(n >= 0 && (n == 0 || (dst && src)));
    if (n == 0) return;
    f32_to_bf16_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
        (__nv_bfloat16 *)dst, src, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_f32_to_bf16_strided(cudaStream_t s, uint16_t *dst, int64_t ldd, int64_t sd,
                                         const float *src, int64_t lds, int64_t ss,
                                         int64_t batch, int64_t rows, int64_t cols) {
    CHECK(batch >= 0 && rows >= 0 && cols >= 0 && ldd >= cols && lds >= cols);
    if (batch == 0 || rows == 0 || cols == 0) return;
    CHECK(dst && src && (batch == 1 || (sd >= rows * ldd && ss >= rows * lds)));
    if (ldd == cols && lds == cols && (batch == 1 || (sd == rows * cols && ss == rows * cols))) {
        cuda_f32_to_bf16(s, dst, src, batch * rows * cols);   // all contiguous: one flat pass
        return;
    }
    const int64_t n = batch * rows * cols;
    f32_to_bf16_3d_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
        (__nv_bfloat16 *)dst, ldd, sd, src, lds, ss, batch, rows, cols);
    CUDA_LAUNCH_CHECK();
}
