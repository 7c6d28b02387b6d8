-- Named queries of recsys_db/jobs.py. Each starts with "-- name: jobs_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: job_register_worker
-- A worker comes alive with its lease.
INSERT INTO recsys.worker (name, lease) VALUES (%(name)s, %(lease)s * interval '1 second')
RETURNING id;

-- name: job_heartbeat
-- The worker is alive: extend its lease and the lease of the job it runs.
WITH alive AS (
    UPDATE recsys.worker SET heartbeat_at = clock_timestamp(), state = %(state)s
     WHERE id = %(worker_id)s AND stopped_at IS NULL
    RETURNING id, lease
)
UPDATE recsys.job j SET lease_until = clock_timestamp() + alive.lease
  FROM alive WHERE j.worker_id = alive.id AND j.status = 'running';

-- name: job_stop_worker
-- The worker stopped cleanly.
UPDATE recsys.worker SET state = 'stopped', stopped_at = clock_timestamp()
 WHERE id = %(worker_id)s AND stopped_at IS NULL;

-- name: job_enqueue_due
-- Queue refreshes of models whose schedule is due (recsys._enqueue_due).
SELECT recsys._enqueue_due();

-- name: job_content_candidates
-- Models whose active version has a feature map and no queued or running job, with the params
-- that version was trained with: their feature relations may have gained keys since. A model
-- whose last 'new content' job failed waits (recsys._schedule_waits).
SELECT m.id, m.name, m.active_version, coalesce(v.params, m.params)
  FROM recsys.model m
  JOIN recsys.model_version v ON v.model_id = m.id AND v.version = m.active_version
 WHERE EXISTS (SELECT 1 FROM recsys.feature_map f
                WHERE f.model_id = m.id AND f.version = m.active_version)
   AND NOT EXISTS (SELECT 1 FROM recsys.job j
                    WHERE j.model_id = m.id AND j.status IN ('queued', 'running'))
   AND NOT recsys._schedule_waits(m.id, 'new content')
 ORDER BY m.name;

-- name: job_enqueue_content
-- Queue an incremental refresh for keys new in a model's feature relations.
INSERT INTO recsys.job (model_id, mode, reason) VALUES (%(model_id)s, 'incremental', 'new content')
ON CONFLICT DO NOTHING
RETURNING id;

-- name: job_claim
-- Take the next runnable job, skipping jobs other workers hold.
SELECT c.id, c.model_id, m.name, c.mode, c.reason, c.attempts, c.started_at
  FROM recsys._claim_job(%(worker_id)s) c JOIN recsys.model m ON m.id = c.model_id;

-- name: job_succeed
-- Close a job as succeeded, linked to its run.
UPDATE recsys.job
   SET status = 'succeeded', finished_at = clock_timestamp(), lease_until = NULL,
       run_id = %(run_id)s, error = NULL
 WHERE id = %(job_id)s AND status = 'running';

-- name: job_retry
-- Retry a failed job after a backoff, or give it up after max attempts; no row when the job
-- is not the given worker's (NULL: any worker's) any more.
SELECT recsys._retry_job(%(job_id)s, %(error)s, %(max_attempts)s, %(backoff)s,
                         %(count_attempt)s)
 WHERE %(worker_id)s::bigint IS NULL
    OR EXISTS (SELECT 1 FROM recsys.job
                WHERE id = %(job_id)s AND worker_id = %(worker_id)s::bigint);

-- name: job_set_run
-- Link a job to the run that works on it.
UPDATE recsys.job SET run_id = %(run_id)s WHERE id = %(job_id)s;

-- name: job_run_of
-- The newest run the job's worker started for it.
SELECT r.id, r.status FROM recsys.job j
  JOIN recsys.run r ON r.model_id = j.model_id AND r.worker = j.worker
                   AND r.started_at >= j.started_at
 WHERE j.id = %(job_id)s
 ORDER BY r.id DESC LIMIT 1;

-- name: job_mark_dead_workers
-- Workers past their lease are dead.
UPDATE recsys.worker SET state = 'dead', stopped_at = clock_timestamp()
 WHERE stopped_at IS NULL AND heartbeat_at + lease < clock_timestamp()
RETURNING id, name;

-- name: job_forget_workers
-- Forget workers stopped more than a day ago.
DELETE FROM recsys.worker WHERE stopped_at < clock_timestamp() - interval '1 day';

-- name: job_suspect_models
-- Models with an expired job lease, or an old running run or building version.
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
-- Take a model's training lock for this transaction, if free.
SELECT pg_try_advisory_xact_lock(%(key)s);

-- name: job_expired
-- Running jobs of the model whose lease has expired.
SELECT j.id, j.worker FROM recsys.job j
 WHERE j.model_id = %(model_id)s AND j.status = 'running' AND j.lease_until < clock_timestamp()
   FOR UPDATE SKIP LOCKED;

-- name: job_status_models
-- Models with their schedule and open job, for `status`.
SELECT name, active_version, last_success_at, next_due_at, last_run_status, last_error,
       job_id, job_status, job_mode, job_worker
  FROM recsys.models ORDER BY name;

-- name: job_status_workers
-- Live workers, for `status`.
SELECT worker_id, name, state, started_at, heartbeat_at, job_id, model, job_mode
  FROM recsys.workers ORDER BY worker_id;

-- name: job_status_jobs
-- Open jobs, for `status`.
SELECT job_id, model, mode, reason, status, attempts, run_after, worker, error
  FROM recsys.jobs WHERE status IN ('queued', 'running') ORDER BY job_id;

-- name: job_revive_worker
-- The worker is back after losing its connection: alive again (also when another worker
-- marked it dead meanwhile), with the reconnect counted and the error that cut it off.
UPDATE recsys.worker
   SET heartbeat_at = clock_timestamp(), stopped_at = NULL, state = 'idle',
       reconnects = reconnects + 1, last_error = %(error)s, last_error_at = %(error_at)s
 WHERE id = %(worker_id)s;

-- name: job_prune_history
-- Delete runs, jobs and tunings beyond the retention rule (recsys._prune_history).
SELECT runs, jobs, tunings FROM recsys._prune_history(%(keep_runs)s, %(keep_days)s);

-- name: job_note_abandoned
-- One more time a dead worker left this job running; returns how many times so far.
UPDATE recsys.job SET abandoned = abandoned + 1 WHERE id = %(job_id)s RETURNING abandoned;
