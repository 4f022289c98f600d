/* lowrank_expand.cu: the decoder's low-rank projections, product and
 * affine map fused (backend.h lowrank_expand; bf16 tensor cores).
 *
 * The low-rank decoder (src/decoder.c) writes every image-side projection
 * after layer 0 as z = a * (P . M_b + sa * S) + U per prompt b: P the
 * (HW, K) probabilities (K = 64 or 129), M_b a small (K, N) matrix, S and U
 * (HW, N) shared by all prompts, a and sa per row. Composed, the (n*HW, N)
 * product goes to global memory and is read and written again by the
 * affine map (and, for the first upscaling, by window_unpartition, the
 * LayerNorm and the GELU): about 5 GB per 128 prompts at N = 512. Here it
 * stays in registers: the kernel reads P once and writes z (or the
 * upscaling's GELU output) once.
 *
 * Layout: a block of 8 warps owns 128 consecutive rows of one item; warp
 * w its 16 rows. Each thread loads its A fragments (rows g and g+8 of the
 * warp's 16, the PTX m16n8k16 layout described in flash_attn.cu) straight
 * from P in float32, rounds them to bf16 and keeps all K/16 of them in
 * registers (zero past K and past M). M_b was rounded to bf16 once per call
 * into the backend's workspace, rows K..KP-1 zero (KP = K rounded up to
 * 16), so each 64-column slab of it is copied to shared memory with 16-byte
 * loads; per slab each warp runs 8 n-tiles x KP/16 mma.sync (float32
 * accumulation) and the epilogue applies the affine map in float32 in the
 * order of row_affine. In the LayerNorm mode a slab is one group of 64
 * channels: the quad of lanes that holds a row's 64 values reduces its
 * mean and then its squared deviations by two shuffles each (the two
 * passes of layer_norm_kernel), applies gain, bias and GELU and writes
 * the row's group to its pixel of the 2x2 shuffle.
 *
 * Written without a GPU: run on the emulator (tests/emu) by test_ops
 * against ops_ref_lowrank_expand in bf16 mode, and by the decoder tests.
 */
#include <math.h>
#include <string.h>

#include <cuda_bf16.h>

#include "common.cuh"
#include "mma.cuh"

#define LE_WARPS 8
#define LE_TM    (16 * LE_WARPS)   /* rows per block */
#define LE_SLAB  64                /* columns per slab (and the LayerNorm group) */
#define LE_BLD   (LE_SLAB + 8)     /* shared row stride (bf16): 144 B, ldmatrix conflict-free */
#define LE_KTMAX 10                /* K <= 160 */

static __device__ __forceinline__ float le_gelu(float v) {
    return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
}

// dst (nb, KP, N) bf16 = m (nb items of (K, N), row stride ldm, item stride
// K*ldm) rounded to nearest even, rows K..KP-1 zero
static __global__ void le_weights_kernel(__nv_bfloat16 *dst, const float *m, int64_t ldm,
                                         int64_t nb, int K, int KP, int N) {
    KERN_FOR(i, nb * KP * N) {
        const int64_t item = i / ((int64_t)KP * N);
        const int r = (int)(i / N % KP), c = (int)(i % N);
        dst[i] = __float2bfloat16_rn(r < K ? m[(item * K + r) * ldm + c] : 0.0f);
    }
}

