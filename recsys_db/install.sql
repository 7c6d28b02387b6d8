-- Named queries of recsys_db/install.py. Each starts with "-- name: install_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: install_server_versions
-- The server's version (number and name) and pgvector's: installed here, and on the server.
SELECT current_setting('server_version_num')::integer, current_setting('server_version'),
       (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'),
       (SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'vector');

-- name: install_remember_extension
-- Remember that install created the vector extension (uninstall drops it).
INSERT INTO recsys.meta (key, value) VALUES ('created_extension', 'vector')
ON CONFLICT (key) DO NOTHING;

-- name: uninstall_state
-- Whether install created the vector extension, and its schema.
SELECT (SELECT value FROM recsys.meta WHERE key = 'created_extension') AS created_extension,
       (SELECT extnamespace::regnamespace::text FROM pg_extension
         WHERE extname = 'vector') AS vector_schema;

-- name: uninstall_dependents
-- Views and materialized views outside schema recsys that use a recsys function, table or view.
SELECT DISTINCT v.oid::regclass::text AS dependent
  FROM pg_depend d
  JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
  JOIN pg_class v ON v.oid = r.ev_class
 WHERE v.relnamespace <> 'recsys'::regnamespace
   AND ((d.refclassid = 'pg_proc'::regclass
         AND d.refobjid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'recsys'::regnamespace))
     OR (d.refclassid = 'pg_class'::regclass
         AND d.refobjid IN (SELECT oid FROM pg_class WHERE relnamespace = 'recsys'::regnamespace)))
 ORDER BY 1;

-- name: uninstall_drop_schema
-- Schema recsys and everything in it.
DROP SCHEMA recsys CASCADE;

-- name: uninstall_recsys_roles
-- The recsys roles that exist.
SELECT rolname FROM pg_roles r
 WHERE rolname IN ('recsys_worker', 'recsys_reader', 'recsys_owner', 'recsys_modeler')
   AND shobj_description(r.oid, 'pg_authid') LIKE 'created by recsys-db%'
 ORDER BY rolname DESC;

-- name: install_has_revision_table
-- Whether alembic has recorded a revision yet.
SELECT to_regclass('recsys.alembic_version') IS NOT NULL;

-- name: install_current_revision
-- The alembic revision the database's tables are at.
SELECT version_num FROM recsys.alembic_version;

-- name: install_roles
-- The four roles (created when missing, if the installer may create roles; otherwise the
-- administrator's), checked: recsys_owner must be a plain NOLOGIN role, and no group may act
-- as it. An installer that is not a superuser must be a member of recsys_owner (install makes
-- it one when it may: PostgreSQL 16 gives a role's creator ADMIN on it).
DO $roles$
DECLARE
    me constant name := current_user;
    may_create constant boolean := (SELECT r.rolcreaterole OR r.rolsuper
                                      FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
    is_super constant boolean := (SELECT r.rolsuper FROM pg_catalog.pg_roles r
                                   WHERE r.rolname = current_user);
    purpose constant jsonb := jsonb_build_object(
        'recsys_owner', 'owns schema recsys (never logs in)',
        'recsys_reader', 'calls recsys serving functions',
        'recsys_modeler', 'declares recsys models',
        'recsys_worker', 'trains recsys models');
    setup constant text := 'CREATE ROLE recsys_owner NOLOGIN; CREATE ROLE recsys_reader NOLOGIN; '
        'CREATE ROLE recsys_modeler NOLOGIN; CREATE ROLE recsys_worker NOLOGIN IN ROLE '
        'recsys_reader; GRANT recsys_owner TO ' || quote_ident(current_user);
    r text;
    found_roles text;
BEGIN
    FOREACH r IN ARRAY ARRAY['recsys_owner', 'recsys_reader', 'recsys_modeler', 'recsys_worker']
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r);
        IF NOT may_create THEN
            RAISE EXCEPTION 'role % does not exist and % may not create roles', r, quote_ident(me)
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'have an administrator run: ' || setup;
        END IF;
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXECUTE format('COMMENT ON ROLE %I IS %L', r, 'created by recsys-db: ' || (purpose ->> r));
    END LOOP;
    IF NOT pg_catalog.pg_has_role('recsys_worker', 'recsys_reader', 'MEMBER') THEN
        GRANT recsys_reader TO recsys_worker;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                WHERE rolname = 'recsys_owner'
                  AND (rolsuper OR rolcanlogin OR rolcreaterole OR rolcreatedb OR rolbypassrls
                       OR rolreplication)) THEN
        RAISE EXCEPTION 'role recsys_owner must be NOLOGIN, without SUPERUSER, CREATEROLE, '
                        'CREATEDB, BYPASSRLS or REPLICATION'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'it owns the SECURITY DEFINER functions of recsys: ALTER ROLE '
                         'recsys_owner NOLOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS '
                         'NOREPLICATION';
    END IF;
    SELECT string_agg(quote_ident(g.rolname), ', ' ORDER BY g.rolname) INTO found_roles
      FROM pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles g ON g.oid = a.roleid
     WHERE a.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'recsys_owner');
    IF found_roles IS NOT NULL THEN
        RAISE EXCEPTION 'role recsys_owner must not be a member of other roles; it is one of %',
            found_roles
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'its functions would run with those roles'' rights: REVOKE them from it';
    END IF;
    SELECT string_agg(g, ', ' ORDER BY g) INTO found_roles
      FROM unnest(ARRAY['recsys_reader', 'recsys_modeler', 'recsys_worker']) g
     WHERE pg_catalog.pg_has_role(g, 'recsys_owner', 'MEMBER')
        OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = g);
    IF found_roles IS NOT NULL THEN
        RAISE EXCEPTION 'roles % must not be superusers nor members of recsys_owner', found_roles
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT is_super AND NOT pg_catalog.pg_has_role(me, 'recsys_owner', 'USAGE') THEN
        BEGIN
            GRANT recsys_owner TO CURRENT_USER;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role % is not a member of recsys_owner and may not make itself one',
                quote_ident(me)
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'have an administrator run: GRANT recsys_owner TO '
                             || quote_ident(me);
        END;
    END IF;
