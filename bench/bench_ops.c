/* bench_ops.c: throughput of the backend ops at the shapes SAM 2.1 uses.
 *
 * Shapes are those of a 1024x1024 input: Hiera-tiny/large Linear layers per
 * stage, the mask decoder's projections, windowed (8x8 windows over 256x256
 * tokens) and global (64x64 tokens) attention, the 7x7/4 patch embedding,
 * the decoder's transposed convolutions, and the memory-bound ops. Each op
 * is first checked against ops_ref on a small case of the same kind (llm.c
 * dev/cuda: checked before timed), then timed (best of a few runs) and
 * reported in GFLOP/s (or GB/s for the memory-bound ones). For linear it
 * also times the alternative design: one cblas_sgemm call with OpenBLAS's
 * own threads, instead of our pool partitioning rows over single-threaded
 * OpenBLAS calls.
 *
 * usage: bench_ops [device] [n_threads] [family]
 *   device "cpu" by default, n_threads 0 = all CPUs, family = run only the
 *   benchmarks whose name starts with it (linear, attention, conv, ...).
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "ops_ref.h"

static backend_t *be;
static int n_threads;
static const char *family;   /* run only benchmarks whose name starts with this */

static int want(const char *name) { return !family || strncmp(name, family, strlen(family)) == 0; }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* backend buffer of n random floats */
static float *dev_rand(size_t n) {
    float *h = malloc(n * sizeof *h), *d = be->alloc(be, n * sizeof(float));
    CHECK(h && d);
    for (size_t i = 0; i < n; i++) h[i] = frand();
    be->upload(be, d, h, n * sizeof(float));
    free(h);
    return d;
}

static float *host_of(const float *d, size_t n) {
    float *h = malloc(n * sizeof *h);
    CHECK(h);
    be->sync(be);
    be->download(be, h, d, n * sizeof(float));
    return h;
}

/* normalized max error of backend output d against host reference r */
static double nerr(const float *d, const float *r, size_t n) {
    float *h = host_of(d, n);
    double mx = 1, e = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(h[i])) e = INFINITY;
        if (fabs(r[i]) > mx) mx = fabs(r[i]);
        if (fabs((double)h[i] - r[i]) > e) e = fabs((double)h[i] - r[i]);
    }
    free(h);
    return e / mx;
}

static int n_bad;
static void report_check(const char *what, double e, double bound) {
    printf("  check %-34s err %.2e %s\n", what, e, e <= bound ? "ok" : "FAILED");
    if (!(e <= bound)) n_bad++;
}

/* time fn: one warm-up, then the best of runs until 3 runs and 0.3 s */
typedef void (*bench_fn)(void *);
static double time_best(bench_fn fn, void *arg) {
    fn(arg);
    be->sync(be);
    double best = 1e30, total = 0;
    for (int r = 0; r < 20 && (r < 3 || total < 0.3); r++) {
        double t0 = now_s();
        fn(arg);
        be->sync(be);
        double dt = now_s() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    return best;
}

static void print_rate(const char *name, double sec, double flops, double bytes) {
    if (flops > 0)
        printf("%-52s %9.3f ms %8.1f GFLOP/s\n", name, sec * 1e3, flops / sec * 1e-9);
    else
        printf("%-52s %9.3f ms %8.1f GB/s\n", name, sec * 1e3, bytes / sec * 1e-9);
}

/* ---- linear ---- */
typedef struct { float *y, *x, *w, *b; int64_t M, K, N; } lin_t;
static void run_linear(void *p) {
    lin_t *a = p;
    be->linear(be, a->y, a->N, a->x, a->K, a->w, a->b, a->M, a->K, a->N);
}
static void run_blas_threaded(void *p) {   /* the alternative: OpenBLAS's threads */
    lin_t *a = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->M, (int)a->N, (int)a->K, 1.0f,
                a->x, (int)a->K, a->w, (int)a->K, 0.0f, a->y, (int)a->N);
}

