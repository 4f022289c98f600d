#!/usr/bin/python3
"""test_rle_pycocotools.py: our COCO RLE strings against pycocotools.

- masks dumped by `test_rle --dump` (raw bits + our string): random ones
  (a fifth with the last, bottom-right pixel set), all-zeros, all-ones,
  1x1: pycocotools decodes our string to the same bits, and encodes the
  bits to the same string;
- `sam2amg generate` output (replays of synthetic fixtures, and the micro
  model on its image and on black 1x1 / 2x2 / 3x1 images, whose masks are
  all-ones or empty): every record's string decodes in pycocotools,
  pycocotools' area and bbox agree with the record's (official bbox w/h =
  pycocotools' minus 1), and pycocotools re-encodes the decoded mask to the
  very same string (no zero-length closing run when the last pixel is
  foreground); the masks touching the last pixel are counted, so the check
  is known to cover them.

Needs pycocotools (tests/setup.sh installs it for /usr/bin/python3). Run by
the pyenv python3 of run.sh, it re-executes itself under /usr/bin/python3;
without pycocotools it prints skip lines and counts nothing.
"""
import collections
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib


def write_png(path, w, h, rgb):
    """an 8-bit RGB PNG (no PIL needed)"""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    raw = b"".join(b"\0" + rgb[y * 3 * w:(y + 1) * 3 * w] for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    try:
        import numpy as np
        from pycocotools import mask as mu
    except ImportError:
        if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3" \
                and not os.environ.get("SAM2AMG_REEXEC"):
            os.environ["SAM2AMG_REEXEC"] = "1"
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
        print("skip - pycocotools or numpy not installed (tests/setup.sh installs them)")
        print("RESULT 0 0")
        return 0
    build = os.environ.get("BUILD", "build")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    passed = failed = 0

    def check(ok, name, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print("ok - " + name)
        else:
            failed += 1
            print("not ok - %s: %s" % (name, detail))

    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "masks.txt")
        rc = subprocess.call([os.path.join(build, "tests", "test_rle"), "--dump", dump])
        check(rc == 0, "test_rle --dump writes random masks")
        bad_dec = bad_enc = n = 0
        kinds = collections.Counter()
        for line in open(dump) if rc == 0 else []:
            h, w, s, bits = line.split()
            h, w = int(h), int(w)
            m = np.array([c == "1" for c in bits], dtype=np.uint8).reshape(h, w)
            rle = {"size": [h, w], "counts": s.encode()}
            if not np.array_equal(mu.decode(rle), m):
                bad_dec += 1
            enc = mu.encode(np.asfortranarray(m))
            if enc["counts"].decode() != s:
                bad_enc += 1
            n += 1
            kinds["last"] += int(m[-1, -1] == 1)
            kinds["1x1-" + str(int(m.sum()))] += int(h == w == 1)
            kinds["full"] += int(m.all())
            kinds["empty"] += int(not m.any())
        check(n == 306 and bad_dec == 0, "pycocotools decodes our strings to the same masks",
              "%d of %d differ" % (bad_dec, n))
        check(n == 306 and bad_enc == 0, "pycocotools encodes the masks to our strings",
              "%d of %d differ" % (bad_enc, n))
        check(kinds["last"] >= 60 and kinds["1x1-0"] >= 1 and kinds["1x1-1"] >= 1 and
              kinds["full"] >= 3 and kinds["empty"] >= 3,
              "the dump covers last-pixel, all-ones, all-zeros and 1x1 masks", str(kinds))

        runs = []
        for fx in ("amg-synthetic-crops", "amg-synthetic-tall", "amg-synthetic-tiny"):
            d = os.path.join("tests", "fixtures", fx)
            runs.append((fx, ["--config", os.path.join(d, "meta.json"), "--replay-decoder",
                              os.path.join(d, "expected.safetensors"),
                              os.path.join(d, "image.png")]))
        micro = os.path.join("tests", "fixtures", "micro")
        model = ["--model", os.path.join(micro, "weights.safetensors"),
                 "--config", os.path.join(micro, "meta.json")]
        runs.append(("micro", model + [os.path.join(micro, "image.png")]))
        for w, h in ((1, 1), (2, 2), (3, 1)):
            png = os.path.join(tmp, "black_%dx%d.png" % (w, h))
            write_png(png, w, h, bytes(3 * w * h))
            runs.append(("micro black %dx%d" % (w, h), model + [png]))
        for name, args in runs:
            out = os.path.join(tmp, "out.json")
            rc = subprocess.call([os.path.join(build, "sam2amg"), "generate"] + args +
                                 ["-o", out])
            check(rc == 0, name + ": generate runs")
            if rc:
                continue
            recs = json.load(open(out))["annotations"]
            bad, bad_str, last, full = [], [], 0, 0
            for i, r in enumerate(recs):
                seg = r["segmentation"]
                rle = {"size": seg["size"], "counts": seg["counts"].encode()}
                m = mu.decode(rle)
                bb = mu.toBbox(rle)
                want = [r["bbox"][0], r["bbox"][1], r["bbox"][2] + 1, r["bbox"][3] + 1]
                if m.shape != tuple(seg["size"]) or int(m.sum()) != r["area"] or \
                        int(mu.area(rle)) != r["area"] or (m.any() and list(bb) != want):
                    bad.append(i)
                if mu.encode(np.asfortranarray(m))["counts"].decode() != seg["counts"]:
                    bad_str.append(i)
                last += int(m[-1, -1] == 1)
                full += int(m.all())
            print("# %s: %d records, %d touch the last pixel, %d all-ones" %
                  (name, len(recs), last, full))
            check(len(recs) > 0 and not bad,
                  name + ": %d records decode in pycocotools with our area and bbox" % len(recs),
                  "records %s" % bad[:5])
            check(len(recs) > 0 and last > 0 and not bad_str,
                  name + ": pycocotools re-encodes every mask to our string (%d touch the "
                  "last pixel)" % last, "records %s differ" % bad_str[:5])
    print("RESULT %d %d" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
