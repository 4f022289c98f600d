#!/usr/bin/env python3
"""test_harden_serve.py: `sam2amg serve` under memory pressure and with many
masks (regressions of review findings):
- the decode budget (--decode-memory): an image larger than the whole budget
  is a 503 naming the flag, not a decode; images within it are served;
  concurrent requests for an image that fits only one at a time all succeed
  (they wait for each other rather than failing or all decoding at once);
  a bad --decode-memory is a usage error;
- web/serve.js spreads no array into a call (Math.max(...areas) throws a
  RangeError past ~100k masks); the page's max-area loop is run by node on
  200,000 areas when node is present.
"""
import http.client
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_util as su  # noqa: E402


def png(path, w, h):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    row = b"\0" + bytes((x * 7) % 256 for x in range(w * 3))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b""))


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def main():
    rep = su.Report()
    tmp = tempfile.mkdtemp(prefix="test_harden_serve.")
    try:
        img = os.path.join(tmp, "img")
        os.makedirs(img)
        shutil.copy(os.path.join(su.ROOT, "tests/fixtures/photos/coffee.png"), img)
        png(os.path.join(img, "big.png"), 1200, 1000)      # 3.6 MB of pixels
        db = os.path.join(tmp, "d.db")
        r = subprocess.run([su.BIN, "run", db, "--manifest", img, "--model", "test:",
                            "--points-per-side", "4", "--quiet"], capture_output=True, text=True)
        rep.check(r.returncode == 0, "run: exit 0", r.stderr)
        ids = dict(su.query(db, "select substr(path, length(path) - 6), id from images"))
        big, small = ids["big.png"], [v for k, v in ids.items() if k != "big.png"][0]

        # 1 MiB: the big image can never fit, the small one does
        srv = su.Server(db, ["--decode-memory", "1"])
        try:
            st, body = get(srv.port, "/full/%d" % big)
            rep.check(st == 503 and b"--decode-memory" in body,
                      "an image over the whole decode budget: 503 naming --decode-memory",
                      "%d %r" % (st, body[:300]))
            st, body = get(srv.port, "/thumb/%d" % big)
            rep.check(st == 503, "its thumbnail too: 503", str(st))
            st, body = get(srv.port, "/full/%d" % small)
            rep.check(st == 200 and body[:4] == b"\x89PNG", "an image within the budget: 200",
                      str(st))
            st, _ = get(srv.port, "/")
            rep.check(st == 200, "the server goes on", str(st))
        finally:
            srv.stop()
        # 5 MiB: one decode of the big image at a time; 6 at once all succeed
        srv = su.Server(db, ["--decode-memory", "5"])
        try:
            res = []
            ts = [threading.Thread(target=lambda: res.append(get(srv.port, "/full/%d" % big)[0]))
                  for _ in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            rep.check(res == [200] * 6, "6 concurrent requests, budget for one: all 200 (they wait)",
                      str(res))
        finally:
            srv.stop()
        for bad in ("0", "x", "-1"):
            r = subprocess.run([su.BIN, "serve", db, "--decode-memory", bad], capture_output=True,
                               text=True, timeout=30)
            rep.check(r.returncode == 2 and "--decode-memory" in r.stderr
                      and len(r.stderr.strip().splitlines()) == 1,
                      "--decode-memory %s: exit 2, one line" % bad, r.stderr)

        js = open(os.path.join(su.ROOT, "web/serve.js")).read()
        code = re.sub(r"//[^\n]*", "", js)
        rep.check(not re.search(r"\(\s*(?:[^()]*,\s*)?\.\.\.", code),
                  "web/serve.js: no array spread into a call (Math.max(...a) throws past ~100k)")
        m = re.search(r"\n(\s*maxArea = 1;\n\s*for \(const pm of masks\)[^\n]*\n)", js)
        rep.check(m is not None, "web/serve.js: maxArea is a loop")
        if m and shutil.which("node"):
            prog = ("let maxArea; const masks = []; for (let i = 0; i < 200000; i++) "
                    "masks.push({rec: {area: (i * 7919) % 100003}});" + m.group(1) +
                    "console.log(maxArea);")
            r = subprocess.run(["node", "-e", prog], capture_output=True, text=True, timeout=60)
            rep.check(r.returncode == 0 and r.stdout.strip() == "100002",
                      "the page's maxArea over 200,000 masks (node): 100002", r.stdout + r.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
