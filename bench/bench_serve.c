/* bench_serve.c: the server time of `sam2amg serve`'s pages on a database
 * of 1,000,000 masks (goal: every page under 200 ms).
 *
 * The database is generated with SQL: 9,174 images of 1500x1000 (1 in 200
 * failed), 100 or 130 masks each, whose RLE strings are 8 distinct real masks
 * (discs of radius 4 to 120 px encoded by rle.c) and whose scores are
 * pseudo-random (1 in 50 NULL, as schema 002 allows). Requests go straight
 * to serve_handle (no sockets: the time is the server's own), each page
 * checked (status, and for the image JSON its mask count) before it is
 * timed; the median and the worst of BENCH_REPS calls are printed. Also:
 * opening (the summary index reads every mask once) and the first grid page
 * (sort=id, newest first, where it must appear) after another connection
 * committed an image with 100 more masks (the incremental index
 * refresh). Thumbnails need image files and are not timed here.
 * Environment: BENCH_MASKS (default 1000000), BENCH_DIR (default /tmp),
 * BENCH_REPS (default 20), BENCH_KEEP=1 keeps the database.
 * Arguments of bench/run.sh are ignored.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rle.h"
#include "serve.h"
#include "store.h"

enum { W = 1500, H = 1000, MASKS_PER_IMAGE = 100, SHAPES = 8 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void exec_or_die(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "bench_serve: %s\n  in: %.200s\n", msg, sql);
        exit(1);
    }
}

/* make_db: the generated database at path (n_masks masks) */
static void make_db(const char *path, long long n_masks) {
    unlink(path);
    store_t *s = NULL;
    err_t err = {{0}};
    if (store_open(&s, path, STORE_CREATE, &err)) {
        fprintf(stderr, "bench_serve: %s\n", err.msg);
        exit(1);
    }
    sqlite3 *db = store_db(s);
    exec_or_die(db, "BEGIN");
    exec_or_die(db, "INSERT INTO runs (params, model_path, model_sha256, config, program_version, devices, "
                    "started_at, finished_at, exit_status) VALUES ('{\"points_per_side\":32}', 'bench', "
                    "'00', 'large', 'bench', 'cpu', 1700000000, 1700003600, 0)");
    exec_or_die(db, "CREATE TEMP TABLE shapes (k INTEGER PRIMARY KEY, rle TEXT, area INTEGER, r INTEGER)");
    uint8_t *m = malloc((size_t)W * H);
    uint32_t *cnt = malloc(((size_t)W * H + 1) * sizeof *cnt);
    char *str = malloc(rle_string_bound((size_t)W * H + 1));
    char *json = malloc(rle_string_bound((size_t)W * H + 1) + 64);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "INSERT INTO shapes VALUES (?1, ?2, ?3, ?4)", -1, &st, NULL);
    for (int k = 0; k < SHAPES; k++) {
        int r = 4 << (k * 5 / SHAPES), cx = 200 + k * 150, cy = 300 + k * 60;
        memset(m, 0, (size_t)W * H);
        long long area = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) m[(size_t)y * W + x] = 1, area++;
        size_t n = rle_from_mask(m, H, W, cnt);
        rle_encode_string(cnt, n, str);
        store_rle_json(json, rle_string_bound((size_t)W * H + 1) + 64, H, W, str);
        sqlite3_bind_int(st, 1, k);
        sqlite3_bind_text(st, 2, json, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, area);
        sqlite3_bind_int(st, 4, r);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    free(m), free(cnt), free(str), free(json);
    /* 2 in 3 images get 100 masks, the others 130, the failed none */
    long long n_img = n_masks / 109;
    char q[2048];
    snprintf(q, sizeof q,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %lld) "
             "INSERT INTO images (id, path, status, attempts, error, run_id, width, height, added_at, "
             "finished_at, t_load, t_generate) "
             "SELECT i, printf('/data/sa1b/sa_%%07d.jpg', (i * 7919) %% 1000003), "
             "CASE WHEN i %% 200 = 0 THEN 'failed' ELSE 'done' END, 1, "
             "CASE WHEN i %% 200 = 0 THEN 'corrupt JPEG data' END, 1, %d, %d, 1700000000, "
             "1700000000 + i * 0.3, 0.01, 0.3 FROM n",
             n_img, W, H);
    exec_or_die(db, q);
    snprintf(q, sizeof q,
             "WITH RECURSIVE n(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM n WHERE j < %d) "
             "INSERT INTO masks (image_id, run_id, idx, rle, area, bbox_x, bbox_y, bbox_w, bbox_h, "
             "predicted_iou, stability_score, point_x, point_y, crop_x, crop_y, crop_w, crop_h) "
             "SELECT i.id, 1, n.j, s.rle, s.area, 200 + s.k * 150 - s.r, 300 + s.k * 60 - s.r, 2 * s.r, "
             "2 * s.r, CASE WHEN (i.id * 31 + n.j) %% 50 = 0 THEN NULL "
             "ELSE 0.5 + ((i.id * 7 + n.j * 13) %% 500) / 1000.0 END, "
             "0.8 + ((i.id * 11 + n.j * 3) %% 200) / 1000.0, 200 + s.k * 150, 300 + s.k * 60, 0, 0, %d, %d "
             "FROM images i CROSS JOIN n JOIN shapes s ON s.k = (i.id * 5 + n.j) %% %d "
             "WHERE i.status = 'done' AND (i.id %% 3 = 0 OR n.j < %d)",
             MASKS_PER_IMAGE + 29, W, H, SHAPES, MASKS_PER_IMAGE);
    exec_or_die(db, q);
    exec_or_die(db, "COMMIT");
    store_close(s);
}

