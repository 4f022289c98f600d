/* layout.cu: data movement without arithmetic: 2x2 max pooling, nearest 2x
 * upsampling, window partition/unpartition (Hiera), NHWC<->NCHW.
 *
 * The pixel-to-pixel moves (pooling, windows) take one warp per output row
 * of C channels: the row's source is computed once (the per-element 64-bit
 * divisions of the first versions made window_partition run at ~0.7 TB/s
 * on an H100, compute-bound) and the lanes stride along C, by float4 where
 * C % 4 == 0 and the pointers are 16-byte aligned. Upsampling walks its
 * output elements in a grid-stride loop; the layout change is a 32x32
 * shared-memory tile transpose so both the global read and the global
 * write are coalesced.
 */
#include "common.cuh"

#define ROW_WARPS 8   /* warps per block of the row kernels */

/* row_blocks: blocks for one warp per row over n rows (a grid-stride loop
 * past the cap) */
static inline unsigned row_blocks(int64_t n) { return kern_grid(n, ROW_WARPS); }

/* row_vec: float4 moves are possible for rows of C floats at x and y */
static inline int row_vec(const float *y, const float *x, int64_t C) {
    return C % 4 == 0 && (uintptr_t)y % 16 == 0 && (uintptr_t)x % 16 == 0;
}

/* the warp's row loop: r over [0, n), one warp per row */
#define ROW_FOR(r, n)                                                                      \
    for (int64_t r = (int64_t)blockIdx.x * ROW_WARPS + (threadIdx.x >> 5); r < (n);         \
         r += (int64_t)gridDim.x * ROW_WARPS)

/* copy_row: dst[0..C) = src[0..C) (src NULL: zeros) by the warp's lanes */
static __device__ __forceinline__ void copy_row(float *dst, const float *src, int64_t C,
                                                int lane, int vec) {
    if (vec) {
        float4 *d4 = reinterpret_cast<float4 *>(dst);
        const float4 *s4 = reinterpret_cast<const float4 *>(src);
        for (int64_t c = lane; c < C / 4; c += 32)
            d4[c] = src ? s4[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    } else {
        for (int64_t c = lane; c < C; c += 32) dst[c] = src ? src[c] : 0.0f;
    }
}

// x is (B,H,W,C), y is (B,H/2,W/2,C); a warp per output pixel
static __global__ void maxpool2x2_kernel(float *y, const float *x, int64_t B, int64_t H,
                                         int64_t W, int64_t C) {
    const int64_t Ho = H / 2, Wo = W / 2;
    const int lane = threadIdx.x & 31;
    ROW_FOR(r, B * Ho * Wo) {
        const int64_t ox = r % Wo, oy = r / Wo % Ho, b = r / (Wo * Ho);
        const float *p0 = x + ((b * H + 2 * oy) * W + 2 * ox) * C;
        float *yr = y + r * C;
        for (int64_t c = lane; c < C; c += 32) {
            const float *p = p0 + c;
            const float v[4] = {p[0], p[C], p[W * C], p[W * C + C]};
            float m = v[0];
            for (int t = 1; t < 4; t++)
                if (v[t] > m || isnan(v[t])) m = v[t];   // NaN propagates, as in PyTorch
            yr[c] = m;
        }
    }
}

// x is (B,H,W,C), y is (B,2H,2W,C)
static __global__ void upsample2x_kernel(float *y, const float *x, int64_t B, int64_t H,
                                         int64_t W, int64_t C) {
    const int64_t Ho = 2 * H, Wo = 2 * W;
    KERN_FOR(i, B * Ho * Wo * C) {
        const int64_t c = i % C, ox = (i / C) % Wo, oy = (i / (C * Wo)) % Ho;
        const int64_t b = i / (C * Wo * Ho);
        y[i] = x[((b * H + oy / 2) * W + ox / 2) * C + c];
    }
}

// x is (B,H,W,C), y is (B*nwh*nww, ws, ws, C) (zero rows past H, W); a warp per output row
static __global__ void window_partition_kernel(float *y, const float *x, int64_t B, int64_t H,
                                               int64_t W, int64_t C, int64_t ws,
                                               int64_t nwh, int64_t nww, int vec) {
    const int lane = threadIdx.x & 31;
    ROW_FOR(r, B * nwh * nww * ws * ws) {
        int64_t t = r;
        const int64_t wx = t % ws; t /= ws;
        const int64_t wy = t % ws; t /= ws;
        const int64_t gw = t % nww; t /= nww;
        const int64_t gh = t % nwh;
        const int64_t b = t / nwh;
        const int64_t yy = gh * ws + wy, xx = gw * ws + wx;
        copy_row(y + r * C, yy < H && xx < W ? x + ((b * H + yy) * W + xx) * C : NULL, C, lane,
                 vec);
    }
}

// x is (B*nwh*nww, ws, ws, C), y is (B,H,W,C); a warp per output row
static __global__ void window_unpartition_kernel(float *y, const float *x, int64_t B,
                                                 int64_t H, int64_t W, int64_t C, int64_t ws,
                                                 int64_t nwh, int64_t nww, int vec) {
    const int lane = threadIdx.x & 31;
    ROW_FOR(r, B * H * W) {
        const int64_t xx = r % W, yy = r / W % H, b = r / (W * H);
        const int64_t win = (b * nwh + yy / ws) * nww + xx / ws;
        copy_row(y + r * C, x + ((win * ws + yy % ws) * ws + xx % ws) * C, C, lane, vec);
    }
}

#define TR_TILE 32
#define TR_ROWS 8

// x is (B,R,Cc), y is (B,Cc,R); block (32, 8); grid.x = tiles, grid.y strides over B
static __global__ void transpose_kernel(float *y, const float *x, int64_t B, int64_t R,
                                        int64_t Cc, int64_t tilesC) {
    __shared__ float tile[TR_TILE][TR_TILE + 1];
    const int64_t tc = (int64_t)blockIdx.x % tilesC, tr = (int64_t)blockIdx.x / tilesC;
    const int64_t r0 = tr * TR_TILE, c0 = tc * TR_TILE;
    for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
        const float *xb = x + b * R * Cc;
        float *yb = y + b * R * Cc;
        for (int k = threadIdx.y; k < TR_TILE; k += TR_ROWS) {
            const int64_t r = r0 + k, c = c0 + threadIdx.x;
            if (r < R && c < Cc) tile[k][threadIdx.x] = xb[r * Cc + c];
        }
        __syncthreads();
        for (int k = threadIdx.y; k < TR_TILE; k += TR_ROWS) {
            const int64_t c = c0 + k, r = r0 + threadIdx.x;
            if (r < R && c < Cc) yb[c * R + r] = tile[threadIdx.x][k];
        }
        __syncthreads();
    }
}

