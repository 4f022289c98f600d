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
 * Exit status: 0 ok, 1 data error (message on stderr), 2 usage error.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amg.h"
#include "cli.h"
#include "image.h"
#include "model.h"

/* ppm_skip: skip whitespace and # comments in a PPM header */
static void ppm_skip(FILE *f) {
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (c == '#') {
            while ((c = fgetc(f)) != EOF && c != '\n') {}
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            ungetc(c, f);
            return;
        }
    }
}

/* ppm_read: a P6 PPM with maxval 255 into a malloc'd (h, w, 3) buffer.
 * 0, or ERR_IO / ERR_FORMAT with a message naming path. */
static int ppm_read(const char *path, uint8_t **rgb, int *w, int *h, err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    int W = 0, H = 0, mx = 0, rc = 0;
    char magic[3] = {0};
    if (fread(magic, 1, 2, f) != 2 || strcmp(magic, "P6")) rc = 1;
    if (!rc) ppm_skip(f), rc = fscanf(f, "%d", &W) != 1;
    if (!rc) ppm_skip(f), rc = fscanf(f, "%d", &H) != 1;
    if (!rc) ppm_skip(f), rc = fscanf(f, "%d", &mx) != 1;
    if (rc || fgetc(f) == EOF || W <= 0 || H <= 0 || W > 65536 || H > 65536 || mx != 255) {
        fclose(f);
        return err_set(err, ERR_FORMAT, "%s: not a binary PPM (P6, maxval 255)", path);
    }
    size_t n = (size_t)W * (size_t)H * 3;
    *rgb = malloc(n);
    if (!*rgb) {
        fclose(f);
        return err_set(err, ERR_NOMEM, "%s: out of memory for %dx%d pixels", path, W, H);
    }
    if (fread(*rgb, 1, n, f) != n) {
        fclose(f);
        free(*rgb);
        *rgb = NULL;
        return err_set(err, ERR_FORMAT, "%s: truncated PPM (%dx%d)", path, W, H);
    }
    fclose(f);
    *w = W, *h = H;
    return 0;
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

int main(int argc, char **argv) {
    const char *cmd = "gpu_generate";
    if (argc == 4 && !strcmp(argv[1], "--decode")) return decode(argv[2], argv[3]);
    const char *out = NULL, *replay = NULL, *image = NULL;
    int verbose = 0;
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
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1, i++;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--replay-decoder")) && i + 1 < argc) {
            *(a[1] == 'o' ? &out : &replay) = argv[i + 1];
            i += 2;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!image) {
            image = a, i++;
        } else {
            return cli_usage_error(cmd, "one IMAGE.ppm only");
        }
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
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
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
        (rc = ppm_read(image, &rgb, &w, &h, &err)) ||
        (rc = amg_generate(g, &m, rgb, w, h, &res, &err)) ||
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
fail:   // ppm_read's messages name the file already
    if (!strncmp(err.msg, image, strlen(image))) fprintf(stderr, "%s: %s\n", cmd, err.msg);
    else fprintf(stderr, "%s: %s: %s\n", cmd, image, err.msg);
    rc = EXIT_DATA;
done:
    amg_result_free(&res);
    free(rgb);
    amg_free(g);
    amg_replay_free(rp);
    amg_model_unwrap(&wrap);
    sam2_model_free(sm);
    if (be) be->destroy(be);
    return rc;
}
