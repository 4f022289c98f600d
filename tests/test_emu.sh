#!/usr/bin/env bash
# test_emu.sh: the CUDA backend executed on the CPU (tests/emu: the CUDA
# runtime, cuBLAS/cuBLASLt and every kernel of kernels/, tensor-core mma and
# ldmatrix included, emulated; see tests/emu/emu.h for what is not
# modelled). No GPU has run this code yet; this runs all of it here, built
# with `make BUILD=build-emu EMU=1` (its own build folder):
#   - test_emu_core: the emulator's own rules (tests/emu/test_emu_core.cc);
#   - test_cuda (every op against the host references, fp32 and bf16),
#     test_ops (both backends, fp32 and bf16 columns), test_model on
#     cuda:0 (the micro fixtures' tensors), all with SAM2AMG_REQUIRE_CUDA=1
#     so a device that does not open fails;
#   - gpu_amg_post: the device post-processing (the kernels) == the CPU
#     path, bit for bit, logits in place and staged;
#   - sam2amg generate --device cuda:0 (through the plugin, dlopen'ed) in
#     fp32 on two end-to-end fixtures (the emulation is slow: micro2 with
#     crops, and min-area, whose host filling stages the logits): >= 98%
#     of the official records at mask IoU >= 0.99, as tests/test_e2e.sh on
#     the CPU, and -v says the post-processing ran on cuda:0 with the
#     logits left there in every decoder call (micro2) or none (min-area);
#     in bf16 micro2 runs and the share of the fp32 records it matches at
#     IoU >= 0.95 is printed (the micro fixtures' random weights put many
#     logits near the thresholds: a report, not a pass/fail);
#   - a cuda:0 that is there but cannot be opened (SAM2AMG_EMU_GPU_MB=1: no
#     room for its scratch): exit 1 in generate as in run, not 2 (a usage
#     error: a device this machine does not have);
#   - sam2amg run --devices cuda:0,cuda:0: two workers on one emulated GPU
#     finish a manifest, and status reports them; with a cpu worker beside
#     them they size their batches as alone, as --workers-per-gpu 2 does.
# Under `make sanitize` (BUILD=build-san) the emulated build is made with
# ASan + UBSan (build-emu-san; the fibers tell ASan of each stack switch)
# and the op, model-free checks run: every kernel's device-memory access is
# then checked, as compute-sanitizer's memcheck would on a GPU
# (cudaMalloc's emulation allocates the exact size). Other BUILDs skip.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
EB=${EMU_BUILD:-build-emu}
san=
if [ "$BUILD" = build-san ]; then
    EB=${EMU_BUILD:-build-emu-san}
    san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
fi
T=$(mktemp -d /tmp/test_emu.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, command...
    local name=$1; shift
    if "$@" >"$T/log" 2>&1; then pass=$((pass + 1)); echo "ok - $name"; sed -n 's/^/# /p' "$T/log" | tail -n 3
    else fail=$((fail + 1)); echo "not ok - $name"; sed 's/^/    /' "$T/log" | tail -n 8; fi
}
if { [ "$BUILD" != build ] && [ "$BUILD" != build-san ]; } || [ "$(uname -m)" != x86_64 ] || ! command -v "${CXX:-g++}" >/dev/null ||
    ! command -v python3 >/dev/null; then
    echo "ok - # skip: the emulated GPU runs in the plain build on x86-64 with g++ and python3 (BUILD=$BUILD)"
    echo "RESULT 0 0"
    exit 0
fi
progs="$EB/sam2amg $EB/libsam2amg_cuda.so $EB/tests/test_cuda $EB/tests/test_ops $EB/tests/test_model
       $EB/tests/test_amg $EB/tests/test_decoder $EB/gpu/gpu_amg_post $EB/emu/test_emu_core"
# (a make of its own: none of the calling make's variables or jobserver)
# shellcheck disable=SC2086
check "build the emulated CUDA backend (make BUILD=$EB EMU=1${san:+ with ASan+UBSan})" \
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s BUILD="$EB" EMU=1 ${san:+OPT=-O1} \
        SAN_FLAGS="$san" -j"$(nproc)" $progs
