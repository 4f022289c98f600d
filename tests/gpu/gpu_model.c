/* gpu_model.c: the whole SAM 2.1 image model on a device against the CPU
 * backend, at the real shapes, with random weights (no checkpoint needed).
 *
 * The fixtures' models (micro, micro2) are small; the full-size configs
 * (tiny, large: 1024x1024, 96/144 channels, 12/48 blocks) exercise the
 * shapes and arena sizes the GPU will see in production. For each config
 * both models load the same weights (weights_open_random, one seed), encode
 * the same random image and decode the same random prompts (one point each,
 * multimask, then the m2m pass with a mask input, as the AMG calls them);
 * every output tensor is compared with the fixtures' bar (max |dev - ref|
 * <= bound * max |ref|, bound 1e-3 by default) and its figures printed:
 *   "# TENSOR max diff D  max|ref| R  rel D/R"
 * With --time N the device model's encode and decode are timed (best of
 * N, after one warm-up) and printed as "time CONFIG encode_ms E decode_ms D
 * (B prompts)".
 *
 * The device runs in fp32 (precision BACKEND_FP32, true float32 GEMMs).
 * With --tf32 (CUDA) a second device backend with TF32 GEMMs
 * (SAM2AMG_CUDA_GEMM=tf32, src/backend_cuda.c) is checked the same way
 * against the same reference, its lines tagged "[tf32]", bar --tf32-bound
 * (default 1e-2: a first guess until a GPU run measures it). With --bf16
 * (CUDA) a third one computes in bf16 (BACKEND_BF16), lines tagged
 * "[bf16]": its tensor figures are printed but not checked (report only:
 * bf16's bar is the mask quality below), and its timings are printed.
 *
 * With --quality N the bf16 mask quality of issue 16 is measured per
 * config: the same image decoded at an N x N grid of single-point prompts
 * (multimask, as the AMG's first pass) by the device in fp32 and in bf16;
 * per prompt the best mask (highest predicted IoU) as low-res logits > 0;
 * the IoU of the bf16 mask with the fp32 one (1 when both are empty). The
 * line "quality CONFIG mean_iou M min_iou L below_0.9 K prompts P
 * nonempty E" is printed and mean_iou >= 0.99 checked. --quality-only
 * skips the parity against the CPU (the quality needs no reference).
 *
 * usage: gpu_model [--device D] [--threads N] [--batch B] [--bound X]
 *                  [--tf32 [--tf32-bound X]] [--bf16] [--quality N]
 *                  [--quality-only] [--time N] [CONFIG ...]   (default: cuda:0 tiny large)
 * Output: tests/test.h lines, "RESULT passed failed" last; exit 1 on a
 * failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "model.h"
#include "../test.h"
#include "weights.h"

static double bound = 1e-3;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* compare: print one tensor's figures and check it against the bar */
static void compare(const char *what, const float *got, const float *ref, int64_t n) {
    double md = 0, mx = 0;
    int finite = 1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) finite = 0;
        double d = fabs((double)got[i] - ref[i]);
        if (d > md || d != d) md = d;
        if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
    }
    printf("# %-34s max diff %.3g  max|ref| %.3g  rel %.3g%s\n", what, md, mx,
           mx > 0 ? md / mx : md, bound < 0 ? " (report only)" : "");
    if (bound >= 0)
        TEST_CHECK(finite && md <= bound * mx, what, "max diff %.3g > %.0e * %.3g", md, bound, mx);
}

static float *falloc(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    CHECK(p);
    return p;
}

/* one device under test: its backend, its row tag and its bar */
typedef struct dut {
    backend_t  *be;
    const char *tag;     /* "" (float32 GEMMs), " [tf32]" or " [bf16]" */
    double      bound;   /* < 0: report only */
} dut_t;

/* the reference outputs of one config on the CPU backend */
typedef struct ref_out {
    int64_t nf[3];                 /* feature sizes */
    float  *f[3];                  /* image_embed, feat_s0, feat_s1 */
    float  *low, *iou;             /* multimask decode (B,3,S/4,S/4), (B,3) */
    float  *mask;                  /* m2m mask input (B,S/4,S/4): the first output */
    float  *low1, *iou1;           /* m2m decode (B,1,S/4,S/4), (B,1) */
} ref_out_t;

