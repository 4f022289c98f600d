/* lowrank.cu: the low-rank LayerNorm helpers of the op table
 * (attention_probs, attention_scores, lowrank_rstd, row_affine; see
 * include/backend.h).
 *
 * Simple grid-stride kernels: one thread per (row, head) for the
 * probabilities (the decoder's key counts are a handful of tokens), one
 * thread per row for the Gram-term variance (double accumulator), one
 * thread per element for the row affine map. Correct first; the decoder
 * spends its time in the GEMMs around them.
 */
#include "common.cuh"

// p is (B,Lq) rows of (nh,Lk) stride ldp; q (B,Lq,nh,dh) stride ldq, item b at q + b*sq
// (0: shared); k (B,Lk,nh,dh) stride ldk
static __global__ void probs_kernel(float *p, int64_t ldp, const float *q, int64_t ldq,
                                    int64_t sq, const float *k, int64_t ldk, int64_t B,
                                    int64_t Lq, int64_t Lk, int64_t nh, int64_t dh, float scale,
                                    int raw) {
    KERN_FOR(t, B * Lq * nh) {
        int64_t row = t / nh, h = t % nh, b = row / Lq;
        const float *qi = q + b * sq + (row - b * Lq) * ldq + h * dh;
        float *ph = p + row * ldp + h * Lk, mx = -INFINITY, sum = 0.0f;
        for (int64_t j = 0; j < Lk; j++) {
            const float *kj = k + (b * Lk + j) * ldk + h * dh;
            float acc = 0.0f;
            for (int64_t d = 0; d < dh; d++) acc += qi[d] * kj[d];
            ph[j] = acc * scale;
            mx = fmaxf(mx, ph[j]);
        }
        if (raw) continue;
        for (int64_t j = 0; j < Lk; j++) {
            ph[j] = expf(ph[j] - mx);
            sum += ph[j];
        }
        for (int64_t j = 0; j < Lk; j++) ph[j] /= sum;
    }
}

// rstd is (B*Mx); xx (Mx); s (B*Mx) or NULL; p (B*Mx,r) stride ldp; e, pg (B*Mx,r)
static __global__ void rstd_kernel(float *rstd, const float *xx, const float *s, const float *p,
                                   int64_t ldp, const float *e, const float *pg, int64_t M,
                                   int64_t Mx, int64_t r, int64_t C, float eps) {
    KERN_FOR(i, M) {
        double si = s ? s[i] : 1.0, acc = si * si * xx[i % Mx];
        for (int64_t kk = 0; kk < r; kk++)
            acc += (double)p[i * ldp + kk] * (2.0 * si * e[i * r + kk] + pg[i * r + kk]);
        double var = acc / (double)C;
        rstd[i] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps));
    }
}

// y, x are (B*M,N) strides ldy, ldx; a, sa (B*M); s, u (M,N) strides lds, ldu or NULL
static __global__ void row_affine_kernel(float *y, int64_t ldy, const float *x, int64_t ldx,
                                         const float *a, const float *s, int64_t lds,
                                         const float *sa, const float *u, int64_t ldu,
                                         int64_t BM, int64_t M, int64_t N) {
    KERN_FOR(t, BM * N) {
        int64_t row = t / N, c = t % N, i = row % M;
        float v = x[row * ldx + c] + (s ? (sa ? sa[row] : 1.0f) * s[i * lds + c] : 0.0f);
        y[row * ldy + c] = a[row] * v + (u ? u[i * ldu + c] : 0.0f);
    }
}

extern "C" void cuda_attention_probs(cudaStream_t s, float *p, int64_t ldp, const float *q,
                                     int64_t ldq, int64_t sq, const float *k, int64_t ldk,
                                     int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                                     float scale, int raw) {
    CHECK(B >= 0 && Lq >= 0 && Lk > 0 && nh > 0 && dh > 0 && sq >= 0);
    CHECK(ldp >= nh * Lk && ldq >= nh * dh && ldk >= nh * dh);
    int64_t n = B * Lq * nh;
    if (n == 0) return;
    probs_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(p, ldp, q, ldq, sq, k, ldk,
                                                                    B, Lq, Lk, nh, dh, scale,
                                                                    raw);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_lowrank_rstd(cudaStream_t s, float *rstd, const float *xx, const float *sc,
                                  const float *p, int64_t ldp, const float *e, const float *pg,
                                  int64_t B, int64_t Mx, int64_t r, int64_t C, float eps) {
    CHECK(B >= 0 && Mx > 0 && r >= 0 && ldp >= r && C > 0);
    int64_t M = B * Mx;
    if (M == 0) return;
    rstd_kernel<<<kern_grid(M, KERN_THREADS), KERN_THREADS, 0, s>>>(rstd, xx, sc, p, ldp, e, pg,
                                                                   M, Mx, r, C, eps);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_row_affine(cudaStream_t s, float *y, int64_t ldy, const float *x,
                                int64_t ldx, const float *a, const float *sv, int64_t lds,
                                const float *sa, const float *u, int64_t ldu, int64_t B, int64_t M,
                                int64_t N) {
    CHECK(B >= 0 && M > 0 && N >= 0 && ldx >= N && ldy >= N && lds >= 0 && ldu >= 0);
    CHECK(y != x || ldy == ldx);
    int64_t n = B * M * N;
    if (n == 0) return;
    row_affine_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
        y, ldy, x, ldx, a, sv, lds, sa, u, ldu, B * M, M, N);
    CUDA_LAUNCH_CHECK();
}
