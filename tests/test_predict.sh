#!/usr/bin/env bash
# test_predict.sh: `sam2amg predict` on the micro fixture against the
# official SAM2ImagePredictor.predict outputs in
# tests/fixtures/predict-micro (made by tests/make_predict_fixture.py):
# every case's mask PNG (pixels may differ only where the official
# full-resolution logit is within 1e-3 * max|logit| of 0), the RGBA cutout
# (image pixels, alpha = mask), the JSON scores (1e-3 * max), plus the
# usage and data errors (exit 2 / 1, one line). Prints "RESULT p f" last.
set -u
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}/sam2amg
F=tests/fixtures/micro
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }

# expect_exit CODE NAME ARGS...: exit status CODE and exactly one stderr line
expect_exit() {
    local want=$1 name=$2; shift 2
    "$BIN" predict "$@" >"$T/out" 2>"$T/err"
    local rc=$? lines
    lines=$(wc -l <"$T/err")
    if [ "$rc" -eq "$want" ] && [ "$lines" -eq 1 ]; then ok "$name (exit $rc: $(cat "$T/err"))"
    else bad "$name: exit $rc (want $want), $lines stderr lines: $(head -c 300 "$T/err")"; fi
}

# expect_msg CODE NAME WANT ARGS...: expect_exit, and the one line says WANT
expect_msg() {
    local want=$1 name=$2 msg=$3; shift 3
    "$BIN" predict "$@" >"$T/out" 2>"$T/err"
    local rc=$? lines
    lines=$(wc -l <"$T/err")
    if [ "$rc" -eq "$want" ] && [ "$lines" -eq 1 ] && grep -qF -- "$msg" "$T/err"; then
        ok "$name (exit $rc: $(cat "$T/err"))"
    else bad "$name: exit $rc (want $want), $lines stderr lines: $(head -c 300 "$T/err") (want '$msg')"; fi
}

M=(--model "$F/weights.pt" --config micro)
"$BIN" predict --help >"$T/help" 2>&1 && grep -q -- "--multimask" "$T/help" \
    && ok "--help (exit 0)" || bad "--help"
