/* bench_store.c: the job database's speed, each number next to the plain
 * sqlite3 shell doing the equivalent work on the same schema:
 *   - ingest of a 1,000,000-line manifest (s)       vs  sqlite3 .import
 *   - mask inserts through the writer path (masks/s, real RLE sizes: ellipses
 *     on a 1500x2250 image, SA-1B's typical size): what a GPU worker waits
 *     on; the R*Tree is not on this path    vs  INSERT ... SELECT of the masks
 *   - the R*Tree catch-up (store_boxes_catch_up, run at the end of a run and
 *     before `sql`; boxes/s)                 vs  INSERT ... SELECT of the boxes
 *   - counting queries over 1M masks (ms)           vs  the same SQL in sqlite3
 *   - database bytes per mask.
 * Goal: >= 100,000 masks/s sustained, so the store never limits a GPU worker.
 * The shell runs the same schema (schema/001_init.sql, so run from the
 * repository root, as bench/run.sh does).
 * Environment: BENCH_MASKS (default 1000000), BENCH_DIR (default /tmp),
 * BENCH_COMMIT (images per commit, default 256 = run's --batch default),
 * BENCH_KEEP=1 keeps the databases.
 * Arguments of bench/run.sh are ignored.
 */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../jobs/jobs.h"
#include "rle.h"
#include "store.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int have_shell(void) { return system("command -v sqlite3 >/dev/null 2>&1") == 0; }

/* shell_time: seconds for `sqlite3 db` running script (file). */
static double shell_time(const char *db, const char *script) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "sqlite3 %s < %s > /dev/null", db, script);
    double t0 = now();
    int rc = system(cmd);
    double t = now() - t0;
    return rc == 0 ? t : NAN;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    fclose(f);
}

static long long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

static int64_t q_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* make_pool: n records of ellipse masks on an h x w image. */
static void make_pool(amg_record *pool, int n, int w, int h, double *mean_len) {
    uint8_t *mask = malloc((size_t)w * h);
    uint32_t *counts = malloc(((size_t)w * h + 1) * sizeof *counts);
    CHECK(mask && counts);
    srand(1);
    double tot = 0;
    for (int i = 0; i < n; i++) {
        double cx = rand() % w, cy = rand() % h;
        double rx = 5 + rand() % (i % 4 == 0 ? 600 : 120), ry = 5 + rand() % (i % 4 == 0 ? 400 : 120);
        memset(mask, 0, (size_t)w * h);
        for (int y = 0; y < h; y++) {
            double dy = (y - cy) / ry;
            if (fabs(dy) > 1) continue;
            double hw = rx * sqrt(1 - dy * dy);
            for (int x = (int)fmax(0, cx - hw); x <= (int)fmin(w - 1, cx + hw); x++) mask[(size_t)y * w + x] = 1;
        }
        size_t nc = rle_from_mask(mask, (uint32_t)h, (uint32_t)w, counts);
        amg_record *m = &pool[i];
        memset(m, 0, sizeof *m);
        m->rle = malloc(rle_string_bound(nc));
        CHECK(m->rle);
        tot += (double)rle_encode_string(counts, nc, m->rle);
        m->area = (int64_t)rle_area(counts, nc);
        rle_bbox(counts, nc, (uint32_t)h, m->bbox);
        m->predicted_iou = 0.8 + (rand() % 1000) * 2e-4;
        m->stability_score = 0.9 + (rand() % 1000) * 1e-4;
        m->point[0] = cx, m->point[1] = cy;
        m->crop_box[2] = w, m->crop_box[3] = h;
    }
    *mean_len = tot / n;
    free(mask);
    free(counts);
}

