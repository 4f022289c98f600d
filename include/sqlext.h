/* sqlext.h: the rle_* SQL functions (src/sqlext.c), registered on every
 * connection the program opens and built alone as the loadable extension
 * build/libsam2amg_sql.so (sqlite3 shell `.load`, Python's sqlite3).
 *
 * Functions (rle = the masks.rle text {"size":[h,w],"counts":"..."}):
 *   rle_area(rle)            foreground pixels (INTEGER)
 *   rle_iou(a, b)            intersection over union (REAL), same size
 *   rle_intersection(a, b)   common foreground pixels (INTEGER)
 *   rle_contains(rle, x, y)  1 if pixel (x, y) is foreground, else 0
 *   rle_bbox(rle)            "[x,y,w,h]" JSON text (pycocotools toBbox)
 *   rle_width(rle), rle_height(rle)
 *   rle_to_png(rle)          a 1-bit-looking 8-bit grey PNG (BLOB): 255 inside;
 *                            1 to 2^28 pixels
 *
 * What is accepted, for every function alike:
 *   - SQL NULL in any argument gives NULL (like SQLite's own functions);
 *   - an rle is TEXT holding exactly one JSON object with the keys "size"
 *     ([h,w], two non-negative integers) and "counts" (the compressed COCO
 *     string), in either order, nothing else. pycocotools' mask.area /
 *     toBbox / decode take the same (they also refuse an uncompressed
 *     counts list: convert it with mask.frPyObjects);
 *   - h*w at most 4294967295 (2^32-1): COCO counts are 32-bit; size [0,0]
 *     or [0,w] with counts "" is the empty mask, as in pycocotools;
 *   - the runs must cover exactly h*w pixels.
 * Anything else (a number, a BLOB, empty text, malformed JSON, a bad counts
 * string, a size out of range, runs that do not add up) is an SQL error
 * "rle_fn: reason". rle_contains' x and y are integers (a REAL with an
 * integral value is taken as one); outside the mask gives 0.
 */
#ifndef SAM2AMG_SQLEXT_H
#define SAM2AMG_SQLEXT_H

#include <stddef.h>
#include <stdint.h>

typedef struct sqlite3 sqlite3;

/* sqlext_register: add the functions to db. Returns an SQLite result code. */
int sqlext_register(sqlite3 *db);

/* sqlext_rle_read: parse rle text (n bytes, the object form above) into h,
 * w and its counts string, unescaped, into cstr (cap bytes, NUL-terminated;
 * n + 1 is always enough). Returns 0, or -1 with *why (when why is non-NULL)
 * a constant one-line reason: not an object, bad JSON, a size out of range
 * (h, w and h*w at most 2^32-1). The counts string is not decoded here. */
int sqlext_rle_read(const char *text, size_t n, int64_t *h, int64_t *w, char *cstr, size_t cap,
                    const char **why);

/* sqlext_rle_parse: sqlext_rle_read without the reason. */
int sqlext_rle_parse(const char *text, size_t n, int64_t *h, int64_t *w, char *cstr,
                     size_t cap);

#endif
