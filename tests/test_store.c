/* test_store.c: the job database on fabricated records: schema and
 * migrations, idempotent ingest, path escapes, leases (claim, lost lease,
 * retry, reclaim), one transaction per batch (injected faults, a full
 * disk), reading results back exactly, the rle_* SQL functions, corrupt and
 * foreign database files. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rle.h"
#include "store.h"
#include "test.h"

static char dir[] = "/tmp/test_store_XXXXXX";

static int64_t q_int(store_t *s, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t v = -999;
    if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        printf("# sql error: %s: %s\n", sql, sqlite3_errmsg(store_db(s)));
    sqlite3_finalize(st);
    return v;
}

static char *q_text(store_t *s, const char *sql) {
    static char buf[4096];
    sqlite3_stmt *st = NULL;
    buf[0] = 0;
    if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, sizeof buf, "%s", (const char *)sqlite3_column_text(st, 0));
    else
        snprintf(buf, sizeof buf, "ERROR: %s", sqlite3_errmsg(store_db(s)));
    sqlite3_finalize(st);
    return buf;
}

/* make_result: n masks of an h x w image: rectangles at varying places. */
static void make_result(amg_result *res, int n, int w, int h, int seed) {
    memset(res, 0, sizeof *res);
    res->width = w, res->height = h, res->n = n;
    res->recs = calloc((size_t)n, sizeof *res->recs);
    uint8_t *mask = malloc((size_t)w * h);
    uint32_t *counts = malloc(((size_t)w * h + 1) * sizeof *counts);
    for (int i = 0; i < n; i++) {
        int x0 = (seed * 7 + i * 3) % (w / 2), y0 = (seed * 5 + i * 11) % (h / 2);
        int x1 = x0 + 1 + (i * 13 + seed) % (w / 2), y1 = y0 + 1 + (i * 17 + seed) % (h / 2);
        memset(mask, 0, (size_t)w * h);
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) mask[y * w + x] = 1;
        size_t nc = rle_from_mask(mask, (uint32_t)h, (uint32_t)w, counts);
        amg_record *m = &res->recs[i];
        m->rle = malloc(rle_string_bound(nc));
        rle_encode_string(counts, nc, m->rle);
        m->area = (int64_t)rle_area(counts, nc);
        rle_bbox(counts, nc, (uint32_t)h, m->bbox);
        m->predicted_iou = 0.9 + i * 1e-3 + 1.0 / 3.0 * 1e-9;
        m->stability_score = 0.95 + seed * 1e-4;
        m->point[0] = x0 + 0.5, m->point[1] = y0 + 0.25;
        m->crop_box[0] = 0, m->crop_box[1] = 0, m->crop_box[2] = w, m->crop_box[3] = h;
    }
    free(mask);
    free(counts);
}

static void free_result(amg_result *res) {
    for (int i = 0; i < res->n; i++) free(res->recs[i].rle);
    free(res->recs);
}

static int same_result(const amg_result *a, const amg_result *b) {
    if (a->n != b->n || a->width != b->width || a->height != b->height) return 0;
    for (int i = 0; i < a->n; i++) {
        const amg_record *x = &a->recs[i], *y = &b->recs[i];
        if (strcmp(x->rle, y->rle) || x->area != y->area ||
            memcmp(x->bbox, y->bbox, sizeof x->bbox) || x->predicted_iou != y->predicted_iou ||
            x->stability_score != y->stability_score || memcmp(x->point, y->point, sizeof x->point) ||
            memcmp(x->crop_box, y->crop_box, sizeof x->crop_box))
            return 0;
    }
    return 1;
}

