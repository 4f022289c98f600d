#!/usr/bin/env bash
# test_generate.sh: `sam2amg generate` end to end with the replay decoder:
# every synthetic fixture reproduces its amg.json (the replay bar of
# test_amg), parameters come from flags > config > defaults, bad values are
# usage errors (exit 2), PNG overlays and --out-dir work.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
bin=$BUILD/sam2amg
cmp=$BUILD/tests/test_amg
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # name, command...
    local name=$1; shift
    if "$@" >"$tmp/log" 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; sed 's/^/    /' "$tmp/log" | tail -5; fi
}
for d in tests/fixtures/amg-synthetic*/; do
    f=$(basename "$d")
    check "$f: generate reproduces amg.json" bash -c \
        "$bin generate --config $d/meta.json --replay-decoder $d/expected.safetensors \
         $d/image.png -o $tmp/$f.json && $cmp --compare $d/amg.json $tmp/$f.json"
done
d=tests/fixtures/amg-synthetic
gen="$bin generate --config $d/meta.json --replay-decoder $d/expected.safetensors"
check "--threads 0 (all cores, as dump and predict) and --output reproduce amg.json" bash -c "
    $gen --threads 0 $d/image.png --output $tmp/t0.json && $cmp --compare $d/amg.json $tmp/t0.json"
check "--threads -1 is a usage error" bash -c "
    $gen --threads -1 $d/image.png -o $tmp/t1.json 2>$tmp/err; rc=\$?; cat $tmp/err; [ \$rc -eq 2 ]"
check "flags override the config" bash -c "
    $gen $d/image.png -o $tmp/a.json && $gen --stability-score-thresh 0.99 $d/image.png -o $tmp/b.json &&
    a=\$(grep -o segmentation $tmp/a.json | wc -l) && b=\$(grep -o segmentation $tmp/b.json | wc -l) &&
    echo \$a \$b && [ \$b -lt \$a ] && [ \$a -eq 34 ]"
check "defaults without a config (pred_iou_thresh 0.8, ppb must match the recording)" bash -c "
    $bin generate --points-per-side 8 --points-per-batch 16 --replay-decoder $d/expected.safetensors \
        $d/image.png -o $tmp/c.json && $cmp --compare $d/amg.json $tmp/c.json"
check "a wrong points_per_batch is a replay error naming the call (exit 1)" bash -c "
    $bin generate --points-per-side 8 --points-per-batch 10 --replay-decoder $d/expected.safetensors \
        $d/image.png -o $tmp/d.json 2>$tmp/err; rc=\$?; cat $tmp/err; [ \$rc -eq 1 ] && grep -q 'call 0' $tmp/err"
for bad in "--pred-iou-thresh 1.5" "--points-per-side 0" "--points-per-batch x" "--crop-n-layers -1" \
           "--format gif" "--bogus"; do
    check "bad flag '$bad' is a usage error (exit 2, one line)" bash -c "
        $bin generate $bad --replay-decoder $d/expected.safetensors $d/image.png -o $tmp/e.json 2>$tmp/err;
        rc=\$?; cat $tmp/err; [ \$rc -eq 2 ] && [ \$(wc -l <$tmp/err) -eq 1 ]"
done
echo '{"amg": {"points_per_side": 8, "points_per_batch": 16, "box_nms_thresh": 2}}' >$tmp/badcfg.json
check "an invalid config value is a usage error" bash -c "
    $bin generate --config $tmp/badcfg.json --replay-decoder $d/expected.safetensors $d/image.png \
        -o $tmp/f.json 2>$tmp/err; rc=\$?; cat $tmp/err; [ \$rc -eq 2 ] && grep -q box_nms_thresh $tmp/err"
