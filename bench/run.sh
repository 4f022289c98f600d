#!/usr/bin/env bash
# run.sh: run every benchmark program build/bench/bench_* in turn (each
# checks its kernels before timing them), printing each one's output under
# a header; exits non-zero if any of them failed. Arguments are passed on
# to every program (e.g. `bash bench/run.sh cpu 2`).
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
rc=0
for b in "$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" "$@" || { echo "== $(basename "$b") FAILED (exit $?)"; rc=1; }
done
exit $rc
