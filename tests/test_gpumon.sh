#!/usr/bin/env bash
# test_gpumon.sh: the GPUs' busy share as the driver measures it
# (include/gpumon.h, schema/006_gpu_busy.sql), with stand-ins for the CUDA
# driver (SAM2AMG_CUDA_DRIVER: cuDeviceGet, cuDeviceGetPCIBusId) and NVML
# (SAM2AMG_NVML: handles by PCI bus id, utilization readings), measured
# beside cpu workers (SAM2AMG_GPUMON_DEVICES) since no GPU runs here:
#   - run -v prints one "cuda:N: GPU busy P% (NVML utilization ...)" line
#     per GPU: 73% for a device that always reads 73, 0..100 for one that
#     alternates 0 and 100 (its mean lies strictly between when it has more
#     than one reading); the ordinals reach NVML through their PCI bus ids
#     (the stand-in driver maps ordinal k to bus 0x10+k, the stand-in NVML
#     knows buses 0x10.. only);
#   - the rows land in run_gpus (busy, readings, seconds) and status prints
#     them for the last working run; without -v nothing is printed but the
#     rows are stored;
#   - no NVML, a driver without cuDeviceGetPCIBusId, a device NVML does
#     not know: -v says "GPU busy not measured: ..." naming why, the run
#     still finishes (exit 0) and stores no row;
#   - a database of the previous schema (5) migrates to 6 and status reads
#     a database without the table.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/sam2amg
T=$(mktemp -d /tmp/test_gpumon.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, command...
    local name=$1; shift
    if "$@" >"$T/log" 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; sed 's/^/    /' "$T/log" | tail -5; fi
}
q() { "$BIN" sql "$1" "$2" 2>&1; }
if ! command -v "${CC:-cc}" >/dev/null; then
    echo "ok - # skip: no C compiler for the stand-ins"
    echo "RESULT 0 0"
    exit 0
fi
cat >"$T/fakecuda.c" <<'EOC'
#include <stdio.h>
int cuInit(unsigned f) { (void)f; return 0; }
int cuDeviceGetCount(int *n) { *n = 8; return 0; }
int cuDeviceGet(int *d, int ordinal) { if (ordinal < 0 || ordinal >= 8) return 101; *d = 100 + ordinal; return 0; }
#ifndef NO_PCI
int cuDeviceGetPCIBusId(char *bus, int len, int d) { snprintf(bus, (size_t)len, "0000:%02x:00.0", 0x10 + d - 100); return 0; }
#endif
EOC
cat >"$T/fakenvml.c" <<'EOC'
#include <stdio.h>
#include <string.h>
typedef struct { unsigned gpu, memory; } util_t;
static int dev[4] = {0, 1, 2, 3}, calls[4], inits;
int nvmlInit_v2(void) { inits++; return 0; }
int nvmlShutdown(void) { inits--; return 0; }
const char *nvmlErrorString(int rc) { return rc == 6 ? "Not Found" : "Unknown Error"; }
int nvmlDeviceGetHandleByPciBusId_v2(const char *bus, void **h) {
    unsigned dom, b, d, f;
    if (sscanf(bus, "%x:%x:%x.%x", &dom, &b, &d, &f) != 4 || b < 0x10 || b > 0x13) return 6;
    *h = &dev[b - 0x10];
    return 0;
}
typedef struct { unsigned long long total, free, used; } mem_t;
/* device 0 uses 1000, 3000, 2000, 3000... MiB of 81559; the others have no reading */
int nvmlDeviceGetMemoryInfo(void *h, mem_t *m) {
    static int n0;
    int k = *(int *)h;
    if (k != 0) return 999;
    m->total = 81559ull << 20;
    m->used = (n0++ == 0 ? 1000ull : n0 % 2 ? 2000ull : 3000ull) << 20;
    m->free = m->total - m->used;
    return 0;
}
/* device 0 reads 73, device 1 alternates 0 and 100, others 5 */
int nvmlDeviceGetUtilizationRates(void *h, util_t *u) {
    int k = *(int *)h;
#ifdef NO_UTIL
    if (k == 0) return 3;   /* no utilization reading (as on a MIG instance) */
#endif
    u->memory = 0;
    u->gpu = k == 0 ? 73 : k == 1 ? (calls[1]++ % 2 ? 100 : 0) : 5;
    return 0;
}
EOC
${CC:-cc} -shared -fPIC -o "$T/fakecuda.so" "$T/fakecuda.c" &&
    ${CC:-cc} -shared -fPIC -DNO_PCI -o "$T/nopci.so" "$T/fakecuda.c" &&
    ${CC:-cc} -shared -fPIC -o "$T/fakenvml.so" "$T/fakenvml.c" &&
    ${CC:-cc} -shared -fPIC -DNO_UTIL -o "$T/noutil.so" "$T/fakenvml.c"
