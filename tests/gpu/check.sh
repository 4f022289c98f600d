#!/usr/bin/env bash
# check.sh: the one prepared GPU check (issue 16). Everything that needs a
# GPU runs from here, in order, within a fixed time budget (default 450 s,
# SAM2AMG_CHECK_BUDGET), each command under its own timeout:
#   0 env      nvidia-smi, driver and CUDA versions, CPU, ldd of every
#              program run (a library "not found" fails the row)
#   1 ops      every op of include/backend.h on the device against the
#              CPU reference: test_ops, test_cuda (float32 GEMMs), and
#              test_cuda with SAM2AMG_CUDA_GEMM=tf32 as its own row; the
#              ops_bf16 row: test_ops' second device pass in bf16 against
#              the reference's bf16 mode (cases "cuda:0/bf16"), and
#              test_cuda's bf16 GEMM checks ("cuda bf16:")
#   2 model    test_model on the micro/micro2 fixtures on the device,
#              model_fused: test_decoder --fused-only (the fused low-rank
#              ops against the composed ones, d_model 256, bf16), then
#              gpu_model: full-size tiny and large with random weights,
#              device vs CPU backend, float32 (bar 1e-3 * max|ref|), the
#              TF32 row, and bf16 figures (report only) and timings; then
#              bf16_quality: gpu_model --quality 32 on large (per prompt of
#              a 32x32 grid, the IoU of the bf16 and fp32 best masks;
#              mean >= 0.99)
#   3 e2e      gpu_generate on the end-to-end fixtures with the model on
#              the device (the checks of tests/test_e2e.sh, negative
#              controls included, and micro's .pt checkpoint as
#              tests/test_generate.sh runs it), all with --precision fp32;
#              e2e_bf16: the same fixtures with --precision bf16, each
#              matching >= 95% of the fp32 run's records at mask IoU >=
#              0.95; and the replay fixtures (no device work: the
#              post-processing of the bundle's binary on that machine);
#              then gpu_amg_post (post-processing on the device == CPU path,
#              records identical; post_random: 100 property cases, random
#              sizes and parameters, --random) and generate with device vs CPU
#              post-processing (SAM2AMG_GPU_POST=0) and staged logits,
#              byte for byte, gpu_generate -v saying the logits stayed on
#              the device (--cpu: SAM2AMG_GPU_POST=ref vs the CPU path)
#   4 sanitizer compute-sanitizer memcheck on test_cuda and one small
#              generate (bf16, the cuda default): no errors
#   5 bench    bench_cuda (kernels on the SAM 2.1 shapes, and its GEMMs in
#              bf16: lines "bf16 ..."), the model timings gpu_model
#              measured in step 2, ours (step_ours: the whole generator,
#              gpu_generate --random, rows ours_*), and the official
#              SAM2AutomaticMaskGenerator on the same device
#              (tests/gpu/official_bench.py: official_* rows)
# Results: OUTDIR/summary.txt, one line per row "ROW: PASS|FAIL|SKIP
# figures", then "overall: PASS|FAIL"; logs in OUTDIR/logs/ (with --pack:
# OUTDIR/logs.tgz instead, for the device tool's 8-file limit). The script
# always writes the summary, whatever a step does; exit 0 only when no row
# failed. SKIP is for rows that do not apply: device rows under --cpu, and
# TODO rows. On a GPU machine a device that cannot be opened is a FAIL
# (SAM2AMG_REQUIRE_CUDA=1), never a skip.
#
# Measured on an H100 (2026-11-27, README "Measured on an H100"): env, ops
# and model ~70 s (the CPU reference of tiny + large on 16 cores ~15 s),
# e2e + post ~60 s, memcheck of test_cuda and one generate ~7 s, bench_cuda
# 30 s, bench_ours ~95 s (4 processes, 16 rows), the official generator
# ~160 s for 16 rows (its thresholds-0 rows take 10-30 s each): about 7
# min in all for those. Second session (README "Measured on an H100,
# second session"): fidelity 40 s, ours for large alone with two chunk
# sizes 74 s, post_random's 100 cases 89 s, run over 100 images 197 s (each
# sam2amg run ~30 s, the official loops ~40 s each): more than one call's
# budget in all, hence SAM2AMG_CHECK_STEPS.
#
# usage: tests/gpu/check.sh [--cpu] [--tiny] [--bundle DIR | --build] [--pack] OUTDIR
#   --cpu     the CPU backend stands in for the device and only the small
#             shapes run (micro, micro2; tiny too with --tiny), so the
#             script itself is tested anywhere (tests/test_gpu_check.sh)
#   --bundle  programs from DIR/bin (`make gpu-bundle`); default: gpu-bundle/
#             on a GPU run when it exists, else $BUILD (default build/)
#   --build   programs from $BUILD even where gpu-bundle/ exists (`make
#             bench-gpu` on a GPU machine with the build dependencies)
# On the GPU machine (see README "GPU check"): tests/gpu/check.sh --pack $OUT
set -u
cpu=0 tiny=0 pack=0 bundle="" out="" nobundle=0
while [ $# -gt 0 ]; do
    case $1 in
    --cpu) cpu=1 ;;
    --tiny) tiny=1 ;;
    --pack) pack=1 ;;
    --bundle)   # its DIR, not the next option nor nothing (a dropped DIR ran the build tree)
        case ${2:-} in ""|-*) echo "usage: check.sh [--cpu] [--tiny] [--bundle DIR | --build] [--pack] OUTDIR" \
            "(--bundle needs its DIR)" >&2; exit 2 ;; esac
        bundle=$2; shift ;;
    --build) nobundle=1 ;;
    -*) echo "usage: check.sh [--cpu] [--tiny] [--bundle DIR | --build] [--pack] OUTDIR" >&2; exit 2 ;;
    *) out=$1 ;;
    esac
    shift
done
[ -n "$out" ] || { echo "usage: check.sh [--cpu] [--tiny] [--bundle DIR | --build] [--pack] OUTDIR" >&2; exit 2; }
# an OUTDIR used before: its logs (appended to by each command) and
# outputs go first, or the rows would read the last run's figures
rm -rf "$out/logs" "$out/logs.tgz" "$out/e2e" "$out/images" "$out/bench_images" 2>/dev/null
mkdir -p "$out/logs" || exit 2
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BUDGET=${SAM2AMG_CHECK_BUDGET:-450}
T0=$(date +%s)
SUM=$out/summary.txt
# scratch shared by the steps (random weights of large: 0.9 GB; the run's
# images and databases), removed at exit
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sam2amg-check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
: >"$SUM"
nfail=0

if [ -z "$bundle" ] && [ $cpu = 0 ] && [ $nobundle = 0 ] && [ -x gpu-bundle/bin/test_cuda ]; then
    bundle=gpu-bundle
fi
if [ $cpu = 1 ]; then
    DEVICE=cpu
    unset SAM2AMG_REQUIRE_CUDA
else
    DEVICE=cuda:0
    export SAM2AMG_REQUIRE_CUDA=1
fi
export SAM2AMG_CUDA_GEMM=f32   # parity runs: true float32 GEMMs (tf32 rows set their own)

# libvips: the bundle's lib/libvips.so.42 is a stand-in that reads PPM only;
# a real one (`make gpu-vips`: gpu-vips/, or SAM2AMG_VIPS_DIR) carried to
# the machine goes first on LD_LIBRARY_PATH and replaces it (the bundle's
# rpaths are RUNPATHs), so `run` decodes JPEG there as users' runs do. A
# build tree (no bundle) links the system's libvips.
VIPS_DIR=${SAM2AMG_VIPS_DIR:-gpu-vips}
vips="stand-in (PPM only)" vips_missing=""
if [ -z "$bundle" ]; then
    vips="the build's libvips"
