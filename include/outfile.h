/* outfile.h: output files that are never seen half-written.
 *
 * Every file the program writes (generate's JSON and PNG, predict's mask,
 * cutout and JSON, dump's safetensors) is written to a temporary name in the
 * same folder and renamed onto its name only when complete: rename(2)
 * within a folder is atomic, so a reader, a crash, a full disk or Ctrl-C
 * leaves either the old file or the new one, never a prefix of the new one.
 * (The exports of `sam2amg export` do the same in jobs/cmd_jobs.c.)
 *
 *     char tmp[OUTFILE_TMP_MAX];
 *     FILE *f = outfile_open(path, tmp, err);      // writes to tmp
 *     ... write ...
 *     rc = outfile_close(f, tmp, path, rc, err);   // rename, or remove tmp
 */
#ifndef SAM2AMG_OUTFILE_H
#define SAM2AMG_OUTFILE_H

#include <stdio.h>

#include "check.h"

#define OUTFILE_TMP_MAX 4200

/* outfile_tmp_name: "PATH.tmp-PID" into tmp (OUTFILE_TMP_MAX bytes); PATH
 * itself when it exists and is not a regular file (/dev/null, a FIFO: such
 * targets are written in place, never replaced); "REAL.tmp-PID" beside the
 * file a symlink PATH names (that file is replaced, the link kept). The
 * destination outfile_commit renames onto is tmp less ".tmp-PID". Returns 0, or ERR_INVALID
 * when path is too long. */
int outfile_tmp_name(const char *path, char *tmp, err_t *err);

/* outfile_open: fopen(tmp, "wb") with tmp = outfile_tmp_name(path). NULL
 * with ERR_IO in err (naming path) when it cannot be created. */
FILE *outfile_open(const char *path, char *tmp, err_t *err);

/* outfile_commit: after the data is written and tmp closed: when rc is 0,
 * rename tmp onto path (ERR_IO if that fails); otherwise, or if it failed,
 * remove tmp. tmp is fsynced before the rename and the folder after it, so
 * a crash (power loss) also leaves the old file or the new one whole.
 * Returns the resulting rc (rc itself when non-zero). */
int outfile_commit(const char *tmp, const char *path, int rc, err_t *err);

/* outfile_close: fclose(f) (a failed close or an earlier write error is
 * ERR_IO "PATH: write failed: REASON"), then outfile_commit. */
int outfile_close(FILE *f, const char *tmp, const char *path, int rc, err_t *err);

#endif
