-- Named queries of recsys_db/ranker.py. Each starts with "-- name: ranker_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: ranker_declared
-- A model's ranker declaration, its label window also in seconds.
SELECT r.*, r.label_window::text AS label_window_text,
       extract(epoch FROM r.label_window)::double precision AS window_seconds
  FROM recsys.ranker r WHERE r.model_id = %(model_id)s;

-- name: ranker_column_kinds
-- The type category of feature columns (through domains): N numeric, B boolean, S string,
-- E enum, anything else refused.
SELECT a.attname, t.typcategory
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid = recsys._base_type(a.atttypid)
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0
   AND NOT a.attisdropped AND a.attname = ANY (%(columns)s::text[]);

-- name: ranker_relation_exists
-- Whether a declared feature relation still exists.
SELECT recsys._relation(%(schema)s, %(table)s) IS NOT NULL;

-- name: ranker_side_rows
-- One row per key of a feature relation (the first by its values when a key has several).
SELECT DISTINCT ON (1) {key}::text, {columns}
  FROM {relation}
 WHERE {key} IS NOT NULL
 ORDER BY {order};

-- name: ranker_insert_version
-- What a training made of a version's ranker.
INSERT INTO recsys.ranker_version (model_id, version, run_id, status, reason, booster,
                                   features, gain, splits, ranked_k, train_pairs,
                                   train_positives, definition, seconds)
VALUES (%(model_id)s, %(version)s, %(run_id)s, %(status)s, %(reason)s, %(booster)s,
        %(features)s, %(gain)s, %(splits)s, %(ranked_k)s, %(train_pairs)s,
        %(train_positives)s, %(definition)s, %(seconds)s);

-- name: ranker_set_ranked_k
-- How many ranked rows per user recsys.recommend serves from the version (0: none).
UPDATE recsys.model_version SET ranked_k = %(ranked_k)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: ranker_cold_items
-- The version's items mapped from features at training (cold start: indices after the
-- loaded items), with their factors.
SELECT idx, key, factors FROM {table} WHERE idx >= %(items)s ORDER BY idx;
