-- Named queries of recsys_db/store.py. Each starts with "-- name: store_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: store_create_stage_tables
-- {vector} is pgvector's type named with its schema (the worker's session may be pinned).
CREATE TEMP TABLE recsys_stage_users (idx integer, factors {vector}({dims}), seen integer[]);
CREATE TEMP TABLE recsys_stage_items (idx integer, factors {vector}({dims}), popularity integer);

-- name: store_create_version_tables
-- The version's empty factor tables (recsys creates them, as their owner).
SELECT recsys._create_version_tables(%(model_id)s, %(version)s);

-- name: store_fill_user_table
-- The version's users: key from the user map, factors and seen items.
INSERT INTO {table} (idx, key, factors, seen)
SELECT m.idx, m.key, s.factors, s.seen
  FROM recsys_user_map m JOIN recsys_stage_users s ON s.idx = m.idx
 ORDER BY m.idx;

-- name: store_fill_item_table
-- The version's items: key from the item map, factors and popularity.
INSERT INTO {table} (idx, key, factors, popularity)
SELECT m.idx, m.key, s.factors, s.popularity
  FROM recsys_item_map m JOIN recsys_stage_items s ON s.idx = m.idx
 ORDER BY m.idx;

-- name: store_seal_version_tables
-- primary key on idx, unique key, statistics
SELECT recsys._seal_version_tables(%(model_id)s, %(version)s);

-- name: store_drop_version_tables
-- never the active version's; waits for locks as long as the caller's lock_timeout allows
SELECT recsys._drop_version_tables(%(model_id)s, %(version)s);

-- name: store_next_version
-- Allocate the model's next version number, building.
INSERT INTO recsys.model_version (model_id, version, run_id, factors, user_table, item_table, params)
SELECT %(model_id)s, v, %(run_id)s, %(factors)s,
       format('m%%s_v%%s_users', %(model_id)s, v), format('m%%s_v%%s_items', %(model_id)s, v),
       %(params)s
  FROM (SELECT coalesce(max(version), 0) + 1 AS v
          FROM recsys.model_version WHERE model_id = %(model_id)s) next
RETURNING version, user_table, item_table;

-- name: store_copy_stage_users
-- User vectors and seen items into the stage table, binary.
COPY recsys_stage_users (idx, factors, seen) FROM STDIN (FORMAT BINARY);

-- name: store_copy_stage_items
-- Item vectors and popularity into the stage table, binary.
COPY recsys_stage_items (idx, factors, popularity) FROM STDIN (FORMAT BINARY);

-- name: store_drop_stage_tables
-- The stage tables.
DROP TABLE IF EXISTS recsys_stage_users, recsys_stage_items;

-- name: store_lock_model
-- Lock the model's row; returns its active version.
SELECT active_version FROM recsys.model WHERE id = %(model_id)s FOR UPDATE;

-- name: store_mark_version
-- Set a version's status and counts.
UPDATE recsys.model_version
   SET status = %(status)s, users = %(users)s, items = %(items)s, nnz = %(nnz)s
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: store_activate_version
-- Make the version the model's active one.
UPDATE recsys.model SET active_version = %(version)s, updated_at = now() WHERE id = %(model_id)s;

-- name: store_expired_versions
-- Versions beyond retention whose retirement is older than every open transaction of this
-- database (one that started before could still see them as active); the rest wait.
SELECT version, user_table, item_table FROM (
    SELECT version, user_table, item_table, retired_at FROM recsys.model_version
     WHERE model_id = %(model_id)s AND status = 'ready' AND version <> %(active)s
     ORDER BY version DESC OFFSET %(keep)s - 1) beyond
 WHERE retired_at IS NULL
    OR retired_at < (SELECT coalesce(min(xact_start), 'infinity') FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid());

-- name: store_drop_lock_timeout
-- Dropping an old version waits for no reader.
SET LOCAL lock_timeout = '200ms';

-- name: store_mark_dropped
-- A dropped version: status dropped, its item weights, item content and feature maps gone.
WITH weights AS (
    DELETE FROM recsys.version_item_weight
     WHERE model_id = %(model_id)s AND version = %(version)s
), content AS (
    DELETE FROM recsys.item_content WHERE model_id = %(model_id)s AND version = %(version)s
), maps AS (
    DELETE FROM recsys.feature_map WHERE model_id = %(model_id)s AND version = %(version)s
)
UPDATE recsys.model_version SET status = 'dropped'
 WHERE model_id = %(model_id)s AND version = %(version)s;

-- name: store_copy_item_weight
-- One row: the version's summed raw weight per item index (bm25 weights of SQL fold-in,
-- recsys._confidences).
COPY recsys.version_item_weight (model_id, version, item_weight) FROM STDIN (FORMAT BINARY);

-- name: store_forget_content
-- What a failed run stored of its version's content: feature maps and item content.
WITH content AS (
    DELETE FROM recsys.item_content WHERE model_id = %(model_id)s AND version = %(version)s
)
DELETE FROM recsys.feature_map WHERE model_id = %(model_id)s AND version = %(version)s;
