/* test_model.c: the SAM 2.1 image model against the official code's
 * tensors (tests/fixtures/micro, micro2: made by sam2_oracle.py with the
 * official modules), plus configs and checkpoint errors.
 *
 * Parity bar (fixtures/README.md): max |ours - expected| <= 1e-3 *
 * max |expected| per tensor; each tensor's max difference is printed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "model.h"
#include "test.h"
#include "weights.h"

static backend_t *be;

/* compare: print and check one tensor against the 1e-3 relative bar */
static void compare(const char *what, const float *got, const float *exp, int64_t n) {
    double md = 0, mx = 0;
    int finite = 1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) finite = 0;
        double d = fabs((double)got[i] - exp[i]);
        if (d > md || d != d) md = d;
        if (fabs(exp[i]) > mx) mx = fabs(exp[i]);
    }
    printf("# %-40s max diff %.3g  max|exp| %.3g  rel %.3g\n", what, md, mx, mx > 0 ? md / mx : md);
    TEST_CHECK(finite && md <= 1e-3 * mx, what, "max diff %.3g > 1e-3 * %.3g", md, mx);
}

/* expected_get: a tensor of the fixture's expected.safetensors, or NULL */
static const float *expected_get(weights_t *x, const char *name, int64_t *numel) {
    wtensor_t *t = weights_find(x, name);
    if (!t) return NULL;
    err_t err;
    const float *p = weights_get(x, name, t->ndim, t->shape, &err);
    if (numel) *numel = t->numel;
    return p;
}

/* check_fixture: load dir/weights_file with config cfg_name, encode the
 * recorded input, compare the three features and (when the fixture has
 * them) the decoder outputs for the grid points and the m2m pass */
