#!/usr/bin/env bash
# bare_root.sh BUNDLE: run the bundle's programs in a chroot that holds
# only what a GPU machine surely has (the dynamic loader, glibc's libc,
# libm, libpthread, libdl, librt and libresolv, libstdc++, libgcc_s and
# CUDA's cuBLAS), the
# bundle and the fixtures: the closest this machine gets to the GPU
# machine's missing build dependencies. The CPU backend stands in for the
# device (no GPU here). Needs root (chroot, a bind mount of /proc for
# $ORIGIN); prints "ok - ..." / "not ok - ..." lines and RESULT; exit 1 on a
# failure, 77 when it cannot build the root. Not part of `make test`.
# usage: bare_root.sh BUNDLE [VIPS]: with VIPS (default gpu-vips/, `make
# gpu-vips`) there, the bundle decodes images through it in the chroot too.
set -u
B=${1:?usage: bare_root.sh BUNDLE}
cd "$(dirname "$0")/../.."
B=$(cd "$B" && pwd)
R=$(mktemp -d /tmp/sam2amg-bare.XXXXXX)
cleanup() { umount "$R/proc" 2>/dev/null; mountpoint -q "$R/proc" || rm -rf "$R"; }
trap cleanup EXIT
mkdir -p "$R/lib64" "$R/lib/x86_64-linux-gnu" "$R/usr/local/cuda/lib64" "$R/repo/tests" "$R/tmp" "$R/proc"
cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/" || exit 77
for l in libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 libstdc++.so.6 libgcc_s.so.1; do
    cp -L "/lib/x86_64-linux-gnu/$l" "$R/lib/x86_64-linux-gnu/" || exit 77
done
for l in libcublas.so.13 libcublasLt.so.13; do   # hard links: cuBLAS is ~700 MB
    [ -e "/usr/local/cuda/lib64/$l" ] || continue
    ln "$(readlink -f "/usr/local/cuda/lib64/$l")" "$R/usr/local/cuda/lib64/$l" 2>/dev/null ||
        cp -L "/usr/local/cuda/lib64/$l" "$R/usr/local/cuda/lib64/"
done
cp -a "$B" "$R/repo/bundle" && cp -a tests/fixtures "$R/repo/tests/" || exit 77
# the PPMs check.sh decodes on the GPU machine (the bundle holds no images):
# here with the build's gpu_generate, outside the chroot
IMG=/repo/bundle/images
if [ ! -d "$B/images" ]; then
    IMG=/repo/images
    mkdir -p "$R$IMG"
    for f in micro amg-synthetic; do
        "${BUILD:-build}/gpu/gpu_generate" --decode "tests/fixtures/$f/image.png" "$R$IMG/$f.ppm" || exit 77
    done
fi
# a carried libvips (make gpu-vips), when there: in the chroot too
V=${2:-gpu-vips}
[ -e "$V/libvips.so.42" ] && { cp -a "$V" "$R/repo/vips" || exit 77; }
mount --bind /proc "$R/proc" 2>/dev/null || { echo "# cannot mount /proc in the chroot"; exit 77; }
pass=0 fail=0
check() { # name, command... (run inside the chroot)
    local name=$1; shift
    if SAM2AMG_FIXTURES=/repo/tests/fixtures chroot "$R" "$@" >"$R/tmp/log" 2>&1; then
        pass=$((pass + 1)); echo "ok - $name"
    else
        fail=$((fail + 1)); echo "not ok - $name"; tail -n 5 "$R/tmp/log" | sed 's/^/    /'
    fi
}
F=/repo/tests/fixtures
check "test_ops (CPU part, plain-C sgemm)" /repo/bundle/bin/test_ops
check "test_cuda (no device: skips)" /repo/bundle/bin/test_cuda
check "test_model (micro, micro2 on the CPU)" /repo/bundle/bin/test_model
check "gpu_model micro micro2" /repo/bundle/bin/gpu_model --device cpu micro micro2
check "gpu_generate micro (.pt checkpoint)" /repo/bundle/bin/gpu_generate --device cpu \
    --model $F/micro/weights.pt --config $F/micro/meta.json $IMG/micro.ppm -o /tmp/m.json
check "micro records match" /repo/bundle/bin/test_amg --compare $F/micro/amg.json /tmp/m.json 0.98 0.99
check "gpu_generate replay amg-synthetic" /repo/bundle/bin/gpu_generate --config \
    $F/amg-synthetic/meta.json --replay-decoder $F/amg-synthetic/expected.safetensors \
    $IMG/amg-synthetic.ppm -o /tmp/s.json
check "replay records match" /repo/bundle/bin/test_amg --compare $F/amg-synthetic/amg.json /tmp/s.json
if [ -d "$R/repo/vips" ]; then
    # the bundle's programs through the carried libvips, which must need
    # nothing a bare machine lacks: the fixture's PNG decoded, same records
    export LD_LIBRARY_PATH=/repo/vips   # for the chrooted program (chroot itself ignores it)
    check "gpu_generate micro on the PNG through the carried libvips" /repo/bundle/bin/gpu_generate \
        --device cpu --model $F/micro/weights.pt --config $F/micro/meta.json $F/micro/image.png -o /tmp/mv.json
    check "  its records match" /repo/bundle/bin/test_amg --compare $F/micro/amg.json /tmp/mv.json 0.98 0.99
    check "sam2amg run on the fixture photos (JPEG, PNG, WebP, TIFF) through it" /repo/bundle/bin/sam2amg \
        run /tmp/p.db --manifest /repo/tests/fixtures/photos --model test: --devices cpu --quiet
    unset LD_LIBRARY_PATH
    echo /repo/tests/fixtures/photos/chelsea.jpg >"$R/tmp/one.txt"
    chroot "$R" /repo/bundle/bin/sam2amg run /tmp/q.db --manifest /tmp/one.txt \
        --model test: --devices cpu --quiet >"$R/tmp/log" 2>&1
    qrc=$?
    chroot "$R" /repo/bundle/bin/sam2amg sql /tmp/q.db "select error from images" >"$R/tmp/log" 2>&1
    if [ $qrc = 3 ] && grep -q 'libvips' "$R/tmp/log"; then
        pass=$((pass + 1)); echo "ok - without it, the stand-in: the JPEG fails alone, naming libvips (exit 3)"
    else
        fail=$((fail + 1)); echo "not ok - without it: exit $qrc, expected 3"; tail -n 5 "$R/tmp/log" | sed 's/^/    /'
    fi
fi
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
