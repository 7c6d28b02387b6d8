-- Named queries for writing and indexing a version's factor tables (recsys_db/store.py).
-- The worker creates, seals, indexes and drops them only through recsys's storage functions
-- (sql/010-storage.sql), which name them from the model id and version; it fills them.

-- name: store_create_stage_tables
-- {vector} is pgvector's type named with its schema (the worker's session may be pinned).
CREATE TEMP TABLE recsys_stage_users (idx integer, factors {vector}({dims}), seen integer[]);
CREATE TEMP TABLE recsys_stage_items (idx integer, factors {vector}({dims}), popularity integer);

-- name: store_create_version_tables
SELECT recsys._create_version_tables(%(model_id)s, %(version)s);

-- name: store_fill_user_table
INSERT INTO {table} (idx, key, factors, seen)
SELECT m.idx, m.key, s.factors, s.seen
  FROM recsys_user_map m JOIN recsys_stage_users s ON s.idx = m.idx
 ORDER BY m.idx;

-- name: store_fill_item_table
INSERT INTO {table} (idx, key, factors, popularity)
SELECT m.idx, m.key, s.factors, s.popularity
  FROM recsys_item_map m JOIN recsys_stage_items s ON s.idx = m.idx
 ORDER BY m.idx;

-- name: store_seal_version_tables
-- primary key on idx, unique key, statistics
SELECT recsys._seal_version_tables(%(model_id)s, %(version)s);

-- name: store_drop_version_tables
-- never the active version's; waits for locks as long as the caller's lock_timeout allows
SELECT recsys._drop_version_tables(%(model_id)s, %(version)s);

-- name: perf_set_index
UPDATE recsys.model_version
   SET index_kind = %(kind)s, index_ef_search = %(ef_search)s,
       index_recall = %(recall)s, index_ef_by_k = %(ef_by_k)s,
       index_recall_by_k = %(recall_by_k)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: perf_set_precomputed
-- recsys.recommend reads up to k rows per user from the version's partition, and
-- recsys.similar_items up to similar_k rows per item.
UPDATE recsys.model_version SET precomputed_k = %(k)s, similar_k = %(similar_k)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: perf_build_memory
SELECT set_config('maintenance_work_mem', %(memory)s, true);

-- name: perf_load_memory
SELECT set_config('work_mem', %(memory)s, true);

-- name: perf_create_hnsw
-- Inner product over the factors column itself, the ORDER BY of recsys._top_items; built by
-- recsys's owner (sql/010-storage.sql) on the item table of a version still being built.
SELECT recsys._create_hnsw(%(model_id)s, %(version)s, %(m)s, %(ef_construction)s);

-- name: perf_drop_index
SELECT recsys._drop_hnsw(%(model_id)s, %(version)s);

-- name: perf_top_items
SELECT t.idx
  FROM recsys.model_version v, {users} u,
       LATERAL recsys._top_items(v, u.factors, u.seen, %(k)s) t
 WHERE v.model_id = %(model_id)s AND v.version = %(version)s AND u.idx = %(user)s;

-- The key maps themselves are made by source.load (queries.sql: declarer_*_key_map).

-- name: perf_copy_interactions
-- One row of three arrays, not one row per interaction: reading a COPY row costs the client far
-- more than the server's join (4 s against 0.3 s per million rows, measured).
COPY (SELECT array_agg(u.idx), array_agg(i.idx), array_agg(({weight})::double precision)
        FROM {source} s
        JOIN recsys_user_map u ON u.native = {user_native}
        JOIN recsys_item_map i ON i.native = {item_native}
       WHERE {raw_weight} IS NOT NULL AND {event_ok} AND u.idx BETWEEN %(first)s AND %(last)s)
  TO STDOUT (FORMAT BINARY);

-- Integer keys are mapped by the client instead, from one pass over the source (source.py).

-- name: perf_estimate_rows
EXPLAIN (FORMAT JSON) SELECT FROM {source} s;

-- name: perf_copy_key_records
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

-- name: perf_create_int_maps
-- `key` is derived from `native` by the server, so only integers are copied in.
CREATE TEMP TABLE recsys_user_map (
    idx integer NOT NULL, key text GENERATED ALWAYS AS (native::text) STORED,
    native {user_type} NOT NULL);
CREATE TEMP TABLE recsys_item_map (
    idx integer NOT NULL, key text GENERATED ALWAYS AS (native::text) STORED,
    native {item_type} NOT NULL);

-- name: perf_copy_user_map
COPY recsys_user_map (idx, native) FROM STDIN (FORMAT BINARY);

-- name: perf_copy_item_map
COPY recsys_item_map (idx, native) FROM STDIN (FORMAT BINARY);
