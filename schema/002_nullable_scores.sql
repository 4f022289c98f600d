-- 002_nullable_scores.sql: masks.predicted_iou and masks.stability_score may
-- be NULL.
--
-- NULL stores a score that is not a finite number. The official arithmetic
-- gives a stability score of 0/0 = NaN for a mask whose union at
-- mask_threshold - stability_score_offset is empty (e.g. a flat or tiny
-- image); such a record survives only with stability_score_thresh 0 (NaN is
-- never >= a threshold). SQLite stores a bound NaN as NULL, which version 1's
-- NOT NULL refused, failing the whole image. Readers get NaN back
-- (src/store.c); JSON output writes null.
--
-- SQLite cannot drop a NOT NULL constraint in place: the table is rebuilt
-- (the procedure of https://sqlite.org/lang_altertable.html#otheralter). Mask
-- ids are kept, so mask_boxes (R*Tree, id = masks.id) stays consistent. The
-- views that read masks are dropped first (a rename re-checks every view)
-- and re-created unchanged. masks has no triggers and no indexes besides
-- its UNIQUE(image_id, idx); no table references masks, so the rebuild does
-- not touch foreign keys of other tables. A user's own indexes and triggers
-- on masks, and views over it, are kept by src/store.c's migrate() (it
-- replays their CREATE statements and renames with legacy_alter_table on).

DROP VIEW IF EXISTS objects;
DROP VIEW IF EXISTS image_summary;
DROP VIEW IF EXISTS run_summary;

CREATE TABLE masks_v2 (
    id              INTEGER PRIMARY KEY,
    image_id        INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    run_id          INTEGER NOT NULL REFERENCES runs(id),
    idx             INTEGER NOT NULL,     -- position in the generator's output
    rle             TEXT NOT NULL,
    area            INTEGER NOT NULL,     -- pixels
    bbox_x          REAL NOT NULL,        -- x, y, w, h in pixels (SA-1B bbox)
    bbox_y          REAL NOT NULL,
    bbox_w          REAL NOT NULL,
    bbox_h          REAL NOT NULL,
    predicted_iou   REAL,                 -- NULL: not a finite number (NaN)
    stability_score REAL,                 -- NULL: not a finite number (0/0)
    point_x         REAL NOT NULL,        -- the prompt point, image pixels
    point_y         REAL NOT NULL,
    crop_x          REAL NOT NULL,        -- crop box the mask came from
    crop_y          REAL NOT NULL,
    crop_w          REAL NOT NULL,
    crop_h          REAL NOT NULL,
    UNIQUE (image_id, idx)                -- one set of masks per image
);
INSERT INTO masks_v2 (id, image_id, run_id, idx, rle, area, bbox_x, bbox_y, bbox_w, bbox_h,
                      predicted_iou, stability_score, point_x, point_y, crop_x, crop_y,
                      crop_w, crop_h)
SELECT id, image_id, run_id, idx, rle, area, bbox_x, bbox_y, bbox_w, bbox_h,
       predicted_iou, stability_score, point_x, point_y, crop_x, crop_y, crop_w, crop_h
FROM masks;
DROP TABLE masks;
ALTER TABLE masks_v2 RENAME TO masks;

-- the views of 001_init.sql, unchanged
CREATE VIEW objects AS
SELECT m.id AS mask_id, m.image_id, i.path, i.width, i.height, m.area,
       CAST(m.area AS REAL) / (i.width * i.height) AS area_fraction,
       m.bbox_x, m.bbox_y, m.bbox_w, m.bbox_h,
       m.predicted_iou, m.stability_score, m.rle
FROM masks m JOIN images i ON i.id = m.image_id;

CREATE VIEW image_summary AS
SELECT i.id AS image_id, i.path, i.status, i.width, i.height, i.error,
       count(m.id) AS masks,
       coalesce(sum(m.area >= 100), 0) AS masks_100px,
       coalesce(sum(m.area >= 1000), 0) AS masks_1000px,
       coalesce(sum(m.area >= 10000), 0) AS masks_10000px,
       avg(m.predicted_iou) AS mean_predicted_iou
FROM images i LEFT JOIN masks m ON m.image_id = i.id
GROUP BY i.id;

CREATE VIEW run_summary AS
SELECT r.id AS run_id, r.started_at, r.finished_at, r.exit_status, r.devices,
       (SELECT count(*) FROM images i WHERE i.run_id = r.id AND i.status = 'done') AS images_done,
       (SELECT count(*) FROM images i WHERE i.run_id = r.id AND i.status = 'failed') AS images_failed,
       (SELECT count(*) FROM masks m WHERE m.run_id = r.id) AS masks,
       coalesce(r.finished_at, (SELECT max(i.finished_at) FROM images i WHERE i.run_id = r.id))
           - r.started_at AS seconds
FROM runs r;
