/* cmd_models.c: `sam2amg models`: the checkpoints this machine holds
 * (model directories and the Hugging Face hub cache), and `models resolve
 * NAME`: what a --model NAME would open, without loading it. Both only read
 * the file system (models.h); nothing is downloaded.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "models.h"

static const char *models_usage =
    "usage: sam2amg models [--json] [--model-dir DIR]\n"
    "       sam2amg models resolve NAME [--revision REV] [--model-dir DIR] [--json]\n"
    "\n"
    "Lists the SAM 2 / 2.1 checkpoints found offline, one per line: source,\n"
    "repo id, revision, file, size, config, SAM version, path. Looked in:\n"
    "--model-dir DIR, each directory of $SAM2AMG_MODELS (colon-separated), and\n"
    "the Hugging Face hub cache ($HF_HUB_CACHE, else $HF_HOME/hub, else\n"
    "~/.cache/huggingface/hub).\n"
    "\n"
    "'resolve NAME' prints the file that --model NAME opens (NAME: a path, a\n"
    "repo id such as facebook/sam2.1-hiera-large or hf://..., or a checkpoint\n"
    "name such as sam2.1_hiera_large); exit 1 with where it looked and the\n"
    "command that fetches it when it is not there.\n"
    "\n"
    "  --json            a JSON array (list) or object (resolve)\n"
    "  --model-dir DIR   also look in DIR\n"
    "  --revision REV    a ref (main) or commit of a hub-cache repo\n";

/* print_ref: the resolution of name, as text lines or one JSON object */
static void print_ref(const char *name, const models_ref *r, int json) {
    const char *src = r->src == MODELS_SRC_HF_CACHE    ? "hf-cache"
                      : r->src == MODELS_SRC_MODEL_DIR ? "model-dir"
                                                       : "path";
    const char *ver = r->sam_version == 21 ? "2.1" : r->sam_version == 20 ? "2.0" : "";
    if (!json) {
        printf("%s\n", r->path);
        printf("name:        %s\nsource:      %s\n", name, src);
        if (r->repo[0]) printf("repo:        %s\nrevision:    %s\n", r->repo, r->revision);
        printf("file:        %s\nformat:      %s\n", r->file,
               r->hf_format ? "transformers" : "official");
        if (r->config[0]) printf("config:      %s\n", r->config);
        if (r->config_json[0]) printf("config.json: %s\n", r->config_json);
        if (ver[0]) printf("sam:         %s\n", ver);
        return;
    }
    printf("{\"name\":");
    json_write_string(stdout, name);
    printf(",\"path\":");
    json_write_string(stdout, r->path);
    printf(",\"source\":\"%s\",\"repo\":", src);
    if (r->repo[0]) json_write_string(stdout, r->repo); else fputs("null", stdout);
    printf(",\"revision\":");
    if (r->revision[0]) json_write_string(stdout, r->revision); else fputs("null", stdout);
    printf(",\"file\":");
    json_write_string(stdout, r->file);
    printf(",\"format\":\"%s\",\"config\":", r->hf_format ? "transformers" : "official");
    if (r->config[0]) json_write_string(stdout, r->config); else fputs("null", stdout);
    printf(",\"config_json\":");
    if (r->config_json[0]) json_write_string(stdout, r->config_json); else fputs("null", stdout);
    printf(",\"sam_version\":");
    if (ver[0]) printf("\"%s\"", ver); else fputs("null", stdout);
    printf("}\n");
}

int cmd_models(int argc, char **argv) {
    const char *cmd = "models", *name = NULL;
    models_opts o = {0};
    int json = 0, resolve = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(models_usage, stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--model-dir") || !strcmp(a, "--revision")) {
            if (!v || cli_looks_like_flag(v)) return cli_usage_error(cmd, "%s needs a value", a);
            if (!strcmp(a, "--model-dir")) o.model_dir = v;
            else o.revision = v;
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!resolve && !strcmp(a, "resolve") && !name) {
            resolve = 1;
        } else if (resolve && !name) {
            name = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        }
    }
    if (!resolve) {
        if (o.revision) return cli_usage_error(cmd, "--revision goes with 'resolve NAME'");
        int n = models_list(stdout, &o, json);
        if (!json && n == 0) {
            char root[MODELS_PATH_MAX];
            int have = !models_hub_cache(root, sizeof root, NULL);
            fprintf(stderr,
                    "sam2amg models: no checkpoints found (hub cache %s%s; model dirs: "
                    "--model-dir, $SAM2AMG_MODELS); fetch one with: hf download "
                    "facebook/sam2.1-hiera-large sam2.1_hiera_large.pt\n",
                    have ? root : "unset", have ? "" : " (no HF_HUB_CACHE, HF_HOME or HOME)");
        }
        return EXIT_OK;
    }
    if (!name || !*name) return cli_usage_error(cmd, "resolve needs a NAME%s", name ? " (got '')" : "");
    models_ref r;
    if (models_resolve(name, &o, &r)) {
        fprintf(stderr, "sam2amg models: %s\n", r.msg);
        return EXIT_DATA;
    }
    print_ref(name, &r, json);
    return EXIT_OK;
}
