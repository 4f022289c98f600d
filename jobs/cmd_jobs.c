/* cmd_jobs.c: the commands over a job database: run, status, export, sql.
 *
 * `run` takes the run lock (an flock on DB.lock: a second run on the same
 * database is refused, see runner.c), ingests manifests (all of one
 * command in one transaction: all or nothing), reclaims the leases
 * of a killed run, and hands the pending images to the pipeline. The exit
 * status says how it went (cli.h): 0 every image done, 3 some failed, 1 a
 * run-level error, 2 usage, 130 interrupted (SIGINT), 75 stopped by
 * SIGTERM or SIGUSR1 (JOBS_EXIT_REQUEUE: a scheduler's preemption), or
 * when the images' storage went away (runner.c, load_failure).
 *
 * As one task of a job array (jobs/shard.c): --shard K/N (or the Slurm /
 * Kubernetes index) keeps the manifest's images of shard K only, and
 * --local-dir works on a node-local copy of DB, checkpointed to DB.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas.h"
#include "cli.h"
#include "jobs.h"
#include "json.h"
#include "model.h"
#include "outfile.h"
#include "rle.h"
#include "size.h"

static volatile sig_atomic_t stop_flag, stop_signal;

static void on_signal(int sig) {
    stop_signal = sig;
    stop_flag = 1;
}

/* the checkpoint hook of jobs_run (--local-dir) */
typedef struct checkpoint_ctx {
    store_t    *s;       /* a connection to the working copy, of the calling thread */
    const char *dest;    /* the database path the user named */
    int         quiet;
} checkpoint_ctx;

static int checkpoint_now(void *arg, err_t *err) {
    checkpoint_ctx *c = arg;
    int rc = jobs_checkpoint_write(c->s, c->dest, err);
    if (!rc && !c->quiet) {
        int k, n;
        int64_t seq = 0;
        err_t e2;
        if (jobs_shard_get(c->s, &k, &n, &seq, &e2) <= 0) seq = 0;
        fprintf(stderr, "sam2amg run: checkpoint %lld written to %s\n", (long long)seq, c->dest);
    }
    return rc;
}

/* parse_checkpoint_every: "N" (images), "Ss" (seconds) or "N,Ss": no
 * empty part, no sign or space, each kind at most once. */
static int parse_checkpoint_every(const char *v, int64_t *images, double *secs) {
    if (!v || !*v) return -1;
    *images = 0;
    *secs = 0;
    int parts = 0;
    for (const char *t = v;; parts++) {
        if (parts == 2 || *t < '0' || *t > '9') return -1;
        char *end = NULL;
        errno = 0;
        long long x = strtoll(t, &end, 10);
        if (errno || x < 1 || x > 1000000000) return -1;
        if (*end == 's') {
            if (*secs) return -1;
            *secs = (double)x, end++;
        } else {
            if (*images) return -1;
            *images = x;
        }
        if (*end == 0) return 0;
        if (*end != ',') return -1;
        t = end + 1;
    }
}

/* params_json: the scalar AMG parameters as a JSON object (official names,
 * fixed order: equal parameters give equal text). */
#define PARAMS_BF16 ", \"precision\": \"bf16\""   /* before the closing brace */
#define PARAMS_BUF  4096   /* store_run_info.params */
_Static_assert(sizeof ((store_run_info *)0)->params == PARAMS_BUF, "PARAMS_BUF");

static void params_json(const amg_params *p, int precision, char *out, size_t cap) {
    char a[JSON_DOUBLE_BUF], b[JSON_DOUBLE_BUF], c[JSON_DOUBLE_BUF], d[JSON_DOUBLE_BUF],
        e[JSON_DOUBLE_BUF], f[JSON_DOUBLE_BUF], g[JSON_DOUBLE_BUF];
    char ppb[16];   /* a number, or "auto" (sized to each GPU: a resume on another GPU is
                       the same run) */
    if (p->points_per_batch == AMG_POINTS_PER_BATCH_AUTO) snprintf(ppb, sizeof ppb, "\"auto\"");
    else snprintf(ppb, sizeof ppb, "%d", p->points_per_batch);
    snprintf(out, cap,
             "{\"points_per_side\": %d, \"points_per_batch\": %s, \"pred_iou_thresh\": %s, "
             "\"stability_score_thresh\": %s, \"stability_score_offset\": %s, "
             "\"mask_threshold\": %s, \"box_nms_thresh\": %s, \"crop_n_layers\": %d, "
             "\"crop_nms_thresh\": %s, \"crop_overlap_ratio\": %s, "
             "\"crop_n_points_downscale_factor\": %d, \"min_mask_region_area\": %d, "
             "\"use_m2m\": %s, \"multimask_output\": %s}",
             p->points_per_side, ppb, json_fmt_double(a, p->pred_iou_thresh),
             json_fmt_double(b, p->stability_score_thresh),
             json_fmt_double(c, p->stability_score_offset), json_fmt_double(d, p->mask_threshold),
             json_fmt_double(e, p->box_nms_thresh), p->crop_n_layers,
             json_fmt_double(f, p->crop_nms_thresh), json_fmt_double(g, p->crop_overlap_ratio),
             p->crop_n_points_downscale_factor, p->min_mask_region_area,
             p->use_m2m ? "true" : "false", p->multimask_output ? "true" : "false");
    /* bf16 runs say so (fp32, the CPU's only precision, is implied: the
     * params of databases made before --precision stay valid) */
    size_t n = strlen(out);
    if (precision == BACKEND_BF16 && n > 0 && n + sizeof PARAMS_BF16 <= cap)
        snprintf(out + n - 1, cap - (n - 1), "%s}", PARAMS_BF16);
}

/* params_precision: the precision runs.params records (see params_json) */
static int params_precision(const char *params) {
    return strstr(params, PARAMS_BF16 "}") ? BACKEND_BF16 : BACKEND_FP32;
}

/* params_amg: runs.params without the precision, for amg_params_from_json
 * (buf holds the copy when one is needed) */
static const char *params_amg(const char *params, char *buf) {
    const char *at = strstr(params, PARAMS_BF16 "}");
    if (!at) return params;
    snprintf(buf, PARAMS_BUF, "%.*s}", (int)(at - params), params);
    return buf;
}

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: sam2amg run DB [--manifest FILE|DIR|-]... --model WEIGHTS [--config NAME|FILE]\n"
            "                  [AMG flags] [--devices cpu|cuda:0,cuda:1,...] [options]\n\n"
            "Process every image of the manifests with the automatic mask generator and store\n"
            "the masks in the SQLite database DB (created if missing). Run it again to resume:\n"
            "finished images are kept, images of a killed run are reclaimed. Without --model\n"
            "a resumed run uses the model and parameters of the database's last run.\n\n"
            "  --manifest SRC      a text file of paths (one per line), a .csv with a \"path\"\n"
            "                      column, a .jsonl of {\"path\": ...}, a directory (walked\n"
            "                      recursively), or - for stdin; repeatable; re-adding adds nothing\n"
            "  --model WEIGHTS     checkpoint file, Hugging Face repo id (facebook/sam2.1-hiera-large)\n"
            "                      or name (sam2.1_hiera_large), resolved offline ('sam2amg models')\n"
            "  --revision REV      ref or commit of a Hugging Face cache repo (default main)\n"
            "  --model-dir DIR     also look for checkpoint names in DIR\n"
            "  --config NAME|FILE  model config (default: from the name, config.json or shapes)\n"
            "  --devices LIST      one worker per item: cpu, cuda:N; repeat one to run\n"
            "                      several workers on it (cuda:0,cuda:0) (default cpu)\n"
            "  --threads N         BLAS threads of a cpu worker (default: all)\n"
            "  --precision P       fp32 or bf16 GEMM inputs (default: bf16 when every device\n"
            "                      is cuda, else fp32; a resumed run keeps its database's)\n"
            "  --max-pixels N      refuse images above N pixels (default 256000000)\n"
            "  --retries N         retries of transient failures (default 2)\n"
            "  --decode-threads N  image decoding threads (default 2)\n"
            "  --batch N           images per database commit, at most (default 256; the\n"
            "                      writer commits what is queued, so small when it keeps up)\n"
            "  --lease S           images.lease_expires = claim time + S (default 3600);\n"
            "                      informative: the run lock, not an expiry, guards leases\n"
            "  --quiet             no progress line (it is shown only on a terminal anyway)\n"
            "  -v, --verbose       the BLAS line; per worker: points_per_batch halvings after\n"
            "                      out of memory, each image's stages (seconds), totals and\n"
            "                      model busy share\n"
            "  --gpu-memory-limit BYTES|FRACTION  what sam2amg may use per GPU, e.g. 8G or\n"
            "                      0.5 of it (workers sharing a GPU split it); sizes\n"
            "                      --points-per-batch auto (the default on CUDA)\n"
            "  --shard K/N         process only shard K of N of the images (a stable hash of\n"
            "                      each path); default: from SLURM_ARRAY_TASK_ID and\n"
            "                      SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with\n"
            "  --shard-count N     (Kubernetes Indexed Jobs); a shard database keeps its K/N\n"
            "  --local-dir DIR     work on a copy of DB in DIR (node-local disk) and write\n"
            "                      checkpoints to DB; default $SLURM_TMPDIR or $TMPDIR when\n"
            "                      DB is on a network filesystem (NFS, Lustre, ...)\n"
            "  --checkpoint-every N|Ss|N,Ss  checkpoint every N images or S seconds\n"
            "                      (default 1000,600s)\n"
            "  --devices all       one cuda worker per GPU the CUDA driver sees (through\n"
            "                      CUDA_VISIBLE_DEVICES, as Slurm sets it); cpu when\n"
            "                      there is none\n"
            "  --workers-per-gpu N each cuda item of --devices (all's too) runs N workers,\n"
            "                      a model replica each (default 1; 2 filled an H100: see\n"
            "                      the README); cpu items stay one worker; 16 workers\n"
            "                      in all at most\n\n"
            "AMG flags:\n");
    amg_params_help(f);
    fprintf(f, "\nExit status: 0 all images done, 3 some failed (see `sam2amg status`),\n"
               "1 run-level error, 2 usage, 130 interrupted (resume with the same command),\n"
               "75 stopped by SIGTERM or SIGUSR1, or the images' storage went away\n"
               "(checkpointed, nothing failed for it: requeue the task).\n");
}

