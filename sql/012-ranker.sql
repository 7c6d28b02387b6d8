-- The ranker: a second stage over each model's candidates (ALS top-N, item-to-item neighbours
-- of the user's recent items, popular items, items known only from their features), trained with LightGBM LambdaRank on a time split
-- by every full training of the model, gated on its holdout window and served by
-- recsys.recommend (reason 'ranked') from the version's precomputed ranked rows.

-- A column of a ranker feature relation: numeric or boolean columns are numbers, text-like
-- columns and enums are categories; anything else is refused, naming the column and its type.
CREATE OR REPLACE FUNCTION recsys._require_feature_column(rel regclass, col text, what text)
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    base regtype;
BEGIN
    PERFORM recsys._require_column(rel, col, what);
    base := recsys._base_type(recsys._column_type(rel, col));
    IF base IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'numeric'::regtype,
                'real'::regtype, 'double precision'::regtype, 'boolean'::regtype,
                'text'::regtype, 'character varying'::regtype, 'character'::regtype)
       OR (SELECT t.typtype = 'e' FROM pg_catalog.pg_type t WHERE t.oid = base) THEN
        RETURN;
    END IF;
    RAISE EXCEPTION '% "%" of relation % has type %: a ranker feature must be numeric, boolean '
                    'or text (a category)', what, col, rel, recsys._column_type(rel, col)
        USING ERRCODE = 'datatype_mismatch',
              HINT = 'cast it in a view';
END
$$;

-- Check one feature relation of recsys.create_ranker as the model's declarer would read it;
-- returns its schema and name.
CREATE OR REPLACE FUNCTION recsys._check_ranker_features(
    m recsys.model, kind text, source regclass, key_column text, feature_columns text[],
    OUT schema_name text, OUT table_name text
)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rel record;
    col text;
BEGIN
    IF source IS NULL THEN
        IF key_column IS NOT NULL OR feature_columns IS NOT NULL THEN
            RAISE EXCEPTION '%_key_column and %_feature_columns need %_features', kind, kind, kind
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN;
    END IF;
    SELECT c.relkind, n.nspname, c.relname INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    IF rel.relkind NOT IN ('r', 'v', 'm', 'p', 'f') THEN
        RAISE EXCEPTION '%_features % is not a table, view or materialized view', kind, source
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF feature_columns IS NULL OR cardinality(feature_columns) = 0 THEN
        RAISE EXCEPTION '%_feature_columns must name at least one column', kind
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM recsys._check_source(source, m.declarer, ARRAY[key_column] || feature_columns);
    PERFORM recsys._require_key_column(source, key_column, kind || '_key_column');
    FOREACH col IN ARRAY feature_columns LOOP
        PERFORM recsys._require_feature_column(source, col, kind || ' feature column');
    END LOOP;
    schema_name := rel.nspname;
    table_name := rel.relname;
END
$$;

