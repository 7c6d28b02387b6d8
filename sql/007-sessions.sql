-- Sessions and baskets (exact ALS fold-in in the database), and candidate filters.
-- (recsys.explain, which scores with the fold-in helpers below, is in 011-explain.sql.)
--
-- Fold-in is implicit's exact ALS user solve, done in the database. For items i with
-- confidences c_i (and item factors y_i of the active version):
--
--   A = YᵀY + λI + Σ_i (|c_i| - 1) y_i y_iᵀ        b = Σ_{c_i > 0} c_i y_i        x = A⁻¹ b
--
-- YᵀY is computed once per version and cached in recsys.version_stats (keyed by model,
-- version and item count, so rows appended to an item table invalidate it); A is solved
-- with a Cholesky factorization in PL/pgSQL.

-- Cholesky factor L (row-major n x n, lower triangular) of a symmetric positive definite
-- row-major n x n matrix.
CREATE OR REPLACE FUNCTION recsys._cholesky(a double precision[], n integer)
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    m double precision[] := a;
    l double precision[] := array_fill(0::double precision, ARRAY[n * n]);
    s double precision;
    pivot double precision;
    row_i integer;
    row_j integer;
BEGIN
    IF cardinality(m) <> n * n THEN
        RAISE EXCEPTION 'expected % elements for a % x % matrix, not %', n * n, n, n, cardinality(m)
            USING ERRCODE = 'array_subscript_error';
    END IF;
    FOR j IN 1..n LOOP
        row_j := (j - 1) * n;
        s := m[row_j + j];
        FOR p IN 1..j - 1 LOOP
            s := s - l[row_j + p] * l[row_j + p];
        END LOOP;
        IF NOT s > 0 THEN  -- written this way round so that NaN fails too
            RAISE EXCEPTION 'matrix is not positive definite'
                USING ERRCODE = 'data_exception',
                      DETAIL = format('pivot %s of %s is %s', j, n, s);
        END IF;
        pivot := sqrt(s);
        l[row_j + j] := pivot;
        FOR i IN j + 1..n LOOP
            row_i := (i - 1) * n;
            s := m[row_i + j];
            FOR p IN 1..j - 1 LOOP
                s := s - l[row_i + p] * l[row_j + p];
            END LOOP;
            l[row_i + j] := s / pivot;
        END LOOP;
    END LOOP;
    RETURN l;
END
$$;

-- Solve L Lᵀ x = b for x, given the Cholesky factor L from recsys._cholesky.
CREATE OR REPLACE FUNCTION recsys._cholesky_solve(l double precision[], n integer,
                                                  b double precision[])
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    factor double precision[] := l;
    z double precision[] := b;
    s double precision;
    row_i integer;
BEGIN
    IF cardinality(z) <> n THEN
        RAISE EXCEPTION 'expected % elements on the right-hand side, not %', n, cardinality(z)
            USING ERRCODE = 'array_subscript_error';
    END IF;
    FOR i IN 1..n LOOP  -- L z = b
        row_i := (i - 1) * n;
        s := z[i];
        FOR p IN 1..i - 1 LOOP
            s := s - factor[row_i + p] * z[p];
        END LOOP;
        z[i] := s / factor[row_i + i];
    END LOOP;
    FOR i IN REVERSE n..1 LOOP  -- Lᵀ x = z
        s := z[i];
        FOR p IN i + 1..n LOOP
            s := s - factor[(p - 1) * n + i] * z[p];
        END LOOP;
        z[i] := s / factor[(i - 1) * n + i];
    END LOOP;
    RETURN z;
END
$$;

-- The cached statistics of a version, computed (and cached, unless the transaction is
-- read-only) when missing or when the item table has grown since.
CREATE OR REPLACE FUNCTION recsys._version_stats(v recsys.model_version)
RETURNS recsys.version_stats
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    stats recsys.version_stats;
    item_count integer;
    weights double precision[];
