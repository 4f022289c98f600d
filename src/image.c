/* image.c: decode images with libvips the way PIL does, and build the
 * model's input tensor.
 *
 * Users of the official code load images with
 * `PIL.Image.open(p).convert("RGB")`, so every decode here reproduces what
 * Debian's Pillow 9.4 returns, pixel for pixel (checked by tests/test_image.c
 * against references written by tests/make_image_fixtures.py):
 *   - grey is replicated, alpha is dropped (never composited), palettes are
 *     expanded, EXIF orientation is ignored (no autorotate);
 *   - 16-bit RGB/RGBA/grey+alpha keep the high byte (PIL's "RGB;16B"
 *     rawmodes), while a 16-bit single-channel image becomes PIL mode "I"
 *     whose conversion to RGB CLIPS at 255 (so most of it is white: that is
 *     what the official pipeline sees, so we do the same);
 *   - CMYK is converted with PIL's formula (no colour management);
 *   - GIF: PIL keeps the palette index of transparent pixels and maps it
 *     through the palette, and fills the canvas outside the first frame
 *     with a palette colour, where libvips returns black or (0,0,0,0):
 *     those pixels are repainted from the GIF's own palette
 *     (gif_fix_first_frame);
 *   - multi-page files (TIFF, GIF, WebP): the first page.
 * Known differences (rare or invalid files, not matched): a PNG/GIF pixel
 * whose palette index lies past the stored palette is black here and PIL's
 * grey ramp value (i,i,i) there; a GIF whose first frame extends past the
 * logical screen (PIL grows the image); BMP goes through ImageMagick, which
 * was checked on 24/32-bit, 8/1-bit palette and grey BMPs only (not RLE or
 * 16-bit bitfields); 16-bit CMYK and float/32-bit samples (refused as
 * ERR_FORMAT) were not compared.
 * The format is sniffed from the first bytes and only the matching loader is
 * called (JPEG, PNG, GIF, TIFF, WebP, BMP via ImageMagick), so libvips'
 * permissive loaders (CSV, matrix, raw...) never see arbitrary files.
 * Binary PPM (P6, maxval 255: what PIL reads as "RGB" as it is) is decoded
 * here without libvips (ppm_decode), before libvips is even started: the
 * GPU bundle, which has no libvips (tests/gpu/vips_stub.c), runs `run` on
 * PPM files that way.
 *
 * Robustness: the whole file is read into memory and handed to the buffer
 * loaders (one code path for files and buffers); the header is read first and
 * w*h is checked against max_pixels before any pixel is decoded; loaders run
 * with fail_on=truncated so a truncated file fails instead of coming back
 * half grey. libvips' error buffer is process-global: under concurrent
 * failures a message may carry another thread's reason; the rc is always
 * right.
 *
 * The model input (image_preprocess) is torchvision's antialiased bilinear
 * resize (triangle filter whose support scales with the shrink factor; plain
 * bilinear with align_corners=False when enlarging) followed by the ImageNet
 * normalization. It is separable with precomputed taps: the vertical pass
 * runs first on whole rows (vectorizable), the horizontal pass on S rows.
 */
#include "image.h"
#include "size.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vips/vips.h>

#include "outfile.h"

#define IMAGE_DEFAULT_MAX_PIXELS ((int64_t)256 * 1000 * 1000)

/* ---------------------------------------------------------------- init -- */

static pthread_once_t image_once = PTHREAD_ONCE_INIT;
static int image_init_rc;
static pthread_mutex_t image_err_lock = PTHREAD_MUTEX_INITIALIZER;

/* A batch job decodes thousands of files: libvips' per-file warnings
 * ("read gave N warnings") would flood stderr, and failures are reported
 * through err_t anyway. */
static void image_quiet_log(const char *domain, GLogLevelFlags level, const char *msg,
                            void *user) {
    (void)domain, (void)level, (void)msg, (void)user;
}

static void image_init_once(void) {
    if (VIPS_INIT("sam2amg")) {
        image_init_rc = -1;
        return;
    }
    vips_cache_set_max(0);        /* no operation cache: each file is read once */
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_leak_set(FALSE);
    /* One libvips worker per decode. Decoders are sequential anyway (our
     * parallelism is one image per worker thread), and with several vips
     * workers an error raised at the very end of a PNG (libpng's
     * png_read_end: bad checksum of the last IDAT) is sometimes lost and
     * the file "decodes"; with one worker it always fails. */
    vips_concurrency_set(1);
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      image_quiet_log, NULL);
    image_init_rc = 0;
}

/* image_init: start libvips once per process; safe to call from several
 * threads and more than once. ERR_INVALID if libvips cannot start. */
