/* json.c: the strict JSON reader and Python-compatible writer helpers of
 * json.h.
 *
 * A recursive-descent parser over a byte range with a depth limit (so a
 * hostile file cannot overflow the stack); each node owns its children.
 * Objects keep their keys in file order (safetensors headers and COCO
 * records are read in order); lookup is linear, which is fine for the
 * small objects we read, and duplicate keys are rejected at parse time.
 */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 200

struct json {
    json_type_t type;
    int         boolean;   /* JSON_BOOL */
    int         is_int;    /* JSON_NUM: the literal was an integer within int64 */
    int64_t     i64;       /* JSON_NUM when is_int */
    double      num;       /* JSON_NUM */
    char       *str;       /* JSON_STR: NUL-terminated, len bytes */
    size_t      len;       /* JSON_STR bytes; JSON_ARR / JSON_OBJ items */
    json_t    **items;     /* JSON_ARR items, JSON_OBJ values: (len) */
    char      **keys;      /* JSON_OBJ keys: (len) */
};

typedef struct parser {
    const char *s, *end, *p;
    const char *what;
    err_t      *err;
    int         rc;
    const char *key;    /* the key of the member being parsed (NULL: none), for messages */
} parser;

static int parse_fail(parser *ps, const char *at, const char *reason) {
    if (ps->rc) return ps->rc;
    int line = 1, col = 1;
    for (const char *q = ps->s; q < at && q < ps->end; q++) {
        if (*q == '\n') line++, col = 1;
        else col++;
    }
    ps->rc = err_set(ps->err, ERR_FORMAT, "%s: line %d column %d: %s", ps->what, line, col,
                     reason);
    return ps->rc;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static json_t *node_new(parser *ps, json_type_t t) {
    json_t *v = calloc(1, sizeof *v);
    if (!v) {
        if (!ps->rc) ps->rc = err_set(ps->err, ERR_NOMEM, "%s: out of memory", ps->what);
        return NULL;
    }
    v->type = t;
    return v;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8_put(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* utf8_get: decode one code point at p (< end); returns its length, 0 if invalid. */
static size_t utf8_get(const unsigned char *p, const unsigned char *end, unsigned *cp) {
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c < 0x80) { *cp = c; return 1; }
    if ((c & 0xE0) == 0xC0) n = 2, min = 0x80, c &= 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 3, min = 0x800, c &= 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 4, min = 0x10000, c &= 0x07;
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return n;
}

/* parse_string: at the opening quote; returns a malloc'd NUL-terminated copy. */
static char *parse_string(parser *ps, size_t *len_out) {
    const char *start = ps->p++;
    /* The decoded text is never longer than the literal. */
    const char *q = ps->p;
    while (q < ps->end && *q != '"') q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end) { parse_fail(ps, start, "unterminated string"); return NULL; }
    char *out = malloc((size_t)(q - ps->p) + 1), *o = out;
    if (!out) { ps->rc = err_set(ps->err, ERR_NOMEM, "%s: out of memory", ps->what); return NULL; }
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) { parse_fail(ps, ps->p, "control character in string"); goto fail; }
        if (c != '\\') {
            unsigned cp;
            size_t n = utf8_get((const unsigned char *)ps->p, (const unsigned char *)ps->end, &cp);
            if (!n) { parse_fail(ps, ps->p, "invalid UTF-8 in string"); goto fail; }
            memcpy(o, ps->p, n);
            o += n, ps->p += n;
            continue;
        }
        const char *esc = ps->p++;
        if (ps->p >= ps->end) { parse_fail(ps, esc, "unterminated escape"); goto fail; }
        char e = *ps->p++;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - ps->p < 4 || hex4(ps->p, &cp)) {
                parse_fail(ps, esc, "bad \\u escape"); goto fail;
            }
            ps->p += 4;
            /* U+DC80..U+DCFF alone: the byte 0x80..0xFF that is not UTF-8
             * (Python's surrogateescape, json_write_string's form) */
            if (cp >= 0xDC80 && cp <= 0xDCFF) { *o++ = (char)(cp - 0xDC00); break; }
            if (cp >= 0xDC00 && cp <= 0xDFFF) { parse_fail(ps, esc, "lone low surrogate"); goto fail; }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                    hex4(ps->p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    parse_fail(ps, esc, "high surrogate without low surrogate"); goto fail;
                }
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            o += utf8_put(o, cp);
            break;
        }
        default: parse_fail(ps, esc, "bad escape"); goto fail;
        }
    }
    ps->p++; /* closing quote */
    *o = 0;
    *len_out = (size_t)(o - out);
    return out;
fail:
    free(out);
    return NULL;
}

