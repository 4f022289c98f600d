"""serve_util.py: what test_serve_http.py and test_serve_browser.py share:
a small real database (`sam2amg run` with the micro SAM 2.1 model on
tests/fixtures/photos plus one corrupt file, which fails), a `sam2amg serve`
process on a free port, and the ok / not ok / RESULT lines of tests/test.h.
"""
import os
import shutil
import sqlite3
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
BIN = os.path.join(ROOT, BUILD, "sam2amg")
MICRO = os.path.join(ROOT, "tests/fixtures/micro/weights.safetensors")
# thresholds at 0 so that the random-weight micro model keeps a few masks
RUN_FLAGS = ["--model", MICRO, "--config", "micro", "--points-per-side", "16",
             "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
             "--box-nms-thresh", "0.95", "--quiet"]


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, cond, name, detail=""):
        if cond:
            self.passed += 1
            print("ok - " + name)
        else:
            self.failed += 1
            print("not ok - %s: %s" % (name, detail))
        sys.stdout.flush()
        return cond

    def finish(self):
        print("RESULT %d %d" % (self.passed, self.failed))
        return 1 if self.failed else 0


def copy_photos(dst):
    """the fixture photos and a corrupt 'JPEG' into dst; returns dst"""
    os.makedirs(dst, exist_ok=True)
    src = os.path.join(ROOT, "tests/fixtures/photos")
    for n in sorted(os.listdir(src)):
        if n.endswith((".jpg", ".png", ".tif", ".webp")):
            shutil.copy(os.path.join(src, n), dst)
    with open(os.path.join(dst, "corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a JPEG " * 40)
    return dst


def make_db(tmp):
    """tmp/demo.db from `sam2amg run` on the photos + corrupt.jpg"""
    img = copy_photos(os.path.join(tmp, "img"))
    db = os.path.join(tmp, "demo.db")
    r = subprocess.run([BIN, "run", db, "--manifest", img] + RUN_FLAGS,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # 3: some images failed (the corrupt one), as intended
    if r.returncode not in (0, 3):
        raise RuntimeError("sam2amg run failed (%d): %s" % (r.returncode, r.stderr))
    return db


def query(db, sql, *args):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


class Server:
    """`sam2amg serve DB --port 0 [extra]`; .url is its base URL"""

    def __init__(self, db, extra=()):
        self.p = subprocess.Popen([BIN, "serve", db, "--port", "0"] + list(extra),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if "http://" not in line:
            self.p.kill()
            raise RuntimeError("serve did not start: %r %s" % (line, self.p.stderr.read()))
        self.url = line[line.index("http://"):].split()[0].rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self):
        """SIGTERM; returns the exit status"""
        self.p.terminate()
        try:
            return self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()
