#!/usr/bin/env bash
# test_harden.sh: regression tests of robustness defects found by review:
# each section is one defect, and each check fails on the code before the fix.
#   1. the images' storage vanishing mid-run (or absent at a resume) stops the
#      run (exit 75) without failing images; a rerun completes to the masks of
#      an uninterrupted run.
#   2. a binary file given as --manifest (an image, a database, a zip, UTF-16,
#      random bytes) is refused with one line naming it; nothing is added.
#   3. status under a read fault at each read (the fault VFS): the whole report
#      and exit 0, or exit 1 with one line and nothing on stdout.
#   5. shards and Slurm: SA_RESTART (a signal during a blocking manifest read
#      is a clean stop, not a read error); SLURM_ARRAY_TASK_ID without _COUNT
#      (derived from _MAX/_MIN/_STEP, or refused, never unsharded); --shard
#      with spaces refused alike on either side; a comma in $SAM2AMG survives
#      submit.sh; a working copy kept after a failed last checkpoint is
#      used, not wiped, by the next run; merge.sh merges local copies of
#      the shards (SQLite cannot lock on Lustre noflock).
#   6. exported JSON for file names that are not UTF-8: names differing only
#      in an invalid byte stay distinct (not all U+FFFD) and read back
#      (os.fsencode) to the exact bytes; a JSONL manifest takes them too.
#   7. a config file number that overflows a double (1e400): one line naming
#      the key and "out of range", exit 2.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/sam2amg
T=$(mktemp -d /tmp/test_harden.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, then a command that must succeed
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; fi
}
q() { "$BIN" sql "$1" "$2" 2>&1; }
AMG=(--points-per-side 4 --pred-iou-thresh 0 --stability-score-thresh 0 --quiet)
masks_of() { q "$1" "select i.path, m.idx, m.rle, m.area, m.predicted_iou from masks m join images i on i.id = m.image_id order by i.path, m.idx"; }

