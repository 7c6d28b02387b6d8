-- Named queries used by the Python worker. Each starts with "-- name: <name>".
-- Placeholders in braces are identifiers composed with psycopg.sql, never user text.

-- name: model_by_name
-- declarer: the name of the role that declared the model; NULL when that role is gone
SELECT m.id, m.name, m.source_schema, m.source_table, m.user_column, m.item_column,
       m.weight_column, m.event_column, m.event_weights, m.time_column, m.params,
       m.refresh_every, m.active_version, r.rolname::text AS declarer
  FROM recsys.model m LEFT JOIN pg_catalog.pg_roles r ON r.oid = m.declarer::oid
 WHERE m.name = %(name)s;

-- name: source_kind
-- may_refresh: whether the declarer may refresh it, were it a materialized view (it must own
-- it or, from PostgreSQL 17 on, hold MAINTAIN on it)
SELECT c.relkind,
       c.relispopulated,
       EXISTS (SELECT 1 FROM pg_index i
                WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL
                  AND i.indexprs IS NULL) AS has_unique_index,
       coalesce((SELECT pg_has_role(r.oid, c.relowner, 'USAGE')
                        OR CASE WHEN current_setting('server_version_num')::integer >= 170000
                                THEN has_table_privilege(r.oid, c.oid, 'MAINTAIN')
                                ELSE false END
                   FROM pg_catalog.pg_roles r WHERE r.rolname = %(declarer)s), false)
           AS may_refresh
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s;

-- Reading a source as the role that declared its model (source.as_declarer).

-- name: check_source
-- No row when the relation does not exist; recsys._check_source raises unless the declarer
-- (NULL: unknown) may read the columns, and for catalogs, recsys's tables and temp tables.
SELECT recsys._check_source(
           c.oid::regclass,
           (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = %(declarer)s)::regrole,
           %(columns)s::text[])
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s;

-- name: declarer_session
-- The role this session runs as, its role setting (restored afterwards), the login, whether
-- the login and the declarer are superusers (NULL: no such declarer), and both names as SQL
-- writes them (for hints).
SELECT current_user::text, current_setting('role'), session_user::text,
       (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user),
       (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = %(declarer)s),
       quote_ident(session_user), quote_ident(%(declarer)s);

-- name: declarer_grant_temp
-- {table} is one of the worker's own temp tables, {privileges} a fixed list (source.py)
GRANT {privileges} ON TABLE pg_temp.{table} TO {role};

-- name: declarer_set_role
SET LOCAL ROLE {role};

-- name: declarer_current_role
SELECT current_user::text;

-- name: declarer_leave
-- The role the statements ended as (evaluated first), then the role the session had before,
-- set for the session: a source's function may have set one for the session too.
SELECT current_user::text, set_config('role', %(role)s, false);

-- Key maps for source.load when the keys are not both integers. `native` is the key in the
-- source's own type where its equality is text equality (integers, text, uuid), so the big
-- join of perf_copy_interactions hashes integers, not strings; otherwise it is the text key.
-- Indices follow the byte order of the key's text (COLLATE "C"), whatever the database's
-- collation: the order of equal scores (sql/003-serving.sql). The worker creates each map (it
-- stays its owner), the declarer fills it from the source.

-- name: declarer_create_key_map
-- {map} is recsys_user_map or recsys_item_map, {native_type} the type of that side's key.
CREATE TEMP TABLE {map} (idx integer, key text, native {native_type});

-- name: declarer_fill_key_map
-- {native} is that side's key expression.
INSERT INTO {map} (idx, key, native)
SELECT (row_number() OVER (ORDER BY native::text COLLATE "C") - 1)::integer, native::text, native
  FROM (SELECT DISTINCT {native} AS native FROM {source} s
         WHERE {user} IS NOT NULL AND {item} IS NOT NULL AND {raw_weight} IS NOT NULL
           AND {event_ok}) keys;

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

-- name: copy_stage_users
COPY recsys_stage_users (idx, factors, seen) FROM STDIN (FORMAT BINARY);

-- name: copy_stage_items
COPY recsys_stage_items (idx, factors, popularity) FROM STDIN (FORMAT BINARY);

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

-- name: mark_dropped
WITH weights AS (
    DELETE FROM recsys.version_item_weight
     WHERE model_id = %(model_id)s AND version = %(version)s
)
UPDATE recsys.model_version SET status = 'dropped'
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: copy_item_weight
-- One row: the version's summed raw weight per item index (recsys._version_stats, bm25).
COPY recsys.version_item_weight (model_id, version, item_weight) FROM STDIN (FORMAT BINARY);
