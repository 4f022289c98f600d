#!/usr/bin/env bash
# test_jobs_kill.sh: the kill -9 test, with the real model (the micro SAM 2.1
# checkpoint of tests/fixtures/micro on the CPU backend). A run over a
# manifest is SIGKILLed at random moments several times and resumed each
# time; at the end every image must have exactly one set of masks, identical
# to an uninterrupted run's, and PRAGMA integrity_check must say ok. Also:
# `export --format sa1b` writes the same bytes as `generate` for each image.
# The killed runs and the final resume have two workers (--devices cpu,cpu,
# KILL_DEVICES to change), so ordering and exactly-once hold across workers.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/sam2amg
W=$PWD/tests/fixtures/micro/weights.safetensors
T=$(mktemp -d /tmp/test_jobs_kill.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() {
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok - $name"
    else fail=$((fail + 1)); echo "not ok - $name"; fi
}
q() { "$BIN" sql "$1" "$2" 2>&1; }
GEN=(--model "$W" --config micro --points-per-side 8 --points-per-batch 16 --pred-iou-thresh 0
     --stability-score-thresh 0 --box-nms-thresh 0.9 --threads 1)
AMG=("${GEN[@]}" --quiet)

mkdir -p "$T/img"
cp tests/fixtures/photos/*.* "$T/img/" && rm -f "$T/img/README.md"
python3 - "$T/img" <<'EOF'
import random, struct, sys, zlib
random.seed(7)
def png(path, w, h):
    rows = []
    cx, cy, r = random.randrange(w), random.randrange(h), random.randrange(5, 40)
    for y in range(h):
        row = bytearray([0])
        for x in range(w):
            inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
            row += bytes([200, 40, 40] if inside else [(x * 5) % 256, (y * 3) % 256, 90])
        rows.append(bytes(row))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
for i in range(21):
    png(f"{sys.argv[1]}/syn{i:02d}.png", random.randrange(24, 200), random.randrange(24, 200))
EOF
find "$T/img" -type f | sort > "$T/manifest.txt"
N=$(wc -l < "$T/manifest.txt")

# the uninterrupted reference
t0=$(date +%s.%N)
"$BIN" run "$T/ref.sqlite" --manifest "$T/manifest.txt" "${AMG[@]}"
check "uninterrupted run: exit 0" test $? -eq 0
tref=$(awk "BEGIN{print $(date +%s.%N) - $t0}")
echo "# uninterrupted run: $N images in $tref s"
dump() { q "$1" "select i.path, m.idx, m.rle, m.area, m.bbox_x, m.bbox_y, m.bbox_w, m.bbox_h, m.predicted_iou, m.stability_score, m.point_x, m.point_y, m.crop_x, m.crop_y, m.crop_w, m.crop_h from masks m join images i on i.id = m.image_id order by i.path, m.idx"; }
dump "$T/ref.sqlite" > "$T/ref.txt"
check "reference has masks for every image" test "$(q "$T/ref.sqlite" "select count(distinct image_id) from masks")" -eq "$N"

# killed at random moments, resumed each time
DEV=(--devices "${KILL_DEVICES:-cpu,cpu}")
RANDOM=2024
partial=0
for k in 1 2 3 4 5 6; do
    # --retries 10: these kills come from outside, several may land on the
    # same image (poison-image detection is tested in test_store)
    "$BIN" run "$T/db.sqlite" --manifest "$T/manifest.txt" "${AMG[@]}" "${DEV[@]}" --retries 10 2>/dev/null &
    pid=$!
    # a random moment within the expected time of what is left (ms; the
    # first 0.1 s is start-up)
    d=0; [ -f "$T/db.sqlite" ] && d=$(q "$T/db.sqlite" "select count(*) from images where status='done'")
    left=$((N - d))
    ms=$(awk -v r=$RANDOM -v t="$tref" -v l="$left" -v n="$N" \
         'BEGIN{printf "%d", 150 + (r / 32767) * t * 1000 * 0.3 * l / n}')
    sleep "$(awk -v m="$ms" 'BEGIN{print m / 1000}')"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    done_n=$(q "$T/db.sqlite" "select count(*) from images where status='done'")
    running=$(q "$T/db.sqlite" "select count(*) from images where status='running'")
    echo "# kill $k after ${ms} ms: $done_n done, $running leases left"
    [ "$done_n" -gt 0 ] && [ "$done_n" -lt "$N" ] && partial=$((partial + 1))
done
check "some kills landed in the middle of the work" test $partial -ge 2
"$BIN" run "$T/db.sqlite" "${AMG[@]}" "${DEV[@]}" --retries 10
check "final resume: exit 0" test $? -eq 0
check "the runs had the workers of ${DEV[1]}" test "$(q "$T/db.sqlite" "select count(*) from runs where devices <> '${DEV[1]}'")" -eq 0
check "every image done" test "$(q "$T/db.sqlite" "select count(*) from images where status='done'")" -eq "$N"
check "no image pending, running or failed" test "$(q "$T/db.sqlite" "select count(*) from images where status<>'done'")" -eq 0
check "exactly one set of masks per image (one run each)" test \
    "$(q "$T/db.sqlite" "select count(*) from (select image_id from masks group by image_id having count(distinct run_id) > 1)")" -eq 0
check "masks identical to the uninterrupted run's" cmp -s "$T/ref.txt" <(dump "$T/db.sqlite")
check "PRAGMA integrity_check ok" test "$(q "$T/db.sqlite" "pragma integrity_check")" = ok
# read through Python's sqlite3, not `sam2amg sql` (which would catch up first):
# what the final resume left (its start catches up the killed runs' masks)
check "boxes = masks, each box = its mask's bbox (R*Tree caught up after kill -9)" test "$(python3 -c '
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
n = c.execute("select count(*) from masks").fetchone()[0]
b = c.execute("select count(*) from mask_boxes").fetchone()[0]
e = c.execute("select count(*) from masks m join mask_boxes b on b.id = m.id where b.x0 = m.bbox_x and b.x1 = m.bbox_x + m.bbox_w and b.y0 = m.bbox_y and b.y1 = m.bbox_y + m.bbox_h").fetchone()[0]
print(int(n > 0 and b == n and e == n))' "$T/db.sqlite")" = 1

# export sa1b == generate, byte for byte
"$BIN" export "$T/db.sqlite" --format sa1b "$T/sa1b"
mkdir -p "$T/gen"
"$BIN" generate "${GEN[@]}" --out-dir "$T/gen" $(cat "$T/manifest.txt") 2>/dev/null
same=0
for f in "$T/gen"/*.json; do cmp -s "$f" "$T/sa1b/$(basename "$f")" && same=$((same + 1)); done
check "export sa1b = generate's JSON for every image" test $same -eq "$N"

echo "RESULT $pass $fail"
[ $fail -eq 0 ]
