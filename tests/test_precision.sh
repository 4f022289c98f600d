#!/usr/bin/env bash
# test_precision.sh: --precision fp32|bf16 on dump, predict, generate and
# run, on a machine without a GPU: the cpu backend computes in fp32 only, so
# bf16 there is a one-line usage error naming the backend, an unknown value
# is one too, fp32 is accepted (and is what the cpu does anyway); run keeps
# the precision with its parameters (runs.params gains "precision": "bf16"
# only for bf16 runs, so older databases stay valid) and a resume keeps it:
# a database whose run was bf16 is refused on the cpu, and asking it for
# fp32 is a parameter change that does not mix. (The bf16 path itself is
# checked on a GPU: tests/test_ops.c, tests/test_cuda.c, tests/gpu/check.sh.)
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/sam2amg
T=$(mktemp -d /tmp/test_precision.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, then a command that must succeed
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; fi
}
# expect NAME STATUS PATTERN CMD...: CMD exits STATUS with one stderr line matching PATTERN
expect() {
    local name=$1 st=$2 pat=$3; shift 3
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -eq "$st" ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "$pat" "$T/err"; then
        pass=$((pass + 1)); echo "ok - $name"
    else
        fail=$((fail + 1)); echo "not ok - $name (exit $rc: $(head -c 300 "$T/err"))"
    fi
}
M=tests/fixtures/micro
IMG=$M/image.png
W=(--model $M/weights.safetensors --config micro)

for cmd in dump predict generate; do
    out=(-o "$T/$cmd.out")
    [ $cmd = predict ] && out=(-o "$T/p.png" --point 10,10)
    [ $cmd = generate ] && out=(-o "$T/g.json")
    expect "$cmd --precision bf16 on the cpu: usage error naming the backend" 2 \
        "sam2amg $cmd: --precision bf16: the cpu backend computes in fp32 only" \
        "$BIN" $cmd "${W[@]}" --precision bf16 "$IMG" "${out[@]}"
    expect "$cmd --precision fp16: usage error naming the value" 2 \
        "sam2amg $cmd: --precision: 'fp16' is not fp32 or bf16" \
        "$BIN" $cmd "${W[@]}" --precision fp16 "$IMG" "${out[@]}"
    expect "$cmd --precision without a value: usage error" 2 "precision" \
        "$BIN" $cmd "${W[@]}" "$IMG" "${out[@]}" --precision
    check "$cmd --help documents --precision" sh -c "'$BIN' $cmd --help | grep -q -- '--precision'"
done
check "dump --precision fp32 on the cpu runs" "$BIN" dump "${W[@]}" --precision fp32 "$IMG" \
    -o "$T/fp32.safetensors"
check "dump without --precision runs" "$BIN" dump "${W[@]}" "$IMG" -o "$T/default.safetensors"
check "the cpu's default is fp32: the same tensors" cmp "$T/fp32.safetensors" "$T/default.safetensors"

# run: the flag, the stored params, resume
printf '%s\n' "$PWD/tests/fixtures/micro/image.png" >"$T/manifest.txt"
AMG=(--points-per-side 4 --quiet)
expect "run --precision bf16 with a cpu device: usage error" 2 \
    "sam2amg run: --precision bf16: the cpu device computes in fp32 only" \
    "$BIN" run "$T/a.db" --manifest "$T/manifest.txt" --model test: "${AMG[@]}" --precision bf16
check "run --precision bf16 refused before creating the database" test ! -e "$T/a.db"
expect "run --precision half: usage error" 2 "'half' is not fp32 or bf16" \
    "$BIN" run "$T/a.db" --manifest "$T/manifest.txt" --model test: "${AMG[@]}" --precision half
check "run --precision fp32 on the cpu" "$BIN" run "$T/a.db" --manifest "$T/manifest.txt" \
    --model test: "${AMG[@]}" --precision fp32
params() { python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select params from runs order by rowid desc limit 1").fetchone()[0])' "$1"; }
check "an fp32 run's params say nothing of precision (as before the flag)" \
    sh -c "! echo '$(params "$T/a.db")' | grep -q precision"
check "resume without flags (fp32 kept)" "$BIN" run "$T/a.db" --quiet
# a database whose run was bf16 (made on a GPU): simulated by its params
python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
p = c.execute("select params from runs order by rowid desc limit 1").fetchone()[0]
c.execute("update runs set params = ?", (p[:-1] + ", \"precision\": \"bf16\"}",)); c.commit()' "$T/a.db"
check "bf16 params read back" sh -c "python3 -c 'import sqlite3; print(sqlite3.connect(\"$T/a.db\").execute(\"select params from runs\").fetchone()[0])' | grep -q '\"precision\": \"bf16\"}'"
expect "resume of a bf16 database on the cpu: refused (keeps its precision)" 2 \
    "this database's run computes in bf16" "$BIN" run "$T/a.db" --quiet
expect "resume of a bf16 database asking fp32: parameters do not mix" 1 "do not mix" \
    "$BIN" run "$T/a.db" --precision fp32 --quiet
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
