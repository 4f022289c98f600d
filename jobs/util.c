/* util.c: small helpers of the runner: the image loader's fault hook, the
 * parameter identity of runs.params, and SHA-256 of the model file (runs.model_sha256 ties a database to the exact
 * weights that made its masks). SHA-256 is written out here (FIPS 180-4)
 * because the program links no crypto library. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jobs.h"

static _Atomic int64_t image_fault = -1;   /* -1: not read from env yet */

int jobs_load_image(image_t *img, const char *path, int64_t max_pixels, err_t *err) {
    int64_t v = atomic_load(&image_fault);
    if (v < 0) {
        const char *e = getenv("SAM2AMG_FAULT_IMAGE");
        int64_t n = e && *e ? atoll(e) : 0;
        atomic_compare_exchange_strong(&image_fault, &v, n);
        v = atomic_load(&image_fault);
    }
    while (v > 0) {
        if (atomic_compare_exchange_weak(&image_fault, &v, v - 1)) {
            if (v == 1) return err_set(err, ERR_IO, "%s: injected fault (image loader)", path);
            break;
        }
    }
    /* only regular files: opening a FIFO would block a decoder forever */
    struct stat sb;
    if (stat(path, &sb) != 0) return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return err_set(err, ERR_IO, "%s: not a regular file (%s)", path,
                       S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO"
                                                                               : "a device or socket");
    /* COCO RLE counts are 32-bit: an image amg_generate must refuse is
     * refused here, before its pixels are allocated and decoded */
    if (max_pixels > AMG_MAX_PIXELS) max_pixels = AMG_MAX_PIXELS;
    return image_load(img, path, max_pixels, err);
}

/* ---- parameter identity ---- */

/* params_cut: params (runs.params text) as two spans, head[0..*nhead) and
 * tail, that leave out its "points_per_batch" member (a number or "auto",
 * never a comma) and the separator that joins it to its neighbours. */
static void params_cut(const char *params, size_t *nhead, const char **tail) {
    static const char key[] = "\"points_per_batch\":";
    const char *k = strstr(params, key);
    if (!k) {
        *nhead = strlen(params), *tail = "";
        return;
    }
    const char *v = k + sizeof key - 1;
    while (*v && *v != ',' && *v != '}') v++;
    if (*v == ',') {   /* a member follows: drop ", " after the value */
        for (v++; *v == ' '; v++) {}
    } else {           /* the last member: drop ", " before the key */
        while (k > params && k[-1] == ' ') k--;
        if (k > params && k[-1] == ',') k--;
    }
    *nhead = (size_t)(k - params), *tail = v;
}

int jobs_params_same(const char *a, const char *b) {
    size_t na, nb;
    const char *ta, *tb;
    params_cut(a, &na, &ta);
    params_cut(b, &nb, &tb);
    size_t la = na + strlen(ta), lb = nb + strlen(tb);
    if (la != lb) return 0;
    for (size_t i = 0; i < la; i++)
        if ((i < na ? a[i] : ta[i - na]) != (i < nb ? b[i] : tb[i - nb])) return 0;
    return 1;
}

/* ---- SHA-256 ---- */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

int jobs_sha256_file(const char *path, char hex[65], err_t *err) {
    /* stat first: opening a FIFO would block */
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return err_set(err, ERR_IO, "%s: not a regular file (%s)", path,
                       S_ISDIR(sb.st_mode) ? "a directory" : "a FIFO, device or socket");
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    enum { CHUNK = 1 << 16 };
    uint8_t *buf = malloc(CHUNK + 128);
    if (!buf) {
        fclose(f);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    uint64_t total = 0;
    size_t n;
    while ((n = fread(buf, 1, CHUNK, f)) == CHUNK) {
        for (size_t i = 0; i < n; i += 64) sha256_block(h, buf + i);
        total += n;
    }
    int bad = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (bad) {
        free(buf);
        return err_set(err, ERR_IO, "%s: read error: %s", path, strerror(bad));
    }
    total += n;
    size_t full = n / 64 * 64;
    for (size_t i = 0; i < full; i += 64) sha256_block(h, buf + i);
    size_t rem = n - full;
    memmove(buf, buf + full, rem);
    buf[rem++] = 0x80;
    size_t padded = rem + 8 <= 64 ? 64 : 128;
    memset(buf + rem, 0, padded - rem);
    uint64_t bits = total * 8;
    for (int i = 0; i < 8; i++) buf[padded - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t i = 0; i < padded; i += 64) sha256_block(h, buf + i);
    free(buf);
    for (int i = 0; i < 8; i++) sprintf(hex + 8 * i, "%08x", h[i]);
    return 0;
}