static void bench_linear(const char *what, int64_t M, int64_t K, int64_t N) {
    if (!want("linear")) return;
    /* check on a few rows of the same K, N with strided x and y */
    {
        int64_t m = 37, ldx = K + 3, ldy = N + 5;
        float *x = dev_rand(m * ldx), *w = dev_rand(N * K), *b = dev_rand(N), *y = dev_rand(m * ldy);
        float *hx = host_of(x, m * ldx), *hw = host_of(w, N * K), *hb = host_of(b, N);
        float *r = host_of(y, m * ldy);
        ops_ref_linear(r, ldy, hx, ldx, hw, hb, m, K, N);
        be->linear(be, y, ldy, x, ldx, w, b, m, K, N);
        char s[64];
        snprintf(s, sizeof s, "linear K=%lld N=%lld", (long long)K, (long long)N);
        report_check(s, nerr(y, r, m * ldy), 1e-5);
        free(hx), free(hw), free(hb), free(r);
        be->free(be, x), be->free(be, w), be->free(be, b), be->free(be, y);
    }
    lin_t a = {.y = be->alloc(be, M * N * 4), .x = dev_rand(M * K), .w = dev_rand(N * K),
               .b = dev_rand(N), .M = M, .K = K, .N = N};
    char name[128];
    snprintf(name, sizeof name, "linear %-22s M=%lld K=%lld N=%lld", what, (long long)M,
             (long long)K, (long long)N);
    print_rate(name, time_best(run_linear, &a), 2.0 * M * K * N, 0);
    if (strcmp(be->name, "cpu") == 0) {
        openblas_set_num_threads(n_threads);
        snprintf(name, sizeof name, "  (one OpenBLAS call, %d OpenBLAS threads)", n_threads);
        print_rate(name, time_best(run_blas_threaded, &a), 2.0 * M * K * N, 0);
        openblas_set_num_threads(1);
    }
    be->free(be, a.y), be->free(be, a.x), be->free(be, a.w), be->free(be, a.b);
}

/* ---- attention (q, k, v packed as the output of a qkv Linear) ---- */
typedef struct { float *o, *qkv; int64_t B, L, nh, dh; } att_t;
static void run_attention(void *p) {
    att_t *a = p;
    int64_t D = a->nh * a->dh;
    be->attention(be, a->o, a->qkv, 3 * D, a->qkv + D, 3 * D, a->qkv + 2 * D, 3 * D, a->B, a->L,
                  a->L, a->nh, a->dh, 1.0f / sqrtf((float)a->dh));
}

static void bench_attention(const char *what, int64_t B, int64_t L, int64_t nh, int64_t dh) {
    if (!want("attention")) return;
    int64_t D = nh * dh;
    {
        int64_t b = B < 2 ? B : 2, l = L < 200 ? L : 200;
        att_t a = {.o = be->alloc(be, b * l * D * 4), .qkv = dev_rand(b * l * 3 * D), .B = b,
                   .L = l, .nh = nh, .dh = dh};
        float *h = host_of(a.qkv, b * l * 3 * D), *r = malloc(b * l * D * 4);
        CHECK(r);
        ops_ref_attention(r, h, 3 * D, h + D, 3 * D, h + 2 * D, 3 * D, b, l, l, nh, dh,
                          1.0f / sqrtf((float)dh));
        run_attention(&a);
        char s[64];
        snprintf(s, sizeof s, "attention L=%lld nh=%lld dh=%lld", (long long)l, (long long)nh,
                 (long long)dh);
        report_check(s, nerr(a.o, r, b * l * D), 1e-5);
        free(h), free(r);
        be->free(be, a.o), be->free(be, a.qkv);
    }
    att_t a = {.o = be->alloc(be, B * L * D * 4), .qkv = dev_rand(B * L * 3 * D), .B = B, .L = L,
               .nh = nh, .dh = dh};
    char name[128];
    snprintf(name, sizeof name, "attention %-14s B=%lld L=%lld nh=%lld dh=%lld", what,
             (long long)B, (long long)L, (long long)nh, (long long)dh);
    print_rate(name, time_best(run_attention, &a), 4.0 * B * nh * L * L * dh, 0);
    be->free(be, a.o), be->free(be, a.qkv);
}