static void test_paths(void) {
    char out[64], tmp[64];
    const char raw[] = {'a', '/', (char)0xff, 'b', '\\', 'x', 'f', 'f', (char)0xc3, (char)0xa9, 0};
    size_t n = store_path_escape(raw, strlen(raw), out);
    TEST_CHECK(!strcmp(out, "a/\\xffb\\\\xff\xc3\xa9"), "escape: invalid byte as \\xHH, backslash doubled, UTF-8 kept",
               "got '%s'", out);
    snprintf(tmp, sizeof tmp, "%s", out);
    size_t m = store_path_unescape(tmp);
    TEST_CHECK(m == strlen(raw) && !memcmp(tmp, raw, m), "unescape restores the bytes",
               "n=%zu m=%zu", n, m);
    const char lit[] = "a/\\xffb";   /* a literal backslash-x-f-f: must not collide */
    char o2[64];
    store_path_escape(lit, strlen(lit), o2);
    store_path_escape("a/\xff" "b", 4, out);
    TEST_CHECK(strcmp(o2, out) != 0, "escape is injective (literal \\xff vs byte 0xff)", "%s", o2);
    store_path_escape("plain/é.jpg", strlen("plain/é.jpg"), out);
    TEST_CHECK(!strcmp(out, "plain/é.jpg"), "a UTF-8 path is stored unchanged", "%s", out);
    store_path_escape("\xed\xa0\x80", 3, out);   /* a UTF-16 surrogate: invalid UTF-8 */
    TEST_CHECK(!strcmp(out, "\\xed\\xa0\\x80"), "surrogates are invalid UTF-8", "%s", out);
}

/* test_image_errors: one command's ingest is all or nothing; inside a
 * batch, a data error of one image (a real constraint failure after some of
 * its masks were inserted, then the injected image fault) undoes that image
 * alone: the others of the batch commit, the failed one has no mask. */
static void test_image_errors(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/img.sqlite", dir);
    err_t err = {{0}};
    store_t *s = NULL;
    int rc = store_open(&s, path, STORE_CREATE, &err);
    TEST_CHECK(rc == 0, "image errors: create a database", "%s", err.msg);
    if (rc) return;
    int added = 0;
    rc = store_ingest_begin(s, &err);
    if (!rc) rc = store_ingest_add(s, "/x/1.png", 8, &added, &err);
    if (!rc) rc = store_ingest_add(s, "/x/2.png", 8, &added, &err);
    store_ingest_rollback(s);
    TEST_CHECK(rc == 0 && q_int(s, "SELECT count(*) FROM images") == 0,
               "ingest rollback: none of the paths stays", "rc=%d %s", rc, err.msg);
    rc = store_ingest_begin(s, &err);
    for (int i = 1; i <= 3 && !rc; i++) {
        char p[32];
        snprintf(p, sizeof p, "/x/%d.png", i % 10);
        rc = store_ingest_add(s, p, strlen(p), &added, &err);
    }
    if (!rc) rc = store_ingest_end(s, &err);
    TEST_CHECK(rc == 0 && q_int(s, "SELECT count(*) FROM images") == 3, "ingest end: all paths",
               "rc=%d %s", rc, err.msg);
    int64_t run_id = 0;
    store_run_info info = {0};
    snprintf(info.params, sizeof info.params, "{}");
    store_run_begin(s, &info, &run_id, &err);
    store_job jobs[3];
    int got = 0;
    store_claim(s, "me", 60, 3, jobs, &got, &err);
    TEST_CHECK(got == 3, "image errors: 3 leased", "got=%d", got);
    if (got != 3) return;
    /* a real constraint failure at the 4th mask of image 2 */
    char trig[256];
    snprintf(trig, sizeof trig, "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.masks "
             "WHEN NEW.image_id = %lld AND NEW.idx = 3 BEGIN SELECT RAISE(ABORT, 'refused'); END",
             (long long)jobs[1].id);
    TEST_CHECK(sqlite3_exec(store_db(s), trig, NULL, NULL, NULL) == SQLITE_OK, "a refusing trigger",
               "%s", sqlite3_errmsg(store_db(s)));
    amg_result r[3];
    for (int i = 0; i < 3; i++) make_result(&r[i], 10, 32, 24, 10 + i);
    store_timing t = {.t_load = 0, .t_generate = 0};
    int wr[3] = {0};
    char reason[512] = "";
    rc = store_batch_begin(s, &err);
    for (int i = 0; i < 3 && !rc; i++) {
        if ((rc = store_image_begin(s, &err))) break;
        wr[i] = store_put_result(s, run_id, jobs[i].id, "me", &r[i], &t, &err);
        if (wr[i] == ERR_INVALID) {
            snprintf(reason, sizeof reason, "%s", err.msg);
            if (!(rc = store_image_rollback(s, &err)))
                rc = store_put_failure(s, run_id, jobs[i].id, "me", reason, 1, 0, 3, &err) == 2
                         ? 0 : -1;
        } else {
            rc = wr[i] < 0 ? wr[i] : store_image_end(s, &err);
        }
    }
    if (!rc) rc = store_batch_commit(s, &err);
    else store_batch_rollback(s);
    TEST_CHECK(rc == 0 && wr[0] == 1 && wr[1] == ERR_INVALID && wr[2] == 1 &&
                   strstr(reason, "refused"),
               "a constraint failure is ERR_INVALID (a data error of that image)",
               "rc=%d wr=%d,%d,%d %s / %s", rc, wr[0], wr[1], wr[2], reason, err.msg);
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks") == 20 &&
                   q_int(s, "SELECT count(*) FROM masks WHERE image_id = 2") == 0 &&
                   !strcmp(q_text(s, "SELECT group_concat(status) FROM (SELECT status FROM images ORDER BY id)"),
                           "done,failed,done"),
               "the failed image rolled back alone (no partial masks), the others committed",
               "%lld masks, %s", (long long)q_int(s, "SELECT count(*) FROM masks"),
               q_text(s, "SELECT group_concat(status) FROM (SELECT status FROM images ORDER BY id)"));
    TEST_CHECK(strstr(q_text(s, "SELECT error FROM images WHERE id = 2"), "refused") != NULL,
               "the failure keeps the real reason", "%s", q_text(s, "SELECT error FROM images WHERE id = 2"));
    /* the injected image fault: same path, after all of its masks */
    for (int i = 0; i < 3; i++) free(jobs[i].path);
    sqlite3_exec(store_db(s), "UPDATE images SET status = 'pending' WHERE id = 2", NULL, NULL, NULL);
    sqlite3_exec(store_db(s), "DROP TRIGGER refuse", NULL, NULL, NULL);
    store_claim(s, "me", 60, 1, jobs, &got, &err);
    store_fault_arm_image(1);
    rc = store_batch_begin(s, &err);
    if (!rc) rc = store_image_begin(s, &err);
    int w = rc ? rc : store_put_result(s, run_id, jobs[0].id, "me", &r[1], &t, &err);
    int rb = w == ERR_INVALID ? store_image_rollback(s, &err) : -1;
    if (!rb) rb = store_batch_commit(s, &err);
    TEST_CHECK(w == ERR_INVALID && rb == 0 && strstr(err.msg, "injected") &&
                   q_int(s, "SELECT count(*) FROM masks WHERE image_id = 2") == 0 &&
                   !strcmp(q_text(s, "SELECT status FROM images WHERE id = 2"), "running"),
               "injected image fault: ERR_INVALID after the masks, undone by the savepoint",
               "w=%d rb=%d %s", w, rb, err.msg);
    if (got) free(jobs[0].path);
    for (int i = 0; i < 3; i++) free_result(&r[i]);
    store_close(s);
}

