/* weights.c: checkpoint tensors for the model, from one read-only mapping.
 *
 * weights_open maps the whole file and tells the format by content: a zip
 * (torch .pt, read by pt_load in pickle.c) or a safetensors file (8-byte
 * little-endian header length, a JSON header, then the data). Tensors point
 * into the mapping (llama2.c's memory_map_weights): loading a 900 MB
 * checkpoint costs a page-table setup, not a copy. Only what cannot be used
 * in place is copied into blocks owned by the weights_t: misaligned data,
 * f16/bf16 converted to f32 on first weights_get, non-contiguous .pt views.
 *
 * Every header field is validated before a pointer is formed (lengths,
 * offsets, numel * dtype size, that the tensors tile the data exactly as
 * the official safetensors reader requires), so a hostile or truncated file
 * gives ERR_FORMAT with one line, never an out-of-bounds read.
 *
 * "Random mode" (weights_open_random) serves any name and shape asked with
 * deterministic pseudo-random values, so benchmarks can build the real
 * tiny / large models without a checkpoint.
 */
#include "weights.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "outfile.h"
#include "weights_int.h"

#define TENSOR_BLOCK 256

struct weights {
    char                *path;      /* file path, or "random:SEED" */
    const unsigned char *map;       /* the whole file, read-only (map_len bytes) */
    size_t               map_len;
    wtensor_t          **tp;        /* (n) tensors in file order; blocks never move */
    const float        **f32;       /* (n) float32 view of tp[i], NULL until weights_get */
    int                  n, cap;
    wtensor_t           *block;     /* current block of TENSOR_BLOCK tensors */
    int                  block_used;
    int                 *hash;      /* (hash_cap) open addressing: index into tp, -1 empty */
    int                  hash_cap;
    void               **owned;     /* (n_owned) blocks freed at close */
    int                  n_owned, cap_owned;
    int                  random;    /* random mode: weights_get invents tensors */
    uint64_t             seed;
    int                  sigbus_slot; /* SIGBUS guard slot of the mapping, -1 none */
};

static const struct { const char *name; size_t size; } dtype_info[] = {
    [WDT_F32] = {"F32", 4}, [WDT_F16] = {"F16", 2}, [WDT_BF16] = {"BF16", 2},
    [WDT_I64] = {"I64", 8}, [WDT_I32] = {"I32", 4}, [WDT_U8] = {"U8", 1}, [WDT_I8] = {"I8", 1},
};
#define N_DTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

size_t weights_dtype_size(wdtype_t dt) { return dtype_info[dt].size; }
const char *weights_dtype_name(wdtype_t dt) { return dtype_info[dt].name; }

const unsigned char *weights_map(const weights_t *w, size_t *len) {
    *len = w->map_len;
    return w->map;
}

static int own_push(weights_t *w, void *p) {
    if (w->n_owned == w->cap_owned) {
        int nc = w->cap_owned ? w->cap_owned * 2 : 64;
        void **no = realloc(w->owned, (size_t)nc * sizeof *no);
        if (!no) return -1;
        w->owned = no, w->cap_owned = nc;
    }
    w->owned[w->n_owned++] = p;
    return 0;
}

void *weights_own(weights_t *w, size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 1)) return NULL;
    memset(p, 0, n ? n : 1);
    if (own_push(w, p)) { free(p); return NULL; }
    return p;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int hash_lookup(const weights_t *w, const char *name) {
    if (!w->hash_cap) return -1;
    size_t mask = (size_t)w->hash_cap - 1;
    for (size_t i = name_hash(name) & mask;; i = (i + 1) & mask) {
        int k = w->hash[i];
        if (k < 0) return -1;
        if (!strcmp(w->tp[k]->name, name)) return k;
    }
}

static int hash_insert_all(weights_t *w, int cap) {
    int *h = malloc((size_t)cap * sizeof *h);
    if (!h) return -1;
    for (int i = 0; i < cap; i++) h[i] = -1;
    free(w->hash);
    w->hash = h, w->hash_cap = cap;
    for (int k = 0; k < w->n; k++) {
        size_t i = name_hash(w->tp[k]->name) & (size_t)(cap - 1);
        while (h[i] >= 0) i = (i + 1) & (size_t)(cap - 1);
        h[i] = k;
    }
    return 0;
}

