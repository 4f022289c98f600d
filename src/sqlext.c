/* sqlext.c: the rle_* SQL functions over COCO RLE masks (see sqlext.h).
 *
 * One source, two builds: inside the program (sqlext_register is called on
 * every connection the store opens) and, with -DSAM2AMG_SQL_EXTENSION, as
 * the loadable extension build/libsam2amg_sql.so together with src/rle.c
 * only, so it depends on nothing but libc: users' own sqlite3 shell and
 * Python's sqlite3 `.load` it. rle_to_png writes a PNG with stored
 * (uncompressed) deflate blocks for the same reason: no zlib needed.
 */
#ifdef SAM2AMG_SQL_EXTENSION
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1
#else
#include <sqlite3.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rle.h"
#include "sqlext.h"

int sqlext_rle_parse(const char *text, size_t n, int64_t *h, int64_t *w, char *cstr,
                     size_t cap) {
    *h = *w = -1;
    size_t i = 0;
    while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n')) i++;
    if (i < n && text[i] == '{') {
        /* {"size":[h,w],"counts":"..."} in either key order */
        const char *end = text + n;
        const char *sz = NULL, *ct = NULL;
        for (const char *p = text + i; p + 8 <= end; p++) {
            if (!sz && !memcmp(p, "\"size\"", 6)) sz = p + 6;
            if (!ct && !memcmp(p, "\"counts\"", 8)) ct = p + 8;
        }
        if (!sz || !ct) return -1;
        while (sz < end && (*sz == ' ' || *sz == ':')) sz++;
        if (sz >= end || *sz != '[') return -1;
        char tmp[64];
        size_t k = 0;
        for (sz++; sz < end && *sz != ']' && k + 1 < sizeof tmp; sz++) tmp[k++] = *sz;
        tmp[k] = 0;
        long long hh, ww;
        if (sscanf(tmp, " %lld , %lld", &hh, &ww) != 2 || hh < 0 || ww < 0) return -1;
        *h = hh, *w = ww;
        while (ct < end && (*ct == ' ' || *ct == ':')) ct++;
        if (ct >= end || *ct != '"') return -1;
        size_t o = 0;
        for (ct++; ct < end && *ct != '"'; ct++) {
            if (*ct == '\\') {
                if (++ct >= end) return -1;
            }
            if (o + 1 >= cap) return -1;
            cstr[o++] = *ct;
        }
        if (ct >= end) return -1;
        cstr[o] = 0;
        return 0;
    }
    if (n - i + 1 > cap) return -1;
    memcpy(cstr, text + i, n - i);
    cstr[n - i] = 0;
    return 0;
}

/* A decoded argument: size and counts (sqlite3_malloc'd). */
typedef struct rle_arg {
    int64_t   h, w;
    uint32_t *counts;
    size_t    n;
} rle_arg;

static void arg_free(rle_arg *a) { sqlite3_free(a->counts); }

/* arg_get: decode argument i of the call; on failure the SQL error is set
 * and -1 returned. need_size: the size must be known. */
static int arg_get(sqlite3_context *ctx, sqlite3_value *v, const char *fn, int need_size,
                   rle_arg *a) {
    memset(a, 0, sizeof *a);
    const char *text = (const char *)sqlite3_value_text(v);
    size_t n = (size_t)sqlite3_value_bytes(v);
    char msg[160];
    if (!text) {
        snprintf(msg, sizeof msg, "%s: rle is NULL", fn);
        sqlite3_result_error(ctx, msg, -1);
        return -1;
    }
    char *cstr = sqlite3_malloc64(n + 1);
    a->counts = sqlite3_malloc64((n + 2) * sizeof(uint32_t));
    if (!cstr || !a->counts) {
        sqlite3_free(cstr);
        arg_free(a);
        sqlite3_result_error_nomem(ctx);
        return -1;
    }
    int64_t cnt = -1;
    if (sqlext_rle_parse(text, n, &a->h, &a->w, cstr, n + 1) == 0)
        cnt = rle_decode_string(cstr, a->counts, n + 2);
    sqlite3_free(cstr);
    if (cnt < 0) {
        snprintf(msg, sizeof msg, "%s: malformed rle (want {\"size\":[h,w],\"counts\":\"...\"})", fn);
        goto bad;
    }
    a->n = (size_t)cnt;
    if (a->h >= 0 && rle_total(a->counts, a->n) != (uint64_t)(a->h * a->w)) {
        snprintf(msg, sizeof msg, "%s: rle runs cover %llu pixels, size says %lld x %lld", fn,
                 (unsigned long long)rle_total(a->counts, a->n), (long long)a->h, (long long)a->w);
        goto bad;
    }
    if (need_size && a->h < 0) {
        snprintf(msg, sizeof msg, "%s: rle needs its size ({\"size\":[h,w],...})", fn);
        goto bad;
    }
    return 0;
bad:
    arg_free(a);
    sqlite3_result_error(ctx, msg, -1);
    return -1;
}

