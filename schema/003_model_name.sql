-- 003_model_name.sql: runs.model_name, the --model argument as given.
--
-- --model takes a path, a Hugging Face repo id (facebook/sam2.1-hiera-large)
-- or a checkpoint name (sam2.1_hiera_large), resolved offline (README,
-- "Models by name"). runs.model_path holds the file that name resolved to
-- and model_sha256 its hash; model_name keeps what the user typed. NULL for
-- runs recorded before this migration.
ALTER TABLE runs ADD COLUMN model_name TEXT;