int jobs_lock_db(const char *cmd, const char *db) {
    size_t n_path = strlen(db) + sizeof ".lock";
    char *path = malloc(n_path);
    if (!path) {
        fprintf(stderr, "sam2amg %s: %s: out of memory\n", cmd, db);
        return -1;
    }
    snprintf(path, n_path, "%s.lock", db);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "sam2amg %s: %s: %s\n", cmd, path, strerror(errno));
        free(path);
        return -1;
    }
    int locked = flock(fd, LOCK_EX | LOCK_NB) == 0, lock_errno = errno;
    if (!locked && lock_errno != EWOULDBLOCK) {
        /* Lustre mounted noflock, some NFS setups: no lock at all is not
         * "another run holds it" */
        fprintf(stderr, "sam2amg %s: %s: cannot take the run lock: %s (the filesystem does not "
                "support locks; put the database on local disk, or give run --local-dir)\n",
                cmd, path, strerror(lock_errno));
        close(fd);
        free(path);
        return -1;
    }
    if (!locked) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        /* the file holds "PID\n": the message stays one line, whatever
         * the file holds (only its leading digits are shown) */
        if (n < 0) n = 0;
        pid[n] = 0;
        n = (ssize_t)strspn(pid, "0123456789");
        pid[n] = 0;
        fprintf(stderr,
                "sam2amg %s: %s: another run is using this database (pid %s holds %s); "
                "wait for it to finish or use another database\n",
                cmd, db, n > 0 ? pid : "?", path);
        close(fd);
        free(path);
        return -1;
    }
    free(path);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0) { /* informative only */ }
    return fd;
}

/* abs_keep_name: path made absolute with its folder's realpath but its own
 * last component kept (a hub-cache snapshot file stays
 * snapshots/COMMIT/FILE instead of becoming blobs/SHA256, which names
 * neither repo, revision nor file); malloc'd, NULL if the folder is gone
 * (or out of memory: the caller then keeps the name as given) */
static char *abs_keep_name(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path + (slash == path))) : strdup(".");
    char *rd = dir ? realpath(dir, NULL) : NULL;
    free(dir);
    if (!rd) return NULL;
    const char *base = slash ? slash + 1 : path;
    size_t n = strlen(rd) + 1 + strlen(base) + 1;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s%s%s", rd, strcmp(rd, "/") ? "/" : "", base);
    free(rd);
    return out;
}

