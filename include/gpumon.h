/* gpumon.h: how busy the GPUs of a run are, as the driver measures it.
 *
 * NVML's utilization of a device is the share of the last sample period
 * (1/6 s to 1 s, the driver's choice) during which one or more kernels
 * ran on it: the "GPU busy" of the pipeline goal, independent of what the
 * host threads believe. A thread samples it every period while `run`
 * works; the run reports the mean per device (`run -v`, the run_gpus
 * table, `status`). Each reading also takes the device's memory in use
 * (nvmlDeviceGetMemoryInfo, every process's, where NVML has it): `run -v`
 * prints the peak, what a benchmark reports as peak GPU memory.
 *
 * Nothing is linked: NVML (libnvidia-ml.so.1, part of the driver) and the
 * CUDA driver (libcuda.so.1) are loaded with dlopen, so a CPU machine
 * needs neither. CUDA ordinals (the runtime's numbering, after
 * CUDA_VISIBLE_DEVICES) and NVML indices number devices differently, so
 * each ordinal is mapped through its PCI bus id (cuDeviceGetPCIBusId ->
 * nvmlDeviceGetHandleByPciBusId_v2). Tests point SAM2AMG_NVML and
 * SAM2AMG_CUDA_DRIVER at stand-ins.
 */
#ifndef SAM2AMG_GPUMON_H
#define SAM2AMG_GPUMON_H

#include "check.h"

#define GPUMON_MAX 64

typedef struct gpumon gpumon_t;

typedef struct gpumon_stat {
    int    ordinal;   /* CUDA ordinal */
    double busy;      /* mean utilization over the samples, 0..1 (0 without samples) */
    int    samples;   /* readings taken */
    double seconds;   /* from start to stop */
    double mem_peak;  /* bytes: the most memory in use on the device at a reading (every
                       * process's: NVML's used), 0 when NVML cannot say */
    double mem_total; /* bytes: the device's memory, 0 when unknown */
} gpumon_stat;

/* gpumon_start: sample the CUDA devices ordinals[0..n) (1 <= n <=
 * GPUMON_MAX) every period_ms (>= 10) on a thread of its own. ERR_BACKEND
 * with one line in err when NVML, the driver or a device cannot be found
 * (then nothing runs); ERR_NOMEM. */
int  gpumon_start(gpumon_t **out, const int *ordinals, int n, int period_ms, err_t *err);
/* gpumon_stop: stops the thread (one last reading first), writes n
 * entries into st (in the order given to start) and frees m. NULL m: no-op,
 * returns 0; else returns n. */
int  gpumon_stop(gpumon_t *m, gpumon_stat *st);

#endif
