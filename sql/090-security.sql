-- Least privilege. Runs last on every install, after every function exists.
--
-- recsys_reader: for BI tools and applications. Calls the serving functions and reads the
--   views; cannot create, change, train or drop models, and sees no source table through
--   recsys (the serving functions only read factor tables).
-- recsys_worker: for `recsys-db train` / `recsys-db worker`. Writes the registry and creates
--   factor tables in schema recsys. It must also be granted SELECT on each model's source
--   (and own a materialized view source to refresh it) by the source's owner.
--
-- Serving functions run as their owner (SECURITY DEFINER) with search_path pinned to the
-- pgvector schema and pg_catalog, so callers need no rights on the factor tables and cannot
-- redirect what the functions resolve.

DO $security$
DECLARE
    vector_schema text := (SELECT extnamespace::regnamespace::text
                             FROM pg_extension WHERE extname = 'vector');
    serving constant text[] := ARRAY['recommend', 'similar_items', 'similar_users',
                                     'interested_users', 'popular', 'score',
                                     'recommend_for_items', 'recommend_filtered', 'explain'];
    internal constant text[] := ARRAY['_model', '_active_version', '_check_k', '_shell_quote'];
    -- recsys.als builds and checks a params jsonb: pure functions, no table access
    param_checks constant text[] := ARRAY['_check_params', '_check_quality_params',
                                          '_default_params', '_metric_names', '_number_params',
                                          '_number_text', '_check_number', '_check_number_param'];
    fn regprocedure;
    rel regclass;
    can_create_roles boolean := (SELECT rolcreaterole OR rolsuper FROM pg_roles
                                  WHERE rolname = current_user);
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
               WHERE p.pronamespace = 'recsys'::regnamespace AND p.proname = ANY (serving)
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %s, pg_catalog, pg_temp',
                       fn, vector_schema);
    END LOOP;
    FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
               WHERE p.pronamespace = 'recsys'::regnamespace
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;

    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recsys_reader') THEN
        IF NOT can_create_roles THEN
            RAISE NOTICE 'roles recsys_reader and recsys_worker not created: % lacks CREATEROLE',
                current_user;
            RETURN;
        END IF;
        CREATE ROLE recsys_reader NOLOGIN;
        COMMENT ON ROLE recsys_reader IS 'created by recsys-db: calls recsys serving functions';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recsys_worker') THEN
        IF NOT can_create_roles THEN
            RAISE NOTICE 'role recsys_worker not created: % lacks CREATEROLE', current_user;
            RETURN;
        END IF;
        CREATE ROLE recsys_worker NOLOGIN IN ROLE recsys_reader;
        COMMENT ON ROLE recsys_worker IS 'created by recsys-db: trains recsys models';
    END IF;

    GRANT USAGE ON SCHEMA recsys TO recsys_reader;
    EXECUTE format('GRANT USAGE ON SCHEMA %s TO recsys_reader', vector_schema);
    FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
               WHERE p.pronamespace = 'recsys'::regnamespace
                 AND p.proname = ANY (serving || internal || param_checks || ARRAY['als'])
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO recsys_reader', fn);
    END LOOP;
    FOR rel IN SELECT c.oid::regclass FROM pg_class c
                WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind = 'v'
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO recsys_reader', rel);
    END LOOP;

    -- Precomputed rows live in per-version partitions that training attaches; attaching needs
    -- ownership of the partitioned parent, so the worker owns those two (the installer keeps
    -- reading them through the views).
    FOR rel IN SELECT c.oid::regclass FROM pg_class c
                WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind = 'p'
                  AND c.relowner <> 'recsys_worker'::regrole
    LOOP
        BEGIN
            EXECUTE format('GRANT ALL ON %s TO %I', rel, current_user);
            EXECUTE format('ALTER TABLE %s OWNER TO recsys_worker', rel);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE '% stays owned by %: only its owner can store precomputed rows',
                rel, current_user
                USING HINT = 'run install as a superuser, or GRANT recsys_worker TO the installer';
        END;
    END LOOP;
    GRANT USAGE, CREATE ON SCHEMA recsys TO recsys_worker;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA recsys TO recsys_worker;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA recsys TO recsys_worker;
    FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
               WHERE p.pronamespace = 'recsys'::regnamespace
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO recsys_worker', fn);
    END LOOP;
END
$security$;
