#!/usr/bin/env bash
# test_cli_regress.sh: regressions of the command line and the job runner's
# edges: points_per_batch is no part of a run's parameter identity (merge
# and resume accept GPU-node and CPU-node shards of one run, and still
# refuse a parameter that changes records); --devices all counts
# CUDA_VISIBLE_DEVICES as the CUDA runtime does; usage messages name the
# accepted forms; run -v prints the BLAS line; out of memory in the
# runner's queues and claim items (a calloc stand-in) is exit 1 and a rerun
# completes, never an abort; a bad config file has one exit status in
# generate, dump and run.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=${BIN:-$PWD/$BUILD/sam2amg}   # BIN=... checks another build
T=$(mktemp -d /tmp/test_cli_regress.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, command...
    local name=$1; shift
    if "$@" >"$T/log" 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; sed 's/^/    /' "$T/log" | tail -5; fi
}
q() { python3 -c 'import sqlite3,sys; r=sqlite3.connect("file:"+sys.argv[1]+"?mode=ro", uri=True).execute(sys.argv[2]).fetchone(); print(r[0] if r else "")' "$1" "$2" 2>/dev/null; }
F=tests/fixtures/micro
mkdir -p "$T/img"
for i in 0 1 2 3 4 5; do cp "$F/image.png" "$T/img/im$i.png"; done
find "$T/img" -name '*.png' | sort >"$T/man.txt"
RUN=(--model test: --points-per-side 4 --pred-iou-thresh 0 --stability-score-thresh 0 --quiet)

# ---- 1. points_per_batch is no part of the parameter identity ----
for k in 0 1; do
    "$BIN" run "$T/s$k.db" --manifest "$T/man.txt" "${RUN[@]}" --shard $k/2 \
        --points-per-batch $((k ? 64 : 7)) >/dev/null 2>&1
done
"$BIN" merge "$T/m.db" "$T/s0.db" "$T/s1.db" >"$T/merge.out" 2>&1
rc=$?
check "merge of shards that differ only in points_per_batch (7, 64): exit 0 (got $rc)" test $rc -eq 0
check "  ... every image merged and done" test "$(q "$T/m.db" "select count(*) from images where status='done'")" = 6
"$BIN" run "$T/s2.db" --manifest "$T/man.txt" "${RUN[@]}" --shard 0/2 --points-per-batch 8 \
    --box-nms-thresh 0.5 >/dev/null 2>&1
"$BIN" merge "$T/m2.db" "$T/s2.db" "$T/s1.db" >"$T/merge.out" 2>&1
rc=$?
check "merge still refuses a shard of another box_nms_thresh: exit 1 (got $rc)" \
    bash -c "[ $rc -eq 1 ] && grep -q 'do not mix' '$T/merge.out'"
# resume: a shard resumed with another points_per_batch is one run, and merges
"$BIN" run "$T/r.db" --manifest "$T/man.txt" "${RUN[@]}" --shard 0/2 --points-per-batch 7 >/dev/null 2>&1
"$BIN" run "$T/r.db" --manifest "$T/man.txt" "${RUN[@]}" --points-per-batch 64 >"$T/r.out" 2>&1
rc=$?
check "resume with another --points-per-batch: exit 0 (got $rc)" test $rc -eq 0
check "  ... runs records both batches" test "$(q "$T/r.db" "select count(distinct params) from runs")" = 2
"$BIN" merge "$T/m3.db" "$T/r.db" "$T/s1.db" >"$T/merge.out" 2>&1
rc=$?
check "merge of a shard whose runs differ only in points_per_batch: exit 0 (got $rc)" test $rc -eq 0
"$BIN" run "$T/r.db" --manifest "$T/man.txt" "${RUN[@]}" --points-per-batch 64 --mask-threshold 0.5 \
    >"$T/r.out" 2>&1
rc=$?
check "resume with another mask_threshold: refused (got $rc)" \
    bash -c "[ $rc -ne 0 ] && grep -q 'do not mix' '$T/r.out'"

