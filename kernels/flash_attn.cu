/* flash_attn.cu: bf16 fused attention on tensor cores (flash-attention 2).
 *
 * The bf16 path of backend.h attention(): same layouts and semantics as
 * kernels/attention.cu, but Q.K^T and P.V run on tensor cores with
 * mma.sync.m16n8k16 (bf16 inputs, float32 accumulation). Q, K and V are
 * read as float32 from the caller's strided layout and rounded to bf16 once,
 * as they are written to shared memory; the scores, the online softmax
 * (running max m and sum l per row) and the output accumulator stay float32
 * in registers, so the score matrix never exists in memory. P is rounded to
 * bf16 for the P.V product (the sum l uses the unrounded p).
 *
 * Tiling: a block of FA_WARPS warps (1 when Lq <= 16) owns 16 query rows per
 * warp of one (batch item, head); keys stream through shared memory in
 * tiles of FA_BK = 64, K and V row-major (key, d) in bf16 with rows padded
 * by 8 elements so the fragment loads below are free of bank conflicts (a
 * row stride of 4 mod 8 words puts the 8 rows x 4 words a warp reads, or
 * the 8 rows x 16 bytes of one ldmatrix phase, in 32 different banks).
 * The head dim is zero-padded to
 * DHP, the next multiple of 16 (the mma's k): zero columns add nothing to
 * q.k, and output columns past dh are not written, so every dh <= 128 runs
 * here (72 -> 80, 56 -> 64, 12 -> 16). Query rows past Lq are zero and not
 * written; keys past Lk score -inf and their V rows are zero, so tails of
 * any length are exact.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16 .bf16; g = lane/4, t = lane%4,
 * each 32-bit register holds two bf16, the lower column in the low half):
 *   A (16x16): a0 (row g, k 2t..2t+1), a1 (row g+8, same k),
 *              a2 (row g, k 2t+8..2t+9), a3 (row g+8, k 2t+8..2t+9)
 *   B (16x8):  b0 (k 2t..2t+1, col g), b1 (k 2t+8..2t+9, col g)
 *   C (16x8):  c0,c1 (row g, cols 2t, 2t+1), c2,c3 (row g+8, same cols)
 * So S = Q K^T takes B words straight from K's rows; O = P V needs pairs
 * along keys, which ldmatrix.x2.trans gathers from V's rows (matrix 0: keys
 * 16kk..+7, matrix 1: keys +8..+15, 8 head dims each; transposed, thread
 * (g,t) receives rows 2t, 2t+1 of column g, i.e. b0 and b1); the S accumulator of key columns 16kk..16kk+15 (n-tiles
 * 2kk and 2kk+1) is exactly the A fragment of P for k-step kk: no shuffle.
 *
 * Softmax works in base 2: scores are multiplied by scale * log2(e) and
 * exponentiated with exp2f, so m is in log2 units.
 *
 * Key split (flash-decoding), as in attention.cu: with fewer (query tile,
 * head) blocks than two per SM (sixteen for one-warp blocks) and at least
 * 2 * FA_SPLIT_MIN keys, each
 * block takes a contiguous key range and writes (m, l, acc[dh]) to scratch;
 * attention_merge_splits (common.cuh) merges the splits.
 *
 * Written without a GPU: checked on the first GPU run by bench_cuda
 * (check rows) and test_ops in bf16 mode.
 */
#include <math.h>
#include <string.h>

#include <cuda_bf16.h>

#include "common.cuh"
#include "mma.cuh"

#define FA_BK        64     /* keys per shared-memory tile */
#define FA_WARPS     4      /* warps per block for Lq > 16 */
#define FA_DHMAX     128
#define FA_SPLIT_MIN 256    /* fewest keys per split */
#define FA_LOG2E     1.4426950408889634f

static __device__ __forceinline__ uint32_t fa_ld32(const __nv_bfloat16 *p) {
    return *reinterpret_cast<const uint32_t *>(p);
}

