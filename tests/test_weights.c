/* test_weights.c: checkpoint loading.
 *
 * The micro fixture holds the same tensors as a torch .pt zip and as a
 * safetensors file: both must load to the same key set with bit-identical
 * data. The writer round-trips every dtype, f16/bf16 convert exactly, and
 * every malformed file (generated at test time from the fixtures into a
 * temporary directory: truncations, wrong magic, bad headers, a hand-built
 * pickle calling os.system...) must give a clean negative return and a
 * message naming the file and the problem.
 */
#include <math.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <unzip.h>
#include <zip.h>

#include "test.h"
#include "weights.h"

static char tmpdir[256];

static char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_all(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    if (n && fwrite(b, 1, n, f) != n) { perror(path); exit(2); }
    fclose(f);
}

/* expect_open_fail: weights_open(path) must fail with rc and a message that
 * names the file and contains want. */
static void expect_open_fail(const char *label, const char *path, int rc_want, const char *want) {
    err_t err = {{0}};
    weights_t *w = (weights_t *)1;
    int rc = weights_open(&w, path, &err);
    char name[160];
    snprintf(name, sizeof name, "rejects %s", label);
    TEST_CHECK(rc == rc_want && w == NULL && strstr(err.msg, path) && strstr(err.msg, want), name,
               "rc %d (want %d) msg '%s' (want '%s')", rc, rc_want, err.msg, want);
    if (rc == 0) weights_close(w);
    else printf("    message: %s\n", err.msg);
}

/* write_st: a safetensors file with the given header text and data bytes. */
static void write_st(const char *path, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *b = calloc(1, 8 + hl + data_len);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    write_all(path, b, 8 + hl + data_len);
    free(b);
}

static void test_safetensors_fixture(void) {
    err_t err = {{0}};
    weights_t *w = NULL;
    const char *path = test_fixture("micro/weights.safetensors");
    int rc = weights_open(&w, path, &err);
    TEST_CHECK(rc == 0 && w, "open micro safetensors", "%s", err.msg);
    if (!w) return;
    TEST_CHECK(weights_count(w) == 322, "micro safetensors has 322 tensors", "%d", weights_count(w));
    wtensor_t *t = weights_find(w, "image_encoder.trunk.patch_embed.proj.weight");
    TEST_CHECK(t && t->ndim == 4 && t->shape[0] == 16 && t->shape[1] == 3 && t->shape[2] == 7 &&
                   t->shape[3] == 7 && t->numel == 16 * 3 * 49 && t->dtype == WDT_F32,
               "patch_embed weight is F32 [16,3,7,7]", "t %p", (void *)t);
    int64_t shp[4] = {16, 3, 7, 7};
    const float *d = weights_get(w, "image_encoder.trunk.patch_embed.proj.weight", 4, shp, &err);
    TEST_CHECK(d && t && d == t->data && isfinite(d[0]), "weights_get points into the mapping", "%s", err.msg);
    int64_t bad[4] = {16, 3, 7, 8};
    d = weights_get(w, "image_encoder.trunk.patch_embed.proj.weight", 4, bad, &err);
    TEST_CHECK(!d && strstr(err.msg, path) &&
                   strstr(err.msg, "key image_encoder.trunk.patch_embed.proj.weight: expected shape "
                                   "[16,3,7,8], found [16,3,7,7]"),
               "weights_get wrong shape names file, key, shapes", "%s", err.msg);
    d = weights_get(w, "image_encoder.trunk.patch_embed.proj.weight", 3, shp, &err);
    TEST_CHECK(!d && strstr(err.msg, "expected shape [16,3,7], found [16,3,7,7]"),
               "weights_get wrong ndim", "%s", err.msg);
    d = weights_get(w, "no.such.key", 1, shp, &err);
    TEST_CHECK(!d && strstr(err.msg, path) && strstr(err.msg, "key no.such.key: missing"),
               "weights_get missing key", "%s", err.msg);
    /* check_unused: everything but patch_embed is unused */
    const char *const skip_none[] = {NULL};
    rc = weights_check_unused(w, skip_none, &err);
    TEST_CHECK(rc == ERR_FORMAT && strstr(err.msg, path) && strstr(err.msg, "unexpected key"),
               "check_unused reports an unasked key", "%s", err.msg);
    /* ask for everything but the image_encoder.neck tensors, skip those by prefix */
    int fails = 0;
    for (int i = 0; i < weights_count(w); i++) {
        wtensor_t *x = weights_at(w, i);
        if (!strncmp(x->name, "image_encoder.neck.", 19)) continue;
        if (!weights_get(w, x->name, x->ndim, x->shape, &err)) fails++;
    }
    const char *const skip[] = {"image_encoder.neck.", NULL};
    rc = weights_check_unused(w, skip, &err);
    TEST_CHECK(fails == 0 && rc == 0, "check_unused passes when all asked or skipped", "%d %s", fails, err.msg);
    rc = weights_check_unused(w, skip_none, &err);
    TEST_CHECK(rc == ERR_FORMAT && strstr(err.msg, "unexpected key image_encoder.neck."),
               "check_unused names the unexpected key", "%s", err.msg);
    weights_close(w);
}

