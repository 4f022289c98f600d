#!/usr/bin/env bash
# run.sh: run every test program (build/tests/test_*) and script
# (tests/test_*.sh, tests/test_*.py), sum their "RESULT passed failed" lines
# and print "N passed, N failed" last. A program that crashes or exits
# non-zero without reporting a failure counts as one failure.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
passed=0 failed=0
log=$(mktemp -d)
run_one() {   # name, command...
    local name=$1; shift
    local out="$log/$(basename "$name").out"
    local t0=$(date +%s.%N)
    # a hung test fails after TEST_TIMEOUT seconds instead of stalling the
    # whole run (not under valgrind, where one program takes minutes)
    if [ "${VALGRIND:-0}" = 1 ]; then "$@" >"$out" 2>&1
    else timeout -k 10 "${TEST_TIMEOUT:-900}" "$@" >"$out" 2>&1; fi
    local rc=$?
    local res=$(grep -E '^RESULT [0-9]+ [0-9]+$' "$out" | tail -n 1)
    local p=0 f=0
    if [ -n "$res" ]; then set -- $res; p=$2; f=$3; fi
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    local dt=$(awk "BEGIN{print $(date +%s.%N) - $t0}")
    printf '%-28s %4d passed %3d failed  %6.1fs\n' "$name" "$p" "$f" "$dt"
    if [ "$f" -ne 0 ]; then grep -E '^not ok' "$out" | head -n 20 | sed 's/^/    /'
        [ $rc -ne 0 ] && { echo "    exit status $rc; last lines:"; tail -n 15 "$out" | sed 's/^/    | /'; }
    fi
}
vg=()
[ "${VALGRIND:-0}" = 1 ] && vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite)
[ "${VALGRIND:-0}" = 1 ] && [ -f tests/valgrind.supp ] && vg+=(--suppressions=tests/valgrind.supp)
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "${vg[@]}" "$t"
done
if [ "${VALGRIND:-0}" != 1 ]; then
    for t in tests/test_*.sh; do [ -f "$t" ] && run_one "$(basename "$t")" env BUILD="$BUILD" bash "$t"; done
    for t in tests/test_*.py; do [ -f "$t" ] && run_one "$(basename "$t")" env BUILD="$BUILD" python3 "$t"; done
fi
rm -rf "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
