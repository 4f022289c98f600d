#!/usr/bin/python3
"""Make a model-based (not synthetic) end-to-end AMG fixture with the shared
oracle, reusing the weights of an existing fixture instead of storing them
again.

Usage: make_e2e.py ORACLE.py SAM2_SRC OUT --weights FIXTURE_WEIGHTS
         [--mask-threshold X] [--crop-nms X] -- ORACLE_ARGS...

ORACLE_ARGS go to sam2_oracle.py (--config, --seed, --image, --pps, --m2m,
--min-area, ...). The oracle's seeded weights must be byte-identical to
FIXTURE_WEIGHTS (a weights.safetensors already in tests/fixtures, e.g.
micro/ for --config micro --seed 0): the script checks that and exits 1
otherwise. Kept in OUT: image.png, amg.json and meta.json, whose "weights"
names FIXTURE_WEIGHTS relative to tests/fixtures and whose "made_by" holds
this command; weights.* and expected.safetensors are removed (the test
compares amg.json only). --mask-threshold / --crop-nms set the
SAM2AutomaticMaskGenerator arguments the oracle has no flag for.
"""
import filecmp
import json
import os
import sys


def main():
    argv = sys.argv[1:]
    sep = argv.index("--")
    mine, rest = argv[:sep], argv[sep + 1:]
    oracle, src, out = mine[0], mine[1], mine[2]
    extra, weights = {}, None
    i = 3
    while i < len(mine):
        a = mine[i]
        if a == "--weights":
            weights = mine[i + 1]; i += 2
        elif a == "--mask-threshold":
            extra["mask_threshold"] = float(mine[i + 1]); i += 2
        elif a == "--crop-nms":
            extra["crop_nms_thresh"] = float(mine[i + 1]); i += 2
        else:
            sys.exit("unknown option " + a)
    if not weights:
        sys.exit("--weights FIXTURE/weights.safetensors is required")

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from oracle_import import load_oracle
    so = load_oracle(oracle, src, extra)

    sys.argv = [oracle, src, out, "--no-pt"] + rest
    so.main()
    made = os.path.join(out, "weights.safetensors")
    if not filecmp.cmp(made, weights, shallow=False):
        sys.exit("the oracle's weights differ from " + weights)
    meta_path = os.path.join(out, "meta.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["amg"].update(extra)
    fixtures = os.path.dirname(os.path.dirname(os.path.abspath(weights)))
    meta["weights"] = os.path.relpath(os.path.abspath(weights), fixtures)
    meta["made_by"] = "tests/tools/make_e2e.py " + " ".join(mine[3:] + ["--"] + rest)
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    for name in ("weights.safetensors", "weights.pt", "expected.safetensors"):
        p = os.path.join(out, name)
        if os.path.exists(p):
            os.remove(p)


if __name__ == "__main__":
    main()