int cmd_run(int argc, char **argv) {
    const char *cmd = "run";
    jobs_config cfg = {0};
    amg_params_default(&cfg.params);
    cfg.params.points_per_batch = -1;   /* not given: auto on CUDA, 64 on the CPU (below) */
    const char *manifests[256];
    int n_manifests = 0;
    const char *db = NULL, *devices = "cpu", *revision = NULL, *model_dir = NULL;
    const char *shard_arg = NULL, *local_dir = NULL;
    int64_t shard_count = 0, ck_images = 1000;
    double ck_secs = 600;
    int params_set = 0, precision = -1, per_gpu = 1;
    int64_t v;
    cfg.retries = 2;
    cfg.decode_threads = 2;
    cfg.batch_images = 256;
    cfg.lease_s = 3600;
    cfg.max_pixels = 256000000;
    /* config's "amg" object first, then flags on top: find --config first */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config")) cfg.config = argv[i + 1];
    /* exit status as generate and dump (README, Commands): a file that
     * cannot be read or parsed is a data error, a value a flag could not
     * take either (unknown name or key, out of range) a usage error */
    if (cfg.config) {
        sam2_config c;
        char *amg_json = NULL;
        err_t err = {{0}};
        int rc = sam2_config_load(cfg.config, &c, &amg_json, &err);
        if (rc) {
            fprintf(stderr, "sam2amg run: %s\n", err.msg);
            return rc == ERR_INVALID ? EXIT_USAGE : EXIT_DATA;
        }
        if (amg_json) {
            rc = amg_params_from_json(&cfg.params, amg_json, &err);
            free(amg_json);
            if (rc) {
                fprintf(stderr, "sam2amg run: %s: %s\n", cfg.config, err.msg);
                return rc == ERR_INVALID ? EXIT_USAGE : EXIT_DATA;
            }
            params_set = 1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            run_usage(stdout);
            return EXIT_OK;
        }
        int pr = amg_params_parse_flag(&cfg.params, cmd, argc, argv, &i);
        if (pr < 0) return EXIT_USAGE;
        if (pr > 0) {   /* it advanced i past the flag and its value */
            params_set = 1;
            i--;
            continue;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--manifest")) {
            if (!val) return cli_usage_error(cmd, "--manifest needs a value");
            if (n_manifests == 256) return cli_usage_error(cmd, "at most 256 --manifest");
            manifests[n_manifests++] = val;
            i++;
        } else if (!strcmp(a, "--model")) {
            if (!val || !*val) return cli_usage_error(cmd, "--model needs a value%s", val ? " (got '')" : "");
            cfg.model_path = val;
            i++;
        } else if (!strcmp(a, "--config")) {
            if (!val) return cli_usage_error(cmd, "--config needs a value");
            i++;
        } else if (!strcmp(a, "--revision") || !strcmp(a, "--model-dir")) {
            if (!val) return cli_usage_error(cmd, "%s needs a value", a);
            if (!strcmp(a, "--revision")) revision = val;
            else model_dir = val;
            i++;
        } else if (!strcmp(a, "--devices")) {
            if (!val) return cli_usage_error(cmd, "--devices needs a value");
            devices = val;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int(cmd, a, val, 0, 1024, &v)) return EXIT_USAGE;
            cfg.threads = (int)v, i++;
        } else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(cmd, val, &precision)) return EXIT_USAGE;
            i++;
        } else if (!strcmp(a, "--max-pixels")) {
            if (cli_parse_int(cmd, a, val, 1, INT64_MAX, &v)) return EXIT_USAGE;
            cfg.max_pixels = v, i++;
        } else if (!strcmp(a, "--retries")) {
            if (cli_parse_int(cmd, a, val, 0, 1000, &v)) return EXIT_USAGE;
            cfg.retries = (int)v, i++;
        } else if (!strcmp(a, "--workers-per-gpu")) {
            if (cli_parse_int(cmd, a, val, 1, JOBS_MAX_DEVICES, &v)) return EXIT_USAGE;
            per_gpu = (int)v, i++;
        } else if (!strcmp(a, "--decode-threads")) {
            if (cli_parse_int(cmd, a, val, 1, 64, &v)) return EXIT_USAGE;
            cfg.decode_threads = (int)v, i++;
        } else if (!strcmp(a, "--batch")) {
            if (cli_parse_int(cmd, a, val, 1, 1024, &v)) return EXIT_USAGE;
            cfg.batch_images = (int)v, i++;
        } else if (!strcmp(a, "--lease")) {
            if (cli_parse_int(cmd, a, val, 1, 1000000000, &v)) return EXIT_USAGE;
            cfg.lease_s = (double)v, i++;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            cfg.quiet = 1;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            cfg.verbose = 1;
        } else if (!strcmp(a, "--gpu-memory-limit")) {
            err_t e = {{0}};
            if (batch_parse_limit(val, &cfg.gpu_limit, &e)) return cli_usage_error(cmd, "%s", e.msg);
            i++;
        } else if (!strcmp(a, "--shard")) {
            if (!val) return cli_usage_error(cmd, "--shard needs a value");
            shard_arg = val, i++;
        } else if (!strcmp(a, "--shard-count")) {
            if (cli_parse_int(cmd, a, val, 1, JOBS_MAX_SHARDS, &v)) return EXIT_USAGE;
            shard_count = v, i++;
        } else if (!strcmp(a, "--local-dir")) {
            if (!val) return cli_usage_error(cmd, "--local-dir needs a value");
            local_dir = val, i++;
        } else if (!strcmp(a, "--checkpoint-every")) {
            if (parse_checkpoint_every(val, &ck_images, &ck_secs))
                return cli_usage_error(cmd, "--checkpoint-every: '%s' is not N, Ss or N,Ss "
                                       "(images, seconds)", val ? val : "");
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!db) {
            db = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        }
    }
    if (!db) return cli_usage_error(cmd, "the database DB is required");
    /* devices; "all": the GPUs the driver sees (Slurm or the user made
     * them visible), else the CPU */
    char devbuf[256];
    if (!strcmp(devices, "all")) {
        /* counted by the driver alone (the plugin is loaded below only for
         * a cuda worker); a list that names no device needs no driver */
        const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
        int ng = 0, listed = backend_cuda_visible_entries(cvd);
        char why[sizeof ((err_t *)0)->msg + 64];
        snprintf(why, sizeof why, "CUDA_VISIBLE_DEVICES=%.200s)", cvd ? cvd : "unset");
        err_t e = {{0}};
        if (listed == 0) {
            snprintf(why + strlen(why), sizeof why - strlen(why), ": it lists no device");
        } else if (backend_cuda_driver_count(&ng, &e)) {
            /* no driver: the GPUs Slurm listed stay workers, whose check
             * below then says what is missing */
            ng = listed > 0 ? listed : 0;
            snprintf(why + strlen(why), sizeof why - strlen(why), ": %s", e.msg);
        } else {
            snprintf(why + strlen(why), sizeof why - strlen(why), ": %d visible", ng);
        }
        if (ng > JOBS_MAX_DEVICES)   /* a worker each: the runner's limit */
            snprintf(why + strlen(why), sizeof why - strlen(why), ", the first %d used",
                     JOBS_MAX_DEVICES);
        size_t o = 0;
        devbuf[0] = 0;
        for (int g = 0; g < ng && g < JOBS_MAX_DEVICES; g++)
            o += (size_t)snprintf(devbuf + o, sizeof devbuf - o, "%scuda:%d", g ? "," : "", g);
        if (ng == 0) snprintf(devbuf, sizeof devbuf, "cpu");
        if (!cfg.quiet) fprintf(stderr, "sam2amg run: --devices all: %s (%s\n", devbuf, why);
        devices = devbuf;
    }
    char devlist[256];
    snprintf(devlist, sizeof devlist, "%s", devices);
    devices = devlist;
    {
        err_t e = {{0}};
        if (jobs_parse_devices(devices, &cfg, &e) || jobs_workers_per_gpu(&cfg, per_gpu, &e))
            return cli_usage_error(cmd, "%s", e.msg);
        if (per_gpu > 1) {
            /* runs.devices is one item per worker: status reads worker w's
             * device as item w and counts the workers by its commas, so
             * the expanded list is what the run stores (at most 16 x
             * "cuda:1023," = 160 bytes: devlist holds it) */
            size_t o = 0;
            devlist[0] = 0;
            for (int i = 0; i < cfg.n_devices && o < sizeof devlist; i++)
                o += (size_t)snprintf(devlist + o, sizeof devlist - o, "%s%s", i ? "," : "",
                                      cfg.devices[i]);
        }
        /* a GPU this machine cannot give is a usage error, before the
         * database is touched */
        for (int i = 0; i < cfg.n_devices; i++) {
            if (strncmp(cfg.devices[i], "cuda", 4)) continue;
            int rc = backend_check_device(cfg.devices[i], &e);
            if (rc == ERR_INVALID) return cli_usage_error(cmd, "%s", e.msg);   /* a setting */
            if (rc) return cli_usage_error(cmd, "%s; to run on the CPU: --devices cpu", e.msg);
        }
        /* so is a SAM2AMG_GPU_POST the generator would refuse on every image */
        const char *post;
        if (amg_gpu_post_env(&post, &e)) return cli_usage_error(cmd, "%s", e.msg);
    }
    int ppb_default = cfg.params.points_per_batch == -1;   /* neither flag nor config gave it */
    if (ppb_default) {
        int gpu = 0;
        for (int i = 0; i < cfg.n_devices; i++) gpu |= !strncmp(cfg.devices[i], "cuda", 4);
        cfg.params.points_per_batch = gpu ? AMG_POINTS_PER_BATCH_AUTO : BATCH_CPU_AUTO;
    }
    int any_cpu = 0;
    for (int d = 0; d < cfg.n_devices; d++) any_cpu |= !strcmp(cfg.devices[d], "cpu");
    if (cfg.verbose) fprintf(stderr, "sam2amg run: %s\n", blas_describe());   /* as generate -v */
    if (precision == BACKEND_BF16 && any_cpu)
        return cli_usage_error(cmd, "--precision bf16: the cpu device computes in fp32 only "
                               "(bf16 needs --devices cuda:N,...)");
    /* the shard: --shard, else the array index of Slurm or Kubernetes */
    int shard_k = 0, shard_n = 0;
    char shard_why[256] = "";
    if (shard_arg) {
        if (jobs_shard_parse(shard_arg, &shard_k, &shard_n))
            return cli_usage_error(cmd, "--shard: '%s' is not K/N with 0 <= K < N", shard_arg);
        snprintf(shard_why, sizeof shard_why, "shard %d/%d (--shard)", shard_k, shard_n);
    } else {
        int e = jobs_shard_from_env((int)shard_count, &shard_k, &shard_n, shard_why,
                                    sizeof shard_why);
        if (e < 0) return cli_usage_error(cmd, "%s", shard_why);
        if (e == 0 && shard_count)
            return cli_usage_error(cmd, "--shard-count needs JOB_COMPLETION_INDEX to be set");
    }
    /* where the database lives: SQLite must not be written on NFS/Lustre */
    const char *ckpt = NULL;   /* the user's DB path when working on a local copy */
    char *local = NULL;
    if (!local_dir) {
        const char *fs = jobs_network_fs(db);
        if (fs) {
            local_dir = getenv("SLURM_TMPDIR");
            if (!local_dir || !*local_dir) local_dir = getenv("TMPDIR");
            if (!local_dir || !*local_dir) {
                fprintf(stderr, "sam2amg run: %s is on a network filesystem (%s), where SQLite "
                        "cannot lock safely; give --local-dir DIR on node-local disk\n", db, fs);
                return EXIT_USAGE;
            }
            fprintf(stderr, "sam2amg run: %s is on %s: working in %s, checkpoints to %s\n", db,
                    fs, local_dir, db);
        }
    }
    if (local_dir) {
        struct stat ld_st;
        if (stat(local_dir, &ld_st) != 0 || !S_ISDIR(ld_st.st_mode))
            return cli_usage_error(cmd, "--local-dir %s: not an existing directory", local_dir);
        ckpt = db;
        local = jobs_local_path(local_dir, db);
        if (!local) {
            fprintf(stderr, "sam2amg run: --local-dir %s: out of memory (the working copy's "
                    "path of %s)\n", local_dir, db);
            return EXIT_DATA;
        }
        db = local;
    }
    cfg.db_path = db;
    /* a mistyped DB without --model: refused before the database (and its
     * lock file) would be created; with a local working copy, the user's
     * DB path (the checkpoint) is the one that must exist */
    struct stat db_st;
    const char *user_db = ckpt ? ckpt : db;
    if (!cfg.model_path && stat(user_db, &db_st) != 0 && errno == ENOENT) {
        free(local);
        return cli_usage_error(cmd, "--model WEIGHTS is required for a new database (%s does not "
                               "exist)", user_db);
    }
    /* the workers --workers-per-gpu made, once every usage error above (a
     * missing GPU, bf16 beside cpu, a bad shard) has had its one line */
    if (per_gpu > 1 && !cfg.quiet)
        fprintf(stderr, "sam2amg run: --workers-per-gpu %d: workers %s\n", per_gpu, devlist);
    /* from here on, SIGTERM and SIGUSR1 stop the run cleanly (a signal
     * during ingest is seen by the pipeline at once) */
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    /* SA_RESTART: a signal must not turn a blocking read or write (the
     * manifest on stdin, a checkpoint copy) into an EINTR error; the flag
     * is polled, the calls that wait (sem_wait, usleep) loop anyway */
    sa.sa_flags = SA_RESETHAND | SA_RESTART;   /* a second Ctrl-C kills at once (the DB stays safe) */
    sigaction(SIGINT, &sa, NULL);
    /* but not a second SIGTERM or SIGUSR1: Slurm signals every process of
     * the batch step and task.sh forwards the same signal, so two arrive;
     * the second must not kill the run before its last checkpoint */
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    int lock = jobs_lock_db("run", db);
    if (lock < 0) {
        free(local);
        return EXIT_DATA;
    }
    err_t err = {{0}};
    store_t *ws = NULL, *cs = NULL;
    int status = EXIT_DATA;
    if (ckpt) {
        int restored = 0;
        if (jobs_checkpoint_restore(ckpt, db, &restored, &err)) {
            fprintf(stderr, "sam2amg run: %s\n", err.msg);
            goto out;
        }
        if (!cfg.quiet)
            fprintf(stderr, "sam2amg run: working copy %s (%s)\n", db,
                    restored == 2 ? "kept by the last run, newer than the checkpoint"
                    : restored ? "from the last checkpoint" : "new");
    }
    if (store_open(&ws, db, STORE_CREATE, &err) || store_open(&cs, db, 0, &err)) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        goto out;
    }
    /* the database's model and parameters */
    store_run_info last, info = {0};
    static char pbuf[PARAMS_BUF];
    int have_last = store_run_last(ws, &last, &err);
    if (have_last < 0) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        goto out;
    }
    if (!cfg.model_path) {
        if (!have_last) {
            status = cli_usage_error(cmd, "--model WEIGHTS is required for a new database");
            goto out;
        }
        cfg.model_path = last.model_path;
        if (!cfg.config && last.config[0] && strcmp(last.config, "auto")) cfg.config = last.config;
        if (!params_set && amg_params_from_json(&cfg.params, params_amg(last.params, pbuf), &err)) {
            fprintf(stderr, "sam2amg run: %s: runs.params: %s\n", db, err.msg);
            goto out;
        }
    }
    /* points_per_batch not given: the database's last run's, as precision
     * below. It is part of runs.params, and its default depends on the
     * devices (auto on CUDA, 64 on the CPU), so a GPU run resumed on a cpu
     * device with the same command, or the reverse, would otherwise be
     * refused as a parameter change, though the batch does not change the
     * records (OOM halving relies on that too). */
    if (ppb_default && have_last) {
        amg_params lp;
        err_t e = {{0}};
        amg_params_default(&lp);
        if (!amg_params_from_json(&lp, params_amg(last.params, pbuf), &e))
            cfg.params.points_per_batch = lp.points_per_batch;
    }
    /* precision: the flag, else the database's last run's, else the devices' */
    if (precision < 0)
        precision = have_last ? params_precision(last.params) : any_cpu ? BACKEND_FP32 : BACKEND_BF16;
    if (precision == BACKEND_BF16 && any_cpu) {
        status = cli_usage_error(cmd, "this database's run computes in bf16, which the cpu "
                                 "device does not offer (give --devices cuda:N,... or "
                                 "--precision fp32 with another database)");
        goto out;
    }
    cfg.precision = precision;
    amg_params checked = cfg.params;   /* auto is sized by each worker */
    if (checked.points_per_batch == AMG_POINTS_PER_BATCH_AUTO) checked.points_per_batch = 1;
    if (amg_params_validate(&checked, &err)) {
        status = cli_usage_error(cmd, "%s", err.msg);
        goto out;
    }
    params_json(&cfg.params, precision, info.params, sizeof info.params);
    /* --model NAME resolved offline (models.h): runs keeps the name as
     * given and the file it resolved to */
    snprintf(info.model_name, sizeof info.model_name, "%s",
             cfg.model_path == last.model_path ? last.model_name : cfg.model_path);
    int from_cache = 0, config_cached = 0; /* files of a hub-cache snapshot */
    /* a resume keeps the absolute paths its database stored as they are */
    int keep_model = cfg.model_path == last.model_path && cfg.model_path[0] == '/';
    int keep_config = have_last && cfg.config == last.config && cfg.config[0] == '/';
    if (strncmp(cfg.model_path, "test:", 5)) {
        static models_ref mref; /* ~12 KB: off the stack */
        models_opts mo = {.revision = revision, .model_dir = model_dir};
        if (models_resolve(cfg.model_path, &mo, &mref)) {
            if (cfg.model_path == last.model_path) /* a resume: say where the name came from */
                fprintf(stderr, "sam2amg run: %s (the model of the database's last run, '%s'; "
                                "give --model to use another copy)\n", mref.msg, last.model_name);
            else
                fprintf(stderr, "sam2amg run: %s\n", mref.msg);
            goto out;
        }
        if (strlen(mref.path) >= sizeof info.model_path) {
            fprintf(stderr, "sam2amg run: %s: path longer than %zu bytes\n", mref.path,
                    sizeof info.model_path - 1);
            goto out;
        }
        cfg.model_path = mref.path;
        from_cache = mref.src == MODELS_SRC_HF_CACHE;
        if (!cfg.config && mref.config_json[0]) cfg.config = mref.config_json, config_cached = 1;
        else if (!cfg.config && mref.config[0]) cfg.config = mref.config;
    }
    /* runs stores the model and a config file by absolute path, so that a
     * resume without --model works from any folder; a built-in config
     * name and the test model stay names. Messages of this run show the
     * names as given. */
    char *model_abs = keep_model ? strdup(cfg.model_path)
                      : from_cache ? abs_keep_name(cfg.model_path)
                      : strncmp(cfg.model_path, "test:", 5) ? realpath(cfg.model_path, NULL) : NULL;
    /* a built-in name stays a name even beside a folder of that name
     * (sam2_config_load reads it as the built-in) */
    struct stat cst;
    char *config_abs = cfg.config && !(stat(cfg.config, &cst) == 0 && S_ISDIR(cst.st_mode) &&
                                       !strchr(cfg.config, '/'))
                           ? (keep_config     ? strdup(cfg.config)
                              : config_cached ? abs_keep_name(cfg.config)
                                              : realpath(cfg.config, NULL))
                           : NULL;
    /* both buffers are PATH_MAX bytes: a longer path is refused, not cut */
    int model_long = model_abs && strlen(model_abs) >= sizeof info.model_path;
    if (model_long || (config_abs && strlen(config_abs) >= sizeof info.config)) {
        fprintf(stderr, "sam2amg run: %s: the %s's path is longer than %zu bytes\n",
                model_long ? cfg.model_path : cfg.config, model_long ? "model" : "config",
                (model_long ? sizeof info.model_path : sizeof info.config) - 1);
        free(model_abs);
        free(config_abs);
        goto out;
    }
    snprintf(info.model_path, sizeof info.model_path, "%s", model_abs ? model_abs : cfg.model_path);
    snprintf(info.config, sizeof info.config, "%s",
             config_abs ? config_abs : cfg.config ? cfg.config : "auto");
    free(model_abs);
    free(config_abs);
    snprintf(info.devices, sizeof info.devices, "%s", devices);
    if (!strncmp(cfg.model_path, "test:", 5)) {
        snprintf(info.model_sha256, sizeof info.model_sha256, "test");
    } else if (jobs_sha256_file(cfg.model_path, info.model_sha256, &err)) {
        if (cfg.model_path == last.model_path && cfg.model_path[0] != '/')
            fprintf(stderr, "sam2amg run: %s (the database's last run stored this model path "
                            "relative to the folder it ran in: run from there or give --model)\n",
                    err.msg);
        else
            fprintf(stderr, "sam2amg run: %s\n", err.msg);
        goto out;
    }
    /* a shard database keeps its shard */
    {
        int dk, dn;
        int found = jobs_shard_get(ws, &dk, &dn, NULL, &err);
        if (found < 0) {
            fprintf(stderr, "sam2amg run: %s\n", err.msg);
            goto out;
        }
        if (found && shard_n && (dk != shard_k || dn != shard_n)) {
            fprintf(stderr, "sam2amg run: %s holds shard %d/%d, not %s\n",
                    ckpt ? ckpt : db, dk, dn, shard_why);
            goto out;
        }
        if (!found && shard_n) {
            int64_t c4[4];
            if (store_counts(ws, c4, NULL, &err)) {
                fprintf(stderr, "sam2amg run: %s\n", err.msg);
                goto out;
            }
            if (c4[0] + c4[1] + c4[2] + c4[3] > 0) {
                fprintf(stderr, "sam2amg run: %s was made without --shard (it holds every "
                        "image); %s needs a database of its own\n", ckpt ? ckpt : db, shard_why);
                goto out;
            }
            /* recorded before ingest: a run killed right after its ingest
             * still left a shard database */
            if (jobs_shard_set(ws, shard_k, shard_n, 0, &err)) {
                fprintf(stderr, "sam2amg run: %s\n", err.msg);
                goto out;
            }
        }
        if (found && !shard_n) {
            shard_k = dk, shard_n = dn;
            snprintf(shard_why, sizeof shard_why, "shard %d/%d (the database's)", dk, dn);
        }
        if (shard_n) fprintf(stderr, "sam2amg run: %s\n", shard_why);
    }
    if (have_last && (strcmp(last.model_sha256, info.model_sha256) ||
                      !jobs_params_same(last.params, info.params))) {
        fprintf(stderr,
                "sam2amg run: %s: this database was made with %s (sha256 %.12s...) and "
                "parameters %s; this run asks for %s (sha256 %.12s...) and %s: masks of "
                "different models or parameters do not mix, use another database\n",
                db, last.model_path, last.model_sha256, last.params, info.model_path,
                info.model_sha256, info.params);
        goto out;
    }
    /* ingest: every manifest of this command in one transaction, so a
     * manifest that cannot be read leaves none of them half added */
    if (n_manifests) {
        static jobs_ingest_stats ist[256];
        if (store_ingest_begin(ws, &err)) {
            fprintf(stderr, "sam2amg run: %s\n", err.msg);
            goto out;
        }
        for (int i = 0; i < n_manifests; i++) {
            if (jobs_ingest_shard(ws, manifests[i], shard_k, shard_n, &ist[i], &err)) {
                store_ingest_rollback(ws);
                fprintf(stderr, "sam2amg run: %s; no image of this command's manifests was "
                                "added\n", err.msg);
                goto out;
            }
        }
        if (store_ingest_end(ws, &err)) {
            fprintf(stderr, "sam2amg run: %s; no image of this command's manifests was added\n",
                    err.msg);
            goto out;
        }
        for (int i = 0; i < n_manifests && !cfg.quiet; i++) {
            fprintf(stderr, "sam2amg run: %s: %lld new images, %lld already present, %lld bad lines",
                    manifests[i], (long long)ist[i].added, (long long)ist[i].present,
                    (long long)ist[i].bad);
            if (shard_n)
                fprintf(stderr, ", %lld of other shards", (long long)ist[i].other_shard);
            fprintf(stderr, "\n");
        }
    }
    int64_t run_id = 0, reclaimed = 0, abandoned = 0;
    if (store_run_begin(ws, &info, &run_id, &err) ||
        (shard_n && jobs_shard_set(ws, shard_k, shard_n, run_id, &err)) ||
        store_reclaim(ws, cfg.retries + 1, run_id, &reclaimed, &abandoned, &err)) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        goto out;
    }
    /* masks committed by a run that died before its final catch-up */
    if (store_boxes_catch_up(ws, 0, NULL, &err))
        fprintf(stderr, "sam2amg run: warning: mask_boxes not brought up to date: %s\n", err.msg);
    if (reclaimed + abandoned && !cfg.quiet)
        fprintf(stderr, "sam2amg run: reclaimed %lld images of a run that stopped without "
                        "finishing them (%lld out of attempts: failed)\n",
                (long long)reclaimed, (long long)abandoned);
    checkpoint_ctx ck = {cs, ckpt, cfg.quiet};
    if (ckpt) {
        cfg.checkpoint = checkpoint_now;
        cfg.checkpoint_ctx = &ck;
        cfg.checkpoint_images = ck_images;
        cfg.checkpoint_s = ck_secs;
    }
    jobs_stats st;
    int rc = jobs_run(cs, ws, run_id, &cfg, &stop_flag, &st, &err);
    /* after the writer's last commit (also after Ctrl-C): the R*Tree takes
     * the run's masks in bulk, off the writer's path */
    err_t eb = {{0}};
    /* after a run-level error only that error is reported (one line); the
     * next run catches the boxes up at its start */
    if (store_boxes_catch_up(ws, 0, NULL, &eb) && !rc)
        fprintf(stderr, "sam2amg run: warning: mask_boxes not brought up to date: %s\n", eb.msg);
    int64_t counts[4], masks;
    if (rc) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        /* the images' volume went away: nothing was failed for it; a
         * rerun (a requeue) resumes once it is back */
        status = st.storage_gone ? JOBS_EXIT_REQUEUE : EXIT_DATA;
    } else if (st.interrupted) {
        status = stop_signal == SIGINT ? EXIT_INTERRUPTED : JOBS_EXIT_REQUEUE;
    } else if (store_counts(ws, counts, &masks, &err)) {
        fprintf(stderr, "sam2amg run: %s\n", err.msg);
        status = EXIT_DATA;
    } else {
        status = counts[IMAGE_STATUS_FAILED] ? EXIT_PARTIAL : EXIT_OK;
    }
    if (!cfg.quiet)
        fprintf(stderr, "sam2amg run: %lld images done (%lld masks), %lld failed, %lld retried%s\n",
                (long long)st.done, (long long)st.masks, (long long)st.failed,
                (long long)st.retried, st.interrupted ? "; interrupted, resume with the same command" : "");
    /* the GPUs' busy share as the driver measured it (schema 006) */
    for (int g = 0; g < st.n_gpus; g++) {
        const gpumon_stat *gs = &st.gpus[g];
        char dev[32];
        snprintf(dev, sizeof dev, "cuda:%d", gs->ordinal);
        if (cfg.verbose && gs->samples > 0)
            fprintf(stderr, "sam2amg run: %s: GPU busy %.0f%% (NVML utilization, the mean of %d "
                    "readings over %.1f s)\n", dev, 100.0 * gs->busy, gs->samples, gs->seconds);
        else if (cfg.verbose) /* unknown, not idle: no row is stored either */
            fprintf(stderr, "sam2amg run: %s: GPU busy not measured: NVML gave no utilization "
                    "reading in %.1f s\n", dev, gs->seconds);
        if (cfg.verbose && gs->mem_peak > 0)
            fprintf(stderr, "sam2amg run: %s: GPU memory peak %.0f MiB of %.0f MiB (NVML, every "
                    "process on the device)\n", dev, gs->mem_peak / 1048576.0,
                    gs->mem_total / 1048576.0);
        err_t eg = {{0}};
        if (gs->samples > 0 &&
            store_run_gpu(ws, run_id, dev, gs->busy, gs->samples, gs->seconds, &eg))
            fprintf(stderr, "sam2amg run: warning: %s's busy share not recorded: %s\n", dev,
                    eg.msg);
    }
    if (st.gpu_note[0] && cfg.verbose)
        fprintf(stderr, "sam2amg run: GPU busy not measured: %s\n", st.gpu_note);
    err_t e2;
    store_run_end(ws, run_id, status, &e2);
    /* the last checkpoint: everything committed, the run's end included */
    if (ckpt) {
        ck.s = ws;
        if (checkpoint_now(&ck, &err)) {
            fprintf(stderr, "sam2amg run: %s; the working copy %s is kept, and the next run on "
                    "this node goes on from it\n", err.msg, db);
            jobs_local_keep(db);
            status = EXIT_DATA;
        } else {
            store_close(cs);
            store_close(ws);
            cs = ws = NULL;
            jobs_local_remove(db);
        }
    }
