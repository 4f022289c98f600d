/* cuda_bf16.h (tests/emu): __nv_bfloat16 and the float conversion the
 * kernels use, round to nearest even, for running them on the CPU. */
#ifndef SAM2AMG_EMU_CUDA_BF16_H
#define SAM2AMG_EMU_CUDA_BF16_H
#include <stdint.h>
#include <string.h>
struct __nv_bfloat16 {
    uint16_t x;
};
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 r;
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu))   /* NaN: quiet, keep the sign */
        r.x = (uint16_t)((u >> 16) | 0x40);
    else
        r.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}
#endif
