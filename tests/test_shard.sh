#!/usr/bin/env bash
# test_shard.sh: `run --shard`, --local-dir checkpoints, SIGUSR1/SIGTERM,
# and `merge`, without Slurm (test_slurm.sh runs them under Slurm): shards
# partition a manifest stably; the task's shard comes from Slurm's or
# Kubernetes' variables; a checkpoint is a consistent rollback-journal
# copy; kill -9 during a checkpoint or a merge never leaves a half-written
# file in place of a good one, and rerunning gives the same result; merge
# is idempotent, replaces an older checkpoint by a newer one, refuses
# another model, parameter set or split, and reports missing shards.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/sam2amg
T=$(mktemp -d /tmp/test_shard.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, then a command that must succeed
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; fi
}
py() { python3 - "$@"; }
q() { python3 -c 'import sqlite3,sys; r=sqlite3.connect("file:"+sys.argv[1]+"?mode=ro", uri=True).execute(sys.argv[2]).fetchone(); print(r[0] if r else "")' "$1" "$2" 2>/dev/null; }

mkdir -p "$T/img"
py "$T/img" <<'PY'
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
for i in range(24): png(f"{d}/im{i:02d}.png", 40 + i * 3, 36 + (i * 5) % 30, i)
PY
find "$T/img" -name '*.png' | sort >"$T/man.txt"
sort -r "$T/man.txt" >"$T/man_rev.txt"
RUN=(--model test: --points-per-side 8 --pred-iou-thresh 0 --stability-score-thresh 0)
"$BIN" run "$T/ref.db" --manifest "$T/man.txt" "${RUN[@]}" --quiet
check "reference: one process over the manifest" test "$(q "$T/ref.db" "select count(*) from images where status='done'")" = 24

# ---- shards partition the manifest, stably ----
for k in 0 1 2 3; do
    "$BIN" run "$T/a$k.db" --manifest "$T/man.txt" "${RUN[@]}" --shard $k/4 --quiet 2>/dev/null
    "$BIN" run "$T/b$k.db" --manifest "$T/man_rev.txt" "${RUN[@]}" --shard $k/4 --quiet 2>/dev/null
done
part=$(py "$T" <<'PY'
import sqlite3, sys
T = sys.argv[1]
def paths(p): return set(r[0] for r in sqlite3.connect(p).execute("select path from images"))
a = [paths(f"{T}/a{k}.db") for k in range(4)]
b = [paths(f"{T}/b{k}.db") for k in range(4)]
ref = paths(f"{T}/ref.db")
union = set().union(*a)
print("cover", union == ref, "disjoint", sum(len(s) for s in a) == len(ref),
      "stable", a == b, "nonempty", all(len(s) > 0 for s in a))
PY
)
echo "# $part"
check "4 shards cover every image exactly once" grep -q "cover True disjoint True" <<<"$part"
check "the same shards from the manifest in reverse order" grep -q "stable True nonempty True" <<<"$part"
"$BIN" run "$T/a1.db" --manifest "$T/man_rev.txt" "${RUN[@]}" --quiet 2>"$T/reingest.err"
check "a shard database keeps its shard: re-ingest adds nothing" \
    bash -c "grep -q 'shard 1/4 (the database' $T/reingest.err && [ $(q "$T/a1.db" "select count(*) from images") = $(q "$T/b1.db" "select count(*) from images") ]"

# ---- the shard from the environment ----
SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=4 "$BIN" run "$T/e2.db" --manifest "$T/man.txt" "${RUN[@]}" --quiet 2>"$T/e.err"
check "Slurm array variables give the shard, and run says so" \
    bash -c "grep -q 'shard 2/4 from SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_COUNT=4' $T/e.err && cmp <(sqlite3 $T/e2.db 'select path from images order by path') <(sqlite3 $T/a2.db 'select path from images order by path')"
SLURM_ARRAY_TASK_ID=7 SLURM_ARRAY_TASK_COUNT=4 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_STEP=2 \
    "$BIN" run "$T/e3.db" --manifest "$T/man.txt" "${RUN[@]}" --quiet 2>"$T/e.err"