out:
    store_close(cs);
    store_close(ws);
    close(lock);
    free(local);
    return status;
}

/* ---- status ---- */

/* status_stages: the model's stages per image (schema/005_stages.sql) of
 * the aggregate row sg (columns 4..9) and each worker's busy share of the
 * run's wall time sec: encoder + decoder + post-processing, device work
 * included, host work too ("model busy": on a GPU the driver's own
 * measurement is status_gpus'). Images finished before 005
 * have no stages (NULL): the means cover those that have them. Returns
 * SQLITE_ROW (go on) or an SQLite error code, *what naming the query. */
static int status_stages(sqlite3 *h, FILE *f, sqlite3_stmt *sg, int64_t run, double sec,
                         const char *devs, const char **what) {
    int64_t with = sqlite3_column_int64(sg, 8), all = sqlite3_column_int64(sg, 9);
    if (with == 0) {
        fprintf(f, "model stages per image: not recorded (images finished before schema 005)\n");
        return SQLITE_ROW;
    }
    fprintf(f, "model stages per image: encoder %.3f s, decoder %.3f s, post-processing %.3f s; "
               "waiting on the writer %.3f s", sqlite3_column_double(sg, 4),
            sqlite3_column_double(sg, 5), sqlite3_column_double(sg, 6),
            sqlite3_column_double(sg, 7));
    if (with < all) fprintf(f, " (%lld of %lld images have them)", (long long)with, (long long)all);
    fprintf(f, "\n");
    sqlite3_stmt *sw = NULL;
    *what = "reading the last run's workers";
    int r = sqlite3_prepare_v2(h, "SELECT worker, count(*), sum(t_encode + t_decode + t_post) "
                                  "FROM images WHERE run_id = ?1 AND status = 'done' AND "
                                  "worker IS NOT NULL AND t_encode IS NOT NULL GROUP BY worker "
                                  "ORDER BY worker", -1, &sw, NULL);
    if (r == SQLITE_OK) r = sqlite3_bind_int64(sw, 1, run);
    while (r == SQLITE_OK || r == SQLITE_ROW) {
        if ((r = sqlite3_step(sw)) != SQLITE_ROW) break;
        int w = sqlite3_column_int(sw, 0);
        /* its device: item w of runs.devices ("cpu,cuda:0,...") */
        char dev[32] = "?";
        const char *d = devs ? devs : "";
        for (int k = 0; k < w && d; k++) d = strchr(d, ',') ? strchr(d, ',') + 1 : NULL;
        if (d && *d) snprintf(dev, sizeof dev, "%.*s", (int)strcspn(d, ","), d);
        double busy = sec > 0 ? sqlite3_column_double(sw, 2) / sec : 0;
        long long ni = (long long)sqlite3_column_int64(sw, 1);
        fprintf(f, "worker %d (%s): model busy %.0f%%, %lld image%s\n", w, dev,
                100.0 * (busy > 1 ? 1 : busy), ni,
                ni == 1 ? "" : "s");
    }
    sqlite3_finalize(sw);
    return r == SQLITE_DONE ? SQLITE_ROW : r;
}

