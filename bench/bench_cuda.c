/* bench_cuda.c: kernel harness for the CUDA backend (after llm.c dev/cuda).
 *
 * Each op is first checked on a small case against the naive host
 * references of tests/cuda_ref.h (normalized error under the same bounds as
 * tests/test_cuda.c); only an op that passes is timed, on the shapes SAM 2.1
 * runs at 1024x1024: Hiera-tiny and Hiera-large encoder layers, and the mask
 * decoder with P prompts per batch (default 64, 256, 1024; pass other
 * values as arguments). Prints milliseconds per call and GFLOP/s (compute
 * ops) or GB/s (memory-bound ops; bytes = one read of each input plus one
 * write of the output). Exit status 1 if any check failed.
 *
 * Usage: build/bench/bench_cuda [P ...]   (device cuda:0)
 * A CPU-only build prints "no CUDA in this build" and exits 0; a build
 * without a usable device says so and exits 0 (so `make bench` passes on a
 * machine without a GPU), or exits 1 under SAM2AMG_REQUIRE_CUDA=1
 * (tests/gpu/check.sh), where a missing device must read as a failure.
 * GEMMs are float32 unless SAM2AMG_CUDA_GEMM=tf32 (src/backend_cuda.c).
 * Then the GEMM ops (linear, bmm, conv2d, conv_transpose2x2) again in bf16
 * (BACKEND_BF16): checked against the reference's bf16 mode (bound 2e-4,
 * tests/test_ops.c), then timed, their lines prefixed "bf16 ".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SAM2AMG_CUDA

int main(void) {
    const char *r = getenv("SAM2AMG_REQUIRE_CUDA");
    printf("bench_cuda: no CUDA in this build\n");
    return r && strcmp(r, "1") == 0;
}

#else

#include <math.h>
#include <time.h>

#include "../tests/cuda_ref.h"
#include "backend.h"
#include "check.h"

static int check_failures;
static double gemm_bound;   // as in tests/test_cuda.c
static int gemm_only;       // the bf16 pass: only the GEMM ops are timed
static const char *label_prefix = "";   // "bf16 " in that pass

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void bench_print(const char *label, double ms, double flop, double bytes) {
    printf("%s%-58s %9.3f ms", label_prefix, label, ms);
    if (flop > 0) printf(" %9.1f GFLOP/s", flop / (ms * 1e-3) / 1e9);
    else printf(" %17s", "");
    if (bytes > 0) printf(" %8.1f GB/s", bytes / (ms * 1e-3) / 1e9);
    printf("\n");
    fflush(stdout);
}

/* BENCH: time stmt on be: one warm-up call, one timed call to pick a
 * repetition count filling ~0.2 s (1..1000), then the timed repetitions
 * between two syncs. */
#define BENCH(be, label, flop, bytes, stmt)                                    \
    do {                                                                       \
        stmt;                                                                  \
        (be)->sync(be);                                                        \
        double t0_ = bench_now();                                              \
        stmt;                                                                  \
        (be)->sync(be);                                                        \
        double t1_ = bench_now() - t0_;                                        \
        int reps_ = t1_ > 0.0 ? (int)(0.2 / t1_) : 1000;                       \
        if (reps_ < 1) reps_ = 1;                                              \
        if (reps_ > 1000) reps_ = 1000;                                        \
        t0_ = bench_now();                                                     \
        for (int r_ = 0; r_ < reps_; r_++) { stmt; }                           \
        (be)->sync(be);                                                        \
        bench_print(label, (bench_now() - t0_) * 1e3 / reps_, flop, bytes);    \
    } while (0)

/* check_report: print a check's error; count a failure. Returns 1 if ok. */
static int check_report(const char *op, double err, double bound) {
    int ok = err <= bound;
    printf("check %-24s normalized error %.3g (bound %.3g) %s\n", op, err, bound,
           ok ? "ok" : "FAIL");
    if (!ok) check_failures++;
    return ok;
}

/* dev_random: n floats of backend memory filled with uniform [-amp, amp)
 * data (a random block uploaded once, then doubled by device copies), or
 * NULL when the device is out of memory. */
