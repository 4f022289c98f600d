#!/usr/bin/env bash
# test_jobs.sh: `sam2amg run/status/export/sql` end to end on real photos
# (tests/fixtures/photos) and synthetic images of many sizes and formats,
# with every kind of bad input and fault: each must fail alone with a clear
# reason, and nothing finished may be lost or duplicated.
#
# The model is the test engine (--model test:, a deterministic stand-in
# network through the real generator) so that this runs in seconds; the
# kill -9 test (test_jobs_kill.sh) uses the micro SAM 2.1 checkpoint.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/sam2amg
EXT=$PWD/$BUILD/libsam2amg_sql.so
T=$(mktemp -d /tmp/test_jobs.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {   # name, then a command that must succeed
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; fi
}
q() { "$BIN" sql "$1" "$2" 2>&1; }   # db, sql -> rows
# raw: the same through Python's sqlite3, not `sam2amg sql` (which catches
# mask_boxes up first): what the run itself left in the database
raw() { python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$1" "$2" 2>&1; }
BOXES_OK="select (select count(*) from mask_boxes) = (select count(*) from masks) and (select count(*) from masks m join mask_boxes b on b.id = m.id where b.x0 = m.bbox_x and b.x1 = m.bbox_x + m.bbox_w and b.y0 = m.bbox_y and b.y1 = m.bbox_y + m.bbox_h) = (select count(*) from masks) and (select count(*) from masks) > 0"
AMG=(--points-per-side 8 --pred-iou-thresh 0 --stability-score-thresh 0 --quiet)

# ---- inputs ----
mkdir -p "$T/img/sub/deeper" "$T/bad"
cp tests/fixtures/photos/* "$T/img/"
rm -f "$T/img/README.md"
python3 - "$T" <<'EOF'
import struct, sys, zlib, os
T = sys.argv[1]
def png(path, w, h, ch=3, depth=8, declared=None):
    color = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    rows = []
    for y in range(h):
        row = bytearray([0])
        for x in range(w):
            v = [(x * 7 + y * 3) % 256, (x * y) % 256, (255 - x * 5) % 256, 255][:ch]
            if (x // 9 + y // 7) % 3 == 0: v = [40] * ch
            for c in v:
                row += bytes([c, c]) if depth == 16 else bytes([c])
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows))
    dw, dh = declared or (w, h)
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", dw, dh, depth, color, 0, 0, 0))
                + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
def bmp(path, w, h):
    stride = (3 * w + 3) // 4 * 4
    pix = bytearray()
    for y in range(h - 1, -1, -1):
        row = bytearray()
        for x in range(w):
            v = ((x // 11) * 60 + (y // 13) * 30) % 256
            row += bytes([(x * 3) % 256, 255 - v, v])
        pix += row + bytes(stride - 3 * w)
    hdr = struct.pack("<2sIHHI", b"BM", 54 + len(pix), 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pix), 2835, 2835, 0, 0)
    open(path, "wb").write(hdr + dib + pix)
sizes = [(17, 23), (64, 48), (100, 37), (31, 200), (128, 128), (203, 97)]
for i, (w, h) in enumerate(sizes):
    png(f"{T}/img/sub/syn{i}_rgb.png", w, h, 3)
png(f"{T}/img/sub/deeper/grey.png", 50, 40, 1)
png(f"{T}/img/sub/deeper/rgba.png", 45, 61, 4)
png(f"{T}/img/sub/deeper/rgb16.png", 33, 29, 3, 16)
bmp(f"{T}/img/sub/deeper/b24.bmp", 77, 55)
bmp(f"{T}/img/sub/deeper/noext", 40, 90)   # found by its magic bytes
def ppm(path, w, h):   # binary PPM, decoded without libvips
    px = bytes((x * 7 + y * 3 + c * 50) % 256 for y in range(h) for x in range(w) for c in range(3))
    open(path, "wb").write(b"P6\n# a comment\n%d %d\n255\n" % (w, h) + px)
ppm(f"{T}/img/sub/deeper/p6.ppm", 41, 33)
ppm(f"{T}/img/sub/deeper/p6noext", 29, 37)   # found by its magic bytes
# bad inputs
open(f"{T}/bad/zero.png", "wb").close()
data = open(f"{T}/img/chelsea.jpg", "rb").read(); open(f"{T}/bad/trunc.jpg", "wb").write(data[: len(data) // 3])
data = open(f"{T}/img/coffee.png", "rb").read(); open(f"{T}/bad/trunc.png", "wb").write(data[: len(data) // 2])
open(f"{T}/bad/notimage.png", "w").write("this is not an image\n" * 20)
png(f"{T}/bad/bomb.png", 8, 8, 3, declared=(100000, 100000))
png(f"{T}/bad/big.png", 300, 300, 3)   # refused by --max-pixels below
os.mkdir(f"{T}/bad/dir.png")
os.mkfifo(f"{T}/bad/fifo.png")
# a non-UTF-8 file name (a real image)
data = open(f"{T}/img/coins.png", "rb").read()
open(os.path.join(T.encode(), b"bad/caf\xe9-latin1.png"), "wb").write(data)
EOF
(cd "$T/img" && find . -type f | sort) > "$T/good.txt"
n_good=$(wc -l < "$T/good.txt")
{
    sed "s|^\./|$T/img/|" "$T/good.txt"
    head -n 3 "$T/good.txt" | sed "s|^\./|$T/img/|"        # duplicate lines
    for b in zero.png trunc.jpg trunc.png notimage.png bomb.png big.png dir.png fifo.png missing.png; do
        echo "$T/bad/$b"
    done
    printf '%s/bad/caf\xe9-latin1.png\n' "$T"
    echo ""                                                  # empty line
    printf 'with\0nul.png\n'                                 # NUL byte
    head -c 5000 /dev/zero | tr '\0' a; echo                 # too long
} > "$T/manifest.txt"

# ---- the main run ----
"$BIN" run "$T/db.sqlite" --manifest "$T/manifest.txt" --model test: "${AMG[@]}" \
    --max-pixels 50000 2> "$T/run1.err"
rc=$?
check "run with bad images exits 3" test $rc -eq 3
check "after a run: one R*Tree box per mask, each = the mask's bbox (before any sql)" \
    test "$(raw "$T/db.sqlite" "$BOXES_OK")" = 1
check "bad manifest lines reported with line numbers" \
    bash -c "grep -q 'line $((n_good + 3 + 11)): empty' '$T/run1.err' && grep -q 'NUL byte' '$T/run1.err' && grep -q 'longer than 4096' '$T/run1.err'"
DB=$T/db.sqlite
check "duplicates added once" test "$(q "$DB" "select count(*) from images")" -eq $((n_good + 10))
check "every good image done" test "$(q "$DB" "select count(*) from images where status='done'")" -eq $((n_good + 1))
err_of() { q "$DB" "select error from images where path like '%/bad/$1'"; }
check "missing file: failed, 'No such file'" bash -c "[[ \"$(err_of missing.png)\" == *'No such file'* ]]"
check "zero-byte file: failed with a reason" bash -c "[[ -n \"$(err_of zero.png)\" ]]"
check "truncated JPEG: failed with a reason" bash -c "[[ -n \"$(err_of trunc.jpg)\" ]]"
check "truncated PNG: failed with a reason" bash -c "[[ -n \"$(err_of trunc.png)\" ]]"
check "not an image: failed with a reason" bash -c "[[ -n \"$(err_of notimage.png)\" ]]"
check "decompression bomb refused before decoding" bash -c "[[ \"$(err_of bomb.png)\" == *100000* ]]"
check "--max-pixels refuses a large image" bash -c "[[ \"$(err_of big.png)\" == *pixel* || \"$(err_of big.png)\" == *large* || \"$(err_of big.png)\" == *limit* ]]"
check "a directory in the manifest: failed" bash -c "[[ \"$(err_of dir.png)\" == *directory* ]]"
check "a FIFO in the manifest: failed, no hang" bash -c "[[ \"$(err_of fifo.png)\" == *FIFO* ]]"
check "failures are permanent (1 attempt)" test "$(q "$DB" "select max(attempts) from images where status='failed'")" -eq 1
check "non-UTF-8 name stored escaped and processed" \
    test "$(q "$DB" "select status from images where path like '%caf\\xe9-latin1.png'")" = done
check "no image left running" test "$(q "$DB" "select count(*) from images where status in ('running','pending')")" -eq 0
check "masks of done images only" test "$(q "$DB" "select count(*) from masks m join images i on i.id=m.image_id where i.status<>'done'")" -eq 0
check "rle_area(rle) = area for every mask" test "$(q "$DB" "select count(*) from masks where rle_area(rle) <> area")" -eq 0
check "masks exist" test "$(q "$DB" "select count(*) from masks")" -gt $((n_good))
check "status command" bash -c "'$BIN' status '$DB' | grep -q 'failed 9' && '$BIN' status '$DB' | grep -q 'last errors'"
masks1=$(q "$DB" "select count(*) from masks")

# ---- idempotent re-run ----
"$BIN" run "$DB" --manifest "$T/manifest.txt" --model test: "${AMG[@]}" --max-pixels 50000 2>/dev/null
check "re-run: exit 3 (failed images remain)" test $? -eq 3
check "re-run adds no image and no mask" bash -c "[ \"$(q "$DB" "select count(*) from images")\" -eq $((n_good + 10)) ] && [ \"$(q "$DB" "select count(*) from masks")\" -eq $masks1 ]"
check "a directory manifest (recursive walk) adds nothing new" bash -c \
    "'$BIN' run '$DB' --manifest '$T/img' --model test: ${AMG[*]} --max-pixels 50000; [ \"\$(q() { '$BIN' sql \"\$1\" \"\$2\"; }; q '$DB' 'select count(*) from images')\" -eq $((n_good + 10)) ]"
check "other parameters on the same DB are refused" bash -c \
    "! '$BIN' run '$DB' --model test: --points-per-side 4 --quiet 2>&1 | grep -q 'do not mix' && false || '$BIN' run '$DB' --model test: --points-per-side 4 --quiet 2>&1 | grep -q 'do not mix'"
check "resume without --model uses the DB's model" bash -c "'$BIN' run '$DB' --quiet; [ \$? -eq 3 ]"

# ---- directory manifest, CSV, JSONL, stdin on a fresh DB ----
D2=$T/db2.sqlite
"$BIN" run "$D2" --manifest "$T/img" --model test: "${AMG[@]}" 2>/dev/null
check "directory walk finds every image (by extension and magic)" bash -c "[ \$? -eq 0 ] && [ \"$(q "$D2" "select count(*) from images")\" -eq $n_good ]"
{ echo "id,path,note"; i=0; while read -r p; do i=$((i+1)); echo "$i,\"$T/img/${p#./}\",\"x, y\""; done < "$T/good.txt"; } > "$T/m.csv"
{ while read -r p; do printf '{"path": "%s", "k": 1}\n' "$T/img/${p#./}"; done < "$T/good.txt"; } > "$T/m.jsonl"
"$BIN" run "$D2" --manifest "$T/m.csv" --manifest "$T/m.jsonl" --quiet
check "CSV and JSONL manifests of the same paths add nothing" test "$(q "$D2" "select count(*) from images")" -eq "$n_good"
(cd "$T/img" && sed 's|^\./||' "$T/good.txt" | "$BIN" run "$D2" --manifest - --quiet)
check "stdin manifest with relative paths resolves to the same images" test "$(q "$D2" "select count(*) from images")" -eq "$n_good"
check "same masks from a different ingest path" test "$(q "$D2" "select count(*) from masks")" = \
    "$(q "$DB" "select count(*) from masks m join images i on i.id = m.image_id where i.path like '$T/img/%'")"

# ---- bad sources and databases ----
"$BIN" run "$T/db3.sqlite" --manifest "$T/nope" --model test: --quiet 2> "$T/e"
check "missing manifest: exit 1 naming it" bash -c "[ $? -eq 1 ] && grep -q nope '$T/e'"
"$BIN" run "$T/db3.sqlite" --manifest "$T/manifest.txt/" --model test: --quiet 2> "$T/e"
check "manifest path through a file: exit 1, clear error" bash -c "[ $? -eq 1 ] && grep -q 'Not a directory' '$T/e'"
head -c 20000 /dev/urandom > "$T/corrupt.sqlite"
"$BIN" run "$T/corrupt.sqlite" --manifest "$T/good.txt" --model test: --quiet 2> "$T/e"
check "corrupt database: exit 1, 'not a sam2amg database or corrupt'" bash -c "[ $? -eq 1 ] && grep -q 'corrupt' '$T/e'"
"$BIN" status "$T/corrupt.sqlite" 2> "$T/e"
check "status on a corrupt database: exit 1" bash -c "[ $? -eq 1 ] && grep -q 'corrupt' '$T/e'"

# ---- a model that cannot be loaded: a run-level error, nothing leased ----
head -c 4096 /dev/urandom > "$T/bad.safetensors"
"$BIN" run "$T/db8.sqlite" --manifest "$T/img" --model "$T/bad.safetensors" --config micro --quiet 2> "$T/e"
check "unloadable model: exit 1 naming the file" bash -c "[ $? -eq 1 ] && grep -q 'bad.safetensors' '$T/e'"
check "unloadable model: no image leased or attempted" test \
    "$(q "$T/db8.sqlite" "select count(*) from images where status <> 'pending' or attempts > 0")" -eq 0
"$BIN" run "$T/db9.sqlite" --manifest "$T/img" --model "$T/nope.pt" --quiet 2> "$T/e"
check "missing model: exit 1" bash -c "[ $? -eq 1 ] && grep -q 'nope.pt' '$T/e'"

# ---- a second run at the same time is refused ----
flock "$DB.lock" sleep 3 &
lockpid=$!
# until the lock is held (a fixed 0.3 s was not always enough on a busy machine)
for _ in $(seq 100); do flock -n "$DB.lock" true || break; sleep 0.02; done
"$BIN" run "$DB" --quiet 2> "$T/e"
check "concurrent run refused with a clear message" bash -c "[ $? -eq 1 ] && grep -q 'another run is using this database' '$T/e'"
wait $lockpid
"$BIN" sql "$DB" "select count(*) from images" > /dev/null
check "readers work while a run holds the lock" test $? -eq 0

# ---- disk full, then resume: nothing lost, nothing duplicated ----
D4=$T/db4.sqlite
# (18 pages: the schema itself takes 16 since 006 added run_gpus and its index)
SAM2AMG_MAX_PAGES=18 "$BIN" run "$D4" --manifest "$T/img" --model test: "${AMG[@]}" 2> "$T/e"
check "disk full: exit 1 with 'full'" bash -c "[ $? -eq 1 ] && grep -q 'database or disk is full' '$T/e'"
check "disk full: some images were committed before it" test "$(q "$D4" "select count(*) from images where status='done'")" -gt 0
"$BIN" run "$D4" --quiet
check "resume after disk full: exit 0" test $? -eq 0
ref() { q "$1" "select i.path, m.idx, m.rle, m.area, m.predicted_iou, m.stability_score, m.bbox_x, m.bbox_y, m.bbox_w, m.bbox_h from masks m join images i on i.id = m.image_id where i.path like '$T/img/%' order by i.path, m.idx"; }
ref "$DB" > "$T/ref.txt"
check "after disk full + resume: masks identical to an uninterrupted run" cmp -s "$T/ref.txt" <(ref "$D4")
check "integrity_check ok" test "$(q "$D4" "pragma integrity_check")" = ok

# ---- injected store fault, then resume ----
D5=$T/db5.sqlite
# the fault hits after the ingest (n_good steps), the run row and a few
# claims/results; how many results are committed by then depends on thread
# timing (claims run ahead of results), so the step moves later, a few
# times at most, until a fault lands between two commits
for extra in 10 14 18 22 26; do
    rm -f "$D5" "$D5"-wal "$D5"-shm "$D5".lock
    SAM2AMG_FAULT_STORE=$((n_good + 1 + extra)) "$BIN" run "$D5" --manifest "$T/img" --model test: "${AMG[@]}" --batch 2 2> "$T/e"
    fault_rc=$?
    n5=$("$BIN" sql "$D5" "select count(*) from images where status='done'")
    [ "$n5" -gt 0 ] && break
done
check "injected store fault: exit 1 naming it" bash -c "[ $fault_rc -eq 1 ] && grep -q 'injected fault' '$T/e'"
check "fault left some images done, some not" bash -c "[ $n5 -gt 0 ] && [ $n5 -lt $n_good ]"
"$BIN" run "$D5" --quiet
check "resume after store fault: exit 0" test $? -eq 0
check "resume after store fault: identical masks" cmp -s "$T/ref.txt" <(ref "$D5")

# ---- injected image loader fault: that image fails alone ----
D6=$T/db6.sqlite
SAM2AMG_FAULT_IMAGE=3 "$BIN" run "$D6" --manifest "$T/img" --model test: "${AMG[@]}" --decode-threads 1 2>/dev/null
check "image fault: exit 3" test $? -eq 3
check "image fault: one image failed with the reason, the rest done" bash -c \
    "[ \"$(q "$D6" "select count(*) from images where status='failed' and error like '%injected fault%'")\" -eq 1 ] && [ \"$(q "$D6" "select count(*) from images where status='done'")\" -eq $((n_good - 1)) ]"

# ---- a thread that cannot start (pids.max, RLIMIT_NPROC): an error ----
# SAM2AMG_FAULT_THREAD=N fails the N-th thread start. With one cpu worker
# of 2 threads and 2 decoders they are: 1 the worker, 2 its CPU backend's
# pool thread, 3 and 4 the decoders, 5 the writer. Each aborted the
# process (a CHECK); now: exit 1 with one line, no image leased or charged
# an attempt, and the next run does every image once, as a run without it.
mkdir -p "$T/thr"
for k in 1 2 3; do cp tests/fixtures/micro/image.png "$T/thr/m$k.png"; done
MICRO=(--manifest "$T/thr" --model tests/fixtures/micro/weights.safetensors --config micro
       --points-per-side 4 --pred-iou-thresh 0 --stability-score-thresh 0 --quiet --threads 2
       --decode-threads 2)
thr_ref() { q "$1" "select i.path, m.idx, m.rle, m.area, m.predicted_iou, m.stability_score, m.bbox_x, m.bbox_y, m.bbox_w, m.bbox_h from masks m join images i on i.id = m.image_id order by i.path, m.idx"; }
"$BIN" run "$T/thr-ref.sqlite" "${MICRO[@]}" 2>/dev/null
thr_ref "$T/thr-ref.sqlite" > "$T/thr-ref.txt"
check "thread faults: the reference run has masks" test -s "$T/thr-ref.txt"
for n in 1 2 3 4 5; do
    D=$T/thr$n.sqlite
    (ulimit -c 0; SAM2AMG_FAULT_THREAD=$n exec "$BIN" run "$D" "${MICRO[@]}") 2> "$T/e"
    rc=$?
    check "thread $n cannot start: exit 1 (got $rc, 134 an abort), one line 'cannot start thread: <strerror>'" \
        bash -c "[ $rc -eq 1 ] && [ \$(wc -l < '$T/e') -eq 1 ] && grep -q 'cannot start thread: Resource temporarily unavailable' '$T/e'"
    check "thread $n cannot start: every image pending, no attempt counted" \
        test "$(q "$D" "select count(*) from images where status = 'pending' and attempts = 0")" -eq 3
    "$BIN" run "$D" "${MICRO[@]}" 2>/dev/null
    rc=$?
    thr_ref "$D" > "$T/thr-$n.txt"
    check "thread $n: the next run does every image once (exit $rc, one attempt each, the reference's masks)" \
        bash -c "[ $rc -eq 0 ] && [ \"$(q "$D" "select count(*) from images where status = 'done' and attempts = 1")\" -eq 3 ] &&
                 cmp -s '$T/thr-ref.txt' '$T/thr-$n.txt'"
done

# ---- SIGINT: stop cleanly, resume to the same result ----
D7=$T/db7.sqlite
for k in $(seq 1 4); do cp -r "$T/img" "$T/img$k"; done
"$BIN" run "$D7" --manifest "$T/img" --model test: "${AMG[@]}" --batch 1 \
    $(for k in $(seq 1 4); do echo --manifest "$T/img$k"; done) 2>/dev/null &
pid=$!
# the signal once an image is done (a fixed 0.8 s assumed one was by then,
# which a machine busy with other tests need not do)
for _ in $(seq 300); do
    [ "$(q "$D7" "select count(*) from images where status='done'" 2>/dev/null)" -gt 0 ] 2>/dev/null && break
    sleep 0.05
done
kill -INT $pid
wait $pid
rc=$?
check "SIGINT: exit 130" test $rc -eq 130
check "SIGINT: what finished is committed" test "$(q "$D7" "select count(*) from images where status='done'")" -gt 0
check "SIGINT: no lease left behind" test "$(q "$D7" "select count(*) from images where status='running'")" -eq 0
check "SIGINT: released images keep their attempt count" test "$(q "$D7" "select count(*) from images where status='pending' and attempts > 0")" -eq 0
"$BIN" run "$D7" --quiet
check "resume after SIGINT: exit 0" test $? -eq 0
check "resume after SIGINT: every image done once" test "$(q "$D7" "select count(*) from images where status='done'")" -eq $((5 * n_good))

# ---- export ----
"$BIN" export "$DB" --format sa1b "$T/sa1b"
check "export sa1b: one JSON per done image" test "$(ls "$T/sa1b" | wc -l)" -eq $((n_good + 1))
check "export sa1b: records = masks" python3 - "$T/sa1b" "$(q "$DB" "select count(*) from masks")" <<'EOF'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
tot = 0
for f in os.listdir(d):
    # file_name of a non-UTF-8 path: amg_write_json writes its bytes as they are
    j = json.loads(open(os.path.join(d, f), "rb").read().decode("utf-8", "surrogateescape"))
    assert set(j) == {"image", "annotations"} and j["image"]["width"] > 0
    for a in j["annotations"]:
        assert a["segmentation"]["size"] == [j["image"]["height"], j["image"]["width"]]
    tot += len(j["annotations"])
assert tot == n, (tot, n)
EOF
"$BIN" export "$DB" --format coco "$T/coco.json"
check "export coco: valid COCO with every mask" python3 - "$T/coco.json" "$(q "$DB" "select count(*) from masks")" "$((n_good + 1))" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
assert len(j["annotations"]) == int(sys.argv[2]) and len(j["images"]) == int(sys.argv[3])
ids = {i["id"] for i in j["images"]}
assert all(a["image_id"] in ids and a["category_id"] == 1 for a in j["annotations"])
assert len({a["id"] for a in j["annotations"]}) == len(j["annotations"])
EOF
"$BIN" export "$DB" --format png "$T/png"
check "export png: one overlay per done image" test "$(ls "$T/png"/*.png | wc -l)" -eq $((n_good + 1))
check "export: --help" "$BIN" export --help

# ---- mask_boxes lags during a run; `sql` catches it up first ----
cp "$DB" "$T/lag.sqlite"
maxid=$(raw "$T/lag.sqlite" "select max(id) from masks")
python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("delete from mask_boxes where id > ?", (int(sys.argv[2]) - 5,)); c.commit()' "$T/lag.sqlite" "$maxid"
check "a lagging R*Tree (5 newest boxes missing)" test "$(raw "$T/lag.sqlite" "select count(*) from mask_boxes where id = $maxid")" = 0
# hold the write lock for 4 s: sql skips the catch-up (2 s timeout), still answers, says so
python3 -c 'import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute("begin immediate"); open(sys.argv[2], "w").close(); time.sleep(4); c.execute("rollback")' "$T/lag.sqlite" "$T/locked" &
lockpid=$!
while [ ! -e "$T/locked" ]; do sleep 0.05; done
out=$("$BIN" sql "$T/lag.sqlite" "select count(*) from mask_boxes" 2> "$T/e")
check "sql on a locked database: answers, notes the stale mask_boxes on stderr" \
    bash -c "[ $? -eq 0 ] && [ '$out' -ge 1 ] && grep -q 'mask_boxes may miss' '$T/e'"
"$BIN" sql "$T/lag.sqlite" "select count(*) from masks" > /dev/null 2> "$T/e"
check "sql on a locked database: silent when the query does not use mask_boxes" test ! -s "$T/e"
wait $lockpid
check "sql: an R*Tree query sees the newest mask" test "$(q "$T/lag.sqlite" \
    "select count(*) from mask_boxes b join masks m on m.id = b.id where b.id = $maxid and b.x0 <= m.bbox_x + 0.5 and b.x1 >= m.bbox_x + 0.5 and b.y0 <= m.bbox_y + 0.5 and b.y1 >= m.bbox_y + 0.5")" = 1
check "sql: caught up, every box = its mask's bbox" test "$(raw "$T/lag.sqlite" "$BOXES_OK")" = 1

# ---- sql command and the loadable extension ----
check "sql: a counting query" test "$(q "$DB" "select count(*) from objects where area >= 10")" -ge 1
check "sql: rle_contains agrees with the mask of its own point" test \
    "$(q "$DB" "select count(*) from masks where rle_contains(rle, cast(bbox_x as int), cast(bbox_y as int)) not in (0, 1)")" -eq 0
check "sql: read-only unless --write" bash -c "! '$BIN' sql '$DB' 'delete from masks' 2>/dev/null"
check "sql: a syntax error exits 1" bash -c "'$BIN' sql '$DB' 'selec 1' 2>/dev/null; [ \$? -eq 1 ]"
if command -v sqlite3 >/dev/null; then
    check "extension loads in the sqlite3 shell" test \
        "$(sqlite3 "$DB" ".load $EXT" "select count(*) from masks where rle_area(rle) = area")" = \
        "$(q "$DB" "select count(*) from masks")"
fi
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3   # pyenv's may lack load_extension
check "extension loads in Python's sqlite3" $PY - "$DB" "$EXT" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.enable_load_extension(True)
c.load_extension(sys.argv[2])
n, ok = c.execute("select count(*), sum(rle_area(rle) = area and rle_iou(rle, rle) = 1.0) from masks").fetchone()
assert n > 0 and n == ok, (n, ok)
png = c.execute("select rle_to_png(rle) from masks limit 1").fetchone()[0]
assert png[:8] == b"\x89PNG\r\n\x1a\n"
EOF
for c in run status export sql; do check "$c --help" "$BIN" $c --help; done

echo "RESULT $pass $fail"
[ $fail -eq 0 ]
