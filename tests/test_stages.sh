#!/usr/bin/env bash
# test_stages.sh: each image's generator stages (schema/005_stages.sql) as
# `run` stores them and `status` reports them.
#   - a run with 2 workers fills t_encode, t_decode, t_post, t_write and
#     worker for every done image: each >= 0, worker 0 or 1, and encoder +
#     decoder + post-processing <= t_generate (they are parts of it, timed
#     inside it; 1 ms of slack for the clock reads);
#   - the same with the out-of-memory halving (the stages add up the tries);
#   - status prints the mean stages and one "model busy" line per worker
#     (cpu or cuda alike: "GPU busy" is the driver's measurement,
#     test_gpumon.sh), and the busy share agrees with the columns;
#   - a version-4 database (made from schema 001..004 with a finished run):
#     status reads it before any migration (no stage columns) and after
#     (NULL stages), saying the stages were not recorded, exit 0.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/sam2amg
T=$(mktemp -d /tmp/test_stages.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, command...
    local name=$1; shift
    if "$@" >"$T/log" 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; sed 's/^/    /' "$T/log" | tail -5; fi
}
q() { "$BIN" sql "$1" "$2" 2>&1; }
mkdir -p "$T/img"
cp tests/fixtures/photos/*.* "$T/img/" && rm -f "$T/img/README.md"
cp tests/fixtures/micro/image.png "$T/img/micro.png"
n_img=$(ls "$T/img" | wc -l)

stage_checks() {   # label, db, workers
    local label=$1 db=$2 w=$3
    check "$label: every image done" test "$(q "$db" "select count(*) from images where status = 'done'")" = "$n_img"
    check "$label: every done image has its stages and worker" \
        test "$(q "$db" "select count(*) from images where status = 'done' and t_encode is not null and t_decode is not null and t_post is not null and t_write is not null and worker is not null")" = "$n_img"
    check "$label: each stage >= 0, worker in 0..$((w - 1))" \
        test "$(q "$db" "select count(*) from images where t_encode < 0 or t_decode < 0 or t_post < 0 or t_write < 0 or worker < 0 or worker >= $w")" = 0
    check "$label: encoder + decoder + post <= t_generate + 1 ms" \
        test "$(q "$db" "select count(*) from images where t_encode + t_decode + t_post > t_generate + 0.001")" = 0
    check "$label: the decoder and post-processing took time (> 0 on every image)" \
        test "$(q "$db" "select count(*) from images where t_decode <= 0 or t_post <= 0")" = 0
}

"$BIN" run "$T/a.db" --manifest "$T/img" --model test: --points-per-side 12 --devices cpu,cpu --quiet -v 2>"$T/a.err"
check "test model, 2 cpu workers: exit 0" test $? -eq 0
stage_checks "test model" "$T/a.db" 2
check "both workers are recorded" test "$(q "$T/a.db" "select count(distinct worker) from images")" = 2
check "-v: each image's line has the writer wait and the stages" \
    grep -qE 'worker [01] \(cpu\): .*hubble.jpg: load [0-9.]+ s, preprocess [0-9.]+ s, wait [0-9.]+ s, write wait [0-9.]+ s, encode [0-9.]+ s, decode [0-9.]+ s, post [0-9.]+ s$' "$T/a.err"
"$BIN" status "$T/a.db" >"$T/st.txt" 2>&1
check "status: exit 0" test $? -eq 0
check "status: the mean model stages per image" \
    grep -qE '^model stages per image: encoder [0-9.]+ s, decoder [0-9.]+ s, post-processing [0-9.]+ s; waiting on the writer [0-9.]+ s$' "$T/st.txt"
check "status: a model busy line per cpu worker, nothing about a GPU" bash -c "
    grep -qE '^worker 0 \(cpu\): model busy [0-9]+%, [0-9]+ images$' '$T/st.txt' &&
    grep -qE '^worker 1 \(cpu\): model busy [0-9]+%, [0-9]+ images$' '$T/st.txt' && ! grep -q 'GPU' '$T/st.txt'"
# worker 0's share recomputed from the columns and the run's seconds
want=$(q "$T/a.db" "select min(100, cast(round(100.0 * (select sum(t_encode + t_decode + t_post) from images where worker = 0) / seconds) as int)) from run_summary")
n0=$(q "$T/a.db" "select count(*) from images where worker = 0")
check "status: worker 0's busy share = its stages over the run's wall time ($want%, $n0 images)" \
    grep -qE "^worker 0 \(cpu\): model busy $want%, $n0 images?$" "$T/st.txt"

# a cuda worker's share is "model busy" too (host work inside the
# generator counts): "GPU busy" is only the driver's measurement (run_gpus,
# tests/test_gpumon.sh). The devices of a copy rewritten, since this
# machine may have no GPU.
cp "$T/a.db" "$T/gpu.db"
"$BIN" sql "$T/gpu.db" --write "update runs set devices = 'cuda:0,cpu'" >/dev/null 2>&1
"$BIN" status "$T/gpu.db" >"$T/stg.txt" 2>&1
check "status: worker 0 on cuda:0 and worker 1 on cpu are \"model busy\", no \"GPU busy\" without a measurement" bash -c "
    grep -qE '^worker 0 \(cuda:0\): model busy [0-9]+%, [0-9]+ images$' '$T/stg.txt' &&
    grep -qE '^worker 1 \(cpu\): model busy [0-9]+%, [0-9]+ images$' '$T/stg.txt' && ! grep -q 'GPU busy' '$T/stg.txt'"

# the stages of an image that was retried with half the batch
SAM2AMG_FAULT_BATCH_MAX=16 "$BIN" run "$T/oom.db" --manifest "$T/img" --model tests/fixtures/micro/weights.safetensors \
    --config micro --points-per-side 8 --points-per-batch 64 --threads 1 --quiet
check "micro, batches over 16 out of memory: exit 0" test $? -eq 0
stage_checks "micro with halving" "$T/oom.db" 1

# ---- a version-4 database: no stage columns, then NULL ones ----
/usr/bin/python3 - "$T/v4.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA legacy_alter_table = ON")
for f in ["001_init", "002_nullable_scores", "003_model_name", "004_shards"]:
    db.executescript(open("schema/%s.sql" % f).read())
db.executescript("""
INSERT INTO runs(id, params, model_path, model_sha256, config, program_version, devices,
                 started_at, finished_at, exit_status)
    VALUES (1, '{}', 'test:', '00', 'test', '0.1', 'cpu', 10.0, 14.0, 0);
INSERT INTO images(path, status, run_id, width, height, added_at, finished_at, t_load, t_generate)
    VALUES ('/d/a.png', 'done', 1, 4, 3, 1.0, 12.0, 0.25, 1.5),
           ('/d/b.png', 'done', 1, 4, 3, 1.0, 14.0, 0.25, 0.5);
PRAGMA legacy_alter_table = OFF;
PRAGMA user_version = 4;
""")
db.commit()
PY
uv() { /usr/bin/python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("pragma user_version").fetchone()[0])' "$1"; }
check "a version-4 database made from schema 001..004" test "$(uv "$T/v4.db")" = 4
"$BIN" status "$T/v4.db" >"$T/st4.txt" 2>&1   # read-only: no migration
check "status on an unmigrated version-4 database: exit 0, the old stage line, stages not recorded" bash -c "[ $? -eq 0 ] &&
    grep -qE '^stages per image: load 0.250 s \(decode pool\), generate 1.000 s \(worker\); 1 worker \(cpu\) busy 50%$' '$T/st4.txt' &&
    grep -q '^model stages per image: not recorded' '$T/st4.txt' && ! grep -q '^worker ' '$T/st4.txt'"
check "... and left it at version 4" test "$(uv "$T/v4.db")" = 4
"$BIN" sql "$T/v4.db" --write "select 1" >/dev/null 2>&1   # a write connection migrates
v=$(uv "$T/v4.db")
check "the version-4 database migrated to the program's schema ($v >= 5), old rows' stages NULL" bash -c "[ $v -ge 5 ] &&
    [ \"\$('$BIN' sql '$T/v4.db' 'select count(*) from images where t_encode is null and worker is null')\" = 2 ]"
"$BIN" status "$T/v4.db" >"$T/st5.txt" 2>&1
check "status after the migration, old rows NULL: exit 0, the same report" bash -c "[ $? -eq 0 ] && cmp '$T/st4.txt' '$T/st5.txt'"

echo "RESULT $pass $fail"
[ $fail -eq 0 ]
