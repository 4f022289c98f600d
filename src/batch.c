/* batch.c: points_per_batch sized to the device's memory (include/batch.h).
 *
 * Why the model is loaded twice for auto: the decoder plans its arena for
 * max_prompts at load, and what the weights and the encoder arena take on
 * the device is only known once they are there (cudaMemGetInfo before and
 * after). Loading for one prompt first, then again for the fitted batch,
 * costs one more read (page cache) and upload of the weights per worker
 * and run, against guessing the model's footprint. Between load and
 * measure, one warm-up image goes through the model, so that what the
 * backend allocates at first use (bf16 weight copies, workspaces) counts.
 */
#include "batch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/decoder.h"

int batch_parse_limit(const char *s, batch_limit *out, err_t *err) {
    memset(out, 0, sizeof *out);
    if (!s || !*s) return err_set(err, ERR_INVALID, "--gpu-memory-limit needs a value");
    char *end;
    errno = 0;
    if (strchr(s, '.')) {
        double f = strtod(s, &end);
        if (errno || end == s || *end || !(f > 0.0 && f <= 1.0))
            return err_set(err, ERR_INVALID, "--gpu-memory-limit '%s': a FRACTION is in (0, 1] "
                           "(e.g. 0.5); BYTES take no decimal point (e.g. 8G)", s);
        out->fraction = f;
        return 0;
    }
    if (*s < '0' || *s > '9')
        return err_set(err, ERR_INVALID, "--gpu-memory-limit '%s': expected BYTES (8G, 512M) or a "
                       "FRACTION (0.5)", s);
    unsigned long long v = strtoull(s, &end, 10);
    int shift = 0;
    switch (*end) {
    case 'K': case 'k': shift = 10; break;
    case 'M': case 'm': shift = 20; break;
    case 'G': case 'g': shift = 30; break;
    case 'T': case 't': shift = 40; break;
    case 0: break;
    default: shift = -1;
    }
    if (shift > 0) {
        end++;
        if (!strcmp(end, "iB") || !strcmp(end, "B")) end += strlen(end);
    }
    if ((errno && errno != ERANGE) || shift < 0 || *end)
        return err_set(err, ERR_INVALID, "--gpu-memory-limit '%s': expected BYTES (8G, 512M, "
                       "a number) or a FRACTION (0.5)", s);
    if (errno == ERANGE || v > (unsigned long long)(INT64_MAX >> shift))
        return err_set(err, ERR_INVALID, "--gpu-memory-limit '%s': too large", s);
    int64_t bytes = (int64_t)v << shift;
    if (bytes < ((int64_t)1 << 20))
        return err_set(err, ERR_INVALID, "--gpu-memory-limit '%s': below 1 MiB (a FRACTION needs "
                       "a decimal point: 0.5, 1.0)", s);
    out->bytes = bytes;
    return 0;
}

size_t batch_limit_bytes(const batch_limit *l, size_t total) {
    if (l && l->bytes > 0) return (size_t)l->bytes < total ? (size_t)l->bytes : total;
    if (l && l->fraction > 0) return (size_t)((double)total * l->fraction);
    return total;
}

size_t batch_prompt_bytes(const sam2_config *cfg) {
    size_t L = (size_t)cfg->image_size / 4;
    return (3 * L * L + 3) * sizeof(float);
}

/* fits: whether a batch of n takes at most budget bytes */
static int fits(const sam2_config *cfg, size_t budget, int n, int64_t rows) {
    return decoder_arena_bytes(cfg, n, rows) + (size_t)n * batch_prompt_bytes(cfg) <= budget;
}

