/* ingest.c: manifests into the images table (see jobs_ingest in jobs.h).
 *
 * One image, one stored path: every path is made canonical before it is
 * stored, so the UNIQUE(path) of the store makes re-adding idempotent
 * whatever spelling a manifest uses. A path that exists is stored as
 * realpath(3) gives it: absolute, no "." or "..", no repeated slashes,
 * symlinks resolved (a link and its target, or two links to one file, are
 * one image, reported under the target's name). A path that does not exist
 * (yet) is made absolute and normalized lexically ("." and repeated slashes
 * dropped, ".." removes the component before it), so it still fails later
 * with a clear "No such file" naming that path; when its folder exists,
 * the folder is resolved by realpath and the name appended (so ".." after
 * a symlinked folder means what the kernel makes of it), and only a path
 * whose folder is missing too is normalized purely lexically. Relative paths, in a
 * manifest file or on stdin, are relative to the working directory of the
 * command (not to the manifest's folder), as they always were.
 *
 * Manifests: UTF-8 byte order marks at their start are skipped; JSONL lines
 * are decoded by the shared strict JSON reader (json.h: surrogate pairs
 * become one 4-byte UTF-8 character, a lone surrogate is a bad line). Bytes
 * that are not UTF-8 are kept exactly in text and CSV manifests (the store
 * escapes them in its text column).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs.h"
#include "json.h"
#include "size.h"

#define MAX_PATH_BYTES 4096

typedef struct ingest {
    store_t           *s;
    jobs_ingest_stats *st;
    char              *cwd;       /* getcwd, malloc'd */
    char              *dir;       /* the last folder resolved (lexical form), malloc'd */
    char              *dir_real;  /* its realpath, malloc'd; NULL: it does not resolve */
    int                dir_fd;    /* dir_real opened O_PATH (-1: none): one lstat per
                                   * file walks one component, not the whole path */
    int                shard_k, shard_n;   /* keep shard k of n only (n 0: all) */
} ingest_t;

/* normalize_lexical: "/"-joined components of the absolute path p (n
 * bytes) with "", "." dropped and ".." removing the one before (at the
 * root, ".." stays the root), into out (n + 2 bytes). Returns the length. */
static size_t normalize_lexical(const char *p, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && p[i] == '/') i++;
        size_t j = i;
        while (j < n && p[j] != '/') j++;
        size_t len = j - i;
        if (len == 0 || (len == 1 && p[i] == '.')) {
            /* nothing */
        } else if (len == 2 && p[i] == '.' && p[i + 1] == '.') {
            while (o > 0 && out[o - 1] != '/') o--;   /* drop the last component */
            if (o > 0) o--;                           /* and its slash */
        } else {
            out[o++] = '/';
            memcpy(out + o, p + i, len);
            o += len;
        }
        i = j;
    }
    if (o == 0) out[o++] = '/';
    out[o] = 0;
    return o;
}

/* alloc_path: malloc(a + b + 2) for a path built from a manifest line (the
 * sizes go through size.h); NULL on overflow or out of memory. */
static char *alloc_path(size_t a, size_t b) {
    int64_t n;
    size_t sz;
    if (!size_add((int64_t)a, (int64_t)b, &n) || !size_add(n, 2, &n) || !size_bytes(n, 1, &sz))
        return NULL;
    return malloc(sz);
}

/* has_dot_component: whether the absolute path p (n bytes) has a "." or
 * ".." component or ends with '/' (then only realpath(3) itself gives its
 * meaning: ".." after a symlinked folder is the link target's parent). */
static int has_dot_component(const char *p, size_t n) {
    if (n == 0 || p[n - 1] == '/') return 1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '/') continue;
        size_t j = i + 1;
        while (j < n && p[j] == '.') j++;
        if ((j - i - 1 == 1 || j - i - 1 == 2) && (j == n || p[j] == '/')) return 1;
    }
    return 0;
}

