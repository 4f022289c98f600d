/* test_amg.c: the automatic mask generator against the official one.
 *
 * Replay parity: for every synthetic fixture (recorded decoder outputs of
 * an official run), the generator with the replay decoder must reproduce
 * amg.json record for record: all records matched at mask IoU >= 0.999,
 * |d stability|, |d predicted_iou| <= 1e-4, no extra records, identical
 * area / bbox / point / crop_box. Plus parameter checks. */
#include <string.h>

#include "amg.h"
#include "rle.h"
#include "weights.h"
#include "test.h"
#include "amg_fixture.h"

static const char *fixtures[] = {
    "amg-synthetic", "amg-synthetic-crops", "amg-synthetic-minarea",
    "amg-synthetic-tall", "amg-synthetic-layers2", "amg-synthetic-thresh",
    "amg-synthetic-m2m",  "amg-synthetic-single", "amg-synthetic-tiny",
};

/* worst_iou_str: the worst IoU of the matched pairs, or "none" when nothing
 * matched (the figure's start value, 1, would read as a perfect match) */
static void worst_iou_str(const fx_match *mt, char *buf, size_t cap) {
    if (mt->matched > 0) snprintf(buf, cap, "%.6f", mt->worst_iou);
    else snprintf(buf, cap, "none");
}

static void replay_fixture(const char *name) {
    char path[512], label[256];
    snprintf(path, sizeof path, "%s/meta.json", name);
    char *meta = fx_read(test_fixture(path));
    if (!meta) {
        printf("# skip %s: no fixture\n", name);
        return;
    }
    snprintf(path, sizeof path, "%s/amg.json", name);
    char *js = fx_read(test_fixture(path));
    char *amgobj = fx_object(meta, "amg");
    amg_params p;
    amg_params_default(&p);
    err_t err = {{0}};
    int rc = amg_params_from_json(&p, amgobj ? amgobj : "{}", &err);
    snprintf(label, sizeof label, "%s: meta.json amg parameters", name);
    TEST_CHECK(rc == 0 && js, label, "%s", err.msg);
    const char *im = strstr(js ? js : "", "\"width\"");
    const char *q = im;
    int W = im ? (int)fx_number_after(&q, "\"width\"") : 0;
    q = im;
    int H = im ? (int)fx_number_after(&q, "\"height\"") : 0;

    snprintf(path, sizeof path, "%s/expected.safetensors", name);
    amg_replay_t *r = NULL;
    rc = amg_replay_open(&r, test_fixture(path), &err);
    snprintf(label, sizeof label, "%s: replay opens", name);
    TEST_CHECK(rc == 0, label, "%s", err.msg);
    if (rc) goto out;
    amg_model m;
    amg_replay_model(r, &m);
    amg_t *g = NULL;
    rc = amg_create(&g, &p, m.S, &err);
    snprintf(label, sizeof label, "%s: amg_create", name);
    TEST_CHECK(rc == 0, label, "%s", err.msg);
    if (rc) goto out;
    uint8_t *rgb = calloc((size_t)W * H * 3, 1);
    amg_result res = {0};
    rc = amg_generate(g, &m, rgb, W, H, &res, &err);
    if (!rc) rc = amg_replay_finish(r, &err);
    snprintf(label, sizeof label, "%s: generate replays every recorded call", name);
    TEST_CHECK(rc == 0, label, "%s", err.msg);
    if (rc == 0) {
        /* our records through our own JSON writer and back */
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        amg_write_json(f, "image.png", &res);
        fclose(f);
        fx_rec *e = NULL, *a = NULL;
        int ne = fx_parse_records(js, &e), na = fx_parse_records(buf, &a);
        fx_match mt;
        fx_compare(e, ne, a, na, 0.999, &mt);
        char worst[32];
        worst_iou_str(&mt, worst, sizeof worst);
        printf("# %s: expected %d actual %d matched %d extra %d worst_iou %s max_dstab %.2e "
               "max_diou %.2e max_dother %.3g\n",
               name, ne, na, mt.matched, mt.extra, worst, mt.max_dstab, mt.max_diou,
               mt.max_dother);
        snprintf(label, sizeof label, "%s: all %d records matched at mask IoU >= 0.999", name, ne);
        TEST_CHECK(ne > 0 && mt.matched == ne && mt.extra == 0, label,
                   "matched %d of %d, %d extra", mt.matched, ne, mt.extra);
        snprintf(label, sizeof label, "%s: stability and predicted_iou within 1e-4", name);
        TEST_CHECK(mt.max_dstab <= 1e-4 && mt.max_diou <= 1e-4, label, "dstab %g diou %g",
                   mt.max_dstab, mt.max_diou);
        snprintf(label, sizeof label, "%s: all %d counts strings byte-identical to the official",
                 name, ne);
        TEST_CHECK(mt.str_equal == ne, label, "%d of %d equal", mt.str_equal, ne);
        snprintf(label, sizeof label, "%s: records in the official order", name);
        TEST_CHECK(mt.in_order, label, "order differs");
        snprintf(label, sizeof label, "%s: area, bbox, point, crop_box equal", name);
        TEST_CHECK(mt.max_dother <= 1e-3, label, "max difference %g", mt.max_dother);
        fx_free_records(e, ne > 0 ? ne : 0);
        fx_free_records(a, na > 0 ? na : 0);
        free(buf);
    }
    /* the same on 3 post-processing threads: identical records */
    if (rc == 0) {
        amg_result res3 = {0};
        amg_replay_model(r, &m);
        int rc3 = amg_set_threads(g, 3, &err);
        if (!rc3) rc3 = amg_generate(g, &m, rgb, W, H, &res3, &err);
        int same = rc3 == 0 && res3.n == res.n;
        for (int i = 0; same && i < res.n; i++) {
            const amg_record *x = &res.recs[i], *y = &res3.recs[i];
            same = !strcmp(x->rle, y->rle) && x->area == y->area &&
                   !memcmp(x->bbox, y->bbox, sizeof x->bbox) &&
                   x->predicted_iou == y->predicted_iou &&
                   x->stability_score == y->stability_score &&
                   !memcmp(x->point, y->point, sizeof x->point) &&
                   !memcmp(x->crop_box, y->crop_box, sizeof x->crop_box);
        }
        snprintf(label, sizeof label, "%s: 3 threads give the same records in the same order",
                 name);
        TEST_CHECK(same, label, "rc %d (%s), %d vs %d records", rc3, err.msg, res3.n, res.n);
        amg_result_free(&res3);
    }
    amg_result_free(&res);
    free(rgb);
    amg_free(g);
out:
    amg_replay_free(r);
    free(amgobj);
    free(meta);
    free(js);
}

