/* test_image.c: decoding parity with PIL, bad inputs, the model input
 * transform and PNG writing.
 *
 * References come from tests/make_image_fixtures.py (Pillow 9.4 and
 * torchvision 0.14 on Debian), committed under tests/fixtures/images:
 * decode.txt lists encoded files with what PIL's convert("RGB") returns,
 * resize.txt lists uint8 images with the official transform's output, and
 * micro/expected.safetensors holds the `input` tensor of the official
 * predictor for micro/image.png.
 */
#include "image.h"
#include "test.h"
#include "weights.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ----------------------------------------------------------- helpers -- */

/* Whole file into a malloc'd buffer (NULL if unreadable). */
static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A malloc'd fixture path; unlike test_fixture() safe to call from threads. */
static char *fixture_dup(const char *rel) {
    const char *root = getenv("SAM2AMG_FIXTURES");
    size_t n = strlen(root ? root : "tests/fixtures") + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", root ? root : "tests/fixtures", rel);
    return p;
}

typedef struct dcase {
    char file[128], ref[128];
    int  w, h, maxdiff;
} dcase_t;

static int read_decode_cases(dcase_t *cs, int max) {
    FILE *f = fopen(test_fixture("images/decode.txt"), "r");
    if (!f)
        return 0;
    char line[512];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        dcase_t *c = &cs[n];
        if (sscanf(line, "%127s %d %d %127s %d", c->file, &c->w, &c->h, c->ref, &c->maxdiff) == 5)
            n++;
    }
    fclose(f);
    return n;
}

/* max |a - b| over n bytes */
static int max_diff_u8(const uint8_t *a, const uint8_t *b, size_t n) {
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m)
            m = d;
    }
    return m;
}

static double max_diff_f32(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m))
            m = d;   /* NaN propagates */
    }
    return m;
}

/* ------------------------------------------------------------ decode -- */

static dcase_t cases[64];
static int ncases;

/* 0 if file decodes to exactly its reference (within maxdiff), else a
 * short reason in why. */
static int check_case(const dcase_t *c, int from_memory, char *why, size_t nwhy) {
    char rel[300];
    snprintf(rel, sizeof rel, "images/%s", c->file);
    char *path = fixture_dup(rel);
    snprintf(rel, sizeof rel, "images/%s", c->ref);
    char *refpath = fixture_dup(rel);
    size_t rlen;
    uint8_t *ref = read_all(refpath, &rlen);
    free(refpath);
    image_t img;
    err_t err = {{0}};
    int rc;
    if (from_memory) {
        size_t len;
        uint8_t *buf = read_all(path, &len);
        rc = buf ? image_load_memory(&img, buf, len, c->file, 0, &err) : ERR_IO;
        free(buf);
    } else {
        rc = image_load(&img, path, 0, &err);
    }
    int bad = 1;
    if (!ref || rlen != (size_t)c->w * c->h * 3)
        snprintf(why, nwhy, "reference %s missing or wrong size", c->ref);
    else if (rc)
        snprintf(why, nwhy, "rc %d: %s", rc, err.msg);
    else if (img.w != c->w || img.h != c->h)
        snprintf(why, nwhy, "size %dx%d, PIL %dx%d", img.w, img.h, c->w, c->h);
    else {
        int d = max_diff_u8(img.rgb, ref, rlen);
        bad = d > c->maxdiff;
        snprintf(why, nwhy, "max abs diff %d (allowed %d)", d, c->maxdiff);
    }
    if (!rc)
        image_free(&img);
    free(ref);
    free(path);
    return bad;
}

