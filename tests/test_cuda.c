/* test_cuda.c: the CUDA backend against naive host references.
 *
 * In a CUDA build, always checked: creating a backend on a device that does
 * not exist fails with a message instead of crashing (on a machine without
 * a GPU or driver, every device is missing). When device 0 exists,
 * every op of include/backend.h runs on it from random inputs, on shapes
 * chosen to hit the edges (sizes off the tile multiples, strided rows,
 * padding, in-place calls, several scratch chunks), and is compared with
 * tests/cuda_ref.h: NaN/Inf first, then normalized error under a per-op
 * bound. Bounds: GEMM-based ops 1e-5 (true float32 cuBLAS, the default;
 * 2e-3 under SAM2AMG_CUDA_GEMM=tf32, see src/backend_cuda.c), float
 * kernels 1e-5, data movement exact. Bilinear resize is compared bit for
 * bit with the CPU backend, which blends in float step by step as the
 * kernel does (ops_ref blends in double, so against it the bound is 1e-6).
 * The backend is created in bf16 (its default); the parity tests above run
 * it in fp32, then test_bf16 checks the bf16 GEMM machinery of
 * src/backend_cuda.c against ops_ref's bf16 mode at 2e-4 (the bound
 * tests/test_ops.c derives; the bf16 cost itself, ~2e-3, is checked to
 * show so the rounding happened): the weight's bf16 copy, made at first
 * use, refreshed after an upload, never used once an op wrote the region;
 * a weight at an offset in its allocation (aligned: from the copy; not:
 * converted per call); row and batch chunks past the bf16 workspace (a
 * second backend with SAM2AMG_CUDA_BF16_WS_MB=1), and the cublasGemmEx
 * fallback where cuBLASLt has no algorithm (the emulator's
 * SAM2AMG_EMU_LT_NO_ALGO=1);
 * bmm with either operand weight-like, conv2d with an odd patch size,
 * conv_transpose2x2; and fp32 exact again after.
 * With no device the parity part is skipped, not failed, unless
 * SAM2AMG_REQUIRE_CUDA=1 (tests/gpu/check.sh) makes it a failure; a
 * CPU-only build skips everything (tests/test_ops.c checks that
 * backend_create refuses "cuda:0" there), or fails under the same variable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "cuda_ref.h"
#include "test.h"

#ifndef SAM2AMG_CUDA
int main(void) {
    printf("# skipped: no CUDA in this build\n");
    TEST_CHECK(!ref_require_cuda(), "cuda: SAM2AMG_REQUIRE_CUDA=1 needs a CUDA build",
               "this build has no CUDA");
    return TEST_REPORT();
}
#else

#include "../kernels/kernels.h"

static double gemm_bound;   // 1e-5 with float32 GEMMs, 2e-3 with SAM2AMG_CUDA_GEMM=tf32
static backend_t *cpu;      // the CPU backend: resize_bilinear's float-order result

/* expect_close: download n floats of dev and compare them with want. */
static void expect_close(backend_t *be, const char *name, const float *dev, const float *want,
                         int64_t n, double bound) {
    float *got = ref_from_dev(be, dev, n);
    double e = ref_error(got, want, n);
    printf("# %-58s err %.3g (bound %.3g)\n", name, e, bound);
    TEST_CHECK(e <= bound, name, "normalized error %.3g > %.3g", e, bound);
    free(got);
}

/* expect_exact: download n floats of dev; every one must equal want. */
static void expect_exact(backend_t *be, const char *name, const float *dev, const float *want,
                         int64_t n) {
    float *got = ref_from_dev(be, dev, n);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0 && !(got[i] == want[i])) {
            if (first < 0) first = i;
            bad++;
        }
    printf("# %-58s mismatches %lld of %lld\n", name, (long long)bad, (long long)n);
    TEST_CHECK(bad == 0, name, "%lld of %lld differ, first at %lld: %.9g vs %.9g",
               (long long)bad, (long long)n, (long long)first,
               first >= 0 ? got[first] : 0.0, first >= 0 ? want[first] : 0.0);
    free(got);
}

static void test_memory(backend_t *be) {
    const int64_t n = 1000;
    float *h = ref_new_random(n, 1.0f), *back = ref_new(n);
    float *d = ref_to_dev(be, h, n), *d2 = be->alloc(be, n * sizeof(float));
    CHECK(d2);
    TEST_CHECK(((uintptr_t)d & 255) == 0, "cuda: alloc is 256-byte aligned", "%p", (void *)d);
    be->copy(be, d2, d, n * sizeof(float));
    be->download(be, back, d2, n * sizeof(float));
    TEST_CHECK(memcmp(back, h, n * sizeof(float)) == 0, "cuda: upload/copy/download round trip",
               "data differs");
    be->memset0(be, d2, 10 * sizeof(float));
    be->download(be, back, d2, n * sizeof(float));
    int zero_ok = 1;
    for (int i = 0; i < 10; i++) zero_ok &= back[i] == 0.0f;
    TEST_CHECK(zero_ok && back[10] == h[10], "cuda: memset0 clears exactly its range", "bad");
    void *huge = be->alloc(be, (size_t)1 << 52);
    TEST_CHECK(huge == NULL, "cuda: an impossible alloc returns NULL", "got %p", huge);
    // the failed alloc must not poison later launch checks
    be->relu(be, d2, d, n);
    float *want = ref_new(n);
    ops_ref_relu(want, h, n);
    expect_exact(be, "cuda: relu after a failed alloc", d2, want, n);
    be->free(be, d);
    be->free(be, d2);
    free(h);
    free(back);
    free(want);
}

static void test_linear(backend_t *be, int64_t M, int64_t K, int64_t N, int64_t ldx,
                        int64_t ldy, int bias) {
    float *x = ref_new_random(M * ldx, 1.0f), *w = ref_new_random(N * K, 0.5f);
    float *b = ref_new_random(N, 1.0f), *y = ref_new_random(M * ldy, 1.0f);
    float *dx = ref_to_dev(be, x, M * ldx), *dw = ref_to_dev(be, w, N * K);
    float *db = ref_to_dev(be, b, N), *dy = ref_to_dev(be, y, M * ldy);
    be->linear(be, dy, ldy, dx, ldx, dw, bias ? db : NULL, M, K, N);
    ops_ref_linear(y, ldy, x, ldx, w, bias ? b : NULL, M, K, N);   // columns past N keep y
    char name[128];
    snprintf(name, sizeof name, "cuda: linear M=%lld K=%lld N=%lld ldx=%lld ldy=%lld bias=%d",
             (long long)M, (long long)K, (long long)N, (long long)ldx, (long long)ldy, bias);
    expect_close(be, name, dy, y, M * ldy, gemm_bound);
    be->free(be, dx); be->free(be, dw); be->free(be, db); be->free(be, dy);
    free(x); free(w); free(b); free(y);
}

static void test_bmm(backend_t *be, int64_t batch, int64_t M, int64_t K, int64_t N, int tb) {
    float *a = ref_new_random(batch * M * K, 1.0f), *b = ref_new_random(batch * K * N, 1.0f);
    float *c = ref_new(batch * M * N);
    float *da = ref_to_dev(be, a, batch * M * K), *dbm = ref_to_dev(be, b, batch * K * N);
    float *dc = be->alloc(be, batch * M * N * sizeof(float));
    CHECK(dc);
    be->bmm(be, dc, da, dbm, batch, M, K, N, tb);
    ops_ref_bmm(c, a, b, batch, M, K, N, tb);
    char name[128];
    snprintf(name, sizeof name, "cuda: bmm batch=%lld M=%lld K=%lld N=%lld trans_b=%d",
             (long long)batch, (long long)M, (long long)K, (long long)N, tb);
    expect_close(be, name, dc, c, batch * M * N, gemm_bound);
    be->free(be, da); be->free(be, dbm); be->free(be, dc);
    free(a); free(b); free(c);
}

