/* amg_params.c: the generator's parameters: official defaults, validation,
 * the "amg" object of a config file, and the --dashed flags of the CLI.
 * The JSON reader here is a small scanner for one flat object of numbers
 * and booleans: that is all an "amg" object holds. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "amg.h"
#include "cli.h"

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

/* ---- JSON: one flat object ---- */
static const char *skip_ws(const char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    return s;
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

int amg_params_from_json(amg_params *p, const char *json, err_t *err) {
    const char *s = skip_ws(json);
    if (*s != '{') return err_set(err, ERR_INVALID, "amg: expected a JSON object");
    s = skip_ws(s + 1);
    if (*s == '}') return 0;
    for (;;) {
        char key[64];
        size_t n = 0;
        if (*s != '"') return err_set(err, ERR_INVALID, "amg: expected a key");
        for (s++; *s && *s != '"'; s++)
            if (n + 1 < sizeof key) key[n++] = *s;
        key[n] = 0;
        if (*s != '"') return err_set(err, ERR_INVALID, "amg: unterminated key");
        s = skip_ws(s + 1);
        if (*s != ':') return err_set(err, ERR_INVALID, "amg.%s: expected ':'", key);
        s = skip_ws(s + 1);
        double v = 0;
        int is_bool = 0, is_null = 0, rc;
        if (!strncmp(s, "true", 4)) {
            v = 1, is_bool = 1, s += 4;
        } else if (!strncmp(s, "false", 5)) {
            v = 0, is_bool = 1, s += 5;
        } else if (!strncmp(s, "null", 4)) {
            is_null = 1, s += 4;
        } else {
            char *end;
            errno = 0;
            v = strtod(s, &end);
            if (end == s || errno || !isfinite(v))
                return err_set(err, ERR_INVALID, "amg.%s: expected a number or boolean", key);
            s = end;
        }
        if ((rc = set_key(p, key, v, is_bool, is_null, err))) return rc;
        s = skip_ws(s);
        if (*s == ',') {
            s = skip_ws(s + 1);
            continue;
        }
        if (*s == '}') return 0;
        return err_set(err, ERR_INVALID, "amg: expected ',' or '}' after %s", key);
    }
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
    {"--points-per-batch", "points_per_batch", 0, 1, 4096, "N  prompts per decoder call (64)"},
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