CREATE OR REPLACE FUNCTION recsys.create_ranker(
    model                  text,
    label_window           interval,
    training_windows       integer DEFAULT 2,
    als_candidates         integer DEFAULT 100,
    popular_candidates     integer DEFAULT 50,
    neighbour_candidates   integer DEFAULT 50,
    content_candidates     integer DEFAULT 0,
    recent_items           integer DEFAULT 5,
    negatives_per_positive integer DEFAULT 20,
    min_positives          integer DEFAULT 50,
    top_k                  integer DEFAULT 20,
    user_features          regclass DEFAULT NULL,
    user_key_column        text DEFAULT NULL,
    user_feature_columns   text[] DEFAULT NULL,
    item_features          regclass DEFAULT NULL,
    item_key_column        text DEFAULT NULL,
    item_feature_columns   text[] DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m recsys.model;
    users record;
    items record;
BEGIN
    m := recsys._model(model);
    PERFORM recsys._require_manager(m);
    IF m.time_column IS NULL THEN
        RAISE EXCEPTION 'model "%" has no time_column: a ranker is trained on a time split '
                        '(features before a cut-off, labels after it)', model
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'declare the model with time_column => ''<column>''';
    END IF;
    IF label_window IS NULL OR label_window <= interval '0' THEN
        RAISE EXCEPTION 'label_window must be a positive interval, not %',
            coalesce(label_window::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM recsys._check_number('training_windows', training_windows, true, 1, false, 10, false);
    PERFORM recsys._check_number('als_candidates', als_candidates, true, 1, false, 1000, false);
    PERFORM recsys._check_number('popular_candidates', popular_candidates, true, 0, false, 1000,
                                 false);
    PERFORM recsys._check_number('neighbour_candidates', neighbour_candidates, true, 0, false,
                                 1000, false);
    PERFORM recsys._check_number('content_candidates', content_candidates, true, 0, false,
                                 1000, false);
    PERFORM recsys._check_number('recent_items', recent_items, true, 1, false, 100, false);
    PERFORM recsys._check_number('negatives_per_positive', negatives_per_positive, true, 0,
                                 false, 1000, false);
    PERFORM recsys._check_number('min_positives', min_positives, true, 1, false, 1000000, false);
    PERFORM recsys._check_number('top_k', top_k, true, 1, false, 1000, false);
    IF top_k > als_candidates THEN
        -- every user with top_k unseen items then has top_k ranked rows, so recommend never
        -- serves a short ranked list where ALS would have had more
        RAISE EXCEPTION 'top_k % is more than als_candidates %: a user''s ranked rows come from '
                        'the candidates', top_k, als_candidates
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'lower top_k or raise als_candidates';
    END IF;
    users := recsys._check_ranker_features(m, 'user', user_features, user_key_column,
                                           user_feature_columns);
    items := recsys._check_ranker_features(m, 'item', item_features, item_key_column,
                                           item_feature_columns);
    INSERT INTO recsys.ranker AS r (
        model_id, label_window, training_windows, als_candidates, popular_candidates,
        neighbour_candidates, content_candidates, recent_items, negatives_per_positive,
        min_positives, top_k,
        user_features_schema, user_features_table, user_key_column, user_feature_columns,
        item_features_schema, item_features_table, item_key_column, item_feature_columns)
    VALUES (m.id, label_window, training_windows, als_candidates, popular_candidates,
            neighbour_candidates, content_candidates, recent_items, negatives_per_positive,
            min_positives, top_k,
            users.schema_name, users.table_name, user_key_column, user_feature_columns,
            items.schema_name, items.table_name, item_key_column, item_feature_columns)
    ON CONFLICT (model_id) DO UPDATE
       SET label_window = excluded.label_window, training_windows = excluded.training_windows,
           als_candidates = excluded.als_candidates,
           popular_candidates = excluded.popular_candidates,
           neighbour_candidates = excluded.neighbour_candidates,
           content_candidates = excluded.content_candidates,
           recent_items = excluded.recent_items,
           negatives_per_positive = excluded.negatives_per_positive,
           min_positives = excluded.min_positives, top_k = excluded.top_k,
           user_features_schema = excluded.user_features_schema,
           user_features_table = excluded.user_features_table,
           user_key_column = excluded.user_key_column,
           user_feature_columns = excluded.user_feature_columns,
           item_features_schema = excluded.item_features_schema,
           item_features_table = excluded.item_features_table,
           item_key_column = excluded.item_key_column,
           item_feature_columns = excluded.item_feature_columns,
           created_at = now();
END
$$;
COMMENT ON FUNCTION recsys.create_ranker IS
    'declare (or replace) a model''s learned ranker: candidates, label window, negatives and '
    'feature relations; the next full training trains, gates and serves it';

CREATE OR REPLACE FUNCTION recsys.drop_ranker(model text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    m recsys.model;
BEGIN
    m := recsys._model(model);
    PERFORM recsys._require_manager(m);
    DELETE FROM recsys.ranker r WHERE r.model_id = m.id;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION recsys.drop_ranker IS
    'drop a model''s ranker declaration; versions trained with it keep serving their ranked rows';

CREATE OR REPLACE VIEW recsys.rankers AS
SELECT m.name AS model, r.label_window, r.training_windows, r.als_candidates,
       r.popular_candidates, r.neighbour_candidates, r.content_candidates, r.recent_items,
       r.negatives_per_positive,
       r.min_positives, r.top_k,
       CASE WHEN r.user_features_table IS NOT NULL
            THEN format('%I.%I', r.user_features_schema, r.user_features_table) END
           AS user_features,
       r.user_key_column, r.user_feature_columns,
       CASE WHEN r.item_features_table IS NOT NULL
            THEN format('%I.%I', r.item_features_schema, r.item_features_table) END
           AS item_features,
       r.item_key_column, r.item_feature_columns, r.created_at
  FROM recsys.ranker r JOIN recsys.model m ON m.id = r.model_id;
COMMENT ON VIEW recsys.rankers IS 'ranker declarations (recsys.create_ranker)';

-- Readers see no feature value: the declaration kept with each version (with the categories
-- of text feature columns) and the features of ranked rows stay in the tables, which only
-- recsys's owner and the worker read; feature relations may hold what readers may not read.
CREATE OR REPLACE VIEW recsys.ranker_versions AS
SELECT m.name AS model, rv.version, rv.version = m.active_version AS active, rv.status,
       rv.reason, rv.ranked_k, rv.train_pairs, rv.train_positives, rv.seconds, rv.run_id
  FROM recsys.ranker_version rv JOIN recsys.model m ON m.id = rv.model_id;
COMMENT ON VIEW recsys.ranker_versions IS
    'the ranker of each version: active (serving), rejected by its gate or failed, and why';

-- Feature importances of each version's ranker, most important first: gain is the total
-- loss reduction of the splits on the feature, splits how many splits use it.
CREATE OR REPLACE VIEW recsys.ranker_features AS
SELECT m.name AS model, rv.version, rv.version = m.active_version AS active, rv.status,
       (rank() OVER (PARTITION BY rv.model_id, rv.version ORDER BY f.gain DESC, f.position))::integer
           AS rank,
       f.feature, f.position::integer AS position, f.gain,
       f.gain / nullif(sum(f.gain) OVER (PARTITION BY rv.model_id, rv.version), 0) AS gain_share,
       f.splits
  FROM recsys.ranker_version rv
  JOIN recsys.model m ON m.id = rv.model_id
 CROSS JOIN LATERAL unnest(rv.features, rv.gain, rv.splits)
       WITH ORDINALITY AS f (feature, gain, splits, position)
 WHERE rv.features IS NOT NULL;
COMMENT ON VIEW recsys.ranker_features IS
    'feature importances of each version''s ranker (gain and splits), most important first';

-- The active version's ranked rows (their feature values stay in the table: see above).
CREATE OR REPLACE VIEW recsys.ranked_recommendations AS
SELECT m.name AS model, r.user_key, r.rank, r.item_key, r.score::double precision AS score
  FROM recsys.ranked_recommendation r
  JOIN recsys.model m ON m.id = r.model_id AND r.version = m.active_version
  JOIN recsys.model_version v ON v.model_id = r.model_id AND v.version = r.version
 WHERE v.ranked_k > 0;
COMMENT ON VIEW recsys.ranked_recommendations IS
    'the ranker''s top-N items per user for the active version of every model that has one';
