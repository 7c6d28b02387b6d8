-- Queries of cold start from features (recsys_db/features.py).

-- name: features_of_model
SELECT kind, source_schema, source_table, key_column, feature_columns, regularization
  FROM recsys.model_feature WHERE model_id = %(model_id)s ORDER BY kind;

-- name: features_column_kinds
SELECT a.attname, t.typcategory = 'A'
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = %(relation)s::regclass AND a.attnum > 0 AND NOT a.attisdropped;

-- name: features_scalar_tokens
SELECT {key}::text, {label} || '=' || {column}::text
  FROM {source} WHERE {key} IS NOT NULL AND {column} IS NOT NULL

-- name: features_array_tokens
SELECT {key}::text, {label} || '=' || token::text
  FROM {source}, unnest({column}) token WHERE {key} IS NOT NULL AND token IS NOT NULL

-- name: features_keys
SELECT key, idx FROM {table};

-- name: features_copy_items
COPY {table} (idx, key, factors, popularity) FROM STDIN;

-- name: features_copy_users
COPY {table} (idx, key, factors, seen) FROM STDIN;

-- name: features_record
UPDATE recsys.run SET cold_items = %(items)s, cold_users = %(users)s WHERE id = %(run_id)s;
