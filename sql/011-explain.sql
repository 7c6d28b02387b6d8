-- Explanations: recsys.explain, the user's items that contribute most to the score of an item.
-- Its history is read from the model's source, with the caller's rights, by the query of
-- recsys._source_item_weights_sql (the loader's expressions of recsys_db/source.py in SQL);
-- the contributions are scored with the fold-in helpers of 007-sessions.sql
-- (recsys._confidences, recsys._fold_in_solve).

-- A SELECT of (key text, raw double precision): the rows of a model's source that training
-- loads (same NULL and event filters, same weight expression as recsys_db/source.py), summed
-- per item key. With for_user, only the rows of the user given as $1 (text, cast to the user
-- column's type so that an index on it can be used). Only text: whoever runs it reads the
-- source with their own rights (recsys.explain runs it as its caller).
CREATE OR REPLACE FUNCTION recsys._source_item_weights_sql(m recsys.model, for_user boolean)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    src regclass := recsys._relation(m.source_schema, m.source_table);
    raw_weight text := '1::double precision';
    weight text;
    event_weight text;
    event_ok text := 'true';
    user_filter text := 'true';
BEGIN
    IF src IS NULL THEN
        RAISE EXCEPTION 'source %.% of model "%" does not exist',
            quote_ident(m.source_schema), quote_ident(m.source_table), m.name
            USING ERRCODE = 'undefined_table';
    END IF;
    IF m.weight_column IS NOT NULL THEN
        raw_weight := format(
            CASE WHEN recsys._column_type(src, m.weight_column) = 'boolean'::regtype
                 THEN 's.%I::integer::double precision'
                 ELSE 's.%I::double precision' END,
            m.weight_column);
    END IF;
    weight := raw_weight;
    IF m.event_column IS NOT NULL AND m.event_weights IS NOT NULL THEN
        SELECT format('(CASE s.%I::text %s END)', m.event_column,
                      string_agg(format('WHEN %L THEN %L::double precision', e.key,
                                        e.value #>> '{}'),
                                 ' ' ORDER BY e.key))
          INTO event_weight
          FROM jsonb_each(m.event_weights) e;
        weight := format('(%s * %s)', raw_weight, event_weight);
        event_ok := format('%s IS NOT NULL', event_weight);
    END IF;
    IF for_user THEN
        user_filter := format('s.%I = $1::%s', m.user_column,
                              recsys._column_type(src, m.user_column));
    END IF;
    RETURN format(
        'SELECT s.%1$I::text AS key, sum(%3$s) AS raw
           FROM %4$s s
          WHERE s.%2$I IS NOT NULL AND s.%1$I IS NOT NULL AND %5$s IS NOT NULL AND %6$s
            AND %7$s
          GROUP BY 1',
        m.item_column, m.user_column, weight, src, raw_weight, event_ok, user_filter);
END
$$;

-- recsys.explain's first half, as recsys's owner: checks that the model has an active version
-- and that the user and the item are in it (in that order), and returns the query of the user's
-- history (keys and summed raw weights, $1 the user key) that explain runs as its caller.
CREATE OR REPLACE FUNCTION recsys._history_sql(model text, user_key text, item_key text)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version := recsys._active_version(model);
    known boolean;
BEGIN
    EXECUTE format('SELECT true FROM recsys.%I WHERE key = $1', v.user_table)
        INTO known USING user_key;
    IF known IS NULL THEN
        RAISE EXCEPTION 'user % is not in model "%"', coalesce(quote_literal(user_key), 'null'),
            model
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('version %s was trained on %s users', v.version, v.users);
    END IF;
    known := NULL;
    EXECUTE format('SELECT true FROM recsys.%I WHERE key = $1', v.item_table)
        INTO known USING item_key;
    IF known IS NULL THEN
        RAISE EXCEPTION 'item % is not in model "%"',
            coalesce(quote_literal(item_key), 'null'), model
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('version %s was trained on %s items', v.version, v.items);
    END IF;
    RETURN format('SELECT array_agg(r.key ORDER BY r.key), array_agg(r.raw ORDER BY r.key)'
                  ' FROM (%s) r WHERE r.raw <> 0',
                  recsys._source_item_weights_sql(recsys._model(model), true));
END
$$;

-- recsys.explain's second half, as recsys's owner: the contributions of a history (item keys
-- and summed raw weights, as recsys._history_sql reads them; keys the version does not know
-- are left out) to the score of an item. A history made up by the caller reveals no more than
-- recsys.recommend_for_items does.
CREATE OR REPLACE FUNCTION recsys._explain_scores(
    model text, item_key text, k integer, keys text[], raws double precision[]
) RETURNS TABLE (liked_item text, contribution double precision, rank integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v recsys.model_version;
    target @vector@.vector;
    idx integer[];
    raw double precision[];
    conf double precision[];
BEGIN
    PERFORM recsys._check_k(k);
    v := recsys._active_version(model);
    EXECUTE format('SELECT factors FROM recsys.%I WHERE key = $1', v.item_table)
        INTO target USING item_key;
    IF target IS NULL THEN
        RAISE EXCEPTION 'item % is not in model "%"',
            coalesce(quote_literal(item_key), 'null'), model
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('version %s was trained on %s items', v.version, v.items);
    END IF;
    -- the history limited to items the version knows
    EXECUTE format(
        'SELECT array_agg(t.idx ORDER BY t.idx), array_agg(t.raw ORDER BY t.idx)
           FROM (SELECT i.idx, sum(h.raw) AS raw
                   FROM unnest($1, $2) h (key, raw) JOIN recsys.%I i ON i.key = h.key
                  GROUP BY i.idx) t
          WHERE t.raw <> 0',
        v.item_table)
        INTO idx, raw USING keys, raws;
    IF idx IS NULL THEN
        RETURN;
    END IF;
    conf := recsys._confidences(v, idx, raw);
    -- contribution of item j: c_j y_jᵀ A⁻¹ y_target; they sum to the fold-in score
    RETURN QUERY EXECUTE format(
        'SELECT key, contribution, (row_number() OVER (ORDER BY contribution DESC, key COLLATE "C" DESC))::integer
           FROM (SELECT i.key, u.s * u.c AS contribution
                   FROM unnest($1, $2, $3) u (idx, c, s) JOIN recsys.%I i ON i.idx = u.idx
                  WHERE u.c >= 0) parts
          ORDER BY contribution DESC, key COLLATE "C" DESC
          LIMIT $4',
        v.item_table)
        USING idx, conf, recsys._fold_in_solve(v, idx, conf, target), k;
END
$$;

-- SECURITY INVOKER: the user's history is read with the caller's rights, so its grants,
-- column privileges, row-level security and security_invoker views all apply; the factor
-- tables are read by the two halves above.
CREATE OR REPLACE FUNCTION recsys.explain(
    model text, user_key text, item_key text, k integer DEFAULT 10
) RETURNS TABLE (liked_item text, contribution double precision, rank integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    keys text[];
    raws double precision[];
BEGIN
    PERFORM recsys._check_k(k);
    EXECUTE recsys._history_sql(model, user_key, item_key) INTO keys, raws USING user_key;
    RETURN QUERY SELECT * FROM recsys._explain_scores(model, item_key, k, keys, raws);
END
$$;
COMMENT ON FUNCTION recsys.explain IS
    'the user''s items that contribute most to the score of an item (as implicit''s explain): '
    '"because you liked ..."';