static float *dev_random(backend_t *be, int64_t n, float amp) {
    float *d = be->alloc(be, (size_t)n * sizeof(float));
    if (!d) return NULL;
    int64_t blk = n < ((int64_t)1 << 22) ? n : ((int64_t)1 << 22);
    float *h = ref_new_random(blk, amp);
    be->upload(be, d, h, (size_t)blk * sizeof(float));
    free(h);
    for (int64_t have = blk; have < n; have *= 2) {
        int64_t m = n - have < have ? n - have : have;
        be->copy(be, d + have, d, (size_t)m * sizeof(float));
    }
    return d;
}

/* dev_compare: normalized error of n floats of dev against host want. */
static double dev_compare(backend_t *be, const float *dev, const float *want, int64_t n) {
    float *got = ref_from_dev(be, dev, n);
    double e = ref_error(got, want, n);
    free(got);
    return e;
}

/* ---- small checks (each op before it is timed) ---- */

static int check_linear(backend_t *be) {
    const int64_t M = 70, K = 96, N = 50;
    float *x = ref_new_random(M * K, 1.0f), *w = ref_new_random(N * K, 0.5f);
    float *b = ref_new_random(N, 1.0f), *y = ref_new(M * N);
    float *dx = ref_to_dev(be, x, M * K), *dw = ref_to_dev(be, w, N * K), *db = ref_to_dev(be, b, N);
    float *dy = be->alloc(be, M * N * sizeof(float));
    CHECK(dy);
    be->linear(be, dy, N, dx, K, dw, db, M, K, N);
    ops_ref_linear(y, N, x, K, w, b, M, K, N);
    int ok = check_report("linear", dev_compare(be, dy, y, M * N), gemm_bound);
    be->free(be, dx); be->free(be, dw); be->free(be, db); be->free(be, dy);
    free(x); free(w); free(b); free(y);
    return ok;
}

static int check_bmm(backend_t *be) {
    const int64_t T = 3, M = 4, K = 32, N = 300;
    float *a = ref_new_random(T * M * K, 1.0f), *b = ref_new_random(T * N * K, 1.0f);
    float *c = ref_new(T * M * N);
    float *da = ref_to_dev(be, a, T * M * K), *dbm = ref_to_dev(be, b, T * N * K);
    float *dc = be->alloc(be, T * M * N * sizeof(float));
    CHECK(dc);
    be->bmm(be, dc, da, dbm, T, M, K, N, 1);
    ops_ref_bmm(c, a, b, T, M, K, N, 1);
    int ok = check_report("bmm trans_b", dev_compare(be, dc, c, T * M * N), gemm_bound);
    be->free(be, da); be->free(be, dbm); be->free(be, dc);
    free(a); free(b); free(c);
    return ok;
}

static int check_attention(backend_t *be, int64_t dh) {
    const int64_t B = 2, Lq = 37, Lk = 75, nh = 2, D = nh * dh;
    const float scale = 1.0f / sqrtf((float)dh);
    float *q = ref_new_random(B * Lq * D, 2.0f), *k = ref_new_random(B * Lk * D, 2.0f);
    float *v = ref_new_random(B * Lk * D, 1.0f), *o = ref_new(B * Lq * D);
    float *dq = ref_to_dev(be, q, B * Lq * D), *dk = ref_to_dev(be, k, B * Lk * D);
    float *dv = ref_to_dev(be, v, B * Lk * D), *dout = be->alloc(be, B * Lq * D * sizeof(float));
    CHECK(dout);
    be->attention(be, dout, dq, D, dk, D, dv, D, B, Lq, Lk, nh, dh, scale);
    ops_ref_attention(o, q, D, k, D, v, D, B, Lq, Lk, nh, dh, scale);
    char name[32];
    snprintf(name, sizeof name, "attention dh=%lld", (long long)dh);
    int ok = check_report(name, dev_compare(be, dout, o, B * Lq * D), 1e-5);
    be->free(be, dq); be->free(be, dk); be->free(be, dv); be->free(be, dout);
    free(q); free(k); free(v); free(o);
    return ok;
}

