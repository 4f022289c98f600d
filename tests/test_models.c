/* test_models.c: the pieces of models.h and the transformers layout that a
 * shell test cannot see one by one: the hub-cache root's precedence of
 * environment variables, the official file names, transformers
 * config.json -> sam2_config (defaults for absent keys, the four official
 * sizes recognised, unsupported values refused), and the transformers ->
 * official tensor name table. tests/test_models.sh covers the end-to-end
 * paths (a real cache tree, dump identity, errors, listing, runs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/weights_int.h"
#include "model.h"
#include "models.h"
#include "test.h"

static char tmpdir[] = "/tmp/sam2amg-test-models-XXXXXX";

/* write_file: text into tmpdir/name; returns the path (static buffer) */
static const char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f) return path;
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_hub_cache(void) {
    char root[1024];
    const char *why = NULL;
    unsetenv("HF_HUB_CACHE"), unsetenv("HUGGINGFACE_HUB_CACHE"), unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/h", 1);
    TEST_CHECK(!models_hub_cache(root, sizeof root, &why) && !strcmp(root, "/h/.cache/huggingface/hub") &&
                   !strcmp(why, "HOME"), "hub cache: ~/.cache/huggingface/hub", "%s", root);
    setenv("XDG_CACHE_HOME", "/x", 1);
    TEST_CHECK(!models_hub_cache(root, sizeof root, &why) && !strcmp(root, "/x/huggingface/hub"),
               "hub cache: $XDG_CACHE_HOME/huggingface/hub", "%s", root);
    setenv("HF_HOME", "/hf", 1);
    TEST_CHECK(!models_hub_cache(root, sizeof root, &why) && !strcmp(root, "/hf/hub"),
               "hub cache: $HF_HOME/hub beats XDG", "%s", root);
    setenv("HUGGINGFACE_HUB_CACHE", "/legacy", 1);
    TEST_CHECK(!models_hub_cache(root, sizeof root, &why) && !strcmp(root, "/legacy"),
               "hub cache: legacy $HUGGINGFACE_HUB_CACHE beats HF_HOME", "%s", root);
    setenv("HF_HUB_CACHE", "/c", 1);
    TEST_CHECK(!models_hub_cache(root, sizeof root, &why) && !strcmp(root, "/c") &&
                   !strcmp(why, "HF_HUB_CACHE"), "hub cache: $HF_HUB_CACHE first", "%s", root);
    unsetenv("HF_HUB_CACHE"), unsetenv("HUGGINGFACE_HUB_CACHE"), unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME"), unsetenv("HOME");
    TEST_CHECK(models_hub_cache(root, sizeof root, &why) == -1, "hub cache: none without HOME", "%s", root);
    char small[8];
    setenv("HF_HUB_CACHE", "/a/very/long/path", 1);
    TEST_CHECK(models_hub_cache(small, sizeof small, NULL) == -1, "hub cache: too long is an error", " ");
    unsetenv("HF_HUB_CACHE");
}

static void test_known(void) {
    const char *repo = NULL, *cfg = NULL;
    int v = 0;
    TEST_CHECK(models_known_file("sam2.1_hiera_base_plus.pt", &repo, &cfg, &v) &&
                   !strcmp(repo, "facebook/sam2.1-hiera-base-plus") && !strcmp(cfg, "base_plus") && v == 21,
               "known: sam2.1_hiera_base_plus.pt", "%s %s %d", repo, cfg, v);
    TEST_CHECK(models_known_file("sam2_hiera_large", &repo, &cfg, &v) &&
                   !strcmp(repo, "facebook/sam2-hiera-large") && !strcmp(cfg, "large") && v == 20,
               "known: sam2_hiera_large (no .pt), SAM 2.0", "%s %s %d", repo, cfg, v);
    TEST_CHECK(!models_known_file("sam2.1_hiera_huge", NULL, NULL, NULL) &&
                   !models_known_file("sam2.1_hiera_large.ptx", NULL, NULL, NULL) &&
                   !models_known_file("sam2.1_hiera_larg", NULL, NULL, NULL),
               "known: near misses are unknown", " ");
}

/* expect_hf_config: config.json text -> the built-in config `want` */
static void expect_hf_config(const char *name, const char *json, const char *want) {
    sam2_config got, ref;
    err_t err = {{0}};
    const char *p = write_file("config.json", json);
    int rc = sam2_config_load_hf(p, &got, &err);
    int brc = sam2_config_builtin(want, &ref, &err);
    TEST_CHECK(!rc && !brc && !memcmp(&got, &ref, sizeof got), name, "rc %d, name '%s', %s", rc,
               got.name, err.msg);
    /* --config FILE takes the same file */
    sam2_config viaload;
    rc = sam2_config_load(p, &viaload, NULL, &err);
    TEST_CHECK(!rc && !memcmp(&viaload, &ref, sizeof ref), "  ... and through sam2_config_load",
               "rc %d %s", rc, err.msg);
}

