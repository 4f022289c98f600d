/* bench_amg.c: the generator's post-processing (everything after the
 * decoder) on synthetic decoder outputs, timed, with peak memory.
 *
 * Default case (PERF-NOTES "After the decoder"): a 2250x1500 image, 32x32
 * grid (1024 prompts, 3 masks each), S = 1024 (256x256 low-res logits),
 * points_per_batch 64, once with the official default thresholds and once
 * keeping every mask (pred_iou_thresh 0, stability_score_thresh 0, the worst
 * case: 3072 RLEs). --big: 6000x4000 with points_per_side 64 (memory).
 * The synthetic decoder draws ellipses with a second lobe and noise around
 * each point (like the oracle's --synthetic); its time is reported apart.
 * The official side: bench/bench_amg_official.py.
 * Usage: bench_amg [--big] [--size W H] [--pps N] [--threads N] (others ignored)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "amg.h"

typedef struct syn_ctx {
    int S, L;
} syn_ctx;

static uint64_t mix(uint64_t x) {
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}
static double unif(uint64_t *s) {
    *s = mix(*s + 0x9e3779b97f4a7c15ull);
    return (double)(*s >> 11) / 9007199254740992.0;
}

static int syn_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err) {
    (void)ctx, (void)rgb, (void)w, (void)h, (void)stride, (void)err;
    return 0;
}

/* low_res (n, k, L, L): per point 3 ellipses of growing size with a second
 * lobe, slope and noise (logits), iou uniform in [0.55, 1) */
static int syn_decode(void *ctx, int n, const float *pts, const float *mask_input, int multimask,
                      float *low, float *iou, err_t *err) {
    (void)mask_input, (void)err;
    syn_ctx *c = ctx;
    int L = c->L, k = multimask ? 3 : 1;
    for (int i = 0; i < n; i++) {
        uint64_t s = mix((uint64_t)(pts[2 * i] * 7919.0f) * 1000003u +
                         (uint64_t)(pts[2 * i + 1] * 104729.0f));
        double cx = pts[2 * i] * L / c->S, cy = pts[2 * i + 1] * L / c->S;
        for (int kk = 0; kk < k; kk++) {
            double ra = L * (0.04 + 0.09 * kk) * (0.6 + 0.8 * unif(&s)), rb = ra * (0.5 + unif(&s));
            double th = unif(&s) * M_PI, ct = cos(th), st = sin(th);
            double ox = (unif(&s) * 3 - 1.5) * ra, oy = (unif(&s) * 3 - 1.5) * rb;
            double slope = 1.5 + 28.5 * unif(&s), noise = 1.5 * unif(&s);
            float *o = low + ((size_t)i * k + kk) * L * L;
            for (int y = 0; y < L; y++)
                for (int x = 0; x < L; x++) {
                    double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
                    double u = (dx * ct + dy * st) / ra, v = (-dx * st + dy * ct) / rb;
                    double f = ra * (1 - sqrt(u * u + v * v));
                    double gx = (dx - ox) / (0.6 * ra), gy = (dy - oy) / (0.6 * rb);
                    double g = 0.6 * ra * (1 - sqrt(gx * gx + gy * gy));
                    if (g > f) f = g;
                    double z = slope * f + noise * (2 * unif(&s) - 1);
                    o[y * L + x] = (float)(z < -31 ? -31 : z > 31 ? 31 : z);
                }
            iou[i * k + kk] = (float)(0.55 + 0.45 * unif(&s));
        }
    }
    return 0;
}

static int nthreads = 1;

static int run(int W, int H, int pps, double iou_t, double stab_t, const char *what) {
    amg_params p;
    amg_params_default(&p);
    p.points_per_side = pps;
    p.pred_iou_thresh = iou_t;
    p.stability_score_thresh = stab_t;
    syn_ctx sc = {1024, 256};
    amg_model m = {&sc, 1024, syn_encode, syn_decode, NULL, NULL};
    err_t err;
    amg_t *g = NULL;
    if (amg_create(&g, &p, 1024, &err) || amg_set_threads(g, nthreads, &err)) {
        fprintf(stderr, "bench_amg: %s\n", err.msg);
        return 1;
    }
    uint8_t *rgb = calloc((size_t)W * H * 3, 1);
    amg_result res = {0};
    if (!rgb || amg_generate(g, &m, rgb, W, H, &res, &err)) {
        fprintf(stderr, "bench_amg: %s\n", rgb ? err.msg : "out of memory");
        return 1;
    }
    amg_stats st;
    amg_get_stats(g, &st);
    size_t rle_bytes = 0;
    for (int i = 0; i < res.n; i++) rle_bytes += strlen(res.recs[i].rle);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%d thread(s) %-34s %5dx%-5d prompts %5d masks %6lld after_iou %6lld after_stab %6lld "
           "records %5d | post %7.3f s (%6.1f us/mask) | synthetic decoder %6.2f s | "
           "amg workspace %6.1f MB, peak RSS %6.1f MB, RLE %5.1f MB\n",
           nthreads, what, W, H, pps * pps, (long long)st.masks, (long long)st.after_iou,
           (long long)st.after_stability, res.n, st.t_post, 1e6 * st.t_post / (double)st.masks,
           st.t_decode, st.peak_bytes / 1e6, ru.ru_maxrss / 1e3, rle_bytes / 1e6);
    fflush(stdout);
    amg_result_free(&res);
    amg_free(g);
    free(rgb);
    return 0;
}

int main(int argc, char **argv) {
    int W = 2250, H = 1500, pps = 32, big = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--big")) big = 1;
        else if (!strcmp(argv[i], "--size") && i + 2 < argc)
            W = atoi(argv[i + 1]), H = atoi(argv[i + 2]), i += 2;
        else if (!strcmp(argv[i], "--pps") && i + 1 < argc) pps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) nthreads = atoi(argv[++i]);
    }
    if (big) return run(6000, 4000, 64, 0.8, 0.95, "6000x4000 pps 64, default thresholds");
    int rc = run(W, H, pps, 0.8, 0.95, "default thresholds (0.8, 0.95)");
    rc |= run(W, H, pps, 0.0, 0.0, "no filters (every mask kept)");
    return rc;
}
