/* pickle.c: torch .pt checkpoints (torch.save zip format) without Python.
 *
 * A torch.save file is a zip: `<prefix>/data.pkl` pickles the object with
 * every tensor storage replaced by a "persistent id" ('storage', type, key,
 * location, numel), and `<prefix>/data/<key>` holds that storage's raw
 * little-endian bytes, stored uncompressed. The official SAM 2 / 2.1
 * checkpoints are torch.save({"model": state_dict}).
 *
 * The zip is read through minizip over the mapping weights.c made (custom
 * I/O callbacks, so the directory we parse and the bytes we point at are the
 * same bytes); a stored storage becomes a pointer into the mapping, a
 * compressed one is inflated into an owned block.
 *
 * The unpickler is deliberately RESTRICTED: pickle is a program, and a
 * checkpoint from the internet must not run one. It knows only the opcodes
 * torch.save emits for a dict of tensors (protocol 2, plus the few protocol
 * 4 framing/memo opcodes) and only these globals: collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and the
 * torch.*Storage types. Anything else (os.system, builtins.eval, ...) is
 * refused with a message naming it. Values live in a pool freed at the end;
 * every length, index and memo reference is bounds-checked.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unzip.h>

#include "weights_int.h"

/* ---------------------------------------------------------------- values */

typedef enum {
    PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT,
    PV_GLOBAL, PV_STORAGE, PV_TENSOR
} pv_kind;

typedef enum { G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_STORAGE } g_kind;

typedef struct pv pv;
struct pv {
    pv_kind  kind;
    int64_t  i;            /* INT, BOOL; STORAGE: numel from the persistent id */
    double   f;            /* FLOAT */
    char    *s;            /* STR text; STORAGE key (owned) */
    pv     **items;        /* TUPLE / LIST items, DICT keys and values interleaved */
    int      n, cap;       /* items used (DICT: 2 per entry) */
    g_kind   g;            /* GLOBAL: which callable */
    int      dt;           /* GLOBAL G_STORAGE / STORAGE: wdtype_t, -1 if unsupported */
    char    *gname;        /* GLOBAL G_STORAGE: "torch.DoubleStorage" for messages */
    pv      *storage;      /* TENSOR */
    int64_t  offset;       /* TENSOR: storage offset in elements */
    int      ndim;         /* TENSOR */
    int64_t  size[WEIGHTS_MAX_DIMS], stride[WEIGHTS_MAX_DIMS];
};

typedef struct unpickler {
    const unsigned char *start, *p, *end;
    pv      **stack;
    int       sp, scap;
    int      *marks;
    int       nm, mcap;
    pv      **memo;        /* (nmemo) */
    size_t    nmemo;
    pv      **pool;        /* every value, freed by up_free */
    int       npool, pcap;
    const char *path;
    err_t    *err;
    int       rc;
} unpickler;

static int up_fail(unpickler *u, const char *reason, const char *detail) {
    if (!u->rc)
        u->rc = err_set(u->err, ERR_FORMAT, "%s: data.pkl byte %ld: %s%s", u->path,
                        (long)(u->p - u->start), reason, detail ? detail : "");
    return u->rc;
}

static int grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    if (need > INT_MAX / 2) return -1; /* the doubling below must not overflow */
    int nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    size_t bytes;
    if (!size_bytes(nc, elem, &bytes)) return -1;
    void *na = realloc(*arr, bytes);
    if (!na) return -1;
    *arr = na, *cap = nc;
    return 0;
}

static pv *pv_new(unpickler *u, pv_kind k) {
    pv *v = calloc(1, sizeof *v);
    if (!v || grow((void **)&u->pool, &u->pcap, u->npool + 1, sizeof *u->pool)) {
        free(v);
        if (!u->rc) u->rc = err_set(u->err, ERR_NOMEM, "%s: out of memory unpickling", u->path);
        return NULL;
    }
    u->pool[u->npool++] = v;
    v->kind = k;
    v->dt = -1;
    return v;
}

static int pv_push_item(unpickler *u, pv *c, pv *x) {
    if (grow((void **)&c->items, &c->cap, c->n + 1, sizeof *c->items)) {
        if (!u->rc) u->rc = err_set(u->err, ERR_NOMEM, "%s: out of memory unpickling", u->path);
        return -1;
    }
    c->items[c->n++] = x;
    return 0;
}

static void up_free(unpickler *u) {
    for (int i = 0; i < u->npool; i++) {
        free(u->pool[i]->s);
        free(u->pool[i]->gname);
        free(u->pool[i]->items);
        free(u->pool[i]);
    }
    free(u->pool);
    free(u->stack);
    free(u->marks);
    free(u->memo);
}