int main(void) {
    const char *dir = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    int64_t n_masks = getenv("BENCH_MASKS") ? atoll(getenv("BENCH_MASKS")) : 1000000;
    char tmp[512], db[600], path[700], script[700];
    snprintf(tmp, sizeof tmp, "%s/bench_store.XXXXXX", dir);
    CHECK(mkdtemp(tmp));
    int shell = have_shell();
    err_t err = {{0}};
    printf("bench_store: %s%s\n", tmp, shell ? "" : " (no sqlite3 shell: no comparisons)");

    /* ---- ingest of a 1,000,000-line manifest ---- */
    const int n_lines = 1000000;
    snprintf(path, sizeof path, "%s/manifest.txt", tmp);
    FILE *f = fopen(path, "w");
    CHECK(f);
    for (int i = 0; i < n_lines; i++)
        fprintf(f, "/data/sa1b/batch_%03d/sa_%07d.jpg\n", i / 11000, i);
    fclose(f);
    snprintf(db, sizeof db, "%s/ingest.sqlite", tmp);
    store_t *s;
    CHECK(store_open(&s, db, STORE_CREATE, &err) == 0);
    jobs_ingest_stats ist;
    /* as `run` does it: one transaction per command (jobs.h) */
    double t0 = now();
    CHECK(store_ingest_begin(s, &err) == 0 && jobs_ingest(s, path, &ist, &err) == 0 &&
          store_ingest_end(s, &err) == 0);
    double t_ingest = now() - t0;
    t0 = now();
    CHECK(store_ingest_begin(s, &err) == 0 && jobs_ingest(s, path, &ist, &err) == 0 &&
          store_ingest_end(s, &err) == 0);
    double t_reingest = now() - t0;
    CHECK(ist.added == 0 && ist.present == n_lines);
    store_close(s);
    printf("ingest 1,000,000-line manifest: %.2f s (%.0f lines/s); again (all present): %.2f s\n",
           t_ingest, n_lines / t_ingest, t_reingest);
    if (shell) {
        snprintf(db, sizeof db, "%s/ingest_shell.sqlite", tmp);
        snprintf(script, sizeof script, "%s/ingest.sql", tmp);
        char text[1200];
        snprintf(text, sizeof text,
                 "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n.read schema/001_init.sql\n"
                 "CREATE TEMP TABLE tmp(path TEXT);\n.import %s tmp\n"
                 "INSERT OR IGNORE INTO images(path, added_at) SELECT path, unixepoch() FROM tmp;\n",
                 path);
        write_file(script, text);
        printf("  sqlite3 shell equivalent (.import + INSERT OR IGNORE): %.2f s\n",
               shell_time(db, script));
    }

    /* ---- mask inserts through the writer path ---- */
    const int pool_n = 1000, per_image = 100;
    const int images_per_commit = getenv("BENCH_COMMIT") ? atoi(getenv("BENCH_COMMIT")) : 256;
    amg_record *pool = calloc(pool_n, sizeof *pool);
    double mean_len;
    make_pool(pool, pool_n, 2250, 1500, &mean_len);
    int64_t n_images = (n_masks + per_image - 1) / per_image;
    snprintf(db, sizeof db, "%s/masks.sqlite", tmp);
    CHECK(store_open(&s, db, STORE_CREATE, &err) == 0);
    CHECK(store_ingest_begin(s, &err) == 0);
    for (int64_t i = 0; i < n_images; i++) {
        char p[64];
        int added;
        int n = snprintf(p, sizeof p, "/img/%08lld.jpg", (long long)i);
        CHECK(store_ingest_add(s, p, (size_t)n, &added, &err) == 0);
    }
    CHECK(store_ingest_end(s, &err) == 0);
    store_run_info info = {0};
    snprintf(info.params, sizeof info.params, "{}");
    snprintf(info.model_path, sizeof info.model_path, "bench");
    snprintf(info.model_sha256, sizeof info.model_sha256, "0");
    int64_t run_id;
    CHECK(store_run_begin(s, &info, &run_id, &err) == 0);
    store_job *jobs = calloc(images_per_commit, sizeof *jobs);
    amg_result res = {.width = 2250, .height = 1500, .n = per_image};
    store_timing tm = {.t_load = 0, .t_generate = 0};
    int64_t written = 0, k = 0;
    double t_claim = 0;
    t0 = now();
    for (;;) {
        int got;
        double tc = now();
        CHECK(store_claim(s, "bench", 3600, images_per_commit, jobs, &got, &err) == 0);
        t_claim += now() - tc;
        if (!got) break;
        CHECK(store_batch_begin(s, &err) == 0);
        for (int i = 0; i < got; i++) {
            res.recs = &pool[(k++ * 37) % (pool_n - per_image)];
            CHECK(store_put_result(s, run_id, jobs[i].id, "bench", &res, &tm, &err) == 1);
            written += per_image;
            free(jobs[i].path);
        }
        CHECK(store_batch_commit(s, &err) == 0);
    }
    double t_ins = now() - t0;
    printf("writer path (masks + image status, one transaction per %d images; no R*Tree): "
           "%lld masks (%lld images x %d, mean RLE %.0f chars): %.2f s, %.0f masks/s "
           "(with the claims, %.2f s of it; without them, as the writer thread sees it: "
           "%.0f masks/s)\n",
           images_per_commit, (long long)written, (long long)n_images, per_image, mean_len, t_ins,
           written / t_ins, t_claim, written / (t_ins - t_claim));
    int64_t boxes = 0;
    t0 = now();
    CHECK(store_boxes_catch_up(s, 0, &boxes, &err) == 0);
    double t_boxes = now() - t0;
    CHECK(boxes == written);
    printf("R*Tree catch-up (store_boxes_catch_up, 50,000 boxes per transaction; at the end of a "
           "run and before sql, not on the writer path): %lld boxes in %.2f s, %.0f boxes/s\n",
           (long long)boxes, t_boxes, boxes / t_boxes);
    printf("  writer path + catch-up together: %.0f masks/s\n", written / (t_ins + t_boxes));
    store_close(s);
    snprintf(path, sizeof path, "%s-wal", db);
    long long bytes = file_size(db) + file_size(path);
    printf("database: %.1f MB, %.0f bytes per mask (RLE text %.0f of it)\n", bytes / 1e6,
           (double)bytes / written, mean_len + 30);
    if (shell) {
        /* the same rows with plain SQL: copy the masks into a fresh database
         * with the same schema (indexes, R*Tree) in one statement */
        char db2[700];
        snprintf(db2, sizeof db2, "%s/masks_shell.sqlite", tmp);
        snprintf(script, sizeof script, "%s/insert.sql", tmp);
        char text[4000];
        snprintf(text, sizeof text,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;\n"
                 ".read schema/001_init.sql\n"
                 "ATTACH '%s' AS src;\n"
                 "INSERT INTO runs SELECT * FROM src.runs;\n"
                 "INSERT INTO images SELECT * FROM src.images;\n"
                 ".timer on\n"
                 "INSERT INTO masks SELECT * FROM src.masks;\n"
                 "INSERT INTO mask_boxes SELECT * FROM src.mask_boxes;\n",
                 db);
        write_file(script, text);
        char cmd[2000];
        /* one autocommit transaction per statement: one 'Run Time' line each */
        snprintf(cmd, sizeof cmd, "sqlite3 %s < %s 2>&1 | grep -E '^Run Time' | tail -n 2 | "
                                  "awk '{printf \"%%s \", $4}'", db2, script);
        FILE *p = popen(cmd, "r");
        double t_sm = NAN, t_sb = NAN;
        if (p) {
            if (fscanf(p, "%lf %lf", &t_sm, &t_sb) != 2) t_sm = t_sb = NAN;
            pclose(p);
        }
        printf("  sqlite3 shell equivalent, masks (INSERT ... SELECT, one transaction): %.2f s, "
               "%.0f masks/s\n", t_sm, written / t_sm);
        printf("  sqlite3 shell equivalent, boxes (INSERT ... SELECT into the R*Tree): %.2f s, "
               "%.0f boxes/s\n", t_sb, written / t_sb);
        printf("  sqlite3 shell, masks + boxes in one go (the old single-path design): %.0f "
               "masks/s\n", written / (t_sm + t_sb));
    }

    /* ---- counting queries ---- */
    const char *queries[] = {
        "SELECT count(*) FROM masks WHERE area >= 1000",
        "SELECT count(*) FROM (SELECT image_id FROM masks WHERE area >= 1000 AND "
        "predicted_iou > 0.9 GROUP BY image_id HAVING count(*) >= 10)",
        "SELECT count(*) FROM mask_boxes WHERE x0 <= 1000 AND x1 >= 1000 AND y0 <= 700 AND y1 >= 700",
    };
    CHECK(store_open(&s, db, STORE_READONLY, &err) == 0);
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        q_int(store_db(s), queries[i]);   /* warm the page cache */
        t0 = now();
        int64_t v = q_int(store_db(s), queries[i]);
        double ms = (now() - t0) * 1e3;
        printf("query %zu: %.1f ms (= %lld): %s\n", i + 1, ms, (long long)v, queries[i]);
        if (shell) {
            char text[1200];
            snprintf(script, sizeof script, "%s/q.sql", tmp);
            snprintf(text, sizeof text, "%s;\n.timer on\n%s;\n", queries[i], queries[i]);
            write_file(script, text);
            char cmd[2000];
            snprintf(cmd, sizeof cmd, "sqlite3 -readonly %s < %s 2>&1 | grep '^Run Time' | "
                                      "awk '{printf \"%%.1f\", $4 * 1000}'", db, script);
            FILE *p = popen(cmd, "r");
            double sms = NAN;
            if (p) {
                if (fscanf(p, "%lf", &sms) != 1) sms = NAN;
                pclose(p);
            }
            printf("  sqlite3 shell: %.1f ms\n", sms);
        }
    }
    t0 = now();
    int64_t v = q_int(store_db(s), "SELECT sum(rle_area(rle) = area) FROM masks");
    printf("rle_area over every mask: %.0f ms (%lld masks, all equal to area: %s)\n",
           (now() - t0) * 1e3, (long long)written, v == written ? "yes" : "NO");
    store_close(s);
    for (int i = 0; i < pool_n; i++) free(pool[i].rle);
    free(pool);
    free(jobs);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!getenv("BENCH_KEEP") && system(cmd)) { /* best effort */ }
    return v == written ? 0 : 1;
}
