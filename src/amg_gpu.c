/* amg_gpu.c: the generator's post-processing on a device (see amg_int.h),
 * and amg_post_ops_ref, the plain-C version of the backend_amg_ops table
 * (the naive reference beside the CUDA kernels, llm.c style).
 *
 * Per batch (src/amg.c calls these in order):
 *   1. amg_gpu_stats: pass 1 over the masks that passed the IoU filter
 *      gives each its three pixel counts, box and number of run boundaries.
 *      The masks are either where the decoder wrote them on the device
 *      (amg_gpu_device_masks: the logits never cross the bus; the ops read
 *      them through an index) or, when the host had to touch them
 *      (min-area filling, m2m, a model without a device decode), staged on
 *      the host and uploaded in one copy. src/amg.c applies the stability
 *      and crop-edge filters to these figures.
 *   2. amg_gpu_boundaries: pass 2 over the survivors only writes the rows
 *      where each column's mask switches on or off, packed per mask in
 *      column order, and the survivors' column offsets; two downloads bring
 *      them back and src/amg.c turns them into COCO RLE counts (a few
 *      integers per column, no pixel work).
 * NMS: the host sorts (stable, as torch.sort); the device computes the
 * suppression bits of every ordered pair; the host scans them in order.
 *
 * Memory: the staging and device buffers are sized at creation from
 * points_per_batch (masks) and grow, never shrink, with the largest crop
 * and the most boundaries seen: nothing per mask or per pixel.
 */
#include <stdlib.h>
#include <string.h>

#include "amg.h"
#include "amg_int.h"
#include "../kernels/amg_post.h"

struct amg_gpu {
    backend_t              *be;
    const backend_amg_ops  *ops;
    int                     L, max_masks;
    backend_amg_geom        geom;          /* current crop, device pointers */
    /* device */
    float   *d_A;                          /* (max_masks, L, L) */
    int32_t *d_ia;                         /* (max_masks) masks of d_A read by the ops */
    const int32_t *ia;                     /* d_ia for the last stats call, or NULL */
    int64_t *d_sums;                       /* (max_masks, SUMS) */
    int32_t *d_sel;                        /* (max_masks) */
    int64_t *d_base;                       /* (max_masks) */
    void    *d_axes;  size_t cap_axes;     /* 4-byte entries: 9 arrays of ch or cw entries */
    int32_t *d_stat;  size_t cap_stat;     /* (max_masks, cw, COLSTAT) entries */
    int64_t *d_off;   size_t cap_off;      /* (max_masks, cw) */
    int64_t *d_soff;  size_t cap_soff;     /* (survivors, cw) their rows of d_off */
    int32_t *d_trans; size_t cap_trans;
    int32_t *d_boxes; size_t cap_boxes;    /* (n, 4) */
    uint64_t *d_mask; size_t cap_mask;     /* (n, words) */
    /* host */
    float   *A;                            /* (max_masks, L, L) staging */
    int64_t *sums;                         /* (max_masks, SUMS) */
    int32_t *sel;                          /* (max_masks) of the last boundaries call */
    int64_t *base;                         /* (max_masks) */
    int      nm;                           /* masks of the last stats call */
    int64_t *off;     size_t cap_hoff;     /* (survivors, cw) */
    int32_t *trans;   size_t cap_htrans;
    int32_t *boxes;   size_t cap_hboxes;
    uint64_t *mask;   size_t cap_hmask;
    uint64_t *remv;   size_t cap_remv;
    int32_t *rend;    size_t cap_rend;     /* (ch) the row after each row's band */
};

/* dev_reserve: *p holds at least need elements of elem bytes (device) */
static int dev_reserve(amg_gpu_t *G, void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap && *p) return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need) {
        if (n > SIZE_MAX / 4 / elem) return ERR_NOMEM;
        n *= 2;
    }
    if (*p) G->be->free(G->be, *p);
    *p = G->be->alloc(G->be, n * elem);
    *cap = *p ? n : 0;
    return *p ? 0 : ERR_NOMEM;
}

/* host_reserve: the same on the host (contents are not kept) */
static int host_reserve(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap && *p) return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need) {
        if (n > SIZE_MAX / 4 / elem) return ERR_NOMEM;
        n *= 2;
    }
    free(*p);
    *p = malloc(n * elem);
    *cap = *p ? n : 0;
    return *p ? 0 : ERR_NOMEM;
}

