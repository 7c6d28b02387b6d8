-- Quality: holdout metrics per run, tuning trials, precomputed recommendations (read-only views).

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
