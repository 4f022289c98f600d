#!/usr/bin/env bash
# test_gpu_check.sh: the prepared GPU check (tests/gpu/check.sh) run with
# the CPU backend standing in (--cpu: micro and micro2 only, a few seconds
# here), so the script that a GPU session runs once is itself tested on
# every machine: each summary row becomes one ok / not ok line (SKIP rows:
# the device-only ones, printed as comments), every expected row must be
# there, and the script must exit 0. Two negative controls: programs that
# do not exist (every step crashes) and a used-up time budget must both
# still give a complete summary ending "overall: FAIL" and a non-zero exit;
# and a benchmark program that crashes after its first row must fail
# bench_ours.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }
rows="env ops_test_ops ops_bf16 ops_test_cuda ops_test_cuda_tf32 ops_test_cuda_bf16
      model_fixtures model_fused model_fullsize model_fullsize_tf32 model_fullsize_bf16 bf16_quality e2e
      e2e_bf16 replay post_replay post_random post_e2e sanitizer_test_cuda sanitizer_generate bench_cuda bench_model
      bench_ours bench_official overall"

# (10 random post-processing cases instead of 40: this tests the script; the
# random cases themselves run in test_emu.sh, on the emulated GPU)
SAM2AMG_CHECK_POST_RANDOM=10 BUILD=$BUILD bash tests/gpu/check.sh --cpu "$tmp/out" >"$tmp/log" 2>&1
rc=$?
while IFS= read -r line; do
    case $line in
    *": PASS"*) ok "check.sh --cpu: $line" ;;
    *": SKIP"*) echo "# $line" ;;
    *) bad "check.sh --cpu: $line" ;;
    esac
done <"$tmp/out/summary.txt"
[ $rc -eq 0 ] && ok "check.sh --cpu exits 0" || bad "check.sh --cpu exits 0 (got $rc)"
missing=""
for r in $rows; do grep -q "^$r: " "$tmp/out/summary.txt" || missing="$missing $r"; done
[ -z "$missing" ] && ok "every row in the summary" || bad "rows missing from the summary:$missing"
n=$(ls "$tmp/out/logs" | wc -l)
[ "$n" -ge 8 ] && ok "logs beside the summary ($n files)" || bad "logs beside the summary ($n files)"
# post_e2e runs under --cpu too: the device algorithm with the logits left
# where the decoder wrote them (SAM2AMG_GPU_POST=ref), and gpu_generate -v
# must say so (every call; none for m2m and min-area), so that on a GPU the
# row proves the in-place path ran (it compared only bytes, which staged
# logits give as well, and was a SKIP here)
if grep -q '^post_e2e: PASS passed=4 failed=0' "$tmp/out/summary.txt" &&
    [ "$(grep -c 'post-processing on cpu (ref), logits left on the device in' "$tmp/out/logs/post.log")" -eq 4 ] &&
    grep -q 'e2e-crops.ppm: .*logits left on the device in \([0-9]*\) of \1 decoder calls' "$tmp/out/logs/post.log" &&
    grep -q 'e2e-m2m.ppm: .*logits left on the device in 0 of [1-9][0-9]* decoder calls' "$tmp/out/logs/post.log"; then
    ok "post_e2e under --cpu: logits in place (SAM2AMG_GPU_POST=ref), -v checked, bytes of the CPU path"
else
    bad "post_e2e under --cpu: $(grep '^post_e2e' "$tmp/out/summary.txt")"
fi

# gpu_generate's benchmark mode takes its images before or after --random
# (it said "one IMAGE.ppm only" when --random came last)
img=$tmp/out/images/micro.ppm
n=$("$BUILD/gpu/gpu_generate" --time 1 --device cpu --precision fp32 --points-per-side 4 \
    --points-per-batch 16 "$img" "$img" --random micro 2>&1 | grep -c '^ours_320x240\(_2\)\?_default: PASS')
[ "$n" = 2 ] && ok "gpu_generate IMG IMG --random micro: a row per image" ||
    bad "gpu_generate IMG IMG --random micro: $n rows"

