/* amg.c: the automatic mask generator (see amg.h), the official
 * SAM2AutomaticMaskGenerator's semantics without its memory: no
 * full-resolution mask is ever stored.
 *
 * Per image: crop boxes (generate_crop_boxes), per crop a point grid, per
 * batch of points one decoder call (plus the m2m refinement calls), then
 * per mask: predicted-IoU filter -> hole/sprinkle fill of the low-res
 * logits (min_mask_region_area) -> stability score -> binarize -> box ->
 * crop-edge filter -> RLE. NMS per crop, then across crops.
 *
 * Why no full-resolution masks: a full-res logit is PyTorch's bilinear
 * resize (align_corners=False) of the low-res map, a blend of the 4 corners
 * of one low-res "cell". Full-res rows that share the same pair of low-res
 * rows form a band, columns likewise, and a band x band block is a cell. If
 * all four corners of a cell are clearly above (or below) a threshold, every
 * pixel of the cell is (the blend is convex up to a few ulps: `eps` below);
 * only cells the threshold passes through are evaluated pixel by pixel, with
 * the exact float expression PyTorch's CPU kernel evaluates (checked bit for
 * bit against torch 1.13 on random logits for the (N,3,h,w) kernel: weights
 * from a double source index, fused multiply-adds as its AVX2 build
 * contracts them; for the (N,1,h,w) channels-last kernel of m2m and
 * single-mask output: float corner weights h*w, the four products summed in
 * double). Only the bounding box of low-res pixels that can exceed the
 * lowest threshold is visited. Stability counts add up whole cells; the RLE
 * walks each column through a short list of class segments. Cost per mask
 * ~ one pass over the L x L logits + boundary pixels, instead of h*w.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "amg.h"
#include "amg_int.h"
#include "json.h"
#include "rle.h"
#include "size.h"
#include "../kernels/amg_post.h"

/* one kept mask, before NMS */
typedef struct amg_rec {
    int64_t  area;
    int32_t  box[4];      /* x0, y0, x1, y1 (inclusive max), image pixels */
    float    iou, stab;
    float    pt[2];       /* point, image pixels (float32 as the official) */
    int32_t  crop;        /* index into crops */
    size_t   str_off;     /* RLE string in g->str */
    uint32_t str_len;
} amg_rec;

/* the rows (or columns) of a crop side of n pixels, mapped to low-res L */
typedef struct amg_axis {
    int      n;
    int32_t *i0, *i1;     /* (n) low-res indices */
    float   *w0, *w1;     /* (n) weights */
    int32_t *lo, *hi;     /* (L) band b = pixels [lo, hi) with i0 == b */
    int32_t *b1;          /* (L) second low-res index of band b */
    int32_t *list;        /* (L) non-empty bands, increasing */
    int      nlist;
} amg_axis;

/* a run of row bands of one class in one column band */
typedef struct amg_seg {
    int32_t lo, hi;       /* rows [lo, hi) */
    int32_t j;            /* row band (class 2 only) */
    int32_t cls;          /* 0 below, 1 above, 2 evaluate */
} amg_seg;

/* the scratch of one post-processing thread, reused mask after mask */
typedef struct amg_work {
    float    *fill;               /* (L, L) hole/sprinkle-filled logits */
    int32_t  *stack;              /* (L*L) flood-fill stack */
    uint8_t  *seen;               /* (L*L) */
    float    *cmin, *cmax;        /* (L, L) per cell corner bounds -eps / +eps */
    amg_seg  *segs;               /* (L) */
    uint8_t  *fgrow;              /* (cap_fgrow) 0/1 of one column of one row band */
    size_t    cap_fgrow;
    uint32_t *counts;             /* RLE counts of the current mask */
    size_t    ncounts, cap_counts;
    char     *str;                /* RLE strings of this batch's kept masks */
    size_t    nstr, cap_str;
    float     eps;                /* current mask: rounding bound of the blend */
    int       rb0, rb1, cb0, cb1; /* current mask: band ranges that can be non-zero */
    size_t    bytes;              /* held by this worker */
} amg_work;

/* one mask of a batch and what became of it */
typedef struct amg_slot {
    const float *A;               /* (L, L) logits */
    const float *pt;              /* (2) point, crop pixels */
    float        iou;
    int          single;          /* from a (B,1,...) decoder output */
    int          stage;           /* 0 dropped by IoU, 1 by stability, 2 by crop edge, 3 kept */
    int          worker;          /* whose str holds the string */
    int          rc;              /* 0 or ERR_NOMEM */
    amg_rec      rec;             /* stage 3: str_off into work[worker].str */
} amg_slot;

struct amg {
    amg_params p;
    float     *grid_pts;          /* (sum sizes, 2) own copy of the grids */
    int       *grid_sizes;        /* (n_grids) */
    int        n_grids;
    int        S, L;
    /* batch (sized at create from points_per_batch) */
    float     *pts_img;           /* (ppb, 2) crop pixels, float32 */
    float     *pts_model;         /* (ppb, 2) model input coordinates */
    float     *low;               /* (ppb*3, L, L) decoder logits */
    float     *iou;               /* (ppb*3) */
    float     *m2m_in;            /* (ppb, L, L) clamped mask inputs */
    float     *m2m_pts;           /* (ppb, 2) */
    float     *m2m_img;           /* (ppb, 2) */
    float     *m2m_low;           /* (ppb, L, L) */
    float     *m2m_iou;           /* (ppb) */
    /* post-processing threads: work[0] is the caller's */
    amg_work  *work;              /* (nwork) */
    int        nwork;
    amg_slot  *slots;             /* (ppb*3) */
    struct amg_pool *pool;        /* NULL with one thread */
    /* per crop */
    amg_axis   ax[2];             /* 0 rows (height), 1 columns (width) */
    int        cap_axis[2];
    /* growing per image */
    amg_rec   *recs;
    int        nrec, cap_recs;
    char      *str;
    size_t     nstr, cap_str;
    int32_t   *order, *order_tmp; /* (cap_nms) */
    float     *score;             /* (cap_nms) */
    uint8_t   *supp;              /* (cap_nms) */
    amg_rec   *tmp;               /* (cap_nms) */
    size_t     cap_nms;
    int32_t   (*crops)[4];        /* (ncrops) x0, y0, x1, y1 */
    int32_t   *crop_layer;
    int        ncrops, cap_crops;
    /* current crop */
    int        cx, cy, cw, ch, W, H;
    int        has_fma;           /* the CPU has fused multiply-add */
    amg_gpu_t *gpu;               /* device post-processing (amg_gpu.c), or NULL */
    int        gpu_chosen;        /* amg_use_backend was called: no automatic choice */
    int        gpu_staged;        /* SAM2AMG_GPU_POST=staged: never decode_dev */
    int        post_ref;          /* the device ops are amg_post_ops_ref */
    int        dev_low;           /* this batch's logits are in amg_gpu_device_masks */
    int32_t   *gpu_idx;           /* (2 * masks per batch) scratch of eval_slots_gpu */
    amg_stats  st;
    size_t     bytes;
};

static int  work_init(amg_t *g, int n);
static void work_free(amg_t *g);
static void pool_stop(amg_t *g);

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* grow: make *p hold at least need elements of size elem (doubling);
 * *bytes counts what is held. */
static int grow(size_t *bytes, void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    if (need > SIZE_MAX / 2 / elem) return ERR_NOMEM;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return ERR_NOMEM;
    *bytes += (n - *cap) * elem;
    *p = q;
    *cap = n;
    return 0;
}

static void *xcalloc(amg_t *g, size_t n, size_t elem) {
    g->bytes += n * elem;
    return calloc(n ? n : 1, elem);
}

