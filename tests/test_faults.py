#!/usr/bin/env python3
"""test_faults.py: storage faults injected at every I/O operation.

The program's SQLite connections go through the fault VFS of
src/faultvfs.c when SAM2AMG_FAULT_VFS is set (see include/faultvfs.h). A
small `run` (test model, 1 of 3 images already done, one image per commit)
is first counted: R reads, W writes, S syncs. Then for every k:

  write:k          SQLITE_IOERR_WRITE on the k-th write, odd k in 1..W
  write:k,full,persist   SQLITE_FULL from the k-th write on (a full disk),
                   even k (FAULTS_ALL=1: both kinds for every k)
  sync:k           SQLITE_IOERR_FSYNC on the k-th sync, k = 1..S
  read:k           SQLITE_IOERR_READ on the k-th read, k = 1..R

and after each: the exit status is 0 (the fault did not reach the run, and
then the database is complete) or 1 with exactly one line on stderr; PRAGMA integrity_check is ok; every image
done before the run is still done with the same masks; a rerun without
faults exits 0 and the database then holds exactly the masks of an
uninterrupted run. The same sweep for `export --format coco` (every read)
and `sql --write` (every write and sync: the statement is all or nothing).
Short reads: a manifest of every truncation of a PNG and a JPEG (each one
failed or done, never a crash; the run goes on), and checkpoints cut at
chosen offsets (run exits 1 with one line).
"""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
import time

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("BUILD", "build")
BIN = os.path.abspath(os.path.join(BUILD, "sam2amg"))
AMG = ["--model", "test:", "--points-per-side", "4", "--pred-iou-thresh", "0",
       "--stability-score-thresh", "0", "--quiet", "--batch", "1", "--decode-threads", "1"]
passed = failed = 0
JOBS = 2   # fault plans run two at a time
# every write fault both ways (IOERR once, FULL from k on); by default odd k
# get IOERR and even k FULL, so every k is still failed once (half the time)
ALL = os.environ.get("FAULTS_ALL") == "1"


def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"not ok - {name}: {detail}")
    sys.stdout.flush()