check "--array=1-7:2: task id 7 is shard 3/4" grep -q 'shard 3/4 from SLURM_ARRAY_TASK_ID=7' "$T/e.err"
JOB_COMPLETION_INDEX=1 "$BIN" run "$T/k1.db" --manifest "$T/man.txt" "${RUN[@]}" --shard-count 4 --quiet 2>"$T/e.err"
check "Kubernetes JOB_COMPLETION_INDEX with --shard-count" \
    bash -c "grep -q 'shard 1/4 from JOB_COMPLETION_INDEX=1' $T/e.err && [ $(q "$T/k1.db" "select count(*) from images") = $(q "$T/a1.db" "select count(*) from images") ]"
SLURM_ARRAY_TASK_ID=4 SLURM_ARRAY_TASK_COUNT=4 "$BIN" run "$T/bad.db" --manifest "$T/man.txt" "${RUN[@]}" --quiet 2>/dev/null
check "a task id outside the array is a usage error" test $? -eq 2
"$BIN" run "$T/bad.db" --manifest "$T/man.txt" "${RUN[@]}" --shard 4/4 --quiet 2>/dev/null
check "--shard 4/4 is a usage error" test $? -eq 2
bad_ck=0
for c in 0 5x 10,0s ,5s 5, 5,5 5s,7s 1,2,3 " 5" +5; do
    "$BIN" run "$T/bad.db" --manifest "$T/man.txt" "${RUN[@]}" --shard 0/4 --checkpoint-every "$c" \
        --quiet 2>/dev/null
    [ $? -eq 2 ] || { bad_ck=1; echo "# --checkpoint-every '$c' was accepted"; }
done
check "--checkpoint-every: an empty, signed, zero or repeated part is a usage error" test $bad_ck = 0
"$BIN" run "$T/bad.db" --manifest "$T/man.txt" "${RUN[@]}" --shard 0/4 --local-dir "$T/no-such-dir" \
    --quiet 2>"$T/e.err"
check "--local-dir that does not exist: a usage error naming it" \
    bash -c "[ $? -eq 2 ] && grep -q 'no-such-dir: not an existing directory' $T/e.err"
"$BIN" run "$T/a1.db" "${RUN[@]}" --shard 2/4 --quiet 2>/dev/null
check "a shard database refuses another shard" test $? -eq 1

# ---- --devices all: the GPUs of CUDA_VISIBLE_DEVICES ----
CUDA_VISIBLE_DEVICES=2,3 "$BIN" run "$T/dev.db" --manifest "$T/man.txt" "${RUN[@]}" --devices all 2>"$T/dev.err" >/dev/null
check "--devices all with CUDA_VISIBLE_DEVICES=2,3: workers cuda:0,cuda:1" \
    grep -q 'devices all: cuda:0,cuda:1 (CUDA_VISIBLE_DEVICES=2,3)' "$T/dev.err"
env -u CUDA_VISIBLE_DEVICES "$BIN" run "$T/dev2.db" --manifest "$T/man.txt" "${RUN[@]}" --devices all 2>"$T/dev.err" >/dev/null
check "--devices all without CUDA_VISIBLE_DEVICES: cpu, and the run works" \
    bash -c "[ $? -eq 0 ] && grep -q 'devices all: cpu (CUDA_VISIBLE_DEVICES=unset)' $T/dev.err"

# ---- local working copy, checkpoints, SIGUSR1 / SIGTERM ----
export TMPDIR=$T/local
mkdir -p "$TMPDIR" "$T/nfs"
for sig in USR1 TERM; do
    SAM2AMG_ASSUME_NETWORK_FS=test-nfs SAM2AMG_TEST_PAUSE_IMAGE=0.3 "$BIN" run "$T/nfs/s$sig.db" \
        --manifest "$T/man.txt" "${RUN[@]}" --shard 0/1 --checkpoint-every 2 --decode-threads 1 \
        2>"$T/s$sig.err" &
    pid=$!
    for _ in $(seq 100); do [ "$(q "$T/nfs/s$sig.db" "select count(*) from images where status='done'")" -ge 2 ] 2>/dev/null && break; sleep 0.1; done
    kill -$sig $pid
    wait $pid
    rc=$?
    check "SIG$sig: exit 75 (requeue) after a checkpoint" \
        bash -c "[ $rc -eq 75 ] && grep -q 'checkpoint' $T/s$sig.err"
    left=$(q "$T/nfs/s$sig.db" "select count(*) from images where status != 'done'")
    check "SIG$sig: the checkpoint holds what finished, the rest is left (running -> released)" \
        bash -c "[ $left -gt 0 ] && [ $(q "$T/nfs/s$sig.db" "select count(*) from images where status='running'") = 0 ]"