int amg_gpu_create(amg_gpu_t **out, backend_t *be, const backend_amg_ops *ops, int L,
                   int max_masks, err_t *err) {
    *out = NULL;
    CHECK(be && ops && L > 0 && max_masks > 0);
    amg_gpu_t *G = calloc(1, sizeof *G);
    if (!G) return err_set(err, ERR_NOMEM, "amg: out of memory");
    G->be = be, G->ops = ops, G->L = L, G->max_masks = max_masks;
    size_t L2 = (size_t)L * L, M = (size_t)max_masks;
    G->A = malloc(M * L2 * sizeof(float));
    G->sums = malloc(M * BACKEND_AMG_SUMS * sizeof(int64_t));
    G->sel = malloc(M * sizeof(int32_t));
    G->base = malloc(M * sizeof(int64_t));
    G->d_A = be->alloc(be, M * L2 * sizeof(float));
    G->d_ia = be->alloc(be, M * sizeof(int32_t));
    G->d_sums = be->alloc(be, M * BACKEND_AMG_SUMS * sizeof(int64_t));
    G->d_sel = be->alloc(be, M * sizeof(int32_t));
    G->d_base = be->alloc(be, M * sizeof(int64_t));
    if (!G->A || !G->sums || !G->sel || !G->base || !G->d_A || !G->d_ia || !G->d_sums ||
        !G->d_sel || !G->d_base) {
        amg_gpu_free(G);
        return err_set(err, ERR_NOMEM, "amg: out of %s memory for the post-processing of %d masks",
                       be->name, max_masks);
    }
    G->geom.L = L;
    *out = G;
    return 0;
}

void amg_gpu_free(amg_gpu_t *G) {
    if (!G) return;
    backend_t *be = G->be;
    void *dev[] = {G->d_A, G->d_ia, G->d_sums, G->d_sel, G->d_base, G->d_axes, G->d_stat,
                   G->d_off, G->d_soff, G->d_trans, G->d_boxes, G->d_mask};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        if (dev[i]) be->free(be, dev[i]);
    free(G->A), free(G->sums), free(G->sel), free(G->base), free(G->off), free(G->trans);
    free(G->boxes), free(G->mask), free(G->remv), free(G->rend);
    free(G);
}

backend_t *amg_gpu_backend(const amg_gpu_t *G) { return G->be; }

int amg_gpu_set_crop(amg_gpu_t *G, int ch, int cw, const int32_t *ri0, const int32_t *ri1,
                     const float *rw0, const float *rw1, const int32_t *ci0,
                     const int32_t *ci1, const float *cw0, const float *cw1) {
    CHECK(ch > 0 && cw > 0);
    size_t nr = (size_t)ch, nc = (size_t)cw, M = (size_t)G->max_masks;
    /* 9 arrays of 4-byte entries, each starting on a 256-byte boundary:
     * 5 of ch entries (the row maps and rend), 4 of cw */
    size_t sr = (nr + 63) / 64 * 64, sc = (nc + 63) / 64 * 64;
    if (host_reserve((void **)&G->rend, &G->cap_rend, nr, sizeof(int32_t)) ||
        dev_reserve(G, &G->d_axes, &G->cap_axes, 5 * sr + 4 * sc, 4) ||
        dev_reserve(G, (void **)&G->d_stat, &G->cap_stat, M * nc * BACKEND_AMG_COLSTAT,
                    sizeof(int32_t)) ||
        dev_reserve(G, (void **)&G->d_off, &G->cap_off, M * nc, sizeof(int64_t)))
        return ERR_NOMEM;
    /* the bands: rows sharing one pair of low-res rows (amg_post_column
     * classifies a band whole when its corners are clearly on one side of
     * every threshold) */
    for (int y = ch - 1; y >= 0; y--)
        G->rend[y] = y + 1 < ch && ri0[y + 1] == ri0[y] && ri1[y + 1] == ri1[y] ? G->rend[y + 1]
                                                                               : y + 1;
    int32_t *d = G->d_axes;
    const void *src[9] = {ri0, ri1, rw0, rw1, G->rend, ci0, ci1, cw0, cw1};
    int32_t *dst[9];
    for (int k = 0; k < 9; k++) {
        dst[k] = k < 5 ? d + k * sr : d + 5 * sr + (k - 5) * sc;
        G->be->upload(G->be, dst[k], src[k], (k < 5 ? nr : nc) * 4);
    }
    backend_amg_geom *g = &G->geom;
    g->ch = ch, g->cw = cw;
    g->ri0 = dst[0], g->ri1 = dst[1], g->rw0 = (const float *)dst[2], g->rw1 = (const float *)dst[3];
    g->rend = dst[4];
    g->ci0 = dst[5], g->ci1 = dst[6], g->cw0 = (const float *)dst[7], g->cw1 = (const float *)dst[8];
    return 0;
}

