/* cuda_env.h: the CUDA backend's settings from the environment, read in one
 * place by both sides of the plugin split: backend_cuda_create (in the
 * plugin) uses them, and backend_check_device (in the binary) refuses a bad
 * one before any device is asked for, so a bad setting is the same usage
 * error (exit 2) on a machine with or without a GPU.
 *
 *   SAM2AMG_CUDA_GEMM         f32 (default) or tf32: float32 GEMMs' compute mode
 *   SAM2AMG_CUDA_FUSED        1 (default) or 0: the fused ops (low-rank decoder
 *                             projections, bf16 keys, linear with GELU/residual)
 *   SAM2AMG_CUDA_BF16_WS_MB   1..4096 MiB of bf16 operand workspace (default 64)
 *   SAM2AMG_CUDA_SYNC         0 (default) or 1: synchronize and check after every
 *                             op (debugging)
 *
 * An empty value is the same as unset. */
#ifndef SAM2AMG_CUDA_ENV_H
#define SAM2AMG_CUDA_ENV_H

#include <stdlib.h>
#include <string.h>

#include "check.h"

#define CUDA_ENV_WS16_MB 64   /* bf16 operands converted per call, MiB */

typedef struct cuda_env {
    int    tf32;      /* SAM2AMG_CUDA_GEMM=tf32 */
    int    fused;     /* SAM2AMG_CUDA_FUSED is not 0 */
    size_t ws16_mb;   /* SAM2AMG_CUDA_BF16_WS_MB */
    int    sync;      /* SAM2AMG_CUDA_SYNC=1 */
} cuda_env;

/* cuda_env_read: the settings into *out, or ERR_INVALID with a one-line
 * message naming the variable and its value (prefixed "cuda:DEVICE: ") */
static inline int cuda_env_read(int device, cuda_env *out, err_t *err) {
    *out = (cuda_env){.tf32 = 0, .fused = 1, .ws16_mb = CUDA_ENV_WS16_MB, .sync = 0};
    const char *v = getenv("SAM2AMG_CUDA_GEMM");
    out->tf32 = v && !strcmp(v, "tf32");
    if (v && *v && strcmp(v, "f32") && !out->tf32)
        return err_set(err, ERR_INVALID, "cuda:%d: SAM2AMG_CUDA_GEMM='%.40s' (expected f32 or "
                       "tf32)", device, v);
    v = getenv("SAM2AMG_CUDA_FUSED");
    out->fused = !(v && !strcmp(v, "0"));
    if (v && *v && strcmp(v, "0") && strcmp(v, "1"))
        return err_set(err, ERR_INVALID, "cuda:%d: SAM2AMG_CUDA_FUSED='%.40s' (expected 0 or 1)",
                       device, v);
    v = getenv("SAM2AMG_CUDA_BF16_WS_MB");
    if (v && *v) {
        char *end = NULL;
        long n = strtol(v, &end, 10);   /* digits only: strtol takes " 5" and "+5" */
        if (*v < '0' || *v > '9' || *end || n < 1 || n > 4096)
            return err_set(err, ERR_INVALID, "cuda:%d: SAM2AMG_CUDA_BF16_WS_MB='%.40s' (expected "
                           "1..4096)", device, v);
        out->ws16_mb = (size_t)n;
    }
    v = getenv("SAM2AMG_CUDA_SYNC");
    out->sync = v && !strcmp(v, "1");
    if (v && *v && strcmp(v, "0") && strcmp(v, "1"))
        return err_set(err, ERR_INVALID, "cuda:%d: SAM2AMG_CUDA_SYNC='%.40s' (expected 0 or 1)",
                       device, v);
    return 0;
}

#endif
