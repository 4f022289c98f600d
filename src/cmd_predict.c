/* cmd_predict.c: `sam2amg predict`: masks from point and box prompts on one
 * image, as the official SAM2ImagePredictor.predict computes them.
 *
 * Pixel coordinates become model coordinates x / w * S, y / h * S; a box is
 * given to the decoder as its two corners with labels 2 and 3, before the
 * points. The low-res logits of the chosen mask (the best by predicted IoU
 * with --multimask, else the single-mask output with its stability
 * fallback) are resized bilinearly (align_corners=False) straight to the
 * image size and thresholded at > 0. Outputs: the mask as a 0/255 PNG, an
 * optional RGBA cutout (image pixels, alpha = mask), an optional JSON with
 * the score of every returned mask.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli.h"
#include "decoder.h"
#include "image.h"
#include "model.h"
#include "outfile.h"

#define PREDICT_MAX_POINTS (DECODER_MAX_POINTS - 2)

static const char *predict_usage_head =
    "usage: sam2amg predict --model WEIGHTS [--config NAME|FILE] IMAGE\n"
    "                       [--point X,Y[,LABEL]]... [--box X0,Y0,X1,Y1] [--multimask]\n"
    "                       -o MASK.png [--cutout CUT.png] [--json SCORES.json]\n"
    "                       [--threads N] [--device cpu|cuda:N] [--precision fp32|bf16]\n"
    "\n"
    "Predicts a mask for IMAGE from point and/or box prompts (image pixel\n"
    "coordinates), as SAM2ImagePredictor.predict does.\n"
    "\n";
/* then cli_model_flags_help, then: */
static const char *predict_usage_tail =
    "  --point X,Y[,LABEL]     a point; LABEL 1 foreground (default) or 0 background;\n"
    "                          repeat for more points\n"
    "  --box X0,Y0,X1,Y1       a box (corners)\n"
    "  --multimask             predict three masks and write the best by score;\n"
    "                          default: one mask\n"
    "  -o, --output MASK.png   the mask, 8-bit grey, 255 inside, 0 outside\n"
    "  --cutout CUT.png        RGBA image: the image's pixels, alpha = mask\n"
    "  --json SCORES.json      predicted IoU of every returned mask, the best one,\n"
    "                          and the mask's pixel count\n"
    "  --threads N             CPU threads (default: all cores)\n"
    "  --device NAME           cpu (default) or cuda:N\n"
    "  --precision P           fp32 or bf16 GEMM inputs (default: bf16 on cuda,\n"
    "                          fp32 on the cpu, which has no bf16)\n";

/* parse_floats: flag value s as n_min..n_max comma-separated finite
 * numbers into out; returns how many, or -1 after one usage line saying
 * exactly what is wrong: the count ("--point '1,2,3,4': expected X,Y or
 * X,Y,LABEL (2 or 3 numbers), got 4"), an empty field, or which field is not
 * a finite number. form names the expected shape for the messages. */
static int parse_floats(const char *cmd, const char *flag, const char *s, const char *form,
                        double *out, int n_min, int n_max) {
    char count[32];
    if (n_min == n_max) snprintf(count, sizeof count, "%d numbers", n_min);
    else snprintf(count, sizeof count, "%d or %d numbers", n_min, n_max);
    if (!s || !*s) return cli_usage_error(cmd, "%s needs a value: %s (%s)", flag, form, count), -1;
    int k = 1;
    for (const char *c = s; *c; c++) k += *c == ',';
    if (k < n_min || k > n_max) {
        cli_usage_error(cmd, "%s '%s': expected %s (%s), got %d value%s", flag, s, form, count, k,
                        k == 1 ? "" : "s");
        return -1;
    }
    const char *p = s;
    for (int n = 0; n < k; n++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char field[64];
        if (len == 0) {
            cli_usage_error(cmd, "%s '%s': number %d is empty (expected %s)", flag, s, n + 1, form);
            return -1;
        }
        snprintf(field, sizeof field, "%.*s", (int)(len < sizeof field ? len : sizeof field - 1), p);
        char *end = NULL;
        errno = 0;
        double v = len < sizeof field ? strtod(field, &end) : NAN;
        if (!end || end == field || *end || errno == ERANGE || !isfinite(v)) {
            cli_usage_error(cmd, "%s '%s': '%s%s' is not a finite number (expected %s)", flag, s, field,
                            len < sizeof field ? "" : "...", form);
            return -1;
        }
        out[n] = v;
        p = comma ? comma + 1 : p + len;
    }
    return k;
}

