#!/usr/bin/env bash
# test_jobs_regress.sh: regression tests of the runner's issue-tracker
# defects: a per-image store error fails that image only; one file is one
# image whatever the spelling of its path; manifests (BOM, surrogate pairs,
# all or nothing); resume from another folder; one-line lock message; and
# the exports (unique COCO file_name, pycocotools' bbox, deterministic
# names that a re-export replaces, long paths, no half-written files).
#
# The model is the test engine (--model test:) except for the resume test,
# which needs a real weights file (the micro SAM 2.1 checkpoint).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/sam2amg
FIX=$PWD/tests/fixtures
T=$(mktemp -d /tmp/test_jobs_regress.XXXXXX)
T=$(cd "$T" && pwd -P)   # realpath: stored paths are canonical
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, then a command that must succeed
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; fi
}
q() { "$BIN" sql "$1" "$2" 2>&1; }   # db, sql -> rows
AMG=(--model test: --points-per-side 8 --pred-iou-thresh 0 --stability-score-thresh 0 --quiet)

mkdir -p "$T/img" "$T/a" "$T/b" "$T/elsewhere"
cp "$FIX"/photos/*.jpg "$FIX"/photos/*.png "$T/img/"
n_img=$(ls "$T/img" | wc -l)
cp "$FIX/photos/coins.png" "$T/a/same.png"
cp "$FIX/photos/coffee.png" "$T/b/same.png"

# ---- 1. a store error of one image fails that image, not the run ----
D=$T/fault.sqlite
SAM2AMG_FAULT_STORE_IMAGE=3 "$BIN" run "$D" --manifest "$T/img" "${AMG[@]}" --batch 4 2> "$T/e"
rc=$?
check "per-image store fault: exit 3 (some failed), not 1 (run-level)" test $rc -eq 3
check "per-image store fault: exactly that image failed, with the real reason" test \
    "$(q "$D" "select count(*) from images where status = 'failed' and error like '%masks cannot be stored%injected fault (store, image data)%'")" = 1
check "per-image store fault: the others done" test \
    "$(q "$D" "select count(*) from images where status = 'done'")" = $((n_img - 1))
check "per-image store fault: no partial masks of the failed image" test \
    "$(q "$D" "select count(*) from masks m join images i on i.id = m.image_id where i.status <> 'done'")" = 0
check "per-image store fault: nothing left running, one attempt" test \
    "$(q "$D" "select count(*) from images where status = 'running' or attempts <> 1")" = 0
before=$(q "$D" "select group_concat(id || ':' || status || ':' || attempts || ':' || error) from images where status <> 'done'")
"$BIN" run "$D" --quiet
check "per-image store fault: resume exits 3 and changes nothing" bash -c \
    "[ $? -eq 3 ] && [ \"\$('$BIN' sql '$D' \"select group_concat(id || ':' || status || ':' || attempts || ':' || error) from images where status <> 'done'\")\" = '$before' ]"
check "per-image store fault: the failed image's reason is not 'the process died'" test \
    "$(q "$D" "select count(*) from images where error like '%died%'")" = 0
# the run-level fault still stops the run (exit 1), the image fault does not
SAM2AMG_FAULT_STORE=$((n_img + 3)) "$BIN" run "$T/fault2.sqlite" --manifest "$T/img" "${AMG[@]}" 2> "$T/e"
check "a run-level store fault still ends the run with exit 1" bash -c "[ $? -eq 1 ] && grep -q 'injected fault (store step)' '$T/e'"

# ---- 2. one file, one image ----
D=$T/paths.sqlite
ln -s "$T/a/same.png" "$T/b/link.png"
ln -s ../a "$T/b/linkdir"
(cd "$T" && printf '%s\n' a/same.png a//same.png "$T/a/../a/same.png" ./a/./same.png \
    "$T//a///same.png" b/link.png b/linkdir/same.png b/linkdir/./same.png missing/../nope.png \
    > "$T/paths.txt")
(cd "$T" && "$BIN" run "$D" --manifest paths.txt "${AMG[@]}")
check "a/same.png, a//same.png, /abs/a/../a/same.png, ./a/./same.png, a symlink: one image" test \
    "$(q "$D" "select group_concat(path) from images where path like '%same.png'")" = "$T/a/same.png"
check "a symlink is stored as its target (realpath)" test \
    "$(q "$D" "select count(*) from images where path like '%link.png'")" = 0
check "a missing path is normalized lexically and fails with 'No such file'" test \
    "$(q "$D" "select status || ':' || error from images where path = '$T/nope.png'")" = "failed:$T/nope.png: No such file or directory"
check "two images in all" test "$(q "$D" "select count(*) from images")" = 2
(cd "$T/a" && echo same.png | "$BIN" run "$D" --manifest - --quiet)
check "relative paths are relative to the working directory" test "$(q "$D" "select count(*) from images")" = 2
# b/linkdir/../same.png opens $T/same.png (missing), not b/same.png: ".." follows the link
(cd "$T" && echo b/linkdir/../same.png | "$BIN" run "$D" --manifest - --quiet)
check "'..' after a symlinked folder keeps the kernel's meaning" test \
    "$(q "$D" "select status from images where path = '$T/same.png'")" = failed
# a missing file under a symlinked folder: one image whatever the spelling
# (the folder's realpath + the name, with or without a "." component)
(cd "$T" && printf '%s\n' b/linkdir/gone.png b/linkdir/./gone.png | "$BIN" run "$D" --manifest - --quiet)
check "a missing file under a symlinked folder: one image, stored under the folder's realpath" test \
    "$(q "$D" "select group_concat(path) from images where path like '%gone.png'")" = "$T/a/gone.png"

# ---- 6. manifests: BOM, all or nothing ----
D=$T/man.sqlite
printf '\xef\xbb\xbfpath,n\n%s,1\n' "$T/a/same.png" > "$T/bom.csv"
printf '\xef\xbb\xbf%s\n' "$T/b/same.png" > "$T/bom.txt"
printf '\xef\xbb\xbf{"path": "%s"}\n' "$T/img/coins.png" > "$T/bom.jsonl"
printf 'name\nx.png\n' > "$T/nopath.csv"
ls "$T"/img/*.png > "$T/list.txt"
echo "$T/img/chelsea.jpg" | "$BIN" run "$D" --manifest - --manifest "$T/list.txt" --manifest "$T/nopath.csv" "${AMG[@]}" 2> "$T/e"
check "a bad manifest: exit 1, naming it" bash -c "[ $? -eq 1 ] && grep -q 'nopath.csv: line 1' '$T/e'"
check "a bad manifest: none of the command's manifests ingested (all or nothing)" test \
    "$("$BIN" sql "$D" "select count(*) from images" 2>/dev/null || echo 0)" = 0
"$BIN" run "$D" --manifest "$T/bom.csv" --manifest "$T/bom.txt" --manifest "$T/bom.jsonl" "${AMG[@]}" 2> "$T/e"
check "manifests with a UTF-8 BOM (CSV, text, JSONL): exit 0" test $? -eq 0
check "manifests with a UTF-8 BOM: the three images, done" test \
    "$(q "$D" "select count(*) from images where status = 'done' and path in ('$T/a/same.png', '$T/b/same.png', '$T/img/coins.png')")" = 3

# ---- 8. JSONL as Python writes it: surrogate pairs ----
D=$T/json.sqlite
cp "$FIX/photos/coins.png" "$T/a/smile😀.png"
python3 - "$T" <<'EOF'
import json, sys
T = sys.argv[1]
with open(f"{T}/py.jsonl", "w") as f:
    f.write(json.dumps({"path": f"{T}/a/smile\U0001F600.png"}) + "\n")   # \ud83d\ude00
    f.write(json.dumps({"path": f"{T}/a/same.png"}) + "\n")
    f.write('{"path": "%s/a/lone\\ud83d.png"}\n' % T)                    # a lone surrogate
EOF
check "the JSONL holds the escaped pair" grep -q 'ud83d\\ude00' "$T/py.jsonl"
"$BIN" run "$D" --manifest "$T/py.jsonl" "${AMG[@]}" 2> "$T/e"
check "JSONL surrogate pair: one 4-byte UTF-8 character, the file processed" test \
    "$(q "$D" "select status from images where path = '$T/a/smile😀.png'")" = done
check "JSONL lone surrogate: reported with its line number, skipped" bash -c \
    "grep -q 'py.jsonl: line 3: invalid JSON: .*surrogate' '$T/e' && [ \"\$('$BIN' sql '$D' 'select count(*) from images')\" = 2 ]"

# ---- 5. resume without --model from another folder ----
mkdir -p "$T/m"
cp "$FIX/micro/weights.safetensors" "$FIX/micro/meta.json" "$FIX/micro/image.png" "$T/m/"
cp "$FIX/photos/coins.png" "$T/m/second.png"
(cd "$T/m" && echo image.png > first.txt && "$BIN" run db.sqlite --manifest first.txt \
    --model weights.safetensors --config meta.json --points-per-side 4 --pred-iou-thresh 0 \
    --stability-score-thresh 0 --quiet)
check "relative --model and --config: runs stores absolute paths" test \
    "$(q "$T/m/db.sqlite" "select model_path || '|' || config from runs")" = "$T/m/weights.safetensors|$T/m/meta.json"
(cd "$T/elsewhere" && echo "$T/m/second.png" | "$BIN" run ../m/db.sqlite --manifest - --quiet 2> "$T/e")
check "resume without --model from another folder: exit 0" test $? -eq 0
check "resume from another folder: both images done with the same model" test \
    "$(q "$T/m/db.sqlite" "select count(*) from images where status = 'done'")" = 2

# ---- 7. the lock message is one line ----
D=$T/paths.sqlite
printf '4242\n' > "$D.lock"
flock "$D.lock" sleep 2 &
lockpid=$!
for _ in $(seq 100); do flock -n "$D.lock" true || break; sleep 0.02; done   # until it is held
"$BIN" run "$D" --quiet 2> "$T/e"
rc=$?
wait $lockpid
check "concurrent run refused: exit 1, one line naming the pid" bash -c \
    "[ $rc -eq 1 ] && [ \$(wc -l < '$T/e') -eq 1 ] && grep -q 'pid 4242 holds' '$T/e'"

# ---- 8. other parameters on a database: refused in one line ----
"$BIN" run "$D" --model test: --points-per-side 3 --quiet 2> "$T/e"
rc=$?
check "other parameters refused: exit 1, one line naming the database and 'do not mix'" bash -c \
    "[ $rc -eq 1 ] && [ \$(wc -l < '$T/e') -eq 1 ] && grep -q '^sam2amg run: $D: .*do not mix' '$T/e'"

# ---- 8b. a mistyped new database without --model: usage error, nothing created ----
"$BIN" run "$T/typo.sqlite" --quiet 2> "$T/e"
rc=$?
check "run of a missing DB without --model: exit 2, one line, no file created" bash -c \
    "[ $rc -eq 2 ] && [ \$(wc -l < '$T/e') -eq 1 ] && grep -q 'required for a new database' '$T/e' &&
     ! ls '$T' | grep -q typo"

# ---- 8c. --model a directory or a FIFO: one line with the reason, no hang ----
mkfifo "$T/wfifo"
timeout 20 "$BIN" run "$T/mdir.sqlite" --manifest "$T/img" --model "$T/img" --quiet 2> "$T/e"
rc=$?
check "run --model DIR: exit 1, one line naming DIR as a directory" bash -c \
    "[ $rc -eq 1 ] && [ \$(wc -l < '$T/e') -eq 1 ] && grep -q '$T/img.* directory' '$T/e'"
timeout 20 "$BIN" run "$T/mdir.sqlite" --manifest "$T/img" --model "$T/wfifo" --quiet 2> "$T/e"
rc=$?
check "run --model FIFO (no writer): exit 1 at once, not a regular file" bash -c \
    "[ $rc -eq 1 ] && grep -q '$T/wfifo: not a regular file' '$T/e'"

# ---- 9. over 2^32 pixels: refused from the header even when --max-pixels allows it ----
python3 - "$T/huge.png" <<'EOF2'
import struct, sys, zlib
c = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0))
                              + c(b"IDAT", zlib.compress(b"\0" * 100)) + c(b"IEND", b""))
EOF2
echo "$T/huge.png" | "$BIN" run "$T/huge.sqlite" --manifest - "${AMG[@]}" --max-pixels 1000000000000 2> "$T/e"
rc=$?
row=$(q "$T/huge.sqlite" "select status || '|' || attempts || '|' || error from images")
check "a 100000x100000 header with --max-pixels 1e12: failed once, over the limit of 4294967295, not retried" \
    bash -c "[ $rc -eq 3 ] && [ '$row' = 'failed|1|$T/huge.png: 100000x100000 = 10000000000 pixels is over the limit of 4294967295' ]"

# ---- exports on a database with a/same.png, b/same.png and more ----
D=$T/exp.sqlite
"$BIN" run "$D" --manifest "$T/img" --manifest "$T/a" --manifest "$T/b" "${AMG[@]}"
n_done=$(q "$D" "select count(*) from images where status = 'done'")
check "export database: every image done" test "$n_done" = "$(q "$D" "select count(*) from images")"

# 3 + 4: COCO file_name unique, bbox as pycocotools computes it
"$BIN" export "$D" --format coco "$T/coco.json"
check "export coco: exit 0" test $? -eq 0
check "export coco: file_name unique, relative to the common root" python3 - "$T/coco.json" "$n_done" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
names = [i["file_name"] for i in j["images"]]
assert len(names) == int(sys.argv[2]) and len(set(names)) == len(names), names
assert "a/same.png" in names and "b/same.png" in names and "img/coins.png" in names, names
EOF
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3   # tests/setup.sh installs pycocotools there
check "export coco: bbox = pycocotools toBbox of the segmentation, area = its area" $PY - "$T/coco.json" <<'EOF'
import json, sys
import pycocotools.mask as mu
j = json.load(open(sys.argv[1]))
assert len(j["annotations"]) > 0
for a in j["annotations"]:
    rle = {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
    assert [float(v) for v in mu.toBbox(rle)] == a["bbox"], (mu.toBbox(rle), a["bbox"])
    assert int(mu.area(rle)) == a["area"]
EOF
"$BIN" export "$D" --format sa1b "$T/sa1b"
check "export sa1b: the official box (w = x1 - x0 = toBbox w - 1), as masks.bbox_*" $PY - "$T/sa1b" "$D" <<'EOF'
import json, os, sqlite3, sys
import pycocotools.mask as mu
d, db = sys.argv[1], sys.argv[2]
stored = [(r[0], list(r[1:])) for r in sqlite3.connect(db).execute("select rle, bbox_x, bbox_y, bbox_w, bbox_h from masks")]
n = 0
for f in os.listdir(d):
    for a in json.load(open(os.path.join(d, f)))["annotations"]:
        rle = {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
        x, y, w, h = (float(v) for v in mu.toBbox(rle))
        assert a["bbox"] == [x, y, w - 1, h - 1], (a["bbox"], x, y, w, h)
        n += 1
assert n == len(stored) and n > 0
for rle, box in stored:
    r = json.loads(rle); r["counts"] = r["counts"].encode()
    x, y, w, h = (float(v) for v in mu.toBbox(r))
    assert box == [x, y, w - 1, h - 1], (box, x, y, w, h)
EOF

# 9b: deterministic names; a re-export replaces its own files
ls "$T/sa1b" > "$T/names1"
check "export sa1b: same.png twice -> same_ID.json for both, others STEM.json" bash -c \
    "[ \$(grep -c '^same_[0-9]*\.json\$' '$T/names1') -eq 2 ] && grep -qx coins.json '$T/names1'"
cp "$T/sa1b/coins.json" "$T/coins1.json"
echo garbage > "$T/sa1b/coins.json"
"$BIN" export "$D" --format sa1b "$T/sa1b"
check "re-export into the same folder: exit 0, the same names (no STEM_ID copies)" bash -c \
    "[ $? -eq 0 ] && ls '$T/sa1b' | cmp -s - '$T/names1'"
check "re-export replaced its own file" cmp -s "$T/coins1.json" "$T/sa1b/coins.json"
"$BIN" export "$D" --format sa1b "$T/new/deeper/sa1b"
check "export into a folder whose parents are missing: created, one JSON per image" \
    test "$(ls "$T/new/deeper/sa1b" | wc -l)" = "$n_done"
: > "$T/plainfile"
"$BIN" export "$D" --format sa1b "$T/plainfile/sub" 2> "$T/e"
check "export under a regular file: exit 1, one line naming it" bash -c \
    "[ $? -eq 1 ] && [ \$(wc -l < '$T/e') -eq 1 ] && grep -q 'plainfile' '$T/e'"
"$BIN" export "$D" --format png "$T/png" && "$BIN" export "$D" --format png "$T/png"
check "png export twice: one overlay per image" test "$(ls "$T/png" | wc -l)" = "$n_done"

# 10: no half-written output: a write that fails (a 2 KiB file size limit)
# leaves the old file whole. A copy in rollback-journal mode: opening a WAL
# database maps its 32 KiB -shm file, which the limit would refuse.
cp "$D" "$T/nowal.sqlite"
$PY -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("pragma journal_mode = delete")' "$T/nowal.sqlite"
D=$T/nowal.sqlite
echo OLD > "$T/old.json"
(trap '' XFSZ; ulimit -f 2; "$BIN" export "$D" --format coco "$T/old.json") 2> "$T/e"
check "coco export that cannot be written: exit 1, the old file intact" bash -c \
    "[ $? -eq 1 ] && [ \"\$(cat '$T/old.json')\" = OLD ] && grep -q 'write failed' '$T/e'"
big=$(ls -S "$T/sa1b" | head -n 1)
echo OLD > "$T/sa1b/$big"
(trap '' XFSZ; ulimit -f 2; "$BIN" export "$D" --format sa1b "$T/sa1b") 2> "$T/e"
check "sa1b export of a file that cannot be written: exit 1, that file intact" bash -c \
    "[ $? -eq 1 ] && [ \"\$(cat '$T/sa1b/$big')\" = OLD ] && grep -q 'write failed' '$T/e'"
check "no temporary file left behind" bash -c "! ls -a '$T/sa1b' '$T/png' '$T' | grep -q sam2amg-export"

# 9a: long paths: a deep image path exports under the right names; an
# export name over 255 bytes is refused, not cut
D=$T/long.sqlite
deep=$T
for k in $(seq 1 15); do deep=$deep/$(printf 'd%.0s' $(seq 1 240))_$k; done
mkdir -p "$deep/x" "$deep/y"
stem=$(printf 's%.0s' $(seq 1 250))   # STEM.png fits in 255 bytes, STEM_ID.json not
cp "$FIX/photos/coins.png" "$deep/x/$stem.png"
cp "$FIX/photos/coffee.png" "$deep/y/$stem.png"
cp "$FIX/photos/coins.png" "$deep/x/ok.png"
check "a path of more than 3600 bytes" test "${#deep}" -gt 3600
printf '%s\n' "$deep/x/$stem.png" "$deep/y/$stem.png" "$deep/x/ok.png" > "$T/long.txt"
"$BIN" run "$D" --manifest "$T/long.txt" "${AMG[@]}"
check "long paths: all three done" test "$(q "$D" "select count(*) from images where status = 'done'")" = 3
"$BIN" export "$D" --format sa1b "$T/long_out" 2> "$T/e"
check "long names: exit 1, the STEM_ID name over 255 bytes refused with a message" bash -c \
    "[ $? -eq 1 ] && [ \$(grep -c 'longer than 255 bytes' '$T/e') -eq 2 ]"
check "long paths: the other image exported under its own name, file_name right" \
    python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); assert j["image"]["file_name"] == "ok.png"' "$T/long_out/ok.json"
check "long paths: nothing else written" test "$(ls -a "$T/long_out" | wc -l)" = 3
"$BIN" export "$D" --format coco "$T/long.json"
check "long paths: coco file_name = the relative paths" python3 - "$T/long.json" "$stem" <<'EOF'
import json, sys
names = sorted(i["file_name"] for i in json.load(open(sys.argv[1]))["images"])
s = sys.argv[2]
assert names == sorted(["x/ok.png", f"x/{s}.png", f"y/{s}.png"]), names
EOF

check "coco export into a missing folder: created with its parents, a complete COCO file" bash -c \
    "'$BIN' export '$D' --format coco '$T/nodir/deeper/c.json' &&
     python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); assert j[\"images\"] and \"annotations\" in j' '$T/nodir/deeper/c.json'"
: > "$T/afile"
check "coco export under a regular file: exit 1, one line naming it, no temporary file named" bash -c \
    "! '$BIN' export '$D' --format coco '$T/afile/c.json' 2> '$T/e' && [ \$(wc -l < '$T/e') -eq 1 ] &&
     grep -q '^sam2amg export: $T/afile' '$T/e' && ! grep -q '[.]tmp-' '$T/e'"

# ---- png export of an image replaced by one of another size: the message gives its size ----
mkdir -p "$T/resized"
python3 - "$T/resized/r.png" 40 30 <<'EOF2'
import struct, sys, zlib
w, h = int(sys.argv[2]), int(sys.argv[3])
c = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
raw = b"".join(b"\0" + bytes((x * 7 + y * 3) % 256 for x in range(3 * w)) for y in range(h))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                              + c(b"IDAT", zlib.compress(raw)) + c(b"IEND", b""))
EOF2
"$BIN" run "$T/resized.sqlite" --manifest "$T/resized" "${AMG[@]}" 2>/dev/null
python3 - "$T/resized/r.png" 5 3 <<'EOF2'
import struct, sys, zlib
w, h = int(sys.argv[2]), int(sys.argv[3])
c = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
raw = b"".join(b"\0" + bytes(3 * w) for y in range(h))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                              + c(b"IDAT", zlib.compress(raw)) + c(b"IEND", b""))
EOF2
"$BIN" export "$T/resized.sqlite" --format png "$T/resized_png" 2> "$T/e"
rc=$?
check "png export of a resized image: exit 1, 'now 5x3, the masks are 40x30'" bash -c \
    "[ $rc -eq 1 ] && grep -q 'r.png: now 5x3, the masks are 40x30' '$T/e'"

# ---- schema migrations from several processes at once ----
# A writer (Python) holds an empty WAL database while three commands open
# it; each reads user_version 0 before it can take the write lock, so the
# ones after the first must see, under the lock, that the migrations were
# applied (before, they ran 001 again: "table runs already exists").
D=$T/race.sqlite
python3 - "$BIN" "$D" > "$T/race.out" 2>&1 <<'EOF'
import sqlite3, subprocess, sys, time
BIN, db = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, isolation_level=None)
c.execute("pragma journal_mode=wal")
c.execute("begin immediate")
ps = [subprocess.Popen([BIN, "sql", db, "--write", "select count(*) from mask_boxes"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
time.sleep(1)
c.execute("rollback")
for p in ps:
    o, e = p.communicate()
    print(p.returncode, o.strip(), e.strip())
EOF
check "three commands open a new database at once: each exits 0 with its answer, no migration error" \
    test "$(sort -u "$T/race.out")" = "0 0 "
check "after the concurrent opens: the current schema version" test \
    "$(q "$D" "pragma user_version")" = "$(q "$T/paths.sqlite" "pragma user_version")"

# ---- a generator error (not the loader's) names the image in images.error ----
mkdir -p "$T/tinyimg"
python3 - "$T/tinyimg/one.png" <<'EOF2'
import struct, sys, zlib
c = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
                              + c(b"IDAT", zlib.compress(b"\0\0\0\0")) + c(b"IEND", b""))
EOF2
"$BIN" run "$T/tiny.sqlite" --manifest "$T/tinyimg" --model test: --crop-n-layers 1 --quiet 2>/dev/null
check "an image too small for its crop layers: failed, the reason starts with its path" test \
    "$(q "$T/tiny.sqlite" "select status || ' ' || (instr(error, '$T/tinyimg/one.png: image 1x1 is too small') = 1) from images")" = "failed 1"

echo "RESULT $pass $fail"
[ $fail -eq 0 ]
