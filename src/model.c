/* model.c: the SAM 2.1 image model glue: load (weights checked, uploaded
 * once into one backend allocation, or used in place from the checkpoint's
 * mapping by a host-memory backend, positional embedding computed once,
 * one activation arena planned), encode (Hiera + FPN neck + conv_s0/s1 +
 * no_mem_embed, see hiera.c and neck.c), features (back to host, NCHW) and
 * decode (the prompt encoder and mask decoder of decoder.c).
 *
 * Memory is planned, not grown: at load the encoder's whole allocation
 * sequence is replayed once on a "plan" backend whose ops do nothing and
 * whose memory is never touched, over an arena with no size limit; its
 * high-water mark is the exact size of the real arena. So the plan cannot
 * drift from the code, and nothing is allocated per image.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decoder.h"
#include "model_int.h"

/* keys of the video model that the image path never reads */
static const char *const model_skip_keys[] = {
    "memory_attention.", "memory_encoder.", "maskmem_tpos_enc", "no_mem_pos_enc",
    "no_obj_ptr", "obj_ptr_proj.", "obj_ptr_tpos_proj.", "mask_downsample.",
    "no_obj_embed_spatial", NULL};

struct sam2_model {
    sam2_config cfg;
    backend_t  *be;            /* not owned */
    weights_t  *w;             /* the mapped checkpoint (kept for the decoder) */
    int         own_w;         /* 1: close w on free */
    void       *wmem;          /* backend memory: all encoder weights + pos embed */
    hiera_t     hiera;
    neck_t      neck;
    arena_t     arena;         /* encoder activations */
    float      *levels[SAM2_MAX_STAGES]; /* lateral outputs of stages 2, 3 (g>>s, g>>s, d) */
    enc_out_t   out;           /* features, NHWC, arena */
    decoder_t  *dec;
    int         max_prompts;
    int         have_image;
};

/* ---- weight binding ---- */

const float *wload_get(wload_t *L, int ndim, const int64_t *dims, const char *fmt, ...) {
    if (L->rc) return NULL;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const float *host = weights_get(L->w, name, ndim, dims, L->err);
    if (!host) {
        L->rc = ERR_FORMAT;
        return NULL;
    }
    /* host memory: the tensor as it lies in the mapping (or the weights'
     * own converted copy); the same choice in both passes */
    if (L->be && L->be->host_weights) return host;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    size_t bytes = (size_t)n * sizeof(float), at = L->off;
    L->off += (bytes + 255) & ~(size_t)255;
    if (!L->base) return host;   /* pass 0: any non-NULL pointer */
    L->be->upload(L->be, L->base + at, host, bytes);
    return (const float *)(L->base + at);
}

float *wload_reserve(wload_t *L, size_t n) {
    if (L->rc) return NULL;
    size_t at = L->off;
    L->off += (n * sizeof(float) + 255) & ~(size_t)255;
    return L->base ? (float *)(L->base + at) : NULL;
}

/* ---- the plan backend: ops that do nothing, memory that is never used ---- */

