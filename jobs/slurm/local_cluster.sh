#!/usr/bin/env bash
# local_cluster.sh: a throwaway one-node Slurm cluster on this machine, from
# Debian's packages (slurmctld, slurmd, munge), started as plain processes
# (no systemd), for tests and for trying jobs/slurm/submit.sh.
#
#   source jobs/slurm/local_cluster.sh
#   cluster_start DIR [CPUS]   # config, state, logs and sockets under DIR;
#                              # exports SLURM_CONF; returns non-zero with
#                              # CLUSTER_WHY set when Slurm cannot start
#   cluster_stop               # kills the daemons it started (by pid)
#
# Needs root (slurmd starts jobs as their user). The node is this host
# (hostname -s) with CPUS CPUs (default 2) and no GPUs; its two ports are
# chosen from the shell's pid, so clusters of concurrent tests do not meet.
cluster_start() {
    local dir=$1 cpus=${2:-2}
    CLUSTER_DIR=$dir CLUSTER_PIDS=() CLUSTER_WHY=
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
    local host; host=$(hostname -s)
    local port=$((20000 + ($$ % 15000) * 2))
    local m
    for m in munged slurmctld slurmd sbatch scontrol squeue; do
        command -v "$m" >/dev/null 2>&1 || [ -x "/usr/sbin/$m" ] ||
            { CLUSTER_WHY="$m is not installed (apt-get install slurmd slurmctld slurm-client munge)"; return 1; }
    done
    [ "$(id -u)" -eq 0 ] || { CLUSTER_WHY="not root (slurmd must start jobs as their user)"; return 1; }
    # munge: our own key and socket, so nothing on the host is touched
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    chmod 700 "$dir/munge"
    /usr/sbin/munged -f -F --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/seed" >"$dir/log/munged.out" 2>&1 &
    CLUSTER_PIDS+=($!)
    local i
    for i in $(seq 50); do [ -S "$dir/munge/munge.sock" ] && break; sleep 0.1; done
    [ -S "$dir/munge/munge.sock" ] || { CLUSTER_WHY="munged did not start: $(tail -n 3 "$dir/log/munged.out" "$dir/log/munged.log" 2>/dev/null | tr '\n' ' ')"; cluster_stop; return 1; }
    cat >"$dir/slurm.conf" <<CONF
ClusterName=sam2amgtest
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobRequeue=1
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MinJobAge=300
KillWait=10
InactiveLimit=0
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF=$dir/slurm.conf
    /usr/sbin/slurmctld -D -i -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
    CLUSTER_PIDS+=($!)
    /usr/sbin/slurmd -D -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 &
    CLUSTER_PIDS+=($!)
    for i in $(seq 100); do
        sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)' && return 0
        sleep 0.2
    done
    CLUSTER_WHY="the node did not come up: $(tail -n 3 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" "$dir/log/slurmctld.out" "$dir/log/slurmd.out" 2>/dev/null | tr '\n' ' ')"
    cluster_stop
    return 1
}

cluster_stop() {
    local p
    # jobs first: their slurmstepd would outlive slurmd
    if [ ${#CLUSTER_PIDS[@]} -ge 3 ]; then
        scancel --full --quiet $(squeue -h -o %A 2>/dev/null) 2>/dev/null
        for _ in $(seq 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
    fi
    for p in "${CLUSTER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${CLUSTER_PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    CLUSTER_PIDS=()
}
