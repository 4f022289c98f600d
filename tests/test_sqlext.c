/* test_sqlext.c: the rle_* SQL functions on hostile and normal values.
 *
 * An in-memory SQLite database with the functions registered through
 * sqlext_register (what every store connection and the loadable extension's
 * entry point call), so `make sanitize` runs the extension's code under
 * ASan+UBSan. Each case is one SELECT and the text it must give: a value,
 * "NULL", or "ERROR: " and a part of the message. The hostile sizes are the
 * ones that wrapped h*w and wrote past rle_to_png's buffer, overflowed
 * rle_area, and truncated rle_bbox's height to 32 bits.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "sqlext.h"
#include "test.h"

/* q: the first column of the first row as text, "NULL", or "ERROR: msg". */
static const char *q(sqlite3 *db, const char *sql) {
    static char buf[4096];
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_NULL)
        snprintf(buf, sizeof buf, "NULL");
    else if (rc == SQLITE_ROW)
        snprintf(buf, sizeof buf, "%s", (const char *)sqlite3_column_text(st, 0));
    else
        snprintf(buf, sizeof buf, "ERROR: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return buf;
}

/* 2x2 mask, counts [1,3]: pixels 1..3 (column-major) inside */
#define M22 "'{\"size\":[2,2],\"counts\":\"13\"}'"
/* 4294967295 x 1 (h*w = 2^32-1, the largest accepted): counts
 * [4294967294, 1], the one foreground pixel in the last row */
#define TALL "'{\"size\":[4294967295,1],\"counts\":\"nooooo31\"}'"
/* 1 x 4294967295: the pixel in the last column */
#define WIDE "'{\"size\":[1,4294967295],\"counts\":\"nooooo31\"}'"

