#!/usr/bin/env bash
# make_bundle.sh DIR: the last steps of `make gpu-bundle` after it linked
# DIR/bin: record what was built, and check that the bundle is
# self-contained: every shared library a program needs must be in DIR/lib
# or one a CUDA machine surely has (the C and C++ runtimes, and cuBLAS from
# its CUDA 13 toolkit), and the bundle compressed into DIR.txz (xz: it
# travels with the working tree, 64 MiB in all, of which the tracked files
# take ~54, and `make gpu-vips`'s libvips may travel beside it:
# tests/gpu/transfer.sh adds them up). The fixtures' images are not in it:
# check.sh decodes them to PPM on the GPU machine (they travel as PNG with
# the tree). Exit 1 when not.
set -u -o pipefail
B=${1:?usage: make_bundle.sh DIR}
BUILD=${BUILD:-build}
cd "$(dirname "$0")/../.."
fail=0
# the official side by side (tests/gpu/official_bench.py): the oracle and the
# official sam2 package's Python files (no configs, no CUDA extension source)
SAM2_SRC=${SAM2_SRC:-../sam2-src}
ORACLE=${SAM2_ORACLE:-../shared/tools/sam2_oracle.py}
[ -d "$SAM2_SRC/sam2" ] || SAM2_SRC=/work/sam2-src
[ -f "$ORACLE" ] || ORACLE=/work/shared/tools/sam2_oracle.py
mkdir -p "$B/official"
if [ -d "$SAM2_SRC/sam2" ] && [ -f "$ORACLE" ]; then
    cp "$ORACLE" "$B/official/sam2_oracle.py" || fail=1
    (cd "$SAM2_SRC" && find sam2 -name '*.py' -not -path '*/training/*' -not -path '*/demo/*' |
        tar cf - -T -) | tar xf - -C "$B/official" || fail=1
else
    echo "make_bundle: official source ($SAM2_SRC/sam2) or oracle ($ORACLE) not found" >&2
    fail=1
fi
{
    echo "built:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit:    $(git rev-parse HEAD 2>/dev/null) ($(git status --porcelain 2>/dev/null | wc -l) paths changed)"
    echo "cc:        $(${CC:-cc} --version | head -n 1)"
    echo "nvcc:      $([ "${HAVE_NVCC:-0}" = 1 ] && "${NVCC:-nvcc}" --version | tail -n 1 || echo 'none (CPU-only bundle)')"
    [ "${HAVE_NVCC:-0}" = 1 ] && echo "kernels:   ${BUNDLE_ARCH:-?}"
} >"$B/INFO"
# the two small libraries the system provides here but a GPU machine may not
for l in libminizip.so.1 libz.so.1; do
    src=$(ldd "$B/lib/libsam2amg_gpu.so" | awk -v l="$l" '$1 == l {print $3}')
    [ -n "$src" ] && cp -L "$src" "$B/lib/$l" || { echo "make_bundle: $l not found" >&2; fail=1; }
done
allowed='^(linux-vdso\.so|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libstdc\+\+\.so|libgcc_s\.so|/lib64/ld-linux-x86-64\.so|libcublas\.so|libcublasLt\.so)'
for b in "$B"/bin/* "$B"/lib/libsam2amg_gpu.so; do
    lib="$(cd "$B/lib" && pwd -P)/"
    extra=$(ldd "$b" | awk '{print $1, ($3 ~ /^\// ? $3 : "-")}' |
            while read -r name path; do
                [ "$path" != - ] && case "$(readlink -f "$path")" in "$lib"*) continue ;; esac
                echo "$name"
            done | grep -vE "$allowed")
    missing=$(ldd "$b" | grep 'not found')
    if [ -n "$extra$missing" ]; then
        echo "make_bundle: $b needs libraries a GPU machine may lack: $extra $missing" >&2
        fail=1
    fi
done
# uncompressed at most 32 MiB; compressed, it must leave room for the tree
# and the libvips archive (tests/gpu/transfer.sh)
size=$(du -sb "$B" | cut -f1)
echo "size:      $size bytes" >>"$B/INFO"
if [ "$size" -gt $((32 << 20)) ]; then
    echo "make_bundle: $B is $size bytes, over 32 MiB" >&2
    fail=1
fi
rm -f "$B.tgz"   # the archive's name before xz
tar cf - "$B" | xz -9 -T0 >"$B.txz" || fail=1
tsize=$(stat -c %s "$B.txz" 2>/dev/null || echo 0)
echo "  archive:   $B.txz, $tsize bytes"
bash tests/gpu/transfer.sh "$B.txz" gpu-vips.txz || fail=1
sed 's/^/  /' "$B/INFO"
ls -l "$B/bin" | awk 'NR > 1 {printf "  %-14s %9d bytes\n", $9, $5}'
exit $fail
