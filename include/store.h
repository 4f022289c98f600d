/* store.h: the SQLite job database of `sam2amg run` (schema in schema/NNN_*.sql).
 *
 * A store_t is one connection, used by one thread at a time. The runner
 * opens two: the claimer's (reclaim, claim) and the writer's (results); WAL
 * mode lets readers (status, sql, export) run beside a writer, and a busy
 * timeout absorbs the short write locks of the other connection.
 *
 * Guarantees: an image's masks and its status change are written in one
 * transaction (a batch of images commits or rolls back whole); a result is
 * accepted only from the lease owner of the image; UNIQUE(image_id, idx)
 * makes a second set of masks for an image impossible. mask_boxes, the
 * R*Tree on the mask boxes, is derived from masks and may lag behind them
 * until store_boxes_catch_up runs (end and start of a run, before `sql`).
 *
 * Fault injection (SQLite faultsimStep style): store_fault_arm(n) makes the
 * n-th following store step (each statement execution that writes) fail
 * with ERR_IO "injected fault", for the fault tests; store_fault_arm_image(n)
 * makes the n-th store_put_result fail as a data error of its image.
 */
#ifndef SAM2AMG_STORE_H
#define SAM2AMG_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "amg.h"
#include "check.h"

typedef struct store store_t;
typedef struct sqlite3 sqlite3;

enum { STORE_READONLY = 1, STORE_CREATE = 2 };
enum { IMAGE_STATUS_PENDING = 0, IMAGE_STATUS_RUNNING, IMAGE_STATUS_DONE, IMAGE_STATUS_FAILED };

/* store_open: open (STORE_CREATE: create if missing) the database at path,
 * set WAL, busy_timeout, foreign keys, apply the pending migrations of
 * schema/ in one transaction. ERR_FORMAT when the file is not a database or
 * is corrupt, or has a newer schema than this program; ERR_IO when it cannot
 * be opened; ERR_BUSY when locked past the timeout. *out NULL on error.
 * Environment hook for tests: SAM2AMG_MAX_PAGES=N sets PRAGMA
 * max_page_count (a full disk). */
int  store_open(store_t **out, const char *path, int flags, err_t *err);
void store_close(store_t *s);
/* store_db: the connection (for queries of the commands and tests). */
sqlite3 *store_db(store_t *s);
/* store_schema_version: the PRAGMA user_version this program writes. */
int  store_schema_version(void);

/* ---- runs ---- */
typedef struct store_run_info {
    char params[4096];        /* AMG params JSON */
    char model_path[4096];    /* the checkpoint file, absolute (PATH_MAX), or "test:" */
    char model_sha256[65];    /* hex */
    char model_name[4096];    /* --model as given (path, repo id, name); "": model_path */
    char config[4096];        /* built-in name, or a file's absolute path */
    char devices[256];
} store_run_info;

/* store_run_last: the newest run's info; returns 1 found, 0 no run yet,
 * negative on error. */
int store_run_last(store_t *s, store_run_info *info, err_t *err);
/* store_run_begin: insert a run row (program version, start time). */
int store_run_begin(store_t *s, const store_run_info *info, int64_t *run_id, err_t *err);
/* store_run_end: set finished_at and the exit status. */
int store_run_end(store_t *s, int64_t run_id, int exit_status, err_t *err);
/* store_run_gpu: the run's GPU device's busy share as measured
 * (schema/006_gpu_busy.sql; include/gpumon.h). */
int store_run_gpu(store_t *s, int64_t run_id, const char *device, double busy, int64_t samples,
                  double seconds, err_t *err);

/* ---- paths ---- */
/* store_path_escape: bytes (n) -> the images.path text (see schema):
 * bytes outside valid UTF-8 as \xHH, backslashes as \\, the rest as is.
 * out needs 4*n+1 bytes.
 * Returns the text length. */
size_t store_path_escape(const char *bytes, size_t n, char *out);
/* store_path_unescape: the inverse, in place; returns the byte length. */
size_t store_path_unescape(char *s);

/* ---- ingest ---- */
/* store_ingest_begin / _add / _end / _rollback: add image paths (raw
 * bytes, n) as pending, all inside one transaction: _end commits every
 * path added since _begin, _rollback none of them (all or nothing: one
 * command's manifests). _add sets *added to 1 for a new path, 0 for one
 * already present. */
int  store_ingest_begin(store_t *s, err_t *err);
int  store_ingest_add(store_t *s, const char *bytes, size_t n, int *added, err_t *err);
int  store_ingest_end(store_t *s, err_t *err);
void store_ingest_rollback(store_t *s);

/* ---- leases ---- */
/* Attempts: images.attempts counts the times a worker started on an image
 * (store_start, just before the generator runs) or a failure was recorded;
 * a lease alone (claimed, queued, decoded) is not an attempt, so a run
 * killed from outside does not use up the attempts of the images that
 * merely waited in its queues.
 *
 * store_reclaim: after taking the run lock, every 'running' image is
 * abandoned (its process is gone): back to 'pending', or 'failed' when it
 * has used max_attempts attempts (an image that kills the process every
 * time it is processed). Counts into *reclaimed, *failed. */
int store_reclaim(store_t *s, int max_attempts, int64_t run_id, int64_t *reclaimed,
                  int64_t *failed, err_t *err);

typedef struct store_job {
    int64_t id;
    int     attempts;         /* attempts before this lease */
    char   *path;             /* file name bytes (NUL-terminated), malloc'd */
} store_job;