static int push(unpickler *u, pv *v) {
    if (!v) return -1;
    if (grow((void **)&u->stack, &u->scap, u->sp + 1, sizeof *u->stack)) {
        if (!u->rc) u->rc = err_set(u->err, ERR_NOMEM, "%s: out of memory unpickling", u->path);
        return -1;
    }
    u->stack[u->sp++] = v;
    return 0;
}

static pv *pop(unpickler *u) {
    int floor = u->nm ? u->marks[u->nm - 1] : 0;
    if (u->sp <= floor) { up_fail(u, "stack underflow", NULL); return NULL; }
    return u->stack[--u->sp];
}

static pv *top(unpickler *u) {
    int floor = u->nm ? u->marks[u->nm - 1] : 0;
    if (u->sp <= floor) { up_fail(u, "stack underflow", NULL); return NULL; }
    return u->stack[u->sp - 1];
}

/* pop_mark: the stack index of the last MARK (items above it are the
 * mark's contents), removing the mark; -1 on error. */
static int pop_mark(unpickler *u) {
    if (!u->nm) { up_fail(u, "no MARK on the stack", NULL); return -1; }
    return u->marks[--u->nm];
}

static int need(unpickler *u, size_t n) {
    if ((size_t)(u->end - u->p) < n) return up_fail(u, "truncated pickle", NULL);
    return 0;
}

static uint64_t rd_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static pv *make_str(unpickler *u, const unsigned char *s, size_t n) {
    pv *v = pv_new(u, PV_STR);
    if (!v) return NULL;
    if (!(v->s = malloc(n + 1))) { up_fail(u, "out of memory", NULL); return NULL; }
    memcpy(v->s, s, n);
    v->s[n] = 0;
    v->i = (int64_t)n;
    return v;
}

static pv *make_int(unpickler *u, int64_t x) {
    pv *v = pv_new(u, PV_INT);
    if (v) v->i = x;
    return v;
}

static const struct { const char *name; int dt; } storage_types[] = {
    {"FloatStorage", WDT_F32}, {"HalfStorage", WDT_F16}, {"BFloat16Storage", WDT_BF16},
    {"LongStorage", WDT_I64},  {"IntStorage", WDT_I32},  {"ByteStorage", WDT_U8},
    {"CharStorage", WDT_I8},
};

/* make_global: the allow-list. */
static pv *make_global(unpickler *u, const char *mod, const char *name) {
    pv *v;
    if (!strcmp(mod, "collections") && !strcmp(name, "OrderedDict")) {
        if ((v = pv_new(u, PV_GLOBAL))) v->g = G_ORDERED_DICT;
        return v;
    }
    if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_tensor_v2")) {
        if ((v = pv_new(u, PV_GLOBAL))) v->g = G_REBUILD_TENSOR;
        return v;
    }
    if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_parameter")) {
        if ((v = pv_new(u, PV_GLOBAL))) v->g = G_REBUILD_PARAM;
        return v;
    }
    size_t nl = strlen(name);
    if (!strcmp(mod, "torch") && nl > 7 && !strcmp(name + nl - 7, "Storage") && !strchr(name, '.')) {
        if (!(v = pv_new(u, PV_GLOBAL))) return NULL;
        v->g = G_STORAGE;
        for (size_t k = 0; k < sizeof storage_types / sizeof storage_types[0]; k++)
            if (!strcmp(name, storage_types[k].name)) v->dt = storage_types[k].dt;
        if (!(v->gname = malloc(nl + 7))) { up_fail(u, "out of memory", NULL); return NULL; }
        snprintf(v->gname, nl + 7, "torch.%s", name);
        return v;
    }
    char what[300];
    snprintf(what, sizeof what, "%.120s.%.120s (only torch tensor rebuild functions are allowed)", mod, name);
    up_fail(u, "forbidden global ", what);
    return NULL;
}

static int int_of(const pv *v, int64_t *out) {
    if (!v || (v->kind != PV_INT && v->kind != PV_BOOL)) return -1;
    *out = v->i;
    return 0;
}

