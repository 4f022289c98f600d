/* serve.c: `sam2amg serve DB`, a local web page to review an annotation run:
 * the runs and their progress, a paged grid of thumbnails with filters and
 * sorts, and one image with its masks drawn (decoded from the stored COCO
 * RLE in the browser, web/serve.js).
 *
 * DESIGN
 * - Threads: libmicrohttpd's internal thread pool (SERVE_THREADS workers)
 *   calls serve_handle. Each worker reads through its own read-only SQLite
 *   connection (thread-local, opened on first use, closed by serve_free),
 *   so statements are never shared between threads.
 * - The summary index: one row per image (status, run, mask count, sum of
 *   predicted IoU, path rank), kept in memory behind a mutex with its own
 *   connection. Sorting the grid by mask count or mean IoU over a million
 *   masks with SQL would scan the masks table per page; the index reads
 *   masks once at start and then only the rows with a larger id (masks are
 *   appended: INTEGER PRIMARY KEY, never updated). The images table is
 *   re-read when PRAGMA data_version says another connection committed, at
 *   most once per SERVE_REFRESH_S seconds.
 * - Thumbnails: made with libvips on first request, kept in a FIFO cache of
 *   at most SERVE_THUMB_BYTES bytes behind a mutex.
 * - Nothing is written: connections are opened with SQLITE_OPEN_READONLY
 *   (store_open STORE_READONLY), which also reads beside a running `run`
 *   in WAL mode.
 * - URLs carry ids and query arguments only; no part of a URL ever becomes
 *   a file name. An unknown or malformed id is a 404, any other malformed
 *   request (unknown or bad query argument, method other than GET/HEAD, an
 *   oversized request) a 400/405/413-class error with a short page.
 */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>

#include "cli.h"
#include "image.h"
#include "size.h"
#include "store.h"

enum {
    SERVE_THREADS     = 4,
    SERVE_MAX_CONNS   = 64,          /* thread-local connections, all threads */
    SERVE_MAX_ARGS    = 16,          /* query arguments per request */
    SERVE_MEM_LIMIT   = 32 * 1024,   /* bytes per HTTP connection (headers, URL) */
    SERVE_THUMB_PX    = 192,         /* thumbnail box */
    SERVE_THUMB_SLOTS = 8192,
    SERVE_DECODE_WAIT_S = 10,        /* a decode waits this long for memory, then 503 */
    SERVE_PER_PAGE    = 48,
    SERVE_MAX_PER     = 500,
};
#define SERVE_REFRESH_S   1.0
#define SERVE_THUMB_BYTES ((size_t)64 << 20)

/* The web assets (web/serve.js, web/serve.css), linked in as bytes by the
 * assembler: the files stay plain JavaScript and CSS that editors and
 * linters read, with no generator step. */
__asm__(".section .rodata\n"
        ".global serve_js_start\n.global serve_js_end\n"
        "serve_js_start:\n.incbin \"web/serve.js\"\nserve_js_end:\n"
        ".global serve_css_start\n.global serve_css_end\n"
        "serve_css_start:\n.incbin \"web/serve.css\"\nserve_css_end:\n"
        ".previous\n");
extern const char serve_js_start[], serve_js_end[], serve_css_start[], serve_css_end[];

/* ---- growable text buffer ---- */

typedef struct sbuf {
    char  *p;
    size_t n, cap;
    int    oom;   /* an allocation failed: the response becomes a 500 */
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}
/* text into HTML (element content and quoted attributes) */
static void sb_html(sbuf *b, const char *s) {
    if (!s) return;
    for (; *s; s++) {
        switch (*s) {
        case '<': sb_str(b, "&lt;"); break;
        case '>': sb_str(b, "&gt;"); break;
        case '&': sb_str(b, "&amp;"); break;
        case '"': sb_str(b, "&quot;"); break;
        case '\'': sb_str(b, "&#39;"); break;
        default: sb_put(b, s, 1);
        }
    }
}
/* a JSON string literal (NULL: null); '<' escaped so that text can never
 * close a script element */
static void sb_json_str(sbuf *b, const char *s) {
    if (!s) {
        sb_str(b, "null");
        return;
    }
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20 || c == '<') {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}
/* path_shown: images.path as the pages show it (malloc'd, NULL for NULL or
 * out of memory, then b->oom): the stored text with each escaped backslash
 * ("\\", store.h) one again, so that a\b.png is not shown as a\\b.png;
 * a byte that is not UTF-8 stays "\xHH", readable and valid UTF-8. */
static char *path_shown(sbuf *b, const char *s) {
    if (!s) return NULL;
    char *o = malloc(strlen(s) + 1);
    if (!o) {
        b->oom = 1;
        return NULL;
    }
    size_t j = 0;
    for (; *s; s++) {
        o[j++] = *s;
        if (s[0] == '\\' && s[1] == '\\') s++;
    }
    o[j] = 0;
    return o;
}
/* a JSON number of a nullable REAL column (NULL, NaN, Inf: null) */
static void sb_json_num(sbuf *b, sqlite3_stmt *st, int col) {
    double v = sqlite3_column_double(st, col);
    if (sqlite3_column_type(st, col) == SQLITE_NULL || !isfinite(v)) sb_str(b, "null");
    else sb_printf(b, "%.9g", v);
}

/* ---- the summary index ---- */

typedef struct sv_img {
    int64_t id;
    int64_t run_id;       /* 0: none yet */
    double  finished_at;  /* Unix s; 0 while unfinished */
    double  iou_sum;      /* sum of the non-NULL predicted IoUs */
    int32_t status;       /* IMAGE_STATUS_* */
    int32_t masks;
    int32_t iou_n;        /* masks with a predicted IoU */
    int32_t path_rank;    /* position in ORDER BY path */
} sv_img;

typedef struct sv_index {
    pthread_mutex_t mu;
    store_t *s;            /* the index's own connection */
    sv_img  *rows;         /* (n) sorted by id */
    size_t   n;
    int64_t  max_mask_id;  /* masks up to this id are counted */
    int64_t  data_version; /* PRAGMA data_version at the last reload */
    double   checked_at;   /* monotonic s of the last check */
    int      loaded;
} sv_index;

#define SERVE_THUMB_NONE ((int64_t)-1)
typedef struct sv_thumb {
    int64_t id;            /* image id; SERVE_THUMB_NONE: empty slot */
    void   *jpg;
    size_t  len;
} sv_thumb;

#define SERVE_DECODE_BYTES ((int64_t)1 << 30)                /* --decode-memory default */
#define SERVE_DECODE_MAX_PX ((int64_t)256 * 1000 * 1000)   /* image_load's default limit */

struct serve {
    char            path[4096];
    sv_index        idx;
    pthread_mutex_t conn_mu;                    /* guards conns */
    store_t        *conns[SERVE_MAX_CONNS];     /* thread-local connections */
    int             nconns;
    pthread_mutex_t thumb_mu;                   /* guards the thumbnail cache */
    sv_thumb        thumbs[SERVE_THUMB_SLOTS];  /* FIFO ring */
    size_t          thumb_next, thumb_bytes;
    int             loopback_only;              /* Host must name the loopback */
    /* decoded pixels of all requests at once (see decode_reserve) */
    pthread_mutex_t dec_mu;
    pthread_cond_t  dec_cv;
    int64_t         dec_cap, dec_used;          /* bytes */
};

static double now_mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static double now_wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int status_code(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "pending")) return IMAGE_STATUS_PENDING;
    if (!strcmp(s, "running")) return IMAGE_STATUS_RUNNING;
    if (!strcmp(s, "done")) return IMAGE_STATUS_DONE;
    if (!strcmp(s, "failed")) return IMAGE_STATUS_FAILED;
    return -1;
}
static const char *status_names[] = {"pending", "running", "done", "failed"};

