/* ops_ref.c: the naive reference of every backend op (see include/ops_ref.h).
 *
 * Plain loops straight from each op's definition in include/backend.h, one
 * thread, double accumulators, no BLAS: slow and obviously right, so that
 * the tuned CPU backend and the CUDA backend can be compared against it.
 *
 * bf16 mode (ops_ref_set_bf16): every operand of a product in the matrix
 * ops (linear, bmm, attention's q.k and p.v, attention_probs, conv2d,
 * conv_transpose2x2) is first rounded to bfloat16 (round to nearest even),
 * as bf16 tensor cores see their inputs; biases, softmax and accumulation
 * stay as they are. Accumulating in double rather than float32 keeps the
 * loops shared; float32 accumulation would add ~1e-6 relative, far under
 * bf16's 2^-9 rounding, so the difference between the two modes measures
 * what bf16 inputs cost (tests/test_ops.c prints it per op).
 */
#include "ops_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static int ref_bf16;   /* ops_ref_set_bf16 */

void ops_ref_set_bf16(int on) {
    ref_bf16 = on != 0;
}

float ops_ref_bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u) return f;   // Inf and NaN unchanged
    u += 0x7fffu + ((u >> 16) & 1u);                   // round to nearest, ties to even
    u &= 0xffff0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* op: a product operand, bf16-rounded in bf16 mode */
static inline double op(float v) {
    return ref_bf16 ? (double)ops_ref_bf16_round(v) : (double)v;
}

void ops_ref_linear(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w,
                    const float *b, int64_t M, int64_t K, int64_t N) {
    // y is (M,N) stride ldy; x is (M,K) stride ldx; w is (N,K); b is (N) or NULL
    CHECK(ldx >= K && ldy >= N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t n = 0; n < N; n++) {
            double acc = b ? b[n] : 0.0;
            for (int64_t kk = 0; kk < K; kk++) acc += op(x[i * ldx + kk]) * op(w[n * K + kk]);
            y[i * ldy + n] = (float)acc;
        }
}

void ops_ref_bmm(float *c, const float *a, const float *b, int64_t batch, int64_t M,
                 int64_t K, int64_t N, int trans_b) {
    // c is (batch,M,N); a is (batch,M,K); b is (batch,K,N) or (batch,N,K) if trans_b
    for (int64_t t = 0; t < batch; t++) {
        const float *at = a + t * M * K, *bt = b + t * K * N;
        float *ct = c + t * M * N;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double acc = 0.0;
                for (int64_t kk = 0; kk < K; kk++)
                    acc += op(at[i * K + kk]) * op(trans_b ? bt[j * K + kk] : bt[kk * N + j]);
                ct[i * N + j] = (float)acc;
            }
    }
}

void ops_ref_attention(float *o, const float *q, int64_t ldq, const float *k, int64_t ldk,
                       const float *v, int64_t ldv, int64_t B, int64_t Lq, int64_t Lk,
                       int64_t nh, int64_t dh, float scale) {
    // o is (B,Lq,nh*dh); q is (B,Lq,nh,dh) with token stride ldq; k,v (B,Lk,nh,dh)
    CHECK(ldq >= nh * dh && ldk >= nh * dh && ldv >= nh * dh);
    double *p = malloc((size_t)Lk * sizeof *p);   // one row of probabilities
    CHECK(p);
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < Lq; i++) {
                const float *qi = q + (bb * Lq + i) * ldq + h * dh;
                double mx = -INFINITY;
                for (int64_t j = 0; j < Lk; j++) {
                    const float *kj = k + (bb * Lk + j) * ldk + h * dh;
                    double s = 0.0;
                    for (int64_t d = 0; d < dh; d++) s += op(qi[d]) * op(kj[d]);
                    p[j] = s * scale;
                    if (p[j] > mx) mx = p[j];
                }
                double sum = 0.0;
                for (int64_t j = 0; j < Lk; j++) {
                    p[j] = exp(p[j] - mx);
                    sum += p[j];
                }
                float *oi = o + (bb * Lq + i) * nh * dh + h * dh;
                for (int64_t d = 0; d < dh; d++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < Lk; j++)
                        acc += (ref_bf16 ? op((float)p[j]) : p[j]) * op(v[(bb * Lk + j) * ldv + h * dh + d]);
                    oi[d] = (float)(acc / sum);
                }
            }
    free(p);
}

