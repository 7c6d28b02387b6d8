"""Issue 14: the learned ranker (recsys.create_ranker), driven through the real database.

MovieLens 100K with its rating times (all ratings are interactions) trains the ranker for the
serving, rollback and gate tests; a small synthetic log with times drives the bad input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightgbm
import numpy as np
import psycopg
import pytest
import scipy.sparse as sp
from psycopg import sql
from psycopg.conninfo import make_conninfo

from recsys_db import cli, datasets, db, demo, foldin, load, ranker, timeline, training
from recsys_db.model import get_model

from ..helpers import drop_database, new_database, rows, run_returning_rows
from .test_deployment import sql_blocks

pytestmark = pytest.mark.slow

CREATE_ML = ("SELECT recsys.create_model('ml', 'movielens.ratings', 'user_id', 'item_id',"
             " time_column => 'rated_at', params => recsys.als(factors => 32,"
             " iterations => 10, regularization => 0.05))")
RANKER_ML = ("SELECT recsys.create_ranker('ml', '30 days', item_features => 'movielens.movies',"
             " item_key_column => 'item_id', item_feature_columns => ARRAY['year'])")


def _movielens(server_url: str, data: datasets.MovieLens) -> tuple[str, str]:
    name, url = new_database(server_url)
    with db.connect(url) as conn:
        datasets.write_movielens(conn, data)
        conn.execute(CREATE_ML)
        conn.execute(RANKER_ML)
    return name, url


@pytest.fixture(scope="module")
def ranked(server_url: str, template_url: str,
           movielens_data: datasets.MovieLens) -> Iterator[tuple[str, training.RunResult]]:
    """MovieLens with model 'ml' and its ranker trained once; tests must not change it."""
    name, url = _movielens(server_url, movielens_data)
    result = training.train(url, "ml")
    yield url, result
    drop_database(server_url, name)


@pytest.fixture
def movielens_db(server_url: str, template_url: str,
                 movielens_data: datasets.MovieLens) -> Iterator[str]:
    """MovieLens with model 'ml' and its ranker declared, not trained; tests may change it."""
    name, url = _movielens(server_url, movielens_data)
    yield url
    drop_database(server_url, name)


def _ranked_rows(conn: psycopg.Connection, version: int) -> list[tuple[str, int, str, float,
                                                                        list[float]]]:
    return rows(conn, "SELECT user_key, rank, item_key, score, features"
                      " FROM recsys.ranked_recommendation WHERE version = %s"
                      " ORDER BY user_key, rank", (version,))


def _booster(conn: psycopg.Connection, version: int) -> lightgbm.Booster:
    [(text,)] = rows(conn, "SELECT booster FROM recsys.ranker_version WHERE version = %s",
                     (version,))
    return lightgbm.Booster(model_str=text)


def test_ranked_rows_are_what_the_stored_ranker_predicts(
        ranked: tuple[str, training.RunResult]) -> None:
    url, result = ranked
    assert result.status == "succeeded" and result.ranker is not None
    assert result.ranker["status"] == "active", result.ranker
    assert result.ranker["ranked"] > result.ranker["als"]
    assert "ranker" in result.stages
    with db.connect(url) as conn:
        [(names,)] = rows(conn, "SELECT features FROM recsys.ranker_version")
        assert names == [*ranker.candidates.FEATURES, "item.year"]
        assert "content_rank" in names  # proposes nothing here: no item features declared
        stored = _ranked_rows(conn, result.version or 0)
        booster = _booster(conn, result.version or 0)
        seen = {(u, i) for u, i in rows(conn, "SELECT user_id::text, item_id::text"
                                              " FROM movielens.ratings")}
        [(ranked_k, precomputed_k)] = rows(conn, "SELECT ranked_k, precomputed_k"
                                                 " FROM recsys.model_version")
    assert ranked_k == 20 and len({r[0] for r in stored}) == 943
    features = np.array([r[4] for r in stored], dtype=np.float32)
    predicted = np.asarray(booster.predict(features), dtype=np.float32)
    # each stored score is the booster's prediction for the stored features
    np.testing.assert_array_equal(np.array([r[3] for r in stored], dtype=np.float32),
                                  predicted)
    by_user: dict[str, list[tuple[int, str, float]]] = {}
    # ranked by the stored (float32) scores: equal ones by item key
    for (user, rank, item, _, _), score in zip(stored, predicted, strict=True):
        by_user.setdefault(user, []).append((rank, item, score))
        assert (user, item) not in seen
    for user, ranked_items in by_user.items():
        assert [rank for rank, _, _ in ranked_items] == list(range(1, 21)), user
        # the rule: score descending, equal scores by item key (byte order)
        expected = sorted(ranked_items, key=lambda r: (-r[2], r[1].encode()))
        assert [item for _, item, _ in ranked_items] == [item for _, item, _ in expected]
    with db.connect(url) as conn:
        served = rows(conn, "SELECT item_key, rank, reason FROM recsys.recommend('ml', '1', 5)")
        assert served == [(item, rank, "ranked") for rank, item, _ in by_user["1"][:5]]
        # more than the ranked rows, the version's own items, unknown users: ALS and popular
        assert {r[0] for r in rows(conn, "SELECT reason FROM recsys.recommend('ml', '1', 21)")
                } == {"als"}
        assert precomputed_k == 10
        assert {r[0] for r in rows(conn, "SELECT reason FROM recsys.recommend('ml', '1', 5,"
                                         " exclude_seen => false)")} == {"als"}
        assert {r[0] for r in rows(conn, "SELECT reason FROM recsys.recommend('ml', 'nobody',"
                                         " 5)")} == {"popular"}
        view = rows(conn, "SELECT item_key FROM recsys.ranked_recommendations"
                          " WHERE model = 'ml' AND user_key = '1' ORDER BY rank LIMIT 5")
        assert [v[0] for v in view] == [r[0] for r in served]
        # readers see no feature values: they may come from relations readers may not read
        columns = {c for (c,) in rows(conn, "SELECT attname FROM pg_attribute WHERE attrelid"
                                            " IN ('recsys.ranked_recommendations'::regclass,"
                                            " 'recsys.ranker_versions'::regclass)")}
        assert not columns & {"features", "definition"}
        assert rows(conn, "SELECT has_table_privilege('recsys_reader',"
                          " 'recsys.ranked_recommendation', 'SELECT'),"
                          " has_table_privilege('recsys_reader', 'recsys.ranker_version',"
                          " 'SELECT')") == [(False, False)]


def test_importances_and_holdout_metrics_are_data(ranked: tuple[str, training.RunResult]
                                                  ) -> None:
    url, result = ranked
    with db.connect(url) as conn:
        importances = rows(conn, "SELECT rank, feature, gain, gain_share, splits, active"
                                 " FROM recsys.ranker_features WHERE model = 'ml' ORDER BY rank")
        metrics = dict(((r, m), v) for r, m, v in rows(
            conn, "SELECT recommender, metric, value FROM recsys.metrics"
                  " WHERE run_id = %s", (result.run_id,)))
        versions = rows(conn, "SELECT status, reason, ranked_k, active FROM"
                              " recsys.ranker_versions")
    assert len(importances) == 16 and all(active for *_, active in importances)
    assert [r[0] for r in importances] == list(range(1, 17))
    assert sum(r[3] for r in importances) == pytest.approx(1.0)
    assert importances[0][2] == max(r[2] for r in importances)
    for recommender in ("ranked", "ranker_als", "ranker_popular"):
        assert {"ndcg", "recall", "precision", "map"} <= {
            m for r, m in metrics if r == recommender}
    assert result.ranker is not None
    assert metrics["ranked", "ndcg"] == pytest.approx(result.ranker["ranked"])
    assert metrics["ranker_als", "ndcg"] == pytest.approx(result.ranker["als"])
    assert versions == [("active", None, 20, True)]


def _window(url: str, cutoff: float | None = None, users: np.ndarray | None = None
            ) -> tuple[float, ranker.candidates.Frame, sp.csr_matrix]:
    """The candidates, features and labels of the ranker's window at ``cutoff`` (default: the
    last training window's), read from the database as a training reads them; for ``users``
    instead of those with labels when given (batches of other users would round the scores
    differently)."""
    with db.connect(url, pinned=True) as conn:
        model = get_model(conn, "ml")
        data = load.read(conn, model)
        spec = ranker.declared(conn, model.id)
        assert spec is not None
        stage = ranker._Stage(conn, model, spec, data)
        if cutoff is None:
            cutoff = stage.line.end - 2 * spec.window
        window = stage.window(cutoff)
        [(_, frame)] = stage.frames(window, users)
    return cutoff, frame, window.found


def test_features_use_nothing_after_the_cutoff(movielens_db: str) -> None:
    """No leakage: after the cut-off, items are rewritten and every movie watched after it
    gets all 943 users at once, which would make post-cut-off popularity predict the labels
    perfectly. The candidates and features at the cut-off must not move; the labels must."""
    cutoff, before, labels_before = _window(movielens_db)
    with db.connect(movielens_db) as conn:
        conn.execute("INSERT INTO movielens.ratings SELECT u.user_id, r.item_id, 5,"
                     " to_timestamp(%s) + interval '1 hour'"
                     " FROM (SELECT DISTINCT item_id FROM movielens.ratings"
                     "        WHERE rated_at >= to_timestamp(%s)) r,"
                     " generate_series(1, 943) u (user_id)", (cutoff, cutoff))
        conn.execute("UPDATE movielens.ratings SET item_id = 1 + (item_id * 7) %% 1682"
                     " WHERE rated_at >= to_timestamp(%s) + interval '2 hours'", (cutoff,))
    _, after, labels_after = _window(movielens_db, cutoff, np.unique(before.users))
    np.testing.assert_array_equal(after.users, before.users)
    np.testing.assert_array_equal(after.items, before.items)
    np.testing.assert_array_equal(after.features, before.features)
    assert abs(labels_after - labels_before).sum() > 0


def test_rollback_restores_the_previous_ranker(movielens_db: str) -> None:
    first = training.train(movielens_db, "ml")
    with db.connect(movielens_db) as conn:
        conn.execute("SELECT recsys.create_ranker('ml', '30 days', top_k => 5,"
                     " negatives_per_positive => 5)")
    second = training.train(movielens_db, "ml")
    assert first.ranker and second.ranker
    assert (first.ranker["status"], second.ranker["status"]) == ("active", "active")
    with db.connect(movielens_db) as conn:
        v1 = [r[:3] for r in _ranked_rows(conn, 1) if r[0] == "42"]
        assert rows(conn, "SELECT count(*) FROM recsys.recommend('ml', '42', 10)"
                          " WHERE reason = 'ranked'") == [(0,)]  # 5 ranked rows only
        conn.execute("SELECT recsys.rollback('ml', 1)")
        served = rows(conn, "SELECT %s, rank, item_key FROM recsys.recommend('ml', '42', 20)"
                            " WHERE reason = 'ranked'", ("42",))
        assert served == v1 and len(served) == 20
        assert rows(conn, "SELECT DISTINCT version FROM recsys.ranker_features"
                          " WHERE active") == [(1,)]
        assert len(rows(conn, "SELECT feature FROM recsys.ranker_features WHERE version = 2"
                    )) == 15  # the second declaration has no item features


def test_gate_rejects_a_ranker_trained_on_shuffled_labels(
        movielens_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ranker.is_positive
    rng = np.random.default_rng(0)

    def shuffled(frame: ranker.candidates.Frame, found: sp.csr_matrix) -> np.ndarray:
        return rng.permutation(real(frame, found))

    monkeypatch.setattr(ranker, "is_positive", shuffled)
    result = training.train(movielens_db, "ml")
    assert result.status == "succeeded" and result.version == 1
    assert result.ranker is not None and result.ranker["status"] == "rejected"
    assert result.ranker["ranked"] < result.ranker["als"]
    assert result.ranker["reason"].startswith("not activated: ranked ndcg@10 ")
    with db.connect(movielens_db) as conn:
        assert rows(conn, "SELECT status, ranked_k, booster IS NOT NULL FROM"
                          " recsys.ranker_version") == [("rejected", 0, True)]
        assert rows(conn, "SELECT ranked_k FROM recsys.model_version") == [(0,)]
        assert {r[0] for r in rows(conn, "SELECT reason FROM recsys.recommend('ml', '1', 5)")
                } == {"als"}
        assert rows(conn, "SELECT count(*) FROM recsys.ranked_recommendation") == [(0,)]


def test_content_candidates_are_items_known_only_from_features(
        movielens_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With item features (recsys.set_features), items without interactions before a cut-off
    get factors mapped from their features and are proposed by the content generator; at
    serving, so are the version's cold-start items."""
    with db.connect(movielens_db) as conn:
        conn.execute("SELECT recsys.set_features('ml', 'item', 'movielens.movies', 'item_id',"
                     " ARRAY['genres', 'year'])")
        conn.execute("INSERT INTO movielens.movies VALUES (5001, 'New A', 1998,"
                     " ARRAY['Action', 'Sci-Fi']), (5002, 'New B', 1998, ARRAY['Comedy'])")
        conn.execute("CREATE VIEW movielens.movie_genre AS SELECT item_id, genres[1] AS genre"
                     " FROM movielens.movies")
        conn.execute("SELECT recsys.create_ranker('ml', '30 days', content_candidates => 20,"
                     " item_features => 'movielens.movie_genre', item_key_column => 'item_id',"
                     " item_feature_columns => ARRAY['genre'])")
    frames: list[tuple[ranker.candidates.History, ranker.candidates.Frame]] = []
    real = ranker.candidates.frame

    def spy(hist: ranker.candidates.History, *args: object, **kwargs: object
            ) -> ranker.candidates.Frame:
        made = real(hist, *args, **kwargs)  # type: ignore[arg-type]
        frames.append((hist, made))
        return made

    monkeypatch.setattr(ranker.candidates, "frame", spy)
    result = training.train(movielens_db, "ml")
    assert result.ranker is not None and result.ranker["status"] == "active", result.ranker
    content = ranker.candidates.FEATURES.index("content_rank")
    for hist, frame in frames[:-1]:  # the training windows and the holdout
        proposed = ~np.isnan(frame.features[:, content])
        assert proposed.any()
        assert not hist.alive[frame.items[proposed]].any()  # nothing known before the cut-off
        assert np.bincount(frame.users[proposed]).max() <= 20
    hist, served = frames[-1]
    assert hist.matrix.shape[1] == 1682 + 2  # the version's two cold items join the catalog
    proposed = ~np.isnan(served.features[:, content])
    assert set(served.items[proposed]) == {1682, 1683}
    with db.connect(movielens_db) as conn:
        [(names, definition)] = rows(conn, "SELECT features, definition FROM"
                                           " recsys.ranker_version")
        assert "content_rank" in names
    # the cold items' genres coded as the booster learned them
    levels = definition["categories"]["item.genre"]
    genre = served.features[:, names.index("item.genre")]
    assert set(genre[served.items == 1682]) == {levels.index("Action")}
    assert set(genre[served.items == 1683]) == {levels.index("Comedy")}


