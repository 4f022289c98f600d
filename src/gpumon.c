/* gpumon.c: GPU utilization sampled through NVML (see gpumon.h). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpumon.h"

/* the few NVML and driver API types used, so that no header is needed */
typedef struct nvml_device *nvml_device_t;
typedef struct {
    unsigned int gpu, memory;   /* percent */
} nvml_utilization_t;
typedef struct {
    unsigned long long total, free, used;   /* bytes, the whole device */
} nvml_memory_t;
typedef int nvml_return_t;       /* NVML_SUCCESS = 0 */
typedef int cu_result;           /* CUDA_SUCCESS = 0 */

typedef struct nvml_api {
    nvml_return_t (*init)(void);
    nvml_return_t (*shutdown)(void);
    nvml_return_t (*by_bus)(const char *bus_id, nvml_device_t *dev);
    nvml_return_t (*util)(nvml_device_t dev, nvml_utilization_t *u);
    nvml_return_t (*mem)(nvml_device_t dev, nvml_memory_t *m);   /* may be NULL */
    const char   *(*error)(nvml_return_t rc);   /* may be NULL */
} nvml_api;

struct gpumon {
    nvml_api        api;
    int             n, period_ms;
    nvml_device_t   dev[GPUMON_MAX];
    int             ordinal[GPUMON_MAX];
    double          sum[GPUMON_MAX];           /* utilization fractions summed */
    int             samples[GPUMON_MAX];
    unsigned long long mem_peak[GPUMON_MAX], mem_total[GPUMON_MAX];   /* bytes, 0: unknown */
    double          t0;
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             stop;
};

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *nvml_why(const nvml_api *a, nvml_return_t rc, char *buf, size_t cap) {
    const char *s = a->error ? a->error(rc) : NULL;
    snprintf(buf, cap, "%s (nvmlReturn %d)", s ? s : "error", rc);
    return buf;
}

/* bus_ids: the PCI bus id of each CUDA ordinal, from the driver */
static int bus_ids(const int *ordinals, int n, char (*bus)[32], err_t *err) {
    const char *env = getenv("SAM2AMG_CUDA_DRIVER");
    const char *lib = env && *env ? env : "libcuda.so.1";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);   /* never closed, as in plugin.c */
    if (!h) return err_set(err, ERR_BACKEND, "no CUDA driver (%s)", dlerror());
    cu_result (*init)(unsigned);
    cu_result (*get)(int *, int);
    cu_result (*pci)(char *, int, int);
    *(void **)&init = dlsym(h, "cuInit");
    *(void **)&get = dlsym(h, "cuDeviceGet");
    *(void **)&pci = dlsym(h, "cuDeviceGetPCIBusId");
    if (!init || !get || !pci)
        return err_set(err, ERR_BACKEND, "the CUDA driver %s lacks cuInit, cuDeviceGet or "
                       "cuDeviceGetPCIBusId", lib);
    cu_result rc = init(0);
    if (rc) return err_set(err, ERR_BACKEND, "the CUDA driver %s: cuInit failed (CUresult %d)",
                           lib, rc);
    for (int i = 0; i < n; i++) {
        int dev = 0;
        if ((rc = get(&dev, ordinals[i])) || (rc = pci(bus[i], 32, dev)))
            return err_set(err, ERR_BACKEND, "cuda:%d: no PCI bus id from the driver (CUresult "
                           "%d)", ordinals[i], rc);
        bus[i][31] = 0;
    }
    return 0;
}

/* one reading of every device (errors skip the device this time) */
static void sample(gpumon_t *m) {
    for (int i = 0; i < m->n; i++) {
        nvml_utilization_t u;
        if (m->api.util(m->dev[i], &u) == 0 && u.gpu <= 100) {
            m->sum[i] += u.gpu / 100.0;
            m->samples[i]++;
        }
        nvml_memory_t mm;
        if (m->api.mem && m->api.mem(m->dev[i], &mm) == 0 && mm.used <= mm.total) {
            if (mm.used > m->mem_peak[i]) m->mem_peak[i] = mm.used;
            m->mem_total[i] = mm.total;
        }
    }
}

