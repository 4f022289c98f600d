#!/usr/bin/env bash
# test_devices.sh: one binary for GPU and CPU machines, and the device list.
# build/sam2amg links no CUDA library; asking it for cuda:N where the
# plugin (build/libsam2amg_cuda.so), the driver or the device is missing is
# a one-line error naming which and how to run on the CPU, exit 2 (a usage
# error: a device this machine does not have), for `run --devices` and
# `generate --device` alike, before `run` creates its database. Stand-in
# plugins built here check the loader's refusals (no entry point, another
# API version); a stand-in driver (SAM2AMG_CUDA_DRIVER) that --devices all
# counts GPUs through the driver alone, loading the plugin only when there
# is one. Then --devices parsing: empty items, bad
# names, duplicates (several workers per device), too many workers.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=${BIN:-$PWD/$BUILD/sam2amg}
T=$(mktemp -d /tmp/test_devices.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, command...
    local name=$1; shift
    if "$@" >"$T/log" 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; sed 's/^/    /' "$T/log" | tail -5; fi
}
skip() { pass=$((pass + 1)); echo "ok - $1 # skip $2"; }
# one_line_err FILE PATTERN...: exactly one line on stderr, matching each pattern
one_line_err() {
    local f=$1; shift
    [ "$(wc -l <"$f")" -eq 1 ] || { cat "$f"; return 1; }
    for p in "$@"; do grep -q -- "$p" "$f" || { echo "no '$p' in:"; cat "$f"; return 1; }; done
}
F=tests/fixtures/micro
mkdir -p "$T/img" && cp "$F/image.png" "$T/img/a.png"
GEN=(--model "$F/weights.safetensors" --config "$F/meta.json" --points-per-side 4 --threads 1)

# ---- the binary's dependencies ----
check "build/sam2amg needs no CUDA library (readelf NEEDED)" \
    bash -c "readelf -d '$BIN' | grep NEEDED && ! readelf -d '$BIN' | grep -Ei 'libcuda|libcublas|libnvrtc'"
check "build/sam2amg resolves all its libraries without CUDA's (ldd)" \
    bash -c "ldd '$BIN' && ! ldd '$BIN' | grep -Ei 'libcuda|libcublas|libnvrtc|not found'"

# ---- cuda:0 without the plugin ----
expect_exit2() {   # name, stderr patterns..., -- command...
    local name=$1; shift
    local pats=()
    while [ "$1" != -- ]; do pats+=("$1"); shift; done; shift
    "$@" >/dev/null 2>"$T/err"
    local rc=$?
    check "$name: exit 2 (got $rc)" test $rc -eq 2
    check "$name: one line naming the cause and --device(s) cpu" one_line_err "$T/err" "${pats[@]}"
}
export SAM2AMG_CUDA_PLUGIN=$T/none/libsam2amg_cuda.so
expect_exit2 "run --devices cuda:0, plugin missing" "cuda:0" "no CUDA plugin: $T/none/libsam2amg_cuda.so is missing" \
    "to run on the CPU: --devices cpu" -- "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices cuda:0
check "run refused before creating the database" test ! -e "$T/p.db"
expect_exit2 "generate --device cuda:0, plugin missing" "cuda:0" "is missing" "to run on the CPU: --device cpu" \
    -- "$BIN" generate "${GEN[@]}" --device cuda:0 "$T/img/a.png" -o "$T/g.json"
check "generate wrote nothing" test ! -e "$T/g.json"
# a bad SAM2AMG_CUDA_* setting is named, plugin or not (include/cuda_env.h):
# generate, predict and dump said only that the plugin was missing
for cmd in generate predict dump; do
    case $cmd in
    generate) extra=(-o "$T/g.json") ;;
    predict) extra=(--point 4,4 -o "$T/g.png") ;;
    dump) extra=(-o "$T/g.safetensors") ;;
    esac
    expect_exit2 "$cmd --device cuda:0, SAM2AMG_CUDA_FUSED=7, plugin missing" \
        "cuda:0: SAM2AMG_CUDA_FUSED='7' (expected 0 or 1)" -- \
        env SAM2AMG_CUDA_FUSED=7 "$BIN" $cmd "${GEN[@]::4}" --device cuda:0 "$T/img/a.png" "${extra[@]}"