check "png overlay with --out-dir" bash -c "
    mkdir -p $tmp/od && $gen --format png $d/image.png --out-dir $tmp/od &&
    [ \"\$(head -c 8 $tmp/od/image.png | od -An -tx1 | tr -d ' \n')\" = 89504e470d0a1a0a ] &&
    /usr/bin/python3 -c 'import sys,struct; b=open(sys.argv[1],\"rb\").read(24); w,h=struct.unpack(\">II\",b[16:24]); sys.exit(0 if (w,h)==(320,240) else 1)' $tmp/od/image.png"
check "json with --out-dir" bash -c "mkdir -p $tmp/oj && $gen $d/image.png --out-dir $tmp/oj && $cmp --compare $d/amg.json $tmp/oj/image.json"
# the 8x8 grid of amg-synthetic given as --point-grids (numpy linspace values)
awk 'BEGIN { n = 8; printf "[["; for (i = 0; i < n * n; i++) {
    x = (i % n + 0.5) / n; y = (int(i / n) + 0.5) / n; printf "%s[%.17g, %.17g]", i ? ", " : "", x, y }
    print "]]" }' >$tmp/grid.json
check "--point-grids with the official grid reproduces amg.json" bash -c "
    $bin generate --points-per-batch 16 --point-grids $tmp/grid.json --replay-decoder $d/expected.safetensors \
        $d/image.png -o $tmp/pg.json && $cmp --compare $d/amg.json $tmp/pg.json"
echo '[[[0.5, 1.5]]]' >$tmp/badgrid.json
check "a grid point outside [0,1] is a usage error" bash -c "
    $bin generate --point-grids $tmp/badgrid.json --replay-decoder $d/expected.safetensors $d/image.png \
        -o $tmp/h.json 2>$tmp/err; rc=\$?; cat $tmp/err; [ \$rc -eq 2 ]"
for order in "--points-per-side 8 --point-grids $tmp/grid.json" "--point-grids $tmp/grid.json --points-per-side 8"; do
    check "--points-per-side with --point-grids ($order): usage error, one line" bash -c "
        $bin generate $order --replay-decoder $d/expected.safetensors $d/image.png \
            -o $tmp/x.json 2>$tmp/err; rc=\$?; [ \$rc -eq 2 ] && [ \$(wc -l < $tmp/err) -eq 1 ] &&
            grep -q 'exclusive' $tmp/err"
done
check "--model -o x.json: usage error naming the option taken as the model" bash -c "
    $bin generate --model -o $tmp/x.json $d/image.png 2>$tmp/err; rc=\$?; [ \$rc -eq 2 ] &&
        [ \$(wc -l < $tmp/err) -eq 1 ] && grep -q -- \"--model needs a value (got option '-o')\" $tmp/err"
check "a missing image is a data error (exit 1)" bash -c "$gen $tmp/nope.png -o $tmp/g.json; [ \$? -eq 1 ]"
# end to end with the network: micro reproduces its amg.json (>= 98% of the
# records at mask IoU >= 0.99, the real-model bar).
m=tests/fixtures/micro
$bin generate --model $m/weights.pt --config $m/meta.json $m/image.png -o $tmp/micro.json 2>$tmp/merr
rc=$?
check "micro: generate with the model (exit 0)" bash -c "cat $tmp/merr; [ $rc -eq 0 ]"
check "micro: >= 98% of amg.json records at mask IoU >= 0.99" \
    $cmp --compare $m/amg.json $tmp/micro.json 0.98 0.99
# a config's "amg" errors on the model path: one line naming the file; an
# "amg" that is not an object and a points_per_batch of 0 (auto inside) are
# refused, not ignored
/usr/bin/python3 - $m/meta.json $tmp <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
for name, amg in (("unknown", {"points_per_sid": 4}), ("array", [1, 2]), ("ppb0", {"points_per_batch": 0})):
    json.dump({"model": m["model"], "amg": amg}, open(sys.argv[2] + "/amg-" + name + ".json", "w"))
PYEOF
for c in unknown array ppb0; do
    check "config amg-$c.json: exit 2, one line naming the file" bash -c "
        $bin generate --model $m/weights.safetensors --config $tmp/amg-$c.json --threads 1 \
            $m/image.png -o $tmp/amg.json 2>$tmp/err; rc=\$?; cat $tmp/err;
        [ \$rc -eq 2 ] && [ \$(wc -l <$tmp/err) -eq 1 ] && grep -q 'amg-$c.json: ' $tmp/err"
