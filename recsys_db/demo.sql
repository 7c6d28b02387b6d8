-- Queries of the demo (`recsys-db demo`). The recommend/similar ones are printed as shown.

-- name: demo_create_schema
CREATE SCHEMA {schema};
CREATE TABLE {schema}.ratings (
    user_id  integer NOT NULL,
    item_id  integer NOT NULL,
    rating   smallint NOT NULL,
    rated_at timestamptz NOT NULL
);
CREATE TABLE {schema}.movies (
    item_id integer PRIMARY KEY,
    title   text NOT NULL,
    year    integer,
    genres  text[] NOT NULL
);

-- name: demo_copy_ratings
COPY {schema}.ratings (user_id, item_id, rating, rated_at) FROM STDIN;

-- name: demo_copy_movies
COPY {schema}.movies (item_id, title, year, genres) FROM STDIN;

-- name: demo_finish_schema
CREATE MATERIALIZED VIEW {schema}.liked AS
SELECT user_id, item_id, rating, rated_at FROM {schema}.ratings WHERE rating >= 4;
CREATE UNIQUE INDEX ON {schema}.liked (user_id, item_id, rated_at);
ANALYZE {schema}.ratings;
ANALYZE {schema}.movies;

-- name: demo_user_history
SELECT m.title, r.rating
  FROM movielens.ratings r JOIN movielens.movies m USING (item_id)
 WHERE r.user_id = %(user)s::integer AND r.rating >= 4
 ORDER BY r.rating DESC, r.rated_at DESC
 LIMIT 5;

-- name: demo_recommend
SELECT r.rank, m.title, round(r.score::numeric, 3) AS score, r.reason
  FROM recsys.recommend('movielens', %(user)s, k => 10) r
  JOIN movielens.movies m ON m.item_id::text = r.item_key
 ORDER BY r.rank;

-- name: demo_similar
SELECT s.rank, m.title, round(s.score::numeric, 3) AS similarity
  FROM recsys.similar_items('movielens', %(item)s, k => 10) s
  JOIN movielens.movies m ON m.item_id::text = s.item_key
 ORDER BY s.rank;

-- name: demo_title
SELECT title FROM movielens.movies WHERE item_id = %(item)s::integer;

-- name: demo_metrics
SELECT metric,
       round(max(value) FILTER (WHERE recommender = 'als')::numeric, 3) AS als,
       round(max(value) FILTER (WHERE recommender = 'popular')::numeric, 3) AS popular
  FROM recsys.metrics
 WHERE run_id = %(run)s AND metric IN ('precision', 'recall', 'ndcg', 'coverage')
 GROUP BY metric ORDER BY metric;
