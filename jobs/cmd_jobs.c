/* cmd_jobs.c: the commands over a job database: run, status, export, sql.
 *
 * `run` ingests manifests, takes the run lock (an flock on DB.lock: a second
 * run on the same database is refused, see runner.c), reclaims the leases
 * of a killed run, and hands the pending images to the pipeline. The exit
 * status says how it went (cli.h): 0 every image done, 3 some failed, 1 a
 * run-level error, 2 usage, 130 interrupted.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "jobs.h"
#include "json.h"
#include "model.h"
#include "outfile.h"
#include "rle.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

/* params_json: the scalar AMG parameters as a JSON object (official names,
 * fixed order: equal parameters give equal text). */
static void params_json(const amg_params *p, char *out, size_t cap) {
    char a[JSON_DOUBLE_BUF], b[JSON_DOUBLE_BUF], c[JSON_DOUBLE_BUF], d[JSON_DOUBLE_BUF],
        e[JSON_DOUBLE_BUF], f[JSON_DOUBLE_BUF], g[JSON_DOUBLE_BUF];
    snprintf(out, cap,
             "{\"points_per_side\": %d, \"points_per_batch\": %d, \"pred_iou_thresh\": %s, "
             "\"stability_score_thresh\": %s, \"stability_score_offset\": %s, "
             "\"mask_threshold\": %s, \"box_nms_thresh\": %s, \"crop_n_layers\": %d, "
             "\"crop_nms_thresh\": %s, \"crop_overlap_ratio\": %s, "
             "\"crop_n_points_downscale_factor\": %d, \"min_mask_region_area\": %d, "
             "\"use_m2m\": %s, \"multimask_output\": %s}",
             p->points_per_side, p->points_per_batch, json_fmt_double(a, p->pred_iou_thresh),
             json_fmt_double(b, p->stability_score_thresh),
             json_fmt_double(c, p->stability_score_offset), json_fmt_double(d, p->mask_threshold),
             json_fmt_double(e, p->box_nms_thresh), p->crop_n_layers,
             json_fmt_double(f, p->crop_nms_thresh), json_fmt_double(g, p->crop_overlap_ratio),
             p->crop_n_points_downscale_factor, p->min_mask_region_area,
             p->use_m2m ? "true" : "false", p->multimask_output ? "true" : "false");
}

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: sam2amg run DB [--manifest FILE|DIR|-]... --model WEIGHTS [--config NAME|FILE]\n"
            "                  [AMG flags] [--devices cpu|cuda:0,cuda:1,...] [options]\n\n"
            "Process every image of the manifests with the automatic mask generator and store\n"
            "the masks in the SQLite database DB (created if missing). Run it again to resume:\n"
            "finished images are kept, images of a killed run are reclaimed. Without --model\n"
            "a resumed run uses the model and parameters of the database's last run.\n\n"
            "  --manifest SRC      a text file of paths (one per line), a .csv with a \"path\"\n"
            "                      column, a .jsonl of {\"path\": ...}, a directory (walked\n"
            "                      recursively), or - for stdin; repeatable; re-adding adds nothing\n"
            "  --model WEIGHTS     SAM 2.1 checkpoint (.pt or .safetensors)\n"
            "  --config NAME|FILE  model config (default: guessed from the checkpoint)\n"
            "  --devices LIST      one worker per device (default cpu)\n"
            "  --threads N         BLAS threads of a cpu worker (default: all)\n"
            "  --max-pixels N      refuse images above N pixels (default 256000000)\n"
            "  --retries N         retries of transient failures (default 2)\n"
            "  --decode-threads N  image decoding threads (default 2)\n"
            "  --batch N           images per database commit, at most (default 256; the\n"
            "                      writer commits what is queued, so small when it keeps up)\n"
            "  --lease S           lease length in seconds (default 3600)\n"
            "  --quiet             no progress line (it is shown only on a terminal anyway)\n\n"
            "AMG flags:\n");
    amg_params_help(f);
    fprintf(f, "\nExit status: 0 all images done, 3 some failed (see `sam2amg status`),\n"
               "1 run-level error, 2 usage, 130 interrupted (resume with the same command).\n");
}

