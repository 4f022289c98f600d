/* config.c: SAM 2.1 model configurations: the built-in table (the official
 * sam2.1_hiera_{t,s,b+,l}.yaml values and the test fixtures' micro and
 * micro2), JSON config files (the fixtures' meta.json layout: a "model"
 * object and an optional "amg" object), and a guess from a checkpoint's
 * tensor shapes so that --config is optional.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "model.h"
#include "weights.h"

typedef struct config_entry {
    const char *name;
    const char *aliases[8];   /* NULL-terminated */
    sam2_config cfg;
} config_entry_t;

#define CFG(nm, ed, nh, s0, s1, s2, s3, ng, g0, g1, g2, w0, w1, w2, w3, bk, dm, sz)         \
    {                                                                                     \
        .name = nm, .embed_dim = ed, .num_heads = nh, .stages = {s0, s1, s2, s3},         \
        .global_att_blocks = {g0, g1, g2}, .n_global = ng, .window_spec = {w0, w1, w2, w3}, \
        .window_pos_embed_bkg_spatial_size = {bk, bk}, .d_model = dm, .image_size = sz    \
    }

static const config_entry_t config_table[] = {
    {"tiny", {"t", "sam2.1_hiera_t", "sam2.1_hiera_tiny", "sam2_hiera_t", "sam2_hiera_tiny",
              "hiera_t", "hiera_tiny", NULL},
     CFG("tiny", 96, 1, 1, 2, 7, 2, 3, 5, 7, 9, 8, 4, 14, 7, 7, 256, 1024)},
    {"small", {"s", "sam2.1_hiera_s", "sam2.1_hiera_small", "sam2_hiera_s", "sam2_hiera_small",
               "hiera_s", "hiera_small", NULL},
     CFG("small", 96, 1, 1, 2, 11, 2, 3, 7, 10, 13, 8, 4, 14, 7, 7, 256, 1024)},
    {"base_plus", {"b+", "sam2.1_hiera_b+", "sam2.1_hiera_base_plus", "sam2_hiera_b+",
                   "sam2_hiera_base_plus", "base+", "hiera_b+", NULL},
     CFG("base_plus", 112, 2, 2, 3, 16, 3, 3, 12, 16, 20, 8, 4, 14, 7, 14, 256, 1024)},
    {"large", {"l", "sam2.1_hiera_l", "sam2.1_hiera_large", "sam2_hiera_l", "sam2_hiera_large",
               "hiera_l", "hiera_large", NULL},
     CFG("large", 144, 2, 2, 6, 36, 4, 3, 23, 33, 43, 8, 4, 16, 8, 7, 256, 1024)},
    {"micro", {NULL}, CFG("micro", 16, 1, 1, 2, 3, 1, 1, 4, 0, 0, 8, 4, 14, 7, 7, 64, 256)},
    {"micro2", {NULL}, CFG("micro2", 24, 2, 1, 1, 4, 2, 2, 3, 5, 0, 8, 4, 6, 3, 5, 32, 192)},
};
#define N_CONFIGS ((int)(sizeof config_table / sizeof config_table[0]))

/* config_name_eq: case-insensitive match that also ignores a trailing
 * ".yaml" / ".pt" on the given name (users paste file names) */
static int config_name_eq(const char *given, const char *name) {
    size_t n = strlen(given);
    const char *exts[] = {".yaml", ".pt", ".safetensors"};
    for (int i = 0; i < 3; i++) {
        size_t e = strlen(exts[i]);
        if (n > e && !strcasecmp(given + n - e, exts[i])) {
            n -= e;
            break;
        }
    }
    return strlen(name) == n && !strncasecmp(given, name, n);
}

int sam2_config_builtin(const char *name, sam2_config *cfg, err_t *err) {
    if (!name) return err_set(err, ERR_INVALID, "no config name");
    for (int i = 0; i < N_CONFIGS; i++) {
        const config_entry_t *e = &config_table[i];
        int hit = config_name_eq(name, e->name);
        for (int a = 0; !hit && e->aliases[a]; a++) hit = config_name_eq(name, e->aliases[a]);
        if (hit) {
            *cfg = e->cfg;
            return 0;
        }
    }
    return err_set(err, ERR_INVALID,
                   "unknown config '%s' (tiny, small, base_plus, large, micro, micro2 or a "
                   "JSON file)", name);
}

