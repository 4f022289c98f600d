/* test_rle.c: COCO RLE (rle.h) against brute force on random masks, the
 * string codec on edge cases, and the fixtures' official strings. */
#include <stdint.h>
#include <string.h>

#include "rle.h"
#include "test.h"
#include "amg_fixture.h"

static uint32_t rng_state = 12345;
static uint32_t rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* a random blobby mask (h, w) */
static void random_mask(uint8_t *m, int h, int w, int kind) {
    int cx = (int)(rnd() % (uint32_t)w), cy = (int)(rnd() % (uint32_t)h);
    int r = 1 + (int)(rnd() % (uint32_t)(h > w ? h : w));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r / 4;
            if (kind == 1) v = rnd() % 3 == 0;            /* noise */
            if (kind == 2) v = 0;                          /* empty */
            if (kind == 3) v = 1;                          /* full */
            m[y * w + x] = (uint8_t)v;
        }
}

/* --dump FILE: masks and our strings for test_rle_pycocotools.py: per mask
 * one line "h w string bits" (bits row-major '0'/'1'). 300 random ones
 * (blobs, noise, empty, full; every fifth with its last pixel, the
 * bottom-right one, set), then 1x1 empty and full, full 1xN and Nx1, and a
 * mask whose only foreground is the last pixel: 306 in all. */
