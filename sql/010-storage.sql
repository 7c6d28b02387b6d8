-- Storage of versions: the factor tables, their hnsw index and the precomputed partitions.
--
-- Nothing but these functions creates, seals, indexes, attaches or drops a relation in schema
-- recsys: they run as recsys's owner (SECURITY DEFINER, recsys_worker may call them), derive
-- every name from (model id, version) and never from a stored row, act only on a version that
-- is still being built (dropping excepted: never the active version), and grant the worker
-- the DML it needs on what they create, never DDL. The worker fills the tables it is given.
--
-- @vector@ is the schema of the vector extension, written in by install (quoted).

-- A version with its factor-table names derived from (model_id, version), once they are
-- checked to be ordinary tables of schema recsys owned by recsys_owner (its owner). The serving functions
-- read factor tables only through a version that went through here (recsys._active_version,
-- and recsys.recommend before a live search), so a name written into a row is never used.
-- (One index probe of pg_class, by the tables' oids: about 15 us, the cheapest form measured.)
CREATE OR REPLACE FUNCTION recsys._checked(v recsys.model_version)
RETURNS recsys.model_version
LANGUAGE plpgsql STABLE AS $$
DECLARE
    owned integer;
BEGIN
    v.user_table := format('m%s_v%s_users', v.model_id, v.version);
    v.item_table := format('m%s_v%s_items', v.model_id, v.version);
    SELECT count(*) INTO owned FROM pg_catalog.pg_class c
     WHERE c.oid = ANY (ARRAY[to_regclass(format('recsys.%I', v.user_table)),
                              to_regclass(format('recsys.%I', v.item_table))]::oid[])
       AND c.relkind = 'r' AND c.relowner = 'recsys_owner'::regrole;
    IF owned <> 2 THEN
        RAISE EXCEPTION 'factor tables of version % of model "%" are missing or not owned by recsys_owner',
            v.version, (SELECT m.name FROM recsys.model m WHERE m.id = v.model_id)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('expected tables recsys.%I and recsys.%I', v.user_table,
                                  v.item_table),
                  HINT = 'train the model again';
    END IF;
    RETURN v;
END
$$;

-- The version (names derived), which must exist and be still building.
CREATE OR REPLACE FUNCTION recsys._building(model_id integer, version integer)
RETURNS recsys.model_version
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version;
BEGIN
    SELECT * INTO v FROM recsys.model_version mv
     WHERE mv.model_id = _building.model_id AND mv.version = _building.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model % has no version %', coalesce(model_id::text, 'null'),
            coalesce(version::text, 'null')
            USING ERRCODE = 'undefined_object';
    END IF;
    IF v.status <> 'building' THEN
        RAISE EXCEPTION 'version % of model % is %, not building', version, model_id, v.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'only a version being built may have its tables created or changed';
    END IF;
    v.user_table := format('m%s_v%s_users', v.model_id, v.version);
    v.item_table := format('m%s_v%s_items', v.model_id, v.version);
    RETURN v;
END
$$;

-- Create the two empty factor tables of a version being built, with as many dimensions as the
-- version has factors; the worker may read, insert and update their rows.
CREATE OR REPLACE FUNCTION recsys._create_version_tables(model_id integer, version integer)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v recsys.model_version := recsys._building(model_id, version);
BEGIN
    IF v.factors IS NULL OR v.factors NOT BETWEEN 1 AND 16000 THEN
        RAISE EXCEPTION 'version % of model % has % factors; expected 1 to 16000', version,
            model_id, coalesce(v.factors::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('CREATE TABLE recsys.%I (idx integer NOT NULL, key text NOT NULL,'
                   ' factors @vector@.vector(%s) NOT NULL, seen integer[] NOT NULL,'
                   ' from_content boolean NOT NULL DEFAULT false)',
                   v.user_table, v.factors);
    EXECUTE format('CREATE TABLE recsys.%I (idx integer NOT NULL, key text NOT NULL,'
                   ' factors @vector@.vector(%s) NOT NULL, popularity integer NOT NULL,'
                   ' from_content boolean NOT NULL DEFAULT false)',
                   v.item_table, v.factors);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON recsys.%I, recsys.%I TO recsys_worker',
                   v.user_table, v.item_table);
END
$$;

-- Once filled: the keys of a version's factor tables, and their statistics.
CREATE OR REPLACE FUNCTION recsys._seal_version_tables(model_id integer, version integer)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v recsys.model_version := recsys._building(model_id, version);
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[v.user_table, v.item_table] LOOP
        EXECUTE format('ALTER TABLE recsys.%I ADD PRIMARY KEY (idx), ADD UNIQUE (key)', t);
        EXECUTE format('ANALYZE recsys.%I', t);
    END LOOP;
END
$$;

-- The hnsw index recsys._top_items searches (inner product over the factors column), on the
-- item table of a version being built, and the btree on each item's norm that its head search
-- reads in norm order (an expression index, so that fold-in writes keep it current as they
-- keep the graph). maintenance_work_mem is the caller's.
CREATE OR REPLACE FUNCTION recsys._create_hnsw(model_id integer, version integer, m integer,
                                               ef_construction integer)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v recsys.model_version := recsys._building(model_id, version);
BEGIN
    IF m IS NULL OR m NOT BETWEEN 2 AND 100 THEN
        RAISE EXCEPTION 'm must be an integer between 2 and 100, not %', coalesce(m::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ef_construction IS NULL OR ef_construction NOT BETWEEN greatest(4, 2 * m) AND 1000 THEN
        RAISE EXCEPTION 'ef_construction must be an integer between % and 1000, not %',
            greatest(4, 2 * m), coalesce(ef_construction::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('CREATE INDEX %I ON recsys.%I USING hnsw (factors @vector@.vector_ip_ops)'
                   ' WITH (m = %s, ef_construction = %s)',
                   v.item_table || '_hnsw', v.item_table, m, ef_construction);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON recsys.%I'
                   ' ((@vector@.vector_norm(factors)), idx)', v.item_table || '_norm',
                   v.item_table);
END
$$;

-- Drop both indexes of recsys._create_hnsw (a graph that missed its target, or auto chose exact).
CREATE OR REPLACE FUNCTION recsys._drop_hnsw(model_id integer, version integer)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v recsys.model_version := recsys._building(model_id, version);
BEGIN
    EXECUTE format('DROP INDEX IF EXISTS recsys.%I, recsys.%I', v.item_table || '_hnsw',
                   v.item_table || '_norm');
END
$$;

-- Tables of schema recsys among `names` that its owner owns; the others are reported and
-- left alone (only a superuser could have put them there).
CREATE OR REPLACE FUNCTION recsys._owned_tables(names text[]) RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    owned text[];
    foreign_table text;
BEGIN
    SELECT coalesce(array_agg(c.relname::text ORDER BY c.relname), '{}') INTO owned
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind IN ('r', 'p')
       AND c.relname = ANY (names::name[])
       AND c.relowner = (SELECT n.nspowner FROM pg_catalog.pg_namespace n
                          WHERE n.nspname = 'recsys');
    FOR foreign_table IN
        SELECT c.relname FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'recsys'::regnamespace AND c.relname = ANY (names::name[])
           AND NOT c.relname::text = ANY (owned)
    LOOP
        RAISE WARNING 'recsys.% is not owned by the owner of schema recsys; left in place',
            quote_ident(foreign_table);
    END LOOP;
    RETURN owned;
END
$$;

-- Drop the factor tables of a version that is not the active one (a failed or expired
-- version). Waits for locks as long as the caller's lock_timeout allows.
CREATE OR REPLACE FUNCTION recsys._drop_version_tables(model_id integer, version integer)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    doomed text[];
BEGIN
    IF model_id IS NULL OR version IS NULL THEN
        RAISE EXCEPTION 'model id and version must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF EXISTS (SELECT 1 FROM recsys.model m
                WHERE m.id = _drop_version_tables.model_id
                  AND m.active_version = _drop_version_tables.version) THEN
        RAISE EXCEPTION 'version % of model % is active; its tables stay', version, model_id
            USING ERRCODE = 'object_in_use';
    END IF;
    doomed := recsys._owned_tables(ARRAY[format('m%s_v%s_users', model_id, version),
                                         format('m%s_v%s_items', model_id, version)]);
    IF cardinality(doomed) > 0 THEN
        EXECUTE 'DROP TABLE IF EXISTS '
                || (SELECT string_agg(format('recsys.%I', t), ', ') FROM unnest(doomed) t);
    END IF;
END
$$;

-- The precomputed partition kinds: parent table, table suffix and key column.
CREATE OR REPLACE FUNCTION recsys._partition_kind(parent text, OUT suffix text,
                                                  OUT key_column text)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    CASE parent
        WHEN 'recommendation' THEN suffix := 'recs'; key_column := 'user_key';
        WHEN 'similar_item' THEN suffix := 'similar'; key_column := 'item_key';
        WHEN 'ranked_recommendation' THEN suffix := 'ranked'; key_column := 'user_key';
        ELSE
            RAISE EXCEPTION 'parent must be recommendation, similar_item or ranked_recommendation, not %',
                coalesce(quote_literal(parent), 'null')
                USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END
$$;

-- An empty table shaped like `parent` for the precomputed rows of a version being built
-- (m<id>_v<version>_recs or _similar); the worker may read, insert and delete its rows.
-- Returns its name (in schema recsys).
CREATE OR REPLACE FUNCTION recsys._create_partition(parent text, model_id integer,
                                                    version integer)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    kind record := recsys._partition_kind(parent);
    v recsys.model_version := recsys._building(model_id, version);
    name text := format('m%s_v%s_%s', v.model_id, v.version, kind.suffix);
BEGIN
    EXECUTE format('CREATE TABLE recsys.%I (LIKE recsys.%I INCLUDING ALL)', name, parent);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON recsys.%I TO recsys_worker', name);
    RETURN name;
END
$$;

-- Index the filled partition of a version being built and attach it to its parent: from
-- then on recsys.recommend / recsys.similar_items may read it.
CREATE OR REPLACE FUNCTION recsys._attach_partition(parent text, model_id integer,
                                                    version integer)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    kind record := recsys._partition_kind(parent);
    v recsys.model_version := recsys._building(model_id, version);
    name text := format('m%s_v%s_%s', v.model_id, v.version, kind.suffix);
BEGIN
    IF cardinality(recsys._owned_tables(ARRAY[name])) = 0 THEN
        RAISE EXCEPTION 'recsys.% does not exist or is not owned by the owner of schema recsys',
            quote_ident(name)
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('CREATE INDEX ON recsys.%I (%I, rank)', name, kind.key_column);
    -- the check lets ATTACH skip its validation scan
    EXECUTE format('ALTER TABLE recsys.%I ADD CHECK (model_id = %s AND version = %s)', name,
                   v.model_id, v.version);
    EXECUTE format('ANALYZE recsys.%I', name);
    EXECUTE format('ALTER TABLE recsys.%I ATTACH PARTITION recsys.%I'
                   ' FOR VALUES FROM (%s, %s) TO (%s, %s)', parent, name, v.model_id,
                   v.version, v.model_id, v.version::bigint + 1);
END
$$;
