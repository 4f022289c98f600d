/* fuzz_rle.c: COCO RLE text as the program reads it from a database: the
 * {"size":[h,w],"counts":"..."} object (sqlext_rle_read, which the store's
 * export reader and the rle_* SQL functions share), the compressed counts
 * string (rle_decode_string), the overlay of `export --format png`
 * (amg_draw_overlay) and every rle_* SQL function on an in-memory
 * connection. Properties: decoded counts re-encode to a string that decodes
 * to the same counts; a mask expanded from the runs encodes back to runs of
 * the same mask. rle_to_png is called up to 2^20 pixels only (its 2^28
 * limit would make each execution take seconds). */
#include <sqlite3.h>

#include "amg.h"
#include "fuzz.h"
#include "rle.h"
#include "sqlext.h"

#define SMALL_PIXELS (1u << 16)

static void check_counts(const char *cstr, int64_t h, int64_t w) {
    int64_t n = rle_decode_string(cstr, NULL, 0);
    if (n < 0) return;
    uint32_t *c = malloc(((size_t)n + 1) * sizeof *c);
    CHECK(c);
    FUZZ_ASSERT(rle_decode_string(cstr, c, (size_t)n) == n);
    /* encode -> decode is the identity on counts */
    char *s = malloc(rle_string_bound((size_t)n));
    CHECK(s);
    size_t len = rle_encode_string(c, (size_t)n, s);
    FUZZ_ASSERT(strlen(s) == len);
    uint32_t *c2 = malloc(((size_t)n + 1) * sizeof *c2);
    CHECK(c2);
    FUZZ_ASSERT(rle_decode_string(s, c2, (size_t)n) == n);
    FUZZ_ASSERT(n == 0 || !memcmp(c, c2, (size_t)n * sizeof *c));
    uint64_t total = rle_total(c, (size_t)n);
    FUZZ_ASSERT(rle_area(c, (size_t)n) <= total);
    if (total == (uint64_t)h * (uint64_t)w && total <= SMALL_PIXELS && h > 0 && w > 0) {
        uint8_t *m = malloc((size_t)total), *m2 = malloc((size_t)total);
        uint32_t *rc = malloc(((size_t)total + 1) * sizeof *rc);
        CHECK(m && m2 && rc);
        FUZZ_ASSERT(rle_to_mask(c, (size_t)n, (uint32_t)h, (uint32_t)w, m) == 0);
        size_t rn = rle_from_mask(m, (uint32_t)h, (uint32_t)w, rc);
        FUZZ_ASSERT(rle_to_mask(rc, rn, (uint32_t)h, (uint32_t)w, m2) == 0);
        FUZZ_ASSERT(!memcmp(m, m2, (size_t)total));
        FUZZ_ASSERT(rle_area(rc, rn) == rle_area(c, (size_t)n));
        double b[4];
        rle_bbox(c, (size_t)n, (uint32_t)h, b);
        FUZZ_ASSERT(b[0] >= 0 && b[1] >= 0 && b[0] + b[2] <= (double)w && b[1] + b[3] <= (double)h);
        /* the png export's overlay of this mask on an h x w image */
        uint8_t *rgb = calloc((size_t)total, 3);
        CHECK(rgb);
        amg_record rec = {.rle = (char *)cstr};
        amg_result res = {.width = (int)w, .height = (int)h, .n = 1, .recs = &rec};
        err_t err = {{0}};
        FUZZ_ASSERT(amg_draw_overlay(rgb, (int)w, (int)h, &res, &err) == 0);
        free(rgb), free(m), free(m2), free(rc);
    }
    free(c), free(c2), free(s);
}

static void sql_all(const uint8_t *data, size_t size, int64_t h, int64_t w, int parsed) {
    static sqlite3 *db;
    static sqlite3_stmt *st[9];
    static const char *const q[9] = {
        "SELECT rle_area(?1)", "SELECT rle_bbox(?1)", "SELECT rle_width(?1)",
        "SELECT rle_height(?1)", "SELECT rle_contains(?1, 1, 2)", "SELECT rle_iou(?1, ?1)",
        "SELECT rle_intersection(?1, ?1)", "SELECT length(rle_to_png(?1))",
        "SELECT rle_iou(?1, '{\"size\":[2,2],\"counts\":\"04\"}')"};
    if (!db) {
        CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
        CHECK(sqlext_register(db) == SQLITE_OK);
        for (int i = 0; i < 9; i++) CHECK(sqlite3_prepare_v2(db, q[i], -1, &st[i], NULL) == SQLITE_OK);
    }
    for (int i = 0; i < 9; i++) {
        if (i == 7 && !(parsed && (uint64_t)h * (uint64_t)w <= (1u << 20))) continue;
        sqlite3_bind_text(st[i], 1, (const char *)data, (int)size, SQLITE_TRANSIENT);
        int rc = sqlite3_step(st[i]);
        if (rc == SQLITE_ROW) {
            FUZZ_ASSERT(parsed);   /* a result only for what the reader accepts */
        } else {
            FUZZ_ASSERT(rc == SQLITE_ERROR);
            const char *msg = sqlite3_errmsg(db);
            FUZZ_ASSERT(msg && *msg && !strchr(msg, '\n'));
        }
        sqlite3_reset(st[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    int64_t h = -1, w = -1;
    char *cstr = malloc(size + 1);
    CHECK(cstr);
    const char *why = NULL;
    int rc = sqlext_rle_read((const char *)data, size, &h, &w, cstr, size + 1, &why);
    if (rc == 0) {
        FUZZ_ASSERT(h >= 0 && w >= 0 && (uint64_t)h * (uint64_t)w <= UINT32_MAX);
        FUZZ_ASSERT(strlen(cstr) <= size);
        check_counts(cstr, h, w);
    } else {
        FUZZ_ASSERT(why && *why && !strchr(why, '\n'));
    }
    sql_all(data, size, h, w, rc == 0);
    /* the bytes as a bare counts string too */
    char *s = fuzz_cstr(data, size);
    check_counts(s, -1, -1);
    free(s);
    free(cstr);
    return 0;
}
