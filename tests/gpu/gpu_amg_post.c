/* gpu_amg_post.c: the generator's post-processing on a device against the
 * CPU path (src/amg.c): records must be identical, field by field and bit
 * for bit (issue 8).
 *
 * Inputs, none of which need an image decoder or a network:
 *   - the replay fixtures (tests/fixtures/amg-synthetic*: recorded decoder
 *     calls), each with its own parameters and again with thresholds 0
 *     (every mask through the stability count, boxes, RLE and NMS);
 *   - a synthetic decoder (blobs of quantized logits around each prompt, so
 *     values land exactly on the thresholds) on images of real sizes
 *     (1024x768, 2250x1500, with and without crop layers and m2m), which
 *     also exercise crops wider than one block of the reduction. The large
 *     ones only run with a device, and there without the C version of the
 *     device algorithm (single-threaded: minutes); --big runs them all.
 * Each case runs these ways: the CPU path; the device algorithm in plain C
 * on the CPU backend (amg_post_ops_ref: the same code as the kernels, so
 * the host side is tested on every machine), with the logits staged through
 * the host and again left in backend memory by the model (decode_dev, read
 * in place through an index); and, when --device names one with a
 * post-processing table, the device itself, both ways. Per case: "ok -" lines,
 * the record count and, on a device, "time CASE cpu_post_ms C dev_post_ms D
 * dev_staged_post_ms E" (D: logits left on the device by the model, the
 * production path; E: staged through the host).
 *
 * No device (--device cpu, or cuda:N that cannot be opened): its part is
 * skipped, with "# skip" and the reason; with SAM2AMG_REQUIRE_CUDA=1 a
 * device that cannot be opened is a failure.
 *
 * --random N [--seed S] runs N property cases instead (check_random):
 * random sizes (1x1 and one-pixel lines included) and parameters.
 *
 * --only SUBSTRING runs the cases whose name holds it (one case again).
 *
 * usage: gpu_amg_post [--device D] [--threads N] [--big | --small]
 *                     [--random N [--seed S]] [--only SUBSTRING] [FIXTURE_DIR ...]
 * (--small: never the real-size cases, even with a device: the emulated
 * GPU of tests/emu, where they take minutes each)
 * Output: tests/test.h lines, "RESULT passed failed" last; exit 1 on a
 * failure.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amg.h"
#include "backend.h"
#include "check.h"
#include "../test.h"
#include "weights.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the synthetic decoder ---- */

typedef struct syn_model {
    int S, L;
} syn_model;

static uint32_t hash32(uint32_t x) {
    x ^= x >> 16, x *= 0x7feb352dU, x ^= x >> 15, x *= 0x846ca68bU, x ^= x >> 16;
    return x;
}

static int syn_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err) {
    (void)ctx, (void)rgb, (void)w, (void)h, (void)stride, (void)err;
    return 0;
}

/* per prompt and output: a blob around the point, radius by output, in
 * quarter steps (the replay fixtures' quantization: exact 0 and +-1 values
 * occur), plus hashed noise; IoU from a hash in [0.5, 1). Everything is a
 * function of the point and the output index, so every run of a case sees
 * the same logits (m2m calls included). */
static int syn_decode(void *ctx, int n, const float *points, const float *mask_input,
                      int multimask, float *low_res, float *iou, err_t *err) {
    syn_model *sm = ctx;
    (void)mask_input, (void)err;
    int k = multimask ? 3 : 1, L = sm->L;
    for (int i = 0; i < n; i++)
        for (int kk = 0; kk < k; kk++) {
            float *o = low_res + ((size_t)i * k + kk) * L * L;
            float cx = points[2 * i] / 4.0f, cy = points[2 * i + 1] / 4.0f;
            uint32_t bx, by;
            memcpy(&bx, &points[2 * i], 4), memcpy(&by, &points[2 * i + 1], 4);
            uint32_t seed = hash32(hash32(bx) ^ (by * 2654435761u) ^ (uint32_t)(kk + 7 * k));
            float r = (float)L * (0.05f + 0.12f * (float)kk) + (float)(seed % 7);
            for (int y = 0; y < L; y++)
                for (int x = 0; x < L; x++) {
                    float d2 = ((float)x - cx) * ((float)x - cx) + ((float)y - cy) * ((float)y - cy);
                    float v = 6.0f - 12.0f * d2 / (r * r);
                    int noise = (int)(hash32(seed ^ (uint32_t)(y * L + x)) % 5) - 2;
                    v = (float)(int)(v * 4.0f) / 4.0f + 0.25f * (float)noise;
                    o[(size_t)y * L + x] = v < -20.0f ? -20.0f : v;
                }
            iou[i * k + kk] = 0.5f + 0.5f * (float)(hash32(seed) % 1000) / 1000.0f;
        }
    return 0;
}