int image_init(err_t *err) {
    pthread_once(&image_once, image_init_once);
    if (image_init_rc)
        return err_set(err, ERR_INVALID, "libvips: initialization failed");
    return 0;
}

/* ------------------------------------------------------ fault injection -- */

static _Atomic int64_t image_fault_countdown;
static _Atomic int image_fault_rc;

/* image_fault_inject: make the nth next call of image_load /
 * image_load_memory (1 = the next one, counted over all threads) fail with
 * rc and the message "NAME: injected fault"; nth <= 0 disarms. For tests of
 * job isolation and resume. */
void image_fault_inject(int64_t nth, int rc) {
    atomic_store(&image_fault_rc, rc);
    atomic_store(&image_fault_countdown, nth > 0 ? nth : 0);
}

static int image_fault_step(void) {
    int64_t n = atomic_load(&image_fault_countdown);
    while (n > 0) {
        if (atomic_compare_exchange_weak(&image_fault_countdown, &n, n - 1))
            return n == 1 ? atomic_load(&image_fault_rc) : 0;
    }
    return 0;
}

/* ---------------------------------------------------------------- errors -- */

/* The last line of libvips' error buffer (the most recent reason), cleared. */
static void image_vips_reason(char *out, size_t n) {
    pthread_mutex_lock(&image_err_lock);
    char *all = vips_error_buffer_copy();
    pthread_mutex_unlock(&image_err_lock);
    out[0] = 0;
    if (all) {
        size_t len = strlen(all);
        while (len && (all[len - 1] == '\n' || all[len - 1] == ' '))
            all[--len] = 0;
        char *line = strrchr(all, '\n');
        snprintf(out, n, "%s", line ? line + 1 : all);
        g_free(all);
    }
    if (!out[0])
        snprintf(out, n, "decoding failed");
}

/* -------------------------------------------------------------- sniffing -- */

typedef enum {
    IMAGE_FMT_UNKNOWN = 0,
    IMAGE_FMT_JPEG,
    IMAGE_FMT_PNG,
    IMAGE_FMT_GIF,
    IMAGE_FMT_TIFF,
    IMAGE_FMT_WEBP,
    IMAGE_FMT_BMP
} image_fmt_t;

static image_fmt_t image_sniff(const uint8_t *b, size_t n) {
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return IMAGE_FMT_JPEG;
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return IMAGE_FMT_PNG;
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6)))
        return IMAGE_FMT_GIF;
    if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4) ||
                   !memcmp(b, "II+\0", 4) || !memcmp(b, "MM\0+", 4)))
        return IMAGE_FMT_TIFF;
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
        return IMAGE_FMT_WEBP;
    if (n >= 14 && b[0] == 'B' && b[1] == 'M')
        return IMAGE_FMT_BMP;
    return IMAGE_FMT_UNKNOWN;
}

static const char *image_fmt_name(image_fmt_t f) {
    static const char *names[] = {"unknown", "JPEG", "PNG", "GIF", "TIFF", "WebP", "BMP"};
    return names[f];
}

