-- Named queries of recsys_db/load.py. Each starts with "-- name: load_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: load_work_mem
-- work_mem of the load transaction.
SELECT set_config('work_mem', %(memory)s, true);

-- name: load_copy_interactions
-- One row of three arrays, not one row per interaction: reading a COPY row costs the client far
-- more than the server's join (4 s against 0.3 s per million rows, measured).
COPY (SELECT array_agg(u.idx), array_agg(i.idx), array_agg(({weight})::double precision)
        FROM {source} s
        JOIN recsys_user_map u ON u.native = {user_native}
        JOIN recsys_item_map i ON i.native = {item_native}
       WHERE {raw_weight} IS NOT NULL AND {event_ok} AND u.idx BETWEEN %(first)s AND %(last)s)
  TO STDOUT (FORMAT BINARY);

-- name: load_estimate_rows
-- The planner's row estimate of the source (how many chunks to read).
EXPLAIN (FORMAT JSON) SELECT FROM {source} s;

-- name: load_copy_key_records
-- One row per call: rows read, rows with a NULL key or weight, and every usable row as a
-- fixed-width binary record (user key, item key, float8 weight, big-endian) packed into one
-- bytea, which numpy reads without a loop. A row with a NULL key or weight, or an unmapped
-- event (NULL weight), has a NULL record, which string_agg skips. string_agg of send
-- functions costs the server less than array_agg, whose binary output sends each element
-- through its type's send function (measured).
COPY (SELECT count(*),
             count(*) FILTER (WHERE {user} IS NULL OR {item} IS NULL OR {raw_weight} IS NULL),
             string_agg({user_bytes} || {item_bytes} || float8send({weight}), ''::bytea)
        FROM {source} s
       WHERE {chunk})
  TO STDOUT (FORMAT BINARY);

-- name: load_create_int_maps
-- `key` is derived from `native` by the server, so only integers are copied in.
CREATE TEMP TABLE recsys_user_map (
    idx integer NOT NULL, key text GENERATED ALWAYS AS (native::text) STORED,
    native {user_type} NOT NULL);
CREATE TEMP TABLE recsys_item_map (
    idx integer NOT NULL, key text GENERATED ALWAYS AS (native::text) STORED,
    native {item_type} NOT NULL);

-- name: load_copy_user_map
-- Integer user keys and their indices into the user map.
COPY recsys_user_map (idx, native) FROM STDIN (FORMAT BINARY);

-- name: load_copy_item_map
-- Integer item keys and their indices into the item map.
COPY recsys_item_map (idx, native) FROM STDIN (FORMAT BINARY);

-- name: load_user_keys
-- User keys in index order, as text.
SELECT key FROM recsys_user_map ORDER BY idx;

-- name: load_item_keys
-- Item keys in index order, as text.
SELECT key FROM recsys_item_map ORDER BY idx;

-- name: load_source_kind
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

-- name: load_create_key_map
-- {map} is recsys_user_map or recsys_item_map, {native_type} the type of that side's key.
CREATE TEMP TABLE {map} (idx integer, key text, native {native_type});

-- name: load_fill_key_map
-- {native} is that side's key expression.
INSERT INTO {map} (idx, key, native)
SELECT (row_number() OVER (ORDER BY native::text COLLATE "C") - 1)::integer, native::text, native
  FROM (SELECT DISTINCT {native} AS native FROM {source} s
         WHERE {user} IS NOT NULL AND {item} IS NOT NULL AND {raw_weight} IS NOT NULL
           AND {event_ok}) keys;

-- name: load_source_columns
-- The source's columns and their types.
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped;

-- name: load_key_types
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

-- name: load_refresh_matview
-- Refresh a materialized-view source.
REFRESH MATERIALIZED VIEW {source};

-- name: load_refresh_matview_concurrently
-- Refresh a populated materialized view with a unique index, without blocking readers.
REFRESH MATERIALIZED VIEW CONCURRENTLY {source};

-- name: load_count_rows
-- Rows read, rows with a NULL key or weight, rows with an unmapped event.
SELECT count(*),
       count(*) FILTER (WHERE {user} IS NULL OR {item} IS NULL OR {raw_weight} IS NULL),
       count(*) FILTER (WHERE {user} IS NOT NULL AND {item} IS NOT NULL
                          AND {raw_weight} IS NOT NULL AND NOT ({event_ok}))
  FROM {source} s;

-- name: load_analyze_maps
-- Statistics for the joins of the maps on `key` and `idx` that follow (evaluation, store):
-- without them the planner guesses 200 distinct keys and merge-joins the source, twice as
-- slow (measured). Every key is distinct, so a small sample says as much as the default one,
-- at a tenth of the cost; a unique index on `key` cost more than reading 1M rows (measured).
SET LOCAL default_statistics_target = 10;
ANALYZE recsys_user_map;
ANALYZE recsys_item_map;

-- name: load_drop_maps
-- The temp key maps of an earlier load on this session.
DROP TABLE IF EXISTS recsys_user_map, recsys_item_map;

-- name: load_repeatable_read
-- The load's transaction sees one snapshot: counts, key maps and rows agree.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;

-- name: load_map_sizes
-- Users and items in the temp key maps.
SELECT (SELECT count(*) FROM recsys_user_map), (SELECT count(*) FROM recsys_item_map);
