/* pickle.c: torch .pt checkpoints (placeholder until the unpickler lands). */
#include "weights_int.h"

int pt_load(weights_t *w, err_t *err) {
    return err_set(err, ERR_FORMAT, "%s: torch .pt checkpoints not supported yet", weights_path(w));
}