/* parent_real: for a missing file: realpath of its folder + "/" + its name
 * (malloc'd), so that ".." after a symlinked folder keeps the kernel's
 * meaning; NULL when the folder does not resolve either or the name is
 * "." or "..". */
static char *parent_real(const char *joined, size_t n) {
    const char *slash = memrchr(joined, '/', n);
    if (!slash) return NULL;
    const char *base = slash + 1;
    size_t bl = n - (size_t)(base - joined);
    if (bl == 0 || (bl == 1 && base[0] == '.') || (bl == 2 && base[0] == '.' && base[1] == '.'))
        return NULL;
    char *dir = slash == joined ? strdup("/") : strndup(joined, (size_t)(slash - joined));
    char *real = dir ? realpath(dir, NULL) : NULL;
    free(dir);
    if (!real) return NULL;
    size_t rl = strlen(real);
    char *r = alloc_path(rl, bl);
    if (r) {
        size_t o = rl;
        memcpy(r, real, rl);
        if (o == 0 || r[o - 1] != '/') r[o++] = '/';
        memcpy(r + o, base, bl);
        r[o + bl] = 0;
    }
    free(real);
    return r;
}

/* canonical: the canonical form (file-top comment) of the absolute path
 * joined (n bytes, NUL-terminated), malloc'd, into *out. Same result as
 * realpath(3); when that fails (a missing file), the folder's realpath +
 * the name, and normalize_lexical only when the folder is missing too; but
 * realpath is called once per folder rather than once per file when the
 * path has no "."/".." component: the folder's realpath is kept from the
 * previous path (manifests list many files per folder), and the file
 * itself costs one lstat (realpath only when it is a symlink). */