void ops_ref_layer_norm(float *y, const float *x, const float *w, const float *b, int64_t M,
                        int64_t C, float eps) {
    // y, x are (M,C); w, b are (C)
    for (int64_t i = 0; i < M; i++) {
        const float *xi = x + i * C;
        double mean = 0.0, var = 0.0;
        for (int64_t c = 0; c < C; c++) mean += xi[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++) var += ((double)xi[c] - mean) * ((double)xi[c] - mean);
        var /= (double)C;
        double rstd = 1.0 / sqrt(var + eps);
        for (int64_t c = 0; c < C; c++)
            y[i * C + c] = (float)(((double)xi[c] - mean) * rstd * w[c] + b[c]);
    }
}

void ops_ref_gelu(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double t = x[i];
        y[i] = (float)(0.5 * t * (1.0 + erf(t / sqrt(2.0))));
    }
}

void ops_ref_relu(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void ops_ref_add(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void ops_ref_add_row(float *y, const float *x, const float *row, int64_t M, int64_t C) {
    // y, x are (M,C); row is (C)
    for (int64_t i = 0; i < M; i++)
        for (int64_t c = 0; c < C; c++) y[i * C + c] = x[i * C + c] + row[c];
}

void ops_ref_scale_add(float *y, const float *x, float alpha, float beta, int64_t n) {
    // as in BLAS, beta == 0 means y is not read (it may hold garbage)
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)((double)alpha * x[i] + (beta == 0.0f ? 0.0 : (double)beta * y[i]));
}

void ops_ref_conv2d(float *y, const float *x, const float *w, const float *b, int64_t B,
                    int64_t H, int64_t W, int64_t Cin, int64_t Cout, int kh, int kw,
                    int stride, int pad) {
    // y is (B,Ho,Wo,Cout); x is (B,H,W,Cin); w is (Cout,Cin,kh,kw); b is (Cout) or NULL
    CHECK(stride > 0 && pad >= 0 && H + 2 * pad >= kh && W + 2 * pad >= kw);
    int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++)
                for (int64_t co = 0; co < Cout; co++) {
                    double acc = b ? b[co] : 0.0;
                    for (int64_t ci = 0; ci < Cin; ci++)
                        for (int ky = 0; ky < kh; ky++)
                            for (int kx = 0; kx < kw; kx++) {
                                int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += op(x[((bb * H + iy) * W + ix) * Cin + ci]) *
                                       op(w[((co * Cin + ci) * kh + ky) * kw + kx]);
                            }
                    y[((bb * Ho + oy) * Wo + ox) * Cout + co] = (float)acc;
                }
}

void ops_ref_conv_transpose2x2(float *y, const float *x, const float *w, const float *b,
                               int64_t B, int64_t H, int64_t W, int64_t Cin, int64_t Cout) {
    // y is (B,2H,2W,Cout); x is (B,H,W,Cin); w is (Cin,Cout,2,2); b is (Cout) or NULL
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t oy = 0; oy < 2 * H; oy++)
            for (int64_t ox = 0; ox < 2 * W; ox++)
                for (int64_t co = 0; co < Cout; co++) {
                    int64_t iy = oy / 2, ix = ox / 2, dy = oy % 2, dx = ox % 2;
                    double acc = b ? b[co] : 0.0;
                    for (int64_t ci = 0; ci < Cin; ci++)
                        acc += op(x[((bb * H + iy) * W + ix) * Cin + ci]) *
                               op(w[((ci * Cout + co) * 2 + dy) * 2 + dx]);
                    y[((bb * 2 * H + oy) * 2 * W + ox) * Cout + co] = (float)acc;
                }
}

void ops_ref_maxpool2x2(float *y, const float *x, int64_t B, int64_t H, int64_t W, int64_t C) {
    // y is (B,H/2,W/2,C); x is (B,H,W,C)
    int64_t Ho = H / 2, Wo = W / 2;
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++)
                for (int64_t c = 0; c < C; c++) {
                    float m = -INFINITY;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            float t = x[((bb * H + 2 * oy + dy) * W + 2 * ox + dx) * C + c];
                            if (t > m) m = t;
                        }
                    y[((bb * Ho + oy) * Wo + ox) * C + c] = m;
                }
}

void ops_ref_upsample_nearest2x(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                                int64_t C) {
    // y is (B,2H,2W,C); x is (B,H,W,C)
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t oy = 0; oy < 2 * H; oy++)
            for (int64_t ox = 0; ox < 2 * W; ox++)
                for (int64_t c = 0; c < C; c++)
                    y[((bb * 2 * H + oy) * 2 * W + ox) * C + c] =
                        x[((bb * H + oy / 2) * W + ox / 2) * C + c];
}

