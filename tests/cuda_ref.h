/* cuda_ref.h: naive host references for every backend op, plus the helpers
 * the CUDA parity test (tests/test_cuda.c) and kernel harness
 * (bench/bench_cuda.c) share: random fill, normalized error, device
 * round trips.
 *
 * Each reference is the op's definition in include/backend.h written as
 * plain loops with double accumulation, independent of both backends, so a
 * disagreement points at the backend, not at a shared helper. Static
 * inline functions: each includer compiles what it uses.
 */
#ifndef SAM2AMG_CUDA_REF_H
#define SAM2AMG_CUDA_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"

/* ---- random data, errors, device round trips ---- */

static uint64_t ref_rng_state = 0x9e3779b97f4a7c15ull;

/* ref_fill: n floats uniform in [-amp, amp) (xorshift64*, deterministic). */
static inline void ref_fill(float *x, int64_t n, float amp) {
    for (int64_t i = 0; i < n; i++) {
        ref_rng_state ^= ref_rng_state >> 12;
        ref_rng_state ^= ref_rng_state << 25;
        ref_rng_state ^= ref_rng_state >> 27;
        uint64_t r = (ref_rng_state * 0x2545f4914f6cdd1dull) >> 40;   // 24 bits
        x[i] = amp * (2.0f * (float)r / 16777216.0f - 1.0f);
    }
}

static inline float *ref_new(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    CHECK(p);
    return p;
}

static inline float *ref_new_random(int64_t n, float amp) {
    float *p = ref_new(n);
    ref_fill(p, n, amp);
    return p;
}

/* ref_error: normalized error ||got - want|| / max(||want||, 1e-30); +inf
 * when got holds a NaN or Inf (checked first, as a NaN would compare
 * false against any bound). */
static inline double ref_error(const float *got, const float *want, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

/* ref_to_dev: backend memory holding a copy of n host floats (aborts when
 * the device is out of memory: test sizes are small). */
static inline float *ref_to_dev(backend_t *be, const float *h, int64_t n) {
    float *d = be->alloc(be, (size_t)n * sizeof(float));
    CHECK(d);
    be->upload(be, d, h, (size_t)n * sizeof(float));
    return d;
}

/* ref_from_dev: a new host copy of n floats of backend memory. */
static inline float *ref_from_dev(backend_t *be, const float *d, int64_t n) {
    float *h = ref_new(n);
    be->sync(be);
    be->download(be, h, d, (size_t)n * sizeof(float));
    return h;
}

/* ---- op references (shapes as in include/backend.h) ---- */

// y (M,N) stride ldy = x (M,K) stride ldx . w (N,K)^T + b (N)
static inline void ref_linear(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w,
                       const float *b, int64_t M, int64_t K, int64_t N) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = b ? b[j] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)x[i * ldx + k] * w[j * K + k];
            y[i * ldy + j] = (float)s;
        }
}

// c (batch,M,N) = a (batch,M,K) . b (batch,K,N) or b (batch,N,K)^T
static inline void ref_bmm(float *c, const float *a, const float *b, int64_t batch, int64_t M,
                    int64_t K, int64_t N, int trans_b) {
    for (int64_t t = 0; t < batch; t++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < K; k++) {
                    float bv = trans_b ? b[t * N * K + j * K + k] : b[t * K * N + k * N + j];
                    s += (double)a[t * M * K + i * K + k] * bv;
                }
                c[t * M * N + i * N + j] = (float)s;
            }
}

// o (B,Lq,nh*dh); q (B,Lq,nh,dh) stride ldq; k,v (B,Lk,nh,dh) strides ldk, ldv
static inline void ref_attention(float *o, const float *q, int64_t ldq, const float *k, int64_t ldk,
                          const float *v, int64_t ldv, int64_t B, int64_t Lq, int64_t Lk,
                          int64_t nh, int64_t dh, float scale) {
    double *p = malloc((size_t)Lk * sizeof(double));
    CHECK(p);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < Lq; i++) {
                const float *qi = q + (b * Lq + i) * ldq + h * dh;
                double m = -INFINITY, sum = 0.0;
                for (int64_t j = 0; j < Lk; j++) {
                    const float *kj = k + (b * Lk + j) * ldk + h * dh;
                    double s = 0.0;
                    for (int64_t d = 0; d < dh; d++) s += (double)qi[d] * kj[d];
                    p[j] = s * scale;
                    if (p[j] > m) m = p[j];
                }
                for (int64_t j = 0; j < Lk; j++) sum += (p[j] = exp(p[j] - m));
                for (int64_t d = 0; d < dh; d++) {
                    double s = 0.0;
                    for (int64_t j = 0; j < Lk; j++) s += p[j] * v[(b * Lk + j) * ldv + h * dh + d];
                    o[((b * Lq + i) * nh + h) * dh + d] = (float)(s / sum);
                }
            }
    free(p);
}