/* do_reduce: callable(*args) for the allowed callables. */
static pv *do_reduce(unpickler *u, pv *fn, pv *args) {
    if (fn->kind != PV_GLOBAL || args->kind != PV_TUPLE) {
        up_fail(u, "REDUCE of a non-callable", NULL);
        return NULL;
    }
    if (fn->g == G_ORDERED_DICT) {
        if (args->n) { up_fail(u, "OrderedDict with arguments", NULL); return NULL; }
        return pv_new(u, PV_DICT);
    }
    if (fn->g == G_REBUILD_PARAM) {
        if (args->n < 1 || args->items[0]->kind != PV_TENSOR) {
            up_fail(u, "_rebuild_parameter without a tensor", NULL);
            return NULL;
        }
        return args->items[0];
    }
    if (fn->g == G_REBUILD_TENSOR) {
        /* (storage, storage_offset, size, stride, requires_grad, hooks[, metadata]) */
        if (args->n < 4 || args->items[0]->kind != PV_STORAGE || args->items[2]->kind != PV_TUPLE ||
            args->items[3]->kind != PV_TUPLE || args->items[2]->n != args->items[3]->n) {
            up_fail(u, "malformed _rebuild_tensor_v2 arguments", NULL);
            return NULL;
        }
        pv *t = pv_new(u, PV_TENSOR);
        if (!t) return NULL;
        t->storage = args->items[0];
        t->ndim = args->items[2]->n;
        if (t->ndim > WEIGHTS_MAX_DIMS) { up_fail(u, "tensor with too many dims", NULL); return NULL; }
        if (int_of(args->items[1], &t->offset) || t->offset < 0) {
            up_fail(u, "bad tensor storage offset", NULL);
            return NULL;
        }
        for (int d = 0; d < t->ndim; d++)
            if (int_of(args->items[2]->items[d], &t->size[d]) || t->size[d] < 0 ||
                int_of(args->items[3]->items[d], &t->stride[d]) || t->stride[d] < 0) {
                up_fail(u, "bad tensor size or stride", NULL);
                return NULL;
            }
        return t;
    }
    up_fail(u, "a storage type called as a function", NULL);
    return NULL;
}

