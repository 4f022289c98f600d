/* rle.h: COCO run-length encoded masks (the SA-1B "segmentation" field).
 *
 * A mask of h x w pixels is read in column-major order (x outer, y inner)
 * and stored as alternating run lengths that start with a background run
 * (possibly 0). The compressed form is pycocotools' string: each count
 * (after the third, as a difference to the count two before) in 5-bit
 * groups, 0x20 = more, offset by 48. Plain C with libc only: this file is
 * also compiled alone into the SQLite extension.
 */
#ifndef SAM2AMG_RLE_H
#define SAM2AMG_RLE_H

#include <stddef.h>
#include <stdint.h>

/* rle_string_bound: bytes enough for the string of n counts (with NUL). */
size_t rle_string_bound(size_t n);
/* rle_encode_string: write the compressed string of counts (n) to out
 * (rle_string_bound(n) bytes), NUL-terminated; returns its length. */
size_t rle_encode_string(const uint32_t *counts, size_t n, char *out);
/* rle_decode_string: parse a compressed string. With counts == NULL only
 * counts them. Returns the number of counts, or -1 if the string is
 * malformed (bad character, truncated group, negative count) or more than
 * cap counts would be written. */
int64_t rle_decode_string(const char *s, uint32_t *counts, size_t cap);

/* rle_area: foreground pixels (sum of the odd runs). */
uint64_t rle_area(const uint32_t *counts, size_t n);
/* rle_total: pixels covered by all runs (h*w for a valid mask). */
uint64_t rle_total(const uint32_t *counts, size_t n);
/* rle_bbox: x, y, w, h of the foreground as pycocotools toBbox does
 * (w = xmax - xmin + 1); all zero for an empty mask. h is the mask height. */
void rle_bbox(const uint32_t *counts, size_t n, uint32_t h, double bbox[4]);
/* rle_intersection: foreground pixels common to two masks of the same size. */
uint64_t rle_intersection(const uint32_t *a, size_t na, const uint32_t *b, size_t nb);
/* rle_iou: intersection over union of two masks of the same size; 0 when
 * both are empty. */
double rle_iou(const uint32_t *a, size_t na, const uint32_t *b, size_t nb);
/* rle_contains: 1 if pixel (x, y) is foreground (column-major index x*h+y),
 * 0 otherwise or outside the mask. */
int rle_contains(const uint32_t *counts, size_t n, uint32_t h, uint32_t w, uint32_t x,
                 uint32_t y);

enum { RLE_UNION = 0, RLE_INTERSECT = 1 };
/* rle_merge: out = a op b (same size). out needs na + nb + 1 entries;
 * returns the number of counts written. */
size_t rle_merge(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, int op,
                 uint32_t *out);

/* rle_to_mask: expand into mask (h, w) row-major bytes 0/1. Returns 0, or
 * -1 if the runs do not cover exactly h*w pixels (mask then undefined). */
int rle_to_mask(const uint32_t *counts, size_t n, uint32_t h, uint32_t w, uint8_t *mask);
/* rle_from_mask: runs of mask (h, w) row-major (nonzero = foreground).
 * counts needs h*w + 1 entries at most; returns the number written. */
size_t rle_from_mask(const uint8_t *mask, uint32_t h, uint32_t w, uint32_t *counts);

#endif