expect_exit 2 "no --model" "$F/image.png" --point 5,5 -o "$T/m.png"
expect_exit 2 "no -o" "${M[@]}" "$F/image.png" --point 5,5
expect_exit 2 "no prompt" "${M[@]}" "$F/image.png" -o "$T/m.png"
expect_exit 2 "unknown flag" "${M[@]}" "$F/image.png" --point 5,5 --frobnicate -o "$T/m.png"
expect_exit 2 "point with one number" "${M[@]}" "$F/image.png" --point 5 -o "$T/m.png"
expect_exit 2 "point label 2" "${M[@]}" "$F/image.png" --point 5,5,2 -o "$T/m.png"
expect_exit 2 "point not a number" "${M[@]}" "$F/image.png" --point 5,x -o "$T/m.png"
expect_exit 2 "point nan" "${M[@]}" "$F/image.png" --point nan,5 -o "$T/m.png"
expect_exit 2 "box with 3 numbers" "${M[@]}" "$F/image.png" --box 1,2,3 -o "$T/m.png"
expect_exit 2 "box twice" "${M[@]}" "$F/image.png" --box 1,2,3,4 --box 1,2,3,4 -o "$T/m.png"
# every flag error says exactly what is wrong (issue 14 item 11)
P=(--model "$F/weights.pt" --config micro "$F/image.png" -o "$T/m.png")
expect_msg 2 "--point with 4 numbers" "--point '1,2,3,4': expected X,Y or X,Y,LABEL (2 or 3 numbers), got 4 values" "${P[@]}" --point 1,2,3,4
expect_msg 2 "--point with 1 number" "--point '5': expected X,Y or X,Y,LABEL (2 or 3 numbers), got 1 value" "${P[@]}" --point 5
expect_msg 2 "--point empty" "--point needs a value: X,Y or X,Y,LABEL" "${P[@]}" --point ""
expect_msg 2 "--point last" "--point needs a value" --model "$F/weights.pt" --config micro "$F/image.png" -o "$T/m.png" --point
expect_msg 2 "--point empty field" "--point '5,': number 2 is empty (expected X,Y or X,Y,LABEL)" "${P[@]}" --point 5,
expect_msg 2 "--point not a number" "--point '5,x': 'x' is not a finite number (expected X,Y or X,Y,LABEL)" "${P[@]}" --point 5,x
expect_msg 2 "--point infinite" "--point '1e999,2': '1e999' is not a finite number" "${P[@]}" --point 1e999,2
expect_msg 2 "--point label 2" "--point '5,5,2': LABEL must be 1 (foreground) or 0 (background), got 2" "${P[@]}" --point 5,5,2
expect_msg 2 "--point label 0.5" "LABEL must be 1 (foreground) or 0 (background), got 0.5" "${P[@]}" --point 5,5,0.5
expect_msg 2 "--box with 5 numbers" "--box '1,2,3,4,5': expected X0,Y0,X1,Y1 (4 numbers), got 5 values" "${P[@]}" --box 1,2,3,4,5
expect_msg 2 "--box not a number" "--box '1,2,x,4': 'x' is not a finite number (expected X0,Y0,X1,Y1)" "${P[@]}" --box 1,2,x,4
expect_msg 2 "--box twice" "--box given twice" "${P[@]}" --box 1,2,3,4 --box 1,2,3,4
expect_msg 2 "--model followed by a flag" "--model needs a value (got option '--config')" --model --config micro "$F/image.png" --point 5,5 -o "$T/m.png"
expect_msg 2 "-o followed by a flag" "-o needs a value: a file name (got option '--json')" --model "$F/weights.pt" --config micro "$F/image.png" --point 5,5 -o --json x.json
expect_msg 2 "--threads not an integer" "--threads: '1.5' is not an integer" "${P[@]}" --point 5,5 --threads 1.5
expect_msg 2 "--threads out of range" "--threads: 5000 is out of range [0, 1024]" "${P[@]}" --point 5,5 --threads 5000
expect_exit 2 "bad --threads" "${M[@]}" "$F/image.png" --point 5,5 --threads -3 -o "$T/m.png"
expect_exit 2 "two images" "${M[@]}" "$F/image.png" "$F/image.png" --point 5,5 -o "$T/m.png"
expect_exit 2 "unknown config" --model "$F/weights.pt" --config nosuch "$F/image.png" --point 5,5 -o "$T/m.png"
expect_exit 1 "missing checkpoint" --model "$T/none.pt" --config micro "$F/image.png" --point 5,5 -o "$T/m.png"
head -c 5000 "$F/weights.pt" >"$T/trunc.pt"
expect_exit 1 "truncated checkpoint" --model "$T/trunc.pt" --config micro "$F/image.png" --point 5,5 -o "$T/m.png"
expect_exit 1 "image is not an image" "${M[@]}" "$F/meta.json" --point 5,5 -o "$T/m.png"
expect_exit 1 "missing image" "${M[@]}" "$T/none.png" --point 5,5 -o "$T/m.png"
expect_exit 1 "unwritable output" "${M[@]}" "$F/image.png" --point 5,5 -o "$T/no/such/dir/m.png"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
"$PY" - "$BIN" "$T" <<'EOF' >"$T/py.out" 2>&1
import json, struct, subprocess, sys, zlib
BIN, T = sys.argv[1], sys.argv[2]
F = "tests/fixtures/micro"

def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        a, b = v["data_offsets"]
        fmt = {"F32": "f", "F16": "e", "U8": "B"}[v["dtype"]]
        cnt = (b - a) // struct.calcsize(fmt)
        out[k] = (list(struct.unpack("<%d%s" % (cnt, fmt), data[a:b])), v["shape"])
    return out

