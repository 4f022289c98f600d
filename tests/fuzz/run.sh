#!/usr/bin/env bash
# run.sh: `make fuzz`: run every libFuzzer target of build-fuzz/fuzz/ for
# FUZZ_SECONDS each (default 60), one after the other. Each target starts
# from its fixture seeds (tests/fuzz/seeds.sh), tests/fuzz/corpus/TARGET/
# and what earlier runs found (build-fuzz/corpus/TARGET/, which grows).
# A crash or leak input lands in build-fuzz/crashes/TARGET-*: minimize it
# (TARGET -minimize_crash=1 FILE), fix, and commit it to
# tests/fuzz/corpus/TARGET/ so `make test` replays it. Logs in
# build-fuzz/logs/. Prints one line per target: executions, coverage
# (edges), corpus size, seconds, and a verdict. FUZZ_TARGETS="a b" runs some.
set -u
cd "$(dirname "$0")/../.."
. tests/fuzz/seeds.sh
S=${FUZZ_SECONDS:-60}
B=build-fuzz
mkdir -p $B/corpus $B/crashes $B/logs $B/seeds
targets=${FUZZ_TARGETS:-$(ls $B/fuzz/)}
bad=0
for t in $targets; do
    mkdir -p $B/corpus/$t $B/seeds/$t
    for f in $(fuzz_seeds $t); do cp -f "$f" $B/seeds/$t/; done
    dirs=($B/corpus/$t $B/seeds/$t)
    [ -d tests/fuzz/corpus/$t ] && dirs+=(tests/fuzz/corpus/$t)
    t0=$(date +%s)
    # rss limit 2 GiB: a decoder that tries to allocate more is a finding
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1 \
        $B/fuzz/$t -max_total_time=$S -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix=$B/crashes/$t- "${dirs[@]}" >$B/logs/$t.log 2>&1
    rc=$?
    dt=$(( $(date +%s) - t0 ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' $B/logs/$t.log | grep -o '[0-9]*$')
    cov=$(grep -E '^#[0-9]+' $B/logs/$t.log | tail -n 1 | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')
    ft=$(grep -E '^#[0-9]+' $B/logs/$t.log | tail -n 1 | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')
    n=$(ls $B/corpus/$t | wc -l)
    verdict=ok; [ $rc -ne 0 ] && { verdict="FAILED (rc $rc, see $B/logs/$t.log)"; bad=1; }
    printf '%-20s %9s execs  cov %5s  ft %6s  corpus %5d  %4ds  %s\n' "$t" "${execs:-?}" \
        "${cov:-?}" "${ft:-?}" "$n" "$dt" "$verdict"
done
exit $bad