/* lock_db: the run lock. Returns the fd, or -1 with a message printed. */
static int lock_db(const char *db) {
    char path[4200];
    snprintf(path, sizeof path, "%s.lock", db);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "sam2amg run: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        if (n > 0) pid[n] = 0;
        fprintf(stderr,
                "sam2amg run: %s: another run is using this database (pid %s holds %s); "
                "wait for it to finish or use another database\n",
                db, n > 0 ? pid : "?", path);
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0) { /* informative only */ }
    return fd;
}

int cmd_run(int argc, char **argv) {
    const char *cmd = "run";
    jobs_config cfg = {0};
    amg_params_default(&cfg.params);
    const char *manifests[256];
    int n_manifests = 0;
    const char *db = NULL, *devices = "cpu";
    int params_set = 0;
    int64_t v;
    cfg.retries = 2;
    cfg.decode_threads = 2;
    cfg.batch_images = 256;
    cfg.lease_s = 3600;
    cfg.max_pixels = 256000000;
    /* config's "amg" object first, then flags on top: find --config first */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config")) cfg.config = argv[i + 1];
    if (cfg.config) {
        sam2_config c;
        char *amg_json = NULL;
        err_t err = {{0}};
        if (sam2_config_load(cfg.config, &c, &amg_json, &err)) {
            fprintf(stderr, "sam2amg run: %s\n", err.msg);
            return EXIT_USAGE;
        }
        if (amg_json) {
            int rc = amg_params_from_json(&cfg.params, amg_json, &err);
            free(amg_json);
            if (rc) {
                fprintf(stderr, "sam2amg run: %s: %s\n", cfg.config, err.msg);
                return EXIT_USAGE;
            }
            params_set = 1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            run_usage(stdout);
            return EXIT_OK;
        }
        int pr = amg_params_parse_flag(&cfg.params, cmd, argc, argv, &i);
        if (pr < 0) return EXIT_USAGE;
        if (pr > 0) {   /* it advanced i past the flag and its value */
            params_set = 1;
            i--;
            continue;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--manifest")) {
            if (!val) return cli_usage_error(cmd, "--manifest needs a value");
            if (n_manifests == 256) return cli_usage_error(cmd, "at most 256 --manifest");
            manifests[n_manifests++] = val;
            i++;
        } else if (!strcmp(a, "--model")) {
            if (!val) return cli_usage_error(cmd, "--model needs a value");
            cfg.model_path = val;
            i++;
        } else if (!strcmp(a, "--config")) {
            if (!val) return cli_usage_error(cmd, "--config needs a value");
            i++;
        } else if (!strcmp(a, "--devices")) {
            if (!val) return cli_usage_error(cmd, "--devices needs a value");
            devices = val;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int(cmd, a, val, 0, 1024, &v)) return EXIT_USAGE;
            cfg.threads = (int)v, i++;
        } else if (!strcmp(a, "--max-pixels")) {
            if (cli_parse_int(cmd, a, val, 1, INT64_MAX, &v)) return EXIT_USAGE;
            cfg.max_pixels = v, i++;
        } else if (!strcmp(a, "--retries")) {
            if (cli_parse_int(cmd, a, val, 0, 1000, &v)) return EXIT_USAGE;
            cfg.retries = (int)v, i++;
        } else if (!strcmp(a, "--decode-threads")) {
            if (cli_parse_int(cmd, a, val, 1, 64, &v)) return EXIT_USAGE;
            cfg.decode_threads = (int)v, i++;
        } else if (!strcmp(a, "--batch")) {
            if (cli_parse_int(cmd, a, val, 1, 1024, &v)) return EXIT_USAGE;
            cfg.batch_images = (int)v, i++;
        } else if (!strcmp(a, "--lease")) {
            if (cli_parse_int(cmd, a, val, 1, 1000000000, &v)) return EXIT_USAGE;
            cfg.lease_s = (double)v, i++;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            cfg.quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!db) {
            db = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        }
    }
    if (!db) return cli_usage_error(cmd, "the database DB is required");
    /* devices */
    char devbuf[256];
    snprintf(devbuf, sizeof devbuf, "%s", devices);
    for (char *save = NULL, *t = strtok_r(devbuf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (cfg.n_devices == JOBS_MAX_DEVICES) return cli_usage_error(cmd, "too many devices");
        if (strcmp(t, "cpu") && strncmp(t, "cuda:", 5))
            return cli_usage_error(cmd, "--devices: '%s' is not cpu or cuda:N", t);
        snprintf(cfg.devices[cfg.n_devices++], sizeof cfg.devices[0], "%s", t);
    }
    if (cfg.n_devices == 0) return cli_usage_error(cmd, "--devices is empty");
    cfg.db_path = db;

    int lock = lock_db(db);
    if (lock < 0) return EXIT_DATA;
    err_t err = {{0}};
    store_t *ws = NULL, *cs = NULL;
    int status = EXIT_DATA;
    if (store_open(&ws, db, STORE_CREATE, &err) || store_open(&cs, db, 0, &err)) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        goto out;
    }
    /* the database's model and parameters */
    store_run_info last, info = {0};
    int have_last = store_run_last(ws, &last, &err);
    if (have_last < 0) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        goto out;
    }
    if (!cfg.model_path) {
        if (!have_last) {
            status = cli_usage_error(cmd, "--model WEIGHTS is required for a new database");
            goto out;
        }
        cfg.model_path = last.model_path;
        if (!cfg.config && last.config[0] && strcmp(last.config, "auto")) cfg.config = last.config;
        if (!params_set && amg_params_from_json(&cfg.params, last.params, &err)) {
            fprintf(stderr, "sam2amg run: %s: runs.params: %s\n", db, err.msg);
            goto out;
        }
    }
    if (amg_params_validate(&cfg.params, &err)) {
        status = cli_usage_error(cmd, "%s", err.msg);
        goto out;
    }
    params_json(&cfg.params, info.params, sizeof info.params);
    snprintf(info.model_path, sizeof info.model_path, "%s", cfg.model_path);
    snprintf(info.config, sizeof info.config, "%s", cfg.config ? cfg.config : "auto");
    snprintf(info.devices, sizeof info.devices, "%s", devices);
    if (!strncmp(cfg.model_path, "test:", 5)) {
        snprintf(info.model_sha256, sizeof info.model_sha256, "test");
    } else if (jobs_sha256_file(cfg.model_path, info.model_sha256, &err)) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        goto out;
    }
    if (have_last && (strcmp(last.model_sha256, info.model_sha256) ||
                      strcmp(last.params, info.params))) {
        fprintf(stderr,
                "sam2amg run: %s: this database was made with %s (sha256 %.12s...) and "
                "parameters %s;\nthis run asks for %s (sha256 %.12s...) and %s.\n"
                "Masks of different models or parameters do not mix: use another database.\n",
                db, last.model_path, last.model_sha256, last.params, info.model_path,
                info.model_sha256, info.params);
        goto out;
    }
    /* ingest */
    for (int i = 0; i < n_manifests; i++) {
        jobs_ingest_stats ist;
        if (jobs_ingest(ws, manifests[i], &ist, &err)) {
            fprintf(stderr, "sam2amg run: %s\n", err.msg);
            goto out;
        }
        if (!cfg.quiet)
            fprintf(stderr, "sam2amg run: %s: %lld new images, %lld already present, %lld bad lines\n",
                    manifests[i], (long long)ist.added, (long long)ist.present, (long long)ist.bad);
    }
    int64_t run_id = 0, reclaimed = 0, abandoned = 0;
    if (store_run_begin(ws, &info, &run_id, &err) ||
        store_reclaim(ws, cfg.retries + 1, run_id, &reclaimed, &abandoned, &err)) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        goto out;
    }
    /* masks committed by a run that died before its final catch-up */
    if (store_boxes_catch_up(ws, 0, NULL, &err))
        fprintf(stderr, "sam2amg run: warning: mask_boxes not brought up to date: %s\n", err.msg);
    if (reclaimed + abandoned && !cfg.quiet)
        fprintf(stderr, "sam2amg run: reclaimed %lld images of a run that stopped without "
                        "finishing them (%lld out of attempts: failed)\n",
                (long long)reclaimed, (long long)abandoned);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;   /* a second Ctrl-C kills at once (the DB stays safe) */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    jobs_stats st;
    int rc = jobs_run(cs, ws, run_id, &cfg, &stop_flag, &st, &err);
    /* after the writer's last commit (also after Ctrl-C): the R*Tree takes
     * the run's masks in bulk, off the writer's path */
    err_t eb = {{0}};
    /* after a run-level error only that error is reported (one line); the
     * next run catches the boxes up at its start */
    if (store_boxes_catch_up(ws, 0, NULL, &eb) && !rc)
        fprintf(stderr, "sam2amg run: warning: mask_boxes not brought up to date: %s\n", eb.msg);
    int64_t counts[4], masks;
    if (rc) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        status = EXIT_DATA;
    } else if (st.interrupted) {
        status = EXIT_INTERRUPTED;
    } else if (store_counts(ws, counts, &masks, &err)) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        status = EXIT_DATA;
    } else {
        status = counts[IMAGE_STATUS_FAILED] ? EXIT_PARTIAL : EXIT_OK;
    }
    if (!cfg.quiet)
        fprintf(stderr, "sam2amg run: %lld images done (%lld masks), %lld failed, %lld retried%s\n",
                (long long)st.done, (long long)st.masks, (long long)st.failed,
                (long long)st.retried, st.interrupted ? "; interrupted, resume with the same command" : "");
    err_t e2;
    store_run_end(ws, run_id, status, &e2);