/* attention with q, k, v packed in one (B, L, 3*nh*dh) tensor when Lq == Lk
 * and packed is set (the Hiera qkv layout), separate tensors otherwise. */
static void test_attention(backend_t *be, int64_t B, int64_t Lq, int64_t Lk, int64_t nh,
                           int64_t dh, int packed) {
    const int64_t D = nh * dh;
    const float scale = 1.0f / sqrtf((float)dh);
    float *q, *k, *v, *hq, *hk, *hv, *dq, *dk, *dv, *hbuf = NULL, *dbuf = NULL;
    int64_t ldq = D, ldk = D, ldv = D;
    if (packed) {
        CHECK(Lq == Lk);
        hbuf = ref_new_random(B * Lq * 3 * D, 2.0f);
        dbuf = ref_to_dev(be, hbuf, B * Lq * 3 * D);
        hq = hbuf; hk = hbuf + D; hv = hbuf + 2 * D;
        dq = dbuf; dk = dbuf + D; dv = dbuf + 2 * D;
        ldq = ldk = ldv = 3 * D;
        q = k = v = NULL;
    } else {
        hq = q = ref_new_random(B * Lq * D, 2.0f);
        hk = k = ref_new_random(B * Lk * D, 2.0f);
        hv = v = ref_new_random(B * Lk * D, 1.0f);
        dq = ref_to_dev(be, q, B * Lq * D);
        dk = ref_to_dev(be, k, B * Lk * D);
        dv = ref_to_dev(be, v, B * Lk * D);
    }
    float *o = ref_new(B * Lq * D), *dout = be->alloc(be, B * Lq * D * sizeof(float));
    CHECK(dout);
    be->attention(be, dout, dq, ldq, dk, ldk, dv, ldv, B, Lq, Lk, nh, dh, scale);
    ops_ref_attention(o, hq, ldq, hk, ldk, hv, ldv, B, Lq, Lk, nh, dh, scale);
    char name[128];
    snprintf(name, sizeof name, "cuda: attention B=%lld Lq=%lld Lk=%lld nh=%lld dh=%lld%s",
             (long long)B, (long long)Lq, (long long)Lk, (long long)nh, (long long)dh,
             packed ? " packed" : "");
    expect_close(be, name, dout, o, B * Lq * D, 1e-5);
    if (packed) {
        be->free(be, dbuf);
        free(hbuf);
    } else {
        be->free(be, dq); be->free(be, dk); be->free(be, dv);
        free(q); free(k); free(v);
    }
    be->free(be, dout);
    free(o);
}

static void test_layer_norm(backend_t *be, int64_t M, int64_t C) {
    float *x = ref_new_random(M * C, 3.0f), *w = ref_new_random(C, 1.0f);
    float *b = ref_new_random(C, 1.0f), *y = ref_new(M * C);
    for (int64_t i = 0; i < M * C; i++) x[i] += 5.0f;   // a mean far from 0
    float *dx = ref_to_dev(be, x, M * C), *dw = ref_to_dev(be, w, C), *db = ref_to_dev(be, b, C);
    be->layer_norm(be, dx, dx, dw, db, M, C, 1e-6f);   // in place
    ops_ref_layer_norm(y, x, w, b, M, C, 1e-6f);
    char name[96];
    snprintf(name, sizeof name, "cuda: layer_norm in place M=%lld C=%lld", (long long)M,
             (long long)C);
    expect_close(be, name, dx, y, M * C, 1e-5);
    be->free(be, dx); be->free(be, dw); be->free(be, db);
    free(x); free(w); free(b); free(y);
}

static void test_elementwise(backend_t *be, int64_t M, int64_t C) {
    const int64_t n = M * C;
    float *a = ref_new_random(n, 4.0f), *b = ref_new_random(n, 4.0f), *row = ref_new_random(C, 1.0f);
    float *want = ref_new(n);
    float *da = ref_to_dev(be, a, n), *dbv = ref_to_dev(be, b, n), *drow = ref_to_dev(be, row, C);
    float *dy = be->alloc(be, n * sizeof(float));
    CHECK(dy);

    be->gelu(be, dy, da, n);
    ops_ref_gelu(want, a, n);
    expect_close(be, "cuda: gelu", dy, want, n, 1e-5);

    be->copy(be, dy, da, n * sizeof(float));
    be->gelu(be, dy, dy, n);
    expect_close(be, "cuda: gelu in place", dy, want, n, 1e-5);

    be->relu(be, dy, da, n);
    ops_ref_relu(want, a, n);
    expect_exact(be, "cuda: relu", dy, want, n);

    be->copy(be, dy, da, n * sizeof(float));
    be->add(be, dy, dy, dbv, n);
    ops_ref_add(want, a, b, n);
    expect_exact(be, "cuda: add in place (y = a)", dy, want, n);

    be->add_row(be, dy, da, drow, M, C);
    ops_ref_add_row(want, a, row, M, C);
    expect_exact(be, "cuda: add_row", dy, want, n);

    be->copy(be, dy, dbv, n * sizeof(float));
    be->scale_add(be, dy, da, 0.5f, -2.0f, n);
    memcpy(want, b, n * sizeof(float));
    ops_ref_scale_add(want, a, 0.5f, -2.0f, n);
    expect_close(be, "cuda: scale_add", dy, want, n, 1e-6);

    float *nan = ref_new(n);
    for (int64_t i = 0; i < n; i++) nan[i] = NAN;
    be->upload(be, dy, nan, n * sizeof(float));
    be->scale_add(be, dy, da, 3.0f, 0.0f, n);
    ops_ref_scale_add(want, a, 3.0f, 0.0f, n);
    expect_close(be, "cuda: scale_add beta=0 ignores a NaN y", dy, want, n, 1e-6);

    be->free(be, da); be->free(be, dbv); be->free(be, drow); be->free(be, dy);
    free(a); free(b); free(row); free(want); free(nan);
}

static void test_conv2d(backend_t *be, int64_t B, int64_t H, int64_t W, int64_t Cin,
                        int64_t Cout, int k, int stride, int pad, int bias) {
    const int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    const int64_t nx = B * H * W * Cin, nw = Cout * Cin * k * k, ny = B * Ho * Wo * Cout;
    float *x = ref_new_random(nx, 1.0f), *w = ref_new_random(nw, 0.3f);
    float *b = ref_new_random(Cout, 1.0f), *y = ref_new(ny);
    float *dx = ref_to_dev(be, x, nx), *dw = ref_to_dev(be, w, nw), *db = ref_to_dev(be, b, Cout);
    float *dy = be->alloc(be, ny * sizeof(float));
    CHECK(dy);
    be->conv2d(be, dy, dx, dw, bias ? db : NULL, B, H, W, Cin, Cout, k, k, stride, pad);
    ops_ref_conv2d(y, x, w, bias ? b : NULL, B, H, W, Cin, Cout, k, k, stride, pad);
    char name[128];
    snprintf(name, sizeof name, "cuda: conv2d B=%lld %lldx%lldx%lld->%lld k=%d s=%d p=%d b=%d",
             (long long)B, (long long)H, (long long)W, (long long)Cin, (long long)Cout, k, stride,
             pad, bias);
    expect_close(be, name, dy, y, ny, gemm_bound);
    be->free(be, dx); be->free(be, dw); be->free(be, db); be->free(be, dy);
    free(x); free(w); free(b); free(y);
}

