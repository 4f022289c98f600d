#!/usr/bin/env bash
# test_bench_args.sh: argument checks of the benchmark programs that guard
# their output files. bench_decoder --save writes the multimask and the
# mask-input (m2m) outputs as one reference for a later --check; with
# --multimask-only the m2m part is never computed, so the pair is refused
# (exit 2, no file) instead of saving uninitialised memory as a reference.
. "$(dirname "$0")/tap_start.sh"

bd=$BUILD/bench/bench_decoder
if [ -x "$bd" ]; then
    timeout 120 "$bd" --multimask-only --save "$tmp/ref.bin" --iters 1 --batch 1 --threads 1 \
        >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 2 ] && [ ! -e "$tmp/ref.bin" ] && grep -q -- '--multimask-only' "$tmp/err"; then
        ok "bench_decoder --multimask-only --save: refused"
    else
        notok "bench_decoder --multimask-only --save: refused" \
              "exit $rc, file $([ -e "$tmp/ref.bin" ] && echo written || echo absent): $(tail -n 1 "$tmp/err")"
    fi
else
    echo "# skip: $bd not built"
fi

# official_bench.py --images-only writes the images of --save-images DIR
# and stops; without the folder it is a usage error before anything runs
# (it printed "# images written to None" and exited 2)
ob=tests/gpu/official_bench.py
timeout 60 python3 "$ob" --cpu --images-only >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 2 ] && grep -q -- '--save-images DIR' "$tmp/err" && ! grep -q 'written to' "$tmp/out"; then
    ok "official_bench.py --images-only without --save-images: usage error"
else
    notok "official_bench.py --images-only without --save-images: usage error" \
          "exit $rc: $(cat "$tmp/out" "$tmp/err" | tail -n 2)"
fi
for v in 64 64x 0x48 ,; do   # a bad --sizes: a usage error naming it, no traceback
    timeout 60 python3 "$ob" --cpu --images-only --save-images "$tmp/img" --sizes "$v" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 2 ] && grep -q -- "--sizes '$v'" "$tmp/err" && ! grep -q Traceback "$tmp/err"; then
        ok "official_bench.py --sizes $v: usage error"
    else
        notok "official_bench.py --sizes $v: usage error" "exit $rc: $(tail -n 1 "$tmp/err")"
    fi
done
# --precisions other than bf16/fp32 ran float32 under the given name (fp16
# rows were fp32 timings); a --thresholds name other than zero/default was
# a KeyError per run: both are usage errors naming the flag
for a in "--precisions fp16" "--precisions bf16,tf32" "--thresholds bogus" "--thresholds ,"; do
    # shellcheck disable=SC2086
    timeout 60 python3 "$ob" --cpu --images-only --save-images "$tmp/img" $a >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 2 ] && grep -q -- "${a% *} '" "$tmp/err"; then ok "official_bench.py $a: usage error"
    else notok "official_bench.py $a: usage error" "exit $rc: $(tail -n 1 "$tmp/err")"; fi
done

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