static const struct { const char *sql, *want; } cases[] = {
    /* the reported crashes and wrong answers */
    {"select rle_to_png('{\"size\":[4,4611686018427387905],\"counts\":\"4\"}')",
     "ERROR: rle_to_png: rle size [4,4611686018427387905]: h*w is over 4294967295 pixels"},
    {"select rle_area('{\"size\":[4294967296,4294967296],\"counts\":\"\"}')",
     "ERROR: rle_area: rle size [4294967296,4294967296]: h*w is over 4294967295"},
    {"select rle_bbox('{\"size\":[4294967297,1],\"counts\":\"oooooo311\"}')",
     "ERROR: rle_bbox: rle size [4294967297,1]: h*w is over"},
    {"select rle_contains('{\"size\":[4294967297,1],\"counts\":\"oooooo311\"}', 0, 4294967296)",
     "ERROR: rle_contains: rle size [4294967297,1]"},
    {"select rle_area('{\"size\":[99999999999999999999,1],\"counts\":\"\"}')",
     "ERROR: rle_area: rle size: a number over 2^63"},
    {"select rle_width('{\"size\":[1,4294967296],\"counts\":\"\"}')", "ERROR: rle_width: rle size [1,4294967296]"},
    /* at the edge of the range: exact 32-bit arithmetic */
    {"select rle_bbox(" TALL ")", "[0,4294967294,1,1]"},
    {"select rle_bbox(" WIDE ")", "[4294967294,0,1,1]"},
    {"select rle_area(" TALL ") || ',' || rle_height(" TALL ") || ',' || rle_width(" TALL ")",
     "1,4294967295,1"},
    {"select rle_contains(" TALL ", 0, 4294967294)", "1"},
    {"select rle_contains(" TALL ", 0, 4294967293)", "0"},
    {"select rle_contains(" TALL ", 0, 4294967295)", "0"},
    {"select rle_contains(" WIDE ", 4294967294, 0)", "1"},
    {"select rle_iou(" TALL ", " TALL ")", "1.0"},
    {"select rle_to_png(" TALL ")", "ERROR: rle_to_png: a 4294967295 x 1 mask has no PNG (needs 1 to 268435456"},
    {"select rle_to_png('{\"size\":[0,0],\"counts\":\"\"}')", "ERROR: rle_to_png: a 0 x 0 mask has no PNG"},
    /* NULL in, NULL out, for every function and argument */
    {"select rle_area(NULL)", "NULL"},
    {"select rle_width(NULL)", "NULL"},
    {"select rle_height(NULL)", "NULL"},
    {"select rle_bbox(NULL)", "NULL"},
    {"select rle_to_png(NULL)", "NULL"},
    {"select rle_iou(NULL, " M22 ")", "NULL"},
    {"select rle_iou(" M22 ", NULL)", "NULL"},
    {"select rle_intersection(NULL, NULL)", "NULL"},
    {"select rle_contains(NULL, 0, 0)", "NULL"},
    {"select rle_contains(" M22 ", NULL, 0)", "NULL"},
    {"select rle_contains(" M22 ", 0, NULL)", "NULL"},
    /* not an RLE object: an error naming the function and the reason */
    {"select rle_area(42)", "ERROR: rle_area: the rle is a number, not an RLE object"},
    {"select rle_area(4.5)", "ERROR: rle_area: the rle is a number"},
    {"select rle_area(x'7b7d')", "ERROR: rle_area: the rle is a BLOB"},
    {"select rle_area('')", "ERROR: rle_area: malformed rle: empty text"},
    {"select rle_area('   ')", "ERROR: rle_area: malformed rle: empty text"},
    {"select rle_area('garbage')", "ERROR: rle_area: malformed rle: not an RLE object"},
    {"select rle_area('42')", "ERROR: rle_area: malformed rle: not an RLE object"},
    {"select rle_area('{}')", "ERROR: rle_area: malformed rle: expected a key"},
    {"select rle_area('{\"size\":[2,2]}')", "ERROR: rle_area: malformed rle: the RLE object needs both"},
    {"select rle_area('{\"counts\":\"4\"}')", "ERROR: rle_area: malformed rle: the RLE object needs both"},
    {"select rle_area('{\"size\":[2,2],\"counts\":\"4\",\"x\":1}')", "ERROR: rle_area: malformed rle: an unexpected key"},
    {"select rle_area('{\"size\":[2,2],\"counts\":\"4\",\"size\":[2,2]}')", "ERROR: rle_area: malformed rle: \"size\" given twice"},
    {"select rle_area('{\"size\":[2,2],\"counts\":\"4\"} x')", "ERROR: rle_area: malformed rle: text after the RLE object"},
    {"select rle_area('{\"size\":[2,2],\"counts\":\"4\"')", "ERROR: rle_area: malformed rle: expected ',' or '}'"},
    {"select rle_area('{\"size\":[2,2],\"counts\":\"4')", "ERROR: rle_area: malformed rle: an unterminated string"},
    {"select rle_area('{\"size\":[-2,2],\"counts\":\"4\"}')", "ERROR: rle_area: malformed rle: size must be [h,w]"},
    {"select rle_area('{\"size\":[2.5,2],\"counts\":\"4\"}')", "ERROR: rle_area: malformed rle: size must be [h,w]"},
    {"select rle_area('{\"size\":[2,2,2],\"counts\":\"4\"}')", "ERROR: rle_area: malformed rle: size must be [h,w]"},
    {"select rle_area('{\"size\":[02,2],\"counts\":\"4\"}')", "ERROR: rle_area: malformed rle: size must be [h,w]"},
    {"select rle_area('{\"size\":[0,0],\"counts\":\"\"}')", "0"},
    {"select rle_area('{\"size\":[2,2],\"counts\":[1,3]}')",
     "ERROR: rle_area: malformed rle: counts is an uncompressed list"},
    {"select rle_area('{\"size\":[2,2],\"counts\":4}')", "ERROR: rle_area: malformed rle: counts must be a compressed"},
    {"select rle_area('{\"size\":[2,2],\"counts\":\"!!\"}')",
     "ERROR: rle_area: malformed rle: counts is not a valid compressed RLE string"},
    {"select rle_area('{\"size\":[2,2],\"counts\":\"5\"}')",
     "ERROR: rle_area: malformed rle: runs cover 5 pixels, size [2,2] has 4"},
    {"select rle_area('{\"size\":[2,2],\"counts\":\"\\u0000\"}')", "ERROR: rle_area: malformed rle: a non-ASCII \\u escape"},
    {"select rle_iou(" M22 ", '{\"size\":[1,4],\"counts\":\"13\"}')",
     "ERROR: rle_iou: masks of different sizes ([2,2] and [1,4])"},
    {"select rle_contains(" M22 ", 'a', 0)", "ERROR: rle_contains: x must be an integer"},
    {"select rle_contains(" M22 ", 0, 0.5)", "ERROR: rle_contains: y must be an integer"},
    /* out of int64's range: refused before any cast (the cast would be
     * undefined; -fsanitize=float-cast-overflow reports it) */
    {"select rle_contains(" M22 ", 1e300, 0)", "ERROR: rle_contains: x must be an integer"},
    {"select rle_contains(" M22 ", 0, -1e300)", "ERROR: rle_contains: y must be an integer"},
    {"select rle_contains(" M22 ", 9.3e18, 0)", "ERROR: rle_contains: x must be an integer"},
    /* normal values */
    {"select rle_area(" M22 ")", "3"},
    {"select rle_bbox(" M22 ")", "[0,0,2,2]"},
    {"select rle_bbox('{\"size\":[2,2],\"counts\":\"4\"}')", "[0,0,0,0]"},
    {"select rle_area(' { \"counts\" : \"13\" ,\r\t \"size\" : [ 2 , 2 ] } ')", "3"},
    {"select rle_area('{\"size\":[2,2],\"counts\":\"\\u00313\"}')", "3"},
    {"select rle_area('{\"size\":[3,5],\"counts\":\"\\\\03\"}')", "3"}, /* counts "\0" "3": [12, 3] */
    {"select rle_contains(" M22 ", 0, 0) || rle_contains(" M22 ", 0, 1) || rle_contains(" M22 ", 1, 0)", "011"},
    {"select rle_contains(" M22 ", 1.0, 1)", "1"},
    {"select rle_contains(" M22 ", -1, 0) || rle_contains(" M22 ", 2, 0) || rle_contains(" M22 ", 0, 9223372036854775807)",
     "000"},
    {"select rle_iou(" M22 ", '{\"size\":[2,2],\"counts\":\"211\"}')", "0.333333333333333"},
    {"select rle_intersection(" M22 ", '{\"size\":[2,2],\"counts\":\"211\"}')", "1"},
    {"select rle_area('{\"size\":[0,0],\"counts\":\"\"}') || rle_bbox('{\"size\":[0,5],\"counts\":\"\"}')", "0[0,0,0,0]"},
    {"select hex(substr(rle_to_png(" M22 "), 1, 8)) || ',' || length(rle_to_png(" M22 "))",
     "89504E470D0A1A0A,74"},
};