done
expect_exit2 "run --devices cuda:0, SAM2AMG_CUDA_GEMM=bf17, plugin missing" \
    "cuda:0: SAM2AMG_CUDA_GEMM='bf17' (expected f32 or tf32)" -- \
    env SAM2AMG_CUDA_GEMM=bf17 "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices cuda:0
check "  ... run refused it before creating the database" test ! -e "$T/p.db"
# SAM2AMG_CUDA_SYNC is read there too: a value other than 0 or 1 turned
# the debugging mode off without a word
expect_exit2 "generate --device cuda:0, SAM2AMG_CUDA_SYNC=yes" \
    "cuda:0: SAM2AMG_CUDA_SYNC='yes' (expected 0 or 1)" -- \
    env SAM2AMG_CUDA_SYNC=yes "$BIN" generate "${GEN[@]::4}" --device cuda:0 "$T/img/a.png" -o "$T/g.json"
expect_exit2 "run --devices cuda:0, SAM2AMG_CUDA_SYNC=true" \
    "cuda:0: SAM2AMG_CUDA_SYNC='true' (expected 0 or 1)" -- \
    env SAM2AMG_CUDA_SYNC=true "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices cuda:0
check "  ... run refused it before creating the database" test ! -e "$T/p.db"
# SAM2AMG_CUDA_BF16_WS_MB is digits: a leading blank or sign is refused as
# a trailing blank is (strtol took " 5" and "+5")
for v in " 5" "+5" "5 " "-5"; do
    expect_exit2 "run --devices cuda:0, SAM2AMG_CUDA_BF16_WS_MB='$v'" \
        "cuda:0: SAM2AMG_CUDA_BF16_WS_MB='$v' (expected 1..4096)" -- \
        env SAM2AMG_CUDA_BF16_WS_MB="$v" "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices cuda:0
done
# the plugin beside the binary is the default: a copy of the binary alone
mkdir -p "$T/alone" && cp "$BIN" "$T/alone/sam2amg"
env -u SAM2AMG_CUDA_PLUGIN "$T/alone/sam2amg" run "$T/q.db" --manifest "$T/img" --model test: \
    --devices cuda:1 >/dev/null 2>"$T/err"
check "a binary without a plugin beside it: looks in its own folder" \
    one_line_err "$T/err" "cuda:1: no CUDA plugin: $T/alone/libsam2amg_cuda.so is missing"
env -u SAM2AMG_CUDA_PLUGIN "$T/alone/sam2amg" run "$T/q.db" --manifest "$T/img" --model test: \
    --devices cpu,cpu --quiet >/dev/null 2>&1
check "that binary runs on the CPU (--devices cpu,cpu: exit 0)" test $? -eq 0

# ---- the real plugin, on a machine without a CUDA driver ----
if [ -f "$BUILD/libsam2amg_cuda.so" ]; then
    check "the plugin exports one symbol, sam2amg_cuda_plugin_v1" \
        bash -c "[ \"\$(nm -D --defined-only $BUILD/libsam2amg_cuda.so | awk '{print \$3}')\" = sam2amg_cuda_plugin_v1 ]"
    check "the plugin links the CUDA runtime in: of CUDA it needs only cuBLAS" \
        bash -c "readelf -d $BUILD/libsam2amg_cuda.so | grep -q 'NEEDED.*libcublas' &&
                 ! readelf -d $BUILD/libsam2amg_cuda.so | grep -Ei 'NEEDED.*(libcudart|libcuda\.so)'"
    if ls /usr/lib/x86_64-linux-gnu/libcuda.so* /usr/lib64/libcuda.so* >/dev/null 2>&1; then
        skip "plugin present, no driver" "this machine has libcuda.so"
    else
        export SAM2AMG_CUDA_PLUGIN=$PWD/$BUILD/libsam2amg_cuda.so
        expect_exit2 "run --devices cuda:0, plugin present, no driver" "cuda:0" "no CUDA driver" \
            "to run on the CPU: --devices cpu" -- "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices cuda:0
        expect_exit2 "generate --device cuda:0, plugin present, no driver" "cuda:0: no CUDA driver" \
            "to run on the CPU: --device cpu" -- "$BIN" generate "${GEN[@]}" --device cuda:0 "$T/img/a.png" -o "$T/g.json"
        env -u SAM2AMG_CUDA_PLUGIN -u CUDA_VISIBLE_DEVICES "$BIN" run "$T/all.db" --manifest "$T/img" \
            --model test: --devices all >/dev/null 2>"$T/err"
        check "--devices all, no driver, CUDA_VISIBLE_DEVICES unset: cpu, saying why (exit 0)" \
            bash -c "[ $? -eq 0 ] && grep -q 'devices all: cpu (CUDA_VISIBLE_DEVICES=unset): no CUDA driver' $T/err"
    fi