/* status_gpus: the run's GPUs as the driver measured them (schema 006;
 * an unmigrated database has no table: nothing to say). SQLITE_DONE or an
 * SQLite error code, *what naming the query. */
static int status_gpus(sqlite3 *h, FILE *f, int64_t run, const char **what) {
    if (sqlite3_table_column_metadata(h, "main", "run_gpus", "busy", NULL, NULL, NULL, NULL,
                                      NULL) != SQLITE_OK)
        return SQLITE_DONE;
    *what = "reading the last run's GPUs";
    sqlite3_stmt *q = NULL;
    int r = sqlite3_prepare_v2(h, "SELECT device, busy, samples, seconds FROM run_gpus WHERE "
                                  "run_id = ?1 ORDER BY device", -1, &q, NULL);
    if (r == SQLITE_OK) r = sqlite3_bind_int64(q, 1, run);
    while (r == SQLITE_OK || r == SQLITE_ROW) {
        if ((r = sqlite3_step(q)) != SQLITE_ROW) break;
        const char *dev = (const char *)sqlite3_column_text(q, 0);
        if (!dev && sqlite3_errcode(h) == SQLITE_NOMEM) {
            r = SQLITE_NOMEM;
            break;
        }
        fprintf(f, "%s: GPU busy %.0f%% (NVML utilization, the mean of %lld readings over "
                   "%.1f s)\n", dev ? dev : "?", 100.0 * sqlite3_column_double(q, 1),
                (long long)sqlite3_column_int64(q, 2), sqlite3_column_double(q, 3));
    }
    sqlite3_finalize(q);
    return r;
}

