/* rle.c: COCO run-length masks (see rle.h). libc only, no allocation: the
 * SQLite extension compiles this file alone. */
#include "rle.h"

size_t rle_string_bound(size_t n) {
    /* a difference of two uint32 fits in 34 bits: at most 7 groups of 5 */
    return n * 7 + 1;
}

size_t rle_encode_string(const uint32_t *counts, size_t n, char *out) {
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t x = counts[i];
        if (i > 2) x -= (int64_t)counts[i - 2];
        for (;;) {
            int c = (int)(x & 0x1f);
            x >>= 5; /* arithmetic shift: negative differences stay negative */
            int more = (c & 0x10) ? x != -1 : x != 0;
            if (more) c |= 0x20;
            out[p++] = (char)(c + 48);
            if (!more) break;
        }
    }
    out[p] = 0;
    return p;
}

int64_t rle_decode_string(const char *s, uint32_t *counts, size_t cap) {
    size_t m = 0;
    int64_t prev2 = 0, prev1 = 0; /* counts[m-2], counts[m-1] */
    while (*s) {
        int64_t x = 0;
        int k = 0, more = 1;
        while (more) {
            int c = (unsigned char)*s;
            if (!c || c < 48 || c > 48 + 63) return -1;
            c -= 48;
            if (k >= 7) return -1;
            x |= (int64_t)(c & 0x1f) << (5 * k);
            more = c & 0x20;
            s++;
            k++;
            if (!more && (c & 0x10)) x |= -((int64_t)1 << (5 * k));
        }
        if (m > 2) x += prev2;
        if (x < 0 || x > UINT32_MAX) return -1;
        if (counts) {
            if (m >= cap) return -1;
            counts[m] = (uint32_t)x;
        }
        prev2 = prev1;
        prev1 = x;
        m++;
    }
    return (int64_t)m;
}

uint64_t rle_area(const uint32_t *counts, size_t n) {
    uint64_t a = 0;
    for (size_t i = 1; i < n; i += 2) a += counts[i];
    return a;
}

uint64_t rle_total(const uint32_t *counts, size_t n) {
    uint64_t a = 0;
    for (size_t i = 0; i < n; i++) a += counts[i];
    return a;
}

void rle_bbox(const uint32_t *counts, size_t n, uint32_t h, double bbox[4]) {
    bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0;
    if (h == 0) return;
    uint64_t pos = 0, xmin = UINT64_MAX, xmax = 0, ymin = UINT64_MAX, ymax = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t start = pos;
        pos += counts[i];
        if (!(i & 1) || counts[i] == 0) continue;
        uint64_t end = pos - 1; /* last pixel of the run */
        uint64_t x0 = start / h, x1 = end / h;
        if (x0 < xmin) xmin = x0;
        if (x1 > xmax) xmax = x1;
        if (x0 != x1) { /* the run wraps a column: it spans every row */
            ymin = 0;
            ymax = h - 1;
        } else {
            uint64_t y0 = start % h, y1 = end % h;
            if (y0 < ymin) ymin = y0;
            if (y1 > ymax) ymax = y1;
        }
    }
    if (xmin == UINT64_MAX) return;
    bbox[0] = (double)xmin;
    bbox[1] = (double)ymin;
    bbox[2] = (double)(xmax - xmin + 1);
    bbox[3] = (double)(ymax - ymin + 1);
}

/* run cursor over one mask: value v of the current run, remaining length */
typedef struct {
    const uint32_t *c;
    size_t n, i;
    uint64_t left;
} rle_cursor;

static void cursor_init(rle_cursor *k, const uint32_t *c, size_t n) {
    k->c = c;
    k->n = n;
    k->i = 0;
    k->left = n ? c[0] : 0;
    while (k->left == 0 && k->i + 1 < k->n) k->left = k->c[++k->i];
}

static void cursor_skip(rle_cursor *k, uint64_t len) {
    k->left -= len;
    while (k->left == 0 && k->i + 1 < k->n) k->left = k->c[++k->i];
}

size_t rle_merge(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, int op,
                 uint32_t *out) {
    rle_cursor p, q;
    cursor_init(&p, a, na);
    cursor_init(&q, b, nb);
    size_t m = 0;
    int cur = 0;  /* value of the run being built */
    uint64_t run = 0;
    while (p.left && q.left) {
        uint64_t len = p.left < q.left ? p.left : q.left;
        int va = (int)(p.i & 1), vb = (int)(q.i & 1);
        int v = op == RLE_INTERSECT ? (va & vb) : (va | vb);
        if (v != cur) {
            out[m++] = (uint32_t)run;
            run = 0;
            cur = v;
        }
        run += len;
        cursor_skip(&p, len);
        cursor_skip(&q, len);
    }
    out[m++] = (uint32_t)run;
    return m;
}

uint64_t rle_intersection(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    rle_cursor p, q;
    cursor_init(&p, a, na);
    cursor_init(&q, b, nb);
    uint64_t inter = 0;
    while (p.left && q.left) {
        uint64_t len = p.left < q.left ? p.left : q.left;
        if ((p.i & 1) && (q.i & 1)) inter += len;
        cursor_skip(&p, len);
        cursor_skip(&q, len);
    }
    return inter;
}

double rle_iou(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    uint64_t inter = rle_intersection(a, na, b, nb);
    uint64_t uni = rle_area(a, na) + rle_area(b, nb) - inter;
    return uni ? (double)inter / (double)uni : 0.0;
}

int rle_contains(const uint32_t *counts, size_t n, uint32_t h, uint32_t w, uint32_t x,
                 uint32_t y) {
    if (x >= w || y >= h) return 0;
    uint64_t idx = (uint64_t)x * h + y, pos = 0;
    for (size_t i = 0; i < n; i++) {
        pos += counts[i];
        if (idx < pos) return (int)(i & 1);
    }
    return 0;
}

int rle_to_mask(const uint32_t *counts, size_t n, uint32_t h, uint32_t w, uint8_t *mask) {
    uint64_t total = (uint64_t)h * w, pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (pos + counts[i] > total) return -1;
        uint8_t v = (uint8_t)(i & 1);
        for (uint64_t j = pos; j < pos + counts[i]; j++) {
            uint64_t x = j / h, y = j % h;
            mask[y * w + x] = v;
        }
        pos += counts[i];
    }
    return pos == total ? 0 : -1;
}

size_t rle_from_mask(const uint8_t *mask, uint32_t h, uint32_t w, uint32_t *counts) {
    size_t m = 0;
    int cur = 0;
    uint32_t run = 0;
    for (uint32_t x = 0; x < w; x++)
        for (uint32_t y = 0; y < h; y++) {
            int v = mask[(uint64_t)y * w + x] != 0;
            if (v != cur) {
                counts[m++] = run;
                run = 0;
                cur = v;
            }
            run++;
        }
    counts[m++] = run;
    return m;
}