else
    skip "plugin present, no driver" "no CUDA plugin in this build (HAVE_NVCC=0)"
fi

# ---- stand-in plugins: the loader's refusals and the device count ----
if command -v "${CC:-cc}" >/dev/null; then
    api=$(sed -n 's/^#define BACKEND_API_VERSION \([0-9]*\)/\1/p' include/backend.h)
    cat >"$T/fake.c" <<'EOC'
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
typedef struct { char msg[512]; } err_t;
typedef struct { int api_version; void *(*create)(int, err_t *); int (*device_count)(int *, err_t *); } plugin_t;
static void *create(int dev, err_t *e) { snprintf(e->msg, sizeof e->msg, "cuda:%d: stand-in cannot open it", dev); return NULL; }
static int count(int *n, err_t *e) { (void)e; *n = atoi(getenv("FAKE_GPUS") ? getenv("FAKE_GPUS") : "0"); return 0; }
#ifdef ENTRY
const plugin_t *sam2amg_cuda_plugin_v1(void) { static const plugin_t p = {API, create, count}; return &p; }
#endif
int unrelated(void) { return 0; }
/* a loaded plugin leaves a mark */
__attribute__((constructor)) static void loaded(void) {
    const char *m = getenv("FAKE_MARK");
    FILE *f = m ? fopen(m, "w") : NULL;
    if (f) fclose(f);
}
EOC
    cat >"$T/fakecuda.c" <<'EOC'
