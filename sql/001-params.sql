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
        'keep_versions', 3,
        'index', 'auto')
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
    RETURN merged;
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
    index          text DEFAULT NULL
) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT recsys._check_params(jsonb_strip_nulls(jsonb_build_object(
        'factors', factors, 'regularization', regularization, 'alpha', alpha,
        'iterations', iterations, 'weighting', weighting, 'bm25_k1', bm25_k1, 'bm25_b', bm25_b,
        'random_state', random_state, 'keep_versions', keep_versions, 'index', index)))
$$;
COMMENT ON FUNCTION recsys.als IS
    'ALS training parameters as jsonb, validated and merged over the defaults';
