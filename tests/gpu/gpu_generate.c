/* gpu_generate.c: `sam2amg generate` for the GPU check, reading images as
 * binary PPM so that it needs no libvips.
 *
 * The GPU machine has no libvips (and cannot install it), so the bundle
 * cannot carry build/sam2amg. This driver runs the same pipeline as
 * src/cmd_generate.c for one image — amg_params from defaults < the
 * config file's "amg" object < flags, the SAM 2.1 model on --device
 * (cpu or cuda:N) or the recorded decoder of --replay-decoder, then
 * amg_generate and amg_write_json — on pixels read from a P6 PPM. In the
 * normal build (with libvips) `--decode IMAGE OUT.ppm` writes that PPM
 * from any image sam2amg reads; `make gpu-bundle` decodes the end-to-end
 * fixtures' images that way. In the bundle build image.c's libvips calls
 * are stubs (tests/gpu/vips_stub.c), so only the PPM path works there.
 *
 * usage: gpu_generate --decode IMAGE OUT.ppm
 *        gpu_generate (--model W | --replay-decoder EXPECTED) [--config CFG]
 *                     [--device D] [--threads N] [-v] [AMG flags] IMAGE.ppm -o OUT.json
 * -v: one line on stderr, as `sam2amg generate -v` ends its own: where the
 * post-processing ran and in how many decoder calls the logits stayed on
 * the device (check.sh asserts the in-place path ran).
 *
 * The benchmark of issue 16 (tests/gpu/check.sh step bench_ours):
 *        gpu_generate --random NAME [--seed S] --time N [--warmup N] --device D
 *                     [--precision P] [--row ROW] [--both-thresholds] [AMG flags] IMAGE.ppm...
 * runs the whole generator (encoder, decoder, post-processing, records) on
 * one image with the builtin config NAME (tiny, small, base_plus, large)
 * and random weights (weights_open_random), the way `sam2amg generate`
 * does through amg_batcher: one untimed warm-up (--warmup N: N), then N timed runs, and
 * prints the median run as one line per image (and per threshold set with
 * --both-thresholds: as given, then both at 0), in the format of
 * tests/gpu/official_bench.py's rows:
 *   "ROW: PASS images_per_s=R wall_s=W enc_ms=E dec_ms=D post_ms=P
 *    dev_mib=M prompts=N records=K ppb=B runs=N min_wall_s=F device=D"
 * where prompts is the points decoded for the image, every crop's grid
 * counted (see prompts()), enc/dec/post are amg_batcher's stage times of
 * that run and dev_mib the device memory in use after the runs
 * (cudaMemGetInfo: the CUDA context and this process's arenas, which are
 * planned, so their size after a run is their peak). A failure is "ROW: FAIL reason", exit 1.
 * --help prints the usage. Exit status: 0 ok, 1 data error (message on
 * stderr), 2 usage error.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "amg.h"
#include "cli.h"
#include "backend.h"
#include "image.h"
#include "model.h"
#include "weights.h"

/* load: IMAGE into img: image_load, which decodes a binary PPM without
 * libvips (the only format the bundle build reads). 0 or its error. */
static int load(image_t *img, const char *path, err_t *err) {
    return image_load(img, path, 0, err);
}

/* decode: IMAGE (any format image_load reads) -> OUT as a P6 PPM */
static int decode(const char *in, const char *out) {
    err_t err = {{0}};
    image_t img = {0};
    if (image_init(&err) || image_load(&img, in, 0, &err)) {
        fprintf(stderr, "gpu_generate: %s\n", err.msg);
        return EXIT_DATA;
    }
    FILE *f = fopen(out, "wb");
    int ok = f && fprintf(f, "P6\n%d %d\n255\n", img.w, img.h) > 0 &&
             fwrite(img.rgb, 1, (size_t)img.w * img.h * 3, f) == (size_t)img.w * img.h * 3;
    if (f && fclose(f)) ok = 0;
    image_free(&img);
    if (!ok) {
        fprintf(stderr, "gpu_generate: %s: write failed\n", out);
        return EXIT_DATA;
    }
    return EXIT_OK;
}

