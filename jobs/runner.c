/* runner.c: the pipeline of `sam2amg run`: claim -> decode -> generate ->
 * write, with leases so that a killed run loses nothing finished.
 *
 * DESIGN
 *
 * Threads (all started by jobs_run, all joined before it returns):
 *   - claimer (the calling thread): leases pending images from the store in
 *     small chunks (one transaction each: status 'running', lease_owner,
 *     lease_expires, the last for information only: the run lock, not an
 *     expiry, guards leases) and pushes them onto load_q. It also
 *     prints the progress line.
 *   - decoders (cfg->decode_threads, a bounded pool): pop load_q, decode
 *     the file with libvips (jobs_load_image, pixel limit), preprocess it
 *     for the model when the engines ask for it (input_size: the resize
 *     and normalization of the whole image, into a buffer of pre_q, a
 *     fixed pool), so it overlaps the previous image's model work, and
 *     push the image onto ready_q, the prefetch queue (cfg->prefetch
 *     slots), or a failure onto write_q.
 *   - one worker per device (--devices): owns its engine (backend, model,
 *     amg_t arena), pops ready_q, has the writer count the attempt
 *     (store_start, waiting for its commit), runs the generator and pushes
 *     the result onto write_q. Engines are created before anything is claimed, so a bad
 *     model leases nothing.
 *   - the writer: the only thread that writes results. It pops write_q and
 *     commits several images per transaction (up to cfg->batch_images, or
 *     what is queued): each image's masks and status change are in the
 *     same transaction, so an image is 'done' if and only if all its masks
 *     are in the database. The writer does not touch mask_boxes: an R*Tree
 *     insert costs more than the mask row itself, so the R*Tree is a
 *     derived index, caught up in bulk (store_boxes_catch_up) by cmd_jobs.c
 *     after the writer's last commit, at the start of the next run (after a
 *     kill -9) and before `sam2amg sql`; during a run it may lag.
 *
 * Queues are bounded FIFOs (mutex + two condition variables); a queue is
 * closed by its last producer, and a consumer exits on an empty closed
 * queue. Nothing is ordered across images: results commit in completion
 * order; the masks of one image keep the generator's order (masks.idx).
 *
 * Completion guarantees:
 *   - a result is written only while its lease is held by this process
 *     (UPDATE ... WHERE lease_owner = me); UNIQUE(image_id, idx) makes a
 *     second set of masks impossible;
 *   - kill -9 at any moment leaves committed images done and the others
 *     'running' with this process's lease: the next run (which holds the
 *     run lock, so no live owner exists) reclaims them: back to 'pending',
 *     or 'failed' once they used up their attempts (an image that kills the
 *     process every time cannot stall the queue forever). Only the images a
 *     worker had started on are charged an attempt, not those that merely
 *     waited in the queues;
 *   - a data error of one image (missing, truncated, too big, not an image)
 *     fails that image with its reason at once; a transient one (out of
 *     memory, device error) is retried until cfg->retries; the run goes on;
 *   - so does a data error while storing one image's result (SQLite
 *     refuses one of its values, e.g. a constraint): each image of a batch
 *     is a savepoint, so the writer undoes that image's rows alone, fails
 *     it with the real reason and commits the rest of the batch. Only
 *     run-level causes (disk full, corrupt database, lock timeout, out of
 *     memory) stop the run;
 *   - SIGINT/SIGTERM/SIGUSR1: the claimer stops claiming, workers stop at
 *     the next decoder batch, unfinished images are released (back to
 *     'pending', the attempt not counted), the writer commits what
 *     finished, then exit 130 (SIGINT) or 75 (SIGTERM, SIGUSR1: a
 *     scheduler's preemption; cmd_jobs.c writes the last checkpoint first);
 *   - checkpoints (cfg->checkpoint, --local-dir): the claimer calls the
 *     hook between claims, every cfg->checkpoint_images finished images or
 *     cfg->checkpoint_s seconds; it copies what the writer has committed
 *     (a consistent snapshot, see shard.c) while the writer goes on;
 *   - a run-level write error (disk full, database corrupt) stops the run:
 *     the failed batch rolls back whole and its images stay leased, to be
 *     reclaimed by the next run;
 *   - a thread that cannot start (a worker, its CPU backend's pool, a
 *     decoder, the writer: pids.max, RLIMIT_NPROC) stops the run before
 *     the first claim: "cannot start thread: <strerror>", exit 1, the
 *     started threads joined, no image leased or charged an attempt.
 * Concurrency between processes: a second `run` on the same database is
 * refused (cmd_jobs.c holds an flock on DB.lock); readers (status, sql,
 * export) work beside a run thanks to WAL.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jobs.h"
#include "thread.h"

/* ---- a bounded FIFO of pointers ---- */
typedef struct queue {
    pthread_mutex_t mu;
    pthread_cond_t  not_empty, not_full;
    void          **items;       /* ring (cap) */
    int             cap, head, count;
    int             producers;   /* open producers; 0 = closed */
} queue_t;

