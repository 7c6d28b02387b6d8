-- Sessions and baskets (exact ALS fold-in in the database), and candidate filters.
-- (recsys.explain, which scores with the fold-in helpers below, is in 011-explain.sql.)
--
-- Fold-in is implicit's exact ALS user solve, done in the database. For items i with
-- confidences c_i (and item factors y_i of the active version):
--
--   A = YᵀY + λI + Σ_i (|c_i| - 1) y_i y_iᵀ        b = Σ_{c_i > 0} c_i y_i        x = A⁻¹ b
--
-- Training stores a basis W with W Wᵀ = (YᵀY + λI)⁻¹ (recsys.version_basis, recsys_db/gram.py).
-- With ŷ = Wᵀ y the system becomes (I + Σ_i (|c_i| - 1) ŷ_i ŷ_iᵀ) x̂ = Wᵀ b, x = W x̂: the
-- identity plus a term of rank n (the basket's size), whose eigenvalues lie between 1 and
-- max |c_i| when every |c_i| ≥ 1 (Σ over all items of ŷ ŷᵀ is at most I). Conjugate gradients
-- solve it with pgvector's operators in O((n + f) f) per step (f factors) and, in exact
-- arithmetic, at most n + 1 steps; no f x f matrix is factorized per call.

-- The number of rows of a version's item table (trained, feature-mapped and folded-in items).
CREATE OR REPLACE FUNCTION recsys._item_count(v recsys.model_version)
RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    item_count integer;
BEGIN
    EXECUTE format('SELECT coalesce(max(idx) + 1, 0) FROM recsys.%I', v.item_table)
        INTO item_count;
    RETURN item_count;
END
$$;

-- Checks that a version's stored basis (recsys.version_basis) covers its items.
CREATE OR REPLACE FUNCTION recsys._check_basis(v recsys.model_version)
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    item_count constant integer := recsys._item_count(v);
    columns integer;
    vectors integer;
BEGIN
    SELECT count(*), count(b.w_column) INTO columns, vectors
      FROM recsys.version_basis b
     WHERE b.model_id = v.model_id AND b.version = v.version AND b.items = item_count;
    IF columns = 0 THEN
        RAISE EXCEPTION 'version % of model "%" has no basis for its % items', v.version,
            (SELECT m.name FROM recsys.model m WHERE m.id = v.model_id), item_count
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'training and fold-ins store it (recsys.version_basis)',
                  HINT = 'train the model again';
    END IF;
    IF vectors = 0 THEN  -- regularization 0 and YᵀY singular
        RAISE EXCEPTION 'matrix is not positive definite'
            USING ERRCODE = 'data_exception',
                  DETAIL = 'YᵀY + λI of the item factors is singular';
    END IF;
    IF columns <> v.factors OR vectors <> v.factors THEN
        RAISE EXCEPTION 'the basis of version % of model % has % of % columns', v.version,
            v.model_id, vectors, v.factors
            USING ERRCODE = 'data_corrupted', HINT = 'train the model again';
    END IF;
END
$$;

-- Confidences of one user row (item indices, summed raw weights), as weighting.apply computes
-- them at training time with the version's parameters. bm25 and tfidf are computed over items
-- with this row as one of the "terms", exactly as implicit's bm25_weight / tfidf_weight.
CREATE OR REPLACE FUNCTION recsys._confidences(
    v recsys.model_version, item_idx integer[], raw_sum double precision[]
) RETURNS double precision[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    item_weight double precision[];
    item_count integer;
BEGIN
    IF v.params ->> 'weighting' = 'bm25' THEN
        -- the summed raw weight per item index that training stored; never a read of the
        -- source, which this function's owner may not read
        SELECT w.item_weight INTO item_weight FROM recsys.version_item_weight w
         WHERE w.model_id = v.model_id AND w.version = v.version;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'version % of model "%" has no stored item weights; retrain it',
                v.version, (SELECT m.name FROM recsys.model m WHERE m.id = v.model_id)
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'bm25 weighting needs each item''s summed weight at training time',
                      HINT = 'train the model again';
        END IF;
        -- items beyond the stored weights (feature-mapped ones) weigh 0
        item_count := recsys._item_count(v);
        item_weight := item_weight[1:item_count]
            || array_fill(0::double precision,
                          ARRAY[greatest(item_count - coalesce(cardinality(item_weight), 0), 0)]);
    END IF;
    RETURN (
        SELECT array_agg(
                   CASE v.params ->> 'weighting'
                       WHEN 'none' THEN u.raw
                       WHEN 'confidence' THEN 1 + alpha * u.raw
                       WHEN 'log' THEN 1 + alpha * ln(1 + u.raw)
                       WHEN 'tfidf' THEN sqrt(u.raw) * idf
                       WHEN 'bm25' THEN
                           u.raw * (k1 + 1)
                           / (k1 * ((1 - b) + b * item_weight[u.idx + 1] / mean_weight) + u.raw)
                           * idf
                   END
                   ORDER BY u.n)
          FROM unnest(item_idx, raw_sum) WITH ORDINALITY u (idx, raw, n),
               LATERAL (SELECT (v.params ->> 'alpha')::double precision AS alpha,
                               (v.params ->> 'bm25_k1')::double precision AS k1,
                               (v.params ->> 'bm25_b')::double precision AS b,
                               ln(v.items) - ln(1 + cardinality(item_idx)) AS idf,
                               (SELECT sum(w) / cardinality(item_weight)
                                  FROM unnest(item_weight) w) AS mean_weight) p);
END
$$;

-- The fold-in system of items idx with confidences conf (see the top of this file), solved.
-- Without target: the user vector x = A⁻¹ b. With target: y_jᵀ A⁻¹ target for each item j of
-- idx, in idx's order (recsys.explain: scaled by c_j, item j's contribution to the score).
CREATE OR REPLACE FUNCTION recsys._fold_in_solve(
    v recsys.model_version, idx integer[], conf double precision[],
    target @vector@.vector DEFAULT NULL
) RETURNS double precision[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n constant integer := v.factors;
    explaining constant boolean := target IS NOT NULL;
    zero constant @vector@.vector := array_fill(0::real, ARRAY[n])::@vector@.vector;
    items @vector@.vector[];
    whitened boolean := false;
    weight double precision[];  -- |c_i| - 1
    x @vector@.vector := zero;
    r @vector@.vector;
    p @vector@.vector;
    q @vector@.vector;
    u @vector@.vector;  -- W p
    t @vector@.vector;  -- Σ_i d_i y_i (y_i · W p)
    rr double precision;
    rr_start double precision;
    rr_before double precision;
    pq double precision;
    step double precision;
BEGIN
    IF cardinality(idx) IS DISTINCT FROM cardinality(conf) THEN
        RAISE EXCEPTION 'expected % confidences, not %', cardinality(idx), cardinality(conf)
            USING ERRCODE = 'array_subscript_error';
    END IF;
    PERFORM recsys._check_basis(v);
    -- the items' vectors, read (and detoasted) once
    EXECUTE format('SELECT array_agg(i.factors ORDER BY u.n)
                      FROM unnest($1) WITH ORDINALITY u (idx, n) JOIN recsys.%I i ON i.idx = u.idx',
                   v.item_table)
        INTO items USING idx;
    IF cardinality(items) IS DISTINCT FROM cardinality(idx) THEN
        RAISE EXCEPTION 'items % are not all in version % of model %', idx, v.version,
            v.model_id
            USING ERRCODE = 'no_data_found';
    END IF;
    weight := ARRAY(SELECT abs(c) - 1 FROM unnest(conf) c);
    IF NOT explaining THEN  -- b = Σ_{c_i > 0} c_i y_i
        SELECT coalesce(@vector@.sum(i.y OPERATOR(@vector@.*)
                                     array_fill(i.c, ARRAY[n])::@vector@.vector), zero)
          INTO target FROM unnest(items, conf) i (y, c) WHERE i.c > 0;
    END IF;
    -- Wᵀ b (or Wᵀ target)
    SELECT array_agg(-(b.w_column OPERATOR(@vector@.<#>) target) ORDER BY b.k)::@vector@.vector
      INTO r FROM recsys.version_basis b
     WHERE b.model_id = v.model_id AND b.version = v.version;
    IF cardinality(idx) <= 16 THEN
        -- few items: whiten them once (n·f products), then each step is n products instead
        -- of 2f (ŷ_i = Wᵀ y_i; the products are sorted, not the vectors)
        SELECT array_agg(w.y ORDER BY w.n) INTO items
          FROM (SELECT d.n, array_agg(d.x ORDER BY d.k)::@vector@.vector AS y
                  FROM (SELECT i.n, b.k, -(i.y OPERATOR(@vector@.<#>) b.w_column) AS x
                          FROM unnest(items) WITH ORDINALITY i (y, n), recsys.version_basis b
                         WHERE b.model_id = v.model_id AND b.version = v.version
                        OFFSET 0) d
                 GROUP BY d.n) w;
        whitened := true;
    END IF;
    -- conjugate gradients on I + Wᵀ (Σ_i weight_i y_i y_iᵀ) W from x̂ = 0, to the precision
    -- of float32; each step multiplies by W, by the items and by Wᵀ (or by the whitened items)
    p := r;
    rr := -(r OPERATOR(@vector@.<#>) r);
    rr_start := rr;
    FOR step_count IN 1..2 * least(cardinality(idx), n) + 10 LOOP
        EXIT WHEN rr <= rr_start * 1e-14;
        IF whitened THEN
            SELECT p OPERATOR(@vector@.+)
                   coalesce(@vector@.sum(i.y OPERATOR(@vector@.*)
                                         array_fill(-(i.y OPERATOR(@vector@.<#>) p) * i.d,
                                                    ARRAY[n])::@vector@.vector), zero)
              INTO q FROM unnest(items, weight) i (y, d) WHERE i.d <> 0;
        ELSE
            -- three statements, not one: joined in one query, the planner may run the inner
            -- products once per row of the basis (f times the work; measured 30-150x slower)
            SELECT array_agg(-(w.w_row OPERATOR(@vector@.<#>) p) ORDER BY w.k)::@vector@.vector
              INTO u FROM recsys.version_basis w
             WHERE w.model_id = v.model_id AND w.version = v.version;
            SELECT coalesce(@vector@.sum(i.y OPERATOR(@vector@.*)
                                         array_fill(-(i.y OPERATOR(@vector@.<#>) u) * i.d,
                                                    ARRAY[n])::@vector@.vector), zero)
              INTO t FROM unnest(items, weight) i (y, d) WHERE i.d <> 0;
            SELECT p OPERATOR(@vector@.+)
                   array_agg(-(b.w_column OPERATOR(@vector@.<#>) t) ORDER BY b.k)::@vector@.vector
              INTO q FROM recsys.version_basis b
             WHERE b.model_id = v.model_id AND b.version = v.version;
        END IF;
        pq := -(p OPERATOR(@vector@.<#>) q);
        IF NOT pq > 0 THEN  -- written this way round so that NaN fails too
            RAISE EXCEPTION 'matrix is not positive definite'
                USING ERRCODE = 'data_exception',
                      DETAIL = format('curvature %s at step %s', pq, step_count);
        END IF;
        step := rr / pq;
        x := x OPERATOR(@vector@.+)
             (p OPERATOR(@vector@.*) array_fill(step, ARRAY[n])::@vector@.vector);
        r := r OPERATOR(@vector@.-)
             (q OPERATOR(@vector@.*) array_fill(step, ARRAY[n])::@vector@.vector);
        rr_before := rr;
        rr := -(r OPERATOR(@vector@.<#>) r);
        p := r OPERATOR(@vector@.+)
             (p OPERATOR(@vector@.*) array_fill(rr / rr_before, ARRAY[n])::@vector@.vector);
    END LOOP;
    IF explaining AND whitened THEN  -- y_jᵀ W ẑ = ŷ_j · ẑ
        RETURN ARRAY(SELECT -(i.y OPERATOR(@vector@.<#>) x)
                       FROM unnest(items) WITH ORDINALITY i (y, n) ORDER BY i.n);
    END IF;
    -- W x̂
    SELECT array_agg(-(b.w_row OPERATOR(@vector@.<#>) x) ORDER BY b.k)::@vector@.vector
      INTO x FROM recsys.version_basis b
     WHERE b.model_id = v.model_id AND b.version = v.version;
    IF NOT explaining THEN
        RETURN x::real[]::double precision[];
    END IF;
    RETURN ARRAY(SELECT -(i.y OPERATOR(@vector@.<#>) x)
                   FROM unnest(items) WITH ORDINALITY i (y, n) ORDER BY i.n);
END
$$;

-- The user vector implicit's recalculate_user computes for items idx with summed raw weights.
CREATE OR REPLACE FUNCTION recsys._fold_in(v recsys.model_version, idx integer[],
                                           raw double precision[])
RETURNS double precision[]
LANGUAGE sql STABLE AS $$
    SELECT recsys._fold_in_solve(v, idx, recsys._confidences(v, idx, raw))
$$;

CREATE OR REPLACE FUNCTION recsys.recommend_for_items(
    model text, item_keys text[], k integer DEFAULT 10
) RETURNS TABLE (item_key text, score double precision, rank integer, reason text)
LANGUAGE plpgsql STABLE AS $$
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
        'SELECT key, -distance, (row_number() OVER (ORDER BY distance, key COLLATE "C"))::integer,
                CASE WHEN from_content THEN ''content'' ELSE ''als'' END
           FROM (SELECT i.idx, i.key, i.from_content,
                        i.factors OPERATOR(@vector@.<#>) $1 AS distance
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
    user_content boolean;
BEGIN
    PERFORM recsys._check_k(k);
    IF candidates IS NULL THEN
        RAISE EXCEPTION 'candidates must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'to rank every item use recsys.recommend';
    END IF;
    v := recsys._active_version(model);
    EXECUTE format('SELECT factors, seen, from_content FROM recsys.%I WHERE key = $1',
                   v.user_table)
        INTO query_vector, seen, user_content USING user_key;
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
        'SELECT key, -distance, (row_number() OVER (ORDER BY distance, key COLLATE "C"))::integer,
                CASE WHEN $5 OR from_content THEN ''content'' ELSE ''als'' END
           FROM (SELECT i.idx, i.key, i.from_content,
                        i.factors OPERATOR(@vector@.<#>) $1 AS distance
                   FROM recsys.%I i
                  WHERE i.key = ANY ($2) AND i.idx <> ALL ($3)) scored
          ORDER BY distance, key COLLATE "C"
          LIMIT $4', v.item_table)
        USING query_vector, candidates, seen, k, user_content;
END
$$;
COMMENT ON FUNCTION recsys.recommend_filtered IS
    'top-k items for a user among candidate item keys (business rules); keys not in the model '
    'are ignored; unknown users get the most popular candidates (reason = popular)';