/* the decoder's shared token->image shape (B=1, 4096 keys): keys split */
static int check_attention_split(backend_t *be) {
    const int64_t B = 1, Lq = 21, Lk = 4096, nh = 8, dh = 16, D = nh * dh;
    const float scale = 0.25f;
    float *q = ref_new_random(B * Lq * D, 2.0f), *k = ref_new_random(B * Lk * D, 2.0f);
    float *v = ref_new_random(B * Lk * D, 1.0f), *o = ref_new(B * Lq * D);
    float *dq = ref_to_dev(be, q, B * Lq * D), *dk = ref_to_dev(be, k, B * Lk * D);
    float *dv = ref_to_dev(be, v, B * Lk * D), *dout = be->alloc(be, B * Lq * D * sizeof(float));
    CHECK(dout);
    be->attention(be, dout, dq, D, dk, D, dv, D, B, Lq, Lk, nh, dh, scale);
    ops_ref_attention(o, q, D, k, D, v, D, B, Lq, Lk, nh, dh, scale);
    int ok = check_report("attention key split", dev_compare(be, dout, o, B * Lq * D), 1e-5);
    be->free(be, dq); be->free(be, dk); be->free(be, dv); be->free(be, dout);
    free(q); free(k); free(v); free(o);
    return ok;
}

static int check_layer_norm(backend_t *be) {
    const int64_t M = 33, C = 576;
    float *x = ref_new_random(M * C, 3.0f), *w = ref_new_random(C, 1.0f);
    float *b = ref_new_random(C, 1.0f), *y = ref_new(M * C);
    float *dx = ref_to_dev(be, x, M * C), *dw = ref_to_dev(be, w, C), *db = ref_to_dev(be, b, C);
    be->layer_norm(be, dx, dx, dw, db, M, C, 1e-6f);
    ops_ref_layer_norm(y, x, w, b, M, C, 1e-6f);
    int ok = check_report("layer_norm", dev_compare(be, dx, y, M * C), 1e-5);
    be->free(be, dx); be->free(be, dw); be->free(be, db);
    free(x); free(w); free(b); free(y);
    return ok;
}

static int check_gelu(backend_t *be) {
    const int64_t n = 5000;
    float *x = ref_new_random(n, 4.0f), *y = ref_new(n);
    float *dx = ref_to_dev(be, x, n);
    be->gelu(be, dx, dx, n);
    ops_ref_gelu(y, x, n);
    int ok = check_report("gelu", dev_compare(be, dx, y, n), 1e-5);
    be->free(be, dx);
    free(x); free(y);
    return ok;
}

static int check_conv2d(backend_t *be) {
    const int64_t B = 1, H = 37, W = 29, Cin = 3, Cout = 24;
    const int k = 7, s = 4, p = 3;
    const int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
    float *x = ref_new_random(B * H * W * Cin, 1.0f), *w = ref_new_random(Cout * Cin * k * k, 0.3f);
    float *b = ref_new_random(Cout, 1.0f), *y = ref_new(B * Ho * Wo * Cout);
    float *dx = ref_to_dev(be, x, B * H * W * Cin), *dw = ref_to_dev(be, w, Cout * Cin * k * k);
    float *db = ref_to_dev(be, b, Cout), *dy = be->alloc(be, B * Ho * Wo * Cout * sizeof(float));
    CHECK(dy);
    be->conv2d(be, dy, dx, dw, db, B, H, W, Cin, Cout, k, k, s, p);
    ops_ref_conv2d(y, x, w, b, B, H, W, Cin, Cout, k, k, s, p);
    int ok = check_report("conv2d 7x7/4", dev_compare(be, dy, y, B * Ho * Wo * Cout), gemm_bound);
    be->free(be, dx); be->free(be, dw); be->free(be, db); be->free(be, dy);
    free(x); free(w); free(b); free(y);
    return ok;
}

static int check_conv_transpose(backend_t *be) {
    const int64_t B = 2, H = 9, W = 7, Cin = 32, Cout = 16;
    float *x = ref_new_random(B * H * W * Cin, 1.0f), *w = ref_new_random(Cin * Cout * 4, 0.3f);
    float *b = ref_new_random(Cout, 1.0f), *y = ref_new(B * 4 * H * W * Cout);
    float *dx = ref_to_dev(be, x, B * H * W * Cin), *dw = ref_to_dev(be, w, Cin * Cout * 4);
    float *db = ref_to_dev(be, b, Cout), *dy = be->alloc(be, B * 4 * H * W * Cout * sizeof(float));
    CHECK(dy);
    be->conv_transpose2x2(be, dy, dx, dw, db, B, H, W, Cin, Cout);
    ops_ref_conv_transpose2x2(y, x, w, b, B, H, W, Cin, Cout);
    int ok = check_report("conv_transpose2x2", dev_compare(be, dy, y, B * 4 * H * W * Cout),
                          gemm_bound);
    be->free(be, dx); be->free(be, dw); be->free(be, db); be->free(be, dy);
    free(x); free(w); free(b); free(y);
    return ok;
}