int batch_fit(const sam2_config *cfg, size_t budget, int cap, int64_t rows) {
    if (cap < 1 || !fits(cfg, budget, 1, rows)) return 0;
    int lo = 1, hi = cap;   /* fits(lo); the need grows with n, so bisect */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (fits(cfg, budget, mid, rows)) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

int batch_cap(const amg_params *p) {
    int64_t most = (int64_t)p->points_per_side * p->points_per_side;
    for (int i = 0; i < p->n_point_grids; i++)
        if (p->point_grid_sizes[i] > most) most = p->point_grid_sizes[i];
    if (most < 1) most = 1;
    return most > BATCH_MAX ? BATCH_MAX : (int)most;
}

#define MIB(x) ((double)(x) / (1 << 20))

/* warm_up: one encode of a grey image and one decode of one prompt, so
 * that what a backend allocates at first use (bf16 weight copies, GEMM
 * workspaces and plans) is on the device before the free memory is
 * measured. 0 or the model's error. */
static int warm_up(sam2_model *m, const sam2_config *cfg, err_t *err) {
    size_t S = (size_t)cfg->image_size, L = S / 4;
    float *in = calloc(3 * S * S + 3 * L * L + 3, sizeof(float));
    if (!in) return err_set(err, ERR_NOMEM, "out of host memory for a warm-up image");
    float *low = in + 3 * S * S, *iou = low + 3 * L * L, pt[2] = {(float)S / 2, (float)S / 2};
    int32_t label = 1;
    sam2_prompts p = {.n = 1, .n_pts = 1, .coords = pt, .labels = &label, .multimask = 1};
    int rc = sam2_model_encode(m, in, err);
    if (!rc) rc = sam2_model_decode(m, &p, low, iou, err);
    free(in);
    return rc;
}

int batch_open_model(backend_t *be, const sam2_config *cfg, const char *weights_path, int want,
                     int cap, const batch_limit *limit, int share, int pending,
                     sam2_model **m, int *ppb, char *note, size_t note_cap, err_t *err) {
    *m = NULL;
    *ppb = 0;
    if (note_cap) note[0] = 0;
    if (share < 1) share = 1;
    if (pending < 1 || pending > share) pending = share;
    if (!be->mem_info) {   /* the CPU: host memory, no device to size to */
        *ppb = want > 0 ? want : BATCH_CPU_AUTO;
        return sam2_model_load(m, cfg, weights_path, be, *ppb, err);
    }
    size_t free0, total, free1, t1;
    if (be->mem_info(be, &free0, &total))
        return err_set(err, ERR_BACKEND, "%s: cannot read the device's free memory", be->name);
    size_t cap_bytes = batch_limit_bytes(limit, total) / (size_t)share;
    int rc = sam2_model_load(m, cfg, weights_path, be, want > 0 ? want : 1, err);
    if (rc == ERR_NOMEM && want > 1) {   /* name the device and the flag that sized it */
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        rc = err_set(err, ERR_NOMEM, "%s: out of memory loading the model for "
                     "--points-per-batch %d (%s); a smaller batch needs less, auto fits it to "
                     "the device", be->name, want, why);
    }
    if (!rc) rc = warm_up(*m, cfg, err);
    if (!rc && be->mem_info(be, &free1, &t1))
        rc = err_set(err, ERR_BACKEND, "%s: cannot read the device's free memory", be->name);
    size_t model = !rc && free0 > free1 ? free0 - free1 : 0;
    if (!rc && model > cap_bytes)
        rc = err_set(err, ERR_NOMEM, "%s: the model takes %.0f MiB, over the %.0f MiB "
                     "--gpu-memory-limit share of this worker", be->name, MIB(model),
                     MIB(cap_bytes));
    if (rc || want > 0) {
        if (!rc) *ppb = want;
        if (rc) sam2_model_free(*m), *m = NULL;
        return rc;
    }
    /* auto: what is left, capped by this worker's share of the limit; the
     * one-prompt arena is given back by the reload */
    size_t left = free1 > BATCH_HEADROOM ? (free1 - BATCH_HEADROOM) / (size_t)pending : 0;
    size_t in_cap = cap_bytes - model;
    const int64_t rows = decoder_chunk_rows(be);
    size_t budget = (left < in_cap ? left : in_cap) + decoder_arena_bytes(cfg, 1, rows);
    int n = batch_fit(cfg, budget, cap, rows);
    if (n == 0) {
        sam2_model_free(*m), *m = NULL;
        return err_set(err, ERR_NOMEM, "%s: no room for a batch of one prompt (%.0f MiB free, "
                       "%.0f MiB kept free for the driver and libraries, model %.0f MiB, limit "
                       "%.0f MiB)", be->name, MIB(free1), MIB(BATCH_HEADROOM), MIB(model),
                       MIB(cap_bytes));
    }
    if (n > 1) {
        sam2_model_free(*m);
        *m = NULL;
        rc = sam2_model_load(m, cfg, weights_path, be, n, err);
    }
    if (rc) return rc;
    *ppb = n;
    snprintf(note, note_cap, "%s: points_per_batch auto = %d (%.0f MiB free of %.0f, model "
             "%.0f MiB, decoder %.0f MiB, limit %.0f MiB per worker)", be->name, n, MIB(free1),
             MIB(total), MIB(model), MIB(decoder_arena_bytes(cfg, n, rows) + (size_t)n *
             batch_prompt_bytes(cfg)), MIB(cap_bytes));
    return 0;
}
