-- Read-only views for BI tools and operators: models, versions and runs; holdout metrics
-- and tunings; the precomputed recommendations and similar items of active versions.
-- (The queue's views, jobs and workers, are in 005-jobs.sql; features in 008-features.sql.)

CREATE OR REPLACE VIEW recsys.versions AS
SELECT m.name AS model, v.version, v.version = m.active_version AS active, v.status,
       v.factors, v.users, v.items, v.nnz, v.run_id, v.created_at, v.params,
       v.index_kind, v.index_recall, v.index_ef_search, v.retired_at, v.precomputed_k,
       v.ranked_k, v.content_items
  FROM recsys.model_version v
  JOIN recsys.model m ON m.id = v.model_id;

CREATE OR REPLACE VIEW recsys.runs AS
SELECT r.id AS run_id, m.name AS model, r.version, r.kind, r.status, r.started_at, r.finished_at,
       r.finished_at - r.started_at AS duration, r.worker, r.rows_read, r.rows_skipped_null,
       r.rows_skipped_event, r.users, r.items, r.nnz, r.stages, r.params, r.error,
       r.cold_items, r.cold_users
  FROM recsys.run r
  JOIN recsys.model m ON m.id = r.model_id;

CREATE OR REPLACE VIEW recsys.models AS
SELECT m.name,
       format('%I.%I', m.source_schema, m.source_table) AS source,
       m.user_column, m.item_column, m.weight_column, m.event_column, m.event_weights,
       m.time_column, m.params, m.refresh_every, m.active_version,
       v.users, v.items, v.nnz,
       active_run.finished_at AS trained_at,
       last_run.status AS last_run_status,
       last_run.finished_at AS last_run_finished_at,
       last_run.error AS last_error,
       m.created_at,
       last_success.finished_at AS last_success_at,
       CASE WHEN m.refresh_every IS NULL THEN NULL
            WHEN last_success.finished_at IS NULL AND last_failed_job.finished_at IS NULL
                 THEN m.created_at
            ELSE greatest(last_success.finished_at, last_failed_job.finished_at) + m.refresh_every
       END AS next_due_at,
       open_job.id AS job_id,
       open_job.status AS job_status,
       open_job.mode AS job_mode,
       open_job.worker AS job_worker,
       holdout.metric AS holdout_metric,
       holdout.k AS holdout_k,
       holdout.als AS holdout_als,
       holdout.popular AS holdout_popular,
       holdout.als < holdout.popular AS below_popular
  FROM recsys.model m
  LEFT JOIN recsys.model_version v ON v.model_id = m.id AND v.version = m.active_version
  LEFT JOIN recsys.run active_run ON active_run.id = v.run_id
  LEFT JOIN LATERAL (SELECT r.status, r.finished_at, r.error FROM recsys.run r
                      WHERE r.model_id = m.id ORDER BY r.started_at DESC, r.id DESC LIMIT 1) last_run
         ON true
  -- scheduling (worker): full refreshes are due refresh_every after the last success, or
  -- after the last job that gave up, so a broken model is not retried in a tight loop
  LEFT JOIN LATERAL (SELECT r.finished_at FROM recsys.run r
                      WHERE r.model_id = m.id AND r.kind = 'full' AND r.status = 'succeeded'
                      ORDER BY r.finished_at DESC LIMIT 1) last_success ON true
  LEFT JOIN LATERAL (SELECT j.finished_at FROM recsys.job j
                      WHERE j.model_id = m.id AND j.mode = 'full' AND j.status = 'failed'
                      ORDER BY j.finished_at DESC LIMIT 1) last_failed_job ON true
  LEFT JOIN LATERAL (SELECT j.id, j.status, j.mode, j.worker FROM recsys.job j
                      WHERE j.model_id = m.id AND j.status IN ('queued', 'running')
                      ORDER BY j.status = 'running' DESC, j.id LIMIT 1) open_job ON true
  -- quality of the active version: the holdout evaluation of the run that trained it, in the
  -- gate's metric (ndcg when no gate is set), for the model and the popularity baseline
  LEFT JOIN LATERAL (SELECT e.k, g.metric,
                            (SELECT mt.value FROM recsys.metric mt
                              WHERE mt.run_id = e.run_id AND mt.recommender = 'als'
                                AND mt.metric = g.metric) AS als,
                            (SELECT mt.value FROM recsys.metric mt
                              WHERE mt.run_id = e.run_id AND mt.recommender = 'popular'
                                AND mt.metric = g.metric) AS popular
                       FROM recsys.evaluation e
                      CROSS JOIN LATERAL (SELECT coalesce(v.params ->> 'gate_metric', 'ndcg')
                                                 AS metric) g
                      WHERE e.run_id = v.run_id) holdout ON true;
COMMENT ON VIEW recsys.models IS
    'one row per model: source, columns, params, active version with its holdout quality '
    '(holdout_metric at holdout_k for als and the popularity baseline), last run, schedule';

-- One row per run x recommender x metric: long format, ready to chart in a BI tool.
-- recommender 'als' is the trained model, 'popular' the popularity baseline on the same split.
CREATE OR REPLACE VIEW recsys.metrics AS
SELECT m.name AS model, r.id AS run_id, r.kind, r.status, r.version, r.tuning_id,
       r.finished_at, e.split, e.k, mt.recommender, mt.metric, mt.value,
       e.test_users, e.test_interactions, e.train_interactions, e.gate, e.gate_passed, r.params
  FROM recsys.metric mt
  JOIN recsys.evaluation e ON e.run_id = mt.run_id
  JOIN recsys.run r ON r.id = mt.run_id
  JOIN recsys.model m ON m.id = r.model_id;
COMMENT ON VIEW recsys.metrics IS
    'holdout metrics at k of each run, for the model (als) and the popularity baseline (popular)';

CREATE OR REPLACE VIEW recsys.tunings AS
SELECT t.id AS tuning_id, m.name AS model, t.metric, t.k, t.grid, t.started_at, t.finished_at,
       t.best_run_id, t.best_params, t.applied
  FROM recsys.tuning t
  JOIN recsys.model m ON m.id = t.model_id;

-- Trials of each tuning, best first by the tuning's metric.
CREATE OR REPLACE VIEW recsys.tuning_trials AS
SELECT t.id AS tuning_id, m.name AS model,
       (rank() OVER (PARTITION BY t.id ORDER BY als.value DESC NULLS LAST))::integer AS rank,
       r.id AS run_id, r.status, r.params, t.metric, als.value, popular.value AS baseline,
       r.stages, r.error
  FROM recsys.tuning t
  JOIN recsys.model m ON m.id = t.model_id
  JOIN recsys.run r ON r.tuning_id = t.id
  LEFT JOIN recsys.metric als
         ON als.run_id = r.id AND als.recommender = 'als' AND als.metric = t.metric
  LEFT JOIN recsys.metric popular
         ON popular.run_id = r.id AND popular.recommender = 'popular' AND popular.metric = t.metric;

-- Precomputed top-N per user of each model's active version (params.recommendations_k); what
-- recsys.recommend(model, user_key, k) serves for k up to the version's precomputed_k.
CREATE OR REPLACE VIEW recsys.recommendations AS
SELECT m.name AS model, r.user_key, r.rank, r.item_key, r.score::double precision AS score
  FROM recsys.recommendation r
  JOIN recsys.model m ON m.id = r.model_id AND r.version = m.active_version;
COMMENT ON VIEW recsys.recommendations IS
    'precomputed top-N items per user for the active version of every model';

-- Precomputed similar items of the active version (params.similar_items_k); the same rows as
-- recsys.similar_items(model, item_key, k).
CREATE OR REPLACE VIEW recsys.similar_items_top AS
SELECT m.name AS model, s.item_key, s.rank, s.similar_item_key, s.score::double precision AS score
  FROM recsys.similar_item s
  JOIN recsys.model m ON m.id = s.model_id AND s.version = m.active_version;
COMMENT ON VIEW recsys.similar_items_top IS
    'precomputed most similar items per item for the active version of every model';

-- Changes to models after create_model (recsys.alter_model, tune --apply), newest first.
CREATE OR REPLACE VIEW recsys.model_changes AS
SELECT m.name AS model, c.changed_at, c.changed_by, c.changes, c.id AS change_id
  FROM recsys.model_change c
  JOIN recsys.model m ON m.id = c.model_id
 ORDER BY c.id DESC;