/* the implicit full-res logits against PyTorch's bilinear resize, bit for
 * bit, for both kernels (amg-upsample fixture) */
static void test_upsample(void) {
    weights_t *w = NULL;
    err_t err;
    int rc = weights_open(&w, test_fixture("amg-upsample/upsample.safetensors"), &err);
    TEST_CHECK(rc == 0, "amg-upsample fixture opens", "%s", err.msg);
    if (rc) return;
    amg_params p;
    amg_params_default(&p);
    amg_t *g = NULL;
    rc = amg_create(&g, &p, 256, &err);
    const char *cases[] = {"k3_a", "k3_b", "k3_c", "k1_a", "k1_b", "k1_c"};
    for (size_t c = 0; !rc && c < sizeof cases / sizeof cases[0]; c++) {
        char key[64], label[128];
        snprintf(key, sizeof key, "%s_in", cases[c]);
        const wtensor_t *in = weights_find(w, key);
        snprintf(key, sizeof key, "%s_out", cases[c]);
        const wtensor_t *out = weights_find(w, key);
        if (!in || !out) {
            TEST_CHECK(0, cases[c], "missing tensors");
            continue;
        }
        int maps = (int)(in->shape[0] * in->shape[1]), h = (int)out->shape[2],
            wd = (int)out->shape[3], single = in->shape[1] == 1;
        float *got = malloc(sizeof(float) * (size_t)h * wd);
        int64_t bad = 0;
        for (int m = 0; m < maps; m++) {
            amg_upsample(g, (const float *)in->data + (size_t)m * 64 * 64, single, h, wd, got);
            const float *e = (const float *)out->data + (size_t)m * h * wd;
            for (int64_t q = 0; q < (int64_t)h * wd; q++) bad += memcmp(&got[q], &e[q], 4) != 0;
        }
        snprintf(label, sizeof label, "%s: %d maps to %dx%d (%s kernel) equal torch bit for bit",
                 cases[c], maps, h, wd, single ? "channels-last" : "generic");
        TEST_CHECK(bad == 0, label, "%lld values differ", (long long)bad);
        free(got);
    }
    amg_free(g);
    weights_close(w);
}

