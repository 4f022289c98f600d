/* lowrank.cu: the low-rank LayerNorm helpers of the op table
 * (attention_probs, attention_scores, lowrank_rstd, row_affine; see
 * include/backend.h).
 *
 * The decoder calls these on (prompts x 4096 image tokens) rows, so they
 * should be memory-bound: written for coalesced access and few dependent
 * loads (the first versions, one thread per row looping over strided
 * memory, took 53% of the decoder's device time on an H100, Nsight Compute,
 * 2026-11-27; the variance and the affine map then reached ~3 and ~2.2
 * TB/s, but the probabilities did not move: 1.88 ms a call, likely each
 * key's load waiting in its own branch):
 * - probabilities: one thread per (row, head) keeps its handful of scores
 *   in registers (key counts up to PROBS_LK_MAX; a generic kernel past
 *   that), the keys of the block's items staged in shared memory, every
 *   key's value loaded before any is used, and the block writes its output
 *   through shared memory, once and contiguously;
 * - Gram-term variance: one warp per row, lanes across the rank, double
 *   partial sums reduced by shuffles;
 * - row affine map: one block per row, threads across the columns (wide
 *   rows), or one thread per element with 32-bit index arithmetic where it
 *   fits (narrow rows).
 * Each output element is computed with the same float operations in the
 * same order as before (the variance's double sum excepted: its order
 * changes, far below float rounding).
 */
#include "common.cuh"

#define PROBS_LK_MAX 32

// Lk <= PROBS_LK_MAX: one thread per (row, head) pair, blockDim.x pairs per
// pass. Each pass stages the keys of the (at most two) items its rows
// belong to in shared memory when they fit (kcap floats; else the keys are
// read from global memory), reads q with float4 loads where aligned (vec),
// keeps the Lk scores in registers and writes them through shared memory,
// once and row span by row span. Per (row, head, key) the float operations
// and their order are those of probs_kernel below.
// p is (B,Lq) rows of (nh,Lk) stride ldp; q (B,Lq,nh,dh) stride ldq, item b at q + b*sq
// (0: shared); k (B,Lk,nh,dh) stride ldk
template <int LKMAX, bool CACHED>
static __global__ void __launch_bounds__(KERN_THREADS)
    probs_small_kernel(float *p, int64_t ldp, const float *q, int64_t ldq, int64_t sq,
                       const float *k, int64_t ldk, int64_t B, int64_t Lq, int Lk, int nh,
                       int dh, float scale, int raw, int vec) {
    extern __shared__ float sm[];
    float *out = sm, *ks = sm + blockDim.x * Lk;   // staging (blockDim.x * Lk), keys
    const int64_t n = B * Lq * nh;
    const int span = nh * Lk, kstride = dh + 1;    // a padded row per (key, head): no bank clash
    for (int64_t base = (int64_t)blockIdx.x * blockDim.x; base < n;
         base += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row0 = base / nh, last = (base + blockDim.x < n ? base + blockDim.x : n) - 1;
        const int h0 = (int)(base - row0 * nh);
        const int64_t b0 = row0 / Lq, nb = last / nh / Lq - b0 + 1;   // <= 2 when CACHED
        if (CACHED)
            for (int e = threadIdx.x; e < nb * Lk * nh * dh; e += blockDim.x) {
                const int d = e % dh, jh = e / dh;         // jh = (bi*Lk + j)*nh + h
                const int h = jh % nh, bj = jh / nh;       // bj = bi*Lk + j
                ks[jh * kstride + d] = k[(b0 * Lk + bj) * ldk + h * dh + d];
            }
        __syncthreads();
        const int64_t t = base + threadIdx.x;
        if (t < n) {
            const int rel = h0 + (int)threadIdx.x;
            const int64_t row = row0 + rel / nh;
            // its item: b0 or the next one when the keys are cached (two
            // items at most), else a division
            const int64_t b = CACHED ? b0 + (row - b0 * Lq >= Lq) : row / Lq;
            const int h = rel % nh;
            const float *qi = q + b * sq + (row - b * Lq) * ldq + h * dh;
            const float *kg = k + b * Lk * ldk + h * dh;
            const float *kc = ks + (CACHED ? ((b - b0) * Lk * nh + h) * kstride : 0);
            float s[LKMAX];
#pragma unroll
            for (int j = 0; j < LKMAX; j++) s[j] = 0.0f;
            for (int d = 0; d < dh; d += 4) {
                float qv[4];
                if (vec) {
                    const float4 v = __ldg(reinterpret_cast<const float4 *>(qi + d));
                    qv[0] = v.x, qv[1] = v.y, qv[2] = v.z, qv[3] = v.w;
                } else {
#pragma unroll
                    for (int u = 0; u < 4; u++) qv[u] = d + u < dh ? __ldg(qi + d + u) : 0.0f;
                }
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    if (d + u >= dh) break;
                    // every key's value first, with no branch between the
                    // loads (keys past Lk read key Lk-1 into scores that
                    // are never used), so they are in flight together
                    float kv[LKMAX];
#pragma unroll
                    for (int j = 0; j < LKMAX; j++) {
                        const int jj = j < Lk ? j : Lk - 1;
                        kv[j] = CACHED ? kc[jj * nh * kstride + d + u]
                                       : __ldg(kg + jj * ldk + d + u);
                    }
#pragma unroll
                    for (int j = 0; j < LKMAX; j++) s[j] += qv[u] * kv[j];
                }
            }
            float mx = -INFINITY, sum = 0.0f;
#pragma unroll
            for (int j = 0; j < LKMAX; j++)
                if (j < Lk) {
                    s[j] = s[j] * scale;
                    mx = fmaxf(mx, s[j]);
                }
            if (!raw) {
#pragma unroll
                for (int j = 0; j < LKMAX; j++)
                    if (j < Lk) {
                        s[j] = expf(s[j] - mx);
                        sum += s[j];
                    }
#pragma unroll
                for (int j = 0; j < LKMAX; j++)
                    if (j < Lk) s[j] /= sum;
            }
#pragma unroll
            for (int j = 0; j < LKMAX; j++)
                if (j < Lk) out[threadIdx.x * Lk + j] = s[j];
        }
        __syncthreads();
        // the pass's pairs are rows row0.. from head h0 on: flat (row, h, j)
        // index h0*Lk + e from row0's start
        const int cnt = (int)(last - base + 1) * Lk;
        for (int e = threadIdx.x; e < cnt; e += blockDim.x) {
            const int f = h0 * Lk + e;
            p[(row0 + f / span) * ldp + f % span] = out[e];
        }
        __syncthreads();
    }
}

