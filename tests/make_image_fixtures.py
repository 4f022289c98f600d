#!/usr/bin/python3
"""make_image_fixtures.py: the decode and resize references of tests/test_image.c.

Run once with Debian's /usr/bin/python3 (Pillow 9.4, torch 1.13,
torchvision 0.14, skimage data); the outputs are committed so the tests need
none of them:

  tests/fixtures/images/<case>.<ext>   small encoded images (PIL-written, or
                                       hand-built PNGs for 16-bit/low-bit cases)
  tests/fixtures/images/<case>.rgb     what PIL.Image.open(f).convert("RGB")
                                       returns, raw (h, w, 3) uint8
  tests/fixtures/images/decode.txt     one line per case: file w h ref maxdiff
  tests/fixtures/images/bad/...        inputs that must fail (truncated, empty,
                                       not an image, decompression bomb)
  tests/fixtures/images/resize.txt     one line per resize case: in w h S out
  tests/fixtures/images/rs_*.rgb/.f32  resize input (h, w, 3) uint8 and the
                                       official transform's output (3, S, S) f32

Usage: /usr/bin/python3 tests/make_image_fixtures.py [outdir]
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

SKDATA = "/usr/lib/python3/dist-packages/skimage/data"
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "fixtures", "images")


def sk(name, box, size):
    """A skimage sample, cropped to box and downscaled to size."""
    im = Image.open(os.path.join(SKDATA, name + ".png"))
    return im.crop(box).resize(size, Image.LANCZOS)


def png_chunk(tag, data):
    return (struct.pack(">I", len(data)) + tag + data +
            struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def png_raw(arr, bitdepth, colortype, w=None, h=None, extra=b""):
    """A PNG built by hand: arr (h, w, c) ints in range for bitdepth. w/h
    override the IHDR size (the decompression bomb)."""
    ah, aw = arr.shape[:2]
    rows = []
    for y in range(ah):
        r = arr[y].reshape(-1)
        if bitdepth == 16:
            rb = r.astype(">u2").tobytes()
        elif bitdepth == 8:
            rb = r.astype(np.uint8).tobytes()
        else:
            per = 8 // bitdepth
            v = np.zeros(((len(r) + per - 1) // per) * per, np.int64)
            v[:len(r)] = r
            v = v.reshape(-1, per)
            rb = bytes(int(sum(int(x) << (8 - bitdepth * (i + 1)) for i, x in enumerate(g)))
                       for g in v)
        rows.append(b"\0" + rb)
    ihdr = struct.pack(">IIBBBBB", w or aw, h or ah, bitdepth, colortype, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra +
            png_chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + png_chunk(b"IEND", b""))


def gif_reframe(data, screen, offset):
    """A GIF whose logical screen is `screen` (w, h) and whose first frame
    sits at `offset` (x, y): the canvas around the frame is what PIL fills."""
    b = bytearray(data)
    struct.pack_into("<HH", b, 6, *screen)
    p = 13 + (3 * (2 << (b[10] & 7)) if b[10] & 0x80 else 0)
    while b[p] == 0x21:                                # skip extensions
        p += 2
        while b[p]:
            p += 1 + b[p]
        p += 1
    assert b[p] == 0x2C
    struct.pack_into("<HH", b, p + 1, *offset)
    return bytes(b)


def save(im, name, **kw):
    buf = io.BytesIO()
    im.save(buf, **kw)
    return name, buf.getvalue()


def main():
    os.makedirs(os.path.join(OUT, "bad"), exist_ok=True)
    rng = np.random.default_rng(1234)
    astro = sk("astronaut", (96, 0, 416, 256), (40, 32))
    cat = sk("chelsea", (80, 20, 380, 260), (44, 36))
    coffee = sk("coffee", (100, 50, 500, 350), (40, 30))
    camera = sk("camera", (64, 64, 448, 448), (32, 32))
    cases = []  # (filename, bytes, maxdiff)

    # JPEG
    cases.append(save(astro, "jpeg_baseline.jpg", format="JPEG", quality=90) + (0,))
    cases.append(save(cat, "jpeg_progressive.jpg", format="JPEG", quality=85,
                      progressive=True) + (0,))
    cases.append(save(coffee, "jpeg_444.jpg", format="JPEG", quality=92, subsampling=0) + (0,))
    cases.append(save(camera, "jpeg_grey.jpg", format="JPEG", quality=90) + (0,))
    cases.append(save(coffee.convert("CMYK"), "jpeg_cmyk.jpg", format="JPEG", quality=90) + (0,))
    exif = Image.Exif()
    exif[0x0112] = 6                                   # orientation: rotate 90 CW
    cases.append(save(cat, "jpeg_exif_rotated.jpg", format="JPEG", quality=90,
                      exif=exif.tobytes()) + (0,))
    b = bytearray(cases[0][1])                         # damaged entropy data: libjpeg
    for i in range(len(b) // 2, len(b) // 2 + 40, 3):  # warns, PIL decodes anyway
        b[i] ^= 0x5A
    cases.append(("jpeg_corrupt_scan.jpg", bytes(b), 0))
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    cases.append(save(astro, "jpeg_icc.jpg", format="JPEG", quality=90, icc_profile=icc) + (0,))

    # PNG (PIL-written)
    cases.append(save(coffee, "png_rgb.png", format="PNG") + (0,))
    cases.append(save(camera, "png_grey.png", format="PNG") + (0,))
    la = Image.merge("LA", (camera, camera.transpose(Image.FLIP_LEFT_RIGHT)))
    cases.append(save(la, "png_grey_alpha.png", format="PNG") + (0,))
    rgba = astro.copy()
    alpha = np.array(camera.resize(astro.size))
    alpha[:10] = 0                                     # fully transparent rows keep their RGB
    rgba.putalpha(Image.fromarray(alpha))
    cases.append(save(rgba, "png_rgba.png", format="PNG") + (0,))
    pal = cat.quantize(colors=64)
    cases.append(save(pal, "png_palette.png", format="PNG") + (0,))
    cases.append(save(pal, "png_palette_trns.png", format="PNG", transparency=5) + (0,))
    # PNG (hand-built: depths PIL does not write)
    a = np.array(cat).astype(np.int64)
    rgb16 = a * 257 + rng.integers(0, 257, a.shape)   # low byte noise: high byte is what counts
    cases.append(("png_rgb16.png", png_raw(rgb16, 16, 2), 0))
    rgba16 = np.concatenate([rgb16, rng.integers(0, 65536, a.shape[:2] + (1,))], axis=2)
    cases.append(("png_rgba16.png", png_raw(rgba16, 16, 6), 0))
    g = np.array(camera).astype(np.int64)[..., None]
    g16 = g * 3                                        # spans 0..765: PIL clips at 255
    cases.append(("png_grey16.png", png_raw(g16, 16, 0), 0))
    la16 = np.concatenate([g * 257, g * 100], axis=2)
    cases.append(("png_grey_alpha16.png", png_raw(la16, 16, 4), 0))
    cases.append(("png_grey2.png", png_raw(g >> 6, 2, 0), 0))
    cases.append(("png_grey1.png", png_raw(g >> 7, 1, 0), 0))
    trns = png_chunk(b"tRNS", struct.pack(">H", int(g[0, 0, 0]) * 3))
    cases.append(("png_grey16_trns.png", png_raw(g16, 16, 0, extra=trns), 0))
    c8 = np.array(coffee).astype(np.int64)
    trns = png_chunk(b"tRNS", struct.pack(">HHH", *[int(v) for v in c8[0, 0]]))
    cases.append(("png_rgb_trns.png", png_raw(c8, 8, 2, extra=trns), 0))

    # TIFF
    cases.append(save(coffee, "tiff_rgb.tif", format="TIFF", compression="tiff_lzw") + (0,))
    cases.append(save(camera, "tiff_grey.tif", format="TIFF") + (0,))
    buf = io.BytesIO()
    astro.save(buf, format="TIFF", save_all=True, append_images=[cat.resize(astro.size)],
               compression="tiff_lzw")
    cases.append(("tiff_multipage.tif", buf.getvalue(), 0))
    cases.append(save(coffee.convert("CMYK"), "tiff_cmyk.tif", format="TIFF",
                      compression="tiff_lzw") + (0,))
    cases.append(save(Image.fromarray((np.array(camera).astype(np.uint16) * 3)), "tiff_grey16.tif",
                      format="TIFF", compression="tiff_lzw") + (0,))

    # WebP
    cases.append(save(cat, "webp_lossless.webp", format="WEBP", lossless=True) + (0,))
    cases.append(save(rgba, "webp_lossless_alpha.webp", format="WEBP", lossless=True,
                      exact=True) + (0,))
    cases.append(save(coffee, "webp_lossy.webp", format="WEBP", quality=80) + (0,))
    cases.append(save(rgba, "webp_lossy_alpha.webp", format="WEBP", quality=80) + (0,))
    buf = io.BytesIO()
    cat.save(buf, format="WEBP", save_all=True, append_images=[coffee.resize(cat.size)],
             duration=100, quality=80)
    cases.append(("webp_animated.webp", buf.getvalue(), 0))

    # GIF
    gpal = astro.quantize(colors=32)
    cases.append(save(gpal, "gif_plain.gif", format="GIF") + (0,))
    cases.append(save(gpal, "gif_transparent.gif", format="GIF", transparency=3) + (0,))
    frames = [gpal, cat.resize(astro.size).quantize(colors=32)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    cases.append(("gif_animated.gif", buf.getvalue(), 0))
    small = astro.resize((24, 20)).quantize(colors=16)
    cases.append(("gif_canvas.gif", gif_reframe(save(small, "", format="GIF")[1], (32, 28),
                                                (5, 3)), 0))
    cases.append(("gif_canvas_transparent.gif",
                  gif_reframe(save(small, "", format="GIF", transparency=4)[1], (32, 28),
                              (2, 6)), 0))

    # BMP
    cases.append(save(cat, "bmp_rgb.bmp", format="BMP") + (0,))
    cases.append(save(pal, "bmp_palette.bmp", format="BMP") + (0,))
    cases.append(save(camera, "bmp_grey.bmp", format="BMP") + (0,))
    cases.append(save(rgba, "bmp_rgba.bmp", format="BMP") + (0,))
    cases.append(save(camera.convert("1"), "bmp_1bit.bmp", format="BMP") + (0,))

    with open(os.path.join(OUT, "decode.txt"), "w") as man:
        man.write("# file width height expected_rgb max_abs_diff "
                  "(expected = PIL.Image.open(file).convert('RGB'))\n")
        for fname, data, maxdiff in cases:
            with open(os.path.join(OUT, fname), "wb") as f:
                f.write(data)
            ref = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
            base = os.path.splitext(fname)[0]
            ref.tofile(os.path.join(OUT, base + ".rgb"))
            man.write(f"{fname} {ref.shape[1]} {ref.shape[0]} {base}.rgb {maxdiff}\n")

    # bad inputs
    bad = os.path.join(OUT, "bad")
    jpg = dict((c[0], c[1]) for c in cases)
    open(os.path.join(bad, "truncated.jpg"), "wb").write(
        jpg["jpeg_baseline.jpg"][:len(jpg["jpeg_baseline.jpg"]) * 7 // 10])
    open(os.path.join(bad, "truncated_progressive.jpg"), "wb").write(
        jpg["jpeg_progressive.jpg"][:len(jpg["jpeg_progressive.jpg"]) // 2])
    open(os.path.join(bad, "truncated.png"), "wb").write(jpg["png_rgb.png"][:1200])
    open(os.path.join(bad, "truncated.webp"), "wb").write(jpg["webp_lossless.webp"][:800])
    open(os.path.join(bad, "truncated.gif"), "wb").write(
        jpg["gif_plain.gif"][:len(jpg["gif_plain.gif"]) * 7 // 10])
    b = bytearray(jpg["png_rgb.png"])
    b[-20] ^= 0xFF                                     # last IDAT byte: CRC mismatch
    open(os.path.join(bad, "bad_crc.png"), "wb").write(bytes(b))
    open(os.path.join(bad, "empty.png"), "wb").close()
    open(os.path.join(bad, "not_image.png"), "w").write("this is not an image\n1,2,3\n")
    bomb = png_raw(np.zeros((1, 8, 3), np.int64), 8, 2, w=100000, h=100000)
    open(os.path.join(bad, "bomb.png"), "wb").write(bomb)
    for f in ["bad_crc.png", "truncated.jpg", "truncated_progressive.jpg", "truncated.png", "truncated.webp",
              "truncated.gif", "not_image.png", "empty.png"]:
        try:
            Image.open(os.path.join(bad, f)).convert("RGB")
            print("note: PIL decodes bad/" + f)
        except Exception as e:  # what the official pipeline would do
            print("PIL refuses bad/%s: %s" % (f, e))

    # resize references: the official transform, torchvision antialiased bilinear
    import torch
    import torch.nn.functional as F
    from torchvision.transforms import Normalize, ToTensor
    norm = Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with open(os.path.join(OUT, "resize.txt"), "w") as man:
        man.write("# input width height S output  (output = Normalize(F.interpolate("
                  "ToTensor(input), (S,S), bilinear, antialias=True)))\n")
        for name, w, h, S in [("rs_up", 23, 17, 32), ("rs_down", 90, 70, 24),
                              ("rs_mixed", 19, 60, 32), ("rs_odd", 45, 45, 28)]:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            x = ToTensor()(img)[None]
            y = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False,
                              antialias=True)
            y = norm(y[0]).numpy().astype(np.float32)
            img.tofile(os.path.join(OUT, name + ".rgb"))
            y.tofile(os.path.join(OUT, name + ".f32"))
            man.write(f"{name}.rgb {w} {h} {S} {name}.f32\n")


if __name__ == "__main__":
    main()
