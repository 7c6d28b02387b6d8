-- Named queries of recsys_db/features.py. Each starts with "-- name: features_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: features_of_model
-- The feature relations declared for a model (recsys.set_features).
SELECT kind, source_schema, source_table, key_column, feature_columns, regularization,
       text_columns, vector_column, vector_dims, embedding_model
  FROM recsys.model_feature WHERE model_id = %(model_id)s ORDER BY kind;

-- name: features_relation_keys
-- Every key of a feature relation.
SELECT DISTINCT {key}::text FROM {source} WHERE {key} IS NOT NULL;

-- name: features_column_kinds
-- Which feature columns are arrays (each element a token) or scalars.
SELECT a.attname, t.typcategory = 'A'
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = %(relation)s::regclass AND a.attnum > 0 AND NOT a.attisdropped;

-- name: features_scalar_tokens
-- One name=value token per key and scalar feature column (of the keys in %(only)s, if not null).
SELECT {key}::text, {label} || '=' || {column}::text
  FROM {source} WHERE {key} IS NOT NULL AND {column} IS NOT NULL
   AND (%(only)s::text[] IS NULL OR {key}::text = ANY (%(only)s::text[]))

-- name: features_array_tokens
-- One name=value token per key and element of an array feature column (keys as above).
SELECT {key}::text, {label} || '=' || token::text
  FROM {source}, unnest({column}) token WHERE {key} IS NOT NULL AND token IS NOT NULL
   AND (%(only)s::text[] IS NULL OR {key}::text = ANY (%(only)s::text[]))

-- name: features_texts
-- The text of each key: its text columns joined by newlines, rows of one key too; blank: none.
SELECT k, string_agg(t, E'\n' ORDER BY t COLLATE "C")
  FROM (SELECT {key}::text AS k, nullif(btrim(concat_ws(E'\n', {text})), '') AS t
          FROM {source} WHERE {key} IS NOT NULL
           AND (%(only)s::text[] IS NULL OR {key}::text = ANY (%(only)s::text[]))) r
 WHERE t IS NOT NULL
 GROUP BY k;

-- name: features_vectors
-- The vector of each key, as real[].
SELECT {key}::text, {column}::real[] FROM {source}
 WHERE {key} IS NOT NULL AND {column} IS NOT NULL
   AND (%(only)s::text[] IS NULL OR {key}::text = ANY (%(only)s::text[]));

-- name: features_keys
-- Keys and indices of a version's factor table.
SELECT key, idx FROM {table};

-- name: features_copy_items
-- Feature-mapped cold items into a version's item table.
COPY {table} (idx, key, factors, popularity, from_content) FROM STDIN;

-- name: features_copy_users
-- Feature-mapped cold users into a version's user table.
COPY {table} (idx, key, factors, seen, from_content) FROM STDIN;

-- name: features_copy_content
-- Items' content mapped into the factor space.
COPY recsys.item_content (model_id, version, idx, content) FROM STDIN;

-- name: features_store_map
-- A version's feature map of one kind.
INSERT INTO recsys.feature_map (model_id, version, kind, definition, tokens, text_dims, weights,
                                regularization, max_norm)
VALUES (%(model_id)s, %(version)s, %(kind)s, %(definition)s, %(tokens)s, %(text_dims)s,
        %(weights)s, %(regularization)s, %(max_norm)s);

-- name: features_read_map
-- A version's feature map of one kind.
SELECT definition, tokens, text_dims, weights, max_norm FROM recsys.feature_map
 WHERE model_id = %(model_id)s AND version = %(version)s AND kind = %(kind)s;

-- name: features_keys_without_content
-- Keys of a version's item table without mapped content (a fold-in added them from events).
SELECT i.key FROM {table} i
 WHERE NOT EXISTS (SELECT 1 FROM recsys.item_content c
                    WHERE c.model_id = %(model_id)s AND c.version = %(version)s
                      AND c.idx = i.idx);

-- name: features_next_idx
-- The next free index of a version's factor table.
SELECT coalesce(max(idx) + 1, 0) FROM {table};

-- name: features_stop_precomputed
-- Items added from content may enter any top-k: the version's precomputed rows stop standing
-- in for a search (like a fold-in's new items; cold items are not counted in its items).
UPDATE recsys.model_version
   SET precomputed_k = 0, similar_k = 0, content_items = content_items + %(added)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: features_count_content
-- How many of a new version's items a training mapped from content.
UPDATE recsys.model_version SET content_items = %(items)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: features_record
-- How many cold items and users a run mapped from features.
UPDATE recsys.run SET cold_items = %(items)s, cold_users = %(users)s WHERE id = %(run_id)s;
