/* fuzz_json.c: the JSON reader (src/json.c: safetensors headers, config
 * files, meta.json) and what reads an `amg` object (amg_params_from_json:
 * a config's "amg" object and the params of a database's runs row, which
 * `run` reads back on resume). On a parse, every node is visited with the
 * accessors, strings go through the writer, and every number's shortest
 * text must read back as the same double (json_fmt_double's contract). */
#include <math.h>

#include "amg.h"
#include "fuzz.h"
#include "json.h"

static void visit(const json_t *v, FILE *out, int depth) {
    FUZZ_ASSERT(depth < 100000);
    switch (json_type(v)) {
    case JSON_NUM: {
        double x = json_num(v);
        char buf[JSON_DOUBLE_BUF];
        json_fmt_double(buf, x);
        FUZZ_ASSERT(strlen(buf) < JSON_DOUBLE_BUF);
        if (isfinite(x)) FUZZ_ASSERT(strtod(buf, NULL) == x);
        int64_t i;
        if (json_int(v, &i) == 0 && fabs(x) < 9007199254740992.0) FUZZ_ASSERT((double)i == x);
        break;
    }
    case JSON_STR:
        FUZZ_ASSERT(json_str(v) != NULL);
        json_write_string(out, json_str(v));
        break;
    case JSON_ARR:
        for (size_t i = 0; i < json_len(v); i++) visit(json_at(v, i), out, depth + 1);
        FUZZ_ASSERT(json_at(v, json_len(v)) == NULL);
        break;
    case JSON_OBJ:
        for (size_t i = 0; i < json_len(v); i++) {
            const char *k = json_key_at(v, i);
            FUZZ_ASSERT(k != NULL);
            json_write_string(out, k);
            visit(json_at(v, i), out, depth + 1);
        }
        break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *v = NULL;
    err_t err = {{0}};
    int rc = json_parse(&v, (const char *)data, size, "fuzz", &err);
    if (rc) {
        FUZZ_ASSERT(v == NULL && fuzz_err_ok(&err));
    } else {
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        CHECK(out);
        visit(v, out, 0);
        fclose(out);
        free(text);
        json_free(v);
    }
    /* as an `amg` object (NUL-terminated, as the database's TEXT column and
     * the config's re-serialized object reach it) */
    char *s = fuzz_cstr(data, size);
    amg_params p;
    amg_params_default(&p);
    err_t e2 = {{0}};
    if (amg_params_from_json(&p, s, &e2) == 0) {
        err_t e3 = {{0}};
        if (amg_params_validate(&p, &e3)) FUZZ_ASSERT(fuzz_err_ok(&e3));
    } else {
        FUZZ_ASSERT(fuzz_err_ok(&e2));
    }
    free(s);
    return 0;
}
