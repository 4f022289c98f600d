#!/usr/bin/env python3
"""soak.py: `make soak`: a long run with SIGKILLs, watching memory and fds.

SOAK_IMAGES images (default 20,000; 1% of them bad: truncated, empty or not
an image) go through `sam2amg run` with the test model and two workers
(--devices cpu,cpu). The run is SIGKILLed SOAK_KILLS times (default 4),
each time SOAK_KILL_S (default 1.5) s, give or take half, after it started,
and resumed; the last resume runs to the end. While a process runs, its resident memory (VmRSS), open fds and the
number of finished images are sampled every 0.2 s. Reported: RSS and fds of the
last process after 1,000 of its images and at its end, images/s per 1,000
images (steady = no trend), and checks:

  - every image is done or failed (the bad ones failed, with a reason),
    each done image has exactly one set of masks (no duplicates);
  - the final database equals an uninterrupted run: the N images are hard
    links to a pool of distinct images (the test model's masks depend only
    on the pixels), and each image's masks equal, row for row, those of its
    pool image in an uninterrupted run over the pool;
  - PRAGMA integrity_check is ok;
  - RSS at the end is within 10% + 8 MiB of RSS after 1,000 images, and the
    fd count is the same.

Prints "ok - ..." lines and "RESULT passed failed" like the tests (it is not
part of `make test`: minutes, not seconds). KEEP=1 keeps the work folder.
"""
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, "tests")
from test_faults import png  # noqa: E402  (the same synthetic PNG writer)

BUILD = os.environ.get("BUILD", "build")
BIN = os.path.abspath(os.path.join(BUILD, "sam2amg"))
N = int(os.environ.get("SOAK_IMAGES", "20000"))
KILLS = int(os.environ.get("SOAK_KILLS", "4"))
POOL = 200
AMG = ["--model", "test:", "--points-per-side", "4", "--pred-iou-thresh", "0",
       "--stability-score-thresh", "0", "--quiet", "--devices", "cpu,cpu", "--threads", "1",
       "--retries", "10"]
passed = failed = 0


def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"not ok - {name}: {detail}")
    sys.stdout.flush()