static void test_decode_parity(void) {
    ncases = read_decode_cases(cases, 64);
    TEST_CHECK(ncases >= 25, "decode.txt lists the cases", "found %d", ncases);
    for (int i = 0; i < ncases; i++) {
        char why[600], name[200];
        int bad = check_case(&cases[i], 0, why, sizeof why);
        snprintf(name, sizeof name, "decode %.120s equals PIL convert(RGB)", cases[i].file);
        TEST_CHECK(!bad, name, "%s", why);
    }
    /* the buffer entry point on a few formats */
    const char *mem[] = {"jpeg_baseline.jpg", "png_palette_trns.png", "gif_transparent.gif",
                         "webp_lossless_alpha.webp", "tiff_multipage.tif"};
    for (size_t k = 0; k < sizeof mem / sizeof *mem; k++)
        for (int i = 0; i < ncases; i++)
            if (!strcmp(cases[i].file, mem[k])) {
                char why[600], name[200];
                int bad = check_case(&cases[i], 1, why, sizeof why);
                snprintf(name, sizeof name, "image_load_memory %s equals PIL", mem[k]);
                TEST_CHECK(!bad, name, "%s", why);
            }
}

/* ------------------------------------------------------- bad inputs -- */

static void expect_fail(const char *path, int64_t max_pixels, int want, const char *what) {
    image_t img;
    err_t err = {{0}};
    int rc = image_load(&img, path, max_pixels, &err);
    char name[300];
    snprintf(name, sizeof name, "%s -> error %d", what, want);
    TEST_CHECK(rc == want, name, "rc %d (%s)", rc, err.msg);
    snprintf(name, sizeof name, "%s: message names the file, one line", what);
    TEST_CHECK(strstr(err.msg, path) && !strchr(err.msg, '\n'), name, "'%s'", err.msg);
    snprintf(name, sizeof name, "%s: image left empty", what);
    TEST_CHECK(!img.rgb && !img.w && !img.h, name, "rgb %p %dx%d", (void *)img.rgb, img.w,
               img.h);
    printf("#   %s\n", err.msg);
    if (rc == 0)
        image_free(&img);
}

static void test_bad_inputs(void) {
    char *p;
    expect_fail("tests/fixtures/images/no-such-file.jpg", 0, ERR_IO, "missing file");
    p = fixture_dup("images/bad");
    expect_fail(p, 0, ERR_IO, "a directory");
    free(p);
    const struct { const char *f; int rc; } bad[] = {
        {"images/bad/empty.png", ERR_FORMAT},
        {"images/bad/not_image.png", ERR_FORMAT},
        {"images/bad/truncated.jpg", ERR_FORMAT},
        {"images/bad/truncated_progressive.jpg", ERR_FORMAT},
        {"images/bad/truncated.png", ERR_FORMAT},
        {"images/bad/truncated.webp", ERR_FORMAT},
        {"images/bad/truncated.gif", ERR_FORMAT},
        {"images/bad/bad_crc.png", ERR_FORMAT},
        {"images/bad/bomb.png", ERR_TOO_BIG},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p = fixture_dup(bad[i].f);
        expect_fail(p, 0, bad[i].rc, bad[i].f);
        free(p);
    }
    /* the limit is the caller's: 40x32 = 1280 pixels */
    p = fixture_dup("images/jpeg_baseline.jpg");
    expect_fail(p, 1279, ERR_TOO_BIG, "max_pixels below w*h");
    image_t img;
    err_t err = {{0}};
    int rc = image_load(&img, p, 1280, &err);
    TEST_CHECK(rc == 0 && img.w * img.h == 1280, "max_pixels equal to w*h is accepted",
               "rc %d %s", rc, err.msg);
    if (!rc)
        image_free(&img);
    free(p);
    rc = image_load_memory(&img, "", 0, "buf", 0, &err);
    TEST_CHECK(rc == ERR_FORMAT && strstr(err.msg, "buf"), "empty buffer -> ERR_FORMAT",
               "rc %d %s", rc, err.msg);
}

static void test_fault_injection(void) {
    char *p = fixture_dup("images/png_rgb.png");
    image_t img;
    err_t err = {{0}};
    image_fault_inject(2, ERR_IO);
    int rc1 = image_load(&img, p, 0, &err);
    if (!rc1)
        image_free(&img);
    int rc2 = image_load(&img, p, 0, &err);
    int named = strstr(err.msg, "injected") != NULL;
    int rc3 = image_load(&img, p, 0, &err);
    if (!rc3)
        image_free(&img);
    TEST_CHECK(rc1 == 0 && rc2 == ERR_IO && named && rc3 == 0,
               "fault injection fails exactly the nth load", "rc %d %d %d", rc1, rc2, rc3);
    free(p);
}

