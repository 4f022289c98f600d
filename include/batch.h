/* batch.h: points_per_batch sized to the device's memory.
 *
 * `--points-per-batch auto` (the default on CUDA) picks the largest decoder
 * batch that fits what is left of the device after the model, within
 * `--gpu-memory-limit BYTES|FRACTION`; on the CPU auto is BATCH_CPU_AUTO.
 * The per-batch memory is computed from the model dims on the host
 * (decoder_arena_bytes plus the batch's outputs), so no trial allocation
 * is needed. An out-of-memory during an image is then handled by the
 * caller halving the batch (jobs/engine.c).
 */
#ifndef SAM2AMG_BATCH_H
#define SAM2AMG_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "amg.h"
#include "check.h"
#include "model.h"

#define BATCH_CPU_AUTO  64     /* auto on the CPU: the official default */
#define BATCH_MAX       4096   /* as amg_params_validate */
/* room left on the device for what is not planned (CUDA context, cuBLAS
 * workspaces, fragmentation), bytes */
#define BATCH_HEADROOM  ((size_t)256 << 20)

/* batch_limit: --gpu-memory-limit; both 0 = no limit */
typedef struct batch_limit {
    int64_t bytes;      /* a byte count, or 0 */
    double  fraction;   /* of the device's total memory, (0, 1], or 0 */
} batch_limit;

/* batch_parse_limit: "8G", "8GiB", "512M", "1073741824" (bytes, binary
 * suffixes K M G T with an optional "iB"/"B", at least 1 MiB) or a
 * fraction "0.5" (a decimal point, in (0, 1]). 0, or ERR_INVALID with a
 * one-line reason naming the value. */
int batch_parse_limit(const char *s, batch_limit *out, err_t *err);

/* batch_limit_bytes: the cap in bytes on a device of total bytes (total
 * itself when there is no limit). */
size_t batch_limit_bytes(const batch_limit *l, size_t total);

/* batch_prompt_bytes: the device bytes one prompt's outputs take (3
 * low-res masks (S/4)^2 and 3 IoUs, float), kept for device-side
 * post-processing. */
size_t batch_prompt_bytes(const sam2_config *cfg);

/* batch_fit: the largest n in [1, cap] with decoder_arena_bytes(cfg, n,
 * rows) + n * batch_prompt_bytes(cfg) <= budget (rows: the backend's
 * decoder_chunk_rows); 0 when n = 1 does not fit. */
int batch_fit(const sam2_config *cfg, size_t budget, int cap, int64_t rows);

/* batch_cap: no batch larger than the most points one crop layer asks for
 * (points_per_side^2, or the largest point grid), at most BATCH_MAX. */
int batch_cap(const amg_params *p);

/* batch_open_model: the model of cfg and weights_path on be, with
 * points_per_batch want (> 0), or sized to the device when want is 0
 * (auto): on a backend without mem_info (the CPU) BATCH_CPU_AUTO; else the
 * model is loaded for one prompt, the device's free memory measured, the
 * batch fitted (batch_fit) into min(free - BATCH_HEADROOM, limit/share -
 * what the model took) plus the one-prompt arena, and the model loaded
 * again for it. share is how many workers use this device (each gets an
 * equal part of the limit), pending how many of them, this one included,
 * still have to load (the free memory is split between those). With a limit and
 * a fixed batch, a model over the limit is refused. Returns 0 with *m and
 * *ppb set and a one-line note of the sizing in note (may be ""), or a
 * negative ERR_ (ERR_NOMEM when not even one prompt fits) with err set. */
int batch_open_model(backend_t *be, const sam2_config *cfg, const char *weights_path, int want,
                     int cap, const batch_limit *limit, int share, int pending,
                     sam2_model **m, int *ppb, char *note, size_t note_cap, err_t *err);

#endif