/* fa_load4: 4 consecutive floats src[d..d+3] of one row, zero where the
 * row is invalid or a column is >= dh. vec: 16-byte aligned rows and dh % 4
 * == 0 (then a group of 4 is all in or all out). */
static __device__ __forceinline__ float4 fa_load4(const float *row, int d, int dh, bool valid,
                                                  bool vec) {
    float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (!valid) return r;
    if (vec) {
        if (d < dh) r = __ldg(reinterpret_cast<const float4 *>(row + d));
    } else {
        if (d < dh) r.x = __ldg(row + d);
        if (d + 1 < dh) r.y = __ldg(row + d + 1);
        if (d + 2 < dh) r.z = __ldg(row + d + 2);
        if (d + 3 < dh) r.w = __ldg(row + d + 3);
    }
    return r;
}

/* fa_load4_16: the same for a row of bf16 values (KV16: keys and values
 * stored in bf16), as the raw bits of 4 of them; vec: 8-byte aligned rows
 * and dh % 4 == 0 */
static __device__ __forceinline__ uint2 fa_load4_16(const __nv_bfloat16 *row, int d, int dh,
                                                    bool valid, bool vec) {
    uint2 r;
    r.x = r.y = 0u;
    if (!valid || d >= dh) return r;
    if (vec) return *reinterpret_cast<const uint2 *>(row + d);
    uint16_t h[4] = {0, 0, 0, 0};
    const uint16_t *u = reinterpret_cast<const uint16_t *>(row);
#pragma unroll
    for (int e = 0; e < 4; e++)
        if (d + e < dh) h[e] = u[d + e];
    r.x = (uint32_t)h[0] | (uint32_t)h[1] << 16;
    r.y = (uint32_t)h[2] | (uint32_t)h[3] << 16;
    return r;
}