out:
    store_close(cs);
    store_close(ws);
    close(lock);
    return status;
}

/* ---- status ---- */

int cmd_status(int argc, char **argv) {
    const char *db = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: sam2amg status DB\n\nImages per status, masks, the last run's "
                   "throughput and ETA, and the last errors.\n");
            return EXIT_OK;
        }
        if (argv[i][0] == '-') return cli_usage_error("status", "unknown option '%s'", argv[i]);
        if (db) return cli_usage_error("status", "unexpected argument '%s'", argv[i]);
        db = argv[i];
    }
    if (!db) return cli_usage_error("status", "the database DB is required");
    store_t *s = NULL;
    err_t err = {{0}};
    if (store_open(&s, db, STORE_READONLY, &err)) {
        fprintf(stderr, "sam2amg status: %s\n", err.msg);
        return EXIT_DATA;
    }
    int64_t c[4], masks;
    if (store_counts(s, c, &masks, &err)) {
        fprintf(stderr, "sam2amg status: %s\n", err.msg);
        store_close(s);
        return EXIT_DATA;
    }
    int64_t total = c[0] + c[1] + c[2] + c[3];
    printf("images: %lld  pending %lld  running %lld  done %lld  failed %lld\nmasks: %lld\n",
           (long long)total, (long long)c[0], (long long)c[1], (long long)c[2], (long long)c[3],
           (long long)masks);
    sqlite3_stmt *st = NULL;
    sqlite3 *h = store_db(s);
    if (sqlite3_prepare_v2(h, "SELECT run_id, images_done, images_failed, masks, seconds, "
                              "finished_at IS NULL FROM run_summary WHERE images_done + images_failed > 0 "
                              "ORDER BY run_id DESC LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        int64_t done = sqlite3_column_int64(st, 1);
        double sec = sqlite3_column_double(st, 4);
        double ips = sec > 0 ? done / sec : 0;
        printf("last working run: #%lld%s, %lld done, %lld failed, %lld masks in %.1f s (%.2f images/s)",
               (long long)sqlite3_column_int64(st, 0),
               sqlite3_column_int(st, 5) ? " (not finished)" : "", (long long)done,
               (long long)sqlite3_column_int64(st, 2), (long long)sqlite3_column_int64(st, 3), sec,
               ips);
        int64_t left = c[0] + c[1];
        if (ips > 0 && left > 0) {
            int64_t s2 = (int64_t)(left / ips);
            printf(", ETA %lld:%02lld:%02lld for %lld left", (long long)(s2 / 3600),
                   (long long)(s2 / 60 % 60), (long long)(s2 % 60), (long long)left);
        }
        printf("\n");
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(h, "SELECT path, error FROM images WHERE status = 'failed' "
                              "ORDER BY finished_at DESC, id DESC LIMIT 10", -1, &st, NULL) == SQLITE_OK) {
        int first = 1;
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (first) printf("last errors:\n"), first = 0;
            /* errors name their file already; others get the path */
            const char *p = (const char *)sqlite3_column_text(st, 0),
                       *e = (const char *)sqlite3_column_text(st, 1);
            if (e && strstr(e, p)) printf("  %s\n", e);
            else printf("  %s: %s\n", p, e ? e : "?");
        }
    }
    sqlite3_finalize(st);
    store_close(s);
    return EXIT_OK;
}

