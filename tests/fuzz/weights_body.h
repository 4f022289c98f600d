/* weights_body.h: the body shared by fuzz_pt.c and fuzz_safetensors.c (one
 * loader, weights_open, tells the formats apart by content; two targets so
 * each keeps a corpus of its own format). The bytes become a file that
 * weights_open maps; on success every tensor is read back with weights_get
 * at its own shape (f16/bf16 converted), as the model loader does, and the
 * first and last float touched, so a tensor that points outside the mapping
 * is an ASan report. */
#include "weights.h"

static void fuzz_weights(const uint8_t *data, size_t size, const char *tag) {
    const char *path = fuzz_temp_file(tag, data, size);
    weights_t *w = NULL;
    err_t err = {{0}};
    int rc = weights_open(&w, path, &err);
    if (rc) {
        FUZZ_ASSERT(w == NULL && rc < 0 && fuzz_err_ok(&err));
        unlink(path);
        return;
    }
    volatile float sink = 0;
    for (int i = 0; i < weights_count(w); i++) {
        wtensor_t *t = weights_at(w, i);
        FUZZ_ASSERT(t && t->name && t->ndim >= 0 && t->ndim <= WEIGHTS_MAX_DIMS);
        FUZZ_ASSERT(weights_find(w, t->name) != NULL);
        if (t->dtype != WDT_F32 && t->dtype != WDT_F16 && t->dtype != WDT_BF16) continue;
        err_t e2 = {{0}};
        const float *x = weights_get(w, t->name, t->ndim, t->shape, &e2);
        FUZZ_ASSERT(x || fuzz_err_ok(&e2));
        if (x && t->numel > 0) sink += x[0] + x[t->numel - 1];
    }
    (void)sink;
    err_t e3 = {{0}};
    static const char *const skip[] = {NULL};
    if (weights_check_unused(w, skip, &e3)) FUZZ_ASSERT(fuzz_err_ok(&e3));
    weights_close(w);
    unlink(path);
}
