/* amg_int.h: private to the generator (src/amg.c) and its device
 * post-processing driver (src/amg_gpu.c).
 *
 * amg_gpu_t holds the device buffers of one generator and runs the
 * backend_amg_ops of include/backend.h on them: src/amg.c decides (the IoU,
 * stability and crop-edge filters, records, strings, NMS order) exactly as
 * on the CPU, and asks this module only for the figures that cost a pass
 * over the full-resolution pixels (counts, box, run boundaries) and for the
 * NMS suppression bits. Buffers grow with the largest crop and batch seen
 * and are reused; nothing is allocated per mask.
 */
#ifndef SAM2AMG_AMG_INT_H
#define SAM2AMG_AMG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "check.h"

typedef struct amg_gpu amg_gpu_t;

/* amg_gpu_create: for masks (L, L), at most max_masks per call, on be with
 * ops. ERR_NOMEM (host or device) with err set. */
int  amg_gpu_create(amg_gpu_t **out, backend_t *be, const backend_amg_ops *ops, int L,
                    int max_masks, err_t *err);
void amg_gpu_free(amg_gpu_t *G);
backend_t *amg_gpu_backend(const amg_gpu_t *G);

/* amg_gpu_set_crop: the current crop's maps (src/amg.c's make_axis): rows
 * ri0, ri1, rw0, rw1 (ch), columns ci0, ci1, cw0, cw1 (cw). 0 or ERR_NOMEM. */
int  amg_gpu_set_crop(amg_gpu_t *G, int ch, int cw, const int32_t *ri0, const int32_t *ri1,
                      const float *rw0, const float *rw1, const int32_t *ci0,
                      const int32_t *ci1, const float *cw0, const float *cw1);

/* amg_gpu_mask: the host staging slot of mask k (< max_masks), (L, L), to
 * be filled with its logits before amg_gpu_stats(..., idx NULL, ...). */
float *amg_gpu_mask(amg_gpu_t *G, int k);

/* amg_gpu_device_masks: the device buffer (max_masks, L, L) in backend
 * memory where a device decode writes a batch's logits for
 * amg_gpu_stats(..., idx, ...); amg_gpu_max_masks: its capacity. */
float *amg_gpu_device_masks(amg_gpu_t *G);
int    amg_gpu_max_masks(const amg_gpu_t *G);

/* amg_gpu_stats: the BACKEND_AMG_SUMS figures of nm masks, in *sums (nm
 * rows, valid until the next call), at the thresholds t_hi, t_lo, t_mask;
 * single picks the (N,1,h,w) expression. The masks: with idx NULL the
 * staging slots [0, nm), uploaded; else slots idx[0..nm) (host array) of
 * amg_gpu_device_masks, read in place. 0 or ERR_NOMEM. */
int  amg_gpu_stats(amg_gpu_t *G, int nm, const int32_t *idx, int single, float t_hi,
                   float t_lo, float t_mask, const int64_t **sums);

/* amg_gpu_boundaries: the run boundaries of masks sel[0..ns) of the last
 * amg_gpu_stats call. Afterwards amg_gpu_column(G, s, x, &n) returns the
 * boundary rows (n of them, increasing) of column x of mask sel[s]. 0 or
 * ERR_NOMEM. */
int  amg_gpu_boundaries(amg_gpu_t *G, const int32_t *sel, int ns);
const int32_t *amg_gpu_column(const amg_gpu_t *G, int s, int x, int64_t *n);

/* amg_gpu_nms: torchvision's NMS over n boxes in score order: box a is
 * boxes + ord[a] * stride (x0, y0, x1, y1 int32); keep[a] = 1 when box a
 * survives. 0 or ERR_NOMEM (nothing written). */
int  amg_gpu_nms(amg_gpu_t *G, const int32_t *boxes, size_t stride, const int32_t *ord, int n,
                 double thr, uint8_t *keep);

#endif
