-- 005_stages.sql: where each image's generator time went, and which worker
-- ran it (`sam2amg status`, `run -v`). Rows finished before this migration
-- keep NULL here; status reports over the rows that have them.
--
-- Seconds per image, summed over the out-of-memory retries of that image
-- (jobs/engine.c). With a CUDA worker each stage ends at a point where its
-- device work is done (the encoder's end is a backend sync; the decoder and
-- the post-processing end in downloads), so the times include the device.
ALTER TABLE images ADD COLUMN t_encode REAL;   -- image encoder (with the crops' preprocessing)
ALTER TABLE images ADD COLUMN t_decode REAL;   -- mask decoder calls
ALTER TABLE images ADD COLUMN t_post   REAL;   -- the rest of the generator: filters, NMS, RLE
-- the worker waiting on the writer before this image (its start committed,
-- which waits for what was queued before it: the previous results' rows)
ALTER TABLE images ADD COLUMN t_write  REAL;
-- the worker that generated it: its 0-based index in runs.devices
ALTER TABLE images ADD COLUMN worker   INTEGER;
