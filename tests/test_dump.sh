#!/usr/bin/env bash
# test_dump.sh: `sam2amg dump` end to end on the fixtures (image file ->
# preprocessing -> encoder -> decoder -> safetensors) against the official
# code's expected.safetensors: input within 1e-4, every other tensor within
# 1e-3 x max|expected|; plus the command's usage errors.
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

compare() {   # name expected actual
    "$PY" - "$2" "$3" <<'PYEOF'
import json, struct, sys
import numpy as np
def load(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for k, v in h.items():
            if k == "__metadata__":
                continue
            f.seek(base + v["data_offsets"][0])
            dt = {"F32": np.float32, "I32": np.int32, "U8": np.uint8, "I8": np.int8}[v["dtype"]]
            cnt = int(np.prod(v["shape"])) if v["shape"] else 1
            out[k] = np.frombuffer(f.read(cnt * np.dtype(dt).itemsize), dt).reshape(v["shape"])
    return out
exp, got = load(sys.argv[1]), load(sys.argv[2])
keys = ["input", "image_embed", "feat_s0", "feat_s1", "grid_points", "low_res_masks",
        "iou_preds", "m2m_low_res_masks", "m2m_iou_preds"]
bad = 0
for k in keys:
    if k not in got:
        print("# %s: missing" % k); bad += 1; continue
    e, g = exp[k].astype(np.float64), got[k].astype(np.float64)
    if e.shape != g.shape:
        print("# %s: shape %s, expected %s" % (k, g.shape, e.shape)); bad += 1; continue
    d = float(np.max(np.abs(e - g))) if e.size else 0.0
    if not np.all(np.isfinite(g)): d = float("inf")
    m = float(np.max(np.abs(e))) if e.size else 0.0
    tol = 1e-4 if k == "input" else 1e-3 * m
    print("# %-18s max diff %.3g  max|exp| %.3g  %s" % (k, d, m, "ok" if d <= tol else "FAIL"))
    bad += d > tol
sys.exit(1 if bad else 0)
PYEOF
}

run_fixture() {   # fixture points_per_side points_per_batch [weights]
    local fx=tests/fixtures/$1 w=${4:-weights.safetensors}
    local out=$tmp/$1-$w.safetensors
    if "$bin" dump --model "$fx/$w" --config "$fx/meta.json" "$fx/image.png" -o "$out" \
        --points-per-side "$2" --points-per-batch "$3" >"$tmp/log" 2>&1; then
        ok "dump $1 ($w) runs"
        if compare "$1" "$fx/expected.safetensors" "$out"; then ok "dump $1 ($w) matches expected"
        else notok "dump $1 ($w) matches expected" "see the diffs above"; fi
    else
        notok "dump $1 ($w) runs" "$(tail -n 3 "$tmp/log")"
    fi
}

run_fixture micro 8 16 weights.safetensors
run_fixture micro 8 16 weights.pt
run_fixture micro2 8 16 weights.safetensors

# config guessed from the checkpoint
if "$bin" dump --model tests/fixtures/micro/weights.safetensors tests/fixtures/micro/image.png \
    -o "$tmp/guess.safetensors" --points-per-side 8 --points-per-batch 16 >"$tmp/log" 2>&1 &&
    compare micro tests/fixtures/micro/expected.safetensors "$tmp/guess.safetensors" >/dev/null; then
    ok "dump without --config guesses micro"
else notok "dump without --config guesses micro" "$(tail -n 2 "$tmp/log")"; fi

# the config file's "amg" object sets points_per_side / points_per_batch
# (meta.json: 8 and 16, as expected.safetensors); flags win over it
fx=tests/fixtures/micro
if "$bin" dump --model "$fx/weights.safetensors" --config "$fx/meta.json" "$fx/image.png" \
    -o "$tmp/amg.safetensors" >"$tmp/log" 2>&1 &&
    compare micro "$fx/expected.safetensors" "$tmp/amg.safetensors" >/dev/null; then
    ok "dump --config FILE takes points_per_side/points_per_batch from its amg object"
else notok "dump --config FILE's amg object" "$(tail -n 2 "$tmp/log")"; fi
"$PY" - "$fx/meta.json" "$tmp/bad-amg.json" "$tmp/ppb4.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["amg"]["points_per_side"] = -3
json.dump(m, open(sys.argv[2], "w"))
m["amg"]["points_per_side"] = 8
m["amg"]["points_per_batch"] = 4
json.dump(m, open(sys.argv[3], "w"))
PYEOF
shape() { "$PY" -c 'import json,struct,sys; f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]
print(json.loads(f.read(n))[sys.argv[2]]["shape"])' "$1" "$2"; }
"$bin" dump --model "$fx/weights.safetensors" --config "$tmp/ppb4.json" "$fx/image.png" \
    -o "$tmp/ppb4.safetensors" >"$tmp/log" 2>&1 &&
    "$bin" dump --model "$fx/weights.safetensors" --config "$tmp/ppb4.json" "$fx/image.png" \
    -o "$tmp/ppb5.safetensors" --points-per-batch 5 >>"$tmp/log" 2>&1
if [ "$(shape "$tmp/ppb4.safetensors" grid_points)" = "[4, 2]" ] &&
   [ "$(shape "$tmp/ppb5.safetensors" grid_points)" = "[5, 2]" ]; then
    ok "amg.points_per_batch 4 decodes 4 points; --points-per-batch 5 wins over it"
else notok "amg.points_per_batch vs flag" "$(tail -n 2 "$tmp/log")"; fi

# usage and data errors
expect() {   # name status args...
    local name=$1 want=$2; shift 2
    "$bin" dump "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    local lines=$(wc -l <"$tmp/err")
    if [ $rc -eq "$want" ] && { [ "$want" -eq 0 ] || [ "$lines" -eq 1 ]; }; then ok "$name"
    else notok "$name" "exit $rc (want $want), stderr: $(head -c 300 "$tmp/err")"; fi
}
expect "dump --help" 0 --help
expect "config amg.points_per_side -3: usage error" 2 --model "$fx/weights.safetensors" \
    --config "$tmp/bad-amg.json" "$fx/image.png" -o "$tmp/x.safetensors"
grep -q "bad-amg.json" "$tmp/err" && ok "bad amg value: the error names the config file" ||
    notok "bad amg value names the file" "$(cat "$tmp/err")"
# "amg" that is not an object is refused, not ignored; points_per_batch
# "auto" (generate's and run's) keeps dump's own default
"$PY" - "$fx/meta.json" "$tmp/arr-amg.json" "$tmp/auto-amg.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
json.dump({"model": m["model"], "amg": [1, 2]}, open(sys.argv[2], "w"))
m["amg"]["points_per_batch"] = "auto"
json.dump(m, open(sys.argv[3], "w"))
PYEOF
expect "config \"amg\": [1, 2]: usage error" 2 --model "$fx/weights.safetensors" \
    --config "$tmp/arr-amg.json" "$fx/image.png" -o "$tmp/x.safetensors"
grep -q 'arr-amg.json: "amg" is not a JSON object' "$tmp/err" && ok "amg not an object: the error says so" ||
    notok "amg not an object: the error says so" "$(cat "$tmp/err")"
"$PY" - "$fx/meta.json" "$tmp/pit5.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["amg"]["pred_iou_thresh"] = 5
json.dump(m, open(sys.argv[2], "w"))
PYEOF
# every amg value is checked as generate checks it, not only the grid's
expect "config amg.pred_iou_thresh 5: usage error, as in generate" 2 \
    --model "$fx/weights.safetensors" --config "$tmp/pit5.json" "$fx/image.png" -o "$tmp/x.safetensors"
grep -q "pit5.json: pred_iou_thresh 5" "$tmp/err" && ok "bad amg.pred_iou_thresh: the error names file and value" ||
    notok "bad amg.pred_iou_thresh names file and value" "$(cat "$tmp/err")"
expect "config amg.points_per_batch \"auto\": dump runs (exit 0)" 0 --model "$fx/weights.safetensors" \
    --config "$tmp/auto-amg.json" "$fx/image.png" -o "$tmp/auto.safetensors"
expect "unknown flag" 2 --bogus
expect "no --model" 2 tests/fixtures/micro/image.png -o "$tmp/x.safetensors"
expect "bad --points-per-side" 2 --model tests/fixtures/micro/weights.pt --points-per-side abc \
    tests/fixtures/micro/image.png -o "$tmp/x.safetensors"
expect "unknown config" 2 --model tests/fixtures/micro/weights.pt --config huge \
    tests/fixtures/micro/image.png -o "$tmp/x.safetensors"
expect "missing image" 1 --model tests/fixtures/micro/weights.pt --config micro \
    "$tmp/none.png" -o "$tmp/x.safetensors"
expect "wrong checkpoint for config" 1 --model tests/fixtures/micro2/weights.safetensors \
    --config micro tests/fixtures/micro/image.png -o "$tmp/x.safetensors"
grep -q "patch_embed" "$tmp/err" && ok "checkpoint error names the key" ||
    notok "checkpoint error names the key" "$(cat "$tmp/err")"

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