/* ---- sql ---- */

/* mentions: whether text contains word, ASCII case-insensitively. */
static int mentions(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = text; *p; p++)
        if (!strncasecmp(p, word, n)) return 1;
    return 0;
}

/* sql_catch_up_boxes: bring mask_boxes up to date before the user's query
 * (so R*Tree queries see every mask), through a short-lived write
 * connection. A database that cannot be written (read-only file or
 * directory, locked past the busy timeout) is queried as it is; this is
 * said on stderr only when the query uses mask_boxes. */
static void sql_catch_up_boxes(const char *db, const char *sql) {
    store_t *w = NULL;
    err_t err = {{0}};
    if (access(db, F_OK) != 0) return;   /* store_open (read-only) reports it */
    if (!store_open(&w, db, 0, &err)) {
        sqlite3_busy_timeout(store_db(w), 2000);
        store_boxes_catch_up(w, 0, NULL, &err);
    }
    store_close(w);
    if (err.msg[0] && mentions(sql, "mask_boxes"))
        fprintf(stderr, "sam2amg sql: note: mask_boxes may miss the newest masks (%s)\n",
                err.msg);
}

int cmd_sql(int argc, char **argv) {
    const char *db = NULL, *sql = NULL;
    int header = 0, write = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: sam2amg sql DB [--header] [--write] \"SQL\"\n\n"
                   "Run SQL on a job database with the rle_* functions registered (rle_area,\n"
                   "rle_iou, rle_intersection, rle_contains, rle_bbox, rle_width, rle_height,\n"
                   "rle_to_png). Rows are printed with '|' between columns, like sqlite3.\n"
                   "The database is opened read-only unless --write. Before the query,\n"
                   "mask_boxes (the R*Tree) is brought up to date with masks when the\n"
                   "database can be written.\n");
            return EXIT_OK;
        }
        if (!strcmp(a, "--header")) header = 1;
        else if (!strcmp(a, "--write")) write = 1;
        else if (a[0] == '-' && a[1]) return cli_usage_error("sql", "unknown option '%s'", a);
        else if (!db) db = a;
        else if (!sql) sql = a;
        else return cli_usage_error("sql", "unexpected argument '%s'", a);
    }
    if (!db || !sql) return cli_usage_error("sql", "DB and SQL are required");
    store_t *s = NULL;
    err_t err = {{0}};
    sql_catch_up_boxes(db, sql);
    if (store_open(&s, db, write ? 0 : STORE_READONLY, &err)) {
        fprintf(stderr, "sam2amg sql: %s\n", err.msg);
        return EXIT_DATA;
    }
    sqlite3 *h = store_db(s);
    const char *tail = sql;
    int status = EXIT_OK;
    while (tail && *tail) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(h, tail, -1, &st, &tail) != SQLITE_OK) {
            fprintf(stderr, "sam2amg sql: %s\n", sqlite3_errmsg(h));
            status = EXIT_DATA;
            break;
        }
        if (!st) continue;
        int nc = sqlite3_column_count(st), rc, row = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (header && row++ == 0)
                for (int c = 0; c < nc; c++)
                    printf("%s%s", sqlite3_column_name(st, c), c + 1 < nc ? "|" : "\n");
            for (int c = 0; c < nc; c++) {
                int t = sqlite3_column_type(st, c);
                if (t == SQLITE_BLOB) printf("<blob %d bytes>", sqlite3_column_bytes(st, c));
                else if (t != SQLITE_NULL) fputs((const char *)sqlite3_column_text(st, c), stdout);
                fputs(c + 1 < nc ? "|" : "\n", stdout);
            }
        }
        if (rc != SQLITE_DONE) {
            fprintf(stderr, "sam2amg sql: %s\n", sqlite3_errmsg(h));
            status = EXIT_DATA;
        }
        sqlite3_finalize(st);
        if (status) break;
    }
    store_close(s);
    return status;
}

