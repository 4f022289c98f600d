/* amg_params.c: the generator's parameters: official defaults, validation,
 * the "amg" object of a config file, user point grids, and the --dashed
 * flags of the CLI. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "amg.h"
#include "cli.h"
#include "json.h"

void amg_params_default(amg_params *p) {
    memset(p, 0, sizeof *p);
    p->points_per_side = 32;
    p->points_per_batch = 64;
    p->pred_iou_thresh = 0.8;
    p->stability_score_thresh = 0.95;
    p->stability_score_offset = 1.0;
    p->mask_threshold = 0.0;
    p->box_nms_thresh = 0.7;
    p->crop_n_layers = 0;
    p->crop_nms_thresh = 0.7;
    p->crop_overlap_ratio = 512.0 / 1500.0;
    p->crop_n_points_downscale_factor = 1;
    p->min_mask_region_area = 0;
    p->use_m2m = 0;
    p->multimask_output = 1;
}

int amg_params_validate(const amg_params *p, err_t *err) {
    if (p->n_point_grids > 0) {
        if (!p->point_grid_sizes || !p->point_grids)
            return err_set(err, ERR_INVALID, "point_grids: sizes or points missing");
        if (p->n_point_grids < p->crop_n_layers + 1)
            return err_set(err, ERR_INVALID,
                           "point_grids: %d grids for %d crop layers (need one per layer)",
                           p->n_point_grids, p->crop_n_layers + 1);
        int64_t tot = 0;
        for (int i = 0; i < p->n_point_grids; i++) {
            if (p->point_grid_sizes[i] < 1)
                return err_set(err, ERR_INVALID, "point_grids: grid %d is empty", i);
            tot += p->point_grid_sizes[i];
        }
        for (int64_t i = 0; i < 2 * tot; i++)
            if (!(p->point_grids[i] >= 0.0f && p->point_grids[i] <= 1.0f))
                return err_set(err, ERR_INVALID, "point_grids: point %lld is outside [0,1]",
                               (long long)(i / 2));
        if (p->points_per_side != 0)
            return err_set(err, ERR_INVALID,
                           "points_per_side and point_grids are exclusive (set one)");
    } else if (p->points_per_side < 1 || p->points_per_side > 1024) {
        return err_set(err, ERR_INVALID, "points_per_side %d: must be in [1, 1024] (or give "
                       "point_grids)", p->points_per_side);
    }
    if (p->points_per_batch < 1 || p->points_per_batch > 4096)
        return err_set(err, ERR_INVALID, "points_per_batch %d: must be in [1, 4096]",
                       p->points_per_batch);
#define RANGE(f, lo, hi)                                                              \
    if (!(p->f >= (lo) && p->f <= (hi)))                                              \
        return err_set(err, ERR_INVALID, #f " %g: must be in [%g, %g]", p->f, (double)(lo), \
                       (double)(hi));
    RANGE(pred_iou_thresh, 0.0, 1.0)
    RANGE(stability_score_thresh, 0.0, 1.0)
    RANGE(stability_score_offset, 0.0, 1e6)
    RANGE(mask_threshold, -1e6, 1e6)
    RANGE(box_nms_thresh, 0.0, 1.0)
    RANGE(crop_nms_thresh, 0.0, 1.0)
    RANGE(crop_overlap_ratio, 0.0, 0.999)
#undef RANGE
    if (p->crop_n_layers < 0 || p->crop_n_layers > 6)
        return err_set(err, ERR_INVALID, "crop_n_layers %d: must be in [0, 6]", p->crop_n_layers);
    if (p->crop_n_points_downscale_factor < 1)
        return err_set(err, ERR_INVALID, "crop_n_points_downscale_factor %d: must be >= 1",
                       p->crop_n_points_downscale_factor);
    if (p->n_point_grids == 0) {
        int64_t s = 1;
        for (int i = 0; i <= p->crop_n_layers; i++, s *= p->crop_n_points_downscale_factor)
            if ((int)(p->points_per_side / (double)s) < 1)
                return err_set(err, ERR_INVALID,
                               "crop layer %d gets no points (points_per_side %d, "
                               "crop_n_points_downscale_factor %d)",
                               i, p->points_per_side, p->crop_n_points_downscale_factor);
    }
    if (p->min_mask_region_area < 0)
        return err_set(err, ERR_INVALID, "min_mask_region_area %d: must be >= 0",
                       p->min_mask_region_area);
    return 0;
}

int amg_params_layer_points(const amg_params *p, int layer, int *side) {
    if (p->n_point_grids > 0) {
        *side = 0;
        return p->point_grid_sizes[layer];
    }
    double s = 1;
    for (int i = 0; i < layer; i++) s *= p->crop_n_points_downscale_factor;
    *side = (int)(p->points_per_side / s);
    return *side * *side;
}

static int set_key(amg_params *p, const char *key, double v, int is_bool, int is_null,
                   err_t *err) {
    static const struct {
        const char *name;
        int is_int;
        size_t off;
    } keys[] = {
#define K(f, i) {#f, i, offsetof(amg_params, f)}
        K(points_per_side, 1), K(points_per_batch, 1), K(pred_iou_thresh, 0),
        K(stability_score_thresh, 0), K(stability_score_offset, 0), K(mask_threshold, 0),
        K(box_nms_thresh, 0), K(crop_n_layers, 1), K(crop_nms_thresh, 0),
        K(crop_overlap_ratio, 0), K(crop_n_points_downscale_factor, 1),
        K(min_mask_region_area, 1), K(use_m2m, 1), K(multimask_output, 1),
#undef K
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(key, keys[i].name)) continue;
        char *at = (char *)p + keys[i].off;
        if (is_null) {
            if (!strcmp(key, "points_per_side")) { /* official None: grids given */
                *(int *)at = 0;
                return 0;
            }
            return err_set(err, ERR_INVALID, "amg.%s: null is not allowed", key);
        }
        if (keys[i].is_int) {
            if (v != floor(v) || fabs(v) > 1e9)
                return err_set(err, ERR_INVALID, "amg.%s: %g is not an integer", key, v);
            /* 0 is AMG_POINTS_PER_BATCH_AUTO inside: a config says "auto" */
            if (!strcmp(key, "points_per_batch") && v < 1)
                return err_set(err, ERR_INVALID, "amg.points_per_batch: %g is below 1 "
                               "(a number of prompts, or \"auto\")", v);
            *(int *)at = (int)v;
        } else {
            if (is_bool) return err_set(err, ERR_INVALID, "amg.%s: expected a number", key);
            *(double *)at = v;
        }
        return 0;
    }
    if (!strcmp(key, "output_mode") || !strcmp(key, "point_grids"))
        return err_set(err, ERR_INVALID, "amg.%s: not supported in a config (use the flags)",
                       key);
    return err_set(err, ERR_INVALID, "amg: unknown parameter '%s'", key);
}

