/* upscale_tail.cu: the mask decoder's per-prompt tail, fused (backend.h
 * upscale2_masks).
 *
 * After the two-way transformer each prompt still runs a 2x2 stride-2
 * transposed conv to (2H,2W,Cout) = (256,256,32), adds the bias and the
 * high-res skip features, applies GELU and contracts the 32 channels with
 * its nm (3-4) hypernetwork vectors. Unfused, the (n,256,256,32) map goes
 * to global memory and back twice (8 MiB per prompt, 8 GiB at 1024
 * prompts); here it lives only in registers: a kernel reads x once and
 * writes only the nm logits per output pixel.
 *
 * A transposed 2x2/2 conv is a GEMM per input pixel: the row x[p,i,j,:]
 * (Cin) times w viewed as (Cin, Cout*4), column c*4 + dy*2 + dx giving
 * output pixel (2i+dy, 2j+dx), channel c.
 *
 * bf16 kernel (Cin % 16 == 0, Cin <= 64, Cout == 32, nm <= 4): a block of
 * 4 warps owns a tile of 64 consecutive input pixels (row-major over H x W)
 * and loops over a group of prompts, so w (bf16, in shared memory) is
 * loaded once per block and the tile's skip features stay in L1 across the
 * prompts. Per prompt the x tile is rounded to bf16 in shared memory and
 * each warp computes its 16 pixels x 128 columns with mma.sync.m16n8k16
 * (float32 accumulation; A fragments by 32-bit loads, B by
 * ldmatrix.x2.trans from w's (Cin, 128) rows, the layouts described in
 * flash_attn.cu). In the accumulator of n-tile nt, thread (g = lane/4,
 * t = lane%4) holds columns nt*8 + 2t + e (e = 0, 1), i.e. channel
 * c = 2nt + t/2 at dy = t&1, dx = e, for pixel rows g and g+8: each thread
 * has 16 of the 32 channels of 4 output pixels, and lane t^2 the other 16.
 * Bias, skip, GELU (erff) and the nm dot products run in float32 in
 * registers; one shuffle adds the two halves and lanes t < 2 write.
 *
 * float32 kernel (Cout == 32, Cin <= 64, any nm: the fp32 mode, and the
 * bf16 mode's fallback): the same tiles and prompt groups; w sits in shared
 * memory as (phase, ci, c) so that warp w (phase w) reads one float4 of w
 * for 4 FMAs as a broadcast, and lane l owns input pixel l of the 32-pixel
 * tile, its output pixel of that phase and all 32 channels in registers
 * (x from shared memory, row stride Cin + 1: conflict-free). Epilogue per
 * thread: bias, skip (float4 rows), GELU, then each mask's 32-term dot.
 *
 * Generic kernel (any other shape; tests and small configs): one thread per
 * output pixel and prompt, x and w read through the read-only cache, masks
 * in chunks of 4 (the conv is recomputed per chunk when nm > 4).
 *
 * Written without a GPU: checked on the first GPU run by bench_cuda (check
 * rows against the unfused reference) and test_ops.
 */
#include <math.h>
#include <string.h>

#include <cuda_bf16.h>

#include "common.cuh"
#include "mma.cuh"

#define UT_TM    64   /* input pixels per tile (16 per warp) */
#define UT_WARPS 4
#define UT_COUT  32   /* the bf16 kernel's Cout: 4*32 = 128 GEMM columns */
#define UT_N     (4 * UT_COUT)
#define UT_CINMAX 64
#define UT_NM    4    /* masks per pass */
#define UT_GRID  2048 /* blocks the prompt groups are sized for */

