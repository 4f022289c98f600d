/* ingest.c: manifests into the images table (see jobs_ingest in jobs.h).
 *
 * Paths are stored absolute (relative ones are resolved against the working
 * directory at ingest time, so a later `run` from elsewhere still finds the
 * files), with leading "./" components dropped; nothing else is normalized
 * (no symlink resolution: the name the user gave is the name reported).
 * The store's UNIQUE(path) makes re-adding idempotent. Bytes that are not
 * UTF-8 are kept exactly (the store escapes them in its text column).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs.h"

#define MAX_PATH_BYTES 4096

typedef struct ingest {
    store_t           *s;
    jobs_ingest_stats *st;
    char               cwd[MAX_PATH_BYTES];
    char              *buf;     /* (2 * MAX_PATH_BYTES) joined path */
} ingest_t;

/* add_path: resolve and add one path of n bytes. */
static int add_path(ingest_t *in, const char *p, size_t n, err_t *err) {
    while (n >= 2 && p[0] == '.' && p[1] == '/') {
        p += 2, n -= 2;
        while (n && *p == '/') p++, n--;
    }
    size_t o = 0;
    if (n == 0 || p[0] != '/') {
        o = strlen(in->cwd);
        memcpy(in->buf, in->cwd, o);
        if (o == 0 || in->buf[o - 1] != '/') in->buf[o++] = '/';
    }
    memcpy(in->buf + o, p, n);
    o += n;
    in->buf[o] = 0;
    int added = 0;
    int rc = store_ingest_add(in->s, in->buf, o, &added, err);
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

/* jsonl_path: the "path" string of a JSON object line, unescaped (\uXXXX
 * to UTF-8) into out. -1 when absent or malformed. */
static ssize_t jsonl_path(const char *line, size_t n, char *out, size_t cap) {
    const char *end = line + n;
    for (const char *p = line; p + 6 <= end; p++) {
        if (memcmp(p, "\"path\"", 6)) continue;
        p += 6;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (p >= end || *p != ':') return -1;
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (p >= end || *p != '"') return -1;
        size_t o = 0;
        for (p++; p < end && *p != '"'; p++) {
            if (o + 4 >= cap) return -1;
            if (*p != '\\') {
                out[o++] = *p;
                continue;
            }
            if (++p >= end) return -1;
            switch (*p) {
            case 'n': out[o++] = '\n'; break;
            case 't': out[o++] = '\t'; break;
            case 'r': out[o++] = '\r'; break;
            case 'b': out[o++] = '\b'; break;
            case 'f': out[o++] = '\f'; break;
            case 'u': {
                if (p + 4 >= end) return -1;
                unsigned cp = 0;
                for (int k = 1; k <= 4; k++) {
                    char c = p[k];
                    cp = cp * 16 + (unsigned)(c >= '0' && c <= '9' ? c - '0'
                                              : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99);
                    if (cp > 0xffff) return -1;
                }
                p += 4;
                if (cp == 0) return -1;
                if (cp < 0x80) out[o++] = (char)cp;
                else if (cp < 0x800) out[o++] = (char)(0xc0 | cp >> 6), out[o++] = (char)(0x80 | (cp & 0x3f));
                else out[o++] = (char)(0xe0 | cp >> 12), out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f)),
                     out[o++] = (char)(0x80 | (cp & 0x3f));
                break;
            }
            default: out[o++] = *p;   /* \" \\ \/ */
            }
        }
        return p < end ? (ssize_t)o : -1;
    }
    return -1;
}

enum { FMT_LINES, FMT_CSV, FMT_JSONL };

static int ingest_stream(ingest_t *in, FILE *f, const char *src, int fmt, err_t *err) {
    char *line = NULL, *field = malloc(MAX_PATH_BYTES + 1);
    size_t cap = 0;
    ssize_t n;
    int64_t lineno = 0;
    int col = -1, rc = 0;
    CHECK(field);
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        in->st->lines++;
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
        ssize_t len = n;
        if (fmt == FMT_CSV) {
            len = csv_field(line, (size_t)n, col, field, MAX_PATH_BYTES);
            p = field;
            if (len < 0 && n > 0) {
                bad_line(in, src, lineno, "no path field (or longer than 4096 bytes)");
                continue;
            }
        } else if (fmt == FMT_JSONL && n > 0) {
            len = jsonl_path(line, (size_t)n, field, MAX_PATH_BYTES);
            p = field;
            if (len < 0) {
                bad_line(in, src, lineno, "no \"path\" string (or longer than 4096 bytes)");
                continue;
            }
        }
        if (len <= 0) {
            bad_line(in, src, lineno, "empty");
            continue;
        }
        if (len > MAX_PATH_BYTES) {
            bad_line(in, src, lineno, "longer than 4096 bytes");
            continue;
        }
        if (memchr(p, 0, (size_t)len)) {
            bad_line(in, src, lineno, "contains a NUL byte");
            continue;
        }
        if ((rc = add_path(in, p, (size_t)len, err))) break;
    }
    if (!rc && ferror(f)) rc = err_set(err, ERR_IO, "%s: read error: %s", src, strerror(errno));
    free(line);
    free(field);
    return rc;
}

/* is_image_name: by extension (case-insensitive): the formats image_load
 * decodes (JPEG, PNG, GIF, TIFF, WebP, BMP). */
static int is_image_name(const char *name) {
    static const char *ext[] = {"jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp", "gif", NULL};
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
           (b[0] == 'B' && b[1] == 'M');
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
        CHECK(path);
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

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

int jobs_ingest(store_t *s, const char *src, jobs_ingest_stats *st, err_t *err) {
    memset(st, 0, sizeof *st);
    ingest_t in = {.s = s, .st = st};
    if (!getcwd(in.cwd, sizeof in.cwd)) return err_set(err, ERR_IO, "getcwd: %s", strerror(errno));
    in.buf = malloc(2 * MAX_PATH_BYTES + 2);
    CHECK(in.buf);
    int rc = store_ingest_begin(s, err);
    if (rc) {
        free(in.buf);
        return rc;
    }
    if (!strcmp(src, "-")) {
        rc = ingest_stream(&in, stdin, "stdin", FMT_LINES, err);
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
                rc = ingest_stream(&in, f, src, fmt, err);
                fclose(f);
            }
        }
    }
    free(in.buf);
    if (rc) {
        err_t e2;
        store_ingest_end(s, &e2);   /* keep what was read: idempotent anyway */
        return rc;
    }
    return store_ingest_end(s, err);
}