static void test_writer_roundtrip(void) {
    /* Odd-sized U8 / I8 tensors first so later F32 data is misaligned in
     * the file: the reader must copy it to aligned memory. */
    uint8_t u8[3] = {1, 2, 255};
    int8_t i8[5] = {-128, -1, 0, 1, 127};
    float f32[6] = {1.5f, -2.0f, 0.0f, 1e-30f, 3.25f, -0.0f};
    int32_t i32[2] = {-7, 1 << 30};
    int64_t i64[1] = {INT64_C(-5000000000)};
    /* f16: 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), inf, 0.5+2^-11 */
    uint16_t f16[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3801};
    float f16_want[6] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f, INFINITY, 0.50048828125f};
    uint16_t bf16[3] = {0x3F80, 0xC049, 0x0001}; /* 1.0, -3.140625, tiny subnormal */
    st_entry_t e[] = {
        {"u8", WDT_U8, 1, {3}, u8},
        {"i8", WDT_I8, 2, {5, 1}, i8},
        {"a.f32", WDT_F32, 2, {2, 3}, f32},
        {"i32", WDT_I32, 1, {2}, i32},
        {"i64", WDT_I64, 0, {0}, i64},
        {"f16", WDT_F16, 1, {6}, f16},
        {"bf16", WDT_BF16, 1, {3}, bf16},
        {"empty", WDT_F32, 2, {0, 4}, f32},
    };
    int n = (int)(sizeof e / sizeof e[0]);
    err_t err = {{0}};
    const char *p = tmp_path("rt.safetensors");
    int rc = safetensors_write(p, e, n, &err);
    TEST_CHECK(rc == 0, "safetensors_write", "%s", err.msg);
    size_t len;
    unsigned char *b = read_all(p, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    TEST_CHECK(hl % 8 == 0 && b[8 + hl - 1] == ' ' && !memcmp(b + 8, "{\"a.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                                                           "\"data_offsets\":[8,32]},\"bf16\":", 66),
               "writer header sorted, compact, space padded to 8", "%.*s", (int)hl, b + 8);
    free(b);
    weights_t *w = NULL;
    rc = weights_open(&w, p, &err);
    TEST_CHECK(rc == 0 && w && weights_count(w) == n, "reopen written safetensors", "%s", err.msg);
    if (!w) return;
    int same = 1;
    for (int i = 0; i < n; i++) {
        wtensor_t *t = weights_find(w, e[i].name);
        size_t esz = e[i].dtype == WDT_I64 ? 8 : e[i].dtype == WDT_F32 || e[i].dtype == WDT_I32 ? 4
                   : e[i].dtype == WDT_F16 || e[i].dtype == WDT_BF16 ? 2 : 1;
        if (!t || t->dtype != e[i].dtype || t->ndim != e[i].ndim) { same = 0; continue; }
        if (((uintptr_t)t->data) % esz) same = 0;
        if (t->numel && memcmp(t->data, e[i].data, (size_t)t->numel * esz)) same = 0;
    }
    TEST_CHECK(same, "every dtype round-trips bit-exactly and aligned", "mismatch");
    const float *f = weights_get(w, "a.f32", 2, (int64_t[]){2, 3}, &err);
    TEST_CHECK(f && !memcmp(f, f32, sizeof f32), "weights_get f32 (was misaligned in file)", "%s", err.msg);
    f = weights_get(w, "f16", 1, (int64_t[]){6}, &err);
    TEST_CHECK(f && !memcmp(f, f16_want, sizeof f16_want), "f16 converts exactly (subnormal, inf)", "%s",
               err.msg);
    const float *f2 = weights_get(w, "f16", 1, (int64_t[]){6}, &err);
    TEST_CHECK(f2 == f, "f16 conversion is cached", "%p %p", (void *)f, (void *)f2);
    f = weights_get(w, "bf16", 1, (int64_t[]){3}, &err);
    TEST_CHECK(f && f[0] == 1.0f && f[1] == -3.140625f && f[2] > 0 && f[2] < 1e-38f, "bf16 converts exactly",
               "%s", err.msg);
    f = weights_get(w, "i32", 1, (int64_t[]){2}, &err);
    TEST_CHECK(!f && strstr(err.msg, "key i32: dtype I32, expected a float tensor"),
               "weights_get refuses an int tensor", "%s", err.msg);
    f = weights_get(w, "empty", 2, (int64_t[]){0, 4}, &err);
    TEST_CHECK(f != NULL, "zero-size tensor", "%s", err.msg);
    weights_close(w);

    rc = safetensors_write("/nonexistent-dir/x.safetensors", e, n, &err);
    TEST_CHECK(rc == ERR_IO && strstr(err.msg, "/nonexistent-dir/x.safetensors"), "writer reports ERR_IO",
               "%d %s", rc, err.msg);
}

