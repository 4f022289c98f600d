#!/usr/bin/env bash
# run.sh: run every test program (build/tests/test_*) and script
# (tests/test_*.sh, tests/test_*.py), sum their "RESULT passed failed" lines
# and print "N passed, N failed" last. A program that crashes or exits
# non-zero without reporting a failure counts as one failure.
#
# TEST_JOBS tests run at once (default: the CPU count; 1 runs them one after
# the other), the long ones first, so that the run takes about as long as
# its longest test rather than the sum (most tests use one core). Each test
# has its own temporary folder and port (tests/serve_util.py: port 0), so
# none depends on another; a test's line is printed when it ends, with its
# failures under it.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
jobs=${TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
case $jobs in '' | *[!0-9]*) jobs=0 ;; *) jobs=$((10#$jobs)) ;; esac   # (00, 08: decimal)
[ "$jobs" -ge 1 ] || { echo "run.sh: TEST_JOBS='${TEST_JOBS:-}' (expected a count >= 1)" >&2; exit 2; }
# wait -n -p (below) is bash 5.1's
if [ "${BASH_VERSINFO[0]}" -lt 5 ] || { [ "${BASH_VERSINFO[0]}" -eq 5 ] && [ "${BASH_VERSINFO[1]}" -lt 1 ]; }; then
    echo "run.sh: needs bash >= 5.1 (this is $BASH_VERSION)" >&2; exit 2
fi
log=$(mktemp -d) || exit 2
trap 'rm -rf "$log"' EXIT
run_one() {   # name, command...: the report in $log/NAME.rep, "passed failed" in $log/NAME.res
    local name=$1; shift
    local out="$log/$name.out" cpid= stopped=
    # run.sh stopped (Ctrl-C, TERM, HUP: stop below signals this job): the
    # test too, before run.sh removes $log. timeout puts the test in a
    # process group of its own (Ctrl-C does not reach it) and passes the
    # signal on to that group, SIGKILL 10 s later. This job ignores the
    # terminal's INT and HUP (it would die of them and leave its test
    # running): run.sh's TERM stops it
    trap '' INT HUP
    trap 'stopped=1; [ -n "$cpid" ] && kill -TERM "$cpid" 2>/dev/null' TERM
    local t0=$(date +%s.%N)
    # a hung test fails after TEST_TIMEOUT seconds instead of stalling the
    # whole run (not under valgrind, where one program takes minutes)
    if [ "${VALGRIND:-0}" = 1 ]; then "$@" >"$out" 2>&1 &
    else
        # test_emu.sh (a build, then ~8 min of one core on a 2-core Zen 3)
        # gets twice the limit: it now shares the CPU with the other tests
        local limit=${TEST_TIMEOUT:-900}
        case $name:$limit in test_emu.sh:*[!0-9]*) ;; test_emu.sh:?*) limit=$((10#$limit * 2)) ;; esac   # (15m: as given)
        timeout -k 10 "$limit" "$@" >"$out" 2>&1 &
    fi
    cpid=$!
    wait "$cpid"
    local rc=$?
    # (a wait the trap interrupted returned with the test still there)
    if [ -n "$stopped" ]; then wait "$cpid"; rc=$?; fi
    local res=$(grep -E '^RESULT [0-9]+ [0-9]+$' "$out" | tail -n 1)
    local p=0 f=0
    if [ -n "$res" ]; then set -- $res; p=$2; f=$3; fi
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    local dt=$(awk "BEGIN{print $(date +%s.%N) - $t0}")
    {
        printf '%-28s %4d passed %3d failed  %6.1fs\n' "$name" "$p" "$f" "$dt"
        if [ "$f" -ne 0 ]; then grep -E '^not ok' "$out" | head -n 20 | sed 's/^/    /'
            [ $rc -ne 0 ] && { echo "    exit status $rc; last lines:"; tail -n 15 "$out" | sed 's/^/    | /'; }
        fi
    } >"$log/$name.rep"
    echo "$p $f" >"$log/$name.res"
}
vg=()
[ "${VALGRIND:-0}" = 1 ] && vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite)
[ "${VALGRIND:-0}" = 1 ] && [ -f tests/valgrind.supp ] && vg+=(--suppressions=tests/valgrind.supp)
# the tests as "name<TAB>kind", the longest (minutes on a 2-core machine) first
list=()
for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && list+=("$(basename "$t")	prog"); done
if [ "${VALGRIND:-0}" != 1 ]; then
    for t in tests/test_*.sh tests/test_*.py; do [ -f "$t" ] && list+=("$(basename "$t")	script"); done
fi
long=" test_emu.sh test_gpu_check.sh test_property.py test_gpumon.sh test_jobs.sh test_shard.sh "
ordered=()
for e in "${list[@]}"; do case $long in *" ${e%%	*} "*) ordered+=("$e") ;; esac; done
for e in "${list[@]}"; do case $long in *" ${e%%	*} "*) ;; *) ordered+=("$e") ;; esac; done
start() {   # "name<TAB>kind"
    local name=${1%%	*} kind=${1##*	}
    if [ "$kind" = prog ]; then run_one "$name" "${vg[@]}" "$BUILD/tests/$name"
    else case $name in
        *.sh) run_one "$name" env BUILD="$BUILD" bash "tests/$name" ;;
        *.py) run_one "$name" env BUILD="$BUILD" python3 "tests/$name" ;;
    esac; fi
}
declare -A name_of=()
running=0
finish_one() {   # wait for any test to end; print its report
    local pid
    wait -n -p pid
    [ -n "${pid:-}" ] && [ -n "${name_of[$pid]:-}" ] || { echo "run.sh: lost track of the running tests" >&2; exit 2; }
    running=$((running - 1))
    cat "$log/${name_of[$pid]}.rep" 2>/dev/null || echo "${name_of[$pid]}: no report (its job died)"
    unset "name_of[$pid]"
}
# interrupted: the running tests are stopped (each job passes a TERM on to
# its test) and waited for, then the EXIT trap removes $log; no sum line
stop() {   # exit status
    trap '' INT TERM HUP
    local p
    for p in "${!name_of[@]}"; do kill -TERM "$p" 2>/dev/null; done
    wait
    echo "run.sh: interrupted, $running tests stopped" >&2
    exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM
trap 'stop 129' HUP
for e in "${ordered[@]}"; do
    while [ "$running" -ge "$jobs" ]; do finish_one; done
    start "$e" &
    name_of[$!]=${e%%	*}
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do finish_one; done
passed=0 failed=0
for e in "${ordered[@]}"; do
    name=${e%%	*}
    p=0 f=1   # no result (the job died, or a torn one): a failure
    if [ -f "$log/$name.res" ]; then
        read -r p f <"$log/$name.res"
        case "${p:-x}${f:-x}" in *[!0-9]*) p=0 f=1 ;; esac
    fi
    passed=$((passed + p)); failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
