/* size.h: overflow-checked size arithmetic for numbers that come from users.
 *
 * Every size, count, offset or product computed from values read out of a
 * file, a database, a manifest or a flag (checkpoint shapes and strides,
 * safetensors offsets, RLE sizes, image dimensions) goes through these
 * helpers, so a hostile value cannot wrap an allocation size or an index.
 * Each returns true and stores the result when it is exact and within
 * [0, limit]; it returns false (and leaves *out untouched) for a negative
 * operand, an overflow or a result over the limit. The caller turns false
 * into a data error naming the thing; nothing here aborts.
 */
#ifndef SAM2AMG_SIZE_H
#define SAM2AMG_SIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* size_mul: *out = a * b for a, b >= 0, without overflow. */
static inline bool size_mul(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

/* size_add: *out = a + b for a, b >= 0, without overflow. */
static inline bool size_add(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

/* size_mul_add: *out = a * b + c for a, b, c >= 0, without overflow. */
static inline bool size_mul_add(int64_t a, int64_t b, int64_t c, int64_t *out) {
    int64_t r;
    if (!size_mul(a, b, &r) || !size_add(r, c, &r)) return false;
    *out = r;
    return true;
}

/* size_prod: *out = the product of dims[0..n) (1 for n == 0), each >= 0,
 * and the product at most limit (pass INT64_MAX for no limit). */
static inline bool size_prod(const int64_t *dims, int n, int64_t limit, int64_t *out) {
    int64_t r = 1;
    for (int i = 0; i < n; i++)
        if (!size_mul(r, dims[i], &r)) return false;
    if (r > limit) return false;
    *out = r;
    return true;
}

/* size_bytes: *out = count * elem as a size_t byte count, for allocations. */
static inline bool size_bytes(int64_t count, size_t elem, size_t *out) {
    size_t r;
    if (count < 0 || (uint64_t)count > SIZE_MAX || __builtin_mul_overflow((size_t)count, elem, &r))
        return false;
    *out = r;
    return true;
}

#endif
