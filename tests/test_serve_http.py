#!/usr/bin/env python3
"""test_serve_http.py: `sam2amg serve` over HTTP (standard library only).

On a database made by `sam2amg run` (micro model, fixture photos, a corrupt
file): every page and its numbers against SQL on the same database (counts,
per-card masks and mean IoU, sort orders, paging, the image JSON, the
thumbnail and full image sizes); the error paths: unknown and malformed ids
are 404, bad or unknown query parameters 400, path-like URLs 404 and never
a file's content, other methods 405, oversized requests refused with the
server still up; a NULL predicted IoU (schema 002) is null in JSON and left
out of the mean as SQL's avg does; the database file is byte-identical
after serving; serve reads beside a running `run` and its pages follow it;
the command line: missing or foreign database, bad port, --host warning.
"""
import ctypes
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_util as su  # noqa: E402


def get(srv, path, method="GET", body=None, headers=None):
    """(status, content-type, body bytes) of one raw request: the path is
    sent as given, without normalization"""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        if body is not None:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read()
    finally:
        c.close()


def raw_status(port, path, host):
    """the status of an HTTP/1.0 GET with the Host header host (None: no
    Host header)"""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(("GET %s HTTP/1.0\r\n%s\r\n" % (path, "Host: %s\r\n" % host if host else "")).encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        line = data.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 else 0
    finally:
        s.close()


def cards(html):
    """(id, masks, iou text or None, name) of each card of a grid page"""
    out = []
    for m in re.finditer(r'<a class="card (\w+)" data-id="(\d+)" data-masks="(\d+)".*?</a>', html, re.S):
        iou = re.search(r'IoU ([0-9.]+|-)', m.group(0))
        name = re.search(r'<div class="name"[^>]*>([^<]*)</div>', m.group(0)).group(1)
        out.append((int(m.group(2)), int(m.group(3)), iou.group(1) if iou else None, name))
    return out


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_hostile_db(tmp):
    """a database that sam2amg did not write: our schema with images.path
    nullable, run and image times beyond any calendar, markup in a path
    and an error, and a live lease so that the run page computes an ETA"""
    path = os.path.join(tmp, "hostile.db")
    con = sqlite3.connect(path)
    for f in sorted(os.listdir(os.path.join(su.ROOT, "schema"))):
        sql = open(os.path.join(su.ROOT, "schema", f)).read()
        con.executescript(re.sub(r"path\s+TEXT NOT NULL UNIQUE", "path TEXT UNIQUE", sql))
    con.execute("PRAGMA user_version = %d" % len(os.listdir(os.path.join(su.ROOT, "schema"))))
    run = ("INSERT INTO runs (id, params, model_path, model_sha256, config, program_version, devices,"
           " started_at) VALUES (?, '{}', 'm', 'x', 'c', 'v', 'cpu', ?)")
    con.execute(run, (1, 1e300))
    con.execute(run, (2, -1e300))
    con.execute(run, (3, 0.0))
    img = "INSERT INTO images (id, path, status, error, run_id, finished_at, lease_expires, added_at) " \
          "VALUES (?, ?, ?, ?, ?, ?, ?, 0)"
    con.execute(img, (1, None, "done", None, 3, 1e300, None))
    con.execute(img, (2, "/tmp/run.jpg", "running", None, None, None, time.time() + 1e6))
    con.execute(img, (3, "/tmp/left.jpg", "pending", None, None, None, None))
    con.execute(img, (4, '/tmp/<script>alert(1)</script>"onmouseover=alert(2) x=".jpg', "failed",
                      '<img src=x onerror=alert(3)>', 3, 5.0, None))
    # a\b.jpg as images.path stores it: the backslash escaped (store.h)
    con.execute(img, (5, "/tmp/back\\\\slash.jpg", "pending", None, None, None, None))
    con.commit()
    con.close()
    return path


def main():
    rep = su.Report()
    tmp = tempfile.mkdtemp(prefix="test_serve_http.")
    db = su.make_db(tmp)
    q = lambda sql, *a: su.query(db, sql, *a)  # noqa: E731
    n_img = q("SELECT count(*) FROM images")[0][0]
    n_masks = q("SELECT count(*) FROM masks")[0][0]
    failed = q("SELECT id, error FROM images WHERE status = 'failed'")
    rep.check(n_img == 8 and len(failed) == 1 and n_masks > 0, "database made",
              "%d images %d masks" % (n_img, n_masks))
    digest = sha(db)
    srv = su.Server(db)

    # ---- pages against SQL ----
    st, ct, body = get(srv, "/")
    html = body.decode()
    num = lambda k: re.search(r'id="n-%s">(?:<a[^>]*>)?(\d+)' % k, html).group(1)  # noqa: E731
    rep.check(st == 200 and ct.startswith("text/html") and num("images") == str(n_img) and
              num("masks") == str(n_masks) and num("failed") == str(len(failed)) and
              num("done") == str(n_img - len(failed)) and 'data-running="0"' in html,
              "run page: counts equal SQL, not running", html[:300])
    runs = q("SELECT id, devices FROM runs")
    rep.check(len(re.findall(r'<tr class="run">', html)) == len(runs) and "micro" in html and
              "points_per_side" in html, "run page: one row per run with its parameters")

    st, _, body = get(srv, "/images?per=500")
    cs = cards(body.decode())
    summ = {r[0]: r[1:] for r in q("SELECT image_id, masks, mean_predicted_iou FROM image_summary")}
    rep.check(st == 200 and len(cs) == n_img, "grid: one card per image", "%d cards" % len(cs))
    def card_ok(i, m, iou):
        masks, mean = summ[i]
        if masks != m:
            return False
        if iou is None:   # not done: no IoU shown
            return mean is None
        return abs(float(iou) - mean) < 5e-4
    rep.check(all(card_ok(i, m, iou) for i, m, iou, _ in cs),
              "grid: masks and mean IoU per card equal image_summary", str(cs))
    rep.check([m for _, m, _, _ in cs] == sorted((m for _, m, _, _ in cs), reverse=True),
              "grid: default sort is masks, descending")
    st, _, body = get(srv, "/images?sort=path&order=asc&per=500")
    by_path = [r[0] for r in q("SELECT id FROM images ORDER BY path")]
    rep.check([c[0] for c in cards(body.decode())] == by_path, "grid: sort=path equals ORDER BY path")
    st, _, body = get(srv, "/images?sort=iou&status=done&per=500")
    by_iou = [r[0] for r in q("SELECT image_id FROM image_summary WHERE status = 'done' "
                              "ORDER BY mean_predicted_iou DESC, image_id")]
    rep.check([c[0] for c in cards(body.decode())] == by_iou, "grid: sort=iou equals SQL avg order")
    st, _, body = get(srv, "/images?sort=id&order=desc&per=500")
    rep.check([c[0] for c in cards(body.decode())] == sorted(summ, reverse=True),
              "grid: sort=id order=desc is newest first")
    pages = []
    for p in (1, 2, 3):
        st, _, body = get(srv, "/images?per=3&sort=id&order=asc&page=%d" % p)
        pages += [c[0] for c in cards(body.decode())]
    st4, _, _ = get(srv, "/images?per=3&sort=id&order=asc&page=4")
    rep.check(pages == sorted(summ) and st4 == 404, "grid: pages of 3 cover all images once; past the end 404",
              "%s %d" % (pages, st4))
    st, _, body = get(srv, "/images?status=failed")
    fc = cards(body.decode())
    rep.check([c[0] for c in fc] == [f[0] for f in failed] and
              failed[0][1].split(":")[-1].strip() in body.decode(),
              "grid: status=failed lists the failed image with its reason")

    iid = max(summ, key=lambda i: summ[i][0])
    st, ct, body = get(srv, "/api/image/%d" % iid)
    d = json.loads(body)
    rows = q("SELECT id, area, predicted_iou, rle FROM masks WHERE image_id = ? ORDER BY idx", iid)
    rep.check(st == 200 and ct == "application/json" and
              [(m["id"], m["area"], m["counts"]) for m in d["masks"]] ==
              [(r[0], r[1], json.loads(r[3])["counts"]) for r in rows] and
              all(abs(m["predicted_iou"] - r[2]) < 1e-7 for m, r in zip(d["masks"], rows)),
              "api: the image's masks equal the masks table")
    w, h = q("SELECT width, height FROM images WHERE id = ?", iid)[0]
    rep.check(d["width"] == w and d["height"] == h, "api: image size")
    st, ct, body = get(srv, "/full/%d" % iid)
    pw, ph = struct.unpack(">II", body[16:24]) if body[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)
    rep.check(st == 200 and ct == "image/png" and (pw, ph) == (w, h), "full image: PNG of the stored size",
              "%s %dx%d" % (ct, pw, ph))
    st, ct, body = get(srv, "/thumb/%d" % iid)
    rep.check(st == 200 and ct == "image/jpeg" and body[:2] == b"\xff\xd8", "thumbnail: JPEG")
    st2, _, body2 = get(srv, "/thumb/%d" % iid)
    rep.check(st2 == 200 and body2 == body, "thumbnail: cached copy identical")
    st, _, body = get(srv, "/image/%d" % failed[0][0])
    st2, _, body2 = get(srv, "/api/image/%d" % failed[0][0])
    rep.check(st == 200 and st2 == 200 and json.loads(body2)["error"] == failed[0][1],
              "failed image: page and reason")
    st, _, _ = get(srv, "/thumb/%d" % failed[0][0])
    rep.check(st == 404, "failed image: no thumbnail (404)", str(st))
    st, ct, body = get(srv, "/images", method="HEAD")
    rep.check(st == 200 and ct.startswith("text/html") and body == b"", "HEAD: headers only")
    st, ct, body = get(srv, "/static/serve.js")
    rep.check(st == 200 and "javascript" in ct and b"rleCounts" in body, "static: serve.js")

    # ---- error paths ----
    for path in ("/image/99999", "/image/0", "/image/abc", "/image/-1", "/image/1x", "/image/1.0",
                 "/image/", "/image/00000000000000000000001", "/api/image/99999", "/api/image/x",
                 "/thumb/99999", "/full/abc", "/nothing", "/images/", "/favicon.ico", "/static/",
                 "/static/serve.js/", "/image/1/", "//image/1"):
        st, ct, body = get(srv, path)
        rep.check(st == 404 and ct.startswith("text/html") and len(body) < 2048 and b"404" in body,
                  "404 short page: " + path, "%d %d bytes" % (st, len(body)))
    for path in ("/image/../../../../etc/passwd", "/../../../../etc/passwd", "/static/../../etc/passwd",
                 "/%2e%2e/%2e%2e/etc/passwd", "/full/..%2F..%2F..%2Fetc%2Fpasswd",
                 "/thumb/%2Fetc%2Fpasswd", "/static/..%2f..%2fMakefile",
                 "/full/" + db):
        st, _, body = get(srv, path)
        rep.check(st == 404 and b"root:" not in body and b"CFLAGS" not in body,
                  "path-like URL is 404: " + path, "%d" % st)
    for path in ("/images?status=bogus", "/images?sort=bogus", "/images?order=up", "/images?page=0",
                 "/images?page=-1", "/images?page=abc", "/images?page=99999999999999999999",
                 "/images?per=0", "/images?per=100000", "/images?unknown=1", "/images?path=/etc/passwd",
                 "/images?status=done&status=failed", "/?x=1", "/thumb/1?size=9", "/image/1?status=zzz",
                 "/api/image/1?status=..%2F", "/image/1%00.png", "/images?sort=path%00x",
                 "/images?" + "&".join("a%d=1" % i for i in range(20))):
        st, ct, body = get(srv, path)
        rep.check(st == 400 and len(body) < 2048 and b"400" in body, "400: " + path[:60], "%d" % st)
    for m in ("POST", "PUT", "DELETE"):
        st, _, _ = get(srv, "/images", method=m, body=b"x=1")
        rep.check(st == 405, "%s is 405" % m, str(st))
    st, _, _ = get(srv, "/images?page=1&" + "a" * 100000)
    rep.check(st in (400, 413, 414, 431), "100 kB URL refused", str(st))
    st, _, _ = get(srv, "/", headers={"X-Big": "b" * 100000})
    rep.check(st in (400, 413, 431), "100 kB header refused", str(st))
    st, _, _ = get(srv, "/images")
    rep.check(st == 200, "server still answers after the bad requests", str(st))
    # concurrent requests (4 server threads, each with its own connection;
    # the index and the thumbnail cache shared)
    urls = ["/", "/images?sort=iou", "/api/image/%d" % iid, "/thumb/%d" % iid] + \
           ["/thumb/%d" % i for i in summ if summ[i][0] > 0]
    want = {u: get(srv, u)[2] for u in urls}
    bad = []

    def hammer(k):
        for j in range(12):
            u = urls[(k + j) % len(urls)]
            st, _, b = get(srv, u)
            if st != 200 or (not u.startswith("/images") and u != "/" and b != want[u]):
                bad.append((u, st))
    ts = [threading.Thread(target=hammer, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    rep.check(not bad, "8 clients at once: same answers", str(bad[:5]))
    rc = srv.stop()
    rep.check(rc == 0, "serve exits 0 on SIGTERM", str(rc))
    rep.check(sha(db) == digest, "database file unchanged by serving")

    # SIGTERM and SIGINT sent in turn to each of serve's threads that does
    # not block it (tgkill), as the kernel may deliver a process's signal to
    # any such thread: exit 0 every time (OpenBLAS's pool, started at load
    # before main, took SIGTERM's default action: exit -15)
    libc = ctypes.CDLL(None, use_errno=True)
    sys_tgkill = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine)
    for sig in (signal.SIGTERM, signal.SIGINT) if sys_tgkill else ():
        outcomes = []
        k = 0
        while True:
            srv = su.Server(db)
            tasks = []
            for t in sorted(int(t) for t in os.listdir("/proc/%d/task" % srv.p.pid)):
                with open("/proc/%d/task/%d/status" % (srv.p.pid, t)) as f:
                    blk = [ln.split()[1] for ln in f if ln.startswith("SigBlk:")]
                if blk and not int(blk[0], 16) >> (int(sig) - 1) & 1:
                    tasks.append(t)
            if k >= len(tasks):
                srv.stop()
                break
            libc.syscall(sys_tgkill, srv.p.pid, tasks[k], int(sig))
            try:
                rc = srv.p.wait(10)
            except subprocess.TimeoutExpired:
                rc = "no exit"
                srv.p.kill()
                srv.p.wait()
            outcomes.append(rc)
            k += 1
        rep.check(outcomes and all(rc == 0 for rc in outcomes),
                  "serve exits 0 on %s sent to any of its %d threads that take it" % (sig.name,
                                                                              len(outcomes)),
                  str(outcomes))

    # ---- NULL scores (schema 002) ----
    db2 = os.path.join(tmp, "nulls.db")
    shutil.copy(db, db2)
    con = sqlite3.connect(db2)
    mid = con.execute("SELECT id FROM masks WHERE image_id = ? ORDER BY idx LIMIT 1", (iid,)).fetchone()[0]
    con.execute("UPDATE masks SET predicted_iou = NULL, stability_score = NULL WHERE id = ?", (mid,))
    con.commit()
    avg = con.execute("SELECT avg(predicted_iou) FROM masks WHERE image_id = ?", (iid,)).fetchone()[0]
    con.close()
    srv = su.Server(db2)
    st, _, body = get(srv, "/api/image/%d" % iid)
    m0 = [m for m in json.loads(body)["masks"] if m["id"] == mid][0]
    rep.check(st == 200 and m0["predicted_iou"] is None and m0["stability_score"] is None,
              "NULL scores are null in JSON")
    st, _, body = get(srv, "/images?per=500")
    c = [c for c in cards(body.decode()) if c[0] == iid][0]
    rep.check(st == 200 and abs(float(c[2]) - avg) < 5e-4, "mean IoU leaves NULL out like avg()",
              "%s vs %s" % (c[2], avg))
    srv.stop()

    # ---- beside a running `run` ----
    more = su.copy_photos(os.path.join(tmp, "more"))
    os.remove(os.path.join(more, "corrupt.jpg"))
    for n in os.listdir(more):   # new names: new images
        os.rename(os.path.join(more, n), os.path.join(more, "b_" + n))
    srv = su.Server(db)
    run = subprocess.Popen([su.BIN, "run", db, "--manifest", more] + su.RUN_FLAGS,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ok200 = seen_running = 0
    while run.poll() is None:
        st, _, b1 = get(srv, "/")
        st2, _, _ = get(srv, "/images?sort=iou")
        ok200 += st == 200 and st2 == 200
        seen_running += b'data-running="1"' in b1
        time.sleep(0.2)
    # 3: the corrupt image of the first run is tried again and fails again
    rep.check(run.returncode in (0, 3) and ok200 > 0, "run beside serve finishes; pages answer meanwhile",
              "run %d, %d good polls" % (run.returncode, ok200))
    rep.check(seen_running > 0, "run page says a run is going while it goes", str(seen_running))
    time.sleep(1.1)   # the index re-reads at most once a second
    st, _, body = get(srv, "/")
    html = body.decode()
    n_img2 = q("SELECT count(*) FROM images")[0][0]
    n_masks2 = q("SELECT count(*) FROM masks")[0][0]
    rep.check(n_img2 == n_img + 7 and num("images") == str(n_img2) and num("masks") == str(n_masks2) and
              'data-running="0"' in html,
              "run page follows the run", "%s images, %s masks in the page; %d, %d in SQL" %
              (num("images"), num("masks"), n_img2, n_masks2))
    rows = []
    for tr in re.findall(r'<tr class="run">(.*?)</tr>', html, re.S):
        td = re.findall(r'<td[^>]*>(.*?)</td>', tr, re.S)
        rows.append((int(td[0]), int(td[7]), int(td[8]), int(td[9])))
    want = [tuple(r) for r in q("SELECT run_id, images_done, images_failed, masks FROM run_summary "
                                "ORDER BY run_id")]
    rep.check(len(rows) == 2 and rows == want, "run page: done, failed, masks per run equal run_summary",
              "%s vs %s" % (rows, want))
    srv.stop()

    # ---- a hostile database: nullable path, times no calendar holds,
    # markup in paths and errors ----
    hostile = make_hostile_db(tmp)
    srv = su.Server(hostile)
    for u in ("/thumb/1", "/full/1"):
        try:
            st, _, body = get(srv, u)
        except (OSError, http.client.HTTPException) as e:   # the server died
            st, body = 0, repr(e).encode()
        rep.check(st == 404 and b"has no path" in body, "hostile: %s of a NULL path is a 404" % u,
                  "%d %r" % (st, body[:200]))
    st, _, body = get(srv, "/")
    html = body.decode()
    starts = [re.findall(r'<td[^>]*>(.*?)</td>', tr, re.S)[1]
              for tr in re.findall(r'<tr class="run">(.*?)</tr>', html, re.S)]
    rep.check(st == 200 and starts == ["?", "?", "1970-01-01 00:00:00 UTC"],
              "hostile: run times beyond the calendar show '?'", str(starts))
    rep.check('data-running="1"' in html and 'id="eta"' not in html,
              "hostile: no ETA from an absurd rate", html[html.find('id="rate"'):][:200])
    st, _, body = get(srv, "/images?per=500")
    html = body.decode()
    rep.check(st == 200 and "<script>alert" not in html and "<img src=x" not in html and
              '"onmouseover=' not in html and "&lt;script&gt;alert" in html and
              "&quot;onmouseover=" in html and "&lt;img src=x" in html,
              "hostile: markup in paths and errors is escaped in the grid", html[-1500:])
    st, ct, body = get(srv, "/api/image/4")
    rep.check(st == 200 and ct == "application/json" and b"<" not in body and
              json.loads(body)["path"].startswith("/tmp/<script>"),
              "hostile: the image JSON escapes '<' and round-trips", body[:200])
    st, _, body = get(srv, "/api/image/5")
    rep.check(st == 200 and json.loads(body)["path"] == "/tmp/back\\slash.jpg" and
              'back\\slash.jpg"' in html and "back\\\\slash" not in html,
              "a backslash in a path is shown once (grid, image JSON), not as stored (escaped)",
              body[:200])
    st, _, _ = get(srv, "/")
    rep.check(st == 200 and srv.p.poll() is None, "hostile: server still up")

    # DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own
    # name as Host; a server on the loopback answers only to loopback names
    for host, want in (("evil.example:%d" % srv.port, 400), ("127.0.0.1.evil.example", 400),
                       ("localhost.evil:1", 400), ("127.0.0.1:%d" % srv.port, 200),
                       ("localhost:%d" % srv.port, 200), ("[::1]:%d" % srv.port, 200), (None, 200)):
        st = raw_status(srv.port, "/api/image/4", host)
        rep.check(st == want, "Host %s: %d" % (host, want), str(st))
    srv.stop()

    # ---- command line ----
    r = subprocess.run([su.BIN, "serve", os.path.join(tmp, "missing.db"), "--port", "0"],
                       capture_output=True, text=True, timeout=10)
    rep.check(r.returncode == 1 and "missing.db" in r.stderr, "missing database: exit 1 naming it",
              r.stderr)
    rep.check(not os.path.exists(os.path.join(tmp, "missing.db")), "missing database not created")
    foreign = os.path.join(tmp, "foreign.db")
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.close()
    r = subprocess.run([su.BIN, "serve", foreign, "--port", "0"], capture_output=True, text=True,
                       timeout=10)
    rep.check(r.returncode == 1 and "not a sam2amg database" in r.stderr, "foreign database: exit 1",
              r.stderr)
    r = subprocess.run([su.BIN, "serve", tmp, "--port", "0"], capture_output=True, text=True,
                       timeout=10)
    rep.check(r.returncode == 1 and "is a directory" in r.stderr and len(r.stderr.splitlines()) == 1,
              "a directory as DB: exit 1, one line saying so (was 'disk I/O error')", r.stderr)
    for args in (["--port", "70000"], ["--port", "x"], ["--port"], ["--bogus"], []):
        r = subprocess.run([su.BIN, "serve"] + ([db] if args != [] else []) + args,
                           capture_output=True, text=True, timeout=10)
        rep.check(r.returncode == 2, "usage error exit 2: %s" % (args or "no DB"), r.stderr)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    busy = s.getsockname()[1]
    r = subprocess.run([su.BIN, "serve", db, "--port", str(busy)], capture_output=True, text=True,
                       timeout=10)
    s.close()
    rep.check(r.returncode == 1 and "cannot listen" in r.stderr, "port in use: exit 1", r.stderr)
    rep.check(len(r.stderr.splitlines()) == 1 and "Address already in use" in r.stderr,
              "port in use: one line on stderr (libmicrohttpd's own log line was a second)", r.stderr)
    srv = su.Server(db, ["--host", "0.0.0.0"])
    st = raw_status(srv.port, "/", "reviewbox.lan:%d" % srv.port)
    rep.check(st == 200, "--host 0.0.0.0: any Host name is answered", str(st))
    srv.stop()
    err = srv.p.stderr.read()
    rep.check("no login" in err, "--host 0.0.0.0 warns that the page has no login", err)
    srv = su.Server(db)
    srv.stop()
    rep.check(srv.p.stderr.read() == "", "127.0.0.1: no warning")
    run_model_column(rep, tmp, db)
    foreign_user(rep, tmp, db)
    shutil.rmtree(tmp, ignore_errors=True)
    return rep.finish()


def run_model_column(rep, tmp, db):
    """the run page's model column is the name the run was given
    (runs.model_name: a repo id resolves to a blobs/SHA256 file, which said
    nothing), the file in its title; a schema-1 database (no model_name)
    shows the path"""
    named = os.path.join(tmp, "named.db")
    shutil.copy(db, named)
    con = sqlite3.connect(named)
    con.execute("UPDATE runs SET model_name = 'facebook/sam2.1-hiera-tiny'")
    con.commit()
    path = con.execute("SELECT model_path FROM runs ORDER BY id LIMIT 1").fetchone()[0]
    con.close()
    srv = su.Server(named)
    st, _, body = get(srv, "/")
    srv.stop()
    cells = re.findall(r'<td class="model" title="([^"]*)">([^<]*)</td>', body.decode())
    rep.check(st == 200 and cells and all(n == "facebook/sam2.1-hiera-tiny" and t.startswith(path + ", sha256 ")
                                          for t, n in cells),
              "run page: model column shows runs.model_name, the file in its title", str(cells))
    old = os.path.join(tmp, "v1.db")
    con = sqlite3.connect(old)
    with open(os.path.join(su.ROOT, "schema/001_init.sql")) as f:
        con.executescript(f.read())
    con.execute("INSERT INTO runs (params, model_path, model_sha256, config, program_version, devices, "
                "started_at) VALUES ('{}', '/m/w.pt', 'ab', 'tiny', 'x', 'cpu', 0)")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    before = sha(old)
    srv = su.Server(old)
    st, _, body = get(srv, "/")
    srv.stop()
    cells = re.findall(r'<td class="model" title="([^"]*)">([^<]*)</td>', body.decode())
    rep.check(st == 200 and cells == [("/m/w.pt, sha256 ab", "/m/w.pt")] and sha(old) == before,
              "run page of a schema-1 database (no model_name): the path; file unchanged", str(cells))


def foreign_user(rep, tmp, db):
    """serve as another user (nobody): a database in a folder it may not
    write, and one owned by someone else in a shared folder. A plain
    read-only open of a WAL database needs DB-shm and DB-wal: it failed in
    the first case and left files owned by nobody in the second, which the
    owner's next `run` could not write ('attempt to write a readonly
    database')."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        rep.check(True, "# skip serve as another user: not root or no setpriv")
        return
    os.chmod(tmp, 0o755)
    ro, shared = os.path.join(tmp, "ro"), os.path.join(tmp, "shared")
    os.makedirs(ro)
    os.makedirs(shared)
    os.chmod(shared, 0o1777)
    for d in (ro, shared):
        dst = os.path.join(d, "a b%#?.db")  # bytes that mean something in a URI
        shutil.copy(db, dst)
        os.chmod(dst, 0o644)
        if d == shared:
            os.chown(dst, 1000, 1000)
        before = sha(dst)
        p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              su.BIN, "serve", dst, "--port", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        ok = "http://" in line
        codes = []
        if ok:
            port = int(line[line.index("http://"):].split()[0].rstrip("/").rsplit(":", 1)[1])
            for u in ("/", "/images", "/image/1", "/api/image/1"):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", u)
                codes.append(c.getresponse().status)
                c.close()
        p.terminate()
        rc = p.wait(10)
        err = p.stderr.read()
        what = "read-only folder" if d == ro else "another user's database in a shared folder"
        rep.check(ok and codes == [200] * 4 and rc == 0, "serve as nobody, %s: pages 200" % what,
                  "%r %s %s" % (line, codes, err))
        left = sorted(n for n in os.listdir(d) if not n.endswith(".db"))
        rep.check(left == [] and sha(dst) == before, "serve as nobody, %s: no file written" % what,
                  "left %s" % left)


if __name__ == "__main__":
    sys.exit(main())
