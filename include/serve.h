/* serve.h: `sam2amg serve DB`, a local review page for an annotation run.
 *
 * The HTTP server (libmicrohttpd) is a thin shell around serve_handle, which
 * turns one request (a path and its query arguments, already unescaped)
 * into one response: the benchmark (bench/bench_serve.c) calls it directly
 * to measure the server time of a page without sockets.
 */
#ifndef SAM2AMG_SERVE_H
#define SAM2AMG_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "check.h"

typedef struct serve serve_t;

/* One response: HTTP status, content type (static string) and body. */
typedef struct serve_resp {
    int         status;   /* 200, 400, 404, 405, 500 */
    const char *ctype;    /* e.g. "text/html; charset=utf-8" */
    char       *body;     /* malloc'd, owned by the response */
    size_t      len;      /* bytes of body */
    int         no_store; /* 1: the page changes while a run goes (no caching) */
} serve_resp;

/* serve_open: a reader of the database at path (opened read-only: SQLite
 * SQLITE_OPEN_READONLY; nothing is ever written). Starts libvips for the
 * thumbnails. ERR_IO / ERR_FORMAT (not a sam2amg database) with err set;
 * *out NULL on error. */
int  serve_open(serve_t **out, const char *path, err_t *err);
/* serve_free: close every connection (call after the server threads have
 * stopped). NULL is fine. */
void serve_free(serve_t *sv);

/* serve_handle: the response to GET `url` with nargs query arguments
 * (keys[i] = vals[i]; vals[i] may be NULL for "?key"). Safe to call from
 * several threads at once: each thread reads through its own connection.
 * Fills *r (free it with serve_resp_free); returns r->status. */
int  serve_handle(serve_t *sv, const char *url, int nargs, const char *const *keys,
                  const char *const *vals, serve_resp *r);
void serve_resp_free(serve_resp *r);

/* cmd_serve: `sam2amg serve DB [--host H] [--port P]` (exit status as in
 * cli.h); runs until SIGINT or SIGTERM. */
int  cmd_serve(int argc, char **argv);

#endif
