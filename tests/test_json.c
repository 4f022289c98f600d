/* test_json.c: the strict JSON reader (valid documents, every accessor,
 * malformed inputs with line/column messages) and the Python-compatible
 * writer helpers (string escaping, shortest float repr checked against
 * values Python prints, and a round-trip sweep over random doubles).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "test.h"

static json_t *parse(const char *s, err_t *err) {
    json_t *v = NULL;
    int rc = json_parse(&v, s, strlen(s), "t.json", err);
    return rc == 0 ? v : NULL;
}

static void test_valid(void) {
    err_t err = {{0}};
    json_t *v = parse(" {\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"],"
                      " \"big\": 9007199254740993, \"neg\": -0, \"o\": {}, \"e\": []}\n", &err);
    TEST_CHECK(v != NULL, "json parse valid document", "%s", err.msg);
    if (!v) return;
    const json_t *a = json_get(v, "a");
    TEST_CHECK(json_type(v) == JSON_OBJ && json_len(v) == 5, "json object len", "len %zu", json_len(v));
    TEST_CHECK(!strcmp(json_key_at(v, 1), "big") && json_at(v, 1) == json_get(v, "big"),
               "json key order kept", "key %s", json_key_at(v, 1));
    TEST_CHECK(json_type(a) == JSON_ARR && json_len(a) == 6, "json array len", "len %zu", json_len(a));
    int64_t i = 0;
    TEST_CHECK(json_int(json_at(a, 0), &i) == 0 && i == 1, "json int", "%lld", (long long)i);
    TEST_CHECK(json_num(json_at(a, 1)) == -2500.0, "json float exponent", "%g", json_num(json_at(a, 1)));
    TEST_CHECK(json_int(json_at(a, 1), &i) == 0 && i == -2500, "json int from integral double", "%lld",
               (long long)i);
    TEST_CHECK(json_bool(json_at(a, 2)) == 1 && json_type(json_at(a, 3)) == JSON_BOOL &&
                   json_bool(json_at(a, 3)) == 0 && json_type(json_at(a, 4)) == JSON_NULL,
               "json true false null", "types %d %d %d", json_type(json_at(a, 2)),
               json_type(json_at(a, 3)), json_type(json_at(a, 4)));
    const char *s = json_str(json_at(a, 5));
    TEST_CHECK(s && !strcmp(s, "x\xc3\xa9\xf0\x9f\x98\x80\n") && json_len(json_at(a, 5)) == 8,
               "json \\u escapes and surrogate pair to UTF-8", "%s", s ? s : "(null)");
    TEST_CHECK(json_int(json_get(v, "big"), &i) == 0 && i == 9007199254740993LL,
               "json exact int64 above 2^53", "%lld", (long long)i);
    TEST_CHECK(json_int(json_at(a, 5), &i) == -1 && isnan(json_num(json_at(a, 5))),
               "json number accessors refuse a string", "ok");
    TEST_CHECK(json_get(v, "missing") == NULL && json_at(a, 6) == NULL && json_get(a, "a") == NULL &&
                   json_len(NULL) == 0 && json_str(NULL) == NULL,
               "json absent lookups are NULL", "ok");
    TEST_CHECK(json_len(json_get(v, "o")) == 0 && json_type(json_get(v, "e")) == JSON_ARR,
               "json empty containers", "ok");
    json_free(v);

    json_t *half = parse("0.5", &err);
    TEST_CHECK(half && json_int(half, &i) == -1 && json_num(half) == 0.5, "json non-integral not int",
               "%s", err.msg);
    json_free(half);
}

static void test_malformed(void) {
    static const struct { const char *text, *want; } cases[] = {
        {"", "unexpected end"},
        {"{", "expected a string key"},
        {"[1,]", "unexpected character"},
        {"{\"a\":1,}", "expected a string key"},
        {"{\"a\" 1}", "expected ':'"},
        {"[1 2]", "expected ','"},
        {"01", "trailing"},
        {"1.", "bad number"},
        {"-", "bad number"},
        {"1e", "bad number"},
        {"NaN", "unexpected character"},
        {"tru", "unexpected character"},
        {"\"abc", "unterminated string"},
        {"\"a\tb\"", "control character"},
        {"\"\\x\"", "bad escape"},
        {"\"\\u12g4\"", "bad \\u escape"},
        {"\"\\ud800\"", "high surrogate"},
        {"\"\\udc00\"", "lone low surrogate"},
        {"\"\\udc7f\"", "lone low surrogate"},
        {"\"\\udd00\"", "lone low surrogate"},
        {"1e400", "out of range"},
        {"{\"k\": [-2e999]}", "\"k\": -2e999 is out of range"},
        {"\"\xff\"", "invalid UTF-8"},
        {"{\"a\":1,\"a\":2}", "duplicate key"},
        {"[1]\n  x", "trailing"},
        {"// c\n1", "unexpected character"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        err_t err = {{0}};
        json_t *v = NULL;
        int rc = json_parse(&v, cases[k].text, strlen(cases[k].text), "bad.json", &err);
        char name[96];
        snprintf(name, sizeof name, "json rejects case %zu (%s)", k, cases[k].want);
        TEST_CHECK(rc == ERR_FORMAT && v == NULL && strstr(err.msg, "bad.json: line ") &&
                       strstr(err.msg, cases[k].want),
                   name, "rc %d msg '%s'", rc, err.msg);
    }
    /* line / column of the error */
    err_t err = {{0}};
    json_t *v = NULL;
    const char *t = "{\n  \"a\": [1,\n   2,, 3]}";
    json_parse(&v, t, strlen(t), "f.json", &err);
    TEST_CHECK(strstr(err.msg, "line 3 column 6") != NULL, "json error line and column", "%s", err.msg);
    /* nesting limit: no stack overflow */
    char deep[5001];
    memset(deep, '[', 5000);
    deep[5000] = 0;
    TEST_CHECK(json_parse(&v, deep, 5000, "deep.json", &err) == ERR_FORMAT && strstr(err.msg, "too deep"),
               "json nesting limit", "%s", err.msg);
    /* embedded NUL is not whitespace */
    TEST_CHECK(json_parse(&v, "1\0", 2, "nul.json", &err) == ERR_FORMAT, "json embedded NUL rejected",
               "%s", err.msg);
    TEST_CHECK(json_parse_file(&v, "/nonexistent/x.json", &err) == ERR_IO &&
                   strstr(err.msg, "/nonexistent/x.json"),
               "json_parse_file missing file", "%s", err.msg);
}

