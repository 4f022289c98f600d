/* layout.cu: data movement without arithmetic: 2x2 max pooling, nearest 2x
 * upsampling, window partition/unpartition (Hiera), NHWC<->NCHW.
 *
 * Each kernel walks its output elements in a grid-stride loop (channels
 * fastest, so reads and writes are coalesced along C) and computes the
 * source index; the layout change is a 32x32 shared-memory tile transpose
 * so both the global read and the global write are coalesced.
 */
#include "common.cuh"

// x is (B,H,W,C), y is (B,H/2,W/2,C)
static __global__ void maxpool2x2_kernel(float *y, const float *x, int64_t B, int64_t H,
                                         int64_t W, int64_t C) {
    const int64_t Ho = H / 2, Wo = W / 2;
    KERN_FOR(i, B * Ho * Wo * C) {
        const int64_t c = i % C, ox = (i / C) % Wo, oy = (i / (C * Wo)) % Ho;
        const int64_t b = i / (C * Wo * Ho);
        const float *p = x + ((b * H + 2 * oy) * W + 2 * ox) * C + c;
        const float v[4] = {p[0], p[C], p[W * C], p[W * C + C]};
        float m = v[0];
        for (int t = 1; t < 4; t++)
            if (v[t] > m || isnan(v[t])) m = v[t];   // NaN propagates, as in PyTorch
        y[i] = m;
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

// x is (B,H,W,C), y is (B*nwh*nww, ws, ws, C)
static __global__ void window_partition_kernel(float *y, const float *x, int64_t B, int64_t H,
                                               int64_t W, int64_t C, int64_t ws,
                                               int64_t nwh, int64_t nww) {
    KERN_FOR(i, B * nwh * nww * ws * ws * C) {
        int64_t t = i / C;
        const int64_t c = i % C;
        const int64_t wx = t % ws; t /= ws;
        const int64_t wy = t % ws; t /= ws;
        const int64_t gw = t % nww; t /= nww;
        const int64_t gh = t % nwh;
        const int64_t b = t / nwh;
        const int64_t yy = gh * ws + wy, xx = gw * ws + wx;
        y[i] = (yy < H && xx < W) ? x[((b * H + yy) * W + xx) * C + c] : 0.0f;
    }
}

// x is (B*nwh*nww, ws, ws, C), y is (B,H,W,C)
static __global__ void window_unpartition_kernel(float *y, const float *x, int64_t B,
                                                 int64_t H, int64_t W, int64_t C, int64_t ws,
                                                 int64_t nwh, int64_t nww) {
    KERN_FOR(i, B * H * W * C) {
        const int64_t c = i % C, xx = (i / C) % W, yy = (i / (C * W)) % H;
        const int64_t b = i / (C * W * H);
        const int64_t win = (b * nwh + yy / ws) * nww + xx / ws;
        y[i] = x[((win * ws + yy % ws) * ws + xx % ws) * C + c];
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
    maxpool2x2_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(y, x, B, H, W, C);
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
    window_partition_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
        y, x, B, H, W, C, ws, nwh, nww);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_window_unpartition(cudaStream_t s, float *y, const float *x, int64_t B,
                                        int64_t H, int64_t W, int64_t C, int64_t ws) {
    CHECK(B >= 0 && H > 0 && W > 0 && C > 0 && ws > 0);
    const int64_t nwh = (H + ws - 1) / ws, nww = (W + ws - 1) / ws;
    const int64_t n = B * H * W * C;
    if (n == 0) return;
    window_unpartition_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
        y, x, B, H, W, C, ws, nwh, nww);
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
