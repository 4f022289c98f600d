#!/usr/bin/python3
"""make_predict_fixture.py: reference outputs of the official
SAM2ImagePredictor.predict for box / point prompt mixtures on the micro
fixture, for tests/test_decoder.c and tests/test_predict.sh.

Usage: /usr/bin/python3 tests/make_predict_fixture.py SAM2_SRC ORACLE_PY [OUT_DIR]

SAM2_SRC is the folder holding the official `sam2` package; ORACLE_PY is
sam2_oracle.py (its model builder and seeded randomizer are imported, so the
model is exactly the one that made tests/fixtures/micro: this script checks
that every tensor equals tests/fixtures/micro/weights.safetensors and that
the image features equal micro/expected.safetensors before it records
anything). Writes OUT_DIR/expected.safetensors (default
tests/fixtures/predict-micro/) with, per case N:
  caseN.coords    [n_pts,2] F32  prompt points in model coordinates, box
                                 corners first (what the decoder receives)
  caseN.labels    [n_pts]   F32  labels (2/3 box corners, 1 fg, 0 bg)
  caseN.multimask [1]       F32  1 or 0
  caseN.point_px  [m,2]     F32  the user's points in image pixels (m may be 0)
  caseN.point_lab [m]       F32  their labels
  caseN.box_px    [4]       F32  x0,y0,x1,y1 in pixels, or all -1 (no box)
  caseN.low_res   [k,64,64] F32  low-res logits as predict returns them
                                 (clamped to +-32)
  caseN.scores    [k]       F32  predicted IoU
  caseN.best      [1]       F32  index of the mask the CLI writes (argmax
                                 score with multimask, else 0)
  caseN.mask      [h,w]     U8   that mask, full resolution, logits > 0
  caseN.logits    [h,w]     F16  its full-resolution logits (for margins)
  caseN.stable    [1]       F32  single-mask cases: 1 if token 0 was kept,
                                 0 if the stability fallback replaced it
"""
import importlib.util
import json
import os
import struct
import sys

import numpy as np