// masks (n,nm,2H,2W); x (n,H,W,Cin); w (Cin,UT_COUT,2,2); b (UT_COUT); skip
// (2H,2W,UT_COUT) or NULL; hyper (n,nm,UT_COUT). Grid: ntiles * ngroups
// blocks; block (tile, group) runs prompts [group*ppb, +ppb) on input pixels
// [tile*UT_TM, +UT_TM). vec: x rows 16-byte aligned (Cin % 4 == 0 always).
template <int CIN>
static __global__ void __launch_bounds__(UT_WARPS * 32)
upscale2_masks_bf16_kernel(float *masks, const float *x, const float *w, const float *b,
                           const float *skip, const float *hyper, int64_t n, int64_t H,
                           int64_t W, int nm, int64_t ntiles, int64_t ppb, int vec) {
    constexpr int XS = CIN + 8;      // x tile row stride (bf16): 4 mod 8 words
    constexpr int WS = UT_N + 8;     // w row stride (bf16): 68 words, 4 mod 8
    constexpr int KT = CIN / 16;
    __shared__ __align__(16) __nv_bfloat16 Xs[UT_TM * XS];   // (pixel, ci)
    __shared__ __align__(16) __nv_bfloat16 Ws[CIN * WS];     // (ci, c*4 + phase)
    __shared__ float Hs[UT_NM * UT_COUT];                     // hyper[p] (nm, Cout)
    __shared__ float Bs[UT_COUT];

    const int64_t tile = (int64_t)blockIdx.x % ntiles, group = (int64_t)blockIdx.x / ntiles;
    const int64_t HW = H * W, m0 = tile * UT_TM;
    const int64_t pbeg = group * ppb, pend = pbeg + ppb < n ? pbeg + ppb : n;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t H2 = 2 * H, W2 = 2 * W;

    for (int idx = tid; idx < CIN * UT_N / 2; idx += UT_WARPS * 32) {   // pairs of columns
        const int ci = idx / (UT_N / 2), j = idx % (UT_N / 2) * 2;
        const float2 v = __ldg(reinterpret_cast<const float2 *>(w + (int64_t)ci * UT_N + j));
        *reinterpret_cast<uint32_t *>(Ws + ci * WS + j) = mma_pack_bf16x2(v.x, v.y);
    }
    if (tid < UT_COUT) Bs[tid] = b[tid];

    // this thread's pixels (rows g, g+8 of its warp) and output positions
    int64_t pix[2];
    bool pin[2];
#pragma unroll
    for (int half = 0; half < 2; half++) {
        pix[half] = m0 + warp * 16 + g + 8 * half;
        pin[half] = pix[half] < HW;
    }

    for (int64_t p = pbeg; p < pend; p++) {
        __syncthreads();   // the previous prompt's tile and hyper are consumed
        const float *xp = x + p * HW * CIN;
        for (int idx = tid; idx < UT_TM * (CIN / 4); idx += UT_WARPS * 32) {
            const int r = idx / (CIN / 4), c = idx % (CIN / 4) * 4;
            const int64_t m = m0 + r;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (m < HW) {
                const float *src = xp + m * CIN + c;
                if (vec) {
                    v = __ldg(reinterpret_cast<const float4 *>(src));
                } else {
                    v.x = __ldg(src);
                    v.y = __ldg(src + 1);
                    v.z = __ldg(src + 2);
                    v.w = __ldg(src + 3);
                }
            }
            uint2 u;
            u.x = mma_pack_bf16x2(v.x, v.y);
            u.y = mma_pack_bf16x2(v.z, v.w);
            *reinterpret_cast<uint2 *>(Xs + r * XS + c) = u;   // 8-byte aligned
        }
        for (int idx = tid; idx < nm * UT_COUT; idx += UT_WARPS * 32)
            Hs[idx] = hyper[p * nm * UT_COUT + idx];
        __syncthreads();

        uint32_t xa[KT][4];
        {
            const __nv_bfloat16 *r0 = Xs + (warp * 16 + g) * XS + 2 * t;
            const __nv_bfloat16 *r1 = r0 + 8 * XS;
#pragma unroll
            for (int kt = 0; kt < KT; kt++) {
                xa[kt][0] = *reinterpret_cast<const uint32_t *>(r0 + kt * 16);
                xa[kt][1] = *reinterpret_cast<const uint32_t *>(r1 + kt * 16);
                xa[kt][2] = *reinterpret_cast<const uint32_t *>(r0 + kt * 16 + 8);
                xa[kt][3] = *reinterpret_cast<const uint32_t *>(r1 + kt * 16 + 8);
            }
        }
        float acc[UT_N / 8][4];
#pragma unroll
        for (int nt = 0; nt < UT_N / 8; nt++) {
            acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
#pragma unroll
            for (int kt = 0; kt < KT; kt++) {
                uint32_t b0, b1;   // rows kt*16 + (lane & 15), 8 columns from nt*8 (16 B aligned)
                mma_ldmatrix_x2_trans(b0, b1, Ws + (kt * 16 + (lane & 15)) * WS + nt * 8);
                mma_bf16_16816(acc[nt], xa[kt], b0, b1);
            }
        }

        // epilogue: 2 pixel rows x 2 dx; channels c = 2nt + t/2 at dy = t&1
        const int dy = t & 1, cpar = t >> 1;
        float part[2][2][UT_NM];
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int64_t i = pix[half] / W, jx = pix[half] % W;
#pragma unroll
            for (int e = 0; e < 2; e++) {
#pragma unroll
                for (int mm = 0; mm < UT_NM; mm++) part[half][e][mm] = 0.0f;
                if (!pin[half]) continue;
                const float *sk = skip ? skip + ((2 * i + dy) * W2 + 2 * jx + e) * UT_COUT : NULL;
#pragma unroll
                for (int nt = 0; nt < UT_N / 8; nt++) {
                    const int c = 2 * nt + cpar;
                    float v = acc[nt][2 * half + e] + Bs[c];
                    if (sk) v += __ldg(sk + c);
                    const float gv = kern_gelu(v);
#pragma unroll
                    for (int mm = 0; mm < UT_NM; mm++)
                        if (mm < nm) part[half][e][mm] += Hs[mm * UT_COUT + c] * gv;
                }
            }
        }
        // lanes t and t^2 hold the two channel halves of the same pixels
#pragma unroll
        for (int half = 0; half < 2; half++)
#pragma unroll
            for (int e = 0; e < 2; e++)
#pragma unroll
                for (int mm = 0; mm < UT_NM; mm++)
                    part[half][e][mm] += __shfl_xor_sync(0xffffffffu, part[half][e][mm], 2);
        if (cpar == 0) {
#pragma unroll
            for (int half = 0; half < 2; half++) {
                if (!pin[half]) continue;
                const int64_t i = pix[half] / W, jx = pix[half] % W;
#pragma unroll
                for (int mm = 0; mm < UT_NM; mm++) {
                    if (mm >= nm) break;
                    float *out = masks + ((p * nm + mm) * H2 + 2 * i + dy) * W2 + 2 * jx;
                    out[0] = part[half][0][mm];
                    out[1] = part[half][1][mm];
                }
            }
        }
    }
}