# negative controls: a summary whatever happens, ending in overall: FAIL
BUILD=$BUILD bash tests/gpu/check.sh --cpu --bundle "$tmp/no-such-bundle" "$tmp/crash" >"$tmp/log2" 2>&1
rc=$?
nf=$(grep -c ': FAIL' "$tmp/crash/summary.txt" 2>/dev/null)
if [ $rc -ne 0 ] && grep -q '^overall: FAIL' "$tmp/crash/summary.txt" && [ "${nf:-0}" -ge 8 ]; then
    ok "missing programs: every step FAILs, summary complete, exit $rc"
else
    bad "missing programs: exit $rc, $nf FAIL rows"; sed 's/^/    /' "$tmp/crash/summary.txt"
fi
SAM2AMG_CHECK_BUDGET=0 BUILD=$BUILD bash tests/gpu/check.sh --cpu --pack "$tmp/budget" >"$tmp/log3" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q '^overall: FAIL' "$tmp/budget/summary.txt" &&
    grep -q 'budget .* used up' <(tar xzOf "$tmp/budget/logs.tgz" 2>/dev/null) &&
    [ ! -d "$tmp/budget/logs" ]; then
    ok "used-up budget: steps not run are FAILs, logs packed into logs.tgz, exit $rc"
else
    bad "used-up budget: exit $rc"; sed 's/^/    /' "$tmp/budget/summary.txt"
fi
# a benchmark run that prints its first row and then crashes (or times
# out) must fail bench_ours: only the rows it printed were counted, so one
# PASS row and an abort read as a passed step
mkdir -p "$tmp/fake1/bin" "$tmp/fake1/images"
: >"$tmp/fake1/images/micro.ppm"
printf '#!/bin/sh\necho "ours_micro_fp32_320x240_default: PASS images_per_s=1"\nkill -ABRT $$\n' \
    >"$tmp/fake1/bin/gpu_generate"
chmod +x "$tmp/fake1/bin/gpu_generate"
SAM2AMG_CHECK_STEPS=ours BUILD=$BUILD bash tests/gpu/check.sh --cpu --bundle "$tmp/fake1" "$tmp/ours" \
    >"$tmp/log4a" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q '^bench_ours: FAIL .*ours_micro_fp32:exit=134' "$tmp/ours/summary.txt"; then
    ok "a benchmark run that crashes after one row: bench_ours FAILs naming it, exit $rc"
else
    bad "a benchmark run that crashes after one row: exit $rc"; sed 's/^/    /' "$tmp/ours/summary.txt"
fi
# SAM2AMG_CHECK_STEPS with a bundle whose gpu_generate prints one row and
# crashes (the benchmark step, bench_ours: a crashed run is a FAIL row, not
# a silent loss of the rows it did not print)
mkdir -p "$tmp/fake/bin" "$tmp/fake/images"
printf '#!/bin/sh\necho "ours_micro_fp32_1x1_default: PASS images_per_s=1"\nkill -SEGV $$\n' \
    >"$tmp/fake/bin/gpu_generate"
chmod +x "$tmp/fake/bin/gpu_generate"
SAM2AMG_CHECK_STEPS="ours bench env" BUILD=$BUILD bash tests/gpu/check.sh --cpu --bundle "$tmp/fake" \
    "$tmp/steps" >"$tmp/log4" 2>&1
rc=$?
s=$tmp/steps/summary.txt
if [ $rc -ne 0 ] && grep -q '^ours_micro_fp32: FAIL gpu_generate exit 139' "$s" &&
    ! grep -q '^bench_ours: PASS' "$s"; then
    ok "a crashed benchmark run (gpu_generate killed by SIGSEGV) is a FAIL row, bench_ours no PASS"
else
    bad "a crashed benchmark run (exit $rc)"; sed 's/^/    /' "$s"
fi
# env runs first wherever the list names it (it finds cuBLAS for the
# others), and each step once: ours is part of bench
if [ "$(head -n 1 "$s" | cut -d: -f1)" = env ] && [ "$(grep -c '^env: ' "$s")" -eq 1 ] &&
    [ "$(grep -c '^bench_ours: ' "$s")" -eq 1 ]; then
    ok "SAM2AMG_CHECK_STEPS='ours bench env': env first, ours once"
else
    bad "SAM2AMG_CHECK_STEPS='ours bench env': env first, ours once"; sed 's/^/    /' "$s"