/* store_claim: lease up to n pending images (lowest id first) to owner in
 * one transaction: status 'running', lease_owner, lease_expires = now +
 * lease_s (informative only: nothing reads it; the run lock guards leases,
 * see store.c), attempts unchanged.
 * Fills jobs (n) and *got; the caller frees each jobs[i].path. */
int store_claim(store_t *s, const char *owner, double lease_s, int n, store_job *jobs,
                int *got, err_t *err);

/* ---- results (the writer) ---- */
typedef struct store_timing {
    double t_load, t_generate;   /* seconds */
    /* the generator's stages (schema/005_stages.sql), seconds; < 0: not
     * measured, stored NULL */
    double t_encode, t_decode, t_post, t_write;
    int    worker;               /* index in runs.devices; < 0: stored NULL */
} store_timing;

/* store_batch_begin / _commit / _rollback: the writer's transaction around
 * several images. */
int  store_batch_begin(store_t *s, err_t *err);
int  store_batch_commit(store_t *s, err_t *err);
void store_batch_rollback(store_t *s);
/* store_image_begin / _end / _rollback: a savepoint around one image's
 * writes inside a batch. _rollback undoes that image's rows only (and
 * ends the savepoint); the batch stays open. */
int  store_image_begin(store_t *s, err_t *err);
int  store_image_end(store_t *s, err_t *err);
int  store_image_rollback(store_t *s, err_t *err);
/* store_put_result: inside a batch: insert res's records as image_id's
 * masks (idx = record order) and mark the image done by run_id. The boxes
 * are not indexed here: mask_boxes is caught up later, in bulk
 * (store_boxes_catch_up), off the writer's path. Returns 1 when written, 0 when the image is not
 * leased to owner any more (nothing written), negative on error. Errors
 * are of two kinds: ERR_INVALID is a data error of this image (SQLite
 * refused one of its values: a constraint, a type, a size), which the
 * caller undoes with store_image_rollback and records as that image's
 * failure; anything else (disk full, corrupt, busy, out of memory) is
 * run-level: the batch must be rolled back. A predicted_iou or
 * stability_score that is not a finite number (a 0/0 stability score) is
 * stored as NULL. */
int store_put_result(store_t *s, int64_t run_id, int64_t image_id, const char *owner,
                     const amg_result *res, const store_timing *t, err_t *err);
/* store_start: inside a batch: count an attempt of image_id (the worker
 * is about to run the generator on it). 1 done, 0 lease lost, or < 0. */
int store_start(store_t *s, int64_t image_id, const char *owner, err_t *err);
/* store_put_failure: inside a batch: record reason for image_id and count
 * the attempt unless store_start did (counted); permanent or attempts >=
 * max_attempts -> 'failed' (returns 2), else back to 'pending' for a retry
 * (returns 1); 0 when the lease is lost; < 0 on error (roll back). */
int store_put_failure(store_t *s, int64_t run_id, int64_t image_id, const char *owner,
                      const char *reason, int permanent, int counted, int max_attempts,
                      err_t *err);
/* store_release: give back a lease, uncounting the attempt store_start
 * counted (counted = 1) (stopped by a signal). Same return convention as
 * store_put_result. */
int store_release(store_t *s, int64_t image_id, const char *owner, int counted, err_t *err);

/* ---- the derived R*Tree ---- */
/* store_boxes_catch_up: bring mask_boxes (a derived index of masks) up to
 * date: insert the box (x0 = bbox_x, x1 = bbox_x + bbox_w, y0 = bbox_y,
 * y1 = bbox_y + bbox_h) of every mask whose id is above the newest box's id
 * (mask ids only grow: the store never deletes masks), in id order, in
 * transactions of at most chunk rows (<= 0: 50,000) so that a long
 * catch-up never holds the write lock for long. Must not be called inside
 * a transaction. *added (may be NULL) counts the boxes inserted, also on
 * error (the committed chunks stay). 0, or a negative ERR_ code: ERR_BUSY
 * when locked past the busy timeout, ERR_IO when read-only or full. */
int store_boxes_catch_up(store_t *s, int64_t chunk, int64_t *added, err_t *err);

/* ---- reading ---- */
/* store_counts: images per status (indexed by IMAGE_STATUS_*) and masks. */
int store_counts(store_t *s, int64_t counts[4], int64_t *masks, err_t *err);
/* store_load_result: an image's masks as an amg_result (records in idx
 * order; width/height from images; a NULL score is NaN). Free with
 * store_result_free. */
int  store_load_result(store_t *s, int64_t image_id, amg_result *res, err_t *err);
void store_result_free(amg_result *res);

/* ---- RLE text ---- */
/* store_rle_json: {"size":[h,w],"counts":"..."} into out (cap bytes);
 * returns the length, or -1 when it does not fit. */
int store_rle_json(char *out, size_t cap, int h, int w, const char *counts);

/* ---- fault injection ---- */
/* store_fault_arm: the n-th following write step fails (n >= 1); 0 disarms.
 * Also armed from the environment by store_open: SAM2AMG_FAULT_STORE=N. */
void store_fault_arm(int64_t n);
/* store_fault_arm_image: the n-th following store_put_result fails with a
 * data error of its image (ERR_INVALID), after inserting its masks; 0
 * disarms. Environment: SAM2AMG_FAULT_STORE_IMAGE=N. */
void store_fault_arm_image(int64_t n);

#endif
