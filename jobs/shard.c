/* shard.c: what `sam2amg run` needs to run as one task of a job array:
 * which shard of the images is this task's, where its working database
 * lives, and checkpoints of that database to the path the user named.
 *
 * DESIGN
 *
 * Shards. An image belongs to shard FNV-1a-64(path) mod N, where path is
 * the canonical file name bytes that ingest stores (images.path
 * unescaped). The hash depends on nothing but the path: not on the manifest
 * order, the run, the node or a requeue, so every task that ingests the
 * whole manifest keeps the same images, and N tasks cover every image
 * exactly once. The task's number comes from --shard K/N, else from
 * Slurm's job-array variables, else from Kubernetes' JOB_COMPLETION_INDEX
 * with --shard-count N. A shard database records its K/N (table shard),
 * and a later run on it keeps them.
 *
 * Working copy. SQLite's locks and WAL do not work on NFS or Lustre, so
 * with --local-dir (the default when the database path is on a network
 * filesystem) the run works on a copy on node-local disk and writes
 * checkpoints to the database path. A checkpoint is a consistent snapshot
 * (the backup API copies every page inside one read transaction, while the
 * writer goes on in WAL mode) written to DB.checkpoint-tmp beside the
 * database, switched to a rollback journal (so readers of the checkpoint
 * need no shared memory file), fsynced, renamed over the database path and
 * the folder fsynced: the path always holds either the old checkpoint or
 * the new one, never part of one. A killed task leaves at most a stale
 * DB.checkpoint-tmp, which the next checkpoint replaces. A task (also a
 * requeued one, maybe on another node) starts from the checkpoint, not
 * from a local copy that may be stale: images finished after the last
 * checkpoint are done again; none is done twice, because the checkpoint's
 * leases are reclaimed like those of a killed run. The one exception is a
 * working copy that a run kept because its last checkpoint failed (it says
 * so, and marks it: LOCAL-kept, jobs_local_keep) and that still descends
 * from the checkpoint and is at least as new (local_supersedes: its
 * checkpoint_seq >= the checkpoint's, and the checkpoint's last run is in
 * it, same id and start time): the next run on that node goes on from it
 * instead of throwing its work away. A copy left by a kill -9 is not
 * marked: the next run starts from the checkpoint, as always.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "jobs.h"
#include "size.h"

uint64_t jobs_shard_hash(const char *bytes, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a 64 offset basis */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)bytes[i];
        h *= 0x100000001b3ull;            /* FNV-1a 64 prime */
    }
    return h;
}

int jobs_shard_of(const char *bytes, size_t n, int n_shards) {
    return (int)(jobs_shard_hash(bytes, n) % (uint64_t)n_shards);
}

/* sql_shard_of: SQL shard_of(path_text, n): the shard of a stored
 * (escaped) images.path. */
static void sql_shard_of(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const char *p = (const char *)sqlite3_value_text(argv[0]);
    int64_t n = sqlite3_value_int64(argv[1]);
    if (!p || n < 1) {
        sqlite3_result_null(ctx);
        return;
    }
    char *b = strdup(p);
    if (!b) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    size_t len = store_path_unescape(b);
    sqlite3_result_int64(ctx, (int64_t)(jobs_shard_hash(b, len) % (uint64_t)n));
    free(b);
}

int jobs_shard_register_sql(sqlite3 *db) {
    return sqlite3_create_function(db, "shard_of", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                   sql_shard_of, NULL, NULL);
}

/* parse_int: the whole of s as a decimal in [lo, hi]: digits only (no
 * sign, no space before or after: " 1/4" and "1/4 " alike are refused). */
static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int jobs_shard_parse(const char *s, int *k, int *n) {
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash || slash == s) return -1;
    char kbuf[32];
    size_t kl = (size_t)(slash - s);
    if (kl >= sizeof kbuf) return -1;
    memcpy(kbuf, s, kl);
    kbuf[kl] = 0;
    int64_t kv, nv;
    if (parse_int(kbuf, 0, JOBS_MAX_SHARDS - 1, &kv) || parse_int(slash + 1, 1, JOBS_MAX_SHARDS, &nv) ||
        kv >= nv)
        return -1;
    *k = (int)kv;
    *n = (int)nv;
    return 0;
}

