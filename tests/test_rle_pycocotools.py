#!/usr/bin/python3
"""test_rle_pycocotools.py: our COCO RLE strings against pycocotools.

- random masks dumped by `test_rle --dump` (raw bits + our string):
  pycocotools decodes our string to the same bits, and encodes the bits to
  the same string;
- `sam2amg generate` output (replay of a synthetic fixture): every record's
  string decodes in pycocotools, and pycocotools' area and bbox agree with
  the record's (official bbox w/h = pycocotools' minus 1).

Needs pycocotools (tests/setup.sh installs it for /usr/bin/python3). Run by
the pyenv python3 of run.sh, it re-executes itself under /usr/bin/python3;
without pycocotools it prints skip lines and counts nothing.
"""
import json
import os
import subprocess
import sys
import tempfile


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
        check(n == 300 and bad_dec == 0, "pycocotools decodes our strings to the same masks",
              "%d of %d differ" % (bad_dec, n))
        check(n == 300 and bad_enc == 0, "pycocotools encodes the masks to our strings",
              "%d of %d differ" % (bad_enc, n))

        for fx in ("amg-synthetic-crops", "amg-synthetic-tall"):
            d = os.path.join("tests", "fixtures", fx)
            out = os.path.join(tmp, fx + ".json")
            rc = subprocess.call([os.path.join(build, "sam2amg"), "generate", "--config",
                                  os.path.join(d, "meta.json"), "--replay-decoder",
                                  os.path.join(d, "expected.safetensors"),
                                  os.path.join(d, "image.png"), "-o", out])
            check(rc == 0, fx + ": generate runs")
            if rc:
                continue
            recs = json.load(open(out))["annotations"]
            bad = []
            for i, r in enumerate(recs):
                seg = r["segmentation"]
                rle = {"size": seg["size"], "counts": seg["counts"].encode()}
                m = mu.decode(rle)
                bb = mu.toBbox(rle)
                want = [r["bbox"][0], r["bbox"][1], r["bbox"][2] + 1, r["bbox"][3] + 1]
                if m.shape != tuple(seg["size"]) or int(m.sum()) != r["area"] or \
                        int(mu.area(rle)) != r["area"] or list(bb) != want:
                    bad.append(i)
            check(len(recs) > 0 and not bad,
                  fx + ": %d records decode in pycocotools with our area and bbox" % len(recs),
                  "records %s" % bad[:5])
    print("RESULT %d %d" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
