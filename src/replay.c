/* replay.c: the replay decoder of the tests (see amg.h): recorded decoder
 * calls of a synthetic oracle run stand in for the network, so everything
 * after the decoder can be checked against the official amg.json.
 *
 * expected.safetensors is mapped with weights_open; only the syn_* keys
 * are used. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "amg.h"
#include "weights.h"

struct amg_replay {
    weights_t     *w;       /* the mapped expected.safetensors */
    const float   *points;  /* (N, 2) */
    const int32_t *call;    /* (N) */
    const int8_t  *q;       /* (N, 3, L, L) */
    const float   *iou;     /* (N, 3) */
    const int32_t *crop_hw; /* (ncalls, 2) */
    int64_t  N, ncalls;
    int      L, S;
    int64_t  next_call, next_row;
};

/* tensor key of dtype dt with ndim dims, or an ERR_FORMAT naming it */
static int find(weights_t *w, const char *path, const char *key, wdtype_t dt, int ndim,
                const wtensor_t **out, err_t *err) {
    const wtensor_t *t = weights_find(w, key);
    if (!t) return err_set(err, ERR_FORMAT, "%s: no tensor %s", path, key);
    if (t->dtype != dt || t->ndim != ndim)
        return err_set(err, ERR_FORMAT, "%s: %s has the wrong dtype or rank", path, key);
    *out = t;
    return 0;
}

int amg_replay_open(amg_replay_t **out, const char *path, err_t *err) {
    *out = NULL;
    amg_replay_t *r = calloc(1, sizeof *r);
    if (!r) return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    int rc = weights_open(&r->w, path, err);
    const wtensor_t *sp = NULL, *sc = NULL, *sq = NULL, *si = NULL, *sh = NULL;
    if (!rc) rc = find(r->w, path, "syn_points", WDT_F32, 2, &sp, err);
    if (!rc) rc = find(r->w, path, "syn_call", WDT_I32, 1, &sc, err);
    if (!rc) rc = find(r->w, path, "syn_low_res_q", WDT_I8, 4, &sq, err);
    if (!rc) rc = find(r->w, path, "syn_iou", WDT_F32, 2, &si, err);
    if (!rc) rc = find(r->w, path, "syn_crop_hw", WDT_I32, 2, &sh, err);
    if (!rc && (sp->shape[1] != 2 || sc->shape[0] != sp->shape[0] ||
                sq->shape[0] != sp->shape[0] || sq->shape[1] != 3 ||
                sq->shape[2] != sq->shape[3] || si->shape[0] != sp->shape[0] ||
                si->shape[1] != 3 || sh->shape[1] != 2))
        rc = err_set(err, ERR_FORMAT, "%s: inconsistent syn_* shapes", path);
    if (rc) {
        amg_replay_free(r);
        return rc;
    }
    r->points = sp->data;
    r->call = sc->data;
    r->q = sq->data;
    r->iou = si->data;
    r->crop_hw = sh->data;
    r->N = sp->shape[0];
    r->ncalls = sh->shape[0];
    r->L = (int)sq->shape[2];
    r->S = 4 * r->L;
    *out = r;
    return 0;
}

void amg_replay_free(amg_replay_t *r) {
    if (!r) return;
    weights_close(r->w);
    free(r);
}

static int replay_encode(void *ctx, const uint8_t *rgb, int w, int h, size_t stride,
                         err_t *err) {
    amg_replay_t *r = ctx;
    (void)rgb, (void)stride;
    if (r->next_call >= r->ncalls)
        return err_set(err, ERR_FORMAT, "replay: crop %dx%d after the last recorded call", w, h);
    const int32_t *hw = r->crop_hw + 2 * r->next_call;
    if (hw[0] != h || hw[1] != w)
        return err_set(err, ERR_FORMAT, "replay: call %lld: crop %dx%d, recorded %dx%d",
                       (long long)r->next_call, w, h, hw[1], hw[0]);
    return 0;
}

static int replay_decode(void *ctx, int n, const float *points, const float *mask_input,
                         int multimask, float *low_res, float *iou, err_t *err) {
    amg_replay_t *r = ctx;
    (void)mask_input;
    int64_t c = r->next_call, row = r->next_row, m = 0;
    while (row + m < r->N && r->call[row + m] == c) m++;
    if (m != n)
        return err_set(err, ERR_FORMAT, "replay: call %lld has %d points, recorded %lld",
                       (long long)c, n, (long long)m);
    int k = multimask ? 3 : 1;
    size_t L2 = (size_t)r->L * r->L;
    for (int i = 0; i < n; i++) {
        const float *e = r->points + 2 * (row + i);
        if (fabsf(points[2 * i] - e[0]) > 1e-3f || fabsf(points[2 * i + 1] - e[1]) > 1e-3f)
            return err_set(err, ERR_FORMAT,
                           "replay: call %lld point %d is (%.6g, %.6g), recorded (%.6g, %.6g)",
                           (long long)c, i, points[2 * i], points[2 * i + 1], e[0], e[1]);
        for (int kk = 0; kk < k; kk++) {
            const int8_t *q = r->q + ((size_t)(row + i) * 3 + kk) * L2;
            float *o = low_res + ((size_t)i * k + kk) * L2;
            for (size_t p = 0; p < L2; p++) o[p] = (float)q[p] / 4.0f;
            iou[i * k + kk] = r->iou[(row + i) * 3 + kk];
        }
    }
    r->next_call++;
    r->next_row += n;
    return 0;
}

void amg_replay_model(amg_replay_t *r, amg_model *m) {
    r->next_call = r->next_row = 0;
    /* every field: no backend, no device decode (the recorded logits are
     * host memory) */
    *m = (amg_model){.ctx = r, .S = r->S, .encode = replay_encode, .decode = replay_decode};
}

int amg_replay_finish(amg_replay_t *r, err_t *err) {
    if (r->next_call != r->ncalls)
        return err_set(err, ERR_FORMAT, "replay: %lld of %lld recorded calls were used",
                       (long long)r->next_call, (long long)r->ncalls);
    return 0;
}