static void expect_hf_refused(const char *name, const char *json, const char *word) {
    sam2_config got;
    err_t err = {{0}};
    int rc = sam2_config_load_hf(write_file("bad.json", json), &got, &err);
    TEST_CHECK(rc == ERR_FORMAT && strstr(err.msg, word), name, "rc %d: %s", rc, err.msg);
}

static void test_hf_config(void) {
    /* transformers writes only values that differ from its defaults: an
     * empty config is its default, the tiny model */
    expect_hf_config("config.json {} -> tiny (transformers' defaults)", "{\"model_type\": \"sam2\"}",
                     "tiny");
    expect_hf_config("config.json of the large model -> large",
                     "{\"model_type\":\"sam2\",\"vision_config\":{\"backbone_config\":{"
                     "\"hidden_size\":144,\"num_attention_heads\":2,\"blocks_per_stage\":[2,6,36,4],"
                     "\"embed_dim_per_stage\":[144,288,576,1152],"
                     "\"num_attention_heads_per_stage\":[2,4,8,16],"
                     "\"window_size_per_stage\":[8,4,16,8],\"global_attention_blocks\":[23,33,43]},"
                     "\"backbone_channel_list\":[1152,576,288,144]}}",
                     "large");
    expect_hf_config("config.json of base_plus (background 14x14) -> base_plus",
                     "{\"vision_config\":{\"backbone_config\":{\"hidden_size\":112,"
                     "\"num_attention_heads\":2,\"blocks_per_stage\":[2,3,16,3],"
                     "\"embed_dim_per_stage\":[112,224,448,896],"
                     "\"num_attention_heads_per_stage\":[2,4,8,16],"
                     "\"global_attention_blocks\":[12,16,20],"
                     "\"window_positional_embedding_background_size\":[14,14]},"
                     "\"backbone_channel_list\":[896,448,224,112]}}",
                     "base_plus");
    expect_hf_config("config.json written in full (defaults spelled out) -> small",
                     "{\"model_type\":\"sam2\",\"vision_config\":{\"backbone_config\":{"
                     "\"hidden_size\":96,\"num_attention_heads\":1,\"num_channels\":3,"
                     "\"image_size\":[1024,1024],\"patch_kernel_size\":[7,7],\"patch_stride\":[4,4],"
                     "\"patch_padding\":[3,3],\"query_stride\":[2,2],"
                     "\"window_positional_embedding_background_size\":[7,7],"
                     "\"num_query_pool_stages\":3,\"blocks_per_stage\":[1,2,11,2],"
                     "\"embed_dim_per_stage\":[96,192,384,768],"
                     "\"num_attention_heads_per_stage\":[1,2,4,8],"
                     "\"window_size_per_stage\":[8,4,14,7],\"global_attention_blocks\":[7,10,13],"
                     "\"mlp_ratio\":4.0},\"backbone_channel_list\":[768,384,192,96],"
                     "\"fpn_hidden_size\":256},\"prompt_encoder_config\":{\"hidden_size\":256,"
                     "\"image_size\":1024},\"mask_decoder_config\":{\"hidden_size\":256}}",
                     "small");
    expect_hf_refused("config.json: another model_type", "{\"model_type\":\"sam\"}", "model_type");
    expect_hf_refused("config.json: mlp_ratio 3 refused",
                      "{\"vision_config\":{\"backbone_config\":{\"mlp_ratio\":3.0}}}", "mlp_ratio");
    expect_hf_refused("config.json: patch stride 8 refused",
                      "{\"vision_config\":{\"backbone_config\":{\"patch_stride\":[8,8]}}}", "patch");
    expect_hf_refused("config.json: hidden_size without per-stage dims",
                      "{\"vision_config\":{\"backbone_config\":{\"hidden_size\":144}}}",
                      "embed_dim_per_stage");
    expect_hf_refused("config.json: a string where a list belongs",
                      "{\"vision_config\":{\"backbone_config\":{\"blocks_per_stage\":\"1,2,7,2\"}}}",
                      "blocks_per_stage");
    expect_hf_refused("config.json: negative hidden_size refused",
                      "{\"model_type\":\"sam2\",\"vision_config\":{\"backbone_config\":{\"hidden_size\":-96}}}",
                      "positive");
    expect_hf_refused("config.json: negative sizes doubled per stage refused",
                      "{\"model_type\":\"sam2\",\"vision_config\":{\"backbone_channel_list\":[-768,-384,-192,-96],"
                      "\"backbone_config\":{\"hidden_size\":-96,\"num_attention_heads\":-1,"
                      "\"embed_dim_per_stage\":[-96,-192,-384,-768],"
                      "\"num_attention_heads_per_stage\":[-1,-2,-4,-8]}}}",
                      "positive");
    expect_hf_refused("config.json: decoder mlp_dim 1024 refused",
                      "{\"mask_decoder_config\":{\"mlp_dim\":1024}}", "mask_decoder_config.mlp_dim");
    expect_hf_refused("config.json: 4 decoder heads refused",
                      "{\"mask_decoder_config\":{\"num_attention_heads\":4}}", "num_attention_heads");
    expect_hf_refused("config.json: 32 mask input channels refused",
                      "{\"prompt_encoder_config\":{\"mask_input_channels\":32}}", "mask_input_channels");
    expect_hf_refused("config.json: decoder width differs from the neck",
                      "{\"mask_decoder_config\":{\"hidden_size\":128}}", "hidden_size");
}

