#!/usr/bin/env python3
"""make_hf_layout.py: write an official-layout SAM 2 safetensors checkpoint
in the layout of transformers' Sam2Model.save_pretrained: model.safetensors
(transformers' tensor names) and config.json (a Sam2Config with only the
values that differ from transformers' defaults, as save_pretrained writes).

Used by tests/test_models.sh to check that sam2amg reads that layout: the
same weights must give identical `dump` tensors in both layouts. This is
the forward direction of the mapping (official -> transformers), written
from transformers' Sam2 checkpoint conversion (ordered substring renames,
then the MLP layer renumbering) and modeling_sam2.py, independently of the
C table in src/weights_hf.c, which maps the other way.

Only numpy is needed (no torch, no transformers): see the test for why a
file written by transformers itself is not used.

usage: make_hf_layout.py WEIGHTS.safetensors META.json OUTDIR [--tied] [--video]
       make_hf_layout.py --reverse HF_DIR TEMPLATE.safetensors OUT.safetensors
  --tied     also store prompt_encoder.shared_embedding.positional_embedding
             (transformers 4.x's save_pretrained drops this tied copy, 5.x keeps it)
  --video    keep the video-only tensors (renamed as for Sam2VideoModel)
  --reverse  the other way: HF_DIR/model.safetensors (as transformers wrote it) in
             the official layout, names taken from TEMPLATE (an official-layout
             checkpoint of the same architecture) through the forward mapping;
             fails unless the two name sets correspond one to one
"""
import json
import re
import struct
import sys

import numpy as np

# official substring -> transformers substring, applied in this order to
# each name (a later rule sees the result of the earlier ones)
RENAMES = [
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("dwconv", "depthwise_conv"),
    ("pwconv", "pointwise_conv"),
    ("fuser", "memory_fuser"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("obj_ptr_tpos_proj", "temporal_positional_encoding_projection_layer"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
    ("sam_prompt_encoder", "prompt_encoder"),
    ("sam_mask_decoder", "mask_decoder"),
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("gamma", "scale"),
    ("image_encoder.neck", "vision_encoder.neck"),
    ("image_encoder", "vision_encoder.backbone"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("pix_feat_proj", "feature_projection"),
    ("patch_embed.proj", "patch_embed.projection"),
    ("no_mem_embed", "no_memory_embedding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("obj_ptr", "object_pointer"),
    (".norm", ".layer_norm"),
    ("trunk.", ""),
    ("out_proj", "o_proj"),
]

THREE = {0: ("layers.0", "proj_in"), 1: ("layers.1", "layers.0"), 2: ("layers.2", "proj_out")}
TWO = {0: ("layers.0", "proj_in"), 1: ("layers.1", "proj_out")}

# what Sam2Model (the image model) leaves out of its state dict
VIDEO = re.compile(r"^(memory_|mask_downsample|object_pointer_proj|temporal_positional_encoding"
                   r"|no_memory_positional_encoding|no_object_pointer|occlusion_spatial_embedding)")


def renumber(key, pattern, group, table):
    m = re.match(pattern, key)
    if m:
        old, new = table[int(m.group(group))]
        key = key.replace(old, new)
    return key


def hf_name(key):
    for old, new in RENAMES:
        if old in key:
            key = key.replace(old, new)
    key = renumber(key, r"vision_encoder\.backbone\.blocks\.(\d+)\.mlp\.layers\.(\d+)", 2, TWO)
    if key.startswith("memory_attention"):
        key = key.replace("linear1", "mlp.up_proj").replace("linear2", "mlp.down_proj")
    m = re.match(r"mask_decoder\.transformer\.layers\.\d+\.mlp\.layers\.(\d+)", key)
    if m:
        key = key.replace("mlp.layers.%s" % m.group(1), "mlp." + TWO[int(m.group(1))][1])
    key = renumber(key, r"mask_decoder\.pred_obj_score_head\.layers\.(\d+)", 1, THREE)
    key = renumber(key, r".*output_hypernetworks_mlps\.\d+\.layers\.(\d+)", 1, THREE)
    if re.match(r"vision_encoder\.neck\.convs\.\d+\.conv\.", key):
        key = key.replace(".conv.", ".")
    if key.startswith("memory_encoder.o_proj"):
        key = key.replace(".o_proj.", ".projection.")
    key = renumber(key, r"object_pointer_proj\.layers\.(\d+)", 1, THREE)
    return key


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], np.float32).reshape(v["shape"])
    return out


def save(path, tensors):
    # safetensors as the reference writer lays it out: header keys sorted,
    # data in the same order, header padded with spaces to 8 bytes
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k], np.float32)
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def hf_config(model):
    """meta.json "model" -> Sam2Config JSON, keeping only non-default values"""
    e, h = model["embed_dim"], model["num_heads"]
    dims = [e << i for i in range(4)]
    backbone = {
        "hidden_size": e, "num_attention_heads": h,
        "blocks_per_stage": model["stages"], "embed_dim_per_stage": dims,
        "num_attention_heads_per_stage": [h << i for i in range(4)],
        "window_size_per_stage": model["window_spec"],
        "global_attention_blocks": model["global_att_blocks"],
        "window_positional_embedding_background_size": model["window_pos_embed_bkg_spatial_size"],
        "image_size": [model["image_size"]] * 2,
    }
    defaults = {
        "hidden_size": 96, "num_attention_heads": 1, "blocks_per_stage": [1, 2, 7, 2],
        "embed_dim_per_stage": [96, 192, 384, 768], "num_attention_heads_per_stage": [1, 2, 4, 8],
        "window_size_per_stage": [8, 4, 14, 7], "global_attention_blocks": [5, 7, 9],
        "window_positional_embedding_background_size": [7, 7], "image_size": [1024, 1024],
    }
    backbone = {k: v for k, v in backbone.items() if v != defaults[k]}
    backbone["model_type"] = "sam2_hiera_det_model"
    vision = {"backbone_config": backbone, "model_type": "sam2_vision_model"}
    d, s = model["d_model"], model["image_size"]
    if dims[::-1] != [768, 384, 192, 96]:
        vision["backbone_channel_list"] = dims[::-1]
    if d != 256:
        vision["fpn_hidden_size"] = d
    vision["backbone_feature_sizes"] = [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]]
    prompt, decoder = {}, {}
    if d != 256:
        prompt["hidden_size"] = decoder["hidden_size"] = d
    if s != 1024:
        prompt["image_size"] = s
    return {"architectures": ["Sam2Model"], "model_type": "sam2", "torch_dtype": "float32",
            "vision_config": vision, "prompt_encoder_config": prompt,
            "mask_decoder_config": decoder}


