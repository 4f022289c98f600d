#!/usr/bin/env bash
# make_vips.sh [DIR]: a real libvips for the GPU bundle (`make gpu-vips`),
# in DIR (default gpu-vips/) and archived as DIR.txz to carry beside
# gpu-bundle.txz. The GPU machine has no libvips and nothing can be
# installed there; PyPI's pyvips-binary wheel (pinned below) holds one
# self-contained libvips (its image libraries and GLib linked in, GLib's
# functions exported), so DIR/libvips.so.42, first on LD_LIBRARY_PATH
# (check.sh sets it when DIR is there), takes the place of the bundle's
# stand-in and the bundle's programs decode JPEG, PNG, WebP and TIFF as
# the product does. Here it is checked the same way: the bundle's
# gpu_generate decodes the fixture photos through it to the same pixels as
# the build's (Debian's libvips). Needs pip and PyPI (this machine, not
# the GPU one). Exit 1 when anything fails.
set -u -o pipefail
D=${1:-gpu-vips}
V=${PYVIPS_BINARY_VERSION:-8.18.7}
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
py=""
for c in python3 /usr/bin/python3; do
    command -v "$c" >/dev/null && "$c" -m pip --version >/dev/null 2>&1 && { py=$c; break; }
done
[ -n "$py" ] || { echo "make_vips: no python3 with pip" >&2; exit 1; }
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d "$tmp" "pyvips-binary==$V" ||
    { echo "make_vips: pip could not download pyvips-binary==$V" >&2; exit 1; }
rm -rf "$D" && mkdir -p "$D" || exit 1
"$py" - "$tmp" "$D" <<'EOP' || { echo "make_vips: no libvips in the wheel" >&2; exit 1; }
import glob, os, shutil, sys, zipfile
tmp, dst = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "pyvips_binary-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    libs = [n for n in z.namelist() if n.startswith("pyvips_binary.libs/libvips") and ".so.42" in n]
    if len(libs) != 1:
        sys.exit(1)
    with z.open(libs[0]) as f, open(os.path.join(dst, os.path.basename(libs[0])), "wb") as g:
        shutil.copyfileobj(f, g)
EOP
lib=$(cd "$D" && ls libvips-*.so.42)
ln -s "$lib" "$D/libvips.so.42"
echo "pyvips-binary $V: $lib" >"$D/INFO"
fail=0
# the swap, checked: the bundle's gpu_generate through this libvips and the
# build's (system libvips) decode the fixture photos to the same bytes
gen=gpu-bundle/bin/gpu_generate ref=${BUILD:-build}/gpu/gpu_generate
if [ -x "$gen" ] && [ -x "$ref" ]; then
    n=0
    for f in tests/fixtures/photos/*.jpg tests/fixtures/photos/*.png; do
        LD_LIBRARY_PATH=$(cd "$D" && pwd) "$gen" --decode "$f" "$tmp/a.ppm" &&
            "$ref" --decode "$f" "$tmp/b.ppm" && cmp -s "$tmp/a.ppm" "$tmp/b.ppm" ||
            { echo "make_vips: $f decodes differently through $D" >&2; fail=1; }
        n=$((n + 1))
    done
    echo "  checked:   $n fixture photos decode through $D to the bytes the build's libvips gives"
else
    # the swap is what this library is for: unchecked is a failure (the
    # archive is still written)
    echo "make_vips: not checked: $gen or $ref missing (make gpu-bundle first)" >&2
    fail=1
fi
tar cf - "$D" | xz -9 -T0 >"$D.txz" || fail=1
echo "  archive:   $D.txz, $(stat -c %s "$D.txz") bytes"
bash tests/gpu/transfer.sh gpu-bundle.txz "$D.txz" || fail=1
exit $fail