static void *sampler(void *arg) {
    gpumon_t *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(m->period_ms % 1000) * 1000000L;
        ts.tv_sec += m->period_ms / 1000 + ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &ts) != ETIMEDOUT) {}
        if (m->stop) break;
        pthread_mutex_unlock(&m->mu);
        sample(m);   /* NVML calls outside the lock: stop never waits on them */
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

int gpumon_start(gpumon_t **out, const int *ordinals, int n, int period_ms, err_t *err) {
    *out = NULL;
    CHECK(n >= 1 && n <= GPUMON_MAX && period_ms >= 10);
    char bus[GPUMON_MAX][32];
    int rc = bus_ids(ordinals, n, bus, err);
    if (rc) return rc;
    const char *env = getenv("SAM2AMG_NVML");
    const char *lib = env && *env ? env : "libnvidia-ml.so.1";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);   /* never closed */
    if (!h) return err_set(err, ERR_BACKEND, "no NVML (%s)", dlerror());
    nvml_api a;
    *(void **)&a.init = dlsym(h, "nvmlInit_v2");
    *(void **)&a.shutdown = dlsym(h, "nvmlShutdown");
    *(void **)&a.by_bus = dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2");
    *(void **)&a.util = dlsym(h, "nvmlDeviceGetUtilizationRates");
    *(void **)&a.mem = dlsym(h, "nvmlDeviceGetMemoryInfo");
    *(void **)&a.error = dlsym(h, "nvmlErrorString");
    if (!a.init || !a.shutdown || !a.by_bus || !a.util)
        return err_set(err, ERR_BACKEND, "NVML %s lacks nvmlInit_v2, nvmlShutdown, "
                       "nvmlDeviceGetHandleByPciBusId_v2 or nvmlDeviceGetUtilizationRates", lib);
    char why[128];
    nvml_return_t nr = a.init();
    if (nr) return err_set(err, ERR_BACKEND, "NVML: nvmlInit failed: %s",
                           nvml_why(&a, nr, why, sizeof why));
    gpumon_t *m = calloc(1, sizeof *m);
    if (!m) {
        a.shutdown();
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    m->api = a, m->n = n, m->period_ms = period_ms;
    for (int i = 0; i < n; i++) {
        m->ordinal[i] = ordinals[i];
        if ((nr = a.by_bus(bus[i], &m->dev[i]))) {
            rc = err_set(err, ERR_BACKEND, "NVML: cuda:%d (PCI %s): no such device: %s",
                         ordinals[i], bus[i], nvml_why(&a, nr, why, sizeof why));
            free(m);
            a.shutdown();
            return rc;
        }
    }
    pthread_condattr_t ca;
    int have_ca = pthread_condattr_init(&ca) == 0;
    int have_cv = have_ca && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                  pthread_cond_init(&m->cv, &ca) == 0;
    if (have_ca) pthread_condattr_destroy(&ca);
    int have_mu = have_cv && pthread_mutex_init(&m->mu, NULL) == 0;
    m->t0 = mono_s();
    if (!have_mu || pthread_create(&m->thread, NULL, sampler, m) != 0) {
        if (have_mu) pthread_mutex_destroy(&m->mu);
        if (have_cv) pthread_cond_destroy(&m->cv);
        free(m);
        a.shutdown();
        return err_set(err, ERR_BACKEND, "GPU monitor: cannot start its thread");
    }
    *out = m;
    return 0;
}

int gpumon_stop(gpumon_t *m, gpumon_stat *st) {
    if (!m) return 0;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    sample(m);   /* the last period (a run shorter than one period gets one reading) */
    double sec = mono_s() - m->t0;
    int n = m->n;
    for (int i = 0; i < n; i++)
        st[i] = (gpumon_stat){m->ordinal[i], m->samples[i] ? m->sum[i] / m->samples[i] : 0.0,
                              m->samples[i], sec, (double)m->mem_peak[i],
                              (double)m->mem_total[i]};
    m->api.shutdown();
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
    return n;
}
