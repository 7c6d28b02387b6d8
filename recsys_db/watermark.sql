-- Named queries of recsys_db/watermark.py. Each starts with "-- name: watermark_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: watermark_record
-- Remember up to which time a version has seen the source.
INSERT INTO recsys.watermark (model_id, version, value)
VALUES (%(model_id)s, %(version)s, %(value)s)
ON CONFLICT (model_id, version) DO UPDATE SET value = excluded.value;

-- name: watermark_max_time
-- The newest value of the source's time column, as text.
SELECT max({time})::text FROM {source} s;