// y: without LN (B*M, N) row stride ldy; with LN (B, 2M/Wg, 2Wg, 64). p
// (B*M, K) row stride ldp; m16 (B, KT*16, N) bf16. Grid: B * ntiles blocks.
// v2: y's float2 stores are aligned (y 8-byte aligned, ldy even or LN).
template <int KT, bool LN>
static __global__ void __launch_bounds__(LE_WARPS * 32)
lowrank_expand_kernel(float *y, int64_t ldy, const float *p, int64_t ldp,
                      const __nv_bfloat16 *m16, const float *a, const float *s, int64_t lds,
                      const float *sa, const float *u, int64_t ldu, const float *lnw,
                      const float *lnb, float eps, int64_t Wg, int64_t M, int K, int N,
                      int64_t ntiles, int v2) {
    constexpr int KP = KT * 16;
    __shared__ __align__(16) __nv_bfloat16 Bs[KP * LE_BLD];
    const int64_t item = (int64_t)blockIdx.x / ntiles, tile = (int64_t)blockIdx.x % ntiles;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;

    int64_t row[2];
    bool in[2];
    float ar[2], sar[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        row[h] = tile * LE_TM + warp * 16 + g + 8 * h;
        in[h] = row[h] < M;
        const int64_t j = item * M + row[h];
        ar[h] = in[h] ? a[j] : 0.0f;
        sar[h] = in[h] && sa ? sa[j] : 1.0f;
    }

    // A fragments, loaded once and kept in registers for every slab:
    // a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] =
    // (g+8, 2t+8..) of each 16x16 k-tile; zero past K and past M. (Reloaded
    // per slab instead, nvcc hoists the loads into the previous epilogue and
    // spills.)
    uint32_t xa[KT][4];
    {
        const float *pr[2];   // this thread's rows of p (row 0 of the item when past M)
#pragma unroll
        for (int h = 0; h < 2; h++) pr[h] = p + (item * M + (in[h] ? row[h] : 0)) * ldp;
#pragma unroll
        for (int kt = 0; kt < KT; kt++)
#pragma unroll
            for (int f = 0; f < 4; f++) {
                const int h = f & 1, c = kt * 16 + 2 * t + 8 * (f >> 1);
                const float v0 = in[h] && c < K ? __ldg(pr[h] + c) : 0.0f;
                const float v1 = in[h] && c + 1 < K ? __ldg(pr[h] + c + 1) : 0.0f;
                xa[kt][f] = mma_pack_bf16x2(v0, v1);
            }
    }
    const __nv_bfloat16 *mb = m16 + item * KP * (int64_t)N;
    for (int c0 = 0; c0 < N; c0 += LE_SLAB) {
        __syncthreads();   // the previous slab is consumed
        for (int idx = tid; idx < KP * (LE_SLAB / 8); idx += LE_WARPS * 32) {
            const int r = idx / (LE_SLAB / 8), ch = idx % (LE_SLAB / 8) * 8;
            *reinterpret_cast<uint4 *>(Bs + r * LE_BLD + ch) =
                *reinterpret_cast<const uint4 *>(mb + (int64_t)r * N + c0 + ch);
        }
        __syncthreads();

        float acc[LE_SLAB / 8][4];
#pragma unroll
        for (int nt = 0; nt < LE_SLAB / 8; nt++) {
            acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
#pragma unroll
            for (int kt = 0; kt < KT; kt++) {
                uint32_t b0, b1;   // k rows kt*16 + (lane & 15), columns nt*8..+7
                mma_ldmatrix_x2_trans(b0, b1, Bs + (kt * 16 + (lane & 15)) * LE_BLD + nt * 8);
                mma_bf16_16816(acc[nt], xa[kt], b0, b1);
            }
        }

        // the affine map, as row_affine: a * (x + sa * s) + u; thread holds
        // columns c0 + nt*8 + 2t + e of rows g (h = 0) and g + 8 (h = 1)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const float *sr = s && in[h] ? s + row[h] * lds + c0 : NULL;
            const float *ur = u && in[h] ? u + row[h] * ldu + c0 : NULL;
#pragma unroll
            for (int nt = 0; nt < LE_SLAB / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int c = nt * 8 + 2 * t + e;
                    float v = acc[nt][2 * h + e];
                    if (sr) v += sar[h] * __ldg(sr + c);
                    v = ar[h] * v;
                    if (ur) v += __ldg(ur + c);
                    acc[nt][2 * h + e] = v;
                }
        }

        if (!LN) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                if (!in[h]) continue;
                float *yr = y + (item * M + row[h]) * ldy + c0;
#pragma unroll
                for (int nt = 0; nt < LE_SLAB / 8; nt++) {
                    const int c = nt * 8 + 2 * t;
                    if (v2) {
                        *reinterpret_cast<float2 *>(yr + c) =
                            make_float2(acc[nt][2 * h], acc[nt][2 * h + 1]);
                    } else {
                        yr[c] = acc[nt][2 * h];
                        yr[c + 1] = acc[nt][2 * h + 1];
                    }
                }
            }
            continue;
        }

        // LayerNorm over the slab's 64 columns of each row: the quad's lanes
        // (t = 0..3) hold 16 each; mean first, then the squared deviations
        const int q = c0 / LE_SLAB, dy = q >> 1, dx = q & 1;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < LE_SLAB / 8; nt++) sum += acc[nt][2 * h] + acc[nt][2 * h + 1];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float mean = sum / (float)LE_SLAB;
            float var = 0.0f;
#pragma unroll
            for (int nt = 0; nt < LE_SLAB / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float d = acc[nt][2 * h + e] - mean;
                    var += d * d;
                }
            var += __shfl_xor_sync(0xffffffffu, var, 1);
            var += __shfl_xor_sync(0xffffffffu, var, 2);
            const float rstd = 1.0f / sqrtf(var / (float)LE_SLAB + eps);
            if (!in[h]) continue;
            const int64_t Hg = M / Wg, py = row[h] / Wg, px = row[h] % Wg;
            float *yr = y + ((item * 2 * Hg + 2 * py + dy) * 2 * Wg + 2 * px + dx) * LE_SLAB;
