/* sqlext.c: the rle_* SQL functions over COCO RLE masks (see sqlext.h).
 *
 * One source, two builds: inside the program (sqlext_register is called on
 * every connection the store opens) and, with -DSAM2AMG_SQL_EXTENSION, as
 * the loadable extension build/libsam2amg_sql.so together with src/rle.c
 * only, so it depends on nothing but libc: users' own sqlite3 shell and
 * Python's sqlite3 `.load` it. rle_to_png writes a PNG with stored
 * (uncompressed) deflate blocks for the same reason: no zlib needed.
 *
 * Every argument is hostile until checked: the rle text is read by a strict
 * parser (exactly {"size":[h,w],"counts":"..."}), h*w must fit COCO's
 * 32-bit counts and the runs must cover it exactly, and every buffer size
 * derived from h and w (rle_to_png) goes through include/size.h. Past
 * arg_get the sizes are known to fit 32 bits, which is what rle.c's uint32
 * parameters need.
 */
#ifdef SAM2AMG_SQL_EXTENSION
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1
#else
#include <sqlite3.h>
#endif

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rle.h"
#include "size.h"
#include "sqlext.h"

/* ---- the rle text: a strict little JSON reader for exactly one shape ----
 *
 * {"size":[h,w],"counts":"..."} with the two keys in either order, JSON
 * whitespace and string escapes, nothing else: no other keys, no duplicate,
 * no trailing text. Hand-written (not json.c) so the extension stays libc +
 * rle.c only. */

typedef struct rle_reader {
    const char *p, *end;
    const char *why; /* the first error, a constant string */
} rle_reader;

static int rd_fail(rle_reader *r, const char *why) {
    if (!r->why) r->why = why;
    return -1;
}

