#!/usr/bin/env bash
# test_blas.sh: the start-up BLAS kernel choice end to end. A generic core
# is forced (OPENBLAS_CORETYPE=Prescott, with the test switch that lets the
# automatic choice replace it): the program must re-run itself on the core
# this CPU's /proc/cpuinfo flags call for and pass the SGEMM check; a
# user's own OPENBLAS_CORETYPE and SAM2AMG_BLAS_AUTO=0 are honoured; a core
# that fails the check falls back to Prescott with a warning, and no core
# left is a one-line error; `dump` on the micro fixture matches the
# official tensors under both the generic and the chosen core.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
bin=$BUILD/sam2amg
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
notok() { echo "not ok - $1: $2"; failed=$((failed + 1)); }
unset OPENBLAS_CORETYPE SAM2AMG_BLAS_AUTO SAM2AMG_BLAS_REEXEC SAM2AMG_BLAS_TEST_OVERRIDE \
      SAM2AMG_BLAS_TEST_FAIL

# the core the flags call for (as blas_core_for_cpu decides from cpuid)
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { for f in "$@"; do [[ $flags == *" $f "* ]] || return 1; done; }
want=""
if has avx512f avx512bw avx512vl avx512dq avx512cd avx2 fma; then
    if has avx512_bf16; then want=Cooperlake; else want=SkylakeX; fi
elif has avx2 fma; then want=Haswell; fi
echo "# flags call for: ${want:-no AVX2 core}"

line() { "$@" "$bin" --version 2>"$tmp/err" | sed -n 2p; }

l=$(line env)
echo "# default: $l"
[[ $l == "blas: OpenBLAS "*", SGEMM check ok"* ]] && ok "default start-up: core named, check ok" ||
    notok "default start-up" "$l"

l=$(line env SAM2AMG_BLAS_TEST_OVERRIDE=1 OPENBLAS_CORETYPE=Prescott)
echo "# forced generic: $l"
if [ -n "$want" ]; then
    [[ $l == *" core $want (auto: was Prescott), SGEMM check ok"* ]] &&
        ok "generic core replaced by $want after one re-run, check ok" ||
        notok "generic core replaced by $want" "$l"
else
    [[ $l == *" core Prescott"* ]] && ok "no AVX2: generic core kept" || notok "no AVX2" "$l"
fi

l=$(line env OPENBLAS_CORETYPE=Prescott)
[[ $l == *" core Prescott (OPENBLAS_CORETYPE=Prescott), SGEMM check ok"* ]] &&
    ok "a user's OPENBLAS_CORETYPE is honoured" || notok "user's OPENBLAS_CORETYPE" "$l"

l=$(line env SAM2AMG_BLAS_AUTO=0 SAM2AMG_BLAS_TEST_OVERRIDE=1 OPENBLAS_CORETYPE=Prescott)
[[ $l == *" core Prescott, SGEMM check ok"* ]] && ok "SAM2AMG_BLAS_AUTO=0 turns the choice off" ||
    notok "SAM2AMG_BLAS_AUTO=0" "$l"

# the re-run does not loop (a timeout would catch that) and the command runs
env SAM2AMG_BLAS_TEST_OVERRIDE=1 OPENBLAS_CORETYPE=Prescott timeout 20 "$bin" dump --help \
    >"$tmp/out" 2>&1 && grep -q '^usage: sam2amg dump' "$tmp/out" &&
    ok "a command runs normally after the re-run" || notok "command after re-run" "$(head -3 "$tmp/out")"

if [ -n "$want" ]; then
    l=$(line env SAM2AMG_BLAS_TEST_FAIL=$want SAM2AMG_BLAS_TEST_OVERRIDE=1 OPENBLAS_CORETYPE=Prescott)
    [[ $l == *" core Prescott (fallback: $want failed the SGEMM check), SGEMM check ok"* ]] &&
        [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "fails the SGEMM check" "$tmp/err" &&
        ok "a core failing the check falls back to Prescott with one warning" ||
        notok "fallback" "$l / $(cat "$tmp/err")"
fi
env SAM2AMG_BLAS_TEST_FAIL=Prescott OPENBLAS_CORETYPE=Prescott "$bin" --version >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
    ok "no core passing the check: exit 1, one line" || notok "no core left" "rc $rc $(cat "$tmp/err")"

# results unchanged: dump on the micro fixture, generic and chosen core
fx=tests/fixtures/micro
for mode in generic auto; do
    if [ $mode = generic ]; then e=(OPENBLAS_CORETYPE=Prescott)
    else e=(SAM2AMG_BLAS_TEST_OVERRIDE=1 OPENBLAS_CORETYPE=Prescott); fi
    if env "${e[@]}" "$bin" dump --model "$fx/weights.safetensors" --config "$fx/meta.json" \
        "$fx/image.png" -o "$tmp/$mode.safetensors" --points-per-side 8 --points-per-batch 16 \
        >"$tmp/log" 2>&1 && "$PY" - "$fx/expected.safetensors" "$tmp/$mode.safetensors" <<'PYEOF'
import json, struct, sys
import numpy as np
def load(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        out = {}
        for k, v in h.items():
            if k == "__metadata__" or v["dtype"] != "F32":
                continue
            f.seek(8 + n + v["data_offsets"][0])
            out[k] = np.frombuffer(f.read(int(np.prod(v["shape"])) * 4), np.float32).reshape(v["shape"])
    return out
exp, got = load(sys.argv[1]), load(sys.argv[2])
bad = 0
for k in ["image_embed", "feat_s0", "feat_s1", "low_res_masks", "iou_preds"]:
    e, g = exp[k].astype(np.float64), got[k].astype(np.float64)
    d = float(np.max(np.abs(e - g))) if np.all(np.isfinite(g)) else float("inf")
    tol = 1e-3 * float(np.max(np.abs(e)))
    print("# %-14s max diff %.3g (tol %.3g)" % (k, d, tol))
    bad += not d <= tol
sys.exit(1 if bad else 0)
PYEOF
    then ok "dump micro under the $mode core matches the official tensors"
    else notok "dump micro under the $mode core" "$(tail -n 3 "$tmp/log")"; fi
done

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