/* ----------------------------------------------------------- threads -- */

static void *decode_worker(void *arg) {
    int *failures = arg;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < ncases; i++) {
            char why[600];
            if (check_case(&cases[i], round & 1, why, sizeof why)) {
                printf("# thread: %s: %s\n", cases[i].file, why);
                (*failures)++;
            }
        }
    /* errors concurrently too */
    char *p = fixture_dup("images/bad/truncated.jpg");
    image_t img;
    err_t err;
    int rc = image_load(&img, p, 0, &err);
    if (rc != ERR_FORMAT) {
        printf("# thread: truncated.jpg gave rc %d\n", rc);
        (*failures)++;
    }
    if (!rc)
        image_free(&img);
    free(p);
    return NULL;
}

static void test_threads(void) {
    enum { NT = 4 };
    pthread_t t[NT];
    int failures[NT] = {0};
    for (int i = 0; i < NT; i++)
        pthread_create(&t[i], NULL, decode_worker, &failures[i]);
    int total = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(t[i], NULL);
        total += failures[i];
    }
    TEST_CHECK(total == 0, "4 threads decode every case 3 times, all equal PIL",
               "%d failures", total);
}

/* -------------------------------------------------------- preprocess -- */

static void test_resize_references(void) {
    FILE *f = fopen(test_fixture("images/resize.txt"), "r");
    TEST_CHECK(f != NULL, "resize.txt present", "missing");
    if (!f)
        return;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char in[128], outn[128], rel[300], name[300];
        int w, h, S;
        if (line[0] == '#' || sscanf(line, "%127s %d %d %d %127s", in, &w, &h, &S, outn) != 5)
            continue;
        n++;
        size_t ilen, olen;
        snprintf(rel, sizeof rel, "images/%s", in);
        uint8_t *rgb = read_all(test_fixture(rel), &ilen);
        snprintf(rel, sizeof rel, "images/%s", outn);
        float *ref = (float *)read_all(test_fixture(rel), &olen);
        size_t nout = (size_t)3 * S * S;
        if (!rgb || !ref || ilen != (size_t)w * h * 3 || olen != nout * 4) {
            TEST_CHECK(0, in, "fixture files missing or wrong size");
            free(rgb), free(ref);
            continue;
        }
        float *out = malloc(nout * 4), *naive = malloc(nout * 4);
        image_preprocess(rgb, w, h, (size_t)w * 3, S, out, NULL);
        image_preprocess_naive(rgb, w, h, (size_t)w * 3, S, naive);
        double d = max_diff_f32(out, ref, nout), dn = max_diff_f32(naive, ref, nout);
        printf("# %s %dx%d -> %d: max abs diff %.3g (naive %.3g)\n", in, w, h, S, d, dn);
        snprintf(name, sizeof name, "preprocess %s %dx%d -> %d matches torchvision (1e-4)", in, w,
                 h, S);
        TEST_CHECK(d <= 1e-4, name, "max abs diff %g", d);
        snprintf(name, sizeof name, "preprocess_naive %s matches torchvision (1e-4)", in);
        TEST_CHECK(dn <= 1e-4, name, "max abs diff %g", dn);

        /* the same pixels as a crop of a bigger, poisoned image */
        int W = w + 7, H = h + 5, ox = 3, oy = 2;
        size_t stride = (size_t)W * 3 + 1;
        uint8_t *big = malloc(stride * H);
        memset(big, 255, stride * H);
        for (int y = 0; y < h; y++)
            memcpy(big + (size_t)(y + oy) * stride + ox * 3, rgb + (size_t)y * w * 3,
                   (size_t)w * 3);
        float *out2 = malloc(nout * 4);
        image_preprocess(big + oy * stride + ox * 3, w, h, stride, S, out2, NULL);
        snprintf(name, sizeof name, "preprocess %s as a strided crop is identical", in);
        TEST_CHECK(!memcmp(out, out2, nout * 4), name, "max abs diff %g",
                   max_diff_f32(out, out2, nout));
        free(big), free(out2), free(out), free(naive), free(rgb), free(ref);
    }
    fclose(f);
    TEST_CHECK(n >= 4, "resize.txt has the up, down, mixed and odd cases", "found %d", n);
}

