/* test_emu_core.cc: the emulator itself (tests/emu/emu.cc, emu.h, mma.cuh),
 * on small kernels written here: what a GPU computes, and what a GPU
 * refuses or leaves undefined, which the emulator must refuse too (abort)
 * rather than compute something: a kernel that passes here only because the
 * emulator is lenient would fail on the device.
 *
 * Then the runtime (tests/emu/emu_rt.c): each emulated GPU's memory is its
 * own, cuBLAS refuses the operand types it has no kernel for, and
 * cuBLASLt's out-of-place product (C != D) reads C only, writes nothing
 * when it refuses and refuses a C that overlaps D; cudaMemcpy2DAsync copies
 * rows at their pitches and checks each as a plain copy.
 *
 * Built with EMU=1 (compiled like a cu2cc'ed kernel file: emu.h forced in),
 * run by tests/test_emu.sh. Each refusal runs in a child process that must
 * die of SIGABRT.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "cublasLt.h"
#include "cublas_v2.h"
#include "cuda_runtime_api.h"
#include "mma.cuh"
#include "test.h"

/* aborts: f() dies of SIGABRT in a child (its stderr discarded) */
static int aborts(const std::function<void()> &f) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        f();
        _exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return 0;
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static int out[64];

/* shfl: lane l of one warp stores __shfl_sync(full, l, src(l), width) */
static void shfl(int (*src)(int), int width) {
    emu_launch(dim3(1), dim3(32), 0, [&] {
        int l = (int)threadIdx.x;
        out[l] = __shfl_sync(0xffffffffu, l, src(l), width);
    });
}

static void xor_shfl(int m, int width) {
    emu_launch(dim3(1), dim3(32), 0, [&] {
        int l = (int)threadIdx.x;
        out[l] = __shfl_xor_sync(0xffffffffu, l, m, width);
    });
}

