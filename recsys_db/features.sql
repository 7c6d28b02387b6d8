-- Named queries of recsys_db/features.py. Each starts with "-- name: features_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: features_of_model
-- The feature relations declared for a model (recsys.set_features).
SELECT kind, source_schema, source_table, key_column, feature_columns, regularization
  FROM recsys.model_feature WHERE model_id = %(model_id)s ORDER BY kind;

-- name: features_column_kinds
-- Which feature columns are arrays (each element a token) or scalars.
SELECT a.attname, t.typcategory = 'A'
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = %(relation)s::regclass AND a.attnum > 0 AND NOT a.attisdropped;

-- name: features_scalar_tokens
-- One name=value token per key and scalar feature column.
SELECT {key}::text, {label} || '=' || {column}::text
  FROM {source} WHERE {key} IS NOT NULL AND {column} IS NOT NULL

-- name: features_array_tokens
-- One name=value token per key and element of an array feature column.
SELECT {key}::text, {label} || '=' || token::text
  FROM {source}, unnest({column}) token WHERE {key} IS NOT NULL AND token IS NOT NULL

-- name: features_keys
-- Keys and indices of a version's factor table.
SELECT key, idx FROM {table};

-- name: features_copy_items
-- Feature-mapped cold items into a version's item table.
COPY {table} (idx, key, factors, popularity) FROM STDIN;

-- name: features_copy_users
-- Feature-mapped cold users into a version's user table.
COPY {table} (idx, key, factors, seen) FROM STDIN;

-- name: features_record
-- How many cold items and users a run mapped from features.
UPDATE recsys.run SET cold_items = %(items)s, cold_users = %(users)s WHERE id = %(run_id)s;
