"""A hot standby: a streaming replica of a primary (pg_basebackup -R) on loopback serves every
recsys function with the primary's rows, follows new versions as they replay, and is refused
for training, the worker and install with an error that names the primary.

The suite's own server may listen on a unix socket only, so this module starts a primary of
the suite's build (RECSYS_TEST_SERVER or the embedded server's) and its standby: initdb's
defaults (wal_level replica, max_wal_senders 10, hot_standby on, replication trusted from
loopback) are what a standby needs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import recsys_db
from recsys_db import cli, db, foldin, install, training, tuning
from recsys_db.errors import RecsysError

from .. import servers
from ..helpers import rows
from ..helpers_foldin import create_events
from .test_worker import Proc, procs

__all__ = ["procs"]  # the fixture, used by name

MODEL = "shop"
READER = "shop_bi"
OPS = "shop_ops"  # a superuser login whose sessions a test makes read-only
STANDBY_ERROR = ("database is a read-only standby: train on the primary "
                 "(serving works on a standby)")
REPLAY_TIMEOUT = 30.0  # seconds; replay of a small training takes well under one

# Every serving function (both similar_items overloads), on each of its paths: precomputed
# rows (k <= 10 recommendations, k <= 5 similar items), live search, unknown user (popular),
# content blend, fold-in (recommend_for_items, explain).
SERVING_CALLS = [
    "SELECT * FROM recsys.recommend('shop', '1', 5)",
    "SELECT * FROM recsys.recommend('shop', '1', 25)",
    "SELECT * FROM recsys.recommend('shop', '2', 5, exclude_seen => false)",
    "SELECT * FROM recsys.recommend('shop', 'nobody', 5)",
    "SELECT * FROM recsys.similar_items('shop', 'item-3', 5)",
    "SELECT * FROM recsys.similar_items('shop', 'item-3', 12)",
    "SELECT * FROM recsys.similar_items('shop', 'item-3', 6, 0.5)",
    "SELECT * FROM recsys.similar_users('shop', '4', 6)",
    "SELECT * FROM recsys.interested_users('shop', 'item-7', 6)",
    "SELECT * FROM recsys.popular('shop', 6)",
    "SELECT recsys.score('shop', '1', 'item-2')",
    "SELECT * FROM recsys.recommend_for_items('shop', ARRAY['item-1', 'item-2', 'item-9'], 6)",
    "SELECT * FROM recsys.recommend_filtered('shop', '1',"
    " ARRAY['item-4', 'item-5', 'item-6', 'item-8', 'item-20'], 3)",
    "SELECT * FROM recsys.explain('shop', '3', 'item-2', 5)",
    "SELECT name, active_version FROM recsys.models",
]


def create_shop(conn: psycopg.Connection) -> None:
    """Events (tests/helpers_foldin.py), items with a department, and model shop over them:
    precomputed recommendations and similar items, an hnsw index, item features."""
    create_events(conn)
    conn.execute("CREATE TABLE public.items AS SELECT 'item-' || i AS item_id,"
                 " 'dept-' || (i % 4) AS dept FROM generate_series(1, 30) i")
    conn.execute("SELECT recsys.create_model('shop', 'public.events', 'user_id', 'item_id',"
                 " params => recsys.als(factors => 8, iterations => 5, index => 'hnsw',"
                 " recommendations_k => 10, similar_items_k => 5))")
    conn.execute("SELECT recsys.set_features('shop', 'item', 'public.items', 'item_id',"
                 " ARRAY['dept'])")


class Standby(servers.Cluster):
    """A hot standby of ``primary``: a base backup of it (``pg_basebackup -R``: standby.signal
    and primary_conninfo written), started on its own loopback port, streaming from it."""

    def __init__(self, primary: servers.Cluster) -> None:
        super().__init__(primary.bindir, passwords=False)
        self.primary = primary

    def start(self) -> str:
        """Take the base backup on first start, then start the server in recovery."""
        if not (self.data / "PG_VERSION").exists():
            if self._user is not None:  # the server user writes the backup (as root)
                self.root.chmod(0o755)
                os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
            self._run("pg_basebackup", "-d", self.primary.url(), "-D", str(self.data), "-R",
                      "-X", "stream", "-c", "fast")
        return super().start()


@dataclass(frozen=True)
class Pair:
    """A primary with database ``shop`` (recsys installed, events loaded, model declared) and
    its standby."""

    primary: servers.Cluster
    standby: Standby

    def url(self, server: servers.Cluster, user: str = "postgres") -> str:
        """URL of database shop on ``server`` for ``user``."""
        return server.url(user, dbname="shop")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    primary = servers.Cluster(servers.bin_dir(), passwords=False)
    standby = Standby(primary)
    try:
        primary.start()
        with psycopg.connect(primary.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE shop")
        url = primary.url(dbname="shop")
        install.install(url)
        with db.connect(url) as conn:
            create_shop(conn)
            # a BI login: serves through recsys_reader, reads the source for explain
            conn.execute(f"CREATE ROLE {READER} LOGIN IN ROLE recsys_reader")
            conn.execute(f"GRANT SELECT ON public.events TO {READER}")
            conn.execute(f"CREATE ROLE {OPS} LOGIN SUPERUSER")
        standby.start()
        yield Pair(primary, standby)
    finally:
        standby.stop()
        primary.stop()


def wait_for_replay(primary: psycopg.Connection, standby: psycopg.Connection,
                    timeout: float = REPLAY_TIMEOUT) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    (lsn,), = rows(primary, "SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + timeout
    while not rows(standby, "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s) >= 0",
                   (lsn,))[0][0]:
        if time.monotonic() > deadline:
            raise AssertionError(f"the standby did not replay up to {lsn} in {timeout:g}s")
        time.sleep(0.05)


def wait_until(done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``done`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def served(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every serving call's rows."""
    return {call: rows(conn, call) for call in SERVING_CALLS}


