/* test_store_migrate.c: schema migrations on an existing database, and
 * scores that are not finite numbers.
 *
 * A version-1 database (schema/001_init.sql as shipped, with runs, images,
 * masks and their mask_boxes) is opened by the current store: it must be
 * upgraded in place (user_version = store_schema_version()), keep every
 * row and mask id (so the R*Tree still matches), keep the views, pass
 * integrity and foreign-key checks, and end with the same masks table as a
 * database created from scratch. Then a record whose stability score and
 * predicted IoU are NaN (0/0, as the official arithmetic gives for an empty
 * union) is stored as NULL and read back as NaN, next to a finite one.
 * A version-4 database (schema 001..004 as shipped, images with t_load and
 * t_generate) gains 005's stage columns: its old rows keep their times and
 * read NULL stages; a result stored after the upgrade carries its stages
 * (NULL where not measured, a negative time). */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "test.h"

static char dir[] = "/tmp/test_store_migrate_XXXXXX";

static int64_t q_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t v = -999;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        printf("# sql error: %s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return v;
}

static char *q_text(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0))
        out = strdup((const char *)sqlite3_column_text(st, 0));
    else
        out = strdup(sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return out;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

/* a version-1 database as sam2amg 1 wrote it: 2 images, 3 masks, boxes */
static int make_v1(const char *path) {
    char *sql = read_file("schema/001_init.sql");
    if (!sql) return -1;
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    const char *rows =
        "INSERT INTO runs VALUES (1, '{}', 'm.pt', '00', 'micro', '0.1', 'cpu', 10.0, 20.0, 0);"
        "INSERT INTO images(id, path, status, run_id, width, height, added_at) VALUES "
        "  (1, '/d/a.png', 'done', 1, 4, 3, 1.0), (2, '/d/b.png', 'done', 1, 4, 3, 1.0),"
        "  (3, '/d/c.png', 'pending', NULL, NULL, NULL, 1.0);"
        "INSERT INTO masks VALUES"
        "  (5, 1, 1, 0, '{\"size\":[3,4],\"counts\":\"04;0\"}', 4, 0, 0, 1, 3, 0.875, 0.96875,"
        "   0.5, 1.5, 0, 0, 4, 3),"
        "  (7, 1, 1, 1, '{\"size\":[3,4],\"counts\":\"<3\"}', 3, 3, 0, 0, 2, 0.5, 1.0,"
        "   3.5, 0.5, 0, 0, 4, 3),"
        "  (9, 2, 1, 0, '{\"size\":[3,4],\"counts\":\"0<\"}', 12, 0, 0, 3, 2, 0.25, 0.75,"
        "   2.0, 1.0, 0, 0, 4, 3);"
        "INSERT INTO mask_boxes SELECT id, bbox_x, bbox_x + bbox_w, bbox_y, bbox_y + bbox_h "
        "  FROM masks;"
        "PRAGMA user_version = 1;";
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, rows, NULL, NULL, NULL);
    if (rc != SQLITE_OK) printf("# make_v1: %s\n", sqlite3_errmsg(db));
    sqlite3_close(db);
    free(sql);
    return rc == SQLITE_OK ? 0 : -1;
}

static const char *masks_digest =
    "SELECT group_concat(id || ':' || image_id || ':' || run_id || ':' || idx || ':' || rle || ':' ||"
    " area || ':' || bbox_x || ':' || bbox_y || ':' || bbox_w || ':' || bbox_h || ':' ||"
    " predicted_iou || ':' || stability_score || ':' || point_x || ':' || point_y || ':' ||"
    " crop_x || ':' || crop_y || ':' || crop_w || ':' || crop_h, '|') FROM (SELECT * FROM masks"
    " ORDER BY id)";

