#!/usr/bin/env bash
# bench_e2e.sh: end to end, side by side in one run: the official
# SAM2AutomaticMaskGenerator (PyTorch, Debian's torch) and `sam2amg
# generate` on the same seeded random weights of the real `tiny` shapes and
# the same 1024x768 image: 16x16 grid, points_per_batch 64,
# pred_iou_thresh 0, stability_score_thresh 0, other parameters at their
# defaults, 2 threads each. The official code gets the best OpenBLAS core
# for this CPU (the one sam2amg's start-up chooses, passed as
# OPENBLAS_CORETYPE); sam2amg runs with no environment variable set.
# sam2amg's time is its whole process (load, encode, decode, write JSON);
# the official time is its generate() call alone. Prints both, the ratio
# and both peak RSS; also the CPU seconds (user + system) of each and their
# ratio, which a loaded machine disturbs less than the wall time. Skipped (exit 0, with a note) without torch or the
# official source. Environment: SAM2_SRC (default /work/sam2-src),
# SAM2_ORACLE (default /work/shared/tools/sam2_oracle.py), E2E_CONFIG
# (tiny), E2E_PPS (16), E2E_THREADS (2).
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
bin=$BUILD/sam2amg
PY=/usr/bin/python3
SRC=${SAM2_SRC:-/work/sam2-src}
ORACLE=${SAM2_ORACLE:-/work/shared/tools/sam2_oracle.py}
CFG=${E2E_CONFIG:-tiny} PPS=${E2E_PPS:-16} TH=${E2E_THREADS:-2}
if ! "$PY" -c 'import torch, torchvision' 2>/dev/null; then
    echo "bench_e2e: skipped (no torch for $PY: apt-get install python3-torch python3-torchvision)"
    exit 0
fi
if [ ! -d "$SRC/sam2" ] || [ ! -f "$ORACLE" ]; then
    echo "bench_e2e: skipped (no official source in SAM2_SRC=$SRC or no $ORACLE)"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
blas=$(env -u OPENBLAS_CORETYPE "$bin" --version | sed -n 2p)
core=$(sed -n 's/.* core \([A-Za-z0-9]*\).*/\1/p' <<<"$blas")
echo "sam2amg $blas"
echo "official: OPENBLAS_CORETYPE=$core, torch threads $TH"
ofl=$(env OPENBLAS_CORETYPE="$core" OMP_NUM_THREADS="$TH" "$PY" bench/bench_e2e_official.py \
      "$ORACLE" "$SRC" "$tmp" --config "$CFG" --pps "$PPS" --threads "$TH" 2>"$tmp/oerr") || {
    echo "bench_e2e: the official run failed:"; tail -n 5 "$tmp/oerr"; exit 1; }
echo "$ofl"
ot=$(sed -n 's/^official generate \([0-9.]*\) s.*/\1/p' <<<"$ofl")
oc=$(sed -n 's/^official generate [0-9.]* s, cpu \([0-9.]*\) s.*/\1/p' <<<"$ofl")
# sam2amg with a clean environment (no OPENBLAS_*, no SAM2AMG_*)
env -i PATH="$PATH" HOME="${HOME:-/}" /usr/bin/time -f "%e %M %U %S" -o "$tmp/time" \
    "$bin" generate --model "$tmp/weights.safetensors" --config "$CFG" "$tmp/image.png" \
    -o "$tmp/out.json" --points-per-side "$PPS" --points-per-batch 64 --pred-iou-thresh 0 \
    --stability-score-thresh 0 --threads "$TH" -v 2>"$tmp/serr" || {
    echo "bench_e2e: sam2amg generate failed:"; tail -n 5 "$tmp/serr"; exit 1; }
sed 's/^/sam2amg -v: /' "$tmp/serr"
read -r st srss su ss <"$tmp/time"
sc=$(awk "BEGIN{print $su + $ss}")
n=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["annotations"]))' "$tmp/out.json")
printf 'sam2amg generate %.2f s, cpu %.2f s (whole process), %s masks, peak RSS %.0f MB\n' \
    "$st" "$sc" "$n" "$(awk "BEGIN{print $srss * 1.024 / 1000}")"
awk -v s="$st" -v o="$ot" -v sc="$sc" -v oc="$oc" -v c="$CFG" -v p="$PPS" -v t="$TH" 'BEGIN{
    printf "e2e %s %dx%d grid, %d threads: wall sam2amg %.2f s / official %.2f s = %.3fx; " \
           "cpu %.2f s / %.2f s = %.3fx\n", c, p, p, t, s, o, s / o, sc, oc, sc / oc }'