static int check_layout(backend_t *be) {
    const int64_t B = 2, H = 30, W = 19, C = 7, ws = 8;
    const int64_t n = B * H * W * C, nwin = B * 4 * 3 * ws * ws * C;
    float *x = ref_new_random(n, 1.0f), *y = ref_new(nwin);
    float *dx = ref_to_dev(be, x, n), *dy = be->alloc(be, nwin * sizeof(float));
    CHECK(dy);
    be->window_partition(be, dy, dx, B, H, W, C, ws);
    ops_ref_window_partition(y, x, B, H, W, C, ws);
    int ok = check_report("window_partition", dev_compare(be, dy, y, nwin), 0.0);
    be->nhwc_to_nchw(be, dy, dx, B, H, W, C);
    ops_ref_nhwc_to_nchw(y, x, B, H, W, C);
    ok &= check_report("nhwc_to_nchw", dev_compare(be, dy, y, n), 0.0);
    be->free(be, dx); be->free(be, dy);
    free(x); free(y);
    return ok;
}

/* resize_bilinear: exact against the CPU backend, which blends in float
 * step by step as the kernel does (ops_ref blends in double and differs in
 * the last bit on about half the outputs). */
static int check_resize(backend_t *be) {
    const int64_t N = 3, Hi = 64, Wi = 64, Ho = 150, Wo = 200;
    float *x = ref_new_random(N * Hi * Wi, 10.0f), *y = ref_new(N * Ho * Wo);
    float *dx = ref_to_dev(be, x, N * Hi * Wi), *dy = be->alloc(be, N * Ho * Wo * sizeof(float));
    CHECK(dy);
    be->resize_bilinear(be, dy, dx, N, Hi, Wi, Ho, Wo);
    backend_t *cpu = backend_cpu_create(1);
    cpu->resize_bilinear(cpu, y, x, N, Hi, Wi, Ho, Wo);
    cpu->destroy(cpu);
    int ok = check_report("resize_bilinear", dev_compare(be, dy, y, N * Ho * Wo), 0.0);
    be->free(be, dx); be->free(be, dy);
    free(x); free(y);
    return ok;
}

/* ---- timed shapes ---- */

static void skip_oom(const char *label) {
    printf("%-58s skipped (out of device memory)\n", label);
}

static void time_linear(backend_t *be, const char *what, int64_t M, int64_t K, int64_t N) {
    char label[192];
    snprintf(label, sizeof label, "linear %s M=%lld K=%lld N=%lld", what, (long long)M,
             (long long)K, (long long)N);
    float *x = dev_random(be, M * K, 1.0f), *w = dev_random(be, N * K, 0.1f);
    float *b = dev_random(be, N, 1.0f), *y = be->alloc(be, (size_t)(M * N) * sizeof(float));
    if (x && w && b && y)
        BENCH(be, label, 2.0 * M * K * N, 4.0 * (M * K + N * K + M * N),
              be->linear(be, y, N, x, K, w, b, M, K, N));
    else
        skip_oom(label);
    be->free(be, x); be->free(be, w); be->free(be, b); be->free(be, y);
}

/* attention with packed qkv (ld 3*nh*dh) when Lq == Lk, separate otherwise */
static void time_attention(backend_t *be, const char *what, int64_t B, int64_t Lq, int64_t Lk,
                           int64_t nh, int64_t dh) {
    if (gemm_only) return;
    char label[192];
    snprintf(label, sizeof label, "attention %s B=%lld Lq=%lld Lk=%lld nh=%lld dh=%lld", what,
             (long long)B, (long long)Lq, (long long)Lk, (long long)nh, (long long)dh);
    const int64_t D = nh * dh;
    float *q = dev_random(be, B * Lq * D, 1.0f), *k = dev_random(be, B * Lk * D, 1.0f);
    float *v = dev_random(be, B * Lk * D, 1.0f), *o = be->alloc(be, (size_t)(B * Lq * D) * sizeof(float));
    const double flop = 4.0 * B * nh * Lq * Lk * dh;
    const double bytes = 4.0 * (2.0 * B * Lq * D + 2.0 * B * Lk * D);
    if (q && k && v && o)
        BENCH(be, label, flop, bytes,
              be->attention(be, o, q, D, k, D, v, D, B, Lq, Lk, nh, dh, 1.0f / sqrtf((float)dh)));
    else
        skip_oom(label);
    be->free(be, q); be->free(be, k); be->free(be, v); be->free(be, o);
}

