/* fuzz_point_grids.c: `--point-grids FILE` (amg_params_grids_from_file),
 * then validation and amg_create, which copies the grids, as `generate`
 * and `run` do with a loaded file. */
#include "amg.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_file("grids.json", data, size);
    amg_params p;
    amg_params_default(&p);
    float *pts = NULL;
    int *sizes = NULL;
    err_t err = {{0}};
    int rc = amg_params_grids_from_file(&p, path, &pts, &sizes, &err);
    unlink(path);
    if (rc) {
        FUZZ_ASSERT(fuzz_err_ok(&err) && pts == NULL && sizes == NULL);
        return 0;
    }
    FUZZ_ASSERT(p.n_point_grids > 0 && p.point_grids == pts && p.point_grid_sizes == sizes);
    /* the official generator takes crop_n_layers + 1 grids */
    p.crop_n_layers = p.n_point_grids - 1 <= 6 ? p.n_point_grids - 1 : 6;
    err_t e2 = {{0}};
    if (amg_params_validate(&p, &e2) == 0) {
        amg_t *g = NULL;
        if (amg_create(&g, &p, 16, &e2) == 0) amg_free(g);
        else FUZZ_ASSERT(fuzz_err_ok(&e2));
    } else {
        FUZZ_ASSERT(fuzz_err_ok(&e2));
    }
    free(pts);
    free(sizes);
    return 0;
}