/* fast vs naive on assorted sizes, including 1-pixel and extreme ratios */
static void test_resize_vs_naive(void) {
    const int sz[][3] = {{1, 1, 8}, {1, 9, 5}, {300, 2, 16}, {7, 300, 12}, {129, 65, 64},
                         {64, 64, 64}, {33, 200, 17}, {1, 500, 64}, {3000, 1, 64},
                         {1, 1, 256}};
    uint32_t seed = 12345;
    double worst = 0;
    for (size_t k = 0; k < sizeof sz / sizeof *sz; k++) {
        int w = sz[k][0], h = sz[k][1], S = sz[k][2];
        uint8_t *rgb = malloc((size_t)w * h * 3);
        for (size_t i = 0; i < (size_t)w * h * 3; i++)
            rgb[i] = (uint8_t)((seed = seed * 1664525u + 1013904223u) >> 24);
        float *a = malloc(sizeof(float) * 3 * S * S), *b = malloc(sizeof(float) * 3 * S * S);
        image_preprocess(rgb, w, h, (size_t)w * 3, S, a, NULL);
        image_preprocess_naive(rgb, w, h, (size_t)w * 3, S, b);
        double d = max_diff_f32(a, b, (size_t)3 * S * S);
        if (!(d <= worst))
            worst = d;
        free(rgb), free(a), free(b);
    }
    TEST_CHECK(worst <= 2e-5, "preprocess equals the naive reference on 10 shapes",
               "max abs diff %g", worst);
    /* an empty image (a user's crop can be one) is a data error, not an abort */
    uint8_t px[3] = {0};
    float out[3 * 8 * 8];
    err_t err = {{0}};
    int rc0 = image_preprocess(px, 0, 1, 3, 8, out, &err);
    int rc1 = image_preprocess(px, 1, 0, 3, 8, out, &err);
    TEST_CHECK(rc0 == ERR_INVALID && rc1 == ERR_INVALID && strstr(err.msg, "empty image 1x0"),
               "preprocess of a 0x1 / 1x0 image is ERR_INVALID", "rc %d %d: %s", rc0, rc1,
               err.msg);
}

/* the official predictor's input for micro/image.png (320x240 -> 256) */
static void test_micro_input(void) {
    char *png = fixture_dup("micro/image.png");
    image_t img;
    err_t err = {{0}};
    int rc = image_load(&img, png, 0, &err);
    free(png);
    TEST_CHECK(rc == 0 && img.w == 320 && img.h == 240, "micro/image.png decodes as 320x240",
               "rc %d %s", rc, err.msg);
    if (rc)
        return;
    const int S = 256;
    const size_t n = (size_t)3 * S * S;
    weights_t *wts = NULL;
    rc = weights_open(&wts, test_fixture("micro/expected.safetensors"), &err);
    const int64_t shape[4] = {1, 3, S, S};
    const float *ref = rc ? NULL : weights_get(wts, "input", 4, shape, &err);
    TEST_CHECK(ref != NULL, "expected.safetensors has input [1,3,256,256]", "rc %d %s", rc,
               err.msg);
    if (ref) {
        float *out = malloc(sizeof(float) * n);
        image_preprocess(img.rgb, img.w, img.h, (size_t)img.w * 3, S, out, NULL);
        double d = max_diff_f32(out, ref, n);
        printf("# micro input: max abs diff %.3g\n", d);
        TEST_CHECK(d <= 1e-4, "micro input equals the official transform (1e-4)",
                   "max abs diff %g", d);
        free(out);
    }
    if (wts)
        weights_close(wts);
    image_free(&img);
}

