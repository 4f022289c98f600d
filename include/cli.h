/* cli.h: the subcommands of build/sam2amg and the flag helpers they share.
 *
 * Each command is `int cmd_NAME(int argc, char **argv)` with argv[0] the
 * command name; it returns the process exit status: 0 success, 1 a data
 * error (bad image, bad checkpoint: the message went to stderr), 2 a usage
 * error (bad flag or value), 3 some images of a run failed (run/generate),
 * 130 interrupted.
 */
#ifndef SAM2AMG_CLI_H
#define SAM2AMG_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "models.h"

#define SAM2AMG_VERSION "0.1.0"

enum { EXIT_OK = 0, EXIT_DATA = 1, EXIT_USAGE = 2, EXIT_PARTIAL = 3, EXIT_INTERRUPTED = 130 };

int cmd_dump(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_sql(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_merge(int argc, char **argv);

/* cli_usage_error: print "sam2amg CMD: MESSAGE" and a hint to --help on
 * stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* cli_looks_like_flag: s is "--something" or a one-letter "-o": taken as
 * a forgotten value ("--model --config x", "--model -o x") rather than a
 * file name. */
int cli_looks_like_flag(const char *s);

/* cli_mkdir_p: create directory path and its missing parents (mode 0755,
 * like `mkdir -p`); an existing directory is fine. ERR_IO with "PATH:
 * reason" (naming the component that failed) otherwise. */
int cli_mkdir_p(const char *path, err_t *err);

/* Strict number parsing for flag values: the whole string must be a number
 * in [lo, hi]; otherwise a usage error naming the flag. 0 ok, -1 error
 * (message printed). */
int cli_parse_int(const char *cmd, const char *flag, const char *s, int64_t lo, int64_t hi,
                  int64_t *out);
int cli_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi,
                     double *out);

/* The model flags of dump, predict and generate, parsed one way. */
typedef struct cli_model_flags {
    const char *model;     /* --model PATH|REPO_ID|NAME (models.h); NULL until given */
    const char *config;    /* --config NAME|FILE; NULL: from the name, config.json or shapes */
    const char *device;    /* --device cpu|cuda:N; "cpu" by default */
    int64_t threads;       /* --threads N in [0, 1024]; 0: all cores */
    const char *revision;  /* --revision REV of a hub-cache repo; NULL: "main" */
    const char *model_dir; /* --model-dir DIR searched for bare names; NULL: none */
    int precision;         /* --precision: BACKEND_FP32, BACKEND_BF16, or -1: the device's
                            * default (bf16 on cuda, fp32 on the cpu) */
    int resolved;          /* ref below is filled (cli_resolve_model ran) */
    models_ref ref;        /* what --model resolved to; ref.path is the file opened */
} cli_model_flags;

/* cli_model_flags_help: the --help rows of --model, --revision,
 * --model-dir and --config, their text starting at column col + 3 (one
 * text for every command that takes the model flags). */
void cli_model_flags_help(FILE *f, int col);

/* cli_model_flags_default: no model or config, device "cpu", threads 0,
 * precision -1 (the device's default). */
void cli_model_flags_default(cli_model_flags *f);

/* cli_parse_model_flag: if argv[*i] is --model, --config, --device,
 * --threads, --precision, --revision or --model-dir, store its value in f, advance *i past the flag and its value
 * and return 1; return 0 (i untouched) for any other argument; -1 for a
 * missing or bad value (usage message printed). */
int cli_parse_model_flag(cli_model_flags *f, const char *cmd, int argc, char **argv, int *i);

/* cli_parse_precision: "fp32" -> BACKEND_FP32, "bf16" -> BACKEND_BF16 into
 * *out; -1 after a usage line for a missing or other value. */
int cli_parse_precision(const char *cmd, const char *v, int *out);
/* cli_set_precision: be computes in `precision` from now on (-1: keep the
 * backend's default). A backend created in fp32 (the cpu) has no bf16 path:
 * asking it for bf16 prints "sam2amg CMD: --precision bf16: ..." and
 * returns EXIT_USAGE; otherwise 0. Call before the model is built. */
int cli_set_precision(const char *cmd, backend_t *be, int precision);

/* cli_resolve_model: resolve f->model (a path, repo id or checkpoint name;
 * models_resolve with f->revision and f->model_dir) into f->ref, once.
 * Returns 0, or prints "sam2amg CMD: reason" (where it looked, how to fetch
 * it) and returns EXIT_DATA. */
int cli_resolve_model(const char *cmd, cli_model_flags *f);

/* cli_load_config: the model config of f into cfg: --config NAME|FILE,
 * else the config.json beside a resolved transformers/hub-cache file, else
 * the official checkpoint name's config, else guessed from the checkpoint's
 * shapes; with amg_json non-NULL, a config FILE's "amg" object too
 * (malloc'd text, caller frees; NULL when none). Resolves f->model first.
 * Returns 0, or prints "sam2amg CMD: reason" and returns the exit status:
 * EXIT_USAGE for an unknown name or bad config, EXIT_DATA otherwise. */
int cli_load_config(const char *cmd, cli_model_flags *f, sam2_config *cfg, char **amg_json);

/* cli_open_model: the backend of f (--device, --threads) and the model of
 * cfg and f->model (resolved, see cli_resolve_model) on it, with room for `batch` prompts per decode. Returns
 * 0 with *be and *m owned by the caller (free m, then destroy be), or
 * prints "sam2amg CMD: reason" and returns the exit status with *be and *m
 * NULL: EXIT_USAGE for a device this machine does not have (a bad name,
 * no CUDA plugin, driver or device N), EXIT_DATA for one it has that fails
 * to open (no memory for its scratch) and for a checkpoint that cannot be
 * loaded. */
int cli_open_model(const char *cmd, cli_model_flags *f, const sam2_config *cfg, int batch,
                   backend_t **be, sam2_model **m);

/* cli_open_model_sized: cli_open_model with the batch of batch_open_model
 * (include/batch.h): want prompts, or sized to the device when want is
 * AMG_POINTS_PER_BATCH_AUTO (at most cap, within limit); *ppb is the
 * batch the model was loaded for. With verbose, the sizing is printed, and
 * the line of cli_describe_backend. */
struct batch_limit;
int cli_open_model_sized(const char *cmd, cli_model_flags *f, const sam2_config *cfg, int want,
                         int cap, const struct batch_limit *limit, backend_t **be, sam2_model **m,
                         int *ppb, int verbose);

/* cli_describe_backend: what the model computes with, one line into out:
 * the device, the precision, and on CUDA the GEMM mode (fp32: float32 or
 * TF32) or whether the fused bf16 ops run (SAM2AMG_CUDA_FUSED) */
void cli_describe_backend(const backend_t *be, char *out, size_t cap);

#endif