static void *plan_alloc(backend_t *be, size_t size) {
    (void)be;
    (void)size;
    return NULL;
}
static void plan_free(backend_t *be, void *p) { (void)be, (void)p; }
static void plan_copy(backend_t *be, void *d, const void *s, size_t n) {
    (void)be, (void)d, (void)s, (void)n;
}
static void plan_memset0(backend_t *be, void *d, size_t n) { (void)be, (void)d, (void)n; }
static void plan_sync(backend_t *be) { (void)be; }
static void plan_linear(backend_t *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                        const float *w, const float *b, int64_t M, int64_t K, int64_t N) {
    (void)be, (void)y, (void)ldy, (void)x, (void)ldx, (void)w, (void)b, (void)M, (void)K,
        (void)N;
}
static void plan_attention(backend_t *be, float *o, const float *q, int64_t ldq,
                           const float *k, int64_t ldk, const float *v, int64_t ldv,
                           int64_t B, int64_t Lq, int64_t Lk, int64_t nh, int64_t dh,
                           float scale) {
    (void)be, (void)o, (void)q, (void)ldq, (void)k, (void)ldk, (void)v, (void)ldv, (void)B,
        (void)Lq, (void)Lk, (void)nh, (void)dh, (void)scale;
}
static void plan_layer_norm(backend_t *be, float *y, const float *x, const float *w,
                            const float *b, int64_t M, int64_t C, float eps) {
    (void)be, (void)y, (void)x, (void)w, (void)b, (void)M, (void)C, (void)eps;
}
static void plan_unary(backend_t *be, float *y, const float *x, int64_t n) {
    (void)be, (void)y, (void)x, (void)n;
}
static void plan_add(backend_t *be, float *y, const float *a, const float *b, int64_t n) {
    (void)be, (void)y, (void)a, (void)b, (void)n;
}
static void plan_add_row(backend_t *be, float *y, const float *x, const float *row, int64_t M,
                         int64_t C) {
    (void)be, (void)y, (void)x, (void)row, (void)M, (void)C;
}
static void plan_conv2d(backend_t *be, float *y, const float *x, const float *w,
                        const float *b, int64_t B, int64_t H, int64_t W, int64_t Cin,
                        int64_t Cout, int kh, int kw, int stride, int pad) {
    (void)be, (void)y, (void)x, (void)w, (void)b, (void)B, (void)H, (void)W, (void)Cin,
        (void)Cout, (void)kh, (void)kw, (void)stride, (void)pad;
}
static void plan_map4(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                      int64_t W, int64_t C) {
    (void)be, (void)y, (void)x, (void)B, (void)H, (void)W, (void)C;
}
static void plan_window(backend_t *be, float *y, const float *x, int64_t B, int64_t H,
                        int64_t W, int64_t C, int64_t ws) {
    (void)be, (void)y, (void)x, (void)B, (void)H, (void)W, (void)C, (void)ws;
}

/* model_plan_backend: the ops the encoder calls, as no-ops (others NULL:
 * calling one would crash the plan, which is a bug to fix here) */
static void model_plan_backend(backend_t *p) {
    memset(p, 0, sizeof *p);
    p->version = BACKEND_API_VERSION;
    p->name = "plan";
    p->alloc = plan_alloc;
    p->free = plan_free;
    p->upload = plan_copy;
    p->download = plan_copy;
    p->copy = plan_copy;
    p->memset0 = plan_memset0;
    p->sync = plan_sync;
    p->linear = plan_linear;
    p->attention = plan_attention;
    p->layer_norm = plan_layer_norm;
    p->gelu = plan_unary;
    p->relu = plan_unary;
    p->add = plan_add;
    p->add_row = plan_add_row;
    p->conv2d = plan_conv2d;
    p->maxpool2x2 = plan_map4;
    p->upsample_nearest2x = plan_map4;
    p->nhwc_to_nchw = plan_map4;
    p->nchw_to_nhwc = plan_map4;
    p->window_partition = plan_window;
    p->window_unpartition = plan_window;
}

/* model_alloc_persistent: the buffers that live as long as the model */
static void model_alloc_persistent(sam2_model *m, arena_t *A) {
    int64_t g = m->cfg.image_size / 4, d = m->cfg.d_model;
    m->levels[0] = m->levels[1] = NULL;   /* levels 0, 1 go straight to conv_s0/s1 */
    for (int s = 2; s < SAM2_MAX_STAGES; s++)
        m->levels[s] = arena_alloc(A, (size_t)((g >> s) * (g >> s) * d));
    m->out.image_embed = arena_alloc(A, (size_t)((g / 4) * (g / 4) * d));
    m->out.feat_s0 = arena_alloc(A, (size_t)(g * g * (d / 8)));
    m->out.feat_s1 = arena_alloc(A, (size_t)((g / 2) * (g / 2) * (d / 4)));
}

/* model_run_encoder: the encoder proper on input (3,S,S) host, on
 * whatever backend/arena given (the plan backend never reads input) */
static void model_run_encoder(sam2_model *m, backend_t *be, arena_t *A, const float *input) {
    int64_t S = m->cfg.image_size;
    size_t mark = arena_mark(A);
    float *x = arena_alloc(A, (size_t)(3 * S * S));             // (S,S,3)
    size_t m2 = arena_mark(A);
    float *t = arena_alloc(A, (size_t)(3 * S * S));             // (3,S,S)
    be->upload(be, t, input, (size_t)(3 * S * S) * sizeof(float));
    be->nchw_to_nhwc(be, x, t, 1, 3, S, S);
    arena_release(A, m2);
    hiera_forward(&m->hiera, &m->neck, be, A, x, (int)S, m->levels, &m->out);
    neck_finish(&m->neck, be, A, m->levels, (int)S / 4, &m->out);
    arena_release(A, mark);
}