static void test_upgrade(const char *v1, const char *fresh) {
    err_t err = {{0}};
    TEST_CHECK(make_v1(v1) == 0, "a version-1 database from schema/001_init.sql", " ");
    sqlite3 *raw = NULL;
    sqlite3_open(v1, &raw);
    char *before = q_text(raw, masks_digest);
    int64_t nn = q_int(raw, "SELECT \"notnull\" FROM pragma_table_info('masks') "
                            "WHERE name = 'stability_score'");
    sqlite3_close(raw);
    TEST_CHECK(nn == 1, "version 1: masks.stability_score is NOT NULL (the old shape)", "%lld",
               (long long)nn);

    store_t *s = NULL;
    int rc = store_open(&s, v1, 0, &err);
    TEST_CHECK(rc == 0, "the current store opens (and upgrades) a version-1 database", "%s",
               err.msg);
    if (rc) return;
    sqlite3 *db = store_db(s);
    TEST_CHECK(q_int(db, "PRAGMA user_version") == store_schema_version() &&
                   store_schema_version() >= 2,
               "user_version is the program's schema version", "%lld vs %d",
               (long long)q_int(db, "PRAGMA user_version"), store_schema_version());
    char *after = q_text(db, masks_digest);
    TEST_CHECK(!strcmp(before, after), "every mask row and id is kept", "\n#  %s\n#  %s", before,
               after);
    TEST_CHECK(q_int(db, "SELECT count(*) FROM masks m JOIN mask_boxes b ON b.id = m.id WHERE "
                         "b.x0 = m.bbox_x AND b.x1 = m.bbox_x + m.bbox_w AND b.y0 = m.bbox_y "
                         "AND b.y1 = m.bbox_y + m.bbox_h") == 3 &&
                   q_int(db, "SELECT count(*) FROM mask_boxes") == 3,
               "mask_boxes still matches masks id for id", " ");
    TEST_CHECK(q_int(db, "SELECT count(*) FROM objects") == 3 &&
                   q_int(db, "SELECT masks FROM image_summary WHERE image_id = 1") == 2 &&
                   q_int(db, "SELECT masks FROM run_summary WHERE run_id = 1") == 3,
               "the views objects, image_summary, run_summary work", " ");
    char *ic = q_text(db, "PRAGMA integrity_check");
    TEST_CHECK(!strcmp(ic, "ok"), "integrity_check ok", "%s", ic);
    free(ic);
    TEST_CHECK(q_int(db, "SELECT count(*) FROM pragma_foreign_key_check") == 0,
               "no foreign key violations", " ");
    TEST_CHECK(q_int(db, "SELECT count(*) FROM pragma_foreign_key_list('masks')") == 2,
               "masks still references images and runs", " ");
    TEST_CHECK(q_int(db, "SELECT count(*) FROM pragma_table_info('masks') WHERE \"notnull\" = 0 "
                         "AND name IN ('stability_score', 'predicted_iou')") == 2,
               "masks.stability_score and predicted_iou are nullable", " ");
    TEST_CHECK(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'masks_v%'") == 0,
               "no rebuild leftovers", " ");
    /* ON DELETE CASCADE of the rebuilt table */
    sqlite3_exec(db, "BEGIN; DELETE FROM images WHERE id = 2;", NULL, NULL, NULL);
    TEST_CHECK(q_int(db, "SELECT count(*) FROM masks WHERE image_id = 2") == 0,
               "deleting an image still cascades to its masks", " ");
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    char *up = q_text(db, "SELECT group_concat(type || ' ' || name || ' ' || coalesce(sql, ''), "
                          "char(10)) FROM (SELECT * FROM sqlite_schema ORDER BY name)");
    store_close(s);

    /* the same schema as a database created by this program */
    rc = store_open(&s, fresh, STORE_CREATE, &err);
    char *fr = rc ? strdup(err.msg)
                  : q_text(store_db(s), "SELECT group_concat(type || ' ' || name || ' ' || "
                                        "coalesce(sql, ''), char(10)) FROM (SELECT * FROM "
                                        "sqlite_schema ORDER BY name)");
    TEST_CHECK(rc == 0 && !strcmp(up, fr), "upgraded schema = a fresh database's schema",
               "\n%s\n---\n%s", up, fr);
    store_close(s);
    free(up), free(fr), free(before), free(after);
}

