#!/usr/bin/env python3
"""ncu_top.py: the kernels that took the most device time, from the text
`ncu --metrics gpu__time_duration.sum --print-summary per-kernel` prints.

Nsight Compute's per-kernel summary lists each kernel (name, grid, block)
with its invocation count and the min/max/average of the metric; this sums
invocations x average per kernel name (templates and launch shapes merged)
and prints the top N lines "TOTAL_US us CALLS calls NAME", after a line
with the totals. Used by tests/gpu/check.sh's profile step; the first GPU
run found the decoder's per-prompt launches this way.

usage: ncu_top.py NCU_OUTPUT.txt [N]
"""
import re
import sys


def main():
    if len(sys.argv) < 2:
        print("usage: ncu_top.py NCU_OUTPUT.txt [N]", file=sys.stderr)
        return 2
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    head = re.compile(r"^\s{2}(\S.*?) \((\d+), (\d+), (\d+)\)x\((\d+), (\d+), (\d+)\), "
                      r"Device \d+, CC [\d.]+, Invocations (\d+)")
    metric = re.compile(r"^\s+gpu__time_duration\.sum\s+(\S+)\s+([\d.,]+)\s+([\d.,]+)\s+([\d.,]+)")
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3,
             "s": 1e6, "second": 1e6}
    agg, cur = {}, None
    try:
        lines = open(sys.argv[1], errors="replace").read().splitlines()
    except OSError as e:
        print("ncu_top.py: %s" % e, file=sys.stderr)
        return 1
    for line in lines:
        m = head.match(line)
        if m:
            cur = (m.group(1).split("(")[0].strip(), int(m.group(8)))
            continue
        m = metric.match(line)
        if m and cur:
            us = float(m.group(4).replace(",", "")) * scale.get(m.group(1), 1.0)
            a = agg.setdefault(cur[0], [0, 0.0])
            a[0] += cur[1]
            a[1] += cur[1] * us
            cur = None
    if not agg:
        print("ncu_top.py: no per-kernel summary in %s" % sys.argv[1], file=sys.stderr)
        return 1
    print("total %.0f us in %d launches of %d kernels"
          % (sum(v[1] for v in agg.values()), sum(v[0] for v in agg.values()), len(agg)))
    for name, (calls, us) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
        print("%10.0f us %7d calls  %s" % (us, calls, name[:90]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
