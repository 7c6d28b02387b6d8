-- Training parameters: a jsonb builder and the validator every entry point uses.

CREATE OR REPLACE FUNCTION recsys._default_params() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'factors', 64,
        'regularization', 0.01,
        'alpha', 1.0,
        'iterations', 15,
        'weighting', 'confidence',
        'bm25_k1', 100.0,
        'bm25_b', 0.8,
        'random_state', 42,
        'keep_versions', 2,
        'index', 'auto',
        'eval_split', 'auto',
        'eval_k', 10,
        'eval_test_fraction', 0.2,
        'eval_leave_last', 1,
        'eval_max_users', 10000,
        'gate_metric', NULL,
        'gate_min', NULL,
        'gate_baseline', true,
        'recommendations_k', 10,
        'similar_items_k', 0,
        'refresh_concurrently', false,
        'engine', 'implicit')
$$;

-- Holdout metrics stored per run (recsys.metric); the promotion gate may name any of them.
CREATE OR REPLACE FUNCTION recsys._metric_names() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['precision', 'precision_capped', 'recall', 'map', 'ndcg', 'auc', 'coverage',
                 'novelty']
$$;


-- Numeric parameters and their ranges: the one table that every check of a parameter's
-- number reads (recsys._check_params, so create_model, tuning and tune --apply; recsys.als).
-- A NULL bound is open; low_open / high_open leave the bound itself out.
CREATE OR REPLACE FUNCTION recsys._number_params()
RETURNS TABLE (name text, is_integer boolean, low numeric, low_open boolean, high numeric,
               high_open boolean)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    VALUES ('factors', true, 1, false, 2000, false),
           ('regularization', false, 0, false, NULL, false),
           ('alpha', false, 0, true, NULL, false),
           ('iterations', true, 1, false, 1000, false),
           ('bm25_k1', false, 0, false, NULL, false),
           ('bm25_b', false, 0, false, 1, false),
           ('random_state', true, 0, false, 2147483647, false),
           ('keep_versions', true, 1, false, 100, false),
           ('eval_k', true, 1, false, 1000, false),
           ('eval_test_fraction', false, 0, true, 1, true),
           ('eval_leave_last', true, 1, false, 1000, false),
           ('eval_max_users', true, 1, false, 100000000, false),
           ('gate_min', false, NULL, false, NULL, false),
           ('recommendations_k', true, 0, false, 1000, false),
           ('similar_items_k', true, 0, false, 1000, false)
$$;

-- A number as messages show it: as written, or in scientific notation when it is long (the
-- jsonb number 1e400 prints with its 400 zeros).
CREATE OR REPLACE FUNCTION recsys._number_text(value numeric) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN value IN ('NaN', 'Infinity', '-Infinity') OR length(value::text) <= 24
            THEN value::text
        ELSE regexp_replace(btrim(to_char(value, '9.99999999999999EEEE')), '\.?0*e', 'e')
    END
$$;

-- Raise unless value is a number in range that double precision represents (finite, neither
-- so large that it overflows nor so small that it rounds to 0; training reads every number as
-- a float), and an integer when is_integer. what names it in the message.
CREATE OR REPLACE FUNCTION recsys._check_number(
    what text, value numeric, is_integer boolean, low numeric, low_open boolean,
    high numeric, high_open boolean
) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    expected text;
    detail text;
BEGIN
    IF value IS NOT NULL AND value NOT IN ('NaN', 'Infinity', '-Infinity') THEN
        BEGIN
            PERFORM value::double precision;
        EXCEPTION WHEN numeric_value_out_of_range THEN
            detail := format('%s is out of range for type double precision',
                             recsys._number_text(value));
        END;
    END IF;
    IF value IS NULL OR value IN ('NaN', 'Infinity', '-Infinity') OR detail IS NOT NULL
       OR (is_integer AND value <> trunc(value))
       OR value < low OR (low_open AND value = low)
       OR value > high OR (high_open AND value = high) THEN
        IF is_integer THEN
            expected := format('an integer between %s and %s', low, high);
        ELSIF low IS NOT NULL AND high IS NOT NULL THEN
            expected := format('a number between %s and %s%s', low, high,
                               CASE WHEN low_open AND high_open THEN ' (exclusive)' ELSE '' END);
        ELSIF low IS NOT NULL THEN
            expected := format('a finite number greater than %s%s',
                               CASE WHEN low_open THEN '' ELSE 'or equal to ' END, low);
        ELSE
            expected := 'a finite number';
        END IF;
        IF detail IS NULL THEN
            RAISE EXCEPTION '% must be %, not %', what, expected,
                coalesce(recsys._number_text(value), 'null')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RAISE EXCEPTION '% must be %, not %', what, expected, recsys._number_text(value)
            USING ERRCODE = 'invalid_parameter_value', DETAIL = detail;
    END IF;
