/* attention.cu: fused scaled dot-product attention with online softmax.
 *
 * One block per (batch item, head, tile of ATT_BQ queries); 4 warps, each
 * owning ATT_RPW query rows. Keys and values stream through shared memory in
 * tiles of 32, so the score matrix never exists in memory (flash-attention
 * style): per tile, lane j scores key j, the warp reduces the tile max and
 * sum with shuffles, rescales its running output by exp(m_old - m_new) and
 * adds p_j v_j, each lane owning output dims lane, lane+32, ... (dh <= 128,
 * so at most 4 per lane, held in registers: DPL is a template parameter).
 *
 * Arithmetic is float32 on CUDA cores with expf (not __expf), so results
 * match the CPU reference to ~1e-6 relative; no tensor cores here (a bf16
 * tensor-core version is the next step, see PERF-NOTES).
 *
 * Shapes in SAM 2.1: Hiera windows (L = 64..256, dh 72/96), global blocks
 * (L = 4096), decoder token<->image (Lq or Lk = 4096, the other ~7, dh 16/32).
 *
 * Key split (flash-decoding): the decoder's shared token->image attention
 * has B = 1, nh = 8 and a few query tiles against 4096 keys, i.e. a handful
 * of blocks for 132 SMs. When the (query tile, head) blocks are fewer than
 * two per SM and there are at least ATT_SPLIT_MIN keys per split, each block
 * takes one contiguous range of keys and writes its unnormalized partial
 * (running max m, sum l, output acc) to scratch; attention_merge_splits
 * (common.cuh) merges the splits per row: M = max m_s, out = sum acc_s e^(m_s-M) /
 * sum l_s e^(m_s-M). Not yet run on a GPU (written without one).
 */
#include <math.h>

#include "common.cuh"

#define ATT_TK    32                     /* keys per shared-memory tile */
#define ATT_WARPS 4
#define ATT_RPW   4                      /* query rows per warp */
#define ATT_BQ    (ATT_WARPS * ATT_RPW)  /* query rows per block */
#define ATT_DHMAX 128
#define ATT_SPLIT_MIN 128                /* fewest keys per split */

static __device__ __forceinline__ float att_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float att_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// o is (B,Lq,nh,dh) contiguous; q (B,Lq,nh,dh) row stride ldq; k,v (B,Lk,nh,dh)
// row strides ldk, ldv. Grid: B*nh*nqb*nsplit blocks of ATT_WARPS*32 threads;
// split s takes keys [s*kchunk, (s+1)*kchunk). With nsplit > 1 the block
// writes part (B*Lq*nh rows, nsplit, dh+2) = (m, l, acc[dh]) instead of o.
template <int DPL>
static __global__ void __launch_bounds__(ATT_WARPS * 32)
attention_kernel(float *o, const float *q, int64_t ldq, const float *k, int64_t ldk,
                 const float *v, int64_t ldv, int64_t Lq, int64_t Lk, int nh, int dh,
                 float scale, int64_t nqb, int nsplit, int64_t kchunk, float *part) {
    extern __shared__ float att_smem[];
    const int ldks = dh | 1;             // odd row stride: lane j reads row j conflict-free
    float *Ks = att_smem;                // (ATT_TK, ldks)
    float *Vs = Ks + ATT_TK * ldks;      // (ATT_TK, dh)
    float *Qs = Vs + ATT_TK * dh;        // (ATT_BQ, dh)

    const int split = (int)((int64_t)blockIdx.x % nsplit);
    const int64_t qb = (int64_t)blockIdx.x / nsplit % nqb;
    const int64_t bh = (int64_t)blockIdx.x / nsplit / nqb;
    const int64_t kbeg = (int64_t)split * kchunk;
    const int64_t kend = kbeg + kchunk < Lk ? kbeg + kchunk : Lk;
    const int h = (int)(bh % nh);
    const int64_t b = bh / nh;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t q0 = qb * ATT_BQ;
    const int64_t hoff = (int64_t)h * dh;

    for (int idx = tid; idx < ATT_BQ * dh; idx += blockDim.x) {
        int r = idx / dh, d = idx % dh;
        int64_t i = q0 + r;
        Qs[idx] = i < Lq ? q[(b * Lq + i) * ldq + hoff + d] : 0.0f;
    }

    float m[ATT_RPW], l[ATT_RPW], acc[ATT_RPW][DPL];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int t = 0; t < DPL; t++) acc[r][t] = 0.0f;
    }

    for (int64_t k0 = kbeg; k0 < kend; k0 += ATT_TK) {
        const int nk = (int)(kend - k0 < ATT_TK ? kend - k0 : ATT_TK);
        __syncthreads();   // the previous tile is consumed (first pass: Qs is loaded)
        for (int idx = tid; idx < ATT_TK * dh; idx += blockDim.x) {
            int j = idx / dh, d = idx % dh;
            float kv = 0.0f, vv = 0.0f;
            if (j < nk) {
                int64_t row = b * Lk + k0 + j;
                kv = k[row * ldk + hoff + d];
                vv = v[row * ldv + hoff + d];
            }
            Ks[j * ldks + d] = kv;
            Vs[j * dh + d] = vv;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            const int qr = warp * ATT_RPW + r;
            if (q0 + qr < Lq) {   // warp-uniform
                const float *qrow = Qs + qr * dh;
                float sc = -INFINITY;
                if (lane < nk) {
                    const float *krow = Ks + lane * ldks;
                    float dot = 0.0f;
                    for (int d = 0; d < dh; d++) dot += qrow[d] * krow[d];
                    sc = dot * scale;
                }
                const float mnew = fmaxf(m[r], att_warp_max(sc));
                const float corr = expf(m[r] - mnew);   // 0 on the first tile
                const float p = expf(sc - mnew);        // 0 for lanes past nk
                l[r] = l[r] * corr + att_warp_sum(p);
                m[r] = mnew;
#pragma unroll
                for (int t = 0; t < DPL; t++) acc[r][t] *= corr;
                for (int j = 0; j < nk; j++) {
                    const float pj = __shfl_sync(0xffffffffu, p, j);
                    const float *vrow = Vs + j * dh;
#pragma unroll
                    for (int t = 0; t < DPL; t++) {
                        int d = lane + 32 * t;
                        if (d < dh) acc[r][t] += pj * vrow[d];
                    }
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        const int64_t i = q0 + warp * ATT_RPW + r;
        if (i < Lq && nsplit > 1) {   // the partial of this split: m, l, acc
            float *prow = part + (((b * Lq + i) * nh + h) * nsplit + split) * (int64_t)(dh + 2);
            if (lane == 0) prow[0] = m[r], prow[1] = l[r];
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                int d = lane + 32 * t;
                if (d < dh) prow[2 + d] = acc[r][t];
            }
        } else if (i < Lq) {
            float *orow = o + ((b * Lq + i) * nh + h) * (int64_t)dh;
            const float inv = 1.0f / l[r];
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                int d = lane + 32 * t;
                if (d < dh) orow[d] = acc[r][t] * inv;
            }
        }
    }
}