static json_t *parse_number(parser *ps) {
    const char *a = ps->p, *q = a;
    int is_int = 1;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || *q < '0' || *q > '9') { parse_fail(ps, a, "bad number"); return NULL; }
    if (*q == '0') q++;
    else while (q < ps->end && *q >= '0' && *q <= '9') q++;
    if (q < ps->end && *q == '.') {
        is_int = 0, q++;
        if (q >= ps->end || *q < '0' || *q > '9') { parse_fail(ps, a, "bad number"); return NULL; }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        is_int = 0, q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') { parse_fail(ps, a, "bad number"); return NULL; }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    char tmp[400];
    if ((size_t)(q - a) >= sizeof tmp) { parse_fail(ps, a, "number too long"); return NULL; }
    memcpy(tmp, a, (size_t)(q - a));
    tmp[q - a] = 0;
    json_t *v = node_new(ps, JSON_NUM);
    if (!v) return NULL;
    v->num = strtod(tmp, NULL);
    if (!isfinite(v->num)) {   /* 1e400: a double cannot hold it */
        char why[200];
        snprintf(why, sizeof why, "%s%.60s%s%.40s%s is out of range (beyond +-1.8e308)",
                 ps->key ? "\"" : "", ps->key ? ps->key : "", ps->key ? "\": " : "", tmp,
                 q - a > 40 ? "..." : "");
        free(v);
        parse_fail(ps, a, why);
        return NULL;
    }
    if (is_int) {
        errno = 0;
        long long ll = strtoll(tmp, NULL, 10);
        if (errno == 0) v->is_int = 1, v->i64 = ll;
    }
    ps->p = q;
    return v;
}

static int match_word(parser *ps, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n)) return 0;
    ps->p += n;
    return 1;
}

static int push_item(parser *ps, json_t *c, json_t *v, size_t *cap, char *key) {
    if (c->len == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        json_t **ni = realloc(c->items, nc * sizeof *ni);
        if (ni) c->items = ni;
        char **nk = (ni && key) ? realloc(c->keys, nc * sizeof *nk) : NULL;
        if (nk) c->keys = nk;
        if (!ni || (key && !nk)) {
            ps->rc = err_set(ps->err, ERR_NOMEM, "%s: out of memory", ps->what);
            return -1;
        }
        *cap = nc;
    }
    if (key) c->keys[c->len] = key;
    c->items[c->len++] = v;
    return 0;
}

static json_t *parse_value(parser *ps, int depth) {
    skip_ws(ps);
    if (ps->p >= ps->end) { parse_fail(ps, ps->p, "unexpected end of input"); return NULL; }
    if (depth > JSON_MAX_DEPTH) { parse_fail(ps, ps->p, "nesting too deep"); return NULL; }
    char c = *ps->p;
    json_t *v;
    if (c == '{' || c == '[') {
        int obj = c == '{';
        char close = obj ? '}' : ']';
        size_t cap = 0;
        if (!(v = node_new(ps, obj ? JSON_OBJ : JSON_ARR))) return NULL;
        const char *outer_key = ps->key;   /* an array's elements are named by its key */
        ps->p++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == close) { ps->p++; return v; }
        for (;;) {
            char *key = NULL;
            skip_ws(ps);
            if (obj) {
                size_t kl;
                if (ps->p >= ps->end || *ps->p != '"') { parse_fail(ps, ps->p, "expected a string key"); goto fail; }
                const char *kat = ps->p;
                if (!(key = parse_string(ps, &kl))) goto fail;
                for (size_t i = 0; i < v->len; i++)
                    if (!strcmp(v->keys[i], key)) {
                        free(key);
                        parse_fail(ps, kat, "duplicate key");
                        goto fail;
                    }
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') { free(key); parse_fail(ps, ps->p, "expected ':'"); goto fail; }
                ps->p++;
            }
            ps->key = obj ? key : outer_key;
            json_t *item = parse_value(ps, depth + 1);
            ps->key = outer_key;
            if (!item) { free(key); goto fail; }
            if (push_item(ps, v, item, &cap, key)) { free(key); json_free(item); goto fail; }
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
            if (ps->p < ps->end && *ps->p == close) { ps->p++; return v; }
            parse_fail(ps, ps->p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
            goto fail;
        }
    fail:
        json_free(v);
        return NULL;
    }
    if (c == '"') {
        if (!(v = node_new(ps, JSON_STR))) return NULL;
        if (!(v->str = parse_string(ps, &v->len))) { free(v); return NULL; }
        return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps);
    int is_true = match_word(ps, "true");
    if (is_true || match_word(ps, "false")) {
        if ((v = node_new(ps, JSON_BOOL))) v->boolean = is_true;
        return v;
    }
    if (match_word(ps, "null")) return node_new(ps, JSON_NULL);
    parse_fail(ps, ps->p, "unexpected character");
    return NULL;
}