static void test_safetensors_malformed(void) {
    size_t len;
    unsigned char *b = read_all(test_fixture("micro/weights.safetensors"), &len);
    TEST_CHECK(b != NULL, "read safetensors fixture", "missing");
    if (!b) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    size_t cuts[] = {20, 8 + hl / 2, 8 + hl, 8 + hl + 1000, len - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        char nm[64], label[80];
        snprintf(nm, sizeof nm, "cut%zu.safetensors", cuts[k]);
        const char *p = tmp_path(nm);
        write_all(p, b, cuts[k]);
        snprintf(label, sizeof label, "safetensors truncated at %zu of %zu", cuts[k], len);
        expect_open_fail(label, p, ERR_FORMAT, "truncated");
    }
    free(b);

    expect_open_fail("missing file", tmp_path("does-not-exist.pt"), ERR_IO, "No such file");
    write_all(tmp_path("zero.pt"), "", 0);
    expect_open_fail("zero-byte file", tmp_path("zero.pt"), ERR_FORMAT, "empty file");
    expect_open_fail("a directory", tmpdir, ERR_IO, "not a regular file");
    b = read_all(test_fixture("micro/image.png"), &len);
    write_all(tmp_path("image.safetensors"), b, len);
    free(b);
    expect_open_fail("a PNG", tmp_path("image.safetensors"), ERR_FORMAT, "neither a torch .pt (zip) nor a safetensors");

    static const struct { const char *label, *header; size_t data; const char *want; } c[] = {
        {"bad JSON header", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4,
         "safetensors header: line 1 column"},
        {"offsets past the end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
         "past the end of the data"},
        {"unknown dtype", "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
         "tensor 'a': unsupported dtype 'F64'"},
        {"overlapping tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlaps another tensor"},
        {"a gap in the data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
         "leaves a gap"},
        {"numel * dtype size != bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         "shape and dtype need 12"},
        {"trailing data", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 8,
         "4 bytes of data after the last tensor"},
        {"header not an object", "[1]     ", 0, "neither a torch .pt (zip) nor a safetensors"},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "bad shape"},
        {"overflowing shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
         "\"data_offsets\":[0,4]}}", 4, "shape too large"},
        {"missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "needs dtype, shape"},
        {"duplicate key", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "duplicate key"},
        {"too many dims", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
         "7 dims"},
        {"bad __metadata__", "{\"__metadata__\":3}", 0, "__metadata__ is not an object"},
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "bad%zu.safetensors", k);
        write_st(tmp_path(nm), c[k].header, c[k].data);
        expect_open_fail(c[k].label, tmp_path(nm), ERR_FORMAT, c[k].want);
    }
    /* an 8-byte length far past the end */
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    write_all(tmp_path("huge.safetensors"), huge, sizeof huge);
    expect_open_fail("header length past the end", tmp_path("huge.safetensors"), ERR_FORMAT, "truncated");
    /* __metadata__ allowed, empty data fine */
    write_st(tmp_path("meta.safetensors"), "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    err_t err = {{0}};
    weights_t *w = NULL;
    int rc = weights_open(&w, tmp_path("meta.safetensors"), &err);
    TEST_CHECK(rc == 0 && weights_count(w) == 1 && weights_find(w, "x"), "__metadata__ accepted", "%s", err.msg);
    weights_close(w);
    /* a transformers-layout file (a mask_decoder. name) with two unknown
     * names over 255 bytes that share their first 255: both kept whole */
    char longa[400], longb[400], hdr[1200];
    memset(longa, 'q', 300), longa[300] = 'a', longa[301] = 0;
    memcpy(longb, longa, 302), longb[300] = 'b';
    snprintf(hdr, sizeof hdr, "{\"mask_decoder.iou_token.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[0,4]},\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
             "\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", longa, longb);
    write_st(tmp_path("hflong.safetensors"), hdr, 12);
    w = NULL;
    rc = weights_open(&w, tmp_path("hflong.safetensors"), &err);
    TEST_CHECK(rc == 0 && weights_count(w) == 3 && weights_find(w, longa) && weights_find(w, longb) &&
                   weights_find(w, "sam_mask_decoder.iou_token.weight"),
               "transformers layout: long unknown names kept whole", "rc %d: %s", rc, err.msg);
    if (!rc) weights_close(w);
}

/* write_zip: a zip (stored or deflated entries) of n named byte strings. */
static void write_zip(const char *path, int n, const char *const *names, const void *const *data,
                      const size_t *lens, int deflate) {
    zipFile z = zipOpen64(path, APPEND_STATUS_CREATE);
    if (!z) { fprintf(stderr, "zipOpen64 %s failed\n", path); exit(2); }
    for (int i = 0; i < n; i++) {
        zip_fileinfo zi = {0};
        if (zipOpenNewFileInZip64(z, names[i], &zi, NULL, 0, NULL, 0, NULL, deflate ? Z_DEFLATED : 0,
                                  deflate ? Z_DEFAULT_COMPRESSION : 0, 0) != ZIP_OK ||
            zipWriteInFileInZip(z, data[i], (unsigned)lens[i]) != ZIP_OK || zipCloseFileInZip(z) != ZIP_OK) {
            fprintf(stderr, "zip write %s failed\n", path);
            exit(2);
        }
    }
    zipClose(z, NULL);
}

/* same_tensors: every tensor of a is in b with the same dtype, shape and
 * bytes; returns the number of differences (and names the first). */
static int same_tensors(weights_t *a, weights_t *b, char *first, size_t cap) {
    int bad = 0;
    for (int i = 0; i < weights_count(a); i++) {
        wtensor_t *x = weights_at(a, i), *y = weights_find(b, x->name);
        size_t esz = x->dtype == WDT_I64 ? 8 : x->dtype == WDT_F32 || x->dtype == WDT_I32 ? 4
                   : x->dtype == WDT_F16 || x->dtype == WDT_BF16 ? 2 : 1;
        int ok = y && y->dtype == x->dtype && y->ndim == x->ndim && y->numel == x->numel;
        for (int d = 0; ok && d < x->ndim; d++) ok = x->shape[d] == y->shape[d];
        if (ok && x->numel) ok = !memcmp(x->data, y->data, (size_t)x->numel * esz);
        if (!ok && !bad++) snprintf(first, cap, "%s", x->name);
    }
    return bad;
}

static void test_pt_fixture(void) {
    err_t err = {{0}};
    weights_t *pt = NULL, *st = NULL;
    int rc = weights_open(&pt, test_fixture("micro/weights.pt"), &err);
    TEST_CHECK(rc == 0 && pt, "open micro .pt", "%s", err.msg);
    rc = weights_open(&st, test_fixture("micro/weights.safetensors"), &err);
    TEST_CHECK(rc == 0 && st, "open micro safetensors", "%s", err.msg);
    if (pt && st) {
        char first[200] = "";
        TEST_CHECK(weights_count(pt) == weights_count(st) && weights_count(pt) == 322,
                   "micro .pt and safetensors: same key count", "%d vs %d", weights_count(pt), weights_count(st));
        int d1 = same_tensors(pt, st, first, sizeof first), d2 = same_tensors(st, pt, first, sizeof first);
        TEST_CHECK(d1 == 0 && d2 == 0, "micro .pt and safetensors: same keys, bit-identical tensors",
                   "%d/%d differ, first %s", d1, d2, first);
        wtensor_t *t = weights_find(pt, "image_encoder.trunk.patch_embed.proj.weight");
        TEST_CHECK(t && t->ndim == 4 && t->shape[0] == 16 && t->shape[1] == 3 && t->shape[2] == 7 &&
                       t->shape[3] == 7 && t->dtype == WDT_F32,
                   ".pt patch_embed weight is F32 [16,3,7,7]", "t %p", (void *)t);
    }
    weights_close(pt);
    weights_close(st);

    /* torch layouts beyond the official checkpoints: OrderedDict with
     * _metadata (BUILD), views, non-contiguous, f16/bf16/i64/u8, 0-dim,
     * nn.Parameter, deflated entries, a bare state_dict. */
    weights_t *ex = NULL;
    rc = weights_open(&ex, test_fixture("pt-variants/expected.safetensors"), &err);
    TEST_CHECK(rc == 0, "open pt-variants expected", "%s", err.msg);
    const char *vs[] = {"pt-variants/variants.pt", "pt-variants/deflated.pt", "pt-variants/bare.pt"};
    for (int k = 0; k < 3 && ex; k++) {
        weights_t *w = NULL;
        char name[120], first[200] = "";
        rc = weights_open(&w, test_fixture(vs[k]), &err);
        snprintf(name, sizeof name, "open %s", vs[k]);
        TEST_CHECK(rc == 0 && w, name, "%s", err.msg);
        if (!w) continue;
        int d1 = same_tensors(w, ex, first, sizeof first);
        int d2 = k < 2 ? same_tensors(ex, w, first, sizeof first) : 0;
        snprintf(name, sizeof name, "%s matches expected tensors bit for bit", vs[k]);
        TEST_CHECK(d1 == 0 && d2 == 0 && weights_count(w) == (k < 2 ? weights_count(ex) : 2), name,
                   "%d/%d differ, first %s, count %d", d1, d2, first, weights_count(w));
        if (k == 0) {
            wtensor_t *t = weights_find(w, "x.scalar");
            TEST_CHECK(t && t->ndim == 0 && t->numel == 1 && *(const float *)t->data == 2.5f, "0-dim tensor",
                       "%p", (void *)t);
            const float *h = weights_get(w, "x.f16", 1, (int64_t[]){4}, &err);
            TEST_CHECK(h && h[0] == 1.0f && h[1] == -2.5f && h[2] == 65504.0f, "f16 tensor from .pt", "%s", err.msg);
        }
        weights_close(w);
    }
    weights_close(ex);
}

/* pk_tensor: a hand-built pickle {name: tensor} for one storage "0". */
static size_t pk_tensor(unsigned char *b, const char *stype, int numel, int size, int stride, int offset) {
    size_t n = 0;
#define PUT(s) (memcpy(b + n, s, sizeof(s) - 1), n += sizeof(s) - 1)
    PUT("\x80\x02}q\x00X\x01\x00\x00\x00" "w");
    PUT("ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage");
    n += (size_t)sprintf((char *)b + n, "ctorch\n%s\n", stype);
    PUT("X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpu");
    b[n++] = 'K', b[n++] = (unsigned char)numel;
    PUT("tQ");
    b[n++] = 'K', b[n++] = (unsigned char)offset;
    b[n++] = 'K', b[n++] = (unsigned char)size, b[n++] = 0x85;
    b[n++] = 'K', b[n++] = (unsigned char)stride, b[n++] = 0x85;
    PUT("\x89)tRs.");
#undef PUT
    return n;
}

static void test_pt_malformed(void) {
    size_t len;
    unsigned char *b = read_all(test_fixture("micro/weights.pt"), &len);
    TEST_CHECK(b != NULL, "read .pt fixture", "missing");
    if (!b) return;
    size_t cuts[] = {10, 100, len / 2, len - 200, len - 22, len - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        char nm[64], label[80];
        snprintf(nm, sizeof nm, "cut%zu.pt", cuts[k]);
        write_all(tmp_path(nm), b, cuts[k]);
        snprintf(label, sizeof label, ".pt truncated at %zu of %zu", cuts[k], len);
        expect_open_fail(label, tmp_path(nm), ERR_FORMAT, "truncated");
    }
    /* rename weights/data.pkl (local header and directory) */
    for (size_t i = 0; i + 16 <= len; i++)
        if (!memcmp(b + i, "weights/data.pkl", 16)) b[i + 15] = 'X';
    write_all(tmp_path("nopkl.pt"), b, len);
    expect_open_fail("a zip without data.pkl", tmp_path("nopkl.pt"), ERR_FORMAT, "without <name>/data.pkl");
    free(b);

    /* the micro data.pkl alone: storages missing; with a short storage */
    weights_t *w = NULL;
    err_t err = {{0}};
    unsigned char pkl[512];
    static const struct { const char *label; const char *pickle; size_t plen; int with_storage; size_t sbytes;
                          const char *want; } c[] = {
        {"forbidden GLOBAL os.system", "\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.", 31, 0, 0,
         "forbidden global os.system"},
        {"forbidden STACK_GLOBAL builtins.eval", "\x80\x04\x8c\x08" "builtins\x8c\x04" "eval\x93\x8c\x01x\x85R.", 22, 0, 0,
         "forbidden global builtins.eval"},
        {"forbidden torch global", "\x80\x02" "ctorch\nload\n.", 15, 0, 0, "forbidden global torch.load"},
        {"unknown opcode", "\x80\x02\xff", 3, 0, 0, "unsupported pickle opcode 0xff"},
        {"pickle without STOP", "\x80\x02}", 3, 0, 0, "truncated pickle"},
        {"pickle without tensors", "\x80\x02}X\x01\x00\x00\x00" "aK\x01s.", 13, 0, 0, "no tensor table"},
        {"BINGET of an unset memo", "\x80\x02h\x05.", 5, 0, 0, "unset memo slot"},
        {"stack underflow", "\x80\x02s.", 4, 0, 0, "stack underflow"},
        {"BINUNICODE past the end", "\x80\x02X\xff\x00\x00\x00" "ab", 9, 0, 0, "truncated pickle"},
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "bad%zu.pt", k);
        const char *names[] = {"archive/data.pkl", "archive/version"};
        const void *data[] = {c[k].pickle, "3\n"};
        size_t lens[] = {c[k].plen, 2};
        write_zip(tmp_path(nm), 2, names, data, lens, 0);
        expect_open_fail(c[k].label, tmp_path(nm), ERR_FORMAT, c[k].want);
    }

    /* hand-built tensor pickles: the builder itself must load */
    float four = 4.0f;
    float two[2] = {1.0f, 2.0f};
    const char *names[] = {"archive/data.pkl", "archive/data/0", "archive/byteorder"};
    size_t pl = pk_tensor(pkl, "FloatStorage", 1, 1, 1, 0);
    const void *data[] = {pkl, &four, "little"};
    size_t lens[] = {pl, 4, 6};
    write_zip(tmp_path("ok.pt"), 3, names, data, lens, 0);
    int rc = weights_open(&w, tmp_path("ok.pt"), &err);
    TEST_CHECK(rc == 0 && weights_count(w) == 1 && *weights_get(w, "w", 1, (int64_t[]){1}, &err) == 4.0f,
               "hand-built bare state_dict loads", "%s", err.msg);
    weights_close(w);
    w = NULL;
    write_zip(tmp_path("nostorage.pt"), 1, names, data, lens, 0);
    expect_open_fail("storage entry missing", tmp_path("nostorage.pt"), ERR_FORMAT, "archive/data/0 missing");
    lens[1] = 2;
    write_zip(tmp_path("short.pt"), 2, names, data, lens, 0);
    expect_open_fail("storage shorter than its numel", tmp_path("short.pt"), ERR_FORMAT, "holds 2 bytes");
    lens[1] = 4;
    data[2] = "big\0\0\0", lens[2] = 3;
    write_zip(tmp_path("big.pt"), 3, names, data, lens, 0);
    expect_open_fail("big-endian byteorder", tmp_path("big.pt"), ERR_FORMAT, "big-endian");
    data[1] = two, lens[1] = 8;
    pl = pk_tensor(pkl, "DoubleStorage", 1, 1, 1, 0);
    lens[0] = pl;
    write_zip(tmp_path("double.pt"), 2, names, data, lens, 0);
    expect_open_fail("a float64 tensor", tmp_path("double.pt"), ERR_FORMAT, "tensor w: unsupported dtype (torch.DoubleStorage)");
    pl = pk_tensor(pkl, "FloatStorage", 2, 2, 1, 1);
    lens[0] = pl;
    write_zip(tmp_path("past.pt"), 2, names, data, lens, 0);
    expect_open_fail("a view past its storage", tmp_path("past.pt"), ERR_FORMAT, "reaches past its storage");
    pl = pk_tensor(pkl, "FloatStorage", 2, 1, 1, 1);
    lens[0] = pl;
    write_zip(tmp_path("offset.pt"), 2, names, data, lens, 1);
    rc = weights_open(&w, tmp_path("offset.pt"), &err);
    TEST_CHECK(rc == 0 && *weights_get(w, "w", 1, (int64_t[]){1}, &err) == 2.0f,
               "deflated storage, view at an offset", "%s", err.msg);
    weights_close(w);
    /* corrupt a deflated pickle: CRC or inflate error, cleanly */
    len = 0;
    b = read_all(tmp_path("offset.pt"), &len);
    for (size_t i = 30 + 16; i < 30 + 16 + 8 && i < len; i++) b[i] ^= 0x5a;
    write_all(tmp_path("crc.pt"), b, len);
    free(b);
    expect_open_fail("a corrupt deflated data.pkl", tmp_path("crc.pt"), ERR_FORMAT, "data.pkl");
}