CASES = [
    # (points px, labels, box px or None, multimask)
    ([], [], [40, 30, 200, 180], False),
    ([[120, 100]], [1], [40, 30, 200, 180], False),
    ([[120, 100], [60, 50]], [1, 0], [40, 30, 200, 180], True),
    ([[200, 120], [100, 60]], [1, 0], None, True),
    ([[200, 120], [100, 60]], [1, 0], None, False),
    ([[250.5, 33.25]], [1], None, False),
    ([[30, 200], [160, 120], [290, 20]], [1, 1, 1], None, True),
    ([[160, 120]], [0], None, True),
    ([[10, 10]], [1], None, False),
    ([[300, 220], [12, 40]], [1, 0], [150, 100, 319, 239], False),
]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        dt = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64,
              "U8": np.uint8, "I8": np.int8}[v["dtype"]]
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dt).reshape(v["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    names = {np.dtype("float32"): "F32", np.dtype("float16"): "F16",
             np.dtype("uint8"): "U8", np.dtype("int32"): "I32"}
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        b = a.tobytes()
        header[k] = {"dtype": names[a.dtype], "shape": list(a.shape),
                     "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    src, oracle_py = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[3] if len(sys.argv) > 3 else os.path.join(here, "fixtures", "predict-micro")
    spec = importlib.util.spec_from_file_location("sam2_oracle", oracle_py)
    orc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(orc)
    orc.stub_modules()
    sys.path.insert(0, src)
    orc.shim_torch()
    import torch
    import torchvision.transforms as T
    from PIL import Image
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    from sam2.utils import transforms as sam_tf

    micro = os.path.join(here, "fixtures", "micro")
    model = orc.build(orc.CONFIGS["micro"])
    orc.randomize(model, 0)
    ref = read_safetensors(os.path.join(micro, "weights.safetensors"))
    sd = model.state_dict()
    assert set(sd) == set(ref), "state_dict keys differ from micro/weights.safetensors"
    worst = max(float(np.abs(sd[k].numpy() - ref[k]).max()) for k in sd if sd[k].numel())
    assert worst == 0.0, "seed 0 does not reproduce micro/weights.safetensors (%g)" % worst
    print("weights: seed 0 reproduces micro/weights.safetensors exactly")

    # torchvision 0.14 must be told to antialias, as the oracle does
    class Tf(sam_tf.SAM2Transforms):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.transforms = torch.nn.Sequential(
                T.Resize((self.resolution, self.resolution), antialias=True),
                T.Normalize(self.mean, self.std))

    S = model.image_size
    img = np.array(Image.open(os.path.join(micro, "image.png")).convert("RGB"))
    h, w = img.shape[:2]
    pred = SAM2ImagePredictor(model)
    pred._transforms = Tf(resolution=S, mask_threshold=0.0)
    pred._bb_feat_sizes = [(S // 4, S // 4), (S // 8, S // 8), (S // 16, S // 16)]

    # record whether the single-mask stability fallback fired
    dec = model.sam_mask_decoder
    orig = dec._dynamic_multimask_via_stability
    fired = []

    def spy(all_logits, all_iou):
        st = dec._get_stability_scores(all_logits[:, 0:1])
        fired.append((st >= dec.dynamic_multimask_stability_thresh).float().numpy().ravel())
        return orig(all_logits, all_iou)

    dec._dynamic_multimask_via_stability = spy

    exp = read_safetensors(os.path.join(micro, "expected.safetensors"))
    out = {}
    with torch.no_grad():
        pred.set_image(img)
        # equal up to float rounding (thread count and BLAS order differ)
        d = float(np.abs(pred._features["image_embed"].numpy() - exp["image_embed"]).max())
        assert d <= 1e-4 * float(np.abs(exp["image_embed"]).max()), \
            "features differ from micro/expected.safetensors (%g)" % d
        print("features: max diff %.3g from micro/expected.safetensors" % d)
        for i, (pts, labs, box, mm) in enumerate(CASES):
            pc = np.array(pts, np.float32).reshape(-1, 2) if pts else None
            pl = np.array(labs, np.int32) if pts else None
            bx = np.array(box, np.float32) if box is not None else None
            _, ucoords, ulabels, ubox = pred._prep_prompts(pc, pl, bx, None, True)
            cs, ls = [], []
            if ubox is not None:
                cs.append(ubox.reshape(-1, 2).numpy())
                ls.append(np.array([2, 3], np.float32))
            if ucoords is not None:
                cs.append(ucoords.reshape(-1, 2).numpy())
                ls.append(ulabels.reshape(-1).numpy().astype(np.float32))
            fired.clear()
            masks, scores, low = pred.predict(point_coords=pc, point_labels=pl, box=bx,
                                              multimask_output=mm, return_logits=True)
            best = int(np.argmax(scores)) if mm else 0
            p = "case%d." % i
            out[p + "coords"] = np.concatenate(cs).astype(np.float32)
            out[p + "labels"] = np.concatenate(ls).astype(np.float32)
            out[p + "multimask"] = np.array([1.0 if mm else 0.0], np.float32)
            out[p + "point_px"] = (pc if pc is not None else np.zeros((0, 2), np.float32))
            out[p + "point_lab"] = (pl.astype(np.float32) if pl is not None
                                    else np.zeros((0,), np.float32))
            out[p + "box_px"] = bx if bx is not None else np.full(4, -1, np.float32)
            out[p + "low_res"] = low.astype(np.float32)
            out[p + "scores"] = scores.astype(np.float32)
            out[p + "best"] = np.array([best], np.float32)
            out[p + "mask"] = (masks[best] > 0).astype(np.uint8)
            out[p + "logits"] = masks[best].astype(np.float16)
            if not mm:
                out[p + "stable"] = np.array([fired[0][0]], np.float32)
            print("case %d: %d pts, box %s, multimask %d, scores %s%s" % (
                i, len(out[p + "labels"]), box is not None, mm, np.round(scores, 4),
                "" if mm else ", token 0 %s" % ("kept" if fired[0][0] else "replaced")))
        # the micro m2m pass, for the record: how many fell back
        pts = exp["grid_points"]
        ip = pred._transforms.transform_coords(torch.as_tensor(pts), normalize=True,
                                               orig_hw=(h, w))
        fired.clear()
        pred._predict(ip[:, None, :], torch.ones(len(pts), 1, dtype=torch.int),
                      mask_input=torch.as_tensor(exp["low_res_masks"][:, 0:1]),
                      multimask_output=False, return_logits=True)
        print("micro m2m: token 0 replaced by the fallback in %d of %d prompts"
              % (int((fired[0] == 0).sum()), len(fired[0])))
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "expected.safetensors"), out)
    with open(os.path.join(out_dir, "README"), "w") as f:
        f.write("Made by tests/make_predict_fixture.py from the micro fixture (model seed 0,\n"
                "micro/image.png): official SAM2ImagePredictor.predict outputs for %d prompt\n"
                "sets (boxes, negative points, several points, multimask on/off).\n" % len(CASES))
    print("wrote", out_dir)


if __name__ == "__main__":
    main()
