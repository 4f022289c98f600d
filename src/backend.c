/* backend.c: backend_create, the one place that maps a device name to a
 * backend constructor, so that callers (CLI, job runner, tests) never
 * mention a particular backend. "cpu" is always there; "cuda:N" goes
 * through the CUDA plugin (src/plugin.c), which may be missing on this
 * machine: then the answer is a one-line error naming what is missing.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "cuda_env.h"

int backend_parse_device(const char *device, int *cuda_index, err_t *err) {
    *cuda_index = -1;
    if (!device || strcmp(device, "cpu") == 0) return 0;
    if (strncmp(device, "cuda", 4) == 0 && (device[4] == '\0' || device[4] == ':')) {
        long dev = 0;
        if (device[4] == ':') {
            char *end;
            errno = 0;
            dev = isdigit((unsigned char)device[5]) ? strtol(device + 5, &end, 10) : -1;
            if (dev < 0 || errno || *end != '\0' || dev > 1023)
                return err_set(err, ERR_INVALID, "device '%s': bad CUDA device number "
                               "(expected cuda:N, N from 0)", device);
        }
        *cuda_index = (int)dev;
        return 0;
    }
    return err_set(err, ERR_INVALID, "device '%s': unknown (expected cpu or cuda:N)", device);
}

int backend_cuda_count(int *n, err_t *err) {
    *n = 0;
    const backend_plugin_t *p = backend_cuda_plugin(err);
    if (!p) return ERR_BACKEND;
    return p->device_count(n, err);
}

int backend_check_device(const char *device, err_t *err) {
    int dev, n;
    int rc = backend_parse_device(device, &dev, err);
    if (rc || dev < 0) return rc;
    cuda_env env;   /* a bad SAM2AMG_CUDA_* setting: refused whether or not there is a GPU */
    if ((rc = cuda_env_read(dev, &env, err))) return rc;
    if ((rc = backend_cuda_count(&n, err))) {
        err_t e = *err;
        return err_set(err, rc, "%s: %s", device, e.msg);
    }
    if (dev >= n)
        return err_set(err, ERR_BACKEND, "%s: no such device (%d CUDA device%s visible)", device,
                       n, n == 1 ? "" : "s");
    return 0;
}

/* backend_create: "cpu" -> the CPU backend with n_threads threads (0 = all
 * online CPUs); "cuda" or "cuda:N" -> CUDA device N (default 0) through
 * the plugin, where n_threads is ignored. */
backend_t *backend_create(const char *device, int n_threads, err_t *err) {
    int dev;
    if (backend_parse_device(device, &dev, err)) return NULL;
    if (dev < 0) return backend_cpu_open(n_threads, err);
    cuda_env env;   /* a bad SAM2AMG_CUDA_* setting names itself, plugin or not */
    if (cuda_env_read(dev, &env, err)) return NULL;
    err_t e = {{0}};
    const backend_plugin_t *p = backend_cuda_plugin(&e);
    if (!p) {
        err_set(err, ERR_BACKEND, "%s: %s", device, e.msg);
        return NULL;
    }
    return p->create(dev, err);
}
