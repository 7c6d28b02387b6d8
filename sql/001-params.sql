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
        'similar_items_k', 0)
$$;

-- Holdout metrics stored per run (recsys.metric); the promotion gate may name any of them.
CREATE OR REPLACE FUNCTION recsys._metric_names() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['precision', 'precision_capped', 'recall', 'map', 'ndcg', 'auc', 'coverage',
                 'novelty']
$$;

-- Raise unless merged -> key is an integer between low and high.
CREATE OR REPLACE FUNCTION recsys._check_int_param(merged jsonb, key text, low numeric,
                                                   high numeric) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(merged -> key) <> 'number'
       OR (merged ->> key)::numeric NOT BETWEEN low AND high
       OR (merged ->> key)::numeric <> trunc((merged ->> key)::numeric) THEN
        RAISE EXCEPTION '% must be an integer between % and %, not %', key, low, high, merged -> key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Merge params over the defaults and check every value; raises on the first problem.
CREATE OR REPLACE FUNCTION recsys._check_params(params jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    merged jsonb;
    key text;
    num_keys constant text[] := ARRAY['factors', 'regularization', 'alpha', 'iterations',
                                      'bm25_k1', 'bm25_b', 'random_state', 'keep_versions'];
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
    FOREACH key IN ARRAY num_keys LOOP
        IF jsonb_typeof(merged -> key) <> 'number' THEN
            RAISE EXCEPTION 'parameter "%" must be a number, not %', key, jsonb_typeof(merged -> key)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    IF (merged ->> 'factors')::numeric NOT BETWEEN 1 AND 2000
       OR (merged ->> 'factors')::numeric <> trunc((merged ->> 'factors')::numeric) THEN
        RAISE EXCEPTION 'factors must be an integer between 1 and 2000, not %', merged ->> 'factors'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (merged ->> 'iterations')::numeric NOT BETWEEN 1 AND 1000
       OR (merged ->> 'iterations')::numeric <> trunc((merged ->> 'iterations')::numeric) THEN
        RAISE EXCEPTION 'iterations must be an integer between 1 and 1000, not %', merged ->> 'iterations'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (merged ->> 'regularization')::numeric < 0 THEN
        RAISE EXCEPTION 'regularization must be non-negative, not %', merged ->> 'regularization'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (merged ->> 'alpha')::numeric <= 0 THEN
        RAISE EXCEPTION 'alpha must be positive, not %', merged ->> 'alpha'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (merged ->> 'bm25_k1')::numeric < 0 THEN
        RAISE EXCEPTION 'bm25_k1 must be non-negative, not %', merged ->> 'bm25_k1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (merged ->> 'bm25_b')::numeric NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'bm25_b must be between 0 and 1, not %', merged ->> 'bm25_b'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (merged ->> 'random_state')::numeric NOT BETWEEN 0 AND 2147483647
       OR (merged ->> 'random_state')::numeric <> trunc((merged ->> 'random_state')::numeric) THEN
        RAISE EXCEPTION 'random_state must be an integer between 0 and 2147483647, not %',
            merged ->> 'random_state'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (merged ->> 'keep_versions')::numeric NOT BETWEEN 1 AND 100
       OR (merged ->> 'keep_versions')::numeric <> trunc((merged ->> 'keep_versions')::numeric) THEN
        RAISE EXCEPTION 'keep_versions must be an integer between 1 and 100, not %',
            merged ->> 'keep_versions'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
    PERFORM recsys._check_quality_params(merged);
    RETURN merged;
END
$$;

-- Evaluation, promotion gate and precompute parameters.
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
    PERFORM recsys._check_int_param(merged, 'eval_k', 1, 1000);
    PERFORM recsys._check_int_param(merged, 'eval_leave_last', 1, 1000);
    PERFORM recsys._check_int_param(merged, 'eval_max_users', 1, 100000000);
    PERFORM recsys._check_int_param(merged, 'recommendations_k', 0, 1000);
    PERFORM recsys._check_int_param(merged, 'similar_items_k', 0, 1000);
    IF jsonb_typeof(merged -> 'eval_test_fraction') <> 'number'
       OR (merged ->> 'eval_test_fraction')::numeric <= 0
       OR (merged ->> 'eval_test_fraction')::numeric >= 1 THEN
        RAISE EXCEPTION 'eval_test_fraction must be a number between 0 and 1 (exclusive), not %',
            merged -> 'eval_test_fraction'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(merged -> 'gate_baseline') <> 'boolean' THEN
        RAISE EXCEPTION 'gate_baseline must be a boolean, not %', merged -> 'gate_baseline'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(merged -> 'gate_min') NOT IN ('null', 'number') THEN
        RAISE EXCEPTION 'gate_min must be a number, not %', merged -> 'gate_min'
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
    similar_items_k integer DEFAULT NULL
) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT recsys._check_params(jsonb_strip_nulls(jsonb_build_object(
        'factors', factors, 'regularization', regularization, 'alpha', alpha,
        'iterations', iterations, 'weighting', weighting, 'bm25_k1', bm25_k1, 'bm25_b', bm25_b,
        'random_state', random_state, 'keep_versions', keep_versions, 'index', index,
        'eval_split', eval_split, 'eval_k', eval_k, 'eval_test_fraction', eval_test_fraction,
        'eval_leave_last', eval_leave_last, 'eval_max_users', eval_max_users,
        'gate_metric', gate_metric, 'gate_min', gate_min, 'gate_baseline', gate_baseline,
        'recommendations_k', recommendations_k, 'similar_items_k', similar_items_k)))
$$;
COMMENT ON FUNCTION recsys.als IS
    'ALS training parameters as jsonb, validated and merged over the defaults';