static void check_fixture(const char *dir, const char *weights_file, const char *cfg_name) {
    char path[1024], name[256];
    err_t err = {{0}};
    sam2_config cfg;
    snprintf(path, sizeof path, "%s", test_fixture(dir));
    int rc = sam2_config_load(cfg_name, &cfg, NULL, &err);
    snprintf(name, sizeof name, "%s: config %s", dir, cfg_name);
    TEST_CHECK(rc == 0, name, "%s", err.msg);
    if (rc) return;

    weights_t *x = NULL;
    snprintf(path, sizeof path, "%s/expected.safetensors", test_fixture(dir));
    rc = weights_open(&x, path, &err);
    TEST_CHECK(rc == 0, "open expected.safetensors", "%s", err.msg);
    if (rc) return;
    int64_t n_pts = 0;
    const float *grid = expected_get(x, "grid_points", &n_pts);
    n_pts /= 2;

    sam2_model *m = NULL;
    snprintf(path, sizeof path, "%s/%s", test_fixture(dir), weights_file);
    rc = sam2_model_load(&m, &cfg, path, be, n_pts > 0 ? (int)n_pts : 16, &err);
    snprintf(name, sizeof name, "%s/%s: load", dir, weights_file);
    TEST_CHECK(rc == 0 && m, name, "%s", err.msg);
    if (rc) {
        weights_close(x);
        return;
    }
    const float *input = expected_get(x, "input", NULL);
    rc = sam2_model_encode(m, input, &err);
    snprintf(name, sizeof name, "%s/%s: encode", dir, weights_file);
    TEST_CHECK(rc == 0, name, "%s", err.msg);

    const char *feats[3] = {"image_embed", "feat_s0", "feat_s1"};
    float *got[3];
    int64_t numel[3];
    const float *exp[3];
    for (int i = 0; i < 3; i++) {
        exp[i] = expected_get(x, feats[i], &numel[i]);
        CHECK(exp[i]);
        got[i] = calloc((size_t)numel[i], sizeof(float));
    }
    sam2_model_features(m, got[0], got[1], got[2]);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s/%s: %s", dir, weights_file, feats[i]);
        compare(name, got[i], exp[i], numel[i]);
    }

    /* encoding a second time gives the same features (no state leaks) */
    float *again = calloc((size_t)numel[0], sizeof(float));
    sam2_model_encode(m, input, &err);
    sam2_model_features(m, again, NULL, NULL);
    snprintf(name, sizeof name, "%s/%s: second encode identical", dir, weights_file);
    TEST_CHECK(!memcmp(again, got[0], (size_t)numel[0] * sizeof(float)), name, "differs");
    free(again);

    /* the decoder on the grid points (one positive point each) */
    int64_t nlow = 0;
    const float *exp_low = expected_get(x, "low_res_masks", &nlow);
    const float *exp_iou = expected_get(x, "iou_preds", NULL);
    const float *exp_m2m = expected_get(x, "m2m_low_res_masks", NULL);
    const float *exp_m2m_iou = expected_get(x, "m2m_iou_preds", NULL);
    if (grid && exp_low && getenv("SAM2AMG_SKIP_DECODER") == NULL) {
        int S = cfg.image_size, low = S / 4, B = (int)n_pts;
        /* the image size comes from the fixture's PNG header */
        int W = 0, H = 0;
        snprintf(path, sizeof path, "%s/image.png", test_fixture(dir));
        FILE *f = fopen(path, "rb");
        unsigned char hdr[24];
        if (f && fread(hdr, 1, 24, f) == 24) {
            W = (hdr[16] << 24) | (hdr[17] << 16) | (hdr[18] << 8) | hdr[19];
            H = (hdr[20] << 24) | (hdr[21] << 16) | (hdr[22] << 8) | hdr[23];
        }
        if (f) fclose(f);
        CHECK(W > 0 && H > 0);
        float *coords = malloc((size_t)B * 2 * sizeof(float));
        int32_t *labels = malloc((size_t)B * sizeof(int32_t));
        for (int i = 0; i < B; i++) {
            coords[2 * i] = grid[2 * i] * (float)S / (float)W;
            coords[2 * i + 1] = grid[2 * i + 1] * (float)S / (float)H;
            labels[i] = 1;
        }
        float *low_res = malloc((size_t)B * 3 * low * low * sizeof(float));
        float *iou = malloc((size_t)B * 3 * sizeof(float));
        sam2_prompts p = {.n = B, .n_pts = 1, .coords = coords, .labels = labels,
                          .mask_input = NULL, .multimask = 1};
        rc = sam2_model_decode(m, &p, low_res, iou, &err);
        snprintf(name, sizeof name, "%s/%s: decode", dir, weights_file);
        TEST_CHECK(rc == 0, name, "%s", err.msg);
        /* the fixtures hold the predictor's output, clamped to +-32 */
        for (int64_t q = 0; q < (int64_t)B * 3 * low * low; q++)
            low_res[q] = low_res[q] < -32.0f ? -32.0f : low_res[q] > 32.0f ? 32.0f : low_res[q];
        snprintf(name, sizeof name, "%s/%s: low_res_masks", dir, weights_file);
        compare(name, low_res, exp_low, (int64_t)B * 3 * low * low);
        snprintf(name, sizeof name, "%s/%s: iou_preds", dir, weights_file);
        compare(name, iou, exp_iou, (int64_t)B * 3);
        if (exp_m2m && exp_m2m_iou) {
            /* mask input = the recorded first multimask output, as use_m2m */
            float *mask_in = malloc((size_t)B * low * low * sizeof(float));
            for (int i = 0; i < B; i++)
                memcpy(mask_in + (size_t)i * low * low, exp_low + (size_t)i * 3 * low * low,
                       (size_t)low * low * sizeof(float));
            p.mask_input = mask_in;
            p.multimask = 0;
            rc = sam2_model_decode(m, &p, low_res, iou, &err);
            snprintf(name, sizeof name, "%s/%s: m2m decode", dir, weights_file);
            TEST_CHECK(rc == 0, name, "%s", err.msg);
            for (int64_t q = 0; q < (int64_t)B * low * low; q++)
                low_res[q] = low_res[q] < -32.0f ? -32.0f : low_res[q] > 32.0f ? 32.0f : low_res[q];
            snprintf(name, sizeof name, "%s/%s: m2m_low_res_masks", dir, weights_file);
            compare(name, low_res, exp_m2m, (int64_t)B * low * low);
            snprintf(name, sizeof name, "%s/%s: m2m_iou_preds", dir, weights_file);
            compare(name, iou, exp_m2m_iou, B);
            free(mask_in);
        }
        free(coords);
        free(labels);
        free(low_res);
        free(iou);
    }
    printf("# %s: arena peak %.2f MiB\n", dir, sam2_model_peak_bytes(m) / 1048576.0);
    for (int i = 0; i < 3; i++) free(got[i]);
    sam2_model_free(m);
    weights_close(x);
}

