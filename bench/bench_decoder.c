/* bench_decoder.c: time the prompt encoder + mask decoder alone (src/decoder.c)
 * on the CPU backend at the real shapes (d_model 256, image 1024, so 64x64
 * image tokens and 256x256 low-res masks), per prompt, for the two ways AMG
 * calls it: one positive point per prompt with multimask output, and the
 * mask-to-mask refinement pass (one point + a mask input, single mask with
 * the stability fallback). bench_model times the whole model; this one
 * skips the image encoder (random features are handed to
 * decoder_set_image) so that decoder changes can be measured in seconds.
 *
 * Weights come from weights_open_random (no checkpoint needed), or with
 * --model FILE from a checkpoint (any SAM 2.1 size: the decoder's shapes
 * are the same). The two can time differently: random weights give flat
 * attention, a trained (or oracle-randomized) checkpoint gives sharp
 * attention whose probabilities underflow to subnormals, which cost a
 * microcode assist per GEMM operand on Intel cores unless flushed (the CPU
 * backend flushes them). Prompts are the points of an AMG grid, as
 * generate feeds them. --save FILE
 * writes every output (low_res and iou of both passes) as raw float32;
 * --check FILE compares with such a file and prints the max abs difference
 * and max|value| per output, so a reformulation of the decoder can be
 * checked at the real size against the previous version (random weights:
 * this is a regression check, the parity tests are the fixtures).
 *
 * usage: bench_decoder [--threads N] [--iters N] [--batch N] [--model F] [--save F] [--multimask-only]
 *                      [--check F]
 *        (default: all cores, best of 3, batch 64)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/decoder.h"
#include "backend.h"
#include "model.h"
#include "weights.h"

#define BD_C 256
#define BD_S 1024

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* bench_cpu: process CPU seconds (all threads): steadier than wall time on
 * a shared machine, though it also counts the pool's idle spinning */
static double bench_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* bench_fill: n uniform values in [lo, hi) from the LCG state *r. */
static void bench_fill(float *x, size_t n, float lo, float hi, uint32_t *r) {
    for (size_t i = 0; i < n; i++) {
        *r = *r * 1664525u + 1013904223u;
        x[i] = lo + (hi - lo) * (float)(*r >> 8) / 16777216.0f;
    }
}

/* bench_compare: max |a-b| and max |b| over n floats, printed under name. */
static void bench_compare(const char *name, const float *a, const float *b, size_t n) {
    double md = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= md)) md = d;
        if (fabs((double)b[i]) > mx) mx = fabs((double)b[i]);
    }
    printf("check %-16s max diff %.3g (max|ref| %.3g, rel %.3g)\n", name, md, mx,
           mx > 0 ? md / mx : md);
}