// x,y (M,C); w,b (C); y may alias x
static inline void ref_layer_norm(float *y, const float *x, const float *w, const float *b,
                           int64_t M, int64_t C, float eps) {
    for (int64_t i = 0; i < M; i++) {
        double mean = 0.0, var = 0.0;
        for (int64_t c = 0; c < C; c++) mean += x[i * C + c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++) var += (x[i * C + c] - mean) * (x[i * C + c] - mean);
        double rstd = 1.0 / sqrt(var / (double)C + eps);
        for (int64_t c = 0; c < C; c++)
            y[i * C + c] = (float)((x[i * C + c] - mean) * rstd * w[c] + b[c]);
    }
}

static inline void ref_gelu(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))));
}

static inline void ref_relu(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static inline void ref_add(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static inline void ref_add_row(float *y, const float *x, const float *row, int64_t M, int64_t C) {
    for (int64_t i = 0; i < M * C; i++) y[i] = x[i] + row[i % C];
}

// y = alpha*x + beta*y; beta == 0 does not read y
static inline void ref_scale_add(float *y, const float *x, float alpha, float beta, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i];
}

// x (B,H,W,Cin) -> y (B,Ho,Wo,Cout); w (Cout,Cin,kh,kw); b (Cout) or NULL
static inline void ref_conv2d(float *y, const float *x, const float *w, const float *b, int64_t B,
                       int64_t H, int64_t W, int64_t Cin, int64_t Cout, int kh, int kw,
                       int stride, int pad) {
    const int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    for (int64_t n = 0; n < B; n++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++)
                for (int64_t co = 0; co < Cout; co++) {
                    double s = b ? b[co] : 0.0;
                    for (int64_t ci = 0; ci < Cin; ci++)
                        for (int ky = 0; ky < kh; ky++)
                            for (int kx = 0; kx < kw; kx++) {
                                int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                s += (double)x[((n * H + iy) * W + ix) * Cin + ci] *
                                     w[((co * Cin + ci) * kh + ky) * kw + kx];
                            }
                    y[((n * Ho + oy) * Wo + ox) * Cout + co] = (float)s;
                }
}

// x (B,H,W,Cin) -> y (B,2H,2W,Cout); w (Cin,Cout,2,2); b (Cout) or NULL
static inline void ref_conv_transpose2x2(float *y, const float *x, const float *w, const float *b,
                                  int64_t B, int64_t H, int64_t W, int64_t Cin, int64_t Cout) {
    for (int64_t n = 0; n < B; n++)
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < W; j++)
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++)
                        for (int64_t co = 0; co < Cout; co++) {
                            double s = b ? b[co] : 0.0;
                            for (int64_t ci = 0; ci < Cin; ci++)
                                s += (double)x[((n * H + i) * W + j) * Cin + ci] *
                                     w[((ci * Cout + co) * 2 + dy) * 2 + dx];
                            y[((n * 2 * H + 2 * i + dy) * 2 * W + 2 * j + dx) * Cout + co] = (float)s;
                        }
}

static inline void ref_maxpool2x2(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                           int64_t C) {
    const int64_t Ho = H / 2, Wo = W / 2;
    for (int64_t n = 0; n < B; n++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++)
                for (int64_t c = 0; c < C; c++) {
                    float m = -INFINITY;
                    for (int d = 0; d < 4; d++) {
                        float v = x[((n * H + 2 * oy + d / 2) * W + 2 * ox + d % 2) * C + c];
                        if (v > m) m = v;
                    }
                    y[((n * Ho + oy) * Wo + ox) * C + c] = m;
                }
}