int amg_create(amg_t **out, const amg_params *p, int S, err_t *err) {
    *out = NULL;
    int rc = amg_params_validate(p, err);
    if (rc) return rc;
    if (S < 16 || S % 4)
        return err_set(err, ERR_INVALID, "model size %d: must be a multiple of 4", S);
    amg_t *g = calloc(1, sizeof *g);
    if (!g) return err_set(err, ERR_NOMEM, "amg: out of memory");
    g->p = *p;
    g->S = S;
    g->L = S / 4;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    g->has_fma = __builtin_cpu_supports("fma");
#endif
    size_t L2 = (size_t)g->L * g->L, B = (size_t)p->points_per_batch;
    int ok = 1;
    if (p->n_point_grids > 0) {
        int64_t tot = 0;
        for (int i = 0; i < p->n_point_grids; i++) tot += p->point_grid_sizes[i];
        g->grid_pts = xcalloc(g, (size_t)tot * 2, sizeof(float));
        g->grid_sizes = xcalloc(g, (size_t)p->n_point_grids, sizeof(int));
        ok = g->grid_pts && g->grid_sizes;
        if (ok) {
            memcpy(g->grid_pts, p->point_grids, (size_t)tot * 2 * sizeof(float));
            memcpy(g->grid_sizes, p->point_grid_sizes, (size_t)p->n_point_grids * sizeof(int));
        }
        g->n_grids = p->n_point_grids;
        g->p.point_grids = g->grid_pts;
        g->p.point_grid_sizes = g->grid_sizes;
    }
    g->pts_img = xcalloc(g, B * 2, sizeof(float));
    g->pts_model = xcalloc(g, B * 2, sizeof(float));
    g->low = xcalloc(g, B * 3 * L2, sizeof(float));
    g->iou = xcalloc(g, B * 3, sizeof(float));
    if (p->use_m2m) {
        g->m2m_in = xcalloc(g, B * L2, sizeof(float));
        g->m2m_pts = xcalloc(g, B * 2, sizeof(float));
        g->m2m_img = xcalloc(g, B * 2, sizeof(float));
        g->m2m_low = xcalloc(g, B * L2, sizeof(float));
        g->m2m_iou = xcalloc(g, B, sizeof(float));
        ok = ok && g->m2m_in && g->m2m_pts && g->m2m_img && g->m2m_low && g->m2m_iou;
    }
    g->slots = xcalloc(g, B * 3, sizeof(amg_slot));
    ok = ok && g->slots && work_init(g, 1) == 0;
    for (int a = 0; a < 2; a++) {
        g->ax[a].lo = xcalloc(g, (size_t)g->L, sizeof(int32_t));
        g->ax[a].hi = xcalloc(g, (size_t)g->L, sizeof(int32_t));
        g->ax[a].b1 = xcalloc(g, (size_t)g->L, sizeof(int32_t));
        g->ax[a].list = xcalloc(g, (size_t)g->L, sizeof(int32_t));
        ok = ok && g->ax[a].lo && g->ax[a].hi && g->ax[a].b1 && g->ax[a].list;
    }
    ok = ok && g->pts_img && g->pts_model && g->low && g->iou;
    if (!ok) {
        amg_free(g);
        return err_set(err, ERR_NOMEM, "amg: out of memory for a batch of %d prompts",
                       p->points_per_batch);
    }
    *out = g;
    return 0;
}

void amg_free(amg_t *g) {
    if (!g) return;
    free(g->grid_pts), free(g->grid_sizes);
    free(g->pts_img), free(g->pts_model), free(g->low), free(g->iou);
    free(g->m2m_in), free(g->m2m_pts), free(g->m2m_img), free(g->m2m_low), free(g->m2m_iou);
    pool_stop(g);
    work_free(g);
    amg_gpu_free(g->gpu);
    free(g->gpu_idx);
    free(g->slots);
    for (int a = 0; a < 2; a++) {
        amg_axis *x = &g->ax[a];
        free(x->i0), free(x->i1), free(x->w0), free(x->w1);
        free(x->lo), free(x->hi), free(x->b1), free(x->list);
    }
    free(g->recs), free(g->str), free(g->order), free(g->order_tmp), free(g->score);
    free(g->supp), free(g->tmp), free(g->crops), free(g->crop_layer);
    free(g);
}

void amg_get_stats(const amg_t *g, amg_stats *st) {
    *st = g->st;
    snprintf(st->post_on, sizeof st->post_on, "%s%s",
             g->gpu ? amg_gpu_backend(g->gpu)->name : "cpu", g->gpu && g->post_ref ? " (ref)" : "");
    st->peak_bytes = g->bytes;
    for (int i = 0; i < g->nwork; i++) st->peak_bytes += g->work[i].bytes;
}

/* ---- geometry: crop boxes, grids, resize maps ---- */

/* crop boxes exactly as generate_crop_boxes (python int/float rules).
 * An image smaller than a layer's grid (e.g. 1 pixel wide with
 * crop_n_layers 1, or 2x2 with crop_n_layers 2) gets crops with x1 <= x0
 * or y1 <= y0 there; the official generator then crops an empty array and
 * fails in its resize (torch: "Input and output sizes should be greater
 * than 0"). Same outcome here, as a data error for this image: ERR_INVALID
 * naming the first such crop. ERR_NOMEM if the list cannot grow. */
static int make_crops(amg_t *g, int W, int H, err_t *err) {
    int n = 1;
    for (int l = 0; l < g->p.crop_n_layers; l++) n += (1 << (l + 1)) * (1 << (l + 1));
    size_t cap = (size_t)g->cap_crops;
    if (grow(&g->bytes, (void **)&g->crops, &cap, (size_t)n, sizeof *g->crops))
        return err_set(err, ERR_NOMEM, "amg: out of memory for %d crop boxes", n);
    size_t cap2 = (size_t)g->cap_crops;
    if (grow(&g->bytes, (void **)&g->crop_layer, &cap2, (size_t)n, sizeof(int32_t)))
        return err_set(err, ERR_NOMEM, "amg: out of memory for %d crop boxes", n);
    g->cap_crops = (int)(cap < cap2 ? cap : cap2);
    int k = 0, short_side = H < W ? H : W;
    g->crops[k][0] = 0, g->crops[k][1] = 0, g->crops[k][2] = W, g->crops[k][3] = H;
    g->crop_layer[k++] = 0;
    for (int l = 0; l < g->p.crop_n_layers; l++) {
        int nps = 1 << (l + 1);
        int overlap = (int)(g->p.crop_overlap_ratio * short_side * (2.0 / nps));
        int crop_w = (int)ceil((double)(overlap * (nps - 1) + W) / nps);
        int crop_h = (int)ceil((double)(overlap * (nps - 1) + H) / nps);
        for (int xi = 0; xi < nps; xi++)
            for (int yi = 0; yi < nps; yi++) {
                int x0 = (crop_w - overlap) * xi, y0 = (crop_h - overlap) * yi;
                g->crops[k][0] = x0;
                g->crops[k][1] = y0;
                g->crops[k][2] = x0 + crop_w < W ? x0 + crop_w : W;
                g->crops[k][3] = y0 + crop_h < H ? y0 + crop_h : H;
                g->crop_layer[k++] = l + 1;
            }
    }
    g->ncrops = k;
    for (int c = 0; c < k; c++) {
        const int32_t *b = g->crops[c];
        if (b[2] <= b[0] || b[3] <= b[1])
            return err_set(err, ERR_INVALID,
                           "image %dx%d is too small for crop_n_layers %d: crop box %d of layer "
                           "%d is [%d, %d, %d, %d] (x0, y0, x1, y1), empty (the official "
                           "generator fails on it too; use fewer crop layers)",
                           W, H, g->p.crop_n_layers, c, g->crop_layer[c], b[0], b[1], b[2], b[3]);
    }
    return 0;
}

/* numpy linspace(1/(2n), 1 - 1/(2n), n), element i */
static double grid_coord(int n, int i) {
    double start = 1.0 / (2 * n), stop = 1.0 - start;
    if (n == 1) return start;
    if (i == n - 1) return stop;
    double step = (stop - start) / (n - 1);
    return i * step + start;
}

/* point q of a layer's grid in crop pixels (float32 as torch.as_tensor) */
static void layer_point(const amg_t *g, int layer, int side, int q, int cw, int ch, float *xy) {
    double gx, gy;
    if (g->n_grids > 0) {
        int off = 0;
        for (int i = 0; i < layer; i++) off += g->grid_sizes[i];
        gx = g->grid_pts[2 * (off + q)];
        gy = g->grid_pts[2 * (off + q) + 1];
    } else {
        gx = grid_coord(side, q % side);
        gy = grid_coord(side, q / side);
    }
    xy[0] = (float)(gx * cw);
    xy[1] = (float)(gy * ch);
}

/* the resize map of one side: PyTorch's bilinear source index and weights
 * (align_corners=False): scale in float, source index in double, weights
 * rounded to float with w0 = 1 - w1 in float. */
