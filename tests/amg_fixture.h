/* amg_fixture.h: reading the fixtures' amg.json and meta.json in tests
 * (just enough JSON for SA-1B records), and compare_amg.py's matching. */
#ifndef SAM2AMG_AMG_FIXTURE_H
#define SAM2AMG_AMG_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rle.h"

typedef struct fx_rec {
    char     *str;      /* the "counts" string as written */
    uint32_t *counts;
    size_t    n;
    int       h, w;
    double    iou, stab, pt[2];
    double    area, bbox[4], crop[4];
} fx_rec;

static inline char *fx_read(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

/* the text of object "key" ({...} without nested objects), malloc'd */
static inline char *fx_object(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p) return NULL;
    p = strchr(p, '{');
    const char *e = p ? strchr(p, '}') : NULL;
    if (!e) return NULL;
    char *o = malloc((size_t)(e - p) + 2);
    memcpy(o, p, (size_t)(e - p) + 1);
    o[e - p + 1] = 0;
    return o;
}

static inline double fx_number_after(const char **p, const char *key) {
    const char *q = strstr(*p, key);
    if (!q) return NAN;
    q += strlen(key);
    while (*q == ' ' || *q == '\n' || *q == ':' || *q == '[' || *q == '"') q++;
    char *e;
    double v = strtod(q, &e);
    *p = e;
    return v;
}

/* parse records (SA-1B json from the oracle or from us): returns count,
 * -1 on error */
static inline int fx_parse_records(const char *json, fx_rec **out) {
    int n = 0, cap = 0;
    fx_rec *r = NULL;
    const char *p = strstr(json, "\"annotations\"");
    if (!p) return -1;
    while ((p = strstr(p, "\"segmentation\""))) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            r = realloc(r, (size_t)cap * sizeof *r);
        }
        fx_rec *x = &r[n];
        memset(x, 0, sizeof *x);
        const char *q = p;
        x->h = (int)fx_number_after(&q, "\"size\"");
        while (*q == ',' || *q == ' ') q++;
        x->w = (int)strtod(q, NULL);
        const char *c = strstr(p, "\"counts\"");
        c = strchr(c + 8, '"');
        const char *ce = strchr(c + 1, '"');
        while (ce[-1] == '\\') { /* an escaped quote cannot occur, but be safe */
            const char *bs = ce - 1;
            int nb = 0;
            while (*bs == '\\') nb++, bs--;
            if (nb % 2 == 0) break;
            ce = strchr(ce + 1, '"');
        }
        char *s = malloc((size_t)(ce - c));
        size_t k = 0;
        for (const char *t = c + 1; t < ce; t++) {
            if (*t == '\\' && t + 1 < ce) t++; /* JSON escape: \\ -> \ */
            s[k++] = *t;
        }
        s[k] = 0;
        int64_t m = rle_decode_string(s, NULL, 0);
        if (m < 0) return free(s), -1;
        x->counts = malloc(sizeof(uint32_t) * (size_t)(m ? m : 1));
        x->n = (size_t)rle_decode_string(s, x->counts, (size_t)m);
        x->str = s;
        q = ce;
        x->area = fx_number_after(&q, "\"area\"");
        q = ce;
        const char *b = strstr(q, "\"bbox\"");
        for (int k = 0; k < 4; k++) {
            x->bbox[k] = fx_number_after(&b, k ? "," : "\"bbox\"");
        }
        q = ce;
        x->iou = fx_number_after(&q, "\"predicted_iou\"");
        q = ce;
        x->pt[0] = fx_number_after(&q, "\"point_coords\"");
        x->pt[1] = fx_number_after(&q, ",");
        q = ce;
        x->stab = fx_number_after(&q, "\"stability_score\"");
        q = ce;
        const char *cb = strstr(q, "\"crop_box\"");
        for (int k = 0; k < 4; k++) x->crop[k] = fx_number_after(&cb, k ? "," : "\"crop_box\"");
        p = ce;
        n++;
    }
    *out = r;
    return n;
}

static inline void fx_free_records(fx_rec *r, int n) {
    for (int i = 0; i < n; i++) free(r[i].counts), free(r[i].str);
    free(r);
}

typedef struct fx_match {
    int    matched, extra;
    int    in_order;          /* expected record i matched actual record i, all i */
    int    str_equal;         /* matched pairs whose counts strings are byte-identical */
    int    str_differ_same_px; /* matched pairs with the same pixels but other strings */
    double worst_iou, max_dstab, max_diou, max_dother;
} fx_match;

/* compare_amg.py: greedy, expected order, best mask IoU (+0.001 for the
 * same point) among unused actual records; a match needs IoU >= min_iou.
 * max_dother: largest difference of area, bbox, point, crop_box. */
static inline void fx_compare(const fx_rec *e, int ne, const fx_rec *a, int na, double min_iou,
                       fx_match *m) {
    char *used = calloc((size_t)na + 1, 1);
    memset(m, 0, sizeof *m);
    m->worst_iou = 1.0;
    m->in_order = ne == na;
    for (int i = 0; i < ne; i++) {
        double best = -1, best_iou = 0;
        int bj = -1;
        for (int j = 0; j < na; j++) {
            if (used[j] || a[j].h != e[i].h || a[j].w != e[i].w) continue;
            double iou = rle_iou(e[i].counts, e[i].n, a[j].counts, a[j].n);
            if (rle_area(e[i].counts, e[i].n) == 0 && rle_area(a[j].counts, a[j].n) == 0)
                iou = 1.0;
            int same = fabs(e[i].pt[0] - a[j].pt[0]) <= 0.51 &&
                       fabs(e[i].pt[1] - a[j].pt[1]) <= 0.51;
            double sc = iou + (same ? 0.001 : 0);
            if (sc > best) best = sc, bj = j, best_iou = iou;
        }
        if (!(bj >= 0 && best >= min_iou)) m->in_order = 0;
        if (bj >= 0 && best >= min_iou) {
            used[bj] = 1;
            m->matched++;
            if (bj != i) m->in_order = 0;
            if (best_iou < m->worst_iou) m->worst_iou = best_iou;
            const fx_rec *x = &e[i], *y = &a[bj];
            uint64_t ax = rle_area(x->counts, x->n);
            int same_px = ax == rle_area(y->counts, y->n) &&
                          rle_intersection(x->counts, x->n, y->counts, y->n) == ax;
            int same_str = !strcmp(x->str, y->str);
            m->str_equal += same_str;
            m->str_differ_same_px += same_px && !same_str;
            double ds = fabs(e[i].stab - a[bj].stab), di = fabs(e[i].iou - a[bj].iou);
            if (ds > m->max_dstab || isnan(ds)) m->max_dstab = ds;
            if (di > m->max_diou || isnan(di)) m->max_diou = di;
            double d = fabs(e[i].area - a[bj].area);
            for (int k = 0; k < 4; k++) {
                d = fmax(d, fabs(e[i].bbox[k] - a[bj].bbox[k]));
                d = fmax(d, fabs(e[i].crop[k] - a[bj].crop[k]));
            }
            d = fmax(d, fabs(e[i].pt[0] - a[bj].pt[0]));
            d = fmax(d, fabs(e[i].pt[1] - a[bj].pt[1]));
            if (d > m->max_dother) m->max_dother = d;
        }
    }
    for (int j = 0; j < na; j++) m->extra += !used[j];
    free(used);
}

#endif