static void rd_ws(rle_reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int rd_char(rle_reader *r, char c, const char *why) {
    rd_ws(r);
    if (r->p >= r->end || *r->p != c) return rd_fail(r, why);
    r->p++;
    return 0;
}

/* rd_string: a JSON string into out (cap bytes, NUL-terminated); \u
 * escapes only for ASCII (counts and keys are ASCII). */
static int rd_string(rle_reader *r, char *out, size_t cap, const char *why) {
    if (rd_char(r, '"', why)) return -1;
    size_t o = 0;
    while (r->p < r->end && *r->p != '"') {
        char c = *r->p++;
        if ((unsigned char)c < 0x20) return rd_fail(r, "a control character in a string");
        if (c == '\\') {
            if (r->p >= r->end) break;
            char e = *r->p++;
            if (e == 'u') {
                unsigned v = 0;
                for (int k = 0; k < 4; k++, r->p++) {
                    if (r->p >= r->end) return rd_fail(r, "a truncated \\u escape");
                    char x = *r->p;
                    int d = x >= '0' && x <= '9' ? x - '0' : x >= 'a' && x <= 'f' ? x - 'a' + 10
                          : x >= 'A' && x <= 'F' ? x - 'A' + 10 : -1;
                    if (d < 0) return rd_fail(r, "a bad \\u escape");
                    v = v << 4 | (unsigned)d;
                }
                if (v == 0 || v >= 0x80) return rd_fail(r, "a non-ASCII \\u escape");
                c = (char)v;
            } else {
                const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *q = strchr(from, e);
                if (!e || !q) return rd_fail(r, "a bad string escape");
                c = to[q - from];
            }
        }
        if (o + 1 >= cap) return rd_fail(r, "a string too long");
        out[o++] = c;
    }
    if (r->p >= r->end) return rd_fail(r, "an unterminated string");
    r->p++;
    out[o] = 0;
    return 0;
}

/* rd_dim: a non-negative JSON integer (no sign, fraction or exponent),
 * checked against overflow. */
/* the message for a size out of range: arg_get adds the numbers */
static const char rle_size_range[] = "h*w is over 4294967295 pixels (COCO RLE counts are 32-bit)";

static int rd_dim(rle_reader *r, int64_t *out) {
    rd_ws(r);
    const char *from = r->p;
    int64_t v = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (!size_mul_add(v, 10, *r->p - '0', &v))
            return rd_fail(r, rle_size_range);
        r->p++;
    }
    if (r->p == from || (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E')) ||
        (r->p - from > 1 && *from == '0')) /* JSON has no leading zeros */
        return rd_fail(r, "size must be [h,w], two non-negative integers");
    *out = v;
    return 0;
}

int sqlext_rle_read(const char *text, size_t n, int64_t *h, int64_t *w, char *cstr, size_t cap,
                    const char **why) {
    rle_reader r = {text, text + n, NULL};
    int have_size = 0, have_counts = 0;
    *h = *w = -1;
    rd_ws(&r);
    if (r.p == r.end) rd_fail(&r, "empty text, not an RLE object");
    else if (*r.p != '{') rd_fail(&r, "not an RLE object");
    else r.p++;
    while (!r.why) {
        char key[16];
        if (rd_string(&r, key, sizeof key, "expected a key \"size\" or \"counts\"") ||
            rd_char(&r, ':', "expected ':' after a key"))
            break;
        if (!strcmp(key, "size")) {
            if (have_size++) { rd_fail(&r, "\"size\" given twice"); break; }
            if (rd_char(&r, '[', "size must be [h,w], two non-negative integers") || rd_dim(&r, h) ||
                rd_char(&r, ',', "size must be [h,w], two non-negative integers") || rd_dim(&r, w) ||
                rd_char(&r, ']', "size must be [h,w], two non-negative integers"))
                break;
        } else if (!strcmp(key, "counts")) {
            if (have_counts++) { rd_fail(&r, "\"counts\" given twice"); break; }
            rd_ws(&r);
            if (r.p < r.end && *r.p == '[') {
                rd_fail(&r, "counts is an uncompressed list; only the compressed string is accepted "
                            "(pycocotools.mask.frPyObjects converts)");
                break;
            }
            if (rd_string(&r, cstr, cap, "counts must be a compressed RLE string")) break;
        } else {
            rd_fail(&r, "an unexpected key (only \"size\" and \"counts\")");
            break;
        }
        rd_ws(&r);
        if (r.p < r.end && *r.p == ',') { r.p++; continue; }
        if (rd_char(&r, '}', "expected ',' or '}' in the RLE object")) break;
        rd_ws(&r);
        if (r.p != r.end) rd_fail(&r, "text after the RLE object");
        else if (!have_size || !have_counts) rd_fail(&r, "the RLE object needs both \"size\" and \"counts\"");
        break;
    }
    int64_t px;
    if (!r.why && (*h > UINT32_MAX || *w > UINT32_MAX || !size_mul(*h, *w, &px) || px > UINT32_MAX))
        rd_fail(&r, rle_size_range);
    if (why) *why = r.why;
    return r.why ? -1 : 0;
}

int sqlext_rle_parse(const char *text, size_t n, int64_t *h, int64_t *w, char *cstr,
                     size_t cap) {
    return sqlext_rle_read(text, n, h, w, cstr, cap, NULL);
}

/* ---- the SQL functions ---- */

/* A decoded argument: size and counts (sqlite3_malloc'd). */
typedef struct rle_arg {
    int64_t   h, w;
    uint32_t *counts;
    size_t    n;
} rle_arg;

static void arg_free(rle_arg *a) { sqlite3_free(a->counts); }

static void fail(sqlite3_context *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(sqlite3_context *ctx, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sqlite3_result_error(ctx, msg, -1);
}

/* arg_get: decode rle argument v of fn. Returns 0 with a filled (caller
 * frees with arg_free), 1 for SQL NULL (the result is then NULL: a NULL in
 * gives a NULL out, as for SQLite's own functions), or -1 with the SQL
 * error set: "fn: reason" for anything that is not an RLE object of at
 * most 2^32-1 pixels whose runs cover exactly h*w pixels. */
static int arg_get(sqlite3_context *ctx, sqlite3_value *v, const char *fn, rle_arg *a) {
    memset(a, 0, sizeof *a);
    int type = sqlite3_value_type(v);
    if (type == SQLITE_NULL) return 1;
    if (type != SQLITE_TEXT) {
        fail(ctx, "%s: the rle is %s, not an RLE object {\"size\":[h,w],\"counts\":\"...\"}", fn,
             type == SQLITE_BLOB ? "a BLOB" : "a number");
        return -1;
    }
    const char *text = (const char *)sqlite3_value_text(v);
    size_t n = (size_t)sqlite3_value_bytes(v);
    if (!text) {
        sqlite3_result_error_nomem(ctx);
        return -1;
    }
    char *cstr = sqlite3_malloc64(n + 1);
    a->counts = sqlite3_malloc64((n + 2) * sizeof(uint32_t)); /* a count takes >= 1 character */
    if (!cstr || !a->counts) {
        sqlite3_free(cstr);
        arg_free(a);
        sqlite3_result_error_nomem(ctx);
        return -1;
    }
    const char *why = NULL;
    int64_t cnt = -1;
    if (sqlext_rle_read(text, n, &a->h, &a->w, cstr, n + 1, &why) == 0) {
        cnt = rle_decode_string(cstr, a->counts, n + 2);
        if (cnt < 0) why = "counts is not a valid compressed RLE string";
    }
    sqlite3_free(cstr);
    if (cnt < 0 && why == rle_size_range && a->h >= 0 && a->w >= 0)
        fail(ctx, "%s: rle size [%lld,%lld]: %s", fn, (long long)a->h, (long long)a->w, why);
    else if (cnt < 0 && why == rle_size_range)
        fail(ctx, "%s: rle size: a number over 2^63: %s", fn, why);
    else if (cnt < 0)
        fail(ctx, "%s: malformed rle: %s", fn, why);
    if (cnt < 0) {
        arg_free(a);
        return -1;
    }
    a->n = (size_t)cnt;
    uint64_t total = rle_total(a->counts, a->n);
    if (total != (uint64_t)a->h * (uint64_t)a->w) { /* both <= 2^32-1: exact */
        fail(ctx, "%s: malformed rle: runs cover %llu pixels, size [%lld,%lld] has %llu", fn,
             (unsigned long long)total, (long long)a->h, (long long)a->w,
             (unsigned long long)a->h * (unsigned long long)a->w);
        arg_free(a);
        return -1;
    }
    return 0;
}

static void fn_area(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_area", &a)) return;
    sqlite3_result_int64(ctx, (sqlite3_int64)rle_area(a.counts, a.n));
    arg_free(&a);
}

static void fn_width(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_width", &a)) return;
    sqlite3_result_int64(ctx, a.w);
    arg_free(&a);
}

static void fn_height(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_height", &a)) return;
    sqlite3_result_int64(ctx, a.h);
    arg_free(&a);
}

/* two_args: decode a pair that must have the same size; 1 (result NULL)
 * when either is NULL, -1 on error (set), 0 with both to free. */
static int two_args(sqlite3_context *ctx, sqlite3_value **argv, const char *fn, rle_arg *a,
                    rle_arg *b) {
    int r = arg_get(ctx, argv[0], fn, a);
    if (r) return r;
    if ((r = arg_get(ctx, argv[1], fn, b))) {
        arg_free(a);
        return r;
    }
    if (a->h != b->h || a->w != b->w) {
        fail(ctx, "%s: masks of different sizes ([%lld,%lld] and [%lld,%lld])", fn, (long long)a->h,
             (long long)a->w, (long long)b->h, (long long)b->w);
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

/* coord_get: pixel coordinate argument v (an INTEGER, or a REAL with an
 * integral value); 1 for NULL, -1 with the error set. */
static int coord_get(sqlite3_context *ctx, sqlite3_value *v, const char *what, sqlite3_int64 *out) {
    int type = sqlite3_value_type(v);
    if (type == SQLITE_NULL) return 1;
    if (type == SQLITE_INTEGER) {
        *out = sqlite3_value_int64(v);
        return 0;
    }
    double d = sqlite3_value_double(v);
    /* the range first: casting NaN or a double outside int64 is undefined */
    if (type == SQLITE_FLOAT && d > -9.2e18 && d < 9.2e18 && d == (double)(sqlite3_int64)d) {
        *out = (sqlite3_int64)d;
        return 0;
    }
    fail(ctx, "rle_contains: %s must be an integer pixel coordinate", what);
    return -1;
}

static void fn_contains(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    sqlite3_int64 x, y;
    if (coord_get(ctx, argv[1], "x", &x) || coord_get(ctx, argv[2], "y", &y)) return;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_contains", &a)) return;
    /* h, w <= 2^32-1 (arg_get), so the uint32 arguments are exact */
    int in = x >= 0 && y >= 0 && x < a.w && y < a.h &&
             rle_contains(a.counts, a.n, (uint32_t)a.h, (uint32_t)a.w, (uint32_t)x, (uint32_t)y);
    sqlite3_result_int(ctx, in);
    arg_free(&a);
}

static void fn_bbox(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_bbox", &a)) return;
    double bb[4];
    rle_bbox(a.counts, a.n, (uint32_t)a.h, bb); /* h <= 2^32-1: exact */
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

/* SQLEXT_PNG_MAX_PIXELS: rle_to_png builds the PNG in memory (about 3
 * bytes per pixel): 2^28 pixels (16384 x 16384) at most. */
#define SQLEXT_PNG_MAX_PIXELS (INT64_C(1) << 28)

static void fn_to_png(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    rle_arg a;
    if (arg_get(ctx, argv[0], "rle_to_png", &a)) return;
    /* every size below from h and w, checked: raw = h rows of 1 + w bytes,
     * z = 2 + raw + 5 per 65535-byte stored block + 4, png = 8 + 25 +
     * (12 + z) + 12 */
    int64_t px, raw64, z64, total64;
    int ok = a.h > 0 && a.w > 0 && size_mul(a.h, a.w, &px) && px <= SQLEXT_PNG_MAX_PIXELS &&
             size_mul(a.h, a.w + 1, &raw64) &&
             size_mul_add((raw64 + 65534) / 65535, 5, raw64 + 6, &z64) &&
             size_add(z64, 8 + 25 + 12 + 12, &total64);
    if (!ok) {
        fail(ctx, "rle_to_png: a %lld x %lld mask has no PNG (needs 1 to %lld pixels)", (long long)a.h,
             (long long)a.w, (long long)SQLEXT_PNG_MAX_PIXELS);
        arg_free(&a);
        return;
    }
    size_t H = (size_t)a.h, W = (size_t)a.w;
    size_t raw_n = (size_t)raw64, zlen = (size_t)z64, total = (size_t)total64;
    uint8_t *mask = sqlite3_malloc64((sqlite3_uint64)px);     /* (H,W) */
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
