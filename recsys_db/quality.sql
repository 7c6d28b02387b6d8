-- Named queries of evaluation, tuning and precompute (see recsys_db/queries.py).
-- Placeholders in braces are identifiers composed with psycopg.sql, never user text.

-- name: quality_copy_times
-- {user} and {item} are the keys in the maps' `native` type (integers stay integers).
COPY (SELECT u.idx, i.idx, max({time})
        FROM {source} s
        JOIN recsys_user_map u ON u.native = {user}
        JOIN recsys_item_map i ON i.native = {item}
       WHERE {time} IS NOT NULL
       GROUP BY u.idx, i.idx)
  TO STDOUT (FORMAT BINARY);

-- name: quality_insert_evaluation
INSERT INTO recsys.evaluation (run_id, split, k, test_users, test_interactions,
                               train_interactions, gate, gate_passed)
VALUES (%(run_id)s, %(split)s, %(k)s, %(test_users)s, %(test_interactions)s,
        %(train_interactions)s, %(gate)s, %(gate_passed)s);

-- name: quality_insert_metrics
INSERT INTO recsys.metric (run_id, recommender, metric, value)
SELECT %(run_id)s, r.key, m.key, m.value::double precision
  FROM jsonb_each(%(metrics)s::jsonb) r, jsonb_each_text(r.value) m;

-- name: quality_effective_params
SELECT recsys._check_params(%(params)s::jsonb);

-- name: quality_user_keys
SELECT key FROM recsys_user_map ORDER BY idx;

-- name: quality_item_keys
SELECT key FROM recsys_item_map ORDER BY idx;

-- name: quality_create_partition
-- An empty partition for a version being built, created by recsys's owner
-- (sql/010-storage.sql); returns its name in schema recsys.
SELECT recsys._create_partition(%(parent)s, %(model_id)s, %(version)s);

-- name: quality_copy_partition
COPY {table} FROM STDIN (FORMAT BINARY);

-- name: quality_attach_partition
-- Indexed, checked, analyzed and attached by recsys's owner.
SELECT recsys._attach_partition(%(parent)s, %(model_id)s, %(version)s);

-- name: quality_drop_partitions
SELECT recsys._drop_partitions(%(names)s::text[]);

-- name: quality_stale_partitions
SELECT c.relname
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  LEFT JOIN recsys.model_version v
         ON v.model_id = substring(c.relname FROM '^m([0-9]+)_')::integer
        AND v.version = substring(c.relname FROM '^m[0-9]+_v([0-9]+)_')::integer
 WHERE i.inhparent IN ('recsys.recommendation'::regclass, 'recsys.similar_item'::regclass)
   AND (v.status IS NULL OR v.status IN ('dropped', 'failed'))
 ORDER BY c.relname;

-- name: quality_start_tuning
INSERT INTO recsys.tuning (model_id, metric, k, grid)
VALUES (%(model_id)s, %(metric)s, %(k)s, %(grid)s)
RETURNING id;

-- name: quality_start_tune_run
INSERT INTO recsys.run (model_id, kind, worker, params, tuning_id)
VALUES (%(model_id)s, 'tune', %(worker)s, %(params)s, %(tuning_id)s)
RETURNING id;

-- name: quality_finish_tuning
UPDATE recsys.tuning
   SET finished_at = clock_timestamp(), best_run_id = %(best_run_id)s,
       best_params = %(best_params)s, applied = %(applied)s
 WHERE id = %(tuning_id)s;

-- name: quality_apply_params
UPDATE recsys.model
   SET params = recsys._check_params(params || %(params)s::jsonb), updated_at = now()
 WHERE id = %(model_id)s;

-- name: quality_refresh_recommendations
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