done
# Slurm signals every process of the batch step and task.sh forwards the
# signal: a second SIGTERM must not kill the run before its last checkpoint
SAM2AMG_ASSUME_NETWORK_FS=test-nfs SAM2AMG_TEST_PAUSE_IMAGE=0.3 "$BIN" run "$T/nfs/sTT.db" \
    --manifest "$T/man.txt" "${RUN[@]}" --shard 0/1 --checkpoint-every 2 --decode-threads 1 \
    2>"$T/sTT.err" &
pid=$!
for _ in $(seq 100); do [ "$(q "$T/nfs/sTT.db" "select count(*) from images where status='done'")" -ge 2 ] 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid; sleep 0.1; kill -TERM $pid
wait $pid
rc=$?
check "two SIGTERMs: exit 75 with the last checkpoint written (got $rc)" \
    bash -c "[ $rc -eq 75 ] && [ $(q "$T/nfs/sTT.db" "select count(*) from images where status='running'") = 0 ] && tail -1 $T/sTT.err | grep -q 'checkpoint'"
# a checkpoint path that cannot be looked at (here ELOOP; on NFS ESTALE or
# EIO) is an error, not a fresh start whose last checkpoint replaces it
ln -s loop.db "$T/nfs/loop.db"
SAM2AMG_ASSUME_NETWORK_FS=test-nfs "$BIN" run "$T/nfs/loop.db" --manifest "$T/man.txt" \
    "${RUN[@]}" --shard 0/1 --quiet 2>"$T/loop.err"
rc=$?
check "an unreadable checkpoint path: exit 1, nothing written over it (got $rc)" \
    bash -c "[ $rc -eq 1 ] && [ -L $T/nfs/loop.db ] && grep -q 'cannot read the checkpoint' $T/loop.err"
check "the checkpoint is a rollback-journal database (readers need no -shm), integrity ok" \
    bash -c "[ \"\$(od -An -tu1 -j18 -N2 $T/nfs/sUSR1.db | tr -s ' ')\" = ' 1 1' ] && [ $(q "$T/nfs/sUSR1.db" "pragma integrity_check") = ok ] && [ ! -e $T/nfs/sUSR1.db-wal ]"
check "status works on a checkpoint" bash -c "$BIN status $T/nfs/sUSR1.db | grep -q 'done'"
seq1=$(q "$T/nfs/sUSR1.db" "select checkpoint_seq from shard")
sha1=$(sha256sum <"$T/nfs/sUSR1.db")
# kill -9 inside a checkpoint: the copy is written, not yet renamed
SAM2AMG_ASSUME_NETWORK_FS=test-nfs SAM2AMG_TEST_PAUSE_CHECKPOINT=30 "$BIN" run "$T/nfs/sUSR1.db" \
    --checkpoint-every 2 --quiet 2>/dev/null &
pid=$!
for _ in $(seq 200); do [ -e "$T/nfs/sUSR1.db.checkpoint-tmp" ] && break; sleep 0.05; done
sleep 0.3
kill -9 $pid; wait $pid 2>/dev/null
check "kill -9 during a checkpoint: the temporary copy was there" test -e "$T/nfs/sUSR1.db.checkpoint-tmp"
check "kill -9 during a checkpoint: the database path holds the old checkpoint, byte for byte" \
    test "$(sha256sum <"$T/nfs/sUSR1.db")" = "$sha1"
SAM2AMG_ASSUME_NETWORK_FS=test-nfs "$BIN" run "$T/nfs/sUSR1.db" --quiet 2>/dev/null
check "rerun after kill -9: exit 0, from checkpoint $seq1 on" test $? -eq 0
"$BIN" run "$T/nfs/sTERM.db" --local-dir "$T/local" --quiet 2>/dev/null
check "resume of the SIGTERM shard with --local-dir: exit 0, working copy removed" \
    bash -c "[ $? -eq 0 ] && ! ls $T/local/*.db >/dev/null 2>&1"

