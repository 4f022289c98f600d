/* emu.h: just enough of CUDA to run the kernel files (kernels/) on the CPU, for tests
 * (tests/test_emu.sh: the whole CUDA backend, built with EMU=1; the
 * emulator's own rules in tests/emu/test_emu_core.cc): no GPU is needed to
 * execute the kernels' index math, bounds, grid-stride loops, shared-memory
 * reductions, warp shuffles and tensor-core fragments (tests/emu/mma.cuh)
 * against the CPU reference.
 *
 * tests/emu/cu2cc.py rewrites a .cu file's launches (k<<<g, b, smem, s>>>(a)
 * -> emu_launch(g, b, smem, [&] { k(a); })) and its dynamic shared memory;
 * the result is compiled as C++ with this header forced in (-include), with
 * __CUDACC__ and __CUDA_ARCH__ defined so that the device branches are the
 * ones compiled. emu.cc runs each block's threads as fibers (a stack switch
 * of its own on x86-64, ucontext elsewhere) on the calling thread, one
 * block after the other, one launch at a time across host threads:
 * __syncthreads and the warp shuffles switch fibers, and a block whose
 * threads wait at different barriers forever is reported (a divergent
 * barrier) instead of hanging. What a GPU refuses or leaves undefined and
 * the emulator can see aborts with a message (launch limits, a shuffle
 * whose mask names a lane that is not there, mma/ldmatrix without the
 * whole warp, a write past the dynamic shared memory, a pointer cast to a
 * vector or word type at an address not aligned for it). Shared memory,
 * static and dynamic, starts each block as 0xFF bytes (NaN as a float or
 * bf16), so reading a slot the block never wrote shows in the results.
 *
 * What it does not model: concurrency between blocks, the memory model
 * (races and missing fences pass here), reads past the dynamic shared
 * memory, kernels dereferencing host pointers (device memory is host
 * memory), nvcc's FMA contraction of plain a * b + c (compiled here with
 * -ffp-contract=off, so results may differ from a GPU's in the last bits
 * where the kernels do not use the _rn intrinsics).
 */
#ifndef SAM2AMG_EMU_H
#define SAM2AMG_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

#define __align__(n) __attribute__((aligned(n)))

struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
template <class T> static inline T __ldg(const T *p) { return *p; }

/* emu_reinterpret: the kernels' reinterpret_cast (cu2cc.py rewrites every
 * one to this): a pointer cast to T * must be aligned for T, because the
 * kernels cast only to access through the result, and a GPU faults on an
 * access (a float4, uint2, 32-bit word of two bf16 ...) at an address
 * that is not a multiple of its size ("misaligned address", the CUDA
 * context lost), where the host's loads quietly work. Checked at the
 * cast, so a kernel must not cast a pointer it will not dereference. A
 * cast to a reference (reinterpret_cast<float4 &>(x[i]) = v) refers to the
 * object itself (q is a forwarding reference), its address checked alike;
 * one to an integer is not checked. */
static inline void emu_misaligned(const void *p, size_t align) {
    fprintf(stderr, "emu: %p cast to a pointer to %zu-byte aligned elements: a "
            "misaligned address (a GPU faults on the access)\n", p, align);
    abort();
}
template <class P, class Q> static inline P emu_reinterpret(Q &&q) {
    if constexpr (std::is_reference<P>::value) {
        using T = typename std::remove_reference<P>::type;
        if ((uintptr_t)&q % alignof(T)) emu_misaligned((const void *)&q, alignof(T));
        return reinterpret_cast<P>(q);
    } else {
        P p = reinterpret_cast<P>(q);
        if constexpr (std::is_pointer<P>::value) {
            using T = typename std::remove_cv<typename std::remove_pointer<P>::type>::type;
            if constexpr (!std::is_void<T>::value)
                if ((uintptr_t)p % alignof(T)) emu_misaligned((const void *)p, alignof(T));
        }
        return p;
    }
}

/* the running fiber's coordinates (emu.cc sets them at every switch) */
extern uint3 threadIdx, blockIdx;
extern dim3  blockDim, gridDim;

void  __syncthreads(void);
void *emu_dyn_smem(void);
/* emu_shared_poison: a static __shared__ array's start as garbage (0xFF
 * bytes) in each block; cu2cc.py calls it after every such declaration */
void  emu_shared_poison(void *p, size_t n);
/* emu_launch: run body for every thread of every block of grid */
void  emu_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body,
                 const char *name = nullptr);   /* name: the kernel, for SAM2AMG_EMU_STATS */
/* emu_warp: every live lane of the calling thread's warp posts v; returns
 * lane src's (0..31; v itself when src did not post). mask: the lanes the
 * _sync call names: each must be live and post (else abort: undefined on a
 * GPU), the caller among them. */
uint64_t emu_warp(uint64_t v, int src, unsigned mask);
/* emu_warp_all: the same exchange, every lane's value into all[32] (0 for
 * a lane that did not post); returns the lanes that posted */
uint32_t emu_warp_all(uint64_t v, uint64_t all[32]);
int      emu_lane(void);
/* emu_fail: a use a GPU leaves undefined or refuses: the message (with the
 * block and thread) on stderr, then abort */
[[noreturn]] void emu_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

template <class T> static inline T emu_shfl(T v, int src, unsigned mask) {
    static_assert(sizeof(T) <= 8, "a shuffled value is at most 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    u = emu_warp(u, src, mask);
    T r;
    memcpy(&r, &u, sizeof r);
    return r;
}
/* the lanes above a width-wide segment's base: CUDA's width must be a power
 * of two up to 32 (shfl.sync's c operand is built from it) */
static inline int emu_seg_mask(int width) {
    if (width < 1 || width > 32 || (width & (width - 1)))
        emu_fail("a shuffle of width %d (a power of two up to 32 on a GPU)", width);
    return ~(width - 1) & 31;
}
/* the shuffles as PTX shfl.sync computes the source lane j (the PTX ISA's
 * pseudocode): idx takes src's low 5 bits within the caller's segment; bfly
 * (xor) goes back to the caller when j lies above the segment (a lower
 * segment is read, as CUDA documents) */
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    int seg = emu_seg_mask(width), lane = emu_lane();
    return emu_shfl(v, (lane & seg) | (src & 31 & ~seg), mask);
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32) {
    int seg = emu_seg_mask(width), lane = emu_lane();
    int j = lane ^ (m & 31), max_lane = (lane & seg) | (31 & ~seg);
    return emu_shfl(v, j <= max_lane ? j : lane, mask);
}

/* the explicitly rounded intrinsics: one IEEE operation each */
static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
static inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
static inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
static inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
static inline double __dsub_rn(double a, double b) { volatile double r = a - b; return r; }
static inline double __ddiv_rn(double a, double b) { volatile double r = a / b; return r; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __double2float_rn(double d) { volatile float r = (float)d; return r; }

#endif