wtensor_t *weights_add(weights_t *w, const char *name, wdtype_t dtype, int ndim,
                       const int64_t *shape, const void *data, int *rc, err_t *err) {
    CHECK(ndim >= 0 && ndim <= WEIGHTS_MAX_DIMS && (int)dtype >= 0 && (int)dtype < N_DTYPES);
    if (hash_lookup(w, name) >= 0) {
        *rc = err_set(err, ERR_FORMAT, "%s: duplicate tensor name '%s'", w->path, name);
        return NULL;
    }
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 256;
        wtensor_t **ntp = realloc(w->tp, (size_t)nc * sizeof *ntp);
        if (!ntp) goto nomem;
        w->tp = ntp;
        const float **nf = realloc(w->f32, (size_t)nc * sizeof *nf);
        if (!nf) goto nomem;
        w->f32 = nf;
        w->cap = nc;
    }
    if (2 * (w->n + 1) > w->hash_cap && hash_insert_all(w, w->hash_cap ? 2 * w->hash_cap : 512))
        goto nomem;
    if (!w->block || w->block_used == TENSOR_BLOCK) {
        if (!(w->block = weights_own(w, TENSOR_BLOCK * sizeof(wtensor_t)))) goto nomem;
        w->block_used = 0;
    }
    wtensor_t *t = &w->block[w->block_used];
    int64_t numel;
    size_t esz = dtype_info[dtype].size, nbytes;
    if (!size_prod(shape, ndim, WEIGHTS_MAX_NUMEL, &numel) || !size_bytes(numel, esz, &nbytes)) {
        *rc = err_set(err, ERR_FORMAT, "%s: tensor '%s': shape overflows or exceeds %lld elements", w->path,
                      name, (long long)WEIGHTS_MAX_NUMEL);
        return NULL;
    }
    char *nm = weights_own(w, strlen(name) + 1);
    if (!nm) goto nomem;
    strcpy(nm, name);
    if ((uintptr_t)data % esz) { /* misaligned in the file: copy once */
        void *cp = weights_own(w, nbytes);
        if (!cp) goto nomem;
        memcpy(cp, data, nbytes);
        data = cp;
    }
    w->block_used++;
    *t = (wtensor_t){.name = nm, .dtype = dtype, .ndim = ndim, .numel = numel, .data = data};
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    w->f32[w->n] = dtype == WDT_F32 ? (const float *)data : NULL;
    w->tp[w->n++] = t;
    size_t mask = (size_t)w->hash_cap - 1, i = name_hash(nm) & mask;
    while (w->hash[i] >= 0) i = (i + 1) & mask;
    w->hash[i] = w->n - 1;
    *rc = 0;
    return t;
nomem:
    *rc = err_set(err, ERR_NOMEM, "%s: out of memory", w->path);
    return NULL;
}

/* ---- safetensors ---- */

typedef struct span { uint64_t begin, end; const char *name; } span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* st_add_hf: add one tensor of a transformers Sam2Model file under its
 * official name (weights_hf.c): video-only tensors are left out, the (4,C)
 * point embedding becomes four (1,C) views, the second copy of the
 * positional matrix must equal the first and is dropped. */
