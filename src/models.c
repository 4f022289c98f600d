/* models.c: resolve --model names offline (model directories, the Hugging
 * Face hub cache) and list the checkpoints found; see models.h.
 *
 * Why our own reader of the hub cache instead of asking users for paths:
 * the official sam2 package and transformers both fetch with
 * huggingface_hub, so most machines that ever ran SAM 2 already hold the
 * weights under ~/.cache/huggingface/hub, behind a symlink with a hash for a
 * name. We read that layout (refs/REV -> snapshots/COMMIT/FILE -> blobs/)
 * and nothing else: no network, no lock files, no writes.
 */
#include "models.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "model.h"
#include "weights.h"

/* The official checkpoints: Hugging Face repo, file, built-in config. */
typedef struct models_known {
    const char *repo, *file, *config;
    int sam_version;
} models_known;

static const models_known known[] = {
    {"facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt", "tiny", 21},
    {"facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt", "small", 21},
    {"facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_base_plus.pt", "base_plus", 21},
    {"facebook/sam2.1-hiera-large", "sam2.1_hiera_large.pt", "large", 21},
    {"facebook/sam2-hiera-tiny", "sam2_hiera_tiny.pt", "tiny", 20},
    {"facebook/sam2-hiera-small", "sam2_hiera_small.pt", "small", 20},
    {"facebook/sam2-hiera-base-plus", "sam2_hiera_base_plus.pt", "base_plus", 20},
    {"facebook/sam2-hiera-large", "sam2_hiera_large.pt", "large", 20},
};
#define N_KNOWN ((int)(sizeof known / sizeof known[0]))

/* The transformers files of a repo (Sam2Model.save_pretrained). */
#define HF_WEIGHTS "model.safetensors"
#define HF_CONFIG "config.json"

/* ---- small helpers ---- */

/* sfmt: snprintf that says whether the text fit (0) or was cut (-1); paths
 * and messages here are bounded by their buffers on purpose */