int main(void) {
    CHECK(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/db.sqlite", dir);
    err_t err = {{0}};
    test_paths();
    test_image_errors();

    store_t *s = NULL;
    int rc = store_open(&s, path, STORE_CREATE, &err);
    TEST_CHECK(rc == 0, "create a database", "%s", err.msg);
    if (rc) return TEST_REPORT();
    TEST_CHECK(q_int(s, "PRAGMA user_version") == store_schema_version(), "schema version set", " ");
    TEST_CHECK(!strcmp(q_text(s, "PRAGMA journal_mode"), "wal"), "WAL mode", "%s", q_text(s, "PRAGMA journal_mode"));
    TEST_CHECK(q_int(s, "PRAGMA foreign_keys") == 1, "foreign keys on", " ");
    TEST_CHECK(q_int(s, "SELECT count(*) FROM sqlite_schema WHERE name IN ('runs','images',"
                        "'masks','mask_boxes','objects','image_summary','run_summary')") == 7,
               "tables and views exist", " ");

    /* ingest: idempotent, raw bytes kept */
    const char *paths[] = {"/d/a.jpg", "/d/b.png", "/d/\xff\xfe.png", "/d/a.jpg", "/d/c.tif"};
    int added_total = 0;
    rc = store_ingest_begin(s, &err);
    for (int i = 0; i < 5 && !rc; i++) {
        int added;
        rc = store_ingest_add(s, paths[i], strlen(paths[i]), &added, &err);
        added_total += added;
    }
    if (!rc) rc = store_ingest_end(s, &err);
    TEST_CHECK(rc == 0 && added_total == 4, "ingest adds each path once", "rc=%d added=%d %s", rc,
               added_total, err.msg);
    TEST_CHECK(q_int(s, "SELECT count(*) FROM images WHERE status='pending'") == 4,
               "4 pending images", " ");

    int64_t run_id = 0;
    store_run_info info = {0};
    snprintf(info.params, sizeof info.params, "{}");
    snprintf(info.model_path, sizeof info.model_path, "m.pt");
    snprintf(info.model_sha256, sizeof info.model_sha256, "00");
    rc = store_run_begin(s, &info, &run_id, &err);
    TEST_CHECK(rc == 0 && run_id == 1, "run row", "%s", err.msg);

    store_job jobs[8];
    int got = 0;
    rc = store_claim(s, "me", 60, 2, jobs, &got, &err);
    TEST_CHECK(rc == 0 && got == 2 && jobs[0].id == 1 && jobs[1].id == 2 && jobs[0].attempts == 0,
               "claim leases the lowest ids (a lease is not an attempt)", "rc=%d got=%d", rc, got);
    TEST_CHECK(q_int(s, "SELECT count(*) FROM images WHERE status='running' AND lease_owner='me' "
                        "AND lease_expires > 0") == 2, "leases recorded", " ");

    amg_result r1, r2, back;
    make_result(&r1, 40, 64, 48, 1);
    make_result(&r2, 7, 64, 48, 2);
    store_timing t = {.t_load = 0.01, .t_generate = 0.5};
    rc = store_batch_begin(s, &err);
    int w1 = rc ? rc : store_put_result(s, run_id, jobs[0].id, "me", &r1, &t, &err);
    int w2 = w1 < 0 ? w1 : store_put_result(s, run_id, jobs[1].id, "someone-else", &r2, &t, &err);
    if (w1 >= 0 && w2 >= 0) rc = store_batch_commit(s, &err);
    TEST_CHECK(rc == 0 && w1 == 1 && w2 == 0, "result written by the owner, refused to a non-owner",
               "rc=%d w1=%d w2=%d %s", rc, w1, w2, err.msg);
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks WHERE image_id=1") == 40 &&
                   q_int(s, "SELECT count(*) FROM masks WHERE image_id=2") == 0,
               "masks of the owner's image only", " ");
    TEST_CHECK(q_int(s, "SELECT count(*) FROM mask_boxes") == 0,
               "the writer does not touch mask_boxes (derived, caught up later)", " ");
    int64_t added = -1;
    rc = store_boxes_catch_up(s, 16, &added, &err);   /* 16 rows a chunk: 3 chunks */
    TEST_CHECK(rc == 0 && added == 40, "catch-up adds the 40 boxes in chunks", "rc=%d added=%lld %s",
               rc, (long long)added, err.msg);
    TEST_CHECK(q_int(s, "SELECT count(*) FROM mask_boxes") == 40, "one box per mask", " ");
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks m JOIN mask_boxes b ON b.id = m.id WHERE "
                        "b.x0 = m.bbox_x AND b.x1 = m.bbox_x + m.bbox_w AND b.y0 = m.bbox_y AND "
                        "b.y1 = m.bbox_y + m.bbox_h") == 40,
               "every box = its mask's bbox (x0 = x, x1 = x + w, y0 = y, y1 = y + h)", " ");
    rc = store_boxes_catch_up(s, 0, &added, &err);
    TEST_CHECK(rc == 0 && added == 0, "catch-up when up to date adds nothing", "rc=%d added=%lld",
               rc, (long long)added);
    rc = store_load_result(s, 1, &back, &err);
    TEST_CHECK(rc == 0 && same_result(&r1, &back), "masks read back exactly (strings, doubles)",
               "%s", err.msg);
    store_result_free(&back);
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks WHERE rle_area(rle) = area") == 40,
               "rle_area(rle) = area", " ");
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks WHERE rle_iou(rle, rle) = 1.0") == 40,
               "rle_iou(a, a) = 1", " ");
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks WHERE rle_bbox(rle) = printf('[%!.17g,%!.17g,%!.17g,%!.17g]', bbox_x, bbox_y, bbox_w, bbox_h)") >= 0,
               "rle_bbox runs", " ");
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks WHERE json_extract(rle_bbox(rle), '$[2]') = bbox_w "
                        "AND json_extract(rle_bbox(rle), '$[0]') = bbox_x") == 40,
               "rle_bbox = stored bbox", " ");
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks WHERE rle_contains(rle, CAST(bbox_x AS INT), "
                        "CAST(bbox_y AS INT)) = 1 AND rle_contains(rle, -1, 0) = 0 "
                        "AND rle_contains(rle, 64, 0) = 0") == 40,
               "rle_contains: box corner inside, outside pixels not", " ");
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks a JOIN masks b ON a.id < b.id WHERE "
                        "rle_iou(a.rle, b.rle) BETWEEN 0 AND 1 AND rle_intersection(a.rle, b.rle) <= "
                        "min(a.area, b.area)") == 40 * 39 / 2,
               "rle_iou in [0,1], intersection <= areas, all pairs", " ");
    TEST_CHECK(q_int(s, "SELECT hex(substr(rle_to_png(rle), 1, 8)) = '89504E470D0A1A0A' FROM masks "
                        "LIMIT 1") == 1, "rle_to_png gives a PNG", " ");
    TEST_CHECK(!strncmp(q_text(s, "SELECT rle_area('{\"size\":[2,2],\"counts\":\"!!\"}')"), "ERROR", 5),
               "malformed rle is an SQL error", "%s", q_text(s, "SELECT rle_area('x')"));
    TEST_CHECK(q_int(s, "SELECT masks FROM image_summary WHERE image_id = 1") == 40 &&
                   q_int(s, "SELECT images_done FROM run_summary WHERE run_id = 1") == 1,
               "views count", " ");
    TEST_CHECK(q_int(s, "SELECT count(*) FROM mask_boxes WHERE x0 <= 10 AND x1 >= 10 AND y0 <= 5 AND y1 >= 5") ==
                   q_int(s, "SELECT count(*) FROM masks WHERE bbox_x <= 10 AND bbox_x + bbox_w >= 10 "
                            "AND bbox_y <= 5 AND bbox_y + bbox_h >= 5"),
               "R*Tree query = scan", " ");

    /* a second result for a done image is impossible */
    rc = store_batch_begin(s, &err);
    int w3 = rc ? rc : store_put_result(s, run_id, jobs[0].id, "me", &r1, &t, &err);
    store_batch_commit(s, &err);
    TEST_CHECK(w3 == 0 && q_int(s, "SELECT count(*) FROM masks") == 40, "no second set of masks",
               "w3=%d", w3);

    /* failures: transient retried, then failed at the limit; permanent at once */
    store_batch_begin(s, &err);
    int f1 = store_put_failure(s, run_id, jobs[1].id, "me", "device error", 0, 0, 2, &err);
    store_batch_commit(s, &err);
    TEST_CHECK(f1 == 1 && q_int(s, "SELECT attempts FROM images WHERE id=2") == 1 && !strcmp(q_text(s, "SELECT status FROM images WHERE id=2"), "pending"),
               "transient failure: back to pending", "f1=%d %s", f1, err.msg);
    free(jobs[0].path), free(jobs[1].path);
    rc = store_claim(s, "me", 60, 1, jobs, &got, &err);
    TEST_CHECK(rc == 0 && got == 1 && jobs[0].id == 2 && jobs[0].attempts == 1, "retry claimed again",
               "got=%d", got);
    store_batch_begin(s, &err);
    int st1 = store_start(s, 2, "me", &err);
    int f2 = store_put_failure(s, run_id, 2, "me", "device error again", 0, 1, 2, &err);
    store_batch_commit(s, &err);
    TEST_CHECK(st1 == 1 && f2 == 2 && q_int(s, "SELECT attempts FROM images WHERE id=2") == 2,
               "start counts the attempt once; failure returns 2 (failed)", "st=%d f=%d", st1, f2);
    TEST_CHECK(!strcmp(q_text(s, "SELECT status || ':' || error FROM images WHERE id=2"),
                       "failed:device error again"), "failed at the attempt limit, with the reason",
               "%s", q_text(s, "SELECT status || ':' || error FROM images WHERE id=2"));
    free(jobs[0].path);

    /* the non-UTF-8 path comes back as its bytes */
    rc = store_claim(s, "me", 60, 2, jobs, &got, &err);
    TEST_CHECK(rc == 0 && got == 2 && !strcmp(jobs[0].path, "/d/\xff\xfe.png"),
               "non-UTF-8 path round trip", "%s", got ? jobs[0].path : "-");
    TEST_CHECK(!strcmp(q_text(s, "SELECT path FROM images WHERE id=3"), "/d/\\xff\\xfe.png"),
               "non-UTF-8 path stored escaped", "%s", q_text(s, "SELECT path FROM images WHERE id=3"));

    /* injected fault in the middle of a batch: nothing of the batch stays */
    amg_result r3;
    make_result(&r3, 25, 64, 48, 3);
    store_fault_arm(2);
    rc = store_batch_begin(s, &err);
    int a = store_put_result(s, run_id, jobs[0].id, "me", &r3, &t, &err);
    int b = a < 0 ? a : store_put_result(s, run_id, jobs[1].id, "me", &r3, &t, &err);
    if (a < 0 || b < 0) store_batch_rollback(s);
    TEST_CHECK(a == 1 && b == ERR_IO && strstr(err.msg, "injected"), "injected fault on the 2nd step",
               "a=%d b=%d %s", a, b, err.msg);
    TEST_CHECK(q_int(s, "SELECT count(*) FROM masks") == 40 &&
                   q_int(s, "SELECT count(*) FROM images WHERE status='running'") == 2,
               "the whole batch rolled back", " ");

    /* kill -9 equivalent: reclaim the leases; with max_attempts 1 they fail */
    int64_t rec, fail;
    rc = store_reclaim(s, 2, run_id, &rec, &fail, &err);
    TEST_CHECK(rc == 0 && rec == 2 && fail == 0 &&
                   q_int(s, "SELECT count(*) FROM images WHERE status='pending'") == 2,
               "reclaim: abandoned leases back to pending", "rec=%lld", (long long)rec);
    free(jobs[0].path), free(jobs[1].path);
    store_claim(s, "me2", 60, 2, jobs, &got, &err);
    store_batch_begin(s, &err);
    store_start(s, jobs[0].id, "me2", &err);   /* it was being processed */
    store_batch_commit(s, &err);
    rc = store_reclaim(s, 1, run_id, &rec, &fail, &err);
    TEST_CHECK(rc == 0 && fail == 1 && rec == 1 &&
                   strstr(q_text(s, "SELECT error FROM images WHERE id=3"), "abandoned") &&
                   !strcmp(q_text(s, "SELECT status FROM images WHERE id=4"), "pending"),
               "reclaim: the started image out of attempts fails, the waiting one does not",
               "fail=%lld rec=%lld %s", (long long)fail, (long long)rec,
               q_text(s, "SELECT error FROM images WHERE id=3"));
    free(jobs[0].path), free(jobs[1].path);

    /* a later batch: catch-up adds exactly the new masks' boxes */
    int added_img = 0;
    store_ingest_begin(s, &err);
    store_ingest_add(s, "/d/later.png", 12, &added_img, &err);
    store_ingest_end(s, &err);
    store_claim(s, "me3", 60, 2, jobs, &got, &err);   /* image 4 (given back) and the new one */
    store_batch_begin(s, &err);
    int w5 = got == 2 ? store_put_result(s, run_id, jobs[1].id, "me3", &r3, &t, &err) : -1;
    if (got >= 1) store_release(s, jobs[0].id, "me3", 0, &err);
    rc = store_batch_commit(s, &err);
    for (int i = 0; i < got; i++) free(jobs[i].path);
    rc = rc ? rc : store_boxes_catch_up(s, 0, &added, &err);
    TEST_CHECK(w5 == 1 && rc == 0 && added == 25 &&
                   q_int(s, "SELECT count(*) FROM mask_boxes") == 65 &&
                   q_int(s, "SELECT count(*) FROM masks m JOIN mask_boxes b ON b.id = m.id WHERE "
                            "b.x0 = m.bbox_x AND b.x1 = m.bbox_x + m.bbox_w AND b.y0 = m.bbox_y "
                            "AND b.y1 = m.bbox_y + m.bbox_h") == 65,
               "second catch-up: only the new boxes, all equal to their bboxes",
               "w5=%d rc=%d added=%lld %s", w5, rc, (long long)added, err.msg);
    TEST_CHECK(!strcmp(q_text(s, "PRAGMA integrity_check"), "ok"), "integrity_check ok", " ");
    store_close(s);

    /* a full disk: max_page_count; the batch fails as a whole with a clear error */
    setenv("SAM2AMG_MAX_PAGES", "60", 1);
    rc = store_open(&s, path, 0, &err);
    unsetenv("SAM2AMG_MAX_PAGES");
    TEST_CHECK(rc == 0, "reopen with a page limit", "%s", err.msg);
    if (!rc) {
        int64_t before = q_int(s, "SELECT count(*) FROM masks");
        store_claim(s, "me3", 60, 1, jobs, &got, &err);
        amg_result big;
        make_result(&big, 3000, 64, 48, 4);
        rc = store_batch_begin(s, &err);
        int w = rc ? rc : store_put_result(s, run_id, jobs[0].id, "me3", &big, &t, &err);
        if (w >= 0) w = store_batch_commit(s, &err);
        if (w < 0) store_batch_rollback(s);
        TEST_CHECK(w == ERR_IO && strstr(err.msg, "full"), "disk full: ERR_IO 'full'", "w=%d %s", w,
                   err.msg);
        TEST_CHECK(q_int(s, "SELECT count(*) FROM masks") == before &&
                       !strcmp(q_text(s, "PRAGMA integrity_check"), "ok"),
                   "disk full: nothing half-written, integrity ok", " ");
        free_result(&big);
        free(jobs[0].path);
        store_close(s);
    }

    /* corrupt and foreign files */
    char bad[1024];
    snprintf(bad, sizeof bad, "%s/garbage.sqlite", dir);
    FILE *f = fopen(bad, "wb");
    for (int i = 0; i < 8192; i++) fputc((i * 7919) & 0xff, f);
    fclose(f);
    rc = store_open(&s, bad, 0, &err);
    TEST_CHECK(rc == ERR_FORMAT && s == NULL && strstr(err.msg, "garbage.sqlite"),
               "garbage file: ERR_FORMAT naming the file", "rc=%d %s", rc, err.msg);
    snprintf(bad, sizeof bad, "%s/other.sqlite", dir);
    sqlite3 *o;
    sqlite3_open(bad, &o);
    sqlite3_exec(o, "CREATE TABLE t(x)", NULL, NULL, NULL);
    sqlite3_close(o);
    rc = store_open(&s, bad, 0, &err);
    TEST_CHECK(rc == ERR_FORMAT && strstr(err.msg, "not a sam2amg"), "someone else's database refused",
               "rc=%d %s", rc, err.msg);
    snprintf(bad, sizeof bad, "%s/nodir/x.sqlite", dir);
    rc = store_open(&s, bad, STORE_CREATE, &err);
    TEST_CHECK(rc == ERR_IO, "missing directory: ERR_IO", "rc=%d %s", rc, err.msg);
    /* a page of a real database overwritten */
    snprintf(bad, sizeof bad, "cp %s %s/copy.sqlite && dd if=/dev/urandom of=%s/copy.sqlite bs=1 "
                              "seek=100 count=3000 conv=notrunc status=none", path, dir, dir);
    if (system(bad) == 0) {
        snprintf(bad, sizeof bad, "%s/copy.sqlite", dir);
        rc = store_open(&s, bad, 0, &err);
        if (rc == 0) {
            int64_t c[4], m;
            rc = store_counts(s, c, &m, &err);
            store_close(s);
        }
        TEST_CHECK(rc == ERR_FORMAT, "overwritten header page: ERR_FORMAT", "rc=%d %s", rc, err.msg);
    }
    free_result(&r1), free_result(&r2), free_result(&r3);
    snprintf(bad, sizeof bad, "rm -rf %s", dir);
    if (system(bad)) { /* best effort */ }
    return TEST_REPORT();
}