/* decoder cross-attention: q (B,Lq,nh,dh) separate from k, v (B,Lk,nh,dh) */
typedef struct { float *o, *q, *k, *v; int64_t B, Lq, Lk, nh, dh; } xatt_t;
static void run_xattention(void *p) {
    xatt_t *a = p;
    int64_t D = a->nh * a->dh;
    be->attention(be, a->o, a->q, D, a->k, D, a->v, D, a->B, a->Lq, a->Lk, a->nh, a->dh,
                  1.0f / sqrtf((float)a->dh));
}

static void bench_xattention(const char *what, int64_t B, int64_t Lq, int64_t Lk, int64_t nh,
                             int64_t dh) {
    if (!want("attention")) return;
    int64_t D = nh * dh;
    xatt_t a = {.o = be->alloc(be, B * Lq * D * 4), .q = dev_rand(B * Lq * D),
                .k = dev_rand(B * Lk * D), .v = dev_rand(B * Lk * D), .B = B, .Lq = Lq,
                .Lk = Lk, .nh = nh, .dh = dh};
    {   /* check the first batch item */
        float *hq = host_of(a.q, Lq * D), *hk = host_of(a.k, Lk * D), *hv = host_of(a.v, Lk * D);
        float *r = malloc(Lq * D * 4);
        CHECK(r);
        ops_ref_attention(r, hq, D, hk, D, hv, D, 1, Lq, Lk, nh, dh, 1.0f / sqrtf((float)dh));
        xatt_t one = a;
        one.B = 1;
        run_xattention(&one);
        char s[64];
        snprintf(s, sizeof s, "attention Lq=%lld Lk=%lld", (long long)Lq, (long long)Lk);
        report_check(s, nerr(a.o, r, Lq * D), 1e-5);
        free(hq), free(hk), free(hv), free(r);
    }
    char name[128];
    snprintf(name, sizeof name, "attention %-14s B=%lld Lq=%lld Lk=%lld nh=%lld dh=%lld", what,
             (long long)B, (long long)Lq, (long long)Lk, (long long)nh, (long long)dh);
    print_rate(name, time_best(run_xattention, &a), 4.0 * B * nh * Lq * Lk * dh, 0);
    be->free(be, a.o), be->free(be, a.q), be->free(be, a.k), be->free(be, a.v);
}

/* ---- conv2d / conv_transpose2x2 ---- */
typedef struct { float *y, *x, *w, *b; int64_t B, H, W, Cin, Cout; int k, s, p; } conv_t;
static void run_conv(void *p) {
    conv_t *a = p;
    be->conv2d(be, a->y, a->x, a->w, a->b, a->B, a->H, a->W, a->Cin, a->Cout, a->k, a->k, a->s,
               a->p);
}
static void run_convt(void *p) {
    conv_t *a = p;
    be->conv_transpose2x2(be, a->y, a->x, a->w, a->b, a->B, a->H, a->W, a->Cin, a->Cout);
}