/* model_features_scratch: floats of scratch sam2_model_features needs */
static size_t model_features_scratch(const sam2_config *c) {
    size_t g = (size_t)c->image_size / 4, d = (size_t)c->d_model;
    return g * g * d / 8 > g * g * d / 16 ? g * g * d / 8 : g * g * d / 16;
}

/* model_plan_arena: bytes the encoder arena needs (one dry run) */
static size_t model_plan_arena(sam2_model *m) {
    backend_t plan;
    model_plan_backend(&plan);
    /* a fake, aligned, never-dereferenced base; size without limit */
    arena_t A = {.be = &plan, .base = (uint8_t *)(uintptr_t)4096, .size = SIZE_MAX / 4};
    sam2_model tmp = *m;
    model_alloc_persistent(&tmp, &A);
    size_t mark = arena_mark(&A);
    model_run_encoder(&tmp, &plan, &A, NULL);
    arena_release(&A, mark);
    arena_alloc(&A, model_features_scratch(&m->cfg));
    return A.peak > A.used ? A.peak : A.used;
}

/* model_load: everything after the checkpoint is open; m->w is set */
static int model_load(sam2_model *m, err_t *err) {
    const sam2_config *cfg = &m->cfg;
    backend_t *be = m->be;
    const char *wpath = weights_path(m->w);
    int rc;
    /* pass 0: check every key and shape, size the one allocation */
    wload_t L = {.w = m->w, .be = be, .err = err};
    if ((rc = hiera_bind(&m->hiera, cfg, &L)) ||
        (rc = neck_bind(&m->neck, cfg, m->hiera.stage_dim, &L)))
        return rc;
    size_t wbytes = L.off;
    m->wmem = be->alloc(be, wbytes);
    if (!m->wmem)
        return err_set(err, ERR_NOMEM, "%s: cannot allocate %zu MiB of %s memory for the weights",
                       wpath, wbytes >> 20, be->name);
    /* pass 1: upload */
    L.base = m->wmem;
    L.off = 0;
    if ((rc = hiera_bind(&m->hiera, cfg, &L)) ||
        (rc = neck_bind(&m->neck, cfg, m->hiera.stage_dim, &L)))
        return rc;
    CHECK(L.off == wbytes);

    /* positional embedding for this image size, once */
    {
        int C = cfg->embed_dim, bh = cfg->window_pos_embed_bkg_spatial_size[0];
        int bw = cfg->window_pos_embed_bkg_spatial_size[1], ws = cfg->window_spec[0];
        int g = m->hiera.grid;
        const float *bkg = weights_get(m->w, "image_encoder.trunk.pos_embed", 4,
                                       (int64_t[]){1, C, bh, bw}, err);
        const float *win = bkg ? weights_get(m->w, "image_encoder.trunk.pos_embed_window", 4,
                                              (int64_t[]){1, C, ws, ws}, err)
                               : NULL;
        if (!bkg || !win) return ERR_FORMAT;
        float *pe = malloc((size_t)g * g * C * sizeof(float));
        CHECK(pe);
        hiera_pos_embed_host(pe, bkg, bh, bw, win, ws, C, g);
        be->upload(be, m->hiera.pos_embed, pe, (size_t)g * g * C * sizeof(float));
        be->sync(be);
        free(pe);
    }

    if ((rc = decoder_init(&m->dec, m->w, cfg, be, m->max_prompts, err))) return rc;
    if ((rc = weights_check_unused(m->w, model_skip_keys, err))) return rc;

    size_t abytes = model_plan_arena(m);
    if (arena_init(&m->arena, be, abytes))
        return err_set(err, ERR_NOMEM, "cannot allocate the %zu MiB activation arena on %s",
                       abytes >> 20, be->name);
    model_alloc_persistent(m, &m->arena);
    return 0;
}

/* model_new: a model shell for cfg, or an error for a config the trunk
 * cannot run */
static int model_new(sam2_model **out, const sam2_config *cfg, backend_t *be, int max_prompts,
                     err_t *err) {
    *out = NULL;
    int rc = hiera_check_geometry(cfg, err);
    if (rc) return rc;
    if (max_prompts <= 0)
        return err_set(err, ERR_INVALID, "max_prompts %d must be positive", max_prompts);
    sam2_model *m = calloc(1, sizeof *m);
    CHECK(m);
    m->cfg = *cfg;
    m->be = be;
    m->max_prompts = max_prompts;
    *out = m;
    return 0;
}

