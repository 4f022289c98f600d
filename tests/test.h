/* test.h: a tiny test harness (after Redis testhelp.h).
 *
 * Each tests/test_*.c is one program. TEST_CHECK records a named assertion
 * and prints "ok - name" or "not ok - name: detail"; TEST_REPORT prints
 * "RESULT passed failed", which tests/run.sh sums into the final line, and
 * returns the exit status. Fixtures are found relative to the repository
 * root (tests are run from there) or $SAM2AMG_FIXTURES.
 */
#ifndef SAM2AMG_TEST_H
#define SAM2AMG_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int test_passed_, test_failed_;

#define TEST_CHECK(cond, name, ...)                                           \
    do {                                                                      \
        if (cond) {                                                           \
            test_passed_++;                                                   \
            printf("ok - %s\n", name);                                        \
        } else {                                                              \
            test_failed_++;                                                   \
            printf("not ok - %s: ", name);                                    \
            printf(__VA_ARGS__);                                              \
            printf("  (%s:%d)\n", __FILE__, __LINE__);                        \
        }                                                                     \
        fflush(stdout);                                                       \
    } while (0)

#define TEST_REPORT()                                                         \
    (printf("RESULT %d %d\n", test_passed_, test_failed_), test_failed_ ? 1 : 0)

/* test_fixture: path of a fixture file, "tests/fixtures/<rel>" unless
 * $SAM2AMG_FIXTURES names another root. Static buffer. */
static inline const char *test_fixture(const char *rel) {
    static char buf[4096];
    const char *root = getenv("SAM2AMG_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "tests/fixtures", rel);
    return buf;
}

#endif