/* config_int: an exact integer member; -1 if absent or not an integer */
static int config_int(const json_t *obj, const char *key, int *out) {
    int64_t v;
    if (json_int(json_get(obj, key), &v) || v < -1000000 || v > 1000000) return -1;
    *out = (int)v;
    return 0;
}

/* config_int_array: an array member of at most max integers into out;
 * -1 if absent or malformed, else the count */
static int config_int_array(const json_t *obj, const char *key, int *out, int max) {
    const json_t *a = json_get(obj, key);
    if (json_type(a) != JSON_ARR || json_len(a) > (size_t)max) return -1;
    int n = (int)json_len(a);
    for (int i = 0; i < n; i++) {
        int64_t v;
        if (json_int(json_at(a, (size_t)i), &v) || v < -1000000 || v > 1000000) return -1;
        out[i] = (int)v;
    }
    return n;
}

/* config_from_json: a "model" object into cfg; ERR_FORMAT naming the key */
static int config_from_json(const json_t *m, const char *path, sam2_config *cfg, err_t *err) {
    memset(cfg, 0, sizeof *cfg);
    const char *p = strrchr(path, '/');
    snprintf(cfg->name, sizeof cfg->name, "%s", p ? p + 1 : path);
    const char *bad = NULL;
    int n = 0;
    if (config_int(m, "embed_dim", &cfg->embed_dim)) bad = "embed_dim";
    else if (config_int(m, "num_heads", &cfg->num_heads)) bad = "num_heads";
    else if (config_int_array(m, "stages", cfg->stages, SAM2_MAX_STAGES) != SAM2_MAX_STAGES)
        bad = "stages";
    else if ((n = config_int_array(m, "global_att_blocks", cfg->global_att_blocks,
                                   SAM2_MAX_GLOBAL)) < 0)
        bad = "global_att_blocks";
    else if (config_int_array(m, "window_spec", cfg->window_spec, SAM2_MAX_STAGES) !=
             SAM2_MAX_STAGES)
        bad = "window_spec";
    else if (config_int_array(m, "window_pos_embed_bkg_spatial_size",
                              cfg->window_pos_embed_bkg_spatial_size, 2) != 2)
        bad = "window_pos_embed_bkg_spatial_size";
    else if (config_int(m, "d_model", &cfg->d_model)) bad = "d_model";
    else if (config_int(m, "image_size", &cfg->image_size)) bad = "image_size";
    if (bad)
        return err_set(err, ERR_FORMAT, "%s: \"model\".\"%s\" is missing or malformed", path,
                       bad);
    cfg->n_global = n;
    return 0;
}

/* config_write_json: v as compact JSON text on f (for the "amg" object) */
static void config_write_json(FILE *f, const json_t *v) {
    char buf[JSON_DOUBLE_BUF];
    int64_t iv;
    switch (json_type(v)) {
    case JSON_NULL: fputs("null", f); break;
    case JSON_BOOL: fputs(json_bool(v) ? "true" : "false", f); break;
    case JSON_NUM:
        if (!json_int(v, &iv))
            fprintf(f, "%lld", (long long)iv);
        else
            fputs(json_fmt_double(buf, json_num(v)), f);
        break;
    case JSON_STR: json_write_string(f, json_str(v)); break;
    case JSON_ARR:
        fputc('[', f);
        for (size_t i = 0; i < json_len(v); i++) {
            if (i) fputc(',', f);
            config_write_json(f, json_at(v, i));
        }
        fputc(']', f);
        break;
    case JSON_OBJ:
        fputc('{', f);
        for (size_t i = 0; i < json_len(v); i++) {
            if (i) fputc(',', f);
            json_write_string(f, json_key_at(v, i));
            fputc(':', f);
            config_write_json(f, json_at(v, i));
        }
        fputc('}', f);
        break;
    }
}