PE = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"


def reverse(hf_dir, template, out_path):
    fwd = {}
    for k in load(template):
        n = hf_name(k)
        if not VIDEO.match(n):
            fwd[n] = k
    want = set(fwd.values())
    out = {}
    for n, v in load(hf_dir + "/model.safetensors").items():
        if n == "prompt_encoder.point_embed.weight":
            for i in range(v.shape[0]):
                out["sam_prompt_encoder.point_embeddings.%d.weight" % i] = v[i:i + 1]
        elif n == "shared_image_embedding.positional_embedding":
            out[PE] = v
        elif n == "prompt_encoder.shared_embedding.positional_embedding":
            continue  # the copy; checked equal below
        elif n in fwd:
            out[fwd[n]] = v
        else:
            sys.exit("make_hf_layout.py: %s: no official name maps to it" % n)
    missing = want - set(out)
    if missing:
        sys.exit("make_hf_layout.py: no transformers tensor for %s" % sorted(missing)[:5])
    copy = load(hf_dir + "/model.safetensors").get("prompt_encoder.shared_embedding.positional_embedding")
    if copy is not None and not np.array_equal(copy, out[PE]):
        sys.exit("make_hf_layout.py: the two positional matrices differ")
    save(out_path, out)


def main(argv):
    if argv and argv[0] == "--reverse":
        if len(argv) != 4:
            sys.exit(__doc__)
        return reverse(*argv[1:])
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 3:
        sys.exit(__doc__)
    weights, meta, outdir = args
    tied, video = "--tied" in argv, "--video" in argv
    out = {}
    for k, v in load(weights).items():
        n = hf_name(k)
        if VIDEO.match(n) and not video:
            continue
        assert n not in out, n
        out[n] = v
    # the four (1,C) point embeddings are one nn.Embedding(4, C)
    rows = [out.pop("prompt_encoder.point_embed.%d.weight" % i) for i in range(4)]
    out["prompt_encoder.point_embed.weight"] = np.concatenate(rows, 0)
    # the Fourier matrix lives in shared_image_embedding; the prompt
    # encoder's copy is tied to it and dropped on save unless --tied
    pe = out.pop("prompt_encoder.shared_embedding.positional_embedding")
    out["shared_image_embedding.positional_embedding"] = pe
    if tied:
        out["prompt_encoder.shared_embedding.positional_embedding"] = pe.copy()
    save(outdir + "/model.safetensors", out)
    with open(meta) as f:
        model = json.load(f)["model"]
    with open(outdir + "/config.json", "w") as f:
        json.dump(hf_config(model), f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
