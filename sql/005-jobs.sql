-- Refresh jobs for the worker: requesting, scheduling and claiming, plus status views.
-- Tables: recsys.job, recsys.worker, recsys.watermark (alembic revision 0002).

-- Ask the worker to refresh a model. A request for a model that already has a queued job
-- joins that job (a full request upgrades a queued incremental one, and it runs now even if
-- the queued job was waiting to retry). Wakes listening workers with NOTIFY.
CREATE OR REPLACE FUNCTION recsys.request_refresh(model text, mode text DEFAULT 'full')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    m recsys.model;
    job_id bigint;
    weighting text;
BEGIN
    m := recsys._model(model);
    PERFORM recsys._require_manager(m);
    IF mode IS NULL OR mode NOT IN ('full', 'incremental') THEN
        RAISE EXCEPTION 'unknown refresh mode %', coalesce(quote_literal(mode), 'null')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use one of: full, incremental';
    END IF;
    -- a fold-in weights with the active version's params: refuse now what it cannot do,
    -- rather than let the worker fail it later
    IF mode = 'incremental' THEN
        weighting := coalesce(
            (SELECT v.params FROM recsys.model_version v
              WHERE v.model_id = m.id AND v.version = m.active_version), m.params,
            recsys._default_params()) ->> 'weighting';
        -- a model with content features can still get its new content keys
        IF weighting NOT IN ('none', 'confidence', 'log')
           AND NOT EXISTS (SELECT 1 FROM recsys.model_feature f WHERE f.model_id = m.id) THEN
            RAISE EXCEPTION 'model "%" cannot be refreshed incrementally: its % is weighted by %',
                m.name, CASE WHEN m.active_version IS NULL THEN 'configuration'
                             ELSE format('active version %s', m.active_version) END, weighting
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'fold-in supports weighting none, confidence and log (and adds '
                             'new keys of models with features under any weighting); use '
                             'recsys.request_refresh(model, ''full'')';
        END IF;
    END IF;
    INSERT INTO recsys.job AS j (model_id, mode, reason)
    VALUES (m.id, request_refresh.mode, 'requested')
    ON CONFLICT (model_id) WHERE status = 'queued' DO UPDATE
       SET mode = CASE WHEN excluded.mode = 'full' THEN 'full' ELSE j.mode END,
           reason = 'requested',
           run_after = least(j.run_after, excluded.run_after)
    RETURNING j.id INTO job_id;
    PERFORM pg_notify('recsys_refresh', m.name);
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION recsys.request_refresh IS
    'queue a full or incremental refresh of a model for the worker and wake it';

-- Whether the schedule leaves a model alone for a reason ('new events', 'new content'): its
-- last finished job is one the schedule queued for that reason, and it failed. What failed it
-- fails it again, every poll; another job of the model finishing (a request, the next full
-- refresh) lets the schedule look again.
CREATE OR REPLACE FUNCTION recsys._schedule_waits(model_id integer, reason text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT j.status = 'failed' AND j.reason = _schedule_waits.reason
                       FROM recsys.job j
                      WHERE j.model_id = _schedule_waits.model_id AND j.finished_at IS NOT NULL
                      ORDER BY j.finished_at DESC, j.id DESC
                      LIMIT 1), false)
$$;

-- Queue the jobs that are due: full refreshes by refresh_every (see recsys.models.next_due_at)
-- and incremental fold-ins for models with a time column that has rows newer than the
-- active version's watermark, unless the model's last finished job is such a fold-in that
-- failed. Returns how many jobs were queued.
--
-- SECURITY INVOKER, run by the worker: each source is read as the role that declared its model
-- (SET LOCAL ROLE, which the worker login must be allowed; its checks first, as for a
-- training), and a model whose source cannot be read that way is skipped with a warning.
CREATE OR REPLACE FUNCTION recsys._enqueue_due() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    queued integer;
    fresh integer;
    candidate record;
    has_new boolean;
    role_before text;
    declarer record;
