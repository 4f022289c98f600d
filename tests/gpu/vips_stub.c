/* vips_stub.c: link-time stand-ins for the libvips and GLib functions that
 * src/image.c calls, for the GPU bundle only (`make gpu-bundle`).
 *
 * Why: the bundle's generate driver (tests/gpu/gpu_generate.c) needs
 * image_preprocess from src/image.c, whose other functions decode files
 * through libvips; libvips and its ~100 shared libraries are not on the GPU
 * machine and do not fit the bundle. The driver reads images as binary PPM
 * (decoded here beforehand by the normal build), so none of these is ever
 * called there; if one is, it says so and aborts instead of misbehaving.
 * Two are not fatal: vips_version answers what VIPS_INIT expects and
 * vips_init fails, so that image_init returns an error and an image that is
 * not a PPM fails alone in `run` ("libvips: initialization failed") instead
 * of ending the process.
 * Generated from `nm -u build/obj/src/image.o` (the Makefile's gpu-bundle
 * rule fails to link if image.c starts calling a function missing here).
 * Built as the bundle's lib/libvips.so.42, the real library's soname, so
 * that a real libvips first on LD_LIBRARY_PATH takes its place (`make
 * gpu-vips`: pyvips-binary's self-contained build, which exports GLib's
 * functions too).
 */
#include <stdio.h>
#include <stdlib.h>

#include <vips/version.h>   /* the ABI numbers VIPS_INIT checks: defines only */

static void vips_stub_called(const char *fn) {
    fprintf(stderr, "gpu bundle: %s called, but this bundle has no libvips "
                    "(images must come as .ppm)\n", fn);
    abort();
}

#define VIPS_STUB(fn) \
    void fn(void);    \
    void fn(void) { vips_stub_called(#fn); }

VIPS_STUB(g_free)
VIPS_STUB(g_log)
VIPS_STUB(g_log_set_handler)
VIPS_STUB(g_object_unref)
VIPS_STUB(vips_band_format_get_type)
VIPS_STUB(vips_cache_set_max)
VIPS_STUB(vips_cache_set_max_files)
VIPS_STUB(vips_cache_set_max_mem)
VIPS_STUB(vips_concurrency_set)
VIPS_STUB(vips_enum_nick)
VIPS_STUB(vips_error)
VIPS_STUB(vips_error_buffer_copy)
VIPS_STUB(vips_gifload_buffer)
VIPS_STUB(vips_image_get_bands)
VIPS_STUB(vips_image_get_format)
VIPS_STUB(vips_image_get_height)
VIPS_STUB(vips_image_get_interpretation)
VIPS_STUB(vips_image_get_width)
VIPS_STUB(vips_image_new_from_memory)
VIPS_STUB(vips_image_write)
VIPS_STUB(vips_image_write_to_memory)
VIPS_STUB(vips_jpegload_buffer)
VIPS_STUB(vips_leak_set)
VIPS_STUB(vips_magickload_buffer)
VIPS_STUB(vips_pngload_buffer)
VIPS_STUB(vips_pngsave)
VIPS_STUB(vips_tiffload_buffer)
VIPS_STUB(vips_webpload_buffer)

int vips_version(int flag);
int vips_version(int flag) {
    return flag == 3 ? VIPS_LIBRARY_CURRENT : flag == 5 ? VIPS_LIBRARY_AGE : 0;
}

int vips_init(const char *argv0);
int vips_init(const char *argv0) {
    (void)argv0;
    return -1;
}
