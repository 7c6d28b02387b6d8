-- Named queries of recsys_db/run.py. Each starts with "-- name: run_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: run_fail_abandoned
-- Runs of the model left running by a dead process are failed.
UPDATE recsys.run
   SET status = 'failed', finished_at = clock_timestamp(),
       error = format('abandoned: worker %%s stopped before the run finished', worker)
 WHERE model_id = %(model_id)s AND status = 'running'
RETURNING id;

-- name: run_building_versions
-- Versions of the model left building by a dead process.
SELECT version, user_table, item_table FROM recsys.model_version
 WHERE model_id = %(model_id)s AND status = 'building' ORDER BY version;

-- name: run_active_version
-- The version a fold-in writes into, and the params it was trained with (a fold-in weights
-- new events as that version's training did, whatever the model's params are now).
SELECT v.version, v.user_table, v.item_table, v.factors, v.params
  FROM recsys.model m
  JOIN recsys.model_version v ON v.model_id = m.id AND v.version = m.active_version
 WHERE m.id = %(model_id)s;

-- name: run_try_lock
-- Take the model's training lock for the session, if no other session holds it.
SELECT pg_try_advisory_lock(%(key)s);

-- name: run_start
-- Record a run as running; tuning_id links a tuning trial to its tuning (else NULL).
INSERT INTO recsys.run (model_id, kind, worker, params, tuning_id)
VALUES (%(model_id)s, %(kind)s, %(worker)s, %(params)s, %(tuning_id)s)
RETURNING id;

-- name: run_finish
-- Record a run's outcome.
UPDATE recsys.run
   SET status = %(status)s, finished_at = clock_timestamp(), version = %(version)s,
       rows_read = %(rows_read)s, rows_skipped_null = %(rows_skipped_null)s,
       rows_skipped_event = %(rows_skipped_event)s, users = %(users)s, items = %(items)s,
       nnz = %(nnz)s, stages = %(stages)s, error = %(error)s
 WHERE id = %(run_id)s;