int json_parse(json_t **out, const char *text, size_t len, const char *what, err_t *err) {
    parser ps = {text, text + len, text, what ? what : "JSON", err, 0, NULL};
    *out = NULL;
    json_t *v = parse_value(&ps, 0);
    if (!v) return ps.rc ? ps.rc : parse_fail(&ps, ps.p, "parse error");
    skip_ws(&ps);
    if (ps.p != ps.end) {
        json_free(v);
        return parse_fail(&ps, ps.p, "trailing characters after the value");
    }
    *out = v;
    return 0;
}

int json_parse_file(json_t **out, const char *path, err_t *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) { free(buf); buf = NULL; break; }
        buf = nb, cap *= 2;
    }
    int bad = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (!buf) return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    if (bad) { free(buf); return err_set(err, ERR_IO, "%s: read error: %s", path, strerror(bad)); }
    int rc = json_parse(out, buf, n, path, err);
    free(buf);
    return rc;
}

void json_free(json_t *v) {
    if (!v) return;
    for (size_t i = 0; i < v->len && v->items; i++) {
        json_free(v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    free(v);
}

json_type_t json_type(const json_t *v) { return v ? v->type : JSON_NULL; }

size_t json_len(const json_t *v) {
    return v && (v->type == JSON_ARR || v->type == JSON_OBJ || v->type == JSON_STR) ? v->len : 0;
}

const json_t *json_get(const json_t *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJ) return NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (!strcmp(obj->keys[i], key)) return obj->items[i];
    return NULL;
}

const json_t *json_at(const json_t *v, size_t i) {
    if (!v || (v->type != JSON_ARR && v->type != JSON_OBJ) || i >= v->len) return NULL;
    return v->items[i];
}

const char *json_key_at(const json_t *obj, size_t i) {
    if (!obj || obj->type != JSON_OBJ || i >= obj->len) return NULL;
    return obj->keys[i];
}

double json_num(const json_t *v) { return v && v->type == JSON_NUM ? v->num : NAN; }
int json_bool(const json_t *v) { return v && v->type == JSON_BOOL && v->boolean; }
const char *json_str(const json_t *v) { return v && v->type == JSON_STR ? v->str : NULL; }

int json_int(const json_t *v, int64_t *out) {
    if (!v || v->type != JSON_NUM) return -1;
    if (v->is_int) { *out = v->i64; return 0; }
    if (v->num == floor(v->num) && fabs(v->num) < 9007199254740992.0) {
        *out = (int64_t)v->num;
        return 0;
    }
    return -1;
}

void json_write_string(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    fputc('"', f);
    while (p < end) {
        unsigned c = *p;
        if (c == '"' || c == '\\') { fputc('\\', f); fputc((int)c, f); p++; continue; }
        if (c >= 0x20 && c < 0x7F) { fputc((int)c, f); p++; continue; }
        const char *short_esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                              : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (short_esc) { fputs(short_esc, f); p++; continue; }
        unsigned cp;
        size_t n = utf8_get(p, end, &cp);
        if (!n) cp = 0xDC00 + c, n = 1;   /* a byte that is not UTF-8: surrogateescape */
        p += n;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            fprintf(f, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
        } else {
            fprintf(f, "\\u%04x", cp);
        }
    }
    fputc('"', f);
}

char *json_fmt_double(char *buf, double x) {
    /* JSON has no NaN or Infinity (json.dumps' NaN is not JSON: strict
     * parsers, jq, JavaScript refuse it): a non-finite value is null */
    if (!isfinite(x)) return strcpy(buf, "null");
    /* Shortest %.Ne that reads back exactly: its digits and exponent. */
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, x);
        if (strtod(e, NULL) == x) break;
    }
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *q = e + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--; /* %.Ne may pad with zeros */
    char *o = buf;
    if (neg) *o++ = '-';
    if (exp10 >= -4 && exp10 < 16) {
        /* Fixed notation (repr uses it for 1e-4 <= |x| < 1e16). */
        if (exp10 < 0) {
            *o++ = '0', *o++ = '.';
            for (int i = 0; i < -exp10 - 1; i++) *o++ = '0';
            for (int i = 0; i < nd; i++) *o++ = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++) *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > exp10 + 1) for (int i = exp10 + 1; i < nd; i++) *o++ = digits[i];
            else *o++ = '0';
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = digits[i];
        }
        snprintf(o, (size_t)(JSON_DOUBLE_BUF - (o - buf)), "e%c%02d", exp10 < 0 ? '-' : '+',
                 exp10 < 0 ? -exp10 : exp10);
    }
    return buf;
}
