/* cli.c: what the subcommands share (see cli.h): the usage-error line,
 * strict number parsing of flag values, and the model flags (--model,
 * --config, --device, --threads, --revision, --model-dir) with the
 * name resolution (models.h) and config/backend/model set-up behind them,
 * so dump, predict and generate parse and report them alike. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "batch.h"
#include "cuda_env.h"

int cli_mkdir_p(const char *path, err_t *err) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return err_set(err, ERR_IO, "'%s': bad directory name", path);
    memcpy(buf, path, n + 1);
    /* each prefix ending before a '/', then the whole path */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        if (buf[i - 1] == '/') continue; /* "a//b" */
        char c = buf[i];
        buf[i] = 0;
        struct stat st;
        if (mkdir(buf, 0755) != 0) {
            int e = errno;
            if (e != EEXIST || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                if (e == EEXIST) e = ENOTDIR;
                return err_set(err, ERR_IO, "%s: cannot create directory: %s", buf, strerror(e));
            }
        }
        buf[i] = c;
    }
    return 0;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sam2amg %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'sam2amg %s --help')\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

int cli_looks_like_flag(const char *s) {
    /* "--name" or a one-letter "-o", "-v": never a negative number or "-" */
    return s[0] == '-' && ((s[1] == '-' && s[2]) || (isalpha((unsigned char)s[1]) && !s[2]));
}