/* ---------------------------------------------------------- png write -- */

static void test_write_png(void) {
    char dir[] = "/tmp/test_image_XXXXXX";
    TEST_CHECK(mkdtemp(dir) != NULL, "temp dir", "mkdtemp failed");
    const int w = 37, h = 21;
    const int chans[] = {1, 3, 4};
    const uint8_t ctype[] = {0, 2, 6};   /* PNG colour types: grey, RGB, RGBA */
    for (int k = 0; k < 3; k++) {
        int c = chans[k];
        uint8_t *px = malloc((size_t)w * h * c);
        for (size_t i = 0; i < (size_t)w * h * c; i++)
            px[i] = (uint8_t)(i * 7 + i / 13);
        char path[300], name[100];
        snprintf(path, sizeof path, "%s/out%d.png", dir, c);
        err_t err = {{0}};
        int rc = image_write_png(path, px, w, h, c, &err);
        snprintf(name, sizeof name, "write %d-channel PNG", c);
        TEST_CHECK(rc == 0, name, "rc %d %s", rc, err.msg);
        size_t len;
        uint8_t *file = read_all(path, &len);
        snprintf(name, sizeof name, "%d-channel PNG is 8-bit colour type %d", c, ctype[k]);
        TEST_CHECK(file && len > 33 && !memcmp(file + 1, "PNG", 3) && file[24] == 8 &&
                       file[25] == ctype[k],
                   name, "header wrong");
        free(file);
        image_t img;
        rc = image_load(&img, path, 0, &err);
        int same = rc == 0 && img.w == w && img.h == h;
        for (int i = 0; same && i < w * h; i++)
            for (int j = 0; j < 3; j++)
                same &= img.rgb[3 * i + j] == px[(size_t)i * c + (c == 1 ? 0 : j)];
        snprintf(name, sizeof name, "%d-channel PNG reads back identical", c);
        TEST_CHECK(same, name, "rc %d %s", rc, err.msg);
        if (!rc)
            image_free(&img);
        unlink(path);
        free(px);
    }
    uint8_t one = 0;
    err_t err = {{0}};
    char path[300];
    snprintf(path, sizeof path, "%s/bad.png", dir);
    TEST_CHECK(image_write_png(path, &one, 1, 1, 2, &err) == ERR_INVALID,
               "2-channel PNG refused", "%s", err.msg);
    TEST_CHECK(image_write_png("/nonexistent-dir/x.png", &one, 1, 1, 1, &err) == ERR_IO,
               "PNG into a missing directory -> ERR_IO", "%s", err.msg);
    rmdir(dir);
}

/* binary PPM (P6, maxval 255), decoded without libvips: the pixels of a
 * decoded fixture round-trip through a PPM with a comment in its header,
 * and malformed headers fail alone with the right class */