static int make_axis(amg_t *g, int a, int n) {
    amg_axis *x = &g->ax[a];
    int L = g->L;
    if (n > g->cap_axis[a]) {
        size_t cap = (size_t)g->cap_axis[a], c2 = cap, c3 = cap, c4 = cap;
        if (grow(&g->bytes, (void **)&x->i0, &cap, (size_t)n, sizeof(int32_t)) ||
            grow(&g->bytes, (void **)&x->i1, &c2, (size_t)n, sizeof(int32_t)) ||
            grow(&g->bytes, (void **)&x->w0, &c3, (size_t)n, sizeof(float)) ||
            grow(&g->bytes, (void **)&x->w1, &c4, (size_t)n, sizeof(float)))
            return ERR_NOMEM;
        g->cap_axis[a] = (int)cap;
    }
    x->n = n;
    float scale = (float)L / (float)n;
    for (int i = 0; i < n; i++) {
        if (n == L) {
            x->i0[i] = x->i1[i] = i;
            x->w0[i] = 1.0f;
            x->w1[i] = 0.0f;
            continue;
        }
        double src = (double)scale * (i + 0.5) - 0.5;
        if (src < 0) src = 0;
        int i0 = (int)src;
        x->i0[i] = i0;
        x->i1[i] = i0 + (i0 < L - 1 ? 1 : 0);
        x->w1[i] = (float)(src - i0);
        x->w0[i] = 1.0f - x->w1[i];
    }
    for (int b = 0; b < L; b++) x->lo[b] = x->hi[b] = 0, x->b1[b] = b;
    x->nlist = 0;
    for (int i = 0; i < n;) {
        int b = x->i0[i], j = i;
        while (j < n && x->i0[j] == b) j++;
        x->lo[b] = i;
        x->hi[b] = j;
        x->b1[b] = x->i1[i];
        x->list[x->nlist++] = b;
        i = j;
    }
    return 0;
}

/* ---- low-res hole / sprinkle fill (min_mask_region_area) ---- */

/* out = a with background components (a <= 0, 8-connected) of at most
 * max_area pixels set to 10 and foreground ones (a > 0) set to -10; both
 * from a itself. The predictor's own mask_threshold (0), not the AMG's. */
static void fill_small_regions(const amg_t *g, amg_work *w, const float *a, float *out,
                               int max_area) {
    int L = g->L;
    memcpy(out, a, sizeof(float) * L * L);
    memset(w->seen, 0, (size_t)L * L);
    for (int s = 0; s < L * L; s++) {
        if (w->seen[s]) continue;
        int fg = a[s] > 0.0f, n = 0, top = 0;
        w->stack[top++] = s;
        w->seen[s] = 1;
        /* the stack doubles as the component's pixel list: pop by index */
        while (n < top) {
            int p = w->stack[n++], py = p / L, px = p % L;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int qy = py + dy, qx = px + dx;
                    if ((dy | dx) == 0 || qy < 0 || qx < 0 || qy >= L || qx >= L) continue;
                    int q = qy * L + qx;
                    if (w->seen[q] || (a[q] > 0.0f) != fg) continue;
                    w->seen[q] = 1;
                    w->stack[top++] = q;
                }
        }
        if (n <= max_area)
            for (int i = 0; i < n; i++) out[w->stack[i]] = fg ? -10.0f : 10.0f;
    }
}

/* ---- thresholds on the implicit full-resolution logits ---- */

/* The cells that can hold a pixel above the lowest threshold t_lo, and
 * their corner bounds. eps bounds the rounding of PyTorch's blend for this
 * mask (a few ulps of its largest |logit|, with a wide margin): a cell whose
 * corners are all < t - eps has no pixel > t, one whose corners are all
 * > t + eps has every pixel > t. Only cells with a corner >= t_lo - eps can
 * be anything but background at every threshold (t_lo <= t): their band
 * ranges are w->rb0..rb1, w->cb0..cb1 (indices into the band lists); an
 * empty range when the whole mask is background. */
static void cell_bounds(const amg_t *g, amg_work *w, const float *A, float t_lo) {
    int L = g->L;
    float amax = 0;
    for (int q = 0; q < L * L; q++) {
        float v = A[q] < 0 ? -A[q] : A[q];
        amax = v > amax ? v : amax;
    }
    w->eps = AMG_BLEND_EPS(amax);
    float act = t_lo - w->eps;
    int ymin = L, ymax = -1, xmin = L, xmax = -1;
    for (int y = 0; y < L; y++) {
        const float *row = A + (size_t)y * L;
        int x0 = -1, x1 = -1;
        for (int x = 0; x < L; x++)
            if (row[x] >= act) {
                if (x0 < 0) x0 = x;
                x1 = x;
            }
        if (x0 < 0) continue;
        if (y < ymin) ymin = y;
        ymax = y;
        if (x0 < xmin) xmin = x0;
        if (x1 > xmax) xmax = x1;
    }
    const amg_axis *r = &g->ax[0], *c = &g->ax[1];
    w->rb0 = 0, w->rb1 = -1, w->cb0 = 0, w->cb1 = -1;
    if (ymax < 0) return;
    /* a pixel is a corner of the cells (y-1 | y, x-1 | x) */
    while (w->rb0 < r->nlist && r->list[w->rb0] < ymin - 1) w->rb0++;
    w->rb1 = r->nlist - 1;
    while (w->rb1 >= 0 && r->list[w->rb1] > ymax) w->rb1--;
    while (w->cb0 < c->nlist && c->list[w->cb0] < xmin - 1) w->cb0++;
    w->cb1 = c->nlist - 1;
    while (w->cb1 >= 0 && c->list[w->cb1] > xmax) w->cb1--;
    for (int rj = w->rb0; rj <= w->rb1; rj++) {
        int j = r->list[rj], j1 = r->b1[j];
        const float *a0 = A + (size_t)j * L, *a1 = A + (size_t)j1 * L;
        float *mnr = w->cmin + (size_t)j * L, *mxr = w->cmax + (size_t)j * L;
        for (int ci = w->cb0; ci <= w->cb1; ci++) {
            int i = c->list[ci], i1 = c->b1[i];
            float p = a0[i], q = a0[i1], u = a1[i], t = a1[i1];
            float mn = p < q ? p : q, mx = p < q ? q : p;
            mn = u < mn ? u : mn, mx = u > mx ? u : mx;
            mn = t < mn ? t : mn, mx = t > mx ? t : mx;
            mnr[i] = mn - w->eps; /* class 1 iff this > t */
            mxr[i] = mx + w->eps; /* class 0 iff this < t */
        }
    }
}

/* cell class for threshold t: 1 every pixel > t, 0 none, 2 evaluate */
static inline int cell_class(const amg_t *g, const amg_work *w, int j, int i, float t) {
    size_t q = (size_t)j * g->L + i;
    return w->cmin[q] > t ? 1 : w->cmax[q] < t ? 0 : 2;
}

/* The exact full-res values of one column x over the rows [y0, y1) of row
 * band j: PyTorch's expressions for the (N,3,h,w) generic kernel
 * (single = 0: blend along x with fused multiply-adds as its AVX2 build
 * contracts them, then along y) or for the (N,1,h,w) channels-last kernel
 * (single = 1: four float corner weights, the sum in double). Returns the
 * number of values > t; with fg != NULL writes the 0/1 of each row, with
 * vals != NULL the values. fmaf is exact (one rounding)
 * either way; COLUMN_ABOVE is compiled twice so that CPUs with FMA use the
 * instruction instead of a libm call (picked once, see column_above). */
#define COLUMN_ABOVE(NAME, ATTR)                                                            \
    ATTR static int NAME(const amg_t *g, const float *A, int single, int j, int x, int y0,  \
                         int y1, float t, uint8_t *fg, float *vals) {                        \
        const amg_axis *r = &g->ax[0], *c = &g->ax[1];                                       \
        int L = g->L, n = 0;                                                                 \
        const float *a0 = A + (size_t)j * L, *a1 = A + (size_t)r->b1[j] * L;                 \
        int x0 = c->i0[x], x1 = c->i1[x];                                                    \
        float w0 = c->w0[x], w1 = c->w1[x];                                                  \
        if (single) {                                                                        \
            float p = a0[x0], q = a0[x1], u = a1[x0], v = a1[x1];                            \
            for (int y = y0; y < y1; y++) {                                                  \
                float h0 = r->w0[y], h1 = r->w1[y];                                          \
                float w00 = h0 * w0, w01 = h0 * w1, w10 = h1 * w0, w11 = h1 * w1;            \
                float val = (float)((double)p * w00 + (double)q * w01 + (double)u * w10 +    \
                                    (double)v * w11);                                        \
                int b = val > t;                                                             \
                n += b;                                                                      \
                if (fg) fg[y - y0] = (uint8_t)b;                                             \
                if (vals) vals[y - y0] = val;                                                \
            }                                                                                \
            return n;                                                                        \
        }                                                                                    \
        float t0 = fmaf(a0[x0], w0, a0[x1] * w1);                                            \
        float t1 = fmaf(a1[x0], w0, a1[x1] * w1);                                            \
        for (int y = y0; y < y1; y++) {                                                      \
            float val = fmaf(t0, r->w0[y], t1 * r->w1[y]);                                   \
            int b = val > t;                                                                 \
            n += b;                                                                          \
            if (fg) fg[y - y0] = (uint8_t)b;                                                 \
            if (vals) vals[y - y0] = val;                                                    \
        }                                                                                    \
        return n;                                                                            \
    }
COLUMN_ABOVE(column_above_libm, )
#if defined(__x86_64__) && defined(__GNUC__)
COLUMN_ABOVE(column_above_fma, __attribute__((target("fma"))))
#endif

