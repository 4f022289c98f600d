#!/usr/bin/python3
"""test_hostile.py: hostile inputs through the real entry points, never a signal.

- Checkpoints: crafted torch .pt zips (built here by hand: no torch needed)
  and safetensors files whose sizes overflow: the reported 541-byte .pt
  whose view (size 17, stride 2^60) wrapped past the storage check and made
  `predict` die with SIGSEGV, a negative stride, a huge storage offset, a
  shape product and a storage byte size that overflow int64, safetensors
  data_offsets near 2^63 and a huge header length. `sam2amg predict` must
  exit 1 (the documented code for a bad checkpoint) with one stderr line
  naming the file and the reason, with --config and with the config
  guessed from the checkpoint (a second path that opens it).
- SQL: the rle_* literals that overflowed (rle_to_png wrote past its
  buffer, rle_area's h*w was signed-overflow UB, rle_bbox truncated h to 32
  bits) and the non-RLE values, through `sam2amg sql DB "select ..."` and
  through Python's sqlite3 with build/libsam2amg_sql.so loaded (each in its
  own process, so a crash is a failed case, not a lost test): the right
  value, or an error with the expected message.

Prints "ok - ..." / "not ok - ..." and "RESULT passed failed" last. Python's
sqlite3 needs load_extension: run by a python3 without it, this re-executes
itself under /usr/bin/python3.
"""
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
import zipfile

if not hasattr(sqlite3.Connection, "enable_load_extension") and os.path.exists("/usr/bin/python3") \
        and sys.executable != "/usr/bin/python3" and not os.environ.get("SAM2AMG_REEXEC"):
    os.environ["SAM2AMG_REEXEC"] = "1"
    os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("BUILD", "build")
BIN = os.path.join(BUILD, "sam2amg")
EXT = os.path.abspath(os.path.join(BUILD, "libsam2amg_sql.so"))
MICRO = "tests/fixtures/micro"
passed = failed = 0


def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok - " + name)
    else:
        failed += 1
        print("not ok - %s: %s" % (name, detail))
    sys.stdout.flush()


# ---- checkpoints ----

def p_int(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    return b"\x8a\x08" + v.to_bytes(8, "little", signed=True)   # LONG1, 8 bytes


def p_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def tensor_pickle(stype, numel, offset, size, stride):
    """{'w': _rebuild_tensor_v2(storage '0', offset, size, stride, False, ())}, protocol 2."""
    p = b"\x80\x02}" + p_str("w") + b"ctorch._utils\n_rebuild_tensor_v2\n("
    p += b"(" + p_str("storage") + b"ctorch\n" + stype.encode() + b"\n" + p_str("0") + p_str("cpu")
    p += p_int(numel) + b"tQ" + p_int(offset)
    p += b"(" + b"".join(p_int(x) for x in size) + b"t"
    p += b"(" + b"".join(p_int(x) for x in stride) + b"t"
    return p + b"\x89)tRs."


def write_pt(path, pkl, storage):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", storage)


def write_st(path, header, data_len):
    h = header.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + bytes(data_len))


def run_predict(model, with_config):
    args = [BIN, "predict", "--model", model, MICRO + "/image.png", "--point", "5,5", "-o", T + "/m.png"]
    if with_config:
        args[4:4] = ["--config", "micro"]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


T = tempfile.mkdtemp(prefix="sam2amg-hostile-")
P60, P62 = 1 << 60, 1 << 62
pts = [
    ("evil.pt: size 17, stride 2^60 (was SIGSEGV)", "evil.pt", ("ByteStorage", 64, 0, (17,), (P60,)), 64,
     "view (size 17, stride 1152921504606846976 in dim 0) overflows"),
    ("negative stride", "negstride.pt", ("ByteStorage", 64, 0, (4,), (-1,)), 64, "bad tensor size or stride"),
    ("huge storage offset", "offset.pt", ("FloatStorage", 16, P62, (1,), (1,)), 64,
     "storage offset 4611686018427387904 is past its storage of 16 elements"),
    ("shape product overflows", "shape.pt", ("ByteStorage", 64, 0, (1 << 32,) * 3, (0, 0, 0)), 64,
     "shape overflows or exceeds"),
    ("storage bytes overflow", "storage.pt", ("FloatStorage", P62, 0, (1,), (1,)), 64,
     "holds 64 bytes, 4611686018427387904 elements of 4 expected"),
    ("two strides summing past 2^63", "sum.pt", ("ByteStorage", 64, 0, (2, 2), (P62, P62)), 64, "overflows"),
]
for label, name, spec, nbytes, want in pts:
    write_pt(os.path.join(T, name), tensor_pickle(*spec), bytes(range(nbytes)))
sts = [
    ("safetensors data_offsets near 2^63", "offsets.safetensors",
     '{"a":{"dtype":"U8","shape":[7],"data_offsets":[9223372036854775800,9223372036854775807]}}', 8,
     "past the end of the data"),
    ("safetensors shape bytes overflow", "shape.safetensors",
     '{"a":{"dtype":"I64","shape":[2305843009213693952],"data_offsets":[0,8]}}', 8, "shape too large"),
]
for label, name, header, n, want in sts:
    write_st(os.path.join(T, name), header, n)
