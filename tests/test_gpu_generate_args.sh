#!/usr/bin/env bash
# test_gpu_generate_args.sh: the arguments of gpu_generate's benchmark mode
# (--random CONFIG --time N ..., tests/gpu/check.sh step ours), on the CPU
# with micro (fast): a bad value is a usage error (exit 2, one line) that
# names what is wrong, and up to 16 images are taken wherever --random
# stands.
. "$(dirname "$0")/tap_start.sh"
g=$BUILD/gpu/gpu_generate
if [ ! -x "$g" ]; then
    echo "# skip: $g not built"; echo "RESULT 0 0"; exit 0
fi
img=$tmp/i.ppm
"$g" --decode tests/fixtures/micro/image.png "$img" >/dev/null 2>&1
base=(--random micro --device cpu --points-per-side 2)
usage() {   # name, expected text, args...: exit 2, one line on stderr with the text
    local name=$1 want=$2; shift 2
    timeout 60 "$g" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF -- "$want" "$tmp/err"; then ok "$name"
    else notok "$name" "exit $rc: $(head -c 300 "$tmp/err")"; fi
}
usage "--time 0 is out of range, named" "--time '0': N in [1, 64]" "${base[@]}" --time 0 "$img"
usage "--time abc is no number, named" "--time 'abc': N in [1, 64]" "${base[@]}" --time abc "$img"
usage "--time 65 is out of range" "N in [1, 64]" "${base[@]}" --time 65 "$img"
usage "--points-per-batch auto is refused as auto (not 'points_per_batch 0')" \
    "--time needs --points-per-batch N" "${base[@]}" --time 1 --points-per-batch auto "$img"
usage "--seed x is no number" "--seed 'x'" "${base[@]}" --time 1 --seed x "$img"
imgs=()
for i in $(seq 17); do imgs+=("$img"); done
usage "17 images: at most 16 (not 'one IMAGE.ppm only')" "at most 16 IMAGE.ppm" "${base[@]}" --time 1 \
    "${imgs[@]}"
usage "17 images without --random: one only" "one IMAGE.ppm only" "${imgs[@]}" -o "$tmp/x.json" \
    --model tests/fixtures/micro/weights.safetensors
# --random times random weights: a checkpoint, config or output given
# with it was ignored without a word (the row timed other weights)
usage "--random with --model: refused, not ignored" "--model is not taken" "${base[@]}" --time 1 \
    --model tests/fixtures/micro/weights.safetensors "$img"
usage "--random with --config: refused" "--config is not taken" "${base[@]}" --time 1 --config micro2 "$img"
usage "--random with -o: refused" "-o is not taken" "${base[@]}" --time 1 -o "$tmp/x.json" "$img"
usage "--time without --random" "need --random" "$img" --time 2 -o "$tmp/x.json" \
    --model tests/fixtures/micro/weights.safetensors
# images before --random count as well: two rows
timeout 120 "$g" "$img" "$img" "${base[@]}" --time 1 >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c ': PASS ' "$tmp/out")" -eq 2 ]; then ok "images before --random: one row each"
else notok "images before --random: one row each" "exit $rc: $(cat "$tmp/out" "$tmp/err" | head -c 300)"; fi
# two images of one size: rows of their own names (both were ours_WxH_default)
if [ "$(cut -d: -f1 "$tmp/out" | sort -u | wc -l)" -eq 2 ] &&
    grep -q '^ours_[0-9]*x[0-9]*_2_default: PASS' "$tmp/out"; then
    ok "two images of one size: distinct row names"
else notok "two images of one size: distinct row names" "$(cut -d: -f1 "$tmp/out" | tr '\n' ' ')"; fi
# --help: every command of ours has one; the usage on stdout, exit 0
timeout 60 "$g" --help >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 0 ] && [ ! -s "$tmp/err" ] && grep -q '^usage: gpu_generate' "$tmp/out" &&
    grep -q -- '--random NAME' "$tmp/out" && grep -q -- '--both-thresholds' "$tmp/out" &&
    grep -q -- '--points-per-side' "$tmp/out"; then ok "--help: usage on stdout, exit 0"
else notok "--help: usage on stdout, exit 0" "exit $rc: $(head -c 300 "$tmp/err")"; fi
# prompts= counts every crop's grid: with --points-per-side 4, crop layers
# 2 and a downscale factor 2, 1 crop of 4x4, 4 crops of 2x2 and 16 crops of
# 1x1 points: 16 + 16 + 16 = 48 (it said 16, the first layer's alone); with
# factor 1, 16 + 4 * 16 = 80 for one layer
prompts() {   # name, expected prompts=, AMG args...
    local name=$1 want=$2; shift 2
    timeout 120 "$g" "${base[@]}" --time 1 "$@" "$img" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq 0 ] && grep -q ": PASS .* prompts=$want " "$tmp/out"; then ok "$name"
    else notok "$name" "exit $rc: $(cat "$tmp/out" "$tmp/err" | head -c 300)"; fi
}
prompts "prompts= without crops: the grid" 4
prompts "prompts= with 2 crop layers, downscale 2: every crop's points" 48 --points-per-side 4 \
    --crop-n-layers 2 --crop-n-points-downscale-factor 2
prompts "prompts= with 1 crop layer, downscale 1" 80 --points-per-side 4 --crop-n-layers 1
echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