static void fn_area(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_area", 0, &a)) return;
    sqlite3_result_int64(ctx, (sqlite3_int64)rle_area(a.counts, a.n));
    arg_free(&a);
}

static void fn_width(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_width", 1, &a)) return;
    sqlite3_result_int64(ctx, a.w);
    arg_free(&a);
}

static void fn_height(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_height", 1, &a)) return;
    sqlite3_result_int64(ctx, a.h);
    arg_free(&a);
}

/* two_args: decode a pair that must have the same pixel count. */
static int two_args(sqlite3_context *ctx, sqlite3_value **argv, const char *fn, rle_arg *a,
                    rle_arg *b) {
    if (arg_get(ctx, argv[0], fn, 0, a)) return -1;
    if (arg_get(ctx, argv[1], fn, 0, b)) {
        arg_free(a);
        return -1;
    }
    if (rle_total(a->counts, a->n) != rle_total(b->counts, b->n) ||
        (a->h >= 0 && b->h >= 0 && (a->h != b->h || a->w != b->w))) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: masks of different sizes", fn);
        sqlite3_result_error(ctx, msg, -1);
        arg_free(a);
        arg_free(b);
        return -1;
    }
    return 0;
}

static void fn_iou(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a, b;
    if (two_args(ctx, argv, "rle_iou", &a, &b)) return;
    sqlite3_result_double(ctx, rle_iou(a.counts, a.n, b.counts, b.n));
    arg_free(&a);
    arg_free(&b);
}

static void fn_intersection(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a, b;
    if (two_args(ctx, argv, "rle_intersection", &a, &b)) return;
    sqlite3_result_int64(ctx, (sqlite3_int64)rle_intersection(a.counts, a.n, b.counts, b.n));
    arg_free(&a);
    arg_free(&b);
}

static void fn_contains(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_contains", 1, &a)) return;
    sqlite3_int64 x = sqlite3_value_int64(argv[1]), y = sqlite3_value_int64(argv[2]);
    int in = x >= 0 && y >= 0 && x < a.w && y < a.h &&
             rle_contains(a.counts, a.n, (uint32_t)a.h, (uint32_t)a.w, (uint32_t)x, (uint32_t)y);
    sqlite3_result_int(ctx, in);
    arg_free(&a);
}

static void fn_bbox(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_bbox", 1, &a)) return;
    double bb[4];
    rle_bbox(a.counts, a.n, (uint32_t)a.h, bb);
    char buf[128];
    snprintf(buf, sizeof buf, "[%.17g,%.17g,%.17g,%.17g]", bb[0], bb[1], bb[2], bb[3]);
    sqlite3_result_text(ctx, buf, -1, SQLITE_TRANSIENT);
    arg_free(&a);
}

/* ---- a dependency-free PNG writer (8-bit grey, stored deflate) ---- */

/* crc_update: the PNG CRC-32, bitwise (PNGs here are rare; no shared table
 * keeps the functions free of global state). */
static uint32_t crc_update(uint32_t c, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c;
}

static uint8_t *put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
    return p + 4;
}

/* chunk: write a PNG chunk of type t with data (n) at p; returns the end. */
static uint8_t *chunk(uint8_t *p, const char *t, const uint8_t *data, size_t n) {
    p = put32(p, (uint32_t)n);
    uint8_t *crc_from = p;
    memcpy(p, t, 4);
    p += 4;
    if (n) memmove(p, data, n);
    p += n;
    uint32_t c = crc_update(0xffffffffu, crc_from, n + 4) ^ 0xffffffffu;
    return put32(p, c);
}