with open(os.path.join(T, "hlen.safetensors"), "wb") as f:
    f.write(b"\xff" * 7 + b"\x7f" + b"{}" + bytes(6))
sts.append(("safetensors header length 2^63-1", "hlen.safetensors", None, 0, "truncated safetensors file"))

for label, name, _, _, want in pts + sts:
    path = os.path.join(T, name)
    if name == "evil.pt":
        print("    evil.pt is %d bytes" % os.path.getsize(path))
    for with_config in (True, False):
        r = run_predict(path, with_config)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 1 and len(lines) == 1 and path in lines[0] and want in lines[0],
              "predict %s: %s: exit 1, one line" % ("--config micro" if with_config else "(config guessed)", label),
              "exit %d (signal if negative), stderr %r, want %r" % (r.returncode, r.stderr[-400:], want))

# ---- SQL ----

TALL = '\'{"size":[4294967295,1],"counts":"nooooo31"}\''   # 2^32-1 x 1, last pixel inside
M22 = '\'{"size":[2,2],"counts":"13"}\''
# (sql, value as text, or None with the error text expected)
SQL = [
    ('select rle_to_png(\'{"size":[4,4611686018427387905],"counts":"4"}\')', None,
     "rle_to_png: rle size [4,4611686018427387905]: h*w is over 4294967295 pixels"),
    ('select rle_area(\'{"size":[4294967296,4294967296],"counts":""}\')', None,
     "rle_area: rle size [4294967296,4294967296]: h*w is over 4294967295 pixels"),
    ('select rle_bbox(\'{"size":[4294967297,1],"counts":"oooooo311"}\')', None,
     "rle_bbox: rle size [4294967297,1]: h*w is over"),
    ("select rle_bbox(%s)" % TALL, "[0,4294967294,1,1]", None),
    ("select rle_contains(%s, 0, 4294967294) || rle_contains(%s, 0, 4294967293)" % (TALL, TALL), "10", None),
    ("select rle_area(NULL) is null and rle_bbox(NULL) is null and rle_iou(NULL, %s) is null "
     "and rle_contains(%s, NULL, 0) is null and rle_to_png(NULL) is null" % (M22, M22), "1", None),
    ("select rle_area(42)", None, "rle_area: the rle is a number, not an RLE object"),
    ("select rle_area('')", None, "rle_area: malformed rle: empty text"),
    ("select rle_area('garbage')", None, "rle_area: malformed rle: not an RLE object"),
    ("select rle_area(x'00')", None, "rle_area: the rle is a BLOB"),
    ('select rle_area(\'{"size":[2,2],"counts":[1,3]}\')', None, "rle_area: malformed rle: counts is an uncompressed list"),
    ('select rle_area(\'{"size":[2,2],"counts":"!!"}\')', None, "rle_area: malformed rle: counts is not a valid compressed RLE string"),
    ('select rle_area(\'{"size":[2,2],"counts":"5"}\')', None, "rle_area: malformed rle: runs cover 5 pixels, size [2,2] has 4"),
    ("select rle_area(%s) || ' ' || rle_bbox(%s)" % (M22, M22), "3 [0,0,2,2]", None),
    ("select length(rle_to_png(%s))" % M22, "74", None),
]

db = os.path.join(T, "jobs.db")
open(db, "wb").close()
r = subprocess.run([BIN, "sql", db, "--write", "select 1"], capture_output=True, text=True)
check(r.returncode == 0, "sql: a fresh database", r.stderr)
for sql, value, err in SQL:
    r = subprocess.run([BIN, "sql", db, sql], capture_output=True, text=True, timeout=60)
    if value is not None:
        ok = r.returncode == 0 and r.stdout == value + "\n"
    else:
        lines = r.stderr.strip().splitlines()
        ok = r.returncode == 1 and len(lines) == 1 and lines[0].startswith("sam2amg sql: " + err)
    check(ok, "sam2amg sql: %s" % sql, "exit %d (signal if negative), stdout %r, stderr %r"
          % (r.returncode, r.stdout[-200:], r.stderr[-300:]))

PROBE = r"""
import sqlite3, sys
c = sqlite3.connect(":memory:")
c.enable_load_extension(True)
c.load_extension(sys.argv[1])
try:
    v = c.execute(sys.argv[2]).fetchone()[0]
    print("VALUE " + str(v))
except sqlite3.Error as e:
    print("ERROR " + str(e))
"""
for sql, value, err in SQL:
    r = subprocess.run([sys.executable, "-c", PROBE, EXT, sql], capture_output=True, text=True, timeout=60)
    out = r.stdout.strip()
    want = "VALUE " + value if value is not None else "ERROR " + err
    ok = r.returncode == 0 and (out == want if value is not None else out.startswith(want))
    check(ok, "python sqlite3 + extension: %s" % sql,
          "exit %d (signal if negative), got %r, want %r, stderr %r" % (r.returncode, out, want, r.stderr[-300:]))

subprocess.run(["rm", "-rf", T])
print("RESULT %d %d" % (passed, failed))
sys.exit(1 if failed else 0)