int main(void) {
    /* ---- launches a GPU refuses ---- */
    TEST_CHECK(aborts([] { emu_launch(dim3(1, 65536), dim3(32), 0, [] {}); }),
               "gridDim.y 65536 is refused (at most 65535)", "it ran");
    TEST_CHECK(aborts([] { emu_launch(dim3(1, 1, 65536), dim3(32), 0, [] {}); }),
               "gridDim.z 65536 is refused (at most 65535)", "it ran");
    TEST_CHECK(aborts([] { emu_launch(dim3(1), dim3(1, 1, 65), 0, [] {}); }),
               "blockDim.z 65 is refused (at most 64)", "it ran");
    TEST_CHECK(aborts([] { emu_launch(dim3(1), dim3(32), 48 * 1024 + 16, [] {}); }),
               "48 KiB + 16 bytes of dynamic shared memory is refused (the default limit; "
               "tests/emu has no cudaFuncSetAttribute)", "it ran");
    TEST_CHECK(aborts([] {
                   emu_launch(dim3(2), dim3(32), 64, [] {
                       if (blockIdx.x == 1 && threadIdx.x == 0) ((char *)emu_dyn_smem())[64] = 0;
                   });
               }),
               "a write one byte past the dynamic shared memory is reported", "it ran");
    int ran = 0;
    emu_launch(dim3(2, 65535, 1), dim3(1, 1, 64), 48 * 1024, [&] { ran++; });
    TEST_CHECK(ran == 2 * 65535 * 64, "the limits themselves run", "ran %d", ran);

    /* ---- __shfl_sync: the source lane as PTX shfl.idx takes it ---- */
    shfl([](int) { return -1; }, 32);
    int bad = -1;
    for (int l = 0; l < 32 && bad < 0; l++)
        if (out[l] != 31) bad = l;
    TEST_CHECK(bad < 0, "__shfl_sync(src -1) reads lane 31 (src & 31)", "lane %d got %d", bad,
               out[bad]);
    shfl([](int) { return -1; }, 8);
    bad = -1;
    for (int l = 0; l < 32 && bad < 0; l++)
        if (out[l] != (l & ~7) + 7) bad = l;
    TEST_CHECK(bad < 0, "__shfl_sync(src -1, width 8) reads the segment's last lane", "lane %d got %d",
               bad, out[bad]);
    shfl([](int) { return 37; }, 16);
    bad = -1;
    for (int l = 0; l < 32 && bad < 0; l++)
        if (out[l] != (l & ~15) + 5) bad = l;
    TEST_CHECK(bad < 0, "__shfl_sync(src 37, width 16) reads lane 5 of the segment", "lane %d got %d",
               bad, out[bad]);
    /* xor beyond the segment: a lower segment is read, a higher one not
     * (CUDA: "earlier groups ... later groups: their own value") */
    xor_shfl(8, 8);
    bad = -1;
    for (int l = 0; l < 32 && bad < 0; l++)
        if (out[l] != ((l ^ 8) < l ? (l ^ 8) : l)) bad = l;
    TEST_CHECK(bad < 0, "__shfl_xor_sync(8, width 8): lower segments read, higher not",
               "lane %d got %d", bad, out[bad]);
    xor_shfl(1, 32);
    bad = -1;
    for (int l = 0; l < 32 && bad < 0; l++)
        if (out[l] != (l ^ 1)) bad = l;
    TEST_CHECK(bad < 0, "__shfl_xor_sync(1) swaps neighbours", "lane %d got %d", bad, out[bad]);
    TEST_CHECK(aborts([] {
                   emu_launch(dim3(1), dim3(32), 0, [] {
                       if (threadIdx.x == 31) return;   /* named in the mask, exited */
                       out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
                   });
               }),
               "__shfl_xor_sync with an exited lane in its mask is refused", "it ran");
    TEST_CHECK(aborts([] {
                   emu_launch(dim3(1), dim3(32), 0, [] {
                       out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0, 12);
                   });
               }),
               "__shfl_sync width 12 (not a power of two) is refused", "it ran");
    int half = 0;
    emu_launch(dim3(1), dim3(32), 0, [&] {
        if (threadIdx.x >= 16) return;   /* a mask of the lanes that stay */
        int v = __shfl_sync(0x0000ffffu, (int)threadIdx.x, 15);
        if (threadIdx.x == 0) half = v;
    });
    TEST_CHECK(half == 15, "__shfl_sync over the live lanes named in its mask", "got %d", half);

    /* ---- mma and ldmatrix: the whole warp, aligned rows ---- */
    TEST_CHECK(aborts([] {
                   emu_launch(dim3(1), dim3(32), 0, [] {
                       if (threadIdx.x == 31) return;
                       float d[4] = {0, 0, 0, 0};
                       const uint32_t a[4] = {0, 0, 0, 0};
                       mma_bf16_16816(d, a, 0, 0);
                   });
               }),
               "mma.sync with an exited lane is refused (.aligned: the whole warp)", "it ran");
    static __nv_bfloat16 tile[16 * 16 + 8] __attribute__((aligned(16)));
    TEST_CHECK(aborts([] {
                   emu_launch(dim3(1), dim3(32), 0, [] {
                       uint32_t b0, b1;
                       /* rows 16 bytes apart, but starting 2 bytes in */
                       mma_ldmatrix_x2_trans(b0, b1, tile + 1 + (threadIdx.x % 16) * 8);
                   });
               }),
               "ldmatrix with a row address not 16-byte aligned is refused", "it ran");
    /* shared memory starts each block as 0xFF bytes (NaN floats): the
     * static array through emu_shared_poison, which cu2cc.py calls after
     * its declaration, the dynamic one at the block's start; a thread
     * reaching the declaration after another wrote keeps what it wrote */
    {
        static float sarr[4];
        float first_s[2], first_d[2], later_s[2], later_d[2];
        emu_launch(dim3(2), dim3(2), 16, [&] {
            emu_shared_poison(sarr, sizeof sarr);
            float *dyn = (float *)emu_dyn_smem();
            const unsigned t = threadIdx.x, b = blockIdx.x;
            if (t == 0) {
                first_s[b] = sarr[0], first_d[b] = dyn[0];
                sarr[0] = dyn[0] = 1.0f + (float)b;
            }
            __syncthreads();
            if (t == 1) later_s[b] = sarr[0], later_d[b] = dyn[0];
        });
        TEST_CHECK(isnan(first_s[0]) && isnan(first_s[1]) && isnan(first_d[0]) && isnan(first_d[1]),
                   "shared memory, static and dynamic, starts every block as NaN (the second "
                   "block too, after the first wrote)", "%g %g %g %g", first_s[0], first_s[1],
                   first_d[0], first_d[1]);
        TEST_CHECK(later_s[0] == 1.0f && later_s[1] == 2.0f && later_d[0] == 1.0f &&
                       later_d[1] == 2.0f,
                   "a block's writes stay for its other threads", "%g %g %g %g", later_s[0],
                   later_s[1], later_d[0], later_d[1]);
    }
    /* odd blocks run their threads last to first: a read of a slot
     * another thread writes without a barrier between (a missing
     * __syncthreads) gets the garbage in one block of two */
    {
        static float slot[1];
        float got[2] = {0.0f, 0.0f};
        emu_launch(dim3(2), dim3(64), 0, [&] {
            emu_shared_poison(slot, sizeof slot);
            if (threadIdx.x == 0) slot[0] = 5.0f;
            if (threadIdx.x == 63) got[blockIdx.x] = slot[0];   /* no barrier: a race */
            __syncthreads();
        });
        TEST_CHECK(got[0] == 5.0f && isnan(got[1]),
                   "a read racing a write of another warp: the write in block 0 (first to last), "
                   "garbage in block 1 (last to first)", "%g %g", got[0], got[1]);
    }
    /* the same in a kernel with no barrier at all (its blocks after the
     * first run as plain calls): thread 1 reads thread 0's write */
    {
        static float slot2[2];
        float got[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        emu_launch(dim3(4), dim3(2), 0, [&] {
            emu_shared_poison(slot2, sizeof slot2);
            slot2[threadIdx.x] = 7.0f;
            if (threadIdx.x == 1) got[blockIdx.x] = slot2[0];   /* no barrier: a race */
        });
        TEST_CHECK(got[0] == 7.0f && isnan(got[1]) && got[2] == 7.0f && isnan(got[3]),
                   "without any barrier too: the write in even blocks, garbage in odd ones",
                   "%g %g %g %g", got[0], got[1], got[2], got[3]);
    }
    /* a kernel's reinterpret_cast (emu_reinterpret after cu2cc.py): to a
     * type the address is not aligned for, refused; aligned, it is the cast */
    static float fbuf[16] __attribute__((aligned(16)));
    TEST_CHECK(aborts([] { (void)emu_reinterpret<const float4 *>(fbuf + 2); }),
               "a float4 pointer 8 bytes past a 16-byte boundary is refused", "it ran");
    TEST_CHECK(aborts([] { (void)emu_reinterpret<uint2 *>(fbuf + 1); }),
               "a uint2 pointer 4 bytes past an 8-byte boundary is refused", "it ran");
    TEST_CHECK(aborts([] { (void)emu_reinterpret<const uint32_t *>(tile + 1); }),
               "a 32-bit word at an odd bf16 element is refused", "it ran");
    TEST_CHECK(emu_reinterpret<const float4 *>(fbuf + 4) == (const float4 *)(fbuf + 4) &&
                   emu_reinterpret<float2 *>(fbuf + 2) == (float2 *)(fbuf + 2) &&
                   emu_reinterpret<__nv_bfloat16 *>(fbuf + 1) == (__nv_bfloat16 *)(fbuf + 1) &&
                   emu_reinterpret<uintptr_t>(fbuf + 3) == (uintptr_t)(fbuf + 3),
               "aligned pointer casts and a cast to an integer pass unchanged", "changed");
    /* a cast to a reference names the object itself (a store through it
     * lands), its address checked as a pointer's */
    emu_reinterpret<float4 &>(fbuf[8]) = make_float4(1.0f, 2.0f, 3.0f, 4.0f);
    TEST_CHECK(fbuf[8] == 1.0f && fbuf[11] == 4.0f, "a store through reinterpret_cast<float4 &>",
               "%g %g", fbuf[8], fbuf[11]);
    TEST_CHECK(aborts([] { emu_reinterpret<float4 &>(fbuf[1]) = make_float4(0, 0, 0, 0); }),
               "a float4 reference 4 bytes past a 16-byte boundary is refused", "it ran");
    for (int i = 0; i < 16 * 8; i++) tile[i].x = (uint16_t)i;
    uint32_t got[32][2];
    emu_launch(dim3(1), dim3(32), 0, [&] {
        uint32_t b0, b1;
        mma_ldmatrix_x2_trans(b0, b1, tile + (threadIdx.x % 16) * 8);
        got[threadIdx.x][0] = b0, got[threadIdx.x][1] = b1;
    });
    bad = -1;
    for (int l = 0; l < 32 && bad < 0; l++) {
        int g = l / 4, t = l % 4;
        for (int j = 0; j < 2; j++) {   /* M_j[2t][g], M_j[2t+1][g]; row r at r * 8 */
            uint32_t want = (uint32_t)((8 * j + 2 * t) * 8 + g) |
                            (uint32_t)((8 * j + 2 * t + 1) * 8 + g) << 16;
            if (got[l][j] != want) bad = l;
        }
    }
    TEST_CHECK(bad < 0, "ldmatrix.x2.trans: lane l gets M_j[2t][g], M_j[2t+1][g]", "lane %d", bad);

    /* ---- the runtime: two GPUs of 64 MiB each ---- */
    setenv("SAM2AMG_EMU_GPUS", "2", 1);
    setenv("SAM2AMG_EMU_GPU_MB", "64", 1);
    const size_t MB = 1 << 20;
    void *p0 = NULL, *p1 = NULL;
    size_t fr = 0, tot = 0;
    cudaSetDevice(0);
    TEST_CHECK(cudaMalloc(&p0, 48 * MB) == cudaSuccess, "cuda:0: 48 of its 64 MiB", "refused");
    cudaSetDevice(1);
    cudaMemGetInfo(&fr, &tot);
    TEST_CHECK(tot == 64 * MB && fr == tot, "cuda:1's memory is its own: all 64 MiB free",
               "free %zu of %zu MiB", fr / MB, tot / MB);
    TEST_CHECK(cudaMalloc(&p1, 48 * MB) == cudaSuccess, "cuda:1: 48 MiB too", "refused");
    cudaSetDevice(0);
    cudaMemGetInfo(&fr, &tot);
    TEST_CHECK(fr == 16 * MB, "cuda:0: 16 MiB free", "free %zu MiB", fr / MB);
    cudaFree(p1);   /* from a thread on cuda:0: the memory goes back to cuda:1 */
    cudaMemGetInfo(&fr, &tot);
    size_t fr0 = fr;
    cudaSetDevice(1);
    cudaMemGetInfo(&fr, &tot);
    TEST_CHECK(fr0 == 16 * MB && fr == 64 * MB, "cudaFree credits the allocation's device",
               "cuda:0 %zu, cuda:1 %zu MiB free", fr0 / MB, fr / MB);
    cudaFree(p0);

    /* copies: the pointers as the kind says, inside their allocation */
    static char host[512];
    char *d = NULL;
    cudaMalloc((void **)&d, 100);
    TEST_CHECK(cudaMemcpyAsync(d, host, 100, cudaMemcpyHostToDevice, NULL) == cudaSuccess &&
                   cudaMemcpyAsync(host, d, 100, cudaMemcpyDeviceToHost, NULL) == cudaSuccess &&
                   cudaMemcpyAsync(d + 50, d, 50, cudaMemcpyDeviceToDevice, NULL) == cudaSuccess &&
                   cudaMemsetAsync(d, 0, 100, NULL) == cudaSuccess,
               "copies and memset within a 100-byte allocation", "refused");
    TEST_CHECK(aborts([&] { cudaMemcpyAsync(host, d, 101, cudaMemcpyDeviceToHost, NULL); }),
               "a copy from one byte past the allocation's end is refused", "it ran");
    TEST_CHECK(aborts([&] { cudaMemsetAsync(d + 1, 0, 100, NULL); }),
               "a memset one byte past the allocation's end is refused", "it ran");
    TEST_CHECK(aborts([&] { cudaMemcpyAsync(host, host + 256, 8, cudaMemcpyHostToDevice, NULL); }),
               "a host-to-device copy into host memory is refused", "it ran");
    TEST_CHECK(aborts([&] { cudaMemcpyAsync(host, d, 8, cudaMemcpyHostToDevice, NULL); }),
               "a host-to-device copy from device memory is refused", "it ran");
    cudaFree(d);

    cublasHandle_t h = NULL;
    cublasCreate(&h);
    float one = 1, zero = 0, a32 = 2, c = 0;
    uint16_t a16 = 0x4000;   /* 2.0 in bf16 */
    TEST_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, &a16, CUDA_R_16BF, 1, &a32,
                            CUDA_R_32F, 1, &zero, &c, CUDA_R_32F, 1, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
               "cublasGemmEx: bf16 A with float B is refused", "accepted");
    TEST_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, &a16, CUDA_R_16BF, 1, &a16,
                            CUDA_R_16BF, 1, &zero, &c, CUDA_R_32F, 1, CUBLAS_COMPUTE_32F_FAST_TF32,
                            CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
               "cublasGemmEx: bf16 operands with COMPUTE_32F_FAST_TF32 are refused", "accepted");
    TEST_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, &a16, CUDA_R_16BF, 1, &a16,
                            CUDA_R_16BF, 1, &zero, &c, CUDA_R_32F, 1, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS && c == 4.0f,
               "cublasGemmEx: bf16 x bf16 into float", "c = %g", c);
    cublasDestroy(h);

    /* cublasLtMatmul with C != D (beta 1: D = A B + C, C only read), as
     * linear_ex's residual uses it; a refused call writes nothing to D (as
     * cuBLASLt: the caller computes the product another way); a C that
     * overlaps D without being it is undefined on a GPU: refused */
    {
        cublasLtHandle_t lt = NULL;
        cublasLtMatmulDesc_t op = NULL;
        cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
        cublasLtCreate(&lt);
        cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, 2, 1, 2);   /* A (2,1) */
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, 1, 2, 1);   /* B (1,2) */
        cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, 2, 2, 3);    /* C, D (2,2), ld 3 */
        uint16_t *A = NULL, *B = NULL;
        float *C = NULL, *D = NULL;
        cudaMalloc((void **)&A, 4), cudaMalloc((void **)&B, 4);
        cudaMalloc((void **)&C, 6 * sizeof(float)), cudaMalloc((void **)&D, 8 * sizeof(float));
        A[0] = 0x3f80, A[1] = 0x4000;   /* 1, 2 */
        B[0] = 0x4040, B[1] = 0x4080;   /* 3, 4 */
        for (int i = 0; i < 6; i++) C[i] = 10.0f * (float)(i + 1);
        for (int i = 0; i < 8; i++) D[i] = -1.0f;
        const float Cw[6] = {10, 20, 30, 40, 50, 60};
        TEST_CHECK(cublasLtMatmul(lt, op, &one, A, la, B, lb, &one, C, ld, D, ld, NULL, NULL, 0,
                                  NULL) == CUBLAS_STATUS_SUCCESS &&
                       D[0] == 13 && D[1] == 26 && D[2] == -1 && D[3] == 44 && D[4] == 58 &&
                       D[5] == -1 && memcmp(C, Cw, sizeof Cw) == 0,
                   "cublasLtMatmul, C != D: D = A B + C, C as it was, D's padding untouched",
                   "D = %g %g %g %g %g %g", D[0], D[1], D[2], D[3], D[4], D[5]);
        const int32_t epi = CUBLASLT_EPILOGUE_BIAS;
        const float *nob = NULL;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &nob, sizeof nob);
        for (int i = 0; i < 8; i++) D[i] = -1.0f;
        cublasStatus_t st = cublasLtMatmul(lt, op, &one, A, la, B, lb, &one, C, ld, D, ld, NULL,
                                           NULL, 0, NULL);
        int untouched = 1;
        for (int i = 0; i < 8; i++) untouched &= D[i] == -1.0f;
        TEST_CHECK(st == CUBLAS_STATUS_NOT_SUPPORTED && untouched,
                   "cublasLtMatmul, C != D, bias epilogue without its vector: refused, D untouched",
                   "status %d, D[0] %g", (int)st, D[0]);
        const int32_t dflt = CUBLASLT_EPILOGUE_DEFAULT;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &dflt, sizeof dflt);
        TEST_CHECK(aborts([&] {
                       cublasLtMatmul(lt, op, &one, A, la, B, lb, &one, D + 1, ld, D, ld, NULL,
                                      NULL, 0, NULL);
                   }),
                   "cublasLtMatmul: C overlapping D without being D is refused", "it ran");
        cudaFree(A), cudaFree(B), cudaFree(C), cudaFree(D);
        cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(ld), cublasLtMatmulDescDestroy(op), cublasLtDestroy(lt);
    }

    /* cudaMemcpy2DAsync: rows of width bytes at each side's pitch, the
     * bytes between them untouched; a pitch under the width is an error; a
     * row past the allocation's end is refused as a plain copy's */
    {
        char *s2 = NULL, *d2 = NULL;
        cudaMalloc((void **)&s2, 12), cudaMalloc((void **)&d2, 15);
        for (int i = 0; i < 12; i++) s2[i] = (char)(i + 1);
        memset(d2, 0x7f, 15);
        const char want[15] = {1, 2, 0x7f, 0x7f, 0x7f, 5, 6, 0x7f, 0x7f, 0x7f,
                               9, 10, 0x7f, 0x7f, 0x7f};
        TEST_CHECK(cudaMemcpy2DAsync(d2, 5, s2, 4, 2, 3, cudaMemcpyDeviceToDevice, NULL) ==
                           cudaSuccess &&
                       memcmp(d2, want, 15) == 0,
                   "cudaMemcpy2DAsync: 3 rows of 2 bytes, pitches 4 and 5", "wrong bytes");
        TEST_CHECK(cudaMemcpy2DAsync(d2, 1, s2, 4, 2, 3, cudaMemcpyDeviceToDevice, NULL) ==
                       cudaErrorInvalidValue,
                   "cudaMemcpy2DAsync: a pitch under the width is an error", "accepted");
        TEST_CHECK(aborts([&] { cudaMemcpy2DAsync(d2, 5, s2, 5, 3, 3, cudaMemcpyDeviceToDevice, NULL); }),
                   "cudaMemcpy2DAsync: a row past the source allocation's end is refused", "it ran");
        cudaFree(s2), cudaFree(d2);
    }
    return TEST_REPORT();
}