/* ---- export ---- */

static int write_overlay_png(const char *out, const char *image_path, const amg_result *res,
                             int64_t max_pixels, err_t *err) {
    image_t img = {0};
    int rc = jobs_load_image(&img, image_path, max_pixels, err);
    if (rc) return rc;
    if (img.w != res->width || img.h != res->height) {
        image_free(&img);
        return err_set(err, ERR_FORMAT, "%s: now %dx%d, the masks are %dx%d", image_path, img.w,
                       img.h, res->width, res->height);
    }
    rc = amg_draw_overlay(img.rgb, img.w, img.h, res, err);
    if (!rc) rc = image_write_png(out, img.rgb, img.w, img.h, 3, err);
    image_free(&img);
    return rc;
}

/* out_name: DIR/STEM.EXT, or DIR/STEM_ID.EXT when that exists already
 * (two images with the same file name in different directories). */
static void out_name(char *buf, size_t n, const char *dir, const char *path, int64_t id,
                     const char *ext) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *b = basename(tmp), *dot = strrchr(b, '.');
    if (dot && dot != b) *dot = 0;
    snprintf(buf, n, "%s/%s.%s", dir, b, ext);
    struct stat sb;
    if (stat(buf, &sb) == 0) snprintf(buf, n, "%s/%s_%lld.%s", dir, b, (long long)id, ext);
}

