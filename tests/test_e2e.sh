#!/usr/bin/env bash
# test_e2e.sh: `sam2amg generate` end to end with the real network (not the
# replay decoder) against the official generator on the e2e-* fixtures:
# use_m2m, min_mask_region_area, crops on a non-square image, and micro2 with
# nonzero IoU / stability thresholds and box NMS 0.7. Each must reach the
# real-model bar of tests/fixtures/README.md: >= 98% of the official records
# matched at mask IoU >= 0.99 (test_amg --compare; it prints the match count,
# worst IoU and largest score differences). The fixtures hold no weights:
# meta.json's "weights" names the fixture whose weights the oracle made
# (tests/tools/make_e2e.py checked they are byte-identical). Two negative
# controls show the m2m and min-area fixtures depend on their option.
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
    if "$@" >"$tmp/log" 2>&1; then pass=$((pass + 1)); echo "ok - $name"; sed 's/^/# /' "$tmp/log"
    else fail=$((fail + 1)); echo "not ok - $name"; sed 's/^/    /' "$tmp/log" | tail -5; fi
}
weights_of() { # fixture dir -> weights path named by its meta.json
    echo "tests/fixtures/$(sed -n 's/^ *"weights": *"\([^"]*\)".*/\1/p' "$1/meta.json")"
}
for f in e2e-m2m e2e-minarea e2e-crops e2e-micro2; do
    d=tests/fixtures/$f
    w=$(weights_of "$d")
    check "$f: generate with the model ($w)" \
        "$bin" generate --model "$w" --config "$d/meta.json" "$d/image.png" -o "$tmp/$f.json"
    check "$f: >= 98% of amg.json records at mask IoU >= 0.99" \
        "$cmp" --compare "$d/amg.json" "$tmp/$f.json" 0.98 0.99
done
# negative controls: without the option the official records are not reproduced
d=tests/fixtures/e2e-m2m
check "e2e-m2m: without --use-m2m the records differ" bash -c "
    sed 's/\"use_m2m\": true/\"use_m2m\": false/' $d/meta.json >$tmp/no-m2m.json &&
    $bin generate --model $(weights_of $d) --config $tmp/no-m2m.json $d/image.png -o $tmp/no-m2m.out.json &&
    ! $cmp --compare $d/amg.json $tmp/no-m2m.out.json 0.98 0.99"
d=tests/fixtures/e2e-minarea
check "e2e-minarea: with --min-mask-region-area 0 the records differ" bash -c "
    $bin generate --model $(weights_of $d) --config $d/meta.json --min-mask-region-area 0 \
        $d/image.png -o $tmp/no-minarea.json &&
    ! $cmp --compare $d/amg.json $tmp/no-minarea.json 0.98 0.99"
# a value of SAM2AMG_GPU_POST it does not know is a usage error naming it
# (exit 2, before any image: not the CPU path in silence, not every image
# failed), for generate as for run, which makes no database
d=tests/fixtures/e2e-crops
check "SAM2AMG_GPU_POST=bogus: generate exits 2, one line naming it, no output" bash -c "
    SAM2AMG_GPU_POST=bogus $bin generate --model $(weights_of $d) --config $d/meta.json \
        $d/image.png -o $tmp/bogus.json 2>$tmp/bogus.err; rc=\$?;
    [ \$rc = 2 ] && [ \$(wc -l <$tmp/bogus.err) = 1 ] && [ ! -e $tmp/bogus.json ] &&
    grep -q 'SAM2AMG_GPU_POST=bogus: not 0, staged or ref' $tmp/bogus.err"
check "SAM2AMG_GPU_POST=bogus: run exits 2, one line naming it, no database" bash -c "
    echo $d/image.png >$tmp/bogus.txt;
    SAM2AMG_GPU_POST=bogus $bin run $tmp/bogus.db --manifest $tmp/bogus.txt --model $(weights_of $d) \
        --config $d/meta.json 2>$tmp/bogus-run.err; rc=\$?;
    [ \$rc = 2 ] && [ \$(wc -l <$tmp/bogus-run.err) = 1 ] && [ ! -e $tmp/bogus.db ] &&
    grep -q 'SAM2AMG_GPU_POST=bogus: not 0, staged or ref' $tmp/bogus-run.err"
# an empty SAM2AMG_GPU_POST is unset, as every SAM2AMG_ variable: exit 0,
# the very bytes of a run without it
check "SAM2AMG_GPU_POST= (empty): unset, the same JSON bytes" bash -c "
    $bin generate --model $(weights_of $d) --config $d/meta.json $d/image.png -o $tmp/unset.json &&
    SAM2AMG_GPU_POST= $bin generate --model $(weights_of $d) --config $d/meta.json \
        $d/image.png -o $tmp/empty.json && cmp $tmp/unset.json $tmp/empty.json"
# the device post-processing's algorithm (plain C, SAM2AMG_GPU_POST=ref)
# with the real model's logits left in backend memory (decode_dev): the
# very bytes of the CPU path; -v says the logits stayed where they were
# written (every decoder call); the m2m fixture cannot keep them there
for f in e2e-crops e2e-micro2 e2e-m2m; do
    d=tests/fixtures/$f
    want=all; [ $f = e2e-m2m ] && want=none
    check "$f: SAM2AMG_GPU_POST=ref, logits in place: the same JSON bytes ($want of the calls in place)" bash -c "
        SAM2AMG_GPU_POST=ref $bin generate -v --model $(weights_of $d) --config $d/meta.json \
            $d/image.png -o $tmp/$f.ref.json 2>$tmp/$f.ref.err &&
        cmp $tmp/$f.json $tmp/$f.ref.json &&
        line=\$(grep -o 'post-processing on cpu (ref), logits left on the device in [0-9]* of [0-9]* decoder calls' $tmp/$f.ref.err) &&
        echo \"\$line\" && set -- \$(echo \"\$line\" | sed 's/.* in \([0-9]*\) of \([0-9]*\) .*/\1 \2/') &&
        if [ $want = all ]; then [ \$1 -gt 0 ] && [ \$1 -eq \$2 ]; else [ \$1 -eq 0 ] && [ \$2 -gt 0 ]; fi"
done
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