check "stand-in driver and NVML built" test -f "$T/fakenvml.so"
mkdir -p "$T/img"
cp tests/fixtures/photos/*.* "$T/img/" && rm -f "$T/img/README.md"
export SAM2AMG_CUDA_DRIVER=$T/fakecuda.so SAM2AMG_NVML=$T/fakenvml.so
run() {   # db, extra args...
    local db=$1; shift
    SAM2AMG_TEST_PAUSE_IMAGE=0.1 "$BIN" run "$db" --manifest "$T/img" --model test: --points-per-side 8 --devices cpu "$@"
}

SAM2AMG_GPUMON_DEVICES=0,1 run "$T/a.db" -v >"$T/a.out" 2>"$T/a.err"
check "run -v with two measured GPUs: exit 0" test $? = 0
check "  cuda:0: GPU busy 73% (NVML utilization, the mean of N readings over S s)" \
    grep -q '^sam2amg run: cuda:0: GPU busy 73% (NVML utilization, the mean of [0-9]* readings over [0-9.]* s)$' "$T/a.err"
check "  cuda:0: GPU memory peak 3000 MiB of 81559 MiB (the largest reading)" \
    grep -q '^sam2amg run: cuda:0: GPU memory peak 3000 MiB of 81559 MiB (NVML, every process on the device)$' "$T/a.err"
check "  cuda:1, whose NVML has no memory reading: no memory line" \
    bash -c "! grep -q 'cuda:1: GPU memory' $T/a.err"
p1=$(sed -n 's/^sam2amg run: cuda:1: GPU busy \([0-9]*\)% (NVML utilization, the mean of \([0-9]*\) readings.*/\1 \2/p' "$T/a.err")
check "  cuda:1 alternating 0/100 over several readings: a mean strictly between (busy, readings: $p1)" \
    bash -c "set -- $p1; [ \${2:-0} -ge 3 ] && [ \$1 -gt 0 ] && [ \$1 -lt 100 ]"
check "  two rows in run_gpus, the busy share, readings and seconds stored" \
    test "$(q "$T/a.db" "select group_concat(device || '=' || round(busy, 2) || '/' || (samples >= 1) || '/' || (seconds > 0), ' ') from (select * from run_gpus where run_id = 1 order by device)")" = "cuda:0=0.73/1/1 cuda:1=$(q "$T/a.db" "select round(busy, 2) from run_gpus where device = 'cuda:1'")/1/1"
check "  cuda:1's stored share is what -v printed" \
    bash -c "[ \$(q() { \"$BIN\" sql \"\$1\" \"\$2\"; }; q $T/a.db \"select cast(round(busy * 100) as int) from run_gpus where device = 'cuda:1'\") = $(echo $p1 | cut -d' ' -f1) ]"
"$BIN" status "$T/a.db" >"$T/s.out" 2>&1
check "status prints each GPU of the last working run" \
    bash -c "grep -q '^cuda:0: GPU busy 73% (NVML utilization, the mean of [0-9]* readings over [0-9.]* s)$' $T/s.out &&
             grep -q '^cuda:1: GPU busy [0-9]*% (NVML' $T/s.out"