static void time_layer_norm(backend_t *be, const char *what, int64_t M, int64_t C) {
    if (gemm_only) return;
    char label[192];
    snprintf(label, sizeof label, "layer_norm %s M=%lld C=%lld", what, (long long)M, (long long)C);
    float *x = dev_random(be, M * C, 1.0f), *w = dev_random(be, C, 1.0f), *b = dev_random(be, C, 1.0f);
    float *y = be->alloc(be, (size_t)(M * C) * sizeof(float));
    if (x && w && b && y)
        BENCH(be, label, 0.0, 8.0 * M * C, be->layer_norm(be, y, x, w, b, M, C, 1e-6f));
    else
        skip_oom(label);
    be->free(be, x); be->free(be, w); be->free(be, b); be->free(be, y);
}

static void time_gelu(backend_t *be, const char *what, int64_t n) {
    if (gemm_only) return;
    char label[192];
    snprintf(label, sizeof label, "gelu %s n=%lld", what, (long long)n);
    float *x = dev_random(be, n, 3.0f), *y = be->alloc(be, (size_t)n * sizeof(float));
    if (x && y)
        BENCH(be, label, 0.0, 8.0 * n, be->gelu(be, y, x, n));
    else
        skip_oom(label);
    be->free(be, x); be->free(be, y);
}

static void time_conv2d(backend_t *be, const char *what, int64_t H, int64_t W, int64_t Cin,
                        int64_t Cout, int k, int s, int p) {
    char label[192];
    snprintf(label, sizeof label, "conv2d %s %lldx%lldx%lld->%lld k=%d s=%d", what, (long long)H,
             (long long)W, (long long)Cin, (long long)Cout, k, s);
    const int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
    float *x = dev_random(be, H * W * Cin, 1.0f), *w = dev_random(be, Cout * Cin * k * k, 0.1f);
    float *b = dev_random(be, Cout, 1.0f), *y = be->alloc(be, (size_t)(Ho * Wo * Cout) * sizeof(float));
    if (x && w && b && y)
        BENCH(be, label, 2.0 * Ho * Wo * Cout * Cin * k * k,
              4.0 * (H * W * Cin + Cout * Cin * k * k + Ho * Wo * Cout),
              be->conv2d(be, y, x, w, b, 1, H, W, Cin, Cout, k, k, s, p));
    else
        skip_oom(label);
    be->free(be, x); be->free(be, w); be->free(be, b); be->free(be, y);
}

static void time_conv_transpose(backend_t *be, const char *what, int64_t B, int64_t H,
                                int64_t W, int64_t Cin, int64_t Cout) {
    char label[192];
    snprintf(label, sizeof label, "conv_transpose2x2 %s B=%lld %lldx%lldx%lld->%lld", what,
             (long long)B, (long long)H, (long long)W, (long long)Cin, (long long)Cout);
    const int64_t M = B * H * W;
    float *x = dev_random(be, M * Cin, 1.0f), *w = dev_random(be, Cin * Cout * 4, 0.1f);
    float *b = dev_random(be, Cout, 1.0f), *y = be->alloc(be, (size_t)(M * 4 * Cout) * sizeof(float));
    if (x && w && b && y)
        BENCH(be, label, 2.0 * M * Cin * Cout * 4, 4.0 * (M * Cin + Cin * Cout * 4 + M * 4 * Cout),
              be->conv_transpose2x2(be, y, x, w, b, B, H, W, Cin, Cout));
    else
        skip_oom(label);
    be->free(be, x); be->free(be, w); be->free(be, b); be->free(be, y);
}

static void time_bmm(backend_t *be, const char *what, int64_t T, int64_t M, int64_t K, int64_t N,
                     int tb) {
    char label[192];
    snprintf(label, sizeof label, "bmm %s batch=%lld M=%lld K=%lld N=%lld", what, (long long)T,
             (long long)M, (long long)K, (long long)N);
    float *a = dev_random(be, T * M * K, 1.0f), *b = dev_random(be, T * K * N, 1.0f);
    float *c = be->alloc(be, (size_t)(T * M * N) * sizeof(float));
    if (a && b && c)
        BENCH(be, label, 2.0 * T * M * K * N, 4.0 * T * (M * K + K * N + M * N),
              be->bmm(be, c, a, b, T, M, K, N, tb));
    else
        skip_oom(label);
    be->free(be, a); be->free(be, b); be->free(be, c);
}

