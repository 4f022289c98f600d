/* fuzz_image.c: encoded images through image_load_memory, the decoder the
 * runner and `generate` use (JPEG, PNG, GIF, TIFF, WebP, BMP via libvips),
 * with --max-pixels 2^20: a corrupt or hostile file must be one error with
 * one line, never a crash, and a decoded image never exceeds the limit. */
#include "fuzz.h"
#include "image.h"

#define FUZZ_MAX_PIXELS (INT64_C(1) << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    image_t img;
    err_t err = {{0}};
    int rc = image_load_memory(&img, data, size, "fuzz.img", FUZZ_MAX_PIXELS, &err);
    if (rc) {
        FUZZ_ASSERT(rc < 0 && fuzz_err_ok(&err) && img.rgb == NULL);
        return 0;
    }
    FUZZ_ASSERT(img.w > 0 && img.h > 0 && (int64_t)img.w * img.h <= FUZZ_MAX_PIXELS);
    FUZZ_ASSERT(img.rgb != NULL);
    volatile uint8_t sink = img.rgb[0] ^ img.rgb[(size_t)img.w * img.h * 3 - 1];
    (void)sink;
    image_free(&img);
    return 0;
}