static void test_params(void) {
    amg_params p;
    err_t err;
    amg_params_default(&p);
    TEST_CHECK(amg_params_validate(&p, &err) == 0, "defaults are valid", "%s", err.msg);
    p.points_per_side = 0;
    TEST_CHECK(amg_params_validate(&p, &err) == ERR_INVALID && strstr(err.msg, "points_per_side"),
               "points_per_side 0 without grids is refused", "%s", err.msg);
    amg_params_default(&p);
    p.pred_iou_thresh = 1.5;
    TEST_CHECK(amg_params_validate(&p, &err) == ERR_INVALID && strstr(err.msg, "pred_iou_thresh"),
               "pred_iou_thresh 1.5 is refused", "%s", err.msg);
    amg_params_default(&p);
    p.points_per_side = 4, p.crop_n_layers = 2, p.crop_n_points_downscale_factor = 4;
    TEST_CHECK(amg_params_validate(&p, &err) == ERR_INVALID,
               "a crop layer without points is refused", "%s", err.msg);
    amg_params_default(&p);
    int rc = amg_params_from_json(&p, "{\"points_per_side\": 8, \"use_m2m\": true, "
                                      "\"box_nms_thresh\": 0.5}", &err);
    TEST_CHECK(rc == 0 && p.points_per_side == 8 && p.use_m2m == 1 && p.box_nms_thresh == 0.5,
               "amg_params_from_json reads numbers and booleans", "rc %d %s", rc, err.msg);
    rc = amg_params_from_json(&p, "{\"points_per_sid\": 8}", &err);
    TEST_CHECK(rc == ERR_INVALID && strstr(err.msg, "points_per_sid"),
               "an unknown key is refused by name", "%s", err.msg);
    rc = amg_params_from_json(&p, "{\"points_per_side\": 8.5}", &err);
    TEST_CHECK(rc == ERR_INVALID, "a fractional integer parameter is refused", "%s", err.msg);
    char *argv[] = {"x", "--points-per-side", "12", "--no-multimask-output", "--bogus"};
    int i = 1;
    amg_params_default(&p);
    int a = amg_params_parse_flag(&p, "test", 5, argv, &i);
    int b = amg_params_parse_flag(&p, "test", 5, argv, &i);
    int c = amg_params_parse_flag(&p, "test", 5, argv, &i);
    TEST_CHECK(a == 1 && b == 1 && c == 0 && i == 4 && p.points_per_side == 12 &&
                   p.multimask_output == 0,
               "amg_params_parse_flag consumes AMG flags only", "%d %d %d i=%d", a, b, c, i);
}

/* --compare EXPECTED ACTUAL [MIN_MATCH MASK_IOU]: two JSON files (used by
 * test_generate.sh). Without the last two, the replay bar (every record at
 * IoU >= 0.999, scores within 1e-4, fields equal); with them, the real-model
 * bar of compare_amg.py: matched >= MIN_MATCH of expected at mask IoU >=
 * MASK_IOU, unmatched actual <= 1 - MIN_MATCH. Exit 0 when it holds. */
static int compare_files(const char *exp, const char *act, double min_match, double mask_iou) {
    char *a = fx_read(exp), *b = fx_read(act);
    fx_rec *e = NULL, *r = NULL;
    int ne = a ? fx_parse_records(a, &e) : -1, na = b ? fx_parse_records(b, &r) : -1;
    if (ne < 0 || na < 0) {
        printf("cannot read %s or %s\n", exp, act);
        return 1;
    }
    fx_match mt;
    fx_compare(e, ne, r, na, min_match < 1 ? mask_iou : 0.999, &mt);
    /* real-model bar: each expected record whose best actual mask is under
     * MASK_IOU, with what tells a soft mask's few pixels from a miss (at
     * most 20 lines; the summary line stays last: scripts read it) */
    for (int i = 0, shown = 0; min_match < 1 && i < ne && shown < 20; i++) {
        double best = -1;
        int bj = -1;
        for (int j = 0; j < na; j++) {
            if (r[j].h != e[i].h || r[j].w != e[i].w) continue;
            double iou = rle_iou(e[i].counts, e[i].n, r[j].counts, r[j].n);
            if (iou > best) best = iou, bj = j;
        }
        if (best >= mask_iou) continue;
        uint64_t ae = rle_area(e[i].counts, e[i].n), ab = 0, in = 0;
        if (bj >= 0) {
            ab = rle_area(r[bj].counts, r[bj].n);
            in = rle_intersection(e[i].counts, e[i].n, r[bj].counts, r[bj].n);
        }
        printf("under IoU %.2f: expected #%d area %llu stability %.4f predicted_iou %.4f "
               "point %.0f,%.0f: best actual #%d IoU %.4f, %llu pixels differ\n",
               mask_iou, i, (unsigned long long)ae, e[i].stab, e[i].iou, e[i].pt[0], e[i].pt[1],
               bj, best, (unsigned long long)(ae + ab - 2 * in));
        shown++;
    }
    char worst[32];
    worst_iou_str(&mt, worst, sizeof worst);
    printf("expected %d actual %d matched %d extra %d worst_iou %s max_dstab %.2e "
           "max_diou %.2e max_dother %.3g in_order %d counts_strings_equal %d "
           "same_pixels_other_string %d\n",
           ne, na, mt.matched, mt.extra, worst, mt.max_dstab, mt.max_diou, mt.max_dother,
           mt.in_order, mt.str_equal, mt.str_differ_same_px);
    /* replay: every counts string as the official; real model: a matched
     * mask with the official's pixels must have the official's string too */
    int ok = ne > 0 && mt.matched == ne && mt.extra == 0 && mt.max_dstab <= 1e-4 &&
             mt.max_diou <= 1e-4 && mt.max_dother <= 1e-3 && mt.str_equal == ne;
    if (min_match < 1)
        ok = ne > 0 && mt.matched >= min_match * ne && mt.extra <= (1 - min_match) * ne + 1e-9 &&
             mt.str_differ_same_px == 0;
    fx_free_records(e, ne), fx_free_records(r, na);
    free(a), free(b);
    return ok ? 0 : 1;
}