static void test_write(void) {
    /* Expected strings are what Python 3 prints for repr(x) / json.dumps. */
    static const struct { double x; const char *want; } d[] = {
        {1.0, "1.0"}, {0.0, "0.0"}, {-0.0, "-0.0"}, {0.1, "0.1"}, {-2.5, "-2.5"},
        {100000.0, "100000.0"}, {1e15, "1000000000000000.0"}, {1e16, "1e+16"},
        {1.5e16, "1.5e+16"}, {0.0001, "0.0001"}, {0.00012345, "0.00012345"}, {1e-05, "1e-05"},
        {1.5e-7, "1.5e-07"}, {123456.789, "123456.789"}, {1.0 / 3.0, "0.3333333333333333"},
        {2.0 / 3.0, "0.6666666666666666"}, {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
        {0.9876543209876543, "0.9876543209876543"}, {12345678901234567890.0, "1.2345678901234567e+19"},
        {NAN, "null"}, {INFINITY, "null"}, {-INFINITY, "null"}, {(double)0.95f, "0.949999988079071"},
    };
    for (size_t k = 0; k < sizeof d / sizeof d[0]; k++) {
        char buf[JSON_DOUBLE_BUF], name[64];
        json_fmt_double(buf, d[k].x);
        snprintf(name, sizeof name, "json_fmt_double %s", d[k].want);
        TEST_CHECK(!strcmp(buf, d[k].want), name, "got %s", buf);
    }
    /* round trip over random bit patterns */
    uint64_t s = 88172645463325252ULL;
    int bad = 0;
    for (int k = 0; k < 20000; k++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double x;
        memcpy(&x, &s, 8);
        if (!isfinite(x)) continue;
        char buf[JSON_DOUBLE_BUF];
        json_fmt_double(buf, x);
        if (strtod(buf, NULL) != x || strlen(buf) >= JSON_DOUBLE_BUF) bad++;
    }
    TEST_CHECK(bad == 0, "json_fmt_double round trips 20000 random doubles", "%d failed", bad);

    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    json_write_string(f, "a\"b\\c\n\t\x01\x7f\xc3\xa9\xf0\x9f\x98\x80/\xff");
    fclose(f);
    TEST_CHECK(!strcmp(mem, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\\u00e9\\ud83d\\ude00/\\udcff\""),
               "json_write_string escapes like json.dumps", "got %s", mem);
    /* and what we write, we read back */
    err_t err = {{0}};
    json_t *v = parse(mem, &err);
    TEST_CHECK(v && !strcmp(json_str(v), "a\"b\\c\n\t\x01\x7f\xc3\xa9\xf0\x9f\x98\x80/\xff"),
               "json_write_string output parses back, the invalid byte included", "%s", err.msg);
    json_free(v);
    free(mem);
    /* names that are not UTF-8 stay distinct (U+FFFD made them one) and
     * come back byte for byte */
    const char *names[3] = {"caf\xe9.png", "caf\xe8.png", "caf\xef\xbf\xbd.png"};
    char *w[3];
    int distinct = 1, back = 1;
    for (int i = 0; i < 3; i++) {
        f = open_memstream(&w[i], &len);
        json_write_string(f, names[i]);
        fclose(f);
        v = parse(w[i], &err);
        back &= v && !strcmp(json_str(v), names[i]);
        json_free(v);
    }
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++) distinct &= strcmp(w[i], w[j]) != 0;
    TEST_CHECK(distinct && !strcmp(w[0], "\"caf\\udce9.png\""),
               "json_write_string: caf\\xe9, caf\\xe8, caf\\ufffd are three strings", "%s %s %s",
               w[0], w[1], w[2]);
    TEST_CHECK(back, "... each parses back to its bytes", "%s", w[0]);
    for (int i = 0; i < 3; i++) free(w[i]);
}

int main(void) {
    test_valid();
    test_malformed();
    test_write();
    return TEST_REPORT();
}