static int column_above(const amg_t *g, const float *A, int single, int j, int x, int y0,
                        int y1, float t, uint8_t *fg) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (g->has_fma) return column_above_fma(g, A, single, j, x, y0, y1, t, fg, NULL);
#endif
    return column_above_libm(g, A, single, j, x, y0, y1, t, fg, NULL);
}

int amg_upsample(amg_t *g, const float *A, int single, int h, int w, float *out) {
    if (make_axis(g, 0, h) || make_axis(g, 1, w)) return ERR_NOMEM;
    const amg_axis *r = &g->ax[0];
    float *col = malloc(sizeof(float) * (size_t)h);
    if (!col) return ERR_NOMEM;
    for (int x = 0; x < w; x++) {
        for (int rj = 0; rj < r->nlist; rj++) {
            int j = r->list[rj];
            float *v = col + r->lo[j];
#if defined(__x86_64__) && defined(__GNUC__)
            if (g->has_fma)
                column_above_fma(g, A, single, j, x, r->lo[j], r->hi[j], 0, NULL, v);
            else
#endif
                column_above_libm(g, A, single, j, x, r->lo[j], r->hi[j], 0, NULL, v);
        }
        for (int y = 0; y < h; y++) out[(size_t)y * w + x] = col[y];
    }
    free(col);
    return 0;
}

/* count of full-res pixels > t (cells outside the region are background) */
static int64_t count_above(const amg_t *g, const amg_work *w, const float *A, int single,
                           float t) {
    const amg_axis *r = &g->ax[0], *c = &g->ax[1];
    int64_t cnt = 0;
    for (int rj = w->rb0; rj <= w->rb1; rj++) {
        int j = r->list[rj];
        int64_t nrows = r->hi[j] - r->lo[j];
        for (int ci = w->cb0; ci <= w->cb1; ci++) {
            int i = c->list[ci];
            int cls = cell_class(g, w, j, i, t);
            if (cls == 1) {
                cnt += nrows * (c->hi[i] - c->lo[i]);
            } else if (cls == 2) {
                for (int x = c->lo[i]; x < c->hi[i]; x++)
                    cnt += column_above(g, A, single, j, x, r->lo[j], r->hi[j], t, NULL);
            }
        }
    }
    return cnt;
}

/* running state of one mask's RLE */
typedef struct run_acc {
    int64_t prev_end, area;   /* end of the last foreground run (image index) */
    int     xmin, xmax, ymin, ymax;
} run_acc;

/* append foreground rows [lo, hi) of crop column x (col = image index of
 * the crop's top pixel in that column) */
static int emit_run(amg_work *w, run_acc *ra, int64_t col, int x, int lo, int hi) {
    int64_t s0 = col + lo, e0 = col + hi;
    if (w->ncounts > 0 && s0 == ra->prev_end) {
        w->counts[w->ncounts - 1] += (uint32_t)(e0 - s0);
    } else {
        if (grow(&w->bytes, (void **)&w->counts, &w->cap_counts, w->ncounts + 3, sizeof(uint32_t)))
            return ERR_NOMEM;
        w->counts[w->ncounts++] = (uint32_t)(s0 - ra->prev_end);
        w->counts[w->ncounts++] = (uint32_t)(e0 - s0);
    }
    ra->prev_end = e0;
    ra->area += e0 - s0;
    if (x < ra->xmin) ra->xmin = x;
    if (x > ra->xmax) ra->xmax = x;
    if (lo < ra->ymin) ra->ymin = lo;
    if (hi - 1 > ra->ymax) ra->ymax = hi - 1;
    return 0;
}

/* close_runs: the closing background run of an image of npx pixels, only
 * when it is not empty (pycocotools never ends with a zero-length run: a
 * mask whose last pixel is foreground ends with that run), or when there is
 * no run at all (an empty mask is one background run) */
static int close_runs(amg_work *w, const run_acc *ra, int64_t npx) {
    int64_t tail = npx - ra->prev_end;
    if (tail > 0 || w->ncounts == 0) {
        if (grow(&w->bytes, (void **)&w->counts, &w->cap_counts, w->ncounts + 1,
                 sizeof(uint32_t)))
            return ERR_NOMEM;
        w->counts[w->ncounts++] = (uint32_t)tail;
    }
    return 0;
}

/* RLE counts (w->counts) of the mask (> t) placed in the image, its box
 * (x0, y0, x1, y1 in crop pixels, inclusive; all 0 when empty) and area.
 * Returns 0 or ERR_NOMEM. */
static int mask_runs(const amg_t *g, amg_work *w, const float *A, int single, float t,
                     int32_t box[4], int64_t *area) {
    const amg_axis *r = &g->ax[0], *c = &g->ax[1];
    run_acc ra = {0, 0, INT32_MAX, -1, INT32_MAX, -1};
    w->ncounts = 0;
    for (int ci = w->cb0; ci <= w->cb1; ci++) {
        int i = c->list[ci], ns = 0;
        /* class segments of this column band, top to bottom, in the region */
        for (int rj = w->rb0; rj <= w->rb1; rj++) {
            int j = r->list[rj], cls = cell_class(g, w, j, i, t);
            if (cls != 2 && ns && w->segs[ns - 1].cls == cls) {
                w->segs[ns - 1].hi = r->hi[j];
            } else {
                w->segs[ns] = (amg_seg){r->lo[j], r->hi[j], j, cls};
                ns++;
            }
        }
        for (int x = c->lo[i]; x < c->hi[i]; x++) {
            int64_t col = (int64_t)(g->cx + x) * g->H + g->cy;
            int run_lo = -1; /* first row of the open foreground run */
            for (int s = 0; s < ns; s++) {
                const amg_seg *sg = &w->segs[s];
                if (sg->cls == 1) {
                    if (run_lo < 0) run_lo = sg->lo;
                } else if (sg->cls == 0) {
                    if (run_lo >= 0 && emit_run(w, &ra, col, x, run_lo, sg->lo)) return ERR_NOMEM;
                    run_lo = -1;
                } else {
                    uint8_t *fg = w->fgrow;
                    column_above(g, A, single, sg->j, x, sg->lo, sg->hi, t, fg);
                    for (int y = sg->lo; y < sg->hi; y++) {
                        if (fg[y - sg->lo]) {
                            if (run_lo < 0) run_lo = y;
                        } else if (run_lo >= 0) {
                            if (emit_run(w, &ra, col, x, run_lo, y)) return ERR_NOMEM;
                            run_lo = -1;
                        }
                    }
                }
            }
            if (run_lo >= 0 && emit_run(w, &ra, col, x, run_lo, w->segs[ns - 1].hi))
                return ERR_NOMEM;
        }
    }
    if (close_runs(w, &ra, (int64_t)g->W * g->H)) return ERR_NOMEM;
    *area = ra.area;
    if (ra.xmax < 0) {
        box[0] = box[1] = box[2] = box[3] = 0;
    } else {
        box[0] = ra.xmin, box[1] = ra.ymin, box[2] = ra.xmax, box[3] = ra.ymax;
    }
    return 0;
}

/* ---- per mask: filters and record ---- */

/* is_box_near_crop_edge: a box coordinate within 20 px of a crop edge that
 * is not an image edge (box in image pixels) */
static int near_crop_edge(const amg_t *g, const int32_t b[4]) {
    const float crop[4] = {(float)g->cx, (float)g->cy, (float)(g->cx + g->cw),
                           (float)(g->cy + g->ch)};
    const float img[4] = {0, 0, (float)g->W, (float)g->H};
    for (int k = 0; k < 4; k++) {
        float v = (float)b[k];
        if (fabsf(v - crop[k]) <= 20.0f && !(fabsf(v - img[k]) <= 20.0f)) return 1;
    }
    return 0;
}

/* record_finish: slot s passed every filter and w->counts holds its runs:
 * its COCO RLE string into w->str and the record's last fields (stage 3);
 * out of memory is the slot's rc */
static void record_finish(const amg_t *g, amg_work *w, amg_slot *s, int crop) {
    if (grow(&w->bytes, (void **)&w->str, &w->cap_str, w->nstr + rle_string_bound(w->ncounts),
             1)) {
        s->rc = ERR_NOMEM;
        return;
    }
    amg_rec *r = &s->rec;
    s->stage = 3;
    r->iou = s->iou;
    r->pt[0] = s->pt[0] + (float)g->cx;
    r->pt[1] = s->pt[1] + (float)g->cy;
    r->crop = crop;
    r->str_off = w->nstr;
    r->str_len = (uint32_t)rle_encode_string(w->counts, w->ncounts, w->str + w->nstr);
    w->nstr += r->str_len + 1;
}