/* Header only: libvips loaders are lazy, pixels are decoded on write. */
static int image_open_vips(image_fmt_t fmt, void *buf, size_t len, VipsImage **out) {
    switch (fmt) {
    case IMAGE_FMT_JPEG:
        return vips_jpegload_buffer(buf, len, out, "access", VIPS_ACCESS_SEQUENTIAL,
                                    "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    case IMAGE_FMT_PNG:
        return vips_pngload_buffer(buf, len, out, "access", VIPS_ACCESS_SEQUENTIAL,
                                   "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    case IMAGE_FMT_GIF:
        return vips_gifload_buffer(buf, len, out, "access", VIPS_ACCESS_SEQUENTIAL,
                                   "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    case IMAGE_FMT_TIFF:
        return vips_tiffload_buffer(buf, len, out, "access", VIPS_ACCESS_SEQUENTIAL,
                                    "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    case IMAGE_FMT_WEBP:
        return vips_webpload_buffer(buf, len, out, "access", VIPS_ACCESS_SEQUENTIAL,
                                    "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    case IMAGE_FMT_BMP:
        return vips_magickload_buffer(buf, len, out, "access", VIPS_ACCESS_SEQUENTIAL,
                                      "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    default:
        return -1;
    }
}

/* ------------------------------------------------------------------- GIF -- */

/* What PIL shows of a GIF's first frame where libvips has no pixel: PIL
 * starts from a canvas of one palette index (the frame's transparent index
 * if it has one, else 0), decodes the frame rectangle into it, and maps
 * every index, transparent ones included, through the palette (local, else
 * global; entries past the table keep PIL's initial grey ramp). libvips
 * instead leaves transparent pixels (0,0,0,0) and the canvas outside the
 * frame black or transparent. gif_frame_t carries the fill colour and the
 * frame rectangle; gif_parse_first_frame returns 0 if the stream could be
 * walked up to the first image descriptor. */
typedef struct gif_frame {
    uint8_t fill[3];
    int     x0, y0, x1, y1;   /* frame rectangle, clipped later to the canvas */
} gif_frame_t;

static int gif_parse_first_frame(const uint8_t *b, size_t n, gif_frame_t *f) {
    uint8_t pal[256][3];
    for (int i = 0; i < 256; i++)
        pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    size_t p = 13;
    if (n < p)
        return -1;
    if (b[10] & 0x80) {
        int nc = 2 << (b[10] & 7);
        if (p + 3 * (size_t)nc > n)
            return -1;
        memcpy(pal, b + p, 3 * (size_t)nc);
        p += 3 * (size_t)nc;
    }
    int transparent = -1;
    while (p < n) {
        if (b[p] == 0x21) {                  /* extension: label, sub-blocks */
            if (p + 2 > n)
                return -1;
            int label = b[p + 1];
            p += 2;
            int first = 1;
            while (p < n && b[p]) {
                size_t len = b[p];
                if (p + 1 + len > n)
                    return -1;
                if (label == 0xF9 && first && len >= 4)
                    transparent = (b[p + 1] & 1) ? b[p + 4] : -1;
                first = 0;
                p += 1 + len;
            }
            p++;
        } else if (b[p] == 0x2C) {           /* image descriptor */
            if (p + 10 > n)
                return -1;
            f->x0 = b[p + 1] | b[p + 2] << 8;
            f->y0 = b[p + 3] | b[p + 4] << 8;
            f->x1 = f->x0 + (b[p + 5] | b[p + 6] << 8);
            f->y1 = f->y0 + (b[p + 7] | b[p + 8] << 8);
            int flags = b[p + 9];
            p += 10;
            if (flags & 0x80) {
                int nc = 2 << (flags & 7);
                if (p + 3 * (size_t)nc > n)
                    return -1;
                memcpy(pal, b + p, 3 * (size_t)nc);
            }
            memcpy(f->fill, pal[transparent >= 0 ? transparent : 0], 3);
            return 0;
        } else {
            return -1;
        }
    }
    return -1;
}

/* rgb (h, w, 3) decoded by libvips from px (h, w, bands): repaint what PIL
 * sees differently (see gif_frame_t). */
static void gif_fix_first_frame(const uint8_t *px, int bands, int w, int h,
                                const gif_frame_t *f, uint8_t *rgb) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            int outside = x < f->x0 || x >= f->x1 || y < f->y0 || y >= f->y1;
            if (outside || (bands == 4 && px[4 * i + 3] == 0))
                memcpy(rgb + 3 * i, f->fill, 3);
        }
}

/* --------------------------------------------------------------- convert -- */

typedef enum {
    CONV_RGB,        /* first three bands (alpha or extra bands dropped) */
    CONV_GREY,       /* band 0 replicated */
    CONV_GREY_CLIP,  /* 16-bit single band: PIL mode "I" -> RGB clips at 255 */
    CONV_CMYK        /* PIL's cmyk2rgb */
} conv_t;

/* px is (npx, bands) of uint8 or uint16 (is16) -> rgb (npx, 3). */
static void image_convert(const void *px, int is16, int bands, conv_t conv, size_t npx,
                          uint8_t *rgb) {
    const uint8_t *p8 = px;
    const uint16_t *p16 = px;
#define SAMPLE(i) (is16 ? (p16[i] >> 8) : p8[i])
    for (size_t i = 0; i < npx; i++) {
        size_t s = i * (size_t)bands;
        uint8_t *o = rgb + 3 * i;
        switch (conv) {
        case CONV_RGB:
            o[0] = (uint8_t)SAMPLE(s), o[1] = (uint8_t)SAMPLE(s + 1), o[2] = (uint8_t)SAMPLE(s + 2);
            break;
        case CONV_GREY:
            o[0] = o[1] = o[2] = (uint8_t)SAMPLE(s);
            break;
        case CONV_GREY_CLIP: {
            unsigned v = is16 ? p16[s] : p8[s];
            o[0] = o[1] = o[2] = (uint8_t)(v > 255 ? 255 : v);
            break;
        }
        case CONV_CMYK: {
            int nk = 255 - (int)SAMPLE(s + 3);
            for (int c = 0; c < 3; c++) {
                int t = (int)SAMPLE(s + c) * nk + 128;
                int v = nk - (((t >> 8) + t) >> 8);
                o[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
            break;
        }
        }
    }
#undef SAMPLE
}

/* ------------------------------------------------------------------- PPM -- */

static int ppm_space(uint8_t c) {   /* PIL's b_whitespace */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* ppm_decode: a binary PPM (P6) in buf[0..len): the header's width, height
 * and maxval (255 only), each after whitespace and # comments, one
 * whitespace byte, then w*h*3 bytes (extra bytes after them are ignored, as
 * PIL does). Errors as image_load_memory's. */
static int ppm_decode(image_t *img, const uint8_t *b, size_t len, const char *name,
                      int64_t max_pixels, err_t *err) {
    size_t i = 2;
    long long v[3] = {0, 0, 0};
    /* the magic ends at whitespace: "P61 1 255" is no PPM (PIL: "not a PPM
     * file"), not a 1x1 image */
    if (i >= len || !ppm_space(b[i]))
        return err_set(err, ERR_FORMAT, "%s: bad PPM header", name);
    for (int k = 0; k < 3; k++) {
        for (;;) {   /* whitespace and comments */
            if (i < len && ppm_space(b[i])) {
                i++;
            } else if (i < len && b[i] == '#') {
                while (i < len && b[i] != '\n' && b[i] != '\r') i++;
            } else {
                break;
            }
        }
        if (i >= len || b[i] < '0' || b[i] > '9')
            return err_set(err, ERR_FORMAT, "%s: bad PPM header", name);
        while (i < len && b[i] >= '0' && b[i] <= '9') {
            v[k] = v[k] * 10 + (b[i++] - '0');
            if (v[k] > 1000000000LL) return err_set(err, ERR_FORMAT, "%s: bad PPM header", name);
        }
    }
    if (i >= len || !ppm_space(b[i]))   /* the one byte before the pixels */
        return err_set(err, ERR_FORMAT, "%s: bad PPM header", name);
    i++;
    if (v[0] <= 0 || v[1] <= 0)
        return err_set(err, ERR_FORMAT, "%s: empty PPM image (%lldx%lld)", name, v[0], v[1]);
    if (v[2] != 255)
        return err_set(err, ERR_FORMAT, "%s: unsupported PPM maxval %lld (255 only)", name, v[2]);
    int64_t npx;
    size_t rgb_bytes;
    if (!size_mul(v[0], v[1], &npx) || npx > max_pixels || !size_bytes(npx, 3, &rgb_bytes))
        return err_set(err, ERR_TOO_BIG, "%s: %lldx%lld = %lld pixels is over the limit of %lld",
                       name, v[0], v[1], v[0] * v[1], (long long)max_pixels);
    if (len - i < rgb_bytes)
        return err_set(err, ERR_FORMAT, "%s: corrupt or truncated PPM: %zu of %zu pixel bytes",
                       name, len - i, rgb_bytes);
    img->rgb = malloc(rgb_bytes);
    if (!img->rgb)
        return err_set(err, ERR_NOMEM, "%s: cannot allocate %lldx%lld RGB", name, v[0], v[1]);
    memcpy(img->rgb, b + i, rgb_bytes);
    img->w = (int)v[0];
    img->h = (int)v[1];
    return 0;
}

/* ------------------------------------------------------------------ load -- */

/* image_load_memory: decode the encoded bytes buf[0..len) into img (w, h and
 * a malloc'd (h, w, 3) rgb that image_free releases). name is only used in
 * messages. max_pixels <= 0 means the default (256 Mpx); an image whose
 * header declares more pixels is refused before decoding (ERR_TOO_BIG).
 * ERR_FORMAT: empty, not a supported image, truncated or corrupt;
 * ERR_NOMEM: the pixel buffer cannot be allocated. On error img is zeroed. */
int image_load_memory(image_t *img, const void *buf, size_t len, const char *name,
                      int64_t max_pixels, err_t *err) {
    memset(img, 0, sizeof *img);
    int rc;
    if ((rc = image_fault_step()))
        return err_set(err, rc, "%s: injected fault", name);
    if (max_pixels <= 0)
        max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    if (len == 0)
        return err_set(err, ERR_FORMAT, "%s: empty file (0 bytes)", name);
    if (len >= 2 && !memcmp(buf, "P6", 2)) {   /* no libvips needed */
        rc = ppm_decode(img, buf, len, name, max_pixels, err);
        if (rc) image_free(img);
        return rc;
    }
    if ((rc = image_init(err)))
        return rc;
    image_fmt_t fmt = image_sniff(buf, len);
    if (fmt == IMAGE_FMT_UNKNOWN)
        return err_set(err, ERR_FORMAT,
                       "%s: not a supported image (JPEG, PNG, GIF, TIFF, WebP, BMP, PPM)", name);

    char reason[256];
    VipsImage *in = NULL;
    /* libvips does not write into buf; its loaders just take a void *. */
    if (image_open_vips(fmt, (void *)buf, len, &in)) {
        image_vips_reason(reason, sizeof reason);
        return err_set(err, ERR_FORMAT, "%s: bad %s header: %s", name, image_fmt_name(fmt),
                       reason);
    }
    int w = vips_image_get_width(in), h = vips_image_get_height(in);
    int bands = vips_image_get_bands(in);
    VipsBandFormat bf = vips_image_get_format(in);
    VipsInterpretation interp = vips_image_get_interpretation(in);
    if (w <= 0 || h <= 0 || bands < 1) {
        g_object_unref(in);
        return err_set(err, ERR_FORMAT, "%s: empty %s image", name, image_fmt_name(fmt));
    }
    int64_t npx64;
    size_t rgb_bytes;
    if (!size_mul(w, h, &npx64) || npx64 > max_pixels || !size_bytes(npx64, 3, &rgb_bytes)) {
        g_object_unref(in);
        return err_set(err, ERR_TOO_BIG, "%s: %dx%d = %lld pixels is over the limit of %lld",
                       name, w, h, (long long)w * h, (long long)max_pixels);
    }
    int is16 = bf == VIPS_FORMAT_USHORT;
    if (bf != VIPS_FORMAT_UCHAR && !is16) {
        g_object_unref(in);
        return err_set(err, ERR_FORMAT, "%s: unsupported %s sample format (%s, %d bands)",
                       name, image_fmt_name(fmt), vips_enum_nick(VIPS_TYPE_BAND_FORMAT, bf),
                       bands);
    }
    /* PNG colour type 0 (grey, maybe with tRNS, which libvips turns into
     * alpha): PIL mode "I" at 16 bits, which clips; type 4 (grey+alpha)
     * keeps the high byte like the other 16-bit modes. */
    int png_grey = fmt == IMAGE_FMT_PNG && len > 25 && ((const uint8_t *)buf)[25] == 0;
    conv_t conv;
    if (interp == VIPS_INTERPRETATION_CMYK && bands >= 4)
        conv = CONV_CMYK;
    else if (is16 && (bands == 1 || (bands == 2 && png_grey)))
        conv = CONV_GREY_CLIP;
    else if (bands <= 2)
        conv = CONV_GREY;
    else
        conv = CONV_RGB;
    gif_frame_t gif = {{0, 0, 0}, 0, 0, 0, 0};
    int fix_gif = fmt == IMAGE_FMT_GIF && !is16 && bands >= 3;
    if (fix_gif && gif_parse_first_frame(buf, len, &gif)) {
        g_object_unref(in);
        return err_set(err, ERR_FORMAT, "%s: corrupt GIF structure", name);
    }

    size_t npx = (size_t)npx64;
    img->rgb = malloc(rgb_bytes);
    if (!img->rgb) {
        g_object_unref(in);
        return err_set(err, ERR_NOMEM, "%s: cannot allocate %dx%d RGB", name, w, h);
    }
    if (conv == CONV_RGB && !is16 && bands == 3 && !fix_gif) {
        /* the common case: decode straight into our buffer */
        VipsImage *dst = vips_image_new_from_memory(img->rgb, npx * 3, w, h, 3,
                                                    VIPS_FORMAT_UCHAR);
        rc = dst ? vips_image_write(in, dst) : -1;
        if (dst)
            g_object_unref(dst);
    } else {
        size_t size = 0;
        void *px = vips_image_write_to_memory(in, &size);
        rc = px ? 0 : -1;
        if (px) {
            CHECK(size == npx * (size_t)bands * (is16 ? 2 : 1));
            image_convert(px, is16, bands, conv, npx, img->rgb);
            if (fix_gif)
                gif_fix_first_frame(px, bands, w, h, &gif, img->rgb);
            g_free(px);
        }
    }
    g_object_unref(in);
    if (rc) {
        image_vips_reason(reason, sizeof reason);
        image_free(img);
        return err_set(err, ERR_FORMAT, "%s: corrupt or truncated %s: %s", name,
                       image_fmt_name(fmt), reason);
    }
    img->w = w;
    img->h = h;
    return 0;
}

/* image_load: read the file at path and decode it as image_load_memory.
 * ERR_IO: missing, unreadable or a directory; otherwise as
 * image_load_memory. The file is read whole (it is small next to the
 * decoded pixels). */
int image_load(image_t *img, const char *path, int64_t max_pixels, err_t *err) {
    memset(img, 0, sizeof *img);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return err_set(err, ERR_IO, "%s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(err, ERR_IO, "%s: is a directory", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return err_set(err, ERR_NOMEM, "%s: cannot allocate %zu bytes to read it", path, len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return err_set(err, ERR_IO, "%s: read failed: %s", path,
                           r < 0 ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    int rc = image_load_memory(img, buf, len, path, max_pixels, err);
    free(buf);
    return rc;
}

/* image_free: release img's pixels; safe on a zeroed or freed image. */
void image_free(image_t *img) {
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

/* ------------------------------------------------------------ preprocess -- */

/* Taps of a 1-D antialiased bilinear resize from n_in to n_out samples:
 * output i reads input first[i] .. first[i]+count[i]-1 with weights
 * w[i*kmax ..]. scale = n_in/n_out; the triangle filter is stretched by the
 * scale when shrinking (support = scale) and left at support 1 when
 * enlarging, centred at scale*(i+0.5), weights normalized to sum 1; the
 * window bounds use torch's truncation, int(center -/+ support + 0.5). */
typedef struct taps {
    int    kmax;
    int   *first;   /* (n_out) */
    int   *count;   /* (n_out) */
    float *w;       /* (n_out, kmax) */
} taps_t;

static int taps_kmax(int n_in, int n_out) {
    double scale = (double)n_in / n_out;
    double support = scale >= 1.0 ? scale : 1.0;
    return (int)ceil(support) * 2 + 1;
}

/* first/count/w are caller storage sized n_out, n_out, n_out*kmax. */
static void taps_compute(taps_t *t, int n_in, int n_out) {
    double scale = (double)n_in / n_out;
    double support = scale >= 1.0 ? scale : 1.0;
    double inv = scale >= 1.0 ? 1.0 / scale : 1.0;
    for (int i = 0; i < n_out; i++) {
        double center = scale * (i + 0.5);
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > n_in)
            hi = n_in;
        int n = hi - lo;
        CHECK(n >= 1 && n <= t->kmax);
        double total = 0;
        for (int j = 0; j < n; j++) {
            double x = fabs((j + lo - center + 0.5) * inv);
            total += x < 1.0 ? 1.0 - x : 0.0;
        }
        float *w = t->w + (size_t)i * t->kmax;
        for (int j = 0; j < t->kmax; j++) {
            double x = fabs((j + lo - center + 0.5) * inv);
            w[j] = j < n && total > 0 && x < 1.0 ? (float)((1.0 - x) / total) : 0.0f;
        }
        t->first[i] = lo;
        t->count[i] = n;
    }
}

static const float image_mean[3] = {0.485f, 0.456f, 0.406f};
static const float image_std[3] = {0.229f, 0.224f, 0.225f};

/* image_preprocess_naive: the direct 2-D sum of the same separable taps, one
 * output pixel at a time: the readable reference image_preprocess is tested
 * against. Arguments as image_preprocess. */
void image_preprocess_naive(const uint8_t *rgb, int w, int h, size_t stride, int S,
                            float *out) {
    CHECK(w > 0 && h > 0 && S > 0 && stride >= (size_t)w * 3);
    taps_t tx = {taps_kmax(w, S), NULL, NULL, NULL}, ty = {taps_kmax(h, S), NULL, NULL, NULL};
    tx.first = malloc(sizeof(int) * S), tx.count = malloc(sizeof(int) * S);
    ty.first = malloc(sizeof(int) * S), ty.count = malloc(sizeof(int) * S);
    tx.w = malloc(sizeof(float) * S * tx.kmax), ty.w = malloc(sizeof(float) * S * ty.kmax);
    CHECK(tx.first && tx.count && ty.first && ty.count && tx.w && ty.w);
    taps_compute(&tx, w, S);
    taps_compute(&ty, h, S);
    for (int c = 0; c < 3; c++)
        for (int oy = 0; oy < S; oy++)
            for (int ox = 0; ox < S; ox++) {
                double acc = 0;
                for (int j = 0; j < ty.count[oy]; j++)
                    for (int i = 0; i < tx.count[ox]; i++) {
                        const uint8_t *p = rgb + (size_t)(ty.first[oy] + j) * stride +
                                           (size_t)(tx.first[ox] + i) * 3;
                        acc += (double)ty.w[(size_t)oy * ty.kmax + j] *
                               tx.w[(size_t)ox * tx.kmax + i] * (p[c] / 255.0);
                    }
                out[((size_t)c * S + oy) * S + ox] =
                    (float)((acc - image_mean[c]) / image_std[c]);
            }
    free(tx.first), free(tx.count), free(tx.w);
    free(ty.first), free(ty.count), free(ty.w);
}

/* The two passes are plain loops the compiler vectorizes at -O3; the
 * attribute asks for that even in an -O2 build (GCC only). */
#if defined(__GNUC__) && !defined(__clang__)
#define IMAGE_HOT __attribute__((optimize("O3")))
#define IMAGE_HOT_SUM \
    __attribute__((optimize("O3", "associative-math", "no-signed-zeros", "no-trapping-math")))
#else
#define IMAGE_HOT
#define IMAGE_HOT_SUM
#endif

/* One output row of the vertical pass, split into planes:
 * plane c of t gets sum_j w[j] * src[j*stride + 3x + c] over n taps, x < w.
 * The interleaved sums are formed in L1-sized blocks (acc) and then
 * de-interleaved. src is (n, stride) uint8, acc (ACC_BLOCK), t (3, w). */
enum { ACC_BLOCK = 3 * 1024 };
IMAGE_HOT static void preprocess_vertical(const uint8_t *src, size_t stride, const float *wt,
                                          int n, int w, float *acc, float *t) {
    size_t row = (size_t)w * 3;
    for (size_t x0 = 0; x0 < row; x0 += ACC_BLOCK) {
        size_t len = row - x0 < ACC_BLOCK ? row - x0 : ACC_BLOCK;
        const uint8_t *s0 = src + x0;
        float w0 = wt[0];
        for (size_t x = 0; x < len; x++)
            acc[x] = w0 * (float)s0[x];
        for (int j = 1; j < n; j++) {
            const uint8_t *s = s0 + (size_t)j * stride;
            float wj = wt[j];
            for (size_t x = 0; x < len; x++)
                acc[x] += wj * (float)s[x];
        }
        size_t p0 = x0 / 3;
        for (size_t x = 0; x < len / 3; x++) {
            t[p0 + x] = acc[3 * x];
            t[w + p0 + x] = acc[3 * x + 1];
            t[2 * (size_t)w + p0 + x] = acc[3 * x + 2];
        }
    }
}

/* One output row of the horizontal pass plus the normalization: plane is
 * (w) floats of one channel, out (S) gets (sum * a + b). Windows are
 * shifted to hold kmax taps inside the row (extra weights are zero), so the
 * inner loop has a fixed trip count. */
IMAGE_HOT_SUM static void preprocess_horizontal(const float *plane, const taps_t *tx, int S,
                                            float a, float b, float *out) {
    int k = tx->kmax, ox = 0;
    /* four outputs at a time: four independent add chains */
    for (; ox + 4 <= S; ox += 4) {
        const float *w0 = tx->w + (size_t)ox * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
        const float *p0 = plane + tx->first[ox], *p1 = plane + tx->first[ox + 1];
        const float *p2 = plane + tx->first[ox + 2], *p3 = plane + tx->first[ox + 3];
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < k; i++) {
            s0 += w0[i] * p0[i];
            s1 += w1[i] * p1[i];
            s2 += w2[i] * p2[i];
            s3 += w3[i] * p3[i];
        }
        out[ox] = s0 * a + b;
        out[ox + 1] = s1 * a + b;
        out[ox + 2] = s2 * a + b;
        out[ox + 3] = s3 * a + b;
    }
    for (; ox < S; ox++) {
        const float *wx = tx->w + (size_t)ox * k;
        const float *p = plane + tx->first[ox];
        float s = 0;
        for (int i = 0; i < k; i++)
            s += wx[i] * p[i];
        out[ox] = s * a + b;
    }
}

/* Shift each window of t so that first + kmax <= n_in, moving its weights
 * right by the same amount (the padding weights are zero); kmax is cut to
 * n_in when the input is shorter. Leaves the taps' sums unchanged. */
static void taps_pad(taps_t *t, int n_in, int n_out) {
    int k = t->kmax;
    for (int i = 0; i < n_out; i++) {
        float *w = t->w + (size_t)i * k;
        int shift = t->first[i] + k - n_in;
        if (shift > t->first[i])
            shift = t->first[i];
        if (shift > 0) {
            memmove(w + shift, w, sizeof(float) * (size_t)(k - shift));
            memset(w, 0, sizeof(float) * (size_t)shift);
            t->first[i] -= shift;
            t->count[i] += shift;
        }
    }
}

/* image_preprocess: rgb (h, w, 3) uint8 with rows `stride` bytes apart (so a
 * crop of a bigger image can be passed in place) -> out (3, S, S) float32:
 * x/255, antialiased bilinear resize to S x S (aspect not kept), then
 * (x - mean) / std with the ImageNet mean/std. Row by row: the vertical
 * taps of output row oy are summed into three planar rows, then the
 * horizontal taps give the S outputs of each channel; one allocation per
 * call (taps and two row buffers, O(S + w)). Returns 0; ERR_INVALID for an
 * empty image (w or h < 1: a user's image or crop can be that), ERR_NOMEM
 * when the buffers cannot be allocated. Aborts only on the caller's own
 * arguments (S < 1, stride < 3w). */
int image_preprocess(const uint8_t *rgb, int w, int h, size_t stride, int S, float *out,
                     err_t *err) {
    CHECK(S > 0);
    if (w < 1 || h < 1)
        return err_set(err, ERR_INVALID, "image_preprocess: empty image %dx%d", w, h);
    CHECK(stride >= (size_t)w * 3);
    int kx = taps_kmax(w, S), ky = taps_kmax(h, S);
    if (kx > w)
        kx = w;   /* windows never exceed the row, so taps_pad can fit them */
    /* floats: (3, w) row + ACC_BLOCK + S * (kx + ky) taps; ints: 4 * S */
    int64_t nf, nk;
    size_t bytes;
    if (!size_add(kx, ky, &nk) || !size_mul_add(S, nk, (int64_t)3 * w + ACC_BLOCK, &nf) ||
        !size_bytes(nf + 4 * (int64_t)S, sizeof(float), &bytes))
        return err_set(err, ERR_NOMEM, "image_preprocess: %dx%d to %d: size overflow", w, h, S);
    char *mem = malloc(bytes);
    if (!mem)
        return err_set(err, ERR_NOMEM, "image_preprocess: out of memory (%zu bytes for a %dx%d "
                       "image)", bytes, w, h);
    float *t = (float *)mem;                 /* (3, w) one vertical output row */
    float *acc = t + (size_t)3 * w;          /* (ACC_BLOCK) */
    taps_t tx = {kx, NULL, NULL, NULL}, ty = {ky, NULL, NULL, NULL};
    tx.w = acc + ACC_BLOCK;
    ty.w = tx.w + (size_t)S * kx;
    tx.first = (int *)(ty.w + (size_t)S * ky);
    tx.count = tx.first + S;
    ty.first = tx.count + S;
    ty.count = ty.first + S;
    taps_compute(&tx, w, S);
    taps_compute(&ty, h, S);
    taps_pad(&tx, w, S);

    /* out = (v/255 - mean)/std = v*a + b for v in 0..255 */
    for (int oy = 0; oy < S; oy++) {
        preprocess_vertical(rgb + (size_t)ty.first[oy] * stride, stride,
                            ty.w + (size_t)oy * ky, ty.count[oy], w, acc, t);
        for (int c = 0; c < 3; c++)
            preprocess_horizontal(t + (size_t)c * w, &tx, S, 1.0f / (255.0f * image_std[c]),
                                  -image_mean[c] / image_std[c],
                                  out + ((size_t)c * S + oy) * S);
    }
    free(mem);
    return 0;
}

/* ------------------------------------------------------------------ save -- */

/* image_write_png: write px (h, w, channels) uint8, channels 1 (grey), 3
 * (RGB) or 4 (RGBA), as an 8-bit PNG at path (replaced if it exists).
 * ERR_INVALID for a bad shape, ERR_IO if the file cannot be written. */
int image_write_png(const char *path, const uint8_t *px, int w, int h, int channels,
                    err_t *err) {
    int rc = image_init(err);
    if (rc)
        return rc;
    if (w <= 0 || h <= 0 || (channels != 1 && channels != 3 && channels != 4))
        return err_set(err, ERR_INVALID, "%s: cannot write a %dx%dx%d PNG", path, w, h,
                       channels);
    size_t size = (size_t)w * h * channels;
    VipsImage *im = vips_image_new_from_memory(px, size, w, h, channels, VIPS_FORMAT_UCHAR);
    if (!im) {
        char reason[256];
        image_vips_reason(reason, sizeof reason);
        return err_set(err, ERR_INVALID, "%s: %s", path, reason);
    }
    char tmp[OUTFILE_TMP_MAX];   /* renamed onto path when complete (outfile.h) */
    if ((rc = outfile_tmp_name(path, tmp, err))) {
        g_object_unref(im);
        return rc;
    }
    if (vips_pngsave(im, tmp, "strip", TRUE, NULL)) {
        char reason[256];
        image_vips_reason(reason, sizeof reason);
        rc = err_set(err, ERR_IO, "%s: cannot write PNG: %s", path, reason);
    }
    g_object_unref(im);
    return outfile_commit(tmp, path, rc, err);   /* removes tmp on failure */
}