static void fn_to_png(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_to_png", 1, &a)) return;
    if (a.h == 0 || a.w == 0 || a.h * a.w > (int64_t)1 << 28) {
        sqlite3_result_error(ctx, "rle_to_png: empty or too large mask", -1);
        arg_free(&a);
        return;
    }
    size_t H = (size_t)a.h, W = (size_t)a.w;
    size_t raw_n = H * (W + 1);                       /* filter byte per row */
    size_t nblk = (raw_n + 65534) / 65535;
    size_t zlen = 2 + raw_n + 5 * nblk + 4;
    size_t total = 8 + 25 + (12 + zlen) + 12;
    uint8_t *mask = sqlite3_malloc64(H * W);
    uint8_t *raw = sqlite3_malloc64(raw_n);
    uint8_t *z = sqlite3_malloc64(zlen);
    uint8_t *png = sqlite3_malloc64(total);
    if (!mask || !raw || !z || !png) {
        sqlite3_free(mask), sqlite3_free(raw), sqlite3_free(z), sqlite3_free(png);
        arg_free(&a);
        sqlite3_result_error_nomem(ctx);
        return;
    }
    rle_to_mask(a.counts, a.n, (uint32_t)H, (uint32_t)W, mask);
    for (size_t y = 0; y < H; y++) {
        raw[y * (W + 1)] = 0;
        for (size_t x = 0; x < W; x++) raw[y * (W + 1) + 1 + x] = mask[y * W + x] ? 255 : 0;
    }
    uint8_t *q = z;
    *q++ = 0x78, *q++ = 0x01;
    uint32_t s1 = 1, s2 = 0;
    for (size_t off = 0; off < raw_n; off += 65535) {
        size_t len = raw_n - off < 65535 ? raw_n - off : 65535;
        *q++ = off + len == raw_n ? 1 : 0;
        *q++ = (uint8_t)len, *q++ = (uint8_t)(len >> 8);
        *q++ = (uint8_t)~len, *q++ = (uint8_t)(~len >> 8);
        memcpy(q, raw + off, len);
        q += len;
        for (size_t i = 0; i < len; i++) {
            s1 = (s1 + raw[off + i]) % 65521;
            s2 = (s2 + s1) % 65521;
        }
    }
    q = put32(q, (s2 << 16) | s1);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(png, sig, 8);
    uint8_t ihdr[13];
    put32(ihdr, (uint32_t)W);
    put32(ihdr + 4, (uint32_t)H);
    ihdr[8] = 8, ihdr[9] = 0, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = 0;
    uint8_t *p = chunk(png + 8, "IHDR", ihdr, 13);
    p = chunk(p, "IDAT", z, (size_t)(q - z));
    p = chunk(p, "IEND", NULL, 0);
    sqlite3_result_blob64(ctx, png, (sqlite3_uint64)(p - png), sqlite3_free);
    sqlite3_free(mask), sqlite3_free(raw), sqlite3_free(z);
    arg_free(&a);
}

int sqlext_register(sqlite3 *db) {
    static const struct {
        const char *name;
        int nargs;
        void (*fn)(sqlite3_context *, int, sqlite3_value **);
    } fns[] = {
        {"rle_area", 1, fn_area},          {"rle_width", 1, fn_width},
        {"rle_height", 1, fn_height},      {"rle_iou", 2, fn_iou},
        {"rle_intersection", 2, fn_intersection},
        {"rle_contains", 3, fn_contains},  {"rle_bbox", 1, fn_bbox},
        {"rle_to_png", 1, fn_to_png},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        int rc = sqlite3_create_function_v2(db, fns[i].name, fns[i].nargs,
                                            SQLITE_UTF8 | SQLITE_DETERMINISTIC |
                                                SQLITE_INNOCUOUS,
                                            NULL, fns[i].fn, NULL, NULL, NULL);
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

#ifdef SAM2AMG_SQL_EXTENSION
/* sqlite3_extension_init: the entry point `.load` and load_extension() call. */
int sqlite3_extension_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);
int sqlite3_extension_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
    (void)pzErrMsg;
    SQLITE_EXTENSION_INIT2(pApi);
    return sqlext_register(db);
}
#endif