/* pk_int: a pickle integer: BININT1 for 0..255, else LONG1 with 8 bytes. */
static size_t pk_int(unsigned char *b, int64_t v) {
    if (v >= 0 && v < 256) {
        b[0] = 'K', b[1] = (unsigned char)v;
        return 2;
    }
    b[0] = 0x8a, b[1] = 8;
    for (int i = 0; i < 8; i++) b[2 + i] = (unsigned char)((uint64_t)v >> (8 * i));
    return 10;
}

/* pk_view: like pk_tensor, any storage numel, offset, sizes and strides. */
static size_t pk_view(unsigned char *b, const char *stype, int64_t numel, int64_t offset, int ndim,
                      const int64_t *size, const int64_t *stride) {
    size_t n = 0;
#define PUT(s) (memcpy(b + n, s, sizeof(s) - 1), n += sizeof(s) - 1)
    PUT("\x80\x02}q\x00X\x01\x00\x00\x00" "w");
    PUT("ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage");
    n += (size_t)sprintf((char *)b + n, "ctorch\n%s\n", stype);
    PUT("X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpu");
    n += pk_int(b + n, numel);
    PUT("tQ");
    n += pk_int(b + n, offset);
    b[n++] = '(';
    for (int d = 0; d < ndim; d++) n += pk_int(b + n, size[d]);
    b[n++] = 't', b[n++] = '(';
    for (int d = 0; d < ndim; d++) n += pk_int(b + n, stride[d]);
    PUT("t\x89)tRs.");
#undef PUT
    return n;
}