static int st_add_hf(weights_t *w, const char *name, wdtype_t dtype, int ndim,
                     const int64_t *shape, const unsigned char *data, err_t *err) {
    char off[256];
    int rc = 0, kind = weights_hf_name(name, off, sizeof off);
    if (kind == WEIGHTS_HF_SKIP) return 0;
    /* no rule (or the official name would not fit off): the name as it is,
     * never cut to 255 bytes (two long names would become one) */
    const char *key = kind == WEIGHTS_HF_UNKNOWN ? name : off;
    if (kind == WEIGHTS_HF_POINT_EMBED) {
        if (ndim != 2 || shape[0] != 4)
            return err_set(err, ERR_FORMAT, "%s: tensor '%s': expected shape [4,C]", w->path, name);
        size_t row = (size_t)shape[1] * dtype_info[dtype].size;
        for (int i = 0; i < 4; i++) {
            snprintf(off, sizeof off, "sam_prompt_encoder.point_embeddings.%d.weight", i);
            if (!weights_add(w, off, dtype, 2, (int64_t[]){1, shape[1]}, data + (size_t)i * row, &rc, err))
                return rc;
        }
        return 0;
    }
    const wtensor_t *prev = !strcmp(key, WEIGHTS_HF_PE) ? weights_find(w, key) : NULL;
    if (prev) {
        int same = prev->dtype == dtype && prev->ndim == ndim &&
                   !memcmp(prev->shape, shape, (size_t)ndim * sizeof *shape) &&
                   !memcmp(prev->data, data, (size_t)prev->numel * dtype_info[dtype].size);
        return same ? 0
                    : err_set(err, ERR_FORMAT,
                              "%s: tensor '%s' differs from shared_image_embedding.positional_embedding:"
                              " the official model has one positional matrix for both", w->path, name);
    }
    return weights_add(w, key, dtype, ndim, shape, data, &rc, err) ? 0 : rc;
}

static int st_load(weights_t *w, err_t *err) {
    const char *path = w->path;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | w->map[i];
    int64_t hend; /* 8 + hlen: where the data begins */
    if (hlen > (uint64_t)INT64_MAX || !size_add(8, (int64_t)hlen, &hend) || (uint64_t)hend > w->map_len)
        return err_set(err, ERR_FORMAT,
                       "%s: truncated safetensors file: header of %llu bytes, file holds %zu",
                       path, (unsigned long long)hlen, w->map_len);
    char what[512];
    snprintf(what, sizeof what, "%s: safetensors header", path);
    json_t *h = NULL;
    int rc = json_parse(&h, (const char *)w->map + 8, (size_t)hlen, what, err);
    if (rc) return rc;
    const unsigned char *data = w->map + hend;
    const int64_t data_len = (int64_t)(w->map_len - (size_t)hend);
    size_t n = json_len(h);
    span *sp = calloc(n + 1, sizeof *sp);
    size_t ns = 0;
    rc = ERR_FORMAT;
    if (!sp) { rc = err_set(err, ERR_NOMEM, "%s: out of memory", path); goto done; }
    if (json_type(h) != JSON_OBJ) { err_set(err, ERR_FORMAT, "%s: safetensors header is not a JSON object", path); goto done; }
    /* transformers' Sam2Model names: mapped onto the official ones */
    int hf = 0;
    for (size_t k = 0; k < n && !hf; k++) hf = weights_hf_is_layout(json_key_at(h, k));
    for (size_t k = 0; k < n; k++) {
        const char *name = json_key_at(h, k);
        const json_t *e = json_at(h, k);
        if (!strcmp(name, "__metadata__")) {
            if (json_type(e) != JSON_OBJ) { err_set(err, ERR_FORMAT, "%s: __metadata__ is not an object", path); goto done; }
            continue;
        }
        const char *dt = json_str(json_get(e, "dtype"));
        const json_t *shp = json_get(e, "shape"), *off = json_get(e, "data_offsets");
        if (json_type(e) != JSON_OBJ || !dt || json_type(shp) != JSON_ARR ||
            json_type(off) != JSON_ARR || json_len(off) != 2) {
            err_set(err, ERR_FORMAT, "%s: tensor '%s': header entry needs dtype, shape, data_offsets[2]", path, name);
            goto done;
        }
        int dtype = -1;
        for (int d = 0; d < N_DTYPES; d++)
            if (!strcmp(dt, dtype_info[d].name)) dtype = d;
        if (dtype < 0) { err_set(err, ERR_FORMAT, "%s: tensor '%s': unsupported dtype '%s'", path, name, dt); goto done; }
        int ndim = (int)json_len(shp);
        if (ndim > WEIGHTS_MAX_DIMS) { err_set(err, ERR_FORMAT, "%s: tensor '%s': %d dims (at most %d)", path, name, ndim, WEIGHTS_MAX_DIMS); goto done; }
        int64_t shape[WEIGHTS_MAX_DIMS], b, en, numel, bytes, span_len;
        for (int i = 0; i < ndim; i++) {
            if (json_int(json_at(shp, (size_t)i), &shape[i]) || shape[i] < 0) {
                err_set(err, ERR_FORMAT, "%s: tensor '%s': bad shape entry %d", path, name, i);
                goto done;
            }
        }
        if (json_int(json_at(off, 0), &b) || json_int(json_at(off, 1), &en) || b < 0 || en < b) {
            err_set(err, ERR_FORMAT, "%s: tensor '%s': bad data_offsets", path, name);
            goto done;
        }
        if (!size_prod(shape, ndim, WEIGHTS_MAX_NUMEL, &numel) ||
            !size_mul(numel, (int64_t)dtype_info[dtype].size, &bytes)) {
            err_set(err, ERR_FORMAT, "%s: tensor '%s': shape too large (overflows or exceeds %lld elements)", path,
                    name, (long long)WEIGHTS_MAX_NUMEL);
            goto done;
        }
        span_len = en - b; /* 0 <= b <= en: no overflow */
        if (span_len != bytes) {
            err_set(err, ERR_FORMAT, "%s: tensor '%s': data_offsets span %lld bytes, shape and dtype need %lld",
                    path, name, (long long)span_len, (long long)bytes);
            goto done;
        }
        if (en > data_len) {
            err_set(err, ERR_FORMAT, "%s: tensor '%s': data ends at byte %lld, past the end of the data (%lld bytes): truncated file?",
                    path, name, (long long)en, (long long)data_len);
            goto done;
        }
        sp[ns++] = (span){(uint64_t)b, (uint64_t)en, name};
        int arc;
        if (hf) {
            if ((arc = st_add_hf(w, name, (wdtype_t)dtype, ndim, shape, data + b, err))) {
                rc = arc;
                goto done;
            }
        } else if (!weights_add(w, name, (wdtype_t)dtype, ndim, shape, data + b, &arc, err)) {
            rc = arc;
            goto done;
        }
    }
    /* The tensors must tile the data exactly: no overlap, no hole, no tail. */
    qsort(sp, ns, sizeof *sp, span_cmp);
    uint64_t at = 0;
    for (size_t i = 0; i < ns; i++) {
        if (sp[i].begin != at) {
            err_set(err, ERR_FORMAT, "%s: tensor '%s': data at byte %llu %s", path, sp[i].name,
                    (unsigned long long)sp[i].begin, sp[i].begin < at ? "overlaps another tensor" : "leaves a gap");
            goto done;
        }
        at = sp[i].end;
    }
    if (at != (uint64_t)data_len) {
        err_set(err, ERR_FORMAT, "%s: %llu bytes of data after the last tensor", path,
                (unsigned long long)((uint64_t)data_len - at));
        goto done;
    }
    rc = 0;
done:
    free(sp);
    json_free(h);
    return rc;
}

