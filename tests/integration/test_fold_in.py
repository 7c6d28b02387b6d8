"""Incremental fold-in through the real database: new users, changed users, new items."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from psycopg import sql

from recsys_db import foldin, training, weighting, worker
from recsys_db.errors import ConfigError

from ..helpers import rows
from ..helpers_foldin import Reference

PARAMS = "recsys.als(factors => 4, iterations => 20, regularization => 0.05, alpha => 10)"


def make_events(conn: psycopg.Connection, *, time_column: bool = True) -> None:
    """Two taste groups: 6 users like a0..a5 (4 each), 10 users like b0..b5 (4 each), so the
    b items are the popular ones."""
    conn.execute("CREATE TABLE public.events (usr text, item text, n integer,"
                 " ts timestamptz DEFAULT '2024-01-01')")
    pairs = [(f"u{u}", f"a{(u + j) % 6}") for u in range(6) for j in range(4)]
    pairs += [(f"v{u}", f"b{(u + j) % 6}") for u in range(10) for j in range(4)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.events (usr, item, n) VALUES (%s, %s, 1)", pairs)
    conn.execute("SELECT recsys.create_model('m', 'public.events', 'usr', 'item', 'n',"
                 f" time_column => {'$$ts$$' if time_column else 'NULL'}, params => {PARAMS})")


def run_worker_once(db_url: str) -> int:
    return worker.Worker(db_url, worker.WorkerOptions(once=True, poll=0.1, lease=5),
                         worker.Events(quiet=True)).run()


def version_tables(conn: psycopg.Connection) -> tuple[str, str]:
    (users, items), = rows(conn, "SELECT v.user_table, v.item_table FROM recsys.model_version v"
                                 " JOIN recsys.model m ON m.id = v.model_id"
                                 " AND v.version = m.active_version")
    return users, items


def item_factors(conn: psycopg.Connection, table: str) -> np.ndarray:
    return np.array([r[0].to_numpy() for r in
                     rows(conn, sql.SQL("SELECT factors FROM {} ORDER BY idx").format(
                         sql.Identifier("recsys", table)))])


def test_new_user_gets_recalculate_user_vector(db_url: str, conn: psycopg.Connection) -> None:
    make_events(conn)
    conn.execute("SELECT recsys.request_refresh('m')")
    assert run_worker_once(db_url) == 0
    assert rows(conn, "SELECT kind, status, version FROM recsys.runs") == [("full", "succeeded", 1)]
    assert rows(conn, "SELECT value::timestamptz = '2024-01-01' FROM recsys.watermark") == [
        (True,)]
    popular = [r[0] for r in rows(conn, "SELECT item_key FROM recsys.popular('m', 3)")]
    before = rows(conn, "SELECT item_key, reason FROM recsys.recommend('m', 'newbie', 3)")
    assert [r[1] for r in before] == ["popular"] * 3

    conn.execute("INSERT INTO public.events VALUES ('newbie', 'a0', 1, '2024-02-01'),"
                 " ('newbie', 'a1', 1, '2024-02-01'), ('newbie', 'a2', 2, '2024-02-01'),"
                 " ('newbie', 'a3', 1, '2024-02-01'), ('newbie', 'a4', 1, '2024-02-01')")
    # the worker notices the rows after the watermark and folds them in, no retrain
    assert run_worker_once(db_url) == 0
    assert rows(conn, "SELECT kind, status, version, users, items, rows_read FROM recsys.runs"
                      " ORDER BY run_id") == [("full", "succeeded", 1, 16, 12, 64),
                                             ("incremental", "succeeded", 1, 1, 0, 5)]
    assert rows(conn, "SELECT mode, reason, status FROM recsys.jobs ORDER BY job_id") == [
        ("full", "requested", "succeeded"), ("incremental", "new events", "succeeded")]
    assert rows(conn, "SELECT version, users, items, nnz FROM recsys.versions") == [
        (1, 17, 12, 69)]
    recs = rows(conn, "SELECT item_key, score, reason FROM recsys.recommend('m', 'newbie', 3)")
    assert [r[2] for r in recs] == ["als"] * 3
    assert recs[0][0] == "a5"  # the one a-item the user has not seen, not a popular b-item
    assert [r[0] for r in recs] != popular
    # the precomputed rows of the folded-in user follow (recommendations_k defaults to 10),
    # and recommend keeps serving from them: no item was added
    assert rows(conn, "SELECT item_key, rank FROM recsys.recommendations"
                      " WHERE model = 'm' AND user_key = 'newbie' ORDER BY rank") == rows(
        conn, "SELECT r.item_key, r.rank FROM recsys.model_version v,"
              " recsys._recommend_live(v, 'm', 'newbie', 10, true) r")
    assert rows(conn, "SELECT precomputed_k FROM recsys.model_version") == [(10,)]

    # the stored vector is what implicit computes for this history against the item factors
    users, items = version_tables(conn)
    factors = item_factors(conn, items)
    keys = [r[0] for r in rows(conn, sql.SQL("SELECT key FROM {} ORDER BY idx").format(
        sql.Identifier("recsys", items)))]
    history = {"a0": 1, "a1": 1, "a2": 2, "a3": 1, "a4": 1}
    confidence = sp.csr_matrix(
        ([1 + 10 * w for w in history.values()], ([0] * 5, [keys.index(k) for k in history])),
        shape=(1, len(keys)), dtype=np.float32)
    als = AlternatingLeastSquares(factors=4, regularization=0.05, alpha=1.0)
    als.item_factors = factors.astype(np.float32)
    expected = als.recalculate_user(0, confidence)
    (stored, idx, seen), = rows(conn, sql.SQL("SELECT factors, idx, seen FROM {}"
                                              " WHERE key = 'newbie'").format(
                                                  sql.Identifier("recsys", users)))
    assert np.allclose(stored.to_numpy(), expected, atol=1e-5)
    assert idx == 16 and sorted(keys[i] for i in seen) == sorted(history)
    best = sorted(((float(factors[i] @ expected), keys[i]) for i in range(len(keys))
                   if keys[i] not in history), reverse=True)[:3]
    assert [r[0] for r in recs] == [k for _, k in best]
    assert np.allclose([r[1] for r in recs], [s for s, _ in best], atol=1e-4)
    # popularity counts the new user; the watermark moved on, so nothing is due any more
    assert rows(conn, sql.SQL("SELECT popularity FROM {} WHERE key = 'a2'").format(
        sql.Identifier("recsys", items))) == [(5,)]
    assert rows(conn, "SELECT value::timestamptz = '2024-02-01' FROM recsys.watermark") == [
        (True,)]
    assert rows(conn, "SELECT recsys._enqueue_due()") == [(0,)]


def test_changed_user_and_new_item_without_time_column(db_url: str,
                                                       conn: psycopg.Connection) -> None:
    make_events(conn, time_column=False)
    conn.execute("SELECT recsys.request_refresh('m')")
    assert run_worker_once(db_url) == 0
    users, items = version_tables(conn)
    (u0_before,), = rows(conn, sql.SQL("SELECT factors FROM {} WHERE key = 'u0'").format(
        sql.Identifier("recsys", users)))
    untouched = rows(conn, sql.SQL("SELECT key, factors::text FROM {} ORDER BY key").format(
        sql.Identifier("recsys", users)))
    # u0, u1 and u2 take up a new item; u0 also a b-item
    conn.execute("INSERT INTO public.events (usr, item, n) VALUES ('u0', 'a-new', 1),"
                 " ('u1', 'a-new', 1), ('u2', 'a-new', 1), ('u0', 'b0', 1)")
    result = foldin.fold_in(db_url, "m")
    assert (result.status, result.users, result.new_users, result.new_items, result.nnz) == (
        "succeeded", 3, 0, 1, 16)
    assert result.watermark is None
    (u0_after,), = rows(conn, sql.SQL("SELECT factors FROM {} WHERE key = 'u0'").format(
        sql.Identifier("recsys", users)))
    assert not np.allclose(u0_before.to_numpy(), u0_after.to_numpy())
    assert rows(conn, sql.SQL("SELECT key, factors::text FROM {} WHERE key NOT IN"
                              " ('u0', 'u1', 'u2') ORDER BY key").format(
                                  sql.Identifier("recsys", users))) == [
        r for r in untouched if r[0] not in ("u0", "u1", "u2")]
    assert rows(conn, sql.SQL("SELECT idx, popularity FROM {} WHERE key = 'a-new'").format(
        sql.Identifier("recsys", items))) == [
        (12, 3)]
    assert rows(conn, sql.SQL("SELECT popularity FROM {} WHERE key = 'b0'").format(
        sql.Identifier("recsys", items))) == [(7,)]
    assert rows(conn, "SELECT users, items, nnz FROM recsys.versions") == [(16, 13, 68)]
    # the new item may belong in anyone's top-k: recommend stops reading precomputed rows
    assert rows(conn, "SELECT precomputed_k FROM recsys.model_version") == [(0,)]
    assert rows(conn, "SELECT item_key FROM recsys.recommend('m', 'u3', 10)") == rows(
        conn, "SELECT r.item_key FROM recsys.model_version v,"
              " recsys._recommend_live(v, 'm', 'u3', 10, true) r")
    # the new item's vector comes from its a-group users
    similar = rows(conn, "SELECT item_key FROM recsys.similar_items('m', 'a-new', 3)")
    assert all(r[0].startswith("a") for r in similar)
    # nothing changed since: a second fold-in finds no one
    again = foldin.fold_in(db_url, "m")
    assert (again.status, again.users, again.new_items) == ("succeeded", 0, 0)


def test_changed_user_is_served_refreshed_rows(db_url: str, conn: psycopg.Connection) -> None:
    make_events(conn, time_column=False)
    training.train(db_url, "m")
    before = [r[0] for r in rows(conn, "SELECT item_key FROM recsys.recommend('m', 'u0', 10)")]
    assert "b0" in before
    # the version's own precomputed_k counts, not the model's params of today
    conn.execute("UPDATE recsys.model SET params = params - 'recommendations_k'")
    conn.execute("INSERT INTO public.events (usr, item, n) VALUES ('u0', 'b0', 3)")
    result = foldin.fold_in(db_url, "m")
    assert (result.status, result.users, result.new_items) == ("succeeded", 1, 0)
    assert rows(conn, "SELECT precomputed_k FROM recsys.model_version") == [(10,)]
    served = rows(conn, "SELECT item_key, rank FROM recsys.recommend('m', 'u0', 10)")
    assert "b0" not in {key for key, _ in served}  # seen now
    assert served == rows(conn, "SELECT r.item_key, r.rank FROM recsys.model_version v,"
                                " recsys._recommend_live(v, 'm', 'u0', 10, true) r")
    assert served == rows(conn, "SELECT item_key, rank FROM recsys.recommendations"
                                " WHERE user_key = 'u0' ORDER BY rank")


def test_incremental_request_and_errors(db_url: str, conn: psycopg.Connection) -> None:
    make_events(conn)
    with pytest.raises(ConfigError, match='model "m" has no trained version to fold into'):
        foldin.fold_in(db_url, "m")
    # an incremental request for an untrained model trains it in full
    conn.execute("SELECT recsys.request_refresh('m', mode => 'incremental')")
    assert run_worker_once(db_url) == 0
    assert rows(conn, "SELECT kind, status FROM recsys.runs") == [("full", "succeeded")]
    # the weighting that counts is the active version's: bm25 set on the model after the
    # version was trained with confidence changes nothing for a fold-in...
    conn.execute("UPDATE recsys.model SET params = params || '{\"weighting\": \"bm25\"}'")
    assert foldin.fold_in(db_url, "m").status == "succeeded"
    # ...and a version trained with bm25 cannot be folded into
    training.train(db_url, "m")
    with pytest.raises(ConfigError, match='incremental refresh of version 2 of model "m" does'
                                          " not support weighting bm25"):
        foldin.fold_in(db_url, "m")
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match="unknown refresh mode 'partial'"):
        conn.execute("SELECT recsys.request_refresh('m', mode => 'partial')")
    with pytest.raises(psycopg.errors.UndefinedObject, match='model "ghost" does not exist'):
        conn.execute("SELECT recsys.request_refresh('ghost')")


def test_any_full_training_records_the_watermark(db_url: str, conn: psycopg.Connection) -> None:
    make_events(conn)
    training.train(db_url, "m")  # recsys-db train, not the worker
    assert rows(conn, "SELECT version, value::timestamptz = '2024-01-01'"
                      " FROM recsys.watermark") == [(1, True)]
    conn.execute("INSERT INTO public.events VALUES ('late', 'a0', 1, '2024-03-01')")
    assert run_worker_once(db_url) == 0  # the new row is due for fold-in, no full retrain
    assert rows(conn, "SELECT kind, status FROM recsys.runs ORDER BY run_id") == [
        ("full", "succeeded"), ("incremental", "succeeded")]
    assert rows(conn, "SELECT reason FROM recsys.recommend('m', 'late', 1)") == [("als",)]


def test_fold_in_uses_the_params_of_the_version_it_folds_into(
        db_url: str, conn: psycopg.Connection) -> None:
    make_events(conn, time_column=False)
    training.train(db_url, "m")  # version 1: alpha 10, regularization 0.05
    # the model's params change after the version was trained (as tune --apply does)
    conn.execute("UPDATE recsys.model SET params = recsys._check_params(params"
                 " || '{\"alpha\": 1, \"regularization\": 5}')")
    history = [("newbie", "a0", 1.0), ("newbie", "a1", 1.0), ("newbie", "a2", 2.0),
               ("newbie", "a3", 1.0)]

    def fold(user: str) -> np.ndarray:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO public.events (usr, item, n) VALUES (%s, %s, %s)",
                            [(user, item, n) for _, item, n in history])
        calls: list[tuple[str, str]] = []

        def broken_pipe(stage: str, state: str) -> None:
            calls.append((stage, state))
            raise BrokenPipeError(32, "Broken pipe")

        # progress output that fails (a closed pipe) does not fail the fold-in
        result = foldin.fold_in(db_url, "m", progress=broken_pipe)
        assert (result.status, result.users, result.new_users) == ("succeeded", 1, 1)
        assert calls == [("load", "start")]
        users, _ = version_tables(conn)
        (stored,), = rows(conn, sql.SQL("SELECT factors FROM {} WHERE key = %s").format(
            sql.Identifier("recsys", users)), (user,))
        return np.asarray(stored.to_numpy())

    def expected(ref: Reference, user: str, params: dict[str, Any]) -> np.ndarray:
        triples = [(user, item, n) for _, item, n in history]
        matrix = sp.csr_matrix(
            ([n for _, _, n in triples], ([0] * len(triples),
                                          [ref.item_index[i] for _, i, _ in triples])),
            shape=(1, len(ref.item_keys)), dtype=np.float64)
        als = AlternatingLeastSquares(factors=4, regularization=float(params["regularization"]),
                                      alpha=1.0)
        als.item_factors = ref.item_factors
        return np.asarray(als.recalculate_user(0, weighting.apply(matrix, params)))

    folded = fold("newbie")
    ref = Reference(conn, "m")  # the active version's item factors and params
    assert (ref.params["alpha"], ref.params["regularization"]) == (10, 0.05)
    (today,), = rows(conn, "SELECT params FROM recsys.model")
    assert np.allclose(folded, expected(ref, "newbie", ref.params), atol=1e-5)
    assert not np.allclose(folded, expected(ref, "newbie", today), atol=1e-2)
    # the incremental run records the params it used: the version's
    assert rows(conn, "SELECT kind, params ->> 'alpha', params ->> 'regularization'"
                      " FROM recsys.runs ORDER BY run_id") == [
        ("full", "10", "0.05"), ("incremental", "10", "0.05")]

    # version 2 is trained with today's params; after a rollback to version 1, fold-ins
    # use version 1's params again
    assert training.train(db_url, "m").version == 2
    conn.execute("SELECT recsys.rollback('m', 1)")
    folded = fold("returning")
    ref = Reference(conn, "m")
    assert ref.params["alpha"] == 10
    assert np.allclose(folded, expected(ref, "returning", ref.params), atol=1e-5)
    assert not np.allclose(folded, expected(ref, "returning", today), atol=1e-2)


def test_new_events_are_folded_in_by_the_versions_weighting(
        db_url: str, conn: psycopg.Connection) -> None:
    """The worker queues a fold-in when the active version can take one (it weights with its
    own params), whatever the model's current weighting says."""
    make_events(conn)
    training.train(db_url, "m")
    conn.execute("UPDATE recsys.model SET params = recsys._check_params("
                 " params || '{\"weighting\": \"bm25\"}')")
    conn.execute("INSERT INTO public.events VALUES ('newbie', 'a0', 1, '2024-02-01')")
    assert rows(conn, "SELECT recsys._enqueue_due()") == [(1,)]
    assert rows(conn, "SELECT mode, reason FROM recsys.jobs") == [("incremental", "new events")]
    assert run_worker_once(db_url) == 0
    assert rows(conn, "SELECT kind, status FROM recsys.runs ORDER BY run_id") == [
        ("full", "succeeded"), ("incremental", "succeeded")]


def test_a_failed_fold_in_of_new_events_is_not_queued_again_and_again(
        db_url: str, conn: psycopg.Connection) -> None:
    """What failed a fold-in (here a negative weight) fails it again: the schedule does not
    queue the same events until another job of the model finishes, so `worker --once` exits."""
    make_events(conn)
    training.train(db_url, "m")
    conn.execute("INSERT INTO public.events VALUES ('newbie', 'a0', -1, '2024-02-01')")
    assert rows(conn, "SELECT recsys._enqueue_due()") == [(1,)]
    assert run_worker_once(db_url) == 1
    assert rows(conn, "SELECT reason, status FROM recsys.jobs") == [("new events", "failed")]
    assert rows(conn, "SELECT recsys._enqueue_due()") == [(0,)]
    conn.execute("UPDATE public.events SET n = 1 WHERE usr = 'newbie'")
    conn.execute("SELECT recsys.request_refresh('m', 'incremental')")
    assert run_worker_once(db_url) == 0
    conn.execute("INSERT INTO public.events VALUES ('newbie', 'a1', 1, '2024-02-02')")
    assert rows(conn, "SELECT recsys._enqueue_due()") == [(1,)]
