-- Queries of install and uninstall.

-- name: install_vector_exists
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector');

-- name: install_remember_extension
INSERT INTO recsys.meta (key, value) VALUES ('created_extension', 'vector')
ON CONFLICT (key) DO NOTHING;

-- name: uninstall_state
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
DROP SCHEMA recsys CASCADE;

-- name: uninstall_recsys_roles
SELECT rolname FROM pg_roles r
 WHERE rolname IN ('recsys_worker', 'recsys_reader')
   AND shobj_description(r.oid, 'pg_authid') LIKE 'created by recsys-db%'
 ORDER BY rolname DESC;

-- name: install_has_revision_table
SELECT to_regclass('recsys.alembic_version') IS NOT NULL;

-- name: install_current_revision
SELECT version_num FROM recsys.alembic_version;
