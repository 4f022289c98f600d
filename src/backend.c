/* backend.c: backend_create, the one place that maps a device name to a
 * backend constructor, so that callers (CLI, job runner, tests) never
 * mention a particular backend. "cpu" is always there; "cuda:N" only in a
 * build compiled with -DSAM2AMG_CUDA (the Makefile sets it when nvcc is
 * found).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"

/* backend_create: "cpu" -> the CPU backend with n_threads threads (0 = all
 * online CPUs); "cuda" or "cuda:N" -> CUDA device N (default 0), where
 * n_threads is ignored. Returns NULL with a one-line message in err for an
 * unknown name, a bad device number, a device that cannot be opened, or a
 * CUDA name in a build without CUDA. */
backend_t *backend_create(const char *device, int n_threads, struct err_t *err) {
    if (!device || strcmp(device, "cpu") == 0) return backend_cpu_create(n_threads);
    if (strncmp(device, "cuda", 4) == 0 && (device[4] == '\0' || device[4] == ':')) {
        long dev = 0;
        if (device[4] == ':') {
            char *end;
            errno = 0;
            dev = strtol(device + 5, &end, 10);
            if (errno || end == device + 5 || *end != '\0' || dev < 0 || dev > 1023) {
                err_set(err, ERR_INVALID, "device '%s': bad CUDA device number", device);
                return NULL;
            }
        }
#ifdef SAM2AMG_CUDA
        return backend_cuda_create((int)dev, err);
#else
        err_set(err, ERR_INVALID, "device '%s': this build has no CUDA (compiled without SAM2AMG_CUDA)",
                device);
        return NULL;
#endif
    }
    err_set(err, ERR_INVALID, "device '%s': unknown (expected cpu or cuda:N)", device);
    return NULL;
}