static int sfmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sfmt(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* join: "a/b" into out; -1 if it does not fit */
static int join(char *out, size_t cap, const char *a, const char *b) {
    return sfmt(out, cap, "%s/%s", a, b);
}

static int is_dir(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* appendf: printf onto the end of buf (truncates silently: messages only) */
static void appendf(char *buf, size_t cap, const char *fmt, ...) {
    size_t n = strlen(buf);
    if (n + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

int models_known_file(const char *name, const char **repo, const char **config,
                      int *sam_version) {
    size_t n = strlen(name);
    if (ends_with(name, ".pt")) n -= 3;
    for (int i = 0; i < N_KNOWN; i++) {
        size_t m = strlen(known[i].file) - 3;
        if (n == m && !strncmp(name, known[i].file, m)) {
            if (repo) *repo = known[i].repo;
            if (config) *config = known[i].config;
            if (sam_version) *sam_version = known[i].sam_version;
            return 1;
        }
    }
    return 0;
}

static const models_known *known_repo(const char *repo) {
    for (int i = 0; i < N_KNOWN; i++)
        if (!strcmp(repo, known[i].repo)) return &known[i];
    return NULL;
}

/* sam_version_of: 21 / 20 from a repo id or file name, 0 if it says neither */
static int sam_version_of(const char *s) {
    const char *b = strrchr(s, '/');
    b = b ? b + 1 : s;
    if (!strncmp(b, "sam2.1", 6) || strstr(s, "sam2.1-")) return 21;
    if (!strncmp(b, "sam2_", 5) || !strncmp(b, "sam2-", 5)) return 20;
    return 0;
}

int models_hub_cache(char *out, size_t cap, const char **why) {
    const char *v;
    int n = -1;
    *out = 0;
    if ((v = getenv("HF_HUB_CACHE")) && *v) {
        n = sfmt(out, cap, "%s", v);
        if (why) *why = "HF_HUB_CACHE";
    } else if ((v = getenv("HUGGINGFACE_HUB_CACHE")) && *v) {
        n = sfmt(out, cap, "%s", v);
        if (why) *why = "HUGGINGFACE_HUB_CACHE";
    } else if ((v = getenv("HF_HOME")) && *v) {
        n = sfmt(out, cap, "%s/hub", v);
        if (why) *why = "HF_HOME";
    } else if ((v = getenv("XDG_CACHE_HOME")) && *v) {
        n = sfmt(out, cap, "%s/huggingface/hub", v);
        if (why) *why = "XDG_CACHE_HOME";
    } else if ((v = getenv("HOME")) && *v) {
        n = sfmt(out, cap, "%s/.cache/huggingface/hub", v);
        if (why) *why = "HOME";
    }
    return n;
}

/* model_dirs: --model-dir then the entries of $SAM2AMG_MODELS, into
 * dirs[] (pointers into buf); returns the count */
static int model_dirs(const models_opts *o, char *buf, size_t cap, const char **dirs, int max) {
    int n = 0;
    if (o && o->model_dir && *o->model_dir && n < max) dirs[n++] = o->model_dir;
    const char *env = getenv("SAM2AMG_MODELS");
    if (!env || !*env) return n;
    if (sfmt(buf, cap, "%s", env)) {
        /* cut short: the last entry is part of a name (another folder) */
        char *c = strrchr(buf, ':');
        *(c ? c : buf) = 0;
    }
    for (char *save = NULL, *t = strtok_r(buf, ":", &save); t && n < max;
         t = strtok_r(NULL, ":", &save))
        if (*t) dirs[n++] = t;
    return n;
}

/* fetch_hint: the commands that would fetch repo (file: NULL for "the
 * official file or the transformers files") */
static void fetch_hint(char *msg, size_t cap, const char *repo, const char *file) {
    const models_known *k = repo ? known_repo(repo) : NULL;
    if (!file && k) file = k->file;
    if (repo && file)
        appendf(msg, cap, "; fetch it with: hf download %s %s", repo, file);
    else if (repo)
        appendf(msg, cap, "; fetch it with: hf download %s", repo);
    if (k)
        appendf(msg, cap,
                " (or the official sam2 checkpoints/download_ckpts.sh, then --model-dir "
                "checkpoints; or 'hf download %s " HF_WEIGHTS " " HF_CONFIG "' for the "
                "transformers format)", k->repo);
    appendf(msg, cap, "; sam2amg itself never downloads");
}

/* ---- the hub cache ---- */

/* repo_dir: ROOT/models--ORG--NAME for "ORG/NAME" */
static int repo_dir(char *out, size_t cap, const char *root, const char *repo) {
    char name[512];
    size_t j = 0;
    memcpy(name, "models--", 8);
    j = 8;
    for (const char *p = repo; *p && j + 3 < sizeof name; p++) {
        if (*p == '/') name[j++] = '-', name[j++] = '-';
        else name[j++] = *p;
    }
    name[j] = 0;
    return join(out, cap, root, name);
}

/* snapshot_name_ok: a commit usable as one path component under
 * snapshots/ ("." and ".." would name snapshots/ or the repo folder) */
static int snapshot_name_ok(const char *c) {
    return *c && !strchr(c, '/') && strcmp(c, ".") && strcmp(c, "..");
}

/* read_ref: the commit that dir/refs/rev names; 1 found, 0 no such ref */
static int read_ref(const char *dir, const char *rev, char *commit, size_t cap) {
    char p[MODELS_PATH_MAX], sub[512];
    sfmt(sub, sizeof sub, "refs/%s", rev);
    if (join(p, sizeof p, dir, sub)) return 0;
    /* a regular file only: a FIFO would block the open, a device (a link
     * to /dev/zero) gives no commit */
    struct stat st;
    if (stat(p, &st) || !S_ISREG(st.st_mode)) return 0;
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    size_t n = fread(commit, 1, cap - 1, f);
    fclose(f);
    commit[n] = 0;
    if (strlen(commit) != n) return 0;   /* a NUL byte: not a commit */
    /* a hand-edited ref may carry a newline, CRLF or tabs around the hash */
    while (n && isspace((unsigned char)commit[n - 1])) commit[--n] = 0;
    size_t lead = strspn(commit, " \t\r\n\v\f");
    memmove(commit, commit + lead, n - lead + 1);
    return commit[0] && snapshot_name_ok(commit);
}

/* check_file: dir/file is a readable regular file (following symlinks).
 * Returns 1 yes, 0 absent, -1 present but a broken symlink, not a file,
 * not readable or behind a folder we may not search (message in r->msg) */
static int check_file(models_ref *r, const char *dir, const char *file, char *out, size_t cap,
                      const char *repo) {
    struct stat st;
    if (join(out, cap, dir, file)) return 0;
    if (lstat(out, &st)) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG) return 0;
        /* EACCES on the folder: the file may well be there */
        sfmt(r->msg, sizeof r->msg, "%s: %s", out, strerror(errno));
        return -1;
    }
    if (stat(out, &st)) {
        char target[MODELS_PATH_MAX] = "?";
        ssize_t n = readlink(out, target, sizeof target - 1);
        if (n >= 0) target[n] = 0;
        sfmt(r->msg, sizeof r->msg,
                 "%s is a broken symlink (to %s: %s; an interrupted or cleaned-up download?)",
                 out, target, strerror(errno));
        fetch_hint(r->msg, sizeof r->msg, repo, repo ? file : NULL);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        sfmt(r->msg, sizeof r->msg, "%s is not a regular file", out);
        return -1;
    }
    if (access(out, R_OK)) {
        sfmt(r->msg, sizeof r->msg, "%s: %s", out, strerror(errno));
        return -1;
    }
    return 1;
}

/* resolve_repo: repo ("ORG/NAME"), file (NULL: the official file, else
 * model.safetensors, else the snapshot's only .pt) at o->revision.
 * Returns 1 found, 0 repo not in the cache (looked-at path appended to
 * where), negative ERR_ with r->msg set. */
static int resolve_repo(models_ref *r, const char *root, const char *repo, const char *file,
                        const models_opts *o, char *where, size_t wcap) {
    char dir[MODELS_PATH_MAX], snap[MODELS_PATH_MAX], commit[256], sub[512];
    if (repo_dir(dir, sizeof dir, root, repo)) return 0;
    if (!is_dir(dir)) {
        appendf(where, wcap, "%s%s (absent)", *where ? ", " : "", dir);
        return 0;
    }
    const char *rev = o && o->revision && *o->revision ? o->revision : "main";
    if (!read_ref(dir, rev, commit, sizeof commit)) {
        /* a commit given directly: snapshots/COMMIT */
        sfmt(sub, sizeof sub, "snapshots/%s", rev);
        char p[MODELS_PATH_MAX];
        if (!snapshot_name_ok(rev) || join(p, sizeof p, dir, sub) || !is_dir(p)) {
            sfmt(r->msg, sizeof r->msg,
                     "%s: no revision '%s' in the cache (neither %s/refs/%s nor %s/snapshots/%s)",
                     repo, rev, dir, rev, dir, rev);
            fetch_hint(r->msg, sizeof r->msg, repo, file);
            if (strcmp(rev, "main")) appendf(r->msg, sizeof r->msg, " --revision %s", rev);
            return ERR_IO;
        }
        sfmt(commit, sizeof commit, "%s", rev);
    }
    sfmt(sub, sizeof sub, "snapshots/%s", commit);
    if (join(snap, sizeof snap, dir, sub) || !is_dir(snap)) {
        sfmt(r->msg, sizeof r->msg, "%s: refs/%s names snapshot %s, which is not in %s/snapshots",
                 repo, rev, commit, dir);
        fetch_hint(r->msg, sizeof r->msg, repo, file);
        return ERR_IO;
    }
    const models_known *k = known_repo(repo);
    const char *cands[3] = {0};
    int nc = 0;
    if (file) {
        cands[nc++] = file;
    } else {
        if (k) cands[nc++] = k->file;
        cands[nc++] = HF_WEIGHTS;
    }
    char found[MODELS_PATH_MAX], only_pt[256] = "";
    for (int i = 0; i < nc; i++) {
        int c = check_file(r, snap, cands[i], found, sizeof found, repo);
        if (c < 0) return ERR_IO;
        if (c > 0) {
            sfmt(r->file, sizeof r->file, "%s", cands[i]);
            goto hit;
        }
    }
    if (!file && !k) { /* an unknown repo: its only .pt */
        DIR *d = opendir(snap);
        int npt = 0;
        for (struct dirent *e; d && (e = readdir(d));)
            if (ends_with(e->d_name, ".pt") && npt++ == 0)
                sfmt(only_pt, sizeof only_pt, "%s", e->d_name);
        if (d) closedir(d);
        if (npt == 1) {
            int c = check_file(r, snap, only_pt, found, sizeof found, repo);
            if (c < 0) return ERR_IO;
            if (c > 0) {
                sfmt(r->file, sizeof r->file, "%s", only_pt);
                goto hit;
            }
        }
    }
    sfmt(r->msg, sizeof r->msg, "%s: snapshot %s (%s) has no %s%s%s", repo, commit, snap,
             cands[0], nc > 1 ? " or " : "", nc > 1 ? cands[1] : "");
    fetch_hint(r->msg, sizeof r->msg, repo, file);
    if (strcmp(rev, "main")) appendf(r->msg, sizeof r->msg, " --revision %s", rev);
    return ERR_IO;
hit:
    r->src = MODELS_SRC_HF_CACHE;
    sfmt(r->path, sizeof r->path, "%s", found);
    sfmt(r->repo, sizeof r->repo, "%s", repo);
    sfmt(r->revision, sizeof r->revision, "%s", commit);
    char cj[MODELS_PATH_MAX];
    struct stat st;
    if (!join(cj, sizeof cj, snap, HF_CONFIG) && !stat(cj, &st) && S_ISREG(st.st_mode))
        sfmt(r->config_json, sizeof r->config_json, "%s", cj);
    return 1;
}

/* valid_repo: "ORG/NAME" with the characters Hugging Face allows */
static int valid_repo(const char *s, size_t n) {
    int slash = 0;
    if (n == 0 || s[0] == '/' || s[0] == '.' || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '/') {
            if (++slash > 1 || i + 1 == n || s[i + 1] == '/') return 0;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.')) {
            return 0;
        }
    }
    return slash == 1;
}

/* describe: fill r->config / sam_version / hf_format from the file name */
static void describe(models_ref *r) {
    const char *cfg = NULL;
    int v = 0;
    if (models_known_file(r->file, NULL, &cfg, &v)) {
        sfmt(r->config, sizeof r->config, "%s", cfg);
        r->sam_version = v;
    } else {
        r->sam_version = sam_version_of(r->repo[0] ? r->repo : r->file);
        const models_known *k = r->repo[0] ? known_repo(r->repo) : NULL;
        if (k) sfmt(r->config, sizeof r->config, "%s", k->config);
    }
    r->hf_format = !strcmp(r->file, HF_WEIGHTS);
}

/* resolve_path: name is an existing file, or a directory holding one
 * checkpoint (transformers save_pretrained: model.safetensors) */
static int resolve_path(models_ref *r, const char *name) {
    struct stat st;
    if (stat(name, &st)) {
        /* not there: maybe a name; there but unreachable: say why */
        if (errno != EACCES && errno != ELOOP) return 0;
        sfmt(r->msg, sizeof r->msg, "%s: %s", name, strerror(errno));
        return ERR_IO;
    }
    const char *b = strrchr(name, '/');
    if (S_ISDIR(st.st_mode)) {
        char p[MODELS_PATH_MAX];
        int c = check_file(r, name, HF_WEIGHTS, p, sizeof p, NULL);
        if (c < 0) return ERR_IO;
        if (c == 0) {
            sfmt(r->msg, sizeof r->msg,
                     "%s is a directory without " HF_WEIGHTS " (give the checkpoint file, or "
                     "--model-dir %s and a name)", name, name);
            return ERR_IO;
        }
        sfmt(r->path, sizeof r->path, "%s", p);
        sfmt(r->file, sizeof r->file, HF_WEIGHTS);
        char cj[MODELS_PATH_MAX];
        if (!join(cj, sizeof cj, name, HF_CONFIG) && !stat(cj, &st) && S_ISREG(st.st_mode))
            sfmt(r->config_json, sizeof r->config_json, "%s", cj);
    } else {
        sfmt(r->path, sizeof r->path, "%s", name);
        sfmt(r->file, sizeof r->file, "%s", b ? b + 1 : name);
    }
    r->src = MODELS_SRC_PATH;
    return 1;
}

int models_resolve(const char *name, const models_opts *o, models_ref *r) {
    memset(r, 0, sizeof *r);
    if (!name || !*name) {
        sfmt(r->msg, sizeof r->msg, "no model name");
        return ERR_INVALID;
    }
    int hf = !strncmp(name, "hf://", 5);
    int rc;
    if (!hf && (rc = resolve_path(r, name)) != 0) {
        if (rc > 0) describe(r);
        return rc < 0 ? rc : 0;
    }
    /* "ORG/NAME/" (a shell's completion, a copied URL path): ORG/NAME */
    char trimmed[512];
    const char *s = hf ? name + 5 : name;
    size_t sl = strlen(s);
    if (sl > 1 && sl < sizeof trimmed && s[sl - 1] == '/') {
        memcpy(trimmed, s, sl - 1);
        trimmed[sl - 1] = 0;
        const char *first = strchr(trimmed, '/');
        if (first && first > trimmed && first[1] && !strchr(first + 1, '/')) s = trimmed;
    }
    char where[1536] = "", root[MODELS_PATH_MAX];
    const char *root_why = NULL;
    int have_root = !models_hub_cache(root, sizeof root, &root_why);
    char repo[256] = "", file[256] = "";
    const char *slash = strchr(s, '/');
    if (slash) {
        /* ORG/NAME or ORG/NAME/FILE */
        const char *second = strchr(slash + 1, '/');
        size_t rn = second ? (size_t)(second - s) : strlen(s);
        int filelike = !second && (ends_with(s, ".pt") || ends_with(s, ".safetensors"));
        if (filelike || !valid_repo(s, rn) || rn >= sizeof repo ||
            (second && (!second[1] || strchr(second + 1, '/')))) {
            sfmt(r->msg, sizeof r->msg,
                     "%s: no such file, and not a Hugging Face repo id (ORG/NAME, optionally "
                     "hf://ORG/NAME or ORG/NAME/FILE)", name);
            return ERR_IO;
        }
        memcpy(repo, s, rn);
        repo[rn] = 0;
        if (second && sfmt(file, sizeof file, "%s", second + 1)) {
            /* cut short it could name another file of the snapshot */
            sfmt(r->msg, sizeof r->msg, "%s: file name longer than %zu bytes", name, sizeof file - 1);
            return ERR_INVALID;
        }
        if (have_root) {
            rc = resolve_repo(r, root, repo, file[0] ? file : NULL, o, where, sizeof where);
            if (rc < 0) return rc;
            if (rc > 0) goto found;
        }
        sfmt(r->msg, sizeof r->msg, "model '%s' not found offline: looked in %s%s%s", name,
                 have_root ? where : "no hub cache (HF_HUB_CACHE, HF_HOME and HOME unset)",
                 root_why ? " (hub cache from $" : "", root_why ? root_why : "");
        if (root_why) appendf(r->msg, sizeof r->msg, ")");
        fetch_hint(r->msg, sizeof r->msg, repo, file[0] ? file : NULL);
        return ERR_IO;
    }
    /* a bare name: the model directories, then the cache */
    if (hf) {
        sfmt(r->msg, sizeof r->msg, "%s: hf:// needs a repo id (hf://ORG/NAME)", name);
        return ERR_INVALID;
    }
    char dirbuf[MODELS_PATH_MAX];
    const char *dirs[16];
    int nd = model_dirs(o, dirbuf, sizeof dirbuf, dirs, 16);
    const char *exts[] = {"", ".pt", ".safetensors"};
    for (int d = 0; d < nd; d++) {
        for (int e = 0; e < 3; e++) {
            char fname[512], p[MODELS_PATH_MAX];
            sfmt(fname, sizeof fname, "%s%s", name, exts[e]);
            int c = check_file(r, dirs[d], fname, p, sizeof p, NULL);
            if (c < 0) return ERR_IO;
            if (c > 0) {
                r->src = MODELS_SRC_MODEL_DIR;
                sfmt(r->path, sizeof r->path, "%s", p);
                sfmt(r->file, sizeof r->file, "%s", fname);
                goto found;
            }
        }
        appendf(where, sizeof where, "%s%s", *where ? ", " : "", dirs[d]);
    }
    const char *krepo = NULL;
    if (models_known_file(name, &krepo, NULL, NULL)) {
        char kfile[256];
        sfmt(kfile, sizeof kfile, "%s%s", name, ends_with(name, ".pt") ? "" : ".pt");
        if (have_root) {
            /* the official file, else (name given without ".pt") the
             * transformers model.safetensors of the same repo */
            rc = resolve_repo(r, root, krepo, kfile, o, where, sizeof where);
            if (rc == ERR_IO && !ends_with(name, ".pt")) {
                char save[sizeof r->msg];
                sfmt(save, sizeof save, "%s", r->msg);
                int rc2 = resolve_repo(r, root, krepo, HF_WEIGHTS, o, where, sizeof where);
                if (rc2 > 0) goto found;
                sfmt(r->msg, sizeof r->msg, "%s", save);
            }
            if (rc < 0) return rc;
            if (rc > 0) goto found;
        }
        sfmt(r->msg, sizeof r->msg, "model '%s' not found offline: looked in %s%s", name,
                 *where ? where : "",
                 have_root ? "" : (*where ? ", no hub cache (HF_HUB_CACHE, HF_HOME and HOME unset)"
                                          : "no hub cache (HF_HUB_CACHE, HF_HOME and HOME unset)"));
        if (root_why) appendf(r->msg, sizeof r->msg, " (hub cache from $%s)", root_why);
        if (!nd) appendf(r->msg, sizeof r->msg, " (no --model-dir or $SAM2AMG_MODELS)");
        fetch_hint(r->msg, sizeof r->msg, krepo, kfile);
        return ERR_IO;
    }
    sfmt(r->msg, sizeof r->msg,
             "model '%s' not found: not a file%s%s%s, and not an official checkpoint name "
             "(sam2.1_hiera_{tiny,small,base_plus,large}, sam2_hiera_..., or a repo id such as "
             "facebook/sam2.1-hiera-large)", name, nd ? ", not in " : "", nd ? where : "",
             nd ? "" : " (no --model-dir or $SAM2AMG_MODELS given)");
    return ERR_IO;
found:
    describe(r);
    return 0;
}

/* ---- listing ---- */

typedef struct list_ctx {
    FILE *f;
    int json, n;
} list_ctx;

/* config_column: the config a --model of this file would use (the order
 * of cli_load_config): its config.json, else its name's, else guessed from
 * its shapes; "?" when none fits */
static void config_column(const models_ref *r, char *out, size_t cap) {
    sam2_config c;
    err_t err = {{0}};
    if (r->config_json[0] && !sam2_config_load_hf(r->config_json, &c, &err)) {
        sfmt(out, cap, "%s", c.name);
    } else if (r->config[0]) {
        sfmt(out, cap, "%s", r->config);
    } else if (!sam2_config_guess(r->path, &c, &err)) {
        sfmt(out, cap, "%s", c.name);
    } else {
        sfmt(out, cap, "?");
    }
}

static void list_one(list_ctx *L, const models_ref *r, const char *refname) {
    struct stat st;
    int64_t size = !stat(r->path, &st) ? (int64_t)st.st_size : -1;
    char cfg[64], ver[8];
    config_column(r, cfg, sizeof cfg);
    sfmt(ver, sizeof ver, "%s", r->sam_version == 21 ? "2.1" : r->sam_version == 20 ? "2.0" : "?");
    const char *src = r->src == MODELS_SRC_HF_CACHE ? "hf-cache" : "model-dir";
    char rev[300];
    if (r->revision[0])
        sfmt(rev, sizeof rev, "%s%s%.12s", refname ? refname : "", refname ? "@" : "", r->revision);
    else
        sfmt(rev, sizeof rev, "-");
    if (L->json) {
        fputs(L->n ? ",\n  {" : "[\n  {", L->f);
        fputs("\"source\":", L->f), json_write_string(L->f, src);
        fputs(",\"repo\":", L->f);
        if (r->repo[0]) json_write_string(L->f, r->repo); else fputs("null", L->f);
        fputs(",\"ref\":", L->f);
        if (refname) json_write_string(L->f, refname); else fputs("null", L->f);
        fputs(",\"revision\":", L->f);
        if (r->revision[0]) json_write_string(L->f, r->revision); else fputs("null", L->f);
        fputs(",\"file\":", L->f), json_write_string(L->f, r->file);
        fprintf(L->f, ",\"size\":%lld", (long long)size);
        fputs(",\"config\":", L->f), json_write_string(L->f, cfg);
        fputs(",\"sam_version\":", L->f);
        if (r->sam_version) fprintf(L->f, "\"%s\"", ver); else fputs("null", L->f);
        fprintf(L->f, ",\"format\":\"%s\"", r->hf_format ? "transformers" : "official");
        fputs(",\"path\":", L->f), json_write_string(L->f, r->path);
        fputc('}', L->f);
    } else {
        if (!L->n)
            fprintf(L->f, "%-9s  %-32s  %-19s  %-26s  %9s  %-9s  %-3s  %s\n", "SOURCE", "REPO",
                    "REVISION", "FILE", "SIZE", "CONFIG", "SAM", "PATH");
        char sz[32];
        if (size < 0) sfmt(sz, sizeof sz, "?");
        else if (size >= 1000000) sfmt(sz, sizeof sz, "%.1f MB", (double)size / 1e6);
        else sfmt(sz, sizeof sz, "%.1f kB", (double)size / 1e3);
        fprintf(L->f, "%-9s  %-32s  %-19s  %-26s  %9s  %-9s  %-3s  %s\n", src,
                r->repo[0] ? r->repo : "-", rev, r->file, sz, cfg, ver, r->path);
    }
    L->n++;
}

/* is_checkpoint_name: the files the listing shows */
static int is_checkpoint_name(const char *n) {
    return n[0] != '.' && (ends_with(n, ".pt") || ends_with(n, ".safetensors"));
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* sorted_entries: the names in dir (no . or ..), sorted; caller frees each
 * and the array. Returns the count (0 for an unreadable dir). */
static int sorted_entries(const char *dir, char ***out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    char **v = NULL;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, (size_t)cap * sizeof *nv);
            CHECK(nv);
            v = nv;
        }
        CHECK((v[n++] = strdup(e->d_name)));
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, name_cmp);
    *out = v;
    return n;
}

