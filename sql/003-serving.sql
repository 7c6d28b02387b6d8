-- Serving: every function reads the active version of a model only.
-- Factor tables are recsys.<user_table>(idx, key, factors, seen) and
-- recsys.<item_table>(idx, key, factors, popularity); their names are derived from the model id
-- and version and checked by recsys._checked (sql/010-storage.sql), never read from a row.
-- @vector@ is the schema of the vector extension (install writes it in): every pgvector type
-- and operator is named with it, since no function has that schema on its search_path.

CREATE OR REPLACE FUNCTION recsys.popular(model text, k integer DEFAULT 10)
RETURNS TABLE (item_key text, score double precision, rank integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version;
BEGIN
    PERFORM recsys._check_k(k);
    v := recsys._active_version(model);
    RETURN QUERY EXECUTE format(
        'SELECT key, popularity::double precision,
                (row_number() OVER (ORDER BY popularity DESC, key COLLATE "C"))::integer
           FROM recsys.%I ORDER BY popularity DESC, key COLLATE "C" LIMIT $1', v.item_table)
        USING k;
END
$$;
COMMENT ON FUNCTION recsys.popular IS 'the k items with the most distinct users in the active version';

-- Equal scores: every ranking of recsys-db (live, precomputed, fold-in) puts equal scores in
-- the byte order of the key (COLLATE "C"). A version numbers its trained items in that order,
-- so the precomputed paths sort ties by index and get the same order.

-- The k items of a version with the highest inner product with `query`, skipping the item
-- indices in `skip`: the version's hnsw index where it reached the recall target at this k
-- (inner product over the plain factors column, so fold-in writes keep it current; iterative
-- scan so that skipped items do not leave fewer than k rows), otherwise an exact scan. Shared
-- by recommend and the recall check after a build.
--
-- Big catalogs (index_head_by_k): the graph misses the few far, popular items (ALS gives them
-- the largest norms), so the search first scores exactly the `head` largest-norm unseen items,
-- read in norm order from the btree on vector_norm(factors). Cauchy-Schwarz (score <=
-- |query| * |item|) bounds every item not read: when the head's k-th score beats |query| times
-- the smallest norm read, the head's best k are the exact answer (45-60% of users at k 10 on
-- synthetic power-law catalogs of 200k and 1M items). Otherwise it reads on in norm order, up
-- to `head` more, the items whose norm could still beat it: exact when fewer were left;
-- else the graph's top k join them and the best k of all are returned, within the recall
-- measured at build time. (Reading on where the bound fails reached the recall of a head
-- twice as large, at half its reads for the certified users.)
--
-- Iterative index scans (pgvector 0.8): install adds SET hnsw.iterative_scan = relaxed_order to
-- this function where the server has them (recsys_db/install.py), so that skipped items do not
-- leave the graph with fewer than k rows. Without them a graph search stops at ef_search rows,
-- skipped ones included: it asks for k + (items skipped) of them, and searches exactly when
-- that is above pgvector's limit of 1000 or the graph still came back short.
CREATE OR REPLACE FUNCTION recsys._top_items(
    v recsys.model_version, query @vector@.vector, skip integer[], k integer
) RETURNS TABLE (idx integer, key text, score double precision)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 40 SET enable_seqscan = on SET enable_indexscan = on AS $$
DECLARE
    -- the slot of RECALL_KS (recsys_db/index.py) this k is served with
    slot integer := CASE WHEN k <= 10 THEN 1 WHEN k <= 20 THEN 2 WHEN k <= 50 THEN 3 ELSE 4 END;
    -- The ef_search the version's hnsw index is served with at this k, or null where this k
    -- searches exactly: the index was tuned to reach the recall target at k = 10, 20, 50 and
    -- 100 (index_ef_by_k); versions built before that have one ef_search, measured at k = 10.
    -- Inline rather than a helper: this runs on every live search.
    ef integer := CASE
        WHEN v.index_kind IS DISTINCT FROM 'hnsw' OR k > 100 THEN NULL
        WHEN v.index_ef_by_k IS NULL THEN CASE WHEN k <= 10 THEN v.index_ef_search END
        ELSE v.index_ef_by_k[slot]
    END;
    head integer;
    keys text[];
    scores double precision[];
    idxs integer[];
    head_read bigint;
    floor_norm double precision;
    floor_idx integer;
    reach double precision;
BEGIN
    IF ef IS NOT NULL
       AND coalesce(current_setting('hnsw.iterative_scan', true), 'off') = 'off' THEN
        ef := CASE WHEN k + cardinality(skip) <= 1000 THEN greatest(ef, k + cardinality(skip))
              END;
    END IF;
    head := CASE WHEN ef IS NOT NULL THEN v.index_head_by_k[slot] END;
    -- set_config(..., true) here is local to this call: the SET clauses above restore on exit.
    IF head IS NOT NULL THEN
        PERFORM set_config('hnsw.ef_search', ef::text, true);
        PERFORM set_config('enable_seqscan', 'off', true);
        EXECUTE format(
            'SELECT array_agg(t.idx ORDER BY t.score DESC, t.key COLLATE "C")
                        FILTER (WHERE t.best <= $3),
                    array_agg(t.key ORDER BY t.score DESC, t.key COLLATE "C")
                        FILTER (WHERE t.best <= $3),
                    array_agg(t.score ORDER BY t.score DESC, t.key COLLATE "C")
                        FILTER (WHERE t.best <= $3),
                    count(*), min(t.norm), min(t.idx) FILTER (WHERE t.last)
               FROM (SELECT h.*, row_number() OVER (ORDER BY h.score DESC, h.key COLLATE "C") best,
                            row_number() OVER (ORDER BY h.norm, h.idx) = 1 last
                       FROM (SELECT i.idx, i.key,
                                    -(i.factors OPERATOR(@vector@.<#>) $1)::double precision score,
                                    @vector@.vector_norm(i.factors) norm
                               FROM recsys.%I i
                              WHERE i.idx <> ALL ($2)
                              ORDER BY @vector@.vector_norm(i.factors) DESC, i.idx DESC
                              LIMIT $4) h) t', v.item_table)
            INTO idxs, keys, scores, head_read, floor_norm, floor_idx
            USING query, skip, k, head;
        -- Items not read have a norm <= floor_norm, so a score <= |query| * norm (up to float
        -- rounding of the scores, far below the 1e-4 margin): only those with a norm >= reach
        -- could still beat the k-th score.
        reach := CASE WHEN scores[k] > 0
                      THEN scores[k] / (@vector@.vector_norm(query) * (1 + 1e-4))
                      ELSE '-Infinity' END;
        IF head_read < head OR reach > floor_norm THEN
            RETURN QUERY SELECT b.idx, b.key, b.score
                           FROM unnest(idxs, keys, scores) b (idx, key, score);
            RETURN;
        END IF;
        EXECUTE format(
            'WITH more AS MATERIALIZED (
                 SELECT i.idx, i.key,
                        -(i.factors OPERATOR(@vector@.<#>) $1)::double precision score
                   FROM recsys.%I i
                  WHERE (@vector@.vector_norm(i.factors), i.idx) < ($5, $6)
                    AND @vector@.vector_norm(i.factors) >= $7 AND i.idx <> ALL ($2)
                  ORDER BY @vector@.vector_norm(i.factors) DESC, i.idx DESC
                  LIMIT $4),
             best AS (
                 SELECT c.* FROM (SELECT * FROM unnest($8, $9, $10) b (idx, key, score)
                                  UNION SELECT * FROM more) c
                  ORDER BY c.score DESC, c.key COLLATE "C" LIMIT $3)
             SELECT array_agg(b.idx ORDER BY b.score DESC, b.key COLLATE "C"),
                    array_agg(b.key ORDER BY b.score DESC, b.key COLLATE "C"),
                    array_agg(b.score ORDER BY b.score DESC, b.key COLLATE "C"),
                    (SELECT count(*) FROM more)
               FROM best b', v.item_table)
            INTO idxs, keys, scores, head_read
            USING query, skip, k, head, floor_norm, floor_idx, reach, idxs, keys, scores;
        IF head_read < head THEN  -- every item that could beat the k-th score was read
            RETURN QUERY SELECT b.idx, b.key, b.score
                           FROM unnest(idxs, keys, scores) b (idx, key, score);
            RETURN;
        END IF;
        RETURN QUERY EXECUTE format(
            'SELECT c.idx, c.key, c.score
               FROM (SELECT b.idx, b.key, b.score FROM unnest($4, $5, $6) b (idx, key, score)
                     UNION
                     SELECT g.idx, g.key, g.score
                       FROM (SELECT i.idx, i.key,
                                    -(i.factors OPERATOR(@vector@.<#>) $1)::double precision score
                               FROM recsys.%I i
                              WHERE i.idx <> ALL ($2)
                              ORDER BY i.factors OPERATOR(@vector@.<#>) $1
                              LIMIT $3) g) c
              ORDER BY c.score DESC, c.key COLLATE "C" LIMIT $3', v.item_table)
            USING query, skip, k, idxs, keys, scores;
        RETURN;
    ELSIF ef IS NOT NULL THEN
        -- The version was measured with its index: the planner's guess of hnsw cost must not
        -- swap in a scan.
        PERFORM set_config('hnsw.ef_search', ef::text, true);
        PERFORM set_config('enable_seqscan', 'off', true);
        -- relaxed_order may return rows slightly out of order; callers sort by score
        EXECUTE format(
            'SELECT array_agg(g.idx), array_agg(g.key), array_agg(g.score)
               FROM (SELECT i.idx, i.key,
                            -(i.factors OPERATOR(@vector@.<#>) $1)::double precision score
                       FROM recsys.%I i
                      WHERE i.idx <> ALL ($2)
                      ORDER BY i.factors OPERATOR(@vector@.<#>) $1
                      LIMIT $3) g', v.item_table)
            INTO idxs, keys, scores USING query, skip, k;
        -- short only when the graph gave out (rows a fold-in replaced are skipped after the
        -- search): the exact scan below then answers
        IF cardinality(idxs) >= k THEN
            RETURN QUERY SELECT b.idx, b.key, b.score
                           FROM unnest(idxs, keys, scores) b (idx, key, score);
            RETURN;
        END IF;
        PERFORM set_config('enable_seqscan', 'on', true);
    END IF;
    -- An index on the table (an auto build that lost, kept by no one; or a version switched
    -- to exact; or a k the index was not tuned for) would otherwise serve the first sort key,
    -- approximately.
    PERFORM set_config('enable_indexscan', 'off', true);
    RETURN QUERY EXECUTE format(
        'SELECT i.idx, i.key, -(i.factors OPERATOR(@vector@.<#>) $1)::double precision
           FROM recsys.%I i
          WHERE NOT EXISTS (SELECT 1 FROM unnest($2) s (idx) WHERE s.idx = i.idx)
          ORDER BY i.factors OPERATOR(@vector@.<#>) $1, i.key COLLATE "C"
          LIMIT $3', v.item_table)
        USING query, skip, k;
END
$$;

-- A live search of a version for a user: popular items for unknown users. A row is reason
-- 'content' when the item's or the user's vector was mapped from content (recsys.set_features)
-- rather than trained, otherwise 'als'.
CREATE OR REPLACE FUNCTION recsys._recommend_live(
    v recsys.model_version, model text, user_key text, k integer, exclude_seen boolean
) RETURNS TABLE (item_key text, score double precision, rank integer, reason text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    query_vector @vector@.vector;
    seen integer[];
    user_content boolean;
BEGIN
    EXECUTE format('SELECT factors, seen, from_content FROM recsys.%I WHERE key = $1',
                   v.user_table)
        INTO query_vector, seen, user_content USING user_key;
    IF query_vector IS NULL THEN
        RETURN QUERY SELECT p.item_key, p.score, p.rank, 'popular'::text
                       FROM recsys.popular(model, k) p;
        RETURN;
    END IF;
    IF exclude_seen IS DISTINCT FROM true THEN
        seen := '{}';
    END IF;
    IF v.content_items > 0 THEN  -- which rows' items are marked: looked up only where some are
        RETURN QUERY EXECUTE format(
            'SELECT t.key, t.score,
                    (row_number() OVER (ORDER BY t.score DESC, t.key COLLATE "C"))::integer,
                    CASE WHEN $5 OR i.from_content THEN ''content'' ELSE ''als'' END
               FROM recsys._top_items($1, $2, $3, $4) t JOIN recsys.%I i ON i.idx = t.idx
              ORDER BY t.score DESC, t.key COLLATE "C"', v.item_table)
            USING v, query_vector, seen, k, user_content;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT t.key, t.score,
               (row_number() OVER (ORDER BY t.score DESC, t.key COLLATE "C"))::integer,
               CASE WHEN user_content THEN 'content' ELSE 'als' END
          FROM recsys._top_items(v, query_vector, seen, k) t
         ORDER BY t.score DESC, t.key COLLATE "C";
END
$$;

-- Served from the version's ranked rows when it has an active ranker (recsys.create_ranker)
-- and k <= ranked_k: the ranker's order (reason 'ranked'). Otherwise, or for a user without
-- ranked rows, served from the version's precomputed partition when it holds the answer: the
-- training ranked
-- every user's top precomputed_k unseen items exactly, so the first k rows (k <= precomputed_k)
-- are what a search returns (exactly, where an hnsw search is approximate). A user with no rows
-- there (unknown, folded in later, or nothing left unseen) is searched live.
CREATE OR REPLACE FUNCTION recsys.recommend(
    model text, user_key text, k integer DEFAULT 10, exclude_seen boolean DEFAULT true
) RETURNS TABLE (item_key text, score double precision, rank integer, reason text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version;
BEGIN
    IF k IS NULL OR k <= 0 THEN
        PERFORM recsys._check_k(k);
    END IF;
    -- Inline rather than through recsys._active_version (which raises the errors, below):
    -- the nested PL/pgSQL calls cost ~10 us of ~40 us server time on the precomputed path.
    SELECT mv.* INTO v
      FROM recsys.model m
      JOIN recsys.model_version mv ON mv.model_id = m.id AND mv.version = m.active_version
     WHERE m.name = model;
    IF NOT FOUND THEN
        v := recsys._active_version(model);  -- raises the error that fits
    END IF;
    -- ranked rows, then precomputed ALS rows: one static query per table, since a dynamic one
    -- (EXECUTE) would be planned on every call
    IF k <= v.ranked_k AND exclude_seen IS NOT DISTINCT FROM true THEN
        RETURN QUERY
            SELECT r.item_key, r.score::double precision, r.rank, 'ranked'::text
              FROM recsys.ranked_recommendation r
             WHERE r.model_id = v.model_id AND r.version = v.version
               AND r.user_key = recommend.user_key AND r.rank <= k
             ORDER BY r.rank;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    IF k <= v.precomputed_k AND exclude_seen IS NOT DISTINCT FROM true THEN
        RETURN QUERY
            SELECT r.item_key, r.score::double precision, r.rank, 'als'::text
              FROM recsys.recommendation r
             WHERE r.model_id = v.model_id AND r.version = v.version
               AND r.user_key = recommend.user_key AND r.rank <= k
             ORDER BY r.rank;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    -- the version's factor tables checked (recsys._checked) before the live search reads them
    RETURN QUERY SELECT * FROM recsys._recommend_live(recsys._checked(v), model, user_key, k,
                                                      exclude_seen);
END
$$;
COMMENT ON FUNCTION recsys.recommend IS
    'top-k items for a user by inner product; unknown users get popular items (reason = popular)';

-- The k items (side 'item') or users (side 'user') of version v of model closest to of_key by
-- cosine similarity of their factors; raises, naming the side, when of_key is not in v. The one
-- search of recsys.similar_items and recsys.similar_users, which run as recsys's owner and pass
-- the active version (its factor-table names checked by recsys._active_version).
CREATE OR REPLACE FUNCTION recsys._similar(
    v recsys.model_version, model text, side text, of_key text, k integer
) RETURNS TABLE (key text, score double precision, rank integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    factor_table text;
    trained integer;
    query_vector @vector@.vector;
    query_idx integer;
BEGIN
    CASE side
        WHEN 'item' THEN factor_table := v.item_table; trained := v.items;
        WHEN 'user' THEN factor_table := v.user_table; trained := v.users;
    END CASE;
    EXECUTE format('SELECT idx, factors FROM recsys.%I WHERE key = $1', factor_table)
        INTO query_idx, query_vector USING of_key;
    IF query_idx IS NULL THEN
        RAISE EXCEPTION '% % is not in model "%"', side, coalesce(quote_literal(of_key), 'null'),
            model
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('version %s was trained on %s %ss', v.version, trained, side);
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT key, 1 - distance, (row_number() OVER (ORDER BY distance, key COLLATE "C"))::integer
           FROM (SELECT f.idx, f.key, f.factors OPERATOR(@vector@.<=>) $1 AS distance
                   FROM recsys.%I f WHERE f.idx <> $2
                  ORDER BY distance, f.key COLLATE "C" LIMIT $3) top
          ORDER BY distance, key COLLATE "C"', factor_table)
        USING query_vector, query_idx, k;
END
$$;

CREATE OR REPLACE FUNCTION recsys.similar_items(model text, of_item text, k integer DEFAULT 10)
RETURNS TABLE (item_key text, score double precision, rank integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version;
BEGIN
    PERFORM recsys._check_k(k);
    v := recsys._active_version(model);
    -- The precomputed rows are this search's answer, ranked exactly by the training (same
    -- tie order); they spare the scan over every item. Only items of the version have them:
    -- any other key (unknown, or an item a fold-in added since) goes to recsys._similar, which
    -- raises for an unknown one as before.
    IF k <= v.similar_k THEN
        RETURN QUERY
            SELECT s.similar_item_key, s.score::double precision, s.rank
              FROM recsys.similar_item s
             WHERE s.model_id = v.model_id AND s.version = v.version
               AND s.item_key = of_item AND s.rank <= k
             ORDER BY s.rank;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM recsys._similar(v, model, 'item', of_item, k);
END
$$;
COMMENT ON FUNCTION recsys.similar_items(text, text, integer) IS
    'the k items closest by cosine similarity of their factors';

-- Blended: content_weight w > 0 scores (1 - w) x cosine of the factors + w x cosine of the
-- items' content mapped into the factor space (content: the training's map from the declared
-- item features, categories, text and vectors; recsys.item_content), 0 where either item has
-- no content. An exact scan over the version's items. w = 0 is the function above exactly
-- (precomputed rows included). An overload, rather than a default argument on the function
-- above, so that views created over it before release 0014 survive the upgrade; k has no
-- default here since content_weight cannot have one after it.
CREATE OR REPLACE FUNCTION recsys.similar_items(
    model text, of_item text, k integer, content_weight double precision
) RETURNS TABLE (item_key text, score double precision, rank integer)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM recsys._check_k(k);
    IF content_weight IS NULL OR content_weight = 'NaN' OR content_weight NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'content_weight must be between 0 and 1, not %',
            coalesce(content_weight::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF content_weight = 0 THEN
        RETURN QUERY SELECT * FROM recsys.similar_items(model, of_item, k);
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM recsys._similar_blended(recsys._active_version(model), model,
                                                       of_item, k, content_weight);
END
$$;
COMMENT ON FUNCTION recsys.similar_items(text, text, integer, double precision) IS
    'the k items closest by cosine similarity of their factors, blended with the cosine of '
    'their content by content_weight';

-- similar_items with content_weight > 0, for the active version v (its table names checked).
-- A zero vector has no cosine (pgvector gives NaN): it counts as 0.
CREATE OR REPLACE FUNCTION recsys._similar_blended(
    v recsys.model_version, model text, of_item text, k integer, w double precision
) RETURNS TABLE (item_key text, score double precision, rank integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    query_idx integer;
    query_factors @vector@.vector;
    query_content @vector@.vector;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM recsys.feature_map f
                    WHERE f.model_id = v.model_id AND f.version = v.version AND f.kind = 'item')
    THEN
        RAISE EXCEPTION 'version % of model "%" has no item content to blend', v.version, model
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'declare item features (recsys.set_features) and train, or use '
                         'content_weight => 0';
    END IF;
    EXECUTE format('SELECT idx, factors FROM recsys.%I WHERE key = $1', v.item_table)
        INTO query_idx, query_factors USING of_item;
    IF query_idx IS NULL THEN
        RAISE EXCEPTION 'item % is not in model "%"', coalesce(quote_literal(of_item), 'null'),
            model
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('version %s was trained on %s items', v.version, v.items);
    END IF;
    SELECT c.content INTO query_content FROM recsys.item_content c
     WHERE c.model_id = v.model_id AND c.version = v.version AND c.idx = query_idx;
    RETURN QUERY EXECUTE format(
        'SELECT s.key, s.score,
                (row_number() OVER (ORDER BY s.score DESC, s.key COLLATE "C"))::integer
           FROM (SELECT f.key,
                        (1 - $4) * coalesce(nullif(
                            1 - (f.factors OPERATOR(@vector@.<=>) $1), ''NaN''), 0)
                        + $4 * coalesce(nullif(
                            1 - (c.content OPERATOR(@vector@.<=>) $2), ''NaN''), 0) AS score
                   FROM recsys.%I f
                   LEFT JOIN recsys.item_content c
                     ON c.model_id = $6 AND c.version = $7 AND c.idx = f.idx
                  WHERE f.idx <> $3) s
          ORDER BY s.score DESC, s.key COLLATE "C" LIMIT $5', v.item_table)
        USING query_factors, query_content, query_idx, w, k, v.model_id, v.version;
END
$$;

CREATE OR REPLACE FUNCTION recsys.similar_users(model text, of_user text, k integer DEFAULT 10)
RETURNS TABLE (user_key text, score double precision, rank integer)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM recsys._check_k(k);
    RETURN QUERY SELECT * FROM recsys._similar(recsys._active_version(model), model, 'user',
                                               of_user, k);
END
$$;
COMMENT ON FUNCTION recsys.similar_users IS 'the k users closest by cosine similarity of their factors';

CREATE OR REPLACE FUNCTION recsys.interested_users(
    model text, for_item text, k integer DEFAULT 10, exclude_seen boolean DEFAULT true
) RETURNS TABLE (user_key text, score double precision, rank integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version;
    query_vector @vector@.vector;
    query_idx integer;
BEGIN
    PERFORM recsys._check_k(k);
    v := recsys._active_version(model);
    EXECUTE format('SELECT idx, factors FROM recsys.%I WHERE key = $1', v.item_table)
        INTO query_idx, query_vector USING for_item;
    IF query_idx IS NULL THEN
        RAISE EXCEPTION 'item % is not in model "%"', coalesce(quote_literal(for_item), 'null'), model
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('version %s was trained on %s items', v.version, v.items);
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT key, -distance, (row_number() OVER (ORDER BY distance, key COLLATE "C"))::integer
           FROM (SELECT u.idx, u.key, u.factors OPERATOR(@vector@.<#>) $1 AS distance
                   FROM recsys.%I u
                  WHERE NOT ($3 AND u.seen @> ARRAY[$2])
                  ORDER BY distance, u.key COLLATE "C" LIMIT $4) top
          ORDER BY distance, key COLLATE "C"', v.user_table)
        USING query_vector, query_idx, exclude_seen IS NOT DISTINCT FROM true, k;
END
$$;
COMMENT ON FUNCTION recsys.interested_users IS
    'audience for an item: the k users with the highest predicted score for it';

CREATE OR REPLACE FUNCTION recsys.score(model text, user_key text, item_key text)
RETURNS double precision
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version;
    result double precision;
BEGIN
    v := recsys._active_version(model);
    EXECUTE format(
        'SELECT -(u.factors OPERATOR(@vector@.<#>) i.factors) FROM recsys.%I u, recsys.%I i
          WHERE u.key = $1 AND i.key = $2', v.user_table, v.item_table)
        INTO result USING user_key, item_key;
    RETURN result;
END
$$;
COMMENT ON FUNCTION recsys.score IS
    'predicted preference of a user for an item; null when either is not in the model';