extern "C" void cuda_attention(cudaStream_t s, float *o, const float *q, int64_t ldq,
                               const float *k, int64_t ldk, const float *v, int64_t ldv,
                               int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                               float scale, float *scratch, int64_t scratch_floats,
                               int num_sms) {
    CHECK(B >= 0 && Lq >= 0 && nh > 0 && dh > 0);
    CHECK_MSG(dh <= ATT_DHMAX, "attention head dim %lld > %d unsupported on CUDA",
              (long long)dh, ATT_DHMAX);
    CHECK(ldq >= nh * dh && ldk >= nh * dh && ldv >= nh * dh);
    if (B == 0 || Lq == 0) return;
    CHECK_MSG(Lk > 0, "attention over zero keys");
    const int64_t nqb = (Lq + ATT_BQ - 1) / ATT_BQ;
    /* key split: enough blocks for two per SM, each split >= ATT_SPLIT_MIN
     * keys (a multiple of the tile), partials within the scratch */
    int64_t nsplit = 1, kchunk = Lk;
    const int64_t target = 2 * (int64_t)(num_sms > 0 ? num_sms : 1), base = B * nh * nqb;
    if (base < target && Lk >= 2 * ATT_SPLIT_MIN && scratch) {
        int64_t want = (target + base - 1) / base, most = Lk / ATT_SPLIT_MIN;
        int64_t fit = scratch_floats / (B * Lq * nh * (dh + 2));
        nsplit = want < most ? want : most;
        if (nsplit > fit) nsplit = fit;
        if (nsplit > 1) {
            kchunk = (Lk + nsplit - 1) / nsplit;
            kchunk = (kchunk + ATT_TK - 1) / ATT_TK * ATT_TK;
            nsplit = (Lk + kchunk - 1) / kchunk;
        }
        if (nsplit < 2) nsplit = 1, kchunk = Lk;
    }
    const int64_t blocks = base * nsplit;
    CHECK(blocks <= INT32_MAX);
    const int ns = (int)nsplit;
    const int idh = (int)dh;
    const size_t smem = sizeof(float) *
        ((size_t)ATT_TK * (size_t)(idh | 1) + (size_t)ATT_TK * idh + (size_t)ATT_BQ * idh);
    const dim3 grid((unsigned)blocks), block(ATT_WARPS * 32);
    switch ((idh + 31) / 32) {
    case 1:
        attention_kernel<1><<<grid, block, smem, s>>>(o, q, ldq, k, ldk, v, ldv, Lq, Lk,
                                                      (int)nh, idh, scale, nqb, ns, kchunk,
                                                      scratch);
        break;
    case 2:
        attention_kernel<2><<<grid, block, smem, s>>>(o, q, ldq, k, ldk, v, ldv, Lq, Lk,
                                                      (int)nh, idh, scale, nqb, ns, kchunk,
                                                      scratch);
        break;
    case 3:
        attention_kernel<3><<<grid, block, smem, s>>>(o, q, ldq, k, ldk, v, ldv, Lq, Lk,
                                                      (int)nh, idh, scale, nqb, ns, kchunk,
                                                      scratch);
        break;
    default:
        attention_kernel<4><<<grid, block, smem, s>>>(o, q, ldq, k, ldk, v, ldv, Lq, Lk,
                                                      (int)nh, idh, scale, nqb, ns, kchunk,
                                                      scratch);
        break;
    }
    CUDA_LAUNCH_CHECK();
    if (ns > 1) {
        const int64_t n = B * Lq * nh * dh;
        attention_merge_splits<false><<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
            o, scratch, B * Lq * nh, idh, ns);
        CUDA_LAUNCH_CHECK();
    }
}
