-- Named queries for indexing a version's factor tables (recsys_db/store.py).

-- name: perf_set_index
UPDATE recsys.model_version
   SET index_kind = %(kind)s, index_ef_search = %(ef_search)s,
       index_recall = %(recall)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: perf_build_memory
SELECT set_config('maintenance_work_mem', %(memory)s, true);

-- name: perf_create_hnsw
-- Inner product over the factors column itself, the ORDER BY of recsys._top_items.
CREATE INDEX {index} ON {table} USING hnsw (factors vector_ip_ops);

-- name: perf_drop_index
DROP INDEX {index};

-- name: perf_top_items
SELECT t.idx
  FROM recsys.model_version v, {users} u,
       LATERAL recsys._top_items(v, u.factors, u.seen, %(k)s) t
 WHERE v.model_id = %(model_id)s AND v.version = %(version)s AND u.idx = %(user)s;
