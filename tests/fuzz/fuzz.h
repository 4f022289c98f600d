/* fuzz.h: what the fuzz targets of tests/fuzz/ share.
 *
 * Each tests/fuzz/fuzz_<surface>.c defines LLVMFuzzerTestOneInput and feeds
 * its bytes to the function the program itself calls for that input (the
 * checkpoint loader, the JSON reader, the manifest ingest, the image
 * loader, ...). The same file is linked two ways: with clang's libFuzzer
 * under ASan+UBSan (`make fuzz`, build-fuzz/fuzz/), and with the normal cc
 * and tests/fuzz/replay.c as main() (build/fuzz-replay/), which `make test`
 * uses to replay tests/fuzz/corpus/<target>/ without clang.
 *
 * A target asserts what must hold for every input (FUZZ_ASSERT aborts, so
 * both the fuzzer and the replay report it as a crash): an error comes with
 * a one-line message, success comes with sane outputs.
 */
#ifndef SAM2AMG_FUZZ_H
#define SAM2AMG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                   \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: fuzz assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* fuzz_err_ok: an error message is one non-empty line. */
static inline int fuzz_err_ok(const err_t *e) {
    return e->msg[0] && !strchr(e->msg, '\n');
}

/* fuzz_temp_file: write data to a per-process file "/tmp/sam2amg-fuzz-PID-TAG"
 * (tag may carry an extension: the program tells manifests apart by it) and
 * return its path (static buffer, overwritten by the next call with the same
 * tag storage). The loaders under test take paths, so the bytes go through
 * the file system exactly as a user's file would. */
static inline const char *fuzz_temp_file(const char *tag, const uint8_t *data, size_t size) {
    static char path[256];
    snprintf(path, sizeof path, "%s/sam2amg-fuzz-%ld-%s",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid(), tag);
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(size == 0 || fwrite(data, 1, size, f) == size);
    CHECK(fclose(f) == 0);
    return path;
}

/* fuzz_cstr: a NUL-terminated malloc'd copy of data (the caller frees). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    CHECK(s);
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#endif
