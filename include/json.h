/* json.h: a small strict JSON reader (a DOM) and the two writer helpers
 * sam2amg needs.
 *
 * Used for safetensors headers, meta.json / config files and the SA-1B style
 * output. The reader follows RFC 8259 strictly: no comments, no trailing
 * commas, no NaN literals, no duplicate object keys, UTF-8 in and out
 * (\u escapes including surrogate pairs are decoded to UTF-8). Errors give
 * the line and column. Numbers keep both the double value and, for integer
 * literals, the exact int64 (json_int), so tensor offsets and shapes above
 * 2^53 are read exactly. The writer side matches Python's json.dumps with
 * its defaults (ensure_ascii, float repr), so our JSON output can be
 * compared byte for byte with the official tools'.
 */
#ifndef SAM2AMG_JSON_H
#define SAM2AMG_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"

typedef enum { JSON_NULL = 0, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ } json_type_t;

typedef struct json json_t;

/* json_parse: parse text[0..len) (one JSON value, surrounded by optional
 * whitespace). what names the source in messages ("meta.json",
 * "FILE: safetensors header"). On success *out is a tree owned by the
 * caller (json_free). A lone \udc80..\udcff in a string is the byte 0x80..0xff
 * (see json_write_string). On error returns ERR_FORMAT (ERR_NOMEM on allocation
 * failure), *out is NULL and err holds "WHAT: line L column C: reason". */
int json_parse(json_t **out, const char *text, size_t len, const char *what, err_t *err);

/* json_parse_file: read and parse a whole file; ERR_IO if it can't be read.
 * Messages name the path. */
int json_parse_file(json_t **out, const char *path, err_t *err);

/* json_free: free a tree from json_parse (NULL is fine). */
void json_free(json_t *v);

/* Accessors. All accept NULL and then return the "absent" value, so
 * chains like json_int(json_at(json_get(o, "shape"), 0), &d) are safe. */
json_type_t   json_type(const json_t *v);                 /* JSON_NULL for NULL */
size_t        json_len(const json_t *v);                  /* items of array/object, bytes of string, else 0 */
const json_t *json_get(const json_t *obj, const char *key); /* NULL if not an object or absent */
const json_t *json_at(const json_t *v, size_t i);         /* i-th item of array, or i-th value of object */
const char   *json_key_at(const json_t *obj, size_t i);   /* i-th key of object (file order), else NULL */
double        json_num(const json_t *v);                  /* NAN if not a number */
int           json_bool(const json_t *v);                 /* 1 for true, 0 otherwise */
const char   *json_str(const json_t *v);                  /* NUL-terminated UTF-8, NULL if not a string */

/* json_int: 0 and *out = value if v is a number holding an exact integer
 * (an integer literal within int64, or an integral double below 2^53 in
 * magnitude, e.g. "1e3"); -1 otherwise (*out untouched). */
int json_int(const json_t *v, int64_t *out);

/* json_write_string: write s (UTF-8) as a JSON string literal the way
 * Python's json.dumps does by default: \" \\ \n \r \t \b \f, other control
 * characters and every non-ASCII character as \uXXXX (surrogate pairs above
 * U+FFFF). A byte that is not part of valid UTF-8 (a Latin-1 file name) is
 * written as the lone surrogate U+DC00 + byte (\udce9 for 0xE9), as
 * Python's json.dumps(os.fsdecode(name)) writes it: two different byte
 * strings never give one JSON string (U+FFFD would), os.fsencode of the
 * loaded string gives the bytes back, and json_parse reads it back to the
 * byte. */
void json_write_string(FILE *f, const char *s);

/* json_fmt_double: the shortest text that reads back as exactly x, laid out
 * like Python's repr(float) (1.0, 0.0001, 1e-05, 1e+16, 123456.789), and
 * null for NaN and +-Infinity (JSON has no such numbers; e.g. a stability
 * score of 0/0).
 * buf must hold at least JSON_DOUBLE_BUF bytes. Returns buf. */
#define JSON_DOUBLE_BUF 32
char *json_fmt_double(char *buf, double x);

#endif