static void test_conv_transpose(backend_t *be, int64_t B, int64_t H, int64_t W, int64_t Cin,
                                int64_t Cout, int bias) {
    const int64_t nx = B * H * W * Cin, nw = Cin * Cout * 4, ny = B * 4 * H * W * Cout;
    float *x = ref_new_random(nx, 1.0f), *w = ref_new_random(nw, 0.3f);
    float *b = ref_new_random(Cout, 1.0f), *y = ref_new(ny);
    float *dx = ref_to_dev(be, x, nx), *dw = ref_to_dev(be, w, nw), *db = ref_to_dev(be, b, Cout);
    float *dy = be->alloc(be, ny * sizeof(float));
    CHECK(dy);
    be->conv_transpose2x2(be, dy, dx, dw, bias ? db : NULL, B, H, W, Cin, Cout);
    ops_ref_conv_transpose2x2(y, x, w, bias ? b : NULL, B, H, W, Cin, Cout);
    char name[128];
    snprintf(name, sizeof name, "cuda: conv_transpose2x2 B=%lld %lldx%lldx%lld->%lld b=%d",
             (long long)B, (long long)H, (long long)W, (long long)Cin, (long long)Cout, bias);
    expect_close(be, name, dy, y, ny, gemm_bound);
    be->free(be, dx); be->free(be, dw); be->free(be, db); be->free(be, dy);
    free(x); free(w); free(b); free(y);
}

static void test_spatial(backend_t *be, int64_t B, int64_t H, int64_t W, int64_t C,
                         int64_t ws) {
    const int64_t n = B * H * W * C;
    const int64_t nwin = B * ((H + ws - 1) / ws) * ((W + ws - 1) / ws) * ws * ws * C;
    float *x = ref_new_random(n, 1.0f);
    float *want = ref_new(nwin > 4 * n ? nwin : 4 * n);
    float *dx = ref_to_dev(be, x, n);
    float *dy = be->alloc(be, (nwin > 4 * n ? nwin : 4 * n) * sizeof(float));
    float *dz = be->alloc(be, n * sizeof(float));
    CHECK(dy && dz);
    char name[128];

    be->maxpool2x2(be, dy, dx, B, H, W, C);
    ops_ref_maxpool2x2(want, x, B, H, W, C);
    snprintf(name, sizeof name, "cuda: maxpool2x2 %lldx%lldx%lldx%lld", (long long)B,
             (long long)H, (long long)W, (long long)C);
    expect_exact(be, name, dy, want, B * (H / 2) * (W / 2) * C);

    be->upsample_nearest2x(be, dy, dx, B, H, W, C);
    ops_ref_upsample_nearest2x(want, x, B, H, W, C);
    snprintf(name, sizeof name, "cuda: upsample_nearest2x %lldx%lldx%lldx%lld", (long long)B,
             (long long)H, (long long)W, (long long)C);
    expect_exact(be, name, dy, want, 4 * n);

    be->window_partition(be, dy, dx, B, H, W, C, ws);
    ops_ref_window_partition(want, x, B, H, W, C, ws);
    snprintf(name, sizeof name, "cuda: window_partition %lldx%lldx%lldx%lld ws=%lld",
             (long long)B, (long long)H, (long long)W, (long long)C, (long long)ws);
    expect_exact(be, name, dy, want, nwin);

    be->window_unpartition(be, dz, dy, B, H, W, C, ws);
    snprintf(name, sizeof name, "cuda: window_unpartition inverts partition ws=%lld",
             (long long)ws);
    expect_exact(be, name, dz, x, n);

    be->nhwc_to_nchw(be, dy, dx, B, H, W, C);
    ops_ref_nhwc_to_nchw(want, x, B, H, W, C);
    snprintf(name, sizeof name, "cuda: nhwc_to_nchw %lldx%lldx%lldx%lld", (long long)B,
             (long long)H, (long long)W, (long long)C);
    expect_exact(be, name, dy, want, n);

    be->nchw_to_nhwc(be, dz, dy, B, C, H, W);
    expect_exact(be, "cuda: nchw_to_nhwc inverts nhwc_to_nchw", dz, x, n);

    be->free(be, dx); be->free(be, dy); be->free(be, dz);
    free(x); free(want);
}

/* resize_bilinear: bit for bit equal to the CPU backend (same float
 * steps), and within 1e-6 of ops_ref's double blend */
static void test_resize(backend_t *be, int64_t N, int64_t Hi, int64_t Wi, int64_t Ho,
                        int64_t Wo) {
    float *x = ref_new_random(N * Hi * Wi, 10.0f), *y = ref_new(N * Ho * Wo);
    float *yc = ref_new(N * Ho * Wo);
    float *dx = ref_to_dev(be, x, N * Hi * Wi), *dy = be->alloc(be, N * Ho * Wo * sizeof(float));
    CHECK(dy);
    be->resize_bilinear(be, dy, dx, N, Hi, Wi, Ho, Wo);
    cpu->resize_bilinear(cpu, yc, x, N, Hi, Wi, Ho, Wo);
    ops_ref_resize_bilinear(y, x, N, Hi, Wi, Ho, Wo);
    char name[128];
    snprintf(name, sizeof name, "cuda: resize_bilinear %lldx%lldx%lld -> %lldx%lld = cpu backend",
             (long long)N, (long long)Hi, (long long)Wi, (long long)Ho, (long long)Wo);
    expect_exact(be, name, dy, yc, N * Ho * Wo);
    snprintf(name, sizeof name, "cuda: resize_bilinear %lldx%lldx%lld -> %lldx%lld vs ops_ref",
             (long long)N, (long long)Hi, (long long)Wi, (long long)Ho, (long long)Wo);
    expect_close(be, name, dy, y, N * Ho * Wo, 1e-6);
    be->free(be, dx); be->free(be, dy);
    free(x); free(y); free(yc);
}

/* ---- bf16 (precision BACKEND_BF16) ---- */
#define BF16_GEMM 2e-4   /* tests/test_ops.c: bf16 GEMM vs ops_ref's bf16 mode */

/* test_convert: kernels/convert.cu's float32 -> bf16 conversion, bit for bit
 * against ops_ref_bf16_round: flat lengths 1..37 and one long one, source
 * and destination at every offset mod 16 bytes (the float4 path and the
 * scalar one, every tail), and the strided form with padded rows and items;
 * values include ties, NaN, +-Inf, -0 and subnormals */