static int canonical(ingest_t *in, const char *joined, size_t n, char **out, size_t *len) {
    char *norm = alloc_path(n, 0);
    if (!norm) return -1;
    size_t nl = normalize_lexical(joined, n, norm);
    if (has_dot_component(joined, n)) {
        char *real = realpath(joined, NULL);
        if (!real) real = parent_real(joined, n);
        if (real) {
            free(norm);
            *out = real;
            *len = strlen(real);
        } else {
            *out = norm;
            *len = nl;
        }
        return 0;
    }
    /* norm is "/dir.../name" with repeated slashes collapsed */
    char *slash = strrchr(norm, '/');
    size_t dl = (size_t)(slash - norm);
    if (!in->dir || strlen(in->dir) != dl || memcmp(in->dir, norm, dl)) {
        free(in->dir);
        free(in->dir_real);
        if (in->dir_fd >= 0) close(in->dir_fd);
        in->dir_fd = -1;
        in->dir = strndup(norm, dl);
        if (!in->dir) {
            free(norm);
            return -1;
        }
        in->dir_real = realpath(dl ? in->dir : "/", NULL);
        if (in->dir_real) in->dir_fd = open(in->dir_real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    if (!in->dir_real) {   /* the folder does not resolve: the file is missing */
        *out = norm;
        *len = nl;
        return 0;
    }
    size_t rl = strlen(in->dir_real), fl = nl - dl - 1;
    char *cand = alloc_path(rl, fl);
    if (!cand) {
        free(norm);
        return -1;
    }
    size_t o = rl;
    memcpy(cand, in->dir_real, rl);
    if (o == 0 || cand[o - 1] != '/') cand[o++] = '/';
    memcpy(cand + o, slash + 1, fl);
    o += fl;
    cand[o] = 0;
    struct stat sb;
    int found = in->dir_fd >= 0 ? fstatat(in->dir_fd, slash + 1, &sb, AT_SYMLINK_NOFOLLOW) == 0
                                : lstat(cand, &sb) == 0;
    if (found && !S_ISLNK(sb.st_mode)) {
        free(norm);
        *out = cand;
        *len = o;
        return 0;
    }
    char *real = found ? realpath(cand, NULL) : NULL;
    free(norm);
    if (real) {   /* a symlink: its target */
        free(cand);
        *out = real;
        *len = strlen(real);
    } else {      /* missing, or a dangling link: the folder's realpath + the
                   * name, as parent_real gives on the "."/".." branch */
        *out = cand;
        *len = o;
    }
    return 0;
}

/* add_path: make one path of n bytes (no NUL) canonical and add it. */
static int add_path(ingest_t *in, const char *p, size_t n, err_t *err) {
    size_t cl = strlen(in->cwd);
    int64_t need;
    size_t sz;
    /* joined: CWD/p + NUL, or p + NUL (sizes from a manifest line) */
    if (!size_add((int64_t)cl, (int64_t)n, &need) || !size_add(need, 2, &need) ||
        !size_bytes(need, 1, &sz))
        return err_set(err, ERR_INVALID, "a path of %zu bytes is too long", n);
    char *joined = malloc(sz);
    if (!joined) return err_set(err, ERR_NOMEM, "out of memory for a path of %zu bytes", n);
    size_t o = 0;
    if (n == 0 || p[0] != '/') {
        memcpy(joined, in->cwd, cl);
        o = cl;
        joined[o++] = '/';
    }
    memcpy(joined + o, p, n);
    o += n;
    joined[o] = 0;
    char *canon = NULL;
    size_t len = 0;
    int r = canonical(in, joined, o, &canon, &len);
    free(joined);
    if (r) return err_set(err, ERR_NOMEM, "out of memory for a path of %zu bytes", n);
    if (in->shard_n > 0 && jobs_shard_of(canon, len, in->shard_n) != in->shard_k) {
        free(canon);
        in->st->other_shard++;
        return 0;
    }
    int added = 0;
    int rc = store_ingest_add(in->s, canon, len, &added, err);
    free(canon);
    if (rc) return rc;
    if (added) in->st->added++;
    else in->st->present++;
    return 0;
}

static void bad_line(ingest_t *in, const char *src, int64_t line, const char *why) {
    in->st->bad++;
    fprintf(stderr, "sam2amg run: %s: line %lld: %s; skipped\n", src, (long long)line, why);
}

/* csv_field: the col-th field of a CSV line (RFC 4180 quotes), unquoted
 * into out (cap). Returns its length, or -1 when the line has fewer. */
static ssize_t csv_field(const char *line, size_t n, int col, char *out, size_t cap) {
    size_t i = 0;
    for (int c = 0;; c++) {
        size_t o = 0;
        int quoted = i < n && line[i] == '"';
        if (quoted) i++;
        while (i < n) {
            if (quoted && line[i] == '"') {
                if (i + 1 < n && line[i + 1] == '"') {
                    if (c == col && o < cap) out[o++] = '"';
                    i += 2;
                    continue;
                }
                quoted = 0;
                i++;
                continue;
            }
            if (!quoted && line[i] == ',') break;
            if (c == col && o < cap) out[o++] = line[i];
            i++;
        }
        if (c == col) return o < cap ? (ssize_t)o : -1;
        if (i >= n) return -1;
        i++;   /* the comma */
    }
}

/* jsonl_path: the "path" string of a JSONL line (one JSON object), decoded
 * by the shared strict reader (json.h). Returns the tree (json_free it)
 * with *p, *len set, or NULL with why filled (the reader's reason). */
static json_t *jsonl_path(const char *line, size_t n, const char **p, size_t *len, char *why,
                          size_t cap) {
    json_t *v = NULL;
    err_t je = {{0}};
    if (json_parse(&v, line, n, "JSON", &je)) {
        /* "JSON: line 1 column C: reason" -> "column C: reason" (one line) */
        const char *m = strstr(je.msg, "column");
        snprintf(why, cap, "invalid JSON: %s", m ? m : je.msg);
        return NULL;
    }
    const json_t *pv = json_get(v, "path");
    if (json_type(pv) != JSON_STR) {
        snprintf(why, cap, "no \"path\" string");
        json_free(v);
        return NULL;
    }
    *p = json_str(pv);
    *len = json_len(pv);
    return v;
}

enum { FMT_LINES, FMT_CSV, FMT_JSONL };

static int ingest_stream(ingest_t *in, FILE *f, const char *src, int fmt, err_t *err) {
    char *buf = NULL, *field = malloc(MAX_PATH_BYTES + 1);
    size_t cap = 0;
    ssize_t n;
    int64_t lineno = 0;
    int col = -1, rc = 0;
    if (!field) return err_set(err, ERR_NOMEM, "%s: out of memory", src);
    while ((n = getline(&buf, &cap, f)) >= 0) {
        char *line = buf;
        lineno++;
        in->st->lines++;
        /* a UTF-8 byte order mark (Excel's "CSV UTF-8", Notepad) */
        if (lineno == 1 && n >= 3 && !memcmp(line, "\xef\xbb\xbf", 3)) line += 3, n -= 3;
        if (n > 0 && line[n - 1] == '\n') n--;
        if (n > 0 && line[n - 1] == '\r') n--;
        if (memchr(line, 0, (size_t)n)) {
            bad_line(in, src, lineno, "contains a NUL byte");
            continue;
        }
        if (fmt == FMT_CSV && col < 0) {
            /* the header names the path column */
            for (int c = 0; c < 256; c++) {
                ssize_t k = csv_field(line, (size_t)n, c, field, MAX_PATH_BYTES);
                if (k < 0) break;
                if (k == 4 && !memcmp(field, "path", 4)) {
                    col = c;
                    break;
                }
            }
            in->st->lines--;
            if (col < 0) {
                rc = err_set(err, ERR_INVALID, "%s: line 1: the CSV header has no \"path\" column",
                             src);
                break;
            }
            continue;
        }
        const char *p = line;
        size_t len = (size_t)n;
        json_t *doc = NULL;
        if (fmt == FMT_CSV) {
            ssize_t k = csv_field(line, (size_t)n, col, field, MAX_PATH_BYTES);
            p = field;
            if (k < 0 && n > 0) {
                bad_line(in, src, lineno, "no path field (or longer than 4096 bytes)");
                continue;
            }
            len = k < 0 ? 0 : (size_t)k;
        } else if (fmt == FMT_JSONL && n > 0) {
            char why[600];
            doc = jsonl_path(line, (size_t)n, &p, &len, why, sizeof why);
            if (!doc) {
                bad_line(in, src, lineno, why);
                continue;
            }
        }
        if (len == 0) {
            bad_line(in, src, lineno, "empty");
        } else if (len > MAX_PATH_BYTES) {
            bad_line(in, src, lineno, "longer than 4096 bytes");
        } else if (memchr(p, 0, len)) {
            bad_line(in, src, lineno, "contains a NUL byte");
        } else {
            rc = add_path(in, p, len, err);
        }
        json_free(doc);
        if (rc) break;
    }
    if (!rc && ferror(f)) rc = err_set(err, ERR_IO, "%s: read error: %s", src, strerror(errno));
    free(buf);
    free(field);
    return rc;
}

/* is_image_name: by extension (case-insensitive): the formats image_load
 * decodes (JPEG, PNG, GIF, TIFF, WebP, BMP, binary PPM). */
static int is_image_name(const char *name) {
    static const char *ext[] = {"jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp", "gif", "ppm",
                                NULL};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (int i = 0; ext[i]; i++)
        if (!strcasecmp(dot + 1, ext[i])) return 1;
    return 0;
}

/* has_image_magic: the first bytes of a common image format. */
static int has_image_magic(const char *path) {
    unsigned char b[12] = {0};
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return 0;
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n < 4) return 0;
    return (b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) ||            /* JPEG */
           !memcmp(b, "\x89PNG", 4) || !memcmp(b, "GIF8", 4) ||       /* PNG, GIF */
           !memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4) ||        /* TIFF */
           (!memcmp(b, "RIFF", 4) && n >= 12 && !memcmp(b + 8, "WEBP", 4)) ||
           (b[0] == 'B' && b[1] == 'M') || (b[0] == 'P' && b[1] == '6');   /* BMP, PPM */
}