static const char *FNAME[3] = {"image_embed", "feat_s0", "feat_s1"};

/* run_model: encode input, decode the prompts multimask and m2m, all
 * outputs into o (allocated by the caller). The m2m mask input is mask_in,
 * or when NULL (the reference) the first multimask output, kept in o->mask,
 * so that every model gets the same m2m input. 0 or the error's rc. */
static int run_model(sam2_model *m, const float *input, sam2_prompts *p, ref_out_t *o,
                     const float *mask_in, int low, err_t *err) {
    int rc = sam2_model_encode(m, input, err);
    if (rc) return rc;
    sam2_model_features(m, o->f[0], o->f[1], o->f[2]);
    p->mask_input = NULL;
    p->multimask = 1;
    if ((rc = sam2_model_decode(m, p, o->low, o->iou, err))) return rc;
    if (!mask_in) {
        for (int i = 0; i < p->n; i++)
            memcpy(o->mask + (size_t)i * low * low, o->low + (size_t)i * 3 * low * low,
                   (size_t)low * low * sizeof(float));
        mask_in = o->mask;
    }
    p->mask_input = mask_in;
    p->multimask = 0;
    return sam2_model_decode(m, p, o->low1, o->iou1, err);
}

static void ref_alloc(ref_out_t *o, const sam2_config *cfg, int B) {
    const int S = cfg->image_size, low = S / 4;
    o->nf[0] = (int64_t)cfg->d_model * (S / 16) * (S / 16);
    o->nf[1] = (int64_t)(cfg->d_model / 8) * low * low;
    o->nf[2] = (int64_t)(cfg->d_model / 4) * (S / 8) * (S / 8);
    for (int i = 0; i < 3; i++) o->f[i] = falloc((size_t)o->nf[i]);
    o->low = falloc((size_t)B * 3 * low * low), o->iou = falloc((size_t)B * 3);
    o->mask = falloc((size_t)B * low * low);
    o->low1 = falloc((size_t)B * low * low), o->iou1 = falloc((size_t)B);
}

static void ref_free(ref_out_t *o) {
    for (int i = 0; i < 3; i++) free(o->f[i]);
    free(o->low), free(o->iou), free(o->mask), free(o->low1), free(o->iou1);
}

/* check_config: the reference model on cpu, then each device model against
 * it (one device model in memory at a time) */