/* test_pt_hostile: views whose arithmetic overflows (issue: size 17 with
 * stride 2^60 wrapped to 0, passed the storage check and was read at
 * base + idx * 2^60), storages whose byte size overflows, lying zip sizes:
 * each is refused with ERR_FORMAT and a message naming the reason. A
 * stride-0 expansion (legal in torch) still loads. */
static void test_pt_hostile(void) {
    static const struct {
        const char *label, *stype;
        int64_t numel, offset;
        int ndim;
        int64_t size[3], stride[3];
        const char *want;
    } c[] = {
        {"size 17 stride 2^60 (wraps to 0)", "ByteStorage", 64, 0, 1, {17}, {INT64_C(1) << 60},
         "view (size 17, stride 1152921504606846976 in dim 0) overflows"},
        {"two dims whose reach sums past 2^63", "ByteStorage", 64, 0, 2, {2, 2},
         {INT64_C(1) << 62, INT64_C(1) << 62}, "overflows"},
        {"negative stride", "ByteStorage", 64, 0, 1, {4}, {-1}, "bad tensor size or stride"},
        {"negative size", "ByteStorage", 64, 0, 1, {-4}, {1}, "bad tensor size or stride"},
        {"negative storage offset", "ByteStorage", 64, -8, 1, {4}, {1}, "bad tensor storage offset"},
        {"huge storage offset", "FloatStorage", 16, INT64_C(1) << 62, 1, {1}, {1},
         "storage offset 4611686018427387904 is past its storage of 16 elements"},
        {"huge storage offset, empty view", "FloatStorage", 16, INT64_C(1) << 62, 1, {0}, {1},
         "is past its storage"},
        {"shape product overflows int64", "ByteStorage", 64, 0, 3, {INT64_C(1) << 32, INT64_C(1) << 32,
         INT64_C(1) << 32}, {0, 0, 0}, "shape overflows or exceeds"},
        {"shape product over the element limit", "ByteStorage", 64, 0, 2, {INT64_C(1) << 21,
         INT64_C(1) << 21}, {0, 0}, "shape overflows or exceeds"},
        {"storage numel * element size overflows", "FloatStorage", INT64_C(1) << 62, 0, 1, {1}, {1},
         "holds 64 bytes, 4611686018427387904 elements of 4 expected"},
        {"storage numel larger than its entry", "LongStorage", 9, 0, 1, {1}, {1},
         "holds 64 bytes, 9 elements of 8 expected"},
        {"view one past its storage", "FloatStorage", 16, 15, 1, {2}, {1}, "reaches past its storage"},
    };
    unsigned char pkl[512], storage[64];
    for (int i = 0; i < 64; i++) storage[i] = (unsigned char)i;
    const char *names[] = {"archive/data.pkl", "archive/data/0", "archive/byteorder"};
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "hostile%zu.pt", k);
        size_t pl = pk_view(pkl, c[k].stype, c[k].numel, c[k].offset, c[k].ndim, c[k].size, c[k].stride);
        const void *data[] = {pkl, storage, "little"};
        size_t lens[] = {pl, sizeof storage, 6};
        write_zip(tmp_path(nm), 3, names, data, lens, 0);
        expect_open_fail(c[k].label, tmp_path(nm), ERR_FORMAT, c[k].want);
    }
    /* the same builder with sane numbers loads: a stride-0 expansion and a
     * transposed view are gathered from the storage */
    err_t err = {{0}};
    weights_t *w = NULL;
    size_t pl = pk_view(pkl, "ByteStorage", 64, 3, 1, (int64_t[]){5}, (int64_t[]){0});
    const void *data[] = {pkl, storage, "little"};
    size_t lens[] = {pl, sizeof storage, 6};
    write_zip(tmp_path("expand.pt"), 3, names, data, lens, 0);
    int rc = weights_open(&w, tmp_path("expand.pt"), &err);
    wtensor_t *t = rc ? NULL : weights_find(w, "w");
    const unsigned char *u = t ? t->data : NULL;
    TEST_CHECK(u && t->numel == 5 && u[0] == 3 && u[4] == 3, "stride-0 view loads (5 copies of element 3)",
               "%s", err.msg);
    weights_close(w);
    pl = pk_view(pkl, "ByteStorage", 64, 1, 2, (int64_t[]){3, 2}, (int64_t[]){1, 8});
    lens[0] = pl;
    write_zip(tmp_path("transposed.pt"), 3, names, data, lens, 0);
    rc = weights_open(&w, tmp_path("transposed.pt"), &err);
    t = rc ? NULL : weights_find(w, "w");
    u = t ? t->data : NULL;
    TEST_CHECK(u && t->numel == 6 && u[0] == 1 && u[1] == 9 && u[2] == 2 && u[5] == 11,
               "non-contiguous view at an offset is gathered", "%s", err.msg);
    weights_close(w);

    /* a zip directory that lies: data.pkl deflated to a few bytes but
     * claiming 2 GiB uncompressed must not be allocated */
    pl = pk_tensor(pkl, "FloatStorage", 1, 1, 1, 0);
    float four = 4.0f;
    const void *d2[] = {pkl, &four, "little"};
    size_t l2[] = {pl, 4, 6};
    write_zip(tmp_path("liar.pt"), 3, names, d2, l2, 1);
    size_t len;
    unsigned char *b = read_all(tmp_path("liar.pt"), &len);
    int patched = 0;
    for (size_t i = 0; b && i + 46 + 16 <= len; i++)
        if (!memcmp(b + i, "PK\x01\x02", 4) && !memcmp(b + i + 46, "archive/data.pkl", 16)) {
            b[i + 24] = 0, b[i + 25] = 0, b[i + 26] = 0, b[i + 27] = 0x80; /* 2 GiB */
            patched++;
        }
    write_all(tmp_path("liar.pt"), b, len);
    free(b);
    TEST_CHECK(patched == 1, "patched the directory's uncompressed size", "%d", patched);
    expect_open_fail("a zip entry claiming 2 GiB from a few bytes", tmp_path("liar.pt"), ERR_FORMAT,
                     "do not fit a");

    /* safetensors: offsets, shapes and header lengths near the int64 edge */
    static const struct { const char *label, *header; size_t data; const char *want; } st[] = {
        {"data_offsets near 2^63", "{\"a\":{\"dtype\":\"U8\",\"shape\":[7],"
         "\"data_offsets\":[9223372036854775800,9223372036854775807]}}", 8, "past the end of the data"},
        {"data_offsets beyond int64", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
         "\"data_offsets\":[0,18446744073709551615]}}", 8, "bad data_offsets"},
        {"shape bytes overflow int64", "{\"a\":{\"dtype\":\"I64\",\"shape\":[2305843009213693952],"
         "\"data_offsets\":[0,8]}}", 8, "shape too large"},
        {"shape product overflows int64", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}", 8, "shape too large"},
    };
    for (size_t k = 0; k < sizeof st / sizeof st[0]; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "hostile%zu.safetensors", k);
        write_st(tmp_path(nm), st[k].header, st[k].data);
        expect_open_fail(st[k].label, tmp_path(nm), ERR_FORMAT, st[k].want);
    }
    /* a zero dim makes huge ones harmless (0 elements, as the safetensors
     * reader's checked product says): loads */
    write_st(tmp_path("zerohuge.safetensors"), "{\"a\":{\"dtype\":\"U8\",\"shape\":[0,9223372036854775807,"
             "9223372036854775807],\"data_offsets\":[0,0]}}", 0);
    rc = weights_open(&w, tmp_path("zerohuge.safetensors"), &err);
    t = rc ? NULL : weights_find(w, "a");
    TEST_CHECK(t && t->numel == 0, "shape [0, 2^63-1, 2^63-1] loads as an empty tensor", "%s", err.msg);
    weights_close(w);
    /* header lengths: 2^63 - 1 (8 + it overflows) and 2^64 - 1 */
    unsigned char hl[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    write_all(tmp_path("hlen63.safetensors"), hl, sizeof hl);
    expect_open_fail("header length 2^63 - 1", tmp_path("hlen63.safetensors"), ERR_FORMAT, "truncated");
    hl[7] = 0xff;
    write_all(tmp_path("hlen64.safetensors"), hl, sizeof hl);
    expect_open_fail("header length 2^64 - 1", tmp_path("hlen64.safetensors"), ERR_FORMAT, "truncated");
}