int sam2_config_load(const char *name_or_path, sam2_config *cfg, char **amg_json,
                     err_t *err) {
    if (amg_json) *amg_json = NULL;
    if (!name_or_path) return err_set(err, ERR_INVALID, "no config name");
    /* a built-in name wins unless it names an existing file (a folder
     * named "large" beside the run is not a config file) */
    struct stat st;
    if (stat(name_or_path, &st) != 0 || (S_ISDIR(st.st_mode) && !strchr(name_or_path, '/'))) {
        if (strchr(name_or_path, '/') || strstr(name_or_path, ".json"))
            return err_set(err, ERR_IO, "%s: no such config file", name_or_path);
        return sam2_config_builtin(name_or_path, cfg, err);
    }
    json_t *root = NULL;
    int rc = json_parse_file(&root, name_or_path, err);
    if (rc) return rc;
    const json_t *m = json_get(root, "model");
    const char *mt = json_str(json_get(root, "model_type"));
    if (json_type(m) != JSON_OBJ &&
        (json_get(root, "vision_config") || (mt && !strncmp(mt, "sam2", 4)))) {
        /* a transformers Sam2Config (config.json): no "amg" object */
        json_free(root);
        return sam2_config_load_hf(name_or_path, cfg, err);
    }
    if (json_type(m) != JSON_OBJ)
        rc = err_set(err, ERR_FORMAT, "%s: no \"model\" object", name_or_path);
    else
        rc = config_from_json(m, name_or_path, cfg, err);
    const json_t *a = json_get(root, "amg");
    if (!rc && a && json_type(a) != JSON_OBJ)   /* not silently ignored */
        rc = err_set(err, ERR_INVALID, "%s: \"amg\" is not a JSON object", name_or_path);
    if (!rc && amg_json && json_type(a) == JSON_OBJ) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        CHECK(f);
        config_write_json(f, a);
        CHECK(fclose(f) == 0);
        *amg_json = text;
    }
    json_free(root);
    return rc;
}

/* config_count_blocks: number of trunk blocks in the checkpoint */
static int config_count_blocks(weights_t *w) {
    char key[128];
    int n = 0;
    for (;;) {
        snprintf(key, sizeof key, "image_encoder.trunk.blocks.%d.norm1.weight", n);
        if (!weights_find(w, key)) return n;
        n++;
    }
}

int sam2_config_guess(const char *weights_path, sam2_config *cfg, err_t *err) {
    weights_t *w = NULL;
    int rc = weights_open(&w, weights_path, err);
    if (rc) return rc;
    const wtensor_t *pe = weights_find(w, "image_encoder.trunk.patch_embed.proj.weight");
    const wtensor_t *bk = weights_find(w, "image_encoder.trunk.pos_embed");
    const wtensor_t *nm = weights_find(w, "no_mem_embed");
    if (!pe || pe->ndim != 4 || !bk || bk->ndim != 4 || !nm || nm->ndim != 3) {
        weights_close(w);
        return err_set(err, ERR_FORMAT,
                       "%s: not a SAM 2 checkpoint (no image_encoder.trunk.patch_embed / "
                       "pos_embed / no_mem_embed)", weights_path);
    }
    /* stages: a block that widens (has .proj) starts a new stage */
    int depth = config_count_blocks(w), stages[SAM2_MAX_STAGES] = {0}, s = 0;
    char key[128];
    for (int i = 0; i < depth; i++) {
        snprintf(key, sizeof key, "image_encoder.trunk.blocks.%d.proj.weight", i);
        if (i > 0 && weights_find(w, key)) s++;
        if (s >= SAM2_MAX_STAGES) break;
        stages[s]++;
    }
    int embed = (int)pe->shape[0], bkh = (int)bk->shape[2], bkw = (int)bk->shape[3];
    int d = (int)nm->shape[2];
    weights_close(w);
    for (int i = 0; i < N_CONFIGS; i++) {
        const sam2_config *c = &config_table[i].cfg;
        if (c->embed_dim == embed && c->d_model == d &&
            c->window_pos_embed_bkg_spatial_size[0] == bkh &&
            c->window_pos_embed_bkg_spatial_size[1] == bkw &&
            !memcmp(c->stages, stages, sizeof stages)) {
            *cfg = *c;
            return 0;
        }
    }
    return err_set(err, ERR_FORMAT,
                   "%s: no built-in config matches (embed_dim %d, stages [%d,%d,%d,%d], "
                   "d_model %d): pass --config", weights_path, embed, stages[0], stages[1],
                   stages[2], stages[3], d);
}

/* ---- transformers config.json (Sam2Config) ---- */

/* hf_ints: n integers at obj[key] into out, or defaults when the key is
 * absent (transformers writes only values that differ from its defaults).
 * n == 1 also takes a plain number. -1 if present but malformed. */
static int hf_ints(const json_t *obj, const char *key, int *out, int n, const int *defaults) {
    const json_t *v = json_get(obj, key);
    if (!v) {
        memcpy(out, defaults, (size_t)n * sizeof *out);
        return 0;
    }
    if (n == 1 && json_type(v) == JSON_NUM) return config_int(obj, key, out);
    return config_int_array(obj, key, out, n) == n ? 0 : -1;
}

