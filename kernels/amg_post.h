/* amg_post.h: the per-column and per-box-pair arithmetic of the generator's
 * post-processing, shared by the CUDA kernels (kernels/amg_post.cu) and the
 * host reference of the same op table (src/amg_gpu.c, amg_post_ops_ref), so
 * that both evaluate literally the same expressions.
 *
 * Exactness. The records must equal src/amg.c's bit for bit, so every float
 * operation here is the one src/amg.c performs, in its order, with one
 * rounding each:
 *   - (N,3,h,w) masks: t0 = fma(a00, w0, a01 * w1), t1 likewise, value =
 *     fma(t0, h0, t1 * h1) (amg.c's COLUMN_ABOVE, PyTorch's AVX2 kernel);
 *   - (N,1,h,w) masks: the four float weights h*w, the products and sums in
 *     double, left to right, rounded once to float;
 *   - NMS: torchvision's float IoU, ((x2-x1)*(y2-y1) per box, the clipped
 *     intersection, inter / (area_i + area_j - inter)), compared in double.
 * On the device the AMG_* macros below are the explicitly rounded
 * intrinsics (__fmul_rn, __fmaf_rn, __dadd_rn, ...), which nvcc never
 * contracts or reorders, whatever -fmad says (amg_post.cu is compiled with
 * -fmad=false as well, belt and braces). On the host they are plain C
 * operators: the project compiles C with -std=c11, where GCC does not
 * contract (-ffp-contract=off), and fmaf is the exact fused operation.
 *
 * A pixel is evaluated exactly wherever it could fall on either side of
 * a threshold; bands of rows clearly on one side are counted whole
 * (amg_post_column, the bound of amg.c's cells): the counts and runs are
 * those of the exact values, which is what amg.c's cell shortcut
 * reproduces too.
 */
#ifndef SAM2AMG_KERNELS_AMG_POST_H
#define SAM2AMG_KERNELS_AMG_POST_H

#include <stdint.h>

#include "backend.h"

#ifdef __CUDACC__
#define AMG_HD static __host__ __device__ __forceinline__
#else
#include <math.h>
#define AMG_HD static inline
#endif

#ifdef __CUDA_ARCH__
#define AMG_FMUL(a, b)    __fmul_rn(a, b)
#define AMG_FADD(a, b)    __fadd_rn(a, b)
#define AMG_FSUB(a, b)    __fsub_rn(a, b)
#define AMG_FDIV(a, b)    __fdiv_rn(a, b)
#define AMG_FMA(a, b, c)  __fmaf_rn(a, b, c)
#define AMG_DMUL(a, b)    __dmul_rn(a, b)
#define AMG_DADD(a, b)    __dadd_rn(a, b)
#define AMG_D2F(a)        __double2float_rn(a)
#else
#define AMG_FMUL(a, b)    ((a) * (b))
#define AMG_FADD(a, b)    ((a) + (b))
#define AMG_FSUB(a, b)    ((a) - (b))
#define AMG_FDIV(a, b)    ((a) / (b))
#define AMG_FMA(a, b, c)  fmaf(a, b, c)
#define AMG_DMUL(a, b)    ((a) * (b))
#define AMG_DADD(a, b)    ((a) + (b))
#define AMG_D2F(a)        ((float)(a))
#endif

/* AMG_BLEND_EPS: the bound on the rounding of a bilinear blend of logits
 * whose largest magnitude is m (either expression above, weights summing
 * to 1 within a few ulps: under 1e-6 * m), with a wide margin: every
 * blended value lies within [min - eps, max + eps] of its corners. Both
 * shortcuts rely on it: src/amg.c's cells (m: the mask's largest |logit|)
 * and amg_post_column's bands (m: the band's largest |corner|). */
#define AMG_BLEND_EPS(m) (4e-6f * (m) + 1e-30f)

/* amg_post_band_side: which side of t every pixel of a band lies on, from
 * its corner logits' range [lo, hi] (lo = min - eps, hi = max + eps): 1 all
 * above, 0 none, 2 unknown (evaluate them; NaN bounds land here too, since
 * both comparisons are false). */
AMG_HD int amg_post_band_side(float lo, float hi, float t) {
    return lo > t ? 1 : hi < t ? 0 : 2;
}

/* amg_post_column: walk column x (0 <= x < g->cw) of mask A (L, L) from
 * row 0 to g->ch - 1, evaluating every full-resolution logit whose side of
 * a threshold is not already known; st gets the BACKEND_AMG_COLSTAT
 * figures (include/backend.h); with trans != NULL the boundary rows are
 * written there too (st[5] of them).
 *
 * Bands: the rows y .. g->rend[y] - 1 blend the same two low-res rows, so
 * in this column every pixel of the band is a blend of the same four
 * corners p, q, u, v with weights that sum to 1 within a few ulps. Its
 * value lies within [min - eps, max + eps] of the corners, eps =
 * AMG_BLEND_EPS(max|corner|). A band clearly on one side of all three thresholds is counted
 * whole (its length added, one boundary at most, at its first row); the
 * others are evaluated pixel by pixel, so a pixel near a threshold always
 * is, and the figures are those of the exact values. NaN corners make
 * every side unknown. */
