/* cmd_generate.c: `sam2amg generate`: automatic mask generation for a few
 * images, straight to SA-1B JSON or a PNG overlay (no database; `run` is
 * the batch runner).
 *
 * Parameters: flags > the config file's "amg" object > official defaults.
 * The decoder is the SAM 2.1 model, or with --replay-decoder the recorded
 * decoder outputs of a synthetic oracle run (tests: everything after the
 * decoder against the official amg.json).
 */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amg.h"
#include "batch.h"
#include "blas.h"
#include "cli.h"
#include "image.h"
#include "model.h"
#include "outfile.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: sam2amg generate --model WEIGHTS [--config NAME|FILE] [AMG flags]\n"
            "                        [--point-grids FILE] [--threads N] IMAGE...\n"
            "                        (-o OUT | --out-dir DIR) [--format json|png]\n"
            "                        [--replay-decoder EXPECTED.safetensors]\n\n"
            "Automatic mask generation (the official SAM2AutomaticMaskGenerator). JSON\n"
            "output per image: {\"image\": {file_name, width, height}, \"annotations\":\n"
            "[SA-1B records, COCO RLE]}; -o with several images writes a list of them.\n"
            "png: the image with every mask overlaid in color.\n\n");
    cli_model_flags_help(f, 28);
    fprintf(f,
            "                               A config FILE's \"amg\" object sets the\n"
            "                               AMG parameters below (flags win)\n"
            "  --point-grids FILE           JSON [[[x, y], ...], ...]: one grid per crop\n"
            "                               layer in [0,1]^2 (instead of points_per_side)\n"
            "  --threads N                  CPU threads of the model and of the mask\n"
            "                               post-processing (default: all cores)\n"
            "  --device NAME                cpu (default) or cuda:N\n"
            "  --precision P                fp32 or bf16 GEMM inputs (default: bf16 on\n"
            "                               cuda, fp32 on the cpu, which has no bf16)\n"
            "  -o, --output OUT             output file (.json, or .png with --format png)\n"
            "  --out-dir DIR                one DIR/NAME.json (or .png) per image (DIR and\n"
            "                               its parents are created)\n"
            "  --format json|png            output kind (json)\n"
            "  -v, --verbose                per image: calls, masks kept per stage, seconds\n"
            "                               in the encoder, the decoder and after it,\n"
            "                               workspace bytes, each out-of-memory halving,\n"
            "                               where the post-processing ran and in how many\n"
            "                               decoder calls the logits stayed on the device;\n"
            "                               before the images, the device and its precision\n"
            "                               (GEMM mode, fused ops)\n"
            "  --gpu-memory-limit BYTES|FRACTION  what it may use of the GPU (8G, 0.5); sizes\n"
            "                               --points-per-batch auto (the default on CUDA)\n"
            "  --replay-decoder FILE        test mode: recorded decoder outputs instead of\n"
            "                               the network (one image)\n"
            "AMG parameters (official names and defaults):\n");
    amg_params_help(f);
}

static int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* DIR/base-of-image.EXT */
static void out_path(char *buf, size_t n, const char *dir, const char *image, const char *ext) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", image);
    char *b = basename(tmp), *dot = strrchr(b, '.');
    if (dot && dot != b) *dot = 0;
    snprintf(buf, n, "%s/%s.%s", dir, b, ext);
}

/* everything the run holds, freed in one place */
typedef struct gen_state {
    const char **images;
    float       *gpts;
    int         *gsizes;
    amg_replay_t *rp;
    amg_batcher  b;                       /* the generator; halves its batch on out of memory */
    FILE        *fo;
    char         fo_tmp[OUTFILE_TMP_MAX]; /* fo writes here; renamed onto -o OUT at the end */
    const char  *fo_out;                  /* -o OUT, for fo_tmp's clean-up */
    backend_t   *be;
    sam2_model  *sm;
    amg_model    wrap;
    char        *amg_json;
} gen_state;

static int generate_run(int argc, char **argv, gen_state *gs);

