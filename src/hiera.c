/* hiera.c: the Hiera trunk of the SAM 2.1 image encoder, on backend.h ops.
 *
 * Input (S,S,3) -> patch embedding (7x7 conv, stride 4, pad 3) -> plus a
 * positional embedding -> blocks in four stages. Each block is
 *   shortcut = x (or, at a stage change, maxpool2x2(proj(norm1(x))))
 *   x = shortcut + proj(attention(windows(norm1(x))))
 *   x = x + mlp(norm2(x))
 * where attention runs inside ws x ws windows (zero-padded to a multiple of
 * ws, padding tokens take part as keys) or over the whole map (global
 * blocks), and at a stage change q is max-pooled 2x2 inside each window so
 * the map halves and the width doubles. The window size of a stage's first
 * block is the previous stage's: the official schedule lags by one block.
 *
 * The positional embedding depends only on the image size, so it is
 * computed once at load on the host (hiera_pos_embed_host): the background
 * embedding bicubically resized (PyTorch's align_corners=False, A=-0.75)
 * plus the window embedding tiled over the grid.
 *
 * After the last block of each stage the neck runs on it right away
 * (neck_stage) so no stage output needs a buffer of its own.
 */
#include <math.h>
#include <string.h>

#include "model_int.h"

#define HIERA_LN_EPS 1e-6f

/* hiera_schedule: per-block dims, heads, windows and pooling from cfg, as
 * the official constructor derives them. Returns the block count. */
static int hiera_schedule(hiera_t *h, const sam2_config *cfg) {
    int depth = 0;
    for (int s = 0; s < SAM2_MAX_STAGES; s++) {
        depth += cfg->stages[s];
        h->stage_end[s] = depth - 1;
    }
    CHECK(depth > 0 && depth <= HIERA_MAX_BLOCKS);
    int dim = cfg->embed_dim, heads = cfg->num_heads, stage = 0;
    for (int i = 0; i < depth; i++) {
        hiera_block_t *b = &h->blocks[i];
        memset(b, 0, sizeof *b);
        int ws = cfg->window_spec[stage];   /* lags: decided before the stage moves on */
        for (int g = 0; g < cfg->n_global; g++)
            if (cfg->global_att_blocks[g] == i) ws = 0;
        int dim_out = dim;
        int change = 0;
        for (int s = 0; s < SAM2_MAX_STAGES - 1; s++)
            if (i - 1 == h->stage_end[s]) change = 1;
        if (change) {
            dim_out = dim * 2;
            heads *= 2;
            stage++;
        }
        b->dim = dim;
        b->dim_out = dim_out;
        b->heads = heads;
        b->window = ws;
        b->q_pool = change;
        dim = dim_out;
    }
    for (int s = 0; s < SAM2_MAX_STAGES; s++) h->stage_dim[s] = h->blocks[h->stage_end[s]].dim_out;
    h->n_blocks = depth;
    h->grid = cfg->image_size / 4;
    return depth;
}

int hiera_check_geometry(const sam2_config *cfg, err_t *err) {
    int S = cfg->image_size;
    if (S <= 0 || S % 32)
        return err_set(err, ERR_INVALID, "config %s: image_size %d is not a multiple of 32",
                       cfg->name, S);
    if (cfg->embed_dim <= 0 || cfg->num_heads <= 0 || cfg->d_model <= 0 || cfg->d_model % 8)
        return err_set(err, ERR_INVALID, "config %s: bad embed_dim/num_heads/d_model",
                       cfg->name);
    int depth = 0;
    for (int s = 0; s < SAM2_MAX_STAGES; s++) {
        if (cfg->stages[s] <= 0 || cfg->window_spec[s] < 0)
            return err_set(err, ERR_INVALID, "config %s: bad stages/window_spec", cfg->name);
        depth += cfg->stages[s];
    }
    if (depth > HIERA_MAX_BLOCKS)
        return err_set(err, ERR_INVALID, "config %s: %d blocks (max %d)", cfg->name, depth,
                       HIERA_MAX_BLOCKS);
    int g = S / 4, ws0 = cfg->window_spec[0];
    if (ws0 <= 0 || g % ws0)
        return err_set(err, ERR_INVALID,
                       "config %s: token grid %d is not a multiple of window_spec[0]=%d",
                       cfg->name, g, ws0);
    static hiera_t h; /* only the schedule is used; too big for the stack */
    hiera_schedule(&h, cfg);
    int H = g;
    for (int i = 0; i < h.n_blocks; i++) {
        const hiera_block_t *b = &h.blocks[i];
        if (b->dim_out % b->heads)
            return err_set(err, ERR_INVALID, "config %s: block %d width %d not divisible by %d heads",
                           cfg->name, i, b->dim_out, b->heads);
        if (b->q_pool) {
            if (b->window > 0) {
                /* windows of the pooled map must line up with the pooled windows */
                if (b->window % 2 ||
                    (H + b->window - 1) / b->window != (H / 2 + b->window / 2 - 1) / (b->window / 2))
                    return err_set(err, ERR_INVALID,
                                   "config %s: block %d: window %d does not fit map %d at "
                                   "image_size %d", cfg->name, i, b->window, H, S);
            }
            H /= 2;
        }
    }
    return 0;
}

