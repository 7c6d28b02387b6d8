-- Named queries of recsys_db/precompute.py. Each starts with "-- name: precompute_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: precompute_set_served
-- recsys.recommend reads up to k rows per user from the version's partition, and
-- recsys.similar_items up to similar_k rows per item.
UPDATE recsys.model_version SET precomputed_k = %(k)s, similar_k = %(similar_k)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: precompute_create_partition
-- An empty partition for a version being built, created by recsys's owner
-- (sql/010-storage.sql); returns its name in schema recsys.
SELECT recsys._create_partition(%(parent)s, %(model_id)s, %(version)s);

-- name: precompute_copy_partition
-- Precomputed rows into the version's new partition, binary.
COPY {table} FROM STDIN (FORMAT BINARY);

-- name: precompute_attach_partition
-- Indexed, checked, analyzed and attached by recsys's owner.
SELECT recsys._attach_partition(%(parent)s, %(model_id)s, %(version)s);

-- name: precompute_drop_partitions
-- Drop precomputed partitions by name (recsys._drop_partitions).
SELECT recsys._drop_partitions(%(names)s::text[]);

-- name: precompute_stale_partitions
-- Precomputed partitions of versions no longer kept.
SELECT c.relname
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  LEFT JOIN recsys.model_version v
         ON v.model_id = substring(c.relname FROM '^m([0-9]+)_')::integer
        AND v.version = substring(c.relname FROM '^m[0-9]+_v([0-9]+)_')::integer
 WHERE i.inhparent IN ('recsys.recommendation'::regclass, 'recsys.similar_item'::regclass,
                       'recsys.ranked_recommendation'::regclass)
   AND (v.status IS NULL OR v.status IN ('dropped', 'failed'))
 ORDER BY c.relname;

-- name: precompute_refresh_users
-- After a fold-in: replace the precomputed rows of the users in recsys_stage_users with what a
-- live search returns now (recsys.recommend itself would read the rows being replaced), as many
-- as the version was trained with.
WITH changed AS (
    SELECT u.key FROM recsys_stage_users s JOIN {users} u ON u.idx = s.idx
), gone AS (
    DELETE FROM {partition} p USING changed c WHERE p.user_key = c.key
)
INSERT INTO {partition} (model_id, version, user_key, rank, item_key, score)
SELECT %(model_id)s, %(version)s, c.key, r.rank, r.item_key, r.score
  FROM changed c, recsys.model_version v,
       recsys._recommend_live(v, %(model)s, c.key, (v.params ->> 'recommendations_k')::integer,
                              true) r
 WHERE v.model_id = %(model_id)s AND v.version = %(version)s;

-- name: precompute_forget_ranked
-- After a fold-in: the ranked rows of the users in recsys_stage_users go (their history
-- changed); recsys.recommend serves them from their refreshed ALS rows.
DELETE FROM {partition} p
 USING recsys_stage_users s JOIN {users} u ON u.idx = s.idx
 WHERE p.user_key = u.key;

-- name: precompute_partition_exists
-- The partition's regclass, NULL when the version has none.
SELECT to_regclass(%(name)s);
