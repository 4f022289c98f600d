/* faultvfs.h: a fault-injecting SQLite VFS for the storage fault tests.
 *
 * A shim over the default ("unix") VFS, after SQLite's own test_vfs.c /
 * test_malloc.c idea: it counts every xRead, xWrite and xSync (xTruncate
 * counts as a write) of every file SQLite opens through it (database, WAL,
 * journals, temporary files; the -shm mapping is not file I/O), over all
 * connections and threads of the process, and makes the k-th operation of
 * one kind fail. It is dormant unless the environment asks for it, so the
 * program is unchanged in normal use:
 *
 *   SAM2AMG_FAULT_VFS="KIND:K[,full][,persist]"
 *       KIND is read, write or sync: the K-th such operation (1-based)
 *       returns SQLITE_IOERR_READ / _WRITE / _FSYNC, or SQLITE_FULL with
 *       ",full"; with ",persist" every later one of that kind fails too (a
 *       disk that stays full or broken); a failed read zero-fills its buffer
 *       as a real short read does.
 *   SAM2AMG_FAULT_VFS="count"
 *       no fault; the counts are still kept.
 *   SAM2AMG_FAULT_VFS_REPORT=FILE
 *       at exit, append "read R write W sync S faults F" for this process
 *       to FILE (how the tests learn the number of operations of a run).
 */
#ifndef SAM2AMG_FAULTVFS_H
#define SAM2AMG_FAULTVFS_H

#include <stdint.h>

/* faultvfs_init_from_env: when SAM2AMG_FAULT_VFS is set, register the shim
 * as the default VFS (once per process; thread-safe). Returns 0, or an
 * SQLite result code if registration failed (then SQLite is unchanged). A
 * malformed value aborts: it is a test harness setting, not user data. */
int faultvfs_init_from_env(void);

/* faultvfs_counts: the operations counted so far (any may be NULL). */
void faultvfs_counts(int64_t *reads, int64_t *writes, int64_t *syncs, int64_t *faults);

#endif