int hiera_bind(hiera_t *h, const sam2_config *cfg, wload_t *L) {
    hiera_schedule(h, cfg);
    /* the backend's attention takes head dims up to attention_dh_max (0 = no
     * limit); a config past it is a clean load error, not a CHECK in the op */
    int64_t dh_max = L->be ? L->be->attention_dh_max : 0;
    for (int i = 0; i < h->n_blocks && dh_max > 0 && !L->rc; i++) {
        const hiera_block_t *b = &h->blocks[i];
        int64_t dh = b->dim_out / b->heads;
        if (dh > dh_max)
            L->rc = err_set(L->err, ERR_INVALID,
                            "config %s: block %d head dim %lld (width %d / %d heads) exceeds "
                            "the %s backend's attention limit %lld",
                            cfg->name, i, (long long)dh, b->dim_out, b->heads, L->be->name,
                            (long long)dh_max);
    }
    if (L->rc) return L->rc;
    int C = cfg->embed_dim;
    const char *p = "image_encoder.trunk";
    h->patch_w = wload_get(L, 4, (int64_t[]){C, 3, 7, 7}, "%s.patch_embed.proj.weight", p);
    h->patch_b = wload_get(L, 1, (int64_t[]){C}, "%s.patch_embed.proj.bias", p);
    for (int i = 0; i < h->n_blocks; i++) {
        hiera_block_t *b = &h->blocks[i];
        int64_t d = b->dim, o = b->dim_out;
        b->norm1_w = wload_get(L, 1, (int64_t[]){d}, "%s.blocks.%d.norm1.weight", p, i);
        b->norm1_b = wload_get(L, 1, (int64_t[]){d}, "%s.blocks.%d.norm1.bias", p, i);
        b->qkv_w = wload_get(L, 2, (int64_t[]){3 * o, d}, "%s.blocks.%d.attn.qkv.weight", p, i);
        b->qkv_b = wload_get(L, 1, (int64_t[]){3 * o}, "%s.blocks.%d.attn.qkv.bias", p, i);
        b->attn_proj_w = wload_get(L, 2, (int64_t[]){o, o}, "%s.blocks.%d.attn.proj.weight", p, i);
        b->attn_proj_b = wload_get(L, 1, (int64_t[]){o}, "%s.blocks.%d.attn.proj.bias", p, i);
        if (d != o) {
            b->proj_w = wload_get(L, 2, (int64_t[]){o, d}, "%s.blocks.%d.proj.weight", p, i);
            b->proj_b = wload_get(L, 1, (int64_t[]){o}, "%s.blocks.%d.proj.bias", p, i);
        }
        b->norm2_w = wload_get(L, 1, (int64_t[]){o}, "%s.blocks.%d.norm2.weight", p, i);
        b->norm2_b = wload_get(L, 1, (int64_t[]){o}, "%s.blocks.%d.norm2.bias", p, i);
        b->mlp0_w = wload_get(L, 2, (int64_t[]){4 * o, o}, "%s.blocks.%d.mlp.layers.0.weight", p, i);
        b->mlp0_b = wload_get(L, 1, (int64_t[]){4 * o}, "%s.blocks.%d.mlp.layers.0.bias", p, i);
        b->mlp1_w = wload_get(L, 2, (int64_t[]){o, 4 * o}, "%s.blocks.%d.mlp.layers.1.weight", p, i);
        b->mlp1_b = wload_get(L, 1, (int64_t[]){o}, "%s.blocks.%d.mlp.layers.1.bias", p, i);
    }
    h->pos_embed = wload_reserve(L, (size_t)h->grid * h->grid * C);
    return L->rc;
}

/* cubic convolution weights (Keys, A = -0.75) of the 4 taps around a
 * sample at fraction t in [0,1] past the second tap */
static void hiera_cubic_weights(float t, float w[4]) {
    const float A = -0.75f;
    float x;
    x = t + 1.0f;
    w[0] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
    x = t;
    w[1] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 1.0f - t;
    w[2] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 2.0f - t;
    w[3] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
}

/* source tap (first of 4) and weights of output index o for a resize
 * in -> out with align_corners=False; taps are clamped when read */
