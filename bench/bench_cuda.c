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
 *
 *
 * bf16 rows: attention runs in both precisions on every shape (the float32
 * kernel of kernels/attention.cu, then the tensor-core flash kernel of
 * kernels/flash_attn.cu, with be->precision BACKEND_BF16), and the decoder
 * tail upscale2_masks (kernels/upscale_tail.cu) runs fused in fp32 and bf16
 * against the unfused ops (conv_transpose2x2 + add + gelu + bmm). Their
 * rows print TFLOP/s and the fraction of BENCH_BF16_PEAK, the H100's
 * measured dense bf16 peak (~790 TFLOP/s), and the speedup over the float32
 * path. The bf16 checks compare with references computed from inputs
 * rounded to bf16 (bench_round_bf16), so their bounds measure the kernel,
 * not the rounding of its inputs.
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

#define BENCH_BF16_PEAK 790e12   /* H100 SXM dense bf16, measured (FLOP/s) */

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

/* bench_round_bf16: x rounded to bf16 (nearest, ties to even), kept as
 * float: what the bf16 kernels read (finite inputs only). */
static float bench_round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

static float *bench_rounded_copy(const float *x, int64_t n) {
    float *y = ref_new(n);
    for (int64_t i = 0; i < n; i++) y[i] = bench_round_bf16(x[i]);
    return y;
}

/* bench_print_bf16: a row of the bf16 comparisons: ms, TFLOP/s, share of
 * the bf16 peak and, when ref_ms > 0, the speedup over the float32 path. */
static void bench_print_bf16(const char *label, double ms, double flop, double ref_ms) {
    const double tf = flop / (ms * 1e-3) / 1e12;
    printf("%-58s %9.3f ms %8.2f TFLOP/s %5.1f%% of bf16 peak", label, ms, tf,
           100.0 * tf * 1e12 / BENCH_BF16_PEAK);
    if (ref_ms > 0) printf("  x%.2f vs fp32", ref_ms / ms);
    printf("\n");
    fflush(stdout);
}

/* BENCH_MS: like BENCH, but stores the milliseconds per call in ms_out and
 * prints nothing. */
#define BENCH_MS(be, ms_out, stmt)                                             \
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
        (ms_out) = (bench_now() - t0_) * 1e3 / reps_;                          \
    } while (0)

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

/* check_flash: the bf16 attention (be->precision BACKEND_BF16) against the
 * reference on bf16-rounded q, k, v; q, k, v packed in one (B,L,3*nh*dh)
 * tensor when Lq == Lk (the Hiera layout, row strides 3*nh*dh). The
 * remaining error is P's rounding to bf16 before P.V (~2^-9 relative per
 * term), so the bound is 1e-2. */
static int check_flash(backend_t *be, int64_t B, int64_t Lq, int64_t Lk, int64_t nh,
                       int64_t dh) {
    const int64_t D = nh * dh, packed = Lq == Lk, ld = packed ? 3 * D : D;
    const float scale = 1.0f / sqrtf((float)dh);
    const int64_t nq = B * Lq * ld, nkv = packed ? 0 : B * Lk * D;
    float *hq = ref_new_random(nq, 2.0f), *hk = packed ? NULL : ref_new_random(nkv, 2.0f);
    float *hv = packed ? NULL : ref_new_random(nkv, 1.0f), *o = ref_new(B * Lq * D);
    float *dq = ref_to_dev(be, hq, nq);
    float *dk = packed ? dq + D : ref_to_dev(be, hk, nkv);
    float *dv = packed ? dq + 2 * D : ref_to_dev(be, hv, nkv);
    float *dout = be->alloc(be, (size_t)(B * Lq * D) * sizeof(float));
    CHECK(dout);
    const int prec = be->precision;
    be->precision = BACKEND_BF16;
    be->attention(be, dout, dq, ld, dk, ld, dv, ld, B, Lq, Lk, nh, dh, scale);
    be->precision = prec;
    float *rq = bench_rounded_copy(hq, nq);
    float *rk = packed ? NULL : bench_rounded_copy(hk, nkv), *rv = packed ? NULL : bench_rounded_copy(hv, nkv);
    ops_ref_attention(o, rq, ld, packed ? rq + D : rk, ld, packed ? rq + 2 * D : rv, ld, B, Lq, Lk,
                      nh, dh, scale);
    char name[96];
    snprintf(name, sizeof name, "attention bf16 B=%lld Lq=%lld Lk=%lld nh=%lld dh=%lld%s",
             (long long)B, (long long)Lq, (long long)Lk, (long long)nh, (long long)dh,
             packed ? " packed" : "");
    int ok = check_report(name, dev_compare(be, dout, o, B * Lq * D), 1e-2);
    be->free(be, dq); be->free(be, dout);
    if (!packed) { be->free(be, dk); be->free(be, dv); }
    free(hq); free(hk); free(hv); free(o); free(rq); free(rk); free(rv);
    return ok;
}

