/* faultvfs.c: the fault-injecting SQLite VFS of include/faultvfs.h.
 *
 * Every file opened through "sam2amg-fault" is a fault_file: our sqlite3_file
 * header followed by the real VFS's file object (szOsFile is the sum), so
 * one allocation by SQLite holds both. Each io method forwards to the real
 * one; xRead, xWrite, xTruncate and xSync first take a step of their
 * counter, and the step that reaches the armed number fails instead of
 * doing the I/O. The counters are process-wide atomics: the runner's
 * claimer and writer connections and any thread share one sequence, which
 * is what "the k-th write of a run" means. The order of operations between
 * threads is not fixed, so the same K may land on a slightly different
 * operation from one run to the next; the tests sweep every K.
 */
#include "faultvfs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

#include "check.h"

enum { OP_READ = 0, OP_WRITE, OP_SYNC, OP_COUNT };
static const char *const op_name[OP_COUNT] = {"read", "write", "sync"};

static _Atomic int64_t op_count[OP_COUNT];
static _Atomic int64_t fault_count;
static int     fault_op = -1;     /* OP_*, or -1: count only */
static int64_t fault_at;          /* 1-based */
static int     fault_full;        /* SQLITE_FULL instead of SQLITE_IOERR_* */
static int     fault_persist;     /* every op of the kind from fault_at on */

static sqlite3_vfs *real_vfs;

typedef struct fault_file {
    sqlite3_file  base;           /* pMethods = &fault_io */
    sqlite3_file *real;           /* the real VFS's file, right after this struct */
} fault_file;

/* step: count one operation of kind op; the SQLite code it must fail with,
 * or SQLITE_OK. */
static int step(int op) {
    int64_t n = atomic_fetch_add(&op_count[op], 1) + 1;
    if (op != fault_op || n < fault_at || (n > fault_at && !fault_persist)) return SQLITE_OK;
    atomic_fetch_add(&fault_count, 1);
    if (fault_full) return SQLITE_FULL;
    return op == OP_READ ? SQLITE_IOERR_READ : op == OP_WRITE ? SQLITE_IOERR_WRITE
                                                             : SQLITE_IOERR_FSYNC;
}

static sqlite3_file *R(sqlite3_file *f) { return ((fault_file *)f)->real; }

static int f_close(sqlite3_file *f) {
    int rc = R(f)->pMethods ? R(f)->pMethods->xClose(R(f)) : SQLITE_OK;
    return rc;
}
static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
    int rc = step(OP_READ);
    if (rc) {
        memset(buf, 0, (size_t)n);   /* what SQLite expects of a failed read */
        return rc;
    }
    return R(f)->pMethods->xRead(R(f), buf, n, off);
}
static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off) {
    int rc = step(OP_WRITE);
    return rc ? rc : R(f)->pMethods->xWrite(R(f), buf, n, off);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size) {
    int rc = step(OP_WRITE);
    return rc ? (rc == SQLITE_IOERR_WRITE ? SQLITE_IOERR_TRUNCATE : rc)
              : R(f)->pMethods->xTruncate(R(f), size);
}
static int f_sync(sqlite3_file *f, int flags) {
    int rc = step(OP_SYNC);
    return rc ? rc : R(f)->pMethods->xSync(R(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *size) {
    return R(f)->pMethods->xFileSize(R(f), size);
}
static int f_lock(sqlite3_file *f, int l) { return R(f)->pMethods->xLock(R(f), l); }
static int f_unlock(sqlite3_file *f, int l) { return R(f)->pMethods->xUnlock(R(f), l); }
static int f_check_reserved(sqlite3_file *f, int *out) {
    return R(f)->pMethods->xCheckReservedLock(R(f), out);
}
static int f_control(sqlite3_file *f, int op, void *arg) {
    return R(f)->pMethods->xFileControl(R(f), op, arg);
}
static int f_sector(sqlite3_file *f) { return R(f)->pMethods->xSectorSize(R(f)); }
static int f_devchar(sqlite3_file *f) { return R(f)->pMethods->xDeviceCharacteristics(R(f)); }
static int f_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp) {
    return R(f)->pMethods->xShmMap(R(f), pg, sz, extend, pp);
}
static int f_shm_lock(sqlite3_file *f, int off, int n, int flags) {
    return R(f)->pMethods->xShmLock(R(f), off, n, flags);
}
static void f_shm_barrier(sqlite3_file *f) { R(f)->pMethods->xShmBarrier(R(f)); }
static int f_shm_unmap(sqlite3_file *f, int del) { return R(f)->pMethods->xShmUnmap(R(f), del); }
/* no memory-mapped reads: every page read goes through f_read */
static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
    (void)f, (void)off, (void)n;
    *pp = NULL;
    return SQLITE_OK;
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
    (void)f, (void)off, (void)p;
    return SQLITE_OK;
}

