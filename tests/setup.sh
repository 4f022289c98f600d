#!/usr/bin/env bash
# setup.sh: install the Debian packages sam2amg builds and tests with
# (idempotent; needs root or sudo). nvcc, if present, is used as found.
# libmicrohttpd is for `serve`; chromium, chromium-driver and
# python3-selenium for its browser test (tests/test_serve_browser.py).
set -euo pipefail
pkgs=(build-essential pkg-config libvips-dev libsqlite3-dev sqlite3 libopenblas-dev
      libopenblas0-pthread libminizip-dev zlib1g-dev python3 python3-numpy python3-pip valgrind
      libmicrohttpd-dev chromium chromium-driver python3-selenium
      slurmctld slurmd slurm-client munge)   # the last four: tests/test_slurm.sh's cluster
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# pycocotools for /usr/bin/python3: tests/test_rle_pycocotools.py checks our
# COCO RLE strings against it (PyPI; skipped with a "skip" line if absent)
/usr/bin/python3 -c 'import pycocotools' 2>/dev/null ||
    /usr/bin/python3 -m pip install --break-system-packages -q pycocotools