/* status_report: the report of status into f; ERR_IO (err says which
 * query) when a read fails part way: nothing partial is printed as if it
 * were the whole. */
static int status_report(store_t *s, FILE *f, err_t *err) {
    int64_t c[4], masks;
    int rc = store_counts(s, c, &masks, err);
    if (rc) return rc;
    int64_t total = c[0] + c[1] + c[2] + c[3];
    fprintf(f, "images: %lld  pending %lld  running %lld  done %lld  failed %lld\nmasks: %lld\n",
            (long long)total, (long long)c[0], (long long)c[1], (long long)c[2], (long long)c[3],
            (long long)masks);
    sqlite3_stmt *st = NULL;
    sqlite3 *h = store_db(s);
    const char *what = "reading the last run";
    int r = sqlite3_prepare_v2(h, "SELECT run_id, images_done, images_failed, masks, seconds, "
                                  "finished_at IS NULL FROM run_summary WHERE images_done + "
                                  "images_failed > 0 ORDER BY run_id DESC LIMIT 1", -1, &st, NULL);
    if (r == SQLITE_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t done = sqlite3_column_int64(st, 1);
        double sec = sqlite3_column_double(st, 4);
        double ips = sec > 0 ? done / sec : 0;
        fprintf(f, "last working run: #%lld%s, %lld done, %lld failed, %lld masks in %.1f s "
                   "(%.2f images/s)", (long long)sqlite3_column_int64(st, 0),
                sqlite3_column_int(st, 5) ? " (not finished)" : "", (long long)done,
                (long long)sqlite3_column_int64(st, 2), (long long)sqlite3_column_int64(st, 3),
                sec, ips);
        int64_t left = c[0] + c[1];
        /* seconds come from the database's times: a clock far off (or an
         * edited runs row) can make the ETA too large for an integer */
        double eta = ips > 0 && left > 0 ? left / ips : -1;
        if (eta >= 0 && eta < 1e5 * 3600) {
            int64_t s2 = (int64_t)eta;
            fprintf(f, ", ETA %lld:%02lld:%02lld for %lld left", (long long)(s2 / 3600),
                    (long long)(s2 / 60 % 60), (long long)(s2 % 60), (long long)left);
        } else if (eta >= 0) {
            fprintf(f, ", ETA over 100000 h for %lld left", (long long)left);
        }
        fprintf(f, "\n");
        int64_t run = sqlite3_column_int64(st, 0);
        r = sqlite3_step(st);   /* LIMIT 1: SQLITE_DONE */
        /* its stages per image, and how busy its workers were: the share
         * of workers x seconds spent generating (encoder, decoder and
         * post-processing; decoding and preprocessing run beside them) */
        sqlite3_stmt *sg = NULL;
        if (r == SQLITE_DONE) {
            what = "reading the last run's stages";
            /* status opens read-only: a database of schema 004 or older
             * (not yet migrated by a run) has no stage columns */
            int stages = sqlite3_table_column_metadata(h, "main", "images", "t_encode", NULL, NULL,
                                                       NULL, NULL, NULL) == SQLITE_OK;
            r = sqlite3_prepare_v2(h, stages
                    ? "SELECT avg(i.t_load), avg(i.t_generate), sum(i.t_generate), "
                      "(SELECT devices FROM runs WHERE id = ?1), avg(i.t_encode), "
                      "avg(i.t_decode), avg(i.t_post), avg(i.t_write), count(i.t_encode), "
                      "count(*) FROM images i WHERE i.run_id = ?1 AND i.status = 'done'"
                    : "SELECT avg(i.t_load), avg(i.t_generate), sum(i.t_generate), "
                      "(SELECT devices FROM runs WHERE id = ?1), NULL, NULL, NULL, NULL, 0, "
                      "count(*) FROM images i WHERE i.run_id = ?1 AND i.status = 'done'",
                    -1, &sg, NULL);
            if (r == SQLITE_OK) r = sqlite3_bind_int64(sg, 1, run);
            if (r == SQLITE_OK && (r = sqlite3_step(sg)) == SQLITE_ROW) {
                if (sqlite3_column_type(sg, 0) != SQLITE_NULL) {
                    const char *devs = (const char *)sqlite3_column_text(sg, 3);
                    int workers = 1;
                    for (const char *d = devs ? devs : ""; *d; d++) workers += *d == ',';
                    double busy = sec > 0 ? sqlite3_column_double(sg, 2) / (sec * workers) : 0;
                    fprintf(f, "stages per image: load %.3f s (decode pool), generate %.3f s "
                               "(worker); %d worker%s (%s) busy %.0f%%\n",
                            sqlite3_column_double(sg, 0), sqlite3_column_double(sg, 1), workers,
                            workers == 1 ? "" : "s", devs ? devs : "?",
                            100.0 * (busy > 1 ? 1 : busy));
                    r = status_stages(h, f, sg, run, sec, devs, &what);
                }
                if (r == SQLITE_ROW) r = sqlite3_step(sg);   /* one aggregate row: SQLITE_DONE */
            }
            sqlite3_finalize(sg);
        }
        if (r == SQLITE_DONE) r = status_gpus(h, f, run, &what);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (r == SQLITE_DONE) {
        what = "reading the last errors";
        r = sqlite3_prepare_v2(h, "SELECT path, error FROM images WHERE status = 'failed' "
                                  "ORDER BY finished_at DESC, id DESC LIMIT 10", -1, &st, NULL);
        for (int first = 1; r == SQLITE_OK || r == SQLITE_ROW;) {
            if ((r = sqlite3_step(st)) != SQLITE_ROW) break;
            if (first) fprintf(f, "last errors:\n"), first = 0;
            /* errors name their file already; others get the path */
            const char *p = (const char *)sqlite3_column_text(st, 0),
                       *e = (const char *)sqlite3_column_text(st, 1);
            if (!p && sqlite3_errcode(h) == SQLITE_NOMEM) {
                r = SQLITE_NOMEM;
                break;
            }
            if (e && p && strstr(e, p)) fprintf(f, "  %s\n", e);
            else fprintf(f, "  %s: %s\n", p ? p : "?", e ? e : "?");
        }
        sqlite3_finalize(st);
    }
    if (r != SQLITE_DONE)
        return err_set(err, r == SQLITE_NOMEM ? ERR_NOMEM : r == SQLITE_BUSY ? ERR_BUSY : ERR_IO,
                       "%s: %s", what, r == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(h));
    return 0;
}

int cmd_status(int argc, char **argv) {
    const char *db = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: sam2amg status DB\n\nImages per status, masks, the last run's "
                   "throughput, ETA, stages per image\n(load, generate; encoder, decoder, "
                   "post-processing, waiting on the writer),\neach worker's busy share (GPU "
                   "busy on cuda), and the last errors.\n");
            return EXIT_OK;
        }
        if (argv[i][0] == '-') return cli_usage_error("status", "unknown option '%s'", argv[i]);
        if (db) return cli_usage_error("status", "unexpected argument '%s'", argv[i]);
        db = argv[i];
    }
    if (!db) return cli_usage_error("status", "the database DB is required");
    store_t *s = NULL;
    err_t err = {{0}};
    if (store_open(&s, db, STORE_READONLY, &err)) {
        fprintf(stderr, "sam2amg status: %s\n", err.msg);
        return EXIT_DATA;
    }
    /* the report is made in memory and printed whole, or not at all */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int rc = f ? status_report(s, f, &err) : err_set(&err, ERR_NOMEM, "out of memory");
    if (f && fclose(f) && !rc) rc = err_set(&err, ERR_NOMEM, "out of memory");
    store_close(s);
    if (rc) {
        fprintf(stderr, "sam2amg status: %s: %s\n", db, err.msg);
        free(text);
        return EXIT_DATA;
    }
    fwrite(text, 1, len, stdout);
    free(text);
    return EXIT_OK;
}

/* ---- sql ---- */

/* mentions: whether text contains word, ASCII case-insensitively. */
static int mentions(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = text; *p; p++)
        if (!strncasecmp(p, word, n)) return 1;
    return 0;
}

/* sql_catch_up_boxes: bring mask_boxes up to date before the user's query
 * (so R*Tree queries see every mask), through a short-lived write
 * connection. A database that cannot be written (read-only file or
 * directory, locked past the busy timeout) is queried as it is; this is
 * said on stderr only when the query uses mask_boxes. */
static void sql_catch_up_boxes(const char *db, const char *sql) {
    store_t *w = NULL;
    err_t err = {{0}};
    if (access(db, F_OK) != 0) return;   /* store_open (read-only) reports it */
    if (!store_open(&w, db, 0, &err)) {
        sqlite3_busy_timeout(store_db(w), 2000);
        store_boxes_catch_up(w, 0, NULL, &err);
    }
    store_close(w);
    if (err.msg[0] && mentions(sql, "mask_boxes"))
        fprintf(stderr, "sam2amg sql: note: mask_boxes may miss the newest masks (%s)\n",
                err.msg);
}

