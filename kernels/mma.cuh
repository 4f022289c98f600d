/* mma.cuh: the bf16 tensor-core primitives shared by the fused kernels
 * (kernels/flash_attn.cu, kernels/upscale_tail.cu; private, sm_80+).
 *
 * mma_bf16_16816: one warp's d (16x8 f32) += a (16x16 bf16, row major) .
 * b (16x8 bf16, column major), PTX mma.sync m16n8k16, the fragments in the
 * PTX ISA's layout. tests/test_mma_emu.py models these from that layout.
 */
#ifndef SAM2AMG_KERNELS_MMA_CUH
#define SAM2AMG_KERNELS_MMA_CUH

#include <stdint.h>
#include <string.h>

#include <cuda_bf16.h>

/* pack two floats as bf16x2 (round to nearest even), lo in the low half
 * (the lower column) */
static __device__ __forceinline__ uint32_t mma_pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, sizeof u);
    return u;
}

/* d (16x8 f32) += a (16x16 bf16, row) . b (16x8 bf16, col) */
static __device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4],
                                                      uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* b0, b1 of a 16x8 b fragment from a row-major bf16 tile in shared memory
 * (rows = the k dimension): lane l gives the address of k row l % 16 */
static __device__ __forceinline__ void mma_ldmatrix_x2_trans(uint32_t &b0, uint32_t &b1,
                                                            const __nv_bfloat16 *p) {
    const unsigned addr = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(b0), "=r"(b1)
                 : "r"(addr));
}

#endif