static inline void ref_upsample_nearest2x(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                                   int64_t C) {
    for (int64_t n = 0; n < B; n++)
        for (int64_t oy = 0; oy < 2 * H; oy++)
            for (int64_t ox = 0; ox < 2 * W; ox++)
                for (int64_t c = 0; c < C; c++)
                    y[((n * 2 * H + oy) * 2 * W + ox) * C + c] =
                        x[((n * H + oy / 2) * W + ox / 2) * C + c];
}

// x (B,H,W,C) -> y (B*nwh*nww, ws, ws, C), zero padding
static inline void ref_window_partition(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                                 int64_t C, int64_t ws) {
    const int64_t nwh = (H + ws - 1) / ws, nww = (W + ws - 1) / ws;
    for (int64_t n = 0; n < B; n++)
        for (int64_t gh = 0; gh < nwh; gh++)
            for (int64_t gw = 0; gw < nww; gw++)
                for (int64_t wy = 0; wy < ws; wy++)
                    for (int64_t wx = 0; wx < ws; wx++)
                        for (int64_t c = 0; c < C; c++) {
                            int64_t yy = gh * ws + wy, xx = gw * ws + wx;
                            int64_t win = (n * nwh + gh) * nww + gw;
                            y[((win * ws + wy) * ws + wx) * C + c] =
                                (yy < H && xx < W) ? x[((n * H + yy) * W + xx) * C + c] : 0.0f;
                        }
}

// x (B*nwh*nww, ws, ws, C) -> y (B,H,W,C), padding cropped
static inline void ref_window_unpartition(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                                   int64_t C, int64_t ws) {
    const int64_t nwh = (H + ws - 1) / ws, nww = (W + ws - 1) / ws;
    for (int64_t n = 0; n < B; n++)
        for (int64_t yy = 0; yy < H; yy++)
            for (int64_t xx = 0; xx < W; xx++)
                for (int64_t c = 0; c < C; c++) {
                    int64_t win = (n * nwh + yy / ws) * nww + xx / ws;
                    y[((n * H + yy) * W + xx) * C + c] =
                        x[((win * ws + yy % ws) * ws + xx % ws) * C + c];
                }
}

static inline void ref_nhwc_to_nchw(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                             int64_t C) {
    for (int64_t n = 0; n < B; n++)
        for (int64_t p = 0; p < H * W; p++)
            for (int64_t c = 0; c < C; c++) y[(n * C + c) * H * W + p] = x[(n * H * W + p) * C + c];
}

static inline void ref_nchw_to_nhwc(float *y, const float *x, int64_t B, int64_t C, int64_t H,
                             int64_t W) {
    for (int64_t n = 0; n < B; n++)
        for (int64_t p = 0; p < H * W; p++)
            for (int64_t c = 0; c < C; c++) y[(n * H * W + p) * C + c] = x[(n * C + c) * H * W + p];
}

/* ref_resize_src: PyTorch's source index and weights, float arithmetic. */
static inline void ref_resize_src(int64_t dst, int64_t in_size, float scale, int64_t *i0, int64_t *i1,
                           float *l0, float *l1) {
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    int64_t a = (int64_t)src;
    if (a > in_size - 1) a = in_size - 1;
    *i0 = a;
    *i1 = a + (a < in_size - 1 ? 1 : 0);
    *l1 = src - (float)a;
    *l0 = 1.0f - *l1;
}

// x (N,Hi,Wi) -> y (N,Ho,Wo), align_corners=False
static inline void ref_resize_bilinear(float *y, const float *x, int64_t N, int64_t Hi, int64_t Wi,
                                int64_t Ho, int64_t Wo) {
    const float sh = (float)Hi / (float)Ho, sw = (float)Wi / (float)Wo;
    for (int64_t n = 0; n < N; n++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                int64_t y0, y1, x0, x1;
                float h0, h1, w0, w1;
                ref_resize_src(oy, Hi, sh, &y0, &y1, &h0, &h1);
                ref_resize_src(ox, Wi, sw, &x0, &x1, &w0, &w1);
                const float *p = x + n * Hi * Wi;
                float top = p[y0 * Wi + x0] * w0 + p[y0 * Wi + x1] * w1;
                float bot = p[y1 * Wi + x0] * w0 + p[y1 * Wi + x1] * w1;
                y[(n * Ho + oy) * Wo + ox] = top * h0 + bot * h1;
            }
}

#endif
