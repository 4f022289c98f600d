/* neck.c: the FPN neck of the SAM 2.1 image encoder and the two
 * high-resolution projections the mask decoder precomputes per image.
 *
 * SAM 2.1 builds the neck with fpn_top_down_levels [2, 3], nearest
 * upsampling, sum fusion and scalp 1, so only three outputs matter:
 *   level 0 (S/4):  lateral(stage 1)                 -> conv_s0 -> feat_s0
 *   level 1 (S/8):  lateral(stage 2)                 -> conv_s1 -> feat_s1
 *   level 2 (S/16): lateral(stage 3) + up2(lateral(stage 4)) + no_mem_embed
 *                                                    -> image_embed
 * Level 3 (S/32) only feeds level 2 (scalp drops it). Levels 0 and 1 are
 * projected by conv_s0/s1 as soon as their trunk stage ends, so their wide
 * d-channel maps live only in scratch. The neck's sine
 * position encodings are not used by the image predictor, so they are not
 * computed. Every conv here is 1x1: one GEMM over the rows of an NHWC map,
 * with the Conv2d weight (Cout,Cin,1,1) used as a Linear (Cout,Cin).
 */
#include "model_int.h"

int neck_bind(neck_t *n, const sam2_config *cfg, const int stage_dim[SAM2_MAX_STAGES],
              wload_t *L) {
    int64_t d = cfg->d_model;
    n->d = (int)d;
    for (int s = 0; s < SAM2_MAX_STAGES; s++) {
        /* the official neck lists its convs from the lowest resolution up */
        int k = SAM2_MAX_STAGES - 1 - s;
        n->lat_w[s] = wload_get(L, 4, (int64_t[]){d, stage_dim[s], 1, 1},
                                "image_encoder.neck.convs.%d.conv.weight", k);
        n->lat_b[s] = wload_get(L, 1, (int64_t[]){d}, "image_encoder.neck.convs.%d.conv.bias", k);
    }
    n->s0_w = wload_get(L, 4, (int64_t[]){d / 8, d, 1, 1}, "sam_mask_decoder.conv_s0.weight");
    n->s0_b = wload_get(L, 1, (int64_t[]){d / 8}, "sam_mask_decoder.conv_s0.bias");
    n->s1_w = wload_get(L, 4, (int64_t[]){d / 4, d, 1, 1}, "sam_mask_decoder.conv_s1.weight");
    n->s1_b = wload_get(L, 1, (int64_t[]){d / 4}, "sam_mask_decoder.conv_s1.bias");
    n->no_mem_embed = wload_get(L, 3, (int64_t[]){1, 1, d}, "no_mem_embed");
    return L->rc;
}

void neck_stage(const neck_t *n, backend_t *be, arena_t *A, int stage, const float *x,
                int side, int C, float *levels[SAM2_MAX_STAGES], enc_out_t *out) {
    // x is (side,side,C)
    int64_t d = n->d, hw = (int64_t)side * side;
    if (stage >= 2) {
        // levels[stage] is (side,side,d)
        be->linear(be, levels[stage], d, x, C, n->lat_w[stage], n->lat_b[stage], hw, C, d);
        return;
    }
    size_t mark = arena_mark(A);
    float *lat = arena_alloc(A, (size_t)(hw * d));              // (side,side,d)
    be->linear(be, lat, d, x, C, n->lat_w[stage], n->lat_b[stage], hw, C, d);
    if (stage == 0)
        be->linear(be, out->feat_s0, d / 8, lat, d, n->s0_w, n->s0_b, hw, d, d / 8);
    else
        be->linear(be, out->feat_s1, d / 4, lat, d, n->s1_w, n->s1_b, hw, d, d / 4);
    arena_release(A, mark);
}

void neck_finish(const neck_t *n, backend_t *be, arena_t *A, float *levels[SAM2_MAX_STAGES],
                 int grid, enc_out_t *out) {
    int64_t d = n->d, g2 = grid / 4, g3 = grid / 8;
    CHECK(g3 * 2 == g2);
    size_t mark = arena_mark(A);
    float *up = arena_alloc(A, (size_t)(g2 * g2 * d));          // (g2,g2,d)
    be->upsample_nearest2x(be, up, levels[3], 1, g3, g3, d);
    be->add(be, out->image_embed, levels[2], up, g2 * g2 * d);
    be->add_row(be, out->image_embed, out->image_embed, n->no_mem_embed, g2 * g2, d);
    arena_release(A, mark);
}
