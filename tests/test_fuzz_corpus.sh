#!/usr/bin/env bash
# test_fuzz_corpus.sh: replay every fuzz target's inputs once without the
# fuzzer: build/fuzz-replay/TARGET (the target linked with the normal cc
# and tests/fuzz/replay.c) over tests/fuzz/corpus/TARGET/ (seeds and every
# crash found so far) and the fixture seeds of tests/fuzz/seeds.sh. A
# crash, an abort from a target's property check or a sanitizer report
# (under `make sanitize`) fails the target; the last "replay FILE" line of
# its output names the input.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
. tests/fuzz/seeds.sh
pass=0 fail=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for src in tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    bin=$BUILD/fuzz-replay/$t
    if [ ! -x "$bin" ]; then
        fail=$((fail + 1)); echo "not ok - $t: $bin not built"; continue
    fi
    inputs=($(fuzz_seeds "$t" replay))
    [ -d tests/fuzz/corpus/$t ] && inputs+=(tests/fuzz/corpus/$t)
    if [ ${#inputs[@]} -eq 0 ]; then
        fail=$((fail + 1)); echo "not ok - $t: no inputs to replay"; continue
    fi
    TMPDIR=${TMPDIR:-/tmp} "$bin" "${inputs[@]}" >"$out" 2>&1
    rc=$?
    n=$(grep -o '^replayed [0-9]*' "$out" | grep -o '[0-9]*$')
    if [ $rc -eq 0 ] && [ "${n:-0}" -gt 0 ]; then
        pass=$((pass + 1)); echo "ok - $t: $n inputs replayed"
    else
        fail=$((fail + 1))
        echo "not ok - $t: exit $rc after $(grep -c '^replay ' "$out") inputs; last: $(grep '^replay ' "$out" | tail -n 1)"
        grep -v '^replay ' "$out" | tail -n 20 | sed 's/^/#   /'
    fi
done
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