same_as_ref() {   # db -> "same N" when its masks per image equal ref.db's
    py "$T/ref.db" "$1" <<'PY'
import sqlite3, sys
cols = ("i.path, m.idx, m.rle, m.area, m.bbox_x, m.bbox_y, m.bbox_w, m.bbox_h, m.predicted_iou, "
        "m.stability_score, m.point_x, m.point_y, m.crop_x, m.crop_y, m.crop_w, m.crop_h")
def load(p):
    c = sqlite3.connect(p)
    return (sorted(c.execute(f"select {cols} from masks m join images i on i.id = m.image_id")),
            sorted(c.execute("select path, status, width, height from images")), c)
a, ia, _ = load(sys.argv[1]); b, ib, c = load(sys.argv[2])
ok = a == b and ia == ib and c.execute("pragma integrity_check").fetchone()[0] == "ok" \
     and not c.execute("pragma foreign_key_check").fetchall()
print("same" if ok else "differ", len(a), len(b), len(ia), len(ib))
PY
}
check "SIGUSR1 + kill -9 in a checkpoint + resume = one uninterrupted run" \
    grep -q '^same' <<<"$(same_as_ref "$T/nfs/sUSR1.db")"

# ---- merge ----
"$BIN" merge "$T/m.db" "$T"/a{0,1,2,3}.db >"$T/m1.out" 2>&1
check "merge of 4 shards: exit 0, equals the single-process run" \
    bash -c "[ $? -eq 0 ] && grep -q '^same' <<<'$(same_as_ref "$T/m.db")'"
m1=$(q "$T/m.db" "select count(*) || '/' || (select count(*) from masks) || '/' || (select count(*) from mask_boxes) from images")
check "merge keeps each run's model name (runs.model_name as --model gave it)" \
    test "$(q "$T/m.db" "select count(*) >= 4 and count(*) = sum(model_name = 'test:') from runs where source_run is not null")" = 1
# each image's stage times and worker come along (schema 5 shards)
stages_of() {   # db...: "path t_encode t_decode t_post t_write worker" of done images, sorted
    python3 - "$@" <<'PY'
import sqlite3, sys
rows = []
for f in sys.argv[1:]:
    db = sqlite3.connect("file:" + f + "?mode=ro", uri=True)
    rows += db.execute("select path, t_encode, t_decode, t_post, t_write, worker from images "
                       "where status = 'done'").fetchall()
for r in sorted(rows): print(*r)
PY
}
stages_of "$T"/a{0,1,2,3}.db >"$T/stg_shards"
stages_of "$T/m.db" >"$T/stg_merged"
check "merge copies each done image's stage times and worker, equal to its shard's ($(wc -l <"$T/stg_shards") images)" \
    bash -c "[ -s '$T/stg_shards' ] && ! grep -q ' None' '$T/stg_shards' && cmp -s '$T/stg_shards' '$T/stg_merged'"
"$BIN" merge "$T/m.db" "$T"/a{0,1,2,3}.db "$T"/a2.db >"$T/m2.out" 2>&1
check "merging again adds nothing (4 + 1 'already merged')" \
    bash -c "[ $(grep -c 'already merged' $T/m2.out) = 5 ] && [ $(q "$T/m.db" "select count(*) || '/' || (select count(*) from masks) || '/' || (select count(*) from mask_boxes) from images") = $m1 ]"
check "runs provenance: each shard's runs, with their shard and source id" \
    test "$(q "$T/m.db" "select count(*) from runs where shard is not null and source_run is not null")" -ge 4
"$BIN" merge "$T/r.db" "$T/a1.db" "$T/nfs/sUSR1.db" >"$T/r.out" 2>&1
check "merge of shard 0/1 after 1/4: refused (another split), exit 1" \
    bash -c "[ $? -eq 1 ] && grep -q 'one split per database' $T/r.out"