static void test_random_mode(void) {
    weights_t *a = NULL, *b = NULL, *c = NULL;
    err_t err = {{0}};
    TEST_CHECK(weights_open_random(&a, 42) == 0 && weights_open_random(&b, 42) == 0 &&
                   weights_open_random(&c, 43) == 0,
               "open random mode", "failed");
    if (!a || !b || !c) return;
    int64_t w2[2] = {256, 1024}, nb[1] = {256};
    const float *wa = weights_get(a, "blocks.0.mlp.layers.0.weight", 2, w2, &err);
    const float *na = weights_get(a, "blocks.0.norm1.weight", 1, nb, &err);
    const float *ba = weights_get(a, "blocks.0.mlp.layers.0.bias", 1, nb, &err);
    /* b asks in another order: values depend on seed and name only */
    const float *bb = weights_get(b, "blocks.0.mlp.layers.0.bias", 1, nb, &err);
    const float *wb = weights_get(b, "blocks.0.mlp.layers.0.weight", 2, w2, &err);
    const float *wc = weights_get(c, "blocks.0.mlp.layers.0.weight", 2, w2, &err);
    TEST_CHECK(wa && na && ba && wb && bb && wc, "random weights_get serves any name", "%s", err.msg);
    if (!wa || !na || !ba || !wb || !bb || !wc) goto out;
    TEST_CHECK(!memcmp(wa, wb, 256 * 1024 * 4) && !memcmp(ba, bb, 256 * 4),
               "random values depend only on seed and name", "differ");
    TEST_CHECK(memcmp(wa, wc, 256 * 1024 * 4) != 0, "another seed gives other values", "same");
    double s1 = 0, s2 = 0;
    for (int i = 0; i < 256 * 1024; i++) s1 += wa[i], s2 += (double)wa[i] * wa[i];
    double mean = s1 / (256 * 1024), sd = sqrt(s2 / (256 * 1024) - mean * mean);
    TEST_CHECK(fabs(mean) < 0.001 && fabs(sd - 1.0 / 32.0) < 0.001, "matrix ~ N(0, 1/fan_in)",
               "mean %g sd %g (want 0, %g)", mean, sd, 1.0 / 32);
    double nmin = 9, nmax = -9, bmax = 0;
    for (int i = 0; i < 256; i++) {
        nmin = fmin(nmin, na[i]), nmax = fmax(nmax, na[i]), bmax = fmax(bmax, fabs(ba[i]));
    }
    TEST_CHECK(nmin > 0.85 && nmax < 1.15 && nmin != nmax, "norm weight ~ 1 + small noise", "%g..%g", nmin, nmax);
    TEST_CHECK(bmax > 0 && bmax < 0.15, "bias small", "max |b| %g", bmax);
    TEST_CHECK(weights_get(a, "blocks.0.mlp.layers.0.weight", 2, w2, &err) == wa && weights_count(a) == 3,
               "random: a second get returns the same buffer", "count %d", weights_count(a));
    int64_t wrong[2] = {1024, 256};
    TEST_CHECK(!weights_get(a, "blocks.0.mlp.layers.0.weight", 2, wrong, &err) &&
                   strstr(err.msg, "random:42: key blocks.0.mlp.layers.0.weight: expected shape [1024,256], found [256,1024]"),
               "random: a second get with another shape fails", "%s", err.msg);
    TEST_CHECK(weights_check_unused(a, NULL, &err) == 0 && !strcmp(weights_path(a), "random:42"),
               "random: check_unused is a no-op", "%s", err.msg);
out:
    weights_close(a);
    weights_close(b);
    weights_close(c);
}

