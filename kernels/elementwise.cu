/* elementwise.cu: GELU, ReLU, add, row broadcast, scale-add, GEMM bias.
 *
 * Memory-bound one-liners in grid-stride loops (common.cuh). Every op that
 * may run in place (y aliasing an input) reads an element before writing
 * the same element and nothing else, so aliasing is safe.
 */
#include "common.cuh"

static __global__ void gelu_kernel(float *y, const float *x, int64_t n) {
    KERN_FOR(i, n) {
        y[i] = kern_gelu(x[i]);
    }
}

static __global__ void relu_kernel(float *y, const float *x, int64_t n) {
    KERN_FOR(i, n) y[i] = fmaxf(x[i], 0.0f);
}

static __global__ void add_kernel(float *y, const float *a, const float *b, int64_t n) {
    KERN_FOR(i, n) y[i] = a[i] + b[i];
}

// x,y are (M,C) flattened to n = M*C; row is (C)
static __global__ void add_row_kernel(float *y, const float *x, const float *row,
                                      int64_t n, int64_t C) {
    KERN_FOR(i, n) y[i] = x[i] + row[i % C];
}

static __global__ void scale_add_kernel(float *y, const float *x, float alpha, float beta,
                                        int64_t n) {
    KERN_FOR(i, n) y[i] = alpha * x[i] + beta * y[i];
}

static __global__ void scale_kernel(float *y, const float *x, float alpha, int64_t n) {
    KERN_FOR(i, n) y[i] = alpha * x[i];
}

// y is (M,N) with row stride ldy; b is (N) or NULL (fill only)
// I: the index type, 32-bit where M*N fits (64-bit division is many
// instructions per element)
template <class I>
static __global__ void bias_rows_kernel(float *y, int64_t ldy, const float *b, I M, I N,
                                        int fill) {
    const I n = M * N;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)blockDim.x * gridDim.x) {
        I r = i / N, c = i - r * N;
        float bv = b ? b[c] : 0.0f;
        float *p = y + (int64_t)r * ldy + c;
        *p = fill ? bv : *p + bv;
    }
}

static void bias_rows(cudaStream_t s, float *y, int64_t ldy, const float *b, int64_t M,
                      int64_t N, int fill) {
    const int64_t n = M * N;
    if (n <= (int64_t)UINT32_MAX / 2)   // + one grid's stride (<= 2^24) stays under 2^32
        bias_rows_kernel<uint32_t><<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
            y, ldy, b, (uint32_t)M, (uint32_t)N, fill);
    else
        bias_rows_kernel<int64_t><<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(
            y, ldy, b, M, N, fill);
}

extern "C" void cuda_gelu(cudaStream_t s, float *y, const float *x, int64_t n) {
    CHECK(n >= 0);
    if (n == 0) return;
    gelu_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(y, x, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_relu(cudaStream_t s, float *y, const float *x, int64_t n) {
    CHECK(n >= 0);
    if (n == 0) return;
    relu_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(y, x, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_add(cudaStream_t s, float *y, const float *a, const float *b,
                         int64_t n) {
    CHECK(n >= 0);
    if (n == 0) return;
    add_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(y, a, b, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_add_row(cudaStream_t s, float *y, const float *x, const float *row,
                             int64_t M, int64_t C) {
    CHECK(M >= 0 && C > 0);
    if (M == 0) return;
    int64_t n = M * C;
    add_row_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(y, x, row, n, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_scale_add(cudaStream_t s, float *y, const float *x, float alpha,
                               float beta, int64_t n) {
    CHECK(n >= 0);
    if (n == 0) return;
    if (beta == 0.0f)
        scale_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(y, x, alpha, n);
    else
        scale_add_kernel<<<kern_grid(n, KERN_THREADS), KERN_THREADS, 0, s>>>(y, x, alpha,
                                                                           beta, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_add_bias_strided(cudaStream_t s, float *y, int64_t ldy, const float *b,
                                      int64_t M, int64_t N) {
    CHECK(M >= 0 && N >= 0 && ldy >= N && b);
    if (M == 0 || N == 0) return;
    bias_rows(s, y, ldy, b, M, N, 0);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_fill_rows(cudaStream_t s, float *y, int64_t ldy, const float *b,
                               int64_t M, int64_t N) {
    CHECK(M >= 0 && N >= 0 && ldy >= N);
    if (M == 0 || N == 0) return;
    bias_rows(s, y, ldy, b, M, N, 1);
    CUDA_LAUNCH_CHECK();
}