void ops_ref_window_partition(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                              int64_t C, int64_t ws) {
    // y is (B*nwh*nww,ws,ws,C); x is (B,H,W,C)
    int64_t nwh = (H + ws - 1) / ws, nww = (W + ws - 1) / ws;
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t wy = 0; wy < nwh; wy++)
            for (int64_t wx = 0; wx < nww; wx++)
                for (int64_t r = 0; r < ws; r++)
                    for (int64_t s = 0; s < ws; s++)
                        for (int64_t c = 0; c < C; c++) {
                            int64_t iy = wy * ws + r, ix = wx * ws + s;
                            int64_t win = (bb * nwh + wy) * nww + wx;
                            y[((win * ws + r) * ws + s) * C + c] =
                                (iy < H && ix < W) ? x[((bb * H + iy) * W + ix) * C + c] : 0.0f;
                        }
}

void ops_ref_window_unpartition(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                                int64_t C, int64_t ws) {
    // y is (B,H,W,C); x is (B*nwh*nww,ws,ws,C)
    int64_t nwh = (H + ws - 1) / ws, nww = (W + ws - 1) / ws;
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t iy = 0; iy < H; iy++)
            for (int64_t ix = 0; ix < W; ix++)
                for (int64_t c = 0; c < C; c++) {
                    int64_t win = (bb * nwh + iy / ws) * nww + ix / ws;
                    y[((bb * H + iy) * W + ix) * C + c] =
                        x[((win * ws + iy % ws) * ws + ix % ws) * C + c];
                }
}

void ops_ref_nhwc_to_nchw(float *y, const float *x, int64_t B, int64_t H, int64_t W,
                          int64_t C) {
    // y is (B,C,H,W); x is (B,H,W,C)
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < H * W; i++) y[(bb * C + c) * H * W + i] = x[(bb * H * W + i) * C + c];
}

void ops_ref_nchw_to_nhwc(float *y, const float *x, int64_t B, int64_t C, int64_t H,
                          int64_t W) {
    // y is (B,H,W,C); x is (B,C,H,W)
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < H * W; i++) y[(bb * H * W + i) * C + c] = x[(bb * C + c) * H * W + i];
}

/* source coordinate of output index d, PyTorch's align_corners=False rule
 * computed in float as PyTorch does for float tensors: negative -> 0; then
 * the lower neighbour (clamped to n-1), the upper one, and the weight. */
static void ref_source_index(int64_t d, int64_t n_in, int64_t n_out, int64_t *i0, int64_t *i1,
                             float *l1) {
    float scale = (float)n_in / (float)n_out;
    float src = scale * ((float)d + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    int64_t lo = (int64_t)floorf(src);
    if (lo > n_in - 1) lo = n_in - 1;
    *i0 = lo;
    *i1 = lo < n_in - 1 ? lo + 1 : lo;
    float lam = src - (float)lo;
    *l1 = lam < 0.0f ? 0.0f : lam > 1.0f ? 1.0f : lam;
}

void ops_ref_resize_bilinear(float *y, const float *x, int64_t N, int64_t Hi, int64_t Wi,
                             int64_t Ho, int64_t Wo) {
    // y is (N,Ho,Wo); x is (N,Hi,Wi)
    for (int64_t n = 0; n < N; n++)
        for (int64_t oy = 0; oy < Ho; oy++) {
            int64_t y0, y1;
            float ly;
            ref_source_index(oy, Hi, Ho, &y0, &y1, &ly);
            for (int64_t ox = 0; ox < Wo; ox++) {
                int64_t x0, x1;
                float lx;
                ref_source_index(ox, Wi, Wo, &x0, &x1, &lx);
                const float *p = x + n * Hi * Wi;
                double top = (1.0 - lx) * p[y0 * Wi + x0] + (double)lx * p[y0 * Wi + x1];
                double bot = (1.0 - lx) * p[y1 * Wi + x0] + (double)lx * p[y1 * Wi + x1];
                y[(n * Ho + oy) * Wo + ox] = (float)((1.0 - ly) * top + (double)ly * bot);
            }
        }
}

void ops_ref_attention_scores(float *p, int64_t ldp, const float *q, int64_t ldq, int64_t sq,
                              const float *k, int64_t ldk, int64_t B, int64_t Lq, int64_t Lk, int64_t nh,
                              int64_t dh, float scale) {
    // p is (B,Lq) rows of (nh,Lk) stride ldp; q is (B,Lq,nh,dh) stride ldq, item stride sq
    // (0: shared); k (B,Lk,nh,dh)
    CHECK(ldp >= nh * Lk && ldq >= nh * dh && ldk >= nh * dh && Lk > 0 && sq >= 0);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Lq; i++)
            for (int64_t h = 0; h < nh; h++) {
                const float *qi = q + b * sq + i * ldq + h * dh;
                for (int64_t j = 0; j < Lk; j++) {
                    const float *kj = k + (b * Lk + j) * ldk + h * dh;
                    double acc = 0.0;
                    for (int64_t d = 0; d < dh; d++) acc += op(qi[d]) * op(kj[d]);
                    p[(b * Lq + i) * ldp + h * Lk + j] = (float)(acc * scale);
                }
            }
}