/* amg_draw_overlay: a 3x2 image, one record covering its left column;
 * pixels inside are halfway to the record's color, others untouched; a
 * bad RLE or one of the wrong size is ERR_FORMAT. */
static void test_overlay(void) {
    const int w = 3, h = 2;
    uint8_t mask[6] = {1, 0, 0, 1, 0, 0}, rgb[18], orig[18];
    uint32_t counts[8];
    char rle[64];
    size_t n = rle_from_mask(mask, (uint32_t)h, (uint32_t)w, counts);
    rle_encode_string(counts, n, rle);
    for (int i = 0; i < 18; i++) orig[i] = rgb[i] = (uint8_t)(10 * i);
    amg_record rec = {.rle = rle};
    amg_result res = {.width = w, .height = h, .n = 1, .recs = &rec};
    err_t err = {{0}};
    int rc = amg_draw_overlay(rgb, w, h, &res, &err);
    int inside_changed = 1, outside_same = 1, halfway = 1;
    for (int p = 0; p < w * h; p++)
        for (int c = 0; c < 3; c++) {
            int o = orig[3 * p + c], v = rgb[3 * p + c];
            if (mask[p]) {
                inside_changed &= v != o;
                halfway &= 2 * v - o >= 64 && 2 * v - o <= 256; /* col in [64, 255] */
            } else {
                outside_same &= v == o;
            }
        }
    TEST_CHECK(rc == 0 && inside_changed && outside_same && halfway, "overlay blends the mask",
               "rc %d %s", rc, err.msg);
    rc = amg_draw_overlay(rgb, w + 1, h, &res, &err);
    TEST_CHECK(rc == ERR_FORMAT && strstr(err.msg, "mask 0"), "overlay: RLE of another size",
               "rc %d %s", rc, err.msg);
    rec.rle = (char *)"\x01";
    rc = amg_draw_overlay(rgb, w, h, &res, &err);
    TEST_CHECK(rc == ERR_FORMAT && strstr(err.msg, "bad RLE"), "overlay: bad RLE", "rc %d %s", rc,
               err.msg);
}

/* a stand-in model: every logit = fake_logit, every predicted IoU =
 * fake_iou; counts encode calls */
static float fake_logit, fake_iou;
static int fake_encodes;
static int fake_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride, err_t *err) {
    (void)ctx, (void)rgb, (void)w, (void)h, (void)stride, (void)err;
    fake_encodes++;
    return 0;
}
static int fake_decode(void *ctx, int n, const float *points, const float *mask_input,
                       int multimask, float *low_res, float *iou, err_t *err) {
    (void)ctx, (void)points, (void)mask_input, (void)err;
    int k = multimask ? 3 : 1;
    for (size_t i = 0; i < (size_t)n * k * 64 * 64; i++) low_res[i] = fake_logit;
    for (int i = 0; i < n * k; i++) iou[i] = fake_iou;
    return 0;
}

/* data the user controls never aborts, and one image's outcome never
 * changes the next one's */
