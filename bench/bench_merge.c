/* bench_merge.c: `sam2amg merge` of many shard databases (README, "Slurm").
 *
 * Generates S shard databases of I images each (default 100 x 10,000) with
 * M masks per image (default 2), the rows shaped like the test model's
 * output (RLE text of a few dozen bytes, scores, boxes): each image path
 * goes to the shard jobs_shard_of gives it, as `run --shard K/S` would
 * have kept it. Then times cmd_merge of all of them into a new database,
 * checks the merged counts, and times the same merge again (idempotent:
 * nothing added). Prints seconds, images/s and the merged file's size,
 * and the time of one checkpoint (jobs_checkpoint_write) of the result.
 *
 *   build/bench/bench_merge [SHARDS [IMAGES_PER_SHARD [MASKS_PER_IMAGE]]]
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "../jobs/jobs.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sql(sqlite3 *db, const char *q) {
    char *e = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &e) != SQLITE_OK) {
        fprintf(stderr, "bench_merge: %s: %s\n", q, e);
        exit(1);
    }
}

/* merge_quiet: cmd_merge with its per-shard report lines sent to /dev/null */
static int merge_quiet(int argc, char **argv) {
    fflush(stdout);
    int saved = dup(1), null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    int rc = cmd_merge(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(null);
    return rc;
}

int main(int argc, char **argv) {
    int S = argc > 1 ? atoi(argv[1]) : 100, I = argc > 2 ? atoi(argv[2]) : 10000,
        M = argc > 3 ? atoi(argv[3]) : 2;
    if (S < 1 || I < 1 || M < 0) {
        fprintf(stderr, "usage: bench_merge [SHARDS [IMAGES_PER_SHARD [MASKS_PER_IMAGE]]]\n");
        return 2;
    }
    char dir[] = "/tmp/bench_merge_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    store_t **st = calloc((size_t)S, sizeof *st);
    sqlite3_stmt **ins_img = calloc((size_t)S, sizeof *ins_img), **ins_mask = calloc((size_t)S, sizeof *ins_mask);
    int *count = calloc((size_t)S, sizeof *count);
    char **paths = calloc((size_t)S + 2, sizeof *paths);
    CHECK(st && ins_img && ins_mask && count && paths);
    double t0 = now_s();
    store_run_info info = {0};
    snprintf(info.params, sizeof info.params, "{\"points_per_side\": 32}");
    snprintf(info.model_path, sizeof info.model_path, "test:");
    snprintf(info.model_sha256, sizeof info.model_sha256, "test");
    snprintf(info.config, sizeof info.config, "auto");
    snprintf(info.devices, sizeof info.devices, "cpu");
    for (int k = 0; k < S; k++) {
        char p[256];
        snprintf(p, sizeof p, "%s/shard-%d.db", dir, k);
        paths[k + 2] = strdup(p);
        err_t err = {{0}};
        int64_t run_id;
        if (store_open(&st[k], p, STORE_CREATE, &err) || store_run_begin(st[k], &info, &run_id, &err) ||
            jobs_shard_set(st[k], k, S, run_id, &err) || store_run_end(st[k], run_id, 0, &err)) {
            fprintf(stderr, "bench_merge: %s\n", err.msg);
            return 1;
        }
        sqlite3 *db = store_db(st[k]);
        sql(db, "PRAGMA synchronous = OFF; BEGIN");
        CHECK(sqlite3_prepare_v2(db, "INSERT INTO images(path, status, attempts, run_id, width, "
                                     "height, added_at, finished_at, t_load, t_generate) VALUES "
                                     "(?1, 'done', 1, 1, 640, 480, 0, ?2, 0.01, 0.2)", -1,
                                 &ins_img[k], NULL) == SQLITE_OK);
        CHECK(sqlite3_prepare_v2(db, "INSERT INTO masks(image_id, run_id, idx, rle, area, bbox_x, "
                                     "bbox_y, bbox_w, bbox_h, predicted_iou, stability_score, "
                                     "point_x, point_y, crop_x, crop_y, crop_w, crop_h) VALUES "
                                     "(?1, 1, ?2, ?3, ?4, ?5, ?6, 40, 30, 0.9, 0.95, ?5, ?6, 0, 0, "
                                     "640, 480)", -1, &ins_mask[k], NULL) == SQLITE_OK);
    }
    int64_t full = 0, total = (int64_t)S * I;
    for (int64_t i = 0; full < S; i++) {
        char p[128];
        int n = snprintf(p, sizeof p, "/data/sa1b/%05lld/sa_%09lld.jpg", (long long)(i / 1000),
                         (long long)i);
        int k = jobs_shard_of(p, (size_t)n, S);
        if (count[k] == I) continue;
        if (++count[k] == I) full++;
        sqlite3_stmt *a = ins_img[k];
        sqlite3_bind_text(a, 1, p, n, SQLITE_TRANSIENT);
        sqlite3_bind_double(a, 2, 1.0 + (double)i);
        CHECK(sqlite3_step(a) == SQLITE_DONE);
        sqlite3_reset(a);
        int64_t id = sqlite3_last_insert_rowid(store_db(st[k]));
        for (int m = 0; m < M; m++) {
            char rle[128];
            int rn = snprintf(rle, sizeof rle, "{\"size\":[480,640],\"counts\":\"%lldb0Q%dh3N2K5"
                              "M3L4O1N2M3N1O1O0N2i%d\"}", (long long)(i % 977), m, (int)(i % 61));
            sqlite3_stmt *b = ins_mask[k];
            sqlite3_bind_int64(b, 1, id);
            sqlite3_bind_int(b, 2, m);
            sqlite3_bind_text(b, 3, rle, rn, SQLITE_TRANSIENT);
            sqlite3_bind_int64(b, 4, 100 + (i + m) % 5000);
            sqlite3_bind_double(b, 5, (double)(i % 600));
            sqlite3_bind_double(b, 6, (double)((i + m) % 450));
            CHECK(sqlite3_step(b) == SQLITE_DONE);
            sqlite3_reset(b);
        }
    }
    for (int k = 0; k < S; k++) {
        sqlite3_finalize(ins_img[k]);
        sqlite3_finalize(ins_mask[k]);
        sql(store_db(st[k]), "COMMIT");
        store_close(st[k]);
    }
    double t_gen = now_s() - t0;
    int64_t in_bytes = 0;
    for (int k = 0; k < S; k++) {
        struct stat sb;
        if (stat(paths[k + 2], &sb) == 0) in_bytes += sb.st_size;
    }
    printf("generated %d shards x %d images x %d masks (%.1f MB) in %.1f s\n", S, I, M,
           in_bytes / 1e6, t_gen);

    char out[256];
    snprintf(out, sizeof out, "%s/merged.db", dir);
    paths[0] = "merge";
    paths[1] = out;
    t0 = now_s();
    int rc = merge_quiet(S + 2, paths);
    double t_merge = now_s() - t0;
    struct stat sb;
    int64_t size = stat(out, &sb) == 0 ? sb.st_size : -1;
    t0 = now_s();
    int rc2 = merge_quiet(S + 2, paths);
    double t_again = now_s() - t0;
    /* the counts must be right before the time means anything */
    store_t *o = NULL;
    err_t err = {{0}};
    int64_t c[4] = {0}, masks = 0;
    int ok = !store_open(&o, out, STORE_READONLY, &err) && !store_counts(o, c, &masks, &err) &&
             c[IMAGE_STATUS_DONE] == total && masks == total * M && rc == 0 && rc2 == 0;
    /* a checkpoint (run --local-dir) of a database this size: backup
     * copy, fsync, rename */
    double t_ck = -1;
    char ck[300];
    snprintf(ck, sizeof ck, "%s/checkpoint.db", dir);
    store_t *w = NULL;
    if (ok && !store_open(&w, out, 0, &err)) {
        t0 = now_s();
        if (!jobs_checkpoint_write(w, ck, &err)) t_ck = now_s() - t0;
        else printf("checkpoint failed: %s\n", err.msg);
    }
    store_close(w);
    unlink(ck);
    store_close(o);
    printf("merge: %d shards, %lld images, %lld masks: %.1f s (%.0f images/s, %.0f masks/s); "
           "merged file %.1f MB\n", S, (long long)total, (long long)(total * M), t_merge,
           total / t_merge, total * M / t_merge, size / 1e6);
    printf("merge again (idempotent, nothing added): %.2f s\n", t_again);
    printf("checkpoint of the merged database (%.1f MB): %.2f s\n", size / 1e6, t_ck);
    printf("%s: merged %lld done images and %lld masks (expected %lld and %lld), exit %d then %d\n",
           ok ? "ok" : "FAILED", (long long)c[IMAGE_STATUS_DONE], (long long)masks,
           (long long)total, (long long)(total * M), rc, rc2);
    for (int k = 0; k < S; k++) {
        unlink(paths[k + 2]);
        free(paths[k + 2]);
    }
    char side[300];
    unlink(out);
    snprintf(side, sizeof side, "%s-wal", out), unlink(side);
    snprintf(side, sizeof side, "%s-shm", out), unlink(side);
    snprintf(side, sizeof side, "%s.lock", out), unlink(side);
    rmdir(dir);
    free(paths);
    free(st);
    free(ins_img);
    free(ins_mask);
    free(count);
    return ok ? 0 : 1;
}