static void test_configs(void) {
    sam2_config c;
    err_t err = {{0}};
    const char *names[] = {"tiny", "sam2.1_hiera_t", "sam2.1_hiera_tiny", "sam2_hiera_t",
                           "sam2.1_hiera_t.yaml", "TINY"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int rc = sam2_config_builtin(names[i], &c, &err);
        char name[128];
        snprintf(name, sizeof name, "config alias '%s' is tiny", names[i]);
        TEST_CHECK(rc == 0 && !strcmp(c.name, "tiny") && c.embed_dim == 96 && c.stages[2] == 7,
                   name, "rc %d %s", rc, err.msg);
    }
    TEST_CHECK(!sam2_config_builtin("large", &c, &err) && c.embed_dim == 144 &&
                   c.stages[2] == 36 && c.window_spec[2] == 16 && c.global_att_blocks[2] == 43,
               "large config", "%s", err.msg);
    TEST_CHECK(!sam2_config_builtin("sam2.1_hiera_b+", &c, &err) && c.embed_dim == 112 &&
                   c.num_heads == 2 && c.window_pos_embed_bkg_spatial_size[0] == 14,
               "base_plus config", "%s", err.msg);
    TEST_CHECK(!sam2_config_builtin("small", &c, &err) && c.stages[2] == 11 &&
                   c.global_att_blocks[0] == 7,
               "small config", "%s", err.msg);
    int rc = sam2_config_builtin("huge", &c, &err);
    TEST_CHECK(rc == ERR_INVALID && strstr(err.msg, "huge"), "unknown config name", "rc %d %s",
               rc, err.msg);

    /* a meta.json style file, with its "amg" object handed back */
    char *amg = NULL;
    rc = sam2_config_load(test_fixture("micro2/meta.json"), &c, &amg, &err);
    TEST_CHECK(rc == 0 && c.embed_dim == 24 && c.num_heads == 2 && c.n_global == 2 &&
                   c.global_att_blocks[1] == 5 && c.window_spec[3] == 3 && c.d_model == 32 &&
                   c.image_size == 192 && c.window_pos_embed_bkg_spatial_size[1] == 5,
               "config from micro2/meta.json", "rc %d %s", rc, err.msg);
    TEST_CHECK(amg && strstr(amg, "\"points_per_side\":8"), "config file amg object",
               "%s", amg ? amg : "(null)");
    free(amg);
    rc = sam2_config_load("/nonexistent/cfg.json", &c, NULL, &err);
    TEST_CHECK(rc == ERR_IO, "missing config file", "rc %d", rc);

    /* guess from shapes */
    rc = sam2_config_guess(test_fixture("micro/weights.safetensors"), &c, &err);
    TEST_CHECK(rc == 0 && !strcmp(c.name, "micro"), "guess micro", "rc %d %s", rc, err.msg);
    rc = sam2_config_guess(test_fixture("micro/weights.pt"), &c, &err);
    TEST_CHECK(rc == 0 && !strcmp(c.name, "micro"), "guess micro (.pt)", "rc %d %s", rc,
               err.msg);
    rc = sam2_config_guess(test_fixture("micro2/weights.safetensors"), &c, &err);
    TEST_CHECK(rc == 0 && !strcmp(c.name, "micro2"), "guess micro2", "rc %d %s", rc, err.msg);
}

/* write_variant: the micro checkpoint minus key `drop` and/or plus a key
 * `extra` (shape (4)) as a new safetensors file */
static int write_variant(const char *out, const char *drop, const char *extra) {
    weights_t *w = NULL;
    err_t err;
    if (weights_open(&w, test_fixture("micro/weights.safetensors"), &err)) return -1;
    int n = weights_count(w), k = 0;
    st_entry_t *e = calloc((size_t)n + 1, sizeof *e);
    static const float four[4] = {1, 2, 3, 4};
    for (int i = 0; i < n; i++) {
        wtensor_t *t = weights_at(w, i);
        if (drop && !strcmp(t->name, drop)) continue;
        e[k].name = t->name;
        e[k].dtype = t->dtype;
        e[k].ndim = t->ndim;
        memcpy(e[k].shape, t->shape, sizeof t->shape);
        e[k].data = t->data;
        k++;
    }
    if (extra) {
        e[k].name = extra;
        e[k].dtype = WDT_F32;
        e[k].ndim = 1;
        e[k].shape[0] = 4;
        e[k].data = four;
        k++;
    }
    int rc = safetensors_write(out, e, k, &err);
    free(e);
    weights_close(w);
    return rc;
}