/* ---- the logits in place: the inner model's values, given by
 * decode_dev in the memory of be (as the SAM 2.1 model on a device leaves
 * them), so that the post-processing reads them there ---- */

typedef struct inplace_model {
    const amg_model *inner;
    backend_t       *be;
    float           *host;    /* (n, 3, L, L) staging of one call */
    size_t           cap;     /* floats */
    int              calls;   /* decode_dev calls */
} inplace_model;

static int inplace_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride,
                          err_t *err) {
    const amg_model *m = ((inplace_model *)ctx)->inner;
    return m->encode(m->ctx, rgb, w, h, stride, err);
}

static int inplace_decode(void *ctx, int n, const float *points, const float *mask_input,
                          int multimask, float *low_res, float *iou, err_t *err) {
    const amg_model *m = ((inplace_model *)ctx)->inner;
    return m->decode(m->ctx, n, points, mask_input, multimask, low_res, iou, err);
}

static int inplace_decode_dev(void *ctx, int n, const float *points, float *low_dev, float *iou,
                              err_t *err) {
    inplace_model *ip = ctx;
    const amg_model *m = ip->inner;
    size_t L = (size_t)m->S / 4, need = (size_t)n * 3 * L * L;
    if (need > ip->cap) {
        free(ip->host);
        ip->host = malloc((need ? need : 1) * sizeof(float));
        ip->cap = ip->host ? need : 0;
        if (!ip->host) return err_set(err, ERR_NOMEM, "out of memory");
    }
    int rc = m->decode(m->ctx, n, points, NULL, 1, ip->host, iou, err);
    if (!rc) ip->be->upload(ip->be, low_dev, ip->host, need * sizeof(float));
    ip->calls++;
    return rc;
}

/* ---- running and comparing ---- */

/* be NULL: the CPU path; else post-processing on be with ops (NULL: its
 * own table), the logits staged through the host or, with inplace, left in
 * be's memory by the model (*dev_calls: how many batches went that way, -1
 * when amg_stats' dev_calls disagrees; *all_calls: every decoder call) */
static int run_case(const amg_params *p, amg_model *m, amg_replay_t *rp, int w, int h,
                    int threads, backend_t *be, const backend_amg_ops *ops, int inplace,
                    int *dev_calls, int *all_calls, amg_result *res, double *t_post,
                    err_t *err) {
    amg_t *g = NULL;
    uint8_t *rgb = calloc((size_t)w * h * 3, 1);
    int rc = rgb ? amg_create(&g, p, m->S, err) : err_set(err, ERR_NOMEM, "out of memory");
    if (!rc) rc = amg_set_threads(g, threads, err);
    if (!rc) rc = amg_use_backend(g, be, ops, err);
    if (rp) amg_replay_model(rp, m);
    inplace_model ip = {.inner = m, .be = be};
    amg_model im = {.ctx = &ip, .S = m->S, .encode = inplace_encode, .decode = inplace_decode,
                    .backend = be, .decode_dev = inplace_decode_dev};
    if (!rc) rc = amg_generate(g, inplace ? &im : m, rgb, w, h, res, err);
    free(ip.host);
    if (dev_calls) *dev_calls = ip.calls;
    if (!rc && rp) rc = amg_replay_finish(rp, err);
    if (!rc) {
        amg_stats st;
        amg_get_stats(g, &st);
        *t_post = st.t_post;
        if (dev_calls && st.dev_calls != ip.calls) *dev_calls = -1;
        if (all_calls) *all_calls = (int)st.decode_calls;
    }
    amg_free(g);
    free(rgb);
    return rc;
}

