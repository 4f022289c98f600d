/* check.h: the two error classes of sam2amg.
 *
 * A broken invariant (a bug, or a library call that must not fail) aborts at
 * once with the call text, file, line and function: CHECK and its one-line
 * cousins. A data error (bad image, bad checkpoint, busy database, out of
 * device memory for one image) is not a bug: functions return an int rc
 * (0 = ok, negative = an ERR_ class) and fill a caller-owned err_t with a
 * one-line message naming the thing and the reason. Workers never exit().
 */
#ifndef SAM2AMG_CHECK_H
#define SAM2AMG_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "sam2amg: internal error: %s failed at %s:%d (%s)\n", \
                    #cond, __FILE__, __LINE__, __func__);                    \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* CHECK_MSG adds a formatted reason to the abort message. */
#define CHECK_MSG(cond, ...)                                                 \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "sam2amg: internal error: %s failed at %s:%d (%s): ", \
                    #cond, __FILE__, __LINE__, __func__);                    \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* Error classes returned as negative ints. */
enum {
    ERR_OK      = 0,
    ERR_IO      = -1,   /* file missing, unreadable, disk full */
    ERR_FORMAT  = -2,   /* corrupt or unexpected file content */
    ERR_INVALID = -3,   /* bad parameter, flag or manifest line */
    ERR_NOMEM   = -4,   /* host or device allocation failed */
    ERR_TOO_BIG = -5,   /* image over the pixel limit, tensor too large */
    ERR_BUSY    = -6,   /* database locked by another process */
    ERR_BACKEND = -7,   /* device error (CUDA, cuBLAS) for this job */
    ERR_INTERRUPTED = -8 /* stopped by a signal */
};

/* err_t: a caller-owned one-line message buffer. */
typedef struct err_t {
    char msg[512];
} err_t;

/* err_set formats msg into e (if e is not NULL) and returns rc, so a data
 * error is one line: `return err_set(e, ERR_IO, "%s: %s", path, strerror(errno));`
 * Control characters that came in with the user's data (a newline in a JSON
 * key or a file name) are written as '?', so the message stays one line. */
static inline int err_set(err_t *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int err_set(err_t *e, int rc, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        for (char *c = e->msg; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    }
    return rc;
}

#endif