int cli_parse_int(const char *cmd, const char *flag, const char *s, int64_t lo, int64_t hi,
                  int64_t *out) {
    char *end = NULL;
    if (!s) return cli_usage_error(cmd, "%s needs a value", flag), -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) {
        cli_usage_error(cmd, "%s: '%s' is not an integer", flag, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "%s: %lld is out of range [%lld, %lld]", flag, v, (long long)lo,
                        (long long)hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi,
                     double *out) {
    char *end = NULL;
    if (!s) return cli_usage_error(cmd, "%s needs a value", flag), -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        cli_usage_error(cmd, "%s: '%s' is not a number", flag, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "%s: %g is out of range [%g, %g]", flag, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

void cli_model_flags_help(FILE *f, int col) {
    static const char *const rows[][2] = {
        {"--model WEIGHTS", "checkpoint file (.pt as released, .safetensors, a\n"
                            "transformers save_pretrained directory), Hugging Face\n"
                            "repo id (facebook/sam2.1-hiera-large) or name\n"
                            "(sam2.1_hiera_large), resolved offline ('sam2amg models')"},
        {"--revision REV", "ref or commit of a hub-cache repo (default main)"},
        {"--model-dir DIR", "also look for checkpoint names in DIR"},
        {"--config NAME|FILE", "tiny, small, base_plus, large (sam2.1_hiera_t ...),\n"
                               "micro, micro2, or a JSON file with a \"model\" object\n"
                               "(or a transformers config.json); default: from the\n"
                               "name, a config.json beside it, or the shapes"},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        fprintf(f, "  %-*s ", col, rows[r][0]);
        for (const char *t = rows[r][1]; *t; t++) {
            fputc(*t, f);
            if (*t == '\n') fprintf(f, "%*s", col + 3, "");
        }
        fputc('\n', f);
    }
}

void cli_model_flags_default(cli_model_flags *f) {
    memset(f, 0, sizeof *f);
    f->device = "cpu";
    f->precision = -1;
}

int cli_parse_precision(const char *cmd, const char *v, int *out) {
    if (v && !strcmp(v, "fp32")) *out = BACKEND_FP32;
    else if (v && !strcmp(v, "bf16")) *out = BACKEND_BF16;
    else return cli_usage_error(cmd, "--precision: '%s' is not fp32 or bf16", v ? v : ""), -1;
    return 0;
}

int cli_set_precision(const char *cmd, backend_t *be, int precision) {
    if (precision < 0) return EXIT_OK;
    if (precision == BACKEND_BF16 && be->precision != BACKEND_BF16) {
        fprintf(stderr, "sam2amg %s: --precision bf16: the %s backend computes in fp32 only "
                        "(bf16 needs --device cuda:N)\n", cmd, be->name);
        return EXIT_USAGE;
    }
    be->precision = precision;
    return EXIT_OK;
}

int cli_parse_model_flag(cli_model_flags *f, const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    const char **dst = !strcmp(a, "--model")       ? &f->model
                       : !strcmp(a, "--config")    ? &f->config
                       : !strcmp(a, "--device")    ? &f->device
                       : !strcmp(a, "--revision")  ? &f->revision
                       : !strcmp(a, "--model-dir") ? &f->model_dir
                                                   : NULL;
    if (dst) {
        if (!v || cli_looks_like_flag(v))
            return cli_usage_error(cmd, "%s needs a value%s%s%s", a, v ? " (got option '" : "", v ? v : "",
                                   v ? "')" : ""), -1;
        if (!*v && dst == &f->model)   /* --model "": an unset variable in a script */
            return cli_usage_error(cmd, "--model needs a value (got '')"), -1;
        *dst = v;
    } else if (!strcmp(a, "--threads")) {
        if (cli_parse_int(cmd, a, v, 0, 1024, &f->threads)) return -1;
    } else if (!strcmp(a, "--precision")) {
        if (cli_parse_precision(cmd, v, &f->precision)) return -1;
    } else {
        return 0;
    }
    *i += 2;
    return 1;
}

int cli_resolve_model(const char *cmd, cli_model_flags *f) {
    if (f->resolved) return EXIT_OK;
    models_opts o = {.revision = f->revision, .model_dir = f->model_dir};
    if (models_resolve(f->model, &o, &f->ref)) {
        fprintf(stderr, "sam2amg %s: %s\n", cmd, f->ref.msg);
        return EXIT_DATA;
    }
    f->resolved = 1;
    return EXIT_OK;
}

int cli_load_config(const char *cmd, cli_model_flags *f, sam2_config *cfg, char **amg_json) {
    err_t err = {{0}};
    if (amg_json) *amg_json = NULL;
    int rc = cli_resolve_model(cmd, f);
    if (rc) return rc;
    if (f->config) rc = sam2_config_load(f->config, cfg, amg_json, &err);
    else if (f->ref.config_json[0]) rc = sam2_config_load_hf(f->ref.config_json, cfg, &err);
    else if (f->ref.config[0]) rc = sam2_config_builtin(f->ref.config, cfg, &err);
    else rc = sam2_config_guess(f->ref.path, cfg, &err);
    if (!rc) return EXIT_OK;
    fprintf(stderr, "sam2amg %s: %s\n", cmd, err.msg);
    return rc == ERR_INVALID && f->config ? EXIT_USAGE : EXIT_DATA;
}

/* open_backend: the model file resolved, the device's backend made and set
 * to the asked precision; an exit status (*be NULL) on failure: 2 for a
 * bad name or SAM2AMG_CUDA_* setting, or a device this machine does not
 * have (no CUDA plugin, driver or device N), 1 for one it has that fails
 * to open (out of memory for its scratch, a thread that cannot start), as
 * `run` tells them apart */
static int open_backend(const char *cmd, cli_model_flags *f, backend_t **be) {
    err_t err = {{0}}, absent = {{0}};
    *be = NULL;
    int rc = cli_resolve_model(cmd, f);
    if (rc) return rc;
    *be = backend_create(f->device, (int)f->threads, &err);
    if (!*be) {   /* a bad name or SAM2AMG_CUDA_* setting (ERR_INVALID) needs no CPU hint */
        rc = backend_check_device(f->device, &absent);
        fprintf(stderr, "sam2amg %s: %s%s\n", cmd, err.msg,
                strncmp(f->device, "cuda", 4) || rc == ERR_INVALID
                    ? "" : "; to run on the CPU: --device cpu");
        return rc ? EXIT_USAGE : EXIT_DATA;
    }
    if ((rc = cli_set_precision(cmd, *be, f->precision))) {
        (*be)->destroy(*be);
        *be = NULL;
    }
    return rc;
}

int cli_open_model(const char *cmd, cli_model_flags *f, const sam2_config *cfg, int batch,
                   backend_t **be, sam2_model **m) {
    err_t err = {{0}};
    *m = NULL;
    int rc = open_backend(cmd, f, be);
    if (rc) return rc;
    if (sam2_model_load(m, cfg, f->ref.path, *be, batch, &err)) {
        fprintf(stderr, "sam2amg %s: %s\n", cmd, err.msg);
        (*be)->destroy(*be); /* *m is NULL after a failed load */
        *be = NULL;
        return EXIT_DATA;
    }
    return EXIT_OK;
}

int cli_open_model_sized(const char *cmd, cli_model_flags *f, const sam2_config *cfg, int want,
                         int cap, const batch_limit *limit, backend_t **be, sam2_model **m,
                         int *ppb, int verbose) {
    err_t err = {{0}};
    *m = NULL;
    int rc = open_backend(cmd, f, be);
    if (rc) return rc;
    char note[256];
    if (batch_open_model(*be, cfg, f->ref.path, want, cap, limit, 1, 1, m, ppb, note, sizeof note,
                         &err)) {
        fprintf(stderr, "sam2amg %s: %s\n", cmd, err.msg);
        (*be)->destroy(*be);
        *be = NULL;
        return EXIT_DATA;
    }
    if (verbose && note[0]) fprintf(stderr, "sam2amg %s: %s\n", cmd, note);
    if (verbose) {
        char how[160];
        cli_describe_backend(*be, how, sizeof how);
        fprintf(stderr, "sam2amg %s: %s\n", cmd, how);
    }
    return EXIT_OK;
}

void cli_describe_backend(const backend_t *be, char *out, size_t cap) {
    if (be->precision == BACKEND_BF16) {
        snprintf(out, cap, "%s, precision bf16 (GEMM inputs bf16, float32 accumulation), fused "
                 "ops %s", be->name, be->lowrank_expand ? "on" : "off (SAM2AMG_CUDA_FUSED=0)");
        return;
    }
    /* the GEMM mode as the plugin read it (include/cuda_env.h); a bad
     * setting was refused before the device was opened */
    cuda_env env;
    err_t e = {{0}};
    const int tf32 = cuda_env_read(0, &env, &e) == 0 && env.tf32;
    snprintf(out, cap, "%s, precision fp32%s", be->name,
             strncmp(be->name, "cuda", 4) ? ""
             : tf32                       ? " (GEMMs TF32: SAM2AMG_CUDA_GEMM=tf32)"
                                          : " (GEMMs float32)");
}