END
$roles$;

-- name: install_schema
-- Schema recsys, owned by the NOLOGIN role recsys_owner.
CREATE SCHEMA IF NOT EXISTS recsys AUTHORIZATION recsys_owner;
ALTER SCHEMA recsys OWNER TO recsys_owner;

-- name: install_vector_schema
-- The vector extension's schema: oid, name and name as SQL writes it.
SELECT e.extnamespace::oid, n.nspname, quote_ident(n.nspname) FROM pg_catalog.pg_extension e
  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'vector';

-- name: install_schema_writers
-- Roles other than the installer, superusers and the database's owner that may create objects
-- in the schema holding extension vector (PUBLIC as 'PUBLIC').
WITH s AS (
    SELECT oid, nspowner, nspacl FROM pg_catalog.pg_namespace WHERE oid = %(schema)s
), writers AS (
    SELECT nspowner AS role FROM s
    UNION
    SELECT a.grantee FROM s, aclexplode(coalesce(s.nspacl, acldefault('n', s.nspowner))) a
     WHERE a.privilege_type = 'CREATE'
)
SELECT CASE WHEN w.role = 0 THEN 'PUBLIC' ELSE w.role::regrole::text END
  FROM writers w
 WHERE w.role = 0
    OR NOT (w.role = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
            OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = w.role AND r.rolsuper)
            OR w.role = (SELECT d.datdba FROM pg_catalog.pg_database d
                          WHERE d.datname = current_database())
            OR w.role = to_regrole('pg_database_owner'))
 ORDER BY 1;

-- name: install_is_installed
-- Whether schema recsys holds its registry.
SELECT to_regclass('recsys.model') IS NOT NULL;

-- name: install_pin_search_path
-- The rest of the transaction runs with the search_path of every recsys function.
SELECT set_config('search_path', %(path)s, true);

-- name: install_lock
-- One install or upgrade at a time (the session-level advisory lock install holds).
SELECT pg_advisory_lock(%(key)s);

-- name: install_unlock
-- Release install's advisory lock.
SELECT pg_advisory_unlock(%(key)s);

-- name: install_create_vector
-- The pgvector extension (install checked it is not there yet).
CREATE EXTENSION vector;

-- name: install_iterative_scan
-- pgvector 0.8+: the live search reads on in the hnsw graph past the items it skips.
ALTER FUNCTION recsys._top_items(recsys.model_version, {vector}.vector, integer[], integer)
    SET hnsw.iterative_scan = 'relaxed_order';

-- name: install_sql_hash
-- The fingerprint of the SQL files last applied (install re-applies them when it changes).
SELECT value FROM recsys.meta WHERE key = 'sql_hash';

-- name: install_set_sql_hash
-- Remember the fingerprint of the SQL files just applied.
INSERT INTO recsys.meta (key, value) VALUES ('sql_hash', %(hash)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: install_load_vector
-- Loads pgvector's library in this session before the SQL files use its types.
SELECT '[1]'::{vector};

-- name: uninstall_revoke_vector
-- Take back what install granted a recsys role on the vector extension's schema.
REVOKE ALL ON SCHEMA {schema} FROM {role};

-- name: uninstall_drop_vector
-- The vector extension, when install created it and nothing else uses it.
DROP EXTENSION vector RESTRICT;

-- name: uninstall_drop_role
-- A recsys role, when no other database uses it.
DROP ROLE {role};