done
# regressions on the real model (micro): images whose masks are all
# filtered out, out-dir creation, images too small for the crop layers,
# non-finite scores
mm="--model $m/weights.safetensors --config $m/meta.json"
photos=$(echo tests/fixtures/photos/*.{webp,tif,jpg,png})
check "7 photos with every mask filtered (--pred-iou-thresh 0.99): exit 0, 7 files, 0 masks each" bash -c "
    $bin generate $mm --pred-iou-thresh 0.99 $photos --out-dir $tmp/allfilt 2>$tmp/err; rc=\$?; cat $tmp/err;
    [ \$rc -eq 0 ] && [ \$(ls $tmp/allfilt/*.json | wc -l) -eq 7 ] &&
    [ \$(cat $tmp/allfilt/*.json | grep -c segmentation) -eq 0 ] && ! grep -q . $tmp/err"
check "an image after another in one process gives the file of a run of its own" bash -c "
    $bin generate $mm --pred-iou-thresh 0.6 tests/fixtures/photos/coins.png --out-dir $tmp/alone &&
    $bin generate $mm --pred-iou-thresh 0.6 $m/image.png tests/fixtures/photos/coins.png --out-dir $tmp/after &&
    grep -q segmentation $tmp/alone/coins.json && cmp $tmp/alone/coins.json $tmp/after/coins.json"
check "--out-dir creates missing parents" bash -c "
    $gen $d/image.png --out-dir $tmp/new/a/b && $cmp --compare $d/amg.json $tmp/new/a/b/image.json"
check "--out-dir under a regular file is a data error naming it (exit 1)" bash -c "
    touch $tmp/plain; $gen $d/image.png --out-dir $tmp/plain/sub 2>$tmp/err; rc=\$?; cat $tmp/err;
    [ \$rc -eq 1 ] && grep -q \"$tmp/plain\" $tmp/err"
/usr/bin/python3 - "$tmp" <<'PY'
import struct, sys, zlib
def png(path, w, h, v):
    c = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    raw = b"".join(b"\0" + bytes([v]) * (3 * w) for _ in range(h))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + c(b"IDAT", zlib.compress(raw)) + c(b"IEND", b""))
for w, h in ((1, 1), (1, 500), (3000, 1), (2, 2), (40, 30)):
    png("%s/flat_%dx%d.png" % (sys.argv[1], w, h), w, h, 0)
PY
for c in "1 1x1" "1 1x500" "1 3000x1" "2 2x2"; do
    set -- $c
    check "crop_n_layers $1 on a $2 image: a per-image error naming the empty crop, no abort" bash -c "
        $bin generate $mm --crop-n-layers $1 $tmp/flat_$2.png $tmp/flat_40x30.png --out-dir $tmp/cl 2>$tmp/err;
        rc=\$?; cat $tmp/err; [ \$rc -eq 3 ] && grep -q 'too small for crop_n_layers $1' $tmp/err &&
        ! grep -q 'internal error' $tmp/err && [ -s $tmp/cl/flat_40x30.json ]"
done
check "a 2x2 flat image's 0/0 stability scores are JSON null (strict JSON)" bash -c "
    $bin generate $mm --stability-score-thresh 0 $tmp/flat_2x2.png -o $tmp/nan.json &&
    grep -q '\"stability_score\": null' $tmp/nan.json &&
    /usr/bin/python3 -c 'import json,sys; json.load(open(sys.argv[1]), parse_constant=lambda c: sys.exit(\"non-JSON \" + c))' $tmp/nan.json"
# -o OUT with failing images: valid JSON of the others, OUT untouched when none succeeds
: >$tmp/empty.png
check "-o with a failing first image: a JSON list of the others (exit 3)" bash -c "
    $bin generate $mm $tmp/empty.png $tmp/flat_40x30.png $tmp/empty.png $tmp/flat_2x2.png -o $tmp/list.json;
    rc=\$?; [ \$rc -eq 3 ] &&
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d) == 2, d' $tmp/list.json"
check "-o with every image failing: exit 1, an existing OUT left as it was, no temporary file" bash -c "
    echo '{\"old\": 1}' >$tmp/keep.json; $bin generate $mm $tmp/empty.png -o $tmp/keep.json; rc=\$?;
    [ \$rc -eq 1 ] && [ \"\$(cat $tmp/keep.json)\" = '{\"old\": 1}' ] && ! ls $tmp | grep -q '\\.tmp\$'"
mkdir -p $tmp/s1 $tmp/s2; cp $tmp/flat_40x30.png $tmp/s1/same.png; cp $tmp/flat_2x2.png $tmp/s2/same.png
check "--out-dir with two images of one file name: the later fails naming both (exit 3), the first's file kept" bash -c "
    $bin generate $mm $tmp/s1/same.png $tmp/s2/same.png --out-dir $tmp/same 2>$tmp/err; rc=\$?; cat $tmp/err;
    [ \$rc -eq 3 ] && grep -q '$tmp/s2/same.png: .* is already the output of $tmp/s1/same.png' $tmp/err &&
    grep -q '\"width\": 40' $tmp/same/same.json"
mkfifo $tmp/fifo
check "--model FIFO (no writer): refused at once as not a regular file (exit 1), no hang" bash -c "
    timeout 20 $bin generate --model $tmp/fifo $tmp/flat_2x2.png -o $tmp/fifo.json 2>$tmp/err; rc=\$?; cat $tmp/err;
    [ \$rc -eq 1 ] && grep -q '$tmp/fifo: not a regular file' $tmp/err"
check "--config DIR: exit 1, read error with its reason" bash -c "
    $bin generate $mm --config $tmp/s1 $tmp/flat_2x2.png -o $tmp/cd.json 2>$tmp/err; rc=\$?; cat $tmp/err;
    [ \$rc -eq 1 ] && grep -q '$tmp/s1: read error: Is a directory' $tmp/err"
# -v's help names everything the line says, the device part included (it
# listed only calls, stages, seconds, workspace and halvings)
check "generate --help: -v says where the post-processing ran and the logits stayed" bash -c "
    $bin generate --help | tr -s ' \\n' ' ' | grep -q -- '-v, --verbose per image: .*where the post-processing ran.*decoder calls .*logits stayed on the device'"
# -v says once what the model computes with (on the CPU: fp32, no GEMM mode)
check "generate -v on the cpu: 'sam2amg generate: cpu, precision fp32', once, before the images" bash -c "
    $bin generate -v --model tests/fixtures/micro/weights.safetensors --config micro --points-per-side 2 \
        tests/fixtures/micro/image.png tests/fixtures/micro/image.png -o $tmp/v.json 2>$tmp/v.err &&
    [ \"\$(head -n 1 $tmp/v.err)\" = 'sam2amg generate: cpu, precision fp32' ] &&
    [ \$(grep -c 'precision' $tmp/v.err) = 1 ]"
check "generate --help: -v names the device and precision line" bash -c "
    $bin generate --help | tr -s ' \\n' ' ' | grep -q -- 'before the images, the device and its precision (GEMM mode, fused ops)'"
# SAM2AMG_DECODER_ROWS (the decoder's chunk, a tuning knob): a value that
# is not a number of rows from 1 to 2^40 is ignored, but said in one line
# (it was ignored silently: SAM2AMG_DECODER_ROWS=64k tuned nothing)
check "SAM2AMG_DECODER_ROWS=64k: ignored, said once, records as without it" bash -c "
    $bin generate --model tests/fixtures/micro/weights.safetensors --config micro --points-per-side 4 \
        tests/fixtures/micro/image.png -o $tmp/rows0.json &&
    SAM2AMG_DECODER_ROWS=64k $bin generate --model tests/fixtures/micro/weights.safetensors --config micro \
        --points-per-side 4 tests/fixtures/micro/image.png -o $tmp/rows1.json 2>$tmp/err; rc=\$?; cat $tmp/err;
    [ \$rc -eq 0 ] && [ \$(wc -l <$tmp/err) -eq 1 ] && grep -q \"SAM2AMG_DECODER_ROWS='64k' ignored\" $tmp/err &&
    cmp $tmp/rows0.json $tmp/rows1.json"
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