int jobs_shard_from_env(int shard_count, int *k, int *n, char *why, size_t cap) {
    const char *id = getenv("SLURM_ARRAY_TASK_ID"), *count = getenv("SLURM_ARRAY_TASK_COUNT");
    int64_t iv, cv, minv = 0, stepv = 1;
    char derived[32];
    if (id && *id && !(count && *count)) {
        /* older Slurm sets no _COUNT: (MAX - MIN) / STEP + 1 tasks; with
         * neither, running unsharded would do every image in every task */
        const char *mx = getenv("SLURM_ARRAY_TASK_MAX"), *mn = getenv("SLURM_ARRAY_TASK_MIN"),
                   *st = getenv("SLURM_ARRAY_TASK_STEP");
        int64_t maxv;
        if (!mx || !*mx || parse_int(mx, 0, INT32_MAX, &maxv) ||
            (mn && *mn && parse_int(mn, 0, maxv, &minv)) ||
            (st && *st && parse_int(st, 1, INT32_MAX, &stepv))) {
            snprintf(why, cap, "SLURM_ARRAY_TASK_ID=%s is set but SLURM_ARRAY_TASK_COUNT is not, "
                     "and SLURM_ARRAY_TASK_MAX (%s) does not give the number of tasks: give "
                     "--shard K/N", id, mx && *mx ? mx : "unset");
            return -1;
        }
        snprintf(derived, sizeof derived, "%lld", (long long)((maxv - minv) / stepv + 1));
        count = derived;
        minv = 0, stepv = 1;
    }
    if (id && *id && count && *count) {
        const char *mn = getenv("SLURM_ARRAY_TASK_MIN"), *st = getenv("SLURM_ARRAY_TASK_STEP");
        if (parse_int(id, 0, INT32_MAX, &iv) || parse_int(count, 1, JOBS_MAX_SHARDS, &cv) ||
            (mn && *mn && parse_int(mn, 0, INT32_MAX, &minv)) ||
            (st && *st && parse_int(st, 1, INT32_MAX, &stepv)) || iv < minv ||
            (iv - minv) % stepv || (iv - minv) / stepv >= cv) {
            snprintf(why, cap, "SLURM_ARRAY_TASK_ID=%s, SLURM_ARRAY_TASK_COUNT=%s (MIN %s, STEP "
                     "%s) do not name a shard", id, count, mn ? mn : "unset", st ? st : "unset");
            return -1;
        }
        *k = (int)((iv - minv) / stepv);
        *n = (int)cv;
        snprintf(why, cap, "shard %d/%d from SLURM_ARRAY_TASK_ID=%s, %s=%s", *k, *n, id,
                 count == derived ? "(MAX - MIN) / STEP + 1" : "SLURM_ARRAY_TASK_COUNT", count);
        return 1;
    }
    const char *ji = getenv("JOB_COMPLETION_INDEX");
    if (ji && *ji && shard_count > 0) {
        if (parse_int(ji, 0, shard_count - 1, &iv)) {
            snprintf(why, cap, "JOB_COMPLETION_INDEX=%s is not in 0..%d (--shard-count %d)", ji,
                     shard_count - 1, shard_count);
            return -1;
        }
        *k = (int)iv;
        *n = shard_count;
        snprintf(why, cap, "shard %d/%d from JOB_COMPLETION_INDEX=%s and --shard-count %d", *k,
                 *n, ji, shard_count);
        return 1;
    }
    return 0;
}

int jobs_shard_get(store_t *s, int *k, int *n, int64_t *seq, err_t *err) {
    sqlite3_stmt *st = NULL;
    sqlite3 *db = store_db(s);
    if (sqlite3_prepare_v2(db, "SELECT k, n, checkpoint_seq FROM shard WHERE id = 1", -1, &st,
                           NULL) != SQLITE_OK)
        return err_set(err, ERR_IO, "reading the shard: %s", sqlite3_errmsg(db));
    int rc = sqlite3_step(st), found = rc == SQLITE_ROW;
    if (found) {
        *k = sqlite3_column_int(st, 0);
        *n = sqlite3_column_int(st, 1);
        if (seq) *seq = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return err_set(err, ERR_IO, "reading the shard: %s", sqlite3_errmsg(db));
    return found;
}

int jobs_shard_set(store_t *s, int k, int n, int64_t run_id, err_t *err) {
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO shard(id, k, n) VALUES (1, ?1, ?2)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, k);
        sqlite3_bind_int(st, 2, n);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (rc == SQLITE_DONE && run_id > 0) {
        char shard[48];
        snprintf(shard, sizeof shard, "%d/%d", k, n);
        rc = sqlite3_prepare_v2(db, "UPDATE runs SET shard = ?1 WHERE id = ?2", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(st, 1, shard, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 2, run_id);
            rc = sqlite3_step(st);
            sqlite3_finalize(st);
        }
    }
    if (rc != SQLITE_DONE) return err_set(err, ERR_IO, "recording the shard: %s", sqlite3_errmsg(db));
    return 0;
}