static void check_config(const char *name, backend_t *cpu, const dut_t *duts, int ndut, int B,
                         int iters) {
    err_t err = {{0}};
    sam2_config cfg;
    weights_t *w = NULL;
    sam2_model *mr = NULL;
    char what[160];
    if (sam2_config_builtin(name, &cfg, &err) || weights_open_random(&w, 11)) {
        TEST_CHECK(0, name, "%s", err.msg);
        return;
    }
    const int S = cfg.image_size, low = S / 4;
    float *input = falloc((size_t)3 * S * S), *coords = falloc((size_t)B * 2);
    int32_t *labels = malloc((size_t)B * sizeof(int32_t));
    CHECK(labels);
    uint32_t r = 12345;
    for (size_t i = 0; i < (size_t)3 * S * S; i++) {
        r = r * 1664525u + 1013904223u;
        input[i] = (float)(r >> 8) / 16777216.0f * 4.0f - 2.0f;
    }
    for (int i = 0; i < 2 * B; i++) {
        r = r * 1664525u + 1013904223u;
        coords[i] = (float)(r >> 8) / 16777216.0f * (float)S;
    }
    for (int i = 0; i < B; i++) labels[i] = 1;
    sam2_prompts p = {.n = B, .n_pts = 1, .coords = coords, .labels = labels};
    ref_out_t ref, got;
    ref_alloc(&ref, &cfg, B);
    ref_alloc(&got, &cfg, B);

    int rc = sam2_model_load_weights(&mr, &cfg, w, cpu, B, &err);
    snprintf(what, sizeof what, "%s: reference on %s", name, cpu->name);
    double t0 = now_s();
    if (!rc) rc = run_model(mr, input, &p, &ref, NULL, low, &err);
    TEST_CHECK(rc == 0, what, "%s", err.msg);
    printf("# %s: reference %.3f s on %s\n", name, now_s() - t0, cpu->name);
    sam2_model_free(mr);
    for (int d = 0; d < ndut && !rc; d++) {
        const dut_t *u = &duts[d];
        sam2_model *md = NULL;
        bound = u->bound;
        int drc = sam2_model_load_weights(&md, &cfg, w, u->be, B, &err);
        t0 = now_s();
        if (!drc) drc = run_model(md, input, &p, &got, ref.mask, low, &err);
        snprintf(what, sizeof what, "%s%s: load, encode, decode on %s", name, u->tag, u->be->name);
        TEST_CHECK(drc == 0, what, "%s", err.msg);
        printf("# %s%s: %.3f s on %s (first calls)\n", name, u->tag, now_s() - t0, u->be->name);
        if (!drc) {
            for (int i = 0; i < 3; i++) {
                snprintf(what, sizeof what, "%s%s: %s", name, u->tag, FNAME[i]);
                compare(what, got.f[i], ref.f[i], ref.nf[i]);
            }
            snprintf(what, sizeof what, "%s%s: low_res_masks", name, u->tag);
            compare(what, got.low, ref.low, (int64_t)B * 3 * low * low);
            snprintf(what, sizeof what, "%s%s: iou_preds", name, u->tag);
            compare(what, got.iou, ref.iou, (int64_t)B * 3);
            snprintf(what, sizeof what, "%s%s: m2m_low_res_masks", name, u->tag);
            compare(what, got.low1, ref.low1, (int64_t)B * low * low);
            snprintf(what, sizeof what, "%s%s: m2m_iou_preds", name, u->tag);
            compare(what, got.iou1, ref.iou1, B);
        }
        if (iters > 0 && !drc) {   // timing on the device model (already warm)
            double be_enc = 1e30, be_dec = 1e30;
            p.mask_input = NULL;
            p.multimask = 1;
            for (int it = 0; it < iters && !drc; it++) {
                double a = now_s();
                drc = sam2_model_encode(md, input, &err);
                double b = now_s();
                if (!drc) drc = sam2_model_decode(md, &p, got.low, got.iou, &err);
                double c = now_s();
                if (b - a < be_enc) be_enc = b - a;
                if (c - b < be_dec) be_dec = c - b;
            }
            snprintf(what, sizeof what, "%s%s: timed runs on %s", name, u->tag, u->be->name);
            TEST_CHECK(!drc, what, "%s", err.msg);
            printf("time %s %s%s encode_ms %.2f decode_ms %.2f (%d prompts, best of %d)\n", name,
                   u->be->name, strstr(u->tag, "tf32") ? "/tf32" : strstr(u->tag, "bf16") ? "/bf16" : "",
                   1e3 * be_enc, 1e3 * be_dec, B, iters);
        }
        sam2_model_free(md);
    }
    ref_free(&ref);
    ref_free(&got);
    free(input), free(coords), free(labels);
    weights_close(w);
}

/* best_masks: encode input on m, decode the side x side grid in chunks of
 * `chunk` prompts (multimask), and keep per prompt the best mask (highest
 * predicted IoU) as bytes (logit > 0) in best (side*side, low*low) */