// o (B,Lq,nh*dh); q (B,Lq,nh,dh) row stride ldq; k,v (B,Lk,nh,dh) row
// strides ldk, ldv: float32, or bf16 when KV16 (strides in bf16 elements;
// the tile then holds their bits as they are, which is what rounding
// float32 copies of the same values would put there). Grid: B*nh*nqb*nsplit blocks of WARPS*32 threads; block
// (bh, qb, split) takes query rows [qb*16*WARPS, +16*WARPS) and keys
// [split*kchunk, +kchunk). With nsplit > 1 it writes part (B*Lq*nh rows,
// nsplit, dh+2) = (m, l, acc[dh]) instead of o. scale2 = scale * log2(e).
template <int DHP, int WARPS, bool KV16>
static __global__ void __launch_bounds__(WARPS * 32)
flash_attn_kernel(float *o, const float *q, int64_t ldq, const void *kp, int64_t ldk,
                  const void *vp, int64_t ldv, int64_t Lq, int64_t Lk, int nh, int dh,
                  float scale2, int64_t nqb, int nsplit, int64_t kchunk, float *part, int vec) {
    constexpr int BQ = 16 * WARPS;
    constexpr int KS = DHP + 8;    // K, V (and Q staging) row stride, bf16 elements
    constexpr int NT = FA_BK / 8;  // key n-tiles of S per warp
    constexpr int KT = DHP / 16;   // k-steps over the head dim
    constexpr int DT = DHP / 8;    // head-dim n-tiles of O
    static_assert(BQ <= FA_BK, "Q staging reuses the K tile");
    static_assert(DHP % 16 == 0 && DHP <= FA_DHMAX, "head dim tile");
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Ks = reinterpret_cast<__nv_bfloat16 *>(fa_smem);   // (FA_BK, KS)
    __nv_bfloat16 *Vs = Ks + FA_BK * KS;                                // (FA_BK, KS)

    const int split = (int)((int64_t)blockIdx.x % nsplit);
    const int64_t qb = (int64_t)blockIdx.x / nsplit % nqb;
    const int64_t bh = (int64_t)blockIdx.x / nsplit / nqb;
    const int h = (int)(bh % nh);
    const int64_t b = bh / nh;
    const int64_t kbeg = (int64_t)split * kchunk;
    const int64_t kend = kbeg + kchunk < Lk ? kbeg + kchunk : Lk;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t q0 = qb * BQ;
    const int64_t hoff = (int64_t)h * dh;
    const bool vq = vec != 0;

    // Q tile -> Ks (bf16), then each warp's A fragments -> registers
    for (int idx = tid; idx < BQ * (DHP / 4); idx += WARPS * 32) {
        const int r = idx / (DHP / 4), d = idx % (DHP / 4) * 4;
        const int64_t i = q0 + r;
        const float4 x = fa_load4(q + (b * Lq + (i < Lq ? i : 0)) * ldq + hoff, d, dh, i < Lq, vq);
        uint2 w;
        w.x = mma_pack_bf16x2(x.x, x.y);
        w.y = mma_pack_bf16x2(x.z, x.w);
        *reinterpret_cast<uint2 *>(Ks + r * KS + d) = w;   // 8-byte aligned: KS, d % 4 == 0
    }
    __syncthreads();
    uint32_t qa[KT][4];
    {
        const __nv_bfloat16 *r0 = Ks + (warp * 16 + g) * KS + 2 * t;
        const __nv_bfloat16 *r1 = r0 + 8 * KS;
#pragma unroll
        for (int kt = 0; kt < KT; kt++) {
            qa[kt][0] = fa_ld32(r0 + kt * 16);
            qa[kt][1] = fa_ld32(r1 + kt * 16);
            qa[kt][2] = fa_ld32(r0 + kt * 16 + 8);
            qa[kt][3] = fa_ld32(r1 + kt * 16 + 8);
        }
    }

    float acc[DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; dt++) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY;   // running max of rows g and g+8 (log2 units)
    float l0 = 0.0f, l1 = 0.0f;             // this thread's share of the running sums

    for (int64_t k0 = kbeg; k0 < kend; k0 += FA_BK) {
        const int nk = (int)(kend - k0 < FA_BK ? kend - k0 : FA_BK);
        __syncthreads();   // the previous tile (first pass: the Q staging) is consumed
        for (int idx = tid; idx < FA_BK * (DHP / 4); idx += WARPS * 32) {
            const int j = idx / (DHP / 4), d = idx % (DHP / 4) * 4;
            const bool ok = j < nk;
            const int64_t row = b * Lk + k0 + (ok ? j : 0);
            if constexpr (KV16) {
                const __nv_bfloat16 *k = static_cast<const __nv_bfloat16 *>(kp);
                const __nv_bfloat16 *v = static_cast<const __nv_bfloat16 *>(vp);
                *reinterpret_cast<uint2 *>(Ks + j * KS + d) =
                    fa_load4_16(k + row * ldk + hoff, d, dh, ok, vq);
                *reinterpret_cast<uint2 *>(Vs + j * KS + d) =
                    fa_load4_16(v + row * ldv + hoff, d, dh, ok, vq);
            } else {
                const float *k = static_cast<const float *>(kp);
                const float *v = static_cast<const float *>(vp);
                const float4 kx = fa_load4(k + row * ldk + hoff, d, dh, ok, vq);
                const float4 vx = fa_load4(v + row * ldv + hoff, d, dh, ok, vq);
                uint2 w;
                w.x = mma_pack_bf16x2(kx.x, kx.y);
                w.y = mma_pack_bf16x2(kx.z, kx.w);
                *reinterpret_cast<uint2 *>(Ks + j * KS + d) = w;
                w.x = mma_pack_bf16x2(vx.x, vx.y);
                w.y = mma_pack_bf16x2(vx.z, vx.w);
                *reinterpret_cast<uint2 *>(Vs + j * KS + d) = w;
            }
        }
        __syncthreads();

        // S (16 x FA_BK per warp) = Q K^T; n-tiles wholly past nk are skipped
        float s[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            if (nt * 8 < nk) {   // block-uniform
                const __nv_bfloat16 *kr = Ks + (nt * 8 + g) * KS + 2 * t;
#pragma unroll
                for (int kt = 0; kt < KT; kt++)
                    mma_bf16_16816(s[nt], qa[kt], fa_ld32(kr + kt * 16),
                                   fa_ld32(kr + kt * 16 + 8));
            }
        }
        // scale, mask the keys past nk, row max over the quad (4 lanes share a row)
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int col = nt * 8 + 2 * t + (c & 1);
                s[nt][c] = col < nk ? s[nt][c] * scale2 : -INFINITY;
            }
            mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        // every tile has a valid key (nk >= 1), so the new max is finite
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float c0 = exp2f(m0 - mn0), c1 = exp2f(m1 - mn1);   // 0 on the first tile
        m0 = mn0;
        m1 = mn1;
        float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            s[nt][0] = exp2f(s[nt][0] - mn0);   // exp2f(-inf) = 0 for masked keys
            s[nt][1] = exp2f(s[nt][1] - mn0);
            s[nt][2] = exp2f(s[nt][2] - mn1);
            s[nt][3] = exp2f(s[nt][3] - mn1);
            ps0 += s[nt][0] + s[nt][1];
            ps1 += s[nt][2] + s[nt][3];
        }
        l0 = l0 * c0 + ps0;
        l1 = l1 * c1 + ps1;
