-- 006_gpu_busy.sql: how busy each GPU of a run was, as the driver measured
-- it (include/gpumon.h): the mean of NVML's utilization readings (the
-- share of time one or more kernels ran on the device), taken every 0.2 s
-- from the workers' start to their end. One row per GPU and run, written
-- when the run ends; a run killed with SIGKILL, a run without GPUs, or one
-- where NVML could not be loaded has none. `sam2amg status` prints the
-- last working run's rows.
CREATE TABLE run_gpus (
    run_id  INTEGER NOT NULL REFERENCES runs(id),
    device  TEXT NOT NULL,      -- "cuda:0", the run's name for it
    busy    REAL NOT NULL,      -- 0..1
    samples INTEGER NOT NULL,   -- readings averaged
    seconds REAL NOT NULL,      -- the span they cover
    PRIMARY KEY (run_id, device)
);