export SAM2AMG_REQUIRE_CUDA=1 SAM2AMG_EMU_GPUS=1
# one BLAS thread: the emulated kernels run on one thread anyway, and a
# second BLAS thread spinning between small GEMMs doubled the CPU time
# (tests/run.sh runs another test on the other core meanwhile)
export OPENBLAS_NUM_THREADS=1
unset CUDA_VISIBLE_DEVICES   # set where needed below: the emulated runtime honours it
result_ok() {   # log: its RESULT line says N passed (N > 0) and 0 failed
    grep -qE '^RESULT [1-9][0-9]* 0$' "$1"
}
"$EB/emu/test_emu_core" >"$T/core.log" 2>&1
check "the emulator refuses what a GPU refuses (launch limits, shuffle masks and widths, partial-warp mma, unaligned ldmatrix and vector casts, cuBLAS operand types, a cuBLASLt C overlapping D), shared memory starts each block as NaN, each emulated GPU has its own memory: $(tail -n 1 "$T/core.log")" \
    result_ok "$T/core.log"
# cu2cc.py's rewrites that make those checks reach the kernels: every
# reinterpret_cast, and a poisoning call after each static __shared__ array
# (with __align__, 2-D, two in one declaration), none after the dynamic one
# nor after an array that only a comment's __shared__ precedes
cat >"$T/k.cu" <<'EOF2'
static __global__ void k(float *y, const float *x) {
    __shared__ __align__(16) float a[4 * 8];
    __shared__ float b[2][3 + 1], e[2];
    extern __shared__ float d[];
    // a per-thread array after a comment on __shared__ memory
    float acc[2];
    const float4 v = *reinterpret_cast<const float4 *>(x);
    *reinterpret_cast <float2 *>(y) = make_float2(v.x + a[0] + b[0][0] + d[0], v.y);
}
EOF2
python3 tests/emu/cu2cc.py "$T/k.cu" "$T/k.cc"
check "cu2cc.py: reinterpret_cast -> emu_reinterpret, emu_shared_poison after each static __shared__ array" \
    bash -c "[ \$(grep -c 'emu_reinterpret<' '$T/k.cc') = 2 ] && ! grep -q 'reinterpret_cast' '$T/k.cc' &&
             grep -q 'float a\[4 \* 8\]; emu_shared_poison(a, sizeof a);' '$T/k.cc' &&
             grep -q 'float b\[2\]\[3 + 1\], e\[2\]; emu_shared_poison(b, sizeof b); emu_shared_poison(e, sizeof e);' '$T/k.cc' &&
             [ \$(grep -c emu_shared_poison '$T/k.cc') = 2 ] && grep -q 'float \*d = (float \*)emu_dyn_smem();' '$T/k.cc' &&
             grep -qx '    float acc\[2\];' '$T/k.cc' && [ \$(wc -l <'$T/k.cc') = 10 ]"
# the declarations kernels/ does not write yet: a scalar, a typedef'd array,
# two in one, `static __shared__`, a comment naming __shared__ above a
# statement (no call after it); a file-scope one is refused
cat >"$T/k2.cu" <<'EOF2'
typedef float row_t[8];
static __global__ void k2(float *y, float *x) {
    static __shared__ float s[4];
    __shared__ int count;
    __shared__ row_t r;
    __shared__ float a[2], b[3];
    // staged in __shared__ next
    y[0] = x[0];
    y[1] = s[0] + count + r[0] + a[0] + b[0];
}
EOF2
python3 tests/emu/cu2cc.py "$T/k2.cu" "$T/k2.cc"
printf '__shared__ float g[4];\n' >"$T/k3.cu"
check "cu2cc.py: emu_shared_poison for scalars, typedef'd types, each of two declarators, static __shared__; none after a comment; file scope refused" \
    bash -c "grep -q '^    __shared__ float s\[4\]; emu_shared_poison(s, sizeof s);' '$T/k2.cc' &&
             grep -q 'int count; emu_shared_poison(&count, sizeof count);' '$T/k2.cc' &&
             grep -q 'row_t r; emu_shared_poison(&r, sizeof r);' '$T/k2.cc' &&
             grep -q 'b\[3\]; emu_shared_poison(a, sizeof a); emu_shared_poison(b, sizeof b);' '$T/k2.cc' &&
             grep -q '^    y\[0\] = x\[0\];\$' '$T/k2.cc' && [ \$(grep -c emu_shared_poison '$T/k2.cc') = 4 ] &&
             ! python3 tests/emu/cu2cc.py '$T/k3.cu' '$T/k3.cc' 2>'$T/k3.err' && grep -q 'file scope' '$T/k3.err'"