#pragma unroll
            for (int nt = 0; nt < LE_SLAB / 8; nt++) {
                const int c = nt * 8 + 2 * t;
                const float o0 = le_gelu((acc[nt][2 * h] - mean) * rstd * __ldg(lnw + c) +
                                         __ldg(lnb + c));
                const float o1 = le_gelu((acc[nt][2 * h + 1] - mean) * rstd * __ldg(lnw + c + 1) +
                                         __ldg(lnb + c + 1));
                if (v2) {
                    *reinterpret_cast<float2 *>(yr + c) = make_float2(o0, o1);
                } else {
                    yr[c] = o0;
                    yr[c + 1] = o1;
                }
            }
        }
    }
}

template <int KT>
static void le_launch(cudaStream_t st, unsigned blocks, bool ln, float *y, int64_t ldy,
                      const float *p, int64_t ldp, const __nv_bfloat16 *m16, const float *a,
                      const float *s, int64_t lds, const float *sa, const float *u, int64_t ldu,
                      const float *lnw, const float *lnb, float eps, int64_t Wg, int64_t M,
                      int K, int N, int64_t ntiles, int v2) {
    if (ln)
        lowrank_expand_kernel<KT, true><<<blocks, LE_WARPS * 32, 0, st>>>(
            y, ldy, p, ldp, m16, a, s, lds, sa, u, ldu, lnw, lnb, eps, Wg, M, K, N, ntiles, v2);
    else
        lowrank_expand_kernel<KT, false><<<blocks, LE_WARPS * 32, 0, st>>>(
            y, ldy, p, ldp, m16, a, s, lds, sa, u, ldu, lnw, lnb, eps, Wg, M, K, N, ntiles, v2);
}

extern "C" int cuda_lowrank_expand(cudaStream_t st, uint16_t *ws, size_t ws_bytes, float *y,
                                   int64_t ldy, const float *p, int64_t ldp, const float *m,
                                   int64_t ldm, const float *a, const float *s, int64_t lds,
                                   const float *sa, const float *u, int64_t ldu,
                                   const float *lnw, const float *lnb, float eps, int64_t Wg,
                                   int64_t B, int64_t M, int64_t K, int64_t N) {
    const int ln = lnw != NULL;
    if (K < 1 || K > 16 * LE_KTMAX || N < LE_SLAB || N % LE_SLAB || N > (1 << 20) ||
        ldp < K || ldm < N || !ws)
        return -1;
    if (ln ? N != 4 * LE_SLAB || !lnb || Wg < 1 || M % Wg : ldy < N) return -1;
    CHECK(B >= 0 && M >= 0 && y && p && m && a);
    if (B == 0 || M == 0) return 0;
    const int KT = (int)((K + 15) / 16), KP = 16 * KT;
    const int64_t per = (int64_t)KP * N, cap = (int64_t)(ws_bytes / sizeof(uint16_t));
    const int64_t ntiles = (M + LE_TM - 1) / LE_TM;
    int64_t items = cap / per;
    if (items > INT32_MAX / ntiles) items = INT32_MAX / ntiles;
    if (items < 1) return -1;
    const int v2 = ((uintptr_t)y % 8 == 0) && (ln || ldy % 2 == 0);
    const int64_t ystride = ln ? M * N : M * ldy;   // one item of y, in floats
    __nv_bfloat16 *m16 = reinterpret_cast<__nv_bfloat16 *>(ws);
    for (int64_t b0 = 0; b0 < B; b0 += items) {
        const int64_t nb = B - b0 < items ? B - b0 : items;
        le_weights_kernel<<<kern_grid(nb * per, KERN_THREADS), KERN_THREADS, 0, st>>>(
            m16, m + b0 * K * ldm, ldm, nb, (int)K, KP, (int)N);
        CUDA_LAUNCH_CHECK();
        const unsigned blocks = (unsigned)(nb * ntiles);
        float *yb = y + b0 * ystride;
        const float *pb = p + b0 * M * ldp, *ab = a + b0 * M, *sab = sa ? sa + b0 * M : NULL;
#define LE_CASE(KTV)                                                                        \
    case KTV:                                                                               \
        le_launch<KTV>(st, blocks, ln, yb, ldy, pb, ldp, m16, ab, s, lds, sab, u, ldu, lnw, \
                       lnb, eps, Wg, M, (int)K, (int)N, ntiles, v2);                        \
        break
        switch (KT) {
            LE_CASE(1);
            LE_CASE(2);
            LE_CASE(3);
            LE_CASE(4);
            LE_CASE(5);
            LE_CASE(6);
            LE_CASE(7);
            LE_CASE(8);
            LE_CASE(9);
            LE_CASE(10);
        }
#undef LE_CASE
        CUDA_LAUNCH_CHECK();
    }
    return 0;
}
