/* arena.c: planned activation memory on top of a backend's alloc().
 *
 * One backend allocation at start, sized by the caller; then bump
 * allocation with mark/release (include/backend.h). Each allocation starts
 * on a 256-byte boundary, so every tensor suits vector loads and CUDA
 * kernels alike. Running out is a sizing bug in the caller's plan: abort
 * with both numbers rather than fail one image quietly. The high-water mark
 * (peak) lets the planner and the tests see how much was really needed.
 */
#include <string.h>

#include "backend.h"
#include "check.h"

#define ARENA_ALIGN 256

/* arena_init: allocate `size` bytes (rounded up to ARENA_ALIGN) of backend
 * memory for `a`. Returns 0, or ERR_NOMEM (a left zeroed) when the backend
 * cannot provide it. The arena does not own `be`. */
int arena_init(arena_t *a, backend_t *be, size_t size) {
    memset(a, 0, sizeof *a);
    size = (size + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (size == 0) size = ARENA_ALIGN;
    void *p = be->alloc(be, size);
    if (!p) return ERR_NOMEM;
    CHECK(((uintptr_t)p % ARENA_ALIGN) == 0);
    a->be = be;
    a->base = p;
    a->size = size;
    return 0;
}

/* arena_free: give the memory back to the backend; a is zeroed and may be
 * freed again or re-initialised. */
void arena_free(arena_t *a) {
    if (a->base) a->be->free(a->be, a->base);
    memset(a, 0, sizeof *a);
}

/* arena_alloc: n_floats floats starting on a 256-byte boundary, valid until
 * arena_release() to a mark taken before this call. Aborts, naming requested
 * and available bytes, when the arena is too small. */
float *arena_alloc(arena_t *a, size_t n_floats) {
    CHECK(a->base);
    size_t start = (a->used + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    size_t bytes = n_floats * sizeof(float);
    CHECK_MSG(n_floats <= SIZE_MAX / sizeof(float) && start <= a->size &&
                  bytes <= a->size - start,
              "arena too small: requested %zu bytes, %zu of %zu available (plan more memory)",
              bytes, start <= a->size ? a->size - start : 0, a->size);
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return (float *)(a->base + start);
}
