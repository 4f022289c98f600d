/* merge.c: `sam2amg merge OUT.db SHARD.db...`: the shard databases of a
 * sharded run (run --shard K/N, jobs/shard.c) into one job database.
 *
 * DESIGN
 *
 * OUT is an ordinary job database (same schema): `status`, `export` and
 * `sql` work on it, and `run OUT.db` would finish what the shards left.
 * Each shard is merged in one transaction of OUT (ATTACH, copy runs,
 * images and masks with new ids, record it in merged_shards, COMMIT), so
 * kill -9 at any moment leaves OUT with whole shards only, and a rerun
 * merges the rest: OUT is changed in place by SQLite transactions, never
 * replaced by a file written beside it.
 *
 * Idempotent: merged_shards keeps each shard's signature (checkpoint
 * sequence, images done and failed, masks, newest finish time). A shard
 * seen again with the same signature adds nothing; one with an older
 * checkpoint than the merged one is skipped; any other state of that shard
 * (a newer checkpoint, or a database that grew) replaces the images,
 * masks and runs merged from it before (images by shard_of(path, N) = K,
 * their masks and R*Tree boxes first).
 *
 * Refused: a database without a shard row (not made by run --shard), a
 * shard of another split (N differs from the shards merged so far), a
 * shard whose runs used another model (sha256) or parameter set than OUT
 * (or than the first shard, for a new OUT; points_per_batch is no part of
 * it, see jobs_params_same), and an image that is already
 * in OUT from another shard. A refused shard leaves OUT unchanged; the
 * others are merged; the exit status says 1.
 *
 * Provenance: every run of a shard is copied into OUT's runs with
 * runs.shard = "K/N" and runs.source_run = its id in the shard, and the
 * copied images and masks point at the copies. Images that were 'running'
 * in a checkpoint (leased by a task that was stopped) become 'pending'.
 *
 * The report: images per status, the shards of 0..N-1 that were never
 * merged, and the images that failed or are not done in any shard. Exit
 * status: 0 every image of N shards done, 3 some failed, not done, or a
 * shard missing, 1 an error (a refused shard), 2 usage.
 */
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "jobs.h"

typedef struct shard_info {
    int     k, n;
    int64_t seq, images, done, failed, masks;
    char    sig[160];
    char    sha[65];
    char   *params;     /* malloc'd */
} shard_info;

static int q_exec(sqlite3 *db, const char *sql, err_t *err) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(err, ERR_IO, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return ERR_IO;
    }
    return 0;
}

/* q_i64: the first column of the first row of sql (bound ?1 text a1). */
static int q_i64(sqlite3 *db, const char *sql, const char *a1, int64_t *out, err_t *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return err_set(err, ERR_IO, "%s", sqlite3_errmsg(db));
    if (a1) sqlite3_bind_text(st, 1, a1, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return err_set(err, ERR_IO, "%s", sqlite3_errmsg(db));
    return 0;
}

/* read_shard: the shard row, counts, signature and the one model and
 * parameter set of the shard database at path. */
static int read_shard(const char *path, shard_info *si, err_t *err) {
    memset(si, 0, sizeof *si);
    store_t *s = NULL;
    int rc = store_open(&s, path, STORE_READONLY, err);
    if (rc) {
        const char *fs = jobs_network_fs(path);
        if (fs && strlen(err->msg) < 300)   /* noflock Lustre: a lock is an I/O error */
            snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                     " (on %s, where SQLite may not lock: copy it to local disk first, as "
                     "jobs/slurm/merge.sh does)", fs);
        return rc;
    }
    sqlite3 *db = store_db(s);
    int found = 0;
    if (store_schema_version() >= 3) found = jobs_shard_get(s, &si->k, &si->n, &si->seq, err);
    if (found <= 0) {
        if (found == 0 || strstr(err->msg, "no such table"))
            rc = err_set(err, ERR_INVALID, "%s: not a shard database (made without run --shard)",
                         path);
        else rc = found;
        store_close(s);
        return rc;
    }
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, "SELECT count(*), coalesce(sum(status = 'done'), 0), "
                                "coalesce(sum(status = 'failed'), 0), "
                                "(SELECT count(*) FROM masks), coalesce(max(finished_at), 0) "
                                "FROM images", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        si->images = sqlite3_column_int64(st, 0);
        si->done = sqlite3_column_int64(st, 1);
        si->failed = sqlite3_column_int64(st, 2);
        si->masks = sqlite3_column_int64(st, 3);
        snprintf(si->sig, sizeof si->sig, "seq %lld, done %lld, failed %lld, masks %lld, last %.6f",
                 (long long)si->seq, (long long)si->done, (long long)si->failed,
                 (long long)si->masks, sqlite3_column_double(st, 4));
        rc = 0;
    }
    sqlite3_finalize(st);
    if (rc) {
        rc = err_set(err, ERR_IO, "%s: %s", path, sqlite3_errmsg(db));
        store_close(s);
        return rc;
    }
    rc = sqlite3_prepare_v2(db, "SELECT DISTINCT model_sha256, params FROM runs", -1, &st, NULL);
    int n = 0;   /* runs of another model or parameter set than the first */
    while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *sha = (const char *)sqlite3_column_text(st, 0),
                   *params = (const char *)sqlite3_column_text(st, 1);
        if (!sha) sha = "";
        if (!params) params = "";
        if (!si->params) {
            snprintf(si->sha, sizeof si->sha, "%s", sha);
            if (!(si->params = strdup(params))) {
                sqlite3_finalize(st);
                store_close(s);
                return err_set(err, ERR_NOMEM, "%s: out of memory", path);
            }
            n = 1;
        } else if (strcmp(sha, si->sha) || !jobs_params_same(params, si->params)) {
            n = 2;   /* a points_per_batch of its own is the same set */
        }
    }
    sqlite3_finalize(st);
    store_close(s);
    if (n != 1)
        return err_set(err, ERR_INVALID, "%s: %s", path,
                       n ? "its runs used more than one model or parameter set"
                         : "it has no run (nothing was processed)");
    return 0;
}

