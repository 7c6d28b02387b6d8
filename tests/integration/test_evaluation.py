"""Holdout evaluation stored per run, checked by hand and against implicit.evaluation;
the promotion gate; evaluation parameters."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import psycopg
import pytest
from implicit.cpu import _als as implicit_als
from implicit.cpu.als import AlternatingLeastSquares
from implicit.evaluation import ranking_metrics_at_k

from recsys_db import als, datasets, db, evaluation, load, training, weighting
from recsys_db.errors import ConfigError
from recsys_db.model import ModelConfig, effective_params, get_model

from ..helpers import rows

# Seven users, items with distinct popularity once each user's last item is held out:
# u1 A B C, u2 A B D, u3 A C E, u4 A B  -> test C, D, E, B; train A=4 B=2 C=1 D=0 E=0
# u5, u6, u7 have only D (one item: never held out) -> D=3 in training
TIMED = [("u1", "A", 1), ("u1", "B", 2), ("u1", "C", 3),
         ("u2", "A", 1), ("u2", "B", 2), ("u2", "D", 3),
         ("u3", "A", 1), ("u3", "C", 2), ("u3", "E", 3),
         ("u4", "A", 1), ("u4", "B", 2),
         ("u5", "D", 1), ("u6", "D", 1), ("u7", "D", 1)]


def make_timed(conn: psycopg.Connection, params: str) -> None:
    conn.execute("CREATE TABLE public.timed (u text, i text, at timestamptz)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.timed VALUES (%s, %s,"
                        " timestamptz '2024-01-01' + %s * interval '1 day')", TIMED)
    conn.execute("SELECT recsys.create_model('timed', 'public.timed', 'u', 'i',"
                 f" time_column => 'at', params => {params})")


def stored(conn: psycopg.Connection, model: str, recommender: str) -> dict[str, float]:
    return dict(rows(conn, "SELECT metric, value FROM recsys.metrics WHERE model = %s"
                           " AND recommender = %s AND run_id = (SELECT max(run_id)"
                           " FROM recsys.metrics WHERE model = %s)", (model, recommender, model)))


def test_popularity_baseline_metrics_by_hand(db_url: str, conn: psycopg.Connection) -> None:
    make_timed(conn, "recsys.als(factors => 2, eval_k => 2)")
    result = training.train(db_url, "timed")
    assert result.status == "succeeded"
    assert rows(conn, "SELECT DISTINCT split, k, test_users, test_interactions,"
                      " train_interactions FROM recsys.metrics") == [("time", 2, 4, 4, 10)]
    # popular recommends (k=2, unseen only): u1 D C (hit C at 2), u2 D C (hit D at 1),
    # u3 D B (no hit), u4 D B (hit B at 2); 5 items, 7 training users
    gain2 = 1 / math.log2(3)
    expected = {
        "precision": (1 + 1 + 0 + 1) / 2 / 4,
        "precision_capped": 3 / 4,
        "recall": 3 / 4,
        "map": (1 / 2 + 1 + 0 + 1 / 2) / 4,
        "ndcg": (gain2 + 1 + 0 + gain2) / 4,
        # implicit's AUC with 1 positive and 4 negatives per user: u1 and u4 miss then hit
        # (0 + 3) / 4, u2 hits then misses (1 + 3) / 4, u3 misses twice (0 + 1) / 4
        "auc": (3 / 4 + 4 / 4 + 1 / 4 + 3 / 4) / 4,
        "coverage": 3 / 5,  # D, C, B
        "novelty": (4 * -math.log2(3 / 7) + 2 * -math.log2(1 / 7) + 2 * -math.log2(2 / 7)) / 8,
    }
    got = stored(conn, "timed", "popular")
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert stored(conn, "timed", "als").keys() == expected.keys()
    assert result.metrics["popular"] == got


def test_time_split_with_integer_keys(db_url: str, conn: psycopg.Connection) -> None:
    """Integer keys are joined with the key maps as integers (and map to text order)."""
    conn.execute("CREATE TABLE public.timed_ints (u bigint, i integer, at timestamptz)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.timed_ints VALUES (%s, %s,"
                        " timestamptz '2024-01-01' + %s * interval '1 day')",
                        [(int(u[1:]) * 10, ord(i) - 60, day) for u, i, day in TIMED])
    conn.execute("SELECT recsys.create_model('ints', 'public.timed_ints', 'u', 'i',"
                 " time_column => 'at', params => recsys.als(factors => 2, eval_k => 2))")
    make_timed(conn, "recsys.als(factors => 2, eval_k => 2)")
    training.train(db_url, "ints")
    training.train(db_url, "timed")
    # the same split and the same popularity ranking as with the text keys
    assert rows(conn, "SELECT DISTINCT split, k, test_users, test_interactions,"
                      " train_interactions FROM recsys.metrics WHERE model = 'ints'") == [
        ("time", 2, 4, 4, 10)]
    assert stored(conn, "ints", "popular") == stored(conn, "timed", "popular")


def test_time_split_holds_out_each_users_latest_items(db_url: str,
                                                      conn: psycopg.Connection) -> None:
    make_timed(conn, "recsys.als(factors => 2, eval_leave_last => 2)")
    with db.connect(db_url) as other:
        model = get_model(other, "timed")
        model = replace(model, params=effective_params(other, model.params))
        data = load.read(other, model)
        split = evaluation.make_split(other, model, data)
        users = [r[0] for r in rows(other, "SELECT key FROM recsys_user_map ORDER BY idx")]
        items = [r[0] for r in rows(other, "SELECT key FROM recsys_item_map ORDER BY idx")]
    assert split is not None and split.kind == "time"
    held = {(users[u], items[i]) for u, i in zip(*split.test.nonzero(), strict=True)}
    # only users with more than 2 items lose their 2 latest
    assert held == {("u1", "B"), ("u1", "C"), ("u2", "B"), ("u2", "D"), ("u3", "C"), ("u3", "E")}
    assert split.train.nnz + split.test.nnz == data.matrix.nnz


def implicit_ranker(user_factors: np.ndarray, item_factors: np.ndarray
                    ) -> AlternatingLeastSquares:
    """An implicit model that ranks by the inner product of the given factors."""
    model = AlternatingLeastSquares(factors=item_factors.shape[1])
    model.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    return model


def _movielens_split(conn: psycopg.Connection) -> tuple[ModelConfig, load.Interactions,
                                                       evaluation.Split]:
    """Model "ml" with its effective params, its data and its holdout split, as training made
    them."""
    model = get_model(conn, "ml")
    model = replace(model, params=effective_params(conn, model.params))
    data = load.read(conn, model)
    split = evaluation.make_split(conn, model, data)
    conn.execute("DROP TABLE recsys_user_map, recsys_item_map")
    assert split is not None
    return model, data, split


@pytest.mark.slow
def test_stored_metrics_equal_implicit_evaluation(movielens_url: str) -> None:
    """Same split, same factors (refit deterministically): implicit agrees with what we stored."""
    with db.connect(movielens_url) as conn:
        model, data, split = _movielens_split(conn)
        assert split.kind == "random"
        user_factors, item_factors = als.fit(weighting.apply(split.train, model.params),
                                                  model.params)
        counts = evaluation.popularity(split.train)
        rankers = {
            "als": implicit_ranker(user_factors, item_factors),
            # equal counts ranked by item index, the tie rule of recsys.popular and evaluation:
            # a lower index loses less of a fraction below 1/2, which float32 keeps apart
            "popular": implicit_ranker(np.ones((data.users, 1)), (
                counts - np.arange(data.items) / (2 * data.items))[:, None]),
        }
        for recommender, ranker in rankers.items():
            theirs = ranking_metrics_at_k(ranker, split.train, split.test, K=10,
                                          show_progress=False)
            ours = stored(conn, "ml", recommender)
            assert ours["precision_capped"] == pytest.approx(theirs["precision"], abs=1e-9), \
                recommender
            for name in ("map", "ndcg", "auc"):
                assert ours[name] == pytest.approx(theirs[name], abs=1e-9), (recommender, name)


@pytest.mark.slow
def test_version_continues_from_the_holdout_model(movielens_url: str) -> None:
    """The version put into production is fitted on all data from the holdout model's factors,
    for als.refit_iterations rounds: the stored factors are that fit's, and its training loss is
    that of a fresh fit with all the iterations, within 0.1%."""
    with db.connect(movielens_url) as conn:
        model, data, split = _movielens_split(conn)
        holdout = als.fit(weighting.apply(split.train, model.params), model.params)
        weighted = weighting.apply(data.matrix, model.params)
        rounds = []
        user_factors, item_factors = als.fit(weighted, model.params, start=holdout,
                                             on_iteration=lambda i, _: rounds.append(i))
        assert len(rounds) == als.refit_iterations(int(model.params["iterations"])) == 4
        (user_table, item_table), = rows(
            conn, "SELECT user_table, item_table FROM recsys.model_version v"
                  " JOIN recsys.model m ON m.id = v.model_id AND v.version = m.active_version"
                  " WHERE m.name = 'ml'")
        for table, expected in ((user_table, user_factors), (item_table, item_factors)):
            stored = np.stack([r[0].to_numpy() for r in rows(
                conn, f"SELECT factors FROM recsys.{table} ORDER BY idx")])
            np.testing.assert_allclose(stored, expected, atol=1e-6)
    fresh = als.fit(weighted, model.params)
    regularization = float(model.params["regularization"])
    ours = implicit_als.calculate_loss(weighted.astype(np.float32), user_factors, item_factors,
                                       regularization, num_threads=0)
    theirs = implicit_als.calculate_loss(weighted.astype(np.float32), *fresh, regularization,
                                         num_threads=0)
    assert ours == pytest.approx(theirs, rel=1e-3)


@pytest.mark.slow
def test_als_beats_popularity_on_movielens(movielens_url: str) -> None:
    with db.connect(movielens_url) as conn:
        als, popular = stored(conn, "ml", "als"), stored(conn, "ml", "popular")
        (test_users,), = rows(conn, "SELECT DISTINCT test_users FROM recsys.metrics"
                                    " WHERE model = 'ml'")
    assert test_users > 900
    assert als["precision"] > popular["precision"]
    assert als["ndcg"] > popular["ndcg"]
    assert als["coverage"] > popular["coverage"]


@pytest.fixture
def movielens_copy(db_url: str, conn: psycopg.Connection,
                   movielens_data: datasets.MovieLens) -> str:
    datasets.write_movielens(conn, movielens_data)
    return db_url


@pytest.mark.slow
def test_gate_blocks_bad_configurations(movielens_copy: str) -> None:
    with db.connect(movielens_copy) as conn:
        conn.execute("SELECT recsys.create_model('ml', 'movielens.liked', 'user_id', 'item_id',"
                     " params => recsys.als(factors => 32, iterations => 10,"
                     " regularization => 0.05, gate_metric => 'ndcg', gate_min => 0.2,"
                     " recommendations_k => 0))")
        assert training.train(movielens_copy, "ml").status == "succeeded"
        before = rows(conn, "SELECT * FROM recsys.recommend('ml', '196', 10)")
        errors = []
        # one factor, one sweep: barely more than popularity, below the threshold;
        # 256 factors without regularization: overfits, below popularity itself
        for bad in ('{"factors": 1, "iterations": 1}',
                    '{"factors": 256, "iterations": 10, "regularization": 0}'):
            conn.execute("UPDATE recsys.model SET params = recsys._check_params(params || %s)",
                         (bad,))
            result = training.train(movielens_copy, "ml")
            assert (result.status, result.version) == ("rejected", None)
            assert result.error is not None
            errors.append(result.error)
        assert errors[0].startswith("not activated: ndcg@10 0.1")
        assert errors[0].endswith(" is below gate_min 0.2")
        assert errors[1].startswith("not activated: ndcg@10 0.")
        assert errors[1].endswith(" is below gate_min 0.2 and below the popularity baseline "
                                  + f"{stored(conn, 'ml', 'popular')['ndcg']:.6g}")
        assert rows(conn, "SELECT status, version, error FROM recsys.runs ORDER BY run_id") == [
            ("succeeded", 1, None), ("rejected", None, errors[0]), ("rejected", None, errors[1])]
        rule = "ndcg@10 >= 0.2 and ndcg@10 >= popular"
        assert rows(conn, "SELECT DISTINCT run_id, gate, gate_passed FROM recsys.metrics"
                          " ORDER BY run_id") == [(1, rule, True), (2, rule, False),
                                                  (3, rule, False)]
        assert rows(conn, "SELECT active_version, last_run_status FROM recsys.models") == [
            (1, "rejected")]
        assert rows(conn, "SELECT version FROM recsys.versions") == [(1,)]
        assert rows(conn, "SELECT * FROM recsys.recommend('ml', '196', 10)") == before


def test_gate_threshold_and_unmeasurable_gate(db_url: str, conn: psycopg.Connection) -> None:
    make_timed(conn, "recsys.als(factors => 2, gate_metric => 'recall', gate_min => 1.5,"
                     " gate_baseline => false)")
    result = training.train(db_url, "timed")
    assert result.status == "rejected"
    assert result.error is not None
    # k is capped at the 5 items there are
    assert result.error == "not activated: recall@5 1 is below gate_min 1.5"
    assert rows(conn, "SELECT DISTINCT gate, gate_passed FROM recsys.metrics") == [
        ("recall@5 >= 1.5", False)]
    # the verdict as data, for the command line: metric, threshold and baseline
    assert result.gate == {"rule": "recall@5 >= 1.5", "metric": "recall@5", "value": 1.0,
                           "minimum": 1.5, "baseline": stored(conn, "timed", "popular")["recall"],
                           "passed": False, "reason": result.error}
    assert result.as_dict()["gate"] == result.gate
    # nobody has two items: nothing can be held out, so the gate cannot pass
    conn.execute("DELETE FROM public.timed WHERE i <> 'D'")
    conn.execute("UPDATE recsys.model SET params = params || '{\"gate_min\": 0}'")
    result = training.train(db_url, "timed")
    assert (result.status, result.error) == (
        "rejected", "not activated: no user has enough interactions to hold out, so recall@1"
                    " cannot be measured")
    assert result.gate == {"rule": "recall@1 >= 0", "metric": "recall@1", "value": None,
                           "minimum": 0.0, "baseline": None, "passed": False,
                           "reason": result.error}
    assert rows(conn, "SELECT active_version FROM recsys.model") == [(None,)]


def test_gate_that_passes_reports_its_verdict(db_url: str, conn: psycopg.Connection) -> None:
    make_timed(conn, "recsys.als(factors => 2, gate_metric => 'ndcg', gate_min => 0.01)")
    # popularity is hard to beat on seven users: compare against the threshold only
    conn.execute("UPDATE recsys.model SET params = params || '{\"gate_baseline\": false}'")
    result = training.train(db_url, "timed")
    assert (result.status, result.version) == ("succeeded", 1)
    assert result.gate == {"rule": "ndcg@5 >= 0.01", "metric": "ndcg@5",
                           "value": stored(conn, "timed", "als")["ndcg"], "minimum": 0.01,
                           "baseline": stored(conn, "timed", "popular")["ndcg"],
                           "passed": True, "reason": None}


def test_evaluation_off_stores_no_metrics_and_trains(db_url: str,
                                                        conn: psycopg.Connection) -> None:
    make_timed(conn, "recsys.als(factors => 2, eval_split => 'off')")
    result = training.train(db_url, "timed")
    assert (result.status, result.metrics, result.gate) == ("succeeded", {}, None)
    assert "holdout" not in result.stages and "evaluate" not in result.stages
    assert rows(conn, "SELECT count(*) FROM recsys.metrics") == [(0,)]


def test_time_split_needs_a_time_column(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.t (u text, i text)")
    conn.execute("INSERT INTO public.t VALUES ('a', 'x'), ('a', 'y')")
    conn.execute("SELECT recsys.create_model('t', 'public.t', 'u', 'i',"
                 " params => recsys.als(eval_split => 'time'))")
    with pytest.raises(ConfigError, match='eval_split "time" needs a time_column, and model "t"'
                                          " has none"):
        training.train(db_url, "t")
    assert rows(conn, "SELECT status FROM recsys.runs") == [("failed",)]


@pytest.mark.parametrize(("params", "message"), [
    ("eval_split => 'later'", "unknown eval_split \"later\""),
    ("eval_k => 0", "eval_k must be an integer between 1 and 1000, not 0"),
    ("eval_test_fraction => 1", "eval_test_fraction must be a number between 0 and 1"),
    ("eval_leave_last => 0", "eval_leave_last must be an integer between 1 and 1000"),
    ("eval_max_users => 0", "eval_max_users must be an integer between 1 and 100000000"),
    ("gate_metric => 'speed'", "unknown gate_metric \"speed\""),
    ("gate_min => 0.1", "gate_min needs gate_metric"),
    ("gate_metric => 'ndcg', eval_split => 'off'", "gate_metric needs an evaluation, but"),
    ("recommendations_k => -1", "recommendations_k must be an integer between 0 and 1000"),
    ("similar_items_k => 5000", "similar_items_k must be an integer between 0 and 1000"),
])
def test_bad_quality_params(conn: psycopg.Connection, params: str, message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT recsys.als({params})")


def test_bad_quality_param_types(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match='gate_baseline must be a boolean, not "yes"'):
        conn.execute("SELECT recsys._check_params('{\"gate_baseline\": \"yes\"}')")
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match='gate_min must be a number, not "high"'):
        conn.execute("SELECT recsys._check_params("
                     "'{\"gate_metric\": \"ndcg\", \"gate_min\": \"high\"}')")