static int best_masks(sam2_model *m, const float *input, int side, int chunk, int S,
                      uint8_t *best, err_t *err) {
    const int low = S / 4, n = side * side;
    float *coords = falloc((size_t)chunk * 2), *lr = falloc((size_t)chunk * 3 * low * low);
    float *iou = falloc((size_t)chunk * 3);
    int32_t *labels = malloc((size_t)chunk * sizeof(int32_t));
    CHECK(labels);
    for (int i = 0; i < chunk; i++) labels[i] = 1;
    int rc = sam2_model_encode(m, input, err);
    for (int b0 = 0; b0 < n && !rc; b0 += chunk) {
        const int nb = n - b0 < chunk ? n - b0 : chunk;
        for (int i = 0; i < nb; i++) {   // the AMG grid: cell centres
            const int k = b0 + i;
            coords[2 * i] = ((float)(k % side) + 0.5f) / (float)side * (float)S;
            coords[2 * i + 1] = ((float)(k / side) + 0.5f) / (float)side * (float)S;
        }
        sam2_prompts p = {.n = nb, .n_pts = 1, .coords = coords, .labels = labels, .multimask = 1};
        if ((rc = sam2_model_decode(m, &p, lr, iou, err))) break;
        for (int i = 0; i < nb; i++) {
            int j = 0;
            for (int t = 1; t < 3; t++)
                if (iou[i * 3 + t] > iou[i * 3 + j]) j = t;
            const float *src = lr + ((size_t)i * 3 + j) * low * low;
            uint8_t *dst = best + (size_t)(b0 + i) * low * low;
            for (int q = 0; q < low * low; q++) dst[q] = src[q] > 0.0f;
        }
    }
    free(coords), free(lr), free(iou), free(labels);
    return rc;
}

/* quality_config: the bf16-vs-fp32 best-mask IoU of config `name` on dev
 * (its precision switched between the two model loads) */
static void quality_config(const char *name, backend_t *dev, int side, int chunk) {
    err_t err = {{0}};
    sam2_config cfg;
    weights_t *w = NULL;
    char what[160];
    if (sam2_config_builtin(name, &cfg, &err) || weights_open_random(&w, 11)) {
        TEST_CHECK(0, name, "%s", err.msg);
        return;
    }
    const int S = cfg.image_size, low = S / 4, n = side * side;
    float *input = falloc((size_t)3 * S * S);
    uint32_t r = 777;
    for (size_t i = 0; i < (size_t)3 * S * S; i++) {
        r = r * 1664525u + 1013904223u;
        input[i] = (float)(r >> 8) / 16777216.0f * 4.0f - 2.0f;
    }
    uint8_t *mk[2] = {malloc((size_t)n * low * low), malloc((size_t)n * low * low)};
    CHECK(mk[0] && mk[1]);
    const int prec[2] = {BACKEND_FP32, BACKEND_BF16}, saved = dev->precision;
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        sam2_model *m = NULL;
        dev->precision = prec[k];   // before the model is built
        double t0 = now_s();
        rc = sam2_model_load_weights(&m, &cfg, w, dev, chunk, &err);
        if (!rc) rc = best_masks(m, input, side, chunk, S, mk[k], &err);
        printf("# quality %s: %s pass %.3f s\n", name, k ? "bf16" : "fp32", now_s() - t0);
        sam2_model_free(m);
    }
    dev->precision = saved;
    snprintf(what, sizeof what, "%s: quality runs (fp32 and bf16) on %s", name, dev->name);
    TEST_CHECK(rc == 0, what, "%s", err.msg);
    if (!rc) {
        double sum = 0, mn = 1;
        int below = 0, nonempty = 0;
        for (int i = 0; i < n; i++) {
            const uint8_t *a = mk[0] + (size_t)i * low * low, *b = mk[1] + (size_t)i * low * low;
            int64_t inter = 0, uni = 0;
            for (int q = 0; q < low * low; q++) inter += a[q] & b[q], uni += a[q] | b[q];
            const double iou = uni ? (double)inter / (double)uni : 1.0;
            nonempty += uni > 0;
            sum += iou;
            if (iou < mn) mn = iou;
            below += iou < 0.9;
        }
        printf("quality %s mean_iou %.5f min_iou %.4f below_0.9 %d prompts %d nonempty %d\n", name,
               sum / n, mn, below, n, nonempty);
        snprintf(what, sizeof what, "%s: bf16 vs fp32 best-mask IoU, mean over %dx%d >= 0.99", name,
                 side, side);
        TEST_CHECK(sum / n >= 0.99, what, "mean %.5f", sum / n);
    }
    free(mk[0]), free(mk[1]), free(input);
    weights_close(w);
}

