#!/usr/bin/env python3
"""official_bench.py: the official SAM2AutomaticMaskGenerator timed on the
same device as ours, for the side-by-side table of issue 16.

The model is built by the oracle (tests' sam2_oracle.py: the official
classes, the real `tiny` and `large` shapes, seeded random weights) from the
official source, both carried in the GPU bundle (gpu-bundle/official/, see
tests/gpu/make_bundle.sh); nothing of either is copied here. What differs
from the oracle, which was written for Debian's torch 1.13 on the CPU: the
model goes to the device, the generator may run under
torch.autocast(bfloat16), scipy's connected components are not patched in
(min_mask_region_area is 0, so the official code never asks for them), and
each generate() is timed by stage.

Per run (config x precision x thresholds x image): one generate() on the
image after an untimed warm-up on the same model and precision, with
points_per_side 32 (--points-per-side), the official points_per_batch 64,
thresholds either 0 (every mask goes through the post-processing) or the
official defaults (0.8 / 0.95), output_mode "uncompressed_rle" (what ours
writes, before the string encoding; the official default "binary_mask"
would add a full-size decode per record). Stages: encoder = set_image,
decoder = the predictor's _predict (it includes the official upsampling of
every mask to full resolution), post = the rest of generate(). The device
is synchronized around each stage, so the sum is the wall time.

Output: one line per run, "official_CONFIG_PREC_WxH_THR: PASS|FAIL|SKIP
figures" (images_per_s, wall_s, enc_ms, dec_ms, post_ms, peak_mib, prompts,
records), then "official: PASS|FAIL runs=N failed=F skipped=S secs=T".
A run past --budget seconds is a SKIP (reported, not run). Exit 0 when no
run failed; 1 otherwise; 2 when torch or the official source cannot be
imported (in --cpu mode a missing torch is the single line "official: SKIP
...", exit 0: Debian's python3-torch provides it).

usage: official_bench.py [--cpu] [--src DIR] [--oracle FILE]
                         [--configs large,tiny] [--sizes 1024x768,2250x1500]
                         [--precisions bf16,fp32] [--thresholds zero,default]
                         [--points-per-side N] [--budget SECONDS]
                         [--save-images DIR [--images-only]]
                         [--save-weights DIR] [--save-records DIR]
--cpu: on the CPU, without the warm-up (a smoke test of the script, e.g.
--configs micro --precisions fp32 --points-per-side 4 --sizes 320x240:
Debian's torch 1.13 cannot run this model under CPU autocast(bfloat16)).
"""
import argparse
import importlib.util
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def first_existing(paths):
    for p in paths:
        if p and os.path.exists(p):
            return p
    return None