/* one mask of a batch (s->A, s->single, s->iou, s->pt) through the
 * filters, with worker w's scratch; the outcome goes to s (stage, rec with
 * its string in w->str). Touches nothing shared but reads g. */
static void mask_eval(const amg_t *g, amg_work *w, amg_slot *s, int crop) {
    const amg_params *p = &g->p;
    const float *A = s->A;
    s->stage = 0, s->rc = 0;
    if (p->pred_iou_thresh > 0.0 && !(s->iou > (float)p->pred_iou_thresh)) return;
    s->stage = 1;
    if (p->min_mask_region_area > 0) {
        fill_small_regions(g, w, A, w->fill, p->min_mask_region_area);
        A = w->fill;
    }
    cell_bounds(g, w, A, (float)(p->mask_threshold - p->stability_score_offset));
    int64_t inter = count_above(g, w, A, s->single,
                                (float)(p->mask_threshold + p->stability_score_offset));
    int64_t uni = count_above(g, w, A, s->single,
                              (float)(p->mask_threshold - p->stability_score_offset));
    float stab = (float)inter / (float)uni;
    if (p->stability_score_thresh > 0.0 && !(stab >= (float)p->stability_score_thresh)) return;
    s->stage = 2;
    amg_rec *rc = &s->rec;
    if (mask_runs(g, w, A, s->single, (float)p->mask_threshold, rc->box, &rc->area)) {
        s->rc = ERR_NOMEM;
        return;
    }
    rc->box[0] += g->cx, rc->box[1] += g->cy, rc->box[2] += g->cx, rc->box[3] += g->cy;
    if (g->ncrops > 1 && near_crop_edge(g, rc->box)) return;
    rc->stab = stab;
    record_finish(g, w, s, crop);
}

/* ---- post-processing threads ---- */

static int work_init(amg_t *g, int n) {
    amg_work *ws = calloc((size_t)n, sizeof *ws);
    if (!ws) return ERR_NOMEM;
    g->work = ws;
    g->nwork = n;
    size_t L2 = (size_t)g->L * g->L;
    for (int i = 0; i < n; i++) {
        amg_work *w = &ws[i];
        w->fill = malloc(L2 * sizeof(float));
        w->stack = malloc(L2 * sizeof(int32_t));
        w->seen = malloc(L2);
        w->cmin = malloc(L2 * sizeof(float));
        w->cmax = malloc(L2 * sizeof(float));
        w->segs = malloc((size_t)g->L * sizeof(amg_seg));
        w->bytes = L2 * (4 * sizeof(float) + sizeof(int32_t) + 1) + g->L * sizeof(amg_seg);
        if (!w->fill || !w->stack || !w->seen || !w->cmin || !w->cmax || !w->segs)
            return ERR_NOMEM;
    }
    return 0;
}

static void work_free(amg_t *g) {
    for (int i = 0; i < g->nwork; i++) {
        amg_work *w = &g->work[i];
        free(w->fill), free(w->stack), free(w->seen), free(w->cmin), free(w->cmax);
        free(w->segs), free(w->fgrow), free(w->counts), free(w->str);
    }
    free(g->work);
    g->work = NULL;
    g->nwork = 0;
}

/* A fixed pool: the caller posts a batch of items [0, n) (slots for
 * mask_eval, or device survivors for gpu_rle), every thread and the caller
 * take item indices from one counter, the caller waits for all. */
typedef struct amg_pool {
    amg_t          *g;
    pthread_t      *th;           /* (nwork - 1) */
    int             nth;
    pthread_mutex_t mu;
    pthread_cond_t  go, done;
    uint64_t        gen;          /* batch number */
    int             busy;         /* threads still on the current batch */
    int             stop;
    int             n, crop;      /* current batch */
    int             next;         /* next item to take (atomic) */
    const int32_t  *rle_idx;      /* NULL: items are slots for mask_eval; else items */
    const int32_t  *rle_sel;      /*   are device survivors for gpu_rle (eval_slots_gpu) */
} amg_pool;

static void gpu_rle(amg_t *g, amg_work *w, const int32_t *idx, const int32_t *sel, int q,
                    int crop);

static void pool_drain(amg_pool *pl, amg_work *w) {
    for (;;) {
        int i = __atomic_fetch_add(&pl->next, 1, __ATOMIC_RELAXED);
        if (i >= pl->n) break;
        if (pl->rle_idx) {
            gpu_rle(pl->g, w, pl->rle_idx, pl->rle_sel, i, pl->crop);
            continue;
        }
        amg_slot *s = &pl->g->slots[i];
        s->worker = (int)(w - pl->g->work);
        mask_eval(pl->g, w, s, pl->crop);
    }
}

typedef struct pool_arg {
    amg_pool *pl;
    int       id;
} pool_arg;