def test_users_are_ranked_in_batches(movielens_db: str, monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    """Windows, holdout and serving in batches of 300 users (4 a pass): every user ranked,
    every stored row what the stored booster predicts."""
    monkeypatch.setattr(ranker, "USER_BATCH", 300)
    result = training.train(movielens_db, "ml")
    assert result.ranker is not None and result.ranker["status"] == "active", result.ranker
    with db.connect(movielens_db) as conn:
        stored = _ranked_rows(conn, 1)
        booster = _booster(conn, 1)
    assert len(stored) == 943 * 20
    np.testing.assert_array_equal(
        np.array([r[3] for r in stored], dtype=np.float32),
        np.asarray(booster.predict(np.array([r[4] for r in stored], dtype=np.float32)),
                   dtype=np.float32))


def test_fold_in_drops_the_ranked_rows_of_users_it_changes(movielens_db: str) -> None:
    training.train(movielens_db, "ml")
    with db.connect(movielens_db) as conn:
        conn.execute("INSERT INTO movielens.ratings VALUES (7, 1, 5, now())")
    foldin.fold_in(movielens_db, "ml")
    with db.connect(movielens_db) as conn:
        assert {r[0] for r in rows(conn, "SELECT reason FROM recsys.recommend('ml', '7', 5)")
                } == {"als"}
        assert {r[0] for r in rows(conn, "SELECT reason FROM recsys.recommend('ml', '8', 5)")
                } == {"ranked"}
        assert rows(conn, "SELECT count(*) FROM recsys.ranked_recommendation"
                          " WHERE user_key = '7'") == [(0,)]
        # dropping the model drops its ranked rows and ranker versions with it
        conn.execute("SELECT recsys.drop_model('ml')")
        assert rows(conn, "SELECT count(*) FROM pg_class WHERE relname LIKE '%ranked'"
                          " AND relnamespace = 'recsys'::regnamespace AND relispartition"
                    ) == [(0,)]
        assert rows(conn, "SELECT count(*) FROM recsys.ranker_version") == [(0,)]
        assert rows(conn, "SELECT count(*) FROM recsys.ranker") == [(0,)]


# -- bad input on a small synthetic log ------------------------------------------------------


@pytest.fixture
def log_db(conn: psycopg.Connection, db_url: str) -> str:
    """60 users over 120 days, each moving on to a new item (of 200) every 2.5 days; a model
    with a time column and one without, and an item table with a numeric, a text, a boolean
    and a jsonb column."""
    conn.execute("CREATE TABLE public.events AS"
                 " SELECT 'u' || (g % 60) AS u, 'i' || ((g % 60) * 5 + g / 600) % 200 AS i,"
                 " timestamptz '2024-01-01' + (g / 10) * interval '1 hour' AS at"
                 " FROM generate_series(1, 28800) g")
    conn.execute("CREATE TABLE public.items AS SELECT 'i' || g AS item, g * 1.5 AS price,"
                 " 'c' || (g % 3) AS category, g % 2 = 0 AS sale,"
                 " jsonb_build_object('g', g) AS meta FROM generate_series(0, 199) g")
    conn.execute("SELECT recsys.create_model('m', 'public.events', 'u', 'i', time_column => 'at',"
                 " params => recsys.als(factors => 4, iterations => 3))")
    conn.execute("SELECT recsys.create_model('timeless', 'public.events', 'u', 'i',"
                 " params => recsys.als(factors => 4, iterations => 3))")
    return db_url


@pytest.mark.parametrize(("call", "error", "message"), [
    ("recsys.create_ranker('nope', '1 day')", psycopg.errors.UndefinedObject,
     'model "nope" does not exist'),
    ("recsys.create_ranker(NULL, '1 day')", psycopg.errors.NullValueNotAllowed,
     "model name must not be null"),
    ("recsys.create_ranker('timeless', '1 day')", psycopg.errors.InvalidParameterValue,
     'model "timeless" has no time_column: a ranker is trained on a time split '
     "(features before a cut-off, labels after it)"),
    ("recsys.create_ranker('m', NULL)", psycopg.errors.InvalidParameterValue,
     "label_window must be a positive interval, not null"),
    ("recsys.create_ranker('m', '-1 day')", psycopg.errors.InvalidParameterValue,
     "label_window must be a positive interval, not -1 days"),
    ("recsys.create_ranker('m', '1 day', training_windows => 0)",
     psycopg.errors.InvalidParameterValue,
     "training_windows must be an integer between 1 and 10, not 0"),
    ("recsys.create_ranker('m', '1 day', top_k => 0)", psycopg.errors.InvalidParameterValue,
     "top_k must be an integer between 1 and 1000, not 0"),
    ("recsys.create_ranker('m', '1 day', top_k => 30, als_candidates => 20)",
     psycopg.errors.InvalidParameterValue,
     "top_k 30 is more than als_candidates 20: a user's ranked rows come from the candidates"),
    ("recsys.create_ranker('m', '1 day', negatives_per_positive => -1)",
     psycopg.errors.InvalidParameterValue,
     "negatives_per_positive must be an integer between 0 and 1000, not -1"),
    ("recsys.create_ranker('m', '1 day', item_features => 'public.nope')",
     psycopg.errors.UndefinedTable, 'relation "public.nope" does not exist'),
    ("recsys.create_ranker('m', '1 day', item_key_column => 'item')",
     psycopg.errors.InvalidParameterValue,
     "item_key_column and item_feature_columns need item_features"),
    ("recsys.create_ranker('m', '1 day', item_features => 'public.items',"
     " item_key_column => 'item')", psycopg.errors.InvalidParameterValue,
     "item_feature_columns must name at least one column"),
    ("recsys.create_ranker('m', '1 day', item_features => 'public.items',"
     " item_key_column => 'item', item_feature_columns => ARRAY['colour'])",
     psycopg.errors.UndefinedColumn, 'column "colour" does not exist in relation public.items'),
    ("recsys.create_ranker('m', '1 day', item_features => 'public.items',"
     " item_key_column => 'nokey', item_feature_columns => ARRAY['price'])",
     psycopg.errors.UndefinedColumn, 'column "nokey" does not exist in relation public.items'),
    ("recsys.create_ranker('m', '1 day', item_features => 'public.items',"
     " item_key_column => 'item', item_feature_columns => ARRAY['meta'])",
     psycopg.errors.DatatypeMismatch,
     'item feature column "meta" of relation public.items has type jsonb: a ranker feature '
     "must be numeric, boolean or text (a category)"),
    ("recsys.create_ranker('m', '1 day', user_features => 'pg_catalog.pg_authid',"
     " user_key_column => 'rolname', user_feature_columns => ARRAY['rolsuper'])",
     psycopg.errors.InsufficientPrivilege, "relation pg_authid cannot be a model source"),
    ("recsys.drop_ranker('nope')", psycopg.errors.UndefinedObject, 'model "nope" does not exist'),
])
def test_bad_declarations_are_refused(log_db: str, call: str, error: type[Exception],
                                      message: str) -> None:
    with db.connect(log_db) as conn:
        with pytest.raises(error) as raised:
            conn.execute(f"SELECT {call}")
        assert str(raised.value).splitlines()[0] == message
        assert rows(conn, "SELECT count(*) FROM recsys.ranker") == [(0,)]


def _failed(url: str, model: str = "m") -> str:
    result = training.train(url, model)
    assert result.status == "succeeded" and result.version is not None
    assert result.ranker is not None and result.ranker["status"] == "failed"
    with db.connect(url) as conn:
        assert rows(conn, "SELECT ranked_k FROM recsys.model_version WHERE version = %s",
                    (result.version,)) == [(0,)]
        assert {r[0] for r in rows(conn, "SELECT reason FROM recsys.recommend(%s, 'u1', 3)",
                                   (model,))} == {"als"}
        assert rows(conn, "SELECT status, reason FROM recsys.ranker_versions"
                          " WHERE version = %s", (result.version,)) == [
            ("failed", result.ranker["reason"])]
    return str(result.ranker["reason"])


def test_a_failed_ranker_stage_leaves_the_als_version_serving(log_db: str) -> None:
    with db.connect(log_db) as conn:
        conn.execute("SELECT recsys.create_ranker('m', '100 days')")
    assert _failed(log_db) == (
        'the interactions of model "m" span 120 days, less than the 3 label windows of '
        "100 days its ranker needs (2 to train on and one holdout): shorten label_window or "
        "lower training_windows")
    with db.connect(log_db) as conn:
        conn.execute("SELECT recsys.create_ranker('m', '10 days', min_positives => 1000000)")
    reason = _failed(log_db)
    assert reason.startswith('the ranker of model "m" found ')
    assert reason.endswith(" in its 2 training windows, fewer than min_positives 1000000: "
                           "lengthen label_window, add training_windows or propose more "
                           "candidates")
    with db.connect(log_db) as conn:
        conn.execute("SELECT recsys.create_ranker('m', '10 days', item_features => "
                     "'public.items', item_key_column => 'item',"
                     " item_feature_columns => ARRAY['price'])")
        conn.execute("DROP TABLE public.items")
    assert _failed(log_db) == ('relation "public.items" (the ranker\'s item features of model '
                               '"m") does not exist')
    with db.connect(log_db) as conn:  # a window after which no known user came back
        conn.execute("DELETE FROM public.events WHERE at >= timestamptz '2024-03-30'"
                     " AND at < timestamptz '2024-04-21'")
        conn.execute("SELECT recsys.create_ranker('m', '10 days')")
    assert _failed(log_db) == (
        'the label window from 2024-03-31 00:00:00 to 2024-04-10 00:00:00 of model "m" has no '
        "interactions of users known before it; a ranker learns from what they did after the "
        "cut-off: lengthen label_window or lower training_windows")
    with db.connect(log_db) as conn:
        conn.execute("UPDATE public.events SET at = NULL")
    assert _failed(log_db) == ('no usable row of the source of model "m" has a time in column '
                               '"at"; a ranker learns from a time split')


def test_timeline_reads_in_chunks_the_same_rows(log_db: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def read() -> timeline.Timeline:
        with db.connect(log_db, pinned=True) as conn:
            model = get_model(conn, "m")
            data = load.read(conn, model)
            return timeline.read(conn, model, data.matrix.shape, data.rows_read)

    whole = read()
    monkeypatch.setattr(timeline, "CHUNK_ROWS", 1000)  # 29 queries
    chunked = read()
    assert len(whole.times) == 28800 and whole.shape == (60, 200)
    for name in ("users", "items", "times", "weights"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    assert np.all(np.diff(whole.times) >= 0)


def test_feature_columns_of_every_kind_and_hostile_names(log_db: str) -> None:
    hostile = 'pr"ice); DROP TABLE public.events; --'
    with db.connect(log_db) as conn:
        conn.execute(sql.SQL("ALTER TABLE public.items RENAME COLUMN price TO {}").format(
            sql.Identifier(hostile)))
        conn.execute("CREATE TABLE public.people AS SELECT 'u' || g AS person, g % 4 AS age"
                     " FROM generate_series(0, 29) g")
        conn.execute("SELECT recsys.create_ranker('m', '10 days', min_positives => 1,"
                     " user_features => 'public.people', user_key_column => 'person',"
                     " user_feature_columns => ARRAY['age'], item_features => 'public.items',"
                     " item_key_column => 'item',"
                     " item_feature_columns => ARRAY[%s, 'category', 'sale'])", (hostile,))
    result = training.train(log_db, "m")
    assert result.ranker is not None and result.ranker["status"] in ("active", "rejected")
    with db.connect(log_db) as conn:
        [(names, definition)] = rows(conn, "SELECT features, definition FROM"
                                           " recsys.ranker_version")
        assert names[-4:] == ["user.age", f"item.{hostile}", "item.category", "item.sale"]
        assert definition["categories"] == {"item.category": ["c0", "c1", "c2"]}
        assert rows(conn, "SELECT count(*) FROM public.events") == [(28800,)]


def test_rankers_are_managed_only_by_their_declarers(
        log_db: str, conn: psycopg.Connection, make_login: Callable[..., str]) -> None:
    """Attack: a modeler declares a ranker on another's model, or reads through one a table
    it may not read."""
    owner, other = make_login("recsys_modeler"), make_login("recsys_modeler")
    conn.execute(f"GRANT SELECT ON public.events TO {owner}")
    conn.execute("CREATE TABLE public.salaries AS SELECT 'u' || g AS u, g * 1000 AS pay"
                 " FROM generate_series(0, 59) g")
    try:
        with psycopg.connect(make_conninfo(log_db, user=owner), autocommit=True) as mine:
            mine.execute("SELECT recsys.create_model('mine', 'public.events', 'u', 'i',"
                         " time_column => 'at')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege,
                               match=rf"^role {owner} may not read column u of public.salaries"):
                mine.execute("SELECT recsys.create_ranker('mine', '1 day',"
                             " user_features => 'public.salaries', user_key_column => 'u',"
                             " user_feature_columns => ARRAY['pay'])")
            mine.execute("SELECT recsys.create_ranker('mine', '1 day')")
        with psycopg.connect(make_conninfo(log_db, user=other), autocommit=True) as theirs:
            for call in ("recsys.create_ranker('mine', '2 days')", "recsys.drop_ranker('mine')"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege,
                                   match=rf'^role {other} may not manage model "mine"'):
                    theirs.execute(f"SELECT {call}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                theirs.execute("INSERT INTO recsys.ranker (model_id, label_window,"
                               " training_windows, als_candidates, popular_candidates,"
                               " neighbour_candidates, recent_items, negatives_per_positive,"
                               " min_positives, top_k) SELECT id, '1 day', 1, 1, 1, 1, 1, 1, 1,"
                               " 1 FROM recsys.model WHERE name = 'mine'")
        assert rows(conn, "SELECT label_window::text FROM recsys.rankers"
                          " WHERE model = 'mine'") == [("1 day",)]
    finally:
        conn.execute("SELECT recsys.drop_model('mine')")


def test_cli_train_reports_the_ranker(movielens_db: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--database-url", movielens_db, "train", "ml"]) == 0
    out = capsys.readouterr().out
    assert "ranker: active, top 20 per user ranked (ndcg@10 " in out
    with db.connect(movielens_db) as conn:
        conn.execute("SELECT recsys.create_ranker('ml', '30 days', min_positives => 999999)")
    assert cli.main(["--database-url", movielens_db, "train", "ml"]) == 0
    err = capsys.readouterr().err
    assert "warning: ranker not trained, the version serves ALS: the ranker of model" in err


def test_drop_ranker(ranked: tuple[str, training.RunResult]) -> None:
    url, _ = ranked
    with db.connect(url) as conn, conn.transaction():
        assert rows(conn, "SELECT recsys.drop_ranker('ml')") == [(True,)]
        assert rows(conn, "SELECT recsys.drop_ranker('ml')") == [(False,)]
        assert rows(conn, "SELECT count(*) FROM recsys.rankers") == [(0,)]
        # versions trained with it keep serving
        assert {r[0] for r in rows(conn, "SELECT reason FROM recsys.recommend('ml', '1', 3)")
                } == {"ranked"}
        raise psycopg.Rollback()



def test_doc_example_runs_in_order(server_url: str, template_url: str,
                                   movielens_data: datasets.MovieLens) -> None:
    """docs/ranker.md on the demo's model: its declarations, a training, then its queries,
    each returning rows."""
    blocks = sql_blocks("ranker.md")
    name, url = new_database(server_url)
    try:
        with db.connect(url) as conn:
            datasets.write_movielens(conn, movielens_data)
            conn.execute(demo.CREATE_MODEL)
            for block in blocks[:2]:
                conn.execute(block.encode())
        result = training.train(url, "movielens")
        assert result.ranker is not None and result.ranker["status"] == "active", result.ranker
        with db.connect(url) as conn:
            for block in blocks[2:]:
                run_returning_rows(conn, block)
            assert {r[0] for r in rows(conn, "SELECT reason FROM recsys.recommend('movielens',"
                                             " '196', 10)")} == {"ranked"}
    finally:
        drop_database(server_url, name)