/* queue_init: 0, or -1 when its ring cannot be allocated (q is then
 * zeroed, and queue_free of it does nothing) */
static int queue_init(queue_t *q, int cap, int producers) {
    memset(q, 0, sizeof *q);
    q->items = calloc((size_t)cap, sizeof *q->items);
    if (!q->items) return -1;
    CHECK(pthread_mutex_init(&q->mu, NULL) == 0);
    CHECK(pthread_cond_init(&q->not_empty, NULL) == 0);
    CHECK(pthread_cond_init(&q->not_full, NULL) == 0);
    q->cap = cap;
    q->producers = producers;
    return 0;
}

static void queue_free(queue_t *q) {
    if (!q->items) return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q->items);
}

static void queue_push(queue_t *q, void *item) {
    pthread_mutex_lock(&q->mu);
    while (q->count == q->cap) pthread_cond_wait(&q->not_full, &q->mu);
    q->items[(q->head + q->count) % q->cap] = item;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

/* queue_pop: the next item; NULL when the queue is empty and closed. With
 * nowait, NULL also when it is merely empty. */
static void *queue_pop(queue_t *q, int nowait) {
    pthread_mutex_lock(&q->mu);
    while (q->count == 0 && q->producers > 0 && !nowait) pthread_cond_wait(&q->not_empty, &q->mu);
    void *item = NULL;
    if (q->count > 0) {
        item = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mu);
    return item;
}

static int queue_space(queue_t *q) {
    pthread_mutex_lock(&q->mu);
    int n = q->cap - q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}

/* queue_done: one producer finished; the last one closes the queue. */
static void queue_done(queue_t *q) {
    pthread_mutex_lock(&q->mu);
    q->producers--;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

/* ---- the items that travel through the queues ---- */
enum { ITEM_RESULT, ITEM_FAIL, ITEM_RELEASE, ITEM_START };

typedef struct item {
    store_job  job;
    int        kind;
    int        permanent;     /* ITEM_FAIL: no retry */
    int        counted;       /* store_start counted this attempt */
    int        start_ok;      /* ITEM_START: the writer committed it */
    sem_t      started;       /* ITEM_START: posted by the writer */
    char       reason[512];   /* ITEM_FAIL */
    image_t    img;           /* decoded, between decoder and worker */
    float     *pre;           /* img preprocessed (3,S,S) from r->pre_q, or NULL */
    double     t_pre;         /* seconds the decoder spent preprocessing */
    amg_result res;           /* ITEM_RESULT */
    store_timing t;
} item_t;

typedef struct runner {
    const jobs_config *cfg;
    store_t           *writer_store;
    int64_t            run_id;
    char               owner[128];
    volatile sig_atomic_t *stop;
    queue_t            load_q, ready_q, write_q;
    _Atomic int64_t    in_flight;            /* claimed, not yet written */
    _Atomic int64_t    done, failed, retried, released, masks;
    atomic_int         fatal;                /* run-level error: stop */
    err_t              fatal_err;
    pthread_mutex_t    mu;                   /* fatal_err, start barrier */
    pthread_cond_t     started_cv;
    int                started, start_failed;
    jobs_engine        engines[JOBS_MAX_DEVICES];
    /* preprocessed inputs: pre_n buffers of (3,pre_S,pre_S) floats made
     * at start, passed decoder -> worker with the image and back through
     * pre_q (a free list), so none is allocated per image */
    int                pre_S, pre_n;
    queue_t            pre_q;
    /* the images' storage (see load_failure): not fatal, the writer goes on */
    atomic_int         storage_gone;
    atomic_int         io_streak;            /* load failures in a row, see load_failure */
    err_t              storage_err;          /* under mu */
    char               last_dir[4096];       /* folder of the last image loaded; under mu */
} runner_t;

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int stopping(runner_t *r) {
    return *r->stop || atomic_load(&r->fatal) || atomic_load(&r->storage_gone);
}

static void set_fatal(runner_t *r, const err_t *e) {
    pthread_mutex_lock(&r->mu);
    if (!atomic_load(&r->fatal)) r->fatal_err = *e;
    atomic_store(&r->fatal, 1);
    pthread_mutex_unlock(&r->mu);
}

static void item_release(item_t *it) {
    it->kind = ITEM_RELEASE;
    image_free(&it->img);
}

/* permanent_error: data errors that a retry cannot fix. */
static int permanent_error(int rc) {
    return rc == ERR_FORMAT || rc == ERR_TOO_BIG || rc == ERR_INVALID || rc == ERR_IO;
}

/* ---- "this file is bad" or "the storage is gone" ----
 * An image's ERR_IO fails that image for good only when the file itself is
 * at fault. When the images' volume goes away mid-run (an NFS or Lustre
 * unmount, a pulled USB disk), failing every remaining image would turn a
 * run-level condition into mass data loss; instead the image is released
 * (back to 'pending', attempt not counted) and the run stops with
 * r->storage_err (exit 75: run again when the storage is back).
 * load_failure probes the path again after the loader failed (the loader's
 * errno is long gone by then) and decides:
 *   - ENOTCONN, ESTALE, EIO, ENODEV, ETIMEDOUT, EHOSTDOWN on the file or its
 *     folder: the storage is gone;
 *   - the file or its folder is missing, and the nearest folder above it
 *     that exists is empty (what an unmounted mount point looks like): gone;
 *   - the folder is missing and so is the folder of the last image this run
 *     loaded (a volume renamed or unmounted mid-run): gone;
 *   - any other missing file or folder, not a regular file, unreadable
 *     (EACCES), a decode error: that image fails;
 *   - the file is there and opens, yet loading it failed with ERR_IO (a read
 *     error): that image fails, and STORAGE_STREAK of those in a row, with no
 *     image loaded in between, are a storage that is gone. */
#define STORAGE_STREAK 8
enum { LOAD_FAIL, LOAD_GONE };

static int storage_errno(int e) {
    return e == ENOTCONN || e == ESTALE || e == EIO || e == ENODEV || e == ETIMEDOUT ||
           e == EHOSTDOWN;
}

/* folder_of: path's folder into dir ("/" for "/x", "." for "x"). */
static void folder_of(const char *path, char *dir, size_t cap) {
    const char *sl = strrchr(path, '/');
    size_t n = !sl ? 1 : sl == path ? 1 : (size_t)(sl - path);
    if (n >= cap) n = cap - 1;
    memmove(dir, sl ? path : ".", n);   /* dir may be path */
    dir[n] = 0;
}

/* empty_dir: 1 when dir is a folder with no entry but . and .. */
static int empty_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

/* load_loaded: an image loaded: remember its folder, end any streak. */
static void load_loaded(runner_t *r, const char *path) {
    atomic_store(&r->io_streak, 0);
    pthread_mutex_lock(&r->mu);
    folder_of(path, r->last_dir, sizeof r->last_dir);
    pthread_mutex_unlock(&r->mu);
}

static int load_gone(runner_t *r, const char *what, const char *why) {
    pthread_mutex_lock(&r->mu);
    if (!atomic_load(&r->storage_gone))
        err_set(&r->storage_err, ERR_IO, "%.200s: %.100s: the images' storage is not reachable; "
                "stopped without failing any image, run again when it is back", what, why);
    atomic_store(&r->storage_gone, 1);
    pthread_mutex_unlock(&r->mu);
    return LOAD_GONE;
}

/* load_failure: what a failed load of path (rc) means, see above. */
static int load_failure(runner_t *r, int rc, const char *path) {
    if (rc != ERR_IO) return LOAD_FAIL;
    char dir[4096], up[4096];
    folder_of(path, dir, sizeof dir);
    struct stat sb;
    int dir_ok = stat(dir, &sb) == 0, e = errno;
    if (!dir_ok && storage_errno(e)) return load_gone(r, dir, strerror(e));
    if (dir_ok && stat(path, &sb) != 0) {
        e = errno;
        if (storage_errno(e)) return load_gone(r, path, strerror(e));
        if (e == ENOENT && empty_dir(dir))
            return load_gone(r, dir, "an empty folder (an unmounted mount point?)");
        return LOAD_FAIL;
    }
    if (!dir_ok) {
        if (e != ENOENT && e != ENOTDIR) return LOAD_FAIL;   /* EACCES, ELOOP: this path */
        snprintf(up, sizeof up, "%s", dir);
        while (strcmp(up, "/") && strcmp(up, ".")) {   /* the nearest folder that exists */
            folder_of(up, up, sizeof up);
            if (stat(up, &sb) == 0) {
                if (S_ISDIR(sb.st_mode) && empty_dir(up))
                    return load_gone(r, up, "an empty folder (an unmounted mount point?)");
                break;
            }
        }
        pthread_mutex_lock(&r->mu);
        snprintf(up, sizeof up, "%s", r->last_dir);
        pthread_mutex_unlock(&r->mu);
        if (up[0] && stat(up, &sb) != 0) return load_gone(r, up, strerror(errno));
        return LOAD_FAIL;
    }
    if (!S_ISREG(sb.st_mode)) return LOAD_FAIL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return storage_errno(errno) ? load_gone(r, path, strerror(errno)) : LOAD_FAIL;
    close(fd);
    if (atomic_fetch_add(&r->io_streak, 1) + 1 >= STORAGE_STREAK)
        return load_gone(r, path, "several images in a row failed to read");
    return LOAD_FAIL;
}

static void *decoder_main(void *arg) {
    runner_t *r = arg;
    item_t *it;
    while ((it = queue_pop(&r->load_q, 0))) {
        if (stopping(r)) {
            item_release(it);
            queue_push(&r->write_q, it);
            continue;
        }
        err_t err = {{0}};
        double t0 = mono_s();
        int rc = jobs_load_image(&it->img, it->job.path, r->cfg->max_pixels, &err);
        it->t.t_load = mono_s() - t0;
        if (!rc && r->pre_S) {   /* the worker's model then skips this step */
            double t1 = mono_s();
            it->pre = queue_pop(&r->pre_q, 0);
            err_t pe = {{0}};
            if (image_preprocess(it->img.rgb, it->img.w, it->img.h, (size_t)it->img.w * 3,
                                 r->pre_S, it->pre, &pe)) {
                queue_push(&r->pre_q, it->pre);   /* the worker's model tries again */
                it->pre = NULL;
            }
            it->t_pre = mono_s() - t1;
        }
        int lf = rc ? load_failure(r, rc, it->job.path) : 0;
        if (rc && lf != LOAD_FAIL) {   /* the storage, not this image: release it */
            item_release(it);
            queue_push(&r->write_q, it);
        } else if (rc) {
            it->kind = ITEM_FAIL;
            it->permanent = permanent_error(rc);
            snprintf(it->reason, sizeof it->reason, "%s", err.msg);
            queue_push(&r->write_q, it);
        } else {
            load_loaded(r, it->job.path);
            queue_push(&r->ready_q, it);
        }
    }
    queue_done(&r->ready_q);
    return NULL;
}

typedef struct worker_arg {
    runner_t *r;
    int       dev;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    runner_t *r = wa->r;
    err_t err = {{0}};
    jobs_engine *eng = &r->engines[wa->dev];
    int rc = jobs_engine_create(r->cfg, r->cfg->devices[wa->dev], r->stop, eng, &err);
    pthread_mutex_lock(&r->mu);
    if (rc) {
        if (!r->start_failed) r->fatal_err = err;
        r->start_failed = 1;
    }
    r->started++;
    pthread_cond_broadcast(&r->started_cv);
    pthread_mutex_unlock(&r->mu);
    /* -v: each image's stages, and at the end the worker's totals with
     * the fraction of its wall time spent in the model's encoder, decoder
     * and post-processing (its device's busy share: the rest is waiting
     * for images and for the writer); the images table keeps the stages */
    char dev[64];   /* "cuda:0", or "worker 1 (cuda:0)" where workers share it (as status) */
    {
        const char *d = r->cfg->devices[wa->dev];
        int same = 0;
        for (int i = 0; i < r->cfg->n_devices; i++) same += !strcmp(r->cfg->devices[i], d);
        if (same > 1) snprintf(dev, sizeof dev, "worker %d (%s)", wa->dev, d);
        else snprintf(dev, sizeof dev, "%s", d);
    }
    double w0 = mono_s(), sum_wait = 0, sum_write = 0, sum_enc = 0, sum_dec = 0, sum_post = 0;
    int64_t n_img = 0;
    item_t *it;
    for (;;) {
        double tw = mono_s();
        if (!(it = queue_pop(&r->ready_q, 0))) break;
        tw = mono_s() - tw;
        float *pre = it->pre;   /* back to the pool at the end of this turn */
        it->pre = NULL;
        if (rc || stopping(r)) {
            if (pre) queue_push(&r->pre_q, pre);
            item_release(it);
            queue_push(&r->write_q, it);
            continue;
        }
        /* count the attempt before running: if this image kills the
         * process, the next run knows (store_reclaim). The wait is the
         * image's t_write: the writer commits the start after what was
         * queued before it, the previous results' rows included. */
        double tq = mono_s();
        it->kind = ITEM_START;
        CHECK(sem_init(&it->started, 0, 0) == 0);
        queue_push(&r->write_q, it);
        while (sem_wait(&it->started) != 0) {}
        sem_destroy(&it->started);
        it->t.t_write = mono_s() - tq;
        it->counted = it->start_ok;
        if (!it->start_ok || stopping(r)) {
            if (pre) queue_push(&r->pre_q, pre);
            item_release(it);
            queue_push(&r->write_q, it);
            continue;
        }
        memset(&err, 0, sizeof err);
        double t0 = mono_s();
        jobs_test_pause("IMAGE");   /* tests: an image that takes this long */
        int grc = stopping(r) ? ERR_INTERRUPTED
                              : eng->process(eng->ctx, &it->img, pre, &it->res, &err);
        it->t.t_generate = mono_s() - t0;
        if (pre) queue_push(&r->pre_q, pre);
        image_free(&it->img);
        if (grc == ERR_INTERRUPTED || (grc && *r->stop)) {
            amg_result_free(&it->res);
            item_release(it);
        } else if (grc) {
            amg_result_free(&it->res);
            it->kind = ITEM_FAIL;
            it->permanent = permanent_error(grc);
            /* the generator's messages do not name the file (the loader's
             * do): the stored reason names it either way */
            if (strstr(err.msg, it->job.path))
                snprintf(it->reason, sizeof it->reason, "%s", err.msg);
            else
                snprintf(it->reason, sizeof it->reason, "%.255s: %.254s", it->job.path, err.msg);
        } else {
            it->kind = ITEM_RESULT;
        }
        it->t.worker = wa->dev;
        it->t.t_encode = it->t.t_decode = it->t.t_post = -1;   /* stored NULL */
        if (!grc && eng->stages) {
            jobs_stages sg;
            eng->stages(eng->ctx, &sg);
            it->t.t_encode = sg.t_encode, it->t.t_decode = sg.t_decode, it->t.t_post = sg.t_post;
        }
        if (r->cfg->verbose && !grc && eng->stages) {
            const store_timing *t = &it->t;
            n_img++, sum_wait += tw, sum_write += t->t_write;
            sum_enc += t->t_encode, sum_dec += t->t_decode, sum_post += t->t_post;
            fprintf(stderr, "sam2amg run: %s: %s: load %.3f s, preprocess %.3f s%s, wait %.3f s, "
                    "write wait %.3f s, encode %.3f s, decode %.3f s, post %.3f s\n", dev,
                    it->job.path, t->t_load, it->t_pre, pre ? " (decode pool)" : "", tw,
                    t->t_write, t->t_encode, t->t_decode, t->t_post);
        }
        queue_push(&r->write_q, it);
    }
    if (r->cfg->verbose && n_img) {
        double wall = mono_s() - w0;
        fprintf(stderr, "sam2amg run: %s: %lld image%s in %.2f s: wait %.2f s, write wait %.2f s, "
                "encode %.2f s, decode %.2f s, post %.2f s; model busy %.0f%%\n", dev,
                (long long)n_img, n_img == 1 ? "" : "s", wall, sum_wait, sum_write, sum_enc,
                sum_dec, sum_post, wall > 0 ? 100.0 * (sum_enc + sum_dec + sum_post) / wall : 0.0);
    }
    if (!rc && eng->destroy) eng->destroy(eng->ctx);
    queue_done(&r->write_q);
    return NULL;
}

static void item_free(item_t *it) {
    amg_result_free(&it->res);
    image_free(&it->img);
    free(it->job.path);
    free(it);
}

/* write_one: one item inside the open batch. */
static int write_one(runner_t *r, item_t *it, err_t *err) {
    store_t *s = r->writer_store;
    int max_attempts = r->cfg->retries + 1;
    switch (it->kind) {
    case ITEM_RESULT: {
        /* a savepoint per image: a data error of this image (SQLite
         * refused one of its values) undoes its rows alone and fails it
         * with that reason; the batch and the run go on */
        int rc = store_image_begin(s, err);
        if (!rc) rc = store_put_result(s, r->run_id, it->job.id, r->owner, &it->res, &it->t, err);
        if (rc >= 0) {
            int e = store_image_end(s, err);
            return e ? e : rc;
        }
        if (rc != ERR_INVALID) return rc;   /* run-level: the batch rolls back */
        /* no path here: status adds it to a reason that lacks it */
        snprintf(it->reason, sizeof it->reason, "its masks cannot be stored: %.480s", err->msg);
        if ((rc = store_image_rollback(s, err))) return rc;
        amg_result_free(&it->res);
        it->kind = ITEM_FAIL;
        it->permanent = 1;   /* the same result would be refused again */
        return store_put_failure(s, r->run_id, it->job.id, r->owner, it->reason, 1, it->counted,
                                 max_attempts, err);
    }
    case ITEM_FAIL:
        return store_put_failure(s, r->run_id, it->job.id, r->owner, it->reason, it->permanent,
                                 it->counted, max_attempts, err);
    case ITEM_START:
        return store_start(s, it->job.id, r->owner, err);
    default:
        return store_release(s, it->job.id, r->owner, it->counted, err);
    }
}

static void *writer_main(void *arg) {
    runner_t *r = arg;
    item_t *batch[1024];
    int cap = r->cfg->batch_images < 1024 ? r->cfg->batch_images : 1024;
    for (;;) {
        item_t *it = queue_pop(&r->write_q, 0);
        if (!it) break;
        int n = 0;
        batch[n++] = it;
        while (n < cap && (it = queue_pop(&r->write_q, 1))) batch[n++] = it;
        err_t err = {{0}};
        int rc = 0, wr[1024];
        if (atomic_load(&r->fatal)) {
            /* after a run-level error: leave leases for the next run */
            rc = -1;
        } else if (!(rc = store_batch_begin(r->writer_store, &err))) {
            for (int i = 0; i < n && rc >= 0; i++) rc = wr[i] = write_one(r, batch[i], &err);
            if (rc >= 0) rc = store_batch_commit(r->writer_store, &err);
            if (rc < 0) store_batch_rollback(r->writer_store);
        }
        if (rc < 0 && !atomic_load(&r->fatal)) set_fatal(r, &err);
        for (int i = 0; i < n; i++) {
            item_t *b = batch[i];
            if (b->kind == ITEM_START) {   /* the worker owns it: wake it */
                b->start_ok = rc >= 0 && wr[i] == 1;
                sem_post(&b->started);
                continue;
            }
            if (rc >= 0) {
                if (b->kind == ITEM_RESULT) {
                    atomic_fetch_add(&r->done, 1);
                    atomic_fetch_add(&r->masks, b->res.n);
                } else if (b->kind == ITEM_FAIL) {
                    if (wr[i] == 2) atomic_fetch_add(&r->failed, 1);
                    else atomic_fetch_add(&r->retried, 1);
                    if (!r->cfg->quiet && strstr(b->reason, b->job.path))
                        fprintf(stderr, "sam2amg run: %s\n", b->reason);
                    else if (!r->cfg->quiet)
                        fprintf(stderr, "sam2amg run: %s: %s\n", b->job.path, b->reason);
                } else {
                    atomic_fetch_add(&r->released, 1);
                }
            }
            atomic_fetch_sub(&r->in_flight, 1);
            item_free(batch[i]);
        }
    }
    return NULL;
}

static void progress(runner_t *r, double t0, int64_t pending0, int final) {
    double dt = mono_s() - t0;
    int64_t done = atomic_load(&r->done), failed = atomic_load(&r->failed),
            masks = atomic_load(&r->masks);
    double ips = dt > 0 ? done / dt : 0, mps = dt > 0 ? masks / dt : 0;
    int64_t left = pending0 - done - failed;
    if (left < 0) left = 0;
    char eta[32] = "?";
    if (ips > 0) {
        int64_t s = (int64_t)(left / ips);
        snprintf(eta, sizeof eta, "%lld:%02lld:%02lld", (long long)(s / 3600),
                 (long long)(s / 60 % 60), (long long)(s % 60));
    }
    fprintf(stderr, "\r%lld/%lld images, %lld failed, %.2f images/s, %.0f masks/s, ETA %s   %s",
            (long long)(done + failed), (long long)pending0, (long long)failed, ips, mps, eta,
            final ? "\n" : "");
}

/* monitor_start: the GPU monitor (gpumon.h) over the distinct CUDA
 * ordinals of the run's workers, and those of SAM2AMG_GPUMON_DEVICES (a
 * comma list of ordinals; the tests measure stand-in GPUs beside cpu
 * workers with it). NULL when there are none or they cannot be measured
 * (st->gpu_note says why). */
static gpumon_t *monitor_start(const jobs_config *cfg, jobs_stats *st) {
    int ord[GPUMON_MAX], n = 0;
    const char *env = getenv("SAM2AMG_GPUMON_DEVICES");
    for (int i = 0; i < cfg->n_devices + 1; i++) {
        const char *p = i < cfg->n_devices ? cfg->devices[i] : env;
        if (!p) continue;
        if (i < cfg->n_devices && strncmp(p, "cuda:", 5)) continue;
        if (i < cfg->n_devices) p += 5;
        while (*p) {   /* "N" or "N,M,..." */
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v > 1 << 20) break;
            int seen = 0;
            for (int k = 0; k < n; k++) seen |= ord[k] == (int)v;
            if (!seen && n < GPUMON_MAX) ord[n++] = (int)v;
            p = *end == ',' ? end + 1 : end;
            if (*end != ',') break;
        }
    }
    if (n == 0) return NULL;
    gpumon_t *m = NULL;
    err_t e = {{0}};
    if (gpumon_start(&m, ord, n, 200, &e))
        snprintf(st->gpu_note, sizeof st->gpu_note, "%s", e.msg);
    return m;
}

int jobs_run(store_t *claim, store_t *writer, int64_t run_id, const jobs_config *cfg,
             volatile sig_atomic_t *stop, jobs_stats *st, err_t *err) {
    memset(st, 0, sizeof *st);
    /* out of memory before the threads start: an error, nothing claimed */
    runner_t *r = calloc(1, sizeof *r);
    if (!r) return err_set(err, ERR_NOMEM, "out of memory (the runner's state)");
    r->cfg = cfg;
    r->writer_store = writer;
    r->run_id = run_id;
    r->stop = stop;
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(r->owner, sizeof r->owner, "%s:%d:run%lld", host, (int)getpid(), (long long)run_id);
    CHECK(pthread_mutex_init(&r->mu, NULL) == 0);
    CHECK(pthread_cond_init(&r->started_cv, NULL) == 0);
    int nd = cfg->decode_threads > 0 ? cfg->decode_threads : 2;
    if (nd > 64) nd = 64;   /* decoders[]; before ready_q counts them as producers */
    int nw = cfg->n_devices;
    int ready_cap = cfg->prefetch > 0 ? cfg->prefetch : 2;
    /* pre_q holds at most one buffer per decoder, ready_q slot and worker
     * (see below), so all four are allocated here, before any thread */
    if (queue_init(&r->load_q, 2 * nd + 2, 1) || queue_init(&r->ready_q, ready_cap, nd) ||
        queue_init(&r->write_q, 256, nw) ||
        queue_init(&r->pre_q, nd + ready_cap + nw, 1)) {
        queue_free(&r->load_q);
        queue_free(&r->ready_q);
        queue_free(&r->write_q);
        queue_free(&r->pre_q);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->started_cv);
        free(r);
        return err_set(err, ERR_NOMEM, "out of memory (the runner's queues)");
    }

    /* A thread that cannot start (pids.max, RLIMIT_NPROC) stops the run
     * before anything is claimed: it stands in for the missing threads as
     * their queues' producer (queue_done), the barrier counts the missing
     * workers as arrived, no later thread is started, and the writer's
     * loop, if the writer did not start, runs on this thread at the end;
     * the started threads then find closed queues and end, and no image
     * was leased. */
    pthread_t workers[JOBS_MAX_DEVICES], decoders[64], wr;
    worker_arg wargs[JOBS_MAX_DEVICES];
    int nw_up = 0, nd_up = 0, wr_up = 0, terr = 0;
    for (int i = 0; i < nw && !terr; i++) {
        wargs[i] = (worker_arg){r, i};
        if (!(terr = thread_start(&workers[i], worker_main, &wargs[i]))) nw_up++;
    }
    for (int i = nw_up; i < nw; i++) queue_done(&r->write_q);
    pthread_mutex_lock(&r->mu);
    r->started += nw - nw_up;
    while (r->started < nw) pthread_cond_wait(&r->started_cv, &r->mu);
    int engine_failed = r->start_failed, start_failed = engine_failed || terr;
    pthread_mutex_unlock(&r->mu);
    /* from here to the workers' end: the span the GPUs' busy share covers */
    gpumon_t *mon = start_failed ? NULL : monitor_start(cfg, st);
    /* the preprocessing pool: one buffer for each image that can be
     * between a decoder and the end of a worker's turn at once (each
     * decoder, each slot of ready_q, each worker), so a decoder waiting
     * for one always gets it */
    r->pre_S = start_failed ? 0 : r->engines[0].input_size;
    for (int i = 1; i < nw; i++)
        if (r->engines[i].input_size != r->pre_S) r->pre_S = 0;
    r->pre_n = r->pre_S ? nd + r->ready_q.cap + nw : 0;
    CHECK(r->pre_n <= r->pre_q.cap);
    for (int i = 0; i < r->pre_n; i++) {
        float *b = malloc((size_t)3 * r->pre_S * r->pre_S * sizeof(float));
        if (!b) {   /* no pool: the workers preprocess as before */
            while ((b = queue_pop(&r->pre_q, 1))) free(b);
            r->pre_S = r->pre_n = 0;
            break;
        }
        queue_push(&r->pre_q, b);
    }
    for (int i = 0; i < nd && !terr; i++)
        if (!(terr = thread_start(&decoders[i], decoder_main, r))) nd_up++;
    for (int i = nd_up; i < nd; i++) queue_done(&r->ready_q);
    if (!terr) wr_up = !(terr = thread_start(&wr, writer_main, r));

    int rc = 0;
    if (engine_failed) {
        atomic_store(&r->fatal, 1);
        rc = err_set(err, ERR_INVALID, "%s", r->fatal_err.msg);
    } else if (terr) {
        rc = err_set(err, ERR_NOMEM, "cannot start thread: %s", strerror(terr));
        set_fatal(r, err);
    }
    int64_t counts[4] = {0};
    if (!rc) rc = store_counts(claim, counts, NULL, err);
    int64_t pending0 = counts[IMAGE_STATUS_PENDING];
    int tty = !cfg->quiet && isatty(2);
    double t0 = mono_s(), last = 0;
    store_job jobs[16];
    double ck_t = mono_s();
    int64_t ck_done = 0;
    item_t *spare[16];   /* allocated, not yet claimed for (zeroed) */
    int n_spare = 0;
    while (!rc && !stopping(r)) {
        if (cfg->checkpoint) {
            int64_t fin = atomic_load(&r->done) + atomic_load(&r->failed);
            if ((cfg->checkpoint_images > 0 && fin - ck_done >= cfg->checkpoint_images) ||
                (cfg->checkpoint_s > 0 && mono_s() - ck_t >= cfg->checkpoint_s)) {
                err_t ce = {{0}};
                if (cfg->checkpoint(cfg->checkpoint_ctx, &ce))
                    fprintf(stderr, "sam2amg run: warning: checkpoint failed: %s\n", ce.msg);
                ck_done = fin;
                ck_t = mono_s();
            }
        }
        int space = queue_space(&r->load_q);
        int got = 0;
        if (space > 0) {
            int want = space < 16 ? space : 16;
            int64_t in_flight = atomic_load(&r->in_flight);
            /* the items before the claim: out of memory then leases
             * nothing, and the run stops as on a store error */
            while (n_spare < want && (spare[n_spare] = calloc(1, sizeof *spare[0]))) n_spare++;
            if (n_spare == 0) {
                rc = err_set(err, ERR_NOMEM, "out of memory (the claimer's queue items)");
                set_fatal(r, err);
                break;
            }
            if (want > n_spare) want = n_spare;   /* fewer now, the rest next time */
            rc = store_claim(claim, r->owner, cfg->lease_s, want, jobs, &got, err);
            if (rc) {
                set_fatal(r, err);
                break;
            }
            atomic_fetch_add(&r->in_flight, got);
            for (int i = 0; i < got; i++) {
                item_t *it = spare[--n_spare];
                it->job = jobs[i];
                queue_push(&r->load_q, it);
            }
            /* nothing pending, and nothing was in flight before the claim
             * that could have come back as a retry: done */
            if (got == 0 && in_flight == 0) break;
        }
        if (tty && mono_s() - last > 0.5) {
            last = mono_s();
            progress(r, t0, pending0, 0);
        }
        if (got == 0) usleep(20000);
    }
    while (n_spare > 0) free(spare[--n_spare]);
    queue_done(&r->load_q);
    for (int i = 0; i < nd_up; i++) pthread_join(decoders[i], NULL);
    for (int i = 0; i < nw_up; i++) pthread_join(workers[i], NULL);
    st->n_gpus = gpumon_stop(mon, st->gpus);
    if (wr_up) pthread_join(wr, NULL);
    else writer_main(r);   /* write_q is closed: it frees what is queued and returns */
    if (tty) progress(r, t0, pending0, 1);
    if (!rc && atomic_load(&r->fatal)) rc = err_set(err, ERR_IO, "%s", r->fatal_err.msg);
    if (!rc && atomic_load(&r->storage_gone)) {
        rc = err_set(err, ERR_IO, "%s", r->storage_err.msg);
        st->storage_gone = 1;
    }
    if (rc && err->msg[0] == 0) snprintf(err->msg, sizeof err->msg, "%s", r->fatal_err.msg);
    st->done = atomic_load(&r->done);
    st->failed = atomic_load(&r->failed);
    st->retried = atomic_load(&r->retried);
    st->released = atomic_load(&r->released);
    st->masks = atomic_load(&r->masks);
    st->fatal = atomic_load(&r->fatal) || rc;
    st->interrupted = *stop != 0;
    for (int i = 0; i < r->pre_n; i++) free(queue_pop(&r->pre_q, 1));
    queue_free(&r->pre_q);
    queue_free(&r->load_q);
    queue_free(&r->ready_q);
    queue_free(&r->write_q);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->started_cv);
    free(r);
    return rc;
}
