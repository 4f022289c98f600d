#!/usr/bin/python3
"""bench_amg_official.py: the official generator's post-processing time on
the same synthetic case as bench_amg (side by side).

Usage: bench_amg_official.py ORACLE.py SAM2_SRC OUT_DIR [--image W H] [--iou T] [--stab T]

Runs the shared oracle (sam2_oracle.py --synthetic --config tiny: S = 1024,
32x32 grid, points_per_batch 64) and times SAM2AutomaticMaskGenerator.generate.
The synthetic decoder's own work (drawing the logits) is timed apart and
subtracted: what remains is the official post-processing (upsampling,
stability, thresholds, boxes, RLE, NMS). Prints one line with the seconds
and the peak RSS of the process.
"""
import os
import resource
import sys
import time


def main():
    oracle, src, out = sys.argv[1:4]
    rest = sys.argv[4:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(oracle)))
    import sam2_oracle as so
    so.stub_modules()
    sys.path.insert(0, src)
    so.shim_torch()
    import sam2.automatic_mask_generator as amgmod

    t = {"gen": 0.0, "predict": 0.0, "post_in_predict": 0.0}
    gen = amgmod.SAM2AutomaticMaskGenerator.generate

    def timed_generate(self, image):
        tf = self.predictor._transforms
        pm = tf.postprocess_masks

        def timed_pm(*a, **k):
            t0 = time.perf_counter()
            r = pm(*a, **k)
            t["post_in_predict"] += time.perf_counter() - t0
            return r
        tf.postprocess_masks = timed_pm
        inner = self.predictor._predict

        def timed_predict(*a, **k):
            t0 = time.perf_counter()
            r = inner(*a, **k)
            t["predict"] += time.perf_counter() - t0
            return r
        self.predictor._predict = timed_predict
        t0 = time.perf_counter()
        r = gen(self, image)
        t["gen"] += time.perf_counter() - t0
        return r
    amgmod.SAM2AutomaticMaskGenerator.generate = timed_generate

    sys.argv = [oracle, src, out, "--config", "tiny", "--no-pt", "--synthetic", "--pps", "32",
                "--ppb", "64"] + rest
    so.main()
    syn = t["predict"] - t["post_in_predict"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print("official generate %.2f s, synthetic decoder %.2f s, post-processing %.2f s, "
          "peak RSS %.0f MB" % (t["gen"], syn, t["gen"] - syn, rss))


if __name__ == "__main__":
    main()