/* usage: the modes and options as main parses them (--help) */
static void usage(FILE *f) {
    fprintf(f,
            "usage: gpu_generate --decode IMAGE OUT.ppm\n"
            "       gpu_generate (--model W | --replay-decoder EXPECTED) [--config CFG]\n"
            "                    [--device D] [--threads N] [-v] [AMG flags] IMAGE.ppm -o OUT.json\n"
            "       gpu_generate --random NAME [--seed S] --time N [--warmup N] [--device D]\n"
            "                    [--precision P] [--row ROW] [--both-thresholds] [AMG flags]\n"
            "                    IMAGE.ppm...\n\n"
            "`sam2amg generate` on one binary PPM, without libvips (the GPU check's\n"
            "bundle), or the benchmark rows of tests/gpu/check.sh step bench_ours.\n\n"
            "  --decode IMAGE OUT.ppm       write IMAGE (any format image_load reads) as PPM\n");
    cli_model_flags_help(f, 28);
    fprintf(f,
            "  --device NAME                cpu (default) or cuda:N\n"
            "  --threads N                  CPU threads (default: all cores)\n"
            "  --precision P                fp32 or bf16 GEMM inputs\n"
            "  -o OUT.json                  the masks as `sam2amg generate` writes them\n"
            "  --replay-decoder FILE        recorded decoder outputs instead of the network\n"
            "  -v, --verbose                where the post-processing ran, logits kept on\n"
            "                               the device in how many decoder calls\n"
            "  --random NAME                time random weights of builtin config NAME\n"
            "                               (not with --model, --config, -o, --replay-decoder)\n"
            "  --time N                     timed runs after the warm-ups, 1..64 (--random)\n"
            "  --warmup N                   untimed runs first, 0..8 (default 1; 0 for a\n"
            "                               profiler, which times each kernel alone)\n"
            "  --seed S                     the random weights' seed (default 11)\n"
            "  --row ROW                    the rows' name (default ours)\n"
            "  --both-thresholds            also a row with both thresholds at 0\n"
            "  -h, --help                   this text\n"
            "AMG parameters (official names and defaults; --time needs a number for\n"
            "--points-per-batch):\n");
    amg_params_help(f);
}

/* prompts: the points one image is decoded at, every crop's grid counted:
 * crop layer 0 is the image, layer l >= 1 has 4^l crops */
