-- Cold start: map item or user features (tags, categories, attributes) into the factor space.

-- Content: besides categorical feature_columns (scalars or arrays, one-hot), text_columns are
-- embedded by the worker with a sentence-embedding model (embedding_model; the text of a key is
-- its text columns joined by newlines), and vector_column holds vectors the user maintains
-- (pgvector's vector, or real[] / double precision[]) of vector_dims dimensions. The ridge
-- penalty of the map from content to factors is regularization, or, when null (the default),
-- chosen at each training by cross-validation.
CREATE OR REPLACE FUNCTION recsys.set_features(
    model           text,
    kind            text,
    source          regclass,
    key_column      text,
    feature_columns text[] DEFAULT '{}',
    regularization  double precision DEFAULT NULL,
    text_columns    text[] DEFAULT '{}',
    vector_column   text DEFAULT NULL,
    vector_dims     integer DEFAULT NULL,
    embedding_model text DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m recsys.model;
    rel record;
    col text;
    base regtype;
    typmod integer;
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
    feature_columns := coalesce(feature_columns, '{}');
    text_columns := coalesce(text_columns, '{}');
    IF cardinality(feature_columns) + cardinality(text_columns) = 0 AND vector_column IS NULL THEN
        RAISE EXCEPTION 'feature_columns, text_columns or vector_column must name at least one column'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- read, like the model's source, as the role that declared the model
    PERFORM recsys._check_source(source, m.declarer, ARRAY[key_column] || feature_columns
                                 || text_columns || coalesce(ARRAY[vector_column], '{}'));
    PERFORM recsys._require_key_column(source, key_column, 'key_column');
    FOREACH col IN ARRAY feature_columns LOOP
        PERFORM recsys._require_column(source, col, 'feature column');
    END LOOP;
    FOREACH col IN ARRAY text_columns LOOP
        PERFORM recsys._require_column(source, col, 'text column');
        base := recsys._base_type(recsys._column_type(source, col));
        IF base NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype) THEN
            RAISE EXCEPTION 'text column "%" of relation % has type %, not text', col, source,
                recsys._column_type(source, col)
                USING ERRCODE = 'datatype_mismatch', HINT = 'cast it to text in a view';
        END IF;
    END LOOP;
    IF cardinality(text_columns) > 0 THEN
        embedding_model := coalesce(embedding_model, 'all-MiniLM-L6-v2');
        -- the worker loads a model by name from its own folder of models, never by path
        IF (embedding_model !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$'
            OR position('..' IN embedding_model) > 0)
           AND embedding_model <> 'sentence-transformers/all-MiniLM-L6-v2' THEN
            RAISE EXCEPTION 'embedding_model % is not a model name', quote_literal(embedding_model)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'use all-MiniLM-L6-v2, or the name of a folder under '
                             'RECSYS_EMBEDDING_MODELS on the worker';
        END IF;
    ELSIF embedding_model IS NOT NULL THEN
        RAISE EXCEPTION 'embedding_model % needs text_columns to embed', quote_literal(embedding_model)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF vector_column IS NOT NULL THEN
        PERFORM recsys._require_column(source, vector_column, 'vector column');
        base := recsys._base_type(recsys._column_type(source, vector_column));
        SELECT a.atttypmod INTO typmod FROM pg_attribute a
         WHERE a.attrelid = source AND a.attname = vector_column;
        IF base = '@vector@.vector'::regtype THEN
            IF typmod > 0 AND vector_dims IS NULL THEN
                vector_dims := typmod;
            ELSIF typmod > 0 AND vector_dims <> typmod THEN
                RAISE EXCEPTION 'vector column "%" of relation % has % dimensions, not %',
                    vector_column, source, typmod, vector_dims
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF base NOT IN ('real[]'::regtype, 'double precision[]'::regtype) THEN
            RAISE EXCEPTION 'vector column "%" of relation % has type %, not vector, real[] or double precision[]',
                vector_column, source, recsys._column_type(source, vector_column)
                USING ERRCODE = 'datatype_mismatch';
        END IF;
        IF vector_dims IS NULL THEN
            RAISE EXCEPTION 'vector_dims must be given: vector column "%" of relation % has no fixed dimension',
                vector_column, source
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM recsys._check_number('vector_dims', vector_dims::numeric, true, 1, false, 16000,
                                     false);
    ELSIF vector_dims IS NOT NULL THEN
        RAISE EXCEPTION 'vector_dims needs a vector_column' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- null: chosen at each training by cross-validation over the keys with interactions
    IF regularization IS NOT NULL THEN
        PERFORM recsys._check_number('regularization', regularization::numeric, false, 0, true,
                                     NULL, false);
    END IF;
    INSERT INTO recsys.model_feature AS f (model_id, kind, source_schema, source_table,
                                          key_column, feature_columns, regularization,
                                          text_columns, vector_column, vector_dims,
                                          embedding_model)
    VALUES (m.id, kind, rel.nspname, rel.relname, key_column, feature_columns, regularization,
            text_columns, vector_column, vector_dims, embedding_model)
    ON CONFLICT ON CONSTRAINT model_feature_pkey DO UPDATE
       SET source_schema = excluded.source_schema, source_table = excluded.source_table,
           key_column = excluded.key_column, feature_columns = excluded.feature_columns,
           regularization = excluded.regularization, text_columns = excluded.text_columns,
           vector_column = excluded.vector_column, vector_dims = excluded.vector_dims,
           embedding_model = excluded.embedding_model;
END
$$;
COMMENT ON FUNCTION recsys.set_features IS
    'declare item or user features (categories, text, vectors), which the model''s declarer '
    'must be allowed to read; the next training maps them into the factor space';

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
       f.key_column, f.feature_columns, f.regularization, f.text_columns, f.embedding_model,
       f.vector_column, f.vector_dims
  FROM recsys.model_feature f JOIN recsys.model m ON m.id = f.model_id;

CREATE OR REPLACE VIEW recsys.feature_maps AS
SELECT m.name AS model, f.version, f.kind, cardinality(f.tokens) AS tokens, f.text_dims,
       (f.definition ->> 'vector_dims')::integer AS vector_dims, f.regularization, f.max_norm
  FROM recsys.feature_map f JOIN recsys.model m ON m.id = f.model_id;
COMMENT ON VIEW recsys.feature_maps IS
    'the map from content to factors of each version and kind: its columns and the ridge '
    'penalty it was fitted with (declared, or chosen by cross-validation)';
