/* store.c: the SQLite job database (see store.h and schema/NNN_*.sql).
 *
 * The schema files are embedded into the program with the assembler's
 * .incbin (no generated sources, no runtime lookup of the repository), and
 * applied in order above PRAGMA user_version, each migration and the
 * version bump in one transaction. Statements are prepared once per
 * connection; the writer reuses one text buffer for the RLE JSON, so a
 * result costs no malloc per mask.
 *
 * Leases: images.lease_expires is written by store_claim (claim time + the
 * lease length) for people reading the database, and read by nothing here.
 * Leases are guarded by the run lock (cmd_jobs.c's flock on DB.lock): one
 * run at a time, so when a run starts every 'running' image belongs to a
 * dead run and store_reclaim takes it back, expired or not. Reclaiming by
 * expiry would only matter for concurrent runs, which the lock refuses.
 */
#include "store.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "faultvfs.h"
#include "sqlext.h"

/* ---- embedded migrations (schema/NNN_*.sql, in order) ---- */
__asm__(".pushsection .rodata\n"
        ".type store_schema_001, @object\n"
        "store_schema_001:\n"
        ".incbin \"schema/001_init.sql\"\n"
        ".byte 0\n"
        ".popsection\n");
__asm__(".pushsection .rodata\n"
        ".type store_schema_002, @object\n"
        "store_schema_002:\n"
        ".incbin \"schema/002_nullable_scores.sql\"\n"
        ".byte 0\n"
        ".popsection\n");
__asm__(".pushsection .rodata\n"
        ".type store_schema_003, @object\n"
        "store_schema_003:\n"
        ".incbin \"schema/003_model_name.sql\"\n"
        ".byte 0\n"
        ".popsection\n");
__asm__(".pushsection .rodata\n"
        ".type store_schema_004, @object\n"
        "store_schema_004:\n"
        ".incbin \"schema/004_shards.sql\"\n"
        ".byte 0\n"
        ".popsection\n");
__asm__(".pushsection .rodata\n"
        ".type store_schema_005, @object\n"
        "store_schema_005:\n"
        ".incbin \"schema/005_stages.sql\"\n"
        ".byte 0\n"
        ".popsection\n");
__asm__(".pushsection .rodata\n"
        ".type store_schema_006, @object\n"
        "store_schema_006:\n"
        ".incbin \"schema/006_gpu_busy.sql\"\n"
        ".byte 0\n"
        ".popsection\n");
extern const char store_schema_001[], store_schema_002[], store_schema_003[], store_schema_004[],
    store_schema_005[], store_schema_006[];

static const char *const migrations[] = {store_schema_001, store_schema_002, store_schema_003,
                                          store_schema_004, store_schema_005, store_schema_006};
/* the migrations that rebuild the masks table (drop + rename): a user's own
 * indexes and triggers on masks are saved before and replayed after them */
static const int migration_rebuilds_masks[] = {0, 1, 0, 0, 0, 0};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(sizeof migration_rebuilds_masks / sizeof migration_rebuilds_masks[0] ==
                   sizeof migrations / sizeof migrations[0], "one flag per migration");

int store_schema_version(void) { return N_MIGRATIONS; }

/* ---- fault injection ---- */
static _Atomic int64_t fault_countdown;        /* run-level: any write step */
static _Atomic int64_t fault_image_countdown;  /* per image: store_put_result */

void store_fault_arm(int64_t n) { atomic_store(&fault_countdown, n); }
void store_fault_arm_image(int64_t n) { atomic_store(&fault_image_countdown, n); }

/* fault_image_step: one store_put_result; the armed one fails as a data
 * error of that image (ERR_INVALID, like a constraint failure), after its
 * masks were inserted, so the caller's rollback of the image is tested. */
static int fault_image_step(int64_t image_id, err_t *err) {
    int64_t v = atomic_load(&fault_image_countdown);
    while (v > 0) {
        if (atomic_compare_exchange_weak(&fault_image_countdown, &v, v - 1)) {
            if (v == 1)
                return err_set(err, ERR_INVALID, "image %lld: injected fault (store, image data)",
                               (long long)image_id);
            return 0;
        }
    }
    return 0;
}

/* fault_step: one write step; fails when the armed countdown reaches 0. */
static int fault_step(err_t *err) {
    int64_t v = atomic_load(&fault_countdown);
    while (v > 0) {
        if (atomic_compare_exchange_weak(&fault_countdown, &v, v - 1)) {
            if (v == 1) return err_set(err, ERR_IO, "injected fault (store step)");
            return 0;
        }
    }
    return 0;
}