int cmd_sql(int argc, char **argv) {
    const char *db = NULL, *sql = NULL;
    int header = 0, write = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: sam2amg sql DB [--header] [--write] \"SQL\"\n\n"
                   "Run SQL on a job database with the rle_* functions registered (rle_area,\n"
                   "rle_iou, rle_intersection, rle_contains, rle_bbox, rle_width, rle_height,\n"
                   "rle_to_png). Rows are printed with '|' between columns, like sqlite3.\n"
                   "The database is opened read-only unless --write. Before the query,\n"
                   "mask_boxes (the R*Tree) is brought up to date with masks when the\n"
                   "database can be written.\n");
            return EXIT_OK;
        }
        if (!strcmp(a, "--header")) header = 1;
        else if (!strcmp(a, "--write")) write = 1;
        else if (a[0] == '-' && a[1]) return cli_usage_error("sql", "unknown option '%s'", a);
        else if (!db) db = a;
        else if (!sql) sql = a;
        else return cli_usage_error("sql", "unexpected argument '%s'", a);
    }
    if (!db || !sql) return cli_usage_error("sql", "DB and SQL are required");
    store_t *s = NULL;
    err_t err = {{0}};
    sql_catch_up_boxes(db, sql);
    if (store_open(&s, db, write ? 0 : STORE_READONLY, &err)) {
        fprintf(stderr, "sam2amg sql: %s\n", err.msg);
        return EXIT_DATA;
    }
    sqlite3 *h = store_db(s);
    const char *tail = sql;
    int status = EXIT_OK;
    while (tail && *tail) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(h, tail, -1, &st, &tail) != SQLITE_OK) {
            fprintf(stderr, "sam2amg sql: %s\n", sqlite3_errmsg(h));
            status = EXIT_DATA;
            break;
        }
        if (!st) continue;
        int nc = sqlite3_column_count(st), rc, row = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (header && row++ == 0)
                for (int c = 0; c < nc; c++)
                    printf("%s%s", sqlite3_column_name(st, c), c + 1 < nc ? "|" : "\n");
            for (int c = 0; c < nc; c++) {
                int t = sqlite3_column_type(st, c);
                if (t == SQLITE_BLOB) printf("<blob %d bytes>", sqlite3_column_bytes(st, c));
                else if (t != SQLITE_NULL) fputs((const char *)sqlite3_column_text(st, c), stdout);
                fputs(c + 1 < nc ? "|" : "\n", stdout);
            }
        }
        if (rc != SQLITE_DONE) {
            fprintf(stderr, "sam2amg sql: %s\n", sqlite3_errmsg(h));
            status = EXIT_DATA;
        }
        sqlite3_finalize(st);
        if (status) break;
    }
    store_close(s);
    return status;
}

/* ---- export ---- */

static int write_overlay_png(const char *out, const char *image_path, const amg_result *res,
                             int64_t max_pixels, err_t *err) {
    image_t img = {0};
    int rc = jobs_load_image(&img, image_path, max_pixels, err);
    if (rc) return rc;
    if (img.w != res->width || img.h != res->height) {
        int w = img.w, h = img.h; /* image_free zeroes them */
        image_free(&img);
        return err_set(err, ERR_FORMAT, "%s: now %dx%d, the masks are %dx%d", image_path, w, h,
                       res->width, res->height);
    }
    rc = amg_draw_overlay(img.rgb, img.w, img.h, res, err);
    if (!rc) rc = image_write_png(out, img.rgb, img.w, img.h, 3, err);
    image_free(&img);
    return rc;
}

/* ---- export names ----
 *
 * SA-1B and PNG exports name each file after its image, deterministically
 * from the set of done images (never from what the folder holds), so a
 * second export into the same folder replaces its own files: STEM.EXT
 * when no other done image has the same STEM (the file name without its
 * last extension), STEM_ID.EXT (ID = images.id) for every image of a
 * shared STEM, and for an image whose STEM looks like another's STEM_ID.
 * Two STEM_ID names cannot collide (ID has no '_'), so names are unique.
 * COCO names each image by its path relative to the deepest folder that
 * holds every exported image (file_name is unique because paths are).
 * Every file is written to a temporary name in the target folder and
 * renamed into place: an export never leaves a half-written file. */
typedef struct export_image {
    int64_t id;
    int     w, h;
    char   *path;       /* file name bytes, unescaped, malloc'd */
    char   *stem;       /* basename without its last extension, malloc'd */
    int     use_id;     /* name STEM_ID */
} export_image;

/* path_join3: malloc'd a + b + c; NULL when out of memory. */
static char *path_join3(const char *a, const char *b, const char *c) {
    int64_t n = 1;
    if (!size_add(n, (int64_t)strlen(a), &n) || !size_add(n, (int64_t)strlen(b), &n) ||
        !size_add(n, (int64_t)strlen(c), &n))
        return NULL;
    char *p = malloc((size_t)n);
    if (p) snprintf(p, (size_t)n, "%s%s%s", a, b, c);
    return p;
}

static int cmp_stem(const void *a, const void *b) {
    const export_image *x = *(export_image *const *)a, *y = *(export_image *const *)b;
    int c = strcmp(x->stem, y->stem);
    return c ? c : (x->id > y->id) - (x->id < y->id);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* export_names: set use_id for the images of n (see the comment above).
 * ERR_NOMEM when out of memory. */
static int export_names(export_image *im, int64_t n, err_t *err) {
    if (n == 0) return 0;
    export_image **by = malloc((size_t)n * sizeof *by);
    if (!by) return err_set(err, ERR_NOMEM, "out of memory (names of %lld images)", (long long)n);
    for (int64_t i = 0; i < n; i++) by[i] = &im[i];
    qsort(by, (size_t)n, sizeof *by, cmp_stem);
    int64_t n_id = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && !strcmp(by[j]->stem, by[i]->stem)) j++;
        if (j - i > 1)
            for (int64_t k = i; k < j; k++) by[k]->use_id = 1, n_id++;
        i = j;
    }
    /* a unique STEM equal to another image's STEM_ID takes its ID too */
    int rc = 0;
    if (n_id) {
        char **ids = calloc((size_t)n_id, sizeof *ids);
        int64_t k = 0;
        for (int64_t i = 0; ids && i < n; i++)
            if (im[i].use_id) {
                char num[32];
                snprintf(num, sizeof num, "_%lld", (long long)im[i].id);
                if (!(ids[k++] = path_join3(im[i].stem, num, ""))) break;
            }
        if (!ids || (k && !ids[k - 1])) {
            rc = err_set(err, ERR_NOMEM, "out of memory (names of %lld images)", (long long)n);
        } else {
            qsort(ids, (size_t)n_id, sizeof *ids, cmp_str);
            for (int64_t i = 0; i < n; i++)
                if (!im[i].use_id && bsearch(&im[i].stem, ids, (size_t)n_id, sizeof *ids, cmp_str))
                    im[i].use_id = 1;
        }
        for (int64_t i = 0; ids && i < k; i++) free(ids[i]);
        free(ids);
    }
    free(by);
    return rc;
}

/* export_file_name: DIR/NAME.EXT of image im, malloc'd; NULL with err when
 * NAME.EXT is longer than a file name may be (255 bytes). */
static char *export_file_name(const char *dir, const export_image *im, const char *ext,
                              err_t *err) {
    char tail[64];
    if (im->use_id) snprintf(tail, sizeof tail, "_%lld.%s", (long long)im->id, ext);
    else snprintf(tail, sizeof tail, ".%s", ext);
    if (strlen(im->stem) + strlen(tail) > 255) {
        /* the reason first: a deep path would push it out of the message */
        err_set(err, ERR_INVALID, "image %lld: its export name (%.40s...%s) would be longer "
                "than 255 bytes; not exported: %s", (long long)im->id, im->stem, tail, im->path);
        return NULL;
    }
    char *d = path_join3(dir, "/", im->stem);
    char *f = d ? path_join3(d, tail, "") : NULL;
    free(d);
    if (!f) err_set(err, ERR_NOMEM, "image %lld: out of memory", (long long)im->id);
    return f;
}

/* common_root_len: bytes of the deepest folder (with its trailing '/')
 * that holds every path of im; 0 when there is none in common. */
static size_t common_root_len(const export_image *im, int64_t n) {
    if (n == 0) return 0;
    const char *r = im[0].path;
    const char *last = strrchr(r, '/');
    size_t len = last ? (size_t)(last - r) + 1 : 0;
    for (int64_t i = 1; i < n && len; i++) {
        size_t m = 0;
        while (m < len && im[i].path[m] == r[m]) m++;
        if (m < len) {
            while (m > 0 && r[m - 1] != '/') m--;
            len = m;
        }
    }
    return len;
}

/* coco_record: one annotation. bbox is pycocotools' toBbox form: [x, y,
 * width, height] with width and height the pixel extent (x1 - x0 + 1 of the
 * inclusive last pixel), [0, 0, 0, 0] for an empty mask; the store and the
 * SA-1B export keep the official generator's x1 - x0. */
static void coco_record(FILE *f, int64_t ann_id, int64_t image_id, const amg_record *m, int h,
                        int w) {
    char a[JSON_DOUBLE_BUF];
    fprintf(f, "{\"id\": %lld, \"image_id\": %lld, \"category_id\": 1, \"segmentation\": "
               "{\"size\": [%d, %d], \"counts\": ",
            (long long)ann_id, (long long)image_id, h, w);
    json_write_string(f, m->rle);
    fprintf(f, "}, \"area\": %lld, \"bbox\": [", (long long)m->area);
    double box[4] = {0, 0, 0, 0};
    if (m->area > 0)
        box[0] = m->bbox[0], box[1] = m->bbox[1], box[2] = m->bbox[2] + 1, box[3] = m->bbox[3] + 1;
    for (int k = 0; k < 4; k++) fprintf(f, "%s%s", k ? ", " : "", json_fmt_double(a, box[k]));
    fprintf(f, "], \"iscrowd\": 0, \"score\": %s", json_fmt_double(a, m->predicted_iou));
    fprintf(f, ", \"predicted_iou\": %s", json_fmt_double(a, m->predicted_iou));
    fprintf(f, ", \"stability_score\": %s", json_fmt_double(a, m->stability_score));
    fprintf(f, ", \"point_coords\": [[%s", json_fmt_double(a, m->point[0]));
    fprintf(f, ", %s]], \"crop_box\": [", json_fmt_double(a, m->point[1]));
    for (int k = 0; k < 4; k++) fprintf(f, "%s%s", k ? ", " : "", json_fmt_double(a, m->crop_box[k]));
    fprintf(f, "]}");
}