static void test_checkpoint_errors(void) {
    sam2_config micro;
    err_t err = {{0}};
    sam2_model *m = NULL;
    CHECK(!sam2_config_builtin("micro", &micro, &err));

    /* another config's checkpoint: the first mismatching key and both shapes */
    int rc = sam2_model_load(&m, &micro, test_fixture("micro2/weights.safetensors"), be, 4, &err);
    printf("# %s\n", err.msg);
    TEST_CHECK(rc == ERR_FORMAT && !m && strstr(err.msg, "micro2/weights.safetensors") &&
                   strstr(err.msg, "image_encoder.trunk.patch_embed.proj.weight") &&
                   strstr(err.msg, "16") && strstr(err.msg, "24"),
               "micro2 weights with micro config", "rc %d: %s", rc, err.msg);

    char tmp[] = "/tmp/sam2amg_test_model_XXXXXX";
    CHECK(mkdtemp(tmp));
    char path[512];
    snprintf(path, sizeof path, "%s/missing.safetensors", tmp);
    const char *drop = "image_encoder.trunk.blocks.2.mlp.layers.1.bias";
    CHECK(write_variant(path, drop, NULL) == 0);
    rc = sam2_model_load(&m, &micro, path, be, 4, &err);
    printf("# %s\n", err.msg);
    TEST_CHECK(rc == ERR_FORMAT && !m && strstr(err.msg, drop) && strstr(err.msg, "missing.safetensors"),
               "missing key named", "rc %d: %s", rc, err.msg);
    unlink(path);

    snprintf(path, sizeof path, "%s/extra.safetensors", tmp);
    const char *extra = "image_encoder.trunk.blocks.99.surprise";
    CHECK(write_variant(path, NULL, extra) == 0);
    rc = sam2_model_load(&m, &micro, path, be, 4, &err);
    printf("# %s\n", err.msg);
    TEST_CHECK(rc == ERR_FORMAT && !m && strstr(err.msg, extra), "unexpected key named",
               "rc %d: %s", rc, err.msg);
    unlink(path);

    /* a video-only key is not unexpected */
    snprintf(path, sizeof path, "%s/video.safetensors", tmp);
    CHECK(write_variant(path, NULL, "memory_attention.layers.9.extra") == 0);
    rc = sam2_model_load(&m, &micro, path, be, 4, &err);
    TEST_CHECK(rc == 0 && m, "video-only keys skipped", "rc %d: %s", rc, err.msg);
    sam2_model_free(m);
    m = NULL;
    unlink(path);
    rmdir(tmp);

    rc = sam2_model_load(&m, &micro, "/nonexistent/w.pt", be, 4, &err);
    TEST_CHECK(rc == ERR_IO && !m && strstr(err.msg, "/nonexistent/w.pt"), "missing checkpoint",
               "rc %d: %s", rc, err.msg);

    /* an image size the window spec cannot tile */
    sam2_config bad = micro;
    bad.image_size = 250;
    rc = sam2_model_load(&m, &bad, test_fixture("micro/weights.safetensors"), be, 4, &err);
    TEST_CHECK(rc == ERR_INVALID && !m, "bad image size refused", "rc %d: %s", rc, err.msg);
}

int main(void) {
    /* SAM2AMG_DEVICE=cuda:0 runs the same parity on another backend */
    const char *dev = getenv("SAM2AMG_DEVICE");
    err_t berr = {{0}};
    be = dev ? backend_create(dev, 0, &berr) : backend_cpu_create(0);
    if (!be) {
        printf("# %s: %s\n", dev, berr.msg);
        TEST_CHECK(0, "backend", "%s", berr.msg);
        return TEST_REPORT();
    }
    be->precision = BACKEND_FP32;   /* the fixtures' float32 bounds (cuda defaults to bf16) */
    printf("# backend %s\n", be->name);
    test_configs();
    check_fixture("micro", "weights.safetensors", "micro");
    check_fixture("micro", "weights.pt", "micro");
    check_fixture("micro2", "weights.safetensors", "micro2");
    test_checkpoint_errors();
    be->destroy(be);
    return TEST_REPORT();
}
