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
 * The same kernel, with an epilogue of its own, computes lowrank_rstd's
 * quadratic term: P . (B B^T) per row dotted with P again (and the 2 si e
 * term), summed in double as rstd_kernel, so that (n*HW, r) product is not
 * stored either (cuda_lowrank_rstd_gram).
 *
 * Registers (nvcc 13, sm_90): 128-184 per thread, no spills, so one block
 * of 8 warps per SM; reloading the A fragments per slab instead made nvcc
 * spill. Occupancy is the first thing to look at on a GPU.
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
#define LE_KTMIN 4                 /* K > 48 ... */
#define LE_KTMAX 10                /* ... and K <= 160: the decoder's r = 8T (T >= 8 tokens
                                      with a point) and q = 2r + 1 up to 160; other K decline */
#define LE_KTLN  9                 /* the LayerNorm mode: K > 128 (layer 1's q) */

// dst (nb, KP, NP) bf16 = m (nb items of (K, N), row stride ldm, item
// stride sm) rounded to nearest even; rows K..KP-1 and columns N..NP-1 zero
static __global__ void le_weights_kernel(__nv_bfloat16 *dst, const float *m, int64_t ldm,
                                         int64_t sm, int64_t nb, int K, int KP, int N, int NP) {
    KERN_FOR(i, nb * KP * NP) {
        const int64_t item = i / ((int64_t)KP * NP);
        const int r = (int)(i / NP % KP), c = (int)(i % NP);
        dst[i] = __float2bfloat16_rn(r < K && c < N ? m[item * sm + r * ldm + c] : 0.0f);
    }
}

enum { LE_AFFINE = 0, LE_LN = 1, LE_GRAM = 2 };

// the kernel's arguments (one item range of a call)
struct le_args {
    float *y;               // AFFINE (B*M, N) row stride ldy; LN (B, 2M/Wg, 2Wg, 64); GRAM rstd (B*M)
    int64_t ldy;
    const float *p;         // (B*M, K) row stride ldp
    int64_t ldp;
    const __nv_bfloat16 *m16;   // (B, KP, NP) bf16
    const float *a, *s;     // AFFINE/LN: a (B*M), s (M, lds) or NULL; GRAM: s the row scale (B*M) or NULL
    int64_t lds;
    const float *sa, *u;    // sa (B*M) or NULL, u (M, ldu) or NULL
    int64_t ldu;
    const float *lnw, *lnb; // LN gain and bias (64)
    float eps;
    int64_t Wg, M, ntiles;
    int K, N, v2;           // N: m16's columns (GRAM: K rounded up to a slab, zero past K)
    int y16;                // AFFINE: y holds bf16 values (ldy in bf16 elements)
    const float *e, *xx;    // GRAM: e (B*M, K) contiguous, xx (M)
    double C;               // GRAM: the LayerNorm width
};

