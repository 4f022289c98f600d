#!/usr/bin/env bash
# task.sh: one task of the sam2amg job array (submitted by submit.sh; not
# run by hand). Runs `sam2amg run` on shard $SLURM_ARRAY_TASK_ID of
# $SLURM_ARRAY_TASK_COUNT into OUT/shard-K.db (run takes the shard from
# those variables), with the database's working copy on node-local disk
# when OUT is on a network filesystem (run's default: $SLURM_TMPDIR or
# $TMPDIR) and checkpoints to OUT/shard-K.db.
#
# Requeue: sbatch --signal=B:USR1@120 sends SIGUSR1 to this shell 120 s
# before the time limit; it is passed on to sam2amg, which stops claiming,
# releases the images in flight, writes a last checkpoint and exits 75.
# Exit 75 after SIGUSR1, or a death by a signal (kill -9, the OOM killer:
# the checkpoint on disk is intact), makes this task requeue itself
# (scontrol requeue), at most $SAM2AMG_MAX_REQUEUES (default 5) times; the
# requeued task resumes from the checkpoint. SIGTERM is passed on too
# (sam2amg checkpoints and exits 75) but requeues nothing here: Slurm sends
# it to a job it preempts (and requeues itself) and to one that scancel
# cancels (which must stay cancelled). Exit 75 without a signal (the
# images' storage went away mid-run) requeues too. Exit 0 (all done) or 3 (some images
# failed, see `sam2amg status`) ends the task.
#
# usage (from submit.sh): task.sh OUT MANIFEST [run options...]
set -u
out=$1 manifest=$2
shift 2
sam2amg=${SAM2AMG:-sam2amg}
k=${SLURM_ARRAY_TASK_ID:?not inside a Slurm job array}
db=$out/shard-$k.db
mkdir -p "$out/logs"
echo "task.sh: job ${SLURM_JOB_ID:-?} shard $k restart ${SLURM_RESTART_COUNT:-0} on $(hostname -s)"
"$sam2amg" run "$db" --manifest "$manifest" "$@" &
pid=$!
echo "$pid" >"$out/logs/pid-$k"
forwarded=0 got=
trap 'forwarded=1 got=USR1; kill -USR1 "$pid" 2>/dev/null' USR1
trap 'forwarded=1 got=TERM; kill -TERM "$pid" 2>/dev/null' TERM
while :; do
    wait "$pid"
    rc=$?
    # a trapped signal interrupts wait; the child's status comes later
    if [ "$forwarded" = 1 ]; then forwarded=0; kill -0 "$pid" 2>/dev/null && continue; wait "$pid"; rc=$?; fi
    break
done
rm -f "$out/logs/pid-$k"
echo "task.sh: sam2amg run exited $rc"
requeue() {
    if [ "${SLURM_RESTART_COUNT:-0}" -ge "${SAM2AMG_MAX_REQUEUES:-5}" ]; then
        echo "task.sh: $1; requeued ${SLURM_RESTART_COUNT:-0} times already: giving up"
        exit 1
    fi
    echo "task.sh: $1; requeueing"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
}
case $rc in
0 | 3) exit "$rc" ;;
75) [ "$got" = TERM ] && { echo "task.sh: stopped by SIGTERM (checkpoint written); not requeued here"; exit 0; }
    [ "$got" = USR1 ] && requeue "stopped before the time limit (checkpoint written)"
    requeue "the images' storage went away (nothing failed for it; checkpoint written)" ;;
*) [ "$rc" -gt 128 ] && [ "$got" != TERM ] && requeue "killed by signal $((rc - 128))"; exit "$rc" ;;
esac