static void test_convert(backend_t *be) {
    enum { NMAX = 4100, OFF = 4 };
    float *h = ref_new_random(NMAX + OFF, 8.0f);
    uint16_t *got = malloc((NMAX + OFF) * sizeof *got);
    CHECK(got);
    for (int i = 0; i < NMAX + OFF; i++) {
        float v = h[i];
        switch (i % 11) {
        case 1: v = 1.0f + 1.0f / 256.0f; break;          // a tie: to even (1.0)
        case 3: v = 1.0f + 3.0f / 256.0f; break;          // a tie: to even (up)
        case 5: v = (i % 2 ? 1 : -1) * INFINITY; break;
        case 7: v = NAN; break;
        case 8: v = -0.0f; break;
        case 9: v = 1e-40f; break;
        }
        h[i] = v;
    }
    float *src = ref_to_dev(be, h, NMAX + OFF);
    uint16_t *dst = be->alloc(be, (NMAX + OFF) * sizeof(uint16_t));
    CHECK(dst);
    int bad = 0, cases = 0;
    const int lens[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 37, NMAX};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (int so = 0; so < OFF; so++)
            for (int d0 = 0; d0 < OFF; d0++) {
                const int n = lens[li];
                cuda_f32_to_bf16(NULL, dst + d0, src + so, n);
                CHECK(cuda_default_stream_sync() == 0);
                be->download(be, got, dst + d0, (size_t)n * sizeof(uint16_t));
                for (int i = 0; i < n; i++) {
                    float r = ops_ref_bf16_round(h[so + i]);
                    uint32_t u;
                    memcpy(&u, &r, 4);
                    uint16_t want = (uint16_t)(u >> 16);
                    if (got[i] != want && !(isnan(h[so + i]) && (got[i] & 0x7f80) == 0x7f80 &&
                                            (got[i] & 0x7f))) {
                        if (!bad++)
                            printf("# convert n=%d src+%d dst+%d: [%d] 0x%04x, want 0x%04x\n", n,
                                   so, d0, i, got[i], want);
                    }
                }
                cases++;
            }
    // strided: 3 items of 5 rows of 13 from rows of 17 (items 90 apart)
    // into rows of 16 (items 96 apart), padding untouched
    uint16_t *fill = malloc(3 * 96 * sizeof *fill);
    CHECK(fill);
    for (int i = 0; i < 3 * 96; i++) fill[i] = 0xBEEF;
    be->upload(be, dst, fill, 3 * 96 * sizeof *fill);
    cuda_f32_to_bf16_strided(NULL, dst, 16, 96, src + 1, 17, 90, 3, 5, 13);
    CHECK(cuda_default_stream_sync() == 0);
    be->download(be, got, dst, 3 * 96 * sizeof(uint16_t));
    for (int b = 0; b < 3; b++)
        for (int r = 0; r < 5; r++)
            for (int c = 0; c < 16; c++) {
                uint16_t g = got[b * 96 + r * 16 + c], want = 0xBEEF;
                if (c < 13) {
                    float v = ops_ref_bf16_round(h[1 + b * 90 + r * 17 + c]);
                    uint32_t u;
                    memcpy(&u, &v, 4);
                    want = (uint16_t)(u >> 16);
                    if (isnan(h[1 + b * 90 + r * 17 + c]) && (g & 0x7f80) == 0x7f80 && (g & 0x7f))
                        continue;
                }
                if (g != want && !bad++)
                    printf("# convert strided [%d][%d][%d]: 0x%04x, want 0x%04x\n", b, r, c, g,
                           want);
            }
    TEST_CHECK(bad == 0, "cuda: f32 -> bf16 conversion bit for bit (flat at every offset and "
               "tail, strided with padding)", "%d wrong values over %d flat cases", bad, cases);
    free(h), free(got), free(fill);
    be->free(be, src), be->free(be, dst);
}

/* bf16_linear: y = x . w^T (+ b) in bf16 on be, with x (M,K) and w (N,K)
 * at device addresses dx, dw whose host copies are hx, hw; checked against
 * the bf16 reference, and shown to differ from the exact one */
static void bf16_linear(backend_t *be, const char *what, const float *hx, const float *dx,
                        const float *hw, const float *dw, int64_t M, int64_t K, int64_t N) {
    float *want = ref_new(M * N), *exact = ref_new(M * N);
    float *dy = be->alloc(be, (size_t)(M * N) * sizeof(float));
    CHECK(dy);
    be->linear(be, dy, N, dx, K, dw, NULL, M, K, N);
    ops_ref_set_bf16(1);
    ops_ref_linear(want, N, hx, K, hw, NULL, M, K, N);
    ops_ref_set_bf16(0);
    ops_ref_linear(exact, N, hx, K, hw, NULL, M, K, N);
    char name[160];
    snprintf(name, sizeof name, "cuda bf16: linear %s M=%lld K=%lld N=%lld", what, (long long)M,
             (long long)K, (long long)N);
    expect_close(be, name, dy, want, M * N, BF16_GEMM);
    float *got = ref_from_dev(be, dy, M * N);
    double e = ref_error(got, exact, M * N);
    snprintf(name, sizeof name, "cuda bf16: linear %s rounds its inputs", what);
    TEST_CHECK(e >= 5 * BF16_GEMM, name, "error %.3g against the exact product: not bf16", e);
    free(got), free(want), free(exact);
    be->free(be, dy);
}

/* linear_ex on be (bf16) over M rows, y = gelu(x) . w^T + b + r with r = y
 * itself (1), then a matrix apart (2), y's row stride ld >= N (its padding
 * keeps r's values where r is y, the zeros it was given where r is apart),
 * against the reference's bf16 mode; `how` names the path in the check names */
static void check_linear_ex_rows(backend_t *be, const char *how, int64_t M, int64_t K, int64_t N,
                                 int64_t ld) {
    float *hx = ref_new_random(M * K, 1.0f), *hw = ref_new_random(N * K, 1.0f);
    float *hb = ref_new_random(N, 1.0f), *hr = ref_new_random(M * ld, 1.0f);
    float *gx = ref_new(M * K), *want = ref_new(M * ld);
    float *ddx = ref_to_dev(be, hx, M * K), *ddw = ref_to_dev(be, hw, N * K);
    float *ddb = ref_to_dev(be, hb, N), *ddr = ref_to_dev(be, hr, M * ld);
    float *ddy = be->alloc(be, (size_t)(M * ld) * 4);
    CHECK(ddy);
    ops_ref_gelu(gx, hx, M * K);
    for (int res = 1; res <= 2; res++) {
        be->copy(be, ddy, ddr, (size_t)(M * ld) * 4);   // y's padding: r's values
        memcpy(want, hr, (size_t)(M * ld) * 4);
        ops_ref_set_bf16(1);
        ops_ref_linear(want, ld, gx, K, hw, hb, M, K, N);
        ops_ref_set_bf16(0);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) want[i * ld + j] += hr[i * ld + j];
        if (res == 2) be->memset0(be, ddy, (size_t)(M * ld) * 4);   // r apart: y is not read
        int rc = be->linear_ex(be, ddy, ld, ddx, K, ddw, ddb, res == 1 ? ddy : ddr, ld, 1, M, K, N);
        if (res == 2)   // y's padding stays as memset0 left it
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = N; j < ld; j++) want[i * ld + j] = 0.0f;
        char name[200];
        snprintf(name, sizeof name, "cuda bf16, %s: linear_ex fuses (r %s)", how,
                 res == 1 ? "= y" : "apart");
        TEST_CHECK(rc == 0, name, "rc %d", rc);
        snprintf(name, sizeof name, "cuda bf16, %s: linear_ex, GELU'd x + bias + %s", how,
                 res == 1 ? "y" : "r");
        expect_close(be, name, ddy, want, M * ld, BF16_GEMM);
    }
    be->free(be, ddx), be->free(be, ddw), be->free(be, ddb), be->free(be, ddr);
    be->free(be, ddy);
    free(hx), free(hw), free(hb), free(hr), free(gx), free(want);
}

