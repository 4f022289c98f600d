/* convert.cu: float32 -> bfloat16 conversion for the bf16 GEMM path.
 *
 * The CUDA backend's bf16 mode (src/backend_cuda.c) feeds cuBLASLt bf16
 * operands: weights are converted once into a bf16 copy of their
 * allocation, activations on the fly into a fixed workspace. Rounding is
 * to nearest, ties to even (__float2bfloat16_rn), exactly
 * ops_ref_bf16_round (src/ops_ref.c), so the reference's bf16 mode sees the
 * same operands as the tensor cores. Inf and NaN stay Inf and NaN. The
 * GELU form (cuda_gelu_to_bf16_strided) rounds the GELU of each value
 * instead: the Hiera MLP's second GEMM converts its input that way, so the
 * gelu op's own pass over the hidden map is not needed.
 */
#include <string.h>

#include <cuda_bf16.h>

#include "common.cuh"

// cv: what a float becomes before its rounding: itself, or (GELU) its
// GELU (kern_gelu, the gelu op's bits: the MLP's second GEMM reads its
// input's GELU this way, without a pass of its own)
template <bool GELU>
static __device__ __forceinline__ __nv_bfloat16 cv(float v) {
    return __float2bfloat16_rn(GELU ? kern_gelu(v) : v);
}

// dst (batch, rows, cols) bf16, row stride ldd, item stride sd = src (batch, rows, cols)
// float32, row stride lds, item stride ss. Rows (batch*rows of them) along
// grid y (a grid-stride loop past 65535), columns along x: one division per
// row, none per element (the 64-bit divisions per element made the first
// version compute-bound)
template <bool GELU>
static __global__ void f32_to_bf16_3d_kernel(__nv_bfloat16 *dst, int64_t ldd, int64_t sd,
                                             const float *src, int64_t lds, int64_t ss,
                                             int64_t batch, int64_t rows, int64_t cols) {
    for (int64_t br = blockIdx.y; br < batch * rows; br += gridDim.y) {
        const int64_t b = br / rows, r = br - b * rows;
        const float *sr = src + b * ss + r * lds;
        __nv_bfloat16 *dr = dst + b * sd + r * ldd;
        for (int64_t col = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; col < cols;
             col += (int64_t)gridDim.x * blockDim.x)
            dr[col] = cv<GELU>(sr[col]);
    }
}

// dst (n) bf16 = src (n) float32; vec: src 16-byte and dst 8-byte aligned,
// then 4 values per step (a float4 in, 8 bytes out) and the n % 4 tail one
// by one
template <bool GELU>
static __global__ void f32_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n,
                                          int vec) {
    if (!vec) {
        KERN_FOR(i, n) dst[i] = cv<GELU>(src[i]);
        return;
    }
    const int64_t n4 = n / 4;
    KERN_FOR(i, n4) {
        const float4 v = reinterpret_cast<const float4 *>(src)[i];
        const __nv_bfloat16 h[4] = {cv<GELU>(v.x), cv<GELU>(v.y), cv<GELU>(v.z),
                                    cv<GELU>(v.w)};
        uint2 u;
        memcpy(&u, h, sizeof u);
        reinterpret_cast<uint2 *>(dst)[i] = u;
    }
    KERN_FOR(i, n - 4 * n4) dst[4 * n4 + i] = cv<GELU>(src[4 * n4 + i]);
}

template <bool GELU>
static void to_bf16(cudaStream_t s, uint16_t *dst, const float *src, int64_t n) {
    CHECK(n >= 0 && (n == 0 || (dst && src)));
    if (n == 0) return;
    const int vec = (uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0;
    f32_to_bf16_kernel<GELU><<<kern_grid(vec ? (n + 3) / 4 : n, KERN_THREADS), KERN_THREADS, 0,
                               s>>>((__nv_bfloat16 *)dst, src, n, vec);
    CUDA_LAUNCH_CHECK();
}

template <bool GELU>
static void to_bf16_strided(cudaStream_t s, uint16_t *dst, int64_t ldd, int64_t sd,
                            const float *src, int64_t lds, int64_t ss, int64_t batch,
                            int64_t rows, int64_t cols) {
    CHECK(batch >= 0 && rows >= 0 && cols >= 0 && ldd >= cols && lds >= cols);
    if (batch == 0 || rows == 0 || cols == 0) return;
    CHECK(dst && src && (batch == 1 || (sd >= rows * ldd && ss >= rows * lds)));
    if (ldd == cols && lds == cols && (batch == 1 || (sd == rows * cols && ss == rows * cols))) {
        to_bf16<GELU>(s, dst, src, batch * rows * cols);   // all contiguous: one flat pass
        return;
    }
    const int64_t nr = batch * rows;
    const unsigned gx = (unsigned)((cols + KERN_THREADS - 1) / KERN_THREADS < 64
                                       ? (cols + KERN_THREADS - 1) / KERN_THREADS : 64);
    const unsigned gy = (unsigned)(nr < 65535 ? nr : 65535);
    f32_to_bf16_3d_kernel<GELU><<<dim3(gx, gy), KERN_THREADS, 0, s>>>(
        (__nv_bfloat16 *)dst, ldd, sd, src, lds, ss, batch, rows, cols);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_f32_to_bf16(cudaStream_t s, uint16_t *dst, const float *src, int64_t n) {
    to_bf16<false>(s, dst, src, n);
}

extern "C" void cuda_f32_to_bf16_strided(cudaStream_t s, uint16_t *dst, int64_t ldd, int64_t sd,
                                         const float *src, int64_t lds, int64_t ss,
                                         int64_t batch, int64_t rows, int64_t cols) {
    to_bf16_strided<false>(s, dst, ldd, sd, src, lds, ss, batch, rows, cols);
}

extern "C" void cuda_gelu_to_bf16_strided(cudaStream_t s, uint16_t *dst, int64_t ldd,
                                          const float *src, int64_t lds, int64_t rows,
                                          int64_t cols) {
    to_bf16_strided<true>(s, dst, ldd, 0, src, lds, 0, 1, rows, cols);
}

/* cuda_default_stream_sync: wait for the legacy default stream (stream 0).
 * For tests that call the kernel launchers directly on stream 0: the
 * bundle's programs reach the CUDA runtime only through libsam2amg_gpu,
 * which links it statically. */
extern "C" int cuda_default_stream_sync(void) {
    return cudaStreamSynchronize(0) == cudaSuccess ? 0 : -1;
}