fi
# bench without model: bench_model reports the model step's timings, so
# with that step left out it is a SKIP, not a FAIL of the split run
if grep -q '^bench_model: SKIP' "$s"; then ok "bench without the model step: bench_model SKIP"
else bad "bench without the model step: $(grep '^bench_model' "$s")"; fi
# an OUTDIR used before: the rows are this run's, not figures parsed out of
# the last run's logs (they were appended to, so a run that could not start
# read "images=6 of 6" and its images/s from the earlier log)
mkdir -p "$tmp/again/logs"
echo "sam2amg run: 6 images done (42 masks), 0 failed, 0 retried" >"$tmp/again/logs/run_1worker.log"
echo "RESULT 99 0" >"$tmp/again/logs/test_ops.log"
SAM2AMG_CHECK_STEPS="ops run" BUILD=$BUILD bash tests/gpu/check.sh --cpu --bundle "$tmp/no-such-bundle" \
    "$tmp/again" >"$tmp/log5" 2>&1
s=$tmp/again/summary.txt
if grep -q '^run_1worker: FAIL .*images=x of 6 .*masks=x ' "$s" && grep -q '^ops_test_ops: FAIL passed=0 ' "$s" &&
    ! grep -q 'RESULT 99 0' "$tmp/again/logs/test_ops.log"; then
    ok "an OUTDIR used before: no figures from its old logs (run_1worker, ops_test_ops)"
else
    bad "an OUTDIR used before: figures from its old logs"; sed 's/^/    /' "$s"
fi
# gpu_amg_post --random N takes a count >= 1 and --seed a number, and
# --seed goes with --random: 0, a negative count, a non-number or trailing
# junk ran the replay fixtures instead and exited 0 (a property check that
# reads as passed), "--seed abc" seeded 0, "--seed 5" alone did nothing
nbad=""
for a in "--random 0" "--random -3" "--random abc" "--random 5x" "--random 99999999999999999999" \
         "--random 2 --seed abc" "--random 2 --seed -1" "--random 2 --seed 4294967296" "--seed 5"; do
    timeout 60 "$BUILD/gpu/gpu_amg_post" --device cpu $a >"$tmp/post_args" 2>&1
    prc=$?
    { [ $prc -eq 2 ] && grep -q '^gpu_amg_post: --' "$tmp/post_args" && ! grep -q '^ok - ' "$tmp/post_args"; } ||
        nbad="$nbad '$a'(exit $prc)"
done
[ -z "$nbad" ] && ok "gpu_amg_post: odd --random/--seed arguments are usage errors (exit 2, said why)" ||
    bad "gpu_amg_post: odd --random/--seed arguments:$nbad"
timeout 60 "$BUILD/gpu/gpu_amg_post" --device cpu --random 1 --seed 4294967295 >"$tmp/post_args" 2>&1
prc=$?
[ $prc -eq 0 ] && grep -q 'random cases: --random 1 --seed 4294967295 reproduces them' "$tmp/post_args" &&
    ok "gpu_amg_post --random 1 --seed 4294967295 runs one case" ||
    bad "gpu_amg_post --random 1 --seed 4294967295: exit $prc"
# without --cpu on a machine whose torch sees no GPU (make bench-gpu here):
# official_bench.py says why it made no images or weights, and bench_ours
# and run must say that, not "python3 with torch needed" beside a torch
tpy=""
for c in python3 /usr/bin/python3; do
    timeout 60 "$c" -c 'import torch, sys; sys.exit(torch.cuda.is_available())' 2>/dev/null && { tpy=$c; break; }
done
if [ -n "$tpy" ]; then
    SAM2AMG_CHECK_STEPS="ours run" BUILD=$BUILD bash tests/gpu/check.sh --bundle "$tmp/no-such-bundle" \
        "$tmp/nogpu" >"$tmp/log6" 2>&1
    s=$tmp/nogpu/summary.txt
    if grep -q '^bench_ours: FAIL .*sees no CUDA device' "$s" && grep -q '^run: FAIL .*sees no CUDA device' "$s" &&
        ! grep -q 'torch needed' "$s"; then
        ok "no GPU for torch: bench_ours and run say official_bench.py's reason"
    else
        bad "no GPU for torch: bench_ours and run"; sed 's/^/    /' "$s"
    fi
else
    echo "# skip - no python3 with torch and without a GPU: the no-GPU rows not checked"