int main(int argc, char **argv) {
    const char *device = "cuda:0", *configs[8];
    int n_cfg = 0, threads = 0, batch = 16, iters = 0, tf32 = 0, bf16 = 0, quality = 0, qonly = 0;
    double bound_f32 = 1e-3, bound_tf32 = 1e-2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bound") && i + 1 < argc) bound_f32 = atof(argv[++i]);
        else if (!strcmp(argv[i], "--tf32-bound") && i + 1 < argc) bound_tf32 = atof(argv[++i]);
        else if (!strcmp(argv[i], "--time") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tf32")) tf32 = 1;
        else if (!strcmp(argv[i], "--bf16")) bf16 = 1;
        else if (!strcmp(argv[i], "--quality-only")) qonly = 1;
        else if (!strcmp(argv[i], "--quality") && i + 1 < argc) quality = atoi(argv[++i]);
        else if (argv[i][0] != '-' && n_cfg < 8) configs[n_cfg++] = argv[i];
        else {
            fprintf(stderr, "usage: gpu_model [--device D] [--threads N] [--batch B] [--bound X] "
                            "[--tf32 [--tf32-bound X]] [--bf16] [--quality N] [--quality-only] "
                            "[--time N] [CONFIG ...]\n");
            return 2;
        }
    }
    if (!n_cfg) configs[n_cfg++] = "tiny", configs[n_cfg++] = "large";
    if (batch < 1) batch = 1;
    err_t err = {{0}};
    backend_t *cpu = backend_cpu_create(threads);
    dut_t duts[3];
    int ndut = 0;
    /* the float32 device, then (--tf32, CUDA only) a second instance with
     * TF32 GEMMs: the mode is read when a CUDA backend is created */
    setenv("SAM2AMG_CUDA_GEMM", "f32", 1);
    backend_t *dev = backend_create(device, threads, &err);
    TEST_CHECK(dev != NULL, "open the device", "%s: %s", device, err.msg);
    if (dev) {
        dev->precision = BACKEND_FP32;   /* the parity rows: float32 (cuda's default is bf16) */
        duts[ndut++] = (dut_t){dev, "", bound_f32};
    }
    if (dev && tf32 && strncmp(device, "cuda", 4) == 0) {
        setenv("SAM2AMG_CUDA_GEMM", "tf32", 1);
        backend_t *t = backend_create(device, threads, &err);
        TEST_CHECK(t != NULL, "open the device [tf32]", "%s: %s", device, err.msg);
        if (t) t->precision = BACKEND_FP32, duts[ndut++] = (dut_t){t, " [tf32]", bound_tf32};
        setenv("SAM2AMG_CUDA_GEMM", "f32", 1);
    }
    if (dev && bf16 && strncmp(device, "cuda", 4) == 0) {
        backend_t *t = backend_create(device, threads, &err);
        TEST_CHECK(t != NULL, "open the device [bf16]", "%s: %s", device, err.msg);
        if (t) t->precision = BACKEND_BF16, duts[ndut++] = (dut_t){t, " [bf16]", -1};
    }
    if (dev && !qonly) {
        printf("# reference %s; device %s: float32 GEMMs (bar %.0e)%s\n", cpu->name, dev->name,
               bound_f32, ndut > 1 ? ", and TF32 GEMMs as [tf32] rows" : "");
        for (int c = 0; c < n_cfg; c++) check_config(configs[c], cpu, duts, ndut, batch, iters);
    }
    if (dev && quality > 0) {
        if (strncmp(device, "cuda", 4) == 0) {
            for (int c = 0; c < n_cfg; c++) quality_config(configs[c], dev, quality, 256);
        } else {
            printf("# quality: skipped, %s has no bf16 path\n", device);
        }
    }
    for (int d = 0; d < ndut; d++) duts[d].be->destroy(duts[d].be);
    cpu->destroy(cpu);
    return TEST_REPORT();
}
