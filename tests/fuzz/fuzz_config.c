/* fuzz_config.c: `--config FILE` (sam2_config_load: the "model" object and
 * the "amg" object, re-serialized and read by amg_params_from_json, as
 * `generate` and `run` do) and amg_params_from_config. */
#include "amg.h"
#include "fuzz.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_file("config.json", data, size);
    sam2_config cfg;
    char *amg_json = NULL;
    err_t err = {{0}};
    int rc = sam2_config_load(path, &cfg, &amg_json, &err);
    if (rc) {
        FUZZ_ASSERT(fuzz_err_ok(&err) && amg_json == NULL);
    } else if (amg_json) {
        amg_params p;
        amg_params_default(&p);
        err_t e2 = {{0}};
        if (amg_params_from_json(&p, amg_json, &e2) == 0) {
            if (amg_params_validate(&p, &e2)) FUZZ_ASSERT(fuzz_err_ok(&e2));
        } else {
            FUZZ_ASSERT(fuzz_err_ok(&e2));
        }
    }
    free(amg_json);
    amg_params p;
    amg_params_default(&p);
    err_t e3 = {{0}};
    if (amg_params_from_config(&p, path, &e3)) FUZZ_ASSERT(fuzz_err_ok(&e3));
    unlink(path);
    return 0;
}