BEGIN
    EXECUTE format('SELECT coalesce(max(idx) + 1, 0) FROM recsys.%I', v.item_table)
        INTO item_count;
    SELECT * INTO stats FROM recsys.version_stats s
     WHERE s.model_id = v.model_id AND s.version = v.version AND s.items = item_count;
    IF FOUND THEN
        RETURN stats;
    END IF;
    stats.model_id := v.model_id;
    stats.version := v.version;
    stats.items := item_count;
    stats.computed_at := now();
    -- Column d of YᵀY is Σ_i y_i * y_i[d]; pgvector multiplies and sums the vectors in C.
    EXECUTE format(
        'SELECT array_agg(e.x::double precision ORDER BY col.d, e.n)
           FROM (SELECT f.d, @vector@.sum(i.factors OPERATOR(@vector@.*)
                                          array_fill(f.val, ARRAY[%s])::@vector@.vector) AS total
                   FROM recsys.%I i, unnest(i.factors::real[]) WITH ORDINALITY f (val, d)
                  GROUP BY f.d) col,
                unnest(col.total::real[]) WITH ORDINALITY e (x, n)',
        v.factors, v.item_table)
        INTO stats.gram;
    IF v.params ->> 'weighting' = 'bm25' THEN
        -- the summed raw weight per item index that training (and fold-in, for the items it
        -- adds) stored; never a read of the source, which this function's owner may not read
        SELECT w.item_weight INTO weights FROM recsys.version_item_weight w
         WHERE w.model_id = v.model_id AND w.version = v.version;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'version % of model "%" has no stored item weights; retrain it',
                v.version, (SELECT m.name FROM recsys.model m WHERE m.id = v.model_id)
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'bm25 weighting needs each item''s summed weight at training time',
                      HINT = 'train the model again';
        END IF;
        stats.item_weight := weights[1:item_count]
            || array_fill(0::double precision,
                          ARRAY[greatest(item_count - coalesce(cardinality(weights), 0), 0)]);
    END IF;
    BEGIN
        INSERT INTO recsys.version_stats AS s (model_id, version, items, gram, item_weight,
                                               computed_at)
        VALUES (stats.model_id, stats.version, stats.items, stats.gram, stats.item_weight,
                stats.computed_at)
        ON CONFLICT (model_id, version) DO UPDATE
            SET items = excluded.items, gram = excluded.gram, item_weight = excluded.item_weight,
                computed_at = excluded.computed_at;
        -- versions that are no longer servable need no statistics
        DELETE FROM recsys.version_stats s USING recsys.model_version mv
         WHERE s.model_id = v.model_id AND mv.model_id = s.model_id AND mv.version = s.version
           AND mv.status <> 'ready';
    EXCEPTION WHEN read_only_sql_transaction THEN
        NULL;  -- e.g. on a hot standby: serve from the freshly computed statistics
    END;
    RETURN stats;
END
$$;