#include <stdlib.h>
/* the driver API's two calls; CUDA_ERROR_NO_DEVICE (100) without a GPU */
static int gpus(void) { return atoi(getenv("FAKE_GPUS") ? getenv("FAKE_GPUS") : "0"); }
int cuInit(unsigned flags) { (void)flags; return gpus() ? 0 : 100; }
int cuDeviceGetCount(int *n) { *n = gpus(); return 0; }
EOC
    ${CC:-cc} -shared -fPIC -o "$T/noentry.so" "$T/fake.c" &&
    ${CC:-cc} -shared -fPIC -DENTRY -DAPI=999 -o "$T/oldapi.so" "$T/fake.c" &&
    ${CC:-cc} -shared -fPIC -DENTRY -DAPI="$api" -o "$T/fake.so" "$T/fake.c" &&
    ${CC:-cc} -shared -fPIC -o "$T/fakecuda.so" "$T/fakecuda.c"
    check "stand-in plugins and driver built" test -f "$T/fakecuda.so"
    export SAM2AMG_CUDA_PLUGIN=$T/noentry.so
    expect_exit2 "a library without the entry point" "is not a sam2amg CUDA plugin (no sam2amg_cuda_plugin_v1)" \
        -- "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices cuda:0
    export SAM2AMG_CUDA_PLUGIN=$T/oldapi.so
    expect_exit2 "a plugin of another API version" "built for backend API 999, this sam2amg has $api" \
        -- "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices cuda:0
    export SAM2AMG_CUDA_PLUGIN=$T/fake.so
    FAKE_GPUS=1 "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices cuda:0,cuda:1 >/dev/null 2>"$T/err"
    check "cuda:1 with one device: 'no such device', exit 2" \
        bash -c "[ $? -eq 2 ] && grep -q 'cuda:1: no such device (1 CUDA device visible)' $T/err"
    # the workers line of --workers-per-gpu comes after the usage errors: still one line
    FAKE_GPUS=1 "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices cuda:0,cuda:1 \
        --workers-per-gpu 2 >/dev/null 2>"$T/err"
    check "  ... with --workers-per-gpu 2: the same one line, exit 2" \
        bash -c "[ $? -eq 2 ] && [ \$(wc -l <$T/err) -eq 1 ] && grep -q 'cuda:1: no such device' $T/err"
    export SAM2AMG_CUDA_DRIVER=$T/fakecuda.so FAKE_MARK=$T/loaded
    FAKE_GPUS=3 env -u CUDA_VISIBLE_DEVICES "$BIN" run "$T/p.db" --manifest "$T/img" --model test: --devices all \
        >/dev/null 2>"$T/err"
    check "--devices all, CUDA_VISIBLE_DEVICES unset: the driver's 3 GPUs" \
        grep -q 'devices all: cuda:0,cuda:1,cuda:2 (CUDA_VISIBLE_DEVICES=unset): 3 visible' "$T/err"
    check "  ... and the plugin was loaded for them" test -e "$T/loaded"
    # --workers-per-gpu N: each GPU's worker N times, all's GPUs too (the
    # test model then refuses cuda: the list is printed before that)
    FAKE_GPUS=3 env -u CUDA_VISIBLE_DEVICES "$BIN" run "$T/w.db" --manifest "$T/img" --model test: \
        --devices all --workers-per-gpu 2 >/dev/null 2>"$T/err"
    check "--devices all --workers-per-gpu 2: two workers per GPU" \
        grep -q 'workers-per-gpu 2: workers cuda:0,cuda:0,cuda:1,cuda:1,cuda:2,cuda:2$' "$T/err"
    # status reads worker w's device as item w of runs.devices and counts
    # the workers by its commas: the run stores the workers, not the list
    check "  ... and the run stores those 6 workers as its devices" \
        test "$("$BIN" sql "$T/w.db" 'select devices from runs order by id desc limit 1')" = \
        cuda:0,cuda:0,cuda:1,cuda:1,cuda:2,cuda:2
    FAKE_GPUS=3 "$BIN" run "$T/w.db" --manifest "$T/img" --model test: --devices cpu,cuda:2,cuda:0 \
        --workers-per-gpu 3 >/dev/null 2>"$T/err"
    check "--devices cpu,cuda:2,cuda:0 --workers-per-gpu 3: the cpu item once, each cuda one 3 times" \
        grep -q 'workers-per-gpu 3: workers cpu,cuda:2,cuda:2,cuda:2,cuda:0,cuda:0,cuda:0$' "$T/err"
    FAKE_GPUS=20 env -u CUDA_VISIBLE_DEVICES "$BIN" run "$T/w20.db" --manifest "$T/img" --model test: \
        --devices all >/dev/null 2>"$T/err"
    check "--devices all, 20 GPUs: a worker on each of the first 16, saying so" \
        grep -q 'devices all: cuda:0,.*,cuda:15 (CUDA_VISIBLE_DEVICES=unset): 20 visible, the first 16 used$' "$T/err"
    FAKE_GPUS=3 env -u CUDA_VISIBLE_DEVICES "$BIN" run "$T/w6.db" --manifest "$T/img" --model test: \
        --devices all --workers-per-gpu 6 >/dev/null 2>"$T/err"
    check "--devices all (3 GPUs) --workers-per-gpu 6: 18 workers refused, exit 2, no database" \
        bash -c "[ $? -eq 2 ] && grep -q 'workers-per-gpu 6: 18 workers, more than 16' $T/err && [ ! -e $T/w6.db ]"
    rm -f "$T/loaded"
    FAKE_GPUS=0 env -u CUDA_VISIBLE_DEVICES "$BIN" run "$T/z.db" --manifest "$T/img" --model test: --devices all \
        >/dev/null 2>"$T/err"
    check "--devices all, the driver sees no GPU: cpu (exit 0)" \
        bash -c "[ $? -eq 0 ] && grep -q 'devices all: cpu (CUDA_VISIBLE_DEVICES=unset): 0 visible' $T/err"
    check "  ... without loading the plugin (so no cuBLAS)" test ! -e "$T/loaded"
    SAM2AMG_CUDA_DRIVER=$T/none.so env -u CUDA_VISIBLE_DEVICES "$BIN" run "$T/z.db" --manifest "$T/img" \
        --model test: --devices all >/dev/null 2>"$T/err"
    check "--devices all, no driver: cpu saying so, the plugin not loaded (exit 0)" \
        bash -c "[ $? -eq 0 ] && grep -q 'devices all: cpu (CUDA_VISIBLE_DEVICES=unset): no CUDA driver' $T/err && [ ! -e $T/loaded ]"
    unset SAM2AMG_CUDA_DRIVER FAKE_MARK
    # a device the machine has (2 counted) that fails to open is not a
    # usage error: exit 1 for generate as for run (generate said 2)
    FAKE_GPUS=2 "$BIN" generate "${GEN[@]}" --device cuda:1 "$T/img/a.png" -o "$T/g.json" >/dev/null 2>"$T/err"
    check "generate: the plugin's create error, one line, exit 1" \
        bash -c "[ $? -eq 1 ] && grep -q 'cuda:1: stand-in cannot open it; to run on the CPU: --device cpu' $T/err && [ \$(wc -l <$T/err) -eq 1 ]"
    FAKE_GPUS=2 "$BIN" run "$T/o.db" --manifest "$T/img" "${GEN[@]::4}" --devices cuda:1 -q \
        >/dev/null 2>"$T/err"
    check "run: the plugin's create error, exit 1 as generate" \
        bash -c "[ $? -eq 1 ] && grep -q 'cuda:1: stand-in cannot open it' $T/err"
