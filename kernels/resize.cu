/* resize.cu: bilinear resize of planes, PyTorch align_corners=False.
 *
 * Mirrors PyTorch's CPU float arithmetic step by step: scale = Hi/Ho in
 * float, src = scale*(dst + 0.5) - 0.5 clamped at 0, i0 = floor(src),
 * i1 = i0 + (i0 < size-1), l1 = src - i0, l0 = 1 - l1, and
 * out = (x00*w0 + x01*w1)*h0 + (x10*w0 + x11*w1)*h1. The _rn intrinsics
 * keep nvcc from contracting a*b+c into an FMA, so each step rounds like
 * the (FMA-free) C reference: mask thresholds at 0 then flip on the same
 * pixels, up to input differences.
 */
#include "common.cuh"

static __device__ __forceinline__ void resize_src(int64_t dst, int64_t in_size, float scale,
                                                  int64_t *i0, int64_t *i1, float *l0,
                                                  float *l1) {
    float src = __fsub_rn(__fmul_rn(scale, __fadd_rn((float)dst, 0.5f)), 0.5f);
    if (src < 0.0f) src = 0.0f;
    int64_t a = (int64_t)src;
    if (a > in_size - 1) a = in_size - 1;   // float rounding guard; never taken for src < in_size
    *i0 = a;
    *i1 = a + (a < in_size - 1 ? 1 : 0);
    *l1 = __fsub_rn(src, (float)a);
    *l0 = __fsub_rn(1.0f, *l1);
}

// x is (N,Hi,Wi), y is (N,Ho,Wo)
static __global__ void resize_bilinear_kernel(float *y, const float *x, int64_t N, int64_t Hi,
                                              int64_t Wi, int64_t Ho, int64_t Wo,
                                              float sh, float sw) {
    KERN_FOR(i, N * Ho * Wo) {
        const int64_t ox = i % Wo, oy = (i / Wo) % Ho, n = i / (Wo * Ho);
        int64_t y0, y1, x0, x1;
        float h0, h1, w0, w1;
        resize_src(oy, Hi, sh, &y0, &y1, &h0, &h1);
        resize_src(ox, Wi, sw, &x0, &x1, &w0, &w1);
        const float *p = x + n * Hi * Wi;
        const float top = __fadd_rn(__fmul_rn(p[y0 * Wi + x0], w0), __fmul_rn(p[y0 * Wi + x1], w1));
        const float bot = __fadd_rn(__fmul_rn(p[y1 * Wi + x0], w0), __fmul_rn(p[y1 * Wi + x1], w1));
        y[i] = __fadd_rn(__fmul_rn(top, h0), __fmul_rn(bot, h1));
    }
}

extern "C" void cuda_resize_bilinear(cudaStream_t s, float *y, const float *x, int64_t N,
                                     int64_t Hi, int64_t Wi, int64_t Ho, int64_t Wo) {
    CHECK(N >= 0 && Hi > 0 && Wi > 0 && Ho > 0 && Wo > 0);
    if (N == 0) return;
    const float sh = (float)Hi / (float)Ho, sw = (float)Wi / (float)Wo;
    const int64_t n = N * Ho * Wo;
    resize_bilinear_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
        y, x, N, Hi, Wi, Ho, Wo, sh, sw);
    CUDA_LAUNCH_CHECK();
}
