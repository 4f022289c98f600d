#!/usr/bin/python3
"""bench_e2e_official.py: the official SAM2AutomaticMaskGenerator end to end
(image encoder, prompt encoder, mask decoder, post-processing) with seeded
random weights of a real model shape, timed, for bench_e2e.sh to put side
by side with sam2amg's `generate` on the same weights and image.

Usage: bench_e2e_official.py ORACLE.py SAM2_SRC OUT_DIR [--config tiny]
       [--seed N] [--image W H] [--pps N] [--ppb N] [--threads N]

Writes OUT_DIR/weights.safetensors (the model's state dict, official names)
and OUT_DIR/image.png, then times one generate() call on the image (not the
model build, not torch's import) with pred_iou_thresh and
stability_score_thresh 0 and the other parameters at their defaults.
Prints one line: "official generate S s, cpu C s, N masks, peak RSS M MB"
(wall seconds, user + system CPU seconds of the call).
The BLAS kernel is whatever OPENBLAS_CORETYPE the caller set.
"""
import argparse
import os
import resource
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("oracle")
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image", type=int, nargs=2, default=[1024, 768])
    ap.add_argument("--pps", type=int, default=16)
    ap.add_argument("--ppb", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.abspath(a.oracle)))
    import sam2_oracle as so
    so.stub_modules()
    sys.path.insert(0, a.src)
    so.shim_torch()
    so.patch_connected_components()
    import numpy as np
    import torch
    import torchvision.transforms as T
    from PIL import Image
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.utils import transforms as sam_tf
    torch.set_num_threads(a.threads)

    model = so.build(so.CONFIGS[a.config])
    so.randomize(model, a.seed)
    os.makedirs(a.out, exist_ok=True)
    sd = {k: v.contiguous().numpy() for k, v in model.state_dict().items()}
    so.write_safetensors(os.path.join(a.out, "weights.safetensors"), sd)
    img = so.synth_image(a.image[0], a.image[1], a.seed + 1)
    Image.fromarray(img).save(os.path.join(a.out, "image.png"))

    class Tf(sam_tf.SAM2Transforms):
        # torchvision 0.14 must be told to antialias as SAM 2's >= 0.17 does
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.transforms = torch.nn.Sequential(
                T.Resize((self.resolution, self.resolution), antialias=True),
                T.Normalize(self.mean, self.std))

    S = model.image_size
    amg = SAM2AutomaticMaskGenerator(model, points_per_side=a.pps, points_per_batch=a.ppb,
                                     pred_iou_thresh=0.0, stability_score_thresh=0.0)
    amg.predictor._transforms = Tf(resolution=S, mask_threshold=0.0)
    amg.predictor._bb_feat_sizes = [(S // 4, S // 4), (S // 8, S // 8), (S // 16, S // 16)]
    with torch.no_grad():
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        recs = amg.generate(np.asarray(img))
        dt = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print("official generate %.2f s, cpu %.2f s, %d masks, peak RSS %.0f MB" %
          (dt, cpu, len(recs), r1.ru_maxrss * 1.024 / 1e3))


if __name__ == "__main__":
    main()