"$EB/tests/test_cuda" >"$T/cuda.log" 2>&1
check "test_cuda on the emulated cuda:0: $(tail -n 1 "$T/cuda.log")" result_ok "$T/cuda.log"
"$EB/tests/test_ops" >"$T/ops.log" 2>&1
check "test_ops, cpu and emulated cuda:0 (fp32 and bf16): $(tail -n 1 "$T/ops.log"), $(grep -c '^ok - cuda:0/bf16 ' "$T/ops.log") bf16 cases" \
    bash -c "grep -qE '^RESULT [1-9][0-9]* 0$' '$T/ops.log' && [ \$(grep -c '^ok - cuda:0/bf16 ' '$T/ops.log') -gt 50 ]"
SAM2AMG_DEVICE=cuda:0 "$EB/tests/test_model" >"$T/model.log" 2>&1
check "test_model on cuda:0 (micro, micro2 tensors, fp32): $(tail -n 1 "$T/model.log")" \
    bash -c "grep -q '^# backend cuda:0' '$T/model.log' && grep -qE '^RESULT [1-9][0-9]* 0$' '$T/model.log'"
"$EB/gpu/gpu_amg_post" --device cuda:0 --small >"$T/post.log" 2>&1
check "gpu_amg_post on cuda:0: device post-processing == CPU path: $(tail -n 1 "$T/post.log")" \
    bash -c "grep -qE '^# [1-9][0-9]* cases on cuda:0' '$T/post.log' && grep -qE '^RESULT [1-9][0-9]* 0$' '$T/post.log'"
"$EB/gpu/gpu_amg_post" --device cuda:0 --random 30 >"$T/postr.log" 2>&1
check "gpu_amg_post --random 30 on cuda:0: random sizes and parameters, kernels == CPU path: $(tail -n 1 "$T/postr.log")" \
    bash -c "grep -qE '^# 30 cases on cuda:0' '$T/postr.log' && grep -qE '^RESULT [1-9][0-9]* 0$' '$T/postr.log'"

# CUDA_VISIBLE_DEVICES, as the CUDA runtime reads it, over SAM2AMG_EMU_GPUS
# emulated GPUs: the devices it lists up to the first entry that names none
# (no device is opened: each case stops at the device count)
cvd_case() {   # CUDA_VISIBLE_DEVICES, emulated GPUs, device, expected exit, expected text
    printf '%s\n' "$T/nothing.png" >"$T/cvd.txt"
    CUDA_VISIBLE_DEVICES=$1 SAM2AMG_EMU_GPUS=$2 "$EB/sam2amg" run "$T/cvd$RANDOM.db" --manifest \
        "$T/cvd.txt" --model tests/fixtures/micro2/weights.safetensors --config micro2 --devices "$3" \
        >"$T/cvd.out" 2>&1
    local rc=$?
    check "CUDA_VISIBLE_DEVICES='$1' over $2 emulated GPUs, --devices $3: exit $4, '$5'" \
        bash -c "[ $rc = $4 ] && grep -qF -- '$5' '$T/cvd.out' || { cat '$T/cvd.out'; exit 1; }"
}
cvd_case 1 2 cuda:1 2 "cuda:1: no such device (1 CUDA device visible)"
cvd_case "" 2 cuda:0 2 "cuda:0: no such device (0 CUDA devices visible)"
cvd_case "0,7,1" 2 cuda:1 2 "cuda:1: no such device (1 CUDA device visible)"
cvd_case "GPU-0" 1 cuda:0 2 "cuda:0: no such device (0 CUDA devices visible)"
cvd_case "1,0" 2 cuda:1 3 "0 images done (0 masks), 1 failed"
# a device this machine has that cannot be opened (1 MiB of emulated memory:
# no room for its scratch) is not a usage error: exit 1 for generate as for
# run (generate said 2, the exit of a device that is not there)
SAM2AMG_EMU_GPU_MB=1 "$EB/sam2amg" generate --device cuda:0 --model tests/fixtures/micro2/weights.safetensors \
    --config micro2 --points-per-side 2 tests/fixtures/micro/image.png -o "$T/nomem.json" 2>"$T/nomem.err"
