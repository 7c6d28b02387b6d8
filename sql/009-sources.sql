-- Sources: the check that every declaration and read of a model's source passes, and the
-- trigger that validates every row written to recsys.model.
-- Sources are read with the rights of the role that declared the model (recsys.model.declarer).

-- The relation schema.name, or NULL: looked up in the catalogs, so that it needs no right on
-- the schema (to_regclass needs USAGE, which recsys's owner has on no source schema).
CREATE OR REPLACE FUNCTION recsys._relation(schema_name text, relation_name text) RETURNS regclass
LANGUAGE sql STABLE AS $$
    SELECT c.oid::regclass FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = schema_name AND c.relname = relation_name
$$;

-- Raises unless `declarer` may read `columns` of `source`, and unless `source` is an ordinary
-- relation of the database's users: system catalogs, recsys's own tables and temporary tables
-- are never sources. Called when a model or its features are declared (recsys.create_model,
-- recsys.set_features and the trigger on recsys.model), by recsys._enqueue_due, and by the
-- worker before every read. Columns the relation does not have are left to the caller's own
-- checks (which name them).
CREATE OR REPLACE FUNCTION recsys._check_source(source regclass, declarer regrole, columns text[])
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    schema_oid oid;
    schema_name name;
    col text;
BEGIN
    SELECT c.relnamespace, n.nspname INTO schema_oid, schema_name
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'source relation % does not exist', coalesce(source::oid::text, 'null')
            USING ERRCODE = 'undefined_table';
    END IF;
    IF schema_name IN ('pg_catalog', 'information_schema', 'recsys', 'pg_toast')
       OR schema_name LIKE 'pg\_temp\_%' OR schema_name LIKE 'pg\_toast\_temp\_%' THEN
        RAISE EXCEPTION 'relation % cannot be a model source', source
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'system catalogs, the tables of schema recsys and temporary tables are refused';
    END IF;
    IF declarer IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = declarer::oid) THEN
        RAISE EXCEPTION 'the role that declared the model over % is unknown', source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'declare the model again as a role that may read its source';
    END IF;
    IF NOT pg_catalog.has_schema_privilege(declarer, schema_oid, 'USAGE') THEN
        RAISE EXCEPTION 'role % may not use schema %', declarer, quote_ident(schema_name)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_catalog.has_table_privilege(declarer, source, 'SELECT') THEN
        RETURN;
    END IF;
    FOREACH col IN ARRAY coalesce(columns, '{}') LOOP
        CONTINUE WHEN col IS NULL OR recsys._column_type(source, col) IS NULL;
        IF NOT pg_catalog.has_column_privilege(declarer, source, col, 'SELECT') THEN
            RAISE EXCEPTION 'role % may not read column % of %', declarer, quote_ident(col), source
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('GRANT SELECT ON %s TO %s', source, declarer);
        END IF;
    END LOOP;
END
$$;

-- Every row written to recsys.model, whoever writes it (SECURITY INVOKER: current_user is the
-- role running the INSERT or UPDATE):
-- - declarer: on INSERT, the role running it (only a member of recsys's owner may name
--   another), so that a declaration cannot be credited to a role that did not make it; only
--   such a member may change it, or what the model reads, afterwards;
-- - the source: checked on INSERT as recsys._check_source checks it;
-- - params and event_weights: checked again whenever written (recsys_worker may write params);
-- - active_version: only a ready version, and only a member of the owner may clear it.
CREATE OR REPLACE FUNCTION recsys._validate_model() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    is_owner constant boolean := pg_catalog.pg_has_role(
        current_user, (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'recsys'),
        'USAGE');
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NOT is_owner OR NEW.declarer IS NULL THEN
            NEW.declarer := (SELECT r.oid FROM pg_catalog.pg_roles r
                              WHERE r.rolname = current_user)::regrole;
        END IF;
        PERFORM recsys._check_source(
            recsys._relation(NEW.source_schema, NEW.source_table), NEW.declarer,
            ARRAY[NEW.user_column, NEW.item_column, NEW.weight_column, NEW.event_column,
                  NEW.time_column]);
    ELSE
        IF (NEW.declarer, NEW.source_schema, NEW.source_table, NEW.user_column, NEW.item_column,
            NEW.weight_column, NEW.event_column, NEW.event_weights, NEW.time_column)
           IS DISTINCT FROM
           (OLD.declarer, OLD.source_schema, OLD.source_table, OLD.user_column, OLD.item_column,
            OLD.weight_column, OLD.event_column, OLD.event_weights, OLD.time_column)
           AND NOT is_owner THEN
            RAISE EXCEPTION 'only the owner of schema recsys may change what model "%" reads or who declared it',
                OLD.name
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.active_version IS DISTINCT FROM OLD.active_version THEN
            IF NEW.active_version IS NULL AND NOT is_owner THEN
                RAISE EXCEPTION 'only the owner of schema recsys may leave model "%" without an active version',
                    OLD.name
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF NEW.active_version IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM recsys.model_version v
                                WHERE v.model_id = NEW.id AND v.version = NEW.active_version
                                  AND v.status = 'ready') THEN
                RAISE EXCEPTION 'version % of model "%" is not ready and cannot be active',
                    NEW.active_version, OLD.name
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
        END IF;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.params IS DISTINCT FROM OLD.params THEN
        PERFORM recsys._check_params(NEW.params);
    END IF;
    IF NEW.event_weights IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.event_weights IS DISTINCT FROM OLD.event_weights) THEN
        PERFORM recsys._check_event_weights(NEW.event_weights);
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS validate_model ON recsys.model;
CREATE TRIGGER validate_model BEFORE INSERT OR UPDATE ON recsys.model
    FOR EACH ROW EXECUTE FUNCTION recsys._validate_model();
