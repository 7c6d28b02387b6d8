-- Named queries of recsys_db/worker.py. Each starts with "-- name: worker_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: worker_listen
-- Wake up on recsys.request_refresh's notifications.
LISTEN recsys_refresh;