static void hiera_cubic_taps(int o, int in, int out, int *first, float w[4]) {
    float scale = (float)in / (float)out;
    float real = scale * ((float)o + 0.5f) - 0.5f;
    int i0 = (int)floorf(real);
    if (i0 > in - 1) i0 = in - 1;
    float t = real - (float)i0;
    if (t < 0.0f) t = 0.0f;
    if (t > 1.0f) t = 1.0f;
    *first = i0 - 1;
    hiera_cubic_weights(t, w);
}

static int hiera_clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void hiera_pos_embed_host(float *out, const float *bkg, int bh, int bw, const float *win,
                          int ws, int C, int grid) {
    // out is (grid,grid,C); bkg is (C,bh,bw); win is (C,ws,ws)
    CHECK(grid % ws == 0);
    for (int y = 0; y < grid; y++) {
        int fy;
        float wy[4];
        hiera_cubic_taps(y, bh, grid, &fy, wy);
        for (int x = 0; x < grid; x++) {
            int fx;
            float wx[4];
            hiera_cubic_taps(x, bw, grid, &fx, wx);
            for (int c = 0; c < C; c++) {
                const float *plane = bkg + (size_t)c * bh * bw;
                float acc = 0.0f;
                for (int j = 0; j < 4; j++) {
                    const float *row = plane + (size_t)hiera_clampi(fy + j, 0, bh - 1) * bw;
                    float r = 0.0f;
                    for (int i = 0; i < 4; i++) r += wx[i] * row[hiera_clampi(fx + i, 0, bw - 1)];
                    acc += wy[j] * r;
                }
                float wv = win[((size_t)c * ws + y % ws) * ws + x % ws];
                out[((size_t)y * grid + x) * C + c] = acc + wv;
            }
        }
    }
}

/* linear_res: y = act(x) . w^T + b + r (act: GELU when gelu), through the
 * backend's fused linear_ex where it takes the case (CUDA in bf16: the
 * GELU in the GEMM's input conversion, r through its beta), else gelu (x
 * in place: x is consumed), linear and add as before, the product in tmp
 * when r is y. x (M,K), y, r and tmp (M,N), contiguous; r is y or does
 * not overlap it. */
static void linear_res(backend_t *be, float *y, float *x, const float *w, const float *b,
                       const float *r, float *tmp, int gelu, int64_t M, int64_t K, int64_t N) {
    CHECK(r != y || tmp);
    if (be->linear_ex && be->linear_ex(be, y, N, x, K, w, b, r, N, gelu, M, K, N) == 0) return;
    if (gelu) be->gelu(be, x, x, M * K);
    float *o = r == y ? tmp : y;
    be->linear(be, o, N, x, K, w, b, M, K, N);
    be->add(be, y, r, o, M * N);
}

/* hiera_block_forward: one block, x (H,W,dim) -> y (Ho,Wo,dim_out); H and W
 * are updated to Ho, Wo. Scratch comes from A and is released. */
