-- Named queries of recsys_db/index.py. Each starts with "-- name: index_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: index_set_choice
-- Record how the version's items are searched (exact or hnsw, ef_search and head by k).
UPDATE recsys.model_version
   SET index_kind = %(kind)s, index_ef_search = %(ef_search)s,
       index_recall = %(recall)s, index_ef_by_k = %(ef_by_k)s,
       index_recall_by_k = %(recall_by_k)s, index_head_by_k = %(head_by_k)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: index_build_memory
-- maintenance_work_mem for the hnsw build, in this transaction.
SELECT set_config('maintenance_work_mem', %(memory)s, true);

-- name: index_create_hnsw
-- Inner product over the factors column itself, the ORDER BY of recsys._top_items; built by
-- recsys's owner (sql/010-storage.sql) on the item table of a version still being built.
SELECT recsys._create_hnsw(%(model_id)s, %(version)s, %(m)s, %(ef_construction)s);

-- name: index_drop_hnsw
-- Drop the version's hnsw index (recsys does, as its owner).
SELECT recsys._drop_hnsw(%(model_id)s, %(version)s);

-- name: index_top_items
-- A user's top-k items through recsys._top_items, as served.
SELECT t.idx
  FROM recsys.model_version v, {users} u,
       LATERAL recsys._top_items(v, u.factors, u.seen, %(k)s) t
 WHERE v.model_id = %(model_id)s AND v.version = %(version)s AND u.idx = %(user)s;

-- name: index_precomputed_k
-- How many rows per user the version precomputes (0: every recommend searches live).
SELECT (params ->> 'recommendations_k')::integer
  FROM recsys.model_version WHERE model_id = %(model_id)s AND version = %(version)s;
