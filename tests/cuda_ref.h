/* cuda_ref.h: the helpers the CUDA parity test (tests/test_cuda.c) and
 * kernel harness (bench/bench_cuda.c) share: random fill, normalized error,
 * device round trips. The op references themselves are ops_ref.h's naive
 * loops (src/ops_ref.c), independent of both backends, so a disagreement
 * points at the backend. Static inline functions: each includer compiles
 * what it uses.
 */
#ifndef SAM2AMG_CUDA_REF_H
#define SAM2AMG_CUDA_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "ops_ref.h"

/* ---- environment: GEMM mode and whether a device is required ---- */

/* ref_gemm_tf32: 1 when SAM2AMG_CUDA_GEMM=tf32 selects TF32 GEMMs (see
 * src/backend_cuda.c); GEMM-based ops are then bounded by 2e-3, else by
 * the float32 bound 1e-5. */
static inline int ref_gemm_tf32(void) {
    const char *g = getenv("SAM2AMG_CUDA_GEMM");
    return g && strcmp(g, "tf32") == 0;
}

/* ref_require_cuda: 1 when SAM2AMG_REQUIRE_CUDA=1 (tests/gpu/check.sh sets
 * it): a device that cannot be opened is then a failure, not a skip, so a
 * broken driver or missing library never reads as a pass. */
static inline int ref_require_cuda(void) {
    const char *r = getenv("SAM2AMG_REQUIRE_CUDA");
    return r && strcmp(r, "1") == 0;
}

/* ---- random data, errors, device round trips ---- */

static uint64_t ref_rng_state = 0x9e3779b97f4a7c15ull;

/* ref_fill: n floats uniform in [-amp, amp) (xorshift64*, deterministic). */
static inline void ref_fill(float *x, int64_t n, float amp) {
    for (int64_t i = 0; i < n; i++) {
        ref_rng_state ^= ref_rng_state >> 12;
        ref_rng_state ^= ref_rng_state << 25;
        ref_rng_state ^= ref_rng_state >> 27;
        uint64_t r = (ref_rng_state * 0x2545f4914f6cdd1dull) >> 40;   // 24 bits
        x[i] = amp * (2.0f * (float)r / 16777216.0f - 1.0f);
    }
}

static inline float *ref_new(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    CHECK(p);
    return p;
}

static inline float *ref_new_random(int64_t n, float amp) {
    float *p = ref_new(n);
    ref_fill(p, n, amp);
    return p;
}

/* ref_error: normalized error ||got - want|| / max(||want||, 1e-30); +inf
 * when got holds a NaN or Inf (checked first, as a NaN would compare
 * false against any bound). */
static inline double ref_error(const float *got, const float *want, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

/* ref_to_dev: backend memory holding a copy of n host floats (aborts when
 * the device is out of memory: test sizes are small). */
static inline float *ref_to_dev(backend_t *be, const float *h, int64_t n) {
    float *d = be->alloc(be, (size_t)n * sizeof(float));
    CHECK(d);
    be->upload(be, d, h, (size_t)n * sizeof(float));
    return d;
}

/* ref_from_dev: a new host copy of n floats of backend memory. */
static inline float *ref_from_dev(backend_t *be, const float *d, int64_t n) {
    float *h = ref_new(n);
    be->sync(be);
    be->download(be, h, d, (size_t)n * sizeof(float));
    return h;
}

#endif
