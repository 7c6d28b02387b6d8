-- Named queries of recsys_db/api.py. Each starts with "-- name: api_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: api_create_model
-- Register a model (recsys.create_model).
SELECT recsys.create_model(
    %(name)s, %(source)s::regclass, %(user_column)s, %(item_column)s,
    weight_column => %(weight_column)s, event_column => %(event_column)s,
    event_weights => %(event_weights)s::jsonb, time_column => %(time_column)s,
    params => %(params)s::jsonb, refresh_every => %(refresh_every)s::interval);

-- name: api_drop_model
-- Drop a model with its versions and tables (recsys.drop_model).
SELECT recsys.drop_model(%(name)s);

-- name: api_models
-- Every model with its configuration, active version and last run.
SELECT * FROM recsys.models ORDER BY name;

-- name: api_runs
-- The newest runs, of one model (NULL: of all), newest first.
SELECT * FROM recsys.runs
 WHERE %(model)s::text IS NULL OR model = %(model)s::text
 ORDER BY started_at DESC, run_id DESC LIMIT %(limit)s;

-- name: api_recommend
-- Top-k items for a user (recsys.recommend).
SELECT * FROM recsys.recommend(%(model)s, %(user)s, %(k)s, %(exclude_seen)s);

-- name: api_recommend_filtered
-- Top-k of the given candidate items for a user (recsys.recommend_filtered).
SELECT * FROM recsys.recommend_filtered(%(model)s, %(user)s, %(candidates)s::text[], %(k)s,
                                        %(exclude_seen)s);

-- name: api_recommend_for_items
-- Top-k items for an anonymous basket (recsys.recommend_for_items).
SELECT * FROM recsys.recommend_for_items(%(model)s, %(items)s::text[], %(k)s);

-- name: api_explain
-- The user's items that contribute most to an item's score (recsys.explain).
SELECT * FROM recsys.explain(%(model)s, %(user)s, %(item)s, %(k)s);

-- name: api_similar_items
-- Items most similar to an item (recsys.similar_items).
SELECT * FROM recsys.similar_items(%(model)s, %(item)s, %(k)s, %(content_weight)s);

-- name: api_similar_users
-- Users most similar to a user (recsys.similar_users).
SELECT * FROM recsys.similar_users(%(model)s, %(user)s, %(k)s);

-- name: api_interested_users
-- Users most likely to want an item (recsys.interested_users).
SELECT * FROM recsys.interested_users(%(model)s, %(item)s, %(k)s, %(exclude_seen)s);

-- name: api_popular
-- The most popular items (recsys.popular).
SELECT * FROM recsys.popular(%(model)s, %(k)s);

-- name: api_score
-- One user's score for one item (recsys.score).
SELECT recsys.score(%(model)s, %(user)s, %(item)s);
