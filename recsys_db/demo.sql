-- Named queries of recsys_db/demo.py. Each starts with "-- name: demo_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: demo_user_history
-- What the demo user rated highest.
SELECT m.title, r.rating
  FROM movielens.ratings r JOIN movielens.movies m USING (item_id)
 WHERE r.user_id = %(user)s::integer AND r.rating >= 4
 ORDER BY r.rating DESC, r.rated_at DESC
 LIMIT 5;

-- name: demo_recommend
-- The demo's recommendations, as the demo prints the SQL.
SELECT r.rank, m.title, round(r.score::numeric, 3) AS score, r.reason
  FROM recsys.recommend('movielens', %(user)s, k => 10) r
  JOIN movielens.movies m ON m.item_id::text = r.item_key
 ORDER BY r.rank;

-- name: demo_similar
-- Movies similar to the demo movie, as the demo prints the SQL.
SELECT s.rank, m.title, round(s.score::numeric, 3) AS similarity
  FROM recsys.similar_items('movielens', %(item)s, k => 10) s
  JOIN movielens.movies m ON m.item_id::text = s.item_key
 ORDER BY s.rank;

-- name: demo_title
-- A movie's title.
SELECT title FROM movielens.movies WHERE item_id = %(item)s::integer;

-- name: demo_metrics
-- The holdout metrics of the demo's run, model and baseline side by side.
SELECT metric,
       round(max(value) FILTER (WHERE recommender = 'als')::numeric, 3) AS als,
       round(max(value) FILTER (WHERE recommender = 'popular')::numeric, 3) AS popular
  FROM recsys.metrics
 WHERE run_id = %(run)s AND metric IN ('precision', 'recall', 'ndcg', 'coverage')
 GROUP BY metric ORDER BY metric;

-- name: demo_drop_model
-- The demo's model from an earlier run, if any.
SELECT recsys.drop_model(name) FROM recsys.model WHERE name = %(name)s;
