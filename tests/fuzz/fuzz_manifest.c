/* fuzz_manifest.c: `run --manifest FILE` lines through jobs_ingest into a
 * job database: the first input byte picks the format the program infers
 * from the file name (0 text, one path per line; 1 .csv with a "path"
 * header column; 2 .jsonl objects with a "path" string), the rest is the
 * file. Properties: every line is added, already present, or reported bad;
 * the images table grows by exactly the number added. The database is an
 * in-memory one, reopened every 256 inputs so memory stays bounded. The
 * per-line reports on stderr are sent to /dev/null while ingesting. */
#include <fcntl.h>
#include <sqlite3.h>

#include "fuzz.h"
#include "jobs.h"

static int64_t rows(store_t *s) {
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(store_db(s), "SELECT count(*) FROM images", -1, &st, NULL) ==
          SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static store_t *s;
    static int uses;
    static int devnull = -1;
    if (size < 1) return 0;
    if (s && ++uses % 256 == 0) store_close(s), s = NULL;
    err_t err = {{0}};
    if (!s) CHECK(store_open(&s, ":memory:", STORE_CREATE, &err) == 0);
    if (devnull < 0) devnull = open("/dev/null", O_WRONLY);
    static const char *const tags[3] = {"manifest.txt", "manifest.csv", "manifest.jsonl"};
    const char *path = fuzz_temp_file(tags[data[0] % 3], data + 1, size - 1);
    int64_t before = rows(s);
    jobs_ingest_stats st;
    fflush(stderr);
    int saved = dup(2);
    dup2(devnull, 2);
    int rc = jobs_ingest(s, path, &st, &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    unlink(path);
    if (rc) FUZZ_ASSERT(fuzz_err_ok(&err));
    else FUZZ_ASSERT(st.added + st.present + st.bad == st.lines);
    FUZZ_ASSERT(rows(s) - before == st.added);
    return 0;
}