enum {
    ST_CLAIM_PICK, ST_CLAIM_SET, ST_INGEST, ST_DONE, ST_MASK, ST_FAIL, ST_RETRY,
    ST_RELEASE, ST_START, ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_CLAIM_PICK] = "SELECT id, path, attempts FROM images WHERE status = 'pending' "
                      "ORDER BY id LIMIT ?1",
    [ST_CLAIM_SET] = "UPDATE images SET status = 'running', "
                     "lease_owner = ?2, lease_expires = ?3 WHERE id = ?1 AND status = 'pending'",
    [ST_INGEST] = "INSERT OR IGNORE INTO images(path, added_at) VALUES (?1, ?2)",
    [ST_DONE] = "UPDATE images SET status = 'done', run_id = ?2, width = ?4, height = ?5, "
                "finished_at = ?6, t_load = ?7, t_generate = ?8, t_encode = ?9, t_decode = ?10, "
                "t_post = ?11, t_write = ?12, worker = ?13, error = NULL, "
                "lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ?1 AND status = 'running' AND lease_owner = ?3",
    [ST_MASK] = "INSERT INTO masks(image_id, run_id, idx, rle, area, bbox_x, bbox_y, bbox_w, "
                "bbox_h, predicted_iou, stability_score, point_x, point_y, crop_x, crop_y, "
                "crop_w, crop_h) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,"
                "?16,?17)",
    [ST_FAIL] = "UPDATE images SET status = 'failed', run_id = ?2, error = ?4, "
                "finished_at = ?5, attempts = ?6, lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ?1 AND status = 'running' AND lease_owner = ?3",
    [ST_RETRY] = "UPDATE images SET status = 'pending', error = ?4, lease_owner = NULL, "
                 "lease_expires = NULL, attempts = ?6 "
                 "WHERE id = ?1 AND status = 'running' AND lease_owner = ?3 AND ?2 IS NOT NULL",
    [ST_RELEASE] = "UPDATE images SET status = 'pending', attempts = max(attempts - ?3, 0), "
                   "lease_owner = NULL, lease_expires = NULL "
                   "WHERE id = ?1 AND status = 'running' AND lease_owner = ?2",
    [ST_START] = "UPDATE images SET attempts = attempts + 1 "
                 "WHERE id = ?1 AND status = 'running' AND lease_owner = ?2",
};

struct store {
    sqlite3      *db;
    char          path[1024];
    sqlite3_stmt *st[ST_COUNT];
    char         *text;         /* reused buffer: RLE JSON, escaped paths */
    size_t        text_cap;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* sql_err: map an SQLite failure to an ERR_ class with a one-line message. */
static int sql_err(store_t *s, int rc, const char *what, err_t *err) {
    int prim = rc & 0xff;
    const char *msg = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    const char *name = s ? s->path : "database";
    switch (prim) {
    case SQLITE_FULL:
        return err_set(err, ERR_IO, "%s: %s: database or disk is full (%s)", name, what, msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return err_set(err, ERR_BUSY, "%s: %s: database is locked (%s)", name, what, msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return err_set(err, ERR_FORMAT, "%s: %s: not a sam2amg database or corrupt (%s)", name,
                       what, msg);
    case SQLITE_NOMEM:
        return err_set(err, ERR_NOMEM, "%s: %s: out of memory", name, what);
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
        /* the values of one row were refused: a data error of that row
         * (e.g. a NaN score into a NOT NULL column), not of the database */
        return err_set(err, ERR_INVALID, "%s: %s: %s", name, what, msg);
    default:
        return err_set(err, ERR_IO, "%s: %s: %s", name, what, msg);
    }
}

static int exec(store_t *s, const char *sql, err_t *err) {
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int r = sql_err(s, rc, msg ? msg : sql, err);
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

static int text_reserve(store_t *s, size_t n) {
    if (n <= s->text_cap) return 0;
    size_t cap = s->text_cap ? s->text_cap : 4096;
    while (cap < n) cap *= 2;
    char *p = realloc(s->text, cap);
    if (!p) return -1;
    s->text = p;
    s->text_cap = cap;
    return 0;
}

/* masks_user_objects: the CREATE statements of the indexes and triggers on
 * masks (schema/ makes none: they are the user's own), sqlite3_malloc'd,
 * into *sqls (*n of them).
 *
 * Why: a migration that rebuilds masks (002: CREATE masks_v2, copy, DROP
 * TABLE masks, RENAME) drops them with the old table, so migrate() runs
 * them again on the new one, in the same transaction. It also runs the
 * migration with legacy_alter_table on: the rename then leaves views and
 * triggers that name masks as they are (they name the new table after
 * it), where the default rename re-checks every view and fails on a view
 * of the user's over masks ("error in view ...: no such table"). */
static int masks_user_objects(store_t *s, char ***sqls, int *n, err_t *err) {
    *sqls = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT sql FROM sqlite_schema WHERE tbl_name = 'masks' AND "
                                "type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY rowid",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "reading the schema", err);
    int cap = 0, r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            char **p = sqlite3_realloc64(*sqls, (sqlite3_uint64)cap * sizeof *p);
            if (!p) {
                r = err_set(err, ERR_NOMEM, "%s: reading the schema: out of memory", s->path);
                break;
            }
            *sqls = p;
        }
        char *q = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(st, 0));
        if (!q) {
            r = err_set(err, ERR_NOMEM, "%s: reading the schema: out of memory", s->path);
            break;
        }
        (*sqls)[(*n)++] = q;
    }
    sqlite3_finalize(st);
    if (!r && rc != SQLITE_DONE) r = sql_err(s, rc, "reading the schema", err);
    if (r) {
        for (int i = 0; i < *n; i++) sqlite3_free((*sqls)[i]);
        sqlite3_free(*sqls);
        *sqls = NULL;
        *n = 0;
    }
    return r;
}