else
    skip "stand-in plugins" "no C compiler"
fi
unset SAM2AMG_CUDA_PLUGIN

# ---- --devices parsing ----
bad_devices() {   # list, expected message
    "$BIN" run "$T/bad.db" --manifest "$T/img" --model test: --devices "$1" >/dev/null 2>"$T/err"
    local rc=$?
    check "--devices '$1': exit 2 (got $rc)" test $rc -eq 2
    check "--devices '$1': no database, one line: $2" bash -c '[ ! -e "$1" ] && [ $(wc -l <"$2") -eq 1 ] &&
        grep -qF -- "$3" "$2"' _ "$T/bad.db" "$T/err" "$2"
}
bad_devices "" "--devices is empty"
bad_devices "cpu,,cpu" "item 2 is empty"
bad_devices "cpu," "item 2 is empty"
bad_devices ",cpu" "item 1 is empty"
bad_devices "cuda:x" "device 'cuda:x': bad CUDA device number"
bad_devices "cuda:-1" "device 'cuda:-1': bad CUDA device number"
bad_devices "cuda: 1" "device 'cuda: 1': bad CUDA device number"
bad_devices "cuda:1024" "device 'cuda:1024': bad CUDA device number"
bad_devices "gpu0" "device 'gpu0': unknown (expected cpu or cuda:N)"
bad_devices "cpu,all" "all stands alone"
bad_devices "$(printf 'cpu,%.0s' $(seq 16))cpu" "more than 16 workers"
for v in 0 17 x ""; do
    "$BIN" run "$T/bad.db" --manifest "$T/img" --model test: --workers-per-gpu "$v" >/dev/null 2>"$T/err"
    check "--workers-per-gpu '$v': exit 2, one line naming it, no database" bash -c '[ $1 -eq 2 ] &&
        [ ! -e "$2" ] && [ $(wc -l <"$3") -eq 1 ] && grep -q -- --workers-per-gpu "$3"' _ $? "$T/bad.db" "$T/err"
done
# (not by the images' workers: $T/img has one image, which one worker does
# however many there are)
"$BIN" run "$T/c.db" --manifest "$T/img" --model test: --devices cpu --workers-per-gpu 4 \
    >/dev/null 2>"$T/err"
check "--devices cpu --workers-per-gpu 4: still one cpu worker (exit 0)" bash -c "[ $? -eq 0 ] &&
    grep -q 'workers-per-gpu 4: workers cpu\$' '$T/err' &&
    [ \"\$('$BIN' sql '$T/c.db' 'select devices from runs')\" = cpu ]"
"$BIN" run "$T/d.db" --manifest "$T/img" --model test: --devices cpu,cpu,cpu --quiet >/dev/null 2>"$T/err"
check "--devices cpu,cpu,cpu: a name repeats = several workers (exit 0)" test $? -eq 0

echo "RESULT $pass $fail"
[ $fail -eq 0 ]
