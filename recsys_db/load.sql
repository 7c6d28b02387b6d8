-- Named queries of recsys_db/load.py. Each starts with "-- name: load_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: load_work_mem
-- work_mem of the load transaction.
SELECT set_config('work_mem', %(memory)s, true);

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
-- Refresh a materialized-view source; its readers wait until it is done.
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

-- name: load_server_encoding
-- Text crosses the connection in the server's encoding for the rest of the load transaction:
-- keys are mapped by their bytes, which must sort as the server's COLLATE "C" does.
SELECT set_config('client_encoding', current_setting('server_encoding'), true);

-- name: load_estimate_key_text
-- The planner's row estimate of the source and the width of its keys (how many chunks to read).
EXPLAIN (FORMAT JSON) SELECT {user_native}, {item_native} FROM {source} s;

-- name: load_copy_key_text
-- One row per call: rows read, rows with a NULL key or weight, then for the usable rows the
-- user keys and the item keys as text, each joined by zero bytes (text never holds one), or
-- as the 16 bytes of a uuid, one after the other, and
-- the weights as packed float8 (big-endian). A row with a NULL key or weight, or an unmapped
-- event (NULL weight), is left out of all three; the three aggregates of one query see the
-- rows in the same order.
COPY (SELECT count(*),
             count(*) FILTER (WHERE {user} IS NULL OR {item} IS NULL OR {raw_weight} IS NULL),
             string_agg({user_text}, {user_delimiter}::bytea) FILTER (WHERE {usable}),
             string_agg({item_text}, {item_delimiter}::bytea) FILTER (WHERE {usable}),
             string_agg(float8send({weight}), ''::bytea) FILTER (WHERE {usable})
        FROM {source} s
       WHERE {chunk})
  TO STDOUT (FORMAT BINARY);

-- name: load_create_text_map
-- {map} is recsys_user_map or recsys_item_map; `native` is derived from `key` by the server,
-- so only the keys' text is copied in.
CREATE TEMP TABLE {map} (
    idx integer NOT NULL, key text NOT NULL,
    native {native_type} GENERATED ALWAYS AS (key::{native_type}) STORED);

-- name: load_create_uuid_map
-- {map} is recsys_user_map or recsys_item_map, of uuid keys copied in as they are; {native_type}
-- is uuid.
CREATE TEMP TABLE {map} (
    idx integer NOT NULL, key text GENERATED ALWAYS AS (native::text) STORED,
    native {native_type} NOT NULL);

-- name: load_copy_key_map
-- Keys and their indices into {map}: as text ({column} key) or as uuids ({column} native).
COPY {map} (idx, {column}) FROM STDIN (FORMAT BINARY);
