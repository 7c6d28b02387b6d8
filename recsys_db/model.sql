-- Named queries of recsys_db/model.py. Each starts with "-- name: model_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: model_effective_params
-- Stored params merged over the defaults and validated (recsys._check_params).
SELECT recsys._check_params(%(params)s::jsonb);

-- name: model_by_name
-- declarer: the name of the role that declared the model; NULL when that role is gone
SELECT m.id, m.name, m.source_schema, m.source_table, m.user_column, m.item_column,
       m.weight_column, m.event_column, m.event_weights, m.time_column, m.params,
       m.refresh_every, m.active_version, r.rolname::text AS declarer
  FROM recsys.model m LEFT JOIN pg_catalog.pg_roles r ON r.oid = m.declarer::oid
 WHERE m.name = %(name)s;