static void hiera_block_forward(const hiera_block_t *b, backend_t *be, arena_t *A,
                                const float *x, float *y, int *pH, int *pW) {
    size_t mark = arena_mark(A);
    int64_t H = *pH, W = *pW, C = b->dim, Co = b->dim_out;
    int64_t Ho = b->q_pool ? H / 2 : H, Wo = b->q_pool ? W / 2 : W;
    int64_t nh = b->heads, dh = Co / nh;

    float *xn = arena_alloc(A, (size_t)(H * W * C));   // (H,W,C)
    be->layer_norm(be, xn, x, b->norm1_w, b->norm1_b, H * W, C, HIERA_LN_EPS);

    const float *sc = x;                                // shortcut (Ho,Wo,Co)
    if (C != Co) {
        float *p = arena_alloc(A, (size_t)(Ho * Wo * Co));
        if (b->q_pool) {
            size_t m2 = arena_mark(A);
            float *t = arena_alloc(A, (size_t)(H * W * Co));
            be->linear(be, t, Co, xn, C, b->proj_w, b->proj_b, H * W, C, Co);
            be->maxpool2x2(be, p, t, 1, H, W, Co);
            arena_release(A, m2);
        } else {
            be->linear(be, p, Co, xn, C, b->proj_w, b->proj_b, H * W, C, Co);
        }
        sc = p;
    } else {
        CHECK(!b->q_pool);
    }

    size_t mark_attn = arena_mark(A);
    /* windows: nb batches of wh x ww tokens */
    int64_t ws = b->window, nb, wh, ww;
    const float *xw;
    if (ws > 0) {
        int64_t nwh = (H + ws - 1) / ws, nww = (W + ws - 1) / ws;
        nb = nwh * nww;
        wh = ww = ws;
        float *t = arena_alloc(A, (size_t)(nb * ws * ws * C));  // (nb,ws,ws,C)
        be->window_partition(be, t, xn, 1, H, W, C, ws);
        xw = t;
    } else {
        nb = 1;
        wh = H;
        ww = W;
        xw = xn;
    }
    int64_t L = wh * ww;
    float scale = 1.0f / sqrtf((float)dh);
    float *o;                                           // (nb,Lq,Co)
    if (b->q_pool) {
        int64_t Lq = (wh / 2) * (ww / 2);
        float *qp = arena_alloc(A, (size_t)(nb * Lq * Co));      // (nb,wh/2,ww/2,Co)
        size_t m2 = arena_mark(A);
        float *q = arena_alloc(A, (size_t)(nb * L * Co));        // (nb,wh,ww,Co)
        be->linear(be, q, Co, xw, C, b->qkv_w, b->qkv_b, nb * L, C, Co);
        be->maxpool2x2(be, qp, q, nb, wh, ww, Co);
        arena_release(A, m2);
        float *kv = arena_alloc(A, (size_t)(nb * L * 2 * Co));   // (nb,L,[k|v])
        be->linear(be, kv, 2 * Co, xw, C, b->qkv_w + Co * C, b->qkv_b + Co, nb * L, C,
                   2 * Co);
        o = arena_alloc(A, (size_t)(nb * Lq * Co));
        be->attention(be, o, qp, Co, kv, 2 * Co, kv + Co, 2 * Co, nb, Lq, L, nh, dh, scale);
    } else {
        float *qkv = arena_alloc(A, (size_t)(nb * L * 3 * Co));  // (nb,L,[q|k|v])
        be->linear(be, qkv, 3 * Co, xw, C, b->qkv_w, b->qkv_b, nb * L, C, 3 * Co);
        o = arena_alloc(A, (size_t)(nb * L * Co));
        be->attention(be, o, qkv, 3 * Co, qkv + Co, 3 * Co, qkv + 2 * Co, 3 * Co, nb, L, L,
                      nh, dh, scale);
    }
    float *u = o;                                       // (Ho,Wo,Co)
    if (ws > 0) {
        float *t = arena_alloc(A, (size_t)(Ho * Wo * Co));
        be->window_unpartition(be, t, o, 1, Ho, Wo, Co, b->q_pool ? ws / 2 : ws);
        u = t;
    }
    linear_res(be, y, u, b->attn_proj_w, b->attn_proj_b, sc, NULL, 0, Ho * Wo, Co, Co);
    arena_release(A, mark_attn);

    float *t = arena_alloc(A, (size_t)(Ho * Wo * Co));          // (Ho,Wo,Co)
    float *hid = arena_alloc(A, (size_t)(Ho * Wo * 4 * Co));    // (Ho,Wo,4Co)
    be->layer_norm(be, t, y, b->norm2_w, b->norm2_b, Ho * Wo, Co, HIERA_LN_EPS);
    be->linear(be, hid, 4 * Co, t, Co, b->mlp0_w, b->mlp0_b, Ho * Wo, Co, 4 * Co);
    linear_res(be, y, hid, b->mlp1_w, b->mlp1_b, y, t, 1, Ho * Wo, 4 * Co, Co);

    arena_release(A, mark);
    *pH = (int)Ho;
    *pW = (int)Wo;
}

void hiera_forward(const hiera_t *h, const neck_t *n, backend_t *be, arena_t *A,
                   const float *x_in, int S, float *levels[SAM2_MAX_STAGES], enc_out_t *out) {
    // x_in is (S,S,3)
    size_t mark = arena_mark(A);
    int g = h->grid, C0 = h->stage_dim[0];
    CHECK(g == S / 4);
    /* the stage-1 map is the widest: later stages have 1/4 the tokens, 2x the width */
    size_t cap = (size_t)g * g * C0;
    float *xa = arena_alloc(A, cap), *xb = arena_alloc(A, cap);
    be->conv2d(be, xa, x_in, h->patch_w, h->patch_b, 1, S, S, 3, C0, 7, 7, 4, 3);
    be->add(be, xa, xa, h->pos_embed, (int64_t)cap);
    int H = g, W = g, stage = 0;
    for (int i = 0; i < h->n_blocks; i++) {
        const hiera_block_t *b = &h->blocks[i];
        hiera_block_forward(b, be, A, xa, xb, &H, &W);
        float *t = xa;
        xa = xb;
        xb = t;
        if (i == h->stage_end[stage]) {
            neck_stage(n, be, A, stage, xa, H, b->dim_out, levels, out);
            stage++;
        }
    }
    arena_release(A, mark);
}