static sv_img *index_find(sv_index *x, int64_t id) {
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->rows[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < x->n && x->rows[lo].id == id ? &x->rows[lo] : NULL;
}

static int sql_fail(sqlite3 *db, const char *what, err_t *err) {
    return err_set(err, ERR_IO, "%s: %s", what, sqlite3_errmsg(db));
}

/* index_add_masks: count the masks with id > x->max_mask_id into their
 * images (rows of images not in the index are skipped: they appear with
 * the next images reload, whose merge keeps counts by id). */
static int index_add_masks(sv_index *x, err_t *err) {
    sqlite3 *db = store_db(x->s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id, image_id, predicted_iou FROM masks WHERE id > ?1 ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(db, "reading masks", err);
    sqlite3_bind_int64(st, 1, x->max_mask_id);
    sv_img *last = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t mid = sqlite3_column_int64(st, 0), iid = sqlite3_column_int64(st, 1);
        x->max_mask_id = mid;
        if (!last || last->id != iid) last = index_find(x, iid);
        if (!last) continue;
        last->masks++;
        if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
            double v = sqlite3_column_double(st, 2);
            if (isfinite(v)) last->iou_sum += v, last->iou_n++;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(db, "reading masks", err);
}

/* index_reload_images: re-read the images table; mask counts are kept by id
 * (images are never deleted by `run`, and their masks never change). */
static int index_reload_images(sv_index *x, err_t *err) {
    sqlite3 *db = store_db(x->s);
    int64_t n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM images", -1, &st, NULL) != SQLITE_OK)
        return sql_fail(db, "counting images", err);
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    size_t bytes;
    if (!size_bytes(n + 64, sizeof(sv_img), &bytes))
        return err_set(err, ERR_TOO_BIG, "%lld images: too many", (long long)n);
    sv_img *rows = calloc(1, bytes);
    if (!rows) return err_set(err, ERR_NOMEM, "image index: out of memory");
    if (sqlite3_prepare_v2(db,
                           "SELECT id, status, coalesce(run_id, 0), coalesce(finished_at, 0), "
                           "row_number() OVER (ORDER BY path) FROM images ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        free(rows);
        return sql_fail(db, "reading images", err);
    }
    size_t k = 0, j = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && k < (size_t)n + 64) {
        sv_img *r = &rows[k++];
        r->id = sqlite3_column_int64(st, 0);
        r->status = status_code((const char *)sqlite3_column_text(st, 1));
        r->run_id = sqlite3_column_int64(st, 2);
        r->finished_at = sqlite3_column_double(st, 3);
        r->path_rank = (int32_t)sqlite3_column_int64(st, 4);
        while (j < x->n && x->rows[j].id < r->id) j++;
        if (j < x->n && x->rows[j].id == r->id) {
            r->masks = x->rows[j].masks;
            r->iou_sum = x->rows[j].iou_sum;
            r->iou_n = x->rows[j].iou_n;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        free(rows);
        return sql_fail(db, "reading images", err);
    }
    free(x->rows);
    x->rows = rows;
    x->n = k;
    return 0;
}

static int64_t pragma_int(sqlite3 *db, const char *q) {
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* index_refresh: bring the index up to date (called with x->mu held). The
 * whole reload is one read transaction, so images and masks agree. */
static int index_refresh(sv_index *x, err_t *err) {
    double t = now_mono();
    if (x->loaded && t - x->checked_at < SERVE_REFRESH_S) return 0;
    x->checked_at = t;
    sqlite3 *db = store_db(x->s);
    int64_t dv = pragma_int(db, "PRAGMA data_version");
    if (x->loaded && dv == x->data_version) return 0;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return sql_fail(db, "starting a read", err);
    int r = 0;
    int64_t maxid = pragma_int(db, "SELECT coalesce(max(id), 0) FROM masks");
    if (maxid < x->max_mask_id) {   /* masks were removed (not by `run`): recount */
        for (size_t i = 0; i < x->n; i++) x->rows[i].masks = 0, x->rows[i].iou_sum = 0, x->rows[i].iou_n = 0;
        x->max_mask_id = 0;
    }
    r = index_reload_images(x, err);
    if (!r) r = index_add_masks(x, err);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (r) return r;
    x->data_version = dv;
    x->loaded = 1;
    return 0;
}

/* ---- connections ---- */

static _Thread_local struct {
    serve_t *sv;
    store_t *s;
} tls_conn;

/* thread_store: this thread's read-only connection to sv's database. */
static store_t *thread_store(serve_t *sv, err_t *err) {
    if (tls_conn.sv == sv && tls_conn.s) return tls_conn.s;
    store_t *s = NULL;
    if (store_open(&s, sv->path, STORE_READONLY, err)) return NULL;
    sqlite3_db_config(store_db(s), SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    pthread_mutex_lock(&sv->conn_mu);
    int ok = sv->nconns < SERVE_MAX_CONNS;
    if (ok) sv->conns[sv->nconns++] = s;
    pthread_mutex_unlock(&sv->conn_mu);
    if (!ok) {
        store_close(s);
        err_set(err, ERR_BUSY, "too many threads");
        return NULL;
    }
    tls_conn.sv = sv, tls_conn.s = s;
    return s;
}

int serve_open(serve_t **out, const char *path, err_t *err) {
    *out = NULL;
    int r = image_init(err);
    if (r) return r;
    serve_t *sv = calloc(1, sizeof *sv);
    if (!sv) return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    snprintf(sv->path, sizeof sv->path, "%s", path);
    pthread_mutex_init(&sv->idx.mu, NULL);
    pthread_mutex_init(&sv->conn_mu, NULL);
    pthread_mutex_init(&sv->thumb_mu, NULL);
    pthread_mutex_init(&sv->dec_mu, NULL);
    pthread_cond_init(&sv->dec_cv, NULL);
    sv->dec_cap = SERVE_DECODE_BYTES;
    for (int i = 0; i < SERVE_THUMB_SLOTS; i++) sv->thumbs[i].id = SERVE_THUMB_NONE;
    if ((r = store_open(&sv->idx.s, path, STORE_READONLY, err))) goto fail;
    /* nothing here writes, and a crafted database cannot make a query
     * corrupt it (writable_schema, shadow tables of the R*Tree) */
    sqlite3_db_config(store_db(sv->idx.s), SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    pthread_mutex_lock(&sv->idx.mu);
    r = index_refresh(&sv->idx, err);
    pthread_mutex_unlock(&sv->idx.mu);
    if (r) goto fail;
    *out = sv;
    return 0;
fail:
    serve_free(sv);
    return r;
}

void serve_free(serve_t *sv) {
    if (!sv) return;
    for (int i = 0; i < sv->nconns; i++) store_close(sv->conns[i]);
    store_close(sv->idx.s);
    free(sv->idx.rows);
    for (int i = 0; i < SERVE_THUMB_SLOTS; i++) g_free(sv->thumbs[i].jpg);
    pthread_mutex_destroy(&sv->idx.mu);
    pthread_mutex_destroy(&sv->conn_mu);
    pthread_mutex_destroy(&sv->thumb_mu);
    pthread_mutex_destroy(&sv->dec_mu);
    pthread_cond_destroy(&sv->dec_cv);
    if (tls_conn.sv == sv) tls_conn.sv = NULL, tls_conn.s = NULL;
    free(sv);
}

/* ---- responses ---- */

static const char *CT_HTML = "text/html; charset=utf-8";
static const char *CT_JSON = "application/json";

static int resp_buf(serve_resp *r, int status, const char *ctype, sbuf *b) {
    if (b->oom) {
        free(b->p);
        b->p = NULL, b->n = 0, b->oom = 0;
        status = 500;
        ctype = CT_HTML;
        sb_str(b, "<!doctype html><title>500</title><p>out of memory</p>\n");
        if (b->oom) b->n = 0;
    }
    r->status = status, r->ctype = ctype, r->body = b->p, r->len = b->n;
    return status;
}

static void page_head(sbuf *b, const char *title, const char *page) {
    sb_str(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
              "<meta name=\"viewport\" content=\"width=device-width\"><title>");
    sb_html(b, title);
    sb_str(b, " - sam2amg</title><link rel=\"stylesheet\" href=\"/static/serve.css\">"
              "<link rel=\"icon\" href=\"data:,\"></head>\n<body data-page=\"");
    sb_str(b, page);
    sb_str(b, "\"><nav><b>sam2amg</b> <a href=\"/\">Run</a> <a href=\"/images\">Images</a> "
              "<a href=\"/images?status=failed\">Failures</a></nav>\n<main>\n");
}
static void page_tail(sbuf *b) {
    sb_str(b, "</main>\n<script src=\"/static/serve.js\"></script>\n</body></html>\n");
}

/* a short error page (status 400/404/405/500) */
static int resp_error(serve_resp *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int resp_error(serve_resp *r, int status, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *what = status == 404 ? "Not Found" : status == 400 ? "Bad Request"
                       : status == 405 ? "Method Not Allowed"
                       : status == 503 ? "Service Unavailable" : "Server Error";
    sbuf b = {0};
    char title[64];
    snprintf(title, sizeof title, "%d %s", status, what);
    page_head(&b, title, "error");
    sb_printf(&b, "<h1>%d %s</h1>\n<p class=\"reason\">", status, what);
    sb_html(&b, msg);
    sb_str(&b, "</p>\n");
    page_tail(&b);
    return resp_buf(r, status, CT_HTML, &b);
}

void serve_resp_free(serve_resp *r) {
    free(r->body);
    r->body = NULL, r->len = 0;
}

/* ---- request arguments ---- */

typedef struct args {
    int n;
    const char *const *k, *const *v;
} args;

/* args_get: the value of key (NULL if absent; "" for "?key"). */
static const char *args_get(const args *a, const char *key) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->k[i], key)) return a->v[i] ? a->v[i] : "";
    return NULL;
}
/* args_check: every key is one of allowed (NULL-terminated) and appears once;
 * else 400 with the reason in msg. */
static int args_check(const args *a, const char *const *allowed, char *msg, size_t cap) {
    for (int i = 0; i < a->n; i++) {
        int ok = 0;
        for (const char *const *p = allowed; *p; p++) ok |= !strcmp(*p, a->k[i]);
        if (!ok) {
            snprintf(msg, cap, "unknown query parameter '%.64s'", a->k[i]);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(a->k[j], a->k[i])) {
                snprintf(msg, cap, "query parameter '%.64s' given twice", a->k[i]);
                return -1;
            }
    }
    return 0;
}

/* parse_uint: s is 1 to 15 decimal digits with a value in [lo, hi]; else -1. */
static int64_t parse_uint(const char *s, int64_t lo, int64_t hi) {
    if (!s || !*s || strlen(s) > 15) return -1;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    return v >= lo && v <= hi ? v : -1;
}
/* ---- the run page ---- */

typedef struct run_stat {
    int64_t id, done, failed, masks;
    double  last_finished;
} run_stat;

/* fmt_time: Unix seconds t as UTC; "?" for a time no calendar holds (NaN,
 * beyond year 9999 or before 1970: a foreign database's REAL) */
static void fmt_time(char *out, size_t n, double t) {
    struct tm tm;
    time_t tt;
    if (!(t >= 0 && t < 253402300800.0) || (tt = (time_t)t, !gmtime_r(&tt, &tm))) {
        snprintf(out, n, "?");
        return;
    }
    strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static int page_run(serve_t *sv, store_t *s, serve_resp *r) {
    err_t err = {{0}};
    int64_t counts[4] = {0}, masks = 0, nimg = 0;
    /* per run: done, failed, masks from the index */
    sqlite3 *db = store_db(s);
    int64_t nruns = pragma_int(db, "SELECT count(*) FROM runs");
    if (nruns < 0) return resp_error(r, 500, "reading runs: %s", sqlite3_errmsg(db));
    size_t bytes;
    if (!size_bytes(nruns + 1, sizeof(run_stat), &bytes)) return resp_error(r, 500, "too many runs");
    run_stat *rs = calloc(1, bytes);
    if (!rs) return resp_error(r, 500, "out of memory");
    pthread_mutex_lock(&sv->idx.mu);
    int rc = index_refresh(&sv->idx, &err);
    if (!rc) {
        for (size_t i = 0; i < sv->idx.n; i++) {
            const sv_img *m = &sv->idx.rows[i];
            if (m->status >= 0) counts[m->status]++;
            masks += m->masks;
            nimg++;
        }
    }
    pthread_mutex_unlock(&sv->idx.mu);
    if (rc) {
        free(rs);
        return resp_error(r, 500, "%s", err.msg);
    }
    sqlite3_stmt *st = NULL;
    sbuf b = {0};
    page_head(&b, "Run", "run");
    /* running: an unfinished run row and a live lease */
    int64_t live = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM images WHERE status = 'running' AND lease_expires > ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_double(st, 1, now_wall());
        if (sqlite3_step(st) == SQLITE_ROW) live = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    int64_t unfinished = pragma_int(db, "SELECT count(*) FROM runs WHERE finished_at IS NULL");
    int running = live > 0 && unfinished > 0;
    sb_printf(&b, "<h1>Run</h1>\n<p id=\"state\" data-running=\"%d\">%s</p>\n", running,
              running ? "A run is going: this page refreshes every 3 s."
                      : "No run is going.");
    sb_printf(&b, "<table class=\"counts\"><tr><th>images</th><th>pending</th><th>running</th>"
                  "<th>done</th><th>failed</th><th>masks</th></tr>\n<tr>"
                  "<td id=\"n-images\">%lld</td><td id=\"n-pending\">%lld</td>"
                  "<td id=\"n-running\">%lld</td><td id=\"n-done\">%lld</td>"
                  "<td id=\"n-failed\"><a href=\"/images?status=failed\">%lld</a></td>"
                  "<td id=\"n-masks\">%lld</td></tr></table>\n",
              (long long)nimg, (long long)counts[0], (long long)counts[1], (long long)counts[2],
              (long long)counts[3], (long long)masks);
    /* per run aggregates from the index, and the throughput of the last
     * run that finished images */
    pthread_mutex_lock(&sv->idx.mu);
    if (sqlite3_prepare_v2(db, "SELECT id FROM runs ORDER BY id", -1, &st, NULL) == SQLITE_OK) {
        size_t k = 0;
        while (sqlite3_step(st) == SQLITE_ROW && k < (size_t)nruns) rs[k++].id = sqlite3_column_int64(st, 0);
        for (size_t i = 0; i < sv->idx.n; i++) {
            const sv_img *m = &sv->idx.rows[i];
            size_t lo = 0, hi = k;   /* rs is in id order: binary search */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (rs[mid].id < m->run_id) lo = mid + 1;
                else hi = mid;
            }
            if (lo == k || rs[lo].id != m->run_id) continue;
            run_stat *q = &rs[lo];
            if (m->status == IMAGE_STATUS_DONE) q->done++;
            if (m->status == IMAGE_STATUS_FAILED) q->failed++;
            q->masks += m->masks;
            if (m->finished_at > q->last_finished) q->last_finished = m->finished_at;
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&sv->idx.mu);
    /* the model as the user named it (runs.model_name, schema 003; older
     * databases have the path only), the resolved file in its title */
    const char *runs_sql = "SELECT id, params, model_path, model_sha256, config, program_version, "
                           "devices, started_at, finished_at, exit_status, %s FROM runs ORDER BY id";
    char q1[512];
    snprintf(q1, sizeof q1, runs_sql, "coalesce(model_name, model_path)");
    if (sqlite3_prepare_v2(db, q1, -1, &st, NULL) != SQLITE_OK) {
        snprintf(q1, sizeof q1, runs_sql, "model_path");
        if (sqlite3_prepare_v2(db, q1, -1, &st, NULL) != SQLITE_OK) st = NULL;
    }
    if (!st) {
        free(rs);
        free(b.p);
        return resp_error(r, 500, "reading runs: %s", sqlite3_errmsg(db));
    }
    sb_str(&b, "<h2>Runs</h2>\n<table class=\"runs\"><tr><th>#</th><th>started</th><th>finished</th>"
               "<th>exit</th><th>devices</th><th>model</th><th>config</th><th>done</th>"
               "<th>failed</th><th>masks</th><th>images/s</th><th>parameters</th></tr>\n");
    double last_rate = 0;
    for (size_t k = 0; sqlite3_step(st) == SQLITE_ROW; k++) {
        run_stat *q = k < (size_t)nruns ? &rs[k] : NULL;
        char ts[64], tf[64] = "-";
        double started = sqlite3_column_double(st, 7);
        fmt_time(ts, sizeof ts, started);
        if (sqlite3_column_type(st, 8) != SQLITE_NULL) fmt_time(tf, sizeof tf, sqlite3_column_double(st, 8));
        double end = sqlite3_column_type(st, 8) != SQLITE_NULL ? sqlite3_column_double(st, 8)
                     : q ? q->last_finished : 0;
        double rate = q && end > started ? (q->done + q->failed) / (end - started) : 0;
        if (q && q->done + q->failed > 0) last_rate = rate;
        sb_printf(&b, "<tr class=\"run\"><td>%lld</td><td>%s</td><td>%s</td><td>",
                  (long long)sqlite3_column_int64(st, 0), ts, tf);
        if (sqlite3_column_type(st, 9) != SQLITE_NULL) sb_printf(&b, "%d", sqlite3_column_int(st, 9));
        else sb_str(&b, "-");
        sb_str(&b, "</td><td>");
        sb_html(&b, (const char *)sqlite3_column_text(st, 6));
        sb_str(&b, "</td><td class=\"model\" title=\"");
        sb_html(&b, (const char *)sqlite3_column_text(st, 2));
        sb_str(&b, ", sha256 ");
        sb_html(&b, (const char *)sqlite3_column_text(st, 3));
        sb_str(&b, "\">");
        sb_html(&b, (const char *)sqlite3_column_text(st, 10));
        sb_str(&b, "</td><td>");
        sb_html(&b, (const char *)sqlite3_column_text(st, 4));
        sb_printf(&b, "</td><td>%lld</td><td>%lld</td><td>%lld</td><td>%.2f</td>",
                  (long long)(q ? q->done : 0), (long long)(q ? q->failed : 0),
                  (long long)(q ? q->masks : 0), rate);
        sb_str(&b, "<td><details><summary>params</summary><pre class=\"params\">");
        sb_html(&b, (const char *)sqlite3_column_text(st, 1));
        sb_str(&b, "</pre></details></td></tr>\n");
    }
    sqlite3_finalize(st);
    free(rs);
    sb_str(&b, "</table>\n");
    int64_t left = counts[0] + counts[1];
    sb_printf(&b, "<p id=\"rate\">%.2f images/s", last_rate);
    /* an ETA past ~30 years is no ETA (and would not fit an int64_t from a
     * foreign database's times) */
    if (running && last_rate > 0 && left > 0 && left / last_rate < 1e9) {
        int64_t s2 = (int64_t)(left / last_rate);
        sb_printf(&b, ", ETA <span id=\"eta\">%lld:%02lld:%02lld</span> for %lld left",
                  (long long)(s2 / 3600), (long long)(s2 / 60 % 60), (long long)(s2 % 60),
                  (long long)left);
    }
    sb_str(&b, "</p>\n");
    page_tail(&b);
    r->no_store = 1;
    return resp_buf(r, 200, CT_HTML, &b);
}

/* ---- the grid ---- */

typedef struct grid_q {
    int status;      /* -1: all */
    int sort;        /* 0 masks, 1 iou, 2 path, 3 id */
    int desc;
} grid_q;
static const char *sort_names[] = {"masks", "iou", "path", "id"};

static double mean_iou(const sv_img *m) { return m->iou_n ? m->iou_sum / m->iou_n : NAN; }

/* compare two rows by q (qsort_r); ties by id so pages are stable; images
 * without a mean IoU go last in both orders */
static int grid_cmp(const void *pa, const void *pb, void *ctx) {
    const sv_img *a = pa, *b = pb;
    const grid_q *q = ctx;
    int c = 0;
    switch (q->sort) {
    case 0: c = (a->masks > b->masks) - (a->masks < b->masks); break;
    case 1: {
        double x = mean_iou(a), y = mean_iou(b);
        if (isnan(x) || isnan(y)) {
            if (isnan(x) != isnan(y)) return isnan(x) ? 1 : -1;
        } else {
            c = (x > y) - (x < y);
        }
        break;
    }
    case 2: c = (a->path_rank > b->path_rank) - (a->path_rank < b->path_rank); break;
    default: c = (a->id > b->id) - (a->id < b->id); break;
    }
    if (q->desc) c = -c;
    if (!c) c = (a->id > b->id) - (a->id < b->id);
    return c;
}

static void grid_link(sbuf *b, const grid_q *q, int64_t page, int64_t per) {
    sb_printf(b, "/images?sort=%s&amp;order=%s&amp;page=%lld", sort_names[q->sort],
              q->desc ? "desc" : "asc", (long long)page);
    if (q->status >= 0) sb_printf(b, "&amp;status=%s", status_names[q->status]);
    if (per != SERVE_PER_PAGE) sb_printf(b, "&amp;per=%lld", (long long)per);
}

static int page_grid(serve_t *sv, store_t *s, const args *a, serve_resp *r) {
    static const char *const allowed[] = {"status", "sort", "order", "page", "per", NULL};
    char msg[160];
    if (args_check(a, allowed, msg, sizeof msg)) return resp_error(r, 400, "%s", msg);
    grid_q q = {-1, 0, 1};
    const char *v;
    if ((v = args_get(a, "status")) && strcmp(v, "all") && (q.status = status_code(v)) < 0)
        return resp_error(r, 400, "status must be all, pending, running, done or failed");
    if ((v = args_get(a, "sort"))) {
        q.sort = -1;
        for (int i = 0; i < 4; i++)
            if (!strcmp(v, sort_names[i])) q.sort = i;
        if (q.sort < 0) return resp_error(r, 400, "sort must be masks, iou, path or id");
        q.desc = q.sort < 2;
    }
    if ((v = args_get(a, "order"))) {
        if (strcmp(v, "asc") && strcmp(v, "desc")) return resp_error(r, 400, "order must be asc or desc");
        q.desc = !strcmp(v, "desc");
    }
    int64_t page = 1, per = SERVE_PER_PAGE;
    if ((v = args_get(a, "page")) && (page = parse_uint(v, 1, 1000000000)) < 0)
        return resp_error(r, 400, "page must be a whole number from 1");
    if ((v = args_get(a, "per")) && (per = parse_uint(v, 1, SERVE_MAX_PER)) < 0)
        return resp_error(r, 400, "per must be a whole number from 1 to %d", SERVE_MAX_PER);

    err_t err = {{0}};
    sv_img *sel = NULL, *pg = NULL;
    size_t nsel = 0, npg = 0;
    pthread_mutex_lock(&sv->idx.mu);
    int rc = index_refresh(&sv->idx, &err);
    if (!rc && sv->idx.n) {
        sel = malloc(sv->idx.n * sizeof *sel);
        if (!sel) rc = err_set(&err, ERR_NOMEM, "out of memory");
        for (size_t i = 0; sel && i < sv->idx.n; i++)
            if (q.status < 0 || sv->idx.rows[i].status == q.status) sel[nsel++] = sv->idx.rows[i];
    }
    pthread_mutex_unlock(&sv->idx.mu);
    if (rc) {
        free(sel);
        return resp_error(r, 500, "%s", err.msg);
    }
    int64_t pages = nsel ? (int64_t)((nsel + per - 1) / per) : 1;
    if (page > pages) {
        free(sel);
        return resp_error(r, 404, "page %lld of %lld: no such page", (long long)page, (long long)pages);
    }
    /* only the rows up to the page's end need ordering: a partial selection
     * would do, but qsort of the filtered copy is already a few ms for
     * 100,000 images */
    if (nsel > 1) qsort_r(sel, nsel, sizeof *sel, grid_cmp, &q);
    size_t from = (size_t)((page - 1) * per);
    npg = nsel > from ? (nsel - from < (size_t)per ? nsel - from : (size_t)per) : 0;
    pg = sel + from;

    sbuf b = {0};
    page_head(&b, "Images", "grid");
    sb_printf(&b, "<h1>Images</h1>\n<form class=\"filters\" method=\"get\" action=\"/images\">"
                  "<label>status <select name=\"status\" id=\"f-status\">");
    const char *opts[] = {"all", "pending", "running", "done", "failed"};
    for (int i = 0; i < 5; i++)
        sb_printf(&b, "<option%s>%s</option>", q.status == i - 1 ? " selected" : "", opts[i]);
    sb_str(&b, "</select></label> <label>sort <select name=\"sort\" id=\"f-sort\">");
    const char *sort_label[] = {"masks", "mean IoU", "path", "id"};
    for (int i = 0; i < 4; i++)
        sb_printf(&b, "<option value=\"%s\"%s>%s</option>", sort_names[i], q.sort == i ? " selected" : "",
                  sort_label[i]);
    sb_printf(&b, "</select></label> <label>order <select name=\"order\" id=\"f-order\">"
                  "<option%s>desc</option><option%s>asc</option></select></label>",
              q.desc ? " selected" : "", q.desc ? "" : " selected");
    if (per != SERVE_PER_PAGE) sb_printf(&b, "<input type=\"hidden\" name=\"per\" value=\"%lld\">", (long long)per);
    sb_printf(&b, " <button>show</button></form>\n<p class=\"summary\"><span id=\"n-selected\">%zu</span> "
                  "images, page %lld of %lld</p>\n<div class=\"grid\" id=\"grid\">\n",
              nsel, (long long)page, (long long)pages);
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT path, error, width, height FROM images WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK) {
        free(sel);
        free(b.p);
        return resp_error(r, 500, "reading images: %s", sqlite3_errmsg(db));
    }
    const char *sq = q.status >= 0 ? status_names[q.status] : NULL;
    for (size_t i = 0; i < npg; i++) {
        const sv_img *m = &pg[i];
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, m->id);
        if (sqlite3_step(st) != SQLITE_ROW) continue;   /* gone since the index read */
        char *path = path_shown(&b, (const char *)sqlite3_column_text(st, 0));
        const char *base = path ? strrchr(path, '/') : NULL;
        base = base ? base + 1 : path;
        const char *stname = m->status >= 0 ? status_names[m->status] : "?";
        sb_printf(&b, "<a class=\"card %s\" data-id=\"%lld\" data-masks=\"%d\" href=\"/image/%lld%s%s\">",
                  stname, (long long)m->id, m->masks, (long long)m->id, sq ? "?status=" : "", sq ? sq : "");
        if (m->status == IMAGE_STATUS_DONE)
            sb_printf(&b, "<img loading=\"lazy\" alt=\"\" src=\"/thumb/%lld\">", (long long)m->id);
        else
            sb_printf(&b, "<div class=\"nothumb\">%s</div>", stname);
        sb_str(&b, "<div class=\"name\" title=\"");
        sb_html(&b, path);
        sb_str(&b, "\">");
        sb_html(&b, base);
        free(path);
        sb_str(&b, "</div><div class=\"stats\">");
        double mi = mean_iou(m);
        if (m->status == IMAGE_STATUS_DONE) {
            sb_printf(&b, "<span class=\"masks\">%d masks</span> ", m->masks);
            if (isnan(mi)) sb_str(&b, "<span class=\"iou\">IoU -</span>");
            else sb_printf(&b, "<span class=\"iou\">IoU %.3f</span>", mi);
        } else {
            sb_str(&b, stname);
        }
        sb_str(&b, "</div>");
        if (m->status == IMAGE_STATUS_FAILED) {
            sb_str(&b, "<div class=\"error\">");
            sb_html(&b, (const char *)sqlite3_column_text(st, 1));
            sb_str(&b, "</div>");
        }
        sb_str(&b, "</a>\n");
    }
    sqlite3_finalize(st);
    free(sel);
    sb_str(&b, "</div>\n<p class=\"pager\">");
    if (page > 1) {
        sb_str(&b, "<a id=\"prev-page\" href=\"");
        grid_link(&b, &q, page - 1, per);
        sb_str(&b, "\">&larr; previous</a> ");
    }
    if (page < pages) {
        sb_str(&b, "<a id=\"next-page\" href=\"");
        grid_link(&b, &q, page + 1, per);
        sb_str(&b, "\">next &rarr;</a>");
    }
    sb_str(&b, "</p>\n");
    page_tail(&b);
    r->no_store = 1;
    return resp_buf(r, 200, CT_HTML, &b);
}

/* ---- one image ---- */

/* image_status_arg: the optional ?status= filter of image pages (arrows
 * move within it); -1 all, -2 malformed */
static int image_status_arg(const args *a, char *msg, size_t cap) {
    static const char *const allowed[] = {"status", NULL};
    if (args_check(a, allowed, msg, cap)) return -2;
    const char *v = args_get(a, "status");
    if (!v || !strcmp(v, "all")) return -1;
    int c = status_code(v);
    if (c < 0) snprintf(msg, cap, "status must be all, pending, running, done or failed");
    return c < 0 ? -2 : c;
}

static int image_exists(sqlite3 *db, int64_t id) {
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM images WHERE id = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return found;
}

static int page_image(store_t *s, int64_t id, const args *a, serve_resp *r) {
    char msg[160];
    int stq = image_status_arg(a, msg, sizeof msg);
    if (stq == -2) return resp_error(r, 400, "%s", msg);
    if (!image_exists(store_db(s), id)) return resp_error(r, 404, "no image with id %lld", (long long)id);
    sbuf b = {0};
    char title[64];
    snprintf(title, sizeof title, "Image %lld", (long long)id);
    page_head(&b, title, "image");
    sb_printf(&b, "<div id=\"image-page\" data-id=\"%lld\" data-status=\"%s\">\n", (long long)id,
              stq >= 0 ? status_names[stq] : "");
    sb_str(&b, "<h1 id=\"title\">Image</h1>\n<p id=\"path\"></p>\n<p id=\"error\" class=\"reason\" hidden></p>\n"
               "<div class=\"viewer\"><div class=\"stage\" id=\"stage\"><img id=\"photo\" alt=\"\">"
               "<canvas id=\"overlay\"></canvas><div id=\"tip\" hidden></div></div>\n"
               "<aside><p><a id=\"prev\">&larr; previous</a> <a id=\"next\">next &rarr;</a> "
               "<span class=\"hint\">(arrow keys)</span></p>\n"
               "<p><span id=\"shown\">0</span> of <span id=\"total\">0</span> masks shown</p>\n"
               "<label>min predicted IoU <output id=\"v-iou\">0</output>"
               "<input type=\"range\" id=\"s-iou\" min=\"0\" max=\"1\" step=\"0.01\" value=\"0\"></label>\n"
               "<label>min stability score <output id=\"v-stab\">0</output>"
               "<input type=\"range\" id=\"s-stab\" min=\"0\" max=\"1\" step=\"0.01\" value=\"0\"></label>\n"
               "<label>min area <output id=\"v-area\">0</output> px"
               "<input type=\"range\" id=\"s-area\" min=\"0\" max=\"1000\" step=\"1\" value=\"0\"></label>\n"
               "<h2>Selected mask</h2><pre id=\"record\">click a mask</pre></aside></div>\n</div>\n");
    page_tail(&b);
    return resp_buf(r, 200, CT_HTML, &b);
}

/* neighbour: the next (dir 1) or previous (-1) image id within status stq */
static int64_t neighbour(sqlite3 *db, int64_t id, int dir, int stq) {
    const char *q = dir > 0
        ? (stq >= 0 ? "SELECT id FROM images WHERE id > ?1 AND status = ?2 ORDER BY id LIMIT 1"
                    : "SELECT id FROM images WHERE id > ?1 ORDER BY id LIMIT 1")
        : (stq >= 0 ? "SELECT id FROM images WHERE id < ?1 AND status = ?2 ORDER BY id DESC LIMIT 1"
                    : "SELECT id FROM images WHERE id < ?1 ORDER BY id DESC LIMIT 1");
    sqlite3_stmt *st = NULL;
    int64_t v = 0;
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (stq >= 0) sqlite3_bind_text(st, 2, status_names[stq], -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static int api_image(store_t *s, int64_t id, const args *a, serve_resp *r) {
    char msg[160];
    int stq = image_status_arg(a, msg, sizeof msg);
    if (stq == -2) return resp_error(r, 400, "%s", msg);
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT path, status, error, width, height, run_id FROM images WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return resp_error(r, 500, "reading images: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return resp_error(r, 404, "no image with id %lld", (long long)id);
    }
    sbuf b = {0};
    sb_printf(&b, "{\"id\":%lld,\"path\":", (long long)id);
    char *shown = path_shown(&b, (const char *)sqlite3_column_text(st, 0));
    sb_json_str(&b, shown);
    free(shown);
    sb_str(&b, ",\"status\":");
    sb_json_str(&b, (const char *)sqlite3_column_text(st, 1));
    sb_str(&b, ",\"error\":");
    sb_json_str(&b, (const char *)sqlite3_column_text(st, 2));
    sb_printf(&b, ",\"width\":%d,\"height\":%d", sqlite3_column_int(st, 3), sqlite3_column_int(st, 4));
    sqlite3_finalize(st);
    int64_t prev = neighbour(db, id, -1, stq), next = neighbour(db, id, 1, stq);
    if (prev) sb_printf(&b, ",\"prev\":%lld", (long long)prev);
    else sb_str(&b, ",\"prev\":null");
    if (next) sb_printf(&b, ",\"next\":%lld", (long long)next);
    else sb_str(&b, ",\"next\":null");
    sb_str(&b, ",\"masks\":[");
    /* the RLE text is parsed by SQLite's JSON functions, not pasted: a
     * malformed row gives nulls that the page skips */
    if (sqlite3_prepare_v2(db,
                           "SELECT id, idx, area, bbox_x, bbox_y, bbox_w, bbox_h, predicted_iou, "
                           "stability_score, point_x, point_y, crop_x, crop_y, crop_w, crop_h, "
                           "CASE WHEN json_valid(rle) THEN json_extract(rle, '$.size[0]') END, "
                           "CASE WHEN json_valid(rle) THEN json_extract(rle, '$.size[1]') END, "
                           "CASE WHEN json_valid(rle) THEN json_extract(rle, '$.counts') END "
                           "FROM masks WHERE image_id = ?1 ORDER BY idx",
                           -1, &st, NULL) != SQLITE_OK) {
        free(b.p);
        return resp_error(r, 500, "reading masks: %s", sqlite3_errmsg(db));
    }
    sqlite3_bind_int64(st, 1, id);
    int rc, first = 1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sb_printf(&b, "%s\n{\"id\":%lld,\"idx\":%d,\"area\":%lld,\"bbox\":[", first ? "" : ",",
                  (long long)sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1),
                  (long long)sqlite3_column_int64(st, 2));
        first = 0;
        for (int c = 3; c < 7; c++) {
            if (c > 3) sb_str(&b, ",");
            sb_json_num(&b, st, c);
        }
        sb_str(&b, "],\"predicted_iou\":");
        sb_json_num(&b, st, 7);
        sb_str(&b, ",\"stability_score\":");
        sb_json_num(&b, st, 8);
        sb_str(&b, ",\"point\":[");
        sb_json_num(&b, st, 9);
        sb_str(&b, ",");
        sb_json_num(&b, st, 10);
        sb_str(&b, "],\"crop\":[");
        for (int c = 11; c < 15; c++) {
            if (c > 11) sb_str(&b, ",");
            sb_json_num(&b, st, c);
        }
        sb_str(&b, "],\"size\":[");
        sb_json_num(&b, st, 15);
        sb_str(&b, ",");
        sb_json_num(&b, st, 16);
        sb_str(&b, "],\"counts\":");
        sb_json_str(&b, sqlite3_column_type(st, 17) == SQLITE_TEXT
                            ? (const char *)sqlite3_column_text(st, 17) : NULL);
        sb_str(&b, "}");
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(b.p);
        return resp_error(r, 500, "reading masks: %s", sqlite3_errmsg(db));
    }
    sb_str(&b, "]}\n");
    r->no_store = 1;
    return resp_buf(r, 200, CT_JSON, &b);
}

/* ---- the decode budget ----
 * Each thumbnail or full image is decoded whole (w*h*3 bytes); four
 * threads each on a 256 Mpx image would hold 3 GiB. Decodes share
 * sv->dec_cap bytes (--decode-memory): a decode reserves an allowance and
 * loads with max_pixels = allowance / 3, so the loader refuses, from the
 * header, anything larger before a pixel is allocated; after the load the
 * reservation shrinks to the image's size until the caller is done with
 * the pixels. A first try allows a quarter of the budget (most photos:
 * decodes run side by side); an image over that tries again with the whole
 * budget (or the loader's own 256 Mpx limit, if smaller), waiting for it.
 * A decode that waited SERVE_DECODE_WAIT_S seconds is a 503; an image larger
 * than the whole budget is a 503 at once. */

/* decode_reserve: wait until want bytes are free (deadline: monotonic s),
 * take them. 0, or -1 at the deadline. */
static int decode_reserve(serve_t *sv, int64_t want, double deadline) {
    struct timespec ts;
    double d = deadline - now_mono();
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = ts.tv_sec + ts.tv_nsec * 1e-9 + (d > 0 ? d : 0);
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    pthread_mutex_lock(&sv->dec_mu);
    int rc = 0;
    while (sv->dec_used + want > sv->dec_cap && rc == 0)
        if (pthread_cond_timedwait(&sv->dec_cv, &sv->dec_mu, &ts)) rc = -1;
    if (sv->dec_used + want <= sv->dec_cap) sv->dec_used += want, rc = 0;
    pthread_mutex_unlock(&sv->dec_mu);
    return rc;
}

/* decode_release: give back n bytes of a reservation. */
static void decode_release(serve_t *sv, int64_t n) {
    pthread_mutex_lock(&sv->dec_mu);
    sv->dec_used -= n;
    pthread_cond_broadcast(&sv->dec_cv);
    pthread_mutex_unlock(&sv->dec_mu);
}

/* load_db_image: decode the file of image id as the run did (image_load),
 * within the decode budget: on success *held bytes of it stay reserved for
 * img until the caller's decode_release. 404 when the image is unknown,
 * its file missing or not decodable; 503 when the budget does not allow it. */
static int load_db_image(serve_t *sv, store_t *s, int64_t id, image_t *img, int64_t *held,
                         serve_resp *r) {
    *held = 0;
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT path FROM images WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
        return resp_error(r, 500, "reading images: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return resp_error(r, 404, "no image with id %lld", (long long)id);
    }
    const char *p = (const char *)sqlite3_column_text(st, 0);
    if (!p || !*p) {   /* a NULL or empty path: a foreign database */
        sqlite3_finalize(st);
        return resp_error(r, 404, "image %lld cannot be shown: it has no path", (long long)id);
    }
    char *path = strdup(p);
    sqlite3_finalize(st);
    if (!path) return resp_error(r, 500, "out of memory");
    store_path_unescape(path);
    err_t err = {{0}};
    int64_t whole = sv->dec_cap < SERVE_DECODE_MAX_PX * 3 ? sv->dec_cap : SERVE_DECODE_MAX_PX * 3;
    int64_t tries[2] = {whole / 4 >= 3 ? whole / 4 : whole, whole};
    double deadline = now_mono() + SERVE_DECODE_WAIT_S;
    int rc = ERR_TOO_BIG;
    for (int t = 0; t < (tries[0] == whole ? 1 : 2) && rc == ERR_TOO_BIG; t++) {
        int64_t allow = tries[t];
        if (decode_reserve(sv, allow, deadline)) {
            free(path);
            return resp_error(r, 503, "image %lld: busy decoding other images; try again",
                              (long long)id);
        }
        rc = image_load(img, path, allow / 3, &err);
        int64_t keep = rc ? 0 : (int64_t)img->w * img->h * 3;
        decode_release(sv, allow - keep);
        *held = keep;
    }
    free(path);
    if (rc == ERR_TOO_BIG && whole < SERVE_DECODE_MAX_PX * 3)
        return resp_error(r, 503, "image %lld cannot be shown within the decode memory of %lld "
                          "MiB (--decode-memory): %s", (long long)id,
                          (long long)(sv->dec_cap >> 20), err.msg);
    if (rc) return resp_error(r, 404, "image %lld cannot be shown: %s", (long long)id, err.msg);
    return 0;
}

/* encode rgb (h, w, 3) with libvips as ".jpg" or ".png" (malloc'd copy) */
static int encode(const image_t *img, int thumb, void **out, size_t *len) {
    VipsImage *in = vips_image_new_from_memory(img->rgb, (size_t)img->w * img->h * 3, img->w, img->h, 3,
                                               VIPS_FORMAT_UCHAR);
    if (!in) return -1;
    int rc;
    void *buf = NULL;
    size_t n = 0;
    if (thumb) {
        VipsImage *t = NULL;
        rc = vips_thumbnail_image(in, &t, SERVE_THUMB_PX, "height", SERVE_THUMB_PX, NULL);
        if (!rc) rc = vips_jpegsave_buffer(t, &buf, &n, "Q", 80, NULL);
        if (t) g_object_unref(t);
    } else {
        rc = vips_pngsave_buffer(in, &buf, &n, "compression", 1, NULL);
    }
    g_object_unref(in);
    if (rc) {
        vips_error_clear();
        return -1;
    }
    *out = buf, *len = n;
    return 0;
}

static int copy_out(serve_resp *r, const void *p, size_t n, const char *ctype) {
    r->body = malloc(n ? n : 1);
    if (!r->body) return resp_error(r, 500, "out of memory");
    memcpy(r->body, p, n);
    r->len = n, r->ctype = ctype, r->status = 200;
    return 200;
}

static int serve_thumb(serve_t *sv, store_t *s, int64_t id, serve_resp *r) {
    pthread_mutex_lock(&sv->thumb_mu);
    for (int i = 0; i < SERVE_THUMB_SLOTS; i++)
        if (sv->thumbs[i].id == id) {
            int st = copy_out(r, sv->thumbs[i].jpg, sv->thumbs[i].len, "image/jpeg");
            pthread_mutex_unlock(&sv->thumb_mu);
            return st;
        }
    pthread_mutex_unlock(&sv->thumb_mu);
    image_t img = {0};
    int64_t held;
    int st = load_db_image(sv, s, id, &img, &held, r);
    if (st) return st;
    void *jpg = NULL;
    size_t n = 0;
    int rc = encode(&img, 1, &jpg, &n);
    image_free(&img);
    decode_release(sv, held);
    if (rc) return resp_error(r, 500, "image %lld: cannot make a thumbnail", (long long)id);
    st = copy_out(r, jpg, n, "image/jpeg");
    pthread_mutex_lock(&sv->thumb_mu);
    int dup = 0;   /* another thread may have made it meanwhile */
    for (int i = 0; i < SERVE_THUMB_SLOTS && !dup; i++) dup = sv->thumbs[i].id == id;
    if (!dup) {
        while (sv->thumb_bytes + n > SERVE_THUMB_BYTES || sv->thumbs[sv->thumb_next].id != SERVE_THUMB_NONE) {
            sv_thumb *old = &sv->thumbs[sv->thumb_next];
            if (old->id == SERVE_THUMB_NONE) {   /* over the byte budget: evict the next */
                sv->thumb_next = (sv->thumb_next + 1) % SERVE_THUMB_SLOTS;
                if (sv->thumb_bytes == 0) break;
                continue;
            }
            sv->thumb_bytes -= old->len;
            g_free(old->jpg);
            old->jpg = NULL, old->len = 0, old->id = SERVE_THUMB_NONE;
        }
        sv_thumb *t = &sv->thumbs[sv->thumb_next];
        t->id = id, t->jpg = jpg, t->len = n;
        sv->thumb_bytes += n;
        sv->thumb_next = (sv->thumb_next + 1) % SERVE_THUMB_SLOTS;
        jpg = NULL;
    }
    pthread_mutex_unlock(&sv->thumb_mu);
    g_free(jpg);
    return st;
}

static int serve_full(serve_t *sv, store_t *s, int64_t id, serve_resp *r) {
    image_t img = {0};
    int64_t held;
    int st = load_db_image(sv, s, id, &img, &held, r);
    if (st) return st;
    void *png = NULL;
    size_t n = 0;
    int rc = encode(&img, 0, &png, &n);
    image_free(&img);
    decode_release(sv, held);
    if (rc) return resp_error(r, 500, "image %lld: cannot encode", (long long)id);
    st = copy_out(r, png, n, "image/png");
    g_free(png);
    return st;
}

/* ---- routing ---- */

/* route_id: url is prefix followed by an id; the id (>= 1), 0 when url does
 * not start with prefix, -1 when what follows is not an id */
static int64_t route_id(const char *url, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(url, prefix, n)) return 0;
    int64_t id = parse_uint(url + n, 1, INT64_C(999999999999999));
    return id > 0 ? id : -1;
}

int serve_handle(serve_t *sv, const char *url, int nargs, const char *const *keys,
                 const char *const *vals, serve_resp *r) {
    memset(r, 0, sizeof *r);
    args a = {nargs, keys, vals};
    if (nargs > SERVE_MAX_ARGS) return resp_error(r, 400, "too many query parameters");
    if (!strcmp(url, "/static/serve.js"))
        return copy_out(r, serve_js_start, (size_t)(serve_js_end - serve_js_start),
                        "text/javascript; charset=utf-8");
    if (!strcmp(url, "/static/serve.css"))
        return copy_out(r, serve_css_start, (size_t)(serve_css_end - serve_css_start),
                        "text/css; charset=utf-8");
    err_t err = {{0}};
    store_t *s = thread_store(sv, &err);
    if (!s) return resp_error(r, 500, "%s", err.msg);
    if (!strcmp(url, "/")) {
        if (nargs) return resp_error(r, 400, "the run page takes no query parameters");
        return page_run(sv, s, r);
    }
    if (!strcmp(url, "/images")) return page_grid(sv, s, &a, r);
    int64_t id;
    const char *what = NULL;
    int kind = 0;
    if ((id = route_id(url, "/image/"))) kind = 1, what = "image";
    else if ((id = route_id(url, "/api/image/"))) kind = 2, what = "image";
    else if ((id = route_id(url, "/thumb/"))) kind = 3, what = "thumbnail";
    else if ((id = route_id(url, "/full/"))) kind = 4, what = "image";
    if (!kind) return resp_error(r, 404, "no such page");
    if (id < 0) return resp_error(r, 404, "no such %s: ids are whole numbers from 1", what);
    if (kind >= 3 && nargs) return resp_error(r, 400, "images take no query parameters");
    switch (kind) {
    case 1: return page_image(s, id, &a, r);
    case 2: return api_image(s, id, &a, r);
    case 3: return serve_thumb(sv, s, id, r);
    default: return serve_full(sv, s, id, r);
    }
}

/* ---- the HTTP server ---- */

typedef struct req_args {
    int n, over;
    const char *k[SERVE_MAX_ARGS], *v[SERVE_MAX_ARGS];
} req_args;

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    (void)kind;
    req_args *ra = cls;
    if (ra->n == SERVE_MAX_ARGS) {
        ra->over = 1;
        return MHD_NO;
    }
    ra->k[ra->n] = key, ra->v[ra->n] = value;
    ra->n++;
    return MHD_YES;
}

/* Markers for a request's first handler call (con_cls), set by uri_seen
 * from the raw URI: libmicrohttpd unescapes the URL in place, so an escaped
 * NUL ("/image/1%00.png") would silently cut it short; such a request is
 * refused instead. */
static char REQ_NEW, REQ_NUL, REQ_SEEN;

static void *uri_seen(void *cls, const char *uri, struct MHD_Connection *c) {
    (void)cls, (void)c;
    for (const char *p = uri; (p = strchr(p, '%')); p++)
        if (p[1] == '0' && p[2] == '0') return &REQ_NUL;
    return &REQ_NEW;
}

/* host_is_loopback: a Host header naming this machine's loopback
 * ("localhost", "127.0.0.1", "[::1]", any port). A server on 127.0.0.1
 * answers only to those: a web page whose own name resolves to 127.0.0.1
 * (DNS rebinding) sends its own name, and would otherwise read every page,
 * mask and image of the database as same-origin. */
static int host_is_loopback(const char *h) {
    size_t n;
    if (h[0] == '[') {
        const char *e = strchr(h, ']');
        if (!e || (e[1] && e[1] != ':')) return 0;
        return e - h - 1 == 3 && !strncmp(h + 1, "::1", 3);
    }
    n = strcspn(h, ":");
    return (n == 9 && !strncasecmp(h, "localhost", 9)) || (n == 9 && !strncmp(h, "127.0.0.1", 9));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)version, (void)upload;
    serve_t *sv = cls;
    serve_resp r = {0};
    const char *host;
    if (*con_cls != &REQ_SEEN) {   /* first call: headers only; answer before any body */
        int nul = *con_cls == &REQ_NUL;
        *con_cls = &REQ_SEEN;
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
            resp_error(&r, 405, "only GET and HEAD");
        else if (nul)
            resp_error(&r, 400, "a NUL byte in the URL");
        else if (sv->loopback_only && (host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host")) &&
                 !host_is_loopback(host))
            resp_error(&r, 400, "Host '%.64s': this server answers to localhost, 127.0.0.1 and [::1] only",
                       host);
        else if (*upload_size)
            resp_error(&r, 400, "a GET has no body");
        else
            return MHD_YES;
    } else if (*upload_size) {
        *upload_size = 0;   /* a body after all: refuse it */
        resp_error(&r, 400, "a GET has no body");
    } else {
        req_args ra = {0};
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &ra);
        if (ra.over) resp_error(&r, 400, "too many query parameters");
        else serve_handle(sv, url, ra.n, ra.k, ra.v, &r);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r.len, r.body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        serve_resp_free(&r);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", r.ctype ? r.ctype : CT_HTML);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; connect-src 'self'");
    if (r.no_store) MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (r.status == 405) MHD_add_response_header(resp, "Allow", "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static int stop_pipe[2] = {-1, -1};

/* on_stop_signal: SIGINT/SIGTERM, in whichever thread takes it: wake
 * cmd_serve (async-signal-safe: one write) */
static void on_stop_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t n = write(stop_pipe[1], &b, 1);
    (void)n;
    errno = saved;
}

static int is_loopback(const char *host) {
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

int cmd_serve(int argc, char **argv) {
    const char *db = NULL, *host = "127.0.0.1";
    int64_t port = 8765, decode_mib = SERVE_DECODE_BYTES >> 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: sam2amg serve DB [--host 127.0.0.1] [--port 8765] [--decode-memory MIB]\n\n"
                   "A local web page to review the database DB (read-only; works beside a\n"
                   "running `sam2amg run`): the runs, a grid of images with their mask\n"
                   "counts, and each image with its masks. --port 0 picks a free port.\n"
                   "The page has no login: keep it on 127.0.0.1 unless the network is yours.\n"
                   "--decode-memory: MiB of decoded pixels for all thumbnails and full images\n"
                   "being made at once (default %lld); a request waits for it up to %d s, then 503.\n",
                   (long long)(SERVE_DECODE_BYTES >> 20), SERVE_DECODE_WAIT_S);
            return EXIT_OK;
        }
        if (!strcmp(argv[i], "--host") || !strcmp(argv[i], "--port")) {
            if (i + 1 >= argc || cli_looks_like_flag(argv[i + 1]))
                return cli_usage_error("serve", "%s needs a value", argv[i]);
            if (argv[i][2] == 'h') host = argv[++i];
            else if (cli_parse_int("serve", "--port", argv[++i], 0, 65535, &port)) return EXIT_USAGE;
            continue;
        }
        if (!strcmp(argv[i], "--decode-memory")) {
            if (cli_parse_int("serve", argv[i], i + 1 < argc ? argv[i + 1] : NULL, 1, 1 << 20,
                              &decode_mib))
                return EXIT_USAGE;
            i++;
            continue;
        }
        if (argv[i][0] == '-') return cli_usage_error("serve", "unknown option '%s'", argv[i]);
        if (db) return cli_usage_error("serve", "unexpected argument '%s'", argv[i]);
        db = argv[i];
    }
    if (!db) return cli_usage_error("serve", "the database DB is required");
    /* SIGINT/SIGTERM stop the server: a handler writes the signal to a
     * pipe that this thread reads at the end. A handler, not sigwait: a
     * thread started before main (OpenBLAS starts its pool at load) does
     * not block them, and a signal the kernel gave it took the default
     * action, ending the process with -15 (about 1 run in 30). The threads
     * started here block them, so that only this one and such early
     * threads run the handler. */
    if (pipe(stop_pipe)) {
        fprintf(stderr, "sam2amg serve: cannot make a pipe: %s\n", strerror(errno));
        return EXIT_DATA;
    }
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%lld", (long long)port);
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai || !ai) return cli_usage_error("serve", "--host %s: %s", host, gai_strerror(gai));
    serve_t *sv = NULL;
    err_t err = {{0}};
    if (serve_open(&sv, db, &err)) {
        freeaddrinfo(ai);
        fprintf(stderr, "sam2amg serve: %s\n", err.msg);
        return EXIT_DATA;
    }
    sv->dec_cap = decode_mib << 20;
    sv->loopback_only = is_loopback(host);
    signal(SIGPIPE, SIG_IGN);
    /* no MHD_USE_ERROR_LOG: its lines (a failed bind, a refused request)
     * would be a second line beside our one-line errors */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, sv,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_URI_LOG_CALLBACK, uri_seen, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)SERVE_THREADS,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SERVE_MEM_LIMIT,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)256,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d) {
        fprintf(stderr, "sam2amg serve: cannot listen on %s port %lld: %s\n", host, (long long)port,
                errno ? strerror(errno) : "address in use or not available");
        serve_free(sv);
        return EXIT_DATA;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned bound = info ? info->port : (unsigned)port;
    if (!is_loopback(host))
        fprintf(stderr, "sam2amg serve: warning: listening on %s: the page has no login; anyone "
                        "who can reach this address can read the database\n", host);
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);   /* this thread takes them from here */
    printf("serving %s on http://%s%s%s:%u/ (Ctrl-C stops)\n", db,
           strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", bound);
    fflush(stdout);
    unsigned char sig;
    while (read(stop_pipe[0], &sig, 1) < 0 && errno == EINTR) {}
    MHD_stop_daemon(d);
    serve_free(sv);
    return EXIT_OK;
}
