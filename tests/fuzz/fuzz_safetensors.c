/* fuzz_safetensors.c: `.safetensors` files (the 8-byte header length, the
 * JSON header, dtypes, shapes and data offsets of src/weights.c) through
 * weights_open. Seeds: small .safetensors fixtures, tests/fuzz/corpus/. */
#include "fuzz.h"
#include "weights_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_weights(data, size, "ckpt.safetensors");
    return 0;
}