// the float32 kernel for Cout == UT_COUT, Cin <= UT_CINMAX: grid ntiles *
// ngroups as in the bf16 kernel, tiles of UT_TF input pixels, one warp per
// phase (dy, dx) = (warp / 2, warp % 2), lane = pixel.
#define UT_TF 32
static __global__ void __launch_bounds__(4 * UT_TF)
upscale2_masks_f32_tiled_kernel(float *masks, const float *x, const float *w, const float *b,
                                const float *skip, const float *hyper, int64_t n, int64_t H,
                                int64_t W, int Cin, int64_t nm, int64_t ntiles, int64_t ppb) {
    __shared__ __align__(16) float Wf[4 * UT_CINMAX * UT_COUT];   // (phase, ci, c)
    __shared__ float Xf[UT_TF * (UT_CINMAX + 1)];                  // (pixel, ci), stride Cin+1
    __shared__ float Bf[UT_COUT];

    const int64_t tile = (int64_t)blockIdx.x % ntiles, group = (int64_t)blockIdx.x / ntiles;
    const int64_t HW = H * W, m0 = tile * UT_TF;
    const int64_t pbeg = group * ppb, pend = pbeg + ppb < n ? pbeg + ppb : n;
    const int tid = threadIdx.x, lane = tid & 31, ph = tid >> 5;
    const int XS = Cin + 1;
    const int64_t H2 = 2 * H, W2 = 2 * W;

    for (int idx = tid; idx < Cin * UT_COUT * 4; idx += 4 * UT_TF) {   // w (ci, c, phase)
        const int ci = idx / (UT_COUT * 4), c = idx / 4 % UT_COUT, q = idx % 4;
        Wf[(q * Cin + ci) * UT_COUT + c] = w[idx];
    }
    if (tid < UT_COUT) Bf[tid] = b[tid];

    const int64_t pix = m0 + lane;
    const bool pin = pix < HW;
    const int64_t i = pix / W, jx = pix % W;
    const int dy = ph >> 1, dx = ph & 1;
    const int64_t Y = 2 * i + dy, X = 2 * jx + dx;

    for (int64_t p = pbeg; p < pend; p++) {
        __syncthreads();   // the previous prompt's x tile is consumed
        const float *xp = x + p * HW * Cin;
        for (int idx = tid; idx < UT_TF * Cin; idx += 4 * UT_TF) {
            const int r = idx / Cin, ci = idx % Cin;
            Xf[r * XS + ci] = m0 + r < HW ? __ldg(xp + (m0 + r) * Cin + ci) : 0.0f;
        }
        __syncthreads();
        if (!pin) continue;   // no barrier follows in this iteration
        float acc[UT_COUT];
#pragma unroll
        for (int c = 0; c < UT_COUT; c++) acc[c] = 0.0f;
        const float *xr = Xf + lane * XS;
        const float4 *wp = reinterpret_cast<const float4 *>(Wf + ph * Cin * UT_COUT);
        for (int ci = 0; ci < Cin; ci++) {
            const float xv = xr[ci];
#pragma unroll
            for (int c4 = 0; c4 < UT_COUT / 4; c4++) {
                const float4 wv = wp[ci * (UT_COUT / 4) + c4];
                acc[4 * c4 + 0] += xv * wv.x;
                acc[4 * c4 + 1] += xv * wv.y;
                acc[4 * c4 + 2] += xv * wv.z;
                acc[4 * c4 + 3] += xv * wv.w;
            }
        }
        const float *sk = skip ? skip + (Y * W2 + X) * UT_COUT : NULL;
#pragma unroll
        for (int c = 0; c < UT_COUT; c++) {
            float v = acc[c] + Bf[c];
            if (sk) v += __ldg(sk + c);
            acc[c] = kern_gelu(v);
        }
        const float *hp = hyper + p * nm * UT_COUT;
        float *out = masks + (p * nm * H2 + Y) * W2 + X;
        for (int64_t mm = 0; mm < nm; mm++) {
            float sum = 0.0f;
#pragma unroll
            for (int c = 0; c < UT_COUT; c++) sum += __ldg(hp + mm * UT_COUT + c) * acc[c];
            out[mm * H2 * W2] = sum;
        }
    }
}