static int dump(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    static uint8_t m[64 * 80];
    static uint32_t c[64 * 80 + 1];
    static char s[8 * (64 * 80 + 1)];
    const int fixed[6][3] = {{1, 1, 2}, {1, 1, 3}, {1, 80, 3}, {64, 1, 3}, {5, 7, 4}, {64, 80, 3}};
    for (int it = 0; it < 306; it++) {
        int h = 1 + (int)(rnd() % 64), w = 1 + (int)(rnd() % 80);
        if (it < 300) {
            random_mask(m, h, w, it % 7 < 4 ? 0 : it % 7 - 3);
            if (it % 5 == 0) m[h * w - 1] = 1;
        } else {
            h = fixed[it - 300][0], w = fixed[it - 300][1];
            random_mask(m, h, w, fixed[it - 300][2] == 4 ? 2 : fixed[it - 300][2]);
            if (fixed[it - 300][2] == 4) m[h * w - 1] = 1;
        }
        size_t n = rle_from_mask(m, (uint32_t)h, (uint32_t)w, c);
        rle_encode_string(c, n, s);
        fprintf(f, "%d %d %s ", h, w, s);
        for (int i = 0; i < h * w; i++) fputc('0' + m[i], f);
        fputc('\n', f);
    }
    return fclose(f) ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--dump")) return dump(argv[2]);
    enum { MAXH = 37, MAXW = 41 };
    static uint8_t a[MAXH * MAXW], b[MAXH * MAXW], back[MAXH * MAXW];
    static uint32_t ca[MAXH * MAXW + 1], cb[MAXH * MAXW + 1], cm[2 * MAXH * MAXW + 2],
        dec[MAXH * MAXW + 1];
    static char str[8 * (MAXH * MAXW + 1)];
    int bad_codec = 0, bad_area = 0, bad_bbox = 0, bad_iou = 0, bad_contains = 0, bad_merge = 0,
        bad_mask = 0;
    for (int it = 0; it < 400; it++) {
        int h = 1 + (int)(rnd() % MAXH), w = 1 + (int)(rnd() % MAXW);
        random_mask(a, h, w, it % 7 < 4 ? 0 : it % 7 - 3);
        random_mask(b, h, w, (it / 7) % 2);
        size_t na = rle_from_mask(a, (uint32_t)h, (uint32_t)w, ca);
        size_t nb = rle_from_mask(b, (uint32_t)h, (uint32_t)w, cb);
        rle_encode_string(ca, na, str);
        int64_t nd = rle_decode_string(str, dec, MAXH * MAXW + 1);
        if (nd != (int64_t)na || memcmp(dec, ca, na * sizeof *ca)) bad_codec++;
        if (rle_total(ca, na) != (uint64_t)h * w) bad_codec++;
        if (rle_to_mask(ca, na, (uint32_t)h, (uint32_t)w, back) || memcmp(back, a, (size_t)h * w))
            bad_mask++;
        uint64_t area = 0, inter = 0, uni = 0;
        int x0 = w, y0 = h, x1 = -1, y1 = -1;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int va = a[y * w + x], vb = b[y * w + x];
                area += va, inter += va & vb, uni += va | vb;
                if (va) {
                    if (x < x0) x0 = x;
                    if (x > x1) x1 = x;
                    if (y < y0) y0 = y;
                    if (y > y1) y1 = y;
                }
                if (rle_contains(ca, na, (uint32_t)h, (uint32_t)w, (uint32_t)x, (uint32_t)y) != va)
                    bad_contains++;
            }
        if (rle_area(ca, na) != area) bad_area++;
        double bb[4];
        rle_bbox(ca, na, (uint32_t)h, bb);
        double eb[4] = {0, 0, 0, 0};
        if (x1 >= 0) eb[0] = x0, eb[1] = y0, eb[2] = x1 - x0 + 1, eb[3] = y1 - y0 + 1;
        if (memcmp(bb, eb, sizeof bb)) bad_bbox++;
        double iou = rle_iou(ca, na, cb, nb), eiou = uni ? (double)inter / (double)uni : 0;
        if (fabs(iou - eiou) > 1e-12 || rle_intersection(ca, na, cb, nb) != inter) bad_iou++;
        for (int op = 0; op < 2; op++) {
            size_t nm = rle_merge(ca, na, cb, nb, op, cm);
            if (rle_to_mask(cm, nm, (uint32_t)h, (uint32_t)w, back)) {
                bad_merge++;
                continue;
            }
            for (int i = 0; i < h * w; i++)
                if (back[i] != (op == RLE_UNION ? (a[i] | b[i]) : (a[i] & b[i]))) {
                    bad_merge++;
                    break;
                }
        }
    }
    TEST_CHECK(!bad_codec, "400 random masks: string encode/decode round trip", "%d", bad_codec);
    TEST_CHECK(!bad_mask, "rle_from_mask / rle_to_mask round trip", "%d", bad_mask);
    TEST_CHECK(!bad_area, "rle_area equals the pixel count", "%d", bad_area);
    TEST_CHECK(!bad_bbox, "rle_bbox equals the brute-force box", "%d", bad_bbox);
    TEST_CHECK(!bad_iou, "rle_iou / rle_intersection equal brute force", "%d", bad_iou);
    TEST_CHECK(!bad_contains, "rle_contains equals the mask", "%d", bad_contains);
    TEST_CHECK(!bad_merge, "rle_merge union / intersection equal brute force", "%d", bad_merge);

    /* codec edge cases: big counts, decreasing runs (negative differences) */
    uint32_t big[6] = {0, 4000000000u, 7, 1, 123456789, 5}, got[6];
    rle_encode_string(big, 6, str);
    TEST_CHECK(rle_decode_string(str, got, 6) == 6 && !memcmp(big, got, sizeof big),
               "large and decreasing counts round trip", "%s", str);
    TEST_CHECK(rle_decode_string("", got, 6) == 0, "empty string has no counts", "%s", str);
    TEST_CHECK(rle_decode_string("0a{", got, 6) == -1, "a character outside '0'..'o' is refused",
               "%s", str);
    TEST_CHECK(rle_decode_string("P", got, 6) == -1, "a truncated group is refused", "%s", str);
    TEST_CHECK(rle_decode_string("123456", got, 3) == -1, "more counts than cap is refused", "%s",
               str);
    uint32_t one[1] = {12};
    rle_encode_string(one, 1, str);
    TEST_CHECK(!strcmp(str, "<"), "pycocotools encodes [12] as '<'", "'%s'", str);

    /* the official strings of a fixture: area and box as the official records say */
    char *js = fx_read(test_fixture("amg-synthetic-crops/amg.json"));
    fx_rec *r = NULL;
    int n = js ? fx_parse_records(js, &r) : -1, bad = 0;
    for (int i = 0; i < n; i++) {
        double bb[4];
        rle_bbox(r[i].counts, r[i].n, (uint32_t)r[i].h, bb);
        /* official bbox: w = x1 - x0 (one less than pycocotools' extent) */
        if ((double)rle_area(r[i].counts, r[i].n) != r[i].area || bb[0] != r[i].bbox[0] ||
            bb[1] != r[i].bbox[1] || bb[2] - 1 != r[i].bbox[2] || bb[3] - 1 != r[i].bbox[3] ||
            rle_total(r[i].counts, r[i].n) != (uint64_t)r[i].h * r[i].w)
            bad++;
        char s2[65536];
        if (rle_string_bound(r[i].n) <= sizeof s2) {
            rle_encode_string(r[i].counts, r[i].n, s2);
            uint32_t *c2 = malloc(sizeof(uint32_t) * r[i].n);
            if (rle_decode_string(s2, c2, r[i].n) != (int64_t)r[i].n ||
                memcmp(c2, r[i].counts, sizeof(uint32_t) * r[i].n))
                bad++;
            free(c2);
        }
    }
    TEST_CHECK(n == 150 && !bad, "150 official strings: area, bbox, size, re-encoding agree",
               "n %d bad %d", n, bad);
    if (n > 0) fx_free_records(r, n);
    free(js);
    return TEST_REPORT();
}