int main(void) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open(":memory:", &db);
    TEST_CHECK(rc == SQLITE_OK, "open an in-memory database", "%d", rc);
    rc = sqlext_register(db);
    TEST_CHECK(rc == SQLITE_OK, "sqlext_register", "%d", rc);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = q(db, cases[i].sql);
        int ok = !strncmp(cases[i].want, "ERROR: ", 7) ? strstr(got, cases[i].want) == got
                                                        : !strcmp(got, cases[i].want);
        TEST_CHECK(ok, cases[i].sql, "got '%s', want '%s'", got, cases[i].want);
    }
    /* sqlext_rle_parse (the store's reader) takes the same form */
    int64_t h, w;
    char cstr[32];
    const char *good = "{\"size\":[3,4],\"counts\":\"a\\\\b\"}", *why = NULL;
    rc = sqlext_rle_read(good, strlen(good), &h, &w, cstr, sizeof cstr, &why);
    TEST_CHECK(rc == 0 && h == 3 && w == 4 && !strcmp(cstr, "a\\b"), "sqlext_rle_read unescapes counts",
               "rc %d h %lld w %lld '%s' %s", rc, (long long)h, (long long)w, cstr, why ? why : "");
    rc = sqlext_rle_read(good, strlen(good), &h, &w, cstr, 3, &why);
    TEST_CHECK(rc == -1 && why && strstr(why, "too long"), "sqlext_rle_read: counts longer than cap",
               "rc %d", rc);
    rc = sqlext_rle_parse("13", 2, &h, &w, cstr, sizeof cstr);
    TEST_CHECK(rc == -1, "sqlext_rle_parse refuses a bare counts string", "rc %d", rc);
    sqlite3_close(db);
    return TEST_REPORT();
}