void ops_ref_attention_probs(float *p, int64_t ldp, const float *q, int64_t ldq, int64_t sq,
                             const float *k, int64_t ldk, int64_t B, int64_t Lq, int64_t Lk, int64_t nh,
                             int64_t dh, float scale) {
    // p is (B,Lq) rows of (nh,Lk) stride ldp; q is (B,Lq,nh,dh) stride ldq, item stride sq
    // (0: shared); k (B,Lk,nh,dh)
    CHECK(ldp >= nh * Lk && ldq >= nh * dh && ldk >= nh * dh && Lk > 0 && sq >= 0);
    double *s = malloc((size_t)Lk * sizeof(double));
    CHECK(s);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Lq; i++)
            for (int64_t h = 0; h < nh; h++) {
                const float *qi = q + b * sq + i * ldq + h * dh;
                double mx = -INFINITY, sum = 0.0;
                for (int64_t j = 0; j < Lk; j++) {
                    const float *kj = k + (b * Lk + j) * ldk + h * dh;
                    double acc = 0.0;
                    for (int64_t d = 0; d < dh; d++) acc += op(qi[d]) * op(kj[d]);
                    s[j] = acc * scale;
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t j = 0; j < Lk; j++) sum += s[j] = exp(s[j] - mx);
                for (int64_t j = 0; j < Lk; j++)
                    p[(b * Lq + i) * ldp + h * Lk + j] = (float)(s[j] / sum);
            }
    free(s);
}

void ops_ref_lowrank_rstd(float *rstd, const float *xx, const float *s, const float *p,
                          int64_t ldp, const float *e, const float *pg, int64_t B, int64_t Mx,
                          int64_t r, int64_t C, float eps) {
    // rstd is (B*Mx); xx (Mx); s (B*Mx) or NULL; p (B*Mx,r) stride ldp; e, pg (B*Mx,r)
    CHECK(ldp >= r && C > 0);
    for (int64_t i = 0; i < B * Mx; i++) {
        double si = s ? s[i] : 1.0, acc = si * si * xx[i % Mx];
        for (int64_t kk = 0; kk < r; kk++)
            acc += (double)p[i * ldp + kk] * (2.0 * si * e[i * r + kk] + pg[i * r + kk]);
        double var = acc / (double)C;
        rstd[i] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps));
    }
}

void ops_ref_row_affine(float *y, int64_t ldy, const float *x, int64_t ldx, const float *a,
                        const float *s, int64_t lds, const float *sa, const float *u,
                        int64_t ldu, int64_t B, int64_t M, int64_t N) {
    // y, x are (B*M,N) strides ldy, ldx; a, sa (B*M); s, u (M,N) strides lds, ldu or NULL
    CHECK(ldx >= N && ldy >= N);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t c = 0; c < N; c++) {
                double v = (double)x[(b * M + i) * ldx + c] +
                           (s ? (sa ? (double)sa[b * M + i] : 1.0) * s[i * lds + c] : 0.0);
                v = a[b * M + i] * v + (u ? u[i * ldu + c] : 0.0f);
                y[(b * M + i) * ldy + c] = (float)v;
            }
}

/* ref_row_product: out[c] = row . m[:, c] (K terms, m rows ldm apart) for c
 * < N, each rounded to float as a bmm's output */
static void ref_row_product(float *out, const float *row, const float *m, int64_t ldm, int64_t K,
                            int64_t N) {
    for (int64_t c = 0; c < N; c++) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; k++) acc += op(row[k]) * op(m[k * ldm + c]);
        out[c] = (float)acc;
    }
}