static void *pool_main(void *arg) {
    amg_pool *pl = ((pool_arg *)arg)->pl;
    amg_work *w = &pl->g->work[((pool_arg *)arg)->id];
    free(arg);
    uint64_t seen = 0;
    pthread_mutex_lock(&pl->mu);
    for (;;) {
        while (!pl->stop && pl->gen == seen) pthread_cond_wait(&pl->go, &pl->mu);
        if (pl->stop) break;
        seen = pl->gen;
        pthread_mutex_unlock(&pl->mu);
        pool_drain(pl, w);
        pthread_mutex_lock(&pl->mu);
        if (--pl->busy == 0) pthread_cond_signal(&pl->done);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

static void pool_stop(amg_t *g) {
    amg_pool *pl = g->pool;
    if (!pl) return;
    pthread_mutex_lock(&pl->mu);
    pl->stop = 1;
    pthread_cond_broadcast(&pl->go);
    pthread_mutex_unlock(&pl->mu);
    for (int i = 0; i < pl->nth; i++) pthread_join(pl->th[i], NULL);
    pthread_mutex_destroy(&pl->mu);
    pthread_cond_destroy(&pl->go);
    pthread_cond_destroy(&pl->done);
    free(pl->th);
    free(pl);
    g->pool = NULL;
}

int amg_set_threads(amg_t *g, int n, err_t *err) {
    if (n < 1) n = 1;
    if (n > 256) n = 256;
    if (n == g->nwork) return 0;
    pool_stop(g);
    work_free(g);
    if (work_init(g, n)) {
        work_free(g);
        work_init(g, 1);
        return err_set(err, ERR_NOMEM, "amg: out of memory for %d threads", n);
    }
    if (n == 1) return 0;
    amg_pool *pl = calloc(1, sizeof *pl);
    if (!pl || !(pl->th = calloc((size_t)n - 1, sizeof *pl->th))) {
        free(pl);
        return err_set(err, ERR_NOMEM, "amg: out of memory for %d threads", n);
    }
    pl->g = g;
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->go, NULL);
    pthread_cond_init(&pl->done, NULL);
    g->pool = pl;
    for (int i = 1; i < n; i++) {
        pool_arg *a = malloc(sizeof *a);
        if (a) a->pl = pl, a->id = i;
        if (!a || pthread_create(&pl->th[pl->nth], NULL, pool_main, a)) {
            free(a);
            break; /* fewer threads: work[i..] stay unused */
        }
        pl->nth++;
    }
    return 0;
}

/* pool_run: items [0, n) through pool_drain on every thread and the
 * caller (rle_idx NULL: slots for mask_eval; else survivors for gpu_rle) */
static void pool_run(amg_pool *pl, int n, int crop, const int32_t *rle_idx,
                     const int32_t *rle_sel) {
    pthread_mutex_lock(&pl->mu);
    pl->n = n, pl->crop = crop, pl->next = 0;
    pl->rle_idx = rle_idx, pl->rle_sel = rle_sel;
    pl->busy = pl->nth;
    pl->gen++;
    pthread_cond_broadcast(&pl->go);
    pthread_mutex_unlock(&pl->mu);
    pool_drain(pl, &pl->g->work[0]);
    pthread_mutex_lock(&pl->mu);
    while (pl->busy > 0) pthread_cond_wait(&pl->done, &pl->mu);
    pthread_mutex_unlock(&pl->mu);
}

/* evaluate slots [0, n) of crop, on every thread */
static void eval_slots(amg_t *g, int n, int crop) {
    if (!g->pool || n < 2) {
        for (int i = 0; i < n; i++) {
            g->slots[i].worker = 0;
            mask_eval(g, &g->work[0], &g->slots[i], crop);
        }
        return;
    }
    pool_run(g->pool, n, crop, NULL, NULL);
}

/* ---- post-processing on a device (amg_gpu.c) ---- */

int amg_use_backend(amg_t *g, backend_t *be, const backend_amg_ops *ops, err_t *err) {
    amg_gpu_free(g->gpu);
    g->gpu = NULL;
    g->gpu_chosen = 1;
    if (!ops && be) ops = be->amg;
    if (!be || !ops) return 0;
    g->post_ref = ops == &amg_post_ops_ref;
    /* masks per call: a batch's outputs, or a chunk of points_per_batch m2m ones */
    int masks = g->p.points_per_batch * (g->p.use_m2m || !g->p.multimask_output ? 1 : 3);
    if (!g->gpu_idx) {
        g->gpu_idx = xcalloc(g, 2 * (size_t)g->p.points_per_batch * 3, sizeof(int32_t));
        if (!g->gpu_idx) return err_set(err, ERR_NOMEM, "amg: out of memory");
    }
    return amg_gpu_create(&g->gpu, be, ops, g->L, masks, err);
}

/* eval_slots_gpu: eval_slots on the device: the same filters, in the same
 * order, on the figures amg_gpu computes from the exact pixel values
 * (which is what mask_eval's cell shortcut reproduces), then the RLE from
 * the survivors' run boundaries (gpu_rle, on every thread). Returns 0 or
 * the device's ERR_NOMEM; out of host memory in the RLE is a slot's rc. */
static int eval_slots_gpu(amg_t *g, int n, int crop) {
    const amg_params *p = &g->p;
    amg_work *w = &g->work[0];
    int32_t *idx = g->gpu_idx, *sel = g->gpu_idx + n; /* (n) slot of each mask, survivors */
    int nm = 0, ns = 0, single = n ? g->slots[0].single : 0, rc;
    for (int i = 0; i < n; i++) {
        amg_slot *s = &g->slots[i];
        s->stage = 0, s->rc = 0, s->worker = 0;
        if (p->pred_iou_thresh > 0.0 && !(s->iou > (float)p->pred_iou_thresh)) continue;
        s->stage = 1;
        if (!g->dev_low) {   /* staged on the host; else read in place, slot i */
            float *dst = amg_gpu_mask(g->gpu, nm);
            if (p->min_mask_region_area > 0)
                fill_small_regions(g, w, s->A, dst, p->min_mask_region_area);
            else
                memcpy(dst, s->A, sizeof(float) * g->L * g->L);
        }
        idx[nm++] = i;
    }
    const int64_t *sums;
    rc = amg_gpu_stats(g->gpu, nm, g->dev_low ? idx : NULL, single,
                       (float)(p->mask_threshold + p->stability_score_offset),
                       (float)(p->mask_threshold - p->stability_score_offset),
                       (float)p->mask_threshold, &sums);
    if (rc) return rc;
    for (int k = 0; k < nm; k++) {
        amg_slot *s = &g->slots[idx[k]];
        const int64_t *f = sums + (size_t)k * BACKEND_AMG_SUMS;
        float stab = (float)f[0] / (float)f[1];
        if (p->stability_score_thresh > 0.0 && !(stab >= (float)p->stability_score_thresh))
            continue;
        s->stage = 2;
        s->rec.stab = stab;
        int32_t *box = s->rec.box;
        if (f[4] < 0) box[0] = box[1] = box[2] = box[3] = 0;
        else box[0] = (int32_t)f[3], box[1] = (int32_t)f[5], box[2] = (int32_t)f[4],
             box[3] = (int32_t)f[6];
        box[0] += g->cx, box[1] += g->cy, box[2] += g->cx, box[3] += g->cy;
        s->rec.area = f[2];
        if (g->ncrops > 1 && near_crop_edge(g, box)) continue;
        sel[ns++] = k;
    }
    if ((rc = amg_gpu_boundaries(g->gpu, sel, ns))) return rc;
    /* the survivors' RLE from their run boundaries, on every thread */
    if (!g->pool || ns < 2)
        for (int q = 0; q < ns; q++) gpu_rle(g, w, idx, sel, q, crop);
    else
        pool_run(g->pool, ns, crop, idx, sel);
    return 0;
}

/* gpu_rle: survivor q of eval_slots_gpu (slot idx[sel[q]]): its COCO RLE
 * from the run boundaries amg_gpu_boundaries brought back, into w's
 * strings, and the record's last fields (stage 3); out of memory is the
 * slot's rc (merge_slots reports the first). Threads take different q. */
static void gpu_rle(amg_t *g, amg_work *w, const int32_t *idx, const int32_t *sel, int q,
                    int crop) {
    amg_slot *s = &g->slots[idx[sel[q]]];
    s->worker = (int)(w - g->work);
    run_acc ra = {0, 0, INT32_MAX, -1, INT32_MAX, -1};
    w->ncounts = 0;
    for (int x = 0; x < g->cw; x++) {
        int64_t nb, col = (int64_t)(g->cx + x) * g->H + g->cy;
        const int32_t *b = amg_gpu_column(g->gpu, q, x, &nb);
        for (int64_t e = 0; e < nb; e += 2)
            if (emit_run(w, &ra, col, x, b[e], e + 1 < nb ? b[e + 1] : g->ch)) {
                s->rc = ERR_NOMEM;
                return;
            }
    }
    if (close_runs(w, &ra, (int64_t)g->W * g->H)) {
        s->rc = ERR_NOMEM;
        return;
    }
    CHECK_MSG(ra.area == s->rec.area, "device area %lld, runs %lld", (long long)s->rec.area,
              (long long)ra.area);
    record_finish(g, w, s, crop);
}

/* post_slots: slots [0, n) of crop through the filters, on the device when
 * one was chosen, else on the CPU threads; a failure is a slot's rc
 * (merge_slots reports the first): the device's (out of its memory) slot
 * 0's, out of host memory the slot's whose mask it was */
static void post_slots(amg_t *g, int n, int crop) {
    if (!g->gpu) {
        eval_slots(g, n, crop);
        return;
    }
    int rc = eval_slots_gpu(g, n, crop);
    if (rc && n > 0) g->slots[0].rc = rc;
}

/* the batch's outcomes, in mask order, into the image's records */
static int merge_slots(amg_t *g, int n) {
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const amg_slot *s = &g->slots[i];
        if ((rc = s->rc)) break;
        g->st.masks++;
        g->st.after_iou += s->stage >= 1;
        g->st.after_stability += s->stage >= 2;
        g->st.after_edge += s->stage >= 3;
        if (s->stage < 3) continue;
        size_t cap = (size_t)g->cap_recs;
        if (grow(&g->bytes, (void **)&g->recs, &cap, (size_t)g->nrec + 1, sizeof(amg_rec)) ||
            grow(&g->bytes, (void **)&g->str, &g->cap_str, g->nstr + s->rec.str_len + 1, 1)) {
            rc = ERR_NOMEM;
            break;
        }
        g->cap_recs = (int)cap;
        amg_rec *r = &g->recs[g->nrec++];
        *r = s->rec;
        memcpy(g->str + g->nstr, g->work[s->worker].str + s->rec.str_off, s->rec.str_len + 1);
        r->str_off = g->nstr;
        g->nstr += s->rec.str_len + 1;
    }
    for (int k = 0; k < g->nwork; k++) g->work[k].nstr = 0;
    return rc;
}

/* ---- NMS ---- */

/* ord[0..n) sorted by key descending, stable (earlier index first among
 * equal keys), as torch.sort(stable=True, descending=True); tmp is scratch
 * of n entries. Bottom-up merge sort: no global comparator state, so
 * several amg_t may run in parallel. */
static void sort_desc_stable(int32_t *ord, int32_t *tmp, int n, const float *key) {
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            int mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            int a = lo, b = mid, k = lo;
            while (a < mid && b < hi) tmp[k++] = key[ord[b]] > key[ord[a]] ? ord[b++] : ord[a++];
            while (a < mid) tmp[k++] = ord[a++];
            while (b < hi) tmp[k++] = ord[b++];
        }
        memcpy(ord, tmp, (size_t)n * sizeof *ord);
    }
}

/* torchvision nms over recs[first, first+n) with scores score[0..n): stable
 * sort by score descending, suppress boxes whose float IoU > thr with a kept
 * one. Rewrites recs[first..] to the kept records in that order; returns
 * how many. */