BEGIN
    INSERT INTO recsys.job (model_id, mode, reason)
    SELECT m.id, 'full', 'scheduled'
      FROM recsys.model m JOIN recsys.models s ON s.name = m.name
     WHERE s.next_due_at <= clock_timestamp() AND s.job_id IS NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS queued = ROW_COUNT;
    FOR candidate IN
        SELECT m.id, m.name, m.source_schema, m.source_table, m.time_column, w.value,
               m.declarer, m.user_column, m.item_column, m.weight_column, m.event_column
          FROM recsys.model m
          JOIN recsys.watermark w ON w.model_id = m.id AND w.version = m.active_version
          JOIN recsys.model_version v ON v.model_id = m.id AND v.version = m.active_version
         WHERE m.time_column IS NOT NULL
           -- a fold-in weights with the active version's params, not the model's current ones
           AND coalesce(v.params, m.params) ->> 'weighting' IN ('none', 'confidence', 'log')
           AND NOT EXISTS (SELECT 1 FROM recsys.job j
                            WHERE j.model_id = m.id AND j.status IN ('queued', 'running'))
           AND NOT recsys._schedule_waits(m.id, 'new events')
    LOOP
        BEGIN
            PERFORM recsys._check_source(
                recsys._relation(candidate.source_schema, candidate.source_table),
                candidate.declarer,
                ARRAY[candidate.user_column, candidate.item_column, candidate.weight_column,
                      candidate.event_column, candidate.time_column]);
            SELECT r.rolname, r.rolsuper INTO declarer FROM pg_catalog.pg_roles r
             WHERE r.oid = candidate.declarer::oid;
            IF declarer.rolname IS NULL THEN
                RAISE EXCEPTION 'the role that declared model "%" is unknown', candidate.name
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user)
               AND NOT declarer.rolsuper THEN
                RAISE EXCEPTION 'a superuser login does not read a source as %, which is not one',
                    quote_ident(declarer.rolname)
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            role_before := current_setting('role');
            IF declarer.rolname <> current_user THEN
                EXECUTE format('SET LOCAL ROLE %I', declarer.rolname);
            END IF;
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE %I > %L)',
                           candidate.source_schema, candidate.source_table,
                           candidate.time_column, candidate.value)
               INTO has_new;
            IF current_user <> declarer.rolname THEN
                RAISE EXCEPTION 'the source of model "%" changed the session role', candidate.name
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            PERFORM set_config('role', role_before, true);
        EXCEPTION WHEN OTHERS THEN
            -- a broken source must not stop the other models from being scheduled; whatever
            -- the read did (as any role) is rolled back with this block
            RAISE WARNING 'cannot check model "%" for new events: %', candidate.name, SQLERRM;
            has_new := false;
        END;
        IF has_new THEN
            INSERT INTO recsys.job (model_id, mode, reason)
            VALUES (candidate.id, 'incremental', 'new events')
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS fresh = ROW_COUNT;
            queued := queued + fresh;
        END IF;
    END LOOP;
    RETURN queued;
END
$$;