float *amg_gpu_mask(amg_gpu_t *G, int k) {
    CHECK(k >= 0 && k < G->max_masks);
    return G->A + (size_t)k * G->L * G->L;
}

float *amg_gpu_device_masks(amg_gpu_t *G) { return G->d_A; }

int amg_gpu_max_masks(const amg_gpu_t *G) { return G->max_masks; }

int amg_gpu_stats(amg_gpu_t *G, int nm, const int32_t *idx, int single, float t_hi, float t_lo,
                  float t_mask, const int64_t **sums) {
    CHECK(nm >= 0 && nm <= G->max_masks && G->geom.cw > 0);
    backend_t *be = G->be;
    backend_amg_geom *g = &G->geom;
    g->single = single, g->t_hi = t_hi, g->t_lo = t_lo, g->t_mask = t_mask;
    G->nm = nm;
    G->ia = idx ? G->d_ia : NULL;
    *sums = G->sums;
    if (nm == 0) return 0;
    if (idx) {
        for (int k = 0; k < nm; k++) CHECK(idx[k] >= 0 && idx[k] < G->max_masks);
        be->upload(be, G->d_ia, idx, (size_t)nm * sizeof(int32_t));
    } else {
        be->upload(be, G->d_A, G->A, (size_t)nm * G->L * G->L * sizeof(float));
    }
    G->ops->columns(be, g, G->d_A, G->ia, nm, G->d_stat);
    G->ops->reduce(be, g, G->d_stat, nm, G->d_sums, G->d_off);
    be->download(be, G->sums, G->d_sums, (size_t)nm * BACKEND_AMG_SUMS * sizeof(int64_t));
    return 0;
}

int amg_gpu_boundaries(amg_gpu_t *G, const int32_t *sel, int ns) {
    CHECK(ns >= 0 && ns <= G->nm);
    if (ns == 0) return 0;
    backend_t *be = G->be;
    int64_t total = 0;
    for (int s = 0; s < ns; s++) {
        CHECK(sel[s] >= 0 && sel[s] < G->nm);
        G->sel[s] = sel[s];
        G->base[s] = total;
        total += G->sums[(size_t)sel[s] * BACKEND_AMG_SUMS + 7];
    }
    size_t need = (size_t)(total > 0 ? total : 1), nso = (size_t)ns * (size_t)G->geom.cw;
    if (dev_reserve(G, (void **)&G->d_trans, &G->cap_trans, need, sizeof(int32_t)) ||
        host_reserve((void **)&G->trans, &G->cap_htrans, need, sizeof(int32_t)) ||
        dev_reserve(G, (void **)&G->d_soff, &G->cap_soff, nso, sizeof(int64_t)) ||
        host_reserve((void **)&G->off, &G->cap_hoff, nso, sizeof(int64_t)))
        return ERR_NOMEM;
    be->upload(be, G->d_sel, G->sel, (size_t)ns * sizeof(int32_t));
    be->upload(be, G->d_base, G->base, (size_t)ns * sizeof(int64_t));
    G->ops->boundaries(be, &G->geom, G->d_A, G->ia, ns, G->d_sel, G->d_base, G->d_off,
                       G->d_trans, G->d_soff);
    be->download(be, G->trans, G->d_trans, (size_t)total * sizeof(int32_t));
    be->download(be, G->off, G->d_soff, nso * sizeof(int64_t));
    return 0;
}

const int32_t *amg_gpu_column(const amg_gpu_t *G, int s, int x, int64_t *n) {
    size_t m = (size_t)G->sel[s], cw = (size_t)G->geom.cw;
    const int64_t *o = G->off + (size_t)s * cw;
    int64_t end = (size_t)x + 1 < cw ? o[x + 1] : G->sums[m * BACKEND_AMG_SUMS + 7];
    *n = end - o[x];
    return G->trans + G->base[s] + o[x];
}