void ops_ref_lowrank_rstd_gram(float *rstd, const float *xx, const float *s, const float *p,
                               int64_t ldp, const float *e, const float *bb, int64_t B,
                               int64_t Mx, int64_t r, int64_t C, float eps) {
    // pg = p . bb_b per row, then lowrank_rstd's sums
    CHECK(ldp >= r && C > 0);
    float *pg = malloc((size_t)(B * Mx * r > 0 ? B * Mx * r : 1) * sizeof *pg);
    CHECK(pg);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Mx; i++)
            ref_row_product(pg + (b * Mx + i) * r, p + (b * Mx + i) * ldp, bb + b * r * r, r, r,
                            r);
    ops_ref_lowrank_rstd(rstd, xx, s, p, ldp, e, pg, B, Mx, r, C, eps);
    free(pg);
}

void ops_ref_lowrank_expand(float *y, int64_t ldy, const float *p, int64_t ldp, const float *m,
                            int64_t ldm, const float *a, const float *s, int64_t lds,
                            const float *sa, const float *u, int64_t ldu, const float *ln_w,
                            const float *ln_b, float eps, int64_t Wg, int64_t B, int64_t M,
                            int64_t K, int64_t N) {
    // the composition: z = a (p . m_b + sa s) + u as row_affine rounds it, then
    // (ln_w) per group of G = N/4: layer_norm, gelu, window_unpartition
    CHECK(ldp >= K && (ln_w ? N % 4 == 0 && Wg > 0 && M % Wg == 0 : ldy >= N));
    float *z = malloc((size_t)(N > 0 ? N : 1) * sizeof *z);
    CHECK(z);
    const int64_t G = N / 4, Hg = ln_w ? M / Wg : 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < M; i++) {
            const int64_t j = b * M + i;
            ref_row_product(z, p + j * ldp, m + b * K * ldm, ldm, K, N);
            for (int64_t c = 0; c < N; c++) {
                double v = (double)z[c] + (s ? (sa ? (double)sa[j] : 1.0) * s[i * lds + c] : 0.0);
                v = a[j] * v + (u ? u[i * ldu + c] : 0.0f);
                z[c] = (float)v;
            }
            if (!ln_w) {
                memcpy(y + j * ldy, z, (size_t)N * sizeof *z);
                continue;
            }
            for (int64_t q = 0; q < 4; q++) {
                const int64_t Y = 2 * (i / Wg) + q / 2, X = 2 * (i % Wg) + q % 2;
                float *o = y + ((b * 2 * Hg + Y) * 2 * Wg + X) * G;
                ops_ref_layer_norm(o, z + q * G, ln_w, ln_b, 1, G, eps);
                ops_ref_gelu(o, o, G);
            }
        }
    free(z);
}

void ops_ref_upscale2_masks(float *masks, const float *x, const float *w, const float *b,
                            const float *skip, const float *hyper, int64_t n, int64_t H,
                            int64_t W, int64_t Cin, int64_t Cout, int64_t nm) {
    // masks is (n,nm,2H,2W); x is (n,H,W,Cin); w is (Cin,Cout,2,2); b is (Cout);
    // skip is (2H,2W,Cout) or NULL; hyper is (n,nm,Cout)
    double *g = malloc((size_t)(Cout > 0 ? Cout : 1) * sizeof *g);   // one pixel's channels
    CHECK(g);
    for (int64_t p = 0; p < n; p++)
        for (int64_t Y = 0; Y < 2 * H; Y++)
            for (int64_t X = 0; X < 2 * W; X++) {
                const float *xp = x + ((p * H + Y / 2) * W + X / 2) * Cin;
                for (int64_t c = 0; c < Cout; c++) {
                    double t = (double)b[c] + (skip ? skip[(Y * 2 * W + X) * Cout + c] : 0.0);
                    for (int64_t ci = 0; ci < Cin; ci++)
                        t += op(xp[ci]) * op(w[((ci * Cout + c) * 2 + Y % 2) * 2 + X % 2]);
                    g[c] = 0.5 * t * (1.0 + erf(t / sqrt(2.0)));
                }
                // the mask product stays float32 in bf16 mode too: the fused
                // kernels round only the transposed conv's operands
                for (int64_t m = 0; m < nm; m++) {
                    double acc = 0.0;
                    for (int64_t c = 0; c < Cout; c++)
                        acc += (double)hyper[(p * nm + m) * Cout + c] * (double)(float)g[c];
                    masks[((p * nm + m) * 2 * H + Y) * 2 * W + X] = (float)acc;
                }
            }
    free(g);
}
