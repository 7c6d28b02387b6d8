-- Named queries of recsys_db/datasets.py. Each starts with "-- name: datasets_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: datasets_create_schema
-- The demo schema: MovieLens ratings and movies.
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

-- name: datasets_copy_ratings
-- Ratings into the demo schema.
COPY {schema}.ratings (user_id, item_id, rating, rated_at) FROM STDIN;

-- name: datasets_copy_movies
-- Movies into the demo schema.
COPY {schema}.movies (item_id, title, year, genres) FROM STDIN;

-- name: datasets_finish_schema
-- Indexes, statistics and the materialized view of liked movies.
CREATE MATERIALIZED VIEW {schema}.liked AS
SELECT user_id, item_id, rating, rated_at FROM {schema}.ratings WHERE rating >= 4;
CREATE UNIQUE INDEX ON {schema}.liked (user_id, item_id, rated_at);
ANALYZE {schema}.ratings;
ANALYZE {schema}.movies;

-- name: datasets_schema_comment
-- The comment of a schema, which tells whether the demo created it (no row: no such schema).
SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %(schema)s;

-- name: datasets_drop_schema
-- The demo's own schema from an earlier run.
DROP SCHEMA {schema} CASCADE;

-- name: datasets_mark_schema
-- Marks the schema as the demo's, so that a later run may replace it.
COMMENT ON SCHEMA {schema} IS {marker};