#pragma unroll
        for (int dt = 0; dt < DT; dt++) {
            acc[dt][0] *= c0;
            acc[dt][1] *= c0;
            acc[dt][2] *= c1;
            acc[dt][3] *= c1;
        }
        // O += P V: the S accumulators of key n-tiles 2kk, 2kk+1 are P's A fragment
#pragma unroll
        for (int kk = 0; kk < FA_BK / 16; kk++) {
            if (kk * 16 < nk) {   // block-uniform; p is 0 past nk
                uint32_t pa[4];
                pa[0] = mma_pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
                pa[1] = mma_pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
                pa[2] = mma_pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[3] = mma_pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
                // 16-byte aligned rows: KS * 2 bytes and dt * 16 bytes
                const __nv_bfloat16 *vr = Vs + (kk * 16 + (lane & 15)) * KS;
#pragma unroll
                for (int dt = 0; dt < DT; dt++) {
                    uint32_t b0, b1;
                    mma_ldmatrix_x2_trans(b0, b1, vr + dt * 8);
                    mma_bf16_16816(acc[dt], pa, b0, b1);
                }
            }
        }
    }

    // the quad's partial sums -> the row sums
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);

#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int64_t i = q0 + warp * 16 + g + 8 * half;
        if (i >= Lq) continue;
        const float mr = half ? m1 : m0, lr = half ? l1 : l0;
        if (nsplit > 1) {   // this split's partial: m, l, acc
            float *prow = part + (((b * Lq + i) * nh + h) * nsplit + split) * (int64_t)(dh + 2);
            if (t == 0) prow[0] = mr, prow[1] = lr;
#pragma unroll
            for (int dt = 0; dt < DT; dt++) {
                const int d = dt * 8 + 2 * t;
                if (d < dh) prow[2 + d] = acc[dt][2 * half];
                if (d + 1 < dh) prow[3 + d] = acc[dt][2 * half + 1];
            }
        } else {
            float *orow = o + ((b * Lq + i) * nh + h) * (int64_t)dh;
            const float inv = 1.0f / lr;
#pragma unroll
            for (int dt = 0; dt < DT; dt++) {
                const int d = dt * 8 + 2 * t;
                if (d < dh) orow[d] = acc[dt][2 * half] * inv;
                if (d + 1 < dh) orow[d + 1] = acc[dt][2 * half + 1] * inv;
            }
        }
    }
}