static int migrate(store_t *s, err_t *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "reading the schema version", err);
    rc = sqlite3_step(st);
    int version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (version < 0) return sql_err(s, rc, "reading the schema version", err);
    if (version > N_MIGRATIONS)
        return err_set(err, ERR_FORMAT,
                       "%s: schema version %d is newer than this program's %d (upgrade sam2amg)",
                       s->path, version, N_MIGRATIONS);
    if (version == 0) {
        /* version 0 must be an empty database, not someone else's */
        rc = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_schema", -1, &st, NULL);
        if (rc != SQLITE_OK) return sql_err(s, rc, "reading the schema", err);
        rc = sqlite3_step(st);
        int n = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_finalize(st);
        if (n < 0) return sql_err(s, rc, "reading the schema", err);
        if (n > 0)
            return err_set(err, ERR_FORMAT, "%s: an SQLite database but not a sam2amg one "
                           "(it has tables and user_version 0)", s->path);
    }
    for (int v = version; v < N_MIGRATIONS; v++) {
        int r = exec(s, "BEGIN IMMEDIATE", err);
        if (r) return r;
        /* the version again, under the write lock: another connection
         * (two commands opening one old or new database at once) may have
         * applied this migration since the read above, and running it
         * twice fails ("table runs already exists") or redoes its work */
        rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        int now = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_finalize(st);
        st = NULL;
        if (now != v) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            if (now < 0) return sql_err(s, rc, "reading the schema version", err);
            if (now < v || now > N_MIGRATIONS)
                return err_set(err, ERR_FORMAT, "%s: schema version changed to %d while opening "
                               "(this program's is %d)", s->path, now, N_MIGRATIONS);
            v = now - 1;   /* applied by the other connection: go on after it */
            continue;
        }
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        char **keep = NULL;
        int nkeep = 0;
        int rebuild = migration_rebuilds_masks[v];
        if (!(r = rebuild ? masks_user_objects(s, &keep, &nkeep, err) : 0) &&
            !(r = exec(s, "PRAGMA legacy_alter_table = ON", err))) {
            r = exec(s, migrations[v], err);
            int r2 = exec(s, "PRAGMA legacy_alter_table = OFF", r ? NULL : err);
            if (!r) r = r2;
        }
        for (int i = 0; i < nkeep; i++) {
            if (!r) r = exec(s, keep[i], err);
            sqlite3_free(keep[i]);
        }
        sqlite3_free(keep);
        if (r || (r = exec(s, bump, err)) || (r = exec(s, "COMMIT", err))) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return r;
        }
    }
    return 0;
}

/* readonly_uri: for a read-only open of a database that is not ours (owned
 * by another user or not writable by us) and that nothing is writing (no
 * -wal file), "file:PATH?immutable=1" into uri, returns 1. A plain
 * read-only open of a WAL database creates PATH-shm and PATH-wal: in a
 * folder we may not write that fails ("attempt to write a readonly
 * database"), and in a shared folder it leaves files owned by us that the
 * owner's next `run` cannot write. Immutable opens create nothing (and do
 * not see later commits: a `run` that starts afterwards is not followed).
 * Returns 0 (open PATH as it is) otherwise. */
static int readonly_uri(const char *path, char *uri, size_t cap) {
    struct stat st;
    char wal[4096 + 8];
    if (stat(path, &st) || !S_ISREG(st.st_mode)) return 0;
    if ((size_t)snprintf(wal, sizeof wal, "%s-wal", path) >= sizeof wal) return 0;
    if (!access(wal, F_OK)) return 0;
    if (st.st_uid == geteuid() && !access(path, W_OK)) return 0;
    /* "file://" + an empty authority for an absolute path; bytes that
     * mean something in a URI percent-encoded */
    size_t n = (size_t)snprintf(uri, cap, "file:%s", path[0] == '/' ? "//" : "");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (n + 4 >= cap) return 0;
        if (*p == '%' || *p == '?' || *p == '#' || *p <= ' ' || *p >= 0x7f)
            n += (size_t)snprintf(uri + n, cap - n, "%%%02X", *p);
        else
            uri[n++] = (char)*p;
    }
    if (n + 13 >= cap) return 0;
    memcpy(uri + n, "?immutable=1", 13);
    return 1;
}