static void test_nan_scores(const char *path) {
    err_t err = {{0}};
    store_t *s = NULL;
    int rc = store_open(&s, path, 0, &err);
    int64_t run_id = 0;
    store_run_info info = {0};
    snprintf(info.params, sizeof info.params, "{}");
    snprintf(info.model_path, sizeof info.model_path, "m.pt");
    snprintf(info.model_sha256, sizeof info.model_sha256, "00");
    if (!rc) rc = store_run_begin(s, &info, &run_id, &err);
    store_job jobs[4];
    int got = 0;
    if (!rc) rc = store_claim(s, "me", 60, 1, jobs, &got, &err);
    TEST_CHECK(rc == 0 && got == 1 && jobs[0].id == 3, "claim the pending image", "%s", err.msg);
    if (rc || got != 1) return;
    free(jobs[0].path);
    char r0[] = "1", r1[] = "01";   /* 1x1: empty ([1]); all foreground ([0, 1]) */
    amg_record recs[2] = {
        {.rle = r0, .area = 0, .predicted_iou = NAN, .stability_score = NAN,
         .crop_box = {0, 0, 1, 1}},
        {.rle = r1, .area = 1, .bbox = {0, 0, 0, 0}, .predicted_iou = 0.5,
         .stability_score = 1.0, .crop_box = {0, 0, 1, 1}},
    };
    amg_result res = {.recs = recs, .n = 2, .width = 1, .height = 1};
    rc = store_batch_begin(s, &err);
    int w = rc ? rc : store_put_result(s, run_id, 3, "me", &res, NULL, &err);
    if (w == 1) rc = store_batch_commit(s, &err);
    else store_batch_rollback(s);
    TEST_CHECK(rc == 0 && w == 1, "a record with NaN scores is stored (not a constraint error)",
               "rc %d w %d: %s", rc, w, err.msg);
    sqlite3 *db = store_db(s);
    TEST_CHECK(q_int(db, "SELECT count(*) FROM masks WHERE image_id = 3 AND idx = 0 AND "
                         "stability_score IS NULL AND predicted_iou IS NULL") == 1 &&
                   q_int(db, "SELECT count(*) FROM masks WHERE image_id = 3 AND idx = 1 AND "
                             "stability_score = 1.0 AND predicted_iou = 0.5") == 1,
               "NaN is SQL NULL, finite scores are kept", " ");
    amg_result back = {0};
    rc = store_load_result(s, 3, &back, &err);
    TEST_CHECK(rc == 0 && back.n == 2 && isnan(back.recs[0].stability_score) &&
                   isnan(back.recs[0].predicted_iou) && back.recs[1].stability_score == 1.0 &&
                   back.recs[1].predicted_iou == 0.5,
               "NULL scores read back as NaN", "rc %d n %d %s", rc, back.n, err.msg);
    store_result_free(&back);
    store_close(s);
}

/* a version-1 database with the user's own objects over masks (the table
 * names are a public interface): an index and a trigger on masks, a view
 * over it. The upgrade keeps all three working on the rebuilt table. */