fi
# tests/gpu/transfer.sh counts what a carried directory holds (the device
# tool carries folders too: a gpu-bundle/ of 14 MB counted 4096 bytes, its
# inode, and 53.7 MiB "fitted"); files sparse here, the sizes apparent
mkdir -p "$tmp/carry"
truncate -s 6M "$tmp/carry/a" && truncate -s 6M "$tmp/carry/b"
bash tests/gpu/transfer.sh "$tmp/carry" >"$tmp/tr.out" 2>&1
trc=$?
n=$(sed -n 's/.* + carry \([0-9]*\) = .*/\1/p' "$tmp/tr.out")
base=$(bash tests/gpu/transfer.sh | sed -n 's/.*tracked and untracked \([0-9]*\) = .*/\1/p')
if [ "${n:-0}" -ge $((12 << 20)) ] && { [ $((base + n)) -le $((63 << 20)) ] || [ $trc -eq 1 ]; }; then
    ok "transfer.sh DIR: the folder's files counted ($n bytes, exit $trc)"
else
    bad "transfer.sh DIR: $(cat "$tmp/tr.out") (exit $trc)"
fi
# a libvips asked for (SAM2AMG_VIPS_DIR) that is not there, or a gpu-vips/
# whose libvips.so.42 is a dangling link: env FAILs saying so (the run went
# on with the PPM-only stand-in, env PASS, and the JPEG benchmark asked for
# became a PPM one); a bundle of links to the build's programs
mkdir -p "$tmp/bb/bin" "$tmp/vdang"
for b in test_ops test_cuda test_model test_amg test_decoder gpu_model gpu_generate gpu_amg_post bench_cuda; do
    for d in tests gpu bench; do
        [ -x "$BUILD/$d/$b" ] && ln -sf "$PWD/$BUILD/$d/$b" "$tmp/bb/bin/$b"
    done
done
ln -s libvips-gone.so.42 "$tmp/vdang/libvips.so.42"
for v in "$tmp/no-such-vips" "$tmp/vdang"; do
    SAM2AMG_VIPS_DIR=$v SAM2AMG_CHECK_STEPS=env BUILD=$BUILD bash tests/gpu/check.sh --cpu --bundle "$tmp/bb" \
        "$tmp/vips" >"$tmp/log7" 2>&1
    if grep -q "^env: FAIL .*libvips_missing=$v" "$tmp/vips/summary.txt"; then
        ok "SAM2AMG_VIPS_DIR=$(basename "$v") without a libvips: env FAILs naming it"
    else
        bad "SAM2AMG_VIPS_DIR=$(basename "$v") without a libvips: $(head -n 1 "$tmp/vips/summary.txt")"
    fi
done
# the control: the same bundle, no SAM2AMG_VIPS_DIR (gpu-vips/ if made): PASS
env -u SAM2AMG_VIPS_DIR SAM2AMG_CHECK_STEPS=env BUILD=$BUILD bash tests/gpu/check.sh --cpu \
    --bundle "$tmp/bb" "$tmp/vips" >"$tmp/log7" 2>&1
grep -q '^env: PASS ' "$tmp/vips/summary.txt" && ok "the bundle of links, no SAM2AMG_VIPS_DIR: env PASS" ||
    bad "the bundle of links, no SAM2AMG_VIPS_DIR: $(head -n 1 "$tmp/vips/summary.txt")"
# --bundle needs its DIR: last on the line it was dropped (the whole check
# ran on the build tree, as if no bundle had been named), before another
# option it took that option as the folder ("--bundle --cpu OUT": no --cpu)
nbad=""
for args in "--cpu $tmp/o1 --bundle" "--bundle --cpu $tmp/o2"; do
    timeout 60 bash tests/gpu/check.sh $args >"$tmp/log8" 2>&1
    brc=$?
    { [ $brc -eq 2 ] && grep -q 'usage: check.sh' "$tmp/log8" && [ ! -e "$tmp/o1/summary.txt" ] &&
        [ ! -e "$tmp/o2/summary.txt" ]; } || nbad="$nbad '$args'(exit $brc)"
