/* bench_model.c: time the SAM 2.1 image model on the CPU backend with the
 * real tiny / large shapes at 1024x1024 (random weights from
 * weights_open_random, so no checkpoint is needed): the image encoder per
 * image, the prompt encoder + mask decoder per batch of prompts (one point
 * each, multimask, as the AMG calls it) and per prompt, the arena peak and
 * the process RSS. Next to each number the official PyTorch model's time
 * for the same work and thread count (bench/torch_model.py, when
 * /usr/bin/python3 has torch and the oracle is found).
 *
 * usage: bench_model [CONFIG ...] [--threads N] [--iters N] [--batch N] [--no-torch]
 *        (default: tiny large, all cores, best of 2, batch 64)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "model.h"
#include "weights.h"

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* bench_torch: run the PyTorch side; 0 and its times, or -1 */
static int bench_torch(const char *cfg, int threads, int iters, int batch, double *enc,
                       double *dec) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 bench/torch_model.py --config %s --threads %d --iters %d "
             "--batch %d 2>/dev/null",
             cfg, threads, iters, batch);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[1024] = {0};
    int rc = -1;
    while (fgets(line, sizeof line, p)) {
        const char *e = strstr(line, "\"encoder_s\": "), *d = strstr(line, "\"decoder_s\": ");
        if (e && d) {
            *enc = atof(e + 13);
            *dec = atof(d + 13);
            rc = 0;
        }
    }
    if (pclose(p) != 0) rc = -1;
    return rc;
}

int main(int argc, char **argv) {
    const char *configs[8];
    int n_cfg = 0, threads = (int)sysconf(_SC_NPROCESSORS_ONLN), iters = 2, batch = 64;
    int torch = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) torch = 0;
        else if (argv[i][0] != '-') {
            /* bench/run.sh passes its arguments to every bench: keep config names */
            sam2_config probe;
            err_t e;
            if (!sam2_config_builtin(argv[i], &probe, &e) && n_cfg < 8) configs[n_cfg++] = argv[i];
            else fprintf(stderr, "bench_model: ignoring argument '%s'\n", argv[i]);
        }
        else {
            fprintf(stderr, "usage: bench_model [CONFIG ...] [--threads N] [--iters N] "
                            "[--batch N] [--no-torch]\n");
            return 2;
        }
    }
    if (!n_cfg) configs[n_cfg++] = "tiny", configs[n_cfg++] = "large";
    if (threads < 1) threads = 1;
    if (iters < 1) iters = 1;
    if (batch < 1) batch = 1;

    printf("bench_model: %d threads, best of %d, batch %d prompts (1 point, multimask)\n",
           threads, iters, batch);
    printf("%-10s %5s | %-21s | %-21s | %-19s | %9s %8s\n", "model", "S", "encoder s (ours/torch)",
           "decoder s/batch (ours/torch)", "ms/prompt (ours/torch)", "arena MiB", "RSS MiB");
    backend_t *be = backend_cpu_create(threads);
    for (int c = 0; c < n_cfg; c++) {
        err_t err = {{0}};
        sam2_config cfg;
        weights_t *w = NULL;
        sam2_model *m = NULL;
        if (sam2_config_builtin(configs[c], &cfg, &err) || weights_open_random(&w, 1) ||
            sam2_model_load_weights(&m, &cfg, w, be, batch, &err)) {
            fprintf(stderr, "bench_model: %s: %s\n", configs[c], err.msg);
            return 1;
        }
        int S = cfg.image_size;
        float *input = malloc((size_t)3 * S * S * sizeof(float));
        float *coords = malloc((size_t)batch * 2 * sizeof(float));
        int32_t *labels = malloc((size_t)batch * sizeof(int32_t));
        float *low = malloc((size_t)batch * 3 * (S / 4) * (S / 4) * sizeof(float));
        float *iou = malloc((size_t)batch * 3 * sizeof(float));
        uint32_t r = 12345;
        for (size_t i = 0; i < (size_t)3 * S * S; i++) {
            r = r * 1664525u + 1013904223u;
            input[i] = (float)(r >> 8) / 16777216.0f * 4.0f - 2.0f;
        }
        for (int i = 0; i < batch; i++) {
            r = r * 1664525u + 1013904223u;
            coords[2 * i] = (float)(r >> 8) / 16777216.0f * (float)S;
            r = r * 1664525u + 1013904223u;
            coords[2 * i + 1] = (float)(r >> 8) / 16777216.0f * (float)S;
            labels[i] = 1;
        }
        sam2_prompts p = {.n = batch, .n_pts = 1, .coords = coords, .labels = labels,
                          .multimask = 1};
        double enc = 1e30, dec = 1e30;
        for (int it = 0; it < iters; it++) {
            double t0 = bench_now();
            if (sam2_model_encode(m, input, &err)) {
                fprintf(stderr, "bench_model: encode: %s\n", err.msg);
                return 1;
            }
            double t1 = bench_now();
            int drc = sam2_model_decode(m, &p, low, iou, &err);
            double t2 = bench_now();
            if (drc) fprintf(stderr, "bench_model: decode: %s\n", err.msg);
            if (t1 - t0 < enc) enc = t1 - t0;
            if (drc) dec = -1;
            else if (dec >= 0 && t2 - t1 < dec) dec = t2 - t1;
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double tenc = 0, tdec = 0;
        int have_torch = torch && bench_torch(configs[c], threads, iters, batch, &tenc, &tdec) == 0;
        char e_s[48], d_s[48], p_s[48], od[16] = "n/a", op[16] = "n/a", te[16] = "n/a",
                                             td[16] = "n/a", tp[16] = "n/a";
        if (dec >= 0) {
            snprintf(od, sizeof od, "%.3f", dec);
            snprintf(op, sizeof op, "%.1f", 1e3 * dec / batch);
        }
        if (have_torch) {
            snprintf(te, sizeof te, "%.3f", tenc);
            snprintf(td, sizeof td, "%.3f", tdec);
            snprintf(tp, sizeof tp, "%.1f", 1e3 * tdec / batch);
        }
        snprintf(e_s, sizeof e_s, "%.3f / %s", enc, te);
        snprintf(d_s, sizeof d_s, "%s / %s", od, td);
        snprintf(p_s, sizeof p_s, "%s / %s", op, tp);
        printf("%-10s %5d | %-22s | %-28s | %-22s | %9.1f %8.1f\n", cfg.name, S, e_s, d_s, p_s,
               sam2_model_peak_bytes(m) / 1048576.0, ru.ru_maxrss / 1024.0);
        fflush(stdout);
        free(input), free(coords), free(labels), free(low), free(iou);
        sam2_model_free(m);
        weights_close(w);
    }
    be->destroy(be);
    return 0;
}
