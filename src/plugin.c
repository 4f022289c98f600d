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
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
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
