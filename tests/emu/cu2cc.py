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
  __shared__ ... name[N]...;  ->  the same, then emu_shared_poison(name,
     sizeof name); on the same line, for each array it declares (each block
     starts it as garbage); not in comments
Newlines inside a rewritten launch are kept, so line numbers stay those of
the .cu file (a #line directive names it).
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


def blank_comments(src):
    """src with the text of its comments and string literals as spaces
    (newlines kept): the same length, so an index into it is one into src"""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"', blank, src, flags=re.S)


def poison_shared(src):
    """emu_shared_poison(name, sizeof name); after each static __shared__
    declaration, for every array it declares (a, b of `float a[4], b[8];`);
    found in the code only, not in comments"""
    decl = re.compile(r"\b__shared__\s+(?:__align__\(\d+\)\s+)?([^;{}()]*?\b\w+\s*(?:\[[^;\]]*\]\s*)+);")
    code, out, pos = blank_comments(src), [], 0
    for m in decl.finditer(code):
        names = [d.group(1) for d in (re.search(r"(\w+)\s*(?:\[[^\]]*\]\s*)+$", part)
                                      for part in split_top(m.group(1))) if d]
        out.append(src[pos:m.end()])
        out.append("".join(" emu_shared_poison(%s, sizeof %s);" % (n, n) for n in names))
        pos = m.end()
    out.append(src[pos:])
    return "".join(out)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src = open(sys.argv[1]).read()
    src = re.sub(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?((?:unsigned\s+)?\w+)\s+(\w+)\s*\[\s*\]\s*;",
                 r"\1 *\2 = (\1 *)emu_dyn_smem();", src)
    src = rewrite(src)
    src = re.sub(r"\breinterpret_cast\s*<", "emu_reinterpret<", src)
    src = poison_shared(src)
    with open(sys.argv[2], "w") as f:
        f.write('#line 1 "%s"\n' % sys.argv[1])
        f.write(src)


if __name__ == "__main__":
    main()