/* write_json: the scores of the k returned masks, the chosen one, its area. */
static int write_json(const char *path, const char *image, int w, int h, int multimask,
                      const float *iou, int k, int best, int64_t area, err_t *err) {
    char tmp[OUTFILE_TMP_MAX];   /* renamed onto path when complete (outfile.h) */
    FILE *f = outfile_open(path, tmp, err);
    if (!f) return ERR_IO;
    fprintf(f, "{\"image\": \"");
    for (const char *c = image; *c; c++) {
        if (*c == '"' || *c == '\\') fputc('\\', f);
        if ((unsigned char)*c < 0x20) fprintf(f, "\\u%04x", *c);
        else fputc(*c, f);
    }
    fprintf(f, "\", \"width\": %d, \"height\": %d, \"multimask\": %s, \"scores\": [", w, h,
            multimask ? "true" : "false");
    for (int i = 0; i < k; i++) { /* JSON has no NaN: a non-finite score is null */
        if (isfinite(iou[i])) fprintf(f, "%s%.9g", i ? ", " : "", iou[i]);
        else fprintf(f, "%snull", i ? ", " : "");
    }
    fprintf(f, "], \"best\": %d, \"area\": %lld}\n", best, (long long)area);
    return outfile_close(f, tmp, path, 0, err);
}