int sam2_model_load(sam2_model **out, const sam2_config *cfg, const char *weights_path,
                    backend_t *be, int max_prompts, err_t *err) {
    sam2_model *m;
    int rc = model_new(&m, cfg, be, max_prompts, err);
    if (rc) return rc;
    m->own_w = 1;
    if ((rc = weights_open(&m->w, weights_path, err)) || (rc = model_load(m, err))) {
        sam2_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int sam2_model_load_weights(sam2_model **out, const sam2_config *cfg, weights_t *w,
                            backend_t *be, int max_prompts, err_t *err) {
    sam2_model *m;
    int rc = model_new(&m, cfg, be, max_prompts, err);
    if (rc) return rc;
    m->w = w;
    if ((rc = model_load(m, err))) {
        sam2_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void sam2_model_free(sam2_model *m) {
    if (!m) return;
    if (m->dec) decoder_free(m->dec);
    if (m->arena.base) arena_free(&m->arena);
    if (m->wmem) m->be->free(m->be, m->wmem);
    if (m->w && m->own_w) weights_close(m->w);
    free(m);
}

const sam2_config *sam2_model_config(const sam2_model *m) { return &m->cfg; }
backend_t *sam2_model_backend(const sam2_model *m) { return m->be; }

size_t sam2_model_decoder_bytes(const sam2_model *m) {
    return m->dec ? decoder_peak_bytes(m->dec) : 0;
}

size_t sam2_model_peak_bytes(const sam2_model *m) {
    return m->arena.peak + (m->dec ? decoder_peak_bytes(m->dec) : 0);
}

int sam2_model_encode(sam2_model *m, const float *input, err_t *err) {
    // input is (3,S,S) host
    m->have_image = 0;
    model_run_encoder(m, m->be, &m->arena, input);
    int rc = decoder_set_image(m->dec, m->out.image_embed, m->out.feat_s0, m->out.feat_s1, err);
    if (rc) return rc;
    m->have_image = 1;
    return 0;
}

/* model_download_nchw: x (H,W,C) backend -> host (C,H,W) */
static void model_download_nchw(sam2_model *m, float *host, const float *x, int64_t H,
                                int64_t W, int64_t C) {
    size_t mark = arena_mark(&m->arena);
    float *t = arena_alloc(&m->arena, (size_t)(H * W * C));
    m->be->nhwc_to_nchw(m->be, t, x, 1, H, W, C);
    m->be->download(m->be, host, t, (size_t)(H * W * C) * sizeof(float));
    m->be->sync(m->be);
    arena_release(&m->arena, mark);
}

void sam2_model_features(sam2_model *m, float *image_embed, float *feat_s0, float *feat_s1) {
    int64_t g = m->cfg.image_size / 4, d = m->cfg.d_model;
    if (image_embed) model_download_nchw(m, image_embed, m->out.image_embed, g / 4, g / 4, d);
    if (feat_s0) model_download_nchw(m, feat_s0, m->out.feat_s0, g, g, d / 8);
    if (feat_s1) model_download_nchw(m, feat_s1, m->out.feat_s1, g / 2, g / 2, d / 4);
}

/* the logits to the host (low_res) or left in backend memory (low_dev) */
static int model_decode(sam2_model *m, const sam2_prompts *p, float *low_res, float *low_dev,
                        float *iou, err_t *err) {
    if (!m->have_image) return err_set(err, ERR_INVALID, "decode before an image was encoded");
    if (p->n < 0 || p->n > m->max_prompts)
        return err_set(err, ERR_INVALID, "%d prompts in one decode call (at most %d)", p->n,
                       m->max_prompts);
    if (p->n == 0) return 0;
    return decoder_run(m->dec, p, low_res, low_dev, iou, err);
}

int sam2_model_decode(sam2_model *m, const sam2_prompts *p, float *low_res, float *iou,
                      err_t *err) {
    return model_decode(m, p, low_res, NULL, iou, err);
}

int sam2_model_decode_dev(sam2_model *m, const sam2_prompts *p, float *low_dev, float *iou,
                          err_t *err) {
    return model_decode(m, p, NULL, low_dev, iou, err);
}
