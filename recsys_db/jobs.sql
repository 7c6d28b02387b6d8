-- Named queries of the job queue and the worker (recsys_db/jobs.py, worker.py, foldin.py).
-- The functions they call are in sql/005-jobs.sql.

-- name: job_register_worker
INSERT INTO recsys.worker (name, lease) VALUES (%(name)s, %(lease)s * interval '1 second')
RETURNING id;

-- name: job_heartbeat
WITH alive AS (
    UPDATE recsys.worker SET heartbeat_at = clock_timestamp(), state = %(state)s
     WHERE id = %(worker_id)s AND stopped_at IS NULL
    RETURNING id, lease
)
UPDATE recsys.job j SET lease_until = clock_timestamp() + alive.lease
  FROM alive WHERE j.worker_id = alive.id AND j.status = 'running';

-- name: job_stop_worker
UPDATE recsys.worker SET state = 'stopped', stopped_at = clock_timestamp()
 WHERE id = %(worker_id)s AND stopped_at IS NULL;

-- name: job_enqueue_due
SELECT recsys._enqueue_due();

-- name: job_claim
SELECT c.id, c.model_id, m.name, c.mode, c.reason, c.attempts, c.started_at
  FROM recsys._claim_job(%(worker_id)s) c JOIN recsys.model m ON m.id = c.model_id;

-- name: job_succeed
UPDATE recsys.job
   SET status = 'succeeded', finished_at = clock_timestamp(), lease_until = NULL,
       run_id = %(run_id)s, error = NULL
 WHERE id = %(job_id)s AND status = 'running';

-- name: job_retry
SELECT recsys._retry_job(%(job_id)s, %(error)s, %(max_attempts)s, %(backoff)s,
                         %(count_attempt)s);

-- name: job_set_run
UPDATE recsys.job SET run_id = %(run_id)s WHERE id = %(job_id)s;

-- The newest run a worker started for a job's model since it claimed the job.
-- name: job_run_of
SELECT r.id, r.status FROM recsys.job j
  JOIN recsys.run r ON r.model_id = j.model_id AND r.worker = j.worker
                   AND r.started_at >= j.started_at
 WHERE j.id = %(job_id)s
 ORDER BY r.id DESC LIMIT 1;

-- name: job_mark_dead_workers
UPDATE recsys.worker SET state = 'dead', stopped_at = clock_timestamp()
 WHERE stopped_at IS NULL AND heartbeat_at + lease < clock_timestamp()
RETURNING id, name;

-- name: job_forget_workers
DELETE FROM recsys.worker WHERE stopped_at < clock_timestamp() - interval '1 day';

-- Models that may hold leftovers of a dead worker: a running job past its lease, or a run
-- or a building version older than a lease and not owned by a live worker. Whether they
-- really are abandoned is decided by the model's advisory lock.
-- name: job_suspect_models
SELECT m.id, m.name FROM recsys.model m
 WHERE EXISTS (SELECT 1 FROM recsys.job j
                WHERE j.model_id = m.id AND j.status = 'running'
                  AND j.lease_until < clock_timestamp())
    OR EXISTS (SELECT 1 FROM recsys.run r
                WHERE r.model_id = m.id AND r.status = 'running'
                  AND r.started_at < clock_timestamp() - %(lease)s * interval '1 second'
                  AND r.worker NOT IN (SELECT name FROM recsys.workers))
    OR EXISTS (SELECT 1 FROM recsys.model_version v
                WHERE v.model_id = m.id AND v.status = 'building'
                  AND v.created_at < clock_timestamp() - %(lease)s * interval '1 second')
 ORDER BY m.id;

-- name: job_try_model_lock
SELECT pg_try_advisory_xact_lock(%(key)s);

-- name: job_fail_abandoned_runs
UPDATE recsys.run
   SET status = 'failed', finished_at = clock_timestamp(),
       error = format('abandoned: worker %%s stopped before the run finished', worker)
 WHERE model_id = %(model_id)s AND status = 'running'
RETURNING id;

-- name: job_building_versions
SELECT version, user_table, item_table FROM recsys.model_version
 WHERE model_id = %(model_id)s AND status = 'building' ORDER BY version;

