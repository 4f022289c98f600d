#!/usr/bin/python3
"""Make tests/fixtures/amg-upsample/upsample.safetensors: low-res logit maps
and PyTorch's F.interpolate(bilinear, align_corners=False) of them, float32
on the CPU, for both kernels the official predictor hits: (B,3,L,L) (the
generic kernel: multimask output) and (B,1,L,L) (channels-last kernel:
m2m and single-mask output). Half of the values are multiples of 1/4 so
that exact ties at thresholds occur. L = 64 (model size 256).

Usage: make_upsample_fixture.py OUT.safetensors   (Debian torch 1.13)
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F


def main():
    g = torch.Generator().manual_seed(0)
    L = 64
    t = {}
    cases = [("k3_a", 3, 120, 200), ("k3_b", 3, 37, 500), ("k3_c", 3, 64, 64),
             ("k1_a", 1, 300, 77), ("k1_b", 1, 64, 64), ("k1_c", 1, 90, 130)]
    for name, k, h, w in cases:
        x = torch.randn(2, k, L, L, generator=g) * 8
        x[:, :, : L // 2] = torch.round(x[:, :, : L // 2] * 4) / 4
        y = F.interpolate(x, (h, w), mode="bilinear", align_corners=False)
        t[name + "_in"] = x.numpy().astype(np.float32)
        t[name + "_out"] = y.contiguous().numpy().astype(np.float32)
    header, blobs, off = {}, [], 0
    for key in sorted(t):
        a = np.ascontiguousarray(t[key])
        b = a.tobytes()
        header[key] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(sys.argv[1], "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