static int nms_records(amg_t *g, int first, int n, double thr) {
    if (n <= 0) return 0;
    int32_t *ord = g->order;
    sort_desc_stable(ord, g->order_tmp, n, g->score);
    amg_rec *R = g->recs + first;
    int kept = 0;
    /* on the device: supp[a] = 1 keeps the a-th box in score order (the
     * same float tests; on out of memory the loop below does it) */
    if (g->gpu && n > 1 &&
        amg_gpu_nms(g->gpu, R[0].box, sizeof(amg_rec) / sizeof(int32_t), ord, n, thr,
                    g->supp) == 0) {
        for (int a = 0; a < n; a++)
            if (g->supp[a]) g->tmp[kept++] = R[ord[a]];
        memcpy(R, g->tmp, (size_t)kept * sizeof *R);
        return kept;
    }
    for (int i = 0; i < n; i++) g->supp[i] = 0;
    for (int a = 0; a < n; a++) {
        int i = ord[a];
        if (g->supp[i]) continue;
        g->tmp[kept++] = R[i];
        float ix1 = (float)R[i].box[0], iy1 = (float)R[i].box[1];
        float ix2 = (float)R[i].box[2], iy2 = (float)R[i].box[3];
        float iarea = (ix2 - ix1) * (iy2 - iy1);
        for (int b = a + 1; b < n; b++) {
            int j = ord[b];
            if (g->supp[j]) continue;
            float jx1 = (float)R[j].box[0], jy1 = (float)R[j].box[1];
            float jx2 = (float)R[j].box[2], jy2 = (float)R[j].box[3];
            float jarea = (jx2 - jx1) * (jy2 - jy1);
            float w = fmaxf(0.0f, fminf(ix2, jx2) - fmaxf(ix1, jx1));
            float h = fmaxf(0.0f, fminf(iy2, jy2) - fmaxf(iy1, jy1));
            float inter = w * h;
            float ovr = inter / (iarea + jarea - inter);
            if ((double)ovr > thr) g->supp[j] = 1;
        }
    }
    memcpy(R, g->tmp, (size_t)kept * sizeof *R);
    return kept;
}

/* the NMS scratch (order, order_tmp, score, supp, tmp) for n records, and
 * recs itself. Sizes only grow, never to 0 (realloc(p, 0) frees p and may
 * return NULL, which is not a failure): an image without records keeps
 * what the earlier ones allocated. On failure every buffer is still valid
 * and cap_nms says how much of each is usable. */
static int reserve_nms(amg_t *g, int n) {
    size_t c1 = (size_t)g->cap_recs;
    if (grow(&g->bytes, (void **)&g->recs, &c1, (size_t)n, sizeof(amg_rec))) return ERR_NOMEM;
    g->cap_recs = (int)c1;
    if ((size_t)n <= g->cap_nms) return 0;
    size_t cap = g->cap_nms ? g->cap_nms : 64;
    while (cap < (size_t)n) cap *= 2;
    void **bufs[5] = {(void **)&g->order, (void **)&g->order_tmp, (void **)&g->score,
                      (void **)&g->supp, (void **)&g->tmp};
    const size_t elem[5] = {sizeof(int32_t), sizeof(int32_t), sizeof(float), 1, sizeof(amg_rec)};
    for (int k = 0; k < 5; k++) {
        void *q = realloc(*bufs[k], cap * elem[k]);
        if (!q) return ERR_NOMEM;
        *bufs[k] = q;
    }
    for (int k = 0; k < 5; k++) g->bytes += (cap - g->cap_nms) * elem[k];
    g->cap_nms = cap;
    return 0;
}

/* ---- the generator ---- */

/* per-batch: decode n points, then (m2m) refine, then every mask */
static int run_batch(amg_t *g, const amg_model *m, int n, int crop, err_t *err) {
    const amg_params *p = &g->p;
    int k = p->multimask_output ? 3 : 1, L2 = g->L * g->L, rc;
    /* the logits stay on the device when nothing on the host needs them:
     * the device post-processing reads them where the decoder wrote them */
    g->dev_low = g->gpu && m->decode_dev && !g->gpu_staged && k == 3 && !p->use_m2m &&
                 p->min_mask_region_area <= 0 && m->backend == amg_gpu_backend(g->gpu) &&
                 n * k <= amg_gpu_max_masks(g->gpu);
    double t0 = now_s();
    if (g->dev_low)
        rc = m->decode_dev(m->ctx, n, g->pts_model, amg_gpu_device_masks(g->gpu), g->iou, err);
    else
        rc = m->decode(m->ctx, n, g->pts_model, NULL, p->multimask_output, g->low, g->iou, err);
    g->st.decode_calls++;
    g->st.dev_calls += g->dev_low;
    g->st.t_decode += now_s() - t0;
    if (rc) return rc;
    if (!p->use_m2m) {
        double t1 = now_s();
        for (int i = 0; i < n * k; i++)
            g->slots[i] = (amg_slot){.A = g->dev_low ? NULL : g->low + (size_t)i * L2,
                                     .pt = g->pts_img + 2 * (i / k), .iou = g->iou[i],
                                     .single = k == 1};
        post_slots(g, n * k, crop);
        rc = merge_slots(g, n * k);
        g->st.t_post += now_s() - t1;
        return rc ? err_set(err, rc, "amg: out of memory") : 0;
    }
    /* m2m: every output again with its clamped logits as mask input,
     * single-mask, in chunks of points_per_batch */
    for (int c0 = 0; c0 < n * k; c0 += p->points_per_batch) {
        int cn = n * k - c0 < p->points_per_batch ? n * k - c0 : p->points_per_batch;
        for (int i = 0; i < cn; i++) {
            const float *src = g->low + (size_t)(c0 + i) * L2;
            float *dst = g->m2m_in + (size_t)i * L2;
            for (int q = 0; q < L2; q++) dst[q] = fminf(fmaxf(src[q], -32.0f), 32.0f);
            int pi = (c0 + i) / k;
            memcpy(g->m2m_pts + 2 * i, g->pts_model + 2 * pi, 2 * sizeof(float));
            memcpy(g->m2m_img + 2 * i, g->pts_img + 2 * pi, 2 * sizeof(float));
        }
        t0 = now_s();
        rc = m->decode(m->ctx, cn, g->m2m_pts, g->m2m_in, 0, g->m2m_low, g->m2m_iou, err);
        g->st.decode_calls++;
        g->st.t_decode += now_s() - t0;
        if (rc) return rc;
        double t1 = now_s();
        for (int i = 0; i < cn; i++)
            g->slots[i] = (amg_slot){.A = g->m2m_low + (size_t)i * L2, .pt = g->m2m_img + 2 * i,
                                     .iou = g->m2m_iou[i], .single = 1};
        post_slots(g, cn, crop);
        rc = merge_slots(g, cn);
        g->st.t_post += now_s() - t1;
        if (rc) return err_set(err, rc, "amg: out of memory");
    }
    return 0;
}

static int run_crop(amg_t *g, const amg_model *m, const uint8_t *rgb, int crop, err_t *err) {
    const amg_params *p = &g->p;
    const int32_t *cb = g->crops[crop];
    g->cx = cb[0], g->cy = cb[1], g->cw = cb[2] - cb[0], g->ch = cb[3] - cb[1];
    int rc;
    if ((rc = make_axis(g, 0, g->ch)) || (rc = make_axis(g, 1, g->cw)))
        return err_set(err, rc, "amg: out of memory");
    const amg_axis *ar = &g->ax[0], *ac = &g->ax[1];
    if (g->gpu && amg_gpu_set_crop(g->gpu, g->ch, g->cw, ar->i0, ar->i1, ar->w0, ar->w1, ac->i0,
                                   ac->i1, ac->w0, ac->w1))
        return err_set(err, ERR_NOMEM, "amg: out of %s memory for a %dx%d crop",
                       amg_gpu_backend(g->gpu)->name, g->cw, g->ch);
    for (int k = 0; k < g->nwork; k++)
        if (grow(&g->work[k].bytes, (void **)&g->work[k].fgrow, &g->work[k].cap_fgrow,
                 (size_t)g->ch, 1))
            return err_set(err, ERR_NOMEM, "amg: out of memory");
    rc = m->encode(m->ctx, rgb + ((size_t)g->cy * g->W + g->cx) * 3, g->cw, g->ch,
                   (size_t)g->W * 3, err);
    if (rc) return rc;
    int side, npts = amg_params_layer_points(&g->p, g->crop_layer[crop], &side), first = g->nrec;
    for (int b0 = 0; b0 < npts; b0 += p->points_per_batch) {
        int n = npts - b0 < p->points_per_batch ? npts - b0 : p->points_per_batch;
        for (int i = 0; i < n; i++) {
            float *xy = g->pts_img + 2 * i, *mp = g->pts_model + 2 * i;
            layer_point(g, g->crop_layer[crop], side, b0 + i, g->cw, g->ch, xy);
            mp[0] = (xy[0] / (float)g->cw) * (float)g->S;
            mp[1] = (xy[1] / (float)g->ch) * (float)g->S;
        }
        if ((rc = run_batch(g, m, n, crop, err))) return rc;
    }
    double t1 = now_s();
    int n = g->nrec - first;
    if ((rc = reserve_nms(g, g->nrec))) return err_set(err, rc, "amg: out of memory");
    for (int i = 0; i < n; i++) g->score[i] = g->recs[first + i].iou;
    g->nrec = first + nms_records(g, first, n, p->box_nms_thresh);
    g->st.t_post += now_s() - t1;
    return 0;
}

