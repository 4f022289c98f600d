/* weights_int.h: what the format readers (weights.c for safetensors,
 * pickle.c for torch .pt zips) share inside the weights module. Not part of
 * the public API (include/weights.h). */
#ifndef SAM2AMG_WEIGHTS_INT_H
#define SAM2AMG_WEIGHTS_INT_H

#include "size.h"
#include "weights.h"

/* WEIGHTS_MAX_NUMEL: the most elements one tensor may have (2^40; the
 * largest SAM 2.1 tensor has a few million). Shapes from a file are
 * multiplied with size_prod under this limit, so a hostile shape is an
 * ERR_FORMAT and never an overflowed allocation. */
#define WEIGHTS_MAX_NUMEL (INT64_C(1) << 40)

/* The read-only mapping of the checkpoint file being loaded. */
const unsigned char *weights_map(const weights_t *w, size_t *len);

/* weights_own: a malloc'd block of n bytes (64-byte aligned, zeroed) freed
 * by weights_close; NULL on allocation failure. */
void *weights_own(weights_t *w, size_t n);

/* weights_add: append a tensor; name is copied, data is not (it must point
 * into the mapping or a weights_own block, contiguous, suitably aligned for
 * the dtype: weights_add copies it into an owned block otherwise). Returns
 * the new tensor, or NULL with ERR_FORMAT (duplicate name) / ERR_NOMEM in
 * *rc and err. */
wtensor_t *weights_add(weights_t *w, const char *name, wdtype_t dtype, int ndim,
                       const int64_t *shape, const void *data, int *rc, err_t *err);

/* weights_dtype_size: bytes per element. */
size_t weights_dtype_size(wdtype_t dt);
const char *weights_dtype_name(wdtype_t dt);

/* pt_load: read the torch zip checkpoint at weights_path(w) (already
 * mapped) into w with weights_add. ERR_FORMAT / ERR_IO with a message that
 * names the file. Implemented in pickle.c. */
int pt_load(weights_t *w, err_t *err);

/* ---- transformers Sam2Model names (weights_hf.c) ---- */

/* The official name both copies of the tied positional matrix map to. */
#define WEIGHTS_HF_PE "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"

enum {
    WEIGHTS_HF_MAPPED = 0,      /* out holds the official name */
    WEIGHTS_HF_UNKNOWN,         /* no rule: keep the name (reported as unexpected) */
    WEIGHTS_HF_SKIP,            /* a video-only tensor: not loaded */
    WEIGHTS_HF_POINT_EMBED      /* (4,C) point_embed.weight: four (1,C) point_embeddings.i */
};

/* weights_hf_is_layout: name is a transformers Sam2Model name (a
 * safetensors file holding one is read with weights_hf_name). */
int weights_hf_is_layout(const char *name);

/* weights_hf_name: the official name of transformers tensor hf into out
 * (cap bytes); returns one of WEIGHTS_HF_*. */
int weights_hf_name(const char *hf, char *out, size_t cap);

#endif