static void test_bf16(backend_t *be) {
    be->precision = BACKEND_BF16;
    const int64_t M = 200, K = 256, N = 96;
    float *x = ref_new_random(M * K, 1.0f), *w = ref_new_random(3 * N * K + 8, 1.0f);
    float *w2 = ref_new_random(N * K, 1.0f);
    float *dx = ref_to_dev(be, x, M * K), *dw = ref_to_dev(be, w, N * K);
    bf16_linear(be, "weight (first use: its bf16 copy)", x, dx, w, dw, M, K, N);
    bf16_linear(be, "weight (the copy again)", x, dx, w, dw, M, K, N);
    be->upload(be, dw, w2, (size_t)(N * K) * sizeof(float));   // new weights: the copy is stale
    bf16_linear(be, "weight re-uploaded", x, dx, w2, dw, M, K, N);
    float *dw1 = ref_to_dev(be, w, N * K);
    be->scale_add(be, dw, dw1, 1.0f, 0.0f, N * K);   // an op writes the region: activations
    bf16_linear(be, "weight written by an op", x, dx, w, dw, M, K, N);
    be->free(be, dw), be->free(be, dw1);
    // weights at offsets in one allocation: aligned (copy) and not (per call)
    float *dall = ref_to_dev(be, w, 3 * N * K + 8);
    bf16_linear(be, "weight at offset N*K", x, dx, w + N * K, dall + N * K, M, K, N);
    bf16_linear(be, "weight at offset 2*N*K+3", x, dx, w + 2 * N * K + 3, dall + 2 * N * K + 3, M,
                K, N);
    be->free(be, dall), be->free(be, dx);
    free(x), free(w), free(w2);
    // the activation's bf16 conversion (kernels/convert.cu): contiguous rows
    // at an odd float offset (the flat kernel's scalar path; aligned ones take
    // the float4 path everywhere above), and a strided operand of more than
    // 65535 rows (K 3: padded rows, the 2-D kernel's grid-stride over rows)
    {
        const int64_t Mb = 50, Kb = 64, Nb = 16;
        float *hx = ref_new_random(Mb * Kb + 1, 1.0f), *hw = ref_new_random(Nb * Kb, 1.0f);
        float *want = ref_new(Mb * Nb);
        float *ddx = ref_to_dev(be, hx, Mb * Kb + 1), *ddw = ref_to_dev(be, hw, Nb * Kb);
        float *ddy = be->alloc(be, (size_t)(Mb * Nb) * 4);
        CHECK(ddy);
        be->linear(be, ddy, Nb, ddx + 1, Kb, ddw, NULL, Mb, Kb, Nb);
        ops_ref_set_bf16(1);
        ops_ref_linear(want, Nb, hx + 1, Kb, hw, NULL, Mb, Kb, Nb);
        ops_ref_set_bf16(0);
        expect_close(be, "cuda bf16: linear, x at an odd offset (scalar conversion)", ddy, want,
                     Mb * Nb, BF16_GEMM);
        be->free(be, ddx), be->free(be, ddw), be->free(be, ddy);
        free(hx), free(hw), free(want);
        const int64_t nb = 2, Mm = 40000, Kk = 3, Nn = 8;
        float *ha = ref_new_random(nb * Mm * Kk, 1.0f), *hb = ref_new_random(nb * Kk * Nn, 1.0f);
        float *wc = ref_new(nb * Mm * Nn);
        float *da = ref_to_dev(be, ha, nb * Mm * Kk), *db = ref_to_dev(be, hb, nb * Kk * Nn);
        float *dc = be->alloc(be, (size_t)(nb * Mm * Nn) * sizeof(float));
        CHECK(dc);
        be->scale_add(be, db, db, 1.0f, 0.0f, nb * Kk * Nn);   // an activation: converted per call
        be->bmm(be, dc, da, db, nb, Mm, Kk, Nn, 0);
        ops_ref_set_bf16(1);
        ops_ref_bmm(wc, ha, hb, nb, Mm, Kk, Nn, 0);
        ops_ref_set_bf16(0);
        expect_close(be, "cuda bf16: bmm of 80000 rows of K 3 (2-D conversion past 65535 rows)",
                     dc, wc, nb * Mm * Nn, BF16_GEMM);
        be->free(be, da), be->free(be, db), be->free(be, dc);
        free(ha), free(hb), free(wc);
    }
    // bias: 16-byte aligned (cuBLASLt's bias epilogue), at an odd offset (the
    // bias kernel after the product), and over row chunks (the small
    // workspace below); the same sums either way
    {
        const int64_t Mb = 70, Kb = 40, Nb = 24;
        float *hx = ref_new_random(Mb * Kb, 1.0f), *hw = ref_new_random(Nb * Kb, 1.0f);
        float *hb = ref_new_random(Nb + 1, 1.0f), *want = ref_new(Mb * Nb);
        float *ddx = ref_to_dev(be, hx, Mb * Kb), *ddw = ref_to_dev(be, hw, Nb * Kb);
        float *ddb = ref_to_dev(be, hb, Nb + 1), *ddy = be->alloc(be, (size_t)(Mb * Nb) * 4);
        CHECK(ddy);
        for (int off = 0; off < 2; off++) {
            be->linear(be, ddy, Nb, ddx, Kb, ddw, ddb + off, Mb, Kb, Nb);
            ops_ref_set_bf16(1);
            ops_ref_linear(want, Nb, hx, Kb, hw, hb + off, Mb, Kb, Nb);
            ops_ref_set_bf16(0);
            expect_close(be, off ? "cuda bf16: linear + bias at an odd offset (bias kernel)"
                                 : "cuda bf16: linear + aligned bias (cuBLASLt epilogue)",
                         ddy, want, Mb * Nb, BF16_GEMM);
        }
        be->free(be, ddx), be->free(be, ddw), be->free(be, ddb), be->free(be, ddy);
        free(hx), free(hw), free(hb), free(want);
    }

    // rows past the workspace: a backend with a 1 MiB one (SAM2AMG_CUDA_BF16_WS_MB=1,
    // 512K bf16 values): 3000 rows of 256 are two row chunks
    setenv("SAM2AMG_CUDA_BF16_WS_MB", "1", 1);
    err_t err = {{0}};
    backend_t *small = backend_cuda_create(0, &err);
    unsetenv("SAM2AMG_CUDA_BF16_WS_MB");
    TEST_CHECK(small != NULL, "cuda bf16: a backend with a 1 MiB bf16 workspace", "%s", err.msg);
    if (!small) return;
    backend_t *big = be;
    be = small;
    {
        const int64_t Mb = 3000, Kb = 256, Nb = 8;
        float *hx = ref_new_random(Mb * Kb, 1.0f), *hw = ref_new_random(Nb * Kb, 1.0f);
        float *ddx = ref_to_dev(be, hx, Mb * Kb), *ddw = ref_to_dev(be, hw, Nb * Kb);
        bf16_linear(be, "in row chunks", hx, ddx, hw, ddw, Mb, Kb, Nb);
        float *hb = ref_new_random(Nb, 1.0f), *want = ref_new(Mb * Nb);
        float *ddb = ref_to_dev(be, hb, Nb), *ddy = be->alloc(be, (size_t)(Mb * Nb) * 4);
        CHECK(ddy);
        be->linear(be, ddy, Nb, ddx, Kb, ddw, ddb, Mb, Kb, Nb);
        ops_ref_set_bf16(1);
        ops_ref_linear(want, Nb, hx, Kb, hw, hb, Mb, Kb, Nb);
        ops_ref_set_bf16(0);
        expect_close(be, "cuda bf16: linear + bias in row chunks (epilogue per chunk)", ddy, want,
                     Mb * Nb, BF16_GEMM);
        // linear_ex in row chunks (3000 rows of 256: two on the 1 MiB workspace)
        check_linear_ex_rows(be, "row chunks", Mb, Kb, Nb, Nb);
        {   // a weight past the workspace (an activation: no bf16 copy): linear_ex
            // declines before writing anything; linear falls back to float32
            const int64_t Kw = 1024, Nw = 300;   // 307200 values > 262144 (half of 1 MiB)
            float *hww = ref_new_random(Nw * Kw, 1.0f), *hy = ref_new_random(4 * Nw, 1.0f);
            float *dwa = be->alloc(be, (size_t)(Nw * Kw) * 4), *dwx = ref_to_dev(be, hww, Nw * Kw);
            float *dxx = ref_to_dev(be, hww, 4 * Kw), *dyy = ref_to_dev(be, hy, 4 * Nw);
            CHECK(dwa);
            be->copy(be, dwa, dwx, (size_t)(Nw * Kw) * 4);
            int rc = be->linear_ex(be, dyy, Nw, dxx, Kw, dwa, NULL, dyy, Nw, 1, 4, Kw, Nw);
            float *got = ref_new(4 * Nw);
            be->download(be, got, dyy, (size_t)(4 * Nw) * 4);
            be->sync(be);
            TEST_CHECK(rc == -1 && memcmp(got, hy, (size_t)(4 * Nw) * 4) == 0,
                       "cuda bf16: linear_ex declines a weight past the workspace, y untouched",
                       "rc %d", rc);
            be->free(be, dwa), be->free(be, dwx), be->free(be, dxx), be->free(be, dyy);
            free(hww), free(hy), free(got);
        }
        be->free(be, ddb), be->free(be, ddy);
        free(hb), free(want);
        be->free(be, ddx), be->free(be, ddw);
        free(hx), free(hw);
    }
    // bmm: batch chunks past the (small) workspace (40 items of 64x256 + 256x8:
    // 28 per chunk); b weight-like; trans_b; batch 1
    {
        const int64_t cases[][5] = {{40, 64, 256, 8, 0}, {3, 45, 128, 128, 1},
                                    {1, 256, 256, 32, 0}, {5, 1, 32, 4096, 0},
                                    {30, 64, 256, 8, 1}};
        for (int c = 0; c < 5; c++) {
            be = c == 0 || c == 4 ? small : big;   // chunked on the 1 MiB workspace
            const int64_t nb = cases[c][0], Mm = cases[c][1], Kk = cases[c][2], Nn = cases[c][3];
            const int tb = (int)cases[c][4];
            float *ha = ref_new_random(nb * Mm * Kk, 1.0f), *hb = ref_new_random(nb * Kk * Nn, 1.0f);
            float *want = ref_new(nb * Mm * Nn);
            float *da = ref_to_dev(be, ha, nb * Mm * Kk), *db = ref_to_dev(be, hb, nb * Kk * Nn);
            float *dc = be->alloc(be, (size_t)(nb * Mm * Nn) * sizeof(float));
            CHECK(dc);
            if (c % 2 == 0) {   // b as an activation (written by an op): converted per call
                float *dact = be->alloc(be, (size_t)(nb * Kk * Nn) * sizeof(float));
                CHECK(dact);
                be->copy(be, dact, db, (size_t)(nb * Kk * Nn) * sizeof(float));
                be->free(be, db);
                db = dact;
            }
            be->bmm(be, dc, da, db, nb, Mm, Kk, Nn, tb);
            ops_ref_set_bf16(1);
            ops_ref_bmm(want, ha, hb, nb, Mm, Kk, Nn, tb);
            ops_ref_set_bf16(0);
            char name[128];
            snprintf(name, sizeof name, "cuda bf16: bmm batch=%lld M=%lld K=%lld N=%lld trans_b=%d%s",
                     (long long)nb, (long long)Mm, (long long)Kk, (long long)Nn, tb,
                     c % 2 == 0 ? " (b an activation)" : " (b weight-like)");
            expect_close(be, name, dc, want, nb * Mm * Nn, BF16_GEMM);
            be->free(be, da), be->free(be, db), be->free(be, dc);
            free(ha), free(hb), free(want);
        }
    }
    // lowrank_expand: items past the (small) workspace (20 items of 144x256
    // bf16: 14 per pass), plain and the LayerNorm mode; one item that does not
    // fit (K 129, N 4096: 1.2 MB) is declined, y untouched
    be = small;
    for (int ln = 0; ln < 2; ln++) {
        const int64_t B = 20, M = 6, K = 129, N = 256, Wg = 3;
        float *hp = ref_new_random(B * M * K, 1.0f), *hm = ref_new_random(B * K * N, 0.1f);
        float *ha = ref_new_random(B * M, 1.0f), *hsa = ref_new_random(B * M, 1.0f);
        float *hs = ref_new_random(M * N, 1.0f), *hu = ref_new_random(M * N, 1.0f);
        float *hw = ref_new_random(N / 4, 1.0f), *hb = ref_new_random(N / 4, 1.0f);
        float *want = ref_new(B * M * N);
        ops_ref_set_bf16(1);
        ops_ref_lowrank_expand(want, N, hp, K, hm, N, ha, hs, N, hsa, hu, N, ln ? hw : NULL,
                               ln ? hb : NULL, 1e-6f, Wg, B, M, K, N);
        ops_ref_set_bf16(0);
        float *dp = ref_to_dev(be, hp, B * M * K), *dm = ref_to_dev(be, hm, B * K * N);
        float *da = ref_to_dev(be, ha, B * M), *dsa = ref_to_dev(be, hsa, B * M);
        float *ds = ref_to_dev(be, hs, M * N), *du = ref_to_dev(be, hu, M * N);
        float *dw = ref_to_dev(be, hw, N / 4), *db = ref_to_dev(be, hb, N / 4);
        float *dy = be->alloc(be, (size_t)(B * M * N) * sizeof(float));
        CHECK(dy);
        int rc = be->lowrank_expand(be, dy, N, dp, K, dm, N, da, ds, N, dsa, du, N,
                                    ln ? dw : NULL, ln ? db : NULL, 1e-6f, Wg, B, M, K, N, 0);
        TEST_CHECK(rc == 0, ln ? "cuda bf16: lowrank_expand (LayerNorm) over workspace passes"
                               : "cuda bf16: lowrank_expand over workspace passes",
                   "declined (rc %d)", rc);
        if (rc == 0)
            expect_close(be, ln ? "cuda bf16: lowrank_expand LayerNorm, 20 items, 1 MiB workspace"
                                : "cuda bf16: lowrank_expand, 20 items, 1 MiB workspace",
                         dy, want, B * M * N, ln ? 1e-3 : BF16_GEMM);
        be->free(be, dp), be->free(be, dm), be->free(be, da), be->free(be, dsa);
        be->free(be, ds), be->free(be, du), be->free(be, dw), be->free(be, db), be->free(be, dy);
        free(hp), free(hm), free(ha), free(hsa), free(hs), free(hu), free(hw), free(hb), free(want);
    }
    {   // lowrank_rstd_gram over workspace passes: 40 items of 144 x 192 bf16 (K 129: 18 per pass)
        const int64_t B = 40, Mx = 5, r = 129, C = 256;
        float *hp = ref_new_random(B * Mx * r, 0.5f), *he = ref_new_random(B * Mx * r, 0.3f);
        float *hbb = ref_new_random(B * r * r, 0.05f), *hxx = ref_new_random(Mx, 1.0f);
        float *hs = ref_new_random(B * Mx, 1.0f), *want = ref_new(B * Mx);
        for (int64_t i = 0; i < Mx; i++) hxx[i] = 200.0f + 100.0f * hxx[i];
        ops_ref_set_bf16(1);
        ops_ref_lowrank_rstd_gram(want, hxx, hs, hp, r, he, hbb, B, Mx, r, C, 1e-5f);
        ops_ref_set_bf16(0);
        float *dp = ref_to_dev(be, hp, B * Mx * r), *de = ref_to_dev(be, he, B * Mx * r);
        float *dbb = ref_to_dev(be, hbb, B * r * r), *dxx = ref_to_dev(be, hxx, Mx);
        float *ds = ref_to_dev(be, hs, B * Mx), *dr = be->alloc(be, (size_t)(B * Mx) * 4);
        CHECK(dr);
        int rc = be->lowrank_rstd_gram(be, dr, dxx, ds, dp, r, de, dbb, B, Mx, r, C, 1e-5f);
        TEST_CHECK(rc == 0, "cuda bf16: lowrank_rstd_gram over workspace passes", "rc %d", rc);
        if (rc == 0)
            expect_close(be, "cuda bf16: lowrank_rstd_gram, 40 items, 1 MiB workspace", dr, want,
                         B * Mx, BF16_GEMM);
        be->free(be, dp), be->free(be, de), be->free(be, dbb), be->free(be, dxx);
        be->free(be, ds), be->free(be, dr);
        free(hp), free(he), free(hbb), free(hxx), free(hs), free(want);
    }
    {
        const int64_t M = 2, K = 129, N = 4096;
        float *hp = ref_new_random(M * K, 1.0f), *hm = ref_new_random(K * N, 1.0f);
        float *ha = ref_new_random(M, 1.0f), *hy = ref_new(M * N);
        for (int64_t i = 0; i < M * N; i++) hy[i] = 7.0f;
        float *dp = ref_to_dev(be, hp, M * K), *dm = ref_to_dev(be, hm, K * N);
        float *da = ref_to_dev(be, ha, M), *dy = ref_to_dev(be, hy, M * N);
        int rc = be->lowrank_expand(be, dy, N, dp, K, dm, N, da, NULL, 0, NULL, NULL, 0, NULL, NULL,
                                    0.0f, 0, 1, M, K, N, 0);
        float *back = ref_new(M * N);
        be->download(be, back, dy, (size_t)(M * N) * sizeof(float));
        be->sync(be);
        TEST_CHECK(rc == -1 && memcmp(back, hy, (size_t)(M * N) * sizeof(float)) == 0,
                   "cuda bf16: lowrank_expand with one item past the workspace declines",
                   "rc %d", rc);
        be->free(be, dp), be->free(be, dm), be->free(be, da), be->free(be, dy);
        free(hp), free(hm), free(ha), free(hy), free(back);
    }
    be = big;
    // conv2d: the patch embed's 7x7x3 = 147-wide patches (not a multiple of 8),
    // a 3x3 one, a 1x1; conv_transpose2x2
    {
        const int64_t cv[][7] = {{2, 37, 29, 3, 96, 7, 4}, {1, 20, 20, 16, 24, 3, 1},
                                 {1, 16, 16, 256, 32, 1, 1}};
        for (int c = 0; c < 3; c++) {
            const int64_t B = cv[c][0], H = cv[c][1], W = cv[c][2], Ci = cv[c][3], Co = cv[c][4];
            const int k = (int)cv[c][5], st = (int)cv[c][6], pad = k / 2 * (k > 1);
            const int64_t Ho = (H + 2 * pad - k) / st + 1, Wo = (W + 2 * pad - k) / st + 1;
            float *hx = ref_new_random(B * H * W * Ci, 1.0f), *hw = ref_new_random(Co * Ci * k * k, 1.0f);
            float *hb = ref_new_random(Co, 1.0f), *want = ref_new(B * Ho * Wo * Co);
            float *ddx = ref_to_dev(be, hx, B * H * W * Ci), *ddw = ref_to_dev(be, hw, Co * Ci * k * k);
            float *ddb = ref_to_dev(be, hb, Co), *ddy = be->alloc(be, (size_t)(B * Ho * Wo * Co) * 4);
            CHECK(ddy);
            be->conv2d(be, ddy, ddx, ddw, ddb, B, H, W, Ci, Co, k, k, st, pad);
            ops_ref_set_bf16(1);
            ops_ref_conv2d(want, hx, hw, hb, B, H, W, Ci, Co, k, k, st, pad);
            ops_ref_set_bf16(0);
            char name[128];
            snprintf(name, sizeof name, "cuda bf16: conv2d %lldx%lldx%lld->%lld k=%d s=%d",
                     (long long)H, (long long)W, (long long)Ci, (long long)Co, k, st);
            expect_close(be, name, ddy, want, B * Ho * Wo * Co, BF16_GEMM);
            be->free(be, ddx), be->free(be, ddw), be->free(be, ddb), be->free(be, ddy);
            free(hx), free(hw), free(hb), free(want);
        }
        const int64_t B = 2, H = 16, W = 16, Ci = 256, Co = 64;
        float *hx = ref_new_random(B * H * W * Ci, 1.0f), *hw = ref_new_random(Ci * Co * 4, 1.0f);
        float *hb = ref_new_random(Co, 1.0f), *want = ref_new(B * 4 * H * W * Co);
        float *ddx = ref_to_dev(be, hx, B * H * W * Ci), *ddw = ref_to_dev(be, hw, Ci * Co * 4);
        float *ddb = ref_to_dev(be, hb, Co), *ddy = be->alloc(be, (size_t)(B * 4 * H * W * Co) * 4);
        CHECK(ddy);
        be->conv_transpose2x2(be, ddy, ddx, ddw, ddb, B, H, W, Ci, Co);
        ops_ref_set_bf16(1);
        ops_ref_conv_transpose2x2(want, hx, hw, hb, B, H, W, Ci, Co);
        ops_ref_set_bf16(0);
        expect_close(be, "cuda bf16: conv_transpose2x2 16x16x256->64", ddy, want,
                     B * 4 * H * W * Co, BF16_GEMM);
        be->free(be, ddx), be->free(be, ddw), be->free(be, ddb), be->free(be, ddy);
        free(hx), free(hw), free(hb), free(want);
    }
    // cuBLASLt without an algorithm (the emulator's SAM2AMG_EMU_LT_NO_ALGO=1;
    // a GPU's cuBLASLt has one, the same checks then run its own path):
    // bf16 GEMMs through cublasGemmEx, linear_ex's residual first copied
    // into y (cudaMemcpy2DAsync, r apart, at y's odd row stride) or read in
    // place (r = y), the bias by its kernel, in row chunks
    setenv("SAM2AMG_EMU_LT_NO_ALGO", "1", 1);
    check_linear_ex_rows(be, "no cuBLASLt algorithm, row chunks", 3000, 200, 9, 11);
    unsetenv("SAM2AMG_EMU_LT_NO_ALGO");
    small->destroy(small);
    // fp32 again: exact float32 GEMMs (gemm_bound) on the same backend
    be->precision = BACKEND_FP32;
    test_linear(be, 130, 96, 288, 96, 288, 1);
}

