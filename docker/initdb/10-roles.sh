#!/bin/sh
# Least-privilege roles for recsys-db. The postgres image runs this once, when the db volume is
# first initialized; on an existing volume run it yourself:
#   docker compose exec db /docker-entrypoint-initdb.d/10-roles.sh
#
#   recsys_owner, recsys_reader, recsys_modeler, recsys_worker  the groups `recsys-db install`
#       grants to (it creates them itself when missing; here they exist before it runs)
#   recsys_app  the worker's login: trains and refreshes, creates no objects, reads no source
#       of its own; it may SET ROLE analytics (without inheriting its rights) to read a source
#   analytics   declares models (NOLOGIN: SET ROLE analytics from your own login) and is the
#       role sources are read as: GRANT SELECT ON <source> TO analytics
#   metabase    Metabase's login: serving functions and views only
#
# Passwords come from WORKER_PASSWORD and METABASE_PASSWORD (see compose.yaml); psql quotes
# them (%L), so they may hold any character.
set -eu

psql -v ON_ERROR_STOP=1 --no-password --single-transaction \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v worker_password="$WORKER_PASSWORD" -v metabase_password="$METABASE_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', r)
  FROM unnest(ARRAY['recsys_owner', 'recsys_reader', 'recsys_modeler', 'recsys_worker',
                    'analytics']) r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec
GRANT recsys_reader TO recsys_worker;
GRANT recsys_modeler TO analytics;

SELECT format('CREATE ROLE recsys_app LOGIN PASSWORD %L', :'worker_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recsys_app')
\gexec
SELECT format('CREATE ROLE metabase LOGIN PASSWORD %L', :'metabase_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'metabase')
\gexec
GRANT recsys_worker TO recsys_app;
GRANT recsys_reader TO metabase;
-- the worker reads each source as the role that declared its model, and nothing more
GRANT analytics TO recsys_app WITH INHERIT FALSE, SET TRUE;
SQL