def proc_stats(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds
    except (OSError, StopIteration):
        return None


def done_count(db):
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        n = c.execute("select count(*) from images where status in ('done', 'failed')").fetchone()[0]
        c.close()
        return n
    except sqlite3.Error:
        return None


def masks_by_path(db):
    c = sqlite3.connect(db)
    m = {}
    for row in c.execute(
            "select i.path, m.idx, m.rle, m.area, m.bbox_x, m.bbox_y, m.bbox_w, m.bbox_h, "
            "m.predicted_iou, m.stability_score, m.point_x, m.point_y, m.crop_x, m.crop_y, "
            "m.crop_w, m.crop_h from masks m join images i on i.id = m.image_id "
            "order by i.path, m.idx"):
        m.setdefault(row[0], []).append(row[1:])
    st = dict(c.execute("select path, status from images"))
    c.close()
    return st, m


def run_watched(db, manifest, kill_after=None, samples=None):
    """run until exit (or SIGKILL after kill_after s); sample (t, done, rss, fds)."""
    t0 = time.time()
    p = subprocess.Popen([BIN, "run", db, "--manifest", manifest] + AMG,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while p.poll() is None:
        time.sleep(0.2)
        s = proc_stats(p.pid)
        if s and samples is not None:
            samples.append((time.time() - t0, done_count(db), s[0], s[1]))
        if kill_after is not None and time.time() - t0 > kill_after:
            p.send_signal(signal.SIGKILL)
    err = p.stderr.read().decode("utf-8", "replace")
    return p.wait(), err


def main():
    T = tempfile.mkdtemp(prefix="soak.")
    try:
        rnd = random.Random(2026)
        os.makedirs(f"{T}/pool")
        os.makedirs(f"{T}/img")
        for i in range(POOL):
            png(f"{T}/pool/p{i:03d}.png", rnd.randrange(24, 72), rnd.randrange(24, 72), i)
        good = open(f"{T}/pool/p000.png", "rb").read()
        bad_kinds = [b"", good[:len(good) // 2], b"not an image at all\n", good[:40]]
        for k, data in enumerate(bad_kinds):
            with open(f"{T}/pool/bad{k}.png", "wb") as f:
                f.write(data)
        src_of = {}
        paths = []
        for i in range(N):
            if i % 100 == 37:     # 1% bad
                src = f"{T}/pool/bad{(i // 100) % len(bad_kinds)}.png"
            else:
                src = f"{T}/pool/p{rnd.randrange(POOL):03d}.png"
            p = f"{T}/img/{i:06d}.png"
            os.link(src, p)
            src_of[p] = src
            paths.append(p)
        with open(f"{T}/manifest.txt", "w") as f:
            f.write("\n".join(paths) + "\n")
        with open(f"{T}/pool.txt", "w") as f:
            f.write("\n".join(sorted(set(src_of.values()))) + "\n")
        n_bad = sum(1 for s in src_of.values() if "/bad" in s)

        # the uninterrupted reference over the distinct images
        rc, err = run_watched(f"{T}/ref.sqlite", f"{T}/pool.txt")
        check(rc == 3, "reference run over the pool: exit 3 (the bad ones failed)", err[-300:])
        ref_st, ref_m = masks_by_path(f"{T}/ref.sqlite")

        db = f"{T}/soak.sqlite"
        kills = 0
        for k in range(KILLS):
            # SOAK_KILL_S (default 1.5) s into each process, give or take half
            ks = float(os.environ.get("SOAK_KILL_S", "1.5"))
            rc, _ = run_watched(db, f"{T}/manifest.txt", kill_after=rnd.uniform(ks / 2, ks * 1.5))
            d = done_count(db) or 0
            print(f"# kill {k + 1}: exit {rc}, {d} of {N} images finished")
            kills += rc == -signal.SIGKILL
        samples = []
        t0 = time.time()
        rc, err = run_watched(db, f"{T}/manifest.txt", samples=samples)
        wall = time.time() - t0
        check(kills == KILLS, f"{KILLS} runs SIGKILLed mid-way", f"{kills}")
        check(rc == 3, "the last resume runs to the end: exit 3 (bad images failed)",
              f"exit {rc} {err[-300:]!r}")
        samples = [s for s in samples if s[1] is not None]
        start_done = samples[0][1] if samples else 0
        print(f"# last process: {N - start_done} images in {wall:.0f} s "
              f"({(N - start_done) / wall:.1f} images/s overall)")

        # RSS / fds after 1,000 images of the last process, and at its end
        def at(n_img):
            for s in samples:
                if s[1] - start_done >= n_img:
                    return s
            return samples[-1]
        first = at(1000)
        # the end: the last sample while images were still being processed
        # (after the last image the run closes its connections and catches
        # up the R*Tree: fds drop and RSS briefly rises; reported as the peak)
        busy = [s for s in samples if s[1] < N]
        last = busy[-1] if busy else samples[-1]
        print(f"# after {first[1] - start_done} images of the last process ({first[1]} in the "
              f"database): RSS {first[2] / 1024:.1f} MiB, {first[3]} fds")
        print(f"# at its end ({last[1]} in the database): RSS {last[2] / 1024:.1f} MiB, "
              f"{last[3]} fds; peak RSS {max(s[2] for s in samples) / 1024:.1f} MiB "
              f"(with the final R*Tree catch-up)")
        # throughput per 1,000 images
        rates = []
        mark = first
        for s in samples:
            if s[1] - mark[1] >= 1000:
                rates.append((s[1] - mark[1]) / (s[0] - mark[0]))
                mark = s
        if rates:
            print("# images/s per 1,000 images: " + " ".join(f"{r:.0f}" for r in rates))
        marks = [at(k) for k in range(1000, N - start_done, 2000)] + [last]
        print("# RSS MiB / fds every 2,000 images: " +
              " ".join(f"{s[2] / 1024:.0f}/{s[3]}" for s in marks))
        check(last[2] <= first[2] * 1.10 + 8 * 1024, "RSS flat (end within 10% + 8 MiB of "
              "the 1,000-image mark)", f"{first[2]} kB -> {last[2]} kB")
        check(last[3] == first[3], "open fds flat", f"{first[3]} -> {last[3]}")
        if len(rates) >= 4:
            h = len(rates) // 2
            a, b = sum(rates[:h]) / h, sum(rates[h:]) / (len(rates) - h)
            check(b >= 0.7 * a, "throughput steady (second half >= 70% of the first)",
                  f"{a:.1f} -> {b:.1f} images/s")

        st, m = masks_by_path(db)
        check(len(st) == N, "every manifest line is one image", f"{len(st)}")
        check(sum(v == "failed" for v in st.values()) == n_bad and
              all(v in ("done", "failed") for v in st.values()),
              f"all done or failed; the {n_bad} bad images (and only they) failed")
        diff = [p for p in paths if st.get(p) != ref_st.get(src_of[p]) or
                m.get(p) != ref_m.get(src_of[p])]
        check(not diff, "every image's masks equal its pool image's in the uninterrupted run",
              f"{len(diff)} differ, e.g. {diff[:3]}")
        c = sqlite3.connect(db)
        dup = c.execute("select count(*) from (select image_id, idx from masks "
                        "group by image_id, idx having count(*) > 1)").fetchone()[0]
        runs = c.execute("select count(*) from runs").fetchone()[0]
        ic = c.execute("pragma integrity_check").fetchone()[0]
        c.close()
        check(dup == 0, "no image has two sets of masks")
        check(ic == "ok", "integrity_check ok", ic)
        print(f"# {runs} runs recorded in the database")
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(T, ignore_errors=True)
        else:
            print(f"# kept {T}")
    print(f"RESULT {passed} {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