static const sqlite3_io_methods fault_io = {
    3,          f_close,   f_read,     f_write,        f_truncate, f_sync,
    f_size,     f_lock,    f_unlock,   f_check_reserved, f_control, f_sector,
    f_devchar,  f_shm_map, f_shm_lock, f_shm_barrier,  f_shm_unmap, f_fetch,
    f_unfetch,
};

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out) {
    (void)vfs;
    fault_file *ff = (fault_file *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    memset(ff->real, 0, (size_t)real_vfs->szOsFile);
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out);
    /* SQLite calls xClose only when pMethods is set: set it exactly when
     * the real file has methods to close */
    ff->base.pMethods = ff->real->pMethods ? &fault_io : NULL;
    return rc;
}
static int v_delete(sqlite3_vfs *v, const char *n, int sync) {
    (void)v;
    return real_vfs->xDelete(real_vfs, n, sync);
}
static int v_access(sqlite3_vfs *v, const char *n, int flags, int *out) {
    (void)v;
    return real_vfs->xAccess(real_vfs, n, flags, out);
}
static int v_fullpath(sqlite3_vfs *v, const char *n, int len, char *out) {
    (void)v;
    return real_vfs->xFullPathname(real_vfs, n, len, out);
}
static void *v_dlopen(sqlite3_vfs *v, const char *n) {
    (void)v;
    return real_vfs->xDlOpen(real_vfs, n);
}
static void v_dlerror(sqlite3_vfs *v, int n, char *msg) {
    (void)v;
    real_vfs->xDlError(real_vfs, n, msg);
}
static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *s))(void) {
    (void)v;
    return real_vfs->xDlSym(real_vfs, h, s);
}
static void v_dlclose(sqlite3_vfs *v, void *h) {
    (void)v;
    real_vfs->xDlClose(real_vfs, h);
}
static int v_random(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    return real_vfs->xRandomness(real_vfs, n, out);
}
static int v_sleep(sqlite3_vfs *v, int us) {
    (void)v;
    return real_vfs->xSleep(real_vfs, us);
}
static int v_time(sqlite3_vfs *v, double *t) {
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, t);
}
static int v_lasterr(sqlite3_vfs *v, int n, char *msg) {
    (void)v;
    return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, msg) : 0;
}
static int v_time64(sqlite3_vfs *v, sqlite3_int64 *t) {
    (void)v;
    return real_vfs->xCurrentTimeInt64(real_vfs, t);
}

static sqlite3_vfs fault_vfs = {
    .iVersion = 2,
    .mxPathname = 512,
    .zName = "sam2amg-fault",
    .xOpen = v_open,
    .xDelete = v_delete,
    .xAccess = v_access,
    .xFullPathname = v_fullpath,
    .xDlOpen = v_dlopen,
    .xDlError = v_dlerror,
    .xDlSym = v_dlsym,
    .xDlClose = v_dlclose,
    .xRandomness = v_random,
    .xSleep = v_sleep,
    .xCurrentTime = v_time,
    .xGetLastError = v_lasterr,
    .xCurrentTimeInt64 = v_time64,
};

void faultvfs_counts(int64_t *reads, int64_t *writes, int64_t *syncs, int64_t *faults) {
    if (reads) *reads = atomic_load(&op_count[OP_READ]);
    if (writes) *writes = atomic_load(&op_count[OP_WRITE]);
    if (syncs) *syncs = atomic_load(&op_count[OP_SYNC]);
    if (faults) *faults = atomic_load(&fault_count);
}

static void report_at_exit(void) {
    const char *path = getenv("SAM2AMG_FAULT_VFS_REPORT");
    if (!path || !*path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    int64_t r, w, s, x;
    faultvfs_counts(&r, &w, &s, &x);
    fprintf(f, "read %lld write %lld sync %lld faults %lld\n", (long long)r, (long long)w,
            (long long)s, (long long)x);
    fclose(f);
}

static int init_rc;

static void init_once(void) {
    const char *spec = getenv("SAM2AMG_FAULT_VFS");
    if (!spec || !*spec) return;
    if (strcmp(spec, "count")) {
        char kind[16] = {0};
        long long k = 0;
        int used = 0;
        if (sscanf(spec, "%15[a-z]:%lld%n", kind, &k, &used) != 2 || k < 1) {
            fprintf(stderr, "SAM2AMG_FAULT_VFS=%s: expected KIND:K[,full][,persist]\n", spec);
            abort();
        }
        for (int i = 0; i < OP_COUNT; i++)
            if (!strcmp(kind, op_name[i])) fault_op = i;
        CHECK(fault_op >= 0);
        fault_at = k;
        fault_full = strstr(spec + used, ",full") != NULL;
        fault_persist = strstr(spec + used, ",persist") != NULL;
    }
    real_vfs = sqlite3_vfs_find(NULL);
    CHECK(real_vfs);
    fault_vfs.szOsFile = (int)sizeof(fault_file) + real_vfs->szOsFile;
    fault_vfs.mxPathname = real_vfs->mxPathname;
    init_rc = sqlite3_vfs_register(&fault_vfs, 1);
    if (init_rc == SQLITE_OK) atexit(report_at_exit);
}

int faultvfs_init_from_env(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_once);
    return init_rc;
}
