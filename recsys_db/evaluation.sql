-- Named queries of recsys_db/evaluation.py. Each starts with "-- name: evaluation_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: evaluation_copy_times
-- {user} and {item} are the keys in the maps' `native` type (integers stay integers).
COPY (SELECT u.idx, i.idx, max({time})
        FROM {source} s
        JOIN recsys_user_map u ON u.native = {user}
        JOIN recsys_item_map i ON i.native = {item}
       WHERE {time} IS NOT NULL
       GROUP BY u.idx, i.idx)
  TO STDOUT (FORMAT BINARY);

-- name: evaluation_insert
-- A run's evaluation: split, k, sizes and the gate's verdict.
INSERT INTO recsys.evaluation (run_id, split, k, test_users, test_interactions,
                               train_interactions, gate, gate_passed)
VALUES (%(run_id)s, %(split)s, %(k)s, %(test_users)s, %(test_interactions)s,
        %(train_interactions)s, %(gate)s, %(gate_passed)s);

-- name: evaluation_insert_metrics
-- A run's metric values, one row per recommender and metric.
INSERT INTO recsys.metric (run_id, recommender, metric, value)
SELECT %(run_id)s, r.key, m.key, m.value::double precision
  FROM jsonb_each(%(metrics)s::jsonb) r, jsonb_each_text(r.value) m;