int store_open(store_t **out, const char *path, int flags, err_t *err) {
    *out = NULL;
    store_t *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    snprintf(s->path, sizeof s->path, "%s", path);
    int oflags = (flags & STORE_READONLY) ? SQLITE_OPEN_READONLY
                 : (flags & STORE_CREATE) ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                                          : SQLITE_OPEN_READWRITE;
    char uri[3 * 4096 + 32]; /* a PATH_MAX path, every byte encoded */
    struct stat dst;
    if (!stat(path, &dst) && S_ISDIR(dst.st_mode)) { /* SQLite says "disk I/O error" */
        free(s);
        return err_set(err, ERR_IO, "%s: is a directory, not a database file", path);
    }
    faultvfs_init_from_env();   /* tests only: SAM2AMG_FAULT_VFS (faultvfs.h) */
    int rc;
    if ((flags & STORE_READONLY) && readonly_uri(path, uri, sizeof uri))
        rc = sqlite3_open_v2(uri, &s->db, oflags | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL);
    else
        rc = sqlite3_open_v2(path, &s->db, oflags | SQLITE_OPEN_NOMUTEX, NULL);
    int r = 0;
    if (rc != SQLITE_OK) {
        r = s->db ? sql_err(s, rc, "open", err)
                  : err_set(err, ERR_IO, "%s: cannot open: %s", path, sqlite3_errstr(rc));
        if (rc == SQLITE_CANTOPEN)
            r = err_set(err, ERR_IO, "%s: cannot open database (%s)", path,
                        (flags & STORE_CREATE) ? "directory missing or not writable"
                                               : "no such file or not readable");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 30000);
    if ((r = exec(s, "PRAGMA foreign_keys = ON", err))) goto fail;
    if (!(flags & STORE_READONLY)) {
        /* journal_mode reads page 1: the first place a corrupt file shows */
        if ((r = exec(s, "PRAGMA journal_mode = WAL", err))) goto fail;
        if ((r = exec(s, "PRAGMA synchronous = NORMAL", err))) goto fail;
        /* 64 MiB of page cache: the path index of a big manifest and the
         * R*Tree stay in memory while the writer appends */
        if ((r = exec(s, "PRAGMA cache_size = -65536", err))) goto fail;
        const char *mp = getenv("SAM2AMG_MAX_PAGES");
        if (mp && *mp) {
            char q[64];
            snprintf(q, sizeof q, "PRAGMA max_page_count = %lld", atoll(mp));
            if ((r = exec(s, q, err))) goto fail;
        }
        if ((r = migrate(s, err))) goto fail;
    } else {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
        int v = rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        if (rc != SQLITE_OK) {
            r = sql_err(s, rc, "reading the schema version", err);
            goto fail;
        }
        rc = sqlite3_finalize(st);
        if (v < 0) {
            r = sql_err(s, rc, "reading the schema version", err);
            goto fail;
        }
        if (v < 1 || v > N_MIGRATIONS) {
            r = err_set(err, ERR_FORMAT, "%s: not a sam2amg database (schema version %d)", path, v);
            goto fail;
        }
    }
    rc = sqlext_register(s->db);
    if (rc != SQLITE_OK) {
        r = sql_err(s, rc, "registering the rle_* functions", err);
        goto fail;
    }
    const char *fa = getenv("SAM2AMG_FAULT_STORE");
    if (fa && *fa) store_fault_arm(atoll(fa));
    fa = getenv("SAM2AMG_FAULT_STORE_IMAGE");
    if (fa && *fa) store_fault_arm_image(atoll(fa));
    *out = s;
    return 0;
fail:
    store_close(s);
    return r;
}

void store_close(store_t *s) {
    if (!s) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s->text);
    free(s);
}

sqlite3 *store_db(store_t *s) { return s->db; }

/* stmt: the prepared statement i, reset and unbound. */
static sqlite3_stmt *stmt(store_t *s, int i, err_t *err, int *r) {
    if (!s->st[i]) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                                    NULL);
        if (rc != SQLITE_OK) {
            *r = sql_err(s, rc, "preparing a statement", err);
            return NULL;
        }
    }
    sqlite3_reset(s->st[i]);
    sqlite3_clear_bindings(s->st[i]);
    return s->st[i];
}

/* step_done: run a statement that returns no rows. */
static int step_done(store_t *s, sqlite3_stmt *st, const char *what, err_t *err) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return sql_err(s, rc, what, err);
    return 0;
}

/* ---- runs ---- */

int store_run_last(store_t *s, store_run_info *info, err_t *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT params, model_path, model_sha256, config, devices, "
                                "coalesce(model_name, model_path) "
                                "FROM runs ORDER BY id DESC LIMIT 1", -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "reading runs", err);
    rc = sqlite3_step(st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        found = 1;
        memset(info, 0, sizeof *info);
        snprintf(info->params, sizeof info->params, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(info->model_path, sizeof info->model_path, "%s",
                 (const char *)sqlite3_column_text(st, 1));
        snprintf(info->model_sha256, sizeof info->model_sha256, "%s",
                 (const char *)sqlite3_column_text(st, 2));
        snprintf(info->config, sizeof info->config, "%s", (const char *)sqlite3_column_text(st, 3));
        snprintf(info->devices, sizeof info->devices, "%s",
                 (const char *)sqlite3_column_text(st, 4));
        snprintf(info->model_name, sizeof info->model_name, "%s",
                 (const char *)sqlite3_column_text(st, 5));
    } else if (rc != SQLITE_DONE) {
        sqlite3_finalize(st);
        return sql_err(s, rc, "reading runs", err);
    }
    sqlite3_finalize(st);
    return found;
}

