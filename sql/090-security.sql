-- Least privilege. Runs last on every install (after every function exists), as the installer,
-- which is a superuser or a member of recsys_owner. Install has created the roles (or found
-- them created by an administrator) and made recsys_owner the owner of schema recsys.
--
-- recsys_owner (NOLOGIN, no superuser): owns schema recsys and everything in it, including
--   every factor table and partition created later (through the storage functions of
--   010-storage.sql, which run as it). Holds no right outside recsys: it reads no source.
-- recsys_reader: for BI tools and applications. Calls the serving functions and reads the
--   views; sees no source table through recsys (recsys.explain reads the source with its
--   caller's own rights).
-- recsys_modeler: declares models (recsys.create_model runs with its caller's rights, and the
--   caller becomes the model's declarer, whose rights every read of the source has) and
--   manages the models its members declared.
-- recsys_worker (member of recsys_reader): for `recsys-db train` / `recsys-db worker`. Writes
--   runs, jobs and model data through column grants that a trigger re-validates, and creates
--   or drops relations only through the storage functions; no CREATE on schema recsys.
--
-- Every function has search_path pinned to pg_catalog, then pg_temp (last: relations and types
-- are looked up there only after pg_catalog, functions and operators never): no schema that
-- anyone else may write is on it, and every pgvector object is named with its schema.

DO $security$
DECLARE
    -- SECURITY DEFINER functions and who may call them; every other function runs with its
    -- caller's rights (SECURITY INVOKER) and may be called by all three groups
    for_reader constant text[] := ARRAY['recommend', 'similar_items', 'similar_users',
                                        'interested_users', 'popular', 'score',
                                        'recommend_for_items', 'recommend_filtered',
                                        '_history_sql', '_explain_scores'];
    for_modeler constant text[] := ARRAY['drop_model', 'rollback', 'request_refresh',
                                         'set_features', 'drop_features', 'alter_model',
                                         'create_ranker', 'drop_ranker'];
    for_worker constant text[] := ARRAY['_create_version_tables', '_seal_version_tables',
                                        '_create_hnsw', '_drop_hnsw', '_drop_version_tables',
                                        '_create_partition', '_attach_partition',
                                        '_drop_partitions', '_prune_history'];
    -- trigger functions: no one calls them
    for_no_one constant text[] := ARRAY['_track_active_version', '_record_model_change'];
    definers constant text[] := for_reader || for_modeler || for_worker || for_no_one;
    -- invoker functions only the modeler calls (the declaration itself)
    modeler_only constant text[] := ARRAY['create_model'];
    groups constant text := 'recsys_reader, recsys_worker, recsys_modeler';
    owner_oid constant oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'recsys_owner');
    vector_schema constant name := (SELECT n.nspname FROM pg_catalog.pg_extension e
                                      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                                     WHERE e.extname = 'vector');
    missing text;
    obj record;
BEGIN
    SELECT string_agg(d, ', ') INTO missing FROM unnest(definers || modeler_only) d
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                        WHERE p.pronamespace = 'recsys'::regnamespace AND p.proname = d);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION '090-security.sql names functions that do not exist: %', missing;
    END IF;

    -- 1. recsys_owner owns the schema and everything in it (legacy objects of the installer,
    --    of a superuser or of recsys_worker are taken over)
    ALTER SCHEMA recsys OWNER TO recsys_owner;
    FOR obj IN SELECT c.oid::regclass AS name, c.relkind, c.relowner FROM pg_catalog.pg_class c
                WHERE c.relnamespace = 'recsys'::regnamespace
                  AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relowner <> owner_oid
                ORDER BY c.relispartition, c.oid
    LOOP
        IF NOT pg_catalog.pg_has_role(current_user, obj.relowner, 'USAGE') THEN
            RAISE EXCEPTION 'cannot take over % (owned by %)', obj.name, obj.relowner::regrole
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('run recsys-db install once as a superuser, or GRANT %s TO %s',
                                    obj.relowner::regrole, quote_ident(current_user));
        END IF;
        EXECUTE format('ALTER %s %s OWNER TO recsys_owner',
                       CASE obj.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                       obj.name);
    END LOOP;
    -- identity sequences followed their tables; any other sequence
    FOR obj IN SELECT c.oid::regclass AS name, c.relowner FROM pg_catalog.pg_class c
                WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind = 'S'
                  AND c.relowner <> owner_oid
    LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO recsys_owner', obj.name);
    END LOOP;
    FOR obj IN SELECT p.oid::regprocedure AS name, p.proowner FROM pg_catalog.pg_proc p
                WHERE p.pronamespace = 'recsys'::regnamespace AND p.proowner <> owner_oid
    LOOP
        IF NOT pg_catalog.pg_has_role(current_user, obj.proowner, 'USAGE') THEN
            RAISE EXCEPTION 'cannot take over % (owned by %)', obj.name, obj.proowner::regrole
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('run recsys-db install once as a superuser, or GRANT %s TO %s',
                                    obj.proowner::regrole, quote_ident(current_user));
        END IF;
        EXECUTE format('ALTER ROUTINE %s OWNER TO recsys_owner', obj.name);
    END LOOP;
    FOR obj IN SELECT t.oid::regtype AS name FROM pg_catalog.pg_type t
                WHERE t.typnamespace = 'recsys'::regnamespace AND t.typowner <> owner_oid
                  AND t.typtype IN ('d', 'e', 'r', 'm')
    LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO recsys_owner', obj.name);
    END LOOP;

    -- 2. every function: pinned search_path; SECURITY DEFINER only for the lists above
    --    (CREATE OR REPLACE resets both, so this runs on every apply)
    FOR obj IN SELECT p.oid::regprocedure AS name, p.proname FROM pg_catalog.pg_proc p
                WHERE p.pronamespace = 'recsys'::regnamespace AND p.prokind = 'f'
    LOOP
        EXECUTE format('ALTER FUNCTION %s %s SET search_path = pg_catalog, pg_temp', obj.name,
                       CASE WHEN obj.proname = ANY (definers) THEN 'SECURITY DEFINER'
                            ELSE 'SECURITY INVOKER' END);
    END LOOP;

    -- 3. privileges: none for PUBLIC; the three groups get exactly these
    REVOKE ALL ON SCHEMA recsys FROM PUBLIC;
    EXECUTE 'REVOKE ALL ON SCHEMA recsys FROM ' || groups;
    -- no one but the owner creates anything in recsys, whoever granted it
    FOR obj IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_namespace n,
                      aclexplode(n.nspacl) a
                WHERE n.nspname = 'recsys' AND a.privilege_type = 'CREATE'
                  AND a.grantee <> n.nspowner
    LOOP
        EXECUTE format('REVOKE CREATE ON SCHEMA recsys FROM %s',
                       CASE WHEN obj.grantee = 0 THEN 'PUBLIC'
                            ELSE obj.grantee::regrole::text END);
    END LOOP;
    EXECUTE 'GRANT USAGE ON SCHEMA recsys TO ' || groups;
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA recsys FROM PUBLIC, ' || groups;
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA recsys FROM PUBLIC, ' || groups;
    EXECUTE 'REVOKE ALL ON ALL FUNCTIONS IN SCHEMA recsys FROM PUBLIC, ' || groups;

    FOR obj IN SELECT c.oid::regclass AS name FROM pg_catalog.pg_class c
                WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind IN ('v', 'm')
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO recsys_reader, recsys_modeler', obj.name);
    END LOOP;

    -- the modeler declares (recsys.create_model inserts as its caller); the trigger
    -- recsys._validate_model sets the declarer and checks the source
    GRANT SELECT ON recsys.model TO recsys_modeler;
    GRANT INSERT (name, source_schema, source_table, user_column, item_column, weight_column,
                  event_column, event_weights, time_column, params, refresh_every)
        ON recsys.model TO recsys_modeler;

    -- the worker: reads the registry, writes runs, jobs and model data; what it may change of
    -- a model or a version is re-validated (the trigger; the names' CHECK constraint)
    GRANT SELECT ON recsys.model, recsys.model_version, recsys.run, recsys.job, recsys.worker,
                    recsys.watermark, recsys.evaluation, recsys.metric, recsys.tuning,
                    recsys.version_basis, recsys.version_item_weight, recsys.model_feature,
                    recsys.meta, recsys.alembic_version, recsys.recommendation,
                    recsys.similar_item, recsys.ranker, recsys.ranker_version,
                    recsys.ranked_recommendation, recsys.embedding, recsys.feature_map,
                    recsys.item_content
        TO recsys_worker;
    GRANT UPDATE (active_version, updated_at, params) ON recsys.model TO recsys_worker;
    GRANT INSERT (model_id, version, run_id, factors, user_table, item_table, params)
        ON recsys.model_version TO recsys_worker;
    GRANT UPDATE (status, users, items, nnz, index_kind, index_ef_search, index_recall,
                  precomputed_k, index_ef_by_k, index_recall_by_k, index_head_by_k,
                  similar_k, ranked_k, content_items)
        ON recsys.model_version TO recsys_worker;
    GRANT INSERT, UPDATE ON recsys.run, recsys.job, recsys.tuning, recsys.watermark
        TO recsys_worker;
    GRANT INSERT, UPDATE, DELETE ON recsys.worker, recsys.version_item_weight, recsys.version_basis,
                                    recsys.item_content, recsys.feature_map
        TO recsys_worker;
    GRANT INSERT ON recsys.evaluation, recsys.metric, recsys.ranker_version, recsys.embedding
        TO recsys_worker;
    -- the tables of each version, as the storage functions grant them
    FOR obj IN SELECT c.oid::regclass AS name, c.relname FROM pg_catalog.pg_class c
                WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind = 'r'
                  AND c.relname ~ '^m[0-9]+_v[0-9]+_(users|items|recs|similar|ranked)$'
    LOOP
        EXECUTE format('GRANT %s ON %s TO recsys_worker',
                       CASE WHEN obj.relname ~ '_(users|items)$' THEN 'SELECT, INSERT, UPDATE'
                            ELSE 'SELECT, INSERT, DELETE' END,
                       obj.name);
    END LOOP;

    FOR obj IN SELECT p.oid::regprocedure AS name, p.proname, p.prorettype
                 FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'recsys'::regnamespace
    LOOP
        IF obj.proname = ANY (for_reader) THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO recsys_reader', obj.name);
        ELSIF obj.proname = ANY (for_modeler || modeler_only) THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO recsys_modeler', obj.name);
        ELSIF obj.proname = ANY (for_worker) THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO recsys_worker', obj.name);
        ELSIF NOT (obj.proname = ANY (for_no_one)) AND obj.prorettype <> 'trigger'::regtype THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', obj.name, groups);
        END IF;
    END LOOP;

    -- 4. the vector extension's schema: recsys's functions name its types and operators, and
    --    the worker's sessions its type
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO recsys_owner, recsys_reader', vector_schema);
    IF NOT pg_catalog.has_schema_privilege('recsys_owner', vector_schema, 'USAGE')
       OR NOT pg_catalog.has_schema_privilege('recsys_reader', vector_schema, 'USAGE') THEN
        RAISE EXCEPTION 'roles recsys_owner and recsys_reader need USAGE on schema %, which holds extension vector',
            quote_ident(vector_schema)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('have its owner run: GRANT USAGE ON SCHEMA %I TO recsys_owner, recsys_reader',
                                vector_schema);
    END IF;
END
$security$;