static void test_edge_images(void) {
    amg_params p;
    amg_params_default(&p);
    p.points_per_side = 4, p.points_per_batch = 8, p.crop_n_layers = 1;
    p.pred_iou_thresh = 0.9, p.stability_score_thresh = 0;
    amg_model m = {NULL, 256, fake_encode, fake_decode, NULL, NULL};
    amg_t *g = NULL;
    err_t err = {{0}};
    int rc = amg_create(&g, &p, 256, &err);
    TEST_CHECK(rc == 0, "edge: amg_create", "%s", err.msg);
    if (rc) return;
    static uint8_t rgb[64 * 64 * 3];
    amg_result res = {0};
    /* over 2^32 pixels: refused before anything is read (rgb is not) */
    fake_encodes = 0;
    rc = amg_generate(g, &m, NULL, 70000, 70000, &res, &err);
    TEST_CHECK(rc == ERR_TOO_BIG && strstr(err.msg, "COCO RLE") && fake_encodes == 0,
               "a 70000x70000 image (over 2^32 pixels) is ERR_TOO_BIG", "rc %d: %s", rc, err.msg);
    rc = amg_generate(g, &m, NULL, 65536, 65536, &res, &err); /* exactly 2^32 */
    TEST_CHECK(rc == ERR_TOO_BIG, "a 65536x65536 image (2^32 pixels) is ERR_TOO_BIG", "rc %d", rc);
    /* empty crop boxes, as the official generate_crop_boxes makes them */
    const int small[][3] = {{1, 1, 1}, {1, 500, 1}, {3000, 1, 1}, {2, 2, 2}};
    for (int i = 0; i < 4; i++) {
        amg_params q = p;
        q.crop_n_layers = small[i][2];
        amg_t *g2 = NULL;
        uint8_t *px = calloc((size_t)small[i][0] * small[i][1] * 3, 1);
        rc = amg_create(&g2, &q, 256, &err);
        fake_encodes = 0;
        if (!rc) rc = amg_generate(g2, &m, px, small[i][0], small[i][1], &res, &err);
        char label[160];
        snprintf(label, sizeof label, "%dx%d with crop_n_layers %d: ERR_INVALID naming the empty "
                 "crop box, nothing encoded", small[i][0], small[i][1], small[i][2]);
        TEST_CHECK(rc == ERR_INVALID && strstr(err.msg, "too small for crop_n_layers") &&
                       fake_encodes == 0, label, "rc %d: %s", rc, err.msg);
        amg_free(g2);
        free(px);
    }
    /* every mask filtered, several images in a row (2 crop layers' NMS
     * with no records), then an image with records */
    fake_logit = 5, fake_iou = 0.5;
    int ok = 1;
    for (int i = 0; i < 4 && ok; i++) {
        rc = amg_generate(g, &m, rgb, 64, 64, &res, &err);
        ok = rc == 0 && res.n == 0;
    }
    TEST_CHECK(ok, "4 images in a row with every mask filtered: 0 records, no error", "rc %d %s",
               rc, err.msg);
    fake_iou = 0.95;
    rc = amg_generate(g, &m, rgb, 64, 64, &res, &err);
    TEST_CHECK(rc == 0 && res.n > 0, "the next image keeps its records", "rc %d n %d %s", rc,
               res.n, err.msg);
    /* all logits above: full masks, pycocotools' [0, h*w] (no closing 0 run) */
    uint32_t c[4];
    int64_t nc = rc == 0 && res.n > 0 ? rle_decode_string(res.recs[0].rle, c, 4) : -1;
    TEST_CHECK(nc == 2 && c[0] == 0 && c[1] == 64 * 64 && res.recs[0].area == 64 * 64,
               "an all-ones mask is the 2 runs [0, h*w]", "%lld runs: %s", (long long)nc,
               res.n ? res.recs[0].rle : "");
    /* all logits at or below -offset: an empty union, stability 0/0 = NaN,
     * kept with stability_score_thresh 0 and written as null */
    fake_logit = -20;
    rc = amg_generate(g, &m, rgb, 64, 64, &res, &err);
    int nan_ok = rc == 0 && res.n > 0;
    for (int i = 0; nan_ok && i < res.n; i++)
        nan_ok = isnan(res.recs[i].stability_score) && res.recs[i].area == 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (res.n) amg_write_json(f, "x.png", &res);
    fclose(f);
    TEST_CHECK(nan_ok && strstr(buf, "\"stability_score\": null") && !strstr(buf, "NaN"),
               "an empty union gives stability NaN, written as null", "rc %d n %d", rc, res.n);
    free(buf);
    amg_result_free(&res);
    amg_free(g);
}

int main(int argc, char **argv) {
    if ((argc == 4 || argc == 6) && !strcmp(argv[1], "--compare"))
        return compare_files(argv[2], argv[3], argc == 6 ? atof(argv[4]) : 1.0,
                             argc == 6 ? atof(argv[5]) : 0.999);
    test_params();
    test_upsample();
    test_overlay();
    test_edge_images();
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) replay_fixture(fixtures[i]);
    return TEST_REPORT();
}