# ---- 2. --devices all reads CUDA_VISIBLE_DEVICES as the CUDA runtime does ----
# (no driver here: SAM2AMG_CUDA_DRIVER names a missing file, so the count
# is the list's; a list that makes GPUs visible then fails with exit 2)
cvd() {   # value, expected device list
    SAM2AMG_CUDA_DRIVER=$T/no-driver.so CUDA_VISIBLE_DEVICES=$1 "$BIN" run "$T/cvd.db" \
        --manifest "$T/man.txt" --model test: --points-per-side 2 --devices all >/dev/null 2>"$T/cvd.err"
    check "CUDA_VISIBLE_DEVICES='$1': --devices all: $2" \
        grep -qF -- "--devices all: $2 (CUDA_VISIBLE_DEVICES=$1)" "$T/cvd.err"
    rm -f "$T/cvd.db"*
}
cvd "0,,1" "cuda:0"
cvd "1,-1,2" "cuda:0"
cvd "2,3" "cuda:0,cuda:1"
cvd "0,abc,1" "cuda:0"
cvd "GPU-5c3a1e2b-0000-1111-2222-333344445555,MIG-GPU-5c3a1e2b/1/0" "cuda:0,cuda:1"
for v in abc "" -1 NoDevFiles ",0"; do cvd "$v" "cpu"; done
SAM2AMG_CUDA_DRIVER=$T/no-driver.so CUDA_VISIBLE_DEVICES=abc "$BIN" run "$T/cvd.db" \
    --manifest "$T/man.txt" --model test: --points-per-side 2 --devices all >/dev/null 2>"$T/cvd.err"
rc=$?
check "CUDA_VISIBLE_DEVICES=abc: the run goes on on the cpu, exit 0 (got $rc)" \
    bash -c "[ $rc -eq 0 ] && grep -q 'it lists no device' '$T/cvd.err'"

# ---- 3. --points-per-batch: the message names the accepted forms ----
for v in abc 0 4097 ""; do
    "$BIN" run "$T/ppb.db" --manifest "$T/man.txt" --model test: --points-per-batch "$v" >/dev/null 2>"$T/ppb.err"
    rc=$?
    check "run --points-per-batch '$v': exit 2, one line naming 1 to 4096 and auto (got $rc)" \
        bash -c "[ $rc -eq 2 ] && [ \$(wc -l <'$T/ppb.err') -eq 1 ] && grep -qF \"'$v' is not a number from 1 to 4096 or auto\" '$T/ppb.err'"
done
"$BIN" generate --points-per-batch >/dev/null 2>"$T/ppb.err"
rc=$?
check "generate --points-per-batch without a value: exit 2, names the forms (got $rc)" \
    bash -c "[ $rc -eq 2 ] && grep -qF 'needs a value: a number from 1 to 4096 or auto' '$T/ppb.err'"

# ---- 4. run -v prints the BLAS line once, as generate -v does ----
"$BIN" run "$T/v.db" --manifest "$T/man.txt" --model test: --points-per-side 2 --devices cpu,cpu -v \
    >/dev/null 2>"$T/v.err"
rc=$?
check "run -v: exit 0 and one 'sam2amg run: blas: ...' line (got $rc)" \
    bash -c "[ $rc -eq 0 ] && [ \$(grep -c '^sam2amg run: blas: .*SGEMM check' '$T/v.err') -eq 1 ]"
"$BIN" run "$T/v2.db" --manifest "$T/man.txt" --model test: --points-per-side 2 >/dev/null 2>"$T/v.err"
check "run without -v: no BLAS line" bash -c "! grep -q 'blas:' '$T/v.err'"

# ---- 6. out of memory in the runner's queues and items: an error, no abort ----
# a calloc stand-in (LD_PRELOAD) fails the K-th calloc(N, S); the queue
# item's S is the size whose count grows by 8 from --decode-threads 3 to 7
# (the claimer allocates 2 * threads + 2 items up front)
if ldd "$BIN" 2>/dev/null | grep -q 'libasan'; then
    # ASan must come first among the preloaded libraries and owns calloc
    pass=$((pass + 1)); echo "ok - out of memory in the runner # skip under ASan (no calloc stand-in)"
elif command -v "${CC:-cc}" >/dev/null; then
    cat >"$T/shim.c" <<'EOC'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static long hits;
