#!/usr/bin/env python3
"""cu2cc.py: a kernels/*.cu file as C++ for the CPU emulation (tests/emu/emu.h).

usage: cu2cc.py IN.cu OUT.cc

Four rewrites, nothing else:
  kernel<<<grid, block[, smem[, stream]]>>>(args);
      -> emu_launch(grid, block, smem, [&] { kernel(args); }, "kernel");
     (kernel may be a template instance, e.g. k<2>; args may span lines)
  extern __shared__ [__align__(n)] T name[];  ->  T *name = (T *)emu_dyn_smem();
  reinterpret_cast<T *>(p)  ->  emu_reinterpret<T *>(p)   (emu.h: the
     pointer must be aligned for T, as a GPU's access through it must be)
  __shared__ T a[N], b, ...;  ->  the same, then emu_shared_poison(a,
     sizeof a); emu_shared_poison(&b, sizeof b); ... on the same line, for
     every variable declared, arrays, scalars and typedef'd types alike (each
     block starts it as garbage); found outside comments and strings only;
     `static __shared__` loses its static (emu.h's __shared__ is one), and a
     __shared__ variable at file scope is refused (no statement can follow it)
Newlines inside a rewritten launch or declaration are kept, so line numbers
stay those of the .cu file (a #line directive names it).
"""
import re
import sys


def split_top(s):
    """s split at the commas outside brackets"""
    parts, depth, cur = [], 0, ""
    for c in s:
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return [p.strip() for p in parts]


def kernel_start(src, end):
    """index where the kernel expression ending at end (exclusive) starts"""
    i = end
    if src[i - 1] == ">":   # template arguments
        depth = 0
        while True:
            i -= 1
            if src[i] == ">":
                depth += 1
            elif src[i] == "<":
                depth -= 1
                if depth == 0:
                    break
    while i > 0 and (src[i - 1].isalnum() or src[i - 1] in "_:"):
        i -= 1
    return i


def rewrite(src):
    out, pos = [], 0
    while True:
        at = src.find("<<<", pos)
        if at < 0:
            out.append(src[pos:])
            return "".join(out)
        k0 = kernel_start(src, at)
        close = src.index(">>>", at)
        config = split_top(src[at + 3:close])
        if not 2 <= len(config) <= 4:
            raise SystemExit("cu2cc: launch config '%s'" % src[at + 3:close])
        smem = config[2] if len(config) > 2 else "0"
        p = src.index("(", close)
        depth, q = 0, p
        while True:
            if src[q] == "(":
                depth += 1
            elif src[q] == ")":
                depth -= 1
                if depth == 0:
                    break
            q += 1
        semi = src.index(";", q)
        kernel = src[k0:at]
        args = src[p + 1:q]
        nl = src[k0:semi].count("\n")
        out.append(src[pos:k0])
        name = " ".join(kernel.split()).replace('"', "")
        out.append("emu_launch(%s, %s, %s, [&] { %s(%s); }, \"%s\");" % (
            config[0], config[1], smem, kernel, args.replace("\n", " "), name) + "\n" * nl)
        pos = semi + 1


def code_only(src):
    """src with its comments and string and character literals blanked
    (newlines kept): the same length, so an index into one is one into the
    other"""
    out, i, n = list(src), 0, len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            blank(i + 1, min(j, n))
            i = j + 1
        else:
            i += 1
    return "".join(out)


def poison_shared(src):
    """a call to emu_shared_poison after each static __shared__ declaration
    (after its ';', on that line) for every variable it declares"""
    code = code_only(src)
    edits = []   # (start, end, replacement), in order
    for m in re.finditer(r"\b__shared__\b", code):
        if re.search(r"\bextern\s+$", code[:m.start()]):
            raise SystemExit("cu2cc: line %d: an extern __shared__ declaration not of the form "
                             "'extern __shared__ [__align__(N)] T name[];'"
                             % (code.count("\n", 0, m.start()) + 1))
        st = re.search(r"\bstatic\s+$", code[:m.start()])
        if st:
            edits.append((st.start(), m.start(), ""))
        depth, semi = 0, m.end()
        while semi < len(code) and not (code[semi] == ";" and depth == 0):
            if code[semi] in "([{":
                depth += 1
            elif code[semi] in ")]}":
                depth -= 1
            semi += 1
        line = code.count("\n", 0, m.start()) + 1
        if semi >= len(code):
            raise SystemExit("cu2cc: line %d: a __shared__ declaration without its ';'" % line)
        if code.count("{", 0, m.start()) == code.count("}", 0, m.start()):
            raise SystemExit("cu2cc: line %d: a __shared__ variable at file scope (tests/emu "
                             "can declare them in functions only)" % line)
        decl = re.sub(r"__align__\s*\(\s*\d+\s*\)", " ", code[m.end():semi])
        calls = []
        for d in split_top(decl):
            d = d.split("=")[0].strip()
            v = re.search(r"(\w+)\s*((?:\[[^\]]*\]\s*)*)$", d)
            if not v or v.group(1) in ("extern",):
                raise SystemExit("cu2cc: line %d: a __shared__ declaration it cannot read: '%s'"
                                 % (line, " ".join(code[m.start():semi].split())))
            name = v.group(1)
            calls.append("emu_shared_poison(%s%s, sizeof %s);" % ("" if v.group(2) else "&", name, name))
        edits.append((semi + 1, semi + 1, " " + " ".join(calls)))
    out, pos = [], 0
    for a, b, r in edits:
        out.append(src[pos:a])
        out.append(r)
        pos = b
    out.append(src[pos:])
    return "".join(out)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src = open(sys.argv[1]).read()
    src = re.sub(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?((?:unsigned\s+)?\w+)\s+(\w+)\s*\[\s*\]\s*;",
                 lambda m: "%s *%s = (%s *)emu_dyn_smem();%s" % (
                     m.group(1), m.group(2), m.group(1), "\n" * m.group(0).count("\n")), src)
    src = rewrite(src)
    src = re.sub(r"\breinterpret_cast\s*<", "emu_reinterpret<", src)
    src = poison_shared(src)
    with open(sys.argv[2], "w") as f:
        f.write('#line 1 "%s"\n' % sys.argv[1])
        f.write(src)


if __name__ == "__main__":
    main()