END
$$;

-- Check the value of one numeric parameter of recsys._number_params(): a jsonb number, or a
-- double precision argument of recsys.als (which may be NaN or infinite).
CREATE OR REPLACE FUNCTION recsys._check_number_param(key text, value numeric) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    p record;
BEGIN
    SELECT * INTO STRICT p FROM recsys._number_params() n WHERE n.name = key;
    PERFORM recsys._check_number(p.name, value, p.is_integer, p.low, p.low_open, p.high,
                                 p.high_open);
END
$$;

-- Merge params over the defaults and check every value; raises on the first problem.
CREATE OR REPLACE FUNCTION recsys._check_params(params jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    merged jsonb;
    key text;
BEGIN
    IF params IS NULL THEN
        params := '{}';
    END IF;
    IF jsonb_typeof(params) <> 'object' THEN
        RAISE EXCEPTION 'params must be a json object, not %', jsonb_typeof(params)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR key IN SELECT jsonb_object_keys(params) LOOP
        IF NOT recsys._default_params() ? key THEN
            RAISE EXCEPTION 'unknown parameter "%"', key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'known parameters: ' || (SELECT string_agg(k, ', ' ORDER BY k)
                                                      FROM jsonb_object_keys(recsys._default_params()) k);
        END IF;
    END LOOP;
    merged := recsys._default_params() || jsonb_strip_nulls(params);
    -- every number, in the order of recsys._number_params(): its json type, then its range
    FOR key IN SELECT n.name FROM recsys._number_params() n LOOP
        CONTINUE WHEN key = 'gate_min' AND jsonb_typeof(merged -> key) = 'null';
        IF jsonb_typeof(merged -> key) <> 'number' THEN
            RAISE EXCEPTION '% must be a number, not %', key, merged -> key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM recsys._check_number_param(key, (merged -> key)::numeric);
    END LOOP;
    IF jsonb_typeof(merged -> 'index') <> 'string'
       OR NOT (merged ->> 'index') = ANY (ARRAY['auto', 'exact', 'hnsw']) THEN
        RAISE EXCEPTION 'unknown index %', merged -> 'index'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use one of: auto, exact, hnsw';
    END IF;
    IF jsonb_typeof(merged -> 'weighting') <> 'string'
       OR NOT (merged ->> 'weighting') = ANY (ARRAY['none', 'confidence', 'bm25', 'tfidf', 'log']) THEN
        RAISE EXCEPTION 'unknown weighting %', merged -> 'weighting'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use one of: none, confidence, bm25, tfidf, log';
    END IF;
    IF jsonb_typeof(merged -> 'engine') <> 'string'
       OR NOT (merged ->> 'engine') = ANY (ARRAY['implicit', 'spark']) THEN
        RAISE EXCEPTION 'unknown engine %', merged -> 'engine'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use one of: implicit (this process), spark (pyspark.ml ALS, '
                         'recsys-db[spark])';
    END IF;
    IF jsonb_typeof(merged -> 'refresh_concurrently') <> 'boolean' THEN
        RAISE EXCEPTION 'refresh_concurrently must be a boolean, not %',
            merged -> 'refresh_concurrently'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM recsys._check_quality_params(merged);
    RETURN merged;
END
$$;

-- Evaluation and promotion gate parameters other than numbers (recsys._check_params checks
-- every number).
CREATE OR REPLACE FUNCTION recsys._check_quality_params(merged jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(merged -> 'eval_split') <> 'string'
       OR NOT (merged ->> 'eval_split') = ANY (ARRAY['auto', 'off', 'random', 'time']) THEN
        RAISE EXCEPTION 'unknown eval_split %', merged -> 'eval_split'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use one of: auto (time when the model has a time_column, else random), '
                         'off, random, time';
    END IF;
    IF jsonb_typeof(merged -> 'gate_baseline') <> 'boolean' THEN
        RAISE EXCEPTION 'gate_baseline must be a boolean, not %', merged -> 'gate_baseline'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(merged -> 'gate_metric') = 'null' THEN
        IF jsonb_typeof(merged -> 'gate_min') = 'number' THEN
            RAISE EXCEPTION 'gate_min needs gate_metric'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'for example: gate_metric => ''ndcg''';
        END IF;
        RETURN;
    END IF;
    IF jsonb_typeof(merged -> 'gate_metric') <> 'string'
       OR NOT (merged ->> 'gate_metric') = ANY (recsys._metric_names()) THEN
        RAISE EXCEPTION 'unknown gate_metric %', merged -> 'gate_metric'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use one of: ' || array_to_string(recsys._metric_names(), ', ');
    END IF;
    IF merged ->> 'eval_split' = 'off' THEN
        RAISE EXCEPTION 'gate_metric needs an evaluation, but eval_split is off'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'set eval_split to auto, random or time';
    END IF;
END
$$;

-- the signatures before refresh_concurrently and before engine: a second recsys.als would
-- make calls ambiguous
DROP FUNCTION IF EXISTS recsys.als(integer, double precision, double precision, integer, text,
                                   double precision, double precision, integer, integer, text,
                                   text, integer, double precision, integer, integer, text,
                                   double precision, boolean, integer, integer);
DROP FUNCTION IF EXISTS recsys.als(integer, double precision, double precision, integer, text,
                                   double precision, double precision, integer, integer, text,
                                   text, integer, double precision, integer, integer, text,
                                   double precision, boolean, integer, integer, boolean);

CREATE OR REPLACE FUNCTION recsys.als(
    factors        integer DEFAULT NULL,
    regularization double precision DEFAULT NULL,
    alpha          double precision DEFAULT NULL,
    iterations     integer DEFAULT NULL,
    weighting      text DEFAULT NULL,
    bm25_k1        double precision DEFAULT NULL,
    bm25_b         double precision DEFAULT NULL,
    random_state   integer DEFAULT NULL,
    keep_versions  integer DEFAULT NULL,
    index          text DEFAULT NULL,
    eval_split     text DEFAULT NULL,
    eval_k         integer DEFAULT NULL,
    eval_test_fraction double precision DEFAULT NULL,
    eval_leave_last integer DEFAULT NULL,
    eval_max_users integer DEFAULT NULL,
    gate_metric    text DEFAULT NULL,
    gate_min       double precision DEFAULT NULL,
    gate_baseline  boolean DEFAULT NULL,
    recommendations_k integer DEFAULT NULL,
    similar_items_k integer DEFAULT NULL,
    refresh_concurrently boolean DEFAULT NULL,
    engine         text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    arg record;
BEGIN
    -- A double precision argument may be NaN or infinite, which a jsonb number cannot hold
    -- (jsonb_build_object would make it the string "NaN"): check those before building.
    FOR arg IN SELECT a.name, a.value
                 FROM (VALUES ('regularization', regularization), ('alpha', alpha),
                              ('bm25_k1', bm25_k1), ('bm25_b', bm25_b),
                              ('eval_test_fraction', eval_test_fraction),
                              ('gate_min', gate_min)) a (name, value)
                WHERE a.value IS NOT NULL
    LOOP
        PERFORM recsys._check_number_param(arg.name, arg.value::numeric);
    END LOOP;
    RETURN recsys._check_params(jsonb_strip_nulls(jsonb_build_object(
        'factors', factors, 'regularization', regularization, 'alpha', alpha,
        'iterations', iterations, 'weighting', weighting, 'bm25_k1', bm25_k1, 'bm25_b', bm25_b,
        'random_state', random_state, 'keep_versions', keep_versions, 'index', index,
        'eval_split', eval_split, 'eval_k', eval_k, 'eval_test_fraction', eval_test_fraction,
        'eval_leave_last', eval_leave_last, 'eval_max_users', eval_max_users,
        'gate_metric', gate_metric, 'gate_min', gate_min, 'gate_baseline', gate_baseline,
        'recommendations_k', recommendations_k, 'similar_items_k', similar_items_k,
        'refresh_concurrently', refresh_concurrently, 'engine', engine)));
END
$$;
COMMENT ON FUNCTION recsys.als IS
    'ALS training parameters as jsonb, validated and merged over the defaults';

-- replaced by recsys._check_number_param
DROP FUNCTION IF EXISTS recsys._check_int_param(jsonb, text, numeric, numeric);
