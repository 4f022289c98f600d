#!/usr/bin/env python3
"""ncu_top.py: the kernels that took the most device time, from the text
`ncu --metrics gpu__time_duration.sum[,dram__bytes_read.sum,dram__bytes_write.sum]
--print-summary per-kernel` prints.

Nsight Compute's per-kernel summary lists each kernel (name, grid, block)
with its invocation count and, per metric, a line "name unit min max
average"; this sums invocations x average per kernel name (launch shapes
merged; template instances apart) and prints the top N lines
"TOTAL_US us CALLS calls GBPS GB/s NAME", after a line with the totals.
GB/s is the DRAM bytes read and written over the device time, where the
summary has the two dram__bytes metrics ("-" where it has not): beside an
H100's ~3.35 TB/s it says which memory-bound kernel is far from what it
could do. Used by tests/gpu/check.sh's profile step; the first GPU run
found the decoder's per-prompt launches this way.

usage: ncu_top.py NCU_OUTPUT.txt [N]
"""
import re
import sys

TIME_UNITS = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3,
              "msecond": 1e3, "s": 1e6, "second": 1e6}
# ncu writes decimal prefixes (Kbyte = 1e3); the binary ones just in case
BYTE_UNITS = {"byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "Tbyte": 1e12,
              "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
              "Kibyte": 1024.0, "Mibyte": 1024.0 ** 2, "Gibyte": 1024.0 ** 3,
              "KiB": 1024.0, "MiB": 1024.0 ** 2, "GiB": 1024.0 ** 3}
BYTE_METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum")


def number(s):
    return float(s.replace(",", ""))


def base_name(name):
    """the kernel's name without its parameter list: the last balanced
    (...) at the end (template arguments and "(anonymous namespace)" kept)"""
    name = name.strip()
    if name.endswith(")"):
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[i], 0)
            if depth == 0:
                return name[:i].strip() or name
    return name


def parse(lines):
    """{kernel name: [calls, us, bytes or None]}"""
    head = re.compile(r"^\s{2}(\S.*?) \((\d+), (\d+), (\d+)\)x\((\d+), (\d+), (\d+)\), "
                      r"(?:[^,]+, )*?Device \d+, CC [\d.]+, Invocations (\d+)")
    # any other kernel line (a field this does not know): its metrics are
    # not added to the kernel before it
    other = re.compile(r"^\s{2}\S.* \(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)")
    metric = re.compile(r"^\s+([A-Za-z_][\w.]*)\s+(\S+)\s+([\d.,]+)\s+([\d.,]+)\s+([\d.,]+)\s*$")
    agg, cur = {}, None

    def close():
        if cur is None:
            return
        if "us" not in cur:
            print("ncu_top.py: no gpu__time_duration.sum in a known unit for %s (%d calls): "
                  "left out" % (cur["name"], cur["calls"]), file=sys.stderr)
            return
        a = agg.setdefault(cur["name"], [0, 0.0, 0.0, True])
        a[0] += cur["calls"]
        a[1] += cur["calls"] * cur["us"]
        if all(m in cur for m in BYTE_METRICS):
            a[2] += cur["calls"] * sum(cur[m] for m in BYTE_METRICS)
        else:
            a[3] = False   # one launch shape without the bytes: no GB/s for the name

    for line in lines:
        m = head.match(line)
        if m:
            close()
            cur = {"name": base_name(m.group(1)), "calls": int(m.group(8))}
            continue
        if other.match(line):
            close()
            cur = None
            print("ncu_top.py: a kernel line not understood, skipped: %s" % line.strip()[:120],
                  file=sys.stderr)
            continue
        m = metric.match(line)
        if not m or cur is None:
            continue
        name, unit, avg = m.group(1), m.group(2), number(m.group(5))
        if name == "gpu__time_duration.sum":
            if unit in TIME_UNITS:
                cur["us"] = avg * TIME_UNITS[unit]
            else:
                print("ncu_top.py: %s: time unit '%s' unknown: the kernel is left out"
                      % (cur["name"], unit), file=sys.stderr)
        elif name in BYTE_METRICS:
            if unit in BYTE_UNITS:
                cur[name] = avg * BYTE_UNITS[unit]
            else:
                print("ncu_top.py: %s: byte unit '%s' unknown: no GB/s for it"
                      % (cur["name"], unit), file=sys.stderr)
    close()
    return {k: [v[0], v[1], v[2] if v[3] else None] for k, v in agg.items()}


def gbps(nbytes, us):
    return "%7.0f" % (nbytes / (us * 1e3)) if nbytes is not None and us > 0 else "      -"


def main():
    if len(sys.argv) < 2:
        print("usage: ncu_top.py NCU_OUTPUT.txt [N]", file=sys.stderr)
        return 2
    try:
        top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
        if top < 0:
            raise ValueError
    except ValueError:
        print("ncu_top.py: N must be a count (%r)" % sys.argv[2], file=sys.stderr)
        return 2
    try:
        lines = open(sys.argv[1], errors="replace").read().splitlines()
    except OSError as e:
        print("ncu_top.py: %s" % e, file=sys.stderr)
        return 1
    agg = parse(lines)
    if not agg:
        print("ncu_top.py: no per-kernel summary in %s" % sys.argv[1], file=sys.stderr)
        return 1
    total_us = sum(v[1] for v in agg.values())
    line = "total %.0f us in %d launches of %d kernels" % (
        total_us, sum(v[0] for v in agg.values()), len(agg))
    with_bytes = [v for v in agg.values() if v[2] is not None]
    if with_bytes:
        b, us = sum(v[2] for v in with_bytes), sum(v[1] for v in with_bytes)
        line += "; DRAM %.2f GB at %s GB/s over the %.0f us of the kernels with bytes" % (
            b / 1e9, gbps(b, us).strip(), us)
    print(line)
    for name, (calls, us, nbytes) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
        print("%10.0f us %7d calls %s GB/s  %s" % (us, calls, gbps(nbytes, us), name[:90]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