-- name: job_expired
SELECT j.id, j.worker FROM recsys.job j
 WHERE j.model_id = %(model_id)s AND j.status = 'running' AND j.lease_until < clock_timestamp()
   FOR UPDATE SKIP LOCKED;

-- name: job_status_models
SELECT name, active_version, last_success_at, next_due_at, last_run_status, last_error,
       job_id, job_status, job_mode, job_worker
  FROM recsys.models ORDER BY name;

-- name: job_status_workers
SELECT worker_id, name, state, started_at, heartbeat_at, job_id, model, job_mode
  FROM recsys.workers ORDER BY worker_id;

-- name: job_status_jobs
SELECT job_id, model, mode, reason, status, attempts, run_after, worker, error
  FROM recsys.jobs WHERE status IN ('queued', 'running') ORDER BY job_id;

-- name: foldin_active_version
-- The version a fold-in writes into, and the params it was trained with (a fold-in weights
-- new events as that version's training did, whatever the model's params are now).
SELECT v.version, v.user_table, v.item_table, v.factors, v.params
  FROM recsys.model m
  JOIN recsys.model_version v ON v.model_id = m.id AND v.version = m.active_version
 WHERE m.id = %(model_id)s;

-- name: foldin_watermark
SELECT value FROM recsys.watermark WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: foldin_record_watermark
INSERT INTO recsys.watermark (model_id, version, value)
VALUES (%(model_id)s, %(version)s, %(value)s)
ON CONFLICT (model_id, version) DO UPDATE SET value = excluded.value;

-- name: foldin_max_time
SELECT max({time})::text FROM {source} s;

-- Fold-in reads the source as the model's declarer (source.as_declarer): the statements that
-- read {source} only read it and the worker's temp tables; the worker joins the results with
-- the version's tables (which the declarer need not be able to read) on its own.

-- name: foldin_drop_temp
DROP TABLE IF EXISTS recsys_foldin_keys, recsys_foldin_pairs, recsys_foldin_item_keys,
                     recsys_foldin_users, recsys_foldin_items;

-- name: foldin_create_keys
CREATE TEMP TABLE recsys_foldin_keys (key text PRIMARY KEY);
CREATE TEMP TABLE recsys_foldin_item_keys (key text);

-- Users with events after the watermark (the parameter is typed by the time column).
-- name: foldin_keys_since
INSERT INTO recsys_foldin_keys (key)
SELECT DISTINCT {user}::text FROM {source} s
 WHERE {user} IS NOT NULL AND {item} IS NOT NULL AND {raw_weight} IS NOT NULL AND {event_ok}
   AND {time} > %(watermark)s;

-- name: foldin_create_pairs
CREATE TEMP TABLE recsys_foldin_pairs (user_key text, item_key text);

-- Without a watermark: every (user, item) of the source, compared below with the version.
-- name: foldin_copy_pairs
INSERT INTO recsys_foldin_pairs (user_key, item_key)
SELECT DISTINCT {user}::text, {item}::text FROM {source} s
 WHERE {user} IS NOT NULL AND {item} IS NOT NULL AND {raw_weight} IS NOT NULL AND {event_ok};

-- Users whose set of items in the source differs from what the active version has seen (new
-- users included; users gone from the source are left alone).
-- name: foldin_keys_changed
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

-- Changed users with their index in the active version, new ones numbered after the last.
-- name: foldin_map_users
CREATE TEMP TABLE recsys_foldin_users AS
SELECT k.key,
       coalesce(u.idx, (SELECT coalesce(max(idx), -1) FROM {users})
                       + row_number() OVER (PARTITION BY u.idx IS NULL ORDER BY k.key))::integer
           AS idx,
       u.idx IS NULL AS is_new
  FROM recsys_foldin_keys k LEFT JOIN {users} u ON u.key = k.key;
CREATE UNIQUE INDEX ON recsys_foldin_users (key) INCLUDE (idx);
ANALYZE recsys_foldin_users;

-- Items of the changed users' events.
-- name: foldin_item_keys
INSERT INTO recsys_foldin_item_keys (key)
SELECT DISTINCT {item}::text FROM {source} s
  JOIN recsys_foldin_users k ON k.key = {user}::text
 WHERE {item} IS NOT NULL AND {raw_weight} IS NOT NULL AND {event_ok};