done
[ -z "$nbad" ] && ok "check.sh --bundle without its DIR: usage, exit 2" || bad "check.sh --bundle without its DIR:$nbad"
# SAM2AMG_PROFILE_PPS that is not a number (a typo on the device): the
# profile step says so in its row; the points-per-batch arithmetic on it
# used to abort the step loop, leaving no profile row nor the steps after it
# (and "overall: PASS" on a device whose env passed). A stand-in ncu lets
# the step reach that point here.
mkdir -p "$tmp/ncu"
printf '#!/bin/sh\necho "stand-in ncu"\n' >"$tmp/ncu/ncu"
chmod +x "$tmp/ncu/ncu"
nbad=""
for v in 32x "1 2" 0 abc; do
    PATH=$tmp/ncu:$PATH SAM2AMG_PROFILE_PPS=$v SAM2AMG_CHECK_STEPS="profile nosuchstep" BUILD=$BUILD \
        timeout 120 bash tests/gpu/check.sh --build "$tmp/prof" >"$tmp/log9" 2>&1
    { grep -q "^profile: FAIL SAM2AMG_PROFILE_PPS='$v'" "$tmp/prof/summary.txt" &&
        grep -q '^step_nosuchstep: FAIL' "$tmp/prof/summary.txt" &&
        grep -q '^overall: FAIL' "$tmp/prof/summary.txt"; } || nbad="$nbad '$v'"
done
[ -z "$nbad" ] && ok "SAM2AMG_PROFILE_PPS not a positive number: a profile FAIL row, the later steps run" ||
    bad "SAM2AMG_PROFILE_PPS not a positive number:$nbad: $(tr '\n' '|' <"$tmp/prof/summary.txt")"
# the profile step with an ncu that knows the DRAM metrics (a stand-in
# that lists them and prints a summary of one kernel): it asks for them and
# the row gives the kernel's GB/s; with one that does not (the stand-in
# above), the duration alone and "-"
cat >"$tmp/ncu/ncu" <<'EOF2'
#!/bin/sh
if [ "$1" = --query-metrics ]; then
    [ -n "$NCU_STANDIN_DRAM" ] && printf 'dram__bytes_read     # of bytes read from DRAM\ndram__bytes_write    # of bytes written to DRAM\n'
    printf 'gpu__time_duration   total duration\n'
    exit 0
fi
echo "$*" >"$NCU_STANDIN_ARGS"
echo "  void lowrank_expand_kernel<9, 1>(le_args) (4096, 1, 1)x(256, 1, 1), Device 0, CC 9.0, Invocations 10"
echo "    gpu__time_duration.sum     usecond     100.00     100.00     100.00"
case "$*" in *dram__bytes_read.sum*)
    echo "    dram__bytes_read.sum         Mbyte     200.00     200.00     200.00"
    echo "    dram__bytes_write.sum        Mbyte     100.00     100.00     100.00" ;;
esac
EOF2
chmod +x "$tmp/ncu/ncu"
nbad=""
for dram in 1 ""; do
    rm -rf "$tmp/prof2"
    PATH=$tmp/ncu:$PATH NCU_STANDIN_DRAM=$dram NCU_STANDIN_ARGS=$tmp/ncu_args SAM2AMG_PROFILE_PPS=4 \
        SAM2AMG_CHECK_STEPS=profile BUILD=$BUILD timeout 120 bash tests/gpu/check.sh --build "$tmp/prof2" \
        >"$tmp/log10" 2>&1
    l=$(grep '^profile: ' "$tmp/prof2/summary.txt")
    if [ -n "$dram" ]; then
        { grep -q 'dram__bytes_read.sum,dram__bytes_write.sum' "$tmp/ncu_args" &&
            echo "$l" | grep -q 'dram_bytes=yes' &&
            echo "$l" | grep -q '1000 us 10 calls 3000 GB/s void lowrank_expand_kernel<9, 1>'; } ||
            nbad="$nbad with: $l |"
    else
        { ! grep -q dram "$tmp/ncu_args" && echo "$l" | grep -q 'dram_bytes=no' &&
            echo "$l" | grep -q '1000 us 10 calls - GB/s void lowrank_expand_kernel<9, 1>'; } ||
            nbad="$nbad without: $l |"
    fi
done
[ -z "$nbad" ] && ok "profile: the DRAM bytes asked for where ncu knows them, each kernel's GB/s in the row; '-' without" ||
    bad "profile with and without the DRAM metrics:$nbad"
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
