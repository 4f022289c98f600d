/* cmd_dump.c: `sam2amg dump`: run the model on one image and write its
 * intermediate tensors to a safetensors file laid out exactly like the
 * fixtures' expected.safetensors (tests/fixtures/README.md), so that any
 * checkpoint and image can be compared with the official code tensor by
 * tensor: input, image_embed, feat_s0, feat_s1, grid_points, low_res_masks,
 * iou_preds, m2m_low_res_masks, m2m_iou_preds.
 *
 * The grid points are the first points_per_batch points of the AMG grid of
 * the whole image, ((i + 0.5) / n) * w, in image pixels; the decoder gets
 * them in model coordinates (x * S / w, y * S / h), one positive point per
 * prompt, multimask output; the m2m pass adds the first multimask logits as
 * mask input and asks for a single mask.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amg.h"
#include "backend.h"
#include "cli.h"
#include "image.h"
#include "model.h"
#include "weights.h"

static const char *dump_usage_head =
    "usage: sam2amg dump --model WEIGHTS [--config NAME|FILE] IMAGE -o OUT.safetensors\n"
    "                    [--points-per-side N] [--points-per-batch N] [--threads N]\n"
    "                    [--device cpu|cuda:N] [--precision fp32|bf16]\n"
    "\n"
    "Runs the SAM 2.1 image model on IMAGE and writes its intermediate tensors\n"
    "(input, image_embed, feat_s0, feat_s1, grid_points, low_res_masks, iou_preds,\n"
    "m2m_low_res_masks, m2m_iou_preds) to OUT.safetensors, laid out like the\n"
    "official oracle's expected.safetensors.\n"
    "\n";
/* then cli_model_flags_help, then: */
static const char *dump_usage_tail =
    "  -o, --output FILE       where to write the tensors\n"
    "  --points-per-side N     AMG grid side (default 32, or the --config FILE's amg)\n"
    "  --points-per-batch N    how many grid points to decode (default 64, or amg's)\n"
    "  --threads N             CPU threads (default: all cores)\n"
    "  --device NAME           cpu (default) or cuda:N\n"
    "  --precision P           fp32 or bf16 GEMM inputs (default: bf16 on cuda,\n"
    "                          fp32 on the cpu, which has no bf16)\n";