// the same op in float32 for any shape: one thread per output pixel of one
// prompt, masks [m0, m0 + UT_NM) of nm
static __global__ void upscale2_masks_f32_kernel(float *masks, const float *x, const float *w,
                                                 const float *b, const float *skip,
                                                 const float *hyper, int64_t n, int64_t H,
                                                 int64_t W, int64_t Cin, int64_t Cout,
                                                 int64_t nm) {
    const int64_t H2 = 2 * H, W2 = 2 * W, npix = H2 * W2;
    KERN_FOR(idx, n * npix) {
        const int64_t p = idx / npix, r = idx % npix;
        const int64_t Y = r / W2, X = r % W2;
        const int ph = (int)((Y & 1) * 2 + (X & 1));
        const float *xr = x + ((p * H + Y / 2) * W + X / 2) * Cin;
        const float *sk = skip ? skip + r * Cout : NULL;
        const float *hp = hyper + p * nm * Cout;
        for (int64_t m0 = 0; m0 < nm; m0 += UT_NM) {
            float acc[UT_NM] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int64_t c = 0; c < Cout; c++) {
                float v = 0.0f;
                const float *wc = w + c * 4 + ph;
                for (int64_t ci = 0; ci < Cin; ci++) v += __ldg(xr + ci) * __ldg(wc + ci * Cout * 4);
                v += __ldg(b + c);
                if (sk) v += __ldg(sk + c);
                const float gv = kern_gelu(v);
#pragma unroll
                for (int mm = 0; mm < UT_NM; mm++)
                    if (m0 + mm < nm) acc[mm] += __ldg(hp + (m0 + mm) * Cout + c) * gv;
            }
#pragma unroll
            for (int mm = 0; mm < UT_NM; mm++)
                if (m0 + mm < nm) masks[(p * nm + m0 + mm) * npix + r] = acc[mm];
        }
    }
}

