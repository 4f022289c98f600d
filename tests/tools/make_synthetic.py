#!/usr/bin/python3
"""Make a synthetic AMG fixture with the shared oracle, with the AMG
parameters the oracle has no flag for.

Usage: make_synthetic.py ORACLE.py SAM2_SRC OUT [--downscale N] [--offset X]
         [--mask-threshold X] [--no-multimask] [--overlap X] -- ORACLE_ARGS...
       make_synthetic.py --strip DIR...   (keep only syn_* in DIR/expected.safetensors)

It runs ORACLE.py (sam2_oracle.py) in this process after two patches:
- SAM2AutomaticMaskGenerator gets the extra keyword arguments;
- the oracle's synthetic decoder honours multimask_output=False (m2m
  refinement, --no-multimask) by returning its first recorded channel, and
  the full-resolution logits of such a call are recomputed from that one
  channel, as the official predictor does for a (B,1,h,w) decoder output.
The extra parameters are added to meta.json's "amg" object. Only
amg.json, expected.safetensors (its syn_* tensors), image.png and
meta.json are kept.
"""
import json
import os
import runpy
import sys


def strip_expected(path):
    """Keep only the syn_* tensors (what the replay reads)."""
    import struct
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    keep, blobs, off = {}, [], 0
    for k in sorted(header):
        if not k.startswith("syn_"):
            continue
        a, b = header[k]["data_offsets"]
        keep[k] = dict(header[k], data_offsets=[off, off + b - a])
        blobs.append(body[a:b])
        off += b - a
    h = json.dumps(keep, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["--strip"]:  # re-strip existing fixtures
        for d in argv[1:]:
            strip_expected(os.path.join(d, "expected.safetensors"))
        return
    sep = argv.index("--")
    mine, rest = argv[:sep], argv[sep + 1:]
    oracle, src, out = mine[0], mine[1], mine[2]
    extra = {}
    i = 3
    while i < len(mine):
        a = mine[i]
        if a == "--downscale":
            extra["crop_n_points_downscale_factor"] = int(mine[i + 1]); i += 2
        elif a == "--offset":
            extra["stability_score_offset"] = float(mine[i + 1]); i += 2
        elif a == "--mask-threshold":
            extra["mask_threshold"] = float(mine[i + 1]); i += 2
        elif a == "--overlap":
            extra["crop_overlap_ratio"] = float(mine[i + 1]); i += 2
        elif a == "--no-multimask":
            extra["multimask_output"] = False; i += 1
        else:
            sys.exit("unknown option " + a)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from oracle_import import load_oracle
    so = load_oracle(oracle, src, extra)

    install = so.install_synthetic

    def patched_install(pred, S, seed, calls):
        install(pred, S, seed, calls)
        inner = pred._predict

        def predict(point_coords, point_labels, boxes=None, mask_input=None,
                    multimask_output=True, return_logits=False, img_idx=-1):
            masks, ious, low = inner(point_coords, point_labels, boxes, mask_input,
                                     True, return_logits, img_idx)
            if multimask_output:
                return masks, ious, low
            low1 = low[:, 0:1].contiguous()
            masks = pred._transforms.postprocess_masks(low1, pred._orig_hw[img_idx])
            if not return_logits:
                masks = masks > pred.mask_threshold
            return masks, ious[:, 0:1], low1
        pred._predict = predict
    so.install_synthetic = patched_install

    sys.argv = [oracle, src, out, "--no-pt", "--synthetic"] + rest
    so.main()
    meta_path = os.path.join(out, "meta.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["amg"].update(extra)
    meta["made_by"] = "tests/tools/make_synthetic.py " + " ".join(mine[3:] + ["--"] + rest)
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    strip_expected(os.path.join(out, "expected.safetensors"))
    for name in ("weights.safetensors", "weights.pt"):
        p = os.path.join(out, name)
        if os.path.exists(p):
            os.remove(p)


if __name__ == "__main__":
    main()