/* merge_one: shard si at path into out (attached as s), one transaction. */
static int merge_one(sqlite3 *db, const char *path, const shard_info *si, int replace,
                     err_t *err) {
    char shard[48];
    snprintf(shard, sizeof shard, "%d/%d", si->k, si->n);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "ATTACH ?1 AS s", -1, &st, NULL) != SQLITE_OK)
        return err_set(err, ERR_IO, "%s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        const char *fs = jobs_network_fs(path);
        return err_set(err, ERR_IO, "%s: cannot attach: %s%s%s%s", path, sqlite3_errmsg(db),
                       fs ? " (it is on " : "", fs ? fs : "",
                       fs ? ", where SQLite may not lock: copy it to local disk first, as "
                            "jobs/slurm/merge.sh does)" : "");
    }
    int r = q_exec(db, "BEGIN IMMEDIATE", err);
    if (r) goto detach;
    char sql[1024];
    if (replace) {
        /* the images of this shard merged before, their masks and boxes
         * (mask_boxes is derived: boxes of deleted masks go with them) */
        snprintf(sql, sizeof sql,
                 "DELETE FROM mask_boxes WHERE id IN (SELECT m.id FROM masks m JOIN images i "
                 "ON i.id = m.image_id WHERE shard_of(i.path, %d) = %d);"
                 "DELETE FROM masks WHERE image_id IN (SELECT id FROM images WHERE "
                 "shard_of(path, %d) = %d);"
                 "DELETE FROM images WHERE shard_of(path, %d) = %d;"
                 "DELETE FROM run_gpus WHERE run_id IN (SELECT id FROM runs WHERE shard = '%s' "
                 "AND source_run IS NOT NULL);"
                 "DELETE FROM runs WHERE shard = '%s' AND source_run IS NOT NULL;",
                 si->n, si->k, si->n, si->k, si->n, si->k, shard, shard);
        if ((r = q_exec(db, sql, err))) goto rollback;
    }
    snprintf(sql, sizeof sql,
             "CREATE TEMP TABLE IF NOT EXISTS runmap(old INTEGER PRIMARY KEY, new INTEGER);"
             "CREATE TEMP TABLE IF NOT EXISTS imap(old INTEGER PRIMARY KEY, new INTEGER);"
             "DELETE FROM temp.runmap; DELETE FROM temp.imap;"
             "INSERT INTO main.runs(params, model_path, model_sha256, config, program_version, "
             "devices, started_at, finished_at, exit_status, model_name, shard, source_run) "
             "SELECT params, model_path, model_sha256, config, program_version, devices, "
             "started_at, finished_at, exit_status, model_name, '%s', id FROM s.runs ORDER BY id;"
             "INSERT INTO temp.runmap SELECT source_run, id FROM main.runs "
             "WHERE shard = '%s' AND source_run IS NOT NULL;",
             shard, shard);
    if ((r = q_exec(db, sql, err))) goto rollback;
    /* its runs' GPU measurements (a shard written before schema 6 has none) */
    int64_t gpus = 0;
    if ((r = q_i64(db, "SELECT count(*) FROM s.sqlite_master WHERE type = 'table' AND "
                       "name = 'run_gpus'", NULL, &gpus, err)))
        goto rollback;
    if (gpus && (r = q_exec(db, "INSERT INTO main.run_gpus(run_id, device, busy, samples, "
                                "seconds) SELECT rm.new, g.device, g.busy, g.samples, g.seconds "
                                "FROM s.run_gpus g JOIN temp.runmap rm ON rm.old = g.run_id",
                            err)))
        goto rollback;
    /* a shard written before schema 5 has no stage columns: they stay NULL */
    int64_t stages = 0;
    if ((r = q_i64(db, "SELECT count(*) FROM pragma_table_info('images', 's') "
                       "WHERE name = 't_encode'", NULL, &stages, err)))
        goto rollback;
    snprintf(sql, sizeof sql,
             "INSERT INTO main.images(path, status, attempts, error, run_id, width, "
             "height, added_at, finished_at, t_load, t_generate%s) "
             "SELECT path, CASE status WHEN 'running' THEN 'pending' ELSE status END, "
             "attempts, error, (SELECT new FROM temp.runmap WHERE old = si.run_id), "
             "width, height, added_at, finished_at, t_load, t_generate%s "
             "FROM s.images si ORDER BY id",
             stages ? ", t_encode, t_decode, t_post, t_write, worker" : "",
             stages ? ", t_encode, t_decode, t_post, t_write, worker" : "");
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_CONSTRAINT)
            r = err_set(err, ERR_INVALID, "%s: shard %s has an image that OUT already holds "
                        "from another shard (%s)", path, shard, sqlite3_errmsg(db));
        else r = err_set(err, ERR_IO, "%s: copying images: %s", path, sqlite3_errmsg(db));
        goto rollback;
    }
    if ((r = q_exec(db, "INSERT INTO temp.imap SELECT si.id, mi.id FROM s.images si "
                        "JOIN main.images mi ON mi.path = si.path;"
                        "INSERT INTO main.masks(image_id, run_id, idx, rle, area, bbox_x, bbox_y, "
                        "bbox_w, bbox_h, predicted_iou, stability_score, point_x, point_y, "
                        "crop_x, crop_y, crop_w, crop_h) "
                        "SELECT im.new, rm.new, m.idx, m.rle, m.area, m.bbox_x, m.bbox_y, "
                        "m.bbox_w, m.bbox_h, m.predicted_iou, m.stability_score, m.point_x, "
                        "m.point_y, m.crop_x, m.crop_y, m.crop_w, m.crop_h FROM s.masks m "
                        "JOIN temp.imap im ON im.old = m.image_id "
                        "JOIN temp.runmap rm ON rm.old = m.run_id ORDER BY m.id", err)))
        goto rollback;
    int64_t copied = sqlite3_changes64(db);
    if (copied != si->masks) {
        r = err_set(err, ERR_FORMAT, "%s: %lld of its %lld masks could be matched to their image "
                    "and run", path, (long long)copied, (long long)si->masks);
        goto rollback;
    }
    rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO merged_shards(k, n, checkpoint_seq, "
                                "signature, source, merged_at, images, images_done, "
                                "images_failed, masks) VALUES (?1, ?2, ?3, ?4, ?5, "
                                "(julianday('now') - 2440587.5) * 86400.0, ?6, ?7, ?8, ?9)",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, si->k);
        sqlite3_bind_int(st, 2, si->n);
        sqlite3_bind_int64(st, 3, si->seq);
        sqlite3_bind_text(st, 4, si->sig, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, path, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 6, si->images);
        sqlite3_bind_int64(st, 7, si->done);
        sqlite3_bind_int64(st, 8, si->failed);
        sqlite3_bind_int64(st, 9, si->masks);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        r = err_set(err, ERR_IO, "recording the merge: %s", sqlite3_errmsg(db));
        goto rollback;
    }
    jobs_test_pause("MERGE");
    if ((r = q_exec(db, "COMMIT", err))) goto rollback;
    goto detach;
rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
detach:
    sqlite3_exec(db, "DETACH s", NULL, NULL, NULL);
    return r;
}

/* report: images per status, missing shards, failed and unfinished images.
 * Returns the exit status. */
static int report(sqlite3 *db, int any_error) {
    int64_t c[4] = {0}, masks = 0, n = 0, merged = 0;
    err_t err = {{0}};
    static const char *names[4] = {"pending", "running", "done", "failed"};
    for (int i = 0; i < 4; i++)
        q_i64(db, "SELECT count(*) FROM images WHERE status = ?1", names[i], &c[i], &err);
    q_i64(db, "SELECT count(*) FROM masks", NULL, &masks, &err);
    q_i64(db, "SELECT coalesce(max(n), 0) FROM merged_shards", NULL, &n, &err);
    q_i64(db, "SELECT count(*) FROM merged_shards", NULL, &merged, &err);
    printf("merged: %lld of %lld shards; images: %lld done, %lld failed, %lld not done; "
           "masks: %lld\n", (long long)merged, (long long)n, (long long)c[2], (long long)c[3],
           (long long)(c[0] + c[1]), (long long)masks);
    sqlite3_stmt *st = NULL;
    int64_t missing = 0;
    if (sqlite3_prepare_v2(db, "WITH RECURSIVE k(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM k "
                               "WHERE v + 1 < ?1) SELECT v FROM k WHERE ?1 > 0 AND v NOT IN "
                               "(SELECT k FROM merged_shards)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, n);
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (missing++ < 20) printf("missing shard: %d/%lld (its images are in no database "
                                       "merged)\n", sqlite3_column_int(st, 0), (long long)n);
        }
        if (missing > 20) printf("... %lld shards missing in all\n", (long long)missing);
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "SELECT path, status, coalesce(error, '') FROM images WHERE "
                               "status != 'done' ORDER BY status = 'failed' DESC, id LIMIT 20",
                           -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *p = (const char *)sqlite3_column_text(st, 0),
                       *s = (const char *)sqlite3_column_text(st, 1),
                       *e = (const char *)sqlite3_column_text(st, 2);
            if (!strcmp(s, "failed")) printf("failed: %s: %s\n", p, e);
            else printf("not done in any shard: %s\n", p);
        }
    }
    sqlite3_finalize(st);
    if (c[0] + c[1] + c[3] > 20) printf("... (sam2amg status OUT.db lists them)\n");
    if (any_error) return EXIT_DATA;
    return (c[0] + c[1] + c[3] || missing || n == 0) ? EXIT_PARTIAL : EXIT_OK;
}