/* every key of object o onto p */
static int params_from_obj(amg_params *p, const json_t *o, err_t *err) {
    if (json_type(o) != JSON_OBJ) return err_set(err, ERR_INVALID, "amg: expected a JSON object");
    for (size_t i = 0; i < json_len(o); i++) {
        const char *key = json_key_at(o, i);
        const json_t *v = json_at(o, i);
        int rc;
        switch (json_type(v)) {
        case JSON_NUM: rc = set_key(p, key, json_num(v), 0, 0, err); break;
        case JSON_BOOL: rc = set_key(p, key, json_bool(v), 1, 0, err); break;
        case JSON_NULL: rc = set_key(p, key, 0, 0, 1, err); break;
        case JSON_STR:   /* "points_per_batch": "auto" (sized to the device) */
            if (!strcmp(key, "points_per_batch") && !strcmp(json_str(v), "auto")) {
                p->points_per_batch = AMG_POINTS_PER_BATCH_AUTO;
                rc = 0;
                break;
            }
            /* fall through */
        default: rc = err_set(err, ERR_INVALID, "amg.%s: expected a number or boolean", key);
        }
        if (rc) return rc;
    }
    return 0;
}

int amg_params_from_json(amg_params *p, const char *json, err_t *err) {
    json_t *o = NULL;
    err_t e;
    if (json_parse(&o, json, strlen(json), "amg parameters", &e))
        return err_set(err, ERR_INVALID, "%s", e.msg);
    int rc = params_from_obj(p, o, err);
    json_free(o);
    return rc;
}

int amg_params_from_config(amg_params *p, const char *path, err_t *err) {
    json_t *o = NULL;
    int rc = json_parse_file(&o, path, err);
    if (rc) return rc == ERR_IO ? rc : ERR_INVALID;
    const json_t *a = json_get(o, "amg");
    if (json_type(o) != JSON_OBJ) {
        rc = err_set(err, ERR_INVALID, "%s: expected a JSON object", path);
    } else if (a) {
        err_t e;
        rc = params_from_obj(p, a, &e);
        if (rc) err_set(err, rc, "%s: %s", path, e.msg);
    }
    json_free(o);
    return rc;
}

