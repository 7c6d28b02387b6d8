-- Named queries used by the Python worker. Each starts with "-- name: <name>".
-- Placeholders in braces are identifiers composed with psycopg.sql, never user text.

-- name: model_by_name
SELECT id, name, source_schema, source_table, user_column, item_column, weight_column,
       event_column, event_weights, time_column, params, refresh_every, active_version
  FROM recsys.model WHERE name = %(name)s;

-- name: source_kind
SELECT c.relkind,
       c.relispopulated,
       EXISTS (SELECT 1 FROM pg_index i
                WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL
                  AND i.indexprs IS NULL) AS has_unique_index
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s;

-- name: source_columns
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped;

-- name: source_key_types
-- Each key column's declared type and, through any domains, the base type it stores.
WITH RECURSIVE key_column AS (
    SELECT a.attname, a.atttypid, a.atttypmod
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0
       AND NOT a.attisdropped AND a.attname = ANY (%(columns)s::text[])
), base (attname, type_oid, depth) AS (
    SELECT attname, atttypid, 0 FROM key_column
    UNION ALL
    SELECT b.attname, t.typbasetype, b.depth + 1
      FROM base b JOIN pg_type t ON t.oid = b.type_oid
     WHERE t.typtype = 'd'
)
SELECT DISTINCT ON (k.attname) k.attname, format_type(k.atttypid, k.atttypmod),
       t.typname::text, format_type(b.type_oid, NULL)
  FROM key_column k JOIN base b USING (attname) JOIN pg_type t ON t.oid = b.type_oid
 ORDER BY k.attname, b.depth DESC;

-- name: refresh_matview
REFRESH MATERIALIZED VIEW {source};

-- name: refresh_matview_concurrently
REFRESH MATERIALIZED VIEW CONCURRENTLY {source};

-- name: count_rows
SELECT count(*),
       count(*) FILTER (WHERE {user} IS NULL OR {item} IS NULL OR {raw_weight} IS NULL),
       count(*) FILTER (WHERE {user} IS NOT NULL AND {item} IS NOT NULL
                          AND {raw_weight} IS NOT NULL AND NOT ({event_ok}))
  FROM {source} s;

-- name: analyze_maps
-- Statistics for the joins of the maps on `key` and `idx` that follow (evaluation, store):
-- without them the planner guesses 200 distinct keys and merge-joins the source, twice as
-- slow (measured). Every key is distinct, so a small sample says as much as the default one,
-- at a tenth of the cost; a unique index on `key` cost more than reading 1M rows (measured).
SET LOCAL default_statistics_target = 10;
ANALYZE recsys_user_map;
ANALYZE recsys_item_map;

-- name: drop_maps
DROP TABLE IF EXISTS recsys_user_map, recsys_item_map;

-- name: start_run
INSERT INTO recsys.run (model_id, kind, worker, params)
VALUES (%(model_id)s, %(kind)s, %(worker)s, %(params)s)
RETURNING id;

-- name: finish_run
UPDATE recsys.run
   SET status = %(status)s, finished_at = clock_timestamp(), version = %(version)s,
       rows_read = %(rows_read)s, rows_skipped_null = %(rows_skipped_null)s,
       rows_skipped_event = %(rows_skipped_event)s, users = %(users)s, items = %(items)s,
       nnz = %(nnz)s, stages = %(stages)s, error = %(error)s
 WHERE id = %(run_id)s;

-- name: next_version
INSERT INTO recsys.model_version (model_id, version, run_id, factors, user_table, item_table, params)
SELECT %(model_id)s, v, %(run_id)s, %(factors)s,
       format('m%%s_v%%s_users', %(model_id)s, v), format('m%%s_v%%s_items', %(model_id)s, v),
       %(params)s
  FROM (SELECT coalesce(max(version), 0) + 1 AS v
          FROM recsys.model_version WHERE model_id = %(model_id)s) next
RETURNING version, user_table, item_table;

-- name: create_stage_tables
CREATE TEMP TABLE recsys_stage_users (idx integer, factors vector({dims}), seen integer[]);
CREATE TEMP TABLE recsys_stage_items (idx integer, factors vector({dims}), popularity integer);

-- name: copy_stage_users
COPY recsys_stage_users (idx, factors, seen) FROM STDIN (FORMAT BINARY);

-- name: copy_stage_items
COPY recsys_stage_items (idx, factors, popularity) FROM STDIN (FORMAT BINARY);

-- name: create_user_table
CREATE TABLE {table} AS
SELECT m.idx, m.key, s.factors, s.seen
  FROM recsys_user_map m JOIN recsys_stage_users s ON s.idx = m.idx
 ORDER BY m.idx;
ALTER TABLE {table} ALTER idx SET NOT NULL, ALTER key SET NOT NULL,
                    ALTER factors SET NOT NULL, ALTER seen SET NOT NULL,
                    ADD PRIMARY KEY (idx), ADD UNIQUE (key);
ANALYZE {table};

-- name: create_item_table
CREATE TABLE {table} AS
SELECT m.idx, m.key, s.factors, s.popularity
  FROM recsys_item_map m JOIN recsys_stage_items s ON s.idx = m.idx
 ORDER BY m.idx;
ALTER TABLE {table} ALTER idx SET NOT NULL, ALTER key SET NOT NULL,
                    ALTER factors SET NOT NULL, ALTER popularity SET NOT NULL,
                    ADD PRIMARY KEY (idx), ADD UNIQUE (key);
ANALYZE {table};

-- name: drop_stage_tables
DROP TABLE IF EXISTS recsys_stage_users, recsys_stage_items;

-- name: lock_model
SELECT active_version FROM recsys.model WHERE id = %(model_id)s FOR UPDATE;

-- name: mark_version
UPDATE recsys.model_version
   SET status = %(status)s, users = %(users)s, items = %(items)s, nnz = %(nnz)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: activate_version
UPDATE recsys.model SET active_version = %(version)s, updated_at = now() WHERE id = %(model_id)s;

-- name: expired_versions
-- Versions beyond retention whose retirement is older than every open transaction of this
-- database (one that started before could still see them as active); the rest wait.
SELECT version, user_table, item_table FROM (
    SELECT version, user_table, item_table, retired_at FROM recsys.model_version
     WHERE model_id = %(model_id)s AND status = 'ready' AND version <> %(active)s
     ORDER BY version DESC OFFSET %(keep)s - 1) beyond
 WHERE retired_at IS NULL
    OR retired_at < (SELECT coalesce(min(xact_start), 'infinity') FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid());

-- name: drop_lock_timeout
SET LOCAL lock_timeout = '200ms';

-- name: drop_version_tables
DROP TABLE IF EXISTS {user_table}, {item_table};

-- name: mark_dropped
UPDATE recsys.model_version SET status = 'dropped'
 WHERE model_id = %(model_id)s AND version = %(version)s;