// Grid: B * ntiles blocks (items of this pass). MODE: LE_AFFINE, LE_LN,
// LE_GRAM (see cuda_lowrank_rstd_gram).
template <int KT, int MODE>
static __global__ void __launch_bounds__(LE_WARPS * 32) lowrank_expand_kernel(const le_args A) {
    float *y = A.y;
    const int64_t ldy = A.ldy, ldp = A.ldp, lds = A.lds, ldu = A.ldu, Wg = A.Wg, M = A.M;
    const float *p = A.p, *a = A.a, *s = A.s, *sa = A.sa, *u = A.u, *lnw = A.lnw, *lnb = A.lnb;
    const __nv_bfloat16 *m16 = A.m16;
    const float eps = A.eps;
    const int K = A.K, N = A.N;
    const int64_t ntiles = A.ntiles;
    const int v2 = A.v2;
    constexpr bool LN = MODE == LE_LN;
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
        if (MODE == LE_GRAM) {   // ar: the row scale si of lowrank_rstd
            ar[h] = in[h] && s ? s[j] : 1.0f;
            sar[h] = 0.0f;
        } else {
            ar[h] = in[h] ? a[j] : 0.0f;
            sar[h] = in[h] && sa ? sa[j] : 1.0f;
        }
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
    double gram[2] = {0.0, 0.0};   // LE_GRAM: sum_c p[row,c] (2 si e[row,c] + (p.BB)[row,c])
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

        if constexpr (MODE == LE_GRAM) {   // as rstd_kernel: double terms of float pg
#pragma unroll
            for (int h = 0; h < 2; h++) {
                if (!in[h]) continue;
                const float *pr = p + (item * M + row[h]) * ldp;
                const float *er = A.e + (item * M + row[h]) * K;
#pragma unroll
                for (int nt = 0; nt < LE_SLAB / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int c = c0 + nt * 8 + 2 * t + e;
                        if (c < K)
                            gram[h] += (double)__ldg(pr + c) *
                                       (2.0 * ar[h] * __ldg(er + c) + acc[nt][2 * h + e]);
                    }
            }
        } else {
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

            if constexpr (!LN) {
                if (A.y16) {   // rounded once, to nearest even, as a bf16 GEMM operand would be
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        if (!in[h]) continue;
                        __nv_bfloat16 *yr =
                            reinterpret_cast<__nv_bfloat16 *>(y) + (item * M + row[h]) * ldy + c0;
#pragma unroll
                        for (int nt = 0; nt < LE_SLAB / 8; nt++) {
                            const int c = nt * 8 + 2 * t;
                            if (v2) {
                                *reinterpret_cast<uint32_t *>(yr + c) =
                                    mma_pack_bf16x2(acc[nt][2 * h], acc[nt][2 * h + 1]);
                            } else {
                                yr[c] = __float2bfloat16_rn(acc[nt][2 * h]);
                                yr[c + 1] = __float2bfloat16_rn(acc[nt][2 * h + 1]);
                            }
                        }
                    }
                    continue;   // the next slab
                }
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
            } else {
                // LayerNorm over the slab's 64 columns of each row: the
                // quad's lanes (t = 0..3) hold 16 each; mean first, then the
                // squared deviations
                const int q = c0 / LE_SLAB, dy = q >> 1, dx = q & 1;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    float sum = 0.0f;
#pragma unroll
                    for (int nt = 0; nt < LE_SLAB / 8; nt++)
                        sum += acc[nt][2 * h] + acc[nt][2 * h + 1];
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
                    float *yr =
                        y + ((item * 2 * Hg + 2 * py + dy) * 2 * Wg + 2 * px + dx) * LE_SLAB;
#pragma unroll
                    for (int nt = 0; nt < LE_SLAB / 8; nt++) {
                        const int c = nt * 8 + 2 * t;
                        const float o0 = kern_gelu((acc[nt][2 * h] - mean) * rstd *
                                                     __ldg(lnw + c) + __ldg(lnb + c));
                        const float o1 = kern_gelu((acc[nt][2 * h + 1] - mean) * rstd *
                                                     __ldg(lnw + c + 1) + __ldg(lnb + c + 1));
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
    }
    if constexpr (MODE == LE_GRAM) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            double g2 = gram[h];
            g2 += __shfl_xor_sync(0xffffffffu, g2, 1);
            g2 += __shfl_xor_sync(0xffffffffu, g2, 2);
            if (t == 0 && in[h]) {
                const double si = ar[h];
                const double var = (si * si * A.xx[row[h]] + g2) / A.C;
                y[item * M + row[h]] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps));
            }
        }
    }
}

// the instantiations are the decoder's shapes only (each is ~0.25 MB of
// sm_80 + sm_90 code and PTX; the GPU bundle must fit the device tool's
// transfer): KT LE_KTMIN..LE_KTMAX, the LayerNorm mode from LE_KTLN
template <int KT>
static void le_launch(cudaStream_t st, unsigned blocks, int mode, const le_args &A) {
    if (mode == LE_GRAM) {
        lowrank_expand_kernel<KT, LE_GRAM><<<blocks, LE_WARPS * 32, 0, st>>>(A);
    } else if (mode == LE_LN) {
        if constexpr (KT >= LE_KTLN)
            lowrank_expand_kernel<KT, LE_LN><<<blocks, LE_WARPS * 32, 0, st>>>(A);
        else
            CHECK_MSG(0, "lowrank_expand: LayerNorm mode at K <= %d", 16 * (LE_KTLN - 1));
    } else {
        lowrank_expand_kernel<KT, LE_AFFINE><<<blocks, LE_WARPS * 32, 0, st>>>(A);
    }
}