int amg_params_grids_from_file(amg_params *p, const char *path, float **pts, int **sizes,
                               err_t *err) {
    json_t *o = NULL;
    *pts = NULL, *sizes = NULL;
    int rc = json_parse_file(&o, path, err);
    if (rc) return rc == ERR_IO ? rc : ERR_INVALID;
    size_t ng = json_len(o), tot = 0;
    if (json_type(o) != JSON_ARR || ng == 0) rc = ERR_INVALID;
    for (size_t g = 0; !rc && g < ng; g++) {
        const json_t *grid = json_at(o, g);
        if (json_type(grid) != JSON_ARR || json_len(grid) == 0) rc = ERR_INVALID;
        tot += json_len(grid);
    }
    if (!rc) {
        *pts = malloc(tot * 2 * sizeof(float));
        *sizes = malloc(ng * sizeof(int));
        if (!*pts || !*sizes) rc = ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t g = 0; !rc && g < ng; g++) {
        const json_t *grid = json_at(o, g);
        (*sizes)[g] = (int)json_len(grid);
        for (size_t i = 0; !rc && i < json_len(grid); i++) {
            const json_t *pt = json_at(grid, i);
            double x = json_num(json_at(pt, 0)), y = json_num(json_at(pt, 1));
            if (json_len(pt) != 2 || !(x >= 0 && x <= 1) || !(y >= 0 && y <= 1)) rc = ERR_INVALID;
            (*pts)[k++] = (float)x;
            (*pts)[k++] = (float)y;
        }
    }
    json_free(o);
    if (rc) {
        free(*pts), free(*sizes);
        *pts = NULL, *sizes = NULL;
        return err_set(err, rc, "%s: expected [[[x, y], ...], ...]: one list of points in "
                       "[0,1]^2 per crop layer", path);
    }
    p->n_point_grids = (int)ng;
    p->point_grids = *pts;
    p->point_grid_sizes = *sizes;
    p->points_per_side = 0;
    return 0;
}

/* ---- flags ---- */
static const struct {
    const char *flag;
    const char *field;
    int kind; /* 0 int, 1 double, 2 on-switch, 3 off-switch */
    double lo, hi;
    const char *help;
} flags[] = {
    {"--points-per-side", "points_per_side", 0, 1, 1024, "N  grid points per side (32)"},
    {"--points-per-batch", "points_per_batch", 0, 1, 4096, "N|auto  prompts per decoder call (64; auto:\n"
     "                                     sized to GPU memory, the default on CUDA)"},
    {"--pred-iou-thresh", "pred_iou_thresh", 1, 0, 1, "X  keep predicted IoU > X (0.8)"},
    {"--stability-score-thresh", "stability_score_thresh", 1, 0, 1,
     "X  keep stability >= X (0.95)"},
    {"--stability-score-offset", "stability_score_offset", 1, 0, 1e6,
     "X  logit offset of the stability score (1.0)"},
    {"--mask-threshold", "mask_threshold", 1, -1e6, 1e6, "X  logit cut-off of a mask (0.0)"},
    {"--box-nms-thresh", "box_nms_thresh", 1, 0, 1, "X  box IoU of NMS within a crop (0.7)"},
    {"--crop-n-layers", "crop_n_layers", 0, 0, 6, "N  crop layers (0)"},
    {"--crop-nms-thresh", "crop_nms_thresh", 1, 0, 1, "X  box IoU of NMS across crops (0.7)"},
    {"--crop-overlap-ratio", "crop_overlap_ratio", 1, 0, 0.999,
     "X  crop overlap, fraction of the short side (512/1500)"},
    {"--crop-n-points-downscale-factor", "crop_n_points_downscale_factor", 0, 1, 1024,
     "N  points per side divided by N per layer (1)"},
    {"--min-mask-region-area", "min_mask_region_area", 0, 0, 1 << 30,
     "N  fill holes / drop islands of <= N low-res pixels (0)"},
    {"--use-m2m", "use_m2m", 2, 0, 0, "   one mask-to-mask refinement step"},
    {"--multimask-output", "multimask_output", 2, 0, 0, "   three masks per point (default)"},
    {"--no-multimask-output", "multimask_output", 3, 0, 0, "   one mask per point"},
};

int amg_params_parse_flag(amg_params *p, const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--points-per-batch")) {   /* a number or auto: the message names both */
        const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
        if (v && !strcmp(v, "auto")) {
            p->points_per_batch = AMG_POINTS_PER_BATCH_AUTO;
        } else {
            char *end = NULL;
            errno = 0;
            long long x = v ? strtoll(v, &end, 10) : 0;
            if (!v || errno || end == v || *end || x < 1 || x > 4096) {
                if (!v) cli_usage_error(cmd, "--points-per-batch needs a value: a number from "
                                        "1 to 4096 or auto");
                else cli_usage_error(cmd, "--points-per-batch: '%s' is not a number from 1 to "
                                     "4096 or auto", v);
                return -1;
            }
            p->points_per_batch = (int)x;
        }
        *i += 2;
        return 1;
    }
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
        if (strcmp(a, flags[k].flag)) continue;
        err_t e;
        if (flags[k].kind >= 2) {
            set_key(p, flags[k].field, flags[k].kind == 2 ? 1 : 0, 0, 0, &e);
            (*i)++;
            return 1;
        }
        const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
        if (flags[k].kind == 0) {
            int64_t x;
            if (cli_parse_int(cmd, a, v, (int64_t)flags[k].lo, (int64_t)flags[k].hi, &x)) return -1;
            set_key(p, flags[k].field, (double)x, 0, 0, &e);
        } else {
            double x;
            if (cli_parse_double(cmd, a, v, flags[k].lo, flags[k].hi, &x)) return -1;
            set_key(p, flags[k].field, x, 0, 0, &e);
        }
        *i += 2;
        return 1;
    }
    return 0;
}

void amg_params_help(FILE *f) {
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
        fprintf(f, "  %-34s %s\n", flags[k].flag, flags[k].help);
}