static void coco_record(FILE *f, int64_t ann_id, int64_t image_id, const amg_record *m, int h,
                        int w) {
    char a[JSON_DOUBLE_BUF];
    fprintf(f, "{\"id\": %lld, \"image_id\": %lld, \"category_id\": 1, \"segmentation\": "
               "{\"size\": [%d, %d], \"counts\": ",
            (long long)ann_id, (long long)image_id, h, w);
    json_write_string(f, m->rle);
    fprintf(f, "}, \"area\": %lld, \"bbox\": [", (long long)m->area);
    for (int k = 0; k < 4; k++) fprintf(f, "%s%s", k ? ", " : "", json_fmt_double(a, m->bbox[k]));
    fprintf(f, "], \"iscrowd\": 0, \"score\": %s", json_fmt_double(a, m->predicted_iou));
    fprintf(f, ", \"predicted_iou\": %s", json_fmt_double(a, m->predicted_iou));
    fprintf(f, ", \"stability_score\": %s", json_fmt_double(a, m->stability_score));
    fprintf(f, ", \"point_coords\": [[%s", json_fmt_double(a, m->point[0]));
    fprintf(f, ", %s]], \"crop_box\": [", json_fmt_double(a, m->point[1]));
    for (int k = 0; k < 4; k++) fprintf(f, "%s%s", k ? ", " : "", json_fmt_double(a, m->crop_box[k]));
    fprintf(f, "]}");
}