-- Claim the next runnable job for a worker: queued, past its run_after, and its model not
-- being refreshed by another job. SKIP LOCKED lets concurrent workers pass each other.
-- Two jobs of one model are never claimed at once: a model has at most one queued job, and
-- a new one can only be queued once the previous claim has committed (the partial unique
-- index makes request_refresh wait for it), so any claimer that sees the new job also sees
-- the running one. The unique index on running jobs is the backstop.
CREATE OR REPLACE FUNCTION recsys._claim_job(worker_id bigint) RETURNS SETOF recsys.job
LANGUAGE sql AS $$
    WITH candidate AS (
        SELECT j.id
          FROM recsys.job j
         WHERE j.status = 'queued' AND j.run_after <= clock_timestamp()
           AND NOT EXISTS (SELECT 1 FROM recsys.job r
                            WHERE r.model_id = j.model_id AND r.status = 'running')
         ORDER BY j.run_after, j.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE recsys.job j
       SET status = 'running', attempts = j.attempts + 1, worker_id = w.id, worker = w.name,
           lease_until = clock_timestamp() + w.lease, started_at = clock_timestamp(),
           finished_at = NULL
      FROM candidate, recsys.worker w
     WHERE j.id = candidate.id AND w.id = _claim_job.worker_id
    RETURNING j.*
$$;

CREATE OR REPLACE VIEW recsys.jobs AS
SELECT j.id AS job_id, m.name AS model, j.mode, j.reason, j.status, j.attempts, j.run_after,
       j.worker, j.lease_until, j.run_id, j.created_at, j.started_at, j.finished_at, j.error
  FROM recsys.job j
  JOIN recsys.model m ON m.id = j.model_id;

-- Workers whose heartbeat is within their lease; reconnects counts the database restarts (lost
-- connections) each has ridden out, last_error and last_error_at say what cut it off last.
CREATE OR REPLACE VIEW recsys.workers AS
SELECT w.id AS worker_id, w.name, w.state, w.started_at, w.heartbeat_at,
       clock_timestamp() - w.heartbeat_at AS heartbeat_age, w.lease,
       j.id AS job_id, m.name AS model, j.mode AS job_mode, j.started_at AS job_started_at,
       w.reconnects, w.last_error, w.last_error_at
  FROM recsys.worker w
  LEFT JOIN recsys.job j ON j.worker_id = w.id AND j.status = 'running'
  LEFT JOIN recsys.model m ON m.id = j.model_id
 WHERE w.stopped_at IS NULL AND w.heartbeat_at + w.lease > clock_timestamp();

-- After a failed attempt put a running job back in the queue with exponential backoff
-- (backoff * 2^(attempts-1) seconds, at most an hour), or give up after max_attempts.
-- count_attempt => false releases the job without using up an attempt (worker shutdown).
-- When a newer job for the model is already queued, this one is closed as failed instead.
-- Returns the job's new status, or NULL when it was not running.
CREATE OR REPLACE FUNCTION recsys._retry_job(
    job_id bigint, error text, max_attempts integer, backoff double precision,
    count_attempt boolean DEFAULT true
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    j recsys.job;
    newer bigint;
BEGIN
    SELECT * INTO j FROM recsys.job WHERE id = job_id AND status = 'running' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF NOT count_attempt THEN
        j.attempts := j.attempts - 1;
    END IF;
    SELECT id INTO newer FROM recsys.job WHERE model_id = j.model_id AND status = 'queued';
    IF j.attempts >= max_attempts OR newer IS NOT NULL THEN
        UPDATE recsys.job
           SET status = 'failed', attempts = j.attempts, finished_at = clock_timestamp(),
               lease_until = NULL,
               error = CASE WHEN newer IS NULL THEN _retry_job.error
                            ELSE format('%s (replaced by queued job %s)', _retry_job.error, newer)
                       END
         WHERE id = job_id;
        RETURN 'failed';
    END IF;
    UPDATE recsys.job
       SET status = 'queued', attempts = j.attempts, worker_id = NULL, lease_until = NULL,
           error = _retry_job.error,
           run_after = clock_timestamp() + CASE WHEN count_attempt
               THEN least(backoff * 2 ^ (j.attempts - 1), 3600) ELSE 0 END * interval '1 second'
     WHERE id = job_id;
    RETURN 'queued';
END
$$;

-- History kept bounded (the worker's housekeeping, hourly). Deleted: finished runs older than
-- keep_days, except each model's newest keep_runs runs, the run that trained each version not
-- dropped or failed, each model's newest successful full run (the schedule counts from it) and
-- runs of open jobs; finished jobs older than keep_days, except each model's newest failed full
-- job (the schedule counts from that too); finished tunings older than keep_days with their
-- trial runs, except each model's newest. Metrics and evaluations go with their runs. Returns
-- how many runs, jobs and tunings were deleted.
CREATE OR REPLACE FUNCTION recsys._prune_history(keep_runs integer, keep_days integer)
RETURNS TABLE (runs bigint, jobs bigint, tunings bigint)
LANGUAGE plpgsql AS $$
DECLARE
    horizon timestamptz;
BEGIN
    IF keep_runs IS NULL OR keep_runs < 1 OR keep_days IS NULL OR keep_days < 1 THEN
        RAISE EXCEPTION 'keep_runs and keep_days must be at least 1, not % and %',
            coalesce(keep_runs::text, 'null'), coalesce(keep_days::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    horizon := clock_timestamp() - keep_days * interval '1 day';
    WITH newest AS (
        SELECT DISTINCT ON (t.model_id) t.id FROM recsys.tuning t
         ORDER BY t.model_id, t.id DESC
    ), gone AS (
        DELETE FROM recsys.tuning t
         WHERE t.finished_at < horizon AND t.id NOT IN (SELECT id FROM newest)
        RETURNING 1
    )
    SELECT count(*) INTO tunings FROM gone;
    WITH ranked AS (
        SELECT r.id, row_number() OVER (PARTITION BY r.model_id
                                        ORDER BY r.started_at DESC, r.id DESC) AS n
          FROM recsys.run r WHERE r.tuning_id IS NULL
    ), gone AS (
        DELETE FROM recsys.run r USING ranked k
         WHERE r.id = k.id AND k.n > keep_runs AND r.status <> 'running'
           AND r.finished_at < horizon
           AND NOT EXISTS (SELECT 1 FROM recsys.model_version v
                            WHERE v.run_id = r.id AND v.status NOT IN ('dropped', 'failed'))
           AND NOT EXISTS (SELECT 1 FROM recsys.job j
                            WHERE j.run_id = r.id AND j.status IN ('queued', 'running'))
           AND r.id <> coalesce((SELECT s.id FROM recsys.run s
                                  WHERE s.model_id = r.model_id AND s.kind = 'full'
                                    AND s.status = 'succeeded'
                                  ORDER BY s.finished_at DESC LIMIT 1), -1)
        RETURNING 1
    )
    SELECT count(*) INTO runs FROM gone;
    WITH gone AS (
        DELETE FROM recsys.job j
         WHERE j.status IN ('succeeded', 'failed') AND j.finished_at < horizon
           AND j.id <> coalesce((SELECT f.id FROM recsys.job f
                                  WHERE f.model_id = j.model_id AND f.mode = 'full'
                                    AND f.status = 'failed'
                                  ORDER BY f.finished_at DESC LIMIT 1), -1)
        RETURNING 1
    )
    SELECT count(*) INTO jobs FROM gone;
    RETURN NEXT;
END
$$;
