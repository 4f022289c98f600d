#!/usr/bin/env bash
# test_slurm.sh: jobs/slurm/ on a real one-node Slurm cluster (Debian's
# slurmctld, slurmd and munge, started as processes by
# jobs/slurm/local_cluster.sh). submit.sh runs a manifest as an array of 4
# tasks on the CPU backend (test model, node-local working copies with
# checkpoints every 2 images); one task is killed with SIGKILL mid-run and
# requeues itself, another gets SIGUSR1 (what --signal=B:USR1@120 sends
# before the time limit) and checkpoints, exits 75 and is requeued; then
# the merge job runs. The merged database must equal a single-process
# `run` of the same manifest: the same masks per image, nothing missing or
# duplicated, integrity_check ok. Prints "skip" and the reason only when
# Slurm cannot start here (not installed, not root).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/sam2amg
T=$(mktemp -d /tmp/test_slurm.XXXXXX)
pass=0 fail=0
check() {   # name, then a command that must succeed
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; fi
}
source jobs/slurm/local_cluster.sh
cleanup() { cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$T"; }
trap cleanup EXIT
if ! cluster_start "$T/cluster" 2; then
    echo "skip - Slurm cannot start here: $CLUSTER_WHY"
    echo "RESULT 0 0"
    exit 0
fi
echo "# cluster up: $(sinfo -h -N -o '%N %c CPUs %T')"

# ---- a manifest of 32 small images ----
mkdir -p "$T/img"
python3 - "$T/img" <<'PY'
import struct, sys, zlib
d = sys.argv[1]
def png(path, w, h, seed):
    rows = []
    for y in range(h):
        row = bytearray([0])
        for x in range(w):
            v = [(x * 7 + y * 3 + seed * 13) % 256, (x * y + seed) % 256, (255 - x * 5) % 256]
            if (x // 9 + y // 7 + seed) % 3 == 0: v = [40] * 3
            row += bytes(v)
        rows.append(bytes(row))
    def chunk(t, b): return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
for i in range(32): png(f"{d}/im{i:02d}.png", 40 + i * 3, 36 + (i * 5) % 30, i)
PY
find "$T/img" -name '*.png' | sort >"$T/manifest.txt"
RUN=(--model test: --points-per-side 8 --pred-iou-thresh 0 --stability-score-thresh 0)

# ---- the reference: one process ----
"$BIN" run "$T/ref.db" --manifest "$T/manifest.txt" "${RUN[@]}" --quiet
check "single-process run of the manifest" test $? -eq 0

# ---- the array ----
# every task: its working copy in $TMPDIR (as on NFS), checkpoints every
# 2 images, each image at least 0.4 s (so that a task is still running
# when it is killed)
export SAM2AMG_ASSUME_NETWORK_FS=test-nfs TMPDIR=$T/nodelocal SAM2AMG_TEST_PAUSE_IMAGE=0.4
mkdir -p "$TMPDIR"
ids=$(SAM2AMG=$BIN bash jobs/slurm/submit.sh --manifest "$T/manifest.txt" --tasks 4 \
      --out "$T/out" --gpus 0 --cpus 1 --time 00:10:00 -- "${RUN[@]}" --checkpoint-every 2)
check "submit.sh submits the array and the merge job" test -n "$ids"
array=$(echo "$ids" | awk '/^array/ {print $2}')
merge=$(echo "$ids" | awk '/^merge/ {print $2}')
echo "# array $array, merge $merge"
check "the merge job depends on the array (afterany)" \
    bash -c "scontrol show job $merge | grep -q 'Dependency=afterany:${array}'"

done_in() {   # checkpoint -> images done in it (0 when none yet)
    python3 -c 'import sqlite3,sys
try: print(sqlite3.connect("file:"+sys.argv[1]+"?mode=ro", uri=True).execute("select count(*) from images where status=\"done\"").fetchone()[0])
except Exception: print(0)' "$1"
}
wait_running() {   # task: until its sam2amg runs and its checkpoint has >= 2 done
    for _ in $(seq 300); do
        [ -f "$T/out/logs/pid-$1" ] && [ "$(done_in "$T/out/shard-$1.db")" -ge 2 ] && return 0
        sleep 0.1
    done
    return 1
}
# task 1: SIGKILL mid-run (a node crash, the OOM killer)
wait_running 1
check "task 1 is running and has checkpointed" test $? -eq 0
d1=$(done_in "$T/out/shard-1.db")
kill -9 "$(cat "$T/out/logs/pid-1")"
echo "# killed task 1 with SIGKILL at checkpoint with $d1 images done"
# task 2: SIGUSR1 to the batch shell, as --signal=B:USR1 does
wait_running 2
check "task 2 is running and has checkpointed" test $? -eq 0
scancel --batch --signal=USR1 "${array}_2"
echo "# sent SIGUSR1 to task 2"

# ---- wait for everything (array, requeues, merge) ----
# Slurm holds a requeued job for about 2 minutes (its EligibleTime); the
# test, as the administrator, lets it start at once
requeued=0
for _ in $(seq 600); do
    [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
    for j in $(squeue -h -t PD -o '%i %r' 2>/dev/null | awk '$2 == "BeginTime" {print $1}'); do
        scontrol update JobId="$j" StartTime=now && requeued=$((requeued + 1))
    done
    sleep 0.2
done
echo "# released $requeued requeued tasks from their begin time"
check "the array and the merge job finished" test -z "$(squeue -h -o %A)"
cat "$T"/out/logs/task-*_1.out | sed 's/^/#   task 1: /'
cat "$T"/out/logs/task-*_2.out | sed 's/^/#   task 2: /'
cat "$T"/out/logs/merge-*.out | sed 's/^/#   merge: /'
check "task 1 saw the SIGKILL and requeued itself" grep -q 'killed by signal 9; requeueing' "$T"/out/logs/task-*_1.out
check "task 1 ran again (restart 1) and finished" \
    bash -c "grep -q 'restart 1' $T/out/logs/task-*_1.out && grep -q 'exited 0' $T/out/logs/task-*_1.out"
check "task 2 exited 75 on SIGUSR1 and requeued itself" \
    bash -c "grep -q 'exited 75' $T/out/logs/task-*_2.out && grep -q 'requeueing' $T/out/logs/task-*_2.out"
check "the requeued tasks resumed from their checkpoints" \
    bash -c "[ \$(cat $T/out/logs/task-*_1.out $T/out/logs/task-*_2.out | grep -c 'from the last checkpoint') -eq 2 ]"
check "task 2 ran again and finished" \
    bash -c "grep -q 'restart 1' $T/out/logs/task-*_2.out && grep -q 'exited 0' $T/out/logs/task-*_2.out"
check "run took its shard from the Slurm array variables and said so" \
    grep -q 'shard 3/4 from SLURM_ARRAY_TASK_ID=3, SLURM_ARRAY_TASK_COUNT=4' "$T"/out/logs/task-*_3.out
check "the merge job wrote merged.db" test -f "$T/out/merged.db"
check "status works on a checkpoint" "$BIN" status "$T/out/shard-1.db"

# ---- merged = single process ----
cmp_out=$(python3 - "$T/ref.db" "$T/out/merged.db" <<'PY'
import sqlite3, sys
cols = ("i.path, m.idx, m.rle, m.area, m.bbox_x, m.bbox_y, m.bbox_w, m.bbox_h, m.predicted_iou, "
        "m.stability_score, m.point_x, m.point_y, m.crop_x, m.crop_y, m.crop_w, m.crop_h")
def load(p):
    c = sqlite3.connect(p)
    masks = c.execute(f"select {cols} from masks m join images i on i.id = m.image_id").fetchall()
    imgs = c.execute("select path, status, width, height from images").fetchall()
    return c, masks, imgs
a, ma, ia = load(sys.argv[1])
b, mb, ib = load(sys.argv[2])
print("masks", len(ma), len(mb), "distinct", len(set(mb)))
print("same_masks", sorted(ma) == sorted(mb))
print("same_images", sorted(ia) == sorted(ib), len(ia), len(ib))
print("all_done", all(r[1] == "done" for r in ib))
print("integrity", b.execute("pragma integrity_check").fetchone()[0])
print("fk", len(b.execute("pragma foreign_key_check").fetchall()))
print("shards", b.execute("select count(*) from merged_shards where n = 4").fetchone()[0])
print("runs_with_shard", b.execute("select count(distinct shard) from runs where source_run is not null").fetchone()[0])
print("restarted_runs", b.execute("select count(*) from runs where shard in ('1/4', '2/4')").fetchone()[0])
PY
)
echo "$cmp_out" | sed 's/^/# /'
check "merged masks = single-process masks, per image" grep -q '^same_masks True' <<<"$cmp_out"
check "same images, all done, none missing or duplicated" \
    bash -c "grep -q '^same_images True 32 32' <<<'$cmp_out' && grep -q '^all_done True' <<<'$cmp_out'"
check "no mask duplicated" bash -c "awk '/^masks/ {exit !(\$2 == \$3 && \$3 == \$5 && \$2 > 0)}' <<<'$cmp_out'"
check "integrity_check ok, no foreign key error" \
    bash -c "grep -q '^integrity ok' <<<'$cmp_out' && grep -q '^fk 0' <<<'$cmp_out'"
check "4 shards merged, runs provenance kept (each shard's runs, the requeued ones twice)" \
    bash -c "grep -q '^shards 4' <<<'$cmp_out' && grep -q '^runs_with_shard 4' <<<'$cmp_out' && awk '/^restarted_runs/ {exit !(\$2 >= 4)}' <<<'$cmp_out'"

echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