int amg_gpu_nms(amg_gpu_t *G, const int32_t *boxes, size_t stride, const int32_t *ord, int n,
                double thr, uint8_t *keep) {
    if (n <= 0) return 0;
    backend_t *be = G->be;
    size_t N = (size_t)n, words = (N + 63) / 64;
    if (dev_reserve(G, (void **)&G->d_boxes, &G->cap_boxes, N * 4, sizeof(int32_t)) ||
        dev_reserve(G, (void **)&G->d_mask, &G->cap_mask, N * words, sizeof(uint64_t)) ||
        host_reserve((void **)&G->boxes, &G->cap_hboxes, N * 4, sizeof(int32_t)) ||
        host_reserve((void **)&G->mask, &G->cap_hmask, N * words, sizeof(uint64_t)) ||
        host_reserve((void **)&G->remv, &G->cap_remv, words, sizeof(uint64_t)))
        return ERR_NOMEM;
    for (size_t a = 0; a < N; a++) memcpy(G->boxes + 4 * a, boxes + (size_t)ord[a] * stride, 16);
    be->upload(be, G->d_boxes, G->boxes, N * 4 * sizeof(int32_t));
    G->ops->nms_mask(be, G->d_boxes, n, thr, G->d_mask);
    be->download(be, G->mask, G->d_mask, N * words * sizeof(uint64_t));
    /* torchvision's scan: a box survives unless a survivor before it
     * suppressed it; its own bits then join the suppressed set */
    memset(G->remv, 0, words * sizeof(uint64_t));
    for (size_t a = 0; a < N; a++) {
        keep[a] = !(G->remv[a / 64] >> (a % 64) & 1);
        if (!keep[a]) continue;
        const uint64_t *row = G->mask + a * words;
        for (size_t k = a / 64; k < words; k++) G->remv[k] |= row[k];
    }
    return 0;
}

/* ---- amg_post_ops_ref: the same table in plain C on host memory (the
 * CPU backend's), running kernels/amg_post.h loop by loop ---- */

/* mask m of A (backend.h: through ia when given) */
static const float *ref_mask(const backend_amg_geom *g, const float *A, const int32_t *ia,
                             int64_t m) {
    return A + (ia ? (int64_t)ia[m] : m) * g->L * g->L;
}

static void ref_columns(backend_t *be, const backend_amg_geom *g, const float *A,
                        const int32_t *ia, int64_t nm, int32_t *stat) {
    (void)be;
    for (int64_t m = 0; m < nm; m++)
        for (int32_t x = 0; x < g->cw; x++)
            amg_post_column(g, ref_mask(g, A, ia, m), x,
                            stat + (m * g->cw + x) * BACKEND_AMG_COLSTAT, NULL);
}

static void ref_reduce(backend_t *be, const backend_amg_geom *g, const int32_t *stat,
                       int64_t nm, int64_t *sums, int64_t *off) {
    (void)be;
    for (int64_t m = 0; m < nm; m++) {
        int64_t o[BACKEND_AMG_SUMS] = {0, 0, 0, -1, -1, -1, -1, 0};
        for (int32_t x = 0; x < g->cw; x++) {
            const int32_t *s = stat + (m * g->cw + x) * BACKEND_AMG_COLSTAT;
            o[0] += s[0], o[1] += s[1], o[2] += s[2];
            if (s[3] >= 0) {
                if (o[3] < 0) o[3] = x, o[5] = s[3], o[6] = s[4];
                o[4] = x;
                o[5] = s[3] < o[5] ? s[3] : o[5];
                o[6] = s[4] > o[6] ? s[4] : o[6];
            }
            off[m * g->cw + x] = o[7];
            o[7] += s[5];
        }
        memcpy(sums + m * BACKEND_AMG_SUMS, o, sizeof o);
    }
}

static void ref_boundaries(backend_t *be, const backend_amg_geom *g, const float *A,
                           const int32_t *ia, int64_t ns, const int32_t *sel,
                           const int64_t *base, const int64_t *off, int32_t *trans,
                           int64_t *soff) {
    (void)be;
    int32_t st[BACKEND_AMG_COLSTAT];
    for (int64_t s = 0; s < ns; s++) {
        int64_t m = sel[s];
        for (int32_t x = 0; x < g->cw; x++) {
            int64_t o = off[m * g->cw + x];
            soff[s * g->cw + x] = o;
            amg_post_column(g, ref_mask(g, A, ia, m), x, st, trans + base[s] + o);
        }
    }
}

static void ref_nms_mask(backend_t *be, const int32_t *boxes, int64_t n, double thr,
                         uint64_t *mask) {
    (void)be;
    int64_t words = (n + 63) / 64;
    memset(mask, 0, (size_t)(n * words) * sizeof *mask);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            if (amg_post_iou_above(boxes + 4 * i, boxes + 4 * j, thr))
                mask[i * words + j / 64] |= (uint64_t)1 << (j % 64);
}

const backend_amg_ops amg_post_ops_ref = {
    .columns = ref_columns,
    .reduce = ref_reduce,
    .boundaries = ref_boundaries,
    .nms_mask = ref_nms_mask,
};