def load_oracle(path):
    spec = importlib.util.spec_from_file_location("sam2_oracle", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_ppm(path, img):
    h, w = img.shape[:2]
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(img.tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--src", default=None, help="folder holding the official `sam2` package")
    ap.add_argument("--oracle", default=None, help="sam2_oracle.py")
    ap.add_argument("--configs", default="large,tiny")
    ap.add_argument("--sizes", default="1024x768,2250x1500")
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--thresholds", default="zero,default")
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--points-per-batch", type=int, default=64)
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-images", default=None)
    ap.add_argument("--images-only", action="store_true",
                    help="write the images (--save-images DIR) and stop: ours is timed on them")
    ap.add_argument("--save-weights", default=None,
                    help="DIR: each config's random weights as DIR/CONFIG.pt ({'model': "
                    "state_dict}, as the official checkpoints), for ours to load")
    ap.add_argument("--weights-only", action="store_true",
                    help="with --save-weights: build, randomize and save each config's "
                    "weights, then stop")
    ap.add_argument("--loop", default=None,
                    help="MANIFEST: the official generator in a Python loop over its image "
                    "paths (PIL decode, generate, one JSON per image into --loop-out), as a "
                    "user's script would; the first config and precision only")
    ap.add_argument("--loop-out", default=None, help="DIR for --loop's JSON files")
    ap.add_argument("--save-records", default=None,
                    help="DIR: each run's records as DIR/ROW.json (the fixtures' amg.json "
                    "layout), for tests/test_amg --compare against ours")
    args = ap.parse_args()
    if args.images_only and not args.save_images:
        ap.error("--images-only writes the images to --save-images DIR: give it")
    sizes = []
    for s in args.sizes.split(","):
        wh = s.split("x")
        if s and (len(wh) != 2 or not all(v.isdigit() and int(v) > 0 for v in wh)):
            sizes = []
            break
        if s:
            sizes.append((int(wh[0]), int(wh[1])))
    if not sizes:
        ap.error("--sizes %r: WIDTHxHEIGHT[,WIDTHxHEIGHT...] (e.g. 1024x768)" % args.sizes)
    # a precision other than these ran in float32 under its own name (fp16:
    # fp32 timings labelled fp16); a threshold name was a KeyError per run
    for flag, val, known in (("--precisions", args.precisions, ("bf16", "fp32")),
                             ("--thresholds", args.thresholds, ("zero", "default"))):
        names = [v for v in val.split(",") if v]
        if not names or any(v not in known for v in names):
            ap.error("%s %r: a comma-separated list of %s" % (flag, val, ", ".join(known)))
    t_start = time.time()

    bundle = os.path.join(REPO, "gpu-bundle", "official")
    src = args.src or first_existing([bundle if os.path.isdir(os.path.join(bundle, "sam2")) else None,
                                      os.path.join(REPO, "..", "sam2-src"), "/work/sam2-src"])
    oracle_path = args.oracle or first_existing([os.path.join(bundle, "sam2_oracle.py"),
                                                 os.path.join(REPO, "..", "shared", "tools",
                                                              "sam2_oracle.py"),
                                                 "/work/shared/tools/sam2_oracle.py"])
    try:
        import numpy as np
        import torch
    except ImportError as e:
        if args.cpu:
            print("official: SKIP torch is not importable by %s (%s)" % (sys.executable, e))
            return 0
        print("official: FAIL torch is not importable by %s (%s)" % (sys.executable, e))
        return 2
    if not src or not os.path.isdir(os.path.join(src, "sam2")) or not oracle_path:
        print("official: FAIL official source (%s) or oracle (%s) not found; run make gpu-bundle"
              % (src, oracle_path))
        return 2

    oracle = load_oracle(oracle_path)
    oracle.stub_modules()
    sys.path.insert(0, src)
    oracle.shim_torch()
    import torchvision.transforms as T
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.utils import transforms as sam_tf

    dev = torch.device("cpu" if args.cpu else "cuda")
    if not args.cpu and not torch.cuda.is_available():
        print("official: FAIL torch %s sees no CUDA device" % torch.__version__)
        return 2
    if args.cpu:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    else:
        # true float32 in the fp32 rows, as ours (PyTorch's default for
        # matmul; cuDNN convolutions would otherwise use TF32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    name = "cpu" if args.cpu else torch.cuda.get_device_name(0)
    print("# official_bench: torch %s on %s (%s), source %s, oracle %s"
          % (torch.__version__, dev, name, src, oracle_path))

    # torchvision < 0.17 must be told to antialias tensor resizes, as the
    # official code expects (the oracle's fix; a no-op on newer versions)
    class Tf(sam_tf.SAM2Transforms):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.transforms = torch.nn.Sequential(
                T.Resize((self.resolution, self.resolution), antialias=True),
                T.Normalize(self.mean, self.std))

    images = {wh: oracle.synth_image(wh[0], wh[1], args.seed + 1) for wh in sizes}
    if args.save_images:
        os.makedirs(args.save_images, exist_ok=True)
        from PIL import Image
        for (w, h), img in images.items():
            base = os.path.join(args.save_images, "official_%dx%d" % (w, h))
            write_ppm(base + ".ppm", img)
            # the same pixels as JPEG (quality 95), as a user's photos come:
            # the end-to-end `run` decodes these where libvips is there
            Image.fromarray(img).save(base + ".jpg", quality=95)
    if args.images_only:
        print("# images written to %s" % args.save_images)
        return 0 if args.save_images else 2
    thr = {"zero": (0.0, 0.0), "default": (0.8, 0.95)}

    if args.weights_only:
        if not args.save_weights:
            print("official: FAIL --weights-only needs --save-weights DIR")
            return 2
        os.makedirs(args.save_weights, exist_ok=True)
        for cfg_name in [c for c in args.configs.split(",") if c]:
            t0 = time.time()
            model = oracle.build(oracle.CONFIGS[cfg_name])
            oracle.randomize(model, args.seed)
            torch.save({"model": model.state_dict()},
                       os.path.join(args.save_weights, cfg_name + ".pt"))
            print("# %s: weights saved in %.1f s" % (cfg_name, time.time() - t0))
            del model
        print("official: PASS weights saved to %s" % args.save_weights)
        return 0

    def make_amg(model, **kw):
        """the official generator with the oracle's transforms and feature
        sizes (the latter matter for models other than 1024 px)"""
        amg = SAM2AutomaticMaskGenerator(model, output_mode="uncompressed_rle", **kw)
        S = model.image_size
        amg.predictor._transforms = Tf(resolution=S, mask_threshold=0.0)
        amg.predictor._bb_feat_sizes = [(S // 4, S // 4), (S // 8, S // 8), (S // 16, S // 16)]
        return amg

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    if args.loop:
        return loop_run(args, oracle, make_amg, dev, name, sync, t_start)

    runs = failed = skipped = 0
    for cfg_name in [c for c in args.configs.split(",") if c]:
        model = None
        for prec in [p for p in args.precisions.split(",") if p]:
            warm = False
            for thr_name in [t for t in args.thresholds.split(",") if t]:
                for (w, h) in sizes:
                    row = "official_%s_%s_%dx%d_%s" % (cfg_name, prec, w, h, thr_name)
                    if time.time() - t_start > args.budget:
                        print("%s: SKIP budget of %.0f s used up" % (row, args.budget))
                        skipped += 1
                        continue
                    try:
                        if model is None:
                            t0 = time.time()
                            model = oracle.build(oracle.CONFIGS[cfg_name])
                            oracle.randomize(model, args.seed)
                            if args.save_weights:
                                os.makedirs(args.save_weights, exist_ok=True)
                                torch.save({"model": model.state_dict()},
                                           os.path.join(args.save_weights, cfg_name + ".pt"))
                            model = model.to(dev).eval()
                            print("# %s: built and randomized in %.1f s" % (cfg_name, time.time() - t0))
                        iou_t, stab_t = thr[thr_name]
                        amg = make_amg(model, points_per_side=args.points_per_side,
                                       points_per_batch=args.points_per_batch,
                                       pred_iou_thresh=iou_t, stability_score_thresh=stab_t)
                        pred = amg.predictor
                        st = {"enc": 0.0, "dec": 0.0}
                        orig_set, orig_pred = pred.set_image, pred._predict

                        def timed(fn, key):
                            def f(*a, **k):
                                sync()
                                t = time.perf_counter()
                                r = fn(*a, **k)
                                sync()
                                st[key] += time.perf_counter() - t
                                return r
                            return f

                        pred.set_image = timed(orig_set, "enc")
                        pred._predict = timed(orig_pred, "dec")
                        ac = torch.autocast(device_type=dev.type, dtype=torch.bfloat16,
                                            enabled=(prec == "bf16"))
                        if not warm and dev.type == "cuda":  # kernels, cuBLAS, autotuning: untimed
                            with ac:
                                make_amg(model, points_per_side=4,
                                         points_per_batch=16).generate(images[(w, h)])
                            warm = True
                        st["enc"] = st["dec"] = 0.0
                        if dev.type == "cuda":
                            torch.cuda.reset_peak_memory_stats()
                        sync()
                        t = time.perf_counter()
                        with ac:
                            recs = amg.generate(images[(w, h)])
                        sync()
                        wall = time.perf_counter() - t
                        peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0
                        post = wall - st["enc"] - st["dec"]
                        print("%s: PASS images_per_s=%.3f wall_s=%.3f enc_ms=%.1f dec_ms=%.1f "
                              "post_ms=%.1f peak_mib=%.0f prompts=%d records=%d device=%s"
                              % (row, 1.0 / wall, wall, 1e3 * st["enc"], 1e3 * st["dec"],
                                 1e3 * post, peak, args.points_per_side ** 2, len(recs),
                                 name.replace(" ", "_")))
                        runs += 1
                        if args.save_records:
                            os.makedirs(args.save_records, exist_ok=True)
                            for r in recs:
                                seg = r["segmentation"]
                                r["segmentation"] = {"size": seg["size"],
                                                     "counts": oracle.rle_string(seg["counts"])}
                            with open(os.path.join(args.save_records, row + ".json"), "w") as f:
                                json.dump({"image": {"width": w, "height": h,
                                                     "file_name": "official_%dx%d.ppm" % (w, h)},
                                           "annotations": recs}, f, default=float)
                    except Exception as e:  # one failed run (out of memory, ...) is its row
                        msg = ("%s: %s" % (type(e).__name__, e)).splitlines()[0][:200]
                        print("%s: FAIL %s" % (row, msg))
                        failed += 1
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
                    sys.stdout.flush()
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    st = "PASS" if failed == 0 and runs > 0 else "FAIL"
    print("official: %s runs=%d failed=%d skipped=%d secs=%.0f"
          % (st, runs, failed, skipped, time.time() - t_start))
    return 0 if st == "PASS" else 1


def loop_run(args, oracle, make_amg, dev, name, sync, t_start):
    """--loop: the official generator over a manifest's images in a plain
    Python loop, as a user's script runs it: PIL decode to RGB, generate
    (official defaults but points_per_side), records with COCO RLE strings
    into one JSON per image. One row "official_loop_CONFIG_PREC: PASS
    images=N of T masks=M wall_s=W images_per_s=R masks_per_s=Q
    gpu_mem_peak_MiB=P" (the model's build and one warm-up image are not
    timed; P is torch's peak allocation after the warm-up); a loop that
    --budget stopped reports the images it did."""
    import numpy as np
    import torch
    from PIL import Image
    cfg_name = [c for c in args.configs.split(",") if c][0]
    prec = [p for p in args.precisions.split(",") if p][0]
    row = "official_loop_%s_%s" % (cfg_name, prec)
    try:
        paths = [ln.strip() for ln in open(args.loop) if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        print("%s: FAIL %s" % (row, e))
        return 1
    if not paths:
        print("%s: FAIL %s lists no image" % (row, args.loop))
        return 1
    if args.loop_out:
        os.makedirs(args.loop_out, exist_ok=True)
    model = oracle.build(oracle.CONFIGS[cfg_name])
    oracle.randomize(model, args.seed)
    model = model.to(dev).eval()
    amg = make_amg(model, points_per_side=args.points_per_side,
                   points_per_batch=args.points_per_batch)
    ac = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=(prec == "bf16"))

    def one(path):
        img = np.array(Image.open(path).convert("RGB"))
        with ac:
            recs = amg.generate(img)
        for r in recs:
            seg = r["segmentation"]
            r["segmentation"] = {"size": seg["size"], "counts": oracle.rle_string(seg["counts"])}
        if args.loop_out:
            base = os.path.splitext(os.path.basename(path))[0]
            with open(os.path.join(args.loop_out, base + ".json"), "w") as f:
                json.dump({"image": {"width": int(img.shape[1]), "height": int(img.shape[0]),
                                     "file_name": os.path.basename(path)},
                           "annotations": recs}, f, default=float)
        return len(recs)

    one(paths[0])   # warm-up: kernels, cuBLAS, autotuning
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    masks = done = 0
    for p in paths:
        if time.time() - t_start > args.budget:
            break
        masks += one(p)
        done += 1
    sync()
    wall = time.perf_counter() - t
    # a loop the budget stopped is still a measurement (images/s over the
    # images it did); none done is a failure
    st = "PASS" if done > 0 else "FAIL"
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0.0
    print("%s: %s images=%d of %d masks=%d wall_s=%.2f images_per_s=%.3f masks_per_s=%.1f "
          "gpu_mem_peak_MiB=%.0f device=%s%s"
          % (row, st, done, len(paths), masks, wall, done / wall if wall > 0 else 0.0,
             masks / wall if wall > 0 else 0.0, peak, name.replace(" ", "_"),
             "" if done == len(paths) else " (budget used up: the first %d images)" % done))
    print("official: %s runs=1 secs=%.0f" % (st, time.time() - t_start))
    return 0 if st == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
