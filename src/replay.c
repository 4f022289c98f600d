/* replay.c: the replay decoder of the tests (see amg.h): recorded decoder
 * calls of a synthetic oracle run stand in for the network, so everything
 * after the decoder can be checked against the official amg.json.
 *
 * It reads expected.safetensors with a small private reader (the header is
 * a flat JSON object of {dtype, shape, data_offsets}); only the syn_* keys
 * are used. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "amg.h"

struct amg_replay {
    char     path[512];
    uint8_t *file;          /* whole file */
    size_t   size;
    const float   *points;  /* (N, 2) */
    const int32_t *call;    /* (N) */
    const int8_t  *q;       /* (N, 3, L, L) */
    const float   *iou;     /* (N, 3) */
    const int32_t *crop_hw; /* (ncalls, 2) */
    int64_t  N, ncalls;
    int      L, S;
    int64_t  next_call, next_row;
};

/* find key in the header; fill data pointer, dtype and shape */
static int st_find(amg_replay_t *r, const char *hdr, size_t hlen, const char *key,
                   const char *dtype, int ndim, int64_t *shape, const void **data, err_t *err) {
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(hdr, pat);
    if (!p) return err_set(err, ERR_FORMAT, "%s: no tensor %s", r->path, key);
    const char *end = strchr(p, '}');
    const char *dt = strstr(p, "\"dtype\""), *sh = strstr(p, "\"shape\""),
               *of = strstr(p, "\"data_offsets\"");
    if (!end || !dt || !sh || !of || dt > end || sh > end || of > end)
        return err_set(err, ERR_FORMAT, "%s: bad header entry for %s", r->path, key);
    dt = strchr(dt + 7, '"');
    if (!dt || strncmp(dt + 1, dtype, strlen(dtype)) || dt[1 + strlen(dtype)] != '"')
        return err_set(err, ERR_FORMAT, "%s: %s is not %s", r->path, key, dtype);
    sh = strchr(sh, '[');
    int n = 0;
    while (sh && *sh != ']' && n <= ndim) {
        char *e;
        long long v = strtoll(sh + 1, &e, 10);
        if (e == sh + 1) break;
        if (n < ndim) shape[n] = v;
        n++;
        sh = e;
        while (*sh == ' ') sh++;
    }
    if (n != ndim) return err_set(err, ERR_FORMAT, "%s: %s has %d dims, expected %d", r->path,
                                  key, n, ndim);
    of = strchr(of, '[');
    char *e;
    long long a = strtoll(of + 1, &e, 10), b = strtoll(e + 1, &e, 10);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    size_t es = !strcmp(dtype, "I8") ? 1 : 4;
    size_t base = 8 + hlen;
    if (a < 0 || b < a || (size_t)(b - a) != (size_t)numel * es || base + (size_t)b > r->size)
        return err_set(err, ERR_FORMAT, "%s: %s: bad data offsets", r->path, key);
    *data = r->file + base + a;
    return 0;
}

int amg_replay_open(amg_replay_t **out, const char *path, err_t *err) {
    *out = NULL;
    amg_replay_t *r = calloc(1, sizeof *r);
    if (!r) return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    snprintf(r->path, sizeof r->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
        free(r);
        return ERR_IO;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    r->file = malloc(sz > 0 ? (size_t)sz + 1 : 1);
    r->size = sz > 0 ? (size_t)sz : 0;
    int rc = 0;
    if (!r->file || fread(r->file, 1, r->size, f) != r->size)
        rc = err_set(err, ERR_IO, "%s: read failed", path);
    fclose(f);
    uint64_t hlen = 0;
    if (!rc && r->size < 8) rc = err_set(err, ERR_FORMAT, "%s: not a safetensors file", path);
    if (!rc) {
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | r->file[i];
        if (hlen > r->size - 8) rc = err_set(err, ERR_FORMAT, "%s: bad header length", path);
    }
    char *hdr = NULL;
    if (!rc) {
        hdr = malloc(hlen + 1);
        if (!hdr) rc = err_set(err, ERR_NOMEM, "%s: out of memory", path);
        else memcpy(hdr, r->file + 8, hlen), hdr[hlen] = 0;
    }
    int64_t sp[2], sc[1], sq[4], si[2], sh[2];
    const void *d;
    if (!rc && !(rc = st_find(r, hdr, hlen, "syn_points", "F32", 2, sp, &d, err)))
        r->points = d;
    if (!rc && !(rc = st_find(r, hdr, hlen, "syn_call", "I32", 1, sc, &d, err))) r->call = d;
    if (!rc && !(rc = st_find(r, hdr, hlen, "syn_low_res_q", "I8", 4, sq, &d, err))) r->q = d;
    if (!rc && !(rc = st_find(r, hdr, hlen, "syn_iou", "F32", 2, si, &d, err))) r->iou = d;
    if (!rc && !(rc = st_find(r, hdr, hlen, "syn_crop_hw", "I32", 2, sh, &d, err)))
        r->crop_hw = d;
    free(hdr);
    if (!rc && (sp[1] != 2 || sc[0] != sp[0] || sq[0] != sp[0] || sq[1] != 3 ||
                sq[2] != sq[3] || si[0] != sp[0] || si[1] != 3 || sh[1] != 2))
        rc = err_set(err, ERR_FORMAT, "%s: inconsistent syn_* shapes", path);
    if (rc) {
        amg_replay_free(r);
        return rc;
    }
    r->N = sp[0];
    r->ncalls = sh[0];
    r->L = (int)sq[2];
    r->S = 4 * r->L;
    *out = r;
    return 0;
}

void amg_replay_free(amg_replay_t *r) {
    if (!r) return;
    free(r->file);
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
    m->ctx = r;
    m->S = r->S;
    m->encode = replay_encode;
    m->decode = replay_decode;
}

int amg_replay_finish(amg_replay_t *r, err_t *err) {
    if (r->next_call != r->ncalls)
        return err_set(err, ERR_FORMAT, "replay: %lld of %lld recorded calls were used",
                       (long long)r->next_call, (long long)r->ncalls);
    return 0;
}
