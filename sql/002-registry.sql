-- Model registry: create, drop, roll back, and the lookups the serving functions share.

-- A word as a POSIX shell reads it back unchanged, as Python's shlex.quote writes it: bare
-- when it has only characters no shell treats specially, otherwise in single quotes, each '
-- written as '"'"'. For commands in messages that users paste into a terminal.
CREATE OR REPLACE FUNCTION recsys._shell_quote(word text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN word <> '' AND translate(word, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'
                                            'abcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-',
                                      '') = ''
            THEN word
        ELSE '''' || replace(word, '''', '''"''"''') || ''''
    END
$$;

-- Look up a model by name; raises when it does not exist.
CREATE OR REPLACE FUNCTION recsys._model(model_name text) RETURNS recsys.model
LANGUAGE plpgsql STABLE AS $$
DECLARE
    m recsys.model;
BEGIN
    IF model_name IS NULL THEN
        RAISE EXCEPTION 'model name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO m FROM recsys.model WHERE name = model_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" does not exist', model_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'list models with: SELECT name FROM recsys.models';
    END IF;
    RETURN m;
END
$$;

-- The active version of a model, its factor tables checked (recsys._checked); raises when the
-- model has never been trained.
CREATE OR REPLACE FUNCTION recsys._active_version(model_name text) RETURNS recsys.model_version
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version;
BEGIN
    SELECT mv.* INTO v
      FROM recsys.model m
      JOIN recsys.model_version mv ON mv.model_id = m.id AND mv.version = m.active_version
     WHERE m.name = model_name;
    IF NOT FOUND THEN
        PERFORM recsys._model(model_name);  -- raises when there is no such model
        RAISE EXCEPTION 'model "%" has no trained version', model_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'train it with: recsys-db train '
                         || CASE WHEN model_name LIKE '-%' THEN '-- ' ELSE '' END
                         || recsys._shell_quote(model_name);
    END IF;
    RETURN recsys._checked(v);  -- the factor-table names derived and checked (010-storage)
END
$$;

CREATE OR REPLACE FUNCTION recsys._check_k(k integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF k IS NULL OR k <= 0 THEN
        RAISE EXCEPTION 'k must be a positive integer, not %', coalesce(k::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Type of a column of a relation, or NULL when the relation has no such column.
CREATE OR REPLACE FUNCTION recsys._column_type(rel regclass, col text) RETURNS regtype
LANGUAGE sql STABLE AS $$
    SELECT atttypid::regtype FROM pg_attribute
     WHERE attrelid = rel AND attname = col AND attnum > 0 AND NOT attisdropped
$$;

CREATE OR REPLACE FUNCTION recsys._require_column(
    rel regclass, col text, role text, allowed text[] DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    typ regtype;
BEGIN
    IF col IS NULL OR col = '' THEN
        RAISE EXCEPTION '% must not be empty', role USING ERRCODE = 'invalid_parameter_value';
    END IF;
    typ := recsys._column_type(rel, col);
    IF typ IS NULL THEN
        RAISE EXCEPTION 'column "%" does not exist in relation %', col, rel
            USING ERRCODE = 'undefined_column',
                  DETAIL = format('%s names a column of the source', role),
                  HINT = 'columns: ' || (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                                          FROM pg_attribute
                                         WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped);
    END IF;
    IF allowed IS NOT NULL AND NOT typ::text = ANY (allowed) THEN
        RAISE EXCEPTION '% "%" has type %, expected one of: %', role, col, typ,
            array_to_string(allowed, ', ')
            USING ERRCODE = 'datatype_mismatch';
    END IF;
END
$$;

-- A type with domains looked through (a domain over a domain over text is text).
CREATE OR REPLACE FUNCTION recsys._base_type(typ regtype) RETURNS regtype
LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    base oid := typ;
    next oid;
BEGIN
    LOOP
        SELECT t.typbasetype INTO next FROM pg_type t WHERE t.oid = base AND t.typtype = 'd';
        EXIT WHEN NOT FOUND;
        base := next;
    END LOOP;
    RETURN base::regtype;
END
$$;

-- Keys (users, items, feature keys) and events are matched by their text. A type whose text
-- depends on session settings (TimeZone, DateStyle, IntervalStyle, extra_float_digits,
-- lc_monetary, bytea_output) would make the same key another one in another session (a known
-- user silently served popular items), so keys must be one of these types or a domain over
-- one; events may also be boolean or an enum. Training checks the same again.
CREATE OR REPLACE FUNCTION recsys._require_key_column(
    rel regclass, col text, role text, is_event boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    key_types constant regtype[] := ARRAY['smallint', 'integer', 'bigint', 'numeric', 'text',
                                          'character varying', 'character', 'uuid']::regtype[];
    hint constant text := CASE WHEN is_event
                               THEN 'use a text, integer or enum event column (cast it in a view)'
                               ELSE 'use a text, integer or uuid key (cast it in a view)' END;
    typ regtype;
    base regtype;
    element regtype;
    setting text;
    shown text;
BEGIN
    PERFORM recsys._require_column(rel, col, role);
    typ := recsys._column_type(rel, col);
    base := recsys._base_type(typ);
    IF base = ANY (key_types)
       OR is_event AND (base = 'boolean'::regtype
                        OR (SELECT t.typtype = 'e' FROM pg_type t WHERE t.oid = base)) THEN
        RETURN;
    END IF;
    shown := CASE WHEN base = typ THEN typ::text
                  ELSE format('%s (a domain over %s)', typ, base) END;
    SELECT recsys._base_type(t.typelem::regtype) INTO element
      FROM pg_type t WHERE t.oid = base AND t.typcategory = 'A' AND t.typelem <> 0;
    setting := CASE coalesce(element, base)
                   WHEN 'timestamp with time zone'::regtype THEN 'TimeZone and DateStyle'
                   WHEN 'timestamp without time zone'::regtype THEN 'DateStyle'
                   WHEN 'date'::regtype THEN 'DateStyle'
                   WHEN 'interval'::regtype THEN 'IntervalStyle'
                   WHEN 'real'::regtype THEN 'extra_float_digits'
                   WHEN 'double precision'::regtype THEN 'extra_float_digits'
                   WHEN 'money'::regtype THEN 'lc_monetary'
                   WHEN 'bytea'::regtype THEN 'bytea_output'
               END;
    IF setting IS NOT NULL THEN
        RAISE EXCEPTION '% "%" has type %, whose text depends on session settings', role, col,
            shown
            USING ERRCODE = 'datatype_mismatch',
                  DETAIL = format('%s compared as text, and the text of %s changes with %s',
                                  CASE WHEN is_event THEN 'events are' ELSE 'keys are' END,
                                  coalesce(element, base), setting),
                  HINT = hint;
    END IF;
    RAISE EXCEPTION '% "%" has type %, expected one of: %', role, col, shown,
        array_to_string(key_types::text[], ', ')
        || CASE WHEN is_event THEN ', boolean, an enum' ELSE '' END || ' (or a domain over one)'
        USING ERRCODE = 'datatype_mismatch', HINT = hint;
END
$$;

CREATE OR REPLACE FUNCTION recsys._check_event_weights(event_weights jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    entry record;
BEGIN
    IF jsonb_typeof(event_weights) <> 'object' THEN
        RAISE EXCEPTION 'event_weights must be a json object mapping event to weight, not %',
            jsonb_typeof(event_weights)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF event_weights = '{}' THEN
        RAISE EXCEPTION 'event_weights must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR entry IN SELECT * FROM jsonb_each(event_weights) LOOP
        IF jsonb_typeof(entry.value) <> 'number' THEN
            RAISE EXCEPTION 'event weight for "%" must be a number, not %', entry.key, entry.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM recsys._check_number(format('event weight for "%s"', entry.key),
                                     entry.value::numeric, false, 0, false, NULL, false);
    END LOOP;
END
$$;

-- What a model reads and when it is refreshed, checked as create_model and alter_model need
-- it: the relation and its kind, the declarer's right to read every column named (catalogs,
-- recsys's tables and temporary tables refused), the key, weight, event and time columns and
-- their types, event weights, and refresh_every.
CREATE OR REPLACE FUNCTION recsys._check_definition(
    source regclass, declarer regrole, user_column text, item_column text,
    weight_column text, event_column text, event_weights jsonb, time_column text,
    refresh_every interval
) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    numeric_types constant text[] := ARRAY['smallint', 'integer', 'bigint', 'real',
                                           'double precision', 'numeric', 'boolean'];
    time_types constant text[] := ARRAY['timestamp with time zone', 'timestamp without time zone',
                                        'date', 'smallint', 'integer', 'bigint', 'real',
                                        'double precision', 'numeric'];
    rel record;
BEGIN
    IF source IS NULL THEN
        RAISE EXCEPTION 'source must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, n.nspname, c.relname INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'source relation with oid % does not exist', source::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    IF rel.relkind NOT IN ('r', 'v', 'm', 'p', 'f') THEN
        RAISE EXCEPTION 'source % is not a table, view or materialized view', source
            USING ERRCODE = 'wrong_object_type';
    END IF;
    PERFORM recsys._check_source(
        source, declarer, ARRAY[user_column, item_column, weight_column, event_column,
                                time_column]);
    PERFORM recsys._require_key_column(source, user_column, 'user_column');
    PERFORM recsys._require_key_column(source, item_column, 'item_column');
    IF user_column = item_column THEN
        RAISE EXCEPTION 'user_column and item_column must differ, both are "%"', user_column
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF weight_column IS NOT NULL THEN
        PERFORM recsys._require_column(source, weight_column, 'weight_column', numeric_types);
    END IF;
    IF event_column IS NOT NULL THEN
        PERFORM recsys._require_key_column(source, event_column, 'event_column',
                                           is_event => true);
        IF event_weights IS NULL THEN
            RAISE EXCEPTION 'event_column needs event_weights'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'for example: event_weights => ''{"view": 1, "cart": 10}''';
        END IF;
    END IF;
    IF event_weights IS NOT NULL THEN
        IF event_column IS NULL THEN
            RAISE EXCEPTION 'event_weights needs event_column' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM recsys._check_event_weights(event_weights);
    END IF;
    IF time_column IS NOT NULL THEN
        PERFORM recsys._require_column(source, time_column, 'time_column', time_types);
    END IF;
    -- finite and at most a century: recsys.models adds it to timestamps (next_due_at)
    IF refresh_every IS NOT NULL AND (refresh_every <= interval '0' OR NOT isfinite(refresh_every)
                                      OR refresh_every > interval '100 years') THEN
        RAISE EXCEPTION 'refresh_every must be a positive interval of at most 100 years, not %',
            refresh_every
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION recsys.create_model(
    name          text,
    source        regclass,
    user_column   text,
    item_column   text,
    weight_column text DEFAULT NULL,
    event_column  text DEFAULT NULL,
    event_weights jsonb DEFAULT NULL,
    time_column   text DEFAULT NULL,
    params        jsonb DEFAULT NULL,
    refresh_every interval DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    rel record;
    checked_params jsonb;
    new_id integer;
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'model name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(name) > 200 OR name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'invalid model name %', quote_literal(name)
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'a model name has at most 200 characters and no control characters';
    END IF;
    SELECT n.nspname, c.relname INTO rel
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = source;
    -- the declarer is the role running this (SECURITY INVOKER): it must be allowed to read
    -- every column it names, and catalogs, recsys's tables and temporary tables are refused
    PERFORM recsys._check_definition(
        source, (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)::regrole,
        user_column, item_column, weight_column, event_column, event_weights, time_column,
        refresh_every);
    checked_params := recsys._check_params(params);
    IF EXISTS (SELECT 1 FROM recsys.model m WHERE m.name = create_model.name) THEN
        RAISE EXCEPTION 'model "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'drop it first with recsys.drop_model, or choose another name';
    END IF;
    INSERT INTO recsys.model (name, source_schema, source_table, user_column, item_column,
                              weight_column, event_column, event_weights, time_column,
                              params, refresh_every)
    VALUES (name, rel.nspname, rel.relname, user_column, item_column, weight_column,
            event_column, event_weights, time_column, checked_params, refresh_every)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION recsys.create_model IS
    'register an ALS model over a table, view or materialized view of interactions; the '
    'calling role is its declarer, whose rights every read of the source has';

-- Raise unless the login may manage a model: a member of the role that declared it, or of
-- recsys's owner. Called by the SECURITY DEFINER functions that change a model, where
-- current_user is the owner: the login (session_user) is what is left of the caller.
CREATE OR REPLACE FUNCTION recsys._require_manager(m recsys.model) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF coalesce(pg_catalog.pg_has_role(session_user, m.declarer::oid, 'MEMBER'), false)
       OR pg_catalog.pg_has_role(session_user,
                                 (SELECT n.nspowner FROM pg_catalog.pg_namespace n
                                   WHERE n.nspname = 'recsys'), 'MEMBER') THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'role % may not manage model "%", which % declared', quote_ident(session_user),
        m.name, coalesce(m.declarer::text, 'a dropped role')
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'a member of the declaring role or of the owner of schema recsys may';
END
$$;

-- Drop tables of schema recsys that are partitions of the precomputed rows, all in one
-- statement; returns whether it did. Only names of precomputed partitions
-- (m<id>_v<version>_recs or _similar) owned by recsys's owner are dropped, and never those of a
-- model's active version; other names are ignored. Dropping a partition locks its parent
-- exclusively, and recsys.recommend reads that parent on every call: rather than make every
-- recommend call queue behind one long reader (a report, an idle transaction), the drop waits
-- at most 50 ms (an ordinary recommend call lasts about a millisecond) and leaves the tables for
-- the next training's prune otherwise. The caller's lock_timeout is as it was afterwards.
CREATE OR REPLACE FUNCTION recsys._drop_partitions(tables text[]) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    waited text := current_setting('lock_timeout');
    doomed text[];
BEGIN
    SELECT coalesce(array_agg(t ORDER BY t), '{}') INTO doomed
      FROM unnest(recsys._owned_tables(ARRAY(
               SELECT DISTINCT t FROM unnest(tables) t
                WHERE t ~ '^m[0-9]+_v[0-9]+_(recs|similar|ranked)$'))) t
     WHERE NOT EXISTS (SELECT 1 FROM recsys.model m
                        WHERE m.id::text = substring(t FROM '^m([0-9]+)_')
                          AND m.active_version::text = substring(t FROM '^m[0-9]+_v([0-9]+)_'));
    IF cardinality(doomed) = 0 THEN
        RETURN true;
    END IF;
    BEGIN
        PERFORM set_config('lock_timeout', '50ms', true);
        EXECUTE 'DROP TABLE IF EXISTS '
                || (SELECT string_agg(format('recsys.%I', t), ', ') FROM unnest(doomed) t);
        PERFORM set_config('lock_timeout', waited, true);
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'precomputed rows % are being read; the next training drops them',
            array_to_string(doomed, ', ');
        RETURN false;
    END;
    RETURN true;
END
$$;

-- Drop a model and every per-version table (named m<model id>_v<version>_<what>). The row goes
-- first (its versions, runs and jobs with it), so nothing serves or trains it while its tables
-- go. Tables of those names that recsys's owner does not own stay (with a warning). A model's
-- precomputed partitions go through recsys._drop_partitions: when readers hold them they stay
-- for the next prune (their model is gone, so no view shows them).
CREATE OR REPLACE FUNCTION recsys.drop_model(name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m recsys.model;
    doomed text[];
BEGIN
    m := recsys._model(name);
    PERFORM recsys._require_manager(m);
    DELETE FROM recsys.model WHERE id = m.id;
    doomed := recsys._owned_tables(ARRAY(
        SELECT c.relname::text FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind IN ('r', 'p')
           AND c.relname ~ ('^m' || m.id || '_v[0-9]+_(users|items|recs|similar|ranked)$')
           AND NOT c.relispartition));
    IF cardinality(doomed) > 0 THEN
        EXECUTE 'DROP TABLE IF EXISTS '
                || (SELECT string_agg(format('recsys.%I', t), ', ') FROM unnest(doomed) t);
    END IF;
    PERFORM recsys._drop_partitions(ARRAY(
        SELECT c.relname FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'recsys'::regnamespace AND c.relispartition
           AND c.relname ~ ('^m' || m.id || '_v[0-9]+_')
         ORDER BY c.relname));
END
$$;

-- Make an earlier (or later) trained version the active one.
CREATE OR REPLACE FUNCTION recsys.rollback(model text, version integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    m recsys.model;
    target recsys.model_version;
BEGIN
    m := recsys._model(model);
    PERFORM recsys._require_manager(m);
    IF version IS NULL THEN
        RAISE EXCEPTION 'version must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM 1 FROM recsys.model WHERE id = m.id FOR UPDATE;
    SELECT * INTO target FROM recsys.model_version v
     WHERE v.model_id = m.id AND v.version = rollback.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" has no version %', model, version
            USING ERRCODE = 'undefined_object',
                  HINT = 'list versions with: SELECT * FROM recsys.versions';
    END IF;
    IF target.status <> 'ready' THEN
        RAISE EXCEPTION 'version % of model "%" is %, not ready', version, model, target.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE recsys.model SET active_version = target.version, updated_at = now() WHERE id = m.id;
    RETURN target.version;
END
$$;
COMMENT ON FUNCTION recsys.rollback IS 'activate a kept version of a model';

-- Versions remember when they stop being active (activation of another one, rollback), so that
-- retention can wait until every transaction that may still read them has ended.
CREATE OR REPLACE FUNCTION recsys._track_active_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.active_version IS DISTINCT FROM NEW.active_version THEN
        UPDATE recsys.model_version SET retired_at = clock_timestamp()
         WHERE model_id = NEW.id AND version = OLD.active_version;
        UPDATE recsys.model_version SET retired_at = NULL
         WHERE model_id = NEW.id AND version = NEW.active_version;
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS track_active_version ON recsys.model;
CREATE TRIGGER track_active_version AFTER UPDATE OF active_version ON recsys.model
    FOR EACH ROW EXECUTE FUNCTION recsys._track_active_version();

-- The settings of a model that differ between two states of its row, as
-- {"setting": {"from": old, "to": new}}; {} when none does.
CREATE OR REPLACE FUNCTION recsys._model_diff(old recsys.model, new recsys.model) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(o.key, jsonb_build_object('from', o.value, 'to', n.value)
                                     ORDER BY o.key), '{}'::jsonb)
      FROM jsonb_each(to_jsonb(old) - ARRAY['id', 'name', 'active_version', 'created_at',
                                            'updated_at']) o
      JOIN jsonb_each(to_jsonb(new)) n ON n.key = o.key
     WHERE o.value IS DISTINCT FROM n.value
$$;

-- Every change to what a model reads, its params, schedule or declarer is recorded in
-- recsys.model_change (whoever made it: recsys.alter_model, tune --apply, the owner's UPDATE),
-- with the login that made it.
CREATE OR REPLACE FUNCTION recsys._record_model_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changes constant jsonb := recsys._model_diff(OLD, NEW);
BEGIN
    IF changes <> '{}'::jsonb THEN
        INSERT INTO recsys.model_change (model_id, changed_by, changes)
        VALUES (NEW.id, session_user, changes);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS record_model_change ON recsys.model;
CREATE TRIGGER record_model_change AFTER UPDATE ON recsys.model
    FOR EACH ROW EXECUTE FUNCTION recsys._record_model_change();

-- Change a model after create_model, with create_model's checks (recsys._check_definition,
-- recsys._check_params). NULL leaves a setting as it is; unset names optional settings to clear
-- (weight_column, event_column with its event_weights, time_column, refresh_every); params are
-- merged over the model's params. A new source or column makes the caller (the login) the
-- model's declarer: its rights read the source from then on. Who may: a member of the role
-- that declared the model, or of recsys's owner. The change applies from the next full refresh
-- on: the active version keeps serving, and fold-ins keep the params it was trained with.
-- Returns what changed ({"setting": {"from": old, "to": new}}; recorded in
-- recsys.model_changes).
CREATE OR REPLACE FUNCTION recsys.alter_model(
    name          text,
    source        regclass DEFAULT NULL,
    user_column   text DEFAULT NULL,
    item_column   text DEFAULT NULL,
    weight_column text DEFAULT NULL,
    event_column  text DEFAULT NULL,
    event_weights jsonb DEFAULT NULL,
    time_column   text DEFAULT NULL,
    params        jsonb DEFAULT NULL,
    refresh_every interval DEFAULT NULL,
    unset         text[] DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    clearable constant text[] := ARRAY['weight_column', 'event_column', 'time_column',
                                       'refresh_every'];
    given constant text[] := array_remove(ARRAY[
        CASE WHEN weight_column IS NOT NULL THEN 'weight_column' END,
        CASE WHEN event_column IS NOT NULL OR event_weights IS NOT NULL THEN 'event_column' END,
        CASE WHEN time_column IS NOT NULL THEN 'time_column' END,
        CASE WHEN refresh_every IS NOT NULL THEN 'refresh_every' END], NULL);
    m recsys.model;
    next recsys.model;
    relation regclass;
    caller regrole;
BEGIN
    m := recsys._model(name);
    PERFORM recsys._require_manager(m);
    IF EXISTS (SELECT 1 FROM unnest(unset) u WHERE u IS NULL OR NOT (u = ANY (clearable))) THEN
        RAISE EXCEPTION 'cannot unset %',
            (SELECT string_agg(coalesce(quote_literal(u), 'null'), ', ') FROM unnest(unset) u
              WHERE u IS NULL OR NOT (u = ANY (clearable)))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'unset takes: ' || array_to_string(clearable, ', ');
    END IF;
    IF unset && given THEN
        RAISE EXCEPTION '% both given and unset', array_to_string(
            ARRAY(SELECT u FROM unnest(unset) u WHERE u = ANY (given)), ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    next := m;
    IF source IS NOT NULL THEN
        SELECT n.nspname, c.relname INTO next.source_schema, next.source_table
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = source;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'source relation with oid % does not exist', source::oid
                USING ERRCODE = 'undefined_table';
        END IF;
    END IF;
    next.user_column := coalesce(user_column, m.user_column);
    next.item_column := coalesce(item_column, m.item_column);
    next.weight_column := CASE WHEN 'weight_column' = ANY (unset) THEN NULL
                               ELSE coalesce(weight_column, m.weight_column) END;
    next.event_column := CASE WHEN 'event_column' = ANY (unset) THEN NULL
                              ELSE coalesce(event_column, m.event_column) END;
    next.event_weights := CASE WHEN 'event_column' = ANY (unset) THEN NULL
                               ELSE coalesce(event_weights, m.event_weights) END;
    next.time_column := CASE WHEN 'time_column' = ANY (unset) THEN NULL
                             ELSE coalesce(time_column, m.time_column) END;
    next.refresh_every := CASE WHEN 'refresh_every' = ANY (unset) THEN NULL
                               ELSE coalesce(refresh_every, m.refresh_every) END;
    next.params := CASE WHEN params IS NULL THEN m.params
                        ELSE recsys._check_params(m.params || params) END;
    IF (next.source_schema, next.source_table, next.user_column, next.item_column,
        next.weight_column, next.event_column, next.event_weights, next.time_column)
       IS DISTINCT FROM
       (m.source_schema, m.source_table, m.user_column, m.item_column, m.weight_column,
        m.event_column, m.event_weights, m.time_column) THEN
        caller := (SELECT r.oid FROM pg_catalog.pg_roles r
                    WHERE r.rolname = session_user)::regrole;
        next.declarer := caller;
    END IF;
    relation := recsys._relation(next.source_schema, next.source_table);
    IF relation IS NULL THEN
        RAISE EXCEPTION 'source relation "%.%" of model "%" does not exist', next.source_schema,
            next.source_table, m.name
            USING ERRCODE = 'undefined_table',
                  HINT = 'point the model at one that does: recsys.alter_model(name, source => ...)';
    END IF;
    PERFORM recsys._check_definition(
        relation, next.declarer,
        next.user_column, next.item_column, next.weight_column, next.event_column,
        next.event_weights, next.time_column, next.refresh_every);
    UPDATE recsys.model
       SET source_schema = next.source_schema, source_table = next.source_table,
           user_column = next.user_column, item_column = next.item_column,
           weight_column = next.weight_column, event_column = next.event_column,
           event_weights = next.event_weights, time_column = next.time_column,
           params = next.params, refresh_every = next.refresh_every,
           declarer = next.declarer, updated_at = now()
     WHERE id = m.id;
    RETURN recsys._model_diff(m, next);
END
$$;
COMMENT ON FUNCTION recsys.alter_model IS
    'change a model with create_model''s checks; applies from the next full refresh; recorded '
    'in recsys.model_changes';