int cmd_merge(int argc, char **argv) {
    const char *out = NULL, *shards[4096];
    int n_shards = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: sam2amg merge OUT.db SHARD.db...\n\n"
                   "Merge the databases of `sam2amg run --shard K/N` (or their checkpoints) into\n"
                   "OUT.db (created if missing), one transaction per shard. Merging a shard again\n"
                   "adds nothing; a newer checkpoint of a shard replaces what an older one added.\n"
                   "Shards of another model, parameter set or split are refused. Prints images\n"
                   "per status, shards never merged and images failed or not done in any shard.\n"
                   "Safe to kill and rerun.\n\n"
                   "Exit status: 0 every image done, 3 some failed, not done or a shard missing,\n"
                   "1 a shard refused or an error, 2 usage.\n");
            return EXIT_OK;
        }
        if (a[0] == '-' && a[1]) return cli_usage_error("merge", "unknown option '%s'", a);
        if (!out) out = a;
        else if (n_shards == 4096) return cli_usage_error("merge", "at most 4096 shards");
        else shards[n_shards++] = a;
    }
    if (!out || !n_shards) return cli_usage_error("merge", "OUT.db and at least one SHARD.db are required");
    char *out_real = realpath(out, NULL);
    for (int i = 0; i < n_shards && out_real; i++) {
        char *r = realpath(shards[i], NULL);
        int same = r && !strcmp(r, out_real);
        free(r);
        if (same) {
            free(out_real);
            return cli_usage_error("merge", "%s is OUT.db itself", shards[i]);
        }
    }
    free(out_real);
    setvbuf(stdout, NULL, _IOLBF, 0);   /* each shard's line reaches a job log at once */
    int lock = jobs_lock_db("merge", out);
    if (lock < 0) return EXIT_DATA;
    store_t *os = NULL;
    err_t err = {{0}};
    if (store_open(&os, out, STORE_CREATE, &err)) {
        fprintf(stderr, "sam2amg merge: %s\n", err.msg);
        close(lock);
        return EXIT_DATA;
    }
    sqlite3 *db = store_db(os);
    /* OUT a shard database itself (merge s0.db s1.db): merging would give
     * shard K the images of other shards, under K's name */
    int sk = 0, sn = 0;
    int is_shard = jobs_shard_get(os, &sk, &sn, NULL, &err);
    if (is_shard != 0) {
        if (is_shard > 0)
            fprintf(stderr, "sam2amg merge: %s is shard %d/%d of a run (made by run --shard); "
                    "merge into a new or merged database, not into a shard\n", out, sk, sn);
        else
            fprintf(stderr, "sam2amg merge: %s\n", err.msg);
        store_close(os);
        close(lock);
        return EXIT_DATA;
    }
    jobs_shard_register_sql(db);
    /* OUT's path index takes each shard's paths in hash order, i.e. at
     * random places: a page cache of up to 1 GiB (run's is 64 MiB) keeps
     * it in memory for millions of images, and checkpointing the WAL
     * every 64 MiB instead of every 4 MiB writes each page fewer times.
     * Pages are allocated as used, so small merges take little memory. */
    sqlite3_exec(db, "PRAGMA cache_size = -1048576; PRAGMA wal_autocheckpoint = 16384; "
                     "PRAGMA temp_store = MEMORY", NULL, NULL, NULL);
    store_run_info ref;
    int have_ref = store_run_last(os, &ref, &err);
    int any_error = have_ref < 0;
    if (have_ref < 0) fprintf(stderr, "sam2amg merge: %s\n", err.msg);
    int64_t out_n = 0;
    q_i64(db, "SELECT coalesce(max(n), 0) FROM merged_shards", NULL, &out_n, &err);
    for (int i = 0; i < n_shards && have_ref >= 0; i++) {
        shard_info si;
        memset(&err, 0, sizeof err);
        if (read_shard(shards[i], &si, &err)) {
            fprintf(stderr, "sam2amg merge: %s; not merged\n", err.msg);
            free(si.params);
            any_error = 1;
            continue;
        }
        if (!have_ref) {
            snprintf(ref.model_sha256, sizeof ref.model_sha256, "%s", si.sha);
            snprintf(ref.params, sizeof ref.params, "%s", si.params);
            have_ref = 1;
        }
        if (strcmp(si.sha, ref.model_sha256) || !jobs_params_same(si.params, ref.params)) {
            fprintf(stderr, "sam2amg merge: %s: made with model sha256 %.12s... and parameters "
                    "%s; %s has %.12s... and %s; not merged (masks of different models or "
                    "parameters do not mix)\n", shards[i], si.sha, si.params, out,
                    ref.model_sha256, ref.params);
            free(si.params);
            any_error = 1;
            continue;
        }
        free(si.params);
        if (out_n && si.n != out_n) {
            fprintf(stderr, "sam2amg merge: %s: shard %d/%d, but %s holds shards of %lld; not "
                    "merged (one split per database)\n", shards[i], si.k, si.n, out,
                    (long long)out_n);
            any_error = 1;
            continue;
        }
        /* what was merged of this shard before */
        sqlite3_stmt *st = NULL;
        int64_t old_seq = -1;
        char old_sig[160] = "";
        if (sqlite3_prepare_v2(db, "SELECT checkpoint_seq, signature FROM merged_shards WHERE "
                                   "k = ?1 AND n = ?2", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int(st, 1, si.k);
            sqlite3_bind_int(st, 2, si.n);
            if (sqlite3_step(st) == SQLITE_ROW) {
                old_seq = sqlite3_column_int64(st, 0);
                snprintf(old_sig, sizeof old_sig, "%s", (const char *)sqlite3_column_text(st, 1));
            }
        }
        sqlite3_finalize(st);
        if (old_seq >= 0 && !strcmp(old_sig, si.sig)) {
            printf("%s: shard %d/%d already merged (%s)\n", shards[i], si.k, si.n, si.sig);
            continue;
        }
        if (old_seq > si.seq) {
            printf("%s: shard %d/%d is checkpoint %lld, older than the merged %lld; skipped\n",
                   shards[i], si.k, si.n, (long long)si.seq, (long long)old_seq);
            continue;
        }
        if (merge_one(db, shards[i], &si, old_seq >= 0, &err)) {
            fprintf(stderr, "sam2amg merge: %s; not merged\n", err.msg);
            any_error = 1;
            continue;
        }
        out_n = si.n;
        printf("%s: shard %d/%d %s: %lld images (%lld done, %lld failed), %lld masks\n",
               shards[i], si.k, si.n, old_seq >= 0 ? "replaced" : "merged", (long long)si.images,
               (long long)si.done, (long long)si.failed, (long long)si.masks);
    }
    if (store_boxes_catch_up(os, 0, NULL, &err))
        fprintf(stderr, "sam2amg merge: warning: mask_boxes not brought up to date: %s\n", err.msg);
    int status = report(db, any_error);
    store_close(os);
    close(lock);
    return status;
}
