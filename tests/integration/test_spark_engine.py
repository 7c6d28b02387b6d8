"""The Spark engine (``recsys.als(engine => 'spark')``) in local mode: the same run lifecycle
as the implicit engine, a MovieLens model serving through every SQL function, holdout metrics
close to implicit's on the same split, and failures that leave the active version serving."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from recsys_db import datasets, foldin, spark_als, training
from recsys_db.errors import ConfigError, EngineError

from ..helpers import rows

PARAMS = "factors => 32, iterations => 10, regularization => 0.05, eval_split => 'random'"
# Spark's ALS scales regularization by each user's and item's interaction count (ALS-WR) and
# starts from other random factors: its holdout metrics may differ from implicit's by this
# much, relative (measured on this split: Spark 4 to 11% higher on each)
TOLERANCE = 0.2
SMALL = "recsys.als(factors => 4, iterations => 3, eval_split => 'off')"


@pytest.fixture(autouse=True)
def local_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(spark_als.ENV_MASTER, "local[2]")
    monkeypatch.setenv(spark_als.ENV_CONF, "spark.driver.memory=1g")


def metrics(conn: psycopg.Connection, model: str) -> dict[str, float]:
    return dict(rows(conn, "SELECT metric, value FROM recsys.metrics WHERE model = %s"
                           " AND recommender = 'als'", (model,)))


def test_spark_model_serves_and_measures_like_implicit(
        db_url: str, conn: psycopg.Connection, movielens_data: datasets.MovieLens) -> None:
    datasets.write_movielens(conn, movielens_data)
    for name, engine in (("imp", "implicit"), ("spk", "spark")):
        conn.execute("SELECT recsys.create_model(%s, 'movielens.liked', 'user_id', 'item_id',"
                     f" params => recsys.als({PARAMS}, engine => %s))", (name, engine))
        assert training.train(db_url, name).status == "succeeded"
    assert rows(conn, "SELECT model, params ->> 'engine', status FROM recsys.runs"
                      " ORDER BY run_id") == [("imp", "implicit", "succeeded"),
                                              ("spk", "spark", "succeeded")]
    imp, spk = metrics(conn, "imp"), metrics(conn, "spk")
    for name in ("precision", "recall", "map", "ndcg", "auc"):
        assert abs(spk[name] - imp[name]) <= TOLERANCE * imp[name], (name, imp[name], spk[name])
    popular = dict(rows(conn, "SELECT metric, value FROM recsys.metrics WHERE model = 'spk'"
                              " AND recommender = 'popular'"))
    assert spk["ndcg"] > popular["ndcg"]

    # the stored vectors are Spark's factors, served by every function
    user, item = "1", "50"
    recommended = rows(conn, "SELECT * FROM recsys.recommend('spk', %s, 10)", (user,))
    assert [r[2] for r in recommended] == list(range(1, 11))
    assert {r[3] for r in recommended} == {"als"}
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(recommended))
    (score,), = rows(conn, "SELECT recsys.score('spk', %s, %s)", (user, recommended[0][0]))
    assert score == pytest.approx(recommended[0][1], rel=1e-5)
    seen = {r[0] for r in rows(conn, "SELECT item_id::text FROM movielens.liked"
                                     " WHERE user_id::text = %s", (user,))}
    assert not seen & {r[0] for r in recommended}
    for query, args in (
            ("SELECT * FROM recsys.similar_items('spk', %s, 5)", (item,)),
            ("SELECT * FROM recsys.similar_items('spk', %s, 5, 0.0)", (item,)),
            ("SELECT * FROM recsys.similar_users('spk', %s, 5)", (user,)),
            ("SELECT * FROM recsys.interested_users('spk', %s, 5)", (item,)),
            ("SELECT * FROM recsys.popular('spk', 5)", ()),
            ("SELECT * FROM recsys.recommend_for_items('spk', %s::text[], 5)", (["50", "98"],)),
            ("SELECT * FROM recsys.explain('spk', %s, %s, 5)", (user, recommended[0][0]))):
        found = rows(conn, query, args)
        assert len(found) == 5, query
        assert [r[2] for r in found] == [1, 2, 3, 4, 5], query
    candidates = [r[0] for r in recommended[3:8]]
    filtered = rows(conn, "SELECT * FROM recsys.recommend_filtered('spk', %s, %s::text[], 3)",
                    (user, candidates))
    # the three best candidates: by score, so that a near-tie ordered differently by the
    # precomputed (numpy) and the live (pgvector) scores cannot fail the test
    assert {r[0] for r in filtered} <= set(candidates) and [r[2] for r in filtered] == [1, 2, 3]
    assert [r[1] for r in filtered] == pytest.approx([r[1] for r in recommended[3:6]], rel=1e-5)

    # implicit's fold-in serves users added between trainings of a Spark-trained version
    conn.execute("INSERT INTO movielens.ratings SELECT 99999, item_id, rating, rated_at"
                 " FROM movielens.ratings WHERE user_id = 1")
    assert foldin.fold_in(db_url, "spk").status == "succeeded"
    assert len(rows(conn, "SELECT * FROM recsys.recommend('spk', '99999', 5)")) == 5


def test_confidences_map_to_sparks_ratings() -> None:
    import scipy.sparse as sp

    from recsys_db import weighting

    counts = sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]]))
    params = {"weighting": "confidence", "alpha": 2.0, "bm25_k1": 100.0, "bm25_b": 0.8}
    users, items, values, shift = spark_als.ratings(weighting.apply(counts, params),
                                                    "confidence")
    # implicit's C = 1 + 2r; Spark's 1 + r' with r' = C - 1: the same confidence
    assert shift == 1.0 and users.tolist() == [0, 0, 1] and items.tolist() == [0, 2, 1]
    assert values.tolist() == [2.0, 6.0, 4.0]
    # a confidence that rounded to 1 keeps a positive rating (Spark drops r = 0)
    rounded = sp.csr_matrix(np.array([[1.0, 2.0]], dtype=np.float32))
    assert spark_als.ratings(rounded, "log")[2].tolist()[0] > 0
    # without a shift, Spark gets C itself, whatever the data
    for scheme in ("none", "bm25", "tfidf"):
        assert spark_als.ratings(counts, scheme)[3] == 0.0
        assert spark_als.ratings(counts, scheme)[2].tolist() == [1.0, 3.0, 2.0]


def test_a_staging_folder_is_used_and_left_empty(
        db_url: str, conn: psycopg.Connection, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    staging = tmp_path / "shared"
    staging.mkdir()
    monkeypatch.setenv(spark_als.ENV_STAGING, str(staging))
    conn.execute("CREATE TABLE public.ev AS SELECT 'u' || (g % 40) AS u,"
                 " 'i' || (g * 7 % 25) AS i FROM generate_series(1, 400) g")
    conn.execute("SELECT recsys.create_model('s', 'public.ev', 'u', 'i', params =>"
                 " recsys.als(factors => 4, iterations => 3, engine => 'spark'))")
    assert training.train(db_url, "s").status == "succeeded"
    assert list(staging.iterdir()) == []
    assert len(rows(conn, "SELECT * FROM recsys.recommend('s', 'u1', 5)")) == 5
    monkeypatch.setenv(spark_als.ENV_STAGING, str(tmp_path / "missing" / "deeper"))
    (tmp_path / "missing").write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=r"^RECSYS_SPARK_STAGING .*/missing/deeper cannot "
                                          r"be used: "):
        training.train(db_url, "s")
    assert rows(conn, "SELECT active_version FROM recsys.models") == [(1,)]


def _train_failing(db_url: str, conn: psycopg.Connection, error: type[Exception],
                   message: str) -> None:
    """Train model 'f' (implicit, active version 1) once more with the Spark engine and
    expect ``message``; the run is recorded failed and version 1 keeps serving."""
    served = rows(conn, "SELECT * FROM recsys.recommend('f', 'u1', 3)")
    with pytest.raises(error) as raised:
        training.train(db_url, "f")
    assert str(raised.value) == message
    assert rows(conn, "SELECT status, error FROM recsys.runs ORDER BY run_id DESC LIMIT 1"
                ) == [("failed", message)]
    assert rows(conn, "SELECT active_version FROM recsys.models") == [(1,)]
    assert rows(conn, "SELECT * FROM recsys.recommend('f', 'u1', 3)") == served


@pytest.fixture
def trained_then_spark(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.ev AS SELECT 'u' || (g % 12) AS u,"
                 " 'i' || (g * 7 % 9) AS i FROM generate_series(1, 60) g")
    conn.execute(f"SELECT recsys.create_model('f', 'public.ev', 'u', 'i', params => {SMALL})")
    training.train(db_url, "f")
    conn.execute("SELECT recsys.alter_model('f', params => '{\"engine\": \"spark\"}')")


def test_unknown_engine_is_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match=r'^unknown engine "flink"\n') as raised:
        conn.execute("SELECT recsys.als(engine => 'flink')")
    assert raised.value.diag.message_hint == (
        "use one of: implicit (this process), spark (pyspark.ml ALS, recsys-db[spark])")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"^unknown engine 3\n"):
        conn.execute("SELECT recsys._check_params('{\"engine\": 3}')")
    # a hostile name is data: refused as an unknown engine, nothing runs
    hostile = "spark'); DROP TABLE recsys.model; --"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"^unknown engine "):
        conn.execute("SELECT recsys.als(engine => %s)", (hostile,))
    assert rows(conn, "SELECT to_regclass('recsys.model') IS NOT NULL") == [(True,)]


@pytest.mark.usefixtures("trained_then_spark")
def test_spark_missing(db_url: str, conn: psycopg.Connection,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    spark_als.stop()
    monkeypatch.setitem(sys.modules, "pyspark.ml.recommendation", None)
    _train_failing(db_url, conn, ConfigError,
                   'engine spark needs pyspark: pip install "recsys-db[spark]"')


@pytest.mark.usefixtures("trained_then_spark")
def test_java_missing_or_too_old(db_url: str, conn: psycopg.Connection, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nojava"))
    _train_failing(db_url, conn, ConfigError,
                   f"engine spark needs java 17 or newer, and there is no java on "
                   f"JAVA_HOME={tmp_path / 'nojava'}: install one "
                   "(apt install openjdk-17-jre-headless) or set JAVA_HOME")
    old = tmp_path / "jdk11" / "bin" / "java"
    old.parent.mkdir(parents=True)
    old.write_text('#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    old.chmod(old.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("JAVA_HOME", str(old.parent.parent))
    _train_failing(db_url, conn, ConfigError,
                   f"engine spark needs java 17 or newer, but {old} is java 11: "
                   "install java 17 or 21 and set JAVA_HOME")


def test_java_versions_are_read() -> None:
    assert spark_als.java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert spark_als.java_major('java version "1.8.0_402"') == 8
    assert spark_als.java_major('openjdk version "21" 2023-09-19') == 21
    assert spark_als.java_major("no version here") is None


@pytest.mark.usefixtures("trained_then_spark")
def test_master_unreachable_or_unknown(db_url: str, conn: psycopg.Connection, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(spark_als.ENV_MASTER, f"spark://127.0.0.1:{port}")
    _train_failing(db_url, conn, ConfigError,
                   f"spark master spark://127.0.0.1:{port} needs RECSYS_SPARK_STAGING: a folder "
                   "that this process and every executor reach (hdfs://... or a shared mount)")
    monkeypatch.setenv(spark_als.ENV_STAGING, str(tmp_path))
    _train_failing(db_url, conn, EngineError,
                   f"spark master spark://127.0.0.1:{port} is unreachable "
                   f"(127.0.0.1:{port}: Connection refused)")
    monkeypatch.setenv(spark_als.ENV_MASTER, "mesos://zk:2181")
    _train_failing(db_url, conn, ConfigError,
                   'unknown spark master "mesos://zk:2181": use local[N], local[*], '
                   "spark://host:port, yarn or k8s://...")
    monkeypatch.setenv(spark_als.ENV_MASTER, "local[2]")
    monkeypatch.setenv(spark_als.ENV_CONF, "spark.driver.memory")
    _train_failing(db_url, conn, ConfigError,
                   'RECSYS_SPARK_CONF entry "spark.driver.memory" is not key=value')


@pytest.mark.usefixtures("trained_then_spark")
def test_an_executor_error_fails_the_run(db_url: str, conn: psycopg.Connection,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = spark_als.ratings

    def beyond_int_range(matrix: Any, scheme: str
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        users, items, values, shift = real(matrix, scheme)
        return users.astype(np.int64) + 2**31, items, values, shift

    monkeypatch.setattr(spark_als, "ratings", beyond_int_range)
    with pytest.raises(EngineError,
                       match=r"^spark als failed: \[CAST_OVERFLOW\] The value 2147483"):
        training.train(db_url, "f")
    (status, error), = rows(conn, "SELECT status, error FROM recsys.runs"
                                  " ORDER BY run_id DESC LIMIT 1")
    assert status == "failed" and error.startswith("spark als failed: ")
    assert rows(conn, "SELECT active_version FROM recsys.models") == [(1,)]
    # the fit comes before a version is allocated: nothing to discard
    assert rows(conn, "SELECT version, status FROM recsys.versions") == [(1, "ready")]
    assert len(rows(conn, "SELECT * FROM recsys.recommend('f', 'u1', 3)")) == 3


def test_spark_leaves_the_sigint_handler_to_its_host() -> None:
    # pyspark sets a SIGINT handler of its own when a context starts; the worker's must stay
    def host(_signum: int, _frame: object) -> None:
        raise AssertionError("not called")

    spark_als.stop()
    previous = signal.signal(signal.SIGINT, host)
    try:
        spark_als.session(spark_als.Settings.from_env())
        assert signal.getsignal(signal.SIGINT) is host
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("trained_then_spark")
def test_the_worker_trains_with_spark(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("SELECT recsys.request_refresh('f')")
    done = subprocess.run(
        [sys.executable, "-m", "recsys_db.cli", "--database-url", db_url, "--json", "worker",
         "--once"], capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, spark_als.ENV_MASTER: "local[2]"})
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events if e["event"] in ("claimed", "succeeded")] == [
        "claimed", "succeeded"]
    assert rows(conn, "SELECT version, params ->> 'engine', status FROM recsys.runs"
                      " ORDER BY run_id") == [(1, "implicit", "succeeded"),
                                              (2, "spark", "succeeded")]
    assert rows(conn, "SELECT active_version FROM recsys.models") == [(2,)]


def test_a_modeler_picks_the_engine_but_not_where_it_runs(
        db_url: str, conn: psycopg.Connection, make_login: Callable[..., str]) -> None:
    """Attack: the Spark master, its configuration and the staging folder come from the
    worker's environment only; a modeler's params cannot point the worker at a master (or a
    JVM option) of its choosing."""
    modeler = make_login("recsys_modeler")
    conn.execute("CREATE TABLE public.ev AS SELECT 'u' || (g % 12) AS u,"
                 " 'i' || (g * 7 % 9) AS i FROM generate_series(1, 60) g")
    conn.execute(f"GRANT SELECT ON public.ev TO {modeler}")
    with psycopg.connect(make_conninfo(db_url, user=modeler), autocommit=True) as mine:
        mine.execute("SELECT recsys.create_model('mine', 'public.ev', 'u', 'i',"
                     " params => recsys.als(engine => 'spark'))")
        for key, value in (("spark_master", "spark://attacker:7077"),
                           ("spark_conf", "spark.driver.extraJavaOptions=-Dx=y"),
                           ("staging", "/tmp")):
            with pytest.raises(psycopg.errors.InvalidParameterValue,
                               match=rf'^unknown parameter "{key}"\n'):
                mine.execute("SELECT recsys.alter_model('mine', params => %s::jsonb)",
                             (json.dumps({key: value}),))
    assert rows(conn, "SELECT params ->> 'engine', params ? 'spark_master' FROM recsys.model"
                ) == [("spark", False)]