int main(int argc, char **argv) {
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), iters = 3, batch = 64, mm_only = 0;
    const char *save = NULL, *check = NULL, *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--save") && i + 1 < argc) save = argv[++i];
        else if (!strcmp(argv[i], "--check") && i + 1 < argc) check = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--multimask-only")) mm_only = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: bench_decoder [--threads N] [--iters N] [--batch N] "
                            "[--model FILE] [--save FILE] [--check FILE] [--multimask-only]\n");
            return 2;
        }
        /* bench/run.sh passes its arguments to every bench: ignore the rest */
    }
    if (mm_only && save) {
        /* --save writes the m2m outputs too, which --multimask-only never
         * computes: the reference would hold uninitialised memory */
        fprintf(stderr, "bench_decoder: --save needs the mask-input outputs: not with "
                        "--multimask-only\n");
        return 2;
    }
    if (threads < 1) threads = 1;
    if (iters < 1) iters = 1;
    if (batch < 1) batch = 1;

    sam2_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "bench");
    cfg.d_model = BD_C;
    cfg.image_size = BD_S;
    const size_t hf = BD_S / 16, HW = hf * hf, L4 = 16 * HW;

    backend_t *be = backend_cpu_create(threads);
    weights_t *w = NULL;
    decoder_t *d = NULL;
    err_t err = {{0}};
    if ((model ? weights_open(&w, model, &err) : weights_open_random(&w, 7)) ||
        decoder_init(&d, w, &cfg, be, batch, &err)) {
        fprintf(stderr, "bench_decoder: init: %s\n", err.msg);
        return 1;
    }

    /* random features (NHWC) and prompts */
    uint32_t r = 4242;
    size_t n_emb = HW * BD_C, n_s0 = 16 * HW * (BD_C / 8), n_s1 = 4 * HW * (BD_C / 4);
    float *hfeat = malloc((n_emb + n_s0 + n_s1) * sizeof(float));
    float *dfeat = be->alloc(be, (n_emb + n_s0 + n_s1) * sizeof(float));
    float *coords = malloc((size_t)batch * 2 * sizeof(float));
    int32_t *labels = malloc((size_t)batch * sizeof(int32_t));
    float *mask_in = malloc((size_t)batch * L4 * sizeof(float));
    size_t n_out = (size_t)batch * (3 * L4 + 3 + L4 + 1);
    float *out = malloc(n_out * sizeof(float));
    if (!hfeat || !dfeat || !coords || !labels || !mask_in || !out) {
        fprintf(stderr, "bench_decoder: out of memory\n");
        return 1;
    }
    bench_fill(hfeat, n_emb + n_s0 + n_s1, -1.0f, 1.0f, &r);
    /* the AMG's point grid: g x g cell centres, g*g >= batch */
    int g = 1;
    while (g * g < batch) g++;
    for (int i = 0; i < batch; i++) {
        coords[2 * i] = ((float)(i % g) + 0.5f) * (float)BD_S / (float)g;
        coords[2 * i + 1] = ((float)(i / g) + 0.5f) * (float)BD_S / (float)g;
    }
    bench_fill(mask_in, (size_t)batch * L4, -8.0f, 8.0f, &r);
    for (int i = 0; i < batch; i++) labels[i] = 1;
    be->upload(be, dfeat, hfeat, (n_emb + n_s0 + n_s1) * sizeof(float));
    be->sync(be);

    double t0 = bench_now();
    decoder_set_image(d, dfeat, dfeat + n_emb, dfeat + n_emb + n_s0, &err);
    double t_set = bench_now() - t0;

    float *low_mm = out, *iou_mm = low_mm + (size_t)batch * 3 * L4;
    float *low_m2m = iou_mm + (size_t)batch * 3, *iou_m2m = low_m2m + (size_t)batch * L4;
    sam2_prompts pm = {.n = batch, .n_pts = 1, .coords = coords, .labels = labels,
                       .multimask = 1};
    sam2_prompts p2 = pm;
    p2.mask_input = mask_in;
    p2.multimask = 0;
    double best_mm = 1e30, best_m2m = 1e30, cpu_mm = 1e30, cpu_m2m = 1e30;
    for (int it = 0; it < iters; it++) {
        double ca = bench_cpu(), a = bench_now();
        if (decoder_run(d, &pm, low_mm, NULL, iou_mm, &err)) {
            fprintf(stderr, "bench_decoder: run: %s\n", err.msg);
            return 1;
        }
        double b = bench_now(), cb = bench_cpu();
        if (!mm_only && decoder_run(d, &p2, low_m2m, NULL, iou_m2m, &err)) {
            fprintf(stderr, "bench_decoder: run (mask input): %s\n", err.msg);
            return 1;
        }
        double c = bench_now(), cc = bench_cpu();
        if (b - a < best_mm) best_mm = b - a;
        if (c - b < best_m2m) best_m2m = c - b;
        if (cb - ca < cpu_mm) cpu_mm = cb - ca;
        if (cc - cb < cpu_m2m) cpu_m2m = cc - cb;
    }
    printf("bench_decoder: C=%d S=%d, %d threads, batch %d, best of %d, weights %s\n", BD_C,
           BD_S, threads, batch, iters, model ? model : "random");
    printf("set_image          %8.1f ms\n", 1e3 * t_set);
    printf("multimask (1 pt)   %8.2f ms/prompt wall, %8.2f ms/prompt CPU (%.3f s/batch)\n",
           1e3 * best_mm / batch, 1e3 * cpu_mm / batch, best_mm);
    if (!mm_only)
        printf("mask input (m2m)   %8.2f ms/prompt wall, %8.2f ms/prompt CPU (%.3f s/batch)\n",
           1e3 * best_m2m / batch, 1e3 * cpu_m2m / batch, best_m2m);
    printf("arena peak         %8.1f MiB\n", decoder_peak_bytes(d) / 1048576.0);

    int rc = 0;
    if (save) {
        FILE *f = fopen(save, "wb");
        if (!f || fwrite(out, sizeof(float), n_out, f) != n_out) rc = 1;
        if (f) fclose(f);
        if (rc) fprintf(stderr, "bench_decoder: cannot write %s\n", save);
    }
    if (check) {
        float *ref = malloc(n_out * sizeof(float));
        FILE *f = fopen(check, "rb");
        if (!ref || !f || fread(ref, sizeof(float), n_out, f) != n_out) {
            fprintf(stderr, "bench_decoder: cannot read %s (same --batch?)\n", check);
            rc = 1;
        } else {
            float *rl_mm = ref, *ri_mm = rl_mm + (size_t)batch * 3 * L4;
            float *rl_m2m = ri_mm + (size_t)batch * 3, *ri_m2m = rl_m2m + (size_t)batch * L4;
            bench_compare("low_res", low_mm, rl_mm, (size_t)batch * 3 * L4);
            bench_compare("iou", iou_mm, ri_mm, (size_t)batch * 3);
            if (!mm_only) {
                bench_compare("m2m low_res", low_m2m, rl_m2m, (size_t)batch * L4);
                bench_compare("m2m iou", iou_m2m, ri_m2m, (size_t)batch);
            }
        }
        if (f) fclose(f);
        free(ref);
    }
    free(hfeat), free(coords), free(labels), free(mask_in), free(out);
    be->free(be, dfeat);
    decoder_free(d);
    weights_close(w);
    be->destroy(be);
    return rc;
}
