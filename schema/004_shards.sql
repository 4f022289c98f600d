-- 004_shards.sql: sharded runs (`sam2amg run --shard K/N`) and `sam2amg merge`.
--
-- A shard database holds the images of one shard K of N (images whose path
-- hashes to K, see jobs/shard.c) and says so in its one `shard` row. With
-- --local-dir the run works on a node-local copy and writes checkpoints to
-- the database path; checkpoint_seq counts them, so `merge` can tell a newer
-- checkpoint of a shard from an older one.
CREATE TABLE shard (
    id             INTEGER PRIMARY KEY CHECK (id = 1),   -- at most one row
    k              INTEGER NOT NULL,                     -- this shard, 0 <= k < n
    n              INTEGER NOT NULL,                     -- shards in the split
    checkpoint_seq INTEGER NOT NULL DEFAULT 0,           -- checkpoints written so far
    checkpoint_at  REAL,                                 -- time of the newest one
    CHECK (n >= 1 AND k >= 0 AND k < n)
);

-- In a merged database: each shard merged into it, and the state it was
-- merged at (a shard seen again with the same signature adds nothing; one
-- with a newer checkpoint replaces the images of the older one).
CREATE TABLE merged_shards (
    k              INTEGER NOT NULL,
    n              INTEGER NOT NULL,
    checkpoint_seq INTEGER NOT NULL,
    signature      TEXT NOT NULL,      -- seq, done, failed, masks, newest finish time
    source         TEXT NOT NULL,      -- the shard database's path as given to merge
    merged_at      REAL NOT NULL,
    images         INTEGER NOT NULL,   -- rows of the shard's images table
    images_done    INTEGER NOT NULL,
    images_failed  INTEGER NOT NULL,
    masks          INTEGER NOT NULL,
    PRIMARY KEY (k, n)
);

-- Provenance of runs: the shard a run worked on ("K/N", NULL when not
-- sharded), and for a run copied by `merge`, its id in the shard database.
ALTER TABLE runs ADD COLUMN shard TEXT;
ALTER TABLE runs ADD COLUMN source_run INTEGER;
