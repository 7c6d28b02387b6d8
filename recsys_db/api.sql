-- Named queries of the Python API (recsys_db/api.py) and the command line (recsys_db/cli.py);
-- each reads one SQL function or view.

-- name: api_create_model
SELECT recsys.create_model(
    %(name)s, %(source)s::regclass, %(user_column)s, %(item_column)s,
    weight_column => %(weight_column)s, event_column => %(event_column)s,
    event_weights => %(event_weights)s::jsonb, time_column => %(time_column)s,
    params => %(params)s::jsonb, refresh_every => %(refresh_every)s::interval);

-- name: api_drop_model
SELECT recsys.drop_model(%(name)s);

-- name: api_models
SELECT * FROM recsys.models ORDER BY name;

-- name: api_runs
SELECT * FROM recsys.runs
 WHERE %(model)s::text IS NULL OR model = %(model)s::text
 ORDER BY started_at DESC, run_id DESC LIMIT %(limit)s;

-- name: api_recommend
SELECT * FROM recsys.recommend(%(model)s, %(user)s, %(k)s, %(exclude_seen)s);

-- name: api_recommend_filtered
SELECT * FROM recsys.recommend_filtered(%(model)s, %(user)s, %(candidates)s::text[], %(k)s,
                                        %(exclude_seen)s);

-- name: api_recommend_for_items
SELECT * FROM recsys.recommend_for_items(%(model)s, %(items)s::text[], %(k)s);

-- name: api_explain
SELECT * FROM recsys.explain(%(model)s, %(user)s, %(item)s, %(k)s);

-- name: api_similar_items
SELECT * FROM recsys.similar_items(%(model)s, %(item)s, %(k)s);

-- name: api_similar_users
SELECT * FROM recsys.similar_users(%(model)s, %(user)s, %(k)s);

-- name: api_interested_users
SELECT * FROM recsys.interested_users(%(model)s, %(item)s, %(k)s, %(exclude_seen)s);

-- name: api_popular
SELECT * FROM recsys.popular(%(model)s, %(k)s);

-- name: api_score
SELECT recsys.score(%(model)s, %(user)s, %(item)s);

-- Queries of the command line (recsys_db/cli.py).

-- name: cli_models
SELECT name, source, active_version, users, items, trained_at, last_run_status, last_error
  FROM recsys.models ORDER BY name;

-- name: cli_model_exists
SELECT EXISTS (SELECT FROM recsys.models WHERE name = %(model)s::text);

-- name: cli_runs
SELECT run_id, model, version, status, started_at, duration, rows_read, users, items, error
  FROM recsys.runs
 WHERE %(model)s::text IS NULL OR model = %(model)s::text
 ORDER BY run_id DESC LIMIT %(limit)s;

-- name: cli_recommend
SELECT * FROM recsys.recommend(%(model)s, %(user)s, k => %(k)s::integer);

-- name: cli_run_eval_k
SELECT k FROM recsys.metrics WHERE run_id = %(run_id)s LIMIT 1;