/* ---- SIGBUS: the file shrank under its mapping ----
 *
 * The tensors are used where they lie in the mapping, for as long as the
 * model lives. If the file is truncated in place meanwhile (a copy over
 * it, `: > file`), reading a page past the new end raises SIGBUS. That is
 * not silent here: weights_open registers each mapping, and a SIGBUS
 * handler (installed with the first mapping) writes one line naming the checkpoint and exits with status 1 (a
 * SIGBUS elsewhere goes to the handler that was there before). The
 * process stops as if killed: a job database stays consistent (every
 * store write is one SQLite transaction), the image being processed is
 * claimed again by the next `run`. Replacing the file by rename (how
 * downloads and `cp` to a new name work) is harmless: the old file lives
 * on until unmapped. */
#define WEIGHTS_MAX_MAPS 32

static struct {
    uintptr_t begin, end;   /* mapped bytes; begin 0 = free slot (atomic) */
    int       len;          /* bytes of msg */
    char      msg[400];     /* the line the handler writes */
} sigbus_maps[WEIGHTS_MAX_MAPS];
static pthread_mutex_t sigbus_mu = PTHREAD_MUTEX_INITIALIZER;
static int sigbus_installed;
static struct sigaction sigbus_old;   /* the handler before ours */

static void weights_sigbus(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    uintptr_t a = (uintptr_t)si->si_addr;
    /* si_addr is only a faulting address when the kernel raised it for an
     * access (si_code > 0); kill -BUS, sigqueue and tgkill carry a pid there */
    for (int i = 0; i < WEIGHTS_MAX_MAPS && si->si_code > 0; i++) {
        uintptr_t b = __atomic_load_n(&sigbus_maps[i].begin, __ATOMIC_ACQUIRE);
        if (b && a >= b && a < sigbus_maps[i].end) {
            ssize_t r = write(2, sigbus_maps[i].msg, (size_t)sigbus_maps[i].len);
            (void)r;
            _exit(1);
        }
    }
    /* not one of ours: the previous handler (default action, or a
     * sanitizer's) gets it when the access repeats; a sent signal does
     * not repeat, so it is sent again (delivered once this handler
     * returns and unblocks it), else it would be lost */
    sigaction(sig, &sigbus_old, NULL);
    if (si->si_code <= 0) raise(sig);
}