void *calloc(size_t a, size_t b) {
    static void *(*real)(size_t, size_t);
    static size_t fn, fs; static long fk;
    static FILE *lg;
    if (!real) {
        static char arena[4096]; static int busy;   /* dlsym's own calloc */
        if (busy) return arena;
        busy = 1; *(void **)&real = dlsym(RTLD_NEXT, "calloc"); busy = 0;
        const char *e = getenv("SHIM_FAIL");   /* "N S K" */
        if (e) sscanf(e, "%zu %zu %ld", &fn, &fs, &fk);
        const char *l = getenv("SHIM_LOG");
        if (l) lg = fopen(l, "w");
    }
    if (lg && gettid() == getpid()) fprintf(lg, "%zu %zu\n", a, b);
    if (fk > 0 && a == fn && b == fs && __atomic_add_fetch(&hits, 1, __ATOMIC_SEQ_CST) == fk) return NULL;
    return real(a, b);
}
EOC
    ${CC:-cc} -shared -fPIC -o "$T/shim.so" "$T/shim.c" -ldl
    ORUN=(--manifest "$T/man.txt" --model test: --points-per-side 2 --quiet)
    "$BIN" run "$T/oref.db" "${ORUN[@]}" >/dev/null 2>&1
    ref=$(q "$T/oref.db" "select count(*) from masks")
    for d in 3 7; do
        SHIM_LOG=$T/log$d LD_PRELOAD=$T/shim.so "$BIN" run "$T/o$d.db" "${ORUN[@]}" --decode-threads $d >/dev/null 2>&1
        sort "$T/log$d" | uniq -c | awk '$2 == 1 {print $3, $1}' | sort >"$T/cnt$d"
    done
    isz=$(join "$T/cnt3" "$T/cnt7" | awk '$3 - $2 == 8 {print $1}' | head -n 1)
    check "the queue item's calloc found (size '$isz')" test -n "$isz"
    oom() {   # name, "N S", K...
        local name=$1 ns=$2 k bad=""; shift 2
        for k in "$@"; do
            rm -f "$T/oom.db"*
            SHIM_FAIL="$ns $k" LD_PRELOAD=$T/shim.so "$BIN" run "$T/oom.db" "${ORUN[@]}" --decode-threads 7 \
                >/dev/null 2>"$T/oom.err"
            local rc=$?
            # 0 (the failed calloc was not on the way), or 1 saying out of memory
            if ! { [ $rc -eq 0 ] || { [ $rc -eq 1 ] && grep -q 'out of memory' "$T/oom.err"; }; }; then
                bad="$bad K=$k:rc=$rc"; continue; fi
            "$BIN" run "$T/oom.db" --quiet >/dev/null 2>&1
            [ "$(q "$T/oom.db" "select count(*) || '/' || (select count(*) from masks) from images where status = 'done'")" = "6/$ref" ] ||
                bad="$bad K=$k:rerun"
        done
        check "$name: exit 0 or 1 naming out of memory, never an abort; a rerun completes the database$bad" test -z "$bad"
    }
    oom "write_q's ring out of memory" "256 8" 1
    [ -n "$isz" ] && oom "queue item $isz out of memory, every K" "1 $isz" $(seq 1 $(awk -v s="$isz" '$1 == s {print $2}' "$T/cnt7"))
else
    pass=$((pass + 1)); echo "ok - out of memory in the runner # skip no C compiler"
fi

# ---- 7. a bad config file: one exit status in generate, dump and run ----
/usr/bin/python3 - "$F/meta.json" "$T" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["model"]
d = sys.argv[2]
open(d + "/c-syntax.json", "w").write('{"model": ')
open(d + "/c-huge.json", "w").write(json.dumps({"model": m, "amg": {"pred_iou_thresh": 0.5}}).replace("0.5", "1e400"))
json.dump({"amg": {"pred_iou_thresh": 0.5}}, open(d + "/c-nomodel.json", "w"))
json.dump({"model": m, "amg": {"points_per_sid": 4}}, open(d + "/c-key.json", "w"))
json.dump({"model": m, "amg": [1]}, open(d + "/c-array.json", "w"))
PY
mkdir -p "$T/cdir"
cfg_exit() {   # config, expected exit status
    local c=$1 want=$2 cmd got=""
    for cmd in generate dump run; do
        case $cmd in
        generate) "$BIN" generate --model "$F/weights.safetensors" --config "$c" --threads 1 \
                      "$F/image.png" -o "$T/g.json" >/dev/null 2>"$T/c.err" ;;
        dump) "$BIN" dump --model "$F/weights.safetensors" --config "$c" --threads 1 \
                  "$F/image.png" -o "$T/d.safetensors" >/dev/null 2>"$T/c.err" ;;
        run) "$BIN" run "$T/c.db" --manifest "$T/man.txt" --model "$F/weights.safetensors" \
                 --config "$c" >/dev/null 2>"$T/c.err" ;;
        esac
        got="$got $cmd:$?:$(wc -l <"$T/c.err")"
    done
    check "--config $(basename "$c"): exit $want and one line in generate, dump and run (got$got)" \
        test "$got" = " generate:$want:1 dump:$want:1 run:$want:1"
    check "  ... run created no database" test ! -e "$T/c.db"
}
cfg_exit "$T/c-syntax.json" 1
cfg_exit "$T/c-huge.json" 1
cfg_exit "$T/c-nomodel.json" 1
cfg_exit "$T/none.json" 1
cfg_exit "$T/cdir" 1
cfg_exit "$T/c-key.json" 2
cfg_exit "$T/c-array.json" 2
cfg_exit "tinyy" 2

echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