static void test_user_objects(const char *path) {
    err_t err = {{0}};
    TEST_CHECK(make_v1(path) == 0, "a version-1 database (user objects)", " ");
    sqlite3 *raw = NULL;
    sqlite3_open(path, &raw);
    int rc = sqlite3_exec(raw,
                          "CREATE INDEX my_area ON masks(area);"
                          "CREATE TABLE my_log(mask_id INTEGER);"
                          "CREATE TRIGGER my_tr AFTER INSERT ON masks "
                          "BEGIN INSERT INTO my_log VALUES (new.id); END;"
                          "CREATE VIEW my_big AS SELECT id FROM masks WHERE area >= 4;",
                          NULL, NULL, NULL);
    TEST_CHECK(rc == SQLITE_OK, "the user's index, trigger and view on a version-1 masks", "%s",
               sqlite3_errmsg(raw));
    sqlite3_close(raw);
    store_t *s = NULL;
    rc = store_open(&s, path, 0, &err);
    TEST_CHECK(rc == 0, "a version-1 database with a user's view over masks upgrades", "%s",
               err.msg);
    if (rc) return;
    sqlite3 *db = store_db(s);
    TEST_CHECK(q_int(db, "PRAGMA user_version") == store_schema_version(),
               "user objects: user_version is the program's", " ");
    TEST_CHECK(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'my_area' AND "
                         "tbl_name = 'masks'") == 1,
               "the user's index on masks is kept (not dropped with the old table)", " ");
    TEST_CHECK(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'my_tr' AND "
                         "tbl_name = 'masks'") == 1,
               "the user's trigger on masks is kept", " ");
    TEST_CHECK(q_int(db, "SELECT count(*) FROM my_big") == 2, "the user's view reads the new masks",
               " ");
    sqlite3_exec(db,
                 "INSERT INTO masks(image_id, run_id, idx, rle, area, bbox_x, bbox_y, bbox_w, "
                 "bbox_h, point_x, point_y, crop_x, crop_y, crop_w, crop_h) VALUES (2, 1, 1, "
                 "'{\"size\":[3,4],\"counts\":\"<\"}', 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 3)",
                 NULL, NULL, NULL);
    TEST_CHECK(q_int(db, "SELECT count(*) FROM my_log") == 1,
               "the user's trigger fires on the new masks", " ");
    TEST_CHECK(q_int(db, "SELECT count(*) FROM pragma_index_list('masks') WHERE name = 'my_area'") ==
                   1,
               "the index is on the new masks", " ");
    char *ic = q_text(db, "PRAGMA integrity_check");
    TEST_CHECK(!strcmp(ic, "ok"), "user objects: integrity_check ok", "%s", ic);
    free(ic);
    store_close(s);
}

/* a version-4 database: schema 001..004 applied as the store applies them
 * (legacy_alter_table for 002's rebuild of masks), 2 done images with
 * their load and generate times and a pending one */