template <int DHP, int WARPS, bool KV16>
static void flash_launch(cudaStream_t s, unsigned blocks, float *o, const float *q, int64_t ldq,
                         const void *k, int64_t ldk, const void *v, int64_t ldv, int64_t Lq,
                         int64_t Lk, int nh, int dh, float scale2, int64_t nqb, int nsplit,
                         int64_t kchunk, float *part, int vec) {
    const size_t smem = sizeof(__nv_bfloat16) * 2 * (size_t)FA_BK * (DHP + 8);
    static_assert(sizeof(__nv_bfloat16) * 2 * (size_t)FA_BK * (FA_DHMAX + 8) <= 48 * 1024,
                  "dynamic shared memory within the default 48 KiB");
    flash_attn_kernel<DHP, WARPS, KV16><<<blocks, WARPS * 32, smem, s>>>(
        o, q, ldq, k, ldk, v, ldv, Lq, Lk, nh, dh, scale2, nqb, nsplit, kchunk, part, vec);
}

// KV16 is instantiated for the decoder's head dim only (16: its keys and
// values stored in bf16 by lowrank_expand); cuda_flash_attn_kv16_supported
// says which
template <int WARPS>
static void flash_dispatch(cudaStream_t s, int dhp, int kv16, unsigned blocks, float *o,
                           const float *q, int64_t ldq, const void *k, int64_t ldk,
                           const void *v, int64_t ldv, int64_t Lq, int64_t Lk, int nh, int dh,
                           float scale2, int64_t nqb, int nsplit, int64_t kchunk, float *part,
                           int vec) {
    if (kv16) {
        CHECK_MSG(dhp == 16, "flash attention with bf16 keys: padded head dim %d", dhp);
        flash_launch<16, WARPS, true>(s, blocks, o, q, ldq, k, ldk, v, ldv, Lq, Lk, nh, dh,
                                      scale2, nqb, nsplit, kchunk, part, vec);
        return;
    }
#define FA_CASE(D)                                                                         \
    case D:                                                                                \
        flash_launch<D, WARPS, false>(s, blocks, o, q, ldq, k, ldk, v, ldv, Lq, Lk, nh, dh,  \
                                      scale2, nqb, nsplit, kchunk, part, vec);             \
        break
    switch (dhp) {
        FA_CASE(16);
        FA_CASE(32);
        FA_CASE(48);
        FA_CASE(64);
        FA_CASE(80);
        FA_CASE(96);
        FA_CASE(112);
        FA_CASE(128);
    default:
        CHECK_MSG(0, "flash attention: padded head dim %d", dhp);
    }
#undef FA_CASE
}

extern "C" int cuda_flash_attn_supported(int64_t dh) { return dh > 0 && dh <= FA_DHMAX; }