int cmd_generate(int argc, char **argv) {
    gen_state gs = {0};
    gs.images = calloc((size_t)argc + 1, sizeof *gs.images);
    int rc = gs.images ? generate_run(argc, argv, &gs) : EXIT_DATA;
    /* an early exit with -o open: the temporary file is removed (an OUT
     * written in place, a FIFO or a device, is left alone) */
    if (gs.fo && gs.fo != stdout) outfile_close(gs.fo, gs.fo_tmp, gs.fo_out, ERR_IO, NULL);
    amg_batcher_free(&gs.b);
    amg_replay_free(gs.rp);
    amg_model_unwrap(&gs.wrap);
    sam2_model_free(gs.sm);
    if (gs.be) gs.be->destroy(gs.be);
    free(gs.amg_json);
    free(gs.gpts), free(gs.gsizes), free(gs.images);
    return rc;
}

static int generate_run(int argc, char **argv, gen_state *gs) {
    const char *cmd = "generate", *out = NULL, *out_dir = NULL;
    const char *format = "json", *replay = NULL, *grids = NULL;
    cli_model_flags mf;
    cli_model_flags_default(&mf);
    int verbose = 0;
    batch_limit limit = {0};   /* --gpu-memory-limit */
    const char **images = gs->images;
    int nimages = 0;
    amg_params flag_p, p;
    amg_params_default(&flag_p);
    /* flags are parsed twice: once to find --config, then over the config */
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        int r = amg_params_parse_flag(&flag_p, cmd, argc, argv, &i);
        if (!r) r = cli_parse_model_flag(&mf, cmd, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EXIT_OK;
        }
        const char **dst = !strcmp(a, "-o")                 ? &out
                           : !strcmp(a, "--output")         ? &out
                           : !strcmp(a, "--out-dir")        ? &out_dir
                           : !strcmp(a, "--format")         ? &format
                           : !strcmp(a, "--replay-decoder") ? &replay
                           : !strcmp(a, "--point-grids")    ? &grids
                                                            : NULL;
        if (dst) {
            if (i + 1 >= argc) return cli_usage_error(cmd, "%s needs a value", a);
            *dst = argv[i + 1];
            i += 2;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1;
            i++;
        } else if (!strcmp(a, "--gpu-memory-limit")) {
            err_t e = {{0}};
            if (batch_parse_limit(i + 1 < argc ? argv[i + 1] : NULL, &limit, &e))
                return cli_usage_error(cmd, "%s", e.msg);
            i += 2;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {
            images[nimages++] = a;
            i++;
        }
    }
    if (!nimages) return cli_usage_error(cmd, "no IMAGE given");
    if (!out == !out_dir)
        return cli_usage_error(cmd, "give exactly one of -o OUT and --out-dir DIR");
    if (strcmp(format, "json") && strcmp(format, "png"))
        return cli_usage_error(cmd, "--format: '%s' is not json or png", format);
    if (out && !strcmp(format, "png") && nimages > 1)
        return cli_usage_error(cmd, "--format png with several images needs --out-dir");
    if (replay && nimages > 1)
        return cli_usage_error(cmd, "--replay-decoder replays one image's decoder calls");
    if (!replay && !mf.model) return cli_usage_error(cmd, "--model WEIGHTS is required");

    /* defaults < config < flags. The model's config: --config NAME|FILE, or
     * guessed from the checkpoint's shapes. */
    err_t err = {{0}};
    amg_params_default(&p);
    p.points_per_batch = -1;   /* not given: auto on CUDA, 64 on the CPU (below) */
    sam2_config cfg;
    if (!replay) {
        int rc = cli_load_config(cmd, &mf, &cfg, &gs->amg_json);
        if (rc) return rc;
        if (gs->amg_json && (rc = amg_params_from_json(&p, gs->amg_json, &err))) {
            fprintf(stderr, "sam2amg generate: %s: %s\n", mf.config, err.msg);
            return rc == ERR_INVALID ? EXIT_USAGE : EXIT_DATA;
        }
    } else {
        struct stat stc;
        if (mf.config && stat(mf.config, &stc) == 0 && S_ISREG(stc.st_mode)) {
            int rc = amg_params_from_config(&p, mf.config, &err);
            if (rc) {
                fprintf(stderr, "sam2amg generate: %s\n", err.msg);
                return rc == ERR_IO ? EXIT_DATA : EXIT_USAGE;
            }
        }
    }
    for (int i = 1; i < argc;) { /* flags again, now over the config's values */
        int r = amg_params_parse_flag(&p, cmd, argc, argv, &i);
        if (r == 0) i++;
    }
    if (grids) {
        /* the official generator takes exactly one of points_per_side and
         * point_grids: a flag that gives both is refused, not overridden */
        for (int i = 1; i < argc; i++)
            if (!strcmp(argv[i], "--points-per-side"))
                return cli_usage_error(cmd, "--points-per-side and --point-grids are exclusive "
                                       "(give one)");
        int rc = amg_params_grids_from_file(&p, grids, &gs->gpts, &gs->gsizes, &err);
        if (rc) {
            fprintf(stderr, "sam2amg generate: %s\n", err.msg);
            return rc == ERR_IO ? EXIT_DATA : EXIT_USAGE;
        }
    }
    if (p.points_per_batch == -1)
        p.points_per_batch = !replay && !strncmp(mf.device, "cuda", 4) ? AMG_POINTS_PER_BATCH_AUTO
                                                                      : BATCH_CPU_AUTO;
    if (replay && p.points_per_batch == AMG_POINTS_PER_BATCH_AUTO)
        p.points_per_batch = BATCH_CPU_AUTO;   /* the replay has no device */
    amg_params checked = p;   /* auto is sized when the model is opened */
    if (checked.points_per_batch == AMG_POINTS_PER_BATCH_AUTO) checked.points_per_batch = 1;
    if (amg_params_validate(&checked, &err)) return cli_usage_error(cmd, "%s", err.msg);
    const char *post;   /* a bad SAM2AMG_GPU_POST: refused before any image, as a bad flag */
    if (amg_gpu_post_env(&post, &err)) return cli_usage_error(cmd, "%s", err.msg);

    amg_model m = {0};
    if (replay) {
        if (amg_replay_open(&gs->rp, replay, &err)) {
            fprintf(stderr, "sam2amg generate: %s\n", err.msg);
            return EXIT_DATA;
        }
        amg_replay_model(gs->rp, &m);
    } else {
        int ppb = 0;
        int rc = cli_open_model_sized(cmd, &mf, &cfg, p.points_per_batch, batch_cap(&p), &limit,
                                      &gs->be, &gs->sm, &ppb, verbose);
        if (rc) return rc;
        p.points_per_batch = ppb;
        if (amg_model_wrap(&gs->wrap, gs->sm, p.points_per_batch, &err)) {
            fprintf(stderr, "sam2amg generate: %s\n", err.msg);
            return EXIT_DATA;
        }
        m = gs->wrap;
    }
    /* the replay's recorded calls have fixed batch sizes: no device, no
     * halving (its fault hook stays off);
     * libvips is started by image_load when an image needs it, not here: a
     * PPM needs none, and the GPU bundle has none */
    if (amg_batcher_init(&gs->b, &p, m.S, mf.threads > 0 ? (int)mf.threads : cpu_count(),
                         replay ? "replay" : mf.device, &err)) {
        fprintf(stderr, "sam2amg generate: %s\n", err.msg);
        return EXIT_DATA;
    }
    if (out_dir && cli_mkdir_p(out_dir, &err)) {
        fprintf(stderr, "sam2amg generate: --out-dir %s\n", err.msg);
        return EXIT_DATA;
    }
    amg_batcher *b = &gs->b;
    b->verbose = verbose;
    if (replay) b->fault_max = 0;
    amg_replay_t *rp = gs->rp;
    FILE *fo = NULL;
    if (out && !strcmp(format, "json")) {
        gs->fo_out = out;
        fo = gs->fo = !strcmp(out, "-") ? stdout : outfile_open(out, gs->fo_tmp, &err);
        if (!fo) {
            fprintf(stderr, "sam2amg generate: %s\n", err.msg);
            return EXIT_DATA;
        }
        if (nimages > 1) fputs("[\n", fo);
    }
    if (verbose) fprintf(stderr, "%s\n", blas_describe());
    int failed = 0, written = 0; /* written: records in the -o list */
    for (int k = 0; k < nimages; k++) {
        image_t img = {0};
        amg_result res = {0};
        int rc = 0;
        if (out_dir) {
            /* two images of one file name would write one output file:
             * the later one fails instead of replacing the other's */
            char mine[4096], other[4096];
            out_path(mine, sizeof mine, out_dir, images[k], format);
            for (int j = 0; j < k && !rc; j++) {
                out_path(other, sizeof other, out_dir, images[j], format);
                if (!strcmp(mine, other))
                    rc = err_set(&err, ERR_INVALID, "%s: %s is already the output of %s (same file "
                                 "name); give them separate --out-dir", images[k], mine, images[j]);
            }
        }
        if (!rc) rc = image_load(&img, images[k], 0, &err);
        snprintf(b->who, sizeof b->who, "sam2amg generate: %s", images[k]);
        if (!rc) rc = amg_batcher_generate(b, &m, img.rgb, img.w, img.h, &res, &err);
        if (!rc && rp) rc = amg_replay_finish(rp, &err);
        if (!rc && verbose) {
            amg_stats st;
            amg_get_stats(b->g, &st);
            fprintf(stderr,
                    "%s: %dx%d, %lld decoder calls, masks %lld -> iou %lld -> stability %lld "
                    "-> crop edge %lld -> %lld records; encoder %.3f s, decoder %.3f s, "
                    "post-processing %.3f s, workspace %.1f MB, points_per_batch %d; "
                    "post-processing on %s, logits left on the device in %lld of %lld decoder "
                    "calls\n",
                    images[k], img.w, img.h, (long long)st.decode_calls, (long long)st.masks,
                    (long long)st.after_iou, (long long)st.after_stability,
                    (long long)st.after_edge, (long long)st.records, b->t_encode, b->t_decode,
                    b->t_post, st.peak_bytes / 1e6, b->p.points_per_batch, st.post_on,
                    (long long)st.dev_calls, (long long)st.decode_calls);
        }
        if (!rc) {
            char path[4096];
            char namebuf[4096];
            snprintf(namebuf, sizeof namebuf, "%s", images[k]);
            const char *fname = basename(namebuf);
            if (!strcmp(format, "png")) {
                if (out_dir) out_path(path, sizeof path, out_dir, images[k], "png");
                rc = amg_draw_overlay(img.rgb, img.w, img.h, &res, &err);
                if (!rc) rc = image_write_png(out_dir ? path : out, img.rgb, img.w, img.h, 3, &err);
            } else if (out_dir) {
                out_path(path, sizeof path, out_dir, images[k], "json");
                char tmp[OUTFILE_TMP_MAX];
                FILE *f = outfile_open(path, tmp, &err);
                if (!f) {
                    rc = ERR_IO;
                } else {
                    rc = amg_write_json(f, fname, &res);
                    if (rc) rc = err_set(&err, ERR_IO, "%s: write failed", path);
                    rc = outfile_close(f, tmp, path, rc, &err);
                }
            } else {
                if (written++) fputs(",\n", fo);
                rc = amg_write_json(fo, fname, &res);
                if (rc) err_set(&err, rc, "%s: write failed", out);
            }
        }
        if (rc) {
            /* image_load's messages name the file already */
            if (!strncmp(err.msg, images[k], strlen(images[k])))
                fprintf(stderr, "sam2amg generate: %s\n", err.msg);
            else
                fprintf(stderr, "sam2amg generate: %s: %s\n", images[k], err.msg);
            failed++;
        }
        amg_result_free(&res);
        image_free(&img);
    }
    if (fo) {
        if (nimages > 1) fputs("]\n", fo);
        gs->fo = NULL;
        if (fo == stdout) {
            if (fflush(fo)) {
                fprintf(stderr, "sam2amg generate: %s: write failed\n", out);
                failed = nimages;
            }
        } else if (failed < nimages) {
            if (outfile_close(fo, gs->fo_tmp, out, 0, &err)) {
                fprintf(stderr, "sam2amg generate: %s\n", err.msg);
                failed = nimages;
            }
        } else {
            /* every image failed: an existing OUT is left as it was */
            outfile_close(fo, gs->fo_tmp, out, ERR_INVALID, NULL);
        }
    }
    return failed == 0 ? EXIT_OK : failed == nimages ? EXIT_DATA : EXIT_PARTIAL;
}