static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* first difference between two results, or NULL */
static const char *diff_results(const amg_result *a, const amg_result *b, char *buf, size_t n) {
    if (a->n != b->n) {
        snprintf(buf, n, "%d records, reference %d", b->n, a->n);
        return buf;
    }
    for (int i = 0; i < a->n; i++) {
        const amg_record *x = &a->recs[i], *y = &b->recs[i];
        const char *what = NULL;
        if (strcmp(x->rle, y->rle)) what = "rle";
        else if (x->area != y->area) what = "area";
        else if (!same_double(x->predicted_iou, y->predicted_iou)) what = "predicted_iou";
        else if (!same_double(x->stability_score, y->stability_score)) what = "stability_score";
        for (int k = 0; k < 4 && !what; k++)
            if (!same_double(x->bbox[k], y->bbox[k])) what = "bbox";
            else if (!same_double(x->crop_box[k], y->crop_box[k])) what = "crop_box";
        for (int k = 0; k < 2 && !what; k++)
            if (!same_double(x->point[k], y->point[k])) what = "point_coords";
        if (what) {
            snprintf(buf, n, "record %d: %s differs (area %lld vs %lld)", i, what,
                     (long long)y->area, (long long)x->area);
            return buf;
        }
    }
    return NULL;
}

static int n_device_cases, big, small;
static const char *only;   /* --only SUBSTRING: the cases whose name holds it */

/* one case three ways */
/* diff_or_rc: NULL when the way's outcome equals the CPU path's: the same
 * error class when the CPU path failed (want_rc), else the same records */
static const char *diff_or_rc(int want_rc, int rc, const err_t *err, const amg_result *ref,
                              const amg_result *got, char *buf, size_t n) {
    if (want_rc || rc) {
        if (rc == want_rc) return NULL;
        snprintf(buf, n, "rc %d, the CPU path's %d: %.180s", rc, want_rc, err->msg);
        return buf;
    }
    return diff_results(ref, got, buf, n);
}

/* one case three ways; random: a property case, where the CPU path may
 * find no record or refuse the case (an image too small for its crop
 * layers): the other ways must then do the same */
static void check_case(const char *name, const amg_params *p, amg_model *m, amg_replay_t *rp,
                       int w, int h, int threads, backend_t *cpu, backend_t *dev, int with_ref,
                       int random) {
    if (only && !strstr(name, only)) return;
    amg_result ref = {0}, got = {0};
    err_t err = {{0}};
    char label[512], buf[256];
    double t_cpu = 0, t_ref = 0, t_dev = 0, t_stg = 0;
    int want = run_case(p, m, rp, w, h, threads, NULL, NULL, 0, NULL, NULL, &ref, &t_cpu, &err);
    snprintf(label, sizeof label, "%.300s: CPU path runs (%d records%s%.150s)", name, ref.n,
             want ? ", refused: " : "", want ? err.msg : "");
    TEST_CHECK(random ? want == 0 || want == ERR_INVALID : want == 0 && ref.n > 0, label, "rc %d %s",
               want, err.msg);
    if (want && !random) return;
    if (want) amg_result_free(&ref);
    int rc;
    const char *d;
    /* the logits can stay on the device: multimask, no m2m, no host filling
     * (then in every decoder call: a batch left behind fails) */
    int eligible = p->multimask_output && !p->use_m2m && p->min_mask_region_area <= 0, calls = 0,
        all = 0;
    if (with_ref) { /* single-threaded, every pixel: slow at real sizes */
        rc = run_case(p, m, rp, w, h, threads, cpu, &amg_post_ops_ref, 0, NULL, NULL, &got, &t_ref,
                      &err);
        d = diff_or_rc(want, rc, &err, &ref, &got, buf, sizeof buf);
        snprintf(label, sizeof label, "%s: device algorithm in C == CPU path", name);
        TEST_CHECK(d == NULL, label, "%s", d);
        amg_result_free(&got);
        rc = run_case(p, m, rp, w, h, threads, cpu, &amg_post_ops_ref, 1, &calls, &all, &got,
                      &t_ref, &err);
        d = diff_or_rc(want, rc, &err, &ref, &got, buf, sizeof buf);
        snprintf(label, sizeof label, "%s: device algorithm in C, logits in place == CPU path",
                 name);
        TEST_CHECK(d == NULL && (want || (eligible ? calls > 0 && calls == all : calls == 0)), label,
                   "%s (%d of %d decoder calls in place)", d ? d : "records equal", calls, all);
        amg_result_free(&got);
    }
    if (with_ref && !dev && only)
        printf("time %s cpu_post_ms %.2f ref_post_ms %.2f (the device algorithm in C, one "
               "thread)\n", name, 1e3 * t_cpu, 1e3 * t_ref);
    if (dev) {
        rc = run_case(p, m, rp, w, h, threads, dev, NULL, 1, &calls, &all, &got, &t_dev, &err);
        d = diff_or_rc(want, rc, &err, &ref, &got, buf, sizeof buf);
        snprintf(label, sizeof label, "%s: %s, logits in place == CPU path", name, dev->name);
        TEST_CHECK(d == NULL && (want || (eligible ? calls > 0 && calls == all : calls == 0)), label,
                   "%s (%d of %d decoder calls in place)", d ? d : "records equal", calls, all);
        amg_result_free(&got);
        rc = run_case(p, m, rp, w, h, threads, dev, NULL, 0, NULL, NULL, &got, &t_stg, &err);
        d = diff_or_rc(want, rc, &err, &ref, &got, buf, sizeof buf);
        snprintf(label, sizeof label, "%s: %s == CPU path", name, dev->name);
        TEST_CHECK(d == NULL, label, "%s", d);
        printf("time %s cpu_post_ms %.2f dev_post_ms %.2f dev_staged_post_ms %.2f records %d "
               "(%d threads)\n", name, 1e3 * t_cpu, 1e3 * t_dev, 1e3 * t_stg, ref.n, threads);
        n_device_cases++;
        amg_result_free(&got);
    }
    amg_result_free(&ref);
}