static int64_t prompts(const amg_params *p) {
    int64_t n = 0;
    for (int l = 0, side; l <= p->crop_n_layers; l++)
        n += ((int64_t)1 << (2 * l)) * amg_params_layer_points(p, l, &side);
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* bench_one: the timed runs of one image with params p on a loaded model;
 * prints its row. 0, or the error's rc with err set. */
static int bench_one(const char *row, int warmup, int iters, const amg_params *p,
                     const sam2_config *cfg, backend_t *be, const amg_model *m,
                     const cli_model_flags *mf, const image_t *img, err_t *err) {
    enum { MAXIT = 64 };
    double wall[MAXIT], enc[MAXIT], dec[MAXIT], post[MAXIT];
    amg_batcher b = {0};
    amg_result res = {0};
    int rc = 0;
    int64_t records = 0;
    if ((rc = amg_batcher_init(&b, p, cfg->image_size, mf->threads > 0 ? (int)mf->threads : 0,
                               mf->device, err)))
        goto out;
    for (int it = -warmup; it < iters; it++) {   // it < 0: the untimed warm-ups
        amg_result_free(&res);
        double a = now_s();
        if ((rc = amg_batcher_generate(&b, m, img->rgb, img->w, img->h, &res, err))) goto out;
        if (it < 0) continue;
        wall[it] = now_s() - a;
        enc[it] = b.t_encode, dec[it] = b.t_decode, post[it] = b.t_post;
        records = res.n;
    }
    int mid = 0;   // the median run by wall time, its stages with it
    double ws[MAXIT];
    memcpy(ws, wall, sizeof(double) * (size_t)iters);
    qsort(ws, (size_t)iters, sizeof(double), cmp_double);
    for (int i = 0; i < iters; i++)
        if (wall[i] == ws[iters / 2]) mid = i;
    size_t fr = 0, tot = 0;
    double mib = -1;
    if (be->mem_info && be->mem_info(be, &fr, &tot) == 0) mib = (double)(tot - fr) / 1048576.0;
    printf("%s: PASS images_per_s=%.3f wall_s=%.4f enc_ms=%.1f dec_ms=%.1f post_ms=%.1f "
           "dev_mib=%.0f prompts=%lld records=%lld ppb=%d runs=%d min_wall_s=%.4f device=%s\n", row,
           1.0 / wall[mid], wall[mid], 1e3 * enc[mid], 1e3 * dec[mid], 1e3 * post[mid], mib,
           (long long)prompts(p), (long long)records, b.p.points_per_batch, iters,
           ws[0], be->name);
    fflush(stdout);
out:
    amg_result_free(&res);
    amg_batcher_free(&b);
    return rc;
}

/* bench: the --random/--time mode described at the top, over images[n],
 * each with the given thresholds, and with --both-thresholds also with
 * pred_iou_thresh = stability_score_thresh = 0 (rows ROW_WxH_default and
 * ROW_WxH_zero; ROW alone for one image without it) */
static int bench(const char *cmd, const char *name, uint64_t seed, int warmup, int iters,
                 const char *row, int both, cli_model_flags *mf, const amg_params *p,
                 char **images, int n) {
    err_t err = {{0}};
    sam2_config cfg;
    backend_t *be = NULL;
    weights_t *w = NULL;
    sam2_model *sm = NULL;
    amg_model wrap = {0};
    int rc = 0, failed = 0;
    char rname[512];
    if (sam2_config_builtin(name, &cfg, &err)) goto fail;
    be = backend_create(mf->device, (int)mf->threads, &err);
    if (!be) goto fail;
    if ((rc = cli_set_precision(cmd, be, mf->precision))) {
        printf("%s: FAIL --precision not offered by %s\n", row, mf->device);
        goto out;
    }
    if (weights_open_random(&w, seed)) {
        snprintf(err.msg, sizeof err.msg, "random weights: out of memory");
        goto fail;
    }
    if (sam2_model_load_weights(&sm, &cfg, w, be, p->points_per_batch, &err) ||
        amg_model_wrap(&wrap, sm, p->points_per_batch, &err))
        goto fail;
    int ws[16], hs[16];   // the images' sizes: a second image of one size gets _2 in its rows
    for (int i = 0; i < n && i < 16; i++) {
        int same = 1;
        image_t img = {0};   /* read once for all its rows */
        err_t lerr = {{0}};
        int lrc = load(&img, images[i], &lerr);
        const int W = img.w, H = img.h;
        ws[i] = W, hs[i] = H;
        for (int j = 0; j < i; j++) same += ws[j] == W && hs[j] == H;
        for (int t = 0; t < (both ? 2 : 1); t++) {
            amg_params q = *p;
            char nth[16] = "";
            if (same > 1) snprintf(nth, sizeof nth, "_%d", same);
            if (t == 1) q.pred_iou_thresh = q.stability_score_thresh = 0;
            if (n == 1 && !both) snprintf(rname, sizeof rname, "%s", row);
            else snprintf(rname, sizeof rname, "%s_%dx%d%s_%s", row, W, H, nth, t ? "zero" : "default");
            if (lrc) err = lerr;
            if (lrc || bench_one(rname, warmup, iters, &q, &cfg, be, &wrap, mf, &img, &err)) {
                printf("%s: FAIL %s\n", rname, err.msg);
                fprintf(stderr, "%s: %s\n", cmd, err.msg);
                failed++;
                err.msg[0] = 0;
            }
        }
        image_free(&img);
    }
    rc = failed ? EXIT_DATA : 0;
    goto out;
fail:
    rc = EXIT_DATA;
    printf("%s: FAIL %s\n", row, err.msg);
    fprintf(stderr, "%s: %s\n", cmd, err.msg);
out:
    amg_model_unwrap(&wrap);
    sam2_model_free(sm);
    if (w) weights_close(w);
    if (be) be->destroy(be);
    return rc;
}

int main(int argc, char **argv) {
    const char *cmd = "gpu_generate";
    if (argc == 4 && !strcmp(argv[1], "--decode")) return decode(argv[2], argv[3]);
    const char *out = NULL, *replay = NULL, *image = NULL, *random = NULL, *row = "ours";
    const char *time_s = NULL, *seed_s = NULL, *warm_s = NULL;
    int verbose = 0, iters = 0, both = 0, nimg = 0, warmup = 1;
    enum { MAX_IMAGES = 16 };
    char *images[MAX_IMAGES];
    uint64_t seed = 11;
    cli_model_flags mf;
    cli_model_flags_default(&mf);
    amg_params p;
    amg_params_default(&p);
    for (int i = 1; i < argc;) {   // pass 1: model flags, -o, the image; AMG flags checked
        const char *a = argv[i];
        int r = amg_params_parse_flag(&p, cmd, argc, argv, &i);
        if (!r) r = cli_parse_model_flag(&mf, cmd, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1, i++;
        } else if (!strcmp(a, "--random") && i + 1 < argc) {
            random = argv[i + 1], i += 2;
        } else if (!strcmp(a, "--row") && i + 1 < argc) {
            row = argv[i + 1], i += 2;
        } else if (!strcmp(a, "--seed") && i + 1 < argc) {
            seed_s = argv[i + 1], i += 2;
        } else if (!strcmp(a, "--both-thresholds")) {
            both = 1, i++;
        } else if (!strcmp(a, "--warmup") && i + 1 < argc) {
            warm_s = argv[i + 1], i += 2;
        } else if (!strcmp(a, "--time") && i + 1 < argc) {
            time_s = argv[i + 1], i += 2;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--replay-decoder")) && i + 1 < argc) {
            *(a[1] == 'o' ? &out : &replay) = argv[i + 1];
            i += 2;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {   // images, wherever --random stands (it takes up to 16)
            if (!image) image = a;
            if (nimg < MAX_IMAGES) images[nimg] = argv[i];
            nimg++, i++;
        }
    }
    if (!random && nimg > 1) return cli_usage_error(cmd, "one IMAGE.ppm only (several with --random)");
    if (nimg > MAX_IMAGES) return cli_usage_error(cmd, "at most %d IMAGE.ppm (--random)", MAX_IMAGES);
    if (!random && (time_s || seed_s || both || warm_s))
        return cli_usage_error(cmd, "--time, --warmup, --seed and --both-thresholds need --random "
                               "CONFIG");
    if (random) {
        if (mf.model || mf.config || out || replay)
            return cli_usage_error(cmd, "--random %s times random weights of that builtin config: "
                                   "%s is not taken with it", random,
                                   mf.model ? "--model" : mf.config ? "--config" : out ? "-o"
                                                                                    : "--replay-decoder");
        if (!image || !time_s) return cli_usage_error(cmd, "--random needs --time N and IMAGE.ppm");
        char *end = NULL;
        long t = strtol(time_s, &end, 10);
        if (end == time_s || *end || t < 1 || t > 64)
            return cli_usage_error(cmd, "--time '%s': N in [1, 64]", time_s);
        iters = (int)t;
        if (warm_s) {
            long wu = strtol(warm_s, &end, 10);
            if (end == warm_s || *end || wu < 0 || wu > 8)
                return cli_usage_error(cmd, "--warmup '%s': N in [0, 8]", warm_s);
            warmup = (int)wu;
        }
        if (seed_s) {
            errno = 0;
            seed = strtoull(seed_s, &end, 10);
            if (end == seed_s || *end || errno || seed_s[0] == '-')
                return cli_usage_error(cmd, "--seed '%s': not an unsigned number", seed_s);
        }
        amg_params_default(&p);
        for (int i = 1; i < argc;) {
            if (amg_params_parse_flag(&p, cmd, argc, argv, &i) == 0) i++;
        }
        if (p.points_per_batch == AMG_POINTS_PER_BATCH_AUTO)
            return cli_usage_error(cmd, "--time needs --points-per-batch N (a number: auto is not "
                                   "timed)");
        err_t err = {{0}};
        if (amg_params_validate(&p, &err)) return cli_usage_error(cmd, "%s", err.msg);
        return bench(cmd, random, seed, warmup, iters, row, both, &mf, &p, images, nimg);
    }
    if (!image || !out) return cli_usage_error(cmd, "IMAGE.ppm and -o OUT.json are required");
    if (!replay && !mf.model) return cli_usage_error(cmd, "--model or --replay-decoder needed");

    err_t err = {{0}};
    sam2_config cfg;
    char *amg_json = NULL;
    amg_params_default(&p);
    int rc = 0;
    if (!replay) {
        if ((rc = cli_load_config(cmd, &mf, &cfg, &amg_json))) return rc;
        if (amg_json && amg_params_from_json(&p, amg_json, &err)) rc = EXIT_USAGE;
    } else {
        struct stat st;
        if (mf.config && stat(mf.config, &st) == 0 && amg_params_from_config(&p, mf.config, &err))
            rc = EXIT_USAGE;
    }
    free(amg_json);
    if (rc) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        return rc;
    }
    for (int i = 1; i < argc;) {   // pass 2: flags over the config's values
        if (amg_params_parse_flag(&p, cmd, argc, argv, &i) == 0) i++;
    }
    if (amg_params_validate(&p, &err)) return cli_usage_error(cmd, "%s", err.msg);

    backend_t *be = NULL;
    sam2_model *sm = NULL;
    amg_replay_t *rp = NULL;
    amg_model m = {0}, wrap = {0};
    amg_t *g = NULL;
    amg_result res = {0};
    image_t img = {0};
    if (replay) {
        if ((rc = amg_replay_open(&rp, replay, &err))) goto fail;
        amg_replay_model(rp, &m);
    } else {
        if ((rc = cli_open_model(cmd, &mf, &cfg, p.points_per_batch, &be, &sm))) goto done;
        if ((rc = amg_model_wrap(&wrap, sm, p.points_per_batch, &err))) goto fail;
        m = wrap;
    }
    int threads = mf.threads > 0 ? (int)mf.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if ((rc = amg_create(&g, &p, m.S, &err)) ||
        (rc = amg_set_threads(g, threads > 0 ? threads : 1, &err)) ||
        (rc = load(&img, image, &err)) ||
        (rc = amg_generate(g, &m, img.rgb, img.w, img.h, &res, &err)) ||
        (rp && (rc = amg_replay_finish(rp, &err))))
        goto fail;
    if (verbose) {
        amg_stats st;
        amg_get_stats(g, &st);
        fprintf(stderr, "%s: %lld records; post-processing on %s, logits left on the device in "
                "%lld of %lld decoder calls\n", image, (long long)st.records, st.post_on,
                (long long)st.dev_calls, (long long)st.decode_calls);
    }
    char namebuf[4096];
    snprintf(namebuf, sizeof namebuf, "%s", image);
    FILE *fo = fopen(out, "w");
    int wrc = fo ? amg_write_json(fo, basename(namebuf), &res) : ERR_IO;
    if (fo && fclose(fo)) wrc = ERR_IO;
    if (wrc) {
        rc = err_set(&err, ERR_IO, "%s: write failed", out);
        goto fail;
    }
    goto done;
fail:   // image_load's messages name the file already
    if (!strncmp(err.msg, image, strlen(image))) fprintf(stderr, "%s: %s\n", cmd, err.msg);
    else fprintf(stderr, "%s: %s: %s\n", cmd, image, err.msg);
    rc = EXIT_DATA;
done:
    amg_result_free(&res);
    image_free(&img);
    amg_free(g);
    amg_replay_free(rp);
    amg_model_unwrap(&wrap);
    sam2_model_free(sm);
    if (be) be->destroy(be);
    return rc;
}
