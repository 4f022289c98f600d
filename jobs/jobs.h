/* jobs.h: private interface of the job runner (the files of jobs/): manifest ingest,
 * the engines a device worker runs, and the pipeline of jobs/runner.c. */
#ifndef SAM2AMG_JOBS_H
#define SAM2AMG_JOBS_H

#include <signal.h>
#include <stdint.h>

#include "amg.h"
#include "check.h"
#include "image.h"
#include "store.h"

#define JOBS_MAX_DEVICES 16

/* ---- ingest (jobs/ingest.c) ---- */
typedef struct jobs_ingest_stats {
    int64_t lines, added, present, bad;   /* bad: lines reported and skipped */
} jobs_ingest_stats;

/* jobs_ingest: add the images named by src to the store, inside the
 * caller's ingest transaction (store_ingest_begin .. _end or _rollback:
 * cmd_jobs.c ingests all manifests of one command in one transaction, all
 * or nothing). src: "-" (stdin, a list of paths), a directory (walked
 * recursively; images by extension or magic bytes), a .csv (a "path"
 * column) or .jsonl ({"path": ...} per line), or any other file (one path
 * per line); a UTF-8 BOM at the start is skipped. Each path is stored in
 * its canonical form (see ingest.c: realpath for existing files, a lexical
 * normalization against the working directory for missing ones), so one
 * file is one image whatever its spelling. Bad lines (empty, NUL, too
 * long, no path column, invalid JSON or a lone surrogate) are reported on
 * stderr with their line number and skipped. ERR_IO when src cannot be
 * read at all (missing, a FIFO that fails, a directory that cannot be
 * opened), ERR_INVALID for a CSV without a "path" column. */
int jobs_ingest(store_t *s, const char *src, jobs_ingest_stats *st, err_t *err);

/* ---- engines (jobs/engine.c): what a device worker runs per image ---- */
typedef struct jobs_engine {
    void *ctx;
    /* process: masks of one RGB image into res (amg_result_free'd by the
     * caller). Data errors return negative ERR_ codes. */
    int  (*process)(void *ctx, const image_t *img, amg_result *res, err_t *err);
    void (*destroy)(void *ctx);
} jobs_engine;

typedef struct jobs_config {
    const char *model_path;     /* weights, or "test:" for the test model */
    const char *config;         /* model config name or file (NULL: guess) */
    amg_params  params;
    char        devices[JOBS_MAX_DEVICES][32];
    int         n_devices;
    int         threads;        /* BLAS threads per CPU device (0: all) */
    int64_t     max_pixels;     /* image_load limit */
    int         retries;        /* transient failures retried this often */
    int         decode_threads; /* image decoding pool */
    int         prefetch;       /* decoded images waiting for a worker */
    int         batch_images;   /* images per writer commit, at most */
    double      lease_s;        /* images.lease_expires - claim time, seconds (informative) */
    int         quiet;
    const char *db_path;
} jobs_config;

/* jobs_engine_create: the engine for one device ("cpu", "cuda:N"); the
 * test model ("test:") is a small deterministic stand-in network for the
 * runner's tests (see engine.c). */
int jobs_engine_create(const jobs_config *cfg, const char *device, volatile sig_atomic_t *stop,
                       jobs_engine *out, err_t *err);

/* ---- the pipeline (jobs/runner.c) ---- */
typedef struct jobs_stats {
    int64_t done, failed, retried, released, masks;
    int     fatal;              /* a run-level error stopped the run */
    int     interrupted;        /* SIGINT/SIGTERM */
} jobs_stats;

/* jobs_run: process every pending image of the store with run_id. The
 * claimer runs on the calling thread; see the DESIGN comment of runner.c.
 * Returns 0, or a negative ERR_ for a run-level error (err says which). */
int jobs_run(store_t *claim, store_t *writer, int64_t run_id, const jobs_config *cfg,
             volatile sig_atomic_t *stop, jobs_stats *st, err_t *err);

/* jobs_load_image: image_load with the loader's fault hook
 * (SAM2AMG_FAULT_IMAGE=N: the N-th load fails with ERR_IO). */
int jobs_load_image(image_t *img, const char *path, int64_t max_pixels, err_t *err);

/* sha256 of a file, hex (65 bytes). ERR_IO when unreadable. */
int jobs_sha256_file(const char *path, char hex[65], err_t *err);

#endif