/* the first recorded call's crop is the whole image: its (h, w) */
static int replay_size(const char *path, int *w, int *h, err_t *err) {
    weights_t *wt = NULL;
    int rc = weights_open(&wt, path, err);
    if (rc) return rc;
    const wtensor_t *t = weights_find(wt, "syn_crop_hw");
    if (!t || t->dtype != WDT_I32 || t->ndim != 2 || t->shape[0] < 1 || t->shape[1] != 2)
        rc = err_set(err, ERR_FORMAT, "%s: no syn_crop_hw (n, 2) int32", path);
    else
        *h = ((const int32_t *)t->data)[0], *w = ((const int32_t *)t->data)[1];
    weights_close(wt);
    return rc;
}

static void check_fixture(const char *dir, int threads, backend_t *cpu, backend_t *dev) {
    char path[4096], name[600];
    amg_params p;
    amg_params_default(&p);
    err_t err = {{0}};
    amg_replay_t *rp = NULL;
    int w = 0, h = 0;
    snprintf(path, sizeof path, "%s/meta.json", dir);
    int rc = amg_params_from_config(&p, path, &err);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (!rc) rc = replay_size(path, &w, &h, &err);
    if (!rc) rc = amg_replay_open(&rp, path, &err);
    TEST_CHECK(rc == 0, dir, "%s", err.msg);
    if (rc) return;
    amg_model m = {0};
    amg_replay_model(rp, &m);
    const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    snprintf(name, sizeof name, "%s %dx%d", base, w, h);
    check_case(name, &p, &m, rp, w, h, threads, cpu, dev, 1, 0);
    p.pred_iou_thresh = 0, p.stability_score_thresh = 0;
    snprintf(name, sizeof name, "%s %dx%d thresholds 0", base, w, h);
    check_case(name, &p, &m, rp, w, h, threads, cpu, dev, 1, 0);
    amg_replay_free(rp);
}

