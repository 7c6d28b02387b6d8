"""Faults during training: cancelled queries, statement timeouts, killed processes, restarts,
and readers during swaps. Afterwards the active version is intact and the next run succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from recsys_db import db, training

from ..helpers import rows

USERS = 60


def make_model(conn: psycopg.Connection, *, slow_seconds: float = 0.0, keep: int = 3) -> None:
    conn.execute(f"CREATE TABLE public.ev AS SELECT 'u' || (g % {USERS}) AS u,"
                 " 'i' || ((g * 7919) % 97) AS i FROM generate_series(1, 3000) g")
    # every scan of this view sleeps once: a long-running query to interrupt
    conn.execute("CREATE TABLE public.delay (seconds double precision)")
    conn.execute("INSERT INTO public.delay VALUES (%s)", (slow_seconds,))
    conn.execute("CREATE VIEW public.ev_slow AS SELECT e.* FROM public.ev e"
                 " CROSS JOIN (SELECT pg_sleep(seconds) FROM public.delay) pause")
    conn.execute("SELECT recsys.create_model('m', 'public.ev_slow', 'u', 'i',"
                 f" params => recsys.als(factors => 8, iterations => 3, keep_versions => {keep}))")


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def trainer_pid(conn: psycopg.Connection) -> int | None:
    found = rows(conn, "SELECT pid FROM pg_stat_activity WHERE application_name = 'recsys-db'"
                       " AND state = 'active' AND wait_event = 'PgSleep'"
                       " AND pid <> pg_backend_pid()")
    return found[0][0] if found else None


def served(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return rows(conn, "SELECT item_key, rank FROM recsys.recommend('m', 'u1', 5)")


def first_version(db_url: str, conn: psycopg.Connection) -> list[tuple[object, ...]]:
    make_model(conn)
    training.train(db_url, "m")
    conn.execute("UPDATE public.delay SET seconds = 30")
    return served(conn)


def train_in_thread(db_url: str) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            training.train(db_url, "m")
        except BaseException as exc:  # collected for the assertions
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_cancelled_backend_fails_the_run_only(db_url: str, conn: psycopg.Connection) -> None:
    before = first_version(db_url, conn)
    thread, errors = train_in_thread(db_url)
    wait_for(lambda: trainer_pid(conn) is not None)
    conn.execute("SELECT pg_cancel_backend(%s)", (trainer_pid(conn),))
    thread.join(30)
    assert isinstance(errors[0], psycopg.errors.QueryCanceled)
    assert rows(conn, "SELECT status, error FROM recsys.runs ORDER BY run_id DESC LIMIT 1") == [
        ("failed", "canceling statement due to user request")]
    assert served(conn) == before
    conn.execute("UPDATE public.delay SET seconds = 0")
    assert training.train(db_url, "m").version == 2


def test_statement_timeout_is_a_failed_run(db_url: str, conn: psycopg.Connection) -> None:
    before = first_version(db_url, conn)
    dbname = conn.info.dbname
    conn.execute(sql.SQL("ALTER DATABASE {} SET statement_timeout = '300ms'").format(
        sql.Identifier(dbname)))
    with pytest.raises(psycopg.errors.QueryCanceled):
        training.train(db_url, "m")
    (error,), = rows(conn, "SELECT error FROM recsys.runs WHERE status = 'failed'")
    assert error == "canceling statement due to statement timeout"
    assert served(conn) == before
    conn.execute(sql.SQL("ALTER DATABASE {} RESET statement_timeout").format(
        sql.Identifier(dbname)))
    conn.execute("UPDATE public.delay SET seconds = 0")
    assert training.train(db_url, "m").status == "succeeded"


def test_kill_9_mid_training(db_url: str, conn: psycopg.Connection) -> None:
    before = first_version(db_url, conn)
    proc = subprocess.Popen([sys.executable, "-m", "recsys_db.cli", "--database-url", db_url,
                             "-q", "train", "m"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for(lambda: trainer_pid(conn) is not None)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    wait_for(lambda: trainer_pid(conn) is None)  # the server ends the orphaned backend
    assert served(conn) == before
    conn.execute("UPDATE public.delay SET seconds = 0")
    result = training.train(db_url, "m")
    assert (result.status, result.version) == ("succeeded", 2)
    assert len(served(conn)) == 5
    # the killed process's run was left 'running'; the next training marks it failed
    assert rows(conn, "SELECT status, error LIKE 'abandoned: worker %' FROM recsys.runs"
                      " ORDER BY run_id") == [("succeeded", None), ("failed", True),
                                              ("succeeded", None)]


def test_server_restart_mid_training(db_url: str, conn: psycopg.Connection,
                                     restart_server: Callable[[], object]) -> None:
    before = first_version(db_url, conn)
    thread, errors = train_in_thread(db_url)
    wait_for(lambda: trainer_pid(conn) is not None)
    restart_server()
    thread.join(60)
    assert isinstance(errors[0], psycopg.OperationalError)
    with db.connect(db_url) as fresh:
        assert served(fresh) == before
        assert rows(fresh, "SELECT status FROM recsys.runs ORDER BY run_id") == [
            ("succeeded",), ("failed",)]
        fresh.execute("UPDATE public.delay SET seconds = 0")
    assert training.train(db_url, "m").status == "succeeded"


def test_drop_model_while_training(db_url: str, conn: psycopg.Connection) -> None:
    first_version(db_url, conn)
    conn.execute("UPDATE public.delay SET seconds = 1")
    thread, errors = train_in_thread(db_url)
    wait_for(lambda: trainer_pid(conn) is not None)
    conn.execute("SELECT recsys.drop_model('m')")
    thread.join(60)
    assert rows(conn, "SELECT count(*) FROM recsys.model") == [(0,)]
    assert rows(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'recsys'"
                      " AND tablename ~ '^m[0-9]+_v'") == [(0,)]
    assert errors, "training a model that was dropped meanwhile must fail"


def test_readers_see_no_errors_during_swaps(db_url: str, conn: psycopg.Connection) -> None:
    make_model(conn, keep=2)
    training.train(db_url, "m")
    stop = threading.Event()
    problems: list[str] = []
    counts = {"queries": 0}

    def reader(user: str) -> None:
        with db.connect(db_url) as mine:
            while not stop.is_set():
                try:
                    got = rows(mine, "SELECT count(*) FROM recsys.recommend('m', %s, 10)",
                               (user,))[0][0]
                    similar = rows(mine, "SELECT count(*) FROM recsys.similar_items('m', 'i3',"
                                         " 10)")[0][0]
                except psycopg.Error as exc:
                    problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                counts["queries"] += 2
                if got != 10 or similar != 10:
                    problems.append(f"short result: {got}, {similar}")

    threads = [threading.Thread(target=reader, args=(f"u{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(10):
            training.train(db_url, "m")
        conn.execute("SELECT recsys.rollback('m', 10)")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert problems == []
    assert counts["queries"] > 100
    assert rows(conn, "SELECT active_version FROM recsys.models") == [(10,)]


def test_retention_waits_for_transactions_that_may_read_a_version(
        db_url: str, conn: psycopg.Connection) -> None:
    make_model(conn, keep=1)
    training.train(db_url, "m")
    with db.connect(db_url, autocommit=False) as reader:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        before = served(reader)  # this snapshot sees version 1 as the active one
        training.train(db_url, "m")
        assert rows(conn, "SELECT version, status FROM recsys.versions ORDER BY version") == [
            (1, "ready"), (2, "ready")]  # keep_versions 1, but a reader may still need v1
        assert served(reader) == before
        reader.commit()
    training.train(db_url, "m")
    assert rows(conn, "SELECT version, status FROM recsys.versions ORDER BY version") == [
        (1, "dropped"), (2, "dropped"), (3, "ready")]


def test_retention_does_not_wait_for_a_reader_holding_an_old_version(
        db_url: str, conn: psycopg.Connection) -> None:
    make_model(conn, keep=2)
    training.train(db_url, "m")
    (old_items,), = rows(conn, "SELECT item_table FROM recsys.model_version")
    training.train(db_url, "m")  # version 1 retired, kept for rollback
    with db.connect(db_url, autocommit=False) as reader:
        # a reader inside the retired version's table (say, a report reading it directly)
        reader.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier("recsys", old_items)))
        started = time.monotonic()
        training.train(db_url, "m")  # version 1 is now beyond retention, but locked
        assert time.monotonic() - started < 20
        assert rows(conn, "SELECT version, status FROM recsys.versions ORDER BY version") == [
            (1, "ready"), (2, "ready"), (3, "ready")]
    training.train(db_url, "m")
    assert rows(conn, "SELECT version, status FROM recsys.versions ORDER BY version") == [
        (1, "dropped"), (2, "dropped"), (3, "ready"), (4, "ready")]


def test_dropping_stale_precomputed_rows_never_queues_recommend(
        db_url: str, conn: psycopg.Connection) -> None:
    """recommend reads the partitioned parent of the precomputed rows, and dropping a partition
    locks that parent exclusively: the drop must give up rather than wait on a reader (and make
    every recommend call queue behind it)."""
    make_model(conn, keep=2)
    training.train(db_url, "m")
    training.train(db_url, "m")  # version 1 retired before the reader below starts
    with db.connect(db_url, autocommit=False) as reader:
        assert served(reader)  # from version 2's precomputed rows; the reader stays open
        done = threading.Event()

        def train() -> None:
            training.train(db_url, "m")
            done.set()

        worker = threading.Thread(target=train)
        worker.start()
        worker.join(timeout=60)
        finished = done.is_set()
        reader.rollback()  # lets a stuck drop through, so that the test ends either way
        worker.join()
        assert finished
    partitions = [r[0] for r in rows(conn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c"
                                           " ON c.oid = i.inhrelid ORDER BY 1")]
    assert partitions == ["m1_v1_recs", "m1_v2_recs", "m1_v3_recs"]  # v1's waits for pruning
    assert rows(conn, "SELECT version, status FROM recsys.versions ORDER BY version") == [
        (1, "dropped"), (2, "ready"), (3, "ready")]
    training.train(db_url, "m")
    assert [r[0] for r in rows(conn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c"
                                     " ON c.oid = i.inhrelid ORDER BY 1")] == [
        "m1_v3_recs", "m1_v4_recs"]
