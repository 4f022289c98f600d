/* outfile.c: write to a temporary file, rename when complete (outfile.h). */
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int outfile_tmp_name(const char *path, char *tmp, err_t *err) {
    /* an existing non-regular target (/dev/null, /dev/stdout, a FIFO, a
     * symlink to one) is written in place: renaming onto it would replace
     * the device or pipe itself */
    struct stat sb, lsb;
    int in_place = stat(path, &sb) == 0 && !S_ISREG(sb.st_mode);
    /* a symlink to a regular file: the file it names is replaced (beside
     * it), not the link (what `>` in a shell would write) */
    char *real = NULL;
    if (!in_place && lstat(path, &lsb) == 0 && S_ISLNK(lsb.st_mode)) real = realpath(path, NULL);
    int n = in_place ? snprintf(tmp, OUTFILE_TMP_MAX, "%s", path)
                     : snprintf(tmp, OUTFILE_TMP_MAX, "%s.tmp-%ld", real ? real : path,
                                (long)getpid());
    free(real);
    if (n < 0 || n >= OUTFILE_TMP_MAX)
        return err_set(err, ERR_INVALID, "%.200s...: output path too long", path);
    return 0;
}

FILE *outfile_open(const char *path, char *tmp, err_t *err) {
    if (outfile_tmp_name(path, tmp, err)) return NULL;
    FILE *f = fopen(tmp, "wb");
    if (!f) err_set(err, ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return f;
}

/* fsync_fd_of: fsync the file or folder at p; 0, or the errno. A folder
 * that cannot be synced (EINVAL, EROFS) counts as synced. */
static int fsync_fd_of(const char *p, int dir) {
    int fd = open(p, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return errno;
    int e = fsync(fd) ? errno : 0;
    close(fd);
    return dir && (e == EINVAL || e == EROFS) ? 0 : e;
}

int outfile_commit(const char *tmp, const char *path, int rc, err_t *err) {
    if (!strcmp(tmp, path)) return rc;   /* written in place (not a regular file) */
    /* the destination: tmp less its ".tmp-PID" (path, or the file a
     * symlink path names) */
    char dest[OUTFILE_TMP_MAX];
    snprintf(dest, sizeof dest, "%s", tmp);
    char *suffix = strrchr(dest, '.');
    if (suffix && !strncmp(suffix, ".tmp-", 5)) *suffix = 0;
    /* the data on disk before the name points at it (a crash after the
     * rename must not leave an empty or partial file under the name), and
     * the folder synced after it (the rename itself survives a crash) */
    int e = rc ? 0 : fsync_fd_of(tmp, 0);
    if (e) rc = err_set(err, ERR_IO, "%s: write failed: fsync: %s", path, strerror(e));
    if (!rc && rename(tmp, dest) != 0)
        rc = err_set(err, ERR_IO, "%s: cannot rename the finished file into place: %s", path,
                     strerror(errno));
    if (rc) {
        unlink(tmp);
        return rc;
    }
    const char *slash = strrchr(dest, '/');
    char dir[OUTFILE_TMP_MAX];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else snprintf(dir, sizeof dir, "%.*s", slash == dest ? 1 : (int)(slash - dest), dest);
    if ((e = fsync_fd_of(dir, 1)))
        rc = err_set(err, ERR_IO, "%s: renamed into place, but its folder could not be synced: "
                     "%s", path, strerror(e));
    return rc;
}

int outfile_close(FILE *f, const char *tmp, const char *path, int rc, err_t *err) {
    int bad = ferror(f);
    int e = errno;
    if (fclose(f) != 0) bad = 1, e = errno;
    if (bad && !rc) rc = err_set(err, ERR_IO, "%s: write failed: %s", path, strerror(e));
    return outfile_commit(tmp, path, rc, err);
}
