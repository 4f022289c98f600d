/* mma.cuh (tests/emu): kernels/mma.cuh's three tensor-core primitives for
 * the CPU emulation, written from the PTX ISA's description of the
 * m16n8k16 bf16 fragments and of ldmatrix (not from kernels/mma.cuh's
 * inline assembly). The compile puts tests/emu first on the include path,
 * so the kernels get this file. A warp's fragments are gathered from its
 * 32 lanes (emu_warp_all), so every lane must call, as on the GPU.
 *
 * Lane l, g = l / 4, t = l % 4:
 *   a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9],
 *   a[3] = A[g+8][2t+8, 2t+9]                      (A 16x16, row major)
 *   b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]     (B 16x8, k x n)
 *   d[0..1] = D[g][2t, 2t+1], d[2..3] = D[g+8][2t, 2t+1]
 * the lower column (or k) in the low 16 bits. ldmatrix .x2 .trans: lanes
 * 0-7 give the 8 rows (8 b16 each) of matrix 0, lanes 8-15 those of matrix
 * 1; lane l receives in register j the transposed matrix's row g, columns
 * 2t, 2t+1: M_j[2t][g] and M_j[2t+1][g]. Products accumulate in float, in k
 * order (the hardware's order is unspecified; tests allow for that).
 */
#ifndef SAM2AMG_EMU_MMA_CUH
#define SAM2AMG_EMU_MMA_CUH

#include <stdint.h>
#include <string.h>

#include <cuda_bf16.h>

static inline float emu_bf16_lo(uint32_t u) { uint32_t v = u << 16; float f; memcpy(&f, &v, 4); return f; }
static inline float emu_bf16_hi(uint32_t u) { uint32_t v = u & 0xffff0000u; float f; memcpy(&f, &v, 4); return f; }

static inline uint32_t mma_pack_bf16x2(float lo, float hi) {
    return (uint32_t)__float2bfloat16_rn(lo).x | (uint32_t)__float2bfloat16_rn(hi).x << 16;
}

/* .sync.aligned: every lane of the warp executes the instruction; one that
 * exited (or a warp short of 32 threads) is undefined on a GPU */
static inline void mma_whole_warp(uint32_t posted, const char *what) {
    if (posted != 0xffffffffu) emu_fail("%s with lanes 0x%08x of 32", what, posted);
}

static inline void mma_bf16_16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    uint64_t a01[32], a23[32], bb[32];
    mma_whole_warp(emu_warp_all((uint64_t)a[0] | (uint64_t)a[1] << 32, a01), "mma.sync");
    mma_whole_warp(emu_warp_all((uint64_t)a[2] | (uint64_t)a[3] << 32, a23), "mma.sync");
    mma_whole_warp(emu_warp_all((uint64_t)b0 | (uint64_t)b1 << 32, bb), "mma.sync");
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        int g = l / 4, t = l % 4;
        uint32_t r[4] = {(uint32_t)a01[l], (uint32_t)(a01[l] >> 32), (uint32_t)a23[l],
                         (uint32_t)(a23[l] >> 32)};
        A[g][2 * t] = emu_bf16_lo(r[0]), A[g][2 * t + 1] = emu_bf16_hi(r[0]);
        A[g + 8][2 * t] = emu_bf16_lo(r[1]), A[g + 8][2 * t + 1] = emu_bf16_hi(r[1]);
        A[g][2 * t + 8] = emu_bf16_lo(r[2]), A[g][2 * t + 9] = emu_bf16_hi(r[2]);
        A[g + 8][2 * t + 8] = emu_bf16_lo(r[3]), A[g + 8][2 * t + 9] = emu_bf16_hi(r[3]);
        uint32_t c0 = (uint32_t)bb[l], c1 = (uint32_t)(bb[l] >> 32);
        B[2 * t][g] = emu_bf16_lo(c0), B[2 * t + 1][g] = emu_bf16_hi(c0);
        B[2 * t + 8][g] = emu_bf16_lo(c1), B[2 * t + 9][g] = emu_bf16_hi(c1);
    }
    int l = emu_lane(), g = l / 4, t = l % 4;
    for (int i = 0; i < 4; i++) {
        int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
        float acc = 0.0f;
        for (int k = 0; k < 16; k++) acc += A[row][k] * B[k][col];
        d[i] += acc;
    }
}

static inline void mma_ldmatrix_x2_trans(uint32_t &b0, uint32_t &b1, const __nv_bfloat16 *p) {
    uint64_t addr[32];
    mma_whole_warp(emu_warp_all((uint64_t)(uintptr_t)p, addr), "ldmatrix");
    /* each row of 8 b16 is one 16-byte shared-memory access: its address
     * must be 16-byte aligned (lanes 0-15 give the rows of .x2) */
    for (int r = 0; r < 16; r++)
        if (addr[r] % 16)
            emu_fail("ldmatrix: lane %d's row address %p is not 16-byte aligned", r,
                     (void *)(uintptr_t)addr[r]);
    int l = emu_lane(), g = l / 4, t = l % 4;
    uint32_t out[2];
    for (int j = 0; j < 2; j++) {   /* matrix j: rows from lanes 8j .. 8j+7 */
        const uint16_t *r0 = (const uint16_t *)(uintptr_t)addr[8 * j + 2 * t];
        const uint16_t *r1 = (const uint16_t *)(uintptr_t)addr[8 * j + 2 * t + 1];
        out[j] = (uint32_t)r0[g] | (uint32_t)r1[g] << 16;
    }
    b0 = out[0], b1 = out[1];
}

#endif