def read_png(path):
    """8-bit, non-interlaced grey/RGB/RGBA PNG -> (w, h, channels, bytes)."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(raw):
        n, = struct.unpack(">I", raw[pos:pos + 4])
        typ, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, inter = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and inter == 0 and ctype in (0, 2, 6), "unsupported PNG"
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    ch = {0: 1, 2: 3, 6: 4}[ctype]
    data, stride = zlib.decompress(idat), w * ch
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        ft, row = data[y * (stride + 1)], bytearray(data[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - ch] if i >= ch else 0
            b, c = prev[i], (prev[i - ch] if i >= ch else 0)
            if ft == 1: row[i] = (row[i] + a) & 255
            elif ft == 2: row[i] = (row[i] + b) & 255
            elif ft == 3: row[i] = (row[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += row
        prev = row
    return w, h, ch, bytes(out)

P = read_st("tests/fixtures/predict-micro/expected.safetensors")
iw, ih, ich, img = read_png(F + "/image.png")
passed = failed = 0
def check(cond, name):
    global passed, failed
    if cond: passed += 1; print("ok - " + name)
    else: failed += 1; print("not ok - " + name)

c = 0
while "case%d.coords" % c in P:
    g = lambda k: P["case%d.%s" % (c, k)][0]
    args = [BIN, "predict", "--model", F + "/weights.pt", "--config", "micro", F + "/image.png",
            "-o", T + "/m.png", "--cutout", T + "/c.png", "--json", T + "/s.json", "--threads", "2"]
    pts, labs, box = g("point_px"), g("point_lab"), g("box_px")
    for i in range(len(labs)):
        args += ["--point", "%r,%r,%d" % (pts[2 * i], pts[2 * i + 1], int(labs[i]))]
    if box[0] != -1:
        args += ["--box", ",".join(repr(v) for v in box)]
    mm = g("multimask")[0] == 1
    if mm: args.append("--multimask")
    r = subprocess.run(args, capture_output=True, text=True)
    check(r.returncode == 0, "case %d: predict exits 0 %s" % (c, r.stderr.strip()))
    if r.returncode: c += 1; continue
    w, h, ch, m = read_png(T + "/m.png")
    want, logit = g("mask"), g("logits")
    check((w, h, ch) == (iw, ih, 1), "case %d: mask is %dx%d grey" % (c, w, h))
    tol = 1e-3 * max(abs(v) for v in logit)
    nbad = nclose = 0
    for q in range(w * h):
        if (m[q] == 255) != (want[q] == 1) or m[q] not in (0, 255):
            if abs(logit[q]) <= tol: nclose += 1
            else: nbad += 1
    check(nbad == 0, "case %d (%d pts, box %s, multimask %d): mask equals the official one "
          "(%d pixels differ beyond the margin, %d within it; %d of %d inside)"
          % (c, len(labs), box[0] != -1, mm, nbad, nclose, sum(want), w * h))
    cw, chh, cch, cut = read_png(T + "/c.png")
    okc = (cw, chh, cch) == (iw, ih, 4) and all(
        cut[4 * q:4 * q + 3] == img[3 * q:3 * q + 3] and cut[4 * q + 3] == m[q]
        for q in range(w * h))
    check(okc, "case %d: cutout = image pixels with alpha = mask" % c)
    js = json.load(open(T + "/s.json"))
    ws = g("scores")
    d = max(abs(a - b) for a, b in zip(js["scores"], ws)) if len(js["scores"]) == len(ws) else 1e9
    check(d <= 1e-3 * max(abs(v) for v in ws), "case %d: scores %s (max diff %.3g)"
          % (c, js["scores"], d))
    check(js["best"] == int(g("best")[0]) and js["area"] == sum(1 for q in m if q == 255)
          and js["width"] == iw and js["height"] == ih and js["multimask"] == mm,
          "case %d: json best %d, area %d" % (c, js["best"], js["area"]))
    c += 1
check(c >= 6, "predict-micro has %d cases" % c)
print("PY %d %d" % (passed, failed))
EOF
cat "$T/py.out"
res=$(grep -E '^PY [0-9]+ [0-9]+$' "$T/py.out" | tail -n 1)
if [ -n "$res" ]; then set -- $res; pass=$((pass + $2)); fail=$((fail + $3))
else bad "fixture comparison script did not finish"; fi
echo "RESULT $pass $fail"