// any Lk: one thread per (row, head), scores in p itself
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
// one warp per row (blockDim.x a multiple of 32)
static __global__ void rstd_kernel(float *rstd, const float *xx, const float *s, const float *p,
                                   int64_t ldp, const float *e, const float *pg, int64_t M,
                                   int64_t Mx, int64_t r, int64_t C, float eps) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t i = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); i < M;
         i += warps) {
        const double si = s ? s[i] : 1.0;
        const float *pi = p + i * ldp, *ei = e + i * r, *gi = pg + i * r;
        double acc = 0.0;
        for (int64_t kk = lane; kk < r; kk += 32)
            acc += (double)pi[kk] * (2.0 * si * ei[kk] + gi[kk]);
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) {
            const double var = (si * si * xx[i % Mx] + acc) / (double)C;
            rstd[i] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps));
        }
    }
}

// one element: y, x are (B*M,N) strides ldy, ldx; a, sa (B*M); s, u (M,N) strides lds, ldu
// or NULL
static __device__ __forceinline__ void affine_one(float *y, int64_t ldy, const float *x,
                                                  int64_t ldx, const float *a, const float *s,
                                                  int64_t lds, const float *sa, const float *u,
                                                  int64_t ldu, int64_t row, int64_t i,
                                                  int64_t c) {
    float v = x[row * ldx + c] + (s ? (sa ? sa[row] : 1.0f) * s[i * lds + c] : 0.0f);
    y[row * ldy + c] = a[row] * v + (u ? u[i * ldu + c] : 0.0f);
}

// wide rows: one block per row (grid-stride), threads across the N columns
static __global__ void row_affine_rows_kernel(float *y, int64_t ldy, const float *x, int64_t ldx,
                                              const float *a, const float *s, int64_t lds,
                                              const float *sa, const float *u, int64_t ldu,
                                              int64_t BM, int64_t M, int64_t N) {
    for (int64_t row = blockIdx.x; row < BM; row += gridDim.x) {
        const int64_t i = row % M;
        for (int64_t c = threadIdx.x; c < N; c += blockDim.x)
            affine_one(y, ldy, x, ldx, a, s, lds, sa, u, ldu, row, i, c);
    }
}

// narrow rows: one thread per element; I is the index type (32-bit where
// BM*N fits: 64-bit division is many instructions)
template <class I>
static __global__ void row_affine_kernel(float *y, int64_t ldy, const float *x, int64_t ldx,
                                         const float *a, const float *s, int64_t lds,
                                         const float *sa, const float *u, int64_t ldu,
                                         I BM, I M, I N) {
    const I n = BM * N;
    for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += (I)blockDim.x * gridDim.x) {
        const I row = t / N, c = t - row * N;
        affine_one(y, ldy, x, ldx, a, s, lds, sa, u, ldu, row, row % M, c);
    }
}

