/* jobs.h: private interface of the job runner (the files of jobs/): manifest ingest,
 * the engines a device worker runs, and the pipeline of jobs/runner.c. */
#ifndef SAM2AMG_JOBS_H
#define SAM2AMG_JOBS_H

#include <signal.h>
#include <stdint.h>

#include "amg.h"
#include "batch.h"
#include "check.h"
#include "gpumon.h"
#include "image.h"
#include "store.h"

#define JOBS_MAX_DEVICES 16
#define JOBS_MAX_SHARDS  1000000

/* run's exit status after SIGUSR1 or SIGTERM (a scheduler's warning before
 * the time limit, or preemption): the images in flight were released, the
 * database (or its checkpoint) holds everything finished; the submit script
 * requeues the task (jobs/slurm/). 75 is EX_TEMPFAIL of sysexits.h. */
#define JOBS_EXIT_REQUEUE 75

/* ---- ingest (jobs/ingest.c) ---- */
typedef struct jobs_ingest_stats {
    int64_t lines, added, present, bad;   /* bad: lines reported and skipped */
    int64_t other_shard;                  /* jobs_ingest_shard: not this shard's */
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
/* jobs_ingest_shard: jobs_ingest keeping only the images of shard k of n
 * (jobs_shard_of of the canonical path); the others are counted in
 * st->other_shard. n = 0 keeps every image. */
int jobs_ingest_shard(store_t *s, const char *src, int k, int n, jobs_ingest_stats *st,
                      err_t *err);

/* ---- engines (jobs/engine.c): what a device worker runs per image ---- */
/* jobs_stages: where the last process() went, seconds (see amg_batcher) */
typedef struct jobs_stages {
    double t_encode, t_decode, t_post;
} jobs_stages;

typedef struct jobs_engine {
    void *ctx;
    /* process: masks of one RGB image into res (amg_result_free'd by the
     * caller); pre: see input_size. Data errors return negative ERR_ codes. */
    int  (*process)(void *ctx, const image_t *img, const float *pre, amg_result *res,
                    err_t *err);
    /* input_size: S when the engine takes img preprocessed ahead of time
     * (image_preprocess of the whole image to (3,S,S), done by the decode
     * pool so that it overlaps the previous image's model work), passed
     * to process() as pre (which may still be NULL); 0: never */
    int    input_size;
    void (*destroy)(void *ctx);
    /* stages (optional): where the last process() spent its time: the
     * encoder (with the crops' preprocessing, device work included), the
     * decoder calls and the post-processing after them */
    void (*stages)(void *ctx, jobs_stages *t);
} jobs_engine;

typedef struct jobs_config {
    const char *model_path;     /* weights, or "test:" for the test model */
    const char *config;         /* model config name or file (NULL: guess) */
    amg_params  params;
    char        devices[JOBS_MAX_DEVICES][32];
    int         n_devices;
    int         threads;        /* BLAS threads per CPU device (0: all) */
    int         precision;      /* BACKEND_FP32 (0) or BACKEND_BF16 (cuda devices only) */
    int64_t     max_pixels;     /* image_load limit */
    int         retries;        /* transient failures retried this often */
    int         decode_threads; /* image decoding pool */
    int         prefetch;       /* decoded images waiting for a worker */
    int         batch_images;   /* images per writer commit, at most */
    double      lease_s;        /* images.lease_expires - claim time, seconds (informative) */
    int         quiet;
    int         verbose;        /* -v: per worker, batch sizing and halving */
    batch_limit gpu_limit;      /* --gpu-memory-limit (none: both 0) */
    const char *db_path;
    /* checkpoint (NULL: none): called on the claimer thread when
     * checkpoint_images images were finished (done or failed) or
     * checkpoint_s seconds went by since the last one (0: not by that
     * measure). A failure is reported on stderr and the run goes on. */
    int       (*checkpoint)(void *ctx, err_t *err);
    void       *checkpoint_ctx;
    int64_t     checkpoint_images;
    double      checkpoint_s;
} jobs_config;

/* jobs_parse_devices: --devices LIST (comma-separated cpu, cuda or cuda:N;
 * a name may repeat: one worker each, so cuda:0,cuda:0 runs two workers
 * with a model replica each on one GPU) into cfg->devices/n_devices, each
 * as "cpu" or "cuda:N". 0, or ERR_INVALID naming the bad item (empty, not
 * a device, over JOBS_MAX_DEVICES workers). */
int jobs_parse_devices(const char *list, jobs_config *cfg, err_t *err);

/* jobs_workers_per_gpu: each cuda item of cfg->devices repeated per_gpu
 * times in place (cpu items once); 0, or ERR_INVALID when that makes more
 * than JOBS_MAX_DEVICES workers (cfg unchanged then). */
int jobs_workers_per_gpu(jobs_config *cfg, int per_gpu, err_t *err);

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
    int     storage_gone;       /* the images' storage went away: stopped, nothing failed for it */
    /* the GPUs' busy share as the driver measured it (gpumon.h), from the
     * workers' start to their end; n_gpus 0 with gpu_note saying why when
     * the run has GPUs but they could not be measured */
    int         n_gpus;
    gpumon_stat gpus[GPUMON_MAX];
    char        gpu_note[512];
} jobs_stats;

