#!/usr/bin/python3
"""torch_model.py: the official PyTorch SAM 2.1 image model timed the way
bench_model.c times ours: the image encoder (forward_image: Hiera, FPN
neck, conv_s0/s1, plus no_mem_embed) on one SxS input, and the prompt
encoder + mask decoder on one batch of B single-point prompts with
multimask output (what the automatic mask generator does per batch).

The model comes from sam2_oracle.py's build() (the official classes,
imported) with seeded random weights. Prints one JSON line:
{"config", "threads", "encoder_s", "decoder_s", "batch"} (best of --iters).
Exits 3 when torch, the oracle or the sam2 source are missing.

Run with /usr/bin/python3 (Debian's torch). Paths: --oracle (default
$SAM2AMG_ORACLE or /work/shared/tools/sam2_oracle.py), --src (default
$SAM2_SRC or /work/sam2src).
"""
import argparse
import importlib.util
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--oracle", default=os.environ.get("SAM2AMG_ORACLE",
                                                       "/work/shared/tools/sam2_oracle.py"))
    ap.add_argument("--src", default=os.environ.get("SAM2_SRC", "/work/sam2src"))
    args = ap.parse_args()
    if not os.path.exists(args.oracle) or not os.path.isdir(os.path.join(args.src, "sam2")):
        print(json.dumps({"error": "oracle or sam2 source not found"}))
        sys.exit(3)
    try:
        import torch
    except ImportError:
        print(json.dumps({"error": "no torch"}))
        sys.exit(3)
    spec = importlib.util.spec_from_file_location("sam2_oracle", args.oracle)
    oracle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle)
    oracle.stub_modules()
    sys.path.insert(0, args.src)
    oracle.shim_torch()
    torch.set_num_threads(args.threads)

    cfg = oracle.CONFIGS[args.config]
    model = oracle.build(cfg)
    oracle.randomize(model, 0)
    S = cfg["image_size"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, S, S, generator=g)
    B = args.batch
    coords = torch.rand(B, 1, 2, generator=g) * S
    labels = torch.ones(B, 1, dtype=torch.int)

    def encode():
        out = model.forward_image(x)
        _, feats, _, sizes = model._prepare_backbone_features(out)
        feats[-1] = feats[-1] + model.no_mem_embed
        return [f.permute(1, 2, 0).view(1, -1, *s) for f, s in zip(feats, sizes)]

    def decode(f):
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None,
                                                 masks=None)
        return model.sam_mask_decoder(
            image_embeddings=f[2], image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=True, repeat_image=True, high_res_features=[f[0], f[1]])

    enc_t, dec_t = [], []
    with torch.no_grad():
        for _ in range(max(1, args.iters)):
            t0 = time.perf_counter()
            f = encode()
            enc_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            decode(f)
            dec_t.append(time.perf_counter() - t0)
    print(json.dumps({"config": args.config, "threads": args.threads, "batch": B,
                      "encoder_s": min(enc_t), "decoder_s": min(dec_t)}))


if __name__ == "__main__":
    main()