# a device with memory readings but no utilization one: its busy share is
# not known (it said "GPU busy 0% (... the mean of 0 readings ...)", and
# check.sh's run rows took that for an idle GPU); the memory peak is printed
SAM2AMG_NVML=$T/noutil.so SAM2AMG_GPUMON_DEVICES=0 run "$T/nu.db" -v >"$T/nu.out" 2>"$T/nu.err"
check "a device without utilization readings: exit 0, busy not measured, memory peak printed, no row" \
    bash -c "[ $? = 0 ] && ! grep -q 'cuda:0: GPU busy [0-9]' $T/nu.err &&
             grep -q '^sam2amg run: cuda:0: GPU busy not measured: NVML gave no utilization reading' $T/nu.err &&
             grep -q '^sam2amg run: cuda:0: GPU memory peak 3000 MiB of 81559 MiB' $T/nu.err &&
             [ \"\$($BIN sql $T/nu.db 'select count(*) from run_gpus')\" = 0 ]"

SAM2AMG_GPUMON_DEVICES=2 run "$T/b.db" >"$T/b.out" 2>"$T/b.err"
check "without -v: exit 0, nothing said about GPUs, the row stored" \
    bash -c "[ $? = 0 ] && ! grep -q 'GPU busy' $T/b.err && [ \"\$($BIN sql $T/b.db 'select device || \"=\" || busy from run_gpus')\" = 'cuda:2=0.05' ]"

not_measured() {   # label, expected reason, env...
    local label=$1 why=$2; shift 2
    env "$@" SAM2AMG_TEST_PAUSE_IMAGE=0 "$BIN" run "$T/$label.db" --manifest "$T/img" --model test: \
        --points-per-side 8 --devices cpu -v >"$T/$label.out" 2>"$T/$label.err"
    local rc=$?
    check "$label: exit 0, -v says not measured and why, no row" \
        bash -c "[ $rc = 0 ] && [ \$(grep -c 'GPU busy not measured' $T/$label.err) = 1 ] &&
                 grep -q '^sam2amg run: GPU busy not measured: .*$why' $T/$label.err &&
                 [ \"\$($BIN sql $T/$label.db 'select count(*) from run_gpus')\" = 0 ] &&
                 [ \"\$($BIN sql $T/$label.db \"select count(*) from images where status = 'done'\")\" = $(ls "$T/img" | wc -l) ]"
}
not_measured no-nvml "no NVML (" SAM2AMG_GPUMON_DEVICES=0 SAM2AMG_NVML=$T/none.so
not_measured no-pci "lacks cuInit, cuDeviceGet or cuDeviceGetPCIBusId" SAM2AMG_GPUMON_DEVICES=0 SAM2AMG_CUDA_DRIVER=$T/nopci.so
not_measured unknown-bus "NVML: cuda:7 (PCI 0000:17:00.0): no such device: Not Found" SAM2AMG_GPUMON_DEVICES=0,7
not_measured no-driver-device "cuda:9: no PCI bus id from the driver" SAM2AMG_GPUMON_DEVICES=9
# shards: each shard's runs and their GPU rows come along into the merged
# database, the rows following their runs' new ids; merging a shard again
# (it grew) replaces them, no duplicate
ls "$T/img"/* >"$T/man.txt"
for k in 0 1; do   # shard 0 measures cuda:0 (reads 73), shard 1 cuda:2 (reads 5)
    SAM2AMG_GPUMON_DEVICES=$((2 * k)) SAM2AMG_TEST_PAUSE_IMAGE=0 "$BIN" run "$T/s$k.db" --manifest "$T/man.txt" \
        --model test: --points-per-side 8 --devices cpu --shard $k/2 --quiet 2>/dev/null
done
"$BIN" merge "$T/m.db" "$T/s0.db" "$T/s1.db" >"$T/m.out" 2>&1
mrc=$?
got=$(q "$T/m.db" "select group_concat(shard || ':' || device || '=' || busy, ' ') from (select r.shard, g.device, g.busy from run_gpus g join runs r on r.id = g.run_id order by r.shard)")
check "merge of two shards: exit 0, each run's GPU row under its merged run ($got)" \
    bash -c "[ $mrc = 0 ] && [ '$got' = '0/2:cuda:0=0.73 1/2:cuda:2=0.05' ]"
for i in 1 2 3 4 5 6; do cp "$(ls "$T"/img/* | head -n 1)" "$T/img/more$i.png"; done
ls "$T/img"/* >"$T/man.txt"   # six more images: some fall in shard 0, which runs again
SAM2AMG_GPUMON_DEVICES=0 SAM2AMG_TEST_PAUSE_IMAGE=0 "$BIN" run "$T/s0.db" --manifest "$T/man.txt" \
    --model test: --points-per-side 8 --devices cpu --shard 0/2 --quiet 2>/dev/null
"$BIN" merge "$T/m.db" "$T/s0.db" >"$T/m2.out" 2>&1
check "merging shard 0 again (2 runs now): its rows replaced, not duplicated" \
    bash -c "[ $(q "$T/s0.db" "select count(*) from run_gpus") = 2 ] && [ $(q "$T/m.db" "select count(*) from run_gpus") = 3 ]"

SAM2AMG_GPUMON_DEVICES=junk run "$T/j.db" -v >"$T/j.out" 2>"$T/j.err"
check "SAM2AMG_GPUMON_DEVICES=junk: no GPU measured, nothing said, exit 0" \
    bash -c "[ $? = 0 ] && ! grep -q 'GPU busy' $T/j.err"
unset SAM2AMG_CUDA_DRIVER SAM2AMG_NVML

# schema 5 -> 6: a database made with the migrations 001..005 only
python3 - "$T/v5.db" <<'EOP' 2>"$T/py.err" || sqlite3 "$T/v5.db" "$(cat schema/00[1-5]_*.sql); PRAGMA user_version = 5;" 2>>"$T/py.err"
import sqlite3, sys, glob
db = sqlite3.connect(sys.argv[1])
for f in sorted(glob.glob("schema/00[1-5]_*.sql")):
    db.executescript(open(f).read())
db.execute("PRAGMA user_version = 5")
db.commit()
EOP
"$BIN" status "$T/v5.db" >"$T/v5.status" 2>&1
check "status on a schema-5 database (no run_gpus): exit 0" test $? = 0
run "$T/v5.db" >/dev/null 2>&1
check "run migrates it to 6: run_gpus exists, user_version 6" \
    bash -c "[ \"\$($BIN sql $T/v5.db 'pragma user_version')\" = 6 ] && [ \"\$($BIN sql $T/v5.db 'select count(*) from run_gpus')\" = 0 ]"
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