void amg_result_free(amg_result *res) {
    if (!res) return;
    free(res->recs);
    free(res->strings);
    memset(res, 0, sizeof *res);
}

int amg_gpu_post_env(const char **mode, err_t *err) {
    const char *env = getenv("SAM2AMG_GPU_POST");
    *mode = env && *env ? env : NULL;   /* empty = unset, as every SAM2AMG_ variable */
    if (*mode && strcmp(*mode, "0") && strcmp(*mode, "staged") && strcmp(*mode, "ref"))
        return err_set(err, ERR_INVALID, "SAM2AMG_GPU_POST=%.40s: not 0, staged or ref", *mode);
    return 0;
}

int amg_generate(amg_t *g, const amg_model *model, const uint8_t *rgb, int w, int h,
                 amg_result *res, err_t *err) {
    amg_result_free(res);
    memset(&g->st, 0, sizeof g->st);
    if (w < 1 || h < 1) return err_set(err, ERR_INVALID, "amg: empty image %dx%d", w, h);
    /* COCO RLE counts are 32-bit (pycocotools' uint): one run of a bigger
     * image could not be written */
    int64_t npx;
    if (!size_mul(w, h, &npx) || npx > (int64_t)AMG_MAX_PIXELS)
        return err_set(err, ERR_TOO_BIG,
                       "image %dx%d = %lld pixels: over %lld, the most a COCO RLE (32-bit "
                       "counts) can describe", w, h, (long long)npx, (long long)AMG_MAX_PIXELS);
    if (model->S != g->S)
        return err_set(err, ERR_INVALID, "amg: model size %d, generator made for %d", model->S,
                       g->S);
    g->W = w, g->H = h;
    g->nrec = 0, g->nstr = 0;
    int rc;
    if (!g->gpu_chosen && model->backend) {
        /* SAM2AMG_GPU_POST (comparisons, timings, tests): 0 = the CPU path;
         * staged = the device's, with the logits through the host; ref =
         * the device algorithm in plain C on a backend whose memory is the
         * host's (the CPU backend), logits in place; empty = unset, as
         * every other SAM2AMG_ variable */
        const char *env;
        if ((rc = amg_gpu_post_env(&env, err))) return rc;
        const backend_amg_ops *ops = model->backend->amg;
        if (env && !strcmp(env, "ref") && model->backend->host_weights) ops = &amg_post_ops_ref;
        g->gpu_staged = env && !strcmp(env, "staged");
        /* out of device memory for its buffers: the CPU threads give the
         * same records, so go on there */
        if (ops && !(env && !strcmp(env, "0")) && amg_use_backend(g, model->backend, ops, err))
            err->msg[0] = 0;
    }
    if ((rc = make_crops(g, w, h, err))) return rc;
    for (int c = 0; c < g->ncrops; c++)
        if ((rc = run_crop(g, model, rgb, c, err))) return rc;
    if (g->ncrops > 1) {
        double t1 = now_s();
        if ((rc = reserve_nms(g, g->nrec))) return err_set(err, rc, "amg: out of memory");
        for (int i = 0; i < g->nrec; i++) {
            const int32_t *cb = g->crops[g->recs[i].crop];
            int64_t area = (int64_t)(cb[2] - cb[0]) * (cb[3] - cb[1]);
            g->score[i] = 1.0f / (float)area;
        }
        g->nrec = nms_records(g, 0, g->nrec, g->p.crop_nms_thresh);
        g->st.t_post += now_s() - t1;
    }
    g->st.records = g->nrec;
    /* result: records in output order, one block of strings */
    size_t total = 0;
    for (int i = 0; i < g->nrec; i++) total += g->recs[i].str_len + 1;
    res->width = w, res->height = h;
    res->recs = calloc((size_t)(g->nrec ? g->nrec : 1), sizeof(amg_record));
    res->strings = malloc(total ? total : 1);
    if (!res->recs || !res->strings) {
        amg_result_free(res);
        return err_set(err, ERR_NOMEM, "amg: out of memory for %d records", g->nrec);
    }
    size_t off = 0;
    for (int i = 0; i < g->nrec; i++) {
        const amg_rec *r = &g->recs[i];
        amg_record *o = &res->recs[i];
        const int32_t *cb = g->crops[r->crop];
        memcpy(res->strings + off, g->str + r->str_off, r->str_len + 1);
        o->rle = res->strings + off;
        off += r->str_len + 1;
        o->area = r->area;
        o->bbox[0] = r->box[0], o->bbox[1] = r->box[1];
        o->bbox[2] = (double)r->box[2] - r->box[0], o->bbox[3] = (double)r->box[3] - r->box[1];
        o->predicted_iou = r->iou;
        o->stability_score = r->stab;
        o->point[0] = r->pt[0], o->point[1] = r->pt[1];
        o->crop_box[0] = cb[0], o->crop_box[1] = cb[1];
        o->crop_box[2] = cb[2] - cb[0], o->crop_box[3] = cb[3] - cb[1];
    }
    res->n = g->nrec;
    return 0;
}

static void put_num(FILE *f, double v) {
    char buf[JSON_DOUBLE_BUF];
    fputs(json_fmt_double(buf, v), f);
}

int amg_write_json(FILE *f, const char *file_name, const amg_result *res) {
    fputs("{\"image\": {\"file_name\": ", f);
    json_write_string(f, file_name ? file_name : "");
    fprintf(f, ", \"width\": %d, \"height\": %d},\n \"annotations\": [", res->width,
            res->height);
    for (int i = 0; i < res->n; i++) {
        const amg_record *r = &res->recs[i];
        fprintf(f, "%s\n  {\"segmentation\": {\"size\": [%d, %d], \"counts\": ", i ? "," : "",
                res->height, res->width);
        json_write_string(f, r->rle);
        fprintf(f, "}, \"area\": %lld, \"bbox\": [", (long long)r->area);
        for (int k = 0; k < 4; k++) put_num(f, r->bbox[k]), fputs(k < 3 ? ", " : "]", f);
        fputs(", \"predicted_iou\": ", f);
        put_num(f, r->predicted_iou);
        fputs(", \"point_coords\": [[", f);
        put_num(f, r->point[0]);
        fputs(", ", f);
        put_num(f, r->point[1]);
        fputs("]], \"stability_score\": ", f);
        put_num(f, r->stability_score);
        fputs(", \"crop_box\": [", f);
        for (int k = 0; k < 4; k++) put_num(f, r->crop_box[k]), fputs(k < 3 ? ", " : "]", f);
        fputc('}', f);
    }
    fputs("\n ]}\n", f);
    return ferror(f) ? ERR_IO : 0;
}

int amg_draw_overlay(uint8_t *rgb, int w, int h, const amg_result *res, err_t *err) {
    // rgb is (h,w,3)
    int64_t npx64;
    size_t cap = 0;
    if (w < 1 || h < 1 || !size_mul(w, h, &npx64) || npx64 > AMG_MAX_PIXELS)
        return err_set(err, ERR_INVALID, "overlay: bad image size %dx%d", w, h);
    size_t npx = (size_t)npx64;
    uint8_t *mask = malloc(npx); // (h,w) 0/1
    uint32_t *counts = NULL;
    int rc = mask ? 0 : err_set(err, ERR_NOMEM, "overlay: out of memory for a %dx%d mask", w, h);
    for (int i = 0; !rc && i < res->n; i++) {
        int64_t n = rle_decode_string(res->recs[i].rle, NULL, 0);
        if (n < 0) {
            rc = err_set(err, ERR_FORMAT, "mask %d: bad RLE", i);
            break;
        }
        if ((size_t)n > cap) {
            free(counts);
            cap = (size_t)n;
            counts = malloc(cap * sizeof *counts);
            if (!counts) {
                rc = err_set(err, ERR_NOMEM, "overlay: out of memory for %zu RLE runs", cap);
                break;
            }
        }
        rle_decode_string(res->recs[i].rle, counts, cap);
        if (rle_to_mask(counts, (size_t)n, (uint32_t)h, (uint32_t)w, mask)) {
            rc = err_set(err, ERR_FORMAT, "mask %d: RLE does not cover the %dx%d image", i, w, h);
            break;
        }
        uint32_t hsh = (uint32_t)i * 2654435761u + 0x9e3779b9u; /* a color per index */
        uint8_t col[3] = {(uint8_t)(64 + (hsh & 0xbf)), (uint8_t)(64 + ((hsh >> 8) & 0xbf)),
                          (uint8_t)(64 + ((hsh >> 16) & 0xbf))};
        for (size_t p = 0; p < npx; p++)
            if (mask[p])
                for (int c = 0; c < 3; c++)
                    rgb[3 * p + c] = (uint8_t)((rgb[3 * p + c] + col[c]) / 2);
    }
    free(mask), free(counts);
    return rc;
}