static int walk(ingest_t *in, const char *dir, int depth, err_t *err) {
    if (depth > 64) {
        fprintf(stderr, "sam2amg run: %s: deeper than 64 directories; skipped\n", dir);
        in->st->bad++;
        return 0;
    }
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) {
        if (depth == 0) return err_set(err, ERR_IO, "%s: cannot read directory: %s", dir, strerror(errno));
        fprintf(stderr, "sam2amg run: %s: cannot read directory: %s; skipped\n", dir, strerror(errno));
        in->st->bad++;
        return 0;
    }
    int rc = 0;
    size_t dl = strlen(dir);
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        if (rc || !strcmp(name, ".") || !strcmp(name, "..")) continue;
        size_t nl = strlen(name);
        if (dl + nl + 2 > MAX_PATH_BYTES) {
            fprintf(stderr, "sam2amg run: %s/%s: path longer than 4096 bytes; skipped\n", dir, name);
            in->st->bad++;
            continue;
        }
        char *path = malloc(dl + nl + 2);
        if (!path) {   /* the caller rolls the whole ingest back */
            rc = err_set(err, ERR_NOMEM, "%s: out of memory", dir);
            continue;
        }
        snprintf(path, dl + nl + 2, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
        struct stat sb;
        if (lstat(path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) {
                rc = walk(in, path, depth + 1, err);
            } else if (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) {
                in->st->lines++;
                if (is_image_name(name) || has_image_magic(path))
                    rc = add_path(in, path, strlen(path), err);
            }
        }
        free(path);
    }
    for (int i = 0; i < n; i++) free(ents[i]);
    free(ents);
    return rc;
}