/* upscale_ref: the unfused decoder tail on the host, masks (n,nm,2H,2W):
 * conv_transpose2x2 + skip (or none) + gelu, then the hyper product in
 * double. */
static void upscale_ref(float *masks, const float *x, const float *w, const float *b,
                        const float *skip, const float *hyper, int64_t n, int64_t H, int64_t W,
                        int64_t Cin, int64_t Cout, int64_t nm) {
    const int64_t L4 = 4 * H * W;
    float *y = ref_new(n * L4 * Cout);
    ops_ref_conv_transpose2x2(y, x, w, b, n, H, W, Cin, Cout);
    if (skip)
        for (int64_t p = 0; p < n; p++)
            for (int64_t i = 0; i < L4 * Cout; i++) y[p * L4 * Cout + i] += skip[i];
    ops_ref_gelu(y, y, n * L4 * Cout);
    for (int64_t p = 0; p < n; p++)
        for (int64_t m = 0; m < nm; m++)
            for (int64_t r = 0; r < L4; r++) {
                double acc = 0.0;
                for (int64_t c = 0; c < Cout; c++)
                    acc += (double)hyper[(p * nm + m) * Cout + c] * y[(p * L4 + r) * Cout + c];
                masks[(p * nm + m) * L4 + r] = (float)acc;
            }
    free(y);
}

/* check_upscale: upscale2_masks in precision prec against upscale_ref (on
 * bf16-rounded x and w where the bf16 kernel runs: its products are then
 * exact and only the float32 sums differ). Shapes with H*W not a multiple
 * of the 64-pixel tile. */