static void expect_name(const char *hf, int kind, const char *official) {
    char out[256] = "";
    int k = weights_hf_name(hf, out, sizeof out);
    char name[400];
    snprintf(name, sizeof name, "name %s", hf);
    TEST_CHECK(k == kind && (kind != WEIGHTS_HF_MAPPED || !strcmp(out, official)), name,
               "kind %d (want %d), got '%s', want '%s'", k, kind, out, official ? official : "");
}

static void test_hf_names(void) {
    const int M = WEIGHTS_HF_MAPPED;
    expect_name("vision_encoder.backbone.patch_embed.projection.weight", M,
                "image_encoder.trunk.patch_embed.proj.weight");
    expect_name("vision_encoder.backbone.pos_embed_window", M, "image_encoder.trunk.pos_embed_window");
    expect_name("vision_encoder.backbone.blocks.12.layer_norm2.bias", M,
                "image_encoder.trunk.blocks.12.norm2.bias");
    expect_name("vision_encoder.backbone.blocks.3.mlp.proj_out.weight", M,
                "image_encoder.trunk.blocks.3.mlp.layers.1.weight");
    expect_name("vision_encoder.backbone.blocks.3.proj.bias", M, "image_encoder.trunk.blocks.3.proj.bias");
    expect_name("vision_encoder.neck.convs.2.weight", M, "image_encoder.neck.convs.2.conv.weight");
    expect_name("mask_decoder.transformer.layers.1.cross_attn_image_to_token.o_proj.weight", M,
                "sam_mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.weight");
    expect_name("mask_decoder.transformer.layers.0.layer_norm4.weight", M,
                "sam_mask_decoder.transformer.layers.0.norm4.weight");
    expect_name("mask_decoder.transformer.layers.0.mlp.proj_in.bias", M,
                "sam_mask_decoder.transformer.layers.0.mlp.layers.0.bias");
    expect_name("mask_decoder.transformer.layer_norm_final_attn.bias", M,
                "sam_mask_decoder.transformer.norm_final_attn.bias");
    expect_name("mask_decoder.upscale_conv2.weight", M, "sam_mask_decoder.output_upscaling.3.weight");
    expect_name("mask_decoder.output_hypernetworks_mlps.3.layers.0.weight", M,
                "sam_mask_decoder.output_hypernetworks_mlps.3.layers.1.weight");
    expect_name("mask_decoder.iou_prediction_head.proj_out.bias", M,
                "sam_mask_decoder.iou_prediction_head.layers.2.bias");
    expect_name("mask_decoder.pred_obj_score_head.proj_in.weight", M,
                "sam_mask_decoder.pred_obj_score_head.layers.0.weight");
    expect_name("prompt_encoder.mask_embed.layer_norm2.weight", M,
                "sam_prompt_encoder.mask_downscaling.4.weight");
    expect_name("shared_image_embedding.positional_embedding", M, WEIGHTS_HF_PE);
    expect_name("prompt_encoder.shared_embedding.positional_embedding", M, WEIGHTS_HF_PE);
    expect_name("no_memory_embedding", M, "no_mem_embed");
    expect_name("prompt_encoder.point_embed.weight", WEIGHTS_HF_POINT_EMBED, NULL);
    expect_name("memory_attention.layers.0.self_attn.q_proj.weight", WEIGHTS_HF_SKIP, NULL);
    expect_name("object_pointer_proj.proj_in.weight", WEIGHTS_HF_SKIP, NULL);
    expect_name("occlusion_spatial_embedding_parameter", WEIGHTS_HF_SKIP, NULL);
    expect_name("vision_encoder.backbone.blocks.x.layer_norm1.weight", WEIGHTS_HF_UNKNOWN, NULL);
    expect_name("mask_decoder.transformer.layers.0.self_attn.q_proj", WEIGHTS_HF_UNKNOWN, NULL);
    expect_name("vision_encoder.backbone.pos_embed.extra", WEIGHTS_HF_UNKNOWN, NULL);
    char tiny[8];
    TEST_CHECK(weights_hf_name("vision_encoder.neck.convs.2.weight", tiny, sizeof tiny) ==
                   WEIGHTS_HF_UNKNOWN, "name too long for the buffer: not mapped", " ");
    TEST_CHECK(weights_hf_is_layout("vision_encoder.neck.convs.0.bias") &&
                   !weights_hf_is_layout("image_encoder.neck.convs.0.conv.bias") &&
                   !weights_hf_is_layout("sam_mask_decoder.iou_token.weight"),
               "layout detection by name", " ");
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_hub_cache();
    test_known();
    test_hf_config();
    test_hf_names();
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", tmpdir), unlink(p);
    snprintf(p, sizeof p, "%s/bad.json", tmpdir), unlink(p);
    rmdir(tmpdir);
    return TEST_REPORT();
}