/* test_mutants: byte-level mutations of a real torch pickle (re-zipped
 * with its storages, so the CRC is valid and the unpickler sees them) and
 * of a safetensors file. Each must load or fail cleanly with a message
 * naming the file; under `make sanitize` / valgrind this is the check that
 * no input reads out of bounds. Deterministic (xorshift). */
static void test_mutants(void) {
    enum { MAXE = 64 };
    char *names[MAXE];
    unsigned char *data[MAXE];
    size_t lens[MAXE];
    int n = 0, pkl = -1;
    unzFile uf = unzOpen64(test_fixture("pt-variants/variants.pt"));
    TEST_CHECK(uf != NULL, "open variants.pt with minizip", "failed");
    if (!uf) return;
    for (int r = unzGoToFirstFile(uf); r == UNZ_OK && n < MAXE; r = unzGoToNextFile(uf)) {
        unz_file_info64 info;
        char nm[256];
        unzGetCurrentFileInfo64(uf, &info, nm, sizeof nm, NULL, 0, NULL, 0);
        names[n] = strdup(nm);
        lens[n] = (size_t)info.uncompressed_size;
        data[n] = malloc(lens[n] + 1);
        unzOpenCurrentFile(uf);
        unzReadCurrentFile(uf, data[n], (unsigned)lens[n]);
        unzCloseCurrentFile(uf);
        if (strstr(nm, "data.pkl")) pkl = n;
        n++;
    }
    unzClose(uf);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    int clean = 0, loaded = 0, total = 0;
    unsigned char *orig = malloc(lens[pkl]);
    memcpy(orig, data[pkl], lens[pkl]);
    const char *p = tmp_path("mutant.pt");
    for (int k = 0; k < 400 && pkl >= 0; k++) {
        memcpy(data[pkl], orig, lens[pkl]);
        size_t plen = lens[pkl];
        int flips = 1 + k % 3;
        for (int f = 0; f < flips; f++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            data[pkl][x % plen] = (unsigned char)(x >> 32);
        }
        if (k % 5 == 4) { x ^= x << 13, x ^= x >> 7, x ^= x << 17; lens[pkl] = x % plen; } /* cut */
        write_zip(p, n, (const char *const *)names, (const void *const *)data, lens, 0);
        lens[pkl] = plen;
        err_t err = {{0}};
        weights_t *w = NULL;
        int rc = weights_open(&w, p, &err);
        total++;
        if (rc == 0 && w) loaded++, clean++;
        else if (rc < 0 && !w && strstr(err.msg, p)) clean++;
        weights_close(w);
    }
    TEST_CHECK(clean == total, "mutated torch pickles load or fail cleanly", "%d of %d clean (%d loaded)", clean,
               total, loaded);
    printf("    %d mutated pickles: %d loaded, %d rejected\n", total, loaded, total - loaded);
    free(orig);
    for (int i = 0; i < n; i++) free(names[i]), free(data[i]);

    size_t len;
    unsigned char *b = read_all(test_fixture("pt-variants/expected.safetensors"), &len), *m = malloc(len);
    clean = total = loaded = 0;
    p = tmp_path("mutant.safetensors");
    for (int k = 0; k < 400 && b; k++) {
        memcpy(m, b, len);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t hl = b[0] | (size_t)b[1] << 8;
        m[8 + x % hl] = (unsigned char)(x >> 40); /* inside the JSON header */
        if (k % 4 == 3) m[x % 8] ^= (unsigned char)(1u << (x >> 60)); /* the length */
        write_all(p, m, len);
        err_t err = {{0}};
        weights_t *w = NULL;
        int rc = weights_open(&w, p, &err);
        total++;
        if (rc == 0 && w) loaded++, clean++;
        else if (rc < 0 && !w && strstr(err.msg, p)) clean++;
        weights_close(w);
    }
    TEST_CHECK(clean == total, "mutated safetensors headers load or fail cleanly", "%d of %d clean (%d loaded)",
               clean, total, loaded);
    printf("    %d mutated safetensors: %d loaded, %d rejected\n", total, loaded, total - loaded);
    free(b);
    free(m);
}

