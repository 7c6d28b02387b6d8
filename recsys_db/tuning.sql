-- Named queries of recsys_db/tuning.py. Each starts with "-- name: tuning_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: tuning_start
-- Record a tuning with its metric, k and grid.
INSERT INTO recsys.tuning (model_id, metric, k, grid)
VALUES (%(model_id)s, %(metric)s, %(k)s, %(grid)s)
RETURNING id;

-- name: tuning_finish
-- Record a tuning's best trial and whether it was applied.
UPDATE recsys.tuning
   SET finished_at = clock_timestamp(), best_run_id = %(best_run_id)s,
       best_params = %(best_params)s, applied = %(applied)s
 WHERE id = %(tuning_id)s;

-- name: tuning_apply_params
-- Merge the best trial's params into the model's.
UPDATE recsys.model
   SET params = recsys._check_params(params || %(params)s::jsonb), updated_at = now()
 WHERE id = %(model_id)s;
