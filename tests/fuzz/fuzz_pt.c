/* fuzz_pt.c: `.pt` checkpoints (torch.save zips: the zip reader and the
 * restricted unpickler of src/pickle.c) through weights_open. Seeds:
 * the .pt files of tests/fixtures/pt-variants, tests/fuzz/corpus/fuzz_pt. */
#include "fuzz.h"
#include "weights_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_weights(data, size, "ckpt.pt");
    return 0;
}