// le_run: the weights' bf16 copy and the kernel, in passes of as many items
// as ws holds; A's item-dependent pointers are those of item 0, sm m's item
// stride, ystride y's (in y's elements: floats, or bf16 with A.y16). -1
// when one item does not fit ws.
static int le_run(cudaStream_t st, uint16_t *ws, size_t ws_bytes, int mode, le_args A,
                  const float *m, int64_t ldm, int64_t sm, int64_t ystride, int64_t B) {
    const int K = A.K, KT = (K + 15) / 16, KP = 16 * KT;
    const int NP = A.N;
    const int64_t per = (int64_t)KP * NP, cap = (int64_t)(ws_bytes / sizeof(uint16_t));
    A.ntiles = (A.M + LE_TM - 1) / LE_TM;
    int64_t items = cap / per;
    if (items > INT32_MAX / A.ntiles) items = INT32_MAX / A.ntiles;
    if (items < 1) return -1;
    __nv_bfloat16 *m16 = reinterpret_cast<__nv_bfloat16 *>(ws);
    A.m16 = m16;
    const le_args A0 = A;
    for (int64_t b0 = 0; b0 < B; b0 += items) {
        const int64_t nb = B - b0 < items ? B - b0 : items, rows = b0 * A0.M;
        le_weights_kernel<<<kern_grid(nb * per, KERN_THREADS), KERN_THREADS, 0, st>>>(
            m16, m + b0 * sm, ldm, sm, nb, K, KP, mode == LE_GRAM ? K : NP, NP);
        CUDA_LAUNCH_CHECK();
        // y's item stride in its elements (bf16 when y16); A.y only
        // carries a bf16 y (2-byte aligned, v2 0 where not 4), so not a
        // reinterpret_cast (tests/emu checks those for the pointee's alignment)
        A.y = A0.y16 ? (float *)(void *)(reinterpret_cast<__nv_bfloat16 *>(A0.y) + b0 * ystride)
                     : A0.y + b0 * ystride;
        A.p = A0.p + rows * A0.ldp;
        if (A0.a) A.a = A0.a + rows;
        if (A0.sa) A.sa = A0.sa + rows;
        if (mode == LE_GRAM) {
            if (A0.s) A.s = A0.s + rows;
            A.e = A0.e + rows * K;
        }
        const unsigned blocks = (unsigned)(nb * A0.ntiles);
#define LE_CASE(KTV)                              \
    case KTV:                                     \
        le_launch<KTV>(st, blocks, mode, A);      \
        break
        switch (KT) {
            LE_CASE(4);
            LE_CASE(5);
            LE_CASE(6);
            LE_CASE(7);
            LE_CASE(8);
            LE_CASE(9);
            LE_CASE(10);
        default:
            CHECK_MSG(0, "lowrank_expand: K %d outside its instantiations", K);
        }
#undef LE_CASE
        CUDA_LAUNCH_CHECK();
    }
    return 0;
}

extern "C" int cuda_lowrank_expand(cudaStream_t st, uint16_t *ws, size_t ws_bytes, float *y,
                                   int64_t ldy, const float *p, int64_t ldp, const float *m,
                                   int64_t ldm, const float *a, const float *s, int64_t lds,
                                   const float *sa, const float *u, int64_t ldu,
                                   const float *lnw, const float *lnb, float eps, int64_t Wg,
                                   int64_t B, int64_t M, int64_t K, int64_t N, int y16) {
    const int ln = lnw != NULL;
    if (ln && y16) return -1;   // the LayerNorm mode writes float32 only
    if (K <= 16 * (LE_KTMIN - 1) || K > 16 * LE_KTMAX || N < LE_SLAB || N % LE_SLAB ||
        N > (1 << 20) || ldp < K || ldm < N || !ws)
        return -1;
    if (ln ? N != 4 * LE_SLAB || !lnb || Wg < 1 || M % Wg || K <= 16 * (LE_KTLN - 1) : ldy < N)
        return -1;
    CHECK(B >= 0 && M >= 0 && y && p && m && a);
    if (B == 0 || M == 0) return 0;
    le_args A;
    memset(&A, 0, sizeof A);
    A.y = y, A.ldy = ldy, A.p = p, A.ldp = ldp, A.a = a, A.s = s, A.lds = lds, A.sa = sa;
    A.u = u, A.ldu = ldu, A.lnw = lnw, A.lnb = lnb, A.eps = eps, A.Wg = Wg, A.M = M;
    A.K = (int)K, A.N = (int)N;
    A.y16 = y16 != 0;
    A.v2 = ((uintptr_t)y % (y16 ? 4 : 8) == 0) && (ln || ldy % 2 == 0);
    return le_run(st, ws, ws_bytes, ln ? LE_LN : LE_AFFINE, A, m, ldm, K * ldm,
                  ln ? M * N : M * ldy, B);
}

extern "C" int cuda_lowrank_rstd_gram(cudaStream_t st, uint16_t *ws, size_t ws_bytes,
                                      float *rstd, const float *xx, const float *sc,
                                      const float *p, int64_t ldp, const float *e,
                                      const float *bb, int64_t B, int64_t Mx, int64_t r,
                                      int64_t C, float eps) {
    if (r <= 16 * (LE_KTMIN - 1) || r > 16 * LE_KTMAX || ldp < r || C < 1 || !ws) return -1;
    CHECK(B >= 0 && Mx >= 0 && rstd && xx && p && e && bb);
    if (B == 0 || Mx == 0) return 0;
    le_args A;
    memset(&A, 0, sizeof A);
    A.y = rstd, A.p = p, A.ldp = ldp, A.s = sc, A.e = e, A.xx = xx, A.C = (double)C;
    A.eps = eps, A.M = Mx, A.K = (int)r, A.N = (int)((r + LE_SLAB - 1) / LE_SLAB * LE_SLAB);
    return le_run(st, ws, ws_bytes, LE_GRAM, A, bb, r, r * r, Mx, B);
}