# small PNGs, all different
python3 - "$T/vol/img" 24 <<'EOF'
import os, struct, sys, zlib
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
def chunk(t, b): return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
for k in range(n):
    w, h = 40 + k, 32
    raw = b"".join(b"\0" + bytes(((x * (k + 3) + y * 5) // 17 * 40) % 256 for x in range(w) for _ in range(3)) for y in range(h))
    with open(os.path.join(d, "p%02d.png" % k), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
EOF

# ---- 1. the images' storage goes away mid-run ----
ls "$T"/vol/img/*.png > "$T/man.txt"
echo "$T/vol/img/missing.png" >> "$T/man.txt"            # bad paths: fail alone
echo "$T/nowhere/x.png" >> "$T/man.txt"
"$BIN" run "$T/ref.db" --manifest "$T/man.txt" --model test: "${AMG[@]}" 2>/dev/null
check "reference run: exit 3 (the missing file)" test $? -eq 3
SAM2AMG_TEST_PAUSE_IMAGE=0.3 "$BIN" run "$T/gone.db" --manifest "$T/man.txt" --model test: \
    "${AMG[@]}" --batch 1 2> "$T/gone.err" &
pid=$!
for _ in $(seq 100); do
    [ "$(q "$T/gone.db" "select count(*) from images where status='done'" 2>/dev/null)" -ge 3 ] 2>/dev/null && break
    sleep 0.1
done
mv "$T/vol" "$T/vol.away"                                  # the volume is unmounted
wait $pid
rc=$?
check "storage gone mid-run: exit 75" test $rc -eq 75
check "storage gone mid-run: one line naming the folder and the reason" bash -c \
    "[ \$(wc -l < '$T/gone.err') -eq 1 ] && grep -q '$T/vol.*storage is not reachable' '$T/gone.err'"
check "storage gone mid-run: nothing failed but the missing file" test \
    "$(q "$T/gone.db" "select count(*) from images where status='failed' and path not like '%missing.png' and path not like '%nowhere%'")" = 0
check "storage gone mid-run: some done, the rest pending with no attempt charged" test \
    "$(q "$T/gone.db" "select sum(status='done') > 0 and sum(status='pending') > 0 and sum(status='running') = 0 and coalesce(max(attempts) filter (where status='pending'), 0) = 0 from images")" = 1
# a resume while the volume is still away: its mount point is an empty folder
mkdir "$T/vol"
"$BIN" run "$T/gone.db" 2> "$T/gone2.err"
rc=$?
check "resume with the storage still gone: exit 75" test $rc -eq 75
check "resume with the storage still gone: nothing failed, no attempt charged" test \
    "$(q "$T/gone.db" "select count(*) from images where (status='failed' and path not like '%missing.png' and path not like '%nowhere%') or (status='pending' and attempts > 0)")" = 0
rmdir "$T/vol"
mv "$T/vol.away" "$T/vol"
"$BIN" run "$T/gone.db" --quiet 2>/dev/null
check "rerun after the storage is back: exit 3 (the missing file)" test $? -eq 3
check "rerun: the masks of the uninterrupted run" cmp -s <(masks_of "$T/ref.db") <(masks_of "$T/gone.db")
check "rerun: only the missing files failed" test \
    "$(q "$T/gone.db" "select group_concat(path, ' ') from (select path from images where status <> 'done' order by path)")" = "$T/nowhere/x.png $T/vol/img/missing.png"

# ---- 2. --manifest must be text ----
cp "$T/vol/img/p00.png" "$T/photo.png"
(cd "$T" && zip -q arch.zip photo.png) 2>/dev/null || printf 'PK\003\004rest' > "$T/arch.zip"
head -c 4096 /dev/urandom | tr -d '\n' > "$T/random.txt"
printf '%s\n' "$T/vol/img/p01.png" | iconv -t UTF-16 > "$T/utf16.txt"
for m in photo.png:PNG ref.db:SQLite arch.zip:zip random.txt:binary utf16.txt:UTF-16; do
    f=${m%%:*} what=${m#*:}
    "$BIN" run "$T/sniff.db" --manifest "$T/vol/img" --manifest "$T/$f" --model test: "${AMG[@]}" > "$T/sniff.out" 2> "$T/sniff.err"
    rc=$?
    check "--manifest $f: exit 1, one line naming it and '$what'" bash -c \
        "[ $rc -eq 1 ] && [ \$(wc -l < '$T/sniff.err') -eq 1 ] && grep -q '$T/$f: not a manifest.*$what' '$T/sniff.err'"
    check "--manifest $f: nothing added (not even the other manifest's images)" test \
        "$(q "$T/sniff.db" "select count(*) from images")" = 0
done
# text stays text: Latin-1 names, a stray NUL line, a BOM, stdin
for i in $(seq 40); do printf '/nowhere/\xe9t\xe9/ann\xe9e/cr\xe8me-br\xfbl\xe9e-%d.png\n' $i; done > "$T/latin1.txt"
"$BIN" run "$T/latin1.db" --manifest "$T/latin1.txt" --model test: "${AMG[@]}" 2>/dev/null
check "a manifest of 40 Latin-1 names (1 byte in 6 not UTF-8) is text: 40 images" test \
    "$(q "$T/latin1.db" "select count(*) from images")" = 40
{ printf '\xef\xbb\xbf%s\n' "$T/vol/img/p02.png"; printf '%s/vol/img/caf\xe9.png\n' "$T"; printf 'x\0y\n'; } > "$T/text.txt"
"$BIN" run "$T/text.db" --manifest "$T/text.txt" --model test: "${AMG[@]}" 2> "$T/text.err"
check "a text manifest with a Latin-1 name and a NUL line is read (NUL line skipped)" bash -c \
    "[ \"\$('$BIN' sql '$T/text.db' 'select count(*) from images')\" = 2 ] && grep -q 'NUL byte' '$T/text.err'"
"$BIN" run "$T/stdin.db" --manifest - --model test: "${AMG[@]}" < "$T/photo.png" 2> "$T/stdin.err"
check "--manifest - with an image on stdin: refused, exit 1" bash -c \
    "[ $? -eq 1 ] && grep -q 'stdin: not a manifest.*PNG' '$T/stdin.err'"
ls "$T"/vol/img/p0*.png | "$BIN" run "$T/stdin.db" --manifest - --model test: "${AMG[@]}" 2>/dev/null
check "--manifest - with paths on stdin: read" test "$(q "$T/stdin.db" "select count(*) from images where status = 'done'")" = 10

# ---- 3. status: a read error part way is an error, not a shorter report ----
# gone.db: 24 done, 2 failed; its images table spans several pages
"$BIN" status "$T/gone.db" > "$T/status.ref"
check "status: exit 0, counts and the last errors" bash -c \
    "grep -q 'done 24  failed 2' '$T/status.ref' && grep -q 'nowhere/x.png' '$T/status.ref'"
rm -f "$T/count.txt"
SAM2AMG_FAULT_VFS=count SAM2AMG_FAULT_VFS_REPORT="$T/count.txt" "$BIN" status "$T/gone.db" > /dev/null
nread=$(awk '{print $2}' "$T/count.txt")
# and a database whose failed rows are read by the last-errors query alone
# (run_id NULL, not in the first queries' pages): a fault inside that loop
cp "$T/gone.db" "$T/many.db"
python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executemany("insert into images(path, status, attempts, error, added_at, finished_at) values (?, ?, 1, ?, 0, ?)",
              [("/x/f%05d.png" % i, "failed", "/x/f%05d.png: " % i + "e" * 300, i) for i in range(3000)])
c.commit()' "$T/many.db"
"$BIN" status "$T/many.db" > "$T/many.ref"
rm -f "$T/count2.txt"
SAM2AMG_FAULT_VFS=count SAM2AMG_FAULT_VFS_REPORT="$T/count2.txt" "$BIN" status "$T/many.db" > /dev/null
nread2=$(awk '{print $2}' "$T/count2.txt")
bad=0 stopped=0 last_errors=0
for plan in $(seq 1 "$nread" | sed 's/^/gone:/') $(seq 1 7 "$nread2" | sed 's/^/many:/'); do
    d=${plan%%:*} k=${plan#*:}
    SAM2AMG_FAULT_VFS=read:$k "$BIN" status "$T/$d.db" > "$T/status.out" 2> "$T/status.err"
    rc=$?
    ref=$T/status.ref; [ $d = many ] && ref=$T/many.ref
    if [ $rc -eq 0 ]; then cmp -s "$ref" "$T/status.out" || { bad=$((bad + 1)); echo "# $d read:$k: exit 0, a different report"; }
    elif [ $rc -eq 1 ] && [ ! -s "$T/status.out" ] && [ "$(wc -l < "$T/status.err")" -eq 1 ]; then
        stopped=$((stopped + 1)); grep -q 'last errors' "$T/status.err" && last_errors=$((last_errors + 1))
    else bad=$((bad + 1)); echo "# $d read:$k: exit $rc, $(wc -c < "$T/status.out") bytes out: $(head -c 200 "$T/status.err")"; fi
done
echo "# status: $nread + $nread2 reads, $stopped stopped by the fault ($last_errors in the last-errors query)"
check "status, a read fault at each of $nread reads, and every 7th of $nread2: the full report, or exit 1 with one line and no output" test $bad -eq 0
check "status: faults inside the last-errors loop were reported, not cut short" test $last_errors -gt 0

# ---- 5. shards and Slurm ----
# a signal while run blocks reading its manifest from a pipe
# (the manifest comes 4 s late; the signal at 2 s, once the handlers are
# surely installed: 1.5 and 0.7 s left little room on a busy machine)
( sleep 4; ls "$T"/vol/img/p0*.png ) | "$BIN" run "$T/sig.db" --manifest - --model test: "${AMG[@]}" 2> "$T/sig.err" &
pid=$!
sleep 2
kill -USR1 $pid
wait $pid
rc=$?
check "SIGUSR1 during a blocking manifest read: exit 75, no read error (SA_RESTART)" bash -c \
    "[ $rc -eq 75 ] && ! grep -qi 'interrupted system call\|read error' '$T/sig.err'"
check "... and the manifest was read whole" test "$(q "$T/sig.db" "select count(*) from images")" = 10
shard_of_env() {   # env assignments...; prints run's exit status and its shard line
    env -u SLURM_ARRAY_TASK_COUNT -u SLURM_ARRAY_TASK_MAX -u SLURM_ARRAY_TASK_MIN \
        -u SLURM_ARRAY_TASK_STEP -u SLURM_ARRAY_TASK_ID "$@" "$BIN" run "$T/env$RANDOM.db" \
        --manifest "$T/vol/img" --model test: --points-per-side 2 2>&1 >/dev/null | grep -m1 'shard\|SLURM'
}
out=$(shard_of_env SLURM_ARRAY_TASK_ID=2)
check "SLURM_ARRAY_TASK_ID without _COUNT or _MAX: refused, naming both" bash -c \
    "[[ '$out' == *'SLURM_ARRAY_TASK_COUNT is not'*'--shard K/N'* ]]"
env -u SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_ID=2 "$BIN" run "$T/e0.db" --manifest "$T/vol/img" --model test: 2>/dev/null
check "... exit 2" test $? -eq 2
out=$(shard_of_env SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=7 SLURM_ARRAY_TASK_STEP=2)
check "--array=1-7:2 without _COUNT: task 5 is shard 2/4 (from _MAX)" bash -c "[[ '$out' == *'shard 2/4 from SLURM_ARRAY_TASK_ID=5'* ]]"
out=$(shard_of_env SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_MAX=3)
check "--array=0-3 without _COUNT: task 3 is shard 3/4" bash -c "[[ '$out' == *'shard 3/4'* ]]"
for bad in " 1/4" "1/4 " "1 /4" "1/ 4" "+1/4" "1/+4"; do
    "$BIN" run "$T/sh.db" --manifest "$T/vol/img" --model test: --shard "$bad" 2> "$T/sh.err"
    check "--shard '$bad': exit 2, one line" bash -c "[ $? -eq 2 ] && [ \$(wc -l < '$T/sh.err') -eq 1 ]"
done
# submit.sh with a fake sbatch: SAM2AMG reaches the tasks whole, commas included
mkdir -p "$T/fake" "$T/a,b"
cp "$BIN" "$T/a,b/sam2amg"
cat > "$T/fake/sbatch" <<'SB'
#!/usr/bin/env bash
{ printf 'ARGS'; printf ' [%s]' "$@"; echo; echo "ENV SAM2AMG=[${SAM2AMG:-}]"; } >> "$FAKE_LOG"
echo 4242
SB
chmod +x "$T/fake/sbatch"
FAKE_LOG=$T/sbatch.log PATH="$T/fake:$PATH" SAM2AMG="$T/a,b/sam2amg" \
    bash jobs/slurm/submit.sh --manifest "$T/man.txt" --tasks 2 --out "$T/sout" -- --model test: > /dev/null
check "submit.sh with a comma in \$SAM2AMG: exit 0" test $? -eq 0
check "... sbatch gets the path whole through the environment, --export has no list" bash -c \
    "[ \$(grep -c 'ENV SAM2AMG=\[$T/a,b/sam2amg\]' '$T/sbatch.log') -eq 2 ] && ! grep -q 'export=ALL,' '$T/sbatch.log'"

# a working copy kept after a failed last checkpoint is not wiped by the next run
mkdir -p "$T/nfs" "$T/loc" "$T/m2"
cp "$T"/vol/img/p1*.png "$T/m2/"
NFS=(env SAM2AMG_ASSUME_NETWORK_FS=test-nfs)
"${NFS[@]}" "$BIN" run "$T/nfs/k.db" --manifest "$T/vol/img" --model test: "${AMG[@]}" --local-dir "$T/loc" 2>/dev/null
check "kept copy: a first run checkpoints, exit 0" test $? -eq 0
mkdir "$T/nfs/k.db.checkpoint-tmp"           # the next checkpoints cannot be written
"${NFS[@]}" "$BIN" run "$T/nfs/k.db" --manifest "$T/m2" --local-dir "$T/loc" --quiet 2> "$T/k2.err"
check "kept copy: a run whose last checkpoint fails: exit 1, says it keeps the working copy" bash -c \
    "[ $? -eq 1 ] && grep -q 'working copy .* is kept, and the next run' '$T/k2.err'"
rmdir "$T/nfs/k.db.checkpoint-tmp"
"${NFS[@]}" "$BIN" run "$T/nfs/k.db" --local-dir "$T/loc" 2> "$T/k3.err"
check "kept copy: the next run goes on from it (exit 0), nothing redone" bash -c \
    "[ $? -eq 0 ] && grep -q 'kept by the last run' '$T/k3.err' && grep -q ' 0 images done' '$T/k3.err'"
check "kept copy: the checkpoint now has the second manifest's images, done" test \
    "$(q "$T/nfs/k.db" "select count(*) from images where status = 'done' and path like '%/m2/%'")" = 10

# merge.sh merges node-local copies of the shards, one at a time
mkdir -p "$T/so" "$T/mt"
for k in 0 1; do
    "$BIN" run "$T/so/shard-$k.db" --manifest "$T/vol/img" --model test: "${AMG[@]}" --shard $k/2 2>/dev/null
done
"$BIN" run "$T/so/one.db" --manifest "$T/vol/img" --model test: "${AMG[@]}" 2>/dev/null
SAM2AMG=$BIN TMPDIR=$T/mt bash jobs/slurm/merge.sh "$T/so" 2 > "$T/ms.out" 2>&1
check "merge.sh (shards copied locally one by one): exit 0, merged.db written" bash -c \
    "[ $? -eq 0 ] && grep -q 'wrote $T/so/merged.db' '$T/ms.out' && [ -z \"\$(ls -A '$T/mt')\" ]"
check "merge.sh: merged.db has exactly the masks of a single run" \
    cmp -s <(masks_of "$T/so/one.db") <(masks_of "$T/so/merged.db")

# ---- 6. names that are not UTF-8 in exported JSON ----
mkdir -p "$T/l1"
cp "$T/vol/img/p03.png" "$T/l1/$(printf 'caf\xe9.png')"
cp "$T/vol/img/p04.png" "$T/l1/$(printf 'caf\xe8.png')"
cp "$T/vol/img/p05.png" "$T/l1/$(printf 'caf\xef\xbf\xbd.png')"   # a real U+FFFD
"$BIN" run "$T/l1.db" --manifest "$T/l1" --model test: "${AMG[@]}" 2>/dev/null
check "three names differing in one non-UTF-8 byte: run exit 0" test $? -eq 0
"$BIN" export "$T/l1.db" --format coco "$T/l1.coco.json" && "$BIN" export "$T/l1.db" --format sa1b "$T/l1.sa1b"
check "export coco and sa1b: exit 0" test $? -eq 0
cat > "$T/names.py" <<'PY'
import json, os, sys
T = sys.argv[1]
want = sorted([b"caf\xe9.png", b"caf\xe8.png", b"caf\xef\xbf\xbd.png"])
coco = json.load(open(os.path.join(T, "l1.coco.json")))
got = sorted(os.fsencode(i["file_name"]) for i in coco["images"])
assert got == want, got
d = os.path.join(T, "l1.sa1b")
sa = sorted(os.fsencode(json.load(open(os.path.join(d, f)))["image"]["file_name"]) for f in os.listdir(d))
assert sa == want, sa
PY
check "COCO file_name and SA-1B image.file_name: three distinct names, each os.fsencode-s to its bytes" \
    python3 "$T/names.py" "$T"
python3 -c 'import json, os, sys; print(json.dumps({"path": os.fsdecode(os.fsencode(sys.argv[1]))}))' \
    "$(printf '%s/l1/caf\xe9.png' "$T")" > "$T/l1.jsonl"
check "Python's JSONL of a Latin-1 name holds \\udce9" grep -q 'udce9' "$T/l1.jsonl"
"$BIN" run "$T/l1.db" --manifest "$T/l1.jsonl" 2> "$T/l1.err"
check "... and as a JSONL manifest it names the same image (nothing new, no bad line)" \
    grep -q '0 new images, 1 already present, 0 bad lines' "$T/l1.err"
# a failure's reason quoting a name that is not UTF-8 is stored as valid
# UTF-8 text (the byte as \xHH, as images.path): status, sql and serve's
# JSON read it (it held the raw byte)
printf '%s/errutf/caf\xe9.png\n' "$T" > "$T/errutf.txt"
"$BIN" run "$T/errutf.db" --manifest "$T/errutf.txt" --model test: --quiet 2>/dev/null
check "a missing Latin-1 name: images.error is valid UTF-8 with the byte as \\xe9" python3 -c '
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.text_factory = bytes
(e,) = c.execute("SELECT error FROM images").fetchone()
e.decode("utf-8"); assert b"caf\\xe9.png: " in e, e' "$T/errutf.db"

# ---- 7. a config number out of range ----
cfg() {   # the micro config with one replacement
    sed "$1" <<'CFG'
{"model": {"embed_dim": 96, "num_heads": 1, "stages": [1, 2, 7, 2], "global_att_blocks": [5, 7, 9],
 "window_spec": [8, 4, 14, 7], "window_pos_embed_bkg_spatial_size": [7, 7], "d_model": 256,
 "image_size": 1024}, "amg": {"pred_iou_thresh": 0.5}}
CFG
}
cfg 's/"pred_iou_thresh": 0.5/"pred_iou_thresh": 1e400/' > "$T/c1.json"
cfg 's/"stages": \[1, 2/"stages": [1, -2e999/' > "$T/c2.json"
for c in c1:pred_iou_thresh c2:stages; do
    "$BIN" run "$T/cfg.db" --model test: --config "$T/${c%%:*}.json" --manifest "$T/vol/img" 2> "$T/cfg.err"
    rc=$?
    check "config with ${c#*:} = 1e400-like: exit 1 (a file that does not parse), one line naming the key and 'out of range'" bash -c \
        "[ $rc -eq 1 ] && [ \$(wc -l < '$T/cfg.err') -eq 1 ] && grep -q '\"${c#*:}\": .* is out of range' '$T/cfg.err'"
done

# status: a run whose times give an ETA beyond any integer (a clock far
# off, an edited runs row) says so, instead of a garbage negative ETA
mkdir -p "$T/eta/img"
cp tests/fixtures/micro/image.png "$T/eta/img/a.png"; cp tests/fixtures/micro/image.png "$T/eta/img/b.png"
"$BIN" run "$T/eta/x.db" --manifest "$T/eta/img" --model test: --points-per-side 4 --quiet
python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("update runs set started_at = -1e300")
c.execute("update images set status = '"'pending'"', run_id = NULL where id = (select max(id) from images)")
c.commit()' "$T/eta/x.db"
"$BIN" status "$T/eta/x.db" >"$T/eta/out" 2>&1
check "status: an ETA too large for an integer is 'over 100000 h'" \
    bash -c "grep -q 'ETA over 100000 h for 1 left' '$T/eta/out' && ! grep -q 'ETA -' '$T/eta/out'"

echo "RESULT $pass $fail"
[ $fail -eq 0 ]
