#!/usr/bin/env python3
"""make_transformers_fixture.py: tests/fixtures/hf-transformers/, a SAM 2
checkpoint written by transformers itself, and what transformers computes
with it.

  model.safetensors, config.json   Sam2Model(config).save_pretrained(DIR)
                                   with the `micro` architecture and seeded
                                   random weights
  expected.safetensors             transformers' outputs on the `input`
                                   tensor of `sam2amg dump` (micro/image.png,
                                   --points-per-side 4 --points-per-batch 16):
                                   image_embed, feat_s0, feat_s1 (with
                                   get_image_embeddings) and low_res_masks,
                                   iou_preds for the 16 grid points
                                   (forward, multimask_output=True)

tests/test_models.sh checks that sam2amg loads the directory with no
--config, that its `dump` tensors match expected.safetensors, and that the
same weights rewritten in the official layout give identical `dump` bytes.

Needs torch >= 2 and transformers with Sam2 (made with torch 2.15.0,
transformers 5.24.0; not needed by the tests, which only read the output):

  PYTHONPATH=/path/to/site python3 tests/make_transformers_fixture.py build/sam2amg
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import Sam2Config, Sam2Model

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "hf-transformers")
IMAGE = os.path.join(HERE, "fixtures", "micro", "image.png")
MICRO = os.path.join(HERE, "fixtures", "micro", "weights.safetensors")


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], np.float32).reshape(v["shape"])
            for k, v in h.items() if k != "__metadata__"}


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k], np.float32)
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def micro_config():
    # the fixtures' `micro` architecture (tests/fixtures/micro/meta.json)
    return Sam2Config(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(
                model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1,
                blocks_per_stage=[1, 2, 3, 1], embed_dim_per_stage=[16, 32, 64, 128],
                num_attention_heads_per_stage=[1, 2, 4, 8], window_size_per_stage=[8, 4, 14, 7],
                global_attention_blocks=[4], window_positional_embedding_background_size=[7, 7],
                image_size=[256, 256]),
            backbone_channel_list=[128, 64, 32, 16], fpn_hidden_size=64,
            backbone_feature_sizes=[[64, 64], [32, 32], [16, 16]]),
        prompt_encoder_config=dict(hidden_size=64, image_size=256),
        mask_decoder_config=dict(hidden_size=64))


def randomize(model):
    # transformers' init leaves biases 0, norms 1 and no_memory_embedding 0:
    # every tensor gets seeded random values so each one matters in the check
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            r = torch.randn(t.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                t.copy_(1 + 0.1 * r)
            elif t.dim() >= 2 and "positional_embedding" not in name:
                t.copy_(r / max(1, t[0].numel()) ** 0.5)
            else:
                t.copy_(0.1 * r if "positional_embedding" not in name else r)
        # one Fourier matrix, as in the official model (and as transformers'
        # conversion writes it): the prompt encoder's copy equals the image's
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)


def main():
    sam2amg = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "sam2amg")
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    model = Sam2Model(micro_config()).eval()
    randomize(model)
    model.save_pretrained(OUT)
    # the preprocessed image and grid points, from sam2amg's own dump (they
    # do not depend on the weights)
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "ref.safetensors")
        subprocess.run([sam2amg, "dump", "--model", MICRO, "--config", "micro", IMAGE, "-o", ref,
                        "--points-per-side", "4", "--points-per-batch", "16"], check=True)
        d = read_st(ref)
    x = torch.from_numpy(d["input"].copy())                   # (1,3,S,S)
    S = x.shape[-1]
    w, h = 320, 240                                           # micro/image.png
    pts = torch.from_numpy(d["grid_points"].copy())           # (B,2) pixels
    pts = pts * torch.tensor([S / w, S / h])                  # model input coordinates
    B = pts.shape[0]
    with torch.no_grad():
        emb = model.get_image_embeddings(x)                   # [s0, s1, embed]
        out = model(image_embeddings=emb, input_points=pts.reshape(1, B, 1, 2),
                    input_labels=torch.ones(1, B, 1, dtype=torch.int64), multimask_output=True)
    write_st(os.path.join(OUT, "expected.safetensors"), {
        "input": d["input"], "grid_points": d["grid_points"],
        "feat_s0": emb[0].numpy(), "feat_s1": emb[1].numpy(), "image_embed": emb[2].numpy(),
        "low_res_masks": out.pred_masks[0].numpy(), "iou_preds": out.iou_scores[0].numpy(),
    })
    print("wrote %s (torch %s, transformers %s)" % (OUT, torch.__version__, transformers.__version__))


if __name__ == "__main__":
    main()