/* ---- where the database lives ---- */

/* statfs magic numbers of network and cluster filesystems (linux/magic.h
 * and the filesystems' own headers) */
static const struct { long magic; const char *name; } net_fs[] = {
    {0x6969, "NFS"},          {0x0BD00BD0, "Lustre"},   {0xFF534D42, "CIFS"},
    {0xFE534D42, "SMB2"},     {0x517B, "SMB"},          {0x47504653, "GPFS"},
    {0x19830326, "BeeGFS"},   {0x00C36400, "CephFS"},   {0x65735546, "FUSE"},
    {0x013111A8, "IBRIX"},    {0x7461636f, "OCFS2"},    {0x01161970, "GFS2"},
};

const char *jobs_network_fs(const char *path) {
    const char *forced = getenv("SAM2AMG_ASSUME_NETWORK_FS");   /* tests */
    if (forced && *forced) return forced;
    /* the database may not exist yet: its folder decides */
    char *dir = strdup(path);
    CHECK(dir);
    struct statfs sf;
    int rc = statfs(path, &sf);
    if (rc != 0) {
        char *slash = strrchr(dir, '/');
        if (slash == dir) dir[1] = 0;
        else if (slash) *slash = 0;
        else strcpy(dir, ".");
        rc = statfs(dir, &sf);
    }
    free(dir);
    if (rc != 0) return NULL;
    for (size_t i = 0; i < sizeof net_fs / sizeof net_fs[0]; i++)
        if ((long)(unsigned)sf.f_type == net_fs[i].magic || (long)sf.f_type == net_fs[i].magic)
            return net_fs[i].name;
    return NULL;
}

static char *dir_of(const char *path);

char *jobs_local_path(const char *local_dir, const char *db) {
    /* the folder's real path and the name: the same key whether or not
     * the database (the checkpoint) exists yet */
    char *d = dir_of(db);
    if (!d) return NULL;
    char *dreal = realpath(d, NULL);
    free(d);
    const char *slash = strrchr(db, '/');
    const char *base = slash ? slash + 1 : db;
    int64_t kn = 2;
    CHECK(size_add(kn, (int64_t)strlen(dreal ? dreal : db), &kn) &&
          size_add(kn, (int64_t)strlen(base), &kn));
    char *abs = malloc((size_t)kn);
    if (!abs) {
        free(dreal);
        return NULL;
    }
    snprintf(abs, (size_t)kn, "%s/%s", dreal ? dreal : "", base);
    free(dreal);
    const char *key = abs;
    /* the hash of the absolute path: two databases of one basename (two
     * jobs on one node, one $TMPDIR) get two working copies */
    char tag[32];
    snprintf(tag, sizeof tag, "sam2amg-%08x-", (unsigned)(jobs_shard_hash(key, strlen(key)) >> 32));
    int64_t need = 1;
    CHECK(size_add(need, (int64_t)strlen(local_dir), &need) &&
          size_add(need, (int64_t)strlen(tag) + 1, &need) &&
          size_add(need, (int64_t)strlen(base), &need));
    char *p = malloc((size_t)need);
    if (p) snprintf(p, (size_t)need, "%s/%s%s", local_dir, tag, base);
    free(abs);
    return p;
}

/* ---- checkpoints ---- */

static char *suffixed(const char *path, const char *suffix) {
    int64_t need = 1;
    CHECK(size_add(need, (int64_t)strlen(path), &need) &&
          size_add(need, (int64_t)strlen(suffix), &need));
    char *p = malloc((size_t)need);
    CHECK(p);
    snprintf(p, (size_t)need, "%s%s", path, suffix);
    return p;
}