static void test_ppm(void) {
    image_t ref, img;
    err_t err = {{0}};
    char *p = fixture_dup("images/jpeg_baseline.jpg");
    int rc = image_load(&ref, p, 0, &err);
    free(p);
    TEST_CHECK(rc == 0, "ppm: the reference decodes", "%s", err.msg);
    if (rc) return;
    size_t n = (size_t)ref.w * ref.h * 3;
    char head[64];
    int hl = snprintf(head, sizeof head, "P6\n# made by test_image\n%d %d\n255\n", ref.w, ref.h);
    uint8_t *buf = malloc((size_t)hl + n + 7);
    CHECK(buf);
    memcpy(buf, head, (size_t)hl);
    memcpy(buf + hl, ref.rgb, n);
    memcpy(buf + hl + n, "garbage", 7);   /* bytes after the pixels are ignored, as in PIL */
    rc = image_load_memory(&img, buf, (size_t)hl + n + 7, "x.ppm", 0, &err);
    TEST_CHECK(rc == 0 && img.w == ref.w && img.h == ref.h && !memcmp(img.rgb, ref.rgb, n),
               "ppm: pixels, size and a header comment", "rc %d %s", rc, err.msg);
    if (!rc) image_free(&img);
    rc = image_load_memory(&img, buf, (size_t)hl + n - 1, "x.ppm", 0, &err);
    TEST_CHECK(rc == ERR_FORMAT && strstr(err.msg, "x.ppm: corrupt or truncated PPM") && !img.rgb,
               "ppm: one pixel byte short -> ERR_FORMAT", "rc %d %s", rc, err.msg);
    rc = image_load_memory(&img, buf, (size_t)hl + n, "x.ppm", (int64_t)ref.w * ref.h - 1, &err);
    TEST_CHECK(rc == ERR_TOO_BIG, "ppm: max_pixels below w*h -> ERR_TOO_BIG", "rc %d %s", rc,
               err.msg);
    free(buf);
    image_free(&ref);
    const struct { const char *b; int rc; const char *what; } bad[] = {
        {"P6", ERR_FORMAT, "magic only"},
        {"P6\n3", ERR_FORMAT, "header cut after the width"},
        {"P6 2 2 255", ERR_FORMAT, "no whitespace byte after maxval"},
        {"P6 2 2 65535\n\0\0", ERR_FORMAT, "16-bit maxval"},
        {"P6 0 3 255\n", ERR_FORMAT, "zero width"},
        {"P6 2 x 255\n", ERR_FORMAT, "a letter for the height"},
        {"P6 99999999999 2 255\n", ERR_FORMAT, "a width past 10^9"},
        {"P6 100000 100000 255\n", ERR_TOO_BIG, "10^10 pixels"},
        {"P6 1 1 255\n\1\2", ERR_FORMAT, "two of three pixel bytes"},
        {"P61 1 255\n\1\2\3", ERR_FORMAT, "no whitespace after the magic"},
        {"P6#c\n1 1 255\n\1\2\3", ERR_FORMAT, "a comment glued to the magic"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = image_load_memory(&img, bad[i].b, strlen(bad[i].b), "bad.ppm", 0, &err);
        char name[96];
        snprintf(name, sizeof name, "ppm: %s -> %s", bad[i].what,
                 bad[i].rc == ERR_TOO_BIG ? "ERR_TOO_BIG" : "ERR_FORMAT");
        TEST_CHECK(rc == bad[i].rc && strncmp(err.msg, "bad.ppm: ", 9) == 0 && !img.rgb, name,
                   "rc %d %s", rc, err.msg);
    }
    rc = image_load_memory(&img, "P6 1 1 255\n\1\2\3", 14, "one.ppm", 0, &err);
    TEST_CHECK(rc == 0 && img.w == 1 && img.h == 1 && img.rgb[0] == 1 && img.rgb[2] == 3,
               "ppm: a 1x1 image", "rc %d %s", rc, err.msg);
    if (!rc) image_free(&img);
    /* \v and \f are whitespace (PIL's b_whitespace) wherever the header
     * takes whitespace, the byte before the pixels included */
    rc = image_load_memory(&img, "P6\f1 1 255\v\1\2\3", 14, "vt.ppm", 0, &err);
    TEST_CHECK(rc == 0 && img.w == 1 && img.h == 1 && img.rgb[0] == 1 && img.rgb[2] == 3,
               "ppm: \\f and \\v as header whitespace", "rc %d %s", rc, err.msg);
    if (!rc) image_free(&img);
}

int main(void) {
    err_t err = {{0}};
    TEST_CHECK(image_init(&err) == 0 && image_init(&err) == 0, "image_init twice", "%s",
               err.msg);
    test_decode_parity();
    test_bad_inputs();
    test_ppm();
    test_fault_injection();
    test_threads();
    test_resize_references();
    test_resize_vs_naive();
    test_micro_input();
    test_write_png();
    return TEST_REPORT();
}
