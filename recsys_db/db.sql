-- Named queries of recsys_db/db.py. Each starts with "-- name: db_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: db_vector_schema
-- The schema the vector extension is installed in.
SELECT n.nspname FROM pg_catalog.pg_extension e
  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'vector';

-- name: db_connection_check
-- How often the server checks that the client is still there during a long query (PG 14+).
SELECT set_config('client_connection_check_interval', %(interval)s, false);

-- name: db_pin_search_path
-- A pinned session names everything outside pg_catalog with its schema.
SELECT set_config('search_path', %(path)s, false);

-- name: db_read_only
-- Whether the server is a standby in recovery, and whether this session's transactions are
-- read-only (on a standby they always are).
SELECT pg_catalog.pg_is_in_recovery(),
       pg_catalog.current_setting('transaction_read_only')::boolean;
