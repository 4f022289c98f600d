#!/usr/bin/env bash
# run.sh: run every benchmark program build/bench/bench_* in turn (each
# checks its kernels before timing them), printing each one's output under
# a header; exits non-zero if any of them failed. Arguments are passed on
# to every program (e.g. `bash bench/run.sh cpu 2`). Then bench_e2e.sh:
# `generate` side by side with the official code.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
rc=0
"$BUILD"/sam2amg --version | sed -n 2p   # the BLAS core the programs run on
for b in "$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" "$@" || { echo "== $(basename "$b") FAILED (exit $?)"; rc=1; }
done
# end to end against the official code (skipped, with a note, without torch)
echo "== bench_e2e"
BUILD=$BUILD bash bench/bench_e2e.sh || { echo "== bench_e2e FAILED"; rc=1; }
exit $rc
