/* weights_hf.c: the tensor names of transformers' Sam2Model
 * (model.safetensors as save_pretrained writes it) onto the official
 * checkpoint names that the model code asks for.
 *
 * The two layouts hold the same numbers: transformers renamed modules
 * (image_encoder.trunk -> vision_encoder.backbone, norm1 -> layer_norm1,
 * mlp.layers.0 -> mlp.proj_in, output_upscaling.0 -> upscale_conv1, ...)
 * but kept every tensor's shape and memory order, with two exceptions: the
 * four (1,C) point_embeddings.i are one (4,C) point_embed.weight, and the
 * prompt encoder's random Fourier matrix (one pe_layer, used for the image
 * and the prompts) is stored twice: shared_image_embedding.positional_embedding
 * and prompt_encoder.shared_embedding.positional_embedding (transformers 4
 * tied them and dropped the second on save; transformers 5 keeps both as
 * separate buffers, equal in every converted checkpoint). So the mapping is
 * a name table, the (4,C) split is four views into the same bytes, and the
 * second matrix is checked equal to the first and dropped (a file where
 * they differ cannot be run as the official model): nothing is copied. The table was written from transformers' modeling_sam2.py
 * (module names) and its checkpoint conversion script (what each official
 * name becomes), read in reverse.
 *
 * Patterns: '#' matches a decimal number, '$' one name segment (no dot),
 * '*' the rest of the name; the replacement reuses the captures in order.
 */
#include <string.h>

#include "weights_int.h"

typedef struct hf_rule {
    const char *hf, *official;
} hf_rule;

static const hf_rule rules[] = {
    /* Hiera trunk */
    {"vision_encoder.backbone.patch_embed.projection.*", "image_encoder.trunk.patch_embed.proj.*"},
    {"vision_encoder.backbone.pos_embed", "image_encoder.trunk.pos_embed"},
    {"vision_encoder.backbone.pos_embed_window", "image_encoder.trunk.pos_embed_window"},
    {"vision_encoder.backbone.blocks.#.layer_norm1.*", "image_encoder.trunk.blocks.#.norm1.*"},
    {"vision_encoder.backbone.blocks.#.layer_norm2.*", "image_encoder.trunk.blocks.#.norm2.*"},
    {"vision_encoder.backbone.blocks.#.attn.qkv.*", "image_encoder.trunk.blocks.#.attn.qkv.*"},
    {"vision_encoder.backbone.blocks.#.attn.proj.*", "image_encoder.trunk.blocks.#.attn.proj.*"},
    {"vision_encoder.backbone.blocks.#.mlp.proj_in.*", "image_encoder.trunk.blocks.#.mlp.layers.0.*"},
    {"vision_encoder.backbone.blocks.#.mlp.proj_out.*", "image_encoder.trunk.blocks.#.mlp.layers.1.*"},
    {"vision_encoder.backbone.blocks.#.proj.*", "image_encoder.trunk.blocks.#.proj.*"},
    /* FPN neck: the convs lose their ".conv" wrapper */
    {"vision_encoder.neck.convs.#.*", "image_encoder.neck.convs.#.conv.*"},
    /* mask decoder: two-way transformer */
    {"mask_decoder.transformer.layers.#.$.q_proj.*", "sam_mask_decoder.transformer.layers.#.$.q_proj.*"},
    {"mask_decoder.transformer.layers.#.$.k_proj.*", "sam_mask_decoder.transformer.layers.#.$.k_proj.*"},
    {"mask_decoder.transformer.layers.#.$.v_proj.*", "sam_mask_decoder.transformer.layers.#.$.v_proj.*"},
    {"mask_decoder.transformer.layers.#.$.o_proj.*", "sam_mask_decoder.transformer.layers.#.$.out_proj.*"},
    {"mask_decoder.transformer.layers.#.layer_norm#.*", "sam_mask_decoder.transformer.layers.#.norm#.*"},
    {"mask_decoder.transformer.layers.#.mlp.proj_in.*", "sam_mask_decoder.transformer.layers.#.mlp.layers.0.*"},
    {"mask_decoder.transformer.layers.#.mlp.proj_out.*", "sam_mask_decoder.transformer.layers.#.mlp.layers.1.*"},
    {"mask_decoder.transformer.final_attn_token_to_image.q_proj.*", "sam_mask_decoder.transformer.final_attn_token_to_image.q_proj.*"},
    {"mask_decoder.transformer.final_attn_token_to_image.k_proj.*", "sam_mask_decoder.transformer.final_attn_token_to_image.k_proj.*"},
    {"mask_decoder.transformer.final_attn_token_to_image.v_proj.*", "sam_mask_decoder.transformer.final_attn_token_to_image.v_proj.*"},
    {"mask_decoder.transformer.final_attn_token_to_image.o_proj.*", "sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.*"},
    {"mask_decoder.transformer.layer_norm_final_attn.*", "sam_mask_decoder.transformer.norm_final_attn.*"},
    /* mask decoder: heads (3-layer MLPs: proj_in, layers.0, proj_out) */
    {"mask_decoder.upscale_conv1.*", "sam_mask_decoder.output_upscaling.0.*"},
    {"mask_decoder.upscale_layer_norm.*", "sam_mask_decoder.output_upscaling.1.*"},
    {"mask_decoder.upscale_conv2.*", "sam_mask_decoder.output_upscaling.3.*"},
    {"mask_decoder.iou_prediction_head.proj_in.*", "sam_mask_decoder.iou_prediction_head.layers.0.*"},
    {"mask_decoder.iou_prediction_head.layers.0.*", "sam_mask_decoder.iou_prediction_head.layers.1.*"},
    {"mask_decoder.iou_prediction_head.proj_out.*", "sam_mask_decoder.iou_prediction_head.layers.2.*"},
    {"mask_decoder.output_hypernetworks_mlps.#.proj_in.*", "sam_mask_decoder.output_hypernetworks_mlps.#.layers.0.*"},
    {"mask_decoder.output_hypernetworks_mlps.#.layers.0.*", "sam_mask_decoder.output_hypernetworks_mlps.#.layers.1.*"},
    {"mask_decoder.output_hypernetworks_mlps.#.proj_out.*", "sam_mask_decoder.output_hypernetworks_mlps.#.layers.2.*"},
    {"mask_decoder.pred_obj_score_head.proj_in.*", "sam_mask_decoder.pred_obj_score_head.layers.0.*"},
    {"mask_decoder.pred_obj_score_head.layers.0.*", "sam_mask_decoder.pred_obj_score_head.layers.1.*"},
    {"mask_decoder.pred_obj_score_head.proj_out.*", "sam_mask_decoder.pred_obj_score_head.layers.2.*"},
    {"mask_decoder.conv_s0.*", "sam_mask_decoder.conv_s0.*"},
    {"mask_decoder.conv_s1.*", "sam_mask_decoder.conv_s1.*"},
    {"mask_decoder.iou_token.*", "sam_mask_decoder.iou_token.*"},
    {"mask_decoder.mask_tokens.*", "sam_mask_decoder.mask_tokens.*"},
    {"mask_decoder.obj_score_token.*", "sam_mask_decoder.obj_score_token.*"},
    /* prompt encoder */
    {"prompt_encoder.mask_embed.conv1.*", "sam_prompt_encoder.mask_downscaling.0.*"},
    {"prompt_encoder.mask_embed.layer_norm1.*", "sam_prompt_encoder.mask_downscaling.1.*"},
    {"prompt_encoder.mask_embed.conv2.*", "sam_prompt_encoder.mask_downscaling.3.*"},
    {"prompt_encoder.mask_embed.layer_norm2.*", "sam_prompt_encoder.mask_downscaling.4.*"},
    {"prompt_encoder.mask_embed.conv3.*", "sam_prompt_encoder.mask_downscaling.6.*"},
    {"prompt_encoder.no_mask_embed.*", "sam_prompt_encoder.no_mask_embed.*"},
    {"prompt_encoder.not_a_point_embed.*", "sam_prompt_encoder.not_a_point_embed.*"},
    {"prompt_encoder.shared_embedding.positional_embedding", WEIGHTS_HF_PE},
    {"shared_image_embedding.positional_embedding", WEIGHTS_HF_PE},
    {"no_memory_embedding", "no_mem_embed"},
};
#define N_RULES ((int)(sizeof rules / sizeof rules[0]))