rc=$?
check "generate --device cuda:0 that cannot be opened (no memory for its scratch): exit 1, one line" \
    bash -c "[ $rc = 1 ] && [ \$(wc -l <'$T/nomem.err') = 1 ] && grep -q 'cuda:0: cannot allocate .* of scratch' '$T/nomem.err' || { cat '$T/nomem.err'; exit 1; }"
printf '%s\n' "$PWD/tests/fixtures/micro/image.png" >"$T/nomem.txt"
SAM2AMG_EMU_GPU_MB=1 "$EB/sam2amg" run "$T/nomem.db" --manifest "$T/nomem.txt" --model \
    tests/fixtures/micro2/weights.safetensors --config micro2 --points-per-side 2 --devices cuda:0 --quiet 2>"$T/nomem.err"
rc=$?
check "run --devices cuda:0 that cannot be opened: exit 1 as generate" \
    bash -c "[ $rc = 1 ] && grep -q 'cuda:0: cannot allocate .* of scratch' '$T/nomem.err' || { cat '$T/nomem.err'; exit 1; }"

# a bad SAM2AMG_CUDA_* setting is a usage error (exit 2, one line naming it)
# on a machine with the device as on one without (include/cuda_env.h), and
# run refuses it before the database is made
for kv in SAM2AMG_CUDA_FUSED=7 SAM2AMG_CUDA_GEMM=bf17 SAM2AMG_CUDA_BF16_WS_MB=0; do
    env "$kv" "$EB/sam2amg" generate --device cuda:0 --model tests/fixtures/micro2/weights.safetensors \
        --config micro2 --points-per-side 2 tests/fixtures/micro/image.png -o "$T/badenv.json" 2>"$T/badenv.err"
    rc=$?
    env "$kv" "$EB/sam2amg" run "$T/badenv.db" --manifest "$T/nomem.txt" --model \
        tests/fixtures/micro2/weights.safetensors --config micro2 --devices cuda:0 --quiet 2>"$T/badenv-run.err"
    rrc=$?
    check "$kv on an emulated cuda:0: generate and run exit 2, one line naming it (no 'run on the CPU' hint), no database" \
        bash -c "[ $rc = 2 ] && [ $rrc = 2 ] && [ \$(wc -l <'$T/badenv.err') = 1 ] && grep -q '${kv%%=*}=' '$T/badenv.err' &&
                 ! grep -q 'to run on the CPU' '$T/badenv.err' '$T/badenv-run.err' &&
                 grep -q '${kv%%=*}=' '$T/badenv-run.err' && [ ! -e '$T/badenv.db' ] || { cat '$T/badenv.err' '$T/badenv-run.err'; exit 1; }"
done

if [ -n "$san" ]; then   # generate and run take too long under the sanitizers
    echo "RESULT $pass $fail"
    [ $fail -eq 0 ]
    exit
fi
# the decoder's device paths (heads_linear's one GEMM per head, the shared-q
# probabilities, device chunks) against its full path on the same device,
# over calls whose point counts change, fp32 (~1.5 min)
SAM2AMG_DEVICE=cuda:0 "$EB/tests/test_decoder" --lowrank-only >"$T/dec.log" 2>&1
check "test_decoder --lowrank-only on cuda:0: low-rank == full path over changing point counts: $(tail -n 1 "$T/dec.log")" \
    result_ok "$T/dec.log"