extern "C" void cuda_maxpool2x2(cudaStream_t s, float *y, const float *x, int64_t B,
                                int64_t H, int64_t W, int64_t C) {
    CHECK(B >= 0 && H >= 0 && W >= 0 && C > 0);
    const int64_t n = B * (H / 2) * (W / 2) * C;
    if (n == 0) return;
    maxpool2x2_kernel<<<row_blocks(n / C), 32 * ROW_WARPS, 0, s>>>(y, x, B, H, W, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_upsample_nearest2x(cudaStream_t s, float *y, const float *x, int64_t B,
                                        int64_t H, int64_t W, int64_t C) {
    CHECK(B >= 0 && H >= 0 && W >= 0 && C > 0);
    const int64_t n = B * 4 * H * W * C;
    if (n == 0) return;
    upsample2x_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(y, x, B, H, W, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_window_partition(cudaStream_t s, float *y, const float *x, int64_t B,
                                      int64_t H, int64_t W, int64_t C, int64_t ws) {
    CHECK(B >= 0 && H > 0 && W > 0 && C > 0 && ws > 0);
    const int64_t nwh = (H + ws - 1) / ws, nww = (W + ws - 1) / ws;
    const int64_t n = B * nwh * nww * ws * ws * C;
    if (n == 0) return;
    window_partition_kernel<<<row_blocks(n / C), 32 * ROW_WARPS, 0, s>>>(
        y, x, B, H, W, C, ws, nwh, nww, row_vec(y, x, C));
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_window_unpartition(cudaStream_t s, float *y, const float *x, int64_t B,
                                        int64_t H, int64_t W, int64_t C, int64_t ws) {
    CHECK(B >= 0 && H > 0 && W > 0 && C > 0 && ws > 0);
    const int64_t nwh = (H + ws - 1) / ws, nww = (W + ws - 1) / ws;
    const int64_t n = B * H * W * C;
    if (n == 0) return;
    window_unpartition_kernel<<<row_blocks(n / C), 32 * ROW_WARPS, 0, s>>>(
        y, x, B, H, W, C, ws, nwh, nww, row_vec(y, x, C));
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_transpose_batched(cudaStream_t s, float *y, const float *x, int64_t B,
                                       int64_t R, int64_t Cc) {
    CHECK(B >= 0 && R >= 0 && Cc >= 0);
    if (B == 0 || R == 0 || Cc == 0) return;
    const int64_t tilesC = (Cc + TR_TILE - 1) / TR_TILE, tilesR = (R + TR_TILE - 1) / TR_TILE;
    CHECK(tilesC * tilesR <= INT32_MAX);
    const dim3 grid((unsigned)(tilesC * tilesR), (unsigned)(B < 65535 ? B : 65535));
    const dim3 block(TR_TILE, TR_ROWS);
    transpose_kernel<<<grid, block, 0, s>>>(y, x, B, R, Cc, tilesC);
    CUDA_LAUNCH_CHECK();
}