/* sigbus_register: slot of [p, p+n) for path, or -1 (no slot: unguarded) */
static int sigbus_register(const void *p, size_t n, const char *path) {
    int slot = -1;
    pthread_mutex_lock(&sigbus_mu);
    if (!sigbus_installed) {
        struct sigaction sa = {.sa_sigaction = weights_sigbus, .sa_flags = SA_SIGINFO};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, &sigbus_old);
        sigbus_installed = 1;
    }
    for (int i = 0; i < WEIGHTS_MAX_MAPS && slot < 0; i++)
        if (!sigbus_maps[i].begin) slot = i;
    if (slot >= 0) {
        int len = snprintf(sigbus_maps[slot].msg, sizeof sigbus_maps[slot].msg,
                           "sam2amg: %s: the checkpoint file was truncated while in use "
                           "(SIGBUS reading its mapping); stopping\n", path);
        if (len < 0 || len >= (int)sizeof sigbus_maps[slot].msg) {
            len = (int)sizeof sigbus_maps[slot].msg - 1;
            sigbus_maps[slot].msg[len - 1] = '\n';
        }
        sigbus_maps[slot].len = len;
        sigbus_maps[slot].end = (uintptr_t)p + n;
        __atomic_store_n(&sigbus_maps[slot].begin, (uintptr_t)p, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&sigbus_mu);
    return slot;
}

static void sigbus_unregister(int slot) {
    if (slot < 0) return;
    pthread_mutex_lock(&sigbus_mu);
    __atomic_store_n(&sigbus_maps[slot].begin, (uintptr_t)0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&sigbus_mu);
}

/* ---- open / close / lookup ---- */

static weights_t *weights_new(const char *path) {
    weights_t *w = calloc(1, sizeof *w);
    if (w && !(w->path = strdup(path))) { free(w); w = NULL; }
    if (w) w->sigbus_slot = -1;
    return w;
}

int weights_open(weights_t **out, const char *path, err_t *err) {
    *out = NULL;
    weights_t *w = weights_new(path);
    if (!w) return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    int rc;
    /* O_NONBLOCK: a FIFO must not block the open; it is refused below */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0) { rc = err_set(err, ERR_IO, "%s: %s", path, strerror(errno)); goto fail; }
    if (fstat(fd, &st)) { rc = err_set(err, ERR_IO, "%s: %s", path, strerror(errno)); goto fail; }
    if (!S_ISREG(st.st_mode)) { rc = err_set(err, ERR_IO, "%s: not a regular file", path); goto fail; }
    if (st.st_size < 9) {
        rc = err_set(err, ERR_FORMAT, "%s: %s (%lld bytes): not a checkpoint", path,
                     st.st_size ? "too short" : "empty file", (long long)st.st_size);
        goto fail;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { rc = err_set(err, ERR_IO, "%s: mmap: %s", path, strerror(errno)); goto fail; }
    close(fd);
    fd = -1;
    w->map = m, w->map_len = (size_t)st.st_size;
    w->sigbus_slot = sigbus_register(m, w->map_len, path);
    if (!memcmp(w->map, "PK\x03\x04", 4) || !memcmp(w->map, "PK\x05\x06", 4)) rc = pt_load(w, err);
    else if (w->map[8] == '{') rc = st_load(w, err);
    else rc = err_set(err, ERR_FORMAT, "%s: neither a torch .pt (zip) nor a safetensors file", path);
    if (rc) goto fail;
    *out = w;
    return 0;
fail:
    if (fd >= 0) close(fd);
    weights_close(w);
    return rc;
}