elif [ -e "$VIPS_DIR/libvips.so.42" ]; then
    export LD_LIBRARY_PATH=$(cd "$VIPS_DIR" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    vips="libvips from $VIPS_DIR ($(cd "$VIPS_DIR" && ls libvips-*.so.42 2>/dev/null | head -n 1))"
elif [ -n "${SAM2AMG_VIPS_DIR:-}" ] || [ -L "$VIPS_DIR/libvips.so.42" ]; then
    # asked for (or a gpu-vips/ whose link lost its library): not there, so
    # the stand-in would read PPM only and a JPEG run would quietly be a PPM
    # one; env FAILs naming it
    vips_missing=$VIPS_DIR
fi

# row NAME STATUS FIGURES...: one summary line (also echoed)
row() {
    local name=$1 st=$2; shift 2
    [ "$st" = FAIL ] && nfail=$((nfail + 1))
    echo "$name: $st $*" | tee -a "$SUM"
}

# prog NAME: the path of a program (bundle, else the build tree)
prog() {
    if [ -n "$bundle" ]; then echo "$bundle/bin/$1"; return; fi
    local d
    for d in tests bench gpu .; do
        [ -x "$BUILD/$d/$1" ] && [ -f "$BUILD/$d/$1" ] && { echo "$BUILD/$d/$1"; return; }
    done
    echo "$BUILD/missing/$1"
}

# run LOG TIMEOUT CMD...: CMD with its output appended to logs/LOG.log,
# killed after TIMEOUT s or when the budget runs out; sets rc and secs
run() {
    local log=$out/logs/$1.log t=$2; shift 2
    local left=$((BUDGET - ($(date +%s) - T0)))
    echo "\$ $*" >>"$log"
    if [ $left -lt 5 ]; then
        echo "check.sh: time budget of $BUDGET s used up; not run" >>"$log"
        rc=124 secs=0
        return
    fi
    [ "$t" -gt $left ] && t=$left
    local a=$(date +%s.%N)
    timeout -k 5 "$t" "$@" >>"$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "check.sh: timed out after $t s" >>"$log"
    secs=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $a }")
}

# result LOG: "passed=P failed=F" from the last RESULT line of logs/LOG.log
result() {
    awk '/^RESULT [0-9]+ [0-9]+$/ { p = $2; f = $3 } END { printf "passed=%d failed=%d", p, f }' \
        "$out/logs/$1.log"
}

# worst_rel LOG [PATTERN]: the largest "rel X" figure of tensor lines
worst_rel() {
    grep -E "^# .*${2:-}.* rel " "$out/logs/$1.log" | awk '{ v = $NF + 0; if (v > m) m = v }
        END { printf "%.3g", m }'
}

# ppm_of FIXTURE: the PPM of a fixture image gpu_generate reads, decoded at
# the start (decode_fixtures) or from a bundle made before that (images/)
ppm_of() {
    if [ -n "$bundle" ] && [ -d "$bundle/images" ]; then echo "$bundle/images/$1.ppm"
    else echo "$out/images/$1.ppm"; fi
}

# can_decode: whether gpu_generate decodes a JPEG here (libvips, not the stand-in)
can_decode() {
    "$(prog gpu_generate)" --decode tests/fixtures/photos/chelsea.jpg "$WORK/probe.ppm" >/dev/null 2>&1
}

# decode_fixtures: the fixtures' PNGs as PPM in $out/images, with
# gpu_generate --decode (libvips) where it can, else with Python's PIL (the
# bundle's stand-in reads PPM only; the official oracle reads the fixtures
# with PIL too, and they are 8-bit RGB, so the pixels are the same)
decode_fixtures() {
    local d f1 pil=""
    mkdir -p "$out/images"
    if ! can_decode; then
        for pil in python3 /usr/bin/python3 ""; do
            [ -n "$pil" ] && timeout 60 "$pil" -c 'import PIL' 2>/dev/null && break
        done
        [ -n "$pil" ] || echo "check.sh: neither libvips nor Python's PIL to decode the fixtures" >>"$out/logs/images.log"
    fi
    for d in tests/fixtures/e2e-*/ tests/fixtures/amg-synthetic*/ tests/fixtures/micro/; do
        f1=$(basename "$d")
        if [ -z "$pil" ]; then
            run images 30 "$(prog gpu_generate)" --decode "$d/image.png" "$out/images/$f1.ppm"
        else
            run images 30 "$pil" -c 'import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
open(sys.argv[2], "wb").write(b"P6\n%d %d\n255\n" % im.size + im.tobytes())' "$d/image.png" "$out/images/$f1.ppm"
        fi
    done
}