rm -f "$T/r.db"*
# a newer state of a shard replaces what an older one added
SAM2AMG_TEST_PAUSE_IMAGE=0.3 "$BIN" run "$T/p0.db" --manifest "$T/man.txt" "${RUN[@]}" --shard 0/4 \
    --decode-threads 1 --quiet 2>/dev/null &
pid=$!
for _ in $(seq 100); do [ "$(q "$T/p0.db" "select count(*) from images where status='done'")" -ge 1 ] 2>/dev/null && break; sleep 0.1; done
kill -USR1 $pid; wait $pid
"$BIN" merge "$T/r.db" "$T/p0.db" "$T"/a{1,2,3}.db >/dev/null 2>&1
check "merge with a partial shard: exit 3 (images not done in any shard)" test $? -eq 3
"$BIN" run "$T/p0.db" --quiet 2>/dev/null
"$BIN" merge "$T/r.db" "$T/p0.db" >"$T/r.out" 2>&1
check "a newer state of a shard replaces what the older one added (no duplicate), = reference" \
    bash -c "grep -q 'shard 0/4 replaced' $T/r.out && grep -q '^same' <<<'$(same_as_ref "$T/r.db")'"
"$BIN" run "$T/other.db" --manifest "$T/man.txt" --model test: --points-per-side 4 --shard 0/4 --quiet 2>/dev/null
"$BIN" merge "$T/m.db" "$T/other.db" >"$T/o.out" 2>&1
check "a shard of another parameter set is refused, exit 1" \
    bash -c "[ $? -eq 1 ] && grep -q 'do not mix' $T/o.out && [ $(q "$T/m.db" "select count(*) || '/' || (select count(*) from masks) || '/' || (select count(*) from mask_boxes) from images") = $m1 ]"
"$BIN" merge "$T/m.db" "$T/ref.db" >"$T/o.out" 2>&1
check "a database made without --shard is refused" grep -q 'not a shard database' "$T/o.out"
"$BIN" merge "$T/miss.db" "$T"/a{0,1,2}.db >"$T/o.out" 2>&1
check "a missing shard is reported, exit 3" bash -c "[ $? -eq 3 ] && grep -q 'missing shard: 3/4' $T/o.out"
# OUT being one of the shards (merge a0.db a1.db): refused, the shard unchanged
cp "$T/a0.db" "$T/a0copy.db"
a0=$(q "$T/a0copy.db" "select count(*) || '/' || (select count(*) from masks) || '/' || (select count(*) from runs) from images")
"$BIN" merge "$T/a0copy.db" "$T/a1.db" >"$T/o.out" 2>&1
check "merging into a shard database is refused, exit 1, the shard unchanged" \
    bash -c "[ $? -eq 1 ] && grep -q 'is shard 0/4' $T/o.out && [ $(q "$T/a0copy.db" "select count(*) || '/' || (select count(*) from masks) || '/' || (select count(*) from runs) from images") = $a0 ]"
# kill -9 inside a merge: each shard is one transaction
SAM2AMG_TEST_PAUSE_MERGE=2 "$BIN" merge "$T/k.db" "$T"/a{0,1,2,3}.db >"$T/k.out" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q 'merged' "$T/k.out" && break; sleep 0.05; done
sleep 0.3
kill -9 $pid; wait $pid 2>/dev/null
kd=$(q "$T/k.db" "select (select count(*) from merged_shards) || '/' || (select count(*) from images) || '/' || (select coalesce(sum(images), 0) from merged_shards) || '/' || (select integrity_check from pragma_integrity_check)")
echo "# after kill -9 in the second shard's transaction: merged shards/images/their images/integrity = $kd"
check "kill -9 during a merge: OUT holds whole shards only (1 shard, its images), integrity ok" \
    bash -c "IFS=/ read a b c d <<<'$kd'; [ \$a = 1 ] && [ \$b = \$c ] && [ \$d = ok ]"
"$BIN" merge "$T/k.db" "$T"/a{0,1,2,3}.db >/dev/null 2>&1
check "rerun after kill -9: exit 0, = reference" \
    bash -c "[ $? -eq 0 ] && grep -q '^same' <<<'$(same_as_ref "$T/k.db")'"

echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