typedef void probs_launch_fn(cudaStream_t s, unsigned g, size_t smem, float *p, int64_t ldp,
                            const float *q, int64_t ldq, int64_t sq, const float *k,
                            int64_t ldk, int64_t B, int64_t Lq, int64_t Lk, int64_t nh,
                            int64_t dh, float scale, int raw, int vec);

template <int LKMAX, bool CACHED>
static void probs_launch(cudaStream_t s, unsigned g, size_t smem, float *p, int64_t ldp,
                         const float *q, int64_t ldq, int64_t sq, const float *k, int64_t ldk,
                         int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh, float scale,
                         int raw, int vec) {
    probs_small_kernel<LKMAX, CACHED><<<g, KERN_THREADS, smem, s>>>(
        p, ldp, q, ldq, sq, k, ldk, B, Lq, (int)Lk, (int)nh, (int)dh, scale, raw, vec);
}

extern "C" void cuda_attention_probs(cudaStream_t s, float *p, int64_t ldp, const float *q,
                                     int64_t ldq, int64_t sq, const float *k, int64_t ldk,
                                     int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                                     float scale, int raw) {
    CHECK(B >= 0 && Lq >= 0 && Lk > 0 && nh > 0 && dh > 0 && sq >= 0);
    CHECK(ldp >= nh * Lk && ldq >= nh * dh && ldk >= nh * dh);
    int64_t n = B * Lq * nh;
    if (n == 0) return;
    if (Lk <= PROBS_LK_MAX && nh * Lk <= INT32_MAX / KERN_THREADS && dh <= 4096 &&
        nh * dh <= INT32_MAX) {
        // the keys in shared memory when a pass's pairs span at most two
        // items (Lq*nh >= the block) and those fit in 16 KB
        const int64_t kneed = 2 * Lk * nh * (dh + 1);
        const bool cached = kneed <= 4096 && Lq * nh >= KERN_THREADS;
        const int vec = dh % 4 == 0 && ldq % 4 == 0 && sq % 4 == 0 &&
                        ((uintptr_t)q & 15) == 0;
        const size_t smem = ((size_t)KERN_THREADS * Lk + (cached ? kneed : 0)) * sizeof(float);
        const unsigned g = kern_grid(n, KERN_THREADS);
        probs_launch_fn *launch =
            Lk <= 8    ? (cached ? probs_launch<8, true> : probs_launch<8, false>)
            : Lk <= 16 ? (cached ? probs_launch<16, true> : probs_launch<16, false>)
                       : (cached ? probs_launch<32, true> : probs_launch<32, false>);
        launch(s, g, smem, p, ldp, q, ldq, sq, k, ldk, B, Lq, Lk, nh, dh, scale, raw, vec);
    } else {
        probs_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
            p, ldp, q, ldq, sq, k, ldk, B, Lq, Lk, nh, dh, scale, raw);
    }
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_lowrank_rstd(cudaStream_t s, float *rstd, const float *xx, const float *sc,
                                  const float *p, int64_t ldp, const float *e, const float *pg,
                                  int64_t B, int64_t Mx, int64_t r, int64_t C, float eps) {
    CHECK(B >= 0 && Mx > 0 && r >= 0 && ldp >= r && C > 0);
    int64_t M = B * Mx;
    if (M == 0) return;
    const int rows_per_block = KERN_THREADS / 32;
    rstd_kernel<<<kern_grid(M, rows_per_block), KERN_THREADS, 0, s>>>(rstd, xx, sc, p, ldp, e,
                                                                     pg, M, Mx, r, C, eps);
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
    if (N >= 64) {
        const int threads = N >= 256 ? 256 : 128;
        row_affine_rows_kernel<<<kern_grid(B * M, 1), threads, 0, s>>>(
            y, ldy, x, ldx, a, sv, lds, sa, u, ldu, B * M, M, N);
    } else if (n <= (int64_t)UINT32_MAX / 2) {
        row_affine_kernel<uint32_t><<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
            y, ldy, x, ldx, a, sv, lds, sa, u, ldu, (uint32_t)(B * M), (uint32_t)M,
            (uint32_t)N);
    } else {
        row_affine_kernel<int64_t><<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
            y, ldy, x, ldx, a, sv, lds, sa, u, ldu, B * M, M, N);
    }
    CUDA_LAUNCH_CHECK();
}