static void bench_conv(const char *what, int64_t B, int64_t H, int64_t W, int64_t Cin,
                       int64_t Cout, int k, int s, int p, int transposed) {
    if (!want(transposed ? "conv_t2x2" : "conv2d")) return;
    for (int pass = 0; pass < 2; pass++) {   /* pass 0: check at 1/8 size; 1: time */
        int64_t h = pass ? H : H / 8, w = pass ? W : W / 8, b = pass ? B : 1;
        int64_t Ho = transposed ? 2 * h : (h + 2 * p - k) / s + 1;
        int64_t Wo = transposed ? 2 * w : (w + 2 * p - k) / s + 1;
        size_t nw = transposed ? (size_t)Cin * Cout * 4 : (size_t)Cout * Cin * k * k;
        conv_t a = {.y = be->alloc(be, b * Ho * Wo * Cout * 4), .x = dev_rand(b * h * w * Cin),
                    .w = dev_rand(nw), .b = dev_rand(Cout), .B = b, .H = h, .W = w, .Cin = Cin,
                    .Cout = Cout, .k = k, .s = s, .p = p};
        if (pass == 0) {
            float *hx = host_of(a.x, b * h * w * Cin), *hw = host_of(a.w, nw);
            float *hb = host_of(a.b, Cout), *r = malloc(b * Ho * Wo * Cout * 4);
            CHECK(r);
            if (transposed)
                ops_ref_conv_transpose2x2(r, hx, hw, hb, b, h, w, Cin, Cout);
            else
                ops_ref_conv2d(r, hx, hw, hb, b, h, w, Cin, Cout, k, k, s, p);
            (transposed ? run_convt : run_conv)(&a);
            char sname[64];
            snprintf(sname, sizeof sname, "%s Cin=%lld Cout=%lld", transposed ? "conv_t2x2" : "conv2d",
                     (long long)Cin, (long long)Cout);
            report_check(sname, nerr(a.y, r, b * Ho * Wo * Cout), 1e-5);
            free(hx), free(hw), free(hb), free(r);
        } else {
            char name[128];
            double fl = transposed ? 2.0 * b * h * w * Cin * Cout * 4
                                   : 2.0 * b * Ho * Wo * Cout * Cin * k * k;
            snprintf(name, sizeof name, "%s %-14s %lldx%lldx%lld->%lldx%lldx%lld",
                     transposed ? "conv_t2x2" : "conv2d", what, (long long)h, (long long)w,
                     (long long)Cin, (long long)Ho, (long long)Wo, (long long)Cout);
            if (b > 1) snprintf(name + strlen(name), sizeof name - strlen(name), " B=%lld", (long long)b);
            print_rate(name, time_best(transposed ? run_convt : run_conv, &a), fl, 0);
        }
        be->free(be, a.y), be->free(be, a.x), be->free(be, a.w), be->free(be, a.b);
    }
}

/* ---- memory-bound ops ---- */
typedef struct { float *y, *x, *w, *b; int64_t M, C, Hi, Wi, Ho, Wo; } mem_t;
static void run_ln(void *p) {
    mem_t *a = p;
    be->layer_norm(be, a->y, a->x, a->w, a->b, a->M, a->C, 1e-6f);
}
static void run_gelu(void *p) {
    mem_t *a = p;
    be->gelu(be, a->y, a->x, a->M * a->C);
}
static void run_resize(void *p) {
    mem_t *a = p;
    be->resize_bilinear(be, a->y, a->x, a->M, a->Hi, a->Wi, a->Ho, a->Wo);
}