/* jobs_run: process every pending image of the store with run_id. The
 * claimer runs on the calling thread; see the DESIGN comment of runner.c.
 * Returns 0, or a negative ERR_ for a run-level error (err says which). */
int jobs_run(store_t *claim, store_t *writer, int64_t run_id, const jobs_config *cfg,
             volatile sig_atomic_t *stop, jobs_stats *st, err_t *err);

/* jobs_lock_db: the run lock of db (an flock on DB.lock, holding the pid):
 * one run or merge per database. Returns the fd (close it to unlock), or
 * -1 with "sam2amg CMD: ..." printed. */
int jobs_lock_db(const char *cmd, const char *db);

/* jobs_params_same: whether runs.params texts a and b make the same
 * records: equal but for points_per_batch, which only sets how prompts are
 * batched (auto on a GPU, 64 on the CPU, halved on out-of-memory), so the
 * shards or resumes of one run on GPU and CPU nodes are one run. Every other
 * member, precision included, must match. */
int jobs_params_same(const char *a, const char *b);
/* jobs_load_image: image_load with the loader's fault hook
 * (SAM2AMG_FAULT_IMAGE=N: the N-th load fails with ERR_IO). */
int jobs_load_image(image_t *img, const char *path, int64_t max_pixels, err_t *err);

/* sha256 of a file, hex (65 bytes). ERR_IO when unreadable. */
int jobs_sha256_file(const char *path, char hex[65], err_t *err);

/* ---- shards and checkpoints (jobs/shard.c; see its DESIGN comment) ---- */
/* jobs_shard_hash: FNV-1a 64 of bytes; jobs_shard_of: its shard of n. */
uint64_t jobs_shard_hash(const char *bytes, size_t n);
int      jobs_shard_of(const char *bytes, size_t n, int n_shards);
/* jobs_shard_register_sql: SQL shard_of(images.path, n) on db. */
int      jobs_shard_register_sql(sqlite3 *db);
/* jobs_shard_parse: "K/N" with 0 <= K < N <= JOBS_MAX_SHARDS; 0 or -1. */
int      jobs_shard_parse(const char *s, int *k, int *n);
/* jobs_shard_from_env: the shard of this task from SLURM_ARRAY_TASK_ID and
 * SLURM_ARRAY_TASK_COUNT (with _MIN and _STEP when set), else from
 * JOB_COMPLETION_INDEX when shard_count > 0. Returns 1 with *k, *n and a
 * sentence for the user in why, 0 when none is set, -1 with the reason in
 * why when they do not name a shard. */
int      jobs_shard_from_env(int shard_count, int *k, int *n, char *why, size_t cap);
/* jobs_shard_get: the database's shard row: 1 found, 0 none, < 0 error.
 * seq may be NULL. */
int      jobs_shard_get(store_t *s, int *k, int *n, int64_t *seq, err_t *err);
/* jobs_shard_set: record shard k of n (kept when one is recorded) and
 * runs.shard of run_id (> 0). */
int      jobs_shard_set(store_t *s, int k, int n, int64_t run_id, err_t *err);
/* jobs_network_fs: the name of the network filesystem that path (or its
 * folder, when path does not exist) is on, NULL for a local one.
 * SAM2AMG_ASSUME_NETWORK_FS=NAME (tests) makes every path one. */
const char *jobs_network_fs(const char *path);
/* jobs_local_path: the working copy of db in local_dir, malloc'd; NULL
 * when out of memory. */
char    *jobs_local_path(const char *local_dir, const char *db);
/* jobs_checkpoint_write: a consistent copy of src's database, fsynced and
 * renamed over dest (see shard.c); bumps shard.checkpoint_seq first. */
int      jobs_checkpoint_write(store_t *src, const char *dest, err_t *err);
/* jobs_checkpoint_restore: the working copy at local from the checkpoint
 * ckpt (*restored = 1), or the working copy already at local when a run
 * whose last checkpoint failed kept it (jobs_local_keep) and it descends
 * from ckpt and is at least as new (*restored = 2), or no working copy when ckpt does not
 * exist (*restored = 0: a fresh start); ERR_IO when ckpt cannot be looked
 * at (any error but ENOENT: never a fresh start over a good checkpoint). */
int      jobs_checkpoint_restore(const char *ckpt, const char *local, int *restored, err_t *err);
/* jobs_local_keep: mark the working copy local as kept (its last
 * checkpoint failed): the next run goes on from it (see restore). */
void     jobs_local_keep(const char *local);
/* jobs_local_remove: delete a working copy and its -wal/-shm/-journal/-kept. */
void     jobs_local_remove(const char *local);
/* jobs_test_pause: sleep $SAM2AMG_TEST_PAUSE_<what> seconds when set. */
void     jobs_test_pause(const char *what);

#endif