static int check_upscale(backend_t *be, int prec, int64_t n, int64_t H, int64_t W, int64_t Cin,
                         int64_t Cout, int64_t nm, int with_skip) {
    const int64_t nx = n * H * W * Cin, nw = Cin * Cout * 4, ns = 4 * H * W * Cout;
    const int64_t nout = n * nm * 4 * H * W;
    float *x = ref_new_random(nx, 1.0f), *w = ref_new_random(nw, 0.3f);
    float *b = ref_new_random(Cout, 0.5f), *sk = ref_new_random(ns, 1.0f);
    float *hy = ref_new_random(n * nm * Cout, 1.0f), *want = ref_new(nout);
    float *dx = ref_to_dev(be, x, nx), *dw = ref_to_dev(be, w, nw), *db = ref_to_dev(be, b, Cout);
    float *dsk = ref_to_dev(be, sk, ns), *dhy = ref_to_dev(be, hy, n * nm * Cout);
    float *dm = be->alloc(be, (size_t)nout * sizeof(float));
    CHECK(dm);
    const int keep = be->precision;
    be->precision = prec;
    be->upscale2_masks(be, dm, dx, dw, db, with_skip ? dsk : NULL, dhy, n, H, W, Cin, Cout, nm);
    be->precision = keep;
    /* the shapes the tensor-core kernel takes (kernels/kernels.h); others
     * run the float32 kernel in bf16 mode too */
    const int tc = prec == BACKEND_BF16 && Cout == 32 && Cin % 16 == 0 && Cin <= 64 && nm <= 4;
    if (tc) {
        for (int64_t i = 0; i < nx; i++) x[i] = bench_round_bf16(x[i]);
        for (int64_t i = 0; i < nw; i++) w[i] = bench_round_bf16(w[i]);
    }
    upscale_ref(want, x, w, b, with_skip ? sk : NULL, hy, n, H, W, Cin, Cout, nm);
    char name[96];
    snprintf(name, sizeof name, "upscale2_masks %s n=%lld %lldx%lldx%lld->%lld nm=%lld%s",
             prec == BACKEND_BF16 ? "bf16" : "fp32", (long long)n, (long long)H, (long long)W,
             (long long)Cin, (long long)Cout, (long long)nm, with_skip ? "" : " noskip");
    int ok = check_report(name, dev_compare(be, dm, want, nout), 1e-5);
    be->free(be, dx); be->free(be, dw); be->free(be, db); be->free(be, dsk); be->free(be, dhy);
    be->free(be, dm);
    free(x); free(w); free(b); free(sk); free(hy); free(want);
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

/* time_mlp2: the Hiera MLP's second half, y += linear(gelu(h)), composed
 * (gelu pass, linear, add) and fused (linear_ex: the GELU in the input's
 * bf16 conversion, the residual through the GEMM's beta), in the bf16 pass
 * only (linear_ex declines in float32). Bytes: what each moves (composed:
 * h read twice and written once more, the product written and read once
 * more, y read; fused: h, w, y read, y written). */
static void time_mlp2(backend_t *be, const char *what, int64_t M, int64_t K, int64_t N) {
    if (!be->linear_ex || be->precision != BACKEND_BF16) return;
    char label[192];
    float *h = dev_random(be, M * K, 1.0f), *w = dev_random(be, N * K, 0.1f);
    float *b = dev_random(be, N, 1.0f), *y = dev_random(be, M * N, 1.0f);
    float *t = be->alloc(be, (size_t)(M * N) * sizeof(float));
    snprintf(label, sizeof label, "mlp2 %s gelu+linear+add M=%lld K=%lld N=%lld", what,
             (long long)M, (long long)K, (long long)N);
    if (!(h && w && b && y && t)) {
        skip_oom(label);
    } else {
        BENCH(be, label, 2.0 * M * K * N, 4.0 * (3 * M * K + N * K + 4 * M * N), {
            be->gelu(be, h, h, M * K);
            be->linear(be, t, N, h, K, w, b, M, K, N);
            be->add(be, y, y, t, M * N);
        });
        snprintf(label, sizeof label, "mlp2 %s linear_ex fused M=%lld K=%lld N=%lld", what,
                 (long long)M, (long long)K, (long long)N);
        if (be->linear_ex(be, y, N, h, K, w, b, y, N, 1, M, K, N) == 0)
            BENCH(be, label, 2.0 * M * K * N, 4.0 * (M * K + N * K + 2 * M * N),
                  (void)be->linear_ex(be, y, N, h, K, w, b, y, N, 1, M, K, N));
        else
            printf("%s%-58s declined\n", label_prefix, label);
    }
    be->free(be, h); be->free(be, w); be->free(be, b); be->free(be, y); be->free(be, t);
}

/* attention with packed qkv (ld 3*nh*dh) when Lq == Lk, separate otherwise */
static void time_attention(backend_t *be, const char *what, int64_t B, int64_t Lq, int64_t Lk,
                           int64_t nh, int64_t dh) {
    if (gemm_only) return;
    char label[192];
    snprintf(label, sizeof label, "attention %s B=%lld Lq=%lld Lk=%lld nh=%lld dh=%lld", what,
             (long long)B, (long long)Lq, (long long)Lk, (long long)nh, (long long)dh);
    const int64_t D = nh * dh, packed = Lq == Lk, ld = packed ? 3 * D : D;
    float *q = dev_random(be, B * Lq * ld, 1.0f);
    float *k = packed ? NULL : dev_random(be, B * Lk * D, 1.0f);
    float *v = packed ? NULL : dev_random(be, B * Lk * D, 1.0f);
    float *o = be->alloc(be, (size_t)(B * Lq * D) * sizeof(float));
    const float *kk = packed ? q + D : k, *vv = packed ? q + 2 * D : v;
    const double flop = 4.0 * B * nh * Lq * Lk * dh;
    const double bytes = 4.0 * (2.0 * B * Lq * D + 2.0 * B * Lk * D);
    if (q && kk && vv && o) {
        const float sc = 1.0f / sqrtf((float)dh);
        const int keep = be->precision;
        double ms32 = 0.0, ms16 = 0.0;
        be->precision = BACKEND_FP32;
        BENCH_MS(be, ms32, be->attention(be, o, q, ld, kk, ld, vv, ld, B, Lq, Lk, nh, dh, sc));
        bench_print(label, ms32, flop, bytes);
        be->precision = BACKEND_BF16;
        BENCH_MS(be, ms16, be->attention(be, o, q, ld, kk, ld, vv, ld, B, Lq, Lk, nh, dh, sc));
        be->precision = keep;
        snprintf(label, sizeof label, "  bf16 flash B=%lld Lq=%lld Lk=%lld nh=%lld dh=%lld",
                 (long long)B, (long long)Lq, (long long)Lk, (long long)nh, (long long)dh);
        bench_print_bf16(label, ms16, flop, ms32);
    } else {
        skip_oom(label);
    }
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

/* the decoder tail at P prompts (x (P,128,128,64) -> masks (P,4,256,256)):
 * unfused (conv_transpose2x2, add skip per prompt, gelu, bmm with the
 * hyper vectors) in float32, then upscale2_masks in fp32 and bf16. FLOPs:
 * the conv (2 Cin Cout per output pixel) and the product (2 nm Cout). */
static void time_upscale(backend_t *be, int64_t P) {
    const int64_t H = 128, W = 128, Cin = 64, Cout = 32, nm = 4, L4 = 4 * H * W;
    char label[192];
    snprintf(label, sizeof label, "dec tail unfused P=%lld (convT+add+gelu+bmm)", (long long)P);
    float *x = dev_random(be, P * H * W * Cin, 1.0f), *w = dev_random(be, Cin * Cout * 4, 0.1f);
    float *b = dev_random(be, Cout, 1.0f), *sk = dev_random(be, L4 * Cout, 1.0f);
    float *hy = dev_random(be, P * nm * Cout, 1.0f);
    float *m = be->alloc(be, (size_t)(P * nm * L4) * sizeof(float));
    float *up = be->alloc(be, (size_t)(P * L4 * Cout) * sizeof(float));
    const double flop = (double)P * L4 * (2.0 * Cin * Cout + 2.0 * nm * Cout);
    if (x && w && b && sk && hy && m) {
        const int keep = be->precision;
        double ms_un = 0.0, ms32 = 0.0, ms16 = 0.0;
        if (up) {
            be->precision = BACKEND_FP32;
            BENCH_MS(be, ms_un, {
                be->conv_transpose2x2(be, up, x, w, b, P, H, W, Cin, Cout);
                for (int64_t p_ = 0; p_ < P; p_++)
                    be->add(be, up + p_ * L4 * Cout, up + p_ * L4 * Cout, sk, L4 * Cout);
                be->gelu(be, up, up, P * L4 * Cout);
                be->bmm(be, m, hy, up, P, nm, Cout, L4, 1);
            });
            bench_print(label, ms_un, flop, 0.0);
        } else {
            skip_oom(label);
        }
        be->precision = BACKEND_FP32;
        BENCH_MS(be, ms32, be->upscale2_masks(be, m, x, w, b, sk, hy, P, H, W, Cin, Cout, nm));
        snprintf(label, sizeof label, "  upscale2_masks fp32 P=%lld", (long long)P);
        bench_print_bf16(label, ms32, flop, ms_un);
        be->precision = BACKEND_BF16;
        BENCH_MS(be, ms16, be->upscale2_masks(be, m, x, w, b, sk, hy, P, H, W, Cin, Cout, nm));
        snprintf(label, sizeof label, "  upscale2_masks bf16 P=%lld", (long long)P);
        bench_print_bf16(label, ms16, flop, ms_un);
        be->precision = keep;
    } else {
        skip_oom(label);
    }
    be->free(be, x); be->free(be, w); be->free(be, b); be->free(be, sk); be->free(be, hy);
    be->free(be, m); be->free(be, up);
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
        time_mlp2(be, what, L, 4 * C, C);
        snprintf(what, sizeof what, "%s s%d window", model, st + 1);
        time_attention(be, what, nwin, win * win, win * win, nh, dh);
        if (st > 0) {   // the stage's first block: q pooled 2x2, the previous stage's windows
            const int64_t pw = st == 1 ? 8 : st == 2 ? 4 : win2, ps = side * 2;
            const int64_t pn = ((ps + pw - 1) / pw) * ((ps + pw - 1) / pw);
            snprintf(what, sizeof what, "%s s%d pool", model, st + 1);
            time_attention(be, what, pn, (pw / 2) * (pw / 2), pw * pw, nh, dh);
        }
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

/* time_lowrank_expand: layer 1's projections of the low-rank decoder for a
 * chunk of n prompts (HW 4096, q = 129, N2 = 512: dc1's 256 columns then
 * the final keys and values), and its variances (lowrank_rstd with the
 * Gram product, or lowrank_rstd_gram), in bf16, composed (bmm into a (n*HW, 512)
 * tensor, two row_affine; the upscaling's window_unpartition, LayerNorm
 * and GELU after) and fused (two lowrank_expand calls, the first with the
 * LayerNorm). Bytes: what each must move at least (fused: p twice, y once;
 * composed: the product's write and read on top, and the upscaling's three
 * passes). */
static void time_lowrank_expand(backend_t *be, int64_t n) {
    if (!be->lowrank_expand || !be->bmm || !be->row_affine) return;
    const int64_t HW = 4096, hf = 64, q = 129, C = 256, N2 = 2 * C, M = n * HW;
    const int prec = be->precision;
    be->precision = BACKEND_BF16;
    char label[192];
    float *p = dev_random(be, M * q, 0.1f), *m = dev_random(be, n * q * N2, 0.1f);
    float *a = dev_random(be, M, 1.0f), *sa = dev_random(be, M, 1.0f);
    float *su = dev_random(be, HW * N2, 1.0f), *lw = dev_random(be, C / 4, 1.0f);
    float *out = be->alloc(be, (size_t)(M * N2) * sizeof(float));
    float *k = be->alloc(be, (size_t)(M * C) * sizeof(float));
    float *kpe = be->alloc(be, (size_t)(M * C) * sizeof(float));
    if (p && m && a && sa && su && lw && out && k && kpe) {
        snprintf(label, sizeof label, "bf16 lowrank layer1 composed n=%lld q=%lld N=%lld",
                 (long long)n, (long long)q, (long long)N2);
        BENCH(be, label, 2.0 * M * q * N2, 4.0 * (M * q + 3 * M * N2 + 6 * M * C), {
            be->bmm(be, out, p, m, n, HW, q, N2, 0);
            be->row_affine(be, k, C, out, N2, a, su, N2, sa, su, N2, n, HW, C);
            be->row_affine(be, kpe, C, out + C, N2, a, su + C, N2, sa, su + C, N2, n, HW, C);
            be->window_unpartition(be, out, k, n, 2 * hf, 2 * hf, C / 4, 2);
            be->layer_norm(be, out, out, lw, lw, 4 * M, C / 4, 1e-6f);
            be->gelu(be, out, out, M * C);
        });
        snprintf(label, sizeof label, "bf16 lowrank layer1 fused n=%lld q=%lld N=%lld",
                 (long long)n, (long long)q, (long long)N2);
        int rc = 0;
        BENCH(be, label, 2.0 * M * q * N2, 4.0 * (2 * M * q + M * N2), {
            rc |= be->lowrank_expand(be, k, C, p, q, m, N2, a, su, N2, sa, su, N2, lw, lw, 1e-6f,
                                     hf, n, HW, q, C, 0);
            rc |= be->lowrank_expand(be, kpe, C, p, q, m + C, N2, a, su + C, N2, sa, su + C, N2,
                                     NULL, NULL, 0.0f, 0, n, HW, q, C, 0);
        });
        if (rc) printf("bf16 lowrank layer1 fused: declined (rc %d): the figure above is void\n", rc);
        /* the final attention on those keys and values (float32 here; T = 8
         * queries per prompt, p's first rows), then in bf16 below */
        const int64_t Ci = C / 2, dhh = Ci / 8;
        snprintf(label, sizeof label, "bf16 final attention kv float32 B=%lld Lq=8 Lk=%lld",
                 (long long)n, (long long)HW);
        BENCH(be, label, 4.0 * n * 8 * 8 * HW * dhh, 4.0 * (2.0 * n * HW * Ci), {
            be->attention(be, out, p, Ci, kpe, C, kpe + Ci, C, n, 8, HW, 8, dhh, 0.25f);
        });
        /* as the decoder runs it where attention_kv16 reads them: the final
         * keys and values in bf16 (half their bytes), and that attention */
        snprintf(label, sizeof label, "bf16 lowrank layer1 fused, kv bf16 n=%lld q=%lld N=%lld",
                 (long long)n, (long long)q, (long long)N2);
        rc = 0;
        BENCH(be, label, 2.0 * M * q * N2, 4.0 * (2 * M * q + M * N2) - 2.0 * M * C, {
            rc |= be->lowrank_expand(be, k, C, p, q, m, N2, a, su, N2, sa, su, N2, lw, lw, 1e-6f,
                                     hf, n, HW, q, C, 0);
            rc |= be->lowrank_expand(be, kpe, C, p, q, m + C, N2, a, su + C, N2, sa, su + C, N2,
                                     NULL, NULL, 0.0f, 0, n, HW, q, C, 1);
        });
        if (rc) printf("bf16 lowrank layer1 fused, kv bf16: declined (rc %d): the figure above is void\n", rc);
        if (be->attention_kv16) {
            snprintf(label, sizeof label, "bf16 final attention kv bf16 B=%lld Lq=8 Lk=%lld",
                     (long long)n, (long long)HW);
            const uint16_t *kv = (const uint16_t *)kpe;
            rc = 0;
            BENCH(be, label, 4.0 * n * 8 * 8 * HW * dhh, 2.0 * (2.0 * n * HW * Ci), {
                rc |= be->attention_kv16(be, out, p, Ci, kv, C, kv + Ci, C, n, 8, HW, 8, dhh,
                                         0.25f);
            });
            if (rc) printf("bf16 final attention kv bf16: declined (rc %d): the figure above is void\n", rc);
        }
        snprintf(label, sizeof label, "bf16 lowrank layer0 composed n=%lld r=64 N=384", (long long)n);
        BENCH(be, label, 2.0 * M * 64 * 384, 4.0 * (M * 64 + 3 * M * 384), {
            be->bmm(be, out, p, m, n, HW, 64, 384, 0);
            be->row_affine(be, out, 384, out, 384, a, su, 384, NULL, su, 384, n, HW, 384);
        });
        snprintf(label, sizeof label, "bf16 lowrank layer0 fused n=%lld r=64 N=384", (long long)n);
        rc = 0;   /* each row says its own decline, not an earlier one's */
        BENCH(be, label, 2.0 * M * 64 * 384, 4.0 * (M * 64 + M * 384), {
            rc |= be->lowrank_expand(be, out, 384, p, 64, m, 384, a, su, 384, NULL, su, 384, NULL,
                                     NULL, 0.0f, 0, n, HW, 64, 384, 0);
        });
        if (rc) printf("bf16 lowrank layer0 fused: declined (rc %d): the figure above is void\n", rc);
        /* as the decoder runs it with attention_kv16: keys and values (256
         * columns) in bf16, queries (128) in float32, three calls */
        snprintf(label, sizeof label, "bf16 lowrank layer0 fused, kv bf16 n=%lld r=64 N=384",
                 (long long)n);
        rc = 0;
        BENCH(be, label, 2.0 * M * 64 * 384, 4.0 * (3 * M * 64 + M * 128) + 2.0 * M * 256, {
            uint16_t *kv16 = (uint16_t *)(out + M * 128);
            rc |= be->lowrank_expand(be, (float *)kv16, 256, p, 64, m, 384, a, su, 384, NULL, su,
                                     384, NULL, NULL, 0.0f, 0, n, HW, 64, 128, 1);
            rc |= be->lowrank_expand(be, (float *)(kv16 + 128), 256, p, 64, m + 256, 384, a,
                                     su + 256, 384, NULL, su + 256, 384, NULL, NULL, 0.0f, 0, n,
                                     HW, 64, 128, 1);
            rc |= be->lowrank_expand(be, out, 128, p, 64, m + 128, 384, a, su + 128, 384, NULL,
                                     su + 128, 384, NULL, NULL, 0.0f, 0, n, HW, 64, 128, 0);
        });
        if (rc) printf("bf16 lowrank layer0 fused, kv bf16: declined (rc %d): the figure above is void\n", rc);
        /* the variances of layer 1: p (M, q) . bb (n, q, q) then the Gram
         * sums, or fused; out stands for e and k for pg (both M*q fit) */
        if (be->lowrank_rstd_gram) {
            snprintf(label, sizeof label, "bf16 lowrank rstd composed n=%lld q=%lld", (long long)n,
                     (long long)q);
            BENCH(be, label, 2.0 * M * q * q, 4.0 * (4 * M * q + M), {
                be->bmm(be, k, p, m, n, HW, q, q, 0);
                be->lowrank_rstd(be, a, su, sa, p, q, out, k, n, HW, q, C, 1e-6f);
            });
            snprintf(label, sizeof label, "bf16 lowrank rstd fused n=%lld q=%lld", (long long)n,
                     (long long)q);
            rc = 0;
            BENCH(be, label, 2.0 * M * q * q, 4.0 * (2 * M * q + M), {
                rc |= be->lowrank_rstd_gram(be, a, su, sa, p, q, out, m, n, HW, q, C, 1e-6f);
            });
            if (rc) printf("bf16 lowrank rstd fused: declined (rc %d): the figure above is void\n", rc);
        }
    } else {
        skip_oom("lowrank_expand");
    }
    float *all[] = {p, m, a, sa, su, lw, out, k, kpe};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->free(be, all[i]);
    be->precision = prec;
}

/* time_lowrank: the decoder's low-rank LayerNorm helpers at its shapes, on
 * one chunk of min(P, 128) prompts (the device chunk at 1024 px): image
 * tokens HW 4096, T 8 prompt tokens, 8 heads of 16, rank r = 64 (layer 0)
 * and q = 2r+1 (layer 1). Bytes are what each must move at least. */
static void time_lowrank(backend_t *be, int64_t P) {
    if (gemm_only || !be->attention_probs || !be->attention_scores || !be->lowrank_rstd ||
        !be->row_affine)
        return;
    const int64_t n = P < 128 ? P : 128, HW = 4096, T = 8, nh = 8, dh = 16, Ci = nh * dh;
    const int64_t C = 256, r = nh * T, q = 2 * r + 1, M = n * HW, N1 = 3 * Ci;
    char label[192];
    float *qs = dev_random(be, HW * C, 1.0f), *qp = dev_random(be, M * Ci, 1.0f);
    float *k = dev_random(be, n * T * C, 1.0f);
    float *pr = be->alloc(be, (size_t)(M * q) * sizeof(float));
    float *e = dev_random(be, M * q, 0.3f), *pg = dev_random(be, M * q, 0.3f);
    float *xx = dev_random(be, HW, 1.0f), *rs = be->alloc(be, (size_t)M * sizeof(float));
    float *y = dev_random(be, M * N1, 1.0f), *su = dev_random(be, HW * N1, 1.0f);
    if (qs && qp && k && pr && e && pg && xx && rs && y && su) {
        be->memset0(be, pr, (size_t)(M * q) * sizeof(float));   // columns r..q-1: rstd reads them
        snprintf(label, sizeof label, "lowrank probs shared q n=%lld HW=%lld T=%lld", (long long)n,
                 (long long)HW, (long long)T);
        BENCH(be, label, 0.0, 4.0 * (M * r + HW * Ci),
              be->attention_probs(be, pr, r, qs, C, 0, k, C, n, HW, T, nh, dh, 0.25f));
        snprintf(label, sizeof label, "lowrank scores shared q n=%lld ldp=%lld", (long long)n,
                 (long long)q);
        BENCH(be, label, 0.0, 4.0 * (M * r + HW * Ci),
              be->attention_scores(be, pr, q, qs, C, 0, k, C, n, HW, T, nh, dh, 1.0f));
        snprintf(label, sizeof label, "lowrank probs per-prompt q n=%lld", (long long)n);
        BENCH(be, label, 0.0, 4.0 * (M * r + M * Ci),
              be->attention_probs(be, pr, q, qp, Ci, HW * Ci, k, C, n, HW, T, nh, dh, 0.25f));
        snprintf(label, sizeof label, "lowrank rstd n=%lld r=%lld", (long long)n, (long long)q);
        BENCH(be, label, 0.0, 4.0 * (3 * M * q + M),
              be->lowrank_rstd(be, rs, xx, NULL, pr, q, e, pg, n, HW, q, C, 1e-6f));
        be->sync(be);
        snprintf(label, sizeof label, "lowrank row_affine n=%lld N=%lld", (long long)n,
                 (long long)N1);
        BENCH(be, label, 0.0, 8.0 * M * N1,
              be->row_affine(be, y, N1, y, N1, rs, su, N1, NULL, su, N1, n, HW, N1));
    } else {
        skip_oom("lowrank helpers");
    }
    float *all[] = {qs, qp, k, pr, e, pg, xx, rs, y, su};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->free(be, all[i]);
    time_lowrank_expand(be, n);
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
    time_upscale(be, P);
    time_transpose(be, what, P, 64, 64, 256);
    time_resize(be, "dec masks", P * 3, 256, 256, 1024, 1024);
    time_lowrank(be, P);
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
    /* bf16 attention: Hiera windows (packed qkv), q-pooled, tails of L and
     * of dh (12: not a multiple of 4, the scalar loads), one query tile of
     * <= 16 rows (1 warp), the key split (B = 1, 4096 keys), dh 128 */
    int ok_flash = check_flash(be, 3, 64, 64, 1, 96) & check_flash(be, 2, 49, 196, 2, 72) &
                   check_flash(be, 2, 37, 75, 2, 12) & check_flash(be, 3, 7, 4096, 8, 16) &
                   check_flash(be, 2, 100, 9, 8, 16) & check_flash(be, 1, 21, 4096, 8, 16) &
                   check_flash(be, 1, 130, 300, 1, 128) & check_flash(be, 2, 33, 33, 4, 56);
    /* upscale2_masks: the tensor-core path (Cin 64, Cout 32, nm 3-4), the
     * tiled float32 kernel (fp32 mode; Cout 32 with nm 5 in bf16 mode) and
     * the generic one (nm 5 takes two passes), both precisions */
    int ok_up = 1;
    for (int prec = BACKEND_FP32; prec <= BACKEND_BF16; prec++) {
        ok_up &= check_upscale(be, prec, 3, 9, 11, 64, 32, 4, 1);
        ok_up &= check_upscale(be, prec, 2, 8, 8, 64, 32, 3, 0);
        ok_up &= check_upscale(be, prec, 2, 5, 7, 32, 32, 5, 1);   // nm 5: float32 tiled
        ok_up &= check_upscale(be, prec, 2, 5, 7, 24, 8, 5, 1);    // generic kernel
    }
    ok_att &= ok_flash & ok_up;
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