weights_of() { # fixture dir -> weights path named by its meta.json
    echo "tests/fixtures/$(sed -n 's/^ *"weights": *"\([^"]*\)".*/\1/p' "$1/meta.json")"
}

# ---- 0: environment --------------------------------------------------------
step_env() {
    local log=$out/logs/env.log missing=0 gpu="none" driver="none" b
    {
        echo "date: $(date -u)"; echo "host: $(uname -a)"; echo "cpus: $(nproc)"
        grep -m1 'model name' /proc/cpuinfo; grep MemTotal /proc/meminfo
        echo "mode: $([ $cpu = 1 ] && echo cpu || echo gpu) device=$DEVICE bundle=${bundle:-none} build=$BUILD"
        echo "libvips: $vips; LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
        [ -n "$bundle" ] && cat "$bundle/INFO"
        echo "--- nvidia-smi"; timeout 30 nvidia-smi 2>&1 || echo "(nvidia-smi failed: $?)"
        echo "--- nvcc"; (nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>&1 | tail -n 2
        echo "--- python3 torch"
        timeout 60 python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>&1 |
            tail -n 1
        echo "--- compute-sanitizer"; (timeout 30 $SANITIZER --version 2>&1 || echo none) | tail -n 1
    } >>"$log" 2>&1
    if command -v nvidia-smi >/dev/null 2>&1; then
        gpu=$(timeout 30 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | tr ' ' _)
        driver=$(timeout 30 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)
    fi
    local cuda_drv=$(timeout 30 nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1)
    # cuBLAS 13 from the CUDA toolkit, else from PyTorch's nvidia-cublas wheel
    b=$(prog test_cuda)
    if ldd "$b" 2>/dev/null | grep -q 'libcublas.*not found'; then
        local d
        for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
            $(timeout 30 python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null) \
            $(timeout 30 python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null); do
            if [ -e "$d/libcublas.so.13" ]; then
                export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
                echo "cuBLAS from $d" >>"$log"
                break
            fi
        done
    fi
    for b in test_ops test_cuda test_model test_amg test_decoder gpu_model gpu_generate gpu_amg_post bench_cuda; do
        echo "--- ldd $(prog $b)" >>"$log"
        if ! ldd "$(prog $b)" >>"$log" 2>&1 || ldd "$(prog $b)" 2>&1 | grep -q 'not found'; then
            missing=$((missing + 1))
        fi
    done
    local st=PASS
    [ $missing -gt 0 ] && st=FAIL
    [ $cpu = 0 ] && [ "$gpu" = none ] && st=FAIL
    if [ -n "$vips_missing" ]; then
        st=FAIL
        echo "libvips: $vips_missing/libvips.so.42 is missing or a dangling link (SAM2AMG_VIPS_DIR," \
            "make gpu-vips): the stand-in reads PPM only" >>"$log"
    fi
    row env $st "gpu=${gpu:-none} driver=${driver:-none} driver_cuda=${cuda_drv:-none}" \
        "build=$([ -n "$bundle" ] && sed -n 's/^nvcc: *//p' "$bundle/INFO" | awk '{print $NF}' || echo "$BUILD")" \
        "programs_with_missing_libs=$missing cpus=$(nproc)" \
        "images=$(can_decode && echo "jpeg/png/ppm" || echo "ppm only"):$(echo "$vips" | tr ' ' _)" \
        ${vips_missing:+"libvips_missing=$vips_missing/libvips.so.42"}
}

# ---- 1: ops ---------------------------------------------------------------
step_ops() {
    run test_ops 150 "$(prog test_ops)"
    local st=PASS cases
    cases=$(grep "^ok - cuda:0 " "$out/logs/test_ops.log" | grep -vc " opens ")
    [ $rc -ne 0 ] && st=FAIL
    [ $cpu = 0 ] && [ "$cases" -eq 0 ] && st=FAIL   # the device part must have run
    row ops_test_ops $st "$(result test_ops) device_cases_ok=$cases secs=$secs rc=$rc"
    local bok bbad
    bok=$(grep -c "^ok - cuda:0/bf16 " "$out/logs/test_ops.log")
    bbad=$(grep -c "^not ok - cuda:0/bf16 " "$out/logs/test_ops.log")
    if [ $cpu = 1 ]; then
        row ops_bf16 SKIP "cpu mode: the cpu backend has no bf16 (test_ops checked the bf16" \
            "reference's cost: $(grep -c '^ok - bf16 ' "$out/logs/test_ops.log") rows ok)"
    else
        st=PASS
        { [ "$bbad" -ne 0 ] || [ "$bok" -eq 0 ]; } && st=FAIL
        row ops_bf16 $st "test_ops cuda:0/bf16 ok=$bok failed=$bbad" \
            "fp32_attention=$(grep -c 'computed in float32' "$out/logs/test_ops.log")"
    fi
    run test_cuda 120 "$(prog test_cuda)"
    st=PASS
    [ $rc -ne 0 ] && st=FAIL
    if [ $cpu = 1 ]; then
        row ops_test_cuda SKIP "cpu mode ($(result test_cuda): device part skipped) rc=$rc"
        [ $rc -ne 0 ] && row ops_test_cuda_run FAIL "rc=$rc"
        row ops_test_cuda_tf32 SKIP "cpu mode"
        row ops_test_cuda_bf16 SKIP "cpu mode"
        return
    fi
    row ops_test_cuda $st "gemm=f32 $(result test_cuda) secs=$secs rc=$rc"
    local cok=$(grep -c '^ok - cuda bf16: ' "$out/logs/test_cuda.log")
    local cbad=$(grep -c '^not ok - cuda bf16: ' "$out/logs/test_cuda.log")
    st=PASS
    { [ "$cbad" -ne 0 ] || [ "$cok" -eq 0 ]; } && st=FAIL
    row ops_test_cuda_bf16 $st "test_cuda bf16 GEMM checks ok=$cok failed=$cbad" \
        "cublaslt_fallbacks=$(grep -c 'leaves cuBLASLt' "$out/logs/test_cuda.log")"
    SAM2AMG_CUDA_GEMM=tf32 run test_cuda_tf32 120 "$(prog test_cuda)"
    st=PASS
    [ $rc -ne 0 ] && st=FAIL
    row ops_test_cuda_tf32 $st "gemm=tf32 $(result test_cuda_tf32) secs=$secs rc=$rc"
}

# ---- 2: model -------------------------------------------------------------
step_model() {
    SAM2AMG_DEVICE=$DEVICE run test_model 120 "$(prog test_model)"
    local st=PASS
    [ $rc -ne 0 ] && st=FAIL
    row model_fixtures $st "device=$DEVICE micro,micro2 $(result test_model)" \
        "worst_rel=$(worst_rel test_model) (bar 1e-3) secs=$secs"
    # the fused low-rank ops (lowrank_expand, lowrank_rstd_gram: bf16) against
    # the composed ones, the whole decoder at d_model 256, random weights
    if [ $cpu = 1 ]; then
        row model_fused SKIP "cpu mode: the CPU backend has no fused low-rank ops"
    else
        SAM2AMG_DEVICE=$DEVICE run test_decoder_fused 180 "$(prog test_decoder)" --fused-only
        st=PASS
        [ $rc -ne 0 ] && st=FAIL
        row model_fused $st "device=$DEVICE $(result test_decoder_fused)" \
            "$(grep -o 'low_res max diff .*' "$out/logs/test_decoder_fused.log" | head -n 1 | tr ' ' '_') secs=$secs"
    fi
    local cfgs="tiny large" extra="--tf32 --bf16"
    if [ $cpu = 1 ]; then
        cfgs="micro micro2"
        [ $tiny = 1 ] && cfgs="$cfgs tiny"
        extra=""
    fi
    run gpu_model 300 "$(prog gpu_model)" --device "$DEVICE" --time 3 $extra $cfgs
    local log=$out/logs/gpu_model.log
    local p=$(grep -E '^ok - ' "$log" | grep -v '\[bf16\]' | grep -vc '\[tf32\]')
    local f=$(grep -E '^not ok - ' "$log" | grep -v '\[bf16\]' | grep -vc '\[tf32\]')
    st=PASS
    { [ $f -ne 0 ] || [ $p -eq 0 ] || { [ $rc -ne 0 ] && [ $rc -ne 1 ]; }; } && st=FAIL
    row model_fullsize $st "device=$DEVICE configs=${cfgs// /,} gemm=f32 passed=$p failed=$f" \
        "worst_rel=$(grep -v '\[tf32\]' "$log" | grep -v '\[bf16\]' | grep -E '^# .* rel ' | awk '{ v = $NF + 0; if (v > m) m = v } END { printf "%.3g", m }')" \
        "(bar 1e-3) secs=$secs rc=$rc"
    if [ -n "$extra" ]; then
        p=$(grep -E '^ok - .*\[tf32\]' "$log" | wc -l)
        f=$(grep -E '^not ok - .*\[tf32\]' "$log" | wc -l)
        st=PASS
        { [ $f -ne 0 ] || [ $p -eq 0 ]; } && st=FAIL
        row model_fullsize_tf32 $st "gemm=tf32 passed=$p failed=$f worst_rel=$(worst_rel gpu_model '\[tf32\]')" \
            "(bar 1e-2, a first guess)"
    else
        row model_fullsize_tf32 SKIP "cpu mode"
    fi
    if [ $cpu = 1 ]; then
        row model_fullsize_bf16 SKIP "cpu mode: no bf16 on the cpu backend"
        row bf16_quality SKIP "cpu mode: no bf16 on the cpu backend"
        return
    fi
    p=$(grep -E '^ok - .*\[bf16\]: load, encode, decode' "$log" | wc -l)
    f=$(grep -E '^not ok - .*\[bf16\]' "$log" | wc -l)
    st=PASS
    { [ $f -ne 0 ] || [ $p -eq 0 ]; } && st=FAIL
    row model_fullsize_bf16 $st "precision=bf16 runs_ok=$p runs_failed=$f worst_rel=$(worst_rel gpu_model '\[bf16\]')" \
        "(report only: bf16's bar is bf16_quality)"
    run bf16_quality 180 "$(prog gpu_model)" --device "$DEVICE" --quality 32 --quality-only large
    log=$out/logs/bf16_quality.log
    local q=$(sed -n 's/^quality large mean_iou \([0-9.]*\) min_iou \([0-9.]*\) below_0.9 \([0-9]*\) prompts \([0-9]*\) nonempty \([0-9]*\).*/mean_iou=\1 min_iou=\2 below_0.9=\3 prompts=\4 nonempty=\5/p' "$log")
    st=PASS
    { [ $rc -ne 0 ] || ! grep -q '^ok - large: bf16 vs fp32 best-mask IoU' "$log"; } && st=FAIL
    row bf16_quality $st "large 32x32 grid ${q:-no quality line} (bar mean>=0.99) secs=$secs rc=$rc"
}

# ---- 3: e2e and replay -----------------------------------------------------
step_e2e() {
    local gen=$(prog gpu_generate) cmp=$(prog test_amg) p=0 f=0 f1 d w a=$(date +%s)
    mkdir -p "$out/e2e"
    for f1 in e2e-m2m e2e-minarea e2e-crops e2e-micro2; do
        d=tests/fixtures/$f1
        w=$(weights_of "$d")
        run e2e 120 "$gen" --device "$DEVICE" --precision fp32 --model "$w" --config "$d/meta.json" \
            "$(ppm_of $f1)" -o "$out/e2e/$f1.json"
        if [ $rc -eq 0 ]; then
            run e2e 60 "$cmp" --compare "$d/amg.json" "$out/e2e/$f1.json" 0.98 0.99
        fi
        [ $rc -eq 0 ] && p=$((p + 1)) || { f=$((f + 1)); echo "FAILED: $f1" >>"$out/logs/e2e.log"; }
    done
    # micro, as tests/test_generate.sh runs it: the .pt checkpoint (zip + pickle)
    d=tests/fixtures/micro
    run e2e 120 "$gen" --device "$DEVICE" --precision fp32 --model "$d/weights.pt" --config "$d/meta.json" \
        "$(ppm_of micro)" -o "$out/e2e/micro.json"
    [ $rc -eq 0 ] && run e2e 60 "$cmp" --compare "$d/amg.json" "$out/e2e/micro.json" 0.98 0.99
    [ $rc -eq 0 ] && p=$((p + 1)) || { f=$((f + 1)); echo "FAILED: micro" >>"$out/logs/e2e.log"; }
    # negative controls: without the option the official records are not reproduced
    d=tests/fixtures/e2e-m2m
    sed 's/"use_m2m": true/"use_m2m": false/' "$d/meta.json" >"$out/e2e/no-m2m.json"
    run e2e 120 "$gen" --device "$DEVICE" --precision fp32 --model "$(weights_of $d)" --config "$out/e2e/no-m2m.json" \
        "$(ppm_of e2e-m2m)" -o "$out/e2e/no-m2m.out.json"
    [ $rc -eq 0 ] && run e2e 60 "$cmp" --compare "$d/amg.json" "$out/e2e/no-m2m.out.json" 0.98 0.99 &&
        [ $rc -eq 1 ] && p=$((p + 1)) || { f=$((f + 1)); echo "FAILED: no-m2m control" >>"$out/logs/e2e.log"; }
    d=tests/fixtures/e2e-minarea
    run e2e 120 "$gen" --device "$DEVICE" --precision fp32 --model "$(weights_of $d)" --config "$d/meta.json" \
        --min-mask-region-area 0 "$(ppm_of e2e-minarea)" -o "$out/e2e/no-minarea.json"
    [ $rc -eq 0 ] && run e2e 60 "$cmp" --compare "$d/amg.json" "$out/e2e/no-minarea.json" 0.98 0.99 &&
        [ $rc -eq 1 ] && p=$((p + 1)) || { f=$((f + 1)); echo "FAILED: min-area control" >>"$out/logs/e2e.log"; }
    local st=PASS
    [ $f -ne 0 ] && st=FAIL
    row e2e $st "device=$DEVICE passed=$p failed=$f (5 fixtures at >=98% records IoU>=0.99, 2 controls)" \
        "secs=$(($(date +%s) - a))"
    # bf16: the same fixtures, against this run's fp32 records
    if [ $cpu = 1 ]; then
        row e2e_bf16 SKIP "cpu mode: no bf16 on the cpu backend"
    else
        p=0 f=0 a=$(date +%s)
        local figs=""
        for f1 in e2e-m2m e2e-minarea e2e-crops e2e-micro2 micro; do
            d=tests/fixtures/$f1
            w=$(weights_of "$d")
            [ $f1 = micro ] && w=$d/weights.pt
            rc=1
            [ -s "$out/e2e/$f1.json" ] &&
                run e2e_bf16 120 "$gen" --device "$DEVICE" --precision bf16 --model "$w" \
                    --config "$d/meta.json" "$(ppm_of $f1)" -o "$out/e2e/$f1.bf16.json" &&
                [ $rc -eq 0 ] &&
                run e2e_bf16 60 "$cmp" --compare "$out/e2e/$f1.json" "$out/e2e/$f1.bf16.json" 0.95 0.95
            figs="$figs $f1:$(tail -n 1 "$out/logs/e2e_bf16.log" | awk '/^expected/ { print $6 "/" $2 }')"
            [ $rc -eq 0 ] && p=$((p + 1)) || { f=$((f + 1)); echo "FAILED: $f1 bf16" >>"$out/logs/e2e_bf16.log"; }
        done
        st=PASS
        [ $f -ne 0 ] && st=FAIL
        row e2e_bf16 $st "passed=$p failed=$f (bf16 >=95% of the fp32 records at IoU>=0.95;" \
            "matched/fp32:$figs) secs=$(($(date +%s) - a))"
    fi
    p=0 f=0 a=$(date +%s)
    for d in tests/fixtures/amg-synthetic*/; do
        f1=$(basename "$d")
        run replay 60 "$gen" --config "$d/meta.json" --replay-decoder "$d/expected.safetensors" \
            "$(ppm_of $f1)" -o "$out/e2e/$f1.json"
        [ $rc -eq 0 ] && run replay 60 "$cmp" --compare "$d/amg.json" "$out/e2e/$f1.json"
        [ $rc -eq 0 ] && p=$((p + 1)) || { f=$((f + 1)); echo "FAILED: $f1" >>"$out/logs/replay.log"; }
    done
    st=PASS
    { [ $f -ne 0 ] || [ $p -eq 0 ]; } && st=FAIL
    row replay $st "passed=$p failed=$f (post-processing only, no device work) secs=$(($(date +%s) - a))"
    step_post
}

# ---- 3b: post-processing on the device (issue 8) -----------------------------
# gpu_amg_post: the replay fixtures and synthetic decoders at real image sizes
# through the device's post-processing against the CPU path, records
# identical; then (GPU) the end-to-end fixtures' records with the device
# post-processing (the default on CUDA) against SAM2AMG_GPU_POST=0 and =staged,
# byte for byte, and gpu_generate -v must say the logits stayed on the device
# in every decoder call (none with m2m or min-area filling), or the in-place
# path would go untested. --cpu: the device algorithm in C, with the logits
# in place in the CPU backend's memory (SAM2AMG_GPU_POST=ref), against the
# CPU path.
step_post() {
    local dev=$DEVICE
    run post 240 "$(prog gpu_amg_post)" --device "$dev" --threads "$(nproc)"
    local log=$out/logs/post.log st=PASS
    local ndev=$(sed -n 's/^# \([0-9]*\) cases on .*/\1/p' "$log" | tail -n 1)
    local t=$(awk '/^time synthetic 2250x1500 pps 32 layers 0 thresholds 0 / { printf "cpu=%sms dev=%sms dev_staged=%sms", $11, $13, $15 }' "$log")
    [ $rc -ne 0 ] && st=FAIL
    [ $cpu = 0 ] && [ "${ndev:-0}" -eq 0 ] && st=FAIL   # the device part must have run
    row post_replay $st "device=$dev $(result post) device_cases=${ndev:-0}" \
        "${t:+2250x1500_thr0_post: $t }secs=$secs rc=$rc"
    # property cases: random sizes (1x1, one-pixel lines) and parameters
    # (SAM2AMG_CHECK_POST_RANDOM of them, default 100: ~90 s on 16 cores)
    local nr=${SAM2AMG_CHECK_POST_RANDOM:-100}
    [ $cpu = 1 ] && nr=${SAM2AMG_CHECK_POST_RANDOM:-40}   # (tests/test_gpu_check.sh: 10)
    run post_random 240 "$(prog gpu_amg_post)" --device "$dev" --threads "$(nproc)" --random $nr
    st=PASS
    ndev=$(sed -n 's/^# \([0-9]*\) cases on .*/\1/p' "$out/logs/post_random.log" | tail -n 1)
    [ $rc -ne 0 ] && st=FAIL
    [ $cpu = 0 ] && [ "${ndev:-0}" -ne $nr ] && st=FAIL
    row post_random $st "device=$dev $(result post_random) random_cases=$nr device_cases=${ndev:-0}" \
        "$(grep -o 'random cases: .* reproduces them' "$out/logs/post_random.log") secs=$secs rc=$rc"
    local gen=$(prog gpu_generate) p=0 f=0 f1 d a=$(date +%s) want line on ienv=
    [ $cpu = 1 ] && ienv=ref
    for f1 in e2e-m2m e2e-minarea e2e-crops e2e-micro2; do
        d=tests/fixtures/$f1
        [ -s "$out/e2e/$f1.json" ] || { f=$((f + 1)); echo "FAILED: $f1 (no device output)" >>"$log"; continue; }
        # where the post-processing ran: the logits left in place in every
        # decoder call, or in none with m2m or min-area filling
        want=all
        case $f1 in e2e-m2m|e2e-minarea) want=none ;; esac
        SAM2AMG_GPU_POST=$ienv run post 120 "$gen" -v --device "$DEVICE" --precision fp32 --model "$(weights_of "$d")" \
            --config "$d/meta.json" "$(ppm_of $f1)" -o "$out/e2e/$f1.inplace-post.json"
        line=$(tail -n 1 "$log" | grep -o 'post-processing on [^,]*, logits left on the device in [0-9]* of [0-9]* decoder calls$')
        on=$(echo "$line" | sed -n 's/^post-processing on \([^,]*\),.*/\1/p')
        set -- $(echo "$line" | sed -n 's/.* in \([0-9]*\) of \([0-9]*\) decoder calls$/\1 \2/p') x x
        if [ $rc -eq 0 ] && cmp "$out/e2e/$f1.json" "$out/e2e/$f1.inplace-post.json" >>"$log" 2>&1 &&
            [ -n "$on" ] && [ "$on" != cpu ] && [ "$2" != x ] && [ "$2" -gt 0 ] &&
            { { [ $want = all ] && [ "$1" -eq "$2" ]; } || { [ $want = none ] && [ "$1" -eq 0 ]; }; }; then
            p=$((p + 1))
        else
            f=$((f + 1)); echo "FAILED: $f1 (device post-processing, logits in place in $want of the decoder calls: got '${line:-no -v line}')" >>"$log"
        fi
        [ $cpu = 1 ] && continue   # no device: =0 and =staged are the CPU path
        SAM2AMG_GPU_POST=0 run post 120 "$gen" --device "$DEVICE" --precision fp32 --model "$(weights_of "$d")" \
            --config "$d/meta.json" "$(ppm_of $f1)" -o "$out/e2e/$f1.cpu-post.json"
        if [ $rc -eq 0 ] && cmp "$out/e2e/$f1.json" "$out/e2e/$f1.cpu-post.json" >>"$log" 2>&1; then
            p=$((p + 1))
        else
            f=$((f + 1)); echo "FAILED: $f1 (device and CPU post-processing differ)" >>"$log"
        fi
        # the logits staged through the host (the default leaves them on the device)
        SAM2AMG_GPU_POST=staged run post 120 "$gen" --device "$DEVICE" --precision fp32 --model "$(weights_of "$d")" \
            --config "$d/meta.json" "$(ppm_of $f1)" -o "$out/e2e/$f1.staged-post.json"
        if [ $rc -eq 0 ] && cmp "$out/e2e/$f1.json" "$out/e2e/$f1.staged-post.json" >>"$log" 2>&1; then
            p=$((p + 1))
        else
            f=$((f + 1)); echo "FAILED: $f1 (device post-processing with staged and in-place logits differ)" >>"$log"
        fi
    done
    st=PASS
    { [ $f -ne 0 ] || [ $p -eq 0 ]; } && st=FAIL
    if [ $cpu = 1 ]; then
        row post_e2e $st "passed=$p failed=$f (cpu mode: the device algorithm in C, SAM2AMG_GPU_POST=ref, logits in place where they can be == the CPU path's, byte for byte)" \
            "secs=$(($(date +%s) - a))"
    else
        row post_e2e $st "passed=$p failed=$f (generate on $DEVICE: device post-processing, logits in place (every call, none with m2m/min-area) and staged, == CPU's, byte for byte)" \
            "secs=$(($(date +%s) - a))"
    fi
}

# ---- 4: compute-sanitizer ---------------------------------------------------
step_sanitizer() {
    if [ $cpu = 1 ]; then
        row sanitizer_test_cuda SKIP "cpu mode"
        row sanitizer_generate SKIP "cpu mode"
        return
    fi
    if [ -z "$SANITIZER" ]; then
        row sanitizer_test_cuda FAIL "compute-sanitizer not found"
        row sanitizer_generate FAIL "compute-sanitizer not found"
        return
    fi
    mkdir -p "$out/e2e"   # the generate's JSON goes there (also when step e2e did not run)
    local cs=("$SANITIZER" --tool memcheck --report-api-errors no --error-exitcode 99 --print-limit 20)
    run sanitizer_test_cuda 180 "${cs[@]}" "$(prog test_cuda)"
    local errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$out/logs/sanitizer_test_cuda.log" | tail -n 1)
    local st=PASS
    { [ $rc -ne 0 ] || [ "${errs:-x}" != 0 ]; } && st=FAIL
    row sanitizer_test_cuda $st "errors=${errs:-none} $(result sanitizer_test_cuda) secs=$secs rc=$rc"
    local d=tests/fixtures/e2e-micro2
    run sanitizer_generate 180 "${cs[@]}" "$(prog gpu_generate)" --device cuda:0 --model "$(weights_of $d)" \
        --config "$d/meta.json" "$(ppm_of e2e-micro2)" -o "$out/e2e/sanitizer-micro2.json"
    errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$out/logs/sanitizer_generate.log" | tail -n 1)
    st=PASS
    { [ $rc -ne 0 ] || [ "${errs:-x}" != 0 ]; } && st=FAIL
    row sanitizer_generate $st "e2e-micro2 errors=${errs:-none} secs=$secs rc=$rc"
}

# ---- 5: bench ----------------------------------------------------------------
# kernels: bench_cuda and the model timings alone (bench without ours and
# official, whose rows a session may already have)
step_kernels() {
    if [ $cpu = 1 ]; then
        row bench_cuda SKIP "cpu mode"
    else
        run bench_cuda 180 "$(prog bench_cuda)"
        local st=PASS n=$(grep -cE ' ms ' "$out/logs/bench_cuda.log")
        { [ $rc -ne 0 ] || [ "$n" -eq 0 ]; } && st=FAIL
        row bench_cuda $st "timed=$n (bf16 GEMMs: $(grep -c '^bf16 .* ms ' "$out/logs/bench_cuda.log"))" \
            "$(grep -c '^check .* ok$' "$out/logs/bench_cuda.log")_checks_ok secs=$secs rc=$rc"
    fi
    # the model timings of step 2 (best of 3 on the device, after the parity run)
    local t=$(awk '/^time / { printf "%s%s:%s:enc=%sms:dec=%sms", sep, $2, $3, $5, $7; sep = " " }' \
        "$out/logs/gpu_model.log" 2>/dev/null)
    if [ -n "$t" ]; then row bench_model PASS "$t"
    elif [ ! -e "$out/logs/gpu_model.log" ]; then
        row bench_model SKIP "step model did not run (SAM2AMG_CHECK_STEPS): its timings are the row"
    else row bench_model FAIL "no timings in gpu_model.log"; fi
}

step_bench() {
    step_kernels
    step_ours
    step_official
}

# need_py ROW: find_py, and when there is none the row ROW (SKIP under
# --cpu, FAIL on a GPU machine, whose image has torch) and status 1
need_py() {
    find_py
    [ -n "$py" ] && return 0
    if [ $cpu = 1 ]; then row "$1" SKIP "no python3 with torch here"
    else row "$1" FAIL "no python3 with torch"; fi
    return 1
}

# find_py: a python3 that imports torch, into $py ("" when none)
find_py() {
    local c
    py=""
    for c in python3 /usr/bin/python3; do
        command -v "$c" >/dev/null 2>&1 && timeout 60 "$c" -c 'import torch' 2>/dev/null && { py=$c; return; }
    done
}

# ours on the official side by side's images (issue 16's benchmark): the
# whole generator (gpu_generate --random CONFIG --time 3, amg_batcher as
# `generate` runs it) with random weights of the real shapes, points_per_side
# 32, all 1024 prompts in one decoder batch, thresholds as the official
# defaults and 0; rows "ours_CONFIG_PREC_WxH_THR" in official_bench.py's
# format. The images are official_bench.py's (--images-only), so both sides
# segment the same pixels. Then large bf16 at several decoder chunk sizes
# (SAM2AMG_DECODER_ROWS; SAM2AMG_BENCH_ROWS lists them): rows ours_rows_N.
# --cpu: micro on a fixture image, 4x4 points.
# A run that exits non-zero fails the step even when it printed some rows
# (a crash or timeout after the first image leaves the others unreported).
step_ours() {
    local gen=$(prog gpu_generate) cfg prec imgs=() a=$(date +%s) p=0 f=0 l bad=()
    local log=$out/logs/ours.log
    # a run that ends other than 0 or 1 (1: its failed images are FAIL
    # rows) crashed, was killed or timed out: the rows it did not print
    # are missing, so it is a FAIL row of its own
    ours_rc() { [ $rc -eq 0 ] || [ $rc -eq 1 ] || bad+=("$1 $rc"); }
    if [ $cpu = 1 ]; then
        run ours 120 "$gen" --random micro --time 1 --device cpu --precision fp32 --points-per-side 4 \
            --points-per-batch 16 --both-thresholds --row ours_micro_fp32 "$(ppm_of micro)"
        ours_rc ours_micro_fp32
    else
        find_py
        if [ -n "$py" ]; then
            run ours 90 "$py" tests/gpu/official_bench.py --images-only --save-images "$out/bench_images" \
                --sizes 1024x768,2250x1500
        fi
        imgs=("$out/bench_images/official_1024x768.ppm" "$out/bench_images/official_2250x1500.ppm")
        if [ ! -s "${imgs[1]}" ]; then
            local why=$(grep '^official: ' "$out/logs/ours.log" 2>/dev/null | tail -n 1)
            row bench_ours FAIL "no benchmark images (official_bench.py --images-only: ${why:-python3 with torch needed})"
            return
        fi
        for cfg in ${SAM2AMG_BENCH_CONFIGS:-large tiny}; do
            for prec in bf16 fp32; do
                run ours 120 "$gen" --random "$cfg" --time 3 --device "$DEVICE" --precision "$prec" \
                    --points-per-side 32 --points-per-batch 1024 --both-thresholds \
                    --row "ours_${cfg}_${prec}" "${imgs[@]}"
                ours_rc "ours_${cfg}_${prec}"
            done
        done
    fi
    # the decoder's chunk (image rows per chunk, SAM2AMG_DECODER_ROWS): large
    # bf16 on the smaller image at the official defaults, where the decoder
    # is most of the time; rows ours_rows_N
    if [ $cpu = 0 ]; then
        local rows
        for rows in ${SAM2AMG_BENCH_ROWS:-65536 262144 524288 1048576}; do
            SAM2AMG_DECODER_ROWS=$rows run ours 60 "$gen" --random large --time 3 --device "$DEVICE" \
                --precision bf16 --points-per-side 32 --points-per-batch 1024 \
                --row "ours_rows_$rows" "${imgs[0]}"
            ours_rc "ours_rows_$rows"
        done
        # the same with the fused low-rank ops left out (SAM2AMG_CUDA_FUSED=0:
        # bmm, row_affine, the upscaling's passes as before), for the A/B of
        # the fused kernels; row ours_unfused (SAM2AMG_BENCH_UNFUSED=0: none)
        if [ "${SAM2AMG_BENCH_UNFUSED:-1}" != 0 ]; then
            SAM2AMG_CUDA_FUSED=0 run ours 60 "$gen" --random large --time 3 --device "$DEVICE" \
                --precision bf16 --points-per-side 32 --points-per-batch 1024 \
                --row ours_unfused "${imgs[0]}"
            ours_rc ours_unfused
        fi
    fi
    while IFS= read -r l; do
        case ${l#*: } in PASS*) p=$((p + 1)) ;; *) f=$((f + 1)) ;; esac
        row "${l%%: *}" "$(echo "${l#*: }" | cut -d' ' -f1)" "$(echo "${l#*: }" | cut -d' ' -f2-)"
    done < <(grep -E '^ours_[A-Za-z0-9x_]+: (PASS|FAIL)' "$log")
    local exits=""
    for l in "${bad[@]}"; do
        f=$((f + 1))
        row "${l% *}" FAIL "gpu_generate exit ${l##* } (crashed, killed or timed out: rows missing; logs/ours.log)"
        exits="$exits ${l% *}:exit=${l##* }"
    done
    local st=PASS
    { [ $f -ne 0 ] || [ $p -eq 0 ]; } && st=FAIL
    row bench_ours $st "runs=$p failed=$f secs=$(($(date +%s) - a))${exits:+ exits:$exits}"
}

# the official SAM2AutomaticMaskGenerator on the same device (issue 16's side
# by side): tests/gpu/official_bench.py with the bundle's official source and
# oracle; its "official_*" lines become rows. --cpu: a smoke run of the
# script (micro, 4x4 points, fp32) when a python3 with torch exists, else a
# visible SKIP. On a GPU it gets what is left of the budget, at most 240 s.
step_official() {
    need_py bench_official || return
    local args=() left=$((BUDGET - ($(date +%s) - T0) - 10))
    if [ $cpu = 1 ]; then
        args=(--cpu --configs micro --precisions fp32 --points-per-side 4 --sizes 320x240 --budget 120)
        left=180
    else
        [ $left -gt 240 ] && left=240
        args=(--budget $((left - 40)) ${SAM2AMG_OFFICIAL_ARGS:-})
    fi
    run official $left "$py" tests/gpu/official_bench.py "${args[@]}"
    local log=$out/logs/official.log l
    local name
    while IFS= read -r l; do   # "official: ..." (its summary) is the row bench_official
        name=${l%%: *}
        [ "$name" = official ] && name=bench_official
        row "$name" "$(echo "${l#*: }" | cut -d' ' -f1)" "$(echo "${l#*: }" | cut -d' ' -f2-) step_secs=$secs"
    done < <(grep -E '^official(_[A-Za-z0-9x_]+)?: (PASS|FAIL|SKIP)' "$log")
    grep -qE '^official: ' "$log" || row bench_official FAIL "official_bench.py ended without a summary rc=$rc secs=$secs"
}

# ---- fidelity: ours against the official generator on the same weights --------
# fid_fig: "matched/expected worst_iou=W" of fidelity.log's last comparison
fid_fig() {
    tail -n 1 "$out/logs/fidelity.log" | awk '/^expected/ { print $6 "/" $2 " worst_iou=" $10 }'
}

# official_bench.py builds the official model with random weights of the
# real shape (large; --cpu: micro), saves them as an official-style .pt and
# its records at thresholds 0 (every mask reaches the post-processing: the
# real test of record-for-record fidelity, ~20 records after the NMS) on
# its 1024x768 image, in eager fp32 and under autocast(bf16); ours
# (gpu_generate --model that .pt) must match the fp32 records as the
# end-to-end fixtures do (>= 98% at mask IoU >= 0.99); ours in bf16 against
# the official autocast run is reported (bar of e2e_bf16, report only).
# The weights go to the scratch folder (0.9 GB for large), not OUTDIR;
# step run uses them again. Control, reported beside: the official's own
# records of the same weights and image made on a CPU (tests/gpu/ref/,
# Debian's torch 1.13), compared with its records here and with ours, i.e.
# how closely the official code reproduces itself across devices.
step_fidelity() {
    need_py fidelity || return
    local tmp pps=32 sz=1024x768 cfgs=${SAM2AMG_FID_CONFIGS:-large} precs=fp32,bf16 a=$(date +%s)
    local cref
    local args=()
    tmp=$WORK   # the weights stay for step run
    if [ $cpu = 1 ]; then
        pps=8 sz=320x240 cfgs=micro precs=fp32 args=(--cpu)
    fi
    mkdir -p "$out/e2e"
    run fidelity 240 "$py" tests/gpu/official_bench.py "${args[@]}" --configs "$cfgs" \
        --precisions "$precs" --thresholds zero --sizes "$sz" --points-per-side "$pps" \
        --save-weights "$tmp/w" --save-records "$out/e2e" --save-images "$tmp/img" --budget 200
    local gen=$(prog gpu_generate) cmp=$(prog test_amg) cfg prec ref got p=0 f=0 figs=""
    for cfg in $cfgs; do
        for prec in ${precs//,/ }; do
            ref=$out/e2e/official_${cfg}_${prec}_${sz}_zero.json
            got=$out/e2e/ours_${cfg}_${prec}_${sz}_zero.json
            if [ ! -s "$ref" ] || [ ! -s "$tmp/w/$cfg.pt" ]; then
                f=$((f + 1)); figs="$figs $cfg/$prec:no-official-records"
                continue
            fi
            run fidelity 180 "$gen" --device "$DEVICE" --precision "$prec" --model "$tmp/w/$cfg.pt" \
                --config "$cfg" --points-per-side "$pps" --pred-iou-thresh 0 \
                --stability-score-thresh 0 "$tmp/img/official_$sz.ppm" -o "$got"
            if [ $rc -ne 0 ]; then
                f=$((f + 1)); figs="$figs $cfg/$prec:ours-failed"
                continue
            fi
            if [ "$prec" = fp32 ]; then
                run fidelity 60 "$cmp" --compare "$ref" "$got" 0.98 0.99
                [ $rc -eq 0 ] && p=$((p + 1)) || f=$((f + 1))
            else   # report only
                run fidelity 60 "$cmp" --compare "$ref" "$got" 0.95 0.95
                p=$((p + 1))
            fi
            figs="$figs $cfg/$prec:$(fid_fig)"
            # the control (report only): the official's own records of the
            # same seeded weights and image made on the CPU (Debian's torch
            # 1.13, tests/gpu/ref), against its records here and against ours
            cref=tests/gpu/ref/official_${cfg}_fp32_${sz}_zero.cpu.json
            if [ "$prec" = fp32 ] && [ -s "$cref" ]; then
                run fidelity 60 "$cmp" --compare "$cref" "$ref" 0.98 0.99
                figs="$figs official_vs_its_cpu_records:$(fid_fig)"
                run fidelity 60 "$cmp" --compare "$cref" "$got" 0.98 0.99
                figs="$figs ours_vs_official_cpu_records:$(fid_fig)"
            fi
        done
    done
    local st=PASS
    { [ $f -ne 0 ] || [ $p -eq 0 ]; } && st=FAIL
    row fidelity $st "passed=$p failed=$f (ours vs the official generator, same random weights," \
        "thresholds 0, $sz, ${pps}x$pps points; fp32 >= 98% at IoU 0.99, bf16 report only;" \
        "matched/official:$figs) secs=$(($(date +%s) - a))"
}

# ---- run: issue 8's end-to-end job (sam2amg run, SQLite store) -------------
# The bundle's sam2amg over a manifest of SAM2AMG_RUN_IMAGES (200) images,
# official_bench.py's 1024x768 and 2250x1500 alternating (hard links): JPEG
# (quality 95) where libvips decodes here (a carried gpu-vips/, see
# "libvips" above), else PPM, said in the rows; with random weights of
# large (the .pt step fidelity saved, else official_bench.py
# --weights-only), the official defaults and the cuda defaults (bf16,
# points_per_batch auto), with one worker and with two on the one GPU
# (--devices cuda:0,cuda:0): rows run_1worker, run_2workers (images/s and
# masks/s over the wall time, model load included, and over the workers'
# own time; the GPU busy fraction and memory peak NVML measured); then the
# official generator in a Python loop over the same manifest writing JSON
# (official_bench.py --loop: PIL decode, eager fp32 and autocast bf16, each
# for at most half the time left): rows official_loop_large_fp32/bf16.
# Row run_oom: out of memory during images on the device (the test hook
# SAM2AMG_FAULT_BATCH_MAX=16 at --points-per-batch 64, thresholds 0) is
# recovered by halving, no image fails, and the masks equal a run at 16.
# --cpu: micro2 from the fixtures on 6 images (two fixture photos as JPEG
# where libvips decodes, else fixture PPMs), --devices cpu (a smoke run of
# the step).
step_run() {
    local sam=$(prog sam2amg) a=$(date +%s) n=${SAM2AMG_RUN_IMAGES:-200} i devs tag
    local d=$WORK/run w cfg pps=32 srcs=() ext=ppm
    mkdir -p "$d/img"
    can_decode && ext=jpg
    if [ $cpu = 1 ]; then
        n=6 w=tests/fixtures/micro2/weights.safetensors cfg=micro2 pps=4
        srcs=("$(ppm_of e2e-micro2)" "$(ppm_of micro)")
        [ $ext = jpg ] && srcs=(tests/fixtures/photos/chelsea.jpg tests/fixtures/photos/rocket.jpg)
    else
        find_py
        w=$WORK/w/large.pt cfg=large
        if [ ! -s "$w" ] && [ -n "$py" ]; then
            run run 240 "$py" tests/gpu/official_bench.py --configs large --weights-only \
                --save-weights "$WORK/w"
        fi
        [ -n "$py" ] && run run 90 "$py" tests/gpu/official_bench.py --images-only \
            --save-images "$d/src" --sizes 1024x768,2250x1500
        srcs=("$d/src/official_1024x768.$ext" "$d/src/official_2250x1500.$ext")
        if [ ! -s "$w" ] || [ ! -s "${srcs[1]}" ]; then
            local why=$(grep '^official: ' "$out/logs/run.log" 2>/dev/null | tail -n 1)
            row run FAIL "no weights or images (official_bench.py: ${why:-python3 with torch needed})"
            return
        fi
    fi
    : >"$d/manifest.txt"
    for ((i = 0; i < n; i++)); do
        ln -f "${srcs[i % 2]}" "$d/img/$i.$ext" 2>/dev/null || cp "${srcs[i % 2]}" "$d/img/$i.$ext"
        echo "$d/img/$i.$ext" >>"$d/manifest.txt"
    done
    for devs in "$DEVICE" "$DEVICE,$DEVICE"; do
        tag=1worker
        [ "$devs" != "$DEVICE" ] && tag=2workers
        rm -f "$d/$tag.db"*
        local t0=$(date +%s.%N)
        run "run_$tag" 300 "$sam" run "$d/$tag.db" --manifest "$d/manifest.txt" --model "$w" \
            --config "$cfg" --devices "$devs" --points-per-side $pps -v
        local wall=$(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t0 }") log=$out/logs/run_$tag.log
        local done=$(sed -n 's/.* \([0-9]*\) images done (\([0-9]*\) masks).*/\1 \2/p' "$log" | tail -n 1)
        local busy=$(grep -o 'GPU busy [0-9.]*%' "$log" | tr '\n' ' ' | sed 's/GPU busy //g')
        local mem=$(sed -n 's/.*GPU memory peak \([0-9]*\) MiB of \([0-9]*\) MiB.*/\1_of_\2_MiB/p' "$log" |
            tr '\n' ' ')
        local wk=$(sed -n 's/.*: \([0-9]*\) images\{0,1\} in \([0-9.]*\) s:.*model busy \([0-9]*%\).*/\1@\2s(model busy \3)/p' "$log" |
            tr '\n' ' ')
        # steady state, as the official loop is timed (its build and first
        # image untimed): images after the first over the span of their
        # finishing times in the store
        local steady
        steady=$("$sam" sql "$d/$tag.db" "select printf('%.3f', (count(*) - 1) /
            (max(finished_at) - min(finished_at))) from images where status = 'done'
            having count(*) > 1 and max(finished_at) > min(finished_at)" 2>/dev/null)
        set -- $done x x
        local st=PASS
        { [ $rc -ne 0 ] || [ "$1" != "$n" ]; } && st=FAIL
        row "run_$tag" $st "devices=$devs images=${1} of $n ($ext) masks=${2} wall_s=$wall" \
            "images_per_s=$(awk "BEGIN { printf \"%.3f\", ${1:-0} / $wall }" 2>/dev/null)" \
            "steady_images_per_s=${steady:-none}" \
            "masks_per_s=$(awk "BEGIN { printf \"%.1f\", ${2:-0} / $wall }" 2>/dev/null)" \
            "workers: ${wk:-none} gpu_busy: ${busy:-not measured} gpu_mem_peak: ${mem:-not measured} rc=$rc"
    done
    # out of memory during an image on the device (the test hook fails every
    # decoder batch over 16 prompts): the batch halves and the image is
    # retried, no image fails, and the records equal a run at 16 per batch
    local k=$((n < 4 ? n : 4)) opps=$((pps < 8 ? 8 : pps))   # >= 64 prompts: a batch of 64
    head -n $k "$d/manifest.txt" >"$d/m4.txt"
    rm -f "$d/oom.db"* "$d/ref16.db"*
    SAM2AMG_FAULT_BATCH_MAX=16 run run_oom 240 "$sam" run "$d/oom.db" --manifest "$d/m4.txt" \
        --model "$w" --config "$cfg" --devices "$DEVICE" --points-per-side $opps \
        --points-per-batch 64 --pred-iou-thresh 0 --stability-score-thresh 0 -v
    local orc=$rc
    run run_oom 240 "$sam" run "$d/ref16.db" --manifest "$d/m4.txt" --model "$w" --config "$cfg" \
        --devices "$DEVICE" --points-per-side $opps --points-per-batch 16 --pred-iou-thresh 0 \
        --stability-score-thresh 0
    local q1 q2 nd
    q1=$("$sam" sql "$d/oom.db" "select count(*), sum(area) from masks" 2>/dev/null)
    q2=$("$sam" sql "$d/ref16.db" "select count(*), sum(area) from masks" 2>/dev/null)
    nd=$("$sam" sql "$d/oom.db" "select count(*) from images where status = 'done'" 2>/dev/null)
    local st=PASS
    { [ $orc -ne 0 ] || [ "$nd" != "$k" ] || [ -z "$q1" ] || [ "$q1" != "$q2" ] ||
        ! grep -q 'points_per_batch 32 -> 16, retrying the image' "$out/logs/run_oom.log"; } && st=FAIL
    row run_oom $st "SAM2AMG_FAULT_BATCH_MAX=16 at --points-per-batch 64: rc=$orc done=$nd of $k," \
        "masks(count,area)=${q1:-none} vs ${q2:-none} at 16 per batch, halving 64->32->16 in -v"
    if [ $cpu = 0 ] && [ -n "$py" ]; then
        local prec l left
        for prec in fp32 bf16; do
            left=$((BUDGET - ($(date +%s) - T0) - 10))
            [ $prec = fp32 ] && left=$((left / 2))
            [ $left -gt 200 ] && left=200
            run official_loop_$prec $((left > 20 ? left : 20)) "$py" tests/gpu/official_bench.py \
                --configs large --precisions $prec --points-per-side $pps --loop "$d/manifest.txt" \
                --loop-out "$d/loop_$prec" --budget $((left > 40 ? left - 30 : 10))
            l=$(grep -E '^official_loop_' "$out/logs/official_loop_$prec.log" | tail -n 1)
            if [ -n "$l" ]; then row "${l%%: *}" "$(echo "${l#*: }" | cut -d' ' -f1)" "$(echo "${l#*: }" | cut -d' ' -f2-)"
            else row official_loop_large_$prec FAIL "no result line rc=$rc"; fi
        done
    fi
    row run_step PASS "secs=$(($(date +%s) - a))"
}

# ---- profile (not in the default steps: SAM2AMG_CHECK_STEPS="profile") ------
# Nsight Compute's per-kernel device time of one generate (tiny, bf16, 16x16
# points, 256 prompts per batch, on official_bench.py's 1024x768 image, or a
# fixture image), at the official thresholds and again at 0 (random weights
# pass no mask at the official ones, so only the second run profiles the
# post-processing kernels: every mask through stability, boxes, RLE and
# NMS), summed by tests/gpu/ncu_top.py: logs/profile.log holds ncu's
# output, the row its top kernels, with each one's DRAM GB/s where ncu has
# the dram__bytes metrics (what a memory-bound kernel achieves against the
# H100's ~3.35 TB/s).
step_profile() {
    if [ $cpu = 1 ]; then
        row profile SKIP "cpu mode"
        return
    fi
    local ncu img=$out/bench_images/official_1024x768.ppm
    ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
    if [ -z "$ncu" ]; then
        row profile FAIL "ncu (Nsight Compute) not found"
        return
    fi
    [ -s "$img" ] || img=$(ppm_of e2e-crops)
    # SAM2AMG_PROFILE_CONFIG (tiny: default; large), SAM2AMG_PROFILE_PPS
    # (points per side, 16), SAM2AMG_PROFILE_ZERO=0: the official
    # thresholds only (no post-processing kernels, half the time)
    local pcfg=${SAM2AMG_PROFILE_CONFIG:-tiny} ppps=${SAM2AMG_PROFILE_PPS:-16} both=--both-thresholds
    [ "${SAM2AMG_PROFILE_ZERO:-1}" = 0 ] && both=
    # a number from 1 before the arithmetic below: bash aborts the step loop
    # on a malformed one ("32x") and the whole script, summary unfinished,
    # on a word ("abc" under set -u)
    case $ppps in
    [1-9] | [1-9][0-9] | [1-9][0-9][0-9]) ;;
    *)
        row profile FAIL "SAM2AMG_PROFILE_PPS='$ppps' (points per side: a number from 1 to 999)"
        return
        ;;
    esac
    local ppb=$((ppps * ppps < 1024 ? ppps * ppps : 1024))
    # the DRAM bytes too (ncu_top.py's GB/s per kernel), where this ncu
    # knows the metrics: a name it does not know would fail the whole run
    local metrics=gpu__time_duration.sum known
    known=$(timeout 20 "$ncu" --query-metrics 2>/dev/null)
    if echo "$known" | grep -Eq '^\s*dram__bytes_read(\s|$)' &&
        echo "$known" | grep -Eq '^\s*dram__bytes_write(\s|$)'; then
        metrics=$metrics,dram__bytes_read.sum,dram__bytes_write.sum
    fi
    run profile 300 "$ncu" --metrics "$metrics" --print-summary per-kernel \
        "$(prog gpu_generate)" --random "$pcfg" --time 1 --warmup 0 --device "$DEVICE" --precision bf16 \
        --points-per-side "$ppps" --points-per-batch "$ppb" $both --row "profile_$pcfg" "$img"
    local st=PASS top
    # the whole per-kernel table to logs/profile_top.log, the first 6 in the row
    python3 tests/gpu/ncu_top.py "$out/logs/profile.log" 1000 >"$out/logs/profile_top.log" 2>&1
    top=$(head -n 6 "$out/logs/profile_top.log" | tr -s ' ' | paste -sd ';' -)
    [ $rc -ne 0 ] && st=FAIL
    local dram=no
    [ "$metrics" != gpu__time_duration.sum ] && dram=yes
    row profile $st "config=$pcfg pps=$ppps dram_bytes=$dram rc=$rc secs=$secs ${top:-no summary}"
}

SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)

# the programs: the bundle's (made executable, in case the copy to the
# device lost the bits), or the build tree's, built here under --cpu only
# (a GPU machine lacks the build dependencies: there a missing program is a
# FAIL of every row that needs it), with the fixtures' PPMs decoded now
if [ -n "$bundle" ]; then
    chmod +x "$bundle"/bin/* 2>/dev/null
elif [ $cpu = 1 ] && { [ ! -x "$(prog gpu_generate)" ] || [ ! -x "$(prog test_ops)" ]; }; then
    run build 600 make -j"$(nproc)" BUILD="$BUILD" all
fi
[ "$(ppm_of micro)" = "$out/images/micro.ppm" ] && decode_fixtures

# SAM2AMG_CHECK_STEPS: the steps to run, in order (default all), so that a
# short device slot can split them; env always runs first, wherever the
# list names it (it finds cuBLAS for the others), and each step runs once
# (kernels, ours and official are parts of bench: with bench they run there)
steps=${SAM2AMG_CHECK_STEPS:-env ops model e2e fidelity sanitizer bench run}
done_steps=" env "
case " $steps " in *" bench "*) done_steps=" env kernels ours official " ;; esac
step_env
for s in $steps; do
    case $done_steps in *" $s "*) continue ;; esac
    done_steps="$done_steps$s "
    case $s in
    ops|model|e2e|sanitizer|bench|kernels|ours|official|profile|fidelity|run) step_$s ;;
    *) row "step_$s" FAIL "SAM2AMG_CHECK_STEPS names no step '$s'" ;;
    esac
done
total=$(($(date +%s) - T0))
if [ $nfail -eq 0 ]; then row overall PASS "secs=$total budget=$BUDGET"
else row overall FAIL "rows_failed=$nfail secs=$total budget=$BUDGET"; fi
if [ $pack = 1 ]; then
    packed=(logs)
    [ -d "$out/e2e" ] && packed+=(e2e)
    tar czf "$out/logs.tgz" -C "$out" "${packed[@]}" && rm -rf "$out/logs" "$out/e2e" "$out/images" "$out/bench_images"
fi
[ $nfail -eq 0 ]