/* unpickle: run the restricted machine; the result of STOP, or NULL. */
static pv *unpickle(unpickler *u) {
    while (!u->rc) {
        if (need(u, 1)) break;
        unsigned char op = *u->p++;
        pv *a, *b, *c;
        int m;
        switch (op) {
        case 0x80: /* PROTO */
            if (need(u, 1)) break;
            if (*u->p > 5) up_fail(u, "unsupported pickle protocol", NULL);
            u->p++;
            break;
        case 0x95: /* FRAME: a length hint only */
            if (!need(u, 8)) u->p += 8;
            break;
        case '.': /* STOP */
            a = pop(u);
            if (a && u->sp) up_fail(u, "values left on the stack at STOP", NULL);
            return u->rc ? NULL : a;
        case '(': /* MARK */
            if (grow((void **)&u->marks, &u->mcap, u->nm + 1, sizeof *u->marks)) up_fail(u, "out of memory", NULL);
            else u->marks[u->nm++] = u->sp;
            break;
        case '}': push(u, pv_new(u, PV_DICT)); break;
        case ']': push(u, pv_new(u, PV_LIST)); break;
        case ')': push(u, pv_new(u, PV_TUPLE)); break;
        case 'N': push(u, pv_new(u, PV_NONE)); break;
        case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
            if ((a = pv_new(u, PV_BOOL))) a->i = op == 0x88;
            push(u, a);
            break;
        case 'X': case 0x8c: case 0x8d: { /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 */
            int w = op == 'X' ? 4 : op == 0x8c ? 1 : 8;
            if (need(u, (size_t)w)) break;
            uint64_t n = rd_le(u->p, w);
            u->p += w;
            if (n > (uint64_t)(u->end - u->p)) { up_fail(u, "truncated pickle", NULL); break; }
            push(u, make_str(u, u->p, (size_t)n));
            u->p += n;
            break;
        }
        case 'K': if (!need(u, 1)) push(u, make_int(u, u->p[0])), u->p += 1; break;
        case 'M': if (!need(u, 2)) push(u, make_int(u, (int64_t)rd_le(u->p, 2))), u->p += 2; break;
        case 'J': if (!need(u, 4)) push(u, make_int(u, (int32_t)(uint32_t)rd_le(u->p, 4))), u->p += 4; break;
        case 0x8a: { /* LONG1: n-byte little-endian two's complement */
            if (need(u, 1)) break;
            int n = *u->p++;
            if (n > 8) { up_fail(u, "integer wider than 64 bits", NULL); break; }
            if (need(u, (size_t)n)) break;
            uint64_t v = rd_le(u->p, n);
            if (n && n < 8 && (u->p[n - 1] & 0x80)) v |= ~UINT64_C(0) << (8 * n); /* sign-extend */
            u->p += n;
            push(u, make_int(u, (int64_t)v));
            break;
        }
        case 'G': { /* BINFLOAT: big-endian double */
            if (need(u, 8)) break;
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++) bits = bits << 8 | u->p[i];
            u->p += 8;
            if ((a = pv_new(u, PV_FLOAT))) memcpy(&a->f, &bits, 8);
            push(u, a);
            break;
        }
        case 'q': case 'r': case 0x94: { /* BINPUT, LONG_BINPUT, MEMOIZE */
            size_t idx = u->nmemo;
            if (op != 0x94) {
                int w = op == 'q' ? 1 : 4;
                if (need(u, (size_t)w)) break;
                idx = (size_t)rd_le(u->p, w);
                u->p += w;
            }
            if (!(a = top(u))) break;
            if (idx > (size_t)(u->end - u->start)) { up_fail(u, "memo index out of range", NULL); break; }
            if (idx >= u->nmemo) {
                size_t mbytes;
                pv **nm = size_bytes((int64_t)idx + 1, sizeof *nm, &mbytes) ? realloc(u->memo, mbytes) : NULL;
                if (!nm) { up_fail(u, "out of memory", NULL); break; }
                memset(nm + u->nmemo, 0, (idx + 1 - u->nmemo) * sizeof *nm);
                u->memo = nm, u->nmemo = idx + 1;
            }
            u->memo[idx] = a;
            break;
        }
        case 'h': case 'j': { /* BINGET, LONG_BINGET */
            int w = op == 'h' ? 1 : 4;
            if (need(u, (size_t)w)) break;
            size_t idx = (size_t)rd_le(u->p, w);
            u->p += w;
            if (idx >= u->nmemo || !u->memo[idx]) { up_fail(u, "reference to an unset memo slot", NULL); break; }
            push(u, u->memo[idx]);
            break;
        }
        case 't': case 0x85: case 0x86: case 0x87: { /* TUPLE, TUPLE1..3 */
            int from = op == 't' ? pop_mark(u) : u->sp - (op - 0x84);
            int floor = u->nm ? u->marks[u->nm - 1] : 0;
            if (from < 0 || (op != 't' && from < floor)) { up_fail(u, "stack underflow", NULL); break; }
            if (!(a = pv_new(u, PV_TUPLE))) break;
            for (int i = from; i < u->sp && !u->rc; i++) pv_push_item(u, a, u->stack[i]);
            u->sp = from;
            push(u, a);
            break;
        }
        case 'c': { /* GLOBAL "module\nname\n" */
            const unsigned char *nl1 = memchr(u->p, '\n', (size_t)(u->end - u->p));
            const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(u->end - nl1 - 1)) : NULL;
            if (!nl2 || nl1 - u->p > 200 || nl2 - nl1 > 200) { up_fail(u, "bad GLOBAL", NULL); break; }
            char mod[201], name[201];
            memcpy(mod, u->p, (size_t)(nl1 - u->p)), mod[nl1 - u->p] = 0;
            memcpy(name, nl1 + 1, (size_t)(nl2 - nl1 - 1)), name[nl2 - nl1 - 1] = 0;
            u->p = nl2 + 1;
            push(u, make_global(u, mod, name));
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if (!(b = pop(u)) || !(a = pop(u))) break;
            if (a->kind != PV_STR || b->kind != PV_STR) { up_fail(u, "bad STACK_GLOBAL", NULL); break; }
            push(u, make_global(u, a->s, b->s));
            break;
        case 'Q': { /* BINPERSID: ('storage', type, key, location, numel) */
            if (!(a = pop(u))) break;
            if (a->kind != PV_TUPLE || a->n != 5 || a->items[0]->kind != PV_STR ||
                strcmp(a->items[0]->s, "storage") || a->items[1]->kind != PV_GLOBAL ||
                a->items[1]->g != G_STORAGE || a->items[2]->kind != PV_STR ||
                a->items[4]->kind != PV_INT || a->items[4]->i < 0) {
                up_fail(u, "unsupported persistent id (expected a torch storage)", NULL);
                break;
            }
            if (!(b = pv_new(u, PV_STORAGE))) break;
            b->dt = a->items[1]->dt;
            b->gname = strdup(a->items[1]->gname);
            b->s = strdup(a->items[2]->s);
            b->i = a->items[4]->i;
            if (!b->gname || !b->s) { up_fail(u, "out of memory", NULL); break; }
            push(u, b);
            break;
        }
        case 'R': /* REDUCE */
            if (!(b = pop(u)) || !(a = pop(u))) break;
            push(u, do_reduce(u, a, b));
            break;
        case 'b': /* BUILD: only the OrderedDict's _metadata attribute, ignored */
            if (!(b = pop(u)) || !(a = top(u))) break;
            if (a->kind != PV_DICT) up_fail(u, "BUILD on an object other than a dict", NULL);
            break;
        case 's': /* SETITEM */
            if (!(c = pop(u)) || !(b = pop(u)) || !(a = top(u))) break;
            if (a->kind != PV_DICT) { up_fail(u, "SETITEM on a non-dict", NULL); break; }
            if (!pv_push_item(u, a, b)) pv_push_item(u, a, c);
            break;
        case 'u': case 'e': /* SETITEMS, APPENDS */
            if ((m = pop_mark(u)) < 0) break;
            if (m <= (u->nm ? u->marks[u->nm - 1] : 0)) { up_fail(u, "stack underflow", NULL); break; }
            a = u->stack[m - 1]; /* the container sits just below the mark */
            if (a->kind != (op == 'u' ? PV_DICT : PV_LIST) || (op == 'u' && (u->sp - m) % 2)) {
                up_fail(u, op == 'u' ? "bad SETITEMS" : "bad APPENDS", NULL);
                break;
            }
            for (int i = m; i < u->sp && !u->rc; i++) pv_push_item(u, a, u->stack[i]);
            u->sp = m;
            break;
        case 'a': /* APPEND */
            if (!(b = pop(u)) || !(a = top(u))) break;
            if (a->kind != PV_LIST) { up_fail(u, "APPEND on a non-list", NULL); break; }
            pv_push_item(u, a, b);
            break;
        default: {
            char hex[8];
            snprintf(hex, sizeof hex, "0x%02x", op);
            u->p--;
            up_fail(u, "unsupported pickle opcode ", hex);
        }
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ zip access */

typedef struct memf { const unsigned char *base; size_t len, pos; } memf;

static voidpf ZCALLBACK mf_open(voidpf opaque, const void *name, int mode) {
    (void)name, (void)mode;
    ((memf *)opaque)->pos = 0;
    return opaque;
}
static uLong ZCALLBACK mf_read(voidpf opaque, voidpf s, void *buf, uLong n) {
    (void)opaque;
    memf *m = s;
    size_t left = m->pos < m->len ? m->len - m->pos : 0;
    if (n > left) n = (uLong)left;
    memcpy(buf, m->base + m->pos, n);
    m->pos += n;
    return n;
}
static uLong ZCALLBACK mf_write(voidpf o, voidpf s, const void *b, uLong n) {
    (void)o, (void)s, (void)b, (void)n;
    return 0;
}
static ZPOS64_T ZCALLBACK mf_tell(voidpf o, voidpf s) { (void)o; return ((memf *)s)->pos; }
static long ZCALLBACK mf_seek(voidpf o, voidpf s, ZPOS64_T off, int origin) {
    (void)o;
    memf *m = s;
    ZPOS64_T base = origin == ZLIB_FILEFUNC_SEEK_SET ? 0 : origin == ZLIB_FILEFUNC_SEEK_CUR ? m->pos : m->len;
    if (off > m->len || base + off > m->len) return -1;
    m->pos = (size_t)(base + off);
    return 0;
}
static int ZCALLBACK mf_close(voidpf o, voidpf s) { (void)o, (void)s; return 0; }
static int ZCALLBACK mf_error(voidpf o, voidpf s) { (void)o, (void)s; return 0; }

typedef struct zentry {
    char                *name;
    unz64_file_pos       pos;
    ZPOS64_T             csize, usize;
    int                  method, encrypted;
    const unsigned char *data;   /* resolved storage bytes (mapping or owned), NULL until used */
} zentry;

static int zentry_cmp(const void *a, const void *b) {
    return strcmp(((const zentry *)a)->name, ((const zentry *)b)->name);
}

/* zip_sizes_check: an entry's sizes, as the zip directory states them,
 * against the file (maplen bytes): the compressed bytes fit in the file, a
 * stored entry is as long as it is compressed, and a deflated one expands
 * at most 1032 times (deflate's limit), so a lying directory cannot make a
 * 500-byte file allocate gigabytes. The reads check the real lengths. */
static int zip_sizes_check(const zentry *e, size_t maplen, const char *path, err_t *err) {
    int64_t most;
    if (e->csize > maplen || e->usize > (ZPOS64_T)INT64_MAX ||
        (e->method == 0 && e->usize != e->csize) ||
        !size_mul_add((int64_t)e->csize, 1032, 64, &most) || (int64_t)e->usize > most)
        return err_set(err, ERR_FORMAT, "%s: entry %s: sizes %llu (compressed) / %llu do not fit a %zu-byte file",
                       path, e->name, (unsigned long long)e->csize, (unsigned long long)e->usize, maplen);
    return 0;
}

/* zip_read: a whole entry into a malloc'd buffer (CRC checked). */
static int zip_read(unzFile uf, zentry *e, size_t maplen, const char *path, unsigned char **out,
                    err_t *err) {
    *out = NULL;
    int zrc = zip_sizes_check(e, maplen, path, err);
    if (zrc) return zrc;
    if (e->usize > (ZPOS64_T)1 << 32)
        return err_set(err, ERR_FORMAT, "%s: entry %s too large (%llu bytes)", path, e->name,
                       (unsigned long long)e->usize);
    size_t alloc;
    unsigned char *b = size_bytes((int64_t)e->usize + 1, 1, &alloc) ? malloc(alloc) : NULL;
    if (!b) return err_set(err, ERR_NOMEM, "%s: out of memory reading %s", path, e->name);
    int rc = unzGoToFilePos64(uf, &e->pos);
    if (rc == UNZ_OK) rc = unzOpenCurrentFile(uf);
    if (rc != UNZ_OK) {
        free(b);
        return err_set(err, ERR_FORMAT, "%s: cannot open zip entry %s (corrupt or truncated)", path, e->name);
    }
    size_t got = 0;
    for (;;) {
        unsigned chunk = e->usize - got > (1u << 30) ? (1u << 30) : (unsigned)(e->usize - got);
        int r = unzReadCurrentFile(uf, b + got, chunk ? chunk : 1);
        if (r < 0 || (r == 0 && got < e->usize) || got + (size_t)r > e->usize) {
            unzCloseCurrentFile(uf);
            free(b);
            return err_set(err, ERR_FORMAT, "%s: zip entry %s is corrupt or truncated", path, e->name);
        }
        got += (size_t)r;
        if (r == 0) break;
    }
    if (unzCloseCurrentFile(uf) != UNZ_OK) {
        free(b);
        return err_set(err, ERR_FORMAT, "%s: zip entry %s fails its CRC check", path, e->name);
    }
    *out = b;
    return 0;
}

/* storage_bytes: the raw bytes of `<prefix>/data/<key>` (cached per entry). */
static int storage_bytes(weights_t *w, unzFile uf, zentry *ents, int nents, const char *prefix,
                         const char *key, const unsigned char **data, uint64_t *bytes, err_t *err) {
    const char *path = weights_path(w);
    char name[600];
    snprintf(name, sizeof name, "%s/data/%s", prefix, key);
    zentry probe = {.name = name};
    zentry *e = bsearch(&probe, ents, (size_t)nents, sizeof *ents, zentry_cmp);
    if (!e) return err_set(err, ERR_FORMAT, "%s: storage %s missing from the archive (truncated?)", path, name);
    *bytes = e->usize;
    if (e->data) { *data = e->data; return 0; }
    if (e->encrypted) return err_set(err, ERR_FORMAT, "%s: entry %s is encrypted", path, name);
    size_t maplen;
    const unsigned char *map = weights_map(w, &maplen);
    int rc = zip_sizes_check(e, maplen, path, err);
    if (rc) return rc;
    if (e->method == 0) {
        if (unzGoToFilePos64(uf, &e->pos) != UNZ_OK || unzOpenCurrentFile(uf) != UNZ_OK)
            return err_set(err, ERR_FORMAT, "%s: cannot open zip entry %s (corrupt or truncated)", path, name);
        ZPOS64_T at = unzGetCurrentFileZStreamPos64(uf);
        unzCloseCurrentFile(uf);
        int64_t end;
        if (at > maplen || !size_add((int64_t)at, (int64_t)e->usize, &end) || (uint64_t)end > maplen)
            return err_set(err, ERR_FORMAT, "%s: entry %s: %llu bytes at offset %llu run past the end of the file (%zu bytes)",
                           path, name, (unsigned long long)e->usize, (unsigned long long)at, maplen);
        e->data = map + at;
    } else {
        unsigned char *b;
        rc = zip_read(uf, e, maplen, path, &b, err);
        if (rc) return rc;
        unsigned char *owned = weights_own(w, (size_t)e->usize); /* <= 2^32, checked by zip_read */
        if (!owned) { free(b); return err_set(err, ERR_NOMEM, "%s: out of memory", path); }
        memcpy(owned, b, (size_t)e->usize);
        free(b);
        e->data = owned;
    }
    *data = e->data;
    return 0;
}

/* add_tensor: check t against its storage and hand it to weights_add,
 * gathering a non-contiguous view into an owned block.
 *
 * Every number here comes from the file: the storage's element count and
 * byte length, the view's offset, sizes and strides. Each product and sum
 * goes through size.h, so a hostile view (size 17, stride 2^60, whose last
 * element index wraps to 0 in plain arithmetic) is refused instead of being
 * read at base + 2^60 * idx. */
static int add_tensor(weights_t *w, unzFile uf, zentry *ents, int nents, const char *prefix,
                      const char *name, const pv *t, err_t *err) {
    const char *path = weights_path(w);
    const pv *s = t->storage;
    if (s->dt < 0)
        return err_set(err, ERR_FORMAT, "%s: tensor %s: unsupported dtype (%s)", path, name, s->gname);
    const int64_t esz = (int64_t)weights_dtype_size((wdtype_t)s->dt);
    const unsigned char *base = NULL;
    uint64_t bytes = 0;
    int rc = storage_bytes(w, uf, ents, nents, prefix, s->s, &base, &bytes, err);
    if (rc) return rc;
    int64_t need;
    if (!size_mul(s->i, esz, &need) || (uint64_t)need > bytes)
        return err_set(err, ERR_FORMAT, "%s: tensor %s: storage %s holds %llu bytes, %lld elements of %lld expected",
                       path, name, s->s, (unsigned long long)bytes, (long long)s->i, (long long)esz);
    if (t->offset > s->i)
        return err_set(err, ERR_FORMAT, "%s: tensor %s: storage offset %lld is past its storage of %lld elements",
                       path, name, (long long)t->offset, (long long)s->i);
    int64_t numel;
    if (!size_prod(t->size, t->ndim, WEIGHTS_MAX_NUMEL, &numel))
        return err_set(err, ERR_FORMAT, "%s: tensor %s: shape overflows or exceeds %lld elements", path, name,
                       (long long)WEIGHTS_MAX_NUMEL);
    /* last: the highest element index the view reaches, offset +
     * sum (size - 1) * stride; expect: the stride of a contiguous layout */
    int64_t last = t->offset, expect = 1;
    int contiguous = 1;
    for (int d = t->ndim - 1; numel && d >= 0; d--) {
        if (!size_mul_add(t->size[d] - 1, t->stride[d], last, &last))
            return err_set(err, ERR_FORMAT, "%s: tensor %s: view (size %lld, stride %lld in dim %d) overflows",
                           path, name, (long long)t->size[d], (long long)t->stride[d], d);
        if (t->size[d] > 1 && t->stride[d] != expect) contiguous = 0;
        expect *= t->size[d]; /* at most numel, checked above */
    }
    if (numel && last >= s->i)
        return err_set(err, ERR_FORMAT, "%s: tensor %s: view (offset %lld) reaches past its storage of %lld elements",
                       path, name, (long long)t->offset, (long long)s->i);
    const void *data = base + t->offset * esz; /* offset * esz <= need <= bytes */
    if (!contiguous && numel) {
        size_t nbytes;
        unsigned char *dst = size_bytes(numel, (size_t)esz, &nbytes) ? weights_own(w, nbytes) : NULL;
        if (!dst) return err_set(err, ERR_NOMEM, "%s: tensor %s: out of memory", path, name);
        int64_t idx[WEIGHTS_MAX_DIMS] = {0};
        for (int64_t k = 0; k < numel; k++) {
            int64_t src = t->offset; /* <= last: every term was bounded above */
            for (int d = 0; d < t->ndim; d++) src += idx[d] * t->stride[d];
            memcpy(dst + k * esz, base + src * esz, (size_t)esz);
            for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->size[d]; d--) idx[d] = 0;
        }
        data = dst;
    }
    weights_add(w, name, (wdtype_t)s->dt, t->ndim, t->size, data, &rc, err);
    return rc;
}

int pt_load(weights_t *w, err_t *err) {
    const char *path = weights_path(w);
    memf mf;
    mf.base = weights_map(w, &mf.len);
    mf.pos = 0;
    /* The end-of-central-directory record must end exactly at the end of
     * the file (minizip alone accepts a record cut short by truncation). */
    int eocd = 0;
    for (size_t back = 22; !eocd && back <= mf.len && back <= 22 + 65535; back++) {
        const unsigned char *r = mf.base + mf.len - back;
        eocd = !memcmp(r, "PK\x05\x06", 4) && 22 + (size_t)(r[20] | r[21] << 8) == back;
    }
    zlib_filefunc64_def io = {mf_open, mf_read, mf_write, mf_tell, mf_seek, mf_close, mf_error, &mf};
    unzFile uf = eocd ? unzOpen2_64(path, &io) : NULL;
    if (!uf)
        return err_set(err, ERR_FORMAT, "%s: not a readable zip archive (truncated or corrupt: no central directory)", path);
    zentry *ents = NULL;
    int nents = 0, cap = 0, rc = 0;
    unsigned char *pkl = NULL;
    unpickler u = {0};
    for (int r = unzGoToFirstFile(uf); r == UNZ_OK; r = unzGoToNextFile(uf)) {
        unz_file_info64 info;
        char name[520];
        if (unzGetCurrentFileInfo64(uf, &info, name, sizeof name, NULL, 0, NULL, 0) != UNZ_OK) {
            rc = err_set(err, ERR_FORMAT, "%s: corrupt zip directory", path);
            goto done;
        }
        if (info.size_filename >= sizeof name) continue; /* not one of ours */
        if (grow((void **)&ents, &cap, nents + 1, sizeof *ents) || !(ents[nents].name = strdup(name))) {
            rc = err_set(err, ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        zentry *e = &ents[nents++];
        unzGetFilePos64(uf, &e->pos);
        e->csize = info.compressed_size, e->usize = info.uncompressed_size;
        e->method = (int)info.compression_method, e->encrypted = info.flag & 1;
        e->data = NULL;
    }
    if (nents > 1) qsort(ents, (size_t)nents, sizeof *ents, zentry_cmp); /* ents NULL when empty */
    /* the archive's folder: the one holding data.pkl */
    zentry *pk = NULL;
    for (int i = 0; i < nents && !pk; i++) {
        size_t l = strlen(ents[i].name);
        const char *slash = strchr(ents[i].name, '/');
        if (l > 9 && !strcmp(ents[i].name + l - 9, "/data.pkl") && slash == ents[i].name + l - 9) pk = &ents[i];
    }
    if (!pk) {
        rc = err_set(err, ERR_FORMAT, "%s: zip archive without <name>/data.pkl: not a torch checkpoint", path);
        goto done;
    }
    char prefix[520];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(pk->name) - 9), pk->name);
    char bo_name[540];
    snprintf(bo_name, sizeof bo_name, "%s/byteorder", prefix);
    zentry probe = {.name = bo_name};
    zentry *bo = bsearch(&probe, ents, (size_t)nents, sizeof *ents, zentry_cmp);
    if (bo) {
        unsigned char *b;
        if ((rc = zip_read(uf, bo, mf.len, path, &b, err))) goto done;
        int little = bo->usize == 6 && !memcmp(b, "little", 6);
        free(b);
        if (!little) { rc = err_set(err, ERR_FORMAT, "%s: big-endian checkpoint (not supported)", path); goto done; }
    }
    if ((rc = zip_read(uf, pk, mf.len, path, &pkl, err))) goto done;
    u.start = u.p = pkl;
    u.end = pkl + pk->usize;
    u.path = path;
    u.err = err;
    pv *root = unpickle(&u);
    if (!root) { rc = u.rc ? u.rc : err_set(err, ERR_FORMAT, "%s: data.pkl: no STOP", path); goto done; }
    /* {"model": state_dict} or a bare state_dict */
    pv *table = NULL;
    if (root->kind == PV_DICT) {
        for (int i = 0; i + 1 < root->n; i += 2)
            if (root->items[i]->kind == PV_STR && !strcmp(root->items[i]->s, "model") &&
                root->items[i + 1]->kind == PV_DICT)
                table = root->items[i + 1];
        for (int i = 1; !table && i < root->n; i += 2)
            if (root->items[i]->kind == PV_TENSOR) table = root;
    }
    if (!table) {
        rc = err_set(err, ERR_FORMAT, "%s: no tensor table: expected {\"model\": state_dict} or a state_dict", path);
        goto done;
    }
    for (int i = 0; i + 1 < table->n; i += 2) {
        pv *k = table->items[i], *v = table->items[i + 1];
        if (k->kind != PV_STR || v->kind != PV_TENSOR) {
            rc = err_set(err, ERR_FORMAT, "%s: state_dict entry %d (%s) is not a named tensor", path, i / 2,
                         k->kind == PV_STR ? k->s : "non-string key");
            goto done;
        }
        if ((rc = add_tensor(w, uf, ents, nents, prefix, k->s, v, err))) goto done;
    }
done:
    up_free(&u);
    free(pkl);
    for (int i = 0; i < nents; i++) free(ents[i].name);
    free(ents);
    unzClose(uf);
    return rc;
}
