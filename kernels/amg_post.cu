/* amg_post.cu: the automatic mask generator's post-processing on the GPU
 * (include/backend.h backend_amg_ops; src/amg_gpu.c drives it).
 *
 * The low-res logits of a batch of masks are on the device; the
 * full-resolution logits are never stored. One thread walks one column of
 * one mask from the top row to the bottom (kernels/amg_post.h, the same code
 * as the host reference), so each thread evaluates its pixels in the order
 * the RLE needs them, adjacent threads read adjacent low-res columns
 * (coalesced), and the row maps are broadcast. Pass 1 (columns) counts the
 * pixels above the three thresholds and the run boundaries per column;
 * reduce folds the columns of each mask into its figures and the boundary
 * offsets (one block per mask, a block-wide scan); pass 2 (boundaries)
 * walks the columns of the surviving masks again and writes their boundary
 * rows, from which the host builds the RLE counts (src/amg_gpu.c).
 *
 * nms_mask is torchvision's CUDA NMS: 64x64 tiles of box pairs, one bit per
 * pair (i < j) whose IoU is over the threshold; the sequential scan over
 * the bit rows stays on the host (as in torchvision).
 *
 * Exactness: see kernels/amg_post.h (explicitly rounded intrinsics); the
 * Makefile compiles this file with -fmad=false too.
 */
#include "common.cuh"
#include "amg_post.h"

#define COL_THREADS 128
#define RED_THREADS 256
#define NMS_TILE    64

// mask m of A: A + ia[m] * L * L, or A + m * L * L without ia
static __device__ __forceinline__ const float *amg_mask(const backend_amg_geom &g, const float *A,
                                                        const int32_t *ia, int64_t m) {
    return A + (ia ? (int64_t)ia[m] : m) * g.L * g.L;
}

// masks m < nm of A; stat (nm, cw, BACKEND_AMG_COLSTAT)
static __global__ void amg_columns_kernel(backend_amg_geom g, const float *A, const int32_t *ia,
                                          int32_t *stat) {
    int32_t x = blockIdx.x * COL_THREADS + threadIdx.x;
    int64_t m = blockIdx.y;
    if (x >= g.cw) return;
    int32_t st[BACKEND_AMG_COLSTAT];
    amg_post_column(&g, amg_mask(g, A, ia, m), x, st, NULL);
    int32_t *o = stat + (m * g.cw + x) * BACKEND_AMG_COLSTAT;
    for (int k = 0; k < BACKEND_AMG_COLSTAT; k++) o[k] = st[k];
}

// stat (nm, cw, COLSTAT) -> sums (nm, SUMS), off (nm, cw); one block per mask
static __global__ void amg_reduce_kernel(int32_t cw, const int32_t *stat, int64_t *sums,
                                         int64_t *off) {
    __shared__ int64_t scan[RED_THREADS];
    __shared__ int64_t red[RED_THREADS];
    int64_t m = blockIdx.x;
    int t = threadIdx.x;
    const int32_t *sm = stat + m * cw * BACKEND_AMG_COLSTAT;
    int64_t acc[3] = {0, 0, 0}, base = 0;
    int64_t xmin = INT64_MAX, xmax = -1, ymin = INT64_MAX, ymax = -1;
    for (int32_t c0 = 0; c0 < cw; c0 += RED_THREADS) {
        int32_t x = c0 + t;
        int64_t nb = 0;
        if (x < cw) {
            const int32_t *s = sm + (int64_t)x * BACKEND_AMG_COLSTAT;
            acc[0] += s[0], acc[1] += s[1], acc[2] += s[2];
            if (s[3] >= 0) {
                xmin = x < xmin ? x : xmin;
                xmax = x > xmax ? x : xmax;
                ymin = s[3] < ymin ? s[3] : ymin;
                ymax = s[4] > ymax ? s[4] : ymax;
            }
            nb = s[5];
        }
        // inclusive Hillis-Steele scan of nb over the block
        scan[t] = nb;
        __syncthreads();
        for (int o = 1; o < RED_THREADS; o <<= 1) {
            int64_t v = t >= o ? scan[t - o] : 0;
            __syncthreads();
            scan[t] += v;
            __syncthreads();
        }
        if (x < cw) off[m * cw + x] = base + scan[t] - nb;
        base += scan[RED_THREADS - 1];
        __syncthreads();   // scan[] is rewritten by the next chunk
    }
    // block reductions, one figure at a time: sums, then min/max
    int64_t vals[7] = {acc[0], acc[1], acc[2], xmin, xmax, ymin, ymax};
    for (int k = 0; k < 7; k++) {
        red[t] = vals[k];
        __syncthreads();
        for (int o = RED_THREADS / 2; o > 0; o >>= 1) {
            if (t < o) {
                int64_t a = red[t], b = red[t + o];
                red[t] = k < 3 ? a + b : (k == 3 || k == 5) ? (b < a ? b : a) : (b > a ? b : a);
            }
            __syncthreads();
        }
        if (t == 0) vals[k] = red[0];
        __syncthreads();
    }
    if (t == 0) {
        int64_t *o = sums + m * BACKEND_AMG_SUMS;
        int empty = vals[4] < 0;
        o[0] = vals[0], o[1] = vals[1], o[2] = vals[2];
        o[3] = empty ? -1 : vals[3], o[4] = vals[4];
        o[5] = empty ? -1 : vals[5], o[6] = empty ? -1 : vals[6];
        o[7] = base;
    }
}