void weights_close(weights_t *w) {
    if (!w) return;
    sigbus_unregister(w->sigbus_slot);
    if (w->map) munmap((void *)w->map, w->map_len);
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    free(w->tp);
    free(w->f32);
    free(w->hash);
    free(w->path);
    free(w);
}

const char *weights_path(const weights_t *w) { return w->path; }
int weights_count(const weights_t *w) { return w->n; }
wtensor_t *weights_at(weights_t *w, int i) { return i >= 0 && i < w->n ? w->tp[i] : NULL; }

wtensor_t *weights_find(weights_t *w, const char *name) {
    int k = hash_lookup(w, name);
    return k < 0 ? NULL : w->tp[k];
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1F, m = h & 0x3FF, bits;
    if (e == 0x1F) bits = sign | 0x7F800000u | (m << 13);           /* inf / nan */
    else if (e) bits = sign | ((e + 112) << 23) | (m << 13);         /* normal */
    else if (!m) bits = sign;                                        /* zero */
    else {                                                           /* subnormal */
        int s = 0;
        while (!(m & 0x400)) m <<= 1, s++;
        bits = sign | ((uint32_t)(113 - s) << 23) | ((m & 0x3FF) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- random mode ---- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double rand_normal(uint64_t *s) { /* Box-Muller */
    double u1 = ((double)(splitmix(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(splitmix(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int weights_open_random(weights_t **out, uint64_t seed) {
    char name[48];
    snprintf(name, sizeof name, "random:%llu", (unsigned long long)seed);
    *out = weights_new(name);
    if (!*out) return ERR_NOMEM;
    (*out)->random = 1;
    (*out)->seed = seed;
    return 0;
}

static const float *random_get(weights_t *w, const char *name, int ndim, const int64_t *shape,
                               err_t *err) {
    int64_t numel;
    size_t nbytes;
    if (!size_prod(shape, ndim, WEIGHTS_MAX_NUMEL, &numel) || !size_bytes(numel, sizeof(float), &nbytes)) {
        err_set(err, ERR_TOO_BIG, "%s: key %s: bad shape", w->path, name);
        return NULL;
    }
    float *d = weights_own(w, nbytes);
    int rc;
    if (!d || !weights_add(w, name, WDT_F32, ndim, shape, d, &rc, err)) {
        err_set(err, ERR_NOMEM, "%s: out of memory", w->path);
        return NULL;
    }
    w->tp[w->n - 1]->used = 1;
    size_t nl = strlen(name);
    int is_norm = strstr(name, "norm") && nl >= 7 && !strcmp(name + nl - 7, ".weight");
    double scale = ndim >= 2 && shape[0] ? 1.0 / sqrt((double)(numel / shape[0])) : 0.02;
    uint64_t s = w->seed ^ name_hash(name);
    for (int64_t i = 0; i < numel; i++) {
        double r = rand_normal(&s);
        d[i] = (float)(is_norm ? 1.0 + 0.02 * r : r * scale);
    }
    return d;
}

const float *weights_get(weights_t *w, const char *name, int ndim, const int64_t *shape,
                         err_t *err) {
    int k = hash_lookup(w, name);
    if (k < 0) {
        if (w->random) return random_get(w, name, ndim, shape, err);
        err_set(err, ERR_FORMAT, "%s: key %s: missing", w->path, name);
        return NULL;
    }
    wtensor_t *t = w->tp[k];
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[160], got[160];
        fmt_shape(want, sizeof want, ndim, shape);
        fmt_shape(got, sizeof got, t->ndim, t->shape);
        err_set(err, ERR_FORMAT, "%s: key %s: expected shape %s, found %s", w->path, name, want, got);
        return NULL;
    }
    if (!w->f32[k]) {
        if (t->dtype != WDT_F16 && t->dtype != WDT_BF16) {
            err_set(err, ERR_FORMAT, "%s: key %s: dtype %s, expected a float tensor", w->path, name,
                    dtype_info[t->dtype].name);
            return NULL;
        }
        size_t nbytes;
        float *d = size_bytes(t->numel, sizeof(float), &nbytes) ? weights_own(w, nbytes) : NULL;
        if (!d) { err_set(err, ERR_NOMEM, "%s: key %s: out of memory", w->path, name); return NULL; }
        const uint16_t *src = t->data;
        for (int64_t i = 0; i < t->numel; i++) {
            if (t->dtype == WDT_F16) d[i] = f16_to_f32(src[i]);
            else {
                uint32_t bits = (uint32_t)src[i] << 16;
                memcpy(&d[i], &bits, 4);
            }
        }
        w->f32[k] = d;
    }
    t->used = 1;
    return w->f32[k];
}

int weights_check_unused(weights_t *w, const char *const *skip, err_t *err) {
    if (w->random) return 0;
    for (int k = 0; k < w->n; k++) {
        if (w->tp[k]->used) continue;
        int skipped = 0;
        for (int i = 0; skip && skip[i] && !skipped; i++)
            skipped = !strncmp(w->tp[k]->name, skip[i], strlen(skip[i]));
        if (!skipped)
            return err_set(err, ERR_FORMAT, "%s: unexpected key %s (not used by the model)", w->path,
                           w->tp[k]->name);
    }
    return 0;
}

/* ---- safetensors writer ---- */

static int entry_cmp(const void *a, const void *b, void *base) {
    const st_entry_t *e = base;
    return strcmp(e[*(const int *)a].name, e[*(const int *)b].name);
}

int safetensors_write(const char *path, const st_entry_t *e, int n, err_t *err) {
    int *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    uint64_t *off = malloc((size_t)(n > 0 ? n : 1) * 2 * sizeof *off);
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *f = NULL;
    int rc = err_set(err, ERR_NOMEM, "%s: out of memory", path);
    if (!order || !off) goto done;
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        CHECK(e[i].ndim >= 0 && e[i].ndim <= WEIGHTS_MAX_DIMS && (int)e[i].dtype >= 0 &&
              (int)e[i].dtype < N_DTYPES);
        uint64_t numel = 1;
        for (int d = 0; d < e[i].ndim; d++) {
            CHECK(e[i].shape[d] >= 0);
            numel *= (uint64_t)e[i].shape[d];
        }
        order[i] = i;
        off[2 * i] = at;
        off[2 * i + 1] = at += numel * dtype_info[e[i].dtype].size;
    }
    qsort_r(order, (size_t)n, sizeof *order, entry_cmp, (void *)e);
    for (int i = 1; i < n; i++)
        CHECK_MSG(strcmp(e[order[i - 1]].name, e[order[i]].name), "duplicate name %s", e[order[i]].name);
    FILE *m = open_memstream(&hdr, &hlen);
    if (!m) goto done;
    fputc('{', m);
    for (int j = 0; j < n; j++) {
        const st_entry_t *x = &e[order[j]];
        if (j) fputc(',', m);
        json_write_string(m, x->name);
        fprintf(m, ":{\"dtype\":\"%s\",\"shape\":[", dtype_info[x->dtype].name);
        for (int d = 0; d < x->ndim; d++) fprintf(m, "%s%lld", d ? "," : "", (long long)x->shape[d]);
        fprintf(m, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off[2 * order[j]],
                (unsigned long long)off[2 * order[j] + 1]);
    }
    fputc('}', m);
    while ((ftell(m) % 8) != 0) fputc(' ', m);
    if (fclose(m)) goto done;
    rc = err_set(err, ERR_IO, "%s: %s", path, "cannot write");
    char tmp[OUTFILE_TMP_MAX];   /* renamed onto path when complete (outfile.h) */
    if (!(f = outfile_open(path, tmp, err))) { rc = ERR_IO; goto done; }
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
    for (int i = 0; ok && i < n; i++) {
        size_t bytes = (size_t)(off[2 * i + 1] - off[2 * i]);
        ok = !bytes || fwrite(e[i].data, 1, bytes, f) == bytes;
    }
    if (!ok) rc = err_set(err, ERR_IO, "%s: write failed: %s", path, strerror(errno));
    else rc = 0;
    rc = outfile_close(f, tmp, path, rc, err);
    f = NULL;
done:
    free(order);
    free(off);
    free(hdr);
    return rc;
}