-- Confidences of one user row (item indices, summed raw weights), as weighting.apply computes
-- them at training time with the version's parameters. bm25 and tfidf are computed over items
-- with this row as one of the "terms", exactly as implicit's bm25_weight / tfidf_weight.
CREATE OR REPLACE FUNCTION recsys._confidences(
    v recsys.model_version, stats recsys.version_stats, item_idx integer[],
    raw_sum double precision[]
) RETURNS double precision[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(
               CASE v.params ->> 'weighting'
                   WHEN 'none' THEN u.raw
                   WHEN 'confidence' THEN 1 + alpha * u.raw
                   WHEN 'log' THEN 1 + alpha * ln(1 + u.raw)
                   WHEN 'tfidf' THEN sqrt(u.raw) * idf
                   WHEN 'bm25' THEN
                       u.raw * (k1 + 1)
                       / (k1 * ((1 - b) + b * stats.item_weight[u.idx + 1] / mean_weight) + u.raw)
                       * idf
               END
               ORDER BY u.n)
      FROM unnest(item_idx, raw_sum) WITH ORDINALITY u (idx, raw, n),
           LATERAL (SELECT (v.params ->> 'alpha')::double precision AS alpha,
                           (v.params ->> 'bm25_k1')::double precision AS k1,
                           (v.params ->> 'bm25_b')::double precision AS b,
                           ln(v.items) - ln(1 + cardinality(item_idx)) AS idf,
                           (SELECT sum(w) / cardinality(stats.item_weight)
                              FROM unnest(stats.item_weight) w) AS mean_weight) p
$$;

-- A = YᵀY + λI + Σ_i (|c_i| - 1) y_i y_iᵀ, row-major, for items idx with confidences conf.
CREATE OR REPLACE FUNCTION recsys._user_system(
    v recsys.model_version, stats recsys.version_stats, idx integer[],
    conf double precision[]
) RETURNS double precision[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n constant integer := v.factors;
    lambda constant double precision := (v.params ->> 'regularization')::double precision;
    a double precision[] := stats.gram;
    correction double precision[];
BEGIN
    EXECUTE format(
        'SELECT array_agg(e.x::double precision ORDER BY col.d, e.n)
           FROM (SELECT f.d,
                        @vector@.sum(i.factors OPERATOR(@vector@.*)
                                    array_fill((abs(u.c) - 1) * f.val, ARRAY[%s])::@vector@.vector)
                            AS total
                   FROM unnest($1, $2) u (idx, c)
                   JOIN recsys.%I i ON i.idx = u.idx,
                        unnest(i.factors::real[]) WITH ORDINALITY f (val, d)
                  GROUP BY f.d) col,
                unnest(col.total::real[]) WITH ORDINALITY e (x, n)',
        n, v.item_table)
        INTO correction USING idx, conf;
    FOR i IN 1..n * n LOOP
        a[i] := a[i] + coalesce(correction[i], 0);
    END LOOP;
    FOR i IN 1..n LOOP
        a[(i - 1) * n + i] := a[(i - 1) * n + i] + lambda;
    END LOOP;
    RETURN a;
END
$$;

-- The user vector implicit's recalculate_user computes for items idx with summed raw weights.
CREATE OR REPLACE FUNCTION recsys._fold_in(v recsys.model_version, idx integer[],
                                           raw double precision[])
RETURNS double precision[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    stats recsys.version_stats := recsys._version_stats(v);
    conf double precision[] := recsys._confidences(v, stats, idx, raw);
    b double precision[];
BEGIN
    EXECUTE format(
        'SELECT array_agg(coalesce(t.total, 0) ORDER BY g.d)
           FROM generate_series(1, %s) g (d)
           LEFT JOIN (SELECT f.d, sum(u.c * f.val) AS total
                        FROM unnest($1, $2) u (idx, c)
                        JOIN recsys.%I i ON i.idx = u.idx,
                             unnest(i.factors::real[]) WITH ORDINALITY f (val, d)
                       WHERE u.c > 0
                       GROUP BY f.d) t ON t.d = g.d',
        v.factors, v.item_table)
        INTO b USING idx, conf;
    RETURN recsys._cholesky_solve(
        recsys._cholesky(recsys._user_system(v, stats, idx, conf), v.factors), v.factors, b);
END
$$;

CREATE OR REPLACE FUNCTION recsys.recommend_for_items(
    model text, item_keys text[], k integer DEFAULT 10
) RETURNS TABLE (item_key text, score double precision, rank integer, reason text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v recsys.model_version;
    idx integer[];
    raw double precision[];
BEGIN
    PERFORM recsys._check_k(k);
    IF item_keys IS NULL THEN
        RAISE EXCEPTION 'item_keys must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF array_position(item_keys, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'item_keys must not contain null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = format('element %s of %s is null', array_position(item_keys, NULL),
                                  cardinality(item_keys));
    END IF;
    v := recsys._active_version(model);
    -- each occurrence of a key is one interaction of weight 1, as in a source without weights
    EXECUTE format(
        'SELECT array_agg(i.idx ORDER BY i.idx), array_agg(b.n ORDER BY i.idx)
           FROM (SELECT key, count(*)::double precision AS n FROM unnest($1) key GROUP BY key) b
           JOIN recsys.%I i ON i.key = b.key',
        v.item_table)
        INTO idx, raw USING item_keys;
    IF idx IS NULL THEN
        RETURN QUERY
            SELECT p.item_key, p.score, (row_number() OVER (ORDER BY p.rank))::integer,
                   'popular'::text
              FROM recsys.popular(model, least(k::bigint + cardinality(item_keys),
                                               2147483647)::integer) p
             WHERE p.item_key <> ALL (item_keys)
             ORDER BY p.rank LIMIT k;
        RETURN;
    END IF;
    -- The inner query has the shape an index on factors can serve; the basket's items are
    -- removed afterwards, so k rows come back whenever k other items exist.
    RETURN QUERY EXECUTE format(
        'SELECT key, -distance, (row_number() OVER (ORDER BY distance, key COLLATE "C"))::integer, ''als''::text
           FROM (SELECT i.idx, i.key, i.factors OPERATOR(@vector@.<#>) $1 AS distance
                   FROM recsys.%I i
                  ORDER BY i.factors OPERATOR(@vector@.<#>) $1
                  LIMIT $3::bigint + cardinality($2)) top
          WHERE idx <> ALL ($2)
          ORDER BY distance, key COLLATE "C"
          LIMIT $3',
        v.item_table)
        USING recsys._fold_in(v, idx, raw)::@vector@.vector, idx, k;
END
$$;
COMMENT ON FUNCTION recsys.recommend_for_items IS
    'top-k items for an anonymous session or basket, by exact ALS fold-in of its items; '
    'the basket''s items are excluded, unknown keys ignored, no known item gives popular items';

CREATE OR REPLACE FUNCTION recsys.recommend_filtered(
    model text, user_key text, candidates text[], k integer DEFAULT 10,
    exclude_seen boolean DEFAULT true
) RETURNS TABLE (item_key text, score double precision, rank integer, reason text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version;
    query_vector @vector@.vector;
    seen integer[];
BEGIN
    PERFORM recsys._check_k(k);
    IF candidates IS NULL THEN
        RAISE EXCEPTION 'candidates must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'to rank every item use recsys.recommend';
    END IF;
    v := recsys._active_version(model);
    EXECUTE format('SELECT factors, seen FROM recsys.%I WHERE key = $1', v.user_table)
        INTO query_vector, seen USING user_key;
    IF query_vector IS NULL THEN
        RETURN QUERY EXECUTE format(
            'SELECT key, popularity::double precision,
                    (row_number() OVER (ORDER BY popularity DESC, key COLLATE "C"))::integer, ''popular''::text
               FROM recsys.%I WHERE key = ANY ($1)
              ORDER BY popularity DESC, key COLLATE "C" LIMIT $2', v.item_table)
            USING candidates, k;
        RETURN;
    END IF;
    IF exclude_seen IS DISTINCT FROM true THEN
        seen := '{}';
    END IF;
    -- candidates are looked up through the key index and scored exactly
    RETURN QUERY EXECUTE format(
        'SELECT key, -distance, (row_number() OVER (ORDER BY distance, key COLLATE "C"))::integer, ''als''::text
           FROM (SELECT i.idx, i.key, i.factors OPERATOR(@vector@.<#>) $1 AS distance
                   FROM recsys.%I i
                  WHERE i.key = ANY ($2) AND i.idx <> ALL ($3)) scored
          ORDER BY distance, key COLLATE "C"
          LIMIT $4', v.item_table)
        USING query_vector, candidates, seen, k;
END
$$;
COMMENT ON FUNCTION recsys.recommend_filtered IS
    'top-k items for a user among candidate item keys (business rules); keys not in the model '
    'are ignored; unknown users get the most popular candidates (reason = popular)';
