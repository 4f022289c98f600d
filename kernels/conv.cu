/* conv.cu: the gather/scatter halves of convolution; the GEMMs are cuBLAS.
 *
 * conv2d = im2col (this file) + one GEMM against the weight viewed as
 * (Cout, Cin*kh*kw), which is exactly PyTorch's (Cout,Cin,kh,kw) layout, so
 * no weight repacking. The host side processes output rows in chunks so
 * the patch matrix lives in a bounded scratch buffer.
 * conv_transpose2x2 = one GEMM x (M,Cin) . w (Cin, Cout*4) into scratch,
 * then the scatter kernel here places each of the 4 taps at its output
 * pixel and adds the bias. Both kernels index by the output element, so
 * writes are coalesced and every index is bounds-checked by the loop.
 */
#include "common.cuh"

// col is (mc, Cin*kh*kw) for output rows [m0, m0+mc) of (B,Ho,Wo); x (B,H,W,Cin)
static __global__ void im2col_kernel(float *col, const float *x, int64_t H, int64_t W,
                                     int64_t Cin, int kh, int kw, int stride, int pad,
                                     int64_t Ho, int64_t Wo, int64_t m0, int64_t mc) {
    const int64_t Kc = Cin * kh * kw;
    KERN_FOR(i, mc * Kc) {
        const int64_t r = i / Kc, kidx = i % Kc;
        const int64_t m = m0 + r;
        const int64_t ox = m % Wo, oy = (m / Wo) % Ho, b = m / (Wo * Ho);
        const int64_t kx = kidx % kw, ky = (kidx / kw) % kh, ci = kidx / ((int64_t)kw * kh);
        const int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
        float val = 0.0f;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) val = x[((b * H + iy) * W + ix) * Cin + ci];
        col[i] = val;
    }
}

// t is (mc, Cout*4) in (co, dy, dx) order for input pixels [m0, m0+mc) of (B,H,W);
// y is (B,2H,2W,Cout); b is (Cout) or NULL
static __global__ void convt2x2_scatter_kernel(float *y, const float *t, const float *bias,
                                               int64_t H, int64_t W, int64_t Cout,
                                               int64_t m0, int64_t mc) {
    const int64_t per = 4 * Cout;
    KERN_FOR(i, mc * per) {
        const int64_t r = i / per, rem = i % per;   // rem = (dy*2 + dx)*Cout + co
        const int64_t co = rem % Cout, tap = rem / Cout;
        const int64_t dy = tap >> 1, dx = tap & 1;
        const int64_t m = m0 + r;
        const int64_t j = m % W, ii = (m / W) % H, b = m / (W * H);
        float val = t[r * per + co * 4 + tap];
        if (bias) val += bias[co];
        y[((b * 2 * H + 2 * ii + dy) * 2 * W + 2 * j + dx) * Cout + co] = val;
    }
}

extern "C" void cuda_im2col(cudaStream_t s, float *col, const float *x, int64_t B, int64_t H,
                            int64_t W, int64_t Cin, int kh, int kw, int stride, int pad,
                            int64_t Ho, int64_t Wo, int64_t m0, int64_t mc) {
    CHECK(B > 0 && H > 0 && W > 0 && Cin > 0 && kh > 0 && kw > 0 && stride > 0 && pad >= 0);
    CHECK(Ho > 0 && Wo > 0 && m0 >= 0 && mc >= 0 && m0 + mc <= B * Ho * Wo);
    if (mc == 0) return;
    const int64_t n = mc * Cin * kh * kw;
    im2col_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
        col, x, H, W, Cin, kh, kw, stride, pad, Ho, Wo, m0, mc);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_convt2x2_scatter(cudaStream_t s, float *y, const float *t,
                                      const float *b, int64_t B, int64_t H, int64_t W,
                                      int64_t Cout, int64_t m0, int64_t mc) {
    CHECK(B > 0 && H > 0 && W > 0 && Cout > 0 && m0 >= 0 && mc >= 0);
    CHECK(m0 + mc <= B * H * W);
    if (mc == 0) return;
    const int64_t n = mc * 4 * Cout;
    convt2x2_scatter_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
        y, t, b, H, W, Cout, m0, mc);
    CUDA_LAUNCH_CHECK();
}