static int make_v4(const char *path) {
    static const char *files[] = {"schema/001_init.sql", "schema/002_nullable_scores.sql",
                                  "schema/003_model_name.sql", "schema/004_shards.sql"};
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "PRAGMA legacy_alter_table = ON", NULL, NULL, NULL);
    for (int i = 0; i < 4 && rc == SQLITE_OK; i++) {
        char *sql = read_file(files[i]);
        rc = sql ? sqlite3_exec(db, sql, NULL, NULL, NULL) : SQLITE_ERROR;
        free(sql);
    }
    const char *rows =
        "INSERT INTO runs(id, params, model_path, model_sha256, config, program_version, devices, "
        "  started_at, finished_at, exit_status) VALUES (1, '{}', 'm.pt', '00', 'micro', '0.1', "
        "  'cpu,cpu', 10.0, 20.0, 0);"
        "INSERT INTO images(id, path, status, run_id, width, height, added_at, t_load, "
        "  t_generate) VALUES (1, '/d/a.png', 'done', 1, 4, 3, 1.0, 0.25, 2.5),"
        "  (2, '/d/b.png', 'done', 1, 4, 3, 1.0, 0.125, 1.5),"
        "  (3, '/d/c.png', 'pending', NULL, NULL, NULL, 1.0, NULL, NULL),"
        "  (4, '/d/d.png', 'pending', NULL, NULL, NULL, 1.0, NULL, NULL);"
        "PRAGMA legacy_alter_table = OFF; PRAGMA user_version = 4;";
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, rows, NULL, NULL, NULL);
    if (rc != SQLITE_OK) printf("# make_v4: %s\n", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static void test_upgrade_v4(const char *path) {
    err_t err = {{0}};
    TEST_CHECK(make_v4(path) == 0, "a version-4 database from schema/001..004", " ");
    store_t *s = NULL;
    int rc = store_open(&s, path, 0, &err);
    TEST_CHECK(rc == 0, "the current store opens (and upgrades) a version-4 database", "%s",
               err.msg);
    if (rc) return;
    sqlite3 *db = store_db(s);
    TEST_CHECK(q_int(db, "PRAGMA user_version") == store_schema_version() &&
                   store_schema_version() >= 5,
               "v4: user_version is the program's (>= 5)", "%lld",
               (long long)q_int(db, "PRAGMA user_version"));
    TEST_CHECK(q_int(db, "SELECT count(*) FROM pragma_table_info('images') WHERE name IN "
                         "('t_encode', 't_decode', 't_post', 't_write', 'worker')") == 5,
               "v4: images has the 5 stage columns", " ");
    TEST_CHECK(q_int(db, "SELECT count(*) FROM images WHERE id IN (1, 2) AND t_load > 0 AND "
                         "t_generate > 0 AND t_encode IS NULL AND t_decode IS NULL AND t_post "
                         "IS NULL AND t_write IS NULL AND worker IS NULL") == 2,
               "v4: old rows keep t_load, t_generate and read NULL stages", " ");
    store_job jobs[2];
    int got = 0;
    rc = store_claim(s, "me", 60, 2, jobs, &got, &err);
    TEST_CHECK(rc == 0 && got == 2, "v4: the pending images are claimed after the upgrade", "%s",
               err.msg);
    if (rc || got != 2) {
        store_close(s);
        return;
    }
    amg_record rec = {.rle = "<3", .area = 3, .bbox = {3, 0, 1, 3}, .predicted_iou = 0.5,
                      .stability_score = 1.0, .point = {3.5, 0.5}, .crop_box = {0, 0, 4, 3}};
    amg_result res = {.recs = &rec, .n = 1, .width = 4, .height = 3};
    store_timing t1 = {.t_load = 0.5, .t_generate = 2.0, .t_encode = 0.75, .t_decode = 1.0,
                       .t_post = 0.125, .t_write = 0.0625, .worker = 1};
    store_timing t2 = {.t_load = 0.5, .t_generate = 2.0, .t_encode = -1, .t_decode = -1,
                       .t_post = -1, .t_write = -1, .worker = -1};
    rc = store_batch_begin(s, &err);
    if (!rc) rc = store_put_result(s, 1, jobs[0].id, "me", &res, &t1, &err) < 0;
    if (!rc) rc = store_put_result(s, 1, jobs[1].id, "me", &res, &t2, &err) < 0;
    if (!rc) rc = store_batch_commit(s, &err);
    TEST_CHECK(rc == 0, "v4: results stored after the upgrade", "%s", err.msg);
    char q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM images WHERE id = %lld AND status = 'done' AND "
             "t_encode = 0.75 AND t_decode = 1.0 AND t_post = 0.125 AND t_write = 0.0625 AND "
             "worker = 1", (long long)jobs[0].id);
    TEST_CHECK(q_int(db, q) == 1, "v4: a new result carries its stages and worker", " ");
    snprintf(q, sizeof q, "SELECT count(*) FROM images WHERE id = %lld AND status = 'done' AND "
             "t_encode IS NULL AND t_decode IS NULL AND t_post IS NULL AND t_write IS NULL AND "
             "worker IS NULL AND t_generate = 2.0", (long long)jobs[1].id);
    TEST_CHECK(q_int(db, q) == 1, "v4: stages not measured (negative) are stored NULL", " ");
    free(jobs[0].path), free(jobs[1].path);
    store_close(s);
}

int main(void) {
    CHECK(mkdtemp(dir));
    char v1[256], fresh[256], user[256], v4[256];
    snprintf(v4, sizeof v4, "%s/v4.sqlite", dir);
    snprintf(v1, sizeof v1, "%s/v1.sqlite", dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.sqlite", dir);
    snprintf(user, sizeof user, "%s/user.sqlite", dir);
    test_upgrade(v1, fresh);
    test_nan_scores(v1);
    test_user_objects(user);
    test_upgrade_v4(v4);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) printf("# could not remove %s\n", dir);
    return TEST_REPORT();
}