static void check_synthetic(int threads, backend_t *cpu, backend_t *dev) {
    static const struct {
        int w, h, pps, layers, m2m, multimask, zero, big;
    } cs[] = {
        {300, 200, 8, 1, 0, 1, 0, 0},     {200, 300, 6, 0, 1, 1, 1, 0},
        {257, 190, 6, 1, 0, 0, 1, 0},     {1024, 768, 32, 0, 0, 1, 1, 1},
        {2250, 1500, 32, 0, 0, 1, 1, 1},  {2250, 1500, 16, 1, 0, 1, 0, 1},
        {1500, 2250, 8, 0, 1, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        if (cs[i].big && (small || (!dev && !big))) continue;
        amg_params p;
        amg_params_default(&p);
        p.points_per_side = cs[i].pps, p.crop_n_layers = cs[i].layers;
        p.use_m2m = cs[i].m2m, p.multimask_output = cs[i].multimask;
        if (cs[i].zero) p.pred_iou_thresh = 0, p.stability_score_thresh = 0;
        else p.pred_iou_thresh = 0.7, p.stability_score_thresh = 0.6;
        syn_model sm = {1024, 256};
        amg_model m = {&sm, 1024, syn_encode, syn_decode, NULL, NULL};
        char name[200];
        snprintf(name, sizeof name, "synthetic %dx%d pps %d layers %d%s%s%s", cs[i].w, cs[i].h,
                 cs[i].pps, cs[i].layers, cs[i].m2m ? " m2m" : "",
                 cs[i].multimask ? "" : " single-mask", cs[i].zero ? " thresholds 0" : "");
        check_case(name, &p, &m, NULL, cs[i].w, cs[i].h, threads, cpu, dev, !cs[i].big || big, 0);
    }
}

/* --random N: property cases with the synthetic decoder, sizes and
 * parameters drawn from a seeded generator (--seed; printed, so a failure
 * reproduces): 1x1, one-pixel-wide and tall, and random images up to
 * 400 px; every parameter the post-processing reads, mask_threshold on the
 * logits' quarter steps half the time (values land exactly on it), crop
 * layers the image may be too small for (then every way must refuse it
 * alike), m2m and min-area (the logits staged through the host) */
static uint32_t rnd_state;
static uint32_t rnd_u32(void) { return rnd_state = hash32(rnd_state + 0x9e3779b9u); }
static int rnd_int(int lo, int hi) { return lo + (int)(rnd_u32() % (uint32_t)(hi - lo + 1)); }
static double rnd_unit(void) { return (double)(rnd_u32() % 1000000u) / 1e6; }

static void check_random(int n, uint32_t seed, int threads, backend_t *cpu, backend_t *dev) {
    printf("# random cases: --random %d --seed %u reproduces them\n", n, seed);
    rnd_state = seed;
    for (int i = 0; i < n; i++) {
        int w, h, shape = rnd_int(0, 9);
        if (shape == 0) w = h = 1;
        else if (shape == 1) w = 1, h = rnd_int(2, 600);
        else if (shape == 2) w = rnd_int(2, 600), h = 1;
        else w = rnd_int(2, 400), h = rnd_int(2, 400);
        amg_params p;
        amg_params_default(&p);
        p.points_per_side = rnd_int(1, 10);
        p.points_per_batch = rnd_int(1, 64);
        p.pred_iou_thresh = rnd_int(0, 2) ? 0.5 + 0.5 * rnd_unit() : 0.0;
        p.stability_score_thresh = rnd_int(0, 2) ? 0.3 + 0.7 * rnd_unit() : 0.0;
        p.stability_score_offset = 0.25 * rnd_int(1, 8);
        p.mask_threshold = rnd_int(0, 1) ? 0.25 * rnd_int(-4, 4) : -1.0 + 2.0 * rnd_unit();
        p.box_nms_thresh = 0.3 + 0.7 * rnd_unit();
        p.crop_n_layers = rnd_int(0, 3) ? 0 : rnd_int(1, 2);
        p.crop_nms_thresh = 0.3 + 0.7 * rnd_unit();
        p.crop_overlap_ratio = 0.5 * rnd_unit();
        p.crop_n_points_downscale_factor = rnd_int(1, 2);
        p.min_mask_region_area = rnd_int(0, 4) ? 0 : rnd_int(1, 100);
        p.use_m2m = rnd_int(0, 4) == 0;
        p.multimask_output = rnd_int(0, 4) != 0;
        err_t e;
        if (amg_params_validate(&p, &e)) { /* a draw the CLI would refuse: draw again */
            i--;
            continue;
        }
        syn_model sm = {1024, 256};
        amg_model m = {&sm, 1024, syn_encode, syn_decode, NULL, NULL};
        char name[300];
        snprintf(name, sizeof name, "random %d: %dx%d pps %d ppb %d iou %.3f stab %.3f off %.2f "
                 "mask %.3f nms %.2f layers %d crop-nms %.2f overlap %.3f down %d area %d%s%s", i,
                 w, h, p.points_per_side, p.points_per_batch, p.pred_iou_thresh,
                 p.stability_score_thresh, p.stability_score_offset, p.mask_threshold,
                 p.box_nms_thresh, p.crop_n_layers, p.crop_nms_thresh, p.crop_overlap_ratio,
                 p.crop_n_points_downscale_factor, p.min_mask_region_area, p.use_m2m ? " m2m" : "",
                 p.multimask_output ? "" : " single-mask");
        check_case(name, &p, &m, NULL, w, h, threads, cpu, dev, 1, 1);
    }
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    const char *device = "cuda:0";
    int threads = 2, nfix = 0, n_random = 0, seed_given = 0;
    uint32_t seed = 20261127u;
    const char *fix[64];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--big")) big = 1;
        else if (!strcmp(argv[i], "--small")) small = 1;
        else if (!strcmp(argv[i], "--random") && i + 1 < argc) {
            /* N >= 1 (0, a negative, a non-number or trailing junk ran the
             * fixtures instead, exit 0, as if the property cases had passed) */
            char *end;
            errno = 0;
            long v = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end || errno || v < 1 || v > 1000000) {
                fprintf(stderr, "gpu_amg_post: --random %s: the number of cases, 1..1000000\n", argv[i]);
                return 2;
            }
            n_random = (int)v;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (end == argv[i] || *end || errno || argv[i][0] == '-' || v > 0xffffffffull) {
                fprintf(stderr, "gpu_amg_post: --seed %s: a number 0..4294967295\n", argv[i]);
                return 2;
            }
            seed = (uint32_t)v;
            seed_given = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: gpu_amg_post [--device D] [--threads N] [--big | --small] "
                    "[--random N [--seed S]] [--only SUBSTRING] [FIXTURE_DIR ...]\n");
            return 2;
        } else if (nfix < 64) fix[nfix++] = argv[i];
    }
    if (seed_given && n_random == 0) {
        fprintf(stderr, "gpu_amg_post: --seed seeds the property cases of --random N; without "
                "--random it would change nothing\n");
        return 2;
    }
    if (threads < 1) threads = 1;
    static char *found[64];
    if (nfix == 0) { /* every tests/fixtures/amg-synthetic* */
        const char *root = test_fixture("");
        DIR *dp = opendir(root);
        struct dirent *de;
        while (dp && (de = readdir(dp)) && nfix < 64)
            if (!strncmp(de->d_name, "amg-synthetic", 13)) {
                size_t n = strlen(root) + strlen(de->d_name) + 2;
                found[nfix] = malloc(n);
                snprintf(found[nfix], n, "%s/%s", root, de->d_name);
                nfix++;
            }
        if (dp) closedir(dp);
        qsort(found, (size_t)nfix, sizeof *found, cmp_str);
        for (int i = 0; i < nfix; i++) fix[i] = found[i];
        TEST_CHECK(nfix > 0, "replay fixtures found", "none under %s", root);
    }
    backend_t *cpu = backend_cpu_create(threads), *dev = NULL;
    err_t err = {{0}};
    if (strcmp(device, "cpu") != 0) {
        dev = backend_create(device, threads, &err);
        const char *req = getenv("SAM2AMG_REQUIRE_CUDA");
        if (!dev && req && !strcmp(req, "1"))
            TEST_CHECK(0, "device opens", "%s: %s (SAM2AMG_REQUIRE_CUDA=1)", device, err.msg);
        else if (!dev)
            printf("# skip - %s: %s (the device part is skipped)\n", device, err.msg);
        if (dev && !dev->amg) {
            printf("# skip - %s has no post-processing table\n", device);
            dev->destroy(dev);
            dev = NULL;
        }
    } else {
        printf("# skip - device cpu: the CPU backend has no post-processing table (the device "
               "algorithm runs in C only)\n");
    }
    /* the comparison itself can fail: one pixel less in one record */
    {
        amg_record r1 = {.rle = "a", .area = 5}, r2 = r1;
        r2.area = 4;
        amg_result a = {.n = 1, .recs = &r1}, b = {.n = 1, .recs = &r2};
        char buf[256];
        TEST_CHECK(diff_results(&a, &b, buf, sizeof buf) != NULL && diff_results(&a, &a, buf, sizeof buf) == NULL,
                   "the comparison sees a one-pixel difference", "it does not");
    }
    double t0 = now_s();
    if (n_random > 0) { /* the property cases alone */
        check_random(n_random, seed, threads, cpu, dev);
    } else {
        for (int i = 0; i < nfix; i++) check_fixture(fix[i], threads, cpu, dev);
        check_synthetic(threads, cpu, dev);
    }
    printf("# %d cases on %s, %.1f s\n", n_device_cases, dev ? dev->name : "no device",
           now_s() - t0);
    if (dev) dev->destroy(dev);
    cpu->destroy(cpu);
    for (int i = 0; i < 64; i++) free(found[i]);
    return TEST_REPORT();
}