# the fused low-rank projections (lowrank_expand, bf16) against the composed
# ones at d_model 256, the LayerNorm'ed upscaling input included (~20 s)
SAM2AMG_DEVICE=cuda:0 "$EB/tests/test_decoder" --fused-only >"$T/fused.log" 2>&1
check "test_decoder --fused-only on cuda:0: fused == composed projections, bf16, d_model 256: $(tail -n 1 "$T/fused.log")" \
    result_ok "$T/fused.log"
weights_of() { echo "tests/fixtures/$(sed -n 's/^ *"weights": *"\([^"]*\)".*/\1/p' "$1/meta.json")"; }
for f in e2e-micro2 e2e-minarea; do
    d=tests/fixtures/$f
    want=all; case $f in e2e-m2m|e2e-minarea) want=none ;; esac
    "$EB/sam2amg" generate -v --device cuda:0 --precision fp32 --model "$(weights_of "$d")" \
        --config "$d/meta.json" "$d/image.png" -o "$T/$f.json" 2>"$T/$f.err"
    rc=$?
    line=$(grep -o 'post-processing on [^,]*, logits left on the device in [0-9]* of [0-9]* decoder calls' "$T/$f.err" | head -n 1)
    check "$f on cuda:0 fp32: exit 0, $line ($want)" bash -c "
        [ $rc = 0 ] && set -- \$(echo '$line' | sed 's/post-processing on \([^,]*\), .* in \([0-9]*\) of \([0-9]*\) .*/\1 \2 \3/') &&
        [ \"\$1\" = cuda:0 ] && [ \$3 -gt 0 ] &&
        if [ $want = all ]; then [ \$2 -eq \$3 ]; else [ \$2 -eq 0 ]; fi"
    check "$f on cuda:0 fp32: >= 98% of the official records at mask IoU >= 0.99" \
        "$EB/tests/test_amg" --compare "$d/amg.json" "$T/$f.json" 0.98 0.99
    [ $f = e2e-micro2 ] || continue
    "$EB/sam2amg" generate -v --device cuda:0 --precision bf16 --model "$(weights_of "$d")" \
        --config "$d/meta.json" "$d/image.png" -o "$T/$f.bf16.json" 2>"$T/$f.bf16.err"
    rc=$?
    m=$("$EB/tests/test_amg" --compare "$T/$f.json" "$T/$f.bf16.json" 0 0.95 2>/dev/null |
        grep -o 'expected [0-9]* actual [0-9]* matched [0-9]*')
    check "$f on cuda:0 bf16: exit 0, records ($m of the fp32 run's at IoU >= 0.95)" \
        bash -c "[ $rc = 0 ] && [ -s '$T/$f.bf16.json' ]"
    # -v says what the model computed with: precision, GEMM mode, fused ops
    for mode in fp32 bf16 bf16-unfused fp32-tf32; do
        case $mode in
        fp32) err=$T/$f.err want='cuda:0, precision fp32 (GEMMs float32)' ;;
        bf16) err=$T/$f.bf16.err want='cuda:0, precision bf16 (GEMM inputs bf16, float32 accumulation), fused ops on' ;;
        bf16-unfused)
            err=$T/$f.unfused.err want='cuda:0, precision bf16 (GEMM inputs bf16, float32 accumulation), fused ops off (SAM2AMG_CUDA_FUSED=0)'
            SAM2AMG_CUDA_FUSED=0 "$EB/sam2amg" generate -v --device cuda:0 --precision bf16 --points-per-side 1 \
                --model "$(weights_of "$d")" --config "$d/meta.json" "$d/image.png" -o "$T/u.json" 2>"$err" ;;
        fp32-tf32)
            err=$T/$f.tf32.err want='cuda:0, precision fp32 (GEMMs TF32: SAM2AMG_CUDA_GEMM=tf32)'
            SAM2AMG_CUDA_GEMM=tf32 "$EB/sam2amg" generate -v --device cuda:0 --precision fp32 --points-per-side 1 \
                --model "$(weights_of "$d")" --config "$d/meta.json" "$d/image.png" -o "$T/u.json" 2>"$err" ;;
        esac
        check "generate -v on cuda:0, $mode: says '$want'" grep -qxF "sam2amg generate: $want" "$err"
    done