int store_run_begin(store_t *s, const store_run_info *info, int64_t *run_id, err_t *err) {
    int r = fault_step(err);
    if (r) return r;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO runs(params, model_path, model_sha256, config, "
                                "program_version, devices, started_at, model_name) "
                                "VALUES (?,?,?,?,?,?,?,?)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "starting a run", err);
    sqlite3_bind_text(st, 1, info->params, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, info->model_path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, info->model_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, info->config, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, SAM2AMG_VERSION, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, info->devices, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 7, now_s());
    sqlite3_bind_text(st, 8, info->model_name[0] ? info->model_name : info->model_path, -1,
                      SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return sql_err(s, rc, "starting a run", err);
    *run_id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int store_run_end(store_t *s, int64_t run_id, int exit_status, err_t *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "UPDATE runs SET finished_at = ?, exit_status = ? "
                                "WHERE id = ?", -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "ending a run", err);
    sqlite3_bind_double(st, 1, now_s());
    sqlite3_bind_int(st, 2, exit_status);
    sqlite3_bind_int64(st, 3, run_id);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return sql_err(s, rc, "ending a run", err);
    return 0;
}

int store_run_gpu(store_t *s, int64_t run_id, const char *device, double busy, int64_t samples,
                  double seconds, err_t *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO run_gpus (run_id, device, busy, "
                                "samples, seconds) VALUES (?, ?, ?, ?, ?)", -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "recording a GPU's busy share", err);
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, device, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 3, busy);
    sqlite3_bind_int64(st, 4, samples);
    sqlite3_bind_double(st, 5, seconds);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return sql_err(s, rc, "recording a GPU's busy share", err);
    return 0;
}

/* ---- paths ---- */

/* utf8_len: length of the valid UTF-8 sequence at p (n bytes left), 0 if
 * invalid (overlong forms, surrogates and > U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned min;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) len = 2, min = 0x80, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, min = 0x800, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, min = 0x10000, cp = c & 0x07;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

size_t store_path_escape(const char *bytes, size_t n, char *out) {
    const unsigned char *p = (const unsigned char *)bytes;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = p[i] ? utf8_len(p + i, n - i) : 0;
        if (p[i] == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
            i++;
        } else if (len == 0) {
            o += (size_t)sprintf(out + o, "\\x%02x", p[i]);
            i++;
        } else {
            memcpy(out + o, p + i, len);
            o += len;
            i += len;
        }
    }
    out[o] = 0;
    return o;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t store_path_unescape(char *s) {
    size_t o = 0;
    for (size_t i = 0; s[i];) {
        if (s[i] == '\\' && s[i + 1] == '\\') {
            s[o++] = '\\';
            i += 2;
        } else if (s[i] == '\\' && s[i + 1] == 'x' && hexval(s[i + 2]) >= 0 &&
                   hexval(s[i + 3]) >= 0) {
            s[o++] = (char)(hexval(s[i + 2]) * 16 + hexval(s[i + 3]));
            i += 4;
        } else {
            s[o++] = s[i++];
        }
    }
    s[o] = 0;
    return o;
}

/* ---- ingest ---- */

int store_ingest_begin(store_t *s, err_t *err) { return exec(s, "BEGIN IMMEDIATE", err); }

int store_ingest_add(store_t *s, const char *bytes, size_t n, int *added, err_t *err) {
    int r = fault_step(err);
    if (r) return r;
    if (text_reserve(s, 4 * n + 1)) return err_set(err, ERR_NOMEM, "out of memory");
    size_t len = store_path_escape(bytes, n, s->text);
    sqlite3_stmt *st = stmt(s, ST_INGEST, err, &r);
    if (!st) return r;
    sqlite3_bind_text(st, 1, s->text, (int)len, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, now_s());
    if ((r = step_done(s, st, "adding an image", err))) return r;
    *added = sqlite3_changes(s->db) > 0;
    return 0;
}

int store_ingest_end(store_t *s, err_t *err) {
    int r = exec(s, "COMMIT", err);
    if (r) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

void store_ingest_rollback(store_t *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- leases ---- */

int store_reclaim(store_t *s, int max_attempts, int64_t run_id, int64_t *reclaimed,
                  int64_t *failed, err_t *err) {
    *reclaimed = *failed = 0;
    int r = exec(s, "BEGIN IMMEDIATE", err);
    if (r) return r;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        s->db,
        "UPDATE images SET status = 'failed', run_id = ?2, finished_at = ?3, "
        "error = 'abandoned: the process died ' || attempts || ' time(s) while processing it', "
        "lease_owner = NULL, lease_expires = NULL "
        "WHERE status = 'running' AND attempts >= ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, max_attempts);
        sqlite3_bind_int64(st, 2, run_id);
        sqlite3_bind_double(st, 3, now_s());
        rc = sqlite3_step(st);
        *failed = sqlite3_changes(s->db);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE) {
        rc = sqlite3_prepare_v2(s->db,
                                "UPDATE images SET status = 'pending', lease_owner = NULL, "
                                "lease_expires = NULL, error = 'lease of ' || lease_owner || "
                                "' abandoned; retried' WHERE status = 'running'", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            *reclaimed = sqlite3_changes(s->db);
        }
        sqlite3_finalize(st);
    }
    if (rc != SQLITE_DONE) {
        r = sql_err(s, rc, "reclaiming leases", err);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
    }
    return exec(s, "COMMIT", err);
}

int store_claim(store_t *s, const char *owner, double lease_s, int n, store_job *jobs,
                int *got, err_t *err) {
    *got = 0;
    int r = fault_step(err);
    if (r) return r;
    if ((r = exec(s, "BEGIN IMMEDIATE", err))) return r;
    sqlite3_stmt *pick = stmt(s, ST_CLAIM_PICK, err, &r);
    if (!pick) goto fail;
    sqlite3_bind_int(pick, 1, n);
    int rc, k = 0;
    while ((rc = sqlite3_step(pick)) == SQLITE_ROW && k < n) {
        jobs[k].id = sqlite3_column_int64(pick, 0);
        jobs[k].path = strdup((const char *)sqlite3_column_text(pick, 1));
        jobs[k].attempts = sqlite3_column_int(pick, 2);
        CHECK(jobs[k].path);
        store_path_unescape(jobs[k].path);
        k++;
    }
    sqlite3_reset(pick);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        r = sql_err(s, rc, "claiming images", err);
        goto fail_k;
    }
    double expires = now_s() + lease_s;
    for (int i = 0; i < k; i++) {
        sqlite3_stmt *set = stmt(s, ST_CLAIM_SET, err, &r);
        if (!set) goto fail_k;
        sqlite3_bind_int64(set, 1, jobs[i].id);
        sqlite3_bind_text(set, 2, owner, -1, SQLITE_STATIC);
        sqlite3_bind_double(set, 3, expires);
        if ((r = step_done(s, set, "claiming images", err))) goto fail_k;
    }
    if ((r = exec(s, "COMMIT", err))) goto fail_k;
    *got = k;
    return 0;
fail_k:
    for (int i = 0; i < k; i++) free(jobs[i].path), jobs[i].path = NULL;
fail:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* ---- results ---- */

int store_batch_begin(store_t *s, err_t *err) { return exec(s, "BEGIN IMMEDIATE", err); }

int store_batch_commit(store_t *s, err_t *err) {
    int r = fault_step(err);
    if (!r) r = exec(s, "COMMIT", err);
    return r;
}

void store_batch_rollback(store_t *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* One image inside a batch is a savepoint: a data error of that image
 * (store_put_result's ERR_INVALID) undoes its rows alone, and the batch
 * goes on with the others. */
int store_image_begin(store_t *s, err_t *err) { return exec(s, "SAVEPOINT image", err); }

int store_image_end(store_t *s, err_t *err) { return exec(s, "RELEASE image", err); }

int store_image_rollback(store_t *s, err_t *err) {
    int r = exec(s, "ROLLBACK TO image", err);
    if (!r) r = exec(s, "RELEASE image", err);
    return r;
}

int store_rle_json(char *out, size_t cap, int h, int w, const char *counts) {
    size_t o = (size_t)snprintf(out, cap, "{\"size\":[%d,%d],\"counts\":\"", h, w);
    if (o >= cap) return -1;
    for (const char *c = counts; *c; c++) {
        if (o + 3 >= cap) return -1;
        if (*c == '\\' || *c == '"') out[o++] = '\\';
        out[o++] = *c;
    }
    if (o + 3 >= cap) return -1;
    out[o++] = '"';
    out[o++] = '}';
    out[o] = 0;
    return (int)o;
}

/* a score that is not a finite number (a 0/0 stability score) is SQL NULL
 * (schema 002); column_score reads it back as NaN */
static void bind_score(sqlite3_stmt *st, int i, double v) {
    if (isfinite(v)) sqlite3_bind_double(st, i, v);
    else sqlite3_bind_null(st, i);
}

static double column_score(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

int store_put_result(store_t *s, int64_t run_id, int64_t image_id, const char *owner,
                     const amg_result *res, const store_timing *t, err_t *err) {
    int r = fault_step(err);
    if (r) return r;
    sqlite3_stmt *st = stmt(s, ST_DONE, err, &r);
    if (!st) return r;
    sqlite3_bind_int64(st, 1, image_id);
    sqlite3_bind_int64(st, 2, run_id);
    sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, res->width);
    sqlite3_bind_int(st, 5, res->height);
    sqlite3_bind_double(st, 6, now_s());
    sqlite3_bind_double(st, 7, t ? t->t_load : 0);
    sqlite3_bind_double(st, 8, t ? t->t_generate : 0);
    /* the stages: NULL where not measured (negative) */
    const double stage[4] = {t ? t->t_encode : -1, t ? t->t_decode : -1, t ? t->t_post : -1,
                             t ? t->t_write : -1};
    for (int k = 0; k < 4; k++)
        if (stage[k] >= 0) sqlite3_bind_double(st, 9 + k, stage[k]);
        else sqlite3_bind_null(st, 9 + k);
    if (t && t->worker >= 0) sqlite3_bind_int(st, 13, t->worker);
    else sqlite3_bind_null(st, 13);
    if ((r = step_done(s, st, "marking an image done", err))) return r;
    if (sqlite3_changes(s->db) == 0) return 0;   /* lease lost: write nothing */
    for (int i = 0; i < res->n; i++) {
        const amg_record *m = &res->recs[i];
        size_t need = 2 * strlen(m->rle) + 64;
        if (text_reserve(s, need)) return err_set(err, ERR_NOMEM, "out of memory");
        int len = store_rle_json(s->text, s->text_cap, res->height, res->width, m->rle);
        CHECK(len > 0);
        sqlite3_stmt *mk = stmt(s, ST_MASK, err, &r);
        if (!mk) return r;
        sqlite3_bind_int64(mk, 1, image_id);
        sqlite3_bind_int64(mk, 2, run_id);
        sqlite3_bind_int(mk, 3, i);
        sqlite3_bind_text(mk, 4, s->text, len, SQLITE_STATIC);
        sqlite3_bind_int64(mk, 5, m->area);
        for (int k = 0; k < 4; k++) sqlite3_bind_double(mk, 6 + k, m->bbox[k]);
        bind_score(mk, 10, m->predicted_iou);
        bind_score(mk, 11, m->stability_score);
        sqlite3_bind_double(mk, 12, m->point[0]);
        sqlite3_bind_double(mk, 13, m->point[1]);
        for (int k = 0; k < 4; k++) sqlite3_bind_double(mk, 14 + k, m->crop_box[k]);
        if ((r = step_done(s, mk, "inserting a mask", err))) return r;
    }
    if ((r = fault_image_step(image_id, err))) return r;
    return 1;
}

/* ---- the derived R*Tree ---- */

/* boxes_high_water: the newest mask id that has its box (0: none). The
 * R*Tree's rowid shadow table (documented in the R*Tree manual) is an
 * ordinary rowid table, so max() is one b-tree descent; max(id) on the
 * virtual table itself would scan every node. */
static int boxes_high_water(store_t *s, int64_t *hw, err_t *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT coalesce(max(rowid), 0) FROM mask_boxes_rowid",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "reading the newest mask box", err);
    rc = sqlite3_step(st);
    *hw = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : sql_err(s, rc, "reading the newest mask box", err);
}

int store_boxes_catch_up(store_t *s, int64_t chunk, int64_t *added, err_t *err) {
    if (added) *added = 0;
    if (chunk <= 0) chunk = 50000;
    sqlite3_stmt *ins = NULL;
    /* same convention as the schema comment: x0 = x, x1 = x + w, y0 = y, y1 = y + h */
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO mask_boxes(id, x0, x1, y0, y1) "
                                "SELECT id, bbox_x, bbox_x + bbox_w, bbox_y, bbox_y + bbox_h "
                                "FROM masks WHERE id > ?1 ORDER BY id LIMIT ?2",
                                -1, &ins, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "updating mask_boxes", err);
    int r = 0;
    for (;;) {
        int64_t hw = 0, n = 0;
        if ((r = exec(s, "BEGIN IMMEDIATE", err))) break;
        if ((r = boxes_high_water(s, &hw, err))) goto fail;
        sqlite3_bind_int64(ins, 1, hw);
        sqlite3_bind_int64(ins, 2, chunk);
        if ((r = step_done(s, ins, "updating mask_boxes", err))) goto fail;
        n = sqlite3_changes(s->db);
        if ((r = exec(s, "COMMIT", err))) goto fail;
        if (added) *added += n;
        if (n < chunk) break;
        continue;
    fail:
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        break;
    }
    sqlite3_finalize(ins);
    return r;
}

int store_start(store_t *s, int64_t image_id, const char *owner, err_t *err) {
    int r = fault_step(err);
    if (r) return r;
    sqlite3_stmt *st = stmt(s, ST_START, err, &r);
    if (!st) return r;
    sqlite3_bind_int64(st, 1, image_id);
    sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
    if ((r = step_done(s, st, "starting an image", err))) return r;
    return sqlite3_changes(s->db) > 0;
}

int store_put_failure(store_t *s, int64_t run_id, int64_t image_id, const char *owner,
                      const char *reason, int permanent, int counted, int max_attempts,
                      err_t *err) {
    int r = fault_step(err);
    if (r) return r;
    /* attempts decide between a retry and a permanent failure */
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT attempts FROM images WHERE id = ?", -1, &q, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "reading attempts", err);
    sqlite3_bind_int64(q, 1, image_id);
    rc = sqlite3_step(q);
    int attempts = (rc == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0) + (counted ? 0 : 1);
    sqlite3_finalize(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sql_err(s, rc, "reading attempts", err);
    int fail = permanent || attempts >= max_attempts;
    sqlite3_stmt *st = stmt(s, fail ? ST_FAIL : ST_RETRY, err, &r);
    if (!st) return r;
    /* images.error is TEXT: a reason quoting a name that is not UTF-8
     * (the loader's "caf\xe9.png: No such file") has each such byte as
     * \xHH, as images.path, so that status, serve's JSON and sql get
     * valid UTF-8; a longer reason is cut (it is a message) */
    char text[4 * 1024 + 1];
    const unsigned char *rp = (const unsigned char *)reason;
    size_t rn = reason ? strlen(reason) : 0, o = 0;
    for (size_t i = 0; i < rn && o + 5 < sizeof text;) {
        size_t len = rp[i] ? utf8_len(rp + i, rn - i) : 0;
        if (len == 0) {
            o += (size_t)snprintf(text + o, sizeof text - o, "\\x%02x", rp[i]);
            i++;
        } else {
            if (o + len >= sizeof text) break;
            memcpy(text + o, rp + i, len);
            o += len;
            i += len;
        }
    }
    text[o] = 0;
    sqlite3_bind_int64(st, 1, image_id);
    sqlite3_bind_int64(st, 2, run_id);
    sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC);
    if (reason) sqlite3_bind_text(st, 4, text, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, 4);
    if (fail) sqlite3_bind_double(st, 5, now_s());
    sqlite3_bind_int(st, 6, attempts);
    if ((r = step_done(s, st, "recording a failure", err))) return r;
    return sqlite3_changes(s->db) > 0 ? 1 + fail : 0;
}

int store_release(store_t *s, int64_t image_id, const char *owner, int counted, err_t *err) {
    int r;
    sqlite3_stmt *st = stmt(s, ST_RELEASE, err, &r);
    if (!st) return r;
    sqlite3_bind_int64(st, 1, image_id);
    sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, counted ? 1 : 0);
    if ((r = step_done(s, st, "releasing a lease", err))) return r;
    return sqlite3_changes(s->db) > 0;
}

/* ---- reading ---- */

int store_counts(store_t *s, int64_t counts[4], int64_t *masks, err_t *err) {
    static const char *names[4] = {"pending", "running", "done", "failed"};
    memset(counts, 0, 4 * sizeof counts[0]);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT status, count(*) FROM images GROUP BY status",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "counting images", err);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        for (int i = 0; i < 4; i++)
            if (!strcmp(name, names[i])) counts[i] = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return sql_err(s, rc, "counting images", err);
    if (masks) {
        rc = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM masks", -1, &st, NULL);
        if (rc != SQLITE_OK) return sql_err(s, rc, "counting masks", err);
        rc = sqlite3_step(st);
        *masks = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW) return sql_err(s, rc, "counting masks", err);
    }
    return 0;
}

void store_result_free(amg_result *res) {
    if (!res) return;
    if (res->recs)
        for (int i = 0; i < res->n; i++) free(res->recs[i].rle);
    free(res->recs);
    memset(res, 0, sizeof *res);
}

int store_load_result(store_t *s, int64_t image_id, amg_result *res, err_t *err) {
    memset(res, 0, sizeof *res);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT width, height FROM images WHERE id = ?", -1, &st,
                                NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "reading an image", err);
    sqlite3_bind_int64(st, 1, image_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        res->width = sqlite3_column_int(st, 0);
        res->height = sqlite3_column_int(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? err_set(err, ERR_INVALID, "%s: no image %lld", s->path,
                                           (long long)image_id)
                                 : sql_err(s, rc, "reading an image", err);
    rc = sqlite3_prepare_v2(s->db,
                            "SELECT rle, area, bbox_x, bbox_y, bbox_w, bbox_h, predicted_iou, "
                            "stability_score, point_x, point_y, crop_x, crop_y, crop_w, crop_h "
                            "FROM masks WHERE image_id = ? ORDER BY idx", -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_err(s, rc, "reading masks", err);
    sqlite3_bind_int64(st, 1, image_id);
    int cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (res->n == cap) {
            cap = cap ? 2 * cap : 64;
            amg_record *p = realloc(res->recs, (size_t)cap * sizeof *p);
            if (!p) {
                sqlite3_finalize(st);
                return err_set(err, ERR_NOMEM, "%s: image %lld: out of memory for %d masks",
                               s->path, (long long)image_id, cap);
            }
            res->recs = p;
        }
        amg_record *m = &res->recs[res->n];
        memset(m, 0, sizeof *m);
        const char *txt = (const char *)sqlite3_column_text(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        m->rle = malloc(n + 1);
        if (!m->rle) {
            sqlite3_finalize(st);
            return err_set(err, ERR_NOMEM, "%s: image %lld: out of memory for a %zu-byte rle",
                           s->path, (long long)image_id, n);
        }
        res->n++;
        int64_t h, w;
        if (sqlext_rle_parse(txt, n, &h, &w, m->rle, n + 1)) {
            sqlite3_finalize(st);
            return err_set(err, ERR_FORMAT, "%s: image %lld: malformed rle in masks", s->path,
                           (long long)image_id);
        }
        m->area = sqlite3_column_int64(st, 1);
        for (int k = 0; k < 4; k++) m->bbox[k] = sqlite3_column_double(st, 2 + k);
        m->predicted_iou = column_score(st, 6);
        m->stability_score = column_score(st, 7);
        m->point[0] = sqlite3_column_double(st, 8);
        m->point[1] = sqlite3_column_double(st, 9);
        for (int k = 0; k < 4; k++) m->crop_box[k] = sqlite3_column_double(st, 10 + k);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return sql_err(s, rc, "reading masks", err);
    return 0;
}