/* export_load_images: every done image (id order) with its stem. */
static int export_load_images(store_t *s, export_image **out, int64_t *n, err_t *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(store_db(s), "SELECT id, path, width, height FROM images "
                                        "WHERE status = 'done' ORDER BY id", -1, &st, NULL) != SQLITE_OK)
        return err_set(err, ERR_IO, "reading images: %s", sqlite3_errmsg(store_db(s)));
    int64_t cap = 0;
    export_image *im = NULL;
    int rc, nomem = 0;
    while (!nomem && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t bytes;
            export_image *p = NULL;
            if (size_bytes(cap ? 2 * cap : 256, sizeof *im, &bytes)) p = realloc(im, bytes);
            if (!p) {
                nomem = 1;
                break;
            }
            cap = cap ? 2 * cap : 256;
            im = p;
        }
        export_image *e = &im[(*n)++];
        memset(e, 0, sizeof *e);
        e->id = sqlite3_column_int64(st, 0);
        const char *path = (const char *)sqlite3_column_text(st, 1);
        if (!path || !(e->path = strdup(path))) {   /* NULL text: SQLite ran out of memory */
            nomem = 1;
            break;
        }
        store_path_unescape(e->path);
        e->w = sqlite3_column_int(st, 2);
        e->h = sqlite3_column_int(st, 3);
        const char *slash = strrchr(e->path, '/');
        if (!(e->stem = strdup(slash ? slash + 1 : e->path))) {
            nomem = 1;
            break;
        }
        char *dot = strrchr(e->stem, '.');
        if (dot && dot != e->stem) *dot = 0;
    }
    sqlite3_finalize(st);
    *out = im;
    if (nomem)
        return err_set(err, ERR_NOMEM, "reading images: out of memory after %lld images",
                       (long long)*n);
    if (rc != SQLITE_DONE)
        return err_set(err, ERR_IO, "reading images: %s", sqlite3_errmsg(store_db(s)));
    return 0;
}

static void export_free_images(export_image *im, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(im[i].path), free(im[i].stem);
    free(im);
}

/* export_coco: the whole dataset into a temporary file, renamed onto out
 * when complete. */
static int export_coco(store_t *s, const char *out, export_image *im, int64_t n) {
    err_t err = {{0}};
    char tmp[OUTFILE_TMP_MAX];
    FILE *f = outfile_open(out, tmp, &err);
    if (!f) {
        fprintf(stderr, "sam2amg export: %s\n", err.msg);
        return EXIT_DATA;
    }
    size_t root = common_root_len(im, n);
    int status = EXIT_OK;
    fputs("{\"info\": {\"description\": \"sam2amg export\"}, \"images\": [", f);
    for (int64_t i = 0; i < n; i++) {
        fprintf(f, "%s{\"id\": %lld, \"file_name\": ", i ? ", " : "", (long long)im[i].id);
        json_write_string(f, im[i].path + root);
        fprintf(f, ", \"width\": %d, \"height\": %d}", im[i].w, im[i].h);
    }
    fputs("], \"annotations\": [", f);
    int64_t ann = 0;
    for (int64_t i = 0; i < n; i++) {
        amg_result res;
        if (store_load_result(s, im[i].id, &res, &err)) {
            fprintf(stderr, "sam2amg export: %s\n", err.msg);
            status = EXIT_DATA;
            store_result_free(&res);
            continue;
        }
        for (int k = 0; k < res.n; k++) {
            if (ann) fputs(", ", f);
            coco_record(f, ++ann, im[i].id, &res.recs[k], res.height, res.width);
        }
        store_result_free(&res);
    }
    fputs("], \"categories\": [{\"id\": 1, \"name\": \"object\"}]}\n", f);
    /* renamed onto out only when every image's masks were read: a failed
     * export leaves the old file whole and no partial one */
    if (outfile_close(f, tmp, out, status == EXIT_OK ? 0 : ERR_IO, &err) && status == EXIT_OK) {
        fprintf(stderr, "sam2amg export: %s\n", err.msg);
        status = EXIT_DATA;
    }
    return status;
}

int cmd_export(int argc, char **argv) {
    const char *db = NULL, *format = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: sam2amg export DB --format sa1b|coco|png OUT\n\n"
                   "  sa1b  OUT is a directory: one JSON per done image, the bytes `sam2amg\n"
                   "        generate` writes for it (STEM.json; STEM_ID.json for every image\n"
                   "        whose STEM another done image shares)\n"
                   "  coco  OUT is a file: a COCO dataset with every done image's masks as\n"
                   "        annotations (category 1, score = predicted_iou, bbox as\n"
                   "        pycocotools computes it); file_name is the image's path relative\n"
                   "        to the deepest folder holding every exported image\n"
                   "  png   OUT is a directory: the images with their masks overlaid (STEM.png,\n"
                   "        STEM_ID.png as for sa1b)\n"
                   "Names depend only on the database: exporting again replaces the same files.\n"
                   "Each file is written under a temporary name and renamed into place.\n");
            return EXIT_OK;
        }
        if (!strcmp(a, "--format")) {
            if (i + 1 >= argc) return cli_usage_error("export", "--format needs a value");
            format = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("export", "unknown option '%s'", a);
        } else if (!db) {
            db = a;
        } else if (!out) {
            out = a;
        } else {
            return cli_usage_error("export", "unexpected argument '%s'", a);
        }
    }
    if (!db || !format || !out) return cli_usage_error("export", "DB, --format and OUT are required");
    if (strcmp(format, "sa1b") && strcmp(format, "coco") && strcmp(format, "png"))
        return cli_usage_error("export", "--format: '%s' is not sa1b, coco or png", format);
    store_t *s = NULL;
    err_t err = {{0}};
    if (store_open(&s, db, STORE_READONLY, &err)) {
        fprintf(stderr, "sam2amg export: %s\n", err.msg);
        return EXIT_DATA;
    }
    export_image *im = NULL;
    int64_t n = 0;
    if (export_load_images(s, &im, &n, &err)) {
        fprintf(stderr, "sam2amg export: %s: %s\n", db, err.msg);
        export_free_images(im, n);
        store_close(s);
        return EXIT_DATA;
    }
    int status = EXIT_OK;
    if (!strcmp(format, "coco")) {
        /* FILE's folder is created with its parents, as sa1b and png create
         * their DIR */
        char *dir = strdup(out);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        int mk = dir ? 0 : err_set(&err, ERR_NOMEM, "out of memory");
        if (slash && slash != dir) {
            *slash = 0;
            mk = cli_mkdir_p(dir, &err);
        }
        free(dir);
        if (mk) {
            fprintf(stderr, "sam2amg export: %s\n", err.msg);
            export_free_images(im, n);
            store_close(s);
            return EXIT_DATA;
        }
        status = export_coco(s, out, im, n);
        export_free_images(im, n);
        store_close(s);
        return status;
    }
    if (cli_mkdir_p(out, &err)) {
        fprintf(stderr, "sam2amg export: %s\n", err.msg);
        export_free_images(im, n);
        store_close(s);
        return EXIT_DATA;
    }
    if (export_names(im, n, &err)) {
        fprintf(stderr, "sam2amg export: %s\n", err.msg);
        export_free_images(im, n);
        store_close(s);
        return EXIT_DATA;
    }
    int sa1b = !strcmp(format, "sa1b");
    for (int64_t i = 0; i < n; i++) {
        char *file = export_file_name(out, &im[i], sa1b ? "json" : "png", &err);
        amg_result res = {0};
        int rc = file ? store_load_result(s, im[i].id, &res, &err) : ERR_INVALID;
        char tmp[OUTFILE_TMP_MAX];
        if (!rc) rc = outfile_tmp_name(file, tmp, &err);
        if (!rc) {
            if (sa1b) {
                const char *slash = strrchr(im[i].path, '/');
                FILE *f = fopen(tmp, "wb");
                if (!f) {
                    rc = err_set(&err, ERR_IO, "%s: cannot create: %s", file, strerror(errno));
                } else {
                    rc = amg_write_json(f, slash ? slash + 1 : im[i].path, &res);
                    if (rc) rc = err_set(&err, ERR_IO, "%s: write failed", file);
                    rc = outfile_close(f, tmp, file, rc, &err);
                }
            } else {
                rc = outfile_commit(tmp, file, write_overlay_png(tmp, im[i].path, &res, 0, &err), &err);
            }
        }
        store_result_free(&res);
        free(file);
        if (rc) {
            fprintf(stderr, "sam2amg export: %s\n", err.msg);
            status = EXIT_DATA;
        }
    }
    export_free_images(im, n);
    store_close(s);
    return status;
}