static void time_window_partition(backend_t *be, const char *what, int64_t H, int64_t W,
                                  int64_t C, int64_t ws) {
    if (gemm_only) return;
    char label[192];
    snprintf(label, sizeof label, "window_partition %s %lldx%lldx%lld ws=%lld", what,
             (long long)H, (long long)W, (long long)C, (long long)ws);
    const int64_t n = H * W * C, nwin = ((H + ws - 1) / ws) * ((W + ws - 1) / ws) * ws * ws * C;
    float *x = dev_random(be, n, 1.0f), *y = be->alloc(be, (size_t)nwin * sizeof(float));
    if (x && y)
        BENCH(be, label, 0.0, 4.0 * (n + nwin), be->window_partition(be, y, x, 1, H, W, C, ws));
    else
        skip_oom(label);
    be->free(be, x); be->free(be, y);
}

static void time_transpose(backend_t *be, const char *what, int64_t B, int64_t H, int64_t W,
                           int64_t C) {
    if (gemm_only) return;
    char label[192];
    snprintf(label, sizeof label, "nhwc_to_nchw %s %lldx%lldx%lldx%lld", what, (long long)B,
             (long long)H, (long long)W, (long long)C);
    const int64_t n = B * H * W * C;
    float *x = dev_random(be, n, 1.0f), *y = be->alloc(be, (size_t)n * sizeof(float));
    if (x && y)
        BENCH(be, label, 0.0, 8.0 * n, be->nhwc_to_nchw(be, y, x, B, H, W, C));
    else
        skip_oom(label);
    be->free(be, x); be->free(be, y);
}

static void time_resize(backend_t *be, const char *what, int64_t N, int64_t Hi, int64_t Wi,
                        int64_t Ho, int64_t Wo) {
    if (gemm_only) return;
    char label[192];
    snprintf(label, sizeof label, "resize_bilinear %s N=%lld %lldx%lld->%lldx%lld", what,
             (long long)N, (long long)Hi, (long long)Wi, (long long)Ho, (long long)Wo);
    float *x = dev_random(be, N * Hi * Wi, 1.0f), *y = be->alloc(be, (size_t)(N * Ho * Wo) * sizeof(float));
    if (x && y)
        BENCH(be, label, 0.0, 4.0 * (N * Hi * Wi + N * Ho * Wo),
              be->resize_bilinear(be, y, x, N, Hi, Wi, Ho, Wo));
    else
        skip_oom(label);
    be->free(be, x); be->free(be, y);
}

/* Hiera at 1024x1024: tokens 256^2, 128^2, 64^2, 32^2 per stage. */
static void bench_hiera(backend_t *be, const char *model, int64_t C0, int64_t nh0,
                        int64_t win2, int64_t win3) {
    char what[64];
    const int64_t dh = C0 / nh0;
    const int64_t S = 256;
    snprintf(what, sizeof what, "%s patch_embed", model);
    time_conv2d(be, what, 1024, 1024, 3, C0, 7, 4, 3);
    for (int st = 0; st < 4; st++) {
        const int64_t side = S >> st, C = C0 << st, nh = nh0 << st, L = side * side;
        const int64_t win = st == 0 ? 8 : st == 1 ? 4 : st == 2 ? win2 : win3;
        const int64_t nwin = ((side + win - 1) / win) * ((side + win - 1) / win);
        snprintf(what, sizeof what, "%s s%d qkv", model, st + 1);
        time_linear(be, what, L, C, 3 * C);
        snprintf(what, sizeof what, "%s s%d mlp1", model, st + 1);
        time_linear(be, what, L, C, 4 * C);
        snprintf(what, sizeof what, "%s s%d mlp2", model, st + 1);
        time_linear(be, what, L, 4 * C, C);
        snprintf(what, sizeof what, "%s s%d window", model, st + 1);
        time_attention(be, what, nwin, win * win, win * win, nh, dh);
        snprintf(what, sizeof what, "%s s%d", model, st + 1);
        time_layer_norm(be, what, L, C);
        time_window_partition(be, what, side, side, C, win);
        if (st == 0) time_gelu(be, what, L * 4 * C);
        if (st == 2) {
            snprintf(what, sizeof what, "%s s3 global", model);
            time_attention(be, what, 1, L, L, nh, dh);
        }
    }
}

