/* weights.h: checkpoint files, read without conversion.
 *
 * Official SAM 2 / 2.1 `.pt` files are torch.save({"model": state_dict}): a
 * zip archive holding `<prefix>/data.pkl` (a pickle of the tensor table) and
 * `<prefix>/data/N` raw storages. They are read with minizip and a small
 * restricted unpickler that understands only what torch.save writes for a
 * dict of tensors; the storages are stored uncompressed, so tensors point
 * into one read-only mapping of the file. `.safetensors` files are mapped
 * the same way. Only float32 (and bf16/f16, converted on load) tensors.
 * A safetensors file in transformers' Sam2Model layout (model.safetensors
 * of save_pretrained) is read too: its names are mapped onto the official
 * ones as it is opened (weights_hf.c), so the rest of the program sees one
 * layout.
 */
#ifndef SAM2AMG_WEIGHTS_H
#define SAM2AMG_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "check.h"

#define WEIGHTS_MAX_DIMS 6

typedef enum { WDT_F32 = 0, WDT_F16, WDT_BF16, WDT_I64, WDT_I32, WDT_U8, WDT_I8 } wdtype_t;

typedef struct wtensor {
    const char *name;                 /* "image_encoder.trunk.patch_embed.proj.weight" */
    wdtype_t    dtype;
    int         ndim;
    int64_t     shape[WEIGHTS_MAX_DIMS];
    int64_t     numel;
    const void *data;                 /* into the mapping, contiguous, native layout */
    int         used;                 /* set by weights_get: for unexpected-key checks */
} wtensor_t;

typedef struct weights weights_t;

/* weights_open: map path (.pt or .safetensors, told apart by content, not by
 * extension). ERR_IO / ERR_FORMAT with one line naming the file and the
 * reason (truncated, not a zip, not a checkpoint, unsupported dtype,
 * non-contiguous storage...). *out is NULL on error. The mapping lives
 * until weights_close and the tensors are used in place: a file truncated
 * meanwhile stops the process with one line naming it (weights.c, SIGBUS). */
int  weights_open(weights_t **out, const char *path, err_t *err);
void weights_close(weights_t *w);

const char *weights_path(const weights_t *w);
int         weights_count(const weights_t *w);
wtensor_t  *weights_at(weights_t *w, int i);
/* weights_find: by name, NULL if absent. */
wtensor_t  *weights_find(weights_t *w, const char *name);

/* weights_get: the float32 data of a tensor that must exist with exactly
 * this shape (ndim entries). f16/bf16 tensors are converted into a buffer
 * owned by w. On a missing key or a shape mismatch returns NULL and sets
 * err: "FILE: key K: expected shape [a,b], found [c,d]". Marks it used. */
const float *weights_get(weights_t *w, const char *name, int ndim, const int64_t *shape,
                         err_t *err);

/* weights_check_unused: ERR_FORMAT naming the first key that no
 * weights_get asked for and that does not start with one of the prefixes in
 * skip (NULL-terminated; the video-only modules: "memory_attention.",
 * "memory_encoder.", "maskmem_tpos_enc", ...). */
int weights_check_unused(weights_t *w, const char *const *skip, err_t *err);

/* weights_open_random: a weights_t in "random mode" for benchmarks: every
 * weights_get(name, shape) is served (first call allocates, owned by w)
 * with deterministic pseudo-random float32 values that depend only on seed
 * and name: N(0,1)/sqrt(fan_in) for ndim >= 2 (fan_in = numel/shape[0]),
 * 1 + 0.02 N(0,1) for norm weights (name contains "norm" and ends with
 * ".weight"), 0.02 N(0,1) otherwise. weights_check_unused is a no-op.
 * Returns 0, or ERR_NOMEM. */
int weights_open_random(weights_t **out, uint64_t seed);

/* ---- safetensors writer (dump, tests) ---- */
typedef struct st_entry {
    const char *name;
    wdtype_t    dtype;                /* WDT_F32, WDT_I32, WDT_U8, WDT_I8 */
    int         ndim;
    int64_t     shape[WEIGHTS_MAX_DIMS];
    const void *data;
} st_entry_t;

/* safetensors_write: entries sorted by name in the header, 8-byte padded
 * header, data in entry order. ERR_IO on failure. */
int safetensors_write(const char *path, const st_entry_t *entries, int n, err_t *err);

#endif