/* hf_num: a number at obj[key], default when absent; -1 if not a number */
static int hf_num(const json_t *obj, const char *key, double def, double *out) {
    const json_t *v = json_get(obj, key);
    *out = v ? json_num(v) : def;
    return v && json_type(v) != JSON_NUM ? -1 : 0;
}

int sam2_config_load_hf(const char *path, sam2_config *cfg, err_t *err) {
    json_t *root = NULL;
    int rc = json_parse_file(&root, path, err);
    if (rc) return rc;
    memset(cfg, 0, sizeof *cfg);
    const json_t *vis = json_get(root, "vision_config");
    const json_t *bb = json_get(vis, "backbone_config");
    const json_t *pe = json_get(root, "prompt_encoder_config");
    const json_t *md = json_get(root, "mask_decoder_config");
    const char *mt = json_str(json_get(root, "model_type"));
    const char *bad = NULL, *why = "is missing or malformed";
    char badbuf[96];
    /* transformers' defaults (configuration_sam2.py): the tiny model */
    static const int d_embed = 96, d_heads = 1, d_stages[4] = {1, 2, 7, 2},
                     d_global[3] = {5, 7, 9}, d_win[4] = {8, 4, 14, 7}, d_bkg[2] = {7, 7},
                     d_dims[4] = {96, 192, 384, 768}, d_hps[4] = {1, 2, 4, 8},
                     d_img2[2] = {1024, 1024}, d_k[2] = {7, 7}, d_s[2] = {4, 4},
                     d_p[2] = {3, 3}, d_q[2] = {2, 2}, d_qpool = 3, d_fpn = 256, d_img = 1024,
                     d_chan[4] = {768, 384, 192, 96};
    int dims[4], hps[4], img2[2], k[2], s[2], p[2], q[2], qpool, img, chan[4], pe_h = 0,
        md_h = 0;
    double mlp_ratio;
    if (json_type(root) != JSON_OBJ || (mt && strcmp(mt, "sam2") && strcmp(mt, "sam2_video"))) {
        rc = err_set(err, ERR_FORMAT, "%s: not a transformers SAM 2 config (model_type %s%s%s)",
                     path, mt ? "'" : "", mt ? mt : "missing", mt ? "'" : "");
        goto done;
    }
    if (vis && json_type(vis) != JSON_OBJ) bad = "vision_config";
    else if (bb && json_type(bb) != JSON_OBJ) bad = "vision_config.backbone_config";
    else if (hf_ints(bb, "hidden_size", &cfg->embed_dim, 1, &d_embed)) bad = "hidden_size";
    else if (hf_ints(bb, "num_attention_heads", &cfg->num_heads, 1, &d_heads)) bad = "num_attention_heads";
    else if (hf_ints(bb, "blocks_per_stage", cfg->stages, 4, d_stages)) bad = "blocks_per_stage";
    else if (hf_ints(bb, "window_size_per_stage", cfg->window_spec, 4, d_win)) bad = "window_size_per_stage";
    else if (hf_ints(bb, "window_positional_embedding_background_size",
                     cfg->window_pos_embed_bkg_spatial_size, 2, d_bkg))
        bad = "window_positional_embedding_background_size";
    else if (hf_ints(bb, "embed_dim_per_stage", dims, 4, d_dims)) bad = "embed_dim_per_stage";
    else if (hf_ints(bb, "num_attention_heads_per_stage", hps, 4, d_hps)) bad = "num_attention_heads_per_stage";
    else if (hf_ints(bb, "image_size", img2, 2, d_img2)) bad = "image_size";
    else if (hf_ints(bb, "patch_kernel_size", k, 2, d_k)) bad = "patch_kernel_size";
    else if (hf_ints(bb, "patch_stride", s, 2, d_s)) bad = "patch_stride";
    else if (hf_ints(bb, "patch_padding", p, 2, d_p)) bad = "patch_padding";
    else if (hf_ints(bb, "query_stride", q, 2, d_q)) bad = "query_stride";
    else if (hf_ints(bb, "num_query_pool_stages", &qpool, 1, &d_qpool)) bad = "num_query_pool_stages";
    else if (hf_num(bb, "mlp_ratio", 4.0, &mlp_ratio)) bad = "mlp_ratio";
    else if (hf_ints(vis, "fpn_hidden_size", &cfg->d_model, 1, &d_fpn)) bad = "fpn_hidden_size";
    else if (hf_ints(vis, "backbone_channel_list", chan, 4, d_chan)) bad = "backbone_channel_list";
    else if (hf_ints(pe, "image_size", &img, 1, &d_img)) bad = "prompt_encoder_config.image_size";
    else if (hf_ints(pe, "hidden_size", &pe_h, 1, &d_fpn)) bad = "prompt_encoder_config.hidden_size";
    else if (hf_ints(md, "hidden_size", &md_h, 1, &d_fpn)) bad = "mask_decoder_config.hidden_size";
    /* the decoder and prompt encoder values sam2amg hard-wires (decoder.c):
     * name, transformers' default (= the official value) */
    static const struct { const char *key; int def; } fixed[] = {
        {"mlp_dim", 2048}, {"num_attention_heads", 8}, {"num_hidden_layers", 2},
        {"attention_downsample_rate", 2}, {"num_multimask_outputs", 3}, {"iou_head_depth", 3},
        {"iou_head_hidden_dim", 256}, {"mask_input_channels", 16}, {"num_point_embeddings", 4},
        {"patch_size", 16},
    };
    for (size_t i = 0; !bad && i < sizeof fixed / sizeof fixed[0]; i++) {
        const json_t *obj = i < 7 ? md : pe;
        int val;
        int malformed = hf_ints(obj, fixed[i].key, &val, 1, &fixed[i].def);
        if (malformed || val != fixed[i].def) {
            snprintf(badbuf, sizeof badbuf, "%s.%s", i < 7 ? "mask_decoder_config" : "prompt_encoder_config",
                     fixed[i].key);
            bad = badbuf;
            why = malformed ? "is malformed"
                            : "is not supported (sam2amg implements the official SAM 2 values)";
        }
    }
    if (!bad) {
        /* the global-attention list has any length up to SAM2_MAX_GLOBAL */
        const json_t *g = json_get(bb, "global_attention_blocks");
        if (!g) {
            memcpy(cfg->global_att_blocks, d_global, sizeof d_global);
            cfg->n_global = 3;
        } else if ((cfg->n_global = config_int_array(bb, "global_attention_blocks",
                                                     cfg->global_att_blocks, SAM2_MAX_GLOBAL)) < 0) {
            bad = "global_attention_blocks";
        }
    }
    /* what sam2amg's Hiera hard-wires (the official yaml values) */
    if (!bad) why = "is not supported (sam2amg implements the official SAM 2 values)";
    if (bad) {
        /* why already says what is wrong */
    } else if (k[0] != 7 || k[1] != 7 || s[0] != 4 || s[1] != 4 || p[0] != 3 || p[1] != 3) {
        bad = "patch_kernel_size/patch_stride/patch_padding";
    } else if (q[0] != 2 || q[1] != 2 || qpool != 3) {
        bad = "query_stride/num_query_pool_stages";
    } else if (mlp_ratio != 4.0) {
        bad = "mlp_ratio";
    } else if (img2[0] != img2[1] || img2[0] != img) {
        bad = "image_size (backbone and prompt encoder differ)";
    } else if (pe_h != cfg->d_model || md_h != cfg->d_model) {
        bad = "hidden_size (prompt encoder / mask decoder differ from fpn_hidden_size)";
    } else if (cfg->embed_dim <= 0 || cfg->num_heads <= 0) {
        /* before the shifts below: a negative value shifted is undefined */
        bad = "hidden_size/num_attention_heads";
        why = "is not a positive number";
    } else {
        for (int i = 0; i < 4 && !bad; i++) {
            if (dims[i] != cfg->embed_dim << i || hps[i] != cfg->num_heads << i) {
                snprintf(badbuf, sizeof badbuf, "embed_dim_per_stage/num_attention_heads_per_stage[%d]", i);
                bad = badbuf;
                why = "is not hidden_size/num_attention_heads doubled per stage";
            } else if (chan[3 - i] != dims[i]) {
                bad = "backbone_channel_list";
                why = "is not embed_dim_per_stage reversed";
            }
        }
    }
    if (bad) {
        rc = err_set(err, ERR_FORMAT, "%s: %s %s", path, bad, why);
        goto done;
    }
    cfg->image_size = img;
    snprintf(cfg->name, sizeof cfg->name, "config.json");
    for (int i = 0; i < N_CONFIGS; i++) {
        sam2_config c = config_table[i].cfg;
        memcpy(c.name, cfg->name, sizeof c.name);
        if (!memcmp(&c, cfg, sizeof c)) {
            *cfg = config_table[i].cfg;
            break;
        }
    }
done:
    json_free(root);
    return rc;
}