int cmd_export(int argc, char **argv) {
    const char *db = NULL, *format = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: sam2amg export DB --format sa1b|coco|png OUT\n\n"
                   "  sa1b  OUT is a directory: one JSON per done image, the bytes `sam2amg\n"
                   "        generate` writes for it (STEM.json; STEM_ID.json on a name clash)\n"
                   "  coco  OUT is a file: a COCO dataset with every done image's masks as\n"
                   "        annotations (category 1, score = predicted_iou)\n"
                   "  png   OUT is a directory: the images with their masks overlaid (STEM.png)\n");
            return EXIT_OK;
        }
        if (!strcmp(a, "--format")) {
            if (i + 1 >= argc) return cli_usage_error("export", "--format needs a value");
            format = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("export", "unknown option '%s'", a);
        } else if (!db) {
            db = a;
        } else if (!out) {
            out = a;
        } else {
            return cli_usage_error("export", "unexpected argument '%s'", a);
        }
    }
    if (!db || !format || !out) return cli_usage_error("export", "DB, --format and OUT are required");
    if (strcmp(format, "sa1b") && strcmp(format, "coco") && strcmp(format, "png"))
        return cli_usage_error("export", "--format: '%s' is not sa1b, coco or png", format);
    store_t *s = NULL;
    err_t err = {{0}};
    if (store_open(&s, db, STORE_READONLY, &err)) {
        fprintf(stderr, "sam2amg export: %s\n", err.msg);
        return EXIT_DATA;
    }
    int is_dir = strcmp(format, "coco") != 0;
    if (is_dir && mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "sam2amg export: %s: %s\n", out, strerror(errno));
        store_close(s);
        return EXIT_DATA;
    }
    FILE *coco = NULL;
    /* coco: written to a temporary file, renamed onto OUT only when
     * complete (outfile.h; a FIFO or /dev/stdout is written in place) */
    char coco_tmp[OUTFILE_TMP_MAX];
    if (!is_dir) {
        coco = outfile_tmp_name(out, coco_tmp, &err) ? NULL : fopen(coco_tmp, "w");
        if (!coco) {
            fprintf(stderr, "sam2amg export: %s: %s\n", out, strerror(errno));
            store_close(s);
            return EXIT_DATA;
        }
        fputs("{\"info\": {\"description\": \"sam2amg export\"}, \"images\": [", coco);
    }
    sqlite3_stmt *st = NULL;
    int step_rc = sqlite3_prepare_v2(store_db(s), "SELECT id, path, width, height FROM images "
                                     "WHERE status = 'done' ORDER BY id", -1, &st, NULL);
    int status = EXIT_OK, n = 0;
    int64_t n_img = 0;
    /* coco: the images first, then the annotations (a second pass) */
    for (int pass = 0; pass < (coco ? 2 : 1); pass++) {
        int64_t ann = 0;
        if (coco && pass == 1) fputs("], \"annotations\": [", coco);
        if (step_rc != SQLITE_OK) break;
        sqlite3_reset(st);
        n = 0;
        /* a read error ends the loop like the last row: step_rc tells them apart */
        while ((step_rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            char path[4200];
            snprintf(path, sizeof path, "%s", (const char *)sqlite3_column_text(st, 1));
            store_path_unescape(path);
            char namebuf[4200];
            snprintf(namebuf, sizeof namebuf, "%s", path);
            const char *fname = basename(namebuf);
            if (coco && pass == 0) {
                fprintf(coco, "%s{\"id\": %lld, \"file_name\": ", n++ ? ", " : "", (long long)id);
                json_write_string(coco, fname);
                fprintf(coco, ", \"width\": %d, \"height\": %d}", sqlite3_column_int(st, 2),
                        sqlite3_column_int(st, 3));
                n_img++;
                continue;
            }
            amg_result res;
            int rc = store_load_result(s, id, &res, &err);
            char file[4400];
            if (!rc && coco) {
                for (int i = 0; i < res.n; i++) {
                    if (ann) fputs(", ", coco);
                    coco_record(coco, ++ann, id, &res.recs[i], res.height, res.width);
                }
            } else if (!rc && !strcmp(format, "sa1b")) {
                out_name(file, sizeof file, out, path, id, "json");
                FILE *f = fopen(file, "w");
                if (!f) {
                    rc = err_set(&err, ERR_IO, "%s: %s", file, strerror(errno));
                } else {
                    rc = amg_write_json(f, fname, &res);
                    if (fclose(f) || rc) rc = err_set(&err, ERR_IO, "%s: write failed", file);
                }
            } else if (!rc) {
                out_name(file, sizeof file, out, path, id, "png");
                rc = write_overlay_png(file, path, &res, 0, &err);
            }
            store_result_free(&res);
            if (rc) {
                fprintf(stderr, "sam2amg export: %s\n", err.msg);
                status = EXIT_DATA;
                if (rc == ERR_IO && !is_dir) break;
            }
        }
        if (step_rc != SQLITE_DONE && step_rc != SQLITE_ROW) break;
        step_rc = SQLITE_OK;
    }
    if (step_rc != SQLITE_OK && step_rc != SQLITE_ROW) {
        fprintf(stderr, "sam2amg export: %s: reading images: %s\n", db, sqlite3_errmsg(store_db(s)));
        status = EXIT_DATA;
    }
    sqlite3_finalize(st);
    if (coco) {
        fputs("], \"categories\": [{\"id\": 1, \"name\": \"object\"}]}\n", coco);
        if (fclose(coco) && status == EXIT_OK) {
            fprintf(stderr, "sam2amg export: %s: write failed\n", out);
            status = EXIT_DATA;
        }
        if (outfile_commit(coco_tmp, out, status == EXIT_OK ? 0 : ERR_IO, &err) &&
            status == EXIT_OK) {
            fprintf(stderr, "sam2amg export: %s\n", err.msg);
            status = EXIT_DATA;
        }
    }
    store_close(s);
    return status;
}
