#!/usr/bin/env python3
"""test_ncu_top.py: tests/gpu/ncu_top.py on Nsight Compute summaries written
here (this machine has no ncu): the per-kernel sums of device time, the
DRAM GB/s where the summary has both dram__bytes metrics and "-" where it
has not, units, the old duration-only form, and a file with no summary.
Pure Python, well under a second."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.join(HERE, "gpu", "ncu_top.py")
sys.path.insert(0, os.path.join(HERE, "gpu"))
import ncu_top  # noqa: E402

passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok - %s" % what)
    else:
        failed += 1
        print("not ok - %s: %s" % (what, detail))


def kernel(name, grid, block, calls, metrics):
    out = ["  %s (%d, 1, 1)x(%d, 1, 1), Device 0, CC 9.0, Invocations %d"
           % (name, grid, block, calls),
           "    Section: Command line profiler metrics",
           "    ---------------------- ----------- ------------ ------------ ------------",
           "    Metric Name            Metric Unit      Minimum      Maximum      Average",
           "    ---------------------- ----------- ------------ ------------ ------------"]
    for m, unit, avg in metrics:
        out.append("    %-22s %11s %12s %12s %12s" % (m, unit, avg, avg, avg))
    out.append("    ---------------------- ----------- ------------ ------------ ------------")
    out.append("")
    return out


T, R, W = "gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum"
lines = ["==PROF== Disconnected from process 1234", "[1234] gpu_generate@127.0.0.1"]
# one kernel in two launch shapes: 10 x 100 us + 5 x 2 ms; 10 x (200 + 100) MB
# and 5 x (3 + 1) GB: 23 GB over 11 ms
lines += kernel("void lowrank_expand_kernel<9, 1>(le_args)", 4096, 256, 10,
                [(T, "usecond", "100.00"), (R, "Mbyte", "200.00"), (W, "Mbyte", "100.00")])
lines += kernel("void lowrank_expand_kernel<9, 1>(le_args)", 2048, 256, 5,
                [(T, "msecond", "2.00"), (R, "Gbyte", "3.00"), (W, "Gbyte", "1.00")])
# bytes in one shape only: no GB/s for the name
lines += kernel("gelu_kernel(float *, const float *, long)", 100, 256, 4,
                [(T, "usecond", "50.00"), (R, "Kbyte", "1,000.00"), (W, "Kbyte", "500.00")])
lines += kernel("gelu_kernel(float *, const float *, long)", 10, 256, 2,
                [(T, "nsecond", "5,000.00")])
lines += kernel("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 264, 384, 3,
                [(T, "usecond", "1,000.00"), (R, "byte", "3,000,000.00"), (W, "byte", "0.00")])

agg = ncu_top.parse(lines)
le = agg.get("void lowrank_expand_kernel<9, 1>")
check(le is not None and le[0] == 15 and abs(le[1] - 11000.0) < 1e-6,
      "two launch shapes of one kernel: calls and device time summed", repr(le))
check(le is not None and le[2] is not None and abs(le[2] - 23e9) < 1,
      "their DRAM bytes: read + write, x invocations, Mbyte and Gbyte", repr(le))
ge = agg.get("gelu_kernel")
check(ge is not None and ge[0] == 6 and abs(ge[1] - 210.0) < 1e-6,
      "nsecond with a thousands separator", repr(ge))
check(ge is not None and ge[2] is None, "a shape without the bytes: none for the name", repr(ge))

with tempfile.TemporaryDirectory() as d:
    f = os.path.join(d, "profile.log")
    with open(f, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    p = subprocess.run([sys.executable, TOP, f, "10"], capture_output=True, text=True)
    out = p.stdout.splitlines()
    check(p.returncode == 0 and len(out) == 4, "exit 0, a total line and 3 kernels",
          "rc %d: %r %r" % (p.returncode, out, p.stderr))
    if len(out) == 4:
        check(out[0].startswith("total 14210 us in 24 launches of 3 kernels; DRAM 23.01 GB at 1644 GB/s over the 14000 us"),
              "the total line: time, launches, and the bytes of the kernels with them", out[0])
        check(out[1].split()[:6] == ["11000", "us", "15", "calls", "2091", "GB/s"] and
              out[1].endswith("lowrank_expand_kernel<9, 1>"),
              "first the kernel with the most time, its GB/s", out[1])
        check(out[2].split()[:6] == ["3000", "us", "3", "calls", "3", "GB/s"],
              "a GEMM's bytes in plain bytes", out[2])
        check(out[3].split()[:6] == ["210", "us", "6", "calls", "-", "GB/s"],
              "no bytes: '-'", out[3])
    # the duration-only summary of earlier profiles (no dram metrics)
    with open(f, "w") as fh:
        fh.write("\n".join(kernel("k1", 1, 32, 2, [(T, "usecond", "10.00")]) +
                           kernel("k2", 1, 32, 1, [(T, "msecond", "1.50")])) + "\n")
    p = subprocess.run([sys.executable, TOP, f], capture_output=True, text=True)
    out = p.stdout.splitlines()
    check(p.returncode == 0 and out[:1] == ["total 1520 us in 3 launches of 2 kernels"] and
          len(out) == 3 and out[1].split()[:6] == ["1500", "us", "1", "calls", "-", "GB/s"],
          "duration only: the totals without DRAM, '-' per kernel", repr(out))
    # a unit this script does not know: said on stderr, the kernel left out
    with open(f, "w") as fh:
        fh.write("\n".join(kernel("k1", 1, 32, 2, [(T, "usecond", "10.00")]) +
                           kernel("k2", 1, 32, 1, [(T, "fortnight", "1.50")])) + "\n")
    p = subprocess.run([sys.executable, TOP, f], capture_output=True, text=True)
    check(p.returncode == 0 and p.stdout.splitlines()[:1] == ["total 20 us in 2 launches of 1 kernels"]
          and "k2: time unit 'fortnight' unknown" in p.stderr,
          "an unknown time unit: the kernel left out, said on stderr", "%r %r" % (p.stdout, p.stderr))
    with open(f, "w") as fh:
        fh.write("==ERROR== ncu failed\n")
    p = subprocess.run([sys.executable, TOP, f], capture_output=True, text=True)
    check(p.returncode == 1 and "no per-kernel summary" in p.stderr,
          "no summary: exit 1, said on stderr", "rc %d %r" % (p.returncode, p.stderr))

# names whose parameter list is not the first "(": an anonymous namespace,
# a template argument with a cast; each kernel its own line
odd = (kernel("(anonymous namespace)::scale_kernel(float *, int)", 1, 32, 2, [(T, "usecond", "10.00")]) +
       kernel("(anonymous namespace)::other_kernel(float *, int)", 1, 32, 1, [(T, "usecond", "5.00")]) +
       kernel("void foo<(int)3>(float *)", 1, 32, 1, [(T, "usecond", "1.00")]) +
       kernel("void foo<(int)4>(float *)", 1, 32, 1, [(T, "usecond", "1.00")]))
agg = ncu_top.parse(odd)
check(sorted(agg) == ["(anonymous namespace)::other_kernel", "(anonymous namespace)::scale_kernel",
                      "void foo<(int)3>", "void foo<(int)4>"],
      "names cut at their parameter list, not at the first '('", repr(sorted(agg)))
# a kernel line with fields this does not know: parsed where it still ends
# in "Device N, CC X, Invocations N", else skipped, its metrics not added
# to the kernel before it
odd = (kernel("a(float *)", 1, 32, 1, [(T, "usecond", "1.00")]) +
       ["  b(float *) (1, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0, Invocations 3"] +
       kernel("x", 1, 32, 1, [(T, "usecond", "2.00")])[1:] +
       ["  c(float *) (1, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0"] +
       kernel("x", 1, 32, 1, [(T, "usecond", "1000.00")])[1:])
agg = ncu_top.parse(odd)
check(agg.get("a") == [1, 1.0, None] and agg.get("b") == [3, 6.0, None] and "c" not in agg,
      "a kernel line with Context and Stream; one without Invocations skipped", repr(agg))

print("RESULT %d %d" % (passed, failed))
sys.exit(1 if failed else 0)