def counts(conn: psycopg.Connection) -> tuple[Any, ...]:
    """Active version, runs, workers, jobs: what a refused training or worker must not change."""
    return rows(conn, "SELECT (SELECT active_version FROM recsys.model WHERE name = 'shop'),"
                      " (SELECT count(*) FROM recsys.run), (SELECT count(*) FROM recsys.worker),"
                      " (SELECT count(*) FROM recsys.job)")[0]


def test_standby_serves_what_the_primary_serves_and_follows_new_versions(
        pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    training.train(pair.url(pair.primary), MODEL)
    with psycopg.connect(pair.url(pair.primary, READER), autocommit=True) as primary, \
            psycopg.connect(pair.url(pair.standby, READER), autocommit=True) as standby:
        wait_for_replay(primary, standby)
        assert rows(standby, "SELECT pg_is_in_recovery(),"
                             " current_setting('transaction_read_only')") == [(True, "on")]
        first = served(primary)
        assert all(first.values()), {call: got for call, got in first.items() if not got}
        assert first["SELECT name, active_version FROM recsys.models"] == [(MODEL, 1)]
        # the live searches below go through the version's hnsw graph
        assert rows(standby, "SELECT index_kind FROM recsys.versions") == [("hnsw",)]
        assert served(standby) == first

        # new events for user 1, then a new version trained on the primary
        with db.connect(pair.url(pair.primary)) as owner:
            owner.execute("INSERT INTO public.events SELECT 1, 'item-' || i, 3.0, 'buy'"
                          " FROM generate_series(21, 30) i")
        training.train(pair.url(pair.primary), MODEL)
        wait_for_replay(primary, standby)
        second = served(primary)
        assert second["SELECT name, active_version FROM recsys.models"] == [(MODEL, 2)]
        assert second["SELECT * FROM recsys.recommend('shop', '1', 5)"] != first[
            "SELECT * FROM recsys.recommend('shop', '1', 5)"]
        assert served(standby) == second

    # the command line's and the Python API's reads work on the standby too
    url = pair.url(pair.standby, READER)
    with recsys_db.connect(url) as api:
        assert [(r["item_key"], r["rank"]) for r in api.recommend(MODEL, 1, 5)] == [
            (key, rank) for key, _, rank, _ in second[SERVING_CALLS[0]]]
        assert api.models()[0]["active_version"] == 2
    capsys.readouterr()
    for command in (["recommend", MODEL, "1", "-k", "5"], ["models"], ["runs"], ["status"]):
        assert cli.main(["--database-url", url, "--json", *command]) == 0, capsys.readouterr()
    assert capsys.readouterr().err == ""


def test_standby_refuses_training_fold_in_tuning_worker_and_install(
        pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    with db.connect(pair.url(pair.primary)) as primary, \
            db.connect(pair.url(pair.standby)) as standby:
        if rows(primary, "SELECT active_version FROM recsys.model")[0][0] is None:
            training.train(pair.url(pair.primary), MODEL)  # this test run alone
        wait_for_replay(primary, standby)
        before = counts(primary)
        url = pair.url(pair.standby)

        for attempt in (lambda: training.train(url, MODEL),
                        lambda: foldin.fold_in(url, MODEL),
                        lambda: tuning.tune(url, MODEL, {"factors": [4]})):
            with pytest.raises(RecsysError) as refused:
                attempt()
            assert str(refused.value) == STANDBY_ERROR
        assert cli.main(["--database-url", url, "train", MODEL]) == 1
        assert capsys.readouterr().err.splitlines()[-1] == f"error: {STANDBY_ERROR}"
        # the worker is refused before it registers (no recsys.worker row could be written)
        assert cli.main(["--database-url", url, "worker", "--once"]) == 1
        assert capsys.readouterr().err.strip() == f"error: {STANDBY_ERROR}"
        with pytest.raises(RecsysError) as refused:
            install.install(url)
        assert str(refused.value) == ("database is a read-only standby: install on the primary "
                                      "(serving works on a standby)")

        wait_for_replay(primary, standby)
        assert counts(primary) == counts(standby) == before


def test_read_only_sessions_are_refused_on_the_primary(
        pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    # a login or database with default_transaction_read_only on: no standby, but no writes
    url = make_conninfo(pair.url(pair.primary), options="-c default_transaction_read_only=on")
    message = ("database session is read-only (default_transaction_read_only is on): train "
               "with a session that may write")
    with db.connect(pair.url(pair.primary)) as primary:
        before = counts(primary)
        with pytest.raises(RecsysError) as refused:
            training.train(url, MODEL)
        assert str(refused.value) == message
        assert cli.main(["--database-url", url, "worker", "--once"]) == 1
        assert capsys.readouterr().err.strip() == f"error: {message}"
        assert counts(primary) == before


def test_worker_waits_out_a_read_only_server_after_a_disconnect(
        pair: Pair, procs: list[Proc], tmp_path: Path) -> None:
    """A failover may hand a reconnecting worker a server still read-only (a standby being
    promoted): it retries as if the server were away, and gives up with the read-only error
    after --reconnect-timeout. A login whose new sessions are read-only plays that server."""
    message = ("database session is read-only (default_transaction_read_only is on): train "
               "with a session that may write")
    url = pair.url(pair.primary, OPS)

    def cut_off(admin: psycopg.Connection, proc: Proc) -> None:
        wait_until(lambda: "started" in [e["event"] for e in proc.events()], "the worker")
        admin.execute(f"ALTER ROLE {OPS} SET default_transaction_read_only = on")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE usename = %s", (OPS,))

    with db.connect(pair.url(pair.primary)) as admin:
        try:
            # read-only for a while, then writable: the worker carries on
            procs.append(Proc(url, tmp_path / "back.jsonl", "-v", "--reconnect-timeout", "60"))
            back = procs[-1]
            cut_off(admin, back)
            wait_until(lambda: f"reached a read-only server: {message}"
                       in back.out.read_text(), "a read-only reconnect attempt")
            admin.execute(f"ALTER ROLE {OPS} RESET default_transaction_read_only")
            wait_until(lambda: "reconnected" in [e["event"] for e in back.events()],
                       "the reconnect")
            assert back.stop() == 0

            # read-only for longer than --reconnect-timeout: exit 1 with the error
            procs.append(Proc(url, tmp_path / "gone.jsonl", "--reconnect-timeout", "1"))
            gone = procs[-1]
            cut_off(admin, gone)
            assert gone.popen.wait(timeout=30) == 1
            assert gone.out.read_text().splitlines()[-1] == f"error: {message}"
        finally:
            admin.execute(f"ALTER ROLE {OPS} RESET default_transaction_read_only")