static void free_entries(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* list_snapshot: the checkpoint files of one snapshot */
static void list_snapshot(list_ctx *L, const char *repo, const char *repodir, const char *commit,
                          const char *refname) {
    char snap[MODELS_PATH_MAX], sub[512];
    sfmt(sub, sizeof sub, "snapshots/%s", commit);
    if (join(snap, sizeof snap, repodir, sub)) return;
    char **files;
    int nf = sorted_entries(snap, &files);
    for (int i = 0; i < nf; i++) {
        if (!is_checkpoint_name(files[i])) continue;
        models_ref r;
        memset(&r, 0, sizeof r);
        struct stat st;
        if (join(r.path, sizeof r.path, snap, files[i]) || stat(r.path, &st) || !S_ISREG(st.st_mode))
            continue; /* broken symlink: not a usable checkpoint */
        r.src = MODELS_SRC_HF_CACHE;
        sfmt(r.repo, sizeof r.repo, "%s", repo);
        sfmt(r.file, sizeof r.file, "%s", files[i]);
        sfmt(r.revision, sizeof r.revision, "%s", commit);
        char cj[MODELS_PATH_MAX];
        if (!join(cj, sizeof cj, snap, HF_CONFIG) && !stat(cj, &st) && S_ISREG(st.st_mode))
            sfmt(r.config_json, sizeof r.config_json, "%s", cj);
        describe(&r);
        list_one(L, &r, refname);
    }
    free_entries(files, nf);
}

static void list_cache(list_ctx *L, const char *root) {
    char **repos;
    int nr = sorted_entries(root, &repos);
    for (int i = 0; i < nr; i++) {
        const char *d = repos[i];
        if (strncmp(d, "models--", 8)) continue;
        char repo[256], repodir[MODELS_PATH_MAX];
        const char *sep = strstr(d + 8, "--");
        if (!sep) continue;
        sfmt(repo, sizeof repo, "%.*s/%s", (int)(sep - (d + 8)), d + 8, sep + 2);
        if (join(repodir, sizeof repodir, root, d)) continue;
        /* snapshots named by a ref first (ref names sorted), then the rest */
        char refsdir[MODELS_PATH_MAX], snapsdir[MODELS_PATH_MAX];
        join(refsdir, sizeof refsdir, repodir, "refs");
        join(snapsdir, sizeof snapsdir, repodir, "snapshots");
        char **refs, **snaps;
        int nref = sorted_entries(refsdir, &refs), nsnap = sorted_entries(snapsdir, &snaps);
        char (*named)[256] = nref ? calloc((size_t)nref, 256) : NULL;
        CHECK(!nref || named);
        for (int k = 0; k < nref; k++) {
            char commit[256];
            if (!read_ref(repodir, refs[k], commit, sizeof commit)) continue;
            sfmt(named[k], 256, "%s", commit);
            list_snapshot(L, repo, repodir, commit, refs[k]);
        }
        for (int s = 0; s < nsnap; s++) {
            int seen = 0;
            for (int k = 0; k < nref && !seen; k++) seen = !strcmp(named[k], snaps[s]);
            if (!seen) list_snapshot(L, repo, repodir, snaps[s], NULL);
        }
        free(named);
        free_entries(refs, nref);
        free_entries(snaps, nsnap);
    }
    free_entries(repos, nr);
}

static void list_dir(list_ctx *L, const char *dir) {
    char **files;
    int nf = sorted_entries(dir, &files);
    for (int i = 0; i < nf; i++) {
        if (!is_checkpoint_name(files[i])) continue;
        models_ref r;
        memset(&r, 0, sizeof r);
        struct stat st;
        if (join(r.path, sizeof r.path, dir, files[i]) || stat(r.path, &st) || !S_ISREG(st.st_mode))
            continue;
        r.src = MODELS_SRC_MODEL_DIR;
        sfmt(r.file, sizeof r.file, "%s", files[i]);
        describe(&r);
        list_one(L, &r, NULL);
    }
    free_entries(files, nf);
}

int models_list(FILE *f, const models_opts *o, int json) {
    list_ctx L = {.f = f, .json = json, .n = 0};
    char dirbuf[MODELS_PATH_MAX], root[MODELS_PATH_MAX];
    const char *dirs[16];
    int nd = model_dirs(o, dirbuf, sizeof dirbuf, dirs, 16);
    for (int d = 0; d < nd; d++) list_dir(&L, dirs[d]);
    if (!models_hub_cache(root, sizeof root, NULL)) list_cache(&L, root);
    if (json) fputs(L.n ? "\n]\n" : "[]\n", f);
    return L.n;
}