static void bench_memory_ops(void) {
    if (!want("layer_norm") && !want("gelu") && !want("resize")) return;
    int64_t M = 65536, C = 96;
    mem_t a = {.y = be->alloc(be, M * C * 4), .x = dev_rand(M * C), .w = dev_rand(C),
               .b = dev_rand(C), .M = M, .C = C};
    {
        float *hx = host_of(a.x, 1000 * C), *hw = host_of(a.w, C), *hb = host_of(a.b, C);
        float *r = malloc(1000 * C * 4);
        CHECK(r);
        ops_ref_layer_norm(r, hx, hw, hb, 1000, C, 1e-6f);
        be->layer_norm(be, a.y, a.x, a.w, a.b, 1000, C, 1e-6f);
        report_check("layer_norm C=96", nerr(a.y, r, 1000 * C), 1e-5);
        ops_ref_gelu(r, hx, 1000 * C);
        be->gelu(be, a.y, a.x, 1000 * C);
        report_check("gelu", nerr(a.y, r, 1000 * C), 1e-6);
        free(hx), free(hw), free(hb), free(r);
    }
    print_rate("layer_norm M=65536 C=96", time_best(run_ln, &a), 0, 2.0 * M * C * 4);
    print_rate("gelu n=65536*96", time_best(run_gelu, &a), 0, 2.0 * M * C * 4);
    be->free(be, a.y), be->free(be, a.x), be->free(be, a.w), be->free(be, a.b);

    /* low-res mask logits 256x256 -> 1024x1024, 12 masks (4 prompts x 3) */
    mem_t r = {.M = 12, .Hi = 256, .Wi = 256, .Ho = 1024, .Wo = 1024};
    r.x = dev_rand(r.M * r.Hi * r.Wi);
    r.y = be->alloc(be, r.M * r.Ho * r.Wo * 4);
    {
        float *hx = host_of(r.x, 256 * 256), *ref = malloc(1024 * 1024 * 4);
        CHECK(ref);
        ops_ref_resize_bilinear(ref, hx, 1, 256, 256, 1024, 1024);
        be->resize_bilinear(be, r.y, r.x, 1, 256, 256, 1024, 1024);
        report_check("resize_bilinear 256->1024", nerr(r.y, ref, 1024 * 1024), 1e-6);
        free(hx), free(ref);
    }
    print_rate("resize_bilinear 12x256x256 -> 1024x1024", time_best(run_resize, &r), 0,
               4.0 * r.M * (r.Ho * r.Wo + r.Hi * r.Wi));
    be->free(be, r.x), be->free(be, r.y);
}

int main(int argc, char **argv) {
    const char *dev = argc > 1 ? argv[1] : "cpu";
    n_threads = argc > 2 ? atoi(argv[2]) : 0;
    family = argc > 3 ? argv[3] : NULL;
    err_t err = {{0}};
    be = backend_create(dev, n_threads, &err);
    if (!be) {
        printf("bench_ops: skip %s (%s)\n", dev, err.msg);
        return 0;
    }
    be->precision = BACKEND_FP32;   /* checked against the float32 reference */
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench_ops: backend %s, %d threads (1024x1024 input shapes)\n", be->name, n_threads);

    /* Hiera-tiny (dims 96/192/384/768) and -large (144/288/576/1152) */
    bench_linear("tiny s1 qkv", 65536, 96, 288);
    bench_linear("tiny s1 mlp", 65536, 96, 384);
    bench_linear("tiny s3 qkv", 4096, 384, 1152);
    bench_linear("tiny s3 mlp", 4096, 384, 1536);
    bench_linear("tiny s4 mlp", 1024, 768, 3072);
    bench_linear("large s3 mlp", 4096, 576, 2304);
    bench_linear("large s4 mlp", 1024, 1152, 4608);
    bench_linear("4096x768x3072", 4096, 768, 3072);
    /* mask decoder: image-side projection 256->128 for 16 prompts, token MLP */
    bench_linear("dec img proj x16", 65536, 256, 128);
    bench_linear("dec token mlp x64", 512, 256, 2048);

    bench_attention("tiny s1 win8", 1024, 64, 1, 96);
    bench_attention("tiny s3 global", 1, 4096, 4, 96);
    bench_xattention("dec tok->img", 64, 8, 4096, 8, 16);
    bench_xattention("dec img->tok", 64, 4096, 8, 8, 16);

    bench_conv("patch embed t", 1, 1024, 1024, 3, 96, 7, 4, 3, 0);
    bench_conv("dec up1 x4", 4, 64, 64, 256, 64, 2, 2, 0, 1);
    bench_conv("dec up2 x4", 4, 128, 128, 64, 32, 2, 2, 0, 1);
    bench_memory_ops();

    be->destroy(be);
    if (n_bad) printf("bench_ops: %d checks FAILED\n", n_bad);
    return n_bad ? 1 : 0;
}
