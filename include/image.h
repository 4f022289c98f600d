/* image.h: decoding with libvips and the model's input transform.
 *
 * Images are decoded to 8-bit RGB as `PIL.Image.open(p).convert("RGB")`
 * does: grey replicated to three channels, alpha dropped (not composited),
 * EXIF orientation ignored, 16-bit reduced to 8-bit as PIL does. The model
 * input is the image resized to S x S (aspect not kept, no padding) with
 * torchvision's antialiased bilinear, then ImageNet-normalized.
 */
#ifndef SAM2AMG_IMAGE_H
#define SAM2AMG_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "check.h"

typedef struct image {
    int      w, h;        /* pixels */
    uint8_t *rgb;         /* (h, w, 3) row-major, malloc'd, owned */
} image_t;

/* image_init: start libvips once per process (thread-safe, idempotent). */
int  image_init(err_t *err);

/* image_load: decode path into img. max_pixels (w*h) refuses decompression
 * bombs before decoding (0 = default 256 Mpx). ERR_IO (missing,
 * unreadable), ERR_FORMAT (not an image, truncated, corrupt), ERR_TOO_BIG.
 * The message names the file and the reason. */
int  image_load(image_t *img, const char *path, int64_t max_pixels, err_t *err);
/* image_load_memory: the same from an encoded buffer (name for messages). */
int  image_load_memory(image_t *img, const void *buf, size_t len, const char *name,
                       int64_t max_pixels, err_t *err);
void image_free(image_t *img);

/* image_preprocess: rgb (h, w, 3) with row stride `stride` bytes (a crop of
 * a bigger image is allowed) -> out (3, S, S) float32, antialiased bilinear
 * resize of x/255 then (x - mean) / std with ImageNet mean/std. Returns 0,
 * ERR_INVALID for an empty image (w or h < 1) or ERR_NOMEM, with err set. */
int  image_preprocess(const uint8_t *rgb, int w, int h, size_t stride, int S, float *out,
                      err_t *err);

/* image_preprocess_naive: the same transform as a direct per-pixel sum (slow;
 * the reference the fast version is tested against). */
void image_preprocess_naive(const uint8_t *rgb, int w, int h, size_t stride, int S,
                            float *out);

/* image_fault_inject: the nth next image_load / image_load_memory call (1 =
 * the next, counted over all threads) fails with rc and "NAME: injected
 * fault"; nth <= 0 disarms. For tests of job isolation and resume. */
void image_fault_inject(int64_t nth, int rc);

/* image_write_png: 8-bit PNG of (h, w, channels) pixels, channels 1, 3 or 4. */
int  image_write_png(const char *path, const uint8_t *px, int w, int h, int channels,
                     err_t *err);

#endif