done

mkdir -p "$T/img"
for f in e2e-crops e2e-m2m e2e-minarea; do cp tests/fixtures/$f/image.png "$T/img/$f.png"; done
# two workers sizing their batches on one GPU: each measures its own model
# (the backends are made one after the other too; the second's context and
# scratch appearing during the first's measurement once read as its model)
"$EB/sam2amg" run "$T/r.db" --manifest "$T/img" --model tests/fixtures/micro/weights.safetensors \
    --config micro --points-per-side 4 --devices cuda:0,cuda:0 --precision fp32 2>"$T/run.err"
rc=$?
n_img=$(ls "$T/img" | wc -l)
check "run --devices cuda:0,cuda:0: exit 0, every image done by the two cuda workers" bash -c "
    [ $rc = 0 ] && [ \"\$($EB/sam2amg sql $T/r.db \"select count(*) from images where status = 'done'\")\" = $n_img ] &&
    [ \"\$($EB/sam2amg sql $T/r.db 'select devices from runs')\" = cuda:0,cuda:0 ] &&
    $EB/sam2amg status $T/r.db | grep -qE '^worker [01] \(cuda:0\): model busy [0-9]+%'"
models=$(sed -n 's/.*points_per_batch auto = .*, model \([0-9]*\) MiB,.*/\1/p' "$T/run.err" | sort -u)
check "run --devices cuda:0,cuda:0: both workers measure the same model size ($(echo $models))" \
    bash -c "[ $rc = 0 ] && [ \"$(echo "$models" | wc -l)\" = 1 ] && [ -n '$models' ] &&
             [ \$(grep -c 'points_per_batch auto = .*, model [0-9]* MiB' '$T/run.err') = 2 ]"
# a cpu worker beside two cuda:0 ones is counted apart: the cuda workers
# size their batches as they do alone (the CPU was counted as cuda:0, so
# the first cuda:0 worker after it took the free memory as if it were the
# last: 185 and then "no room for a batch of one prompt", or 110 and 25)
# (the sizing happens as the workers start: one image that is not there
# fails at once, so no emulated decoding of 1024 prompts is waited for)
echo "$T/not-there.png" >"$T/one.txt"
autos() {   # devices [flags] -> the cuda:0 workers' auto batches, sorted
    rm -f "$T/s.db"
    SAM2AMG_EMU_GPU_MB=1024 "$EB/sam2amg" run "$T/s.db" --manifest "$T/one.txt" \
        --model tests/fixtures/micro/weights.safetensors --config micro --points-per-side 32 \
        --devices "$@" --precision fp32 2>&1 |
        sed -n 's/^sam2amg run: cuda:0: points_per_batch auto = \([0-9]*\) .*/\1/p' | sort -n | tr '\n' ' '
}
alone=$(autos cuda:0,cuda:0)
mixed=$(autos cpu,cuda:0,cuda:0)
check "run --devices cpu,cuda:0,cuda:0: the cuda:0 workers' auto batches as without cpu ($mixed/ $alone)" \
    bash -c "[ -n '$alone' ] && [ '$alone' = '$mixed' ]"
# --workers-per-gpu 2 is cuda:0,cuda:0: two workers sharing the GPU's memory
per=$(autos cpu,cuda:0 --workers-per-gpu 2)
check "run --devices cpu,cuda:0 --workers-per-gpu 2: two cuda:0 workers, batches as cuda:0,cuda:0 ($per/ $alone)" \
    bash -c "[ -n '$alone' ] && [ '$alone' = '$per' ] && [ \$(echo $per | wc -w) = 2 ]"
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