int main(void) {
    err_t err = {{0}};
    backend_t *none = backend_cuda_create(999, &err);
    TEST_CHECK(none == NULL && err.msg[0] != '\0',
               "cuda: a missing device is refused with a message", "got %p", (void *)none);
    printf("# cuda:999 -> %s\n", err.msg);

    /* an unknown GEMM mode is refused before any device is touched */
    const char *mode = getenv("SAM2AMG_CUDA_GEMM");
    char saved[32];
    snprintf(saved, sizeof saved, "%s", mode ? mode : "");
    setenv("SAM2AMG_CUDA_GEMM", "bf17", 1);
    err.msg[0] = '\0';
    none = backend_cuda_create(0, &err);
    TEST_CHECK(none == NULL && strstr(err.msg, "SAM2AMG_CUDA_GEMM") && strstr(err.msg, "bf17"),
               "cuda: an unknown SAM2AMG_CUDA_GEMM is refused by name", "got %p: %s",
               (void *)none, err.msg);
    if (mode) setenv("SAM2AMG_CUDA_GEMM", saved, 1);
    else unsetenv("SAM2AMG_CUDA_GEMM");
    /* so is a bf16 workspace size out of 1..4096 MiB */
    const char *bad_ws[] = {"0", "4097", "12x", "-3", " 64", "+64"};
    for (int i = 0; i < 6; i++) {
        setenv("SAM2AMG_CUDA_BF16_WS_MB", bad_ws[i], 1);
        err.msg[0] = '\0';
        none = backend_cuda_create(0, &err);
        char nm[96];
        snprintf(nm, sizeof nm, "cuda: SAM2AMG_CUDA_BF16_WS_MB=%s is refused by name", bad_ws[i]);
        TEST_CHECK(none == NULL && strstr(err.msg, "SAM2AMG_CUDA_BF16_WS_MB") &&
                       strstr(err.msg, bad_ws[i]), nm, "got %p: %s", (void *)none, err.msg);
    }
    unsetenv("SAM2AMG_CUDA_BF16_WS_MB");
    // SAM2AMG_CUDA_FUSED: 0 leaves the fused ops out, 1 keeps them,
    // anything else is refused by name
    const char *bad_fused[] = {"2", "yes", "00"};
    for (int i = 0; i < 3; i++) {
        setenv("SAM2AMG_CUDA_FUSED", bad_fused[i], 1);
        err.msg[0] = '\0';
        none = backend_cuda_create(0, &err);
        char nm[96];
        snprintf(nm, sizeof nm, "cuda: SAM2AMG_CUDA_FUSED=%s is refused by name", bad_fused[i]);
        TEST_CHECK(none == NULL && strstr(err.msg, "SAM2AMG_CUDA_FUSED") &&
                       strstr(err.msg, bad_fused[i]), nm, "got %p: %s", (void *)none, err.msg);
    }
    for (int on = 0; on < 2; on++) {   // with a device 0 (none here: nothing to check)
        setenv("SAM2AMG_CUDA_FUSED", on ? "1" : "0", 1);
        backend_t *f = backend_cuda_create(0, &err);
        if (!f && !ref_require_cuda()) continue;
        TEST_CHECK(f && (f->lowrank_expand != NULL) == on && (f->lowrank_rstd_gram != NULL) == on &&
                       (f->linear_ex != NULL) == on && (f->attention_kv16 != NULL) == on,
                   on ? "cuda: SAM2AMG_CUDA_FUSED=1 has the fused ops"
                      : "cuda: SAM2AMG_CUDA_FUSED=0 leaves them out",
                   "%s", f ? "ops present/absent the other way" : err.msg);
        if (f) f->destroy(f);
    }
    unsetenv("SAM2AMG_CUDA_FUSED");

    err.msg[0] = '\0';
    backend_t *be = backend_cuda_create(0, &err);
    if (!be) {
        TEST_CHECK(err.msg[0] != '\0', "cuda: no device 0 comes with a message", "empty");
        TEST_CHECK(!ref_require_cuda(), "cuda: device 0 opens (SAM2AMG_REQUIRE_CUDA=1)", "%s",
                   err.msg);
        printf("# skipped: CUDA parity tests (%s)\n", err.msg);
        return TEST_REPORT();
    }
    TEST_CHECK(strcmp(be->name, "cuda:0") == 0 && be->version == BACKEND_API_VERSION,
               "cuda: backend name and version", "%s v%d", be->name, be->version);
    TEST_CHECK(be->precision == BACKEND_BF16, "cuda: created in bf16 (the default)",
               "precision %d", be->precision);
    be->precision = BACKEND_FP32;   // the parity tests: float32
    gemm_bound = ref_gemm_tf32() ? 2e-3 : 1e-5;
    printf("# GEMM mode %s (bound %.0e)\n", ref_gemm_tf32() ? "tf32" : "f32", gemm_bound);
    cpu = backend_cpu_create(1);

    test_memory(be);

    test_linear(be, 37, 53, 29, 53, 29, 1);
    test_linear(be, 300, 96, 288, 96, 288, 1);     // Hiera-tiny qkv
    test_linear(be, 64, 40, 30, 100, 70, 1);       // slices of packed tensors
    test_linear(be, 64, 40, 30, 40, 30, 0);
    test_linear(be, 5, 0, 7, 3, 7, 1);             // K = 0: y = b

    test_bmm(be, 3, 17, 33, 9, 0);
    test_bmm(be, 4, 65, 32, 48, 1);

    test_attention(be, 2, 64, 64, 1, 96, 1);       // Hiera-tiny 8x8 window, packed qkv
    test_attention(be, 1, 100, 100, 2, 72, 1);     // large dh, rows off the tile size
    test_attention(be, 3, 7, 300, 8, 16, 0);       // decoder token -> image
    test_attention(be, 3, 300, 7, 8, 16, 0);       // decoder image -> token
    test_attention(be, 2, 7, 7, 8, 32, 0);         // decoder token self-attention
    test_attention(be, 1, 33, 65, 3, 128, 0);      // dh at the limit
    test_attention(be, 1, 20, 45, 2, 5, 0);        // odd dh
    test_attention(be, 1, 16, 1, 1, 40, 0);        // one key
    test_attention(be, 1, 28, 4096, 8, 16, 0);     // decoder shared token->image: 16 key splits
    test_attention(be, 2, 5, 1000, 2, 40, 0);      // 7 key splits, the last one short

    test_layer_norm(be, 77, 96);
    test_layer_norm(be, 9, 1152);
    test_layer_norm(be, 5, 7);

    test_elementwise(be, 1001, 33);

    test_conv2d(be, 2, 19, 23, 3, 16, 7, 4, 3, 1);  // Hiera patch embed, small
    test_conv2d(be, 1, 9, 11, 8, 12, 3, 1, 1, 1);
    test_conv2d(be, 2, 10, 10, 20, 24, 1, 1, 0, 1); // 1x1: the Linear path
    test_conv2d(be, 1, 12, 12, 6, 10, 2, 2, 0, 0);
    test_conv2d(be, 1, 200, 200, 64, 8, 3, 1, 1, 1); // 40000 x 576 patches: 2 scratch chunks

    test_conv_transpose(be, 2, 5, 7, 12, 9, 1);
    test_conv_transpose(be, 1, 16, 16, 32, 8, 0);
    test_conv_transpose(be, 5, 64, 64, 16, 256, 1); // 20480 rows: 2 scratch chunks

    test_spatial(be, 2, 10, 13, 5, 4);   // padding on both axes
    test_spatial(be, 1, 16, 16, 40, 8);  // no padding
    test_spatial(be, 3, 33, 65, 3, 14);

    test_resize(be, 3, 16, 16, 64, 64);   // 4x up (decoder masks)
    test_resize(be, 2, 64, 48, 37, 101);  // mixed down/up, odd sizes
    test_resize(be, 1, 1, 5, 3, 10);      // a single row

    test_convert(be);
    test_bf16(be);

    be->destroy(be);
    cpu->destroy(cpu);
    return TEST_REPORT();
}
#endif
