-- Named queries of recsys_db/foldin.py. Each starts with "-- name: foldin_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: foldin_watermark
-- The newest time the version has taken into account.
SELECT value FROM recsys.watermark WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: foldin_drop_temp
-- The fold-in's temp tables from an earlier fold-in on this session.
DROP TABLE IF EXISTS recsys_foldin_keys, recsys_foldin_pairs, recsys_foldin_item_keys,
                     recsys_foldin_users, recsys_foldin_items;

-- name: foldin_create_keys
-- Temp table of the changed users' keys.
CREATE TEMP TABLE recsys_foldin_keys (key text PRIMARY KEY);
CREATE TEMP TABLE recsys_foldin_item_keys (key text);

-- name: foldin_keys_since
-- Users with rows newer than the watermark.
INSERT INTO recsys_foldin_keys (key)
SELECT DISTINCT {user}::text FROM {source} s
 WHERE {user} IS NOT NULL AND {item} IS NOT NULL AND {raw_weight} IS NOT NULL AND {event_ok}
   AND {time} > %(watermark)s;

-- name: foldin_create_pairs
-- Temp table of the source's (user, item) pairs.
CREATE TEMP TABLE recsys_foldin_pairs (user_key text, item_key text);

-- name: foldin_copy_pairs
-- The source's distinct (user, item) pairs, as text keys.
INSERT INTO recsys_foldin_pairs (user_key, item_key)
SELECT DISTINCT {user}::text, {item}::text FROM {source} s
 WHERE {user} IS NOT NULL AND {item} IS NOT NULL AND {raw_weight} IS NOT NULL AND {event_ok};

-- name: foldin_keys_changed
-- Users whose set of items differs from the items the version has seen.
INSERT INTO recsys_foldin_keys (key)
WITH src AS (
    SELECT user_key, item_key FROM recsys_foldin_pairs
), stored AS (
    SELECT u.key AS user_key, i.key AS item_key
      FROM {users} u CROSS JOIN LATERAL unnest(u.seen) AS seen (idx)
      JOIN {items} i ON i.idx = seen.idx
)
SELECT user_key FROM (SELECT * FROM src EXCEPT SELECT * FROM stored) added
UNION
SELECT user_key FROM (SELECT * FROM stored EXCEPT SELECT * FROM src) removed
 WHERE user_key IN (SELECT user_key FROM src);

-- name: foldin_map_keys
-- Indices of the keys in {keys} (users or items): their own in the version's {factors} table,
-- new keys appended after the largest.
CREATE TEMP TABLE {map} AS
SELECT k.key,
       coalesce(f.idx, (SELECT coalesce(max(idx), -1) FROM {factors})
                       + row_number() OVER (PARTITION BY f.idx IS NULL ORDER BY k.key))::integer
           AS idx,
       f.idx IS NULL AS is_new
  FROM {keys} k LEFT JOIN {factors} f ON f.key = k.key;
CREATE UNIQUE INDEX ON {map} (key) INCLUDE (idx);
ANALYZE {map};

-- name: foldin_item_keys
-- Keys of the items the changed users have.
INSERT INTO recsys_foldin_item_keys (key)
SELECT DISTINCT {item}::text FROM {source} s
  JOIN recsys_foldin_users k ON k.key = {user}::text
 WHERE {item} IS NOT NULL AND {raw_weight} IS NOT NULL AND {event_ok};

-- name: foldin_copy_events
-- The changed users' full history as (user idx, item idx, weight), binary.
COPY (SELECT k.idx, i.idx, ({weight})::double precision
        FROM {source} s
        JOIN recsys_foldin_users k ON k.key = {user}::text
        JOIN recsys_foldin_items i ON i.key = {item}::text
       WHERE {raw_weight} IS NOT NULL AND {event_ok})
  TO STDOUT (FORMAT BINARY);

-- name: foldin_changed_users
-- The changed users' indices, and whether each is new.
SELECT idx, is_new FROM recsys_foldin_users ORDER BY idx;

-- name: foldin_new_items
-- Indices of the items not in the version yet.
SELECT idx FROM recsys_foldin_items WHERE is_new ORDER BY idx;

-- name: foldin_size
-- Users and items of the version: counts and next free index (they must agree).
SELECT (SELECT count(*) FROM {users}), (SELECT coalesce(max(idx), -1) + 1 FROM {users}),
       (SELECT count(*) FROM {items}), (SELECT coalesce(max(idx), -1) + 1 FROM {items});

-- name: foldin_copy_factors
-- All vectors of a factor table in index order, binary.
COPY (SELECT idx, factors FROM {table} ORDER BY idx) TO STDOUT (FORMAT BINARY);

-- name: foldin_insert_items
-- New items into the version's item table.
INSERT INTO {items} (idx, key, factors, popularity)
SELECT s.idx, m.key, s.factors, 0
  FROM recsys_stage_items s JOIN recsys_foldin_items m ON m.idx = s.idx AND m.is_new;

-- name: foldin_popularity
-- Item popularity raised by the changed users' newly seen items.
UPDATE {items} i SET popularity = i.popularity + d.delta
  FROM (SELECT item, sum(change)::integer AS delta
          FROM (SELECT unnest(u.seen) AS item, -1 AS change
                  FROM {users} u JOIN recsys_stage_users s ON s.idx = u.idx
                UNION ALL
                SELECT unnest(s.seen), 1 FROM recsys_stage_users s) changes
         GROUP BY item HAVING sum(change) <> 0) d
 WHERE i.idx = d.item;

-- name: foldin_version_counts
-- The version's user, item and interaction counts after the fold-in.
UPDATE recsys.model_version v
   SET users = v.users + %(new_users)s, items = v.items + %(new_items)s,
       -- new items may enter any user's top-k: precomputed rows stop standing in for a search
       precomputed_k = CASE WHEN %(new_items)s > 0 THEN 0 ELSE v.precomputed_k END,
       similar_k = CASE WHEN %(new_items)s > 0 THEN 0 ELSE v.similar_k END,
       nnz = v.nnz + (SELECT coalesce(sum(cardinality(s.seen)), 0) FROM recsys_stage_users s)
                   - (SELECT coalesce(sum(cardinality(u.seen)), 0)
                        FROM {users} u JOIN recsys_stage_users s ON s.idx = u.idx)
 WHERE v.model_id = %(model_id)s AND v.version = %(version)s;

-- name: foldin_extend_item_weight
-- The new items' summed weights appended to the version's item weights.
UPDATE recsys.version_item_weight
   SET item_weight = item_weight[1:%(old_items)s]
                     || array_fill(0::double precision,
                                   ARRAY[greatest(%(old_items)s - cardinality(item_weight), 0)])
                     || %(new_weights)s::double precision[]
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: foldin_update_users
-- Fresh vectors and seen items for users already in the version (trained now, if they were
-- mapped from content).
UPDATE {users} u SET factors = s.factors, seen = s.seen, from_content = false
  FROM recsys_stage_users s WHERE u.idx = s.idx;

-- name: foldin_insert_users
-- New users into the version's user table.
INSERT INTO {users} (idx, key, factors, seen)
SELECT s.idx, m.key, s.factors, s.seen
  FROM recsys_stage_users s JOIN recsys_foldin_users m ON m.idx = s.idx AND m.is_new;
