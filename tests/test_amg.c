/* test_amg.c: the automatic mask generator against the official one.
 *
 * Replay parity: for every synthetic fixture (recorded decoder outputs of
 * an official run), the generator with the replay decoder must reproduce
 * amg.json record for record: all records matched at mask IoU >= 0.999,
 * |d stability|, |d predicted_iou| <= 1e-4, no extra records, identical
 * area / bbox / point / crop_box. Plus parameter checks. */
#include <string.h>

#include "amg.h"
#include "test.h"
#include "amg_fixture.h"

static const char *fixtures[] = {
    "amg-synthetic", "amg-synthetic-crops", "amg-synthetic-minarea",
    "amg-synthetic-tall", "amg-synthetic-layers2", "amg-synthetic-thresh",
    "amg-synthetic-m2m",  "amg-synthetic-single",
};

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
        printf("# %s: expected %d actual %d matched %d extra %d worst_iou %.6f max_dstab %.2e "
               "max_diou %.2e max_dother %.3g\n",
               name, ne, na, mt.matched, mt.extra, mt.worst_iou, mt.max_dstab, mt.max_diou,
               mt.max_dother);
        snprintf(label, sizeof label, "%s: all %d records matched at mask IoU >= 0.999", name, ne);
        TEST_CHECK(ne > 0 && mt.matched == ne && mt.extra == 0, label,
                   "matched %d of %d, %d extra", mt.matched, ne, mt.extra);
        snprintf(label, sizeof label, "%s: stability and predicted_iou within 1e-4", name);
        TEST_CHECK(mt.max_dstab <= 1e-4 && mt.max_diou <= 1e-4, label, "dstab %g diou %g",
                   mt.max_dstab, mt.max_diou);
        snprintf(label, sizeof label, "%s: records in the official order", name);
        TEST_CHECK(mt.in_order, label, "order differs");
        snprintf(label, sizeof label, "%s: area, bbox, point, crop_box equal", name);
        TEST_CHECK(mt.max_dother <= 1e-3, label, "max difference %g", mt.max_dother);
        fx_free_records(e, ne > 0 ? ne : 0);
        fx_free_records(a, na > 0 ? na : 0);
        free(buf);
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
    printf("expected %d actual %d matched %d extra %d worst_iou %.6f max_dstab %.2e "
           "max_diou %.2e max_dother %.3g in_order %d\n",
           ne, na, mt.matched, mt.extra, mt.worst_iou, mt.max_dstab, mt.max_diou, mt.max_dother,
           mt.in_order);
    int ok = ne > 0 && mt.matched == ne && mt.extra == 0 && mt.max_dstab <= 1e-4 &&
             mt.max_diou <= 1e-4 && mt.max_dother <= 1e-3;
    if (min_match < 1)
        ok = ne > 0 && mt.matched >= min_match * ne && mt.extra <= (1 - min_match) * ne + 1e-9;
    fx_free_records(e, ne), fx_free_records(r, na);
    free(a), free(b);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if ((argc == 4 || argc == 6) && !strcmp(argv[1], "--compare"))
        return compare_files(argv[2], argv[3], argc == 6 ? atof(argv[4]) : 1.0,
                             argc == 6 ? atof(argv[5]) : 0.999);
    test_params();
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) replay_fixture(fixtures[i]);
    return TEST_REPORT();
}