/* The mask decoder with P prompts (embedding 256, 8 heads, internal 128 in
 * the cross attentions: dh 16; 7 tokens for one point prompt). */
static void bench_decoder(backend_t *be, int64_t P) {
    char what[64];
    snprintf(what, sizeof what, "dec P=%lld", (long long)P);
    time_linear(be, what, P * 4096, 256, 128);
    time_attention(be, "dec tok->img", P, 7, 4096, 8, 16);
    time_attention(be, "dec tok->img shared", 1, 7 * P, 4096, 8, 16);   // B=1: key split
    time_attention(be, "dec img->tok", P, 4096, 7, 8, 16);
    time_attention(be, "dec tok self", P, 7, 7, 8, 32);
    time_conv_transpose(be, "dec up1", P, 64, 64, 256, 64);
    time_layer_norm(be, what, P * 128 * 128, 64);
    time_gelu(be, what, P * 128 * 128 * 64);
    time_conv_transpose(be, "dec up2", P, 128, 128, 64, 32);
    time_bmm(be, "dec hyper", P, 4, 32, 256 * 256, 1);
    time_transpose(be, what, P, 64, 64, 256);
    time_resize(be, "dec masks", P * 3, 256, 256, 1024, 1024);
}

int main(int argc, char **argv) {
    err_t err = {{0}};
    backend_t *be = backend_cuda_create(0, &err);
    if (!be) {
        printf("bench_cuda: %s\n", err.msg);
        return ref_require_cuda();
    }
    be->precision = BACKEND_FP32;   /* checked at float32 bounds (bf16: test_ops, gpu_model) */
    gemm_bound = ref_gemm_tf32() ? 2e-3 : 1e-5;
    printf("bench_cuda on %s (GEMM %s)\n", be->name, ref_gemm_tf32() ? "tf32" : "f32");

    int ok_gemm = check_linear(be) & check_bmm(be);
    int ok_att = check_attention(be, 16) & check_attention(be, 72) & check_attention(be, 96) &
                 check_attention_split(be);
    int ok_ln = check_layer_norm(be), ok_gelu = check_gelu(be);
    int ok_conv = check_conv2d(be) & check_conv_transpose(be);
    int ok_layout = check_layout(be), ok_resize = check_resize(be);
    if (!(ok_gemm && ok_att && ok_ln && ok_gelu && ok_conv && ok_layout && ok_resize)) {
        printf("bench_cuda: %d check(s) failed; not timing\n", check_failures);
        be->destroy(be);
        return 1;
    }

    bench_hiera(be, "tiny", 96, 1, 14, 7);
    bench_hiera(be, "large", 144, 2, 16, 8);
    int64_t def[] = {64, 256, 1024};
    if (argc > 1) {
        for (int i = 1; i < argc; i++) bench_decoder(be, strtoll(argv[i], NULL, 10));
    } else {
        for (size_t i = 0; i < sizeof def / sizeof def[0]; i++) bench_decoder(be, def[i]);
    }

    /* bf16: the GEMM ops against the reference's bf16 mode, then timed */
    be->precision = BACKEND_BF16;
    gemm_bound = 2e-4;
    ops_ref_set_bf16(1);
    int ok16 = check_linear(be) & check_bmm(be) & check_conv2d(be) & check_conv_transpose(be);
    ops_ref_set_bf16(0);
    if (!ok16) {
        printf("bench_cuda: %d bf16 check(s) failed; not timing bf16\n", check_failures);
        be->destroy(be);
        return 1;
    }
    gemm_only = 1;
    label_prefix = "bf16 ";
    bench_hiera(be, "tiny", 96, 1, 14, 7);
    bench_hiera(be, "large", 144, 2, 16, 8);
    if (argc > 1) {
        for (int i = 1; i < argc; i++) bench_decoder(be, strtoll(argv[i], NULL, 10));
    } else {
        for (size_t i = 0; i < sizeof def / sizeof def[0]; i++) bench_decoder(be, def[i]);
    }
    be->destroy(be);
    return 0;
}

#endif
