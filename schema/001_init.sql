-- 001_init.sql: the sam2amg job database, version 1.
--
-- The only place table shapes live: src/store.c embeds the numbered files of
-- schema/ and applies each one newer than PRAGMA user_version in one
-- transaction. Table and column names are a public interface (README):
-- users write their own SQL against them. Times are Unix seconds (REAL).

-- One row per `sam2amg run` invocation. A database is bound to one model and
-- one parameter set (the first run's): a later run with other ones is
-- refused, so the masks of a database are always comparable.
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    params          TEXT NOT NULL,      -- AMG parameters, JSON, official names
    model_path      TEXT NOT NULL,      -- weights file as given
    model_sha256    TEXT NOT NULL,      -- hex SHA-256 of the weights file
    config          TEXT NOT NULL,      -- model config name or file
    program_version TEXT NOT NULL,      -- sam2amg version that ran it
    devices         TEXT NOT NULL,      -- e.g. "cpu" or "cuda:0,cuda:1"
    started_at      REAL NOT NULL,
    finished_at     REAL,               -- NULL while running or after kill -9
    exit_status     INTEGER             -- the process exit status (README)
);

-- One row per image path. A path is unique in the whole database (not per
-- run): each image is processed exactly once, whatever run finishes it.
-- path is the file name as UTF-8 text, with two escapes so that any byte
-- string is stored and two names never collide: a byte that is not part of
-- valid UTF-8 is written \xHH, and a backslash is written \\. Names without
-- backslashes or invalid bytes (nearly all) are stored unchanged.
CREATE TABLE images (
    id            INTEGER PRIMARY KEY,
    path          TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,   -- times processing started or failed
    error         TEXT,                         -- last error (failed or retried)
    lease_owner   TEXT,                         -- "host:pid:worker" while running
    lease_expires REAL,                         -- lease end while running
    run_id        INTEGER REFERENCES runs(id),  -- run that finished it
    width         INTEGER,                      -- pixels, once decoded
    height        INTEGER,
    added_at      REAL NOT NULL,
    finished_at   REAL,
    t_load        REAL,                         -- seconds decoding the file
    t_generate    REAL                          -- seconds in the generator
);
CREATE INDEX images_status ON images(status, id);
CREATE INDEX images_run ON images(run_id);

-- One row per output mask, the fields of an SA-1B annotation.
-- rle is the COCO RLE object as JSON: {"size":[h,w],"counts":"..."}.
CREATE TABLE masks (
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
    predicted_iou   REAL NOT NULL,
    stability_score REAL NOT NULL,
    point_x         REAL NOT NULL,        -- the prompt point, image pixels
    point_y         REAL NOT NULL,
    crop_x          REAL NOT NULL,        -- crop box the mask came from
    crop_y          REAL NOT NULL,
    crop_w          REAL NOT NULL,
    crop_h          REAL NOT NULL,
    UNIQUE (image_id, idx)                -- one set of masks per image
);

-- Spatial index on mask boxes (x0 <= x <= x1, y0 <= y <= y1); id = masks.id.
CREATE VIRTUAL TABLE mask_boxes USING rtree(id, x0, x1, y0, y1);

-- Every mask with its image: the table to count objects in.
CREATE VIEW objects AS
SELECT m.id AS mask_id, m.image_id, i.path, i.width, i.height, m.area,
       CAST(m.area AS REAL) / (i.width * i.height) AS area_fraction,
       m.bbox_x, m.bbox_y, m.bbox_w, m.bbox_h,
       m.predicted_iou, m.stability_score, m.rle
FROM masks m JOIN images i ON i.id = m.image_id;

-- Per image: status and how many objects, in total and above common sizes.
CREATE VIEW image_summary AS
SELECT i.id AS image_id, i.path, i.status, i.width, i.height, i.error,
       count(m.id) AS masks,
       coalesce(sum(m.area >= 100), 0) AS masks_100px,
       coalesce(sum(m.area >= 1000), 0) AS masks_1000px,
       coalesce(sum(m.area >= 10000), 0) AS masks_10000px,
       avg(m.predicted_iou) AS mean_predicted_iou
FROM images i LEFT JOIN masks m ON m.image_id = i.id
GROUP BY i.id;

-- Per run: what it finished and how fast.
CREATE VIEW run_summary AS
SELECT r.id AS run_id, r.started_at, r.finished_at, r.exit_status, r.devices,
       (SELECT count(*) FROM images i WHERE i.run_id = r.id AND i.status = 'done') AS images_done,
       (SELECT count(*) FROM images i WHERE i.run_id = r.id AND i.status = 'failed') AS images_failed,
       (SELECT count(*) FROM masks m WHERE m.run_id = r.id) AS masks,
       coalesce(r.finished_at, (SELECT max(i.finished_at) FROM images i WHERE i.run_id = r.id))
           - r.started_at AS seconds
FROM runs r;