/* unlink_sidecars: remove path's -wal, -shm and -journal (those of a file
 * that is being replaced as a whole). */
static void unlink_sidecars(const char *path) {
    /* -kept: jobs_local_keep's mark, which goes with the copy it marks */
    static const char *const sfx[] = {"-wal", "-shm", "-journal", "-kept"};
    for (int i = 0; i < 4; i++) {
        char *p = suffixed(path, sfx[i]);
        unlink(p);
        free(p);
    }
}

static int fsync_path(const char *path, int dir, err_t *err) {
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && !(dir && (e == EINVAL || e == EROFS)))
        return err_set(err, ERR_IO, "%s: fsync: %s", path, strerror(e));
    return 0;
}

/* dir_of: the folder of path, malloc'd ("." without a slash); NULL when
 * out of memory */
static char *dir_of(const char *path) {
    size_t n = strlen(path);
    char *d = malloc(n < 2 ? 2 : n + 1);   /* room for "." when path is "" */
    if (!d) return NULL;
    memcpy(d, path, n + 1);
    char *slash = strrchr(d, '/');
    if (slash == d) d[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(d, ".");
    return d;
}

/* copy_db: every page of src (open connection) into a new database file at
 * dest, in one backup step (one read transaction: a consistent snapshot),
 * then dest switched to journal_mode `mode` ("DELETE" or "WAL"). */
static int copy_db(sqlite3 *src, const char *dest, const char *mode, err_t *err) {
    unlink(dest);
    unlink_sidecars(dest);
    sqlite3 *d = NULL;
    int rc = sqlite3_open_v2(dest, &d, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        err_set(err, ERR_IO, "%s: cannot create: %s", dest, d ? sqlite3_errmsg(d) : sqlite3_errstr(rc));
        sqlite3_close(d);
        return ERR_IO;
    }
    sqlite3_busy_timeout(src, 30000);
    sqlite3_backup *b = sqlite3_backup_init(d, "main", src, "main");
    if (!b) {
        err_set(err, ERR_IO, "%s: cannot copy: %s", dest, sqlite3_errmsg(d));
        sqlite3_close(d);
        return ERR_IO;
    }
    while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED)
        usleep(10000);   /* the writer holds a lock for one commit; try again */
    int frc = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || frc != SQLITE_OK) {
        err_set(err, ERR_IO, "%s: copying the database: %s", dest,
                sqlite3_errstr(rc != SQLITE_DONE ? rc : frc));
        sqlite3_close(d);
        return ERR_IO;
    }
    sqlite3_close(d);
    /* the copy's header carries the source's journal mode; set ours */
    if (sqlite3_open_v2(dest, &d, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        err_set(err, ERR_IO, "%s: cannot reopen the copy", dest);
        sqlite3_close(d);
        return ERR_IO;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA journal_mode = %s", mode);
    rc = sqlite3_exec(d, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) err_set(err, ERR_IO, "%s: %s: %s", dest, sql, sqlite3_errmsg(d));
    sqlite3_close(d);
    return rc == SQLITE_OK ? 0 : ERR_IO;
}

/* test_pause: sleep SAM2AMG_TEST_PAUSE_<what> seconds when set: the
 * window in which the kill -9 tests kill a checkpoint or a merge. */
void jobs_test_pause(const char *what) {
    char name[64];
    snprintf(name, sizeof name, "SAM2AMG_TEST_PAUSE_%s", what);
    const char *v = getenv(name);
    if (!v || !*v) return;
    double s = atof(v);
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

int jobs_checkpoint_write(store_t *src, const char *dest, err_t *err) {
    sqlite3 *db = store_db(src);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    sqlite3_stmt *st = NULL;
    int src_rc = sqlite3_prepare_v2(db, "UPDATE shard SET checkpoint_seq = checkpoint_seq + 1, "
                                        "checkpoint_at = ?1", -1, &st, NULL);
    if (src_rc == SQLITE_OK) {
        sqlite3_bind_double(st, 1, (double)now.tv_sec + now.tv_nsec * 1e-9);
        src_rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (src_rc != SQLITE_DONE)
        return err_set(err, ERR_IO, "%s: checkpoint: %s", dest, sqlite3_errmsg(db));
    char *tmp = suffixed(dest, ".checkpoint-tmp");
    int rc = copy_db(db, tmp, "DELETE", err);
    if (!rc) rc = fsync_path(tmp, 0, err);
    if (!rc) jobs_test_pause("CHECKPOINT");
    if (!rc) {
        /* a -wal or -journal left at the path by an earlier direct run
         * belongs to the file being replaced: SQLite would replay it into
         * the new one */
        unlink_sidecars(dest);
        if (rename(tmp, dest) != 0)
            rc = err_set(err, ERR_IO, "%s: cannot rename the checkpoint into place: %s", dest,
                         strerror(errno));
    }
    if (!rc) {
        char *d = dir_of(dest);
        rc = d ? fsync_path(d, 1, err)
               : err_set(err, ERR_NOMEM, "%s: checkpoint: out of memory", dest);
        free(d);
    }
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

/* db_lineage: checkpoint_seq (0 without a shard row) and the last run
 * (id, started_at; 0 when none) of db. 0, or -1 when it cannot be read. */
static int db_lineage(sqlite3 *db, int64_t *seq, int64_t *run, double *started) {
    sqlite3_stmt *st = NULL;
    *seq = *run = 0, *started = 0;
    int rc = sqlite3_prepare_v2(db, "SELECT (SELECT checkpoint_seq FROM shard WHERE id = 1), "
                                    "id, started_at FROM runs ORDER BY id DESC LIMIT 1", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        *run = sqlite3_column_int64(st, 1);
        *started = sqlite3_column_double(st, 2);
        rc = SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* local_supersedes: 1 when the working copy local descends from the
 * checkpoint src and is at least as new (see the DESIGN comment). Any
 * doubt (unreadable, another lineage) is 0: restore from the checkpoint. */
static int local_supersedes(sqlite3 *src, const char *local) {
    if (access(local, F_OK) != 0) return 0;
    sqlite3 *db = NULL;
    int64_t cseq, crun, lseq, lrun;
    double cstart, lstart;
    int ok = sqlite3_open_v2(local, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
             db_lineage(src, &cseq, &crun, &cstart) == 0 &&
             db_lineage(db, &lseq, &lrun, &lstart) == 0 && crun > 0 && lseq >= cseq;
    if (ok) {   /* the checkpoint's last run, the same, in the working copy */
        sqlite3_stmt *st = NULL;
        ok = sqlite3_prepare_v2(db, "SELECT started_at = ?2 FROM runs WHERE id = ?1", -1, &st,
                                NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_int64(st, 1, crun);
            sqlite3_bind_double(st, 2, cstart);
            ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return ok;
}

int jobs_checkpoint_restore(const char *ckpt, const char *local, int *restored, err_t *err) {
    *restored = 0;
    if (access(ckpt, F_OK) != 0) {
        /* only a checkpoint that does not exist means a fresh start: on
         * another error (EACCES, ESTALE, EIO on a network filesystem) a
         * fresh run would overwrite the good checkpoint at its end */
        if (errno != ENOENT)
            return err_set(err, ERR_IO, "%s: cannot read the checkpoint: %s", ckpt,
                           strerror(errno));
        /* a fresh start: no stale working copy may stand in for it */
        unlink(local);
        unlink_sidecars(local);
        return 0;
    }
    sqlite3 *src = NULL;
    int rc = sqlite3_open_v2(ckpt, &src, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        err_set(err, ERR_IO, "%s: cannot open the checkpoint: %s", ckpt,
                src ? sqlite3_errmsg(src) : sqlite3_errstr(rc));
        sqlite3_close(src);
        return ERR_IO;
    }
    char *mark = suffixed(local, "-kept");
    int kept = access(mark, F_OK) == 0;
    free(mark);
    if (kept && local_supersedes(src, local)) {
        sqlite3_close(src);
        *restored = 2;
        return 0;
    }
    int r = copy_db(src, local, "WAL", err);
    sqlite3_close(src);
    if (!r) *restored = 1;
    return r;
}

void jobs_local_keep(const char *local) {
    char *mark = suffixed(local, "-kept");
    int fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    free(mark);
}

void jobs_local_remove(const char *local) {
    unlink(local);
    unlink_sidecars(local);
}
