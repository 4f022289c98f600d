/* plugin.c: finding and loading the CUDA backend plugin.
 *
 * build/sam2amg links neither the CUDA runtime nor cuBLAS, so the same
 * binary runs on a CPU-only machine; the CUDA backend is a shared library,
 * libsam2amg_cuda.so, built beside it (Makefile) and dlopen'ed here the
 * first time a CUDA device is asked for. Where it is looked for:
 *   1. $SAM2AMG_CUDA_PLUGIN (a file path), when set and not empty;
 *   2. libsam2amg_cuda.so in the folder of the running program
 *      (/proc/self/exe), so build/sam2amg finds build/libsam2amg_cuda.so
 *      and an installed copy finds its own.
 * The plugin exports one symbol, BACKEND_PLUGIN_SYMBOL, returning a
 * backend_plugin_t; its api_version must be this program's
 * BACKEND_API_VERSION (struct backend's layout), else it is refused.
 *
 * Programs linked with the CUDA objects themselves (the tests, tests/gpu,
 * the GPU bundle) define sam2amg_cuda_plugin_v1: the weak reference below
 * then finds it and no file is opened. In build/sam2amg it is NULL.
 *
 * The plugin is loaded once per process and never unloaded (backends made
 * by it live until exit); the outcome, success or the error message, is
 * kept, so each worker thread asking again gets the same answer.
 *
 * Counting GPUs (run --devices all) does not need the plugin: loading it
 * loads cuBLAS and the CUDA runtime, hundreds of MB, only to find none on
 * a CPU node. backend_cuda_driver_count asks the driver alone (libcuda.so.1,
 * or $SAM2AMG_CUDA_DRIVER, which the tests point at a stand-in), and
 * backend_cuda_visible_entries reads CUDA_VISIBLE_DEVICES as the runtime
 * does, so a list that makes no device visible needs not even the driver.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"

/* a weak reference: resolved when the CUDA objects are linked in */
extern __typeof__(sam2amg_cuda_plugin_v1) sam2amg_cuda_plugin_v1 __attribute__((weak));

static pthread_mutex_t plugin_mu = PTHREAD_MUTEX_INITIALIZER;
static int plugin_tried;
static const backend_plugin_t *plugin;
static err_t plugin_err;

/* plugin_path: where to look, into buf; 0, or -1 when /proc/self/exe
 * cannot be read (then err_set names it) */
static int plugin_path(char *buf, size_t cap, err_t *err) {
    const char *env = getenv("SAM2AMG_CUDA_PLUGIN");
    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        err_set(err, ERR_BACKEND, "the CUDA plugin: cannot find this program's folder "
                "(/proc/self/exe: %s); set SAM2AMG_CUDA_PLUGIN to libsam2amg_cuda.so",
                strerror(errno));
        return -1;
    }
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(buf, cap, "%s/libsam2amg_cuda.so", slash ? exe : ".");
    return 0;
}

/* plugin_load: the table from the file, or NULL with err set */
static const backend_plugin_t *plugin_load(err_t *err) {
    if (sam2amg_cuda_plugin_v1) return sam2amg_cuda_plugin_v1();   /* linked in */
    char path[PATH_MAX + 32];
    if (plugin_path(path, sizeof path, err)) return NULL;
    struct stat st;
    if (stat(path, &st) != 0) {
        err_set(err, ERR_BACKEND, "no CUDA plugin: %s is missing (%s), this sam2amg was "
                "built or installed without it", path, strerror(errno));
        return NULL;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        /* typically a CUDA library it needs (libcublas, libcudart) is not
         * installed: dlerror names it */
        err_set(err, ERR_BACKEND, "the CUDA plugin %s cannot be loaded: %s", path, dlerror());
        return NULL;
    }
    const backend_plugin_t *(*entry)(void);
    *(void **)&entry = dlsym(h, BACKEND_PLUGIN_SYMBOL);
    if (!entry) {
        err_set(err, ERR_BACKEND, "%s is not a sam2amg CUDA plugin (no %s)", path,
                BACKEND_PLUGIN_SYMBOL);
        dlclose(h);
        return NULL;
    }
    const backend_plugin_t *p = entry();
    if (!p || p->api_version != BACKEND_API_VERSION) {
        err_set(err, ERR_BACKEND, "the CUDA plugin %s was built for backend API %d, this "
                "sam2amg has %d: rebuild both from one tree", path, p ? p->api_version : -1,
                BACKEND_API_VERSION);
        dlclose(h);
        return NULL;
    }
    return p;   /* h stays open for the life of the process */
}

const backend_plugin_t *backend_cuda_plugin(err_t *err) {
    pthread_mutex_lock(&plugin_mu);
    if (!plugin_tried) {
        plugin = plugin_load(&plugin_err);
        plugin_tried = 1;
    }
    const backend_plugin_t *p = plugin;
    if (!p && err) *err = plugin_err;
    pthread_mutex_unlock(&plugin_mu);
    return p;
}

/* ---- visible devices, without the plugin ---- */

/* cvd_entry_ok: whether the entry [p, p+n) of CUDA_VISIBLE_DEVICES names a
 * device: a decimal index, or a GPU-/MIG- UUID (the runtime checks the
 * UUID against the devices; here it is taken as one) */
static int cvd_entry_ok(const char *p, size_t n) {
    if (n > 4 && (!strncmp(p, "GPU-", 4) || !strncmp(p, "MIG-", 4))) return 1;
    if (n == 0 || n > 9) return 0;   /* "-1", "", and no index past 10^9 */
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return 0;
    return 1;
}

int backend_cuda_visible_entries(const char *cvd) {
    if (!cvd) return -1;
    int n = 0;
    for (const char *p = cvd;; ) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (!cvd_entry_ok(p, len)) break;   /* the runtime stops at the first bad entry */
        n++;
        if (!c) break;
        p = c + 1;
    }
    return n;
}

/* the driver API's few types, so that no CUDA header is needed here */
typedef int cu_result;
enum { CU_SUCCESS = 0, CU_ERROR_NO_DEVICE = 100 };

int backend_cuda_driver_count(int *n, err_t *err) {
    *n = 0;
    const char *env = getenv("SAM2AMG_CUDA_DRIVER");
    const char *lib = env && *env ? env : "libcuda.so.1";
    /* never closed: the plugin, when loaded next, uses the same driver */
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) return err_set(err, ERR_BACKEND, "no CUDA driver (%s)", dlerror());
    cu_result (*init)(unsigned);
    cu_result (*count)(int *);
    *(void **)&init = dlsym(h, "cuInit");
    *(void **)&count = dlsym(h, "cuDeviceGetCount");
    if (!init || !count)
        return err_set(err, ERR_BACKEND, "no CUDA driver (%s has no cuInit or "
                       "cuDeviceGetCount)", lib);
    cu_result rc = init(0);
    if (rc == CU_ERROR_NO_DEVICE) return 0;
    if (rc != CU_SUCCESS)
        return err_set(err, ERR_BACKEND, "the CUDA driver %s: cuInit failed (CUresult %d)", lib,
                       rc);
    int c = 0;
    if ((rc = count(&c)) != CU_SUCCESS || c < 0)
        return err_set(err, ERR_BACKEND, "the CUDA driver %s: cuDeviceGetCount failed "
                       "(CUresult %d)", lib, rc);
    *n = c;
    return 0;
}
