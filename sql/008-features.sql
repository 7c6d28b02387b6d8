-- Cold start: map item or user features (tags, categories, attributes) into the factor space.

CREATE OR REPLACE FUNCTION recsys.set_features(
    model           text,
    kind            text,
    source          regclass,
    key_column      text,
    feature_columns text[],
    regularization  double precision DEFAULT 1.0
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m recsys.model;
    rel record;
    col text;
BEGIN
    m := recsys._model(model);
    PERFORM recsys._require_manager(m);
    IF kind IS NULL OR kind NOT IN ('item', 'user') THEN
        RAISE EXCEPTION 'kind must be item or user, not %', coalesce(quote_literal(kind), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF source IS NULL THEN
        RAISE EXCEPTION 'source must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, n.nspname, c.relname INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    IF rel.relkind NOT IN ('r', 'v', 'm', 'p', 'f') THEN
        RAISE EXCEPTION 'source % is not a table, view or materialized view', source
            USING ERRCODE = 'wrong_object_type';
    END IF;
    -- read, like the model's source, as the role that declared the model
    PERFORM recsys._check_source(source, m.declarer, ARRAY[key_column] || feature_columns);
    PERFORM recsys._require_key_column(source, key_column, 'key_column');
    IF feature_columns IS NULL OR cardinality(feature_columns) = 0 THEN
        RAISE EXCEPTION 'feature_columns must name at least one column'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH col IN ARRAY feature_columns LOOP
        PERFORM recsys._require_column(source, col, 'feature column');
    END LOOP;
    PERFORM recsys._check_number('regularization', regularization::numeric, false, 0, true,
                                 NULL, false);
    INSERT INTO recsys.model_feature AS f (model_id, kind, source_schema, source_table,
                                          key_column, feature_columns, regularization)
    VALUES (m.id, kind, rel.nspname, rel.relname, key_column, feature_columns, regularization)
    ON CONFLICT ON CONSTRAINT model_feature_pkey DO UPDATE
       SET source_schema = excluded.source_schema, source_table = excluded.source_table,
           key_column = excluded.key_column, feature_columns = excluded.feature_columns,
           regularization = excluded.regularization;
END
$$;
COMMENT ON FUNCTION recsys.set_features IS
    'declare item or user features, which the model''s declarer must be allowed to read; the '
    'next training maps them into the factor space';

CREATE OR REPLACE FUNCTION recsys.drop_features(model text, kind text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    m recsys.model;
BEGIN
    m := recsys._model(model);
    PERFORM recsys._require_manager(m);
    DELETE FROM recsys.model_feature f WHERE f.model_id = m.id AND f.kind = drop_features.kind;
    RETURN FOUND;
END
$$;

CREATE OR REPLACE VIEW recsys.features AS
SELECT m.name AS model, f.kind, format('%I.%I', f.source_schema, f.source_table) AS source,
       f.key_column, f.feature_columns, f.regularization
  FROM recsys.model_feature f JOIN recsys.model m ON m.id = f.model_id;
