-- Named queries of recsys_db/access.py. Each starts with "-- name: access_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: access_check_source
-- No row when the relation does not exist; recsys._check_source raises unless the declarer
-- (NULL: unknown) may read the columns, and for catalogs, recsys's tables and temp tables.
SELECT recsys._check_source(
           c.oid::regclass,
           (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = %(declarer)s)::regrole,
           %(columns)s::text[])
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s;

-- name: access_session
-- The role this session runs as, its role setting (restored afterwards), the login, whether
-- the login and the declarer are superusers (NULL: no such declarer), and both names as SQL
-- writes them (for hints).
SELECT current_user::text, current_setting('role'), session_user::text,
       (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user),
       (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = %(declarer)s),
       quote_ident(session_user), quote_ident(%(declarer)s);

-- name: access_grant_temp
-- {table} is one of the worker's own temp tables, {privileges} a fixed list (source.py)
GRANT {privileges} ON TABLE pg_temp.{table} TO {role};

-- name: access_set_role
-- Become the declarer for the rest of the transaction.
SET LOCAL ROLE {role};

-- name: access_current_role
-- The role statements run as now.
SELECT current_user::text;

-- name: access_leave
-- The role the statements ended as (evaluated first), then the role the session had before,
-- set for the session: a source's function may have set one for the session too.
SELECT current_user::text, set_config('role', %(role)s, false);