/* ---- a manifest must be text ----
 * `--manifest photo.png` (or a .db, a .zip) would otherwise be read as one
 * path per "line" of binary garbage: thousands of bad lines, or worse, a
 * few accidental paths. The first KiB is sniffed before anything is added:
 * known magic bytes, UTF-16, control characters (NUL included; not tab, CR,
 * LF) in more than 1 byte in 50 (at least 4 of them), or bytes not part of
 * valid UTF-8 in more than 1 in 3, make the source refused with ERR_INVALID
 * naming what it looks like. Text has no control characters, and even a
 * manifest of Latin-1 names (bytes kept as they are) has far fewer invalid
 * bytes than binary data; a stray NUL line stays under the bar (it is
 * reported and skipped, as before). */
#define SNIFF_BYTES 1024

/* sniff_binary: NULL when head (n bytes) looks like text, else what it is. */
static const char *sniff_binary(const unsigned char *b, size_t n) {
    static const struct { const char *magic; size_t len; const char *what; } m[] = {
        {"\x89PNG\r\n\x1a\n", 8, "a PNG image"},  {"\xff\xd8\xff", 3, "a JPEG image"},
        {"GIF87a", 6, "a GIF image"},                {"GIF89a", 6, "a GIF image"},
        {"II*\0", 4, "a TIFF image"},                {"MM\0*", 4, "a TIFF image"},
        {"SQLite format 3\0", 16, "an SQLite database"}, {"PK\x03\x04", 4, "a zip file"},
        {"\x1f\x8b", 2, "a gzip file"},              {"%PDF-", 5, "a PDF file"},
        {"\x7f" "ELF", 4, "an executable"},           {"\xff\xfe", 2, "UTF-16 text (save it as UTF-8)"},
        {"\xfe\xff", 2, "UTF-16 text (save it as UTF-8)"}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (n >= m[i].len && !memcmp(b, m[i].magic, m[i].len)) return m[i].what;
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return "a WebP image";
    size_t ctrl = 0, odd = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = b[i];
        if (c < 0x80) {
            ctrl += (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
            i++;
            continue;
        }
        /* one UTF-8 sequence: its length from the lead byte, then continuations */
        size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        size_t k = 1;
        while (len && k < len && i + k < n && (b[i + k] & 0xc0) == 0x80) k++;
        if (len && (k == len || i + k == n)) {   /* valid, or cut by the end of the sniff */
            i += k;
        } else {
            odd++;
            i++;
        }
    }
    return (ctrl >= 4 && ctrl * 50 > n) || odd * 3 > n ? "binary data, not text" : NULL;
}

/* sniffed: a FILE that reads a sniffed head first, then the rest of the
 * stream (which need not be seekable: stdin, a FIFO). */
typedef struct sniffed {
    FILE         *f;
    unsigned char head[SNIFF_BYTES];
    size_t        n, off;
} sniffed;

static ssize_t sniffed_read(void *cookie, char *buf, size_t size) {
    sniffed *c = cookie;
    if (c->off < c->n) {
        size_t k = c->n - c->off < size ? c->n - c->off : size;
        memcpy(buf, c->head + c->off, k);
        c->off += k;
        return (ssize_t)k;
    }
    size_t k = fread(buf, 1, size, c->f);
    return k == 0 && ferror(c->f) ? -1 : (ssize_t)k;
}

/* ingest_text: sniff f (named src) and ingest it as fmt, or refuse it. */
static int ingest_text(ingest_t *in, FILE *f, const char *src, int fmt, err_t *err) {
    sniffed *c = malloc(sizeof *c);
    if (!c) return err_set(err, ERR_NOMEM, "%s: out of memory", src);
    c->f = f;
    c->off = 0;
    c->n = fread(c->head, 1, sizeof c->head, f);
    int rc;
    const char *what = sniff_binary(c->head, c->n);
    FILE *g = NULL;
    if (ferror(f)) {
        rc = err_set(err, ERR_IO, "%s: read error: %s", src, strerror(errno));
    } else if (what) {
        rc = err_set(err, ERR_INVALID, "%s: not a manifest: this looks like %s (a manifest is a "
                     "text, .csv or .jsonl list of paths, or a folder)", src, what);
    } else if (!(g = fopencookie(c, "r", (cookie_io_functions_t){.read = sniffed_read}))) {
        rc = err_set(err, ERR_NOMEM, "%s: out of memory", src);
    } else {
        rc = ingest_stream(in, g, src, fmt, err);
        fclose(g);
    }
    free(c);
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

int jobs_ingest(store_t *s, const char *src, jobs_ingest_stats *st, err_t *err) {
    return jobs_ingest_shard(s, src, 0, 0, st, err);
}

int jobs_ingest_shard(store_t *s, const char *src, int k, int n, jobs_ingest_stats *st,
                      err_t *err) {
    memset(st, 0, sizeof *st);
    ingest_t in = {.s = s, .st = st, .dir_fd = -1, .shard_k = k, .shard_n = n};
    in.cwd = getcwd(NULL, 0);
    if (!in.cwd) return err_set(err, ERR_IO, "getcwd: %s", strerror(errno));
    int rc = 0;
    if (!strcmp(src, "-")) {
        rc = ingest_text(&in, stdin, "stdin", FMT_LINES, err);
    } else {
        struct stat sb;
        if (stat(src, &sb) != 0) {
            rc = err_set(err, ERR_IO, "%s: %s", src, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            rc = walk(&in, src, 0, err);
        } else {
            FILE *f = fopen(src, "rb");
            if (!f) {
                rc = err_set(err, ERR_IO, "%s: %s", src, strerror(errno));
            } else {
                int fmt = ends_with(src, ".csv") ? FMT_CSV : ends_with(src, ".jsonl") ? FMT_JSONL
                                                                                     : FMT_LINES;
                rc = ingest_text(&in, f, src, fmt, err);
                fclose(f);
            }
        }
    }
    free(in.cwd);
    free(in.dir);
    free(in.dir_real);
    if (in.dir_fd >= 0) close(in.dir_fd);
    return rc;
}
