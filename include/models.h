/* models.h: models by the names people use, resolved offline.
 *
 * `--model` takes a file path, a Hugging Face repo id
 * ("facebook/sam2.1-hiera-large", "hf://facebook/sam2-hiera-tiny", with an
 * optional "/FILE" tail) or a bare checkpoint name ("sam2.1_hiera_large",
 * "sam2.1_hiera_large.pt"). Names are looked up, in this order, in the
 * model directories (--model-dir DIR, then each entry of the colon-separated
 * $SAM2AMG_MODELS) and in the Hugging Face hub cache, read exactly as
 * huggingface_hub lays it out:
 *
 *   ROOT/models--ORG--NAME/refs/REV          text: the commit of ref REV
 *   ROOT/models--ORG--NAME/snapshots/COMMIT/FILE   symlink into ../../blobs/
 *
 * with ROOT = $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE (its legacy name),
 * else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub. Nothing here opens a network connection: a name
 * that does not resolve gives one line saying where it looked and the
 * command that would fetch it.
 *
 * A snapshot may hold the official checkpoint (sam2.1_hiera_large.pt), the
 * transformers one (model.safetensors + config.json, what
 * Sam2Model.from_pretrained reads; weights.c maps its tensor names onto the
 * official ones) or both; the official file is preferred.
 */
#ifndef SAM2AMG_MODELS_H
#define SAM2AMG_MODELS_H

#include <stdint.h>
#include <stdio.h>

#include "check.h"

#define MODELS_PATH_MAX 4096

/* Where a name was found. */
typedef enum {
    MODELS_SRC_PATH = 0, /* the name is an existing file or directory */
    MODELS_SRC_MODEL_DIR, /* --model-dir or $SAM2AMG_MODELS */
    MODELS_SRC_HF_CACHE  /* the Hugging Face hub cache */
} models_src;

/* Lookup options (the --revision and --model-dir flags). */
typedef struct models_opts {
    const char *revision;  /* ref name or commit; NULL: "main" */
    const char *model_dir; /* --model-dir DIR; NULL: none ($SAM2AMG_MODELS still read) */
} models_opts;

/* A resolved model. All strings NUL-terminated, "" when not applicable. */
typedef struct models_ref {
    models_src src;
    char path[MODELS_PATH_MAX];        /* the checkpoint file to open */
    char repo[256];                    /* "facebook/sam2.1-hiera-large" (cache only) */
    char file[256];                    /* "sam2.1_hiera_large.pt", "model.safetensors" */
    char revision[256];                /* snapshot commit (cache only) */
    char config_json[MODELS_PATH_MAX]; /* transformers config.json beside the file, if any */
    char config[32];                   /* built-in config implied by the name ("large") */
    int  sam_version;                  /* 21 (SAM 2.1), 20 (SAM 2), 0 unknown */
    int  hf_format;                    /* 1: transformers model.safetensors layout */
    char msg[2048];                    /* on error: the one-line reason */
} models_ref;

/* models_resolve: resolve name (see the file comment) into r. Returns 0, or
 * a negative ERR_ class with r->msg set to one line (no trailing newline):
 * ERR_IO for a name that is not found (listing where it looked and the
 * command that would fetch it), a broken snapshot symlink (an interrupted
 * download) or a snapshot without the file; ERR_INVALID for a malformed repo
 * id. Reads only the file system. */
int models_resolve(const char *name, const models_opts *o, models_ref *r);

/* models_hub_cache: the hub cache root (see the file comment) into out;
 * *why (if not NULL) names the variable it came from ("HF_HUB_CACHE",
 * "HF_HOME", "HOME", ...). Returns 0, or -1 when no variable gives one. */
int models_hub_cache(char *out, size_t cap, const char **why);

/* models_known_file: for an official checkpoint file name
 * ("sam2.1_hiera_large.pt", also without ".pt"), its repo id, built-in
 * config name and SAM version (21 or 20). Returns 1 if known, else 0. Any
 * output pointer may be NULL. */
int models_known_file(const char *name, const char **repo, const char **config,
                      int *sam_version);

/* models_list: every checkpoint under the model directories of o and the
 * hub cache (.pt and .safetensors files; for the cache every snapshot a ref
 * names, then the others), one per line on f: source, repo id, revision,
 * file, size, config, SAM version, path; as a JSON array of objects with
 * json set. Returns the number listed (the config column may open a file to
 * guess from its shapes). */
int models_list(FILE *f, const models_opts *o, int json);

#endif
