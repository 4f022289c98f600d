/* sqlext.h: the rle_* SQL functions (src/sqlext.c), registered on every
 * connection the program opens and built alone as the loadable extension
 * build/libsam2amg_sql.so (sqlite3 shell `.load`, Python's sqlite3).
 *
 * Functions (rle = the masks.rle text {"size":[h,w],"counts":"..."}; a bare
 * counts string is accepted where the size is not needed):
 *   rle_area(rle)            foreground pixels (INTEGER)
 *   rle_iou(a, b)            intersection over union (REAL), same size
 *   rle_intersection(a, b)   common foreground pixels (INTEGER)
 *   rle_contains(rle, x, y)  1 if pixel (x, y) is foreground, else 0
 *   rle_bbox(rle)            "[x,y,w,h]" JSON text (pycocotools toBbox)
 *   rle_width(rle), rle_height(rle)
 *   rle_to_png(rle)          a 1-bit-looking 8-bit grey PNG (BLOB): 255 inside
 * A malformed rle is an SQL error naming the function and the reason.
 */
#ifndef SAM2AMG_SQLEXT_H
#define SAM2AMG_SQLEXT_H

#include <stddef.h>
#include <stdint.h>

typedef struct sqlite3 sqlite3;

/* sqlext_register: add the functions to db. Returns an SQLite result code. */
int sqlext_register(sqlite3 *db);

/* sqlext_rle_parse: parse rle text (n bytes) into h, w (-1 when a bare
 * counts string) and the counts string, unescaped, into cstr (cap bytes,
 * NUL-terminated). Returns 0, or -1 when malformed or cstr is too small. */
int sqlext_rle_parse(const char *text, size_t n, int64_t *h, int64_t *w, char *cstr,
                     size_t cap);

#endif