/* The video modules of Sam2VideoModel files: never read for images (the
 * official loader skips their official names the same way). */
static const char *const video_prefixes[] = {
    "memory_", "mask_downsample", "object_pointer_proj", "temporal_positional_encoding",
    "no_memory_positional_encoding", "no_object_pointer", "occlusion_spatial_embedding",
};

/* match: s against pat; captures (start, len) into cap[] (at most 8) */
static int match(const char *pat, const char *s, const char **cs, size_t *cl, int *nc) {
    for (; *pat; pat++) {
        if (*pat == '*') {
            cs[*nc] = s, cl[(*nc)++] = strlen(s);
            return 1;
        }
        if (*pat == '#' || *pat == '$') {
            const char *b = s;
            if (*pat == '#')
                while (*s >= '0' && *s <= '9') s++;
            else
                while (*s && *s != '.') s++;
            if (s == b || *nc == 8) return 0;
            cs[*nc] = b, cl[(*nc)++] = (size_t)(s - b);
            continue;
        }
        if (*s++ != *pat) return 0;
    }
    return *s == 0;
}

int weights_hf_is_layout(const char *name) {
    return !strncmp(name, "vision_encoder.", 15) || !strncmp(name, "mask_decoder.", 13) ||
           !strncmp(name, "prompt_encoder.", 15);
}

int weights_hf_name(const char *hf, char *out, size_t cap) {
    if (!strcmp(hf, "prompt_encoder.point_embed.weight")) return WEIGHTS_HF_POINT_EMBED;
    for (size_t i = 0; i < sizeof video_prefixes / sizeof *video_prefixes; i++)
        if (!strncmp(hf, video_prefixes[i], strlen(video_prefixes[i]))) return WEIGHTS_HF_SKIP;
    for (int r = 0; r < N_RULES; r++) {
        const char *cs[8];
        size_t cl[8];
        int nc = 0;
        if (!match(rules[r].hf, hf, cs, cl, &nc)) continue;
        size_t j = 0;
        int k = 0;
        for (const char *p = rules[r].official; *p; p++) {
            const char *src = p;
            size_t len = 1;
            if (*p == '#' || *p == '$' || *p == '*') src = cs[k], len = cl[k], k++;
            if (j + len >= cap) return WEIGHTS_HF_UNKNOWN;
            memcpy(out + j, src, len);
            j += len;
        }
        out[j] = 0;
        return WEIGHTS_HF_MAPPED;
    }
    return WEIGHTS_HF_UNKNOWN;
}