// for selected mask s = blockIdx.y: its column boundaries into trans, its
// column offsets into soff
static __global__ void amg_boundaries_kernel(backend_amg_geom g, const float *A,
                                             const int32_t *ia, const int32_t *sel,
                                             const int64_t *base, const int64_t *off,
                                             int32_t *trans, int64_t *soff) {
    int32_t x = blockIdx.x * COL_THREADS + threadIdx.x;
    int64_t s = blockIdx.y, m = sel[s];
    if (x >= g.cw) return;
    int32_t st[BACKEND_AMG_COLSTAT];
    int64_t o = off[m * g.cw + x];
    soff[s * g.cw + x] = o;
    amg_post_column(&g, amg_mask(g, A, ia, m), x, st, trans + base[s] + o);
}

// boxes (n, 4); mask (n, words): tile (blockIdx.y rows, blockIdx.x columns)
static __global__ void amg_nms_kernel(const int32_t *boxes, int64_t n, int64_t words,
                                      double thr, uint64_t *mask) {
    __shared__ int32_t cb[NMS_TILE * 4];
    int64_t r0 = (int64_t)blockIdx.y * NMS_TILE, c0 = (int64_t)blockIdx.x * NMS_TILE;
    int t = threadIdx.x;
    int64_t nc = n - c0 < NMS_TILE ? n - c0 : NMS_TILE;
    if (t < nc)
        for (int k = 0; k < 4; k++) cb[t * 4 + k] = boxes[(c0 + t) * 4 + k];
    __syncthreads();
    int64_t i = r0 + t;
    if (i >= n) return;
    const int32_t *bi = boxes + i * 4;
    uint64_t bits = 0;
    for (int k = 0; k < nc; k++)
        if (c0 + k > i && amg_post_iou_above(bi, cb + k * 4, thr)) bits |= (uint64_t)1 << k;
    mask[i * words + blockIdx.x] = bits;
}

extern "C" void cuda_amg_columns(cudaStream_t s, const backend_amg_geom *g, const float *A,
                                 const int32_t *ia, int64_t nm, int32_t *stat) {
    CHECK(g->L > 0 && g->ch > 0 && g->cw > 0 && nm >= 0 && nm <= 65535);
    if (nm == 0) return;
    dim3 grid((unsigned)((g->cw + COL_THREADS - 1) / COL_THREADS), (unsigned)nm);
    amg_columns_kernel<<<grid, COL_THREADS, 0, s>>>(*g, A, ia, stat);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_amg_reduce(cudaStream_t s, const backend_amg_geom *g, const int32_t *stat,
                                int64_t nm, int64_t *sums, int64_t *off) {
    CHECK(g->cw > 0 && nm >= 0 && nm <= INT32_MAX);
    if (nm == 0) return;
    amg_reduce_kernel<<<(unsigned)nm, RED_THREADS, 0, s>>>(g->cw, stat, sums, off);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_amg_boundaries(cudaStream_t s, const backend_amg_geom *g, const float *A,
                                    const int32_t *ia, int64_t ns, const int32_t *sel,
                                    const int64_t *base, const int64_t *off, int32_t *trans,
                                    int64_t *soff) {
    CHECK(g->L > 0 && g->ch > 0 && g->cw > 0 && ns >= 0 && ns <= 65535);
    if (ns == 0) return;
    dim3 grid((unsigned)((g->cw + COL_THREADS - 1) / COL_THREADS), (unsigned)ns);
    amg_boundaries_kernel<<<grid, COL_THREADS, 0, s>>>(*g, A, ia, sel, base, off, trans, soff);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_amg_nms_mask(cudaStream_t s, const int32_t *boxes, int64_t n, double thr,
                                  uint64_t *mask) {
    CHECK(n >= 0);
    if (n == 0) return;
    int64_t words = (n + NMS_TILE - 1) / NMS_TILE;
    CHECK(words <= 65535);
    dim3 grid((unsigned)words, (unsigned)words);
    amg_nms_kernel<<<grid, NMS_TILE, 0, s>>>(boxes, n, words, thr, mask);
    CUDA_LAUNCH_CHECK();
}