/* the file truncated while its tensors are in use: the SIGBUS is one line
 * naming the checkpoint and exit status 1, never a silent crash (in a
 * child, so the test goes on) */
static void test_truncated_while_mapped(void) {
    const char *p = tmp_path("shrinks.safetensors");
    enum { N = 8192 };   /* 32 KiB of data: the last pages go when it shrinks */
    float *v = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) v[i] = (float)i;
    st_entry_t e = {.name = "x", .dtype = WDT_F32, .ndim = 1, .shape = {N}, .data = v};
    err_t err = {{0}};
    TEST_CHECK(safetensors_write(p, &e, 1, &err) == 0, "write shrinks.safetensors", "%s", err.msg);
    free(v);
    const char *log = tmp_path("sigbus.log");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        weights_t *w = NULL;
        if (!f || weights_open(&w, p, &err)) _exit(10);
        const float *x = weights_get(w, "x", 1, (int64_t[]){N}, &err);
        if (!x || x[N - 1] != (float)(N - 1)) _exit(11);
        if (truncate(p, 64)) _exit(12);
        volatile float sink = x[N - 1];   /* past the end of the file now */
        (void)sink;
        _exit(13);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    size_t n = 0;
    unsigned char *msg = read_all(log, &n);
    if (msg) msg[n] = 0;
    int lines = 0;
    for (size_t i = 0; msg && i < n; i++) lines += msg[i] == '\n';
    printf("# child: %s", msg && n ? (char *)msg : "(no message)\n");
    TEST_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && lines == 1 && msg &&
                   strstr((char *)msg, p) && strstr((char *)msg, "truncated while in use"),
               "checkpoint truncated while mapped: one line naming it, exit 1",
               "status %#x, %d lines", st, lines);
    free(msg);
}

/* a SIGBUS sent by kill (not a fault in a mapping) still ends the process
 * as before the guard was installed: it was once swallowed by the handler */
static void test_sigbus_sent(void) {
    const char *p = tmp_path("sent.safetensors");
    float v[4] = {1, 2, 3, 4};
    st_entry_t e = {.name = "x", .dtype = WDT_F32, .ndim = 1, .shape = {4}, .data = v};
    err_t err = {{0}};
    TEST_CHECK(safetensors_write(p, &e, 1, &err) == 0, "write sent.safetensors", "%s", err.msg);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        weights_t *w = NULL;
        if (weights_open(&w, p, &err)) _exit(10);   /* installs the SIGBUS guard */
        kill(getpid(), SIGBUS);
        _exit(13);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    /* killed by it, or (under ASan, whose handler came before ours) its
     * report and exit 1: anything but going on to _exit(13) */
    int killed = WIFSIGNALED(st) ? WTERMSIG(st) == SIGBUS
                                 : WIFEXITED(st) && WEXITSTATUS(st) != 13 &&
                                       WEXITSTATUS(st) != 10 && WEXITSTATUS(st) != 0;
    TEST_CHECK(killed, "kill -BUS still kills a process with a checkpoint mapped", "status %#x",
               st);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/sam2amg-test-weights-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
    test_safetensors_fixture();
    test_writer_roundtrip();
    test_safetensors_malformed();
    test_pt_fixture();
    test_pt_malformed();
    test_pt_hostile();
    test_random_mode();
    test_mutants();
    test_truncated_while_mapped();
    test_sigbus_sent();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return TEST_REPORT();
}