-- Those items with their index in the active version, new ones numbered after the last.
-- name: foldin_map_items
CREATE TEMP TABLE recsys_foldin_items AS
SELECT e.key,
       coalesce(i.idx, (SELECT coalesce(max(idx), -1) FROM {items})
                       + row_number() OVER (PARTITION BY i.idx IS NULL ORDER BY e.key))::integer
           AS idx,
       i.idx IS NULL AS is_new
  FROM recsys_foldin_item_keys e
  LEFT JOIN {items} i ON i.key = e.key;
CREATE UNIQUE INDEX ON recsys_foldin_items (key) INCLUDE (idx);
ANALYZE recsys_foldin_items;

-- name: foldin_copy_events
COPY (SELECT k.idx, i.idx, ({weight})::double precision
        FROM {source} s
        JOIN recsys_foldin_users k ON k.key = {user}::text
        JOIN recsys_foldin_items i ON i.key = {item}::text
       WHERE {raw_weight} IS NOT NULL AND {event_ok})
  TO STDOUT (FORMAT BINARY);

-- name: foldin_changed_users
SELECT idx, is_new FROM recsys_foldin_users ORDER BY idx;

-- name: foldin_new_items
SELECT idx FROM recsys_foldin_items WHERE is_new ORDER BY idx;

-- name: foldin_size
SELECT (SELECT count(*) FROM {users}), (SELECT coalesce(max(idx), -1) + 1 FROM {users}),
       (SELECT count(*) FROM {items}), (SELECT coalesce(max(idx), -1) + 1 FROM {items});

-- name: foldin_copy_factors
COPY (SELECT idx, factors FROM {table} ORDER BY idx) TO STDOUT (FORMAT BINARY);

-- name: foldin_insert_items
INSERT INTO {items} (idx, key, factors, popularity)
SELECT s.idx, m.key, s.factors, 0
  FROM recsys_stage_items s JOIN recsys_foldin_items m ON m.idx = s.idx AND m.is_new;

-- Popularity counts distinct users: add the changed users' new items, take their old ones.
-- name: foldin_popularity
UPDATE {items} i SET popularity = i.popularity + d.delta
  FROM (SELECT item, sum(change)::integer AS delta
          FROM (SELECT unnest(u.seen) AS item, -1 AS change
                  FROM {users} u JOIN recsys_stage_users s ON s.idx = u.idx
                UNION ALL
                SELECT unnest(s.seen), 1 FROM recsys_stage_users s) changes
         GROUP BY item HAVING sum(change) <> 0) d
 WHERE i.idx = d.item;

-- name: foldin_version_counts
UPDATE recsys.model_version v
   SET users = v.users + %(new_users)s, items = v.items + %(new_items)s,
       -- new items may enter any user's top-k: precomputed rows stop standing in for a search
       precomputed_k = CASE WHEN %(new_items)s > 0 THEN 0 ELSE v.precomputed_k END,
       similar_k = CASE WHEN %(new_items)s > 0 THEN 0 ELSE v.similar_k END,
       nnz = v.nnz + (SELECT coalesce(sum(cardinality(s.seen)), 0) FROM recsys_stage_users s)
                   - (SELECT coalesce(sum(cardinality(u.seen)), 0)
                        FROM {users} u JOIN recsys_stage_users s ON s.idx = u.idx)
 WHERE v.model_id = %(model_id)s AND v.version = %(version)s;

-- New items' summed raw weights after the version's items (padded with 0 for items without
-- any, such as cold items mapped from features), as training stores them for
-- recsys._version_stats; the items the version had keep their training-time weights.
-- name: foldin_extend_item_weight
UPDATE recsys.version_item_weight
   SET item_weight = item_weight[1:%(old_items)s]
                     || array_fill(0::double precision,
                                   ARRAY[greatest(%(old_items)s - cardinality(item_weight), 0)])
                     || %(new_weights)s::double precision[]
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: foldin_update_users
UPDATE {users} u SET factors = s.factors, seen = s.seen
  FROM recsys_stage_users s WHERE u.idx = s.idx;

-- name: foldin_insert_users
INSERT INTO {users} (idx, key, factors, seen)
SELECT s.idx, m.key, s.factors, s.seen
  FROM recsys_stage_users s JOIN recsys_foldin_users m ON m.idx = s.idx AND m.is_new;

-- name: job_listen
LISTEN recsys_refresh;