extern "C" void cuda_upscale2_masks(cudaStream_t s, float *masks, const float *x,
                                    const float *w, const float *b, const float *skip,
                                    const float *hyper, int64_t n, int64_t H, int64_t W,
                                    int64_t Cin, int64_t Cout, int64_t nm, int bf16) {
    CHECK(n >= 0 && H >= 0 && W >= 0 && Cin > 0 && Cout > 0 && nm >= 0);
    CHECK(b && hyper);
    if (n == 0 || H == 0 || W == 0 || nm == 0) return;
    if (bf16 && Cout == UT_COUT && Cin % 16 == 0 && Cin <= UT_CINMAX && nm <= UT_NM &&
        (uintptr_t)w % 8 == 0) {
        const int64_t ntiles = (H * W + UT_TM - 1) / UT_TM;
        // prompt groups: about UT_GRID blocks in all, each prompt in one group
        int64_t ppb = (n * ntiles + UT_GRID - 1) / UT_GRID;
        if (ppb < 1) ppb = 1;
        if (ppb > n) ppb = n;
        const int64_t ngroups = (n + ppb - 1) / ppb, blocks = ntiles * ngroups;
        CHECK(blocks <= INT32_MAX);
        const int vec = (uintptr_t)x % 16 == 0;
        switch ((int)Cin) {
        case 16:
            upscale2_masks_bf16_kernel<16><<<(unsigned)blocks, UT_WARPS * 32, 0, s>>>(
                masks, x, w, b, skip, hyper, n, H, W, (int)nm, ntiles, ppb, vec);
            break;
        case 32:
            upscale2_masks_bf16_kernel<32><<<(unsigned)blocks, UT_WARPS * 32, 0, s>>>(
                masks, x, w, b, skip, hyper, n, H, W, (int)nm, ntiles, ppb, vec);
            break;
        case 48:
            upscale2_masks_bf16_kernel<48><<<(unsigned)blocks, UT_WARPS * 32, 0, s>>>(
                masks, x, w, b, skip, hyper, n, H, W, (int)nm, ntiles, ppb, vec);
            break;
        default:
            upscale2_masks_bf16_kernel<64><<<(unsigned)blocks, UT_WARPS * 32, 0, s>>>(
                masks, x, w, b, skip, hyper, n, H, W, (int)nm, ntiles, ppb, vec);
            break;
        }
    } else if (Cout == UT_COUT && Cin <= UT_CINMAX) {
        const int64_t ntiles = (H * W + UT_TF - 1) / UT_TF;
        int64_t ppb = (n * ntiles + UT_GRID - 1) / UT_GRID;
        if (ppb < 1) ppb = 1;
        if (ppb > n) ppb = n;
        const int64_t ngroups = (n + ppb - 1) / ppb, blocks = ntiles * ngroups;
        CHECK(blocks <= INT32_MAX);
        upscale2_masks_f32_tiled_kernel<<<(unsigned)blocks, 4 * UT_TF, 0, s>>>(
            masks, x, w, b, skip, hyper, n, H, W, (int)Cin, nm, ntiles, ppb);
    } else {
        const int64_t total = n * 4 * H * W;
        upscale2_masks_f32_kernel<<<kern_grid(total, KERN_THREADS), KERN_THREADS, 0, s>>>(
            masks, x, w, b, skip, hyper, n, H, W, Cin, Cout, nm);
    }
    CUDA_LAUNCH_CHECK();
}