AMG_HD void amg_post_column(const backend_amg_geom *g, const float *A, int32_t x, int32_t *st,
                            int32_t *trans) {
    const int32_t L = g->L, x0 = g->ci0[x], x1 = g->ci1[x];
    const float w0 = g->cw0[x], w1 = g->cw1[x];
    int32_t inter = 0, uni = 0, area = 0, ymin = -1, ymax = -1, nb = 0, prev = 0;
    for (int32_t y = 0; y < g->ch;) {
        const int32_t e = g->rend[y];
        const float *a0 = A + (int64_t)g->ri0[y] * L, *a1 = A + (int64_t)g->ri1[y] * L;
        const float p = a0[x0], q = a0[x1], u = a1[x0], v = a1[x1];
        float mn = p < q ? p : q, mx = p < q ? q : p;
        mn = u < mn ? u : mn, mx = u > mx ? u : mx;
        mn = v < mn ? v : mn, mx = v > mx ? v : mx;
        const float big = -mn > mx ? -mn : mx, eps = AMG_BLEND_EPS(big);
        const int nan = p != p || q != q || u != u || v != v;
        const float lo = mn - eps, hi = mx + eps;
        const int s_hi = amg_post_band_side(lo, hi, g->t_hi);
        const int s_lo = amg_post_band_side(lo, hi, g->t_lo);
        const int s_mask = amg_post_band_side(lo, hi, g->t_mask);
        if (!nan && s_hi != 2 && s_lo != 2 && s_mask != 2) { /* the band whole */
            const int32_t n = e - y;
            inter += s_hi * n, uni += s_lo * n;
            if (s_mask) {
                area += n;
                if (ymin < 0) ymin = y;
                ymax = e - 1;
            }
            if (s_mask != prev) {
                if (trans) trans[nb] = y;
                nb++;
                prev = s_mask;
            }
            y = e;
            continue;
        }
        const float t0 = AMG_FMA(p, w0, AMG_FMUL(q, w1));
        const float t1 = AMG_FMA(u, w0, AMG_FMUL(v, w1));
        for (; y < e; y++) {
            float h0 = g->rw0[y], h1 = g->rw1[y], val;
            if (g->single) {
                float w00 = AMG_FMUL(h0, w0), w01 = AMG_FMUL(h0, w1);
                float w10 = AMG_FMUL(h1, w0), w11 = AMG_FMUL(h1, w1);
                double s = AMG_DMUL((double)p, (double)w00);
                s = AMG_DADD(s, AMG_DMUL((double)q, (double)w01));
                s = AMG_DADD(s, AMG_DMUL((double)u, (double)w10));
                s = AMG_DADD(s, AMG_DMUL((double)v, (double)w11));
                val = AMG_D2F(s);
            } else {
                val = AMG_FMA(t0, h0, AMG_FMUL(t1, h1));
            }
            inter += val > g->t_hi;
            uni += val > g->t_lo;
            int32_t b = val > g->t_mask;
            if (b) {
                area++;
                if (ymin < 0) ymin = y;
                ymax = y;
            }
            if (b != prev) {
                if (trans) trans[nb] = y;
                nb++;
                prev = b;
            }
        }
    }
    st[0] = inter, st[1] = uni, st[2] = area, st[3] = ymin, st[4] = ymax, st[5] = nb;
}

/* amg_post_iou_above: torchvision's nms test for boxes a, b (x0, y0, x1,
 * y1 as int32, converted to float as src/amg.c's nms_records does). */
AMG_HD int amg_post_iou_above(const int32_t *a, const int32_t *b, double thr) {
    float ix1 = (float)a[0], iy1 = (float)a[1], ix2 = (float)a[2], iy2 = (float)a[3];
    float jx1 = (float)b[0], jy1 = (float)b[1], jx2 = (float)b[2], jy2 = (float)b[3];
    float iarea = AMG_FMUL(AMG_FSUB(ix2, ix1), AMG_FSUB(iy2, iy1));
    float jarea = AMG_FMUL(AMG_FSUB(jx2, jx1), AMG_FSUB(jy2, jy1));
    float w = fmaxf(0.0f, AMG_FSUB(fminf(ix2, jx2), fmaxf(ix1, jx1)));
    float h = fmaxf(0.0f, AMG_FSUB(fminf(iy2, jy2), fmaxf(iy1, jy1)));
    float inter = AMG_FMUL(w, h);
    float ovr = AMG_FDIV(inter, AMG_FSUB(AMG_FADD(iarea, jarea), inter));
    return (double)ovr > thr;
}

#endif