def run(args, fault=None, report=None):
    env = dict(os.environ)
    env.pop("SAM2AMG_FAULT_VFS", None)
    env.pop("SAM2AMG_FAULT_VFS_REPORT", None)
    if fault:
        env["SAM2AMG_FAULT_VFS"] = fault
    if report:
        env["SAM2AMG_FAULT_VFS_REPORT"] = report
    p = subprocess.run([BIN] + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def counts(report):
    with open(report) as f:
        w = f.read().split()
    return {w[i]: int(w[i + 1]) for i in range(0, len(w), 2)}


def db_copy(src, dst):
    for suf in ("", "-wal", "-shm"):
        if os.path.exists(dst + suf):
            os.remove(dst + suf)
        if os.path.exists(src + suf):
            shutil.copyfile(src + suf, dst + suf)


def masks(db):
    """path -> tuple of mask rows; and path -> status."""
    c = sqlite3.connect(db)
    try:
        st = dict(c.execute("select path, status from images"))
        m = {}
        for row in c.execute(
                "select i.path, m.idx, m.rle, m.area, m.bbox_x, m.bbox_y, m.bbox_w, m.bbox_h, "
                "m.predicted_iou, m.stability_score, m.point_x, m.point_y, m.crop_x, m.crop_y, "
                "m.crop_w, m.crop_h from masks m join images i on i.id = m.image_id "
                "order by i.path, m.idx"):
            m.setdefault(row[0], []).append(row[1:])
        return st, {k: tuple(v) for k, v in m.items()}
    finally:
        c.close()


def integrity(db):
    c = sqlite3.connect(db)
    try:
        return c.execute("pragma integrity_check").fetchone()[0]
    finally:
        c.close()


def one_line_error(rc, err, cmd):
    """exit 0 (fault absorbed) or 1 with one line 'sam2amg CMD: ...'."""
    lines = [l for l in err.splitlines() if l.strip()]
    if rc == 0:
        return True, ""
    ok = rc == 1 and len(lines) == 1 and lines[0].startswith(f"sam2amg {cmd}: ")
    return ok, f"exit {rc}, stderr {lines!r}"


def png(path, w, h, seed):
    import random
    import struct
    import zlib
    rnd = random.Random(seed)
    cx, cy, r = rnd.randrange(w), rnd.randrange(h), rnd.randrange(3, 12)
    rows = []
    for y in range(h):
        row = bytearray([0])
        for x in range(w):
            inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
            row += bytes([200, 40, 40] if inside else [(x * 5) % 256, (y * 3) % 256, 90])
        rows.append(bytes(row))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def sweep_run(T, half_db, manifest, ref):
    rep = f"{T}/count.txt"
    db = f"{T}/db.sqlite"
    db_copy(half_db, db)
    rc, _, err = run(["run", db, "--manifest", manifest] + AMG, fault="count", report=rep)
    n = counts(rep)
    check(rc == 0 and n["faults"] == 0, "run under the counting VFS: exit 0", f"{rc} {err}")
    check(masks(db) == ref, "run under the counting VFS: the reference masks")
    print(f"# a small run: {n['read']} reads, {n['write']} writes, {n['sync']} syncs")
    st_half, m_half = masks(half_db)
    done_before = [p for p, s in st_half.items() if s == "done"]
    plans = ([f"write:{k}" for k in range(1, n["write"] + 1) if ALL or k % 2] +
             [f"write:{k},full,persist" for k in range(1, n["write"] + 1) if ALL or not k % 2] +
             [f"sync:{k}" for k in range(1, n["sync"] + 1)] +
             [f"read:{k}" for k in range(1, n["read"] + 1)])
    def one(i_plan):
        """run plan i in its own database; (stopped, {check: problem})"""
        i, plan = i_plan
        db = f"{T}/sweep{i % JOBS}.sqlite"
        rep = f"{T}/sweep{i % JOBS}.count"
        db_copy(half_db, db)
        if os.path.exists(rep):
            os.remove(rep)
        rc, _, err = run(["run", db, "--manifest", manifest] + AMG, fault=plan, report=rep)
        bad = {}
        ok, why = one_line_error(rc, err, "run")
        if not ok:
            bad["exit"] = f"{plan}: {why}"
        ic = integrity(db)
        if ic != "ok":
            bad["integrity"] = f"{plan}: {ic}"
            return rc != 0, bad
        st, m = masks(db)
        for p in done_before:
            if st.get(p) != "done" or m.get(p) != m_half.get(p):
                bad["kept"] = f"{plan}: {p}"
                break
        if rc == 0 and (st, m) == ref:
            return False, bad     # the fault did not reach the run: nothing to resume
        if rc == 0:
            bad["complete"] = f"{plan}: exit 0 but the database differs from the reference"
        rc2, _, err2 = run(["run", db, "--manifest", manifest] + AMG)
        if rc2 != 0:
            bad["rerun"] = f"{plan}: exit {rc2} {err2.strip()!r}"
        if masks(db) != ref:
            bad["final"] = plan
        return rc != 0, bad

    bad = {"exit": [], "complete": [], "integrity": [], "kept": [], "rerun": [], "final": []}
    hit = 0
    # two plans at a time, each in its own database (the plans are independent)
    with ThreadPoolExecutor(JOBS) as ex:
        for i in range(0, len(plans), JOBS):
            for stopped, b in ex.map(one, list(enumerate(plans))[i:i + JOBS]):
                hit += stopped
                for k, v in b.items():
                    bad[k].append(v)
    print(f"# {len(plans)} faulted runs, {hit} of them stopped by the fault (exit 1)")
    check(hit > 0, "the injected faults reach the run", "no run failed")
    for key, what in (("exit", "exit 0, or 1 with one line"),
                      ("complete", "exit 0 only with every image done, as uninterrupted"),
                      ("integrity", "integrity_check ok"),
                      ("kept", "images done before stay done with their masks"),
                      ("rerun", "rerun without the fault exits 0"),
                      ("final", "after the rerun: exactly the uninterrupted run's masks")):
        check(not bad[key], f"run, every fault of {len(plans)}: {what}",
              f"{len(bad[key])} bad, e.g. {bad[key][:3]}")
    return db


def sweep_export(T, db):
    out_ref = f"{T}/ref.coco.json"
    rep = f"{T}/count.txt"
    if os.path.exists(rep):
        os.remove(rep)
    rc, _, err = run(["export", db, "--format", "coco", out_ref], fault="count", report=rep)
    check(rc == 0, "export under the counting VFS: exit 0", err)
    n = counts(rep)
    print(f"# export --format coco: {n['read']} reads")
    ref = open(out_ref, "rb").read()
    bad_exit, bad_out, hit = [], [], 0
    for k in range(1, n["read"] + 1):
        out = f"{T}/out.coco.json"
        if os.path.exists(out):
            os.remove(out)
        rc, _, err = run(["export", db, "--format", "coco", out], fault=f"read:{k}")
        hit += rc != 0
        ok, why = one_line_error(rc, err, "export")
        if not ok:
            bad_exit.append(f"read:{k}: {why}")
        if rc == 0 and open(out, "rb").read() != ref:
            bad_out.append(f"read:{k}: exit 0 but a different file")
        left = [f for f in os.listdir(T) if f.startswith("out.coco.json") and f != "out.coco.json"]
        if left:
            bad_out.append(f"read:{k}: exit {rc}, temporary files left: {left}")
        if rc != 0 and os.path.exists(out):
            bad_out.append(f"read:{k}: exit {rc} and {out} left behind "
                           f"({os.path.getsize(out)} of {len(ref)} bytes)")
    print(f"# {n['read']} faulted exports, {hit} stopped by the fault")
    check(not bad_exit, f"export, every read fault of {n['read']}: exit 0, or 1 with one line",
          f"{len(bad_exit)} bad, e.g. {bad_exit[:3]}")
    check(integrity(db) == "ok", "export faults: integrity_check ok")
    return bad_out


def sweep_sql_write(T, db0):
    db = f"{T}/sqlw.sqlite"
    rep = f"{T}/count.txt"
    q = "UPDATE images SET error = 'note ' || id"
    db_copy(db0, db)
    if os.path.exists(rep):
        os.remove(rep)
    rc, _, err = run(["sql", db, "--write", q], fault="count", report=rep)
    check(rc == 0, "sql --write under the counting VFS: exit 0", err)
    n = counts(rep)
    print(f"# sql --write: {n['write']} writes, {n['sync']} syncs")
    plans = ([f"write:{k}" for k in range(1, n["write"] + 1)] +
             [f"write:{k},full,persist" for k in range(1, n["write"] + 1)] +
             [f"sync:{k}" for k in range(1, n["sync"] + 1)])
    bad = []
    for plan in plans:
        db_copy(db0, db)
        rc, _, err = run(["sql", db, "--write", q], fault=plan)
        ok, why = one_line_error(rc, err, "sql")
        if not ok:
            bad.append(f"{plan}: {why}")
            continue
        if integrity(db) != "ok":
            bad.append(f"{plan}: integrity")
            continue
        c = sqlite3.connect(db)
        notes = c.execute("select count(*) from images where error like 'note %'").fetchone()[0]
        total = c.execute("select count(*) from images").fetchone()[0]
        c.close()
        # committed (all rows) or not (none); exit 0 only when committed
        if notes not in (0, total) or (rc == 0 and notes != total):
            bad.append(f"{plan}: exit {rc}, {notes} of {total} rows updated")
    check(not bad, f"sql --write, every fault of {len(plans)}: one line, integrity ok, "
          "all or nothing", f"{len(bad)} bad, e.g. {bad[:3]}")


def short_images(T):
    d = f"{T}/cut"
    os.makedirs(d)
    png(f"{T}/tiny.png", 8, 6, 9)
    srcs = [f"{T}/tiny.png", "tests/fixtures/images/jpeg_grey.jpg"]
    paths = []
    for s in srcs:
        data = open(s, "rb").read()
        ext = os.path.splitext(s)[1]
        for n in range(len(data) + 1):
            p = f"{d}/{os.path.basename(s)}.{n:05d}{ext}"
            with open(p, "wb") as f:
                f.write(data[:n])
            paths.append(p)
    with open(f"{T}/cut.txt", "w") as f:
        f.write("\n".join(paths) + "\n")
    db = f"{T}/cut.sqlite"
    rc, _, err = run(["run", db, "--manifest", f"{T}/cut.txt"] + AMG)
    c = sqlite3.connect(db)
    st = dict(c.execute("select path, status from images"))
    errs = dict(c.execute("select path, error from images where status = 'failed'"))
    c.close()
    full = [f"{d}/{os.path.basename(s)}.{len(open(s, 'rb').read()):05d}{os.path.splitext(s)[1]}"
            for s in srcs]
    print(f"# {len(paths)} truncations: {sum(v == 'done' for v in st.values())} done, "
          f"{sum(v == 'failed' for v in st.values())} failed")
    check(rc == 3, "every truncation of a PNG and a JPEG in one run: exit 3 (some failed)",
          f"exit {rc} {err[-300:]!r}")
    check(len(st) == len(paths) and all(v in ("done", "failed") for v in st.values()),
          "every truncated image is done or failed", f"{len(st)} of {len(paths)}")
    check(all(e and "\n" not in e for e in errs.values()), "every failure has a one-line reason")
    check(all(st.get(p) == "done" for p in full), "the whole files are done")


def short_checkpoints(T):
    with open(f"{T}/one.txt", "w") as f:
        f.write(f"{T}/img/i0.png\n")
    bad = []
    tried = 0
    for src in ("tests/fixtures/micro/weights.safetensors", "tests/fixtures/micro/weights.pt"):
        data = open(src, "rb").read()
        L = len(data)
        cuts = sorted({0, 7, 8, 64, 4096, L // 3, 2 * L // 3, L - 22, L - 1})
        for n in cuts:
            p = f"{T}/cut{os.path.splitext(src)[1]}"
            with open(p, "wb") as f:
                f.write(data[:n])
            db = f"{T}/ck.sqlite"
            for suf in ("", "-wal", "-shm"):
                if os.path.exists(db + suf):
                    os.remove(db + suf)
            rc, _, err = run(["run", db, "--manifest", f"{T}/one.txt", "--model", p,
                              "--config", "micro", "--points-per-side", "2", "--quiet"])
            tried += 1
            lines = [l for l in err.splitlines() if l.strip()]
            if not (rc == 1 and len(lines) == 1 and lines[0].startswith("sam2amg run: ")):
                bad.append(f"{src} cut at {n}: exit {rc}, {lines[:3]!r}")
    check(not bad, f"{tried} truncated checkpoints (.safetensors and .pt): exit 1, one line",
          f"{bad[:3]}")


def main():
    if not os.access(BIN, os.X_OK):
        check(False, "binary", f"{BIN} missing")
        print(f"RESULT {passed} {failed}")
        return 1
    T = tempfile.mkdtemp(prefix="test_faults.")
    try:
        os.makedirs(f"{T}/img")
        for i, (w, h) in enumerate([(24, 20), (30, 28), (20, 32)]):
            png(f"{T}/img/i{i}.png", w, h, i)
        imgs = sorted(f"{T}/img/{f}" for f in os.listdir(f"{T}/img"))
        with open(f"{T}/half.txt", "w") as f:
            f.write("\n".join(imgs[:1]) + "\n")
        with open(f"{T}/all.txt", "w") as f:
            f.write("\n".join(imgs) + "\n")
        # the uninterrupted reference, and the database with half of it done
        rc, _, err = run(["run", f"{T}/ref.sqlite", "--manifest", f"{T}/all.txt"] + AMG)
        check(rc == 0, "uninterrupted reference run: exit 0", err)
        ref = masks(f"{T}/ref.sqlite")
        check(len(ref[1]) == len(imgs), "reference: masks for every image")
        rc, _, err = run(["run", f"{T}/half.sqlite", "--manifest", f"{T}/half.txt"] + AMG)
        check(rc == 0, "half run: exit 0", err)
        t0 = time.time()
        db = sweep_run(T, f"{T}/half.sqlite", f"{T}/all.txt", ref)
        print(f"# run sweep: {time.time() - t0:.1f} s"); t0 = time.time()
        bad_out = sweep_export(T, db)
        check(not bad_out, "export: a failed export leaves no partial output file",
              f"{len(bad_out)} bad, e.g. {bad_out[:2]}")
        print(f"# export sweep: {time.time() - t0:.1f} s"); t0 = time.time()
        sweep_sql_write(T, db)
        print(f"# sql --write sweep: {time.time() - t0:.1f} s"); t0 = time.time()
        short_images(T)
        print(f"# truncated images: {time.time() - t0:.1f} s"); t0 = time.time()
        short_checkpoints(T)
        print(f"# truncated checkpoints: {time.time() - t0:.1f} s")
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(T, ignore_errors=True)
        else:
            print(f"# kept {T}")
    print(f"RESULT {passed} {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