// flash_run: both entries; kv16: k and v bf16 (esize 2 bytes), else float32
static void flash_run(cudaStream_t s, float *o, const float *q, int64_t ldq, const void *k,
                      int64_t ldk, const void *v, int64_t ldv, int kv16, int64_t B, int64_t Lq,
                      int64_t Lk, int64_t nh, int64_t dh, float scale, float *scratch,
                      int64_t scratch_floats, int num_sms) {
    CHECK(B >= 0 && Lq >= 0 && nh > 0 && dh > 0);
    CHECK_MSG(dh <= FA_DHMAX, "flash attention head dim %lld > %d", (long long)dh, FA_DHMAX);
    CHECK(ldq >= nh * dh && ldk >= nh * dh && ldv >= nh * dh);
    CHECK(nh <= INT32_MAX);
    if (B == 0 || Lq == 0) return;
    CHECK_MSG(Lk > 0, "attention over zero keys");
    const int warps = Lq <= 16 ? 1 : FA_WARPS;
    const int64_t bq = 16 * (int64_t)warps;
    const int64_t nqb = (Lq + bq - 1) / bq;
    /* key split: enough blocks for two per SM (16 when a block is one warp:
     * the decoder's token->image attention, 8 queries per prompt and head
     * over 4096 keys, gave 1024 one-warp blocks, ~8 warps per SM, and ran
     * at ~1.2 TB/s of its K/V reads on an H100), each split >= FA_SPLIT_MIN
     * keys (a multiple of the tile), the partials within the scratch */
    int64_t nsplit = 1, kchunk = Lk;
    const int64_t per_sm = warps == 1 ? 16 : 2;
    const int64_t target = per_sm * (num_sms > 0 ? num_sms : 1), base = B * nh * nqb;
    if (base < target && Lk >= 2 * FA_SPLIT_MIN && scratch) {
        const int64_t want = (target + base - 1) / base, most = Lk / FA_SPLIT_MIN;
        const int64_t fit = scratch_floats / (B * Lq * nh * (dh + 2));
        nsplit = want < most ? want : most;
        if (nsplit > fit) nsplit = fit;
        if (nsplit > 1) {
            kchunk = (Lk + nsplit - 1) / nsplit;
            kchunk = (kchunk + FA_BK - 1) / FA_BK * FA_BK;
            nsplit = (Lk + kchunk - 1) / kchunk;
        }
        if (nsplit < 2) nsplit = 1, kchunk = Lk;
    }
    const int64_t blocks = base * nsplit;
    CHECK(blocks <= INT32_MAX);
    const uintptr_t kva = kv16 ? 8 : 16;   // a group of 4: 8 bytes in bf16, 16 in float32
    const int vec = ((uintptr_t)q % 16 == 0 && (uintptr_t)k % kva == 0 && (uintptr_t)v % kva == 0 &&
                     ldq % 4 == 0 && ldk % 4 == 0 && ldv % 4 == 0 && dh % 4 == 0);
    const int dhp = (int)((dh + 15) / 16 * 16);
    const float scale2 = scale * FA_LOG2E;
    if (warps == 1)
        flash_dispatch<1>(s, dhp, kv16, (unsigned)blocks, o, q, ldq, k, ldk, v, ldv, Lq, Lk,
                          (int)nh, (int)dh, scale2, nqb, (int)nsplit, kchunk, scratch, vec);
    else
        flash_dispatch<FA_WARPS>(s, dhp, kv16, (unsigned)blocks, o, q, ldq, k, ldk, v, ldv, Lq,
                                 Lk, (int)nh, (int)dh, scale2, nqb, (int)nsplit, kchunk, scratch,
                                 vec);
    CUDA_LAUNCH_CHECK();
    if (nsplit > 1) {
        const int64_t n = B * Lq * nh * dh;
        attention_merge_splits<true><<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
            o, scratch, B * Lq * nh, (int)dh, (int)nsplit);
        CUDA_LAUNCH_CHECK();
    }
}

extern "C" void cuda_flash_attn(cudaStream_t s, float *o, const float *q, int64_t ldq,
                                const float *k, int64_t ldk, const float *v, int64_t ldv,
                                int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                                float scale, float *scratch, int64_t scratch_floats,
                                int num_sms) {
    flash_run(s, o, q, ldq, k, ldk, v, ldv, 0, B, Lq, Lk, nh, dh, scale, scratch, scratch_floats,
              num_sms);
}

extern "C" int cuda_flash_attn_kv16_supported(int64_t dh) { return dh > 0 && dh <= 16; }

extern "C" void cuda_flash_attn_kv16(cudaStream_t s, float *o, const float *q, int64_t ldq,
                                     const uint16_t *k, int64_t ldk, const uint16_t *v,
                                     int64_t ldv, int64_t B, int64_t Lq, int64_t Lk, int64_t nh,
                                     int64_t dh, float scale, float *scratch,
                                     int64_t scratch_floats, int num_sms) {
    CHECK_MSG(cuda_flash_attn_kv16_supported(dh), "flash attention with bf16 keys: head dim %lld",
              (long long)dh);
    flash_run(s, o, q, ldq, k, ldk, v, ldv, 1, B, Lq, Lk, nh, dh, scale, scratch, scratch_floats,
              num_sms);
}