int cmd_dump(int argc, char **argv) {
    const char *cmd = "dump", *image_path = NULL, *out_path = NULL;
    cli_model_flags mf;
    cli_model_flags_default(&mf);
    int64_t pps = 32, ppb = 64;
    int pps_flag = 0, ppb_flag = 0;   /* given on the command line: wins over --config */
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_parse_model_flag(&mf, cmd, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(dump_usage_head, stdout);
            cli_model_flags_help(stdout, 23);
            fputs(dump_usage_tail, stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!v) return cli_usage_error(cmd, "%s needs a value", a);
            out_path = v, i++;
        } else if (!strcmp(a, "--points-per-side")) {
            if (cli_parse_int(cmd, a, v, 1, 1024, &pps)) return EXIT_USAGE;
            pps_flag = 1;
            i++;
        } else if (!strcmp(a, "--points-per-batch")) {
            if (cli_parse_int(cmd, a, v, 1, 4096, &ppb)) return EXIT_USAGE;
            ppb_flag = 1;
            i++;
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
    if (!out_path) return cli_usage_error(cmd, "-o OUT.safetensors is required");

    /* defaults < a config file's "amg" object < flags, as generate and run */
    err_t err = {{0}};
    sam2_config cfg;
    char *amg_json = NULL;
    int rc = cli_load_config(cmd, &mf, &cfg, &amg_json);
    if (rc) return rc;
    if (amg_json) {
        amg_params p;
        amg_params_default(&p);
        rc = amg_params_from_json(&p, amg_json, &err);
        free(amg_json);
        if (rc) {
            fprintf(stderr, "sam2amg dump: %s: %s\n", mf.config, err.msg);
            return rc == ERR_INVALID ? EXIT_USAGE : EXIT_DATA;
        }
        /* every amg value is checked as generate checks it (flags win),
         * though dump itself reads only the grid and the batch */
        amg_params v = p;
        if (pps_flag) v.points_per_side = (int)pps, v.n_point_grids = 0;
        if (ppb_flag) v.points_per_batch = (int)ppb;
        if (v.points_per_batch == AMG_POINTS_PER_BATCH_AUTO) v.points_per_batch = 1;
        if (v.points_per_side >= 1 && v.points_per_side <= 1024 && amg_params_validate(&v, &err)) {
            return cli_usage_error(cmd, "%s: %s", mf.config, err.msg);
        }
        if (!pps_flag) pps = p.points_per_side;
        /* "auto" sizes generate's and run's batches to a GPU; dump
         * decodes one batch of the grid and keeps its default */
        if (!ppb_flag && p.points_per_batch != AMG_POINTS_PER_BATCH_AUTO) ppb = p.points_per_batch;
        if (pps < 1 || pps > 1024)
            return cli_usage_error(cmd, "%s: amg.points_per_side %lld: dump needs 1..1024 "
                                   "(give --points-per-side)", mf.config, (long long)pps);
        if (ppb < 1 || ppb > 4096)
            return cli_usage_error(cmd, "%s: amg.points_per_batch %lld: dump needs 1..4096",
                                   mf.config, (long long)ppb);
    }
    if (ppb > pps * pps) ppb = pps * pps;
    image_t img = {0};
    if ((rc = image_init(&err)) || (rc = image_load(&img, image_path, 0, &err))) {
        fprintf(stderr, "sam2amg dump: %s\n", err.msg);
        return EXIT_DATA;
    }
    backend_t *be = NULL;
    sam2_model *m = NULL;
    int B = (int)ppb, S = cfg.image_size, low = S / 4, d = cfg.d_model;
    size_t g = (size_t)S / 4;
    if ((rc = cli_open_model(cmd, &mf, &cfg, B, &be, &m))) {
        image_free(&img);
        return rc;
    }

    float *input = malloc((size_t)3 * S * S * sizeof(float));            // (3,S,S)
    float *embed = malloc(g / 4 * g / 4 * (size_t)d * sizeof(float));    // (d,S/16,S/16)
    float *s0 = malloc(g * g * (size_t)(d / 8) * sizeof(float));         // (d/8,S/4,S/4)
    float *s1 = malloc(g / 2 * g / 2 * (size_t)(d / 4) * sizeof(float)); // (d/4,S/8,S/8)
    float *grid = malloc((size_t)B * 2 * sizeof(float));                 // (B,2) pixels
    float *coords = malloc((size_t)B * 2 * sizeof(float));               // (B,1,2) model
    int32_t *labels = malloc((size_t)B * sizeof(int32_t));
    float *lowres = malloc((size_t)B * 3 * low * low * sizeof(float));   // (B,3,low,low)
    float *iou = malloc((size_t)B * 3 * sizeof(float));
    float *mask_in = malloc((size_t)B * low * low * sizeof(float));      // (B,low,low)
    float *m2m = malloc((size_t)B * low * low * sizeof(float));          // (B,1,low,low)
    float *m2m_iou = malloc((size_t)B * sizeof(float));
    CHECK(input && embed && s0 && s1 && grid && coords && labels && lowres && iou && mask_in &&
          m2m && m2m_iou);

    rc = image_preprocess(img.rgb, img.w, img.h, (size_t)img.w * 3, S, input, &err);
    if (!rc) rc = sam2_model_encode(m, input, &err);
    if (!rc) {
        sam2_model_features(m, embed, s0, s1);
        for (int k = 0; k < B; k++) {
            int i = k % (int)pps, j = k / (int)pps;   /* x fastest, as the AMG grid */
            grid[2 * k] = (float)((i + 0.5) / (double)pps * img.w);
            grid[2 * k + 1] = (float)((j + 0.5) / (double)pps * img.h);
            coords[2 * k] = grid[2 * k] / (float)img.w * (float)S;
            coords[2 * k + 1] = grid[2 * k + 1] / (float)img.h * (float)S;
            labels[k] = 1;
        }
        sam2_prompts p = {.n = B, .n_pts = 1, .coords = coords, .labels = labels,
                          .mask_input = NULL, .multimask = 1};
        rc = sam2_model_decode(m, &p, lowres, iou, &err);
        /* the predictor returns (and m2m feeds back) low-res logits clamped
         * to +-32; the decoder's own output is not clamped */
        for (size_t q = 0; q < (size_t)B * 3 * low * low; q++)
            lowres[q] = lowres[q] < -32.0f ? -32.0f : lowres[q] > 32.0f ? 32.0f : lowres[q];
        if (!rc) {
            for (int k = 0; k < B; k++)
                memcpy(mask_in + (size_t)k * low * low, lowres + (size_t)k * 3 * low * low,
                       (size_t)low * low * sizeof(float));
            p.mask_input = mask_in;
            p.multimask = 0;
            rc = sam2_model_decode(m, &p, m2m, m2m_iou, &err);
            for (size_t q = 0; q < (size_t)B * low * low; q++)
                m2m[q] = m2m[q] < -32.0f ? -32.0f : m2m[q] > 32.0f ? 32.0f : m2m[q];
        }
    }
    if (!rc) {
        const st_entry_t e[] = {
            {"input", WDT_F32, 4, {1, 3, S, S}, input},
            {"image_embed", WDT_F32, 4, {1, d, S / 16, S / 16}, embed},
            {"feat_s0", WDT_F32, 4, {1, d / 8, S / 4, S / 4}, s0},
            {"feat_s1", WDT_F32, 4, {1, d / 4, S / 8, S / 8}, s1},
            {"grid_points", WDT_F32, 2, {B, 2}, grid},
            {"low_res_masks", WDT_F32, 4, {B, 3, low, low}, lowres},
            {"iou_preds", WDT_F32, 2, {B, 3}, iou},
            {"m2m_low_res_masks", WDT_F32, 4, {B, 1, low, low}, m2m},
            {"m2m_iou_preds", WDT_F32, 2, {B, 1}, m2m_iou},
        };
        rc = safetensors_write(out_path, e, (int)(sizeof e / sizeof e[0]), &err);
    }
    if (rc) fprintf(stderr, "sam2amg dump: %s\n", err.msg);
    free(input), free(embed), free(s0), free(s1), free(grid), free(coords), free(labels);
    free(lowres), free(iou), free(mask_in), free(m2m), free(m2m_iou);
    sam2_model_free(m);
    image_free(&img);
    be->destroy(be);
    return rc ? EXIT_DATA : EXIT_OK;
}