int cmd_predict(int argc, char **argv) {
    const char *cmd = "predict", *image_path = NULL, *out_path = NULL, *cut_path = NULL,
               *json_path = NULL;
    cli_model_flags mf;
    cli_model_flags_default(&mf);
    int multimask = 0, n_user = 0, have_box = 0;
    double pts[PREDICT_MAX_POINTS][3], box[4];
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_parse_model_flag(&mf, cmd, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(predict_usage_head, stdout);
            cli_model_flags_help(stdout, 23);
            fputs(predict_usage_tail, stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--cutout") ||
                   !strcmp(a, "--json")) {
            if (!v || cli_looks_like_flag(v))
                return cli_usage_error(cmd, "%s needs a value: a file name%s%s%s", a, v ? " (got option '" : "",
                                       v ? v : "", v ? "')" : "");
            const char **dst = !strcmp(a, "--cutout") ? &cut_path
                               : !strcmp(a, "--json") ? &json_path
                                                      : &out_path;
            *dst = v, i++;
        } else if (!strcmp(a, "--point")) {
            if (n_user == PREDICT_MAX_POINTS)
                return cli_usage_error(cmd, "--point given more than %d times (at most %d points)",
                                       PREDICT_MAX_POINTS, PREDICT_MAX_POINTS);
            double *q = pts[n_user];
            int n = parse_floats(cmd, a, v, "X,Y or X,Y,LABEL", q, 2, 3);
            if (n < 0) return EXIT_USAGE;
            if (n == 2) q[2] = 1;
            if (q[2] != 0 && q[2] != 1)
                return cli_usage_error(cmd, "--point '%s': LABEL must be 1 (foreground) or 0 (background), got %g",
                                       v, q[2]);
            n_user++, i++;
        } else if (!strcmp(a, "--box")) {
            if (have_box) return cli_usage_error(cmd, "--box given twice (one box per prediction)");
            if (parse_floats(cmd, a, v, "X0,Y0,X1,Y1", box, 4, 4) < 0) return EXIT_USAGE;
            have_box = 1, i++;
        } else if (!strcmp(a, "--multimask")) {
            multimask = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!image_path) {
            image_path = a;
        } else {
            return cli_usage_error(cmd, "more than one image ('%s', '%s')", image_path, a);
        }
        i++;
    }
    if (!mf.model) return cli_usage_error(cmd, "--model is required");
    if (!image_path) return cli_usage_error(cmd, "no IMAGE given");
    if (!out_path) return cli_usage_error(cmd, "-o MASK.png is required");
    if (!n_user && !have_box) return cli_usage_error(cmd, "give at least one --point or --box");

    err_t err = {{0}};
    sam2_config cfg;
    int rc = cli_load_config(cmd, &mf, &cfg, NULL);
    if (rc) return rc;
    image_t img = {0};
    if ((rc = image_init(&err)) || (rc = image_load(&img, image_path, 0, &err))) {
        fprintf(stderr, "sam2amg predict: %s\n", err.msg);
        return EXIT_DATA;
    }
    backend_t *be = NULL;
    sam2_model *m = NULL;
    if ((rc = cli_open_model(cmd, &mf, &cfg, 1, &be, &m))) {
        image_free(&img);
        return rc;
    }

    const int S = cfg.image_size, low = S / 4, w = img.w, h = img.h;
    const size_t L4 = (size_t)low * low, HWi = (size_t)w * h;
    int n_pts = n_user + 2 * have_box, k = multimask ? 3 : 1;
    float coords[DECODER_MAX_POINTS * 2];
    int32_t labels[DECODER_MAX_POINTS];
    float iou[3];
    int j = 0;
    /* pixels -> model input coordinates (transform_coords: / w, then * S) */
    if (have_box)
        for (int c = 0; c < 2; c++, j++) {
            coords[2 * j] = (float)box[2 * c] / (float)w * (float)S;
            coords[2 * j + 1] = (float)box[2 * c + 1] / (float)h * (float)S;
            labels[j] = 2 + c;
        }
    for (int i = 0; i < n_user; i++, j++) {
        coords[2 * j] = (float)pts[i][0] / (float)w * (float)S;
        coords[2 * j + 1] = (float)pts[i][1] / (float)h * (float)S;
        labels[j] = (int32_t)pts[i][2];
    }

    float *input = malloc((size_t)3 * S * S * sizeof(float));   // (3,S,S)
    float *lowres = malloc((size_t)k * L4 * sizeof(float));     // (k,low,low)
    float *full = malloc(HWi * sizeof(float));                  // (h,w) logits
    uint8_t *mask = malloc(HWi);                                // (h,w) 0/255
    uint8_t *cut = cut_path ? malloc(HWi * 4) : NULL;           // (h,w,4)
    float *dlow = be->alloc(be, L4 * sizeof(float));
    float *dfull = be->alloc(be, HWi * sizeof(float));
    CHECK(input && lowres && full && mask && (!cut_path || cut));
    int exit_code = EXIT_DATA;
    if (!dlow || !dfull) {
        fprintf(stderr, "sam2amg predict: out of %s memory for a %dx%d mask\n", be->name, w, h);
        goto done;
    }

    sam2_prompts p = {.n = 1, .n_pts = n_pts, .coords = coords, .labels = labels,
                      .mask_input = NULL, .multimask = multimask};
    if ((rc = image_preprocess(img.rgb, w, h, (size_t)w * 3, S, input, &err)) ||
        (rc = sam2_model_encode(m, input, &err)) || (rc = sam2_model_decode(m, &p, lowres, iou, &err))) {
        fprintf(stderr, "sam2amg predict: %s: %s\n", image_path, err.msg);
        goto done;
    }
    int best = 0;
    for (int i = 1; i < k; i++)
        if (iou[i] > iou[best]) best = i;
    be->upload(be, dlow, lowres + (size_t)best * L4, L4 * sizeof(float));
    be->resize_bilinear(be, dfull, dlow, 1, low, low, h, w);
    be->download(be, full, dfull, HWi * sizeof(float));
    be->sync(be);
    int64_t area = 0;
    for (size_t q = 0; q < HWi; q++) {
        mask[q] = full[q] > 0.0f ? 255 : 0;
        area += mask[q] != 0;
    }
    if ((rc = image_write_png(out_path, mask, w, h, 1, &err))) goto fail_msg;
    if (cut_path) {
        for (size_t q = 0; q < HWi; q++) {
            memcpy(cut + 4 * q, img.rgb + 3 * q, 3);
            cut[4 * q + 3] = mask[q];
        }
        if ((rc = image_write_png(cut_path, cut, w, h, 4, &err))) goto fail_msg;
    }
    if (json_path &&
        (rc = write_json(json_path, image_path, w, h, multimask, iou, k, best, area, &err)))
        goto fail_msg;
    exit_code = EXIT_OK;
    goto done;
fail_msg:
    fprintf(stderr, "sam2amg predict: %s\n", err.msg);
done:
    if (dlow) be->free(be, dlow);
    if (dfull) be->free(be, dfull);
    free(input), free(lowres), free(full), free(mask), free(cut);
    sam2_model_free(m);
    be->destroy(be);
    image_free(&img);
    return exit_code;
}