static int get(serve_t *sv, const char *url, int nargs, const char *const *k, const char *const *v,
               size_t *len, char **body) {
    serve_resp r;
    int st = serve_handle(sv, url, nargs, k, v, &r);
    if (len) *len = r.len;
    if (body) *body = r.body, r.body = NULL;
    serve_resp_free(&r);
    return st;
}

typedef struct page {
    const char *name, *url;
    int nargs;
    const char *k[3], *v[3];
} page;

int main(void) {
    long long n_masks = getenv("BENCH_MASKS") ? atoll(getenv("BENCH_MASKS")) : 1000000;
    int reps = getenv("BENCH_REPS") ? atoi(getenv("BENCH_REPS")) : 20;
    if (n_masks < 1000 || reps < 1 || reps > 1000) {
        fprintf(stderr, "bench_serve: BENCH_MASKS >= 1000, BENCH_REPS in [1, 1000]\n");
        return 2;
    }
    const char *dir = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    char path[1024];
    snprintf(path, sizeof path, "%s/bench_serve_%d.db", dir, (int)getpid());
    double t0 = now();
    make_db(path, n_masks);
    double t_make = now() - t0;
    t0 = now();
    serve_t *sv = NULL;
    err_t err = {{0}};
    if (serve_open(&sv, path, &err)) {
        fprintf(stderr, "bench_serve: %s\n", err.msg);
        return 1;
    }
    double t_open = now() - t0;
    sqlite3 *db = NULL;
    sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    sqlite3_stmt *st = NULL;
    long long masks = 0, images = 0, mid = 0;
    sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM masks), (SELECT count(*) FROM images)", -1, &st, NULL);
    if (sqlite3_step(st) == SQLITE_ROW) masks = sqlite3_column_int64(st, 0), images = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    mid = images / 2 + 1;   /* not a multiple of 3 or 200: 100 masks */
    while (mid % 3 == 0 || mid % 200 == 0) mid++;
    sqlite3_close(db);
    printf("database: %lld images, %lld masks, made in %.1f s; serve_open (index of every mask) %.0f ms\n",
           images, masks, t_make, t_open * 1e3);

    char id_url[3][64], pg_mid[32], pg_late[32];
    long long npg = (images + 47) / 48;   /* serve.c's SERVE_PER_PAGE */
    snprintf(pg_mid, sizeof pg_mid, "%lld", npg / 2 + 1);
    snprintf(pg_late, sizeof pg_late, "%lld", npg - npg / 5);
    snprintf(id_url[0], 64, "/image/%lld", mid);
    snprintf(id_url[1], 64, "/api/image/%lld", mid);
    snprintf(id_url[2], 64, "/api/image/%lld", images);
    page pages[] = {
        {"run page", "/", 0, {0}, {0}},
        {"grid, first page (masks desc)", "/images", 0, {0}, {0}},
        {"grid, sort=iou, a middle page", "/images", 2, {"sort", "page"}, {"iou", pg_mid}},
        {"grid, sort=path, a late page", "/images", 2, {"sort", "page"}, {"path", pg_late}},
        {"grid, status=failed", "/images", 1, {"status"}, {"failed"}},
        {"image page", id_url[0], 0, {0}, {0}},
        {"image JSON (100 masks)", id_url[1], 0, {0}, {0}},
        {"image JSON, last image", id_url[2], 0, {0}, {0}},
        {"404 (unknown id)", "/image/999999999", 0, {0}, {0}},
    };
    int npages = (int)(sizeof pages / sizeof pages[0]), worst_fail = 0;
    double *t = malloc(sizeof(double) * (size_t)reps);
    printf("%-32s %10s %10s %10s\n", "page", "median ms", "max ms", "bytes");
    for (int p = 0; p < npages; p++) {
        size_t len = 0;
        char *body = NULL;
        int want = strstr(pages[p].name, "404") ? 404 : 200;
        int got = get(sv, pages[p].url, pages[p].nargs, pages[p].k, pages[p].v, &len, &body);
        int ok = got == want;
        if (ok && p == 6) {   /* 100 mask records */
            int n = 0;
            for (const char *c = body; (c = strstr(c, "\"counts\":")); c++) n++;
            ok = n == MASKS_PER_IMAGE;
        }
        free(body);
        if (!ok) {
            printf("%-32s FAILED: status %d\n", pages[p].name, got);
            worst_fail = 1;
            continue;
        }
        for (int i = 0; i < reps; i++) {
            double a = now();
            get(sv, pages[p].url, pages[p].nargs, pages[p].k, pages[p].v, NULL, NULL);
            t[i] = now() - a;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        printf("%-32s %10.2f %10.2f %10zu%s\n", pages[p].name, t[reps / 2] * 1e3, t[reps - 1] * 1e3, len,
               t[reps / 2] > 0.2 ? "  OVER 200 ms" : "");
        if (t[reps / 2] > 0.2) worst_fail = 1;
    }
    /* another connection appends an image with 100 masks: the next grid
     * page re-reads the images and counts only the new masks */
    sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    char q[1024];
    snprintf(q, sizeof q,
             "BEGIN; INSERT INTO images (id, path, status, run_id, width, height, added_at) VALUES "
             "(%lld, '/data/new.jpg', 'done', 1, %d, %d, 1700009999); "
             "INSERT INTO masks (image_id, run_id, idx, rle, area, bbox_x, bbox_y, bbox_w, bbox_h, predicted_iou, "
             "stability_score, point_x, point_y, crop_x, crop_y, crop_w, crop_h) SELECT %lld, 1, idx, rle, area, "
             "bbox_x, bbox_y, bbox_w, bbox_h, predicted_iou, stability_score, point_x, point_y, crop_x, crop_y, "
             "crop_w, crop_h FROM masks WHERE image_id = %lld; COMMIT;",
             images + 1, W, H, images + 1, mid);
    exec_or_die(db, q);
    sqlite3_close(db);
    usleep(1100 * 1000);   /* past the index's refresh interval */
    double a = now();
    size_t len = 0;
    char *body = NULL;
    const char *rk[] = {"sort", "order"}, *rv[] = {"id", "desc"};
    int got = get(sv, "/images", 2, rk, rv, &len, &body);
    double tr = now() - a;
    char want[64];
    snprintf(want, sizeof want, "data-id=\"%lld\" data-masks=\"100\"", images + 1);
    int ok = got == 200 && body && strstr(body, want);
    if (!ok && body && getenv("BENCH_DEBUG")) printf("%.3000s\n", body);
    free(body);
    printf("%-32s %10.2f %10s %10zu%s\n", "grid after a commit (refresh)", tr * 1e3, "", len,
           ok ? (tr > 0.2 ? "  OVER 200 ms" : "") : "  FAILED: new image not shown");
    if (!ok || tr > 0.2) worst_fail = 1;
    free(t);
    serve_free(sv);
    if (!getenv("BENCH_KEEP")) {
        unlink(path);
        char side[1100];
        snprintf(side, sizeof side, "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", path);
        unlink(side);
    } else {
        printf("kept %s\n", path);
    }
    printf("%s\n", worst_fail ? "bench_serve: goal missed (or a page failed)" : "all pages under 200 ms");
    return worst_fail;
}
