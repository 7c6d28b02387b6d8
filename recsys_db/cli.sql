-- Named queries of recsys_db/cli.py. Each starts with "-- name: cli_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: cli_model_exists
-- Whether a model of that name exists (runs of an unknown model are an error).
SELECT EXISTS (SELECT FROM recsys.models WHERE name = %(model)s::text);

-- name: cli_run_eval_k
-- The k a run's metrics were measured at.
SELECT k FROM recsys.metrics WHERE run_id = %(run_id)s LIMIT 1;
