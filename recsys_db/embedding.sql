-- Named queries of recsys_db/embedding.py. Each starts with "-- name: embedding_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: embedding_cached
-- Embeddings made before with a model, by SHA-256 of their text.
SELECT text_sha256, embedding FROM recsys.embedding
 WHERE embedding_model = %(model)s AND text_sha256 = ANY (%(keys)s);

-- name: embedding_create_stage
-- New embeddings on their way into the cache.
CREATE TEMP TABLE recsys_stage_embedding (text_sha256 bytea, embedding {vector}) ON COMMIT DROP;

-- name: embedding_copy_stage
-- New embeddings: SHA-256 of the text and the vector.
COPY recsys_stage_embedding (text_sha256, embedding) FROM STDIN;

-- name: embedding_store
-- New embeddings into the cache; one another worker stored meanwhile wins.
INSERT INTO recsys.embedding (embedding_model, text_sha256, embedding)
SELECT %(model)s, text_sha256, embedding FROM recsys_stage_embedding
 ORDER BY text_sha256  -- one order for every worker: two inserting the same texts cannot deadlock
    ON CONFLICT DO NOTHING;
