"""The worker as real subprocesses against the test database: scheduling across workers,
kill -9 recovery, graceful shutdown, NOTIFY wake-up, retries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from recsys_db import cli, db, run, training, worker

from ..helpers import rows

SMALL = "recsys.als(factors => 2, iterations => 5)"


class Proc:
    """A ``recsys-db --json worker`` subprocess; its JSON events go to a file."""

    def __init__(self, db_url: str, out: Path, *flags: str):
        self.out = out
        with out.open("w") as sink:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "recsys_db.cli", "--database-url", db_url, "--json",
                 "worker", "--poll", "0.3", "--lease", "2", "--retry-backoff", "0", *flags],
                stdout=sink, stderr=subprocess.STDOUT, text=True)

    @property
    def name(self) -> str:
        return f"{os.uname().nodename}:{self.popen.pid}"

    def events(self) -> list[dict[str, Any]]:
        lines = self.out.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.popen.send_signal(sig)
        return self.popen.wait(timeout=30)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait()


def wait_for(conn: psycopg.Connection, query: str, check: Callable[[Any], bool],
             timeout: float = 40) -> Any:
    """Poll a query until its first value passes ``check``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = conn.execute(query).fetchone()
        value = value[0] if value else None
        if check(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting on: {query} (last {value!r})"
        time.sleep(0.1)


def make_source(conn: psycopg.Connection, name: str, pause: float = 0.0) -> None:
    """A small interactions table behind a view whose every query sleeps ``pause`` seconds,
    so that a training run lasts long enough to overlap with others."""
    conn.execute(sql.SQL("CREATE TABLE {} AS SELECT 'u' || (g % 12) AS u,"
                         " 'i' || (g * 7 % 9) AS i FROM generate_series(1, 60) g").format(
                             sql.Identifier("public", f"{name}_t")))
    conn.execute(sql.SQL("CREATE VIEW {} AS WITH pause AS MATERIALIZED"
                         " (SELECT pg_sleep({})) SELECT t.* FROM {} t, pause").format(
                             sql.Identifier("public", name), sql.Literal(pause),
                             sql.Identifier("public", f"{name}_t")))


def test_two_workers_train_each_model_once_per_period(
        db_url: str, conn: psycopg.Connection, procs: list[Proc], tmp_path: Path) -> None:
    names = [f"m{i}" for i in range(4)]
    for name in names:
        make_source(conn, name, pause=0.25)
    procs += [Proc(db_url, tmp_path / f"w{i}.jsonl") for i in range(2)]
    wait_for(conn, "SELECT count(*) FROM recsys.workers", lambda n: n == 2)
    for name in names:
        conn.execute(f"SELECT recsys.create_model(%s, %s, 'u', 'i',"
                     f" params => {SMALL}, refresh_every => interval '1 hour')",
                     (name, f"public.{name}"))
    done = ("SELECT count(*) FROM recsys.runs WHERE status = 'succeeded'"
            " AND run_id IN (SELECT run_id FROM recsys.jobs WHERE status = 'succeeded')")
    wait_for(conn, done, lambda n: n == 4)
    time.sleep(1.0)  # several more poll intervals: nothing is due again within the hour
    assert rows(conn, "SELECT model, count(*) FROM recsys.runs GROUP BY model ORDER BY model") \
        == [(name, 1) for name in names]
    assert len({r[0] for r in rows(conn, "SELECT worker FROM recsys.runs")}) == 2
    assert rows(conn, "SELECT count(*) FROM recsys.models WHERE active_version = 1"
                      " AND next_due_at = last_success_at + interval '1 hour'"
                      " AND job_id IS NULL") == [(4,)]
    status = json.loads(cli_out(db_url, "--json", "status"))
    assert sorted(w["name"] for w in status["workers"]) == sorted(p.name for p in procs)
    assert {m["name"]: m["active_version"] for m in status["models"]} == dict.fromkeys(names, 1)

    # an hour passes: every model is due again and is trained exactly once more
    conn.execute("UPDATE recsys.run SET finished_at = finished_at - interval '61 minutes'")
    wait_for(conn, done, lambda n: n == 8)
    time.sleep(1.0)
    assert rows(conn, "SELECT model, count(*), max(version) FROM recsys.runs"
                      " GROUP BY model ORDER BY model") == [(name, 2, 2) for name in names]
    # runs of one model never overlapped
    assert rows(conn, "SELECT count(*) FROM recsys.run a JOIN recsys.run b"
                      " ON a.model_id = b.model_id AND a.id < b.id"
                      " AND b.started_at < a.finished_at") == [(0,)]
    assert [p.stop() for p in procs] == [0, 0]
    assert rows(conn, "SELECT count(*) FROM recsys.workers") == [(0,)]
    assert {e["event"] for e in procs[0].events()} >= {"started", "claimed", "stage",
                                                       "succeeded", "stopping", "stopped"}


def cli_out(db_url: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "recsys_db.cli", "--database-url", db_url,
                          *args], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


def hold_model(db_url: str, name: str) -> psycopg.Connection:
    """A transaction holding the model row, as a long report might: activation waits on it."""
    holder = db.connect(db_url, autocommit=False)
    holder.execute("SELECT 1 FROM recsys.model WHERE name = %s FOR NO KEY UPDATE", (name,))
    return holder


def trained(db_url: str, conn: psycopg.Connection, name: str) -> None:
    make_source(conn, name)
    conn.execute(f"SELECT recsys.create_model(%s, %s, 'u', 'i', params => {SMALL})",
                 (name, f"public.{name}"))
    training.train(db_url, name)


def test_kill_9_mid_training_recovered_by_another_worker(
        db_url: str, conn: psycopg.Connection, procs: list[Proc], tmp_path: Path) -> None:
    trained(db_url, conn, "k")
    served = rows(conn, "SELECT item_key FROM recsys.recommend('k', 'u1', 3)")
    holder = hold_model(db_url, "k")
    try:
        conn.execute("SELECT recsys.request_refresh('k')")
        procs.append(Proc(db_url, tmp_path / "a.jsonl"))
        # version 2 is written and waits to be activated
        wait_for(conn, "SELECT to_regclass('recsys.m1_v2_items') IS NOT NULL", bool)
        procs.append(Proc(db_url, tmp_path / "b.jsonl"))
        procs[0].popen.kill()
        procs[0].popen.wait()
        # meanwhile the old version is served
        assert rows(conn, "SELECT active_version FROM recsys.models") == [(1,)]
        assert rows(conn, "SELECT item_key FROM recsys.recommend('k', 'u1', 3)") == served
    finally:
        holder.commit()
        holder.close()
    wait_for(conn, "SELECT active_version FROM recsys.models", lambda v: v == 3)
    # the worker closes the job just after the version is activated
    wait_for(conn, "SELECT status FROM recsys.jobs", lambda v: v == "succeeded")
    assert rows(conn, "SELECT version, status FROM recsys.versions ORDER BY version") == [
        (1, "ready"), (2, "failed"), (3, "ready")]
    assert rows(conn, "SELECT to_regclass('recsys.m1_v2_items')") == [(None,)]
    assert rows(conn, "SELECT version, status, worker, error FROM recsys.runs ORDER BY run_id"
                ) == [(1, "succeeded", run.worker_name(), None),
                      (None, "failed", procs[0].name,
                       f"abandoned: worker {procs[0].name} stopped before the run finished"),
                      (3, "succeeded", procs[1].name, None)]
    (status, attempts, job_worker, run_version), = rows(
        conn, "SELECT j.status, j.attempts, j.worker, r.version FROM recsys.jobs j"
              " JOIN recsys.run r ON r.id = j.run_id")
    # the dead worker's attempt is not counted against the job: it was not the job's fault
    assert (status, attempts, job_worker, run_version) == ("succeeded", 1, procs[1].name, 3)
    recovered = [e for e in procs[1].events() if e["event"] == "recovered"]
    assert recovered and recovered[0]["discarded_versions"] == [2]
    assert procs[1].stop(signal.SIGINT) == 0


def test_sigterm_releases_a_job_that_cannot_finish_in_grace(
        db_url: str, conn: psycopg.Connection, procs: list[Proc], tmp_path: Path) -> None:
    trained(db_url, conn, "s")
    holder = hold_model(db_url, "s")
    try:
        conn.execute("SELECT recsys.request_refresh('s')")
        procs.append(Proc(db_url, tmp_path / "w.jsonl", "--grace", "0.5"))
        wait_for(conn, "SELECT to_regclass('recsys.m1_v2_items') IS NOT NULL", bool)
        assert procs[0].stop() == 0
    finally:
        holder.rollback()
        holder.close()
    (status, attempts, worker_name, error), = rows(
        conn, "SELECT status, attempts, worker, error FROM recsys.jobs")
    assert (status, attempts, worker_name) == ("queued", 0, procs[0].name)
    assert "did not finish within the 0.5s grace period" in error
    assert rows(conn, "SELECT status FROM recsys.runs ORDER BY run_id") == [
        ("succeeded",), ("failed",)]
    assert rows(conn, "SELECT version, status FROM recsys.versions ORDER BY version") == [
        (1, "ready"), (2, "failed")]
    assert rows(conn, "SELECT active_version FROM recsys.models") == [(1,)]
    assert rows(conn, "SELECT count(*) FROM recsys.workers") == [(0,)]
    events = [e["event"] for e in procs[0].events()]
    assert events[-2:] == ["released", "stopped"] and "stopping" in events


def test_sigterm_lets_the_running_job_finish_and_claims_no_more(
        db_url: str, conn: psycopg.Connection, procs: list[Proc], tmp_path: Path) -> None:
    trained(db_url, conn, "f")
    trained(db_url, conn, "g")
    holder = hold_model(db_url, "f")
    try:
        conn.execute("SELECT recsys.request_refresh('f')")
        procs.append(Proc(db_url, tmp_path / "w.jsonl", "--grace", "30"))
        wait_for(conn, "SELECT to_regclass('recsys.m1_v2_items') IS NOT NULL", bool)
        conn.execute("SELECT recsys.request_refresh('g')")
        procs[0].popen.send_signal(signal.SIGTERM)
        wait_for(conn, "SELECT count(*) FROM recsys.workers WHERE state = 'stopping'",
                 lambda n: n == 1)
    finally:
        holder.commit()
        holder.close()
    assert procs[0].popen.wait(timeout=30) == 0
    assert rows(conn, "SELECT model, status FROM recsys.jobs ORDER BY job_id") == [
        ("f", "succeeded"), ("g", "queued")]
    assert rows(conn, "SELECT name, active_version FROM recsys.models ORDER BY name") == [
        ("f", 2), ("g", 1)]


def test_request_refresh_wakes_the_worker_without_waiting_for_the_poll(
        db_url: str, conn: psycopg.Connection, procs: list[Proc], tmp_path: Path) -> None:
    make_source(conn, "n")
    conn.execute(f"SELECT recsys.create_model('n', 'public.n', 'u', 'i', params => {SMALL})")
    procs.append(Proc(db_url, tmp_path / "w.jsonl", "--poll", "60"))
    wait_for(conn, "SELECT count(*) FROM recsys.workers", lambda n: n == 1)
    time.sleep(0.5)  # past its first look at the queue: now it waits (60 s poll)
    conn.execute("SELECT recsys.request_refresh('n')")
    wait_for(conn, "SELECT status FROM recsys.jobs", lambda s: s == "succeeded")
    (latency,), = rows(conn, "SELECT extract(epoch FROM r.started_at - j.created_at)"
                             " FROM recsys.jobs j JOIN recsys.run r ON r.id = j.run_id")
    assert latency < 2
    assert "notified" in [e["event"] for e in procs[0].events()]
    assert procs[0].stop() == 0


def test_transient_failure_is_retried_with_backoff_then_given_up(
        db_url: str, conn: psycopg.Connection) -> None:
    make_source(conn, "t")
    conn.execute("SELECT recsys.create_model('t', 'public.t', 'u', 'i',"
                 f" params => {SMALL}, refresh_every => interval '1 day')")
    (model_id,), = rows(conn, "SELECT id FROM recsys.model")
    # a standalone training holds the model: worth trying again later
    conn.execute("SELECT pg_advisory_lock(%s)", (run.model_lock_key(model_id),))
    events = worker.Events(quiet=True)
    once = worker.WorkerOptions(once=True, lease=5, max_attempts=2, backoff=60)
    assert worker.Worker(db_url, once, events).run() == 1
    (status, attempts, wait, error), = rows(
        conn, "SELECT status, attempts, extract(epoch FROM run_after - clock_timestamp()),"
              " error FROM recsys.jobs")
    assert (status, attempts) == ("queued", 1) and 50 < wait <= 60
    assert error == 'model "t" is already being trained'
    # not due yet: a second cron run leaves it alone; once due, the last attempt gives up
    assert worker.Worker(db_url, once, events).run() == 0
    conn.execute("UPDATE recsys.job SET run_after = clock_timestamp()")
    assert worker.Worker(db_url, once, events).run() == 1
    assert rows(conn, "SELECT status, attempts FROM recsys.jobs") == [("failed", 2)]
    # given up: the schedule waits refresh_every before trying again, not one poll
    assert rows(conn, "SELECT next_due_at > clock_timestamp() + interval '23 hours', job_id"
                      " FROM recsys.models") == [(True, None)]
    assert worker.Worker(db_url, once, events).run() == 0
    assert rows(conn, "SELECT count(*) FROM recsys.jobs") == [(1,)]


def test_permanent_failure_is_not_retried(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.bad (u text, i text, w real)")
    conn.execute("INSERT INTO public.bad VALUES ('a', 'x', -1), ('b', 'y', 1)")
    conn.execute("SELECT recsys.create_model('bad', 'public.bad', 'u', 'i', 'w',"
                 f" params => {SMALL}, refresh_every => interval '1 day')")
    events = worker.Events(quiet=True)
    once = worker.WorkerOptions(once=True, lease=5, max_attempts=3, backoff=60)
    assert worker.Worker(db_url, once, events).run() == 1
    error = ('weight column "w" of model "bad" has 1 negative value; weights must be'
             " finite and non-negative")
    # the same data would fail the same way: failed after one attempt, not three
    assert rows(conn, "SELECT status, attempts, error FROM recsys.jobs") == [
        ("failed", 1, error)]
    assert rows(conn, "SELECT status, error FROM recsys.runs") == [("failed", error)]
    assert rows(conn, "SELECT last_run_status, last_error FROM recsys.models") == [
        ("failed", error)]
    assert worker.Worker(db_url, once, events).run() == 0
    assert rows(conn, "SELECT count(*) FROM recsys.runs") == [(1,)]


def test_bad_worker_settings_and_status_text(db_url: str, conn: psycopg.Connection,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--database-url", db_url, "worker", "--poll", "0"]) == 1
    assert capsys.readouterr().err.strip() == "error: worker poll must be positive, not 0"
    assert cli.main(["--database-url", db_url, "worker", "--max-attempts", "0"]) == 1
    assert capsys.readouterr().err.strip() == "error: max attempts must be at least 1, not 0"
    for flag, message in (("--keep-days", "worker keep days must be at least 1, not 0"),
                          ("--keep-runs", "worker keep runs must be at least 1, not 0")):
        assert cli.main(["--database-url", db_url, "worker", flag, "0"]) == 1
        assert capsys.readouterr().err.strip() == f"error: {message}"
    assert cli.main(["--database-url", db_url, "worker", "--reconnect-timeout", "-1"]) == 1
    assert capsys.readouterr().err.strip() == \
        "error: worker reconnect timeout must not be negative, not -1"
    assert cli.main(["--database-url", db_url, "status"]) == 0
    assert capsys.readouterr().out.split() == ["models:", "(none)", "workers:", "(none)",
                                               "jobs:", "(none)"]
    make_source(conn, "t")
    conn.execute(f"SELECT recsys.create_model('t', 'public.t', 'u', 'i', params => {SMALL})")
    conn.execute("SELECT recsys.request_refresh('t', 'incremental')")
    assert cli.main(["--database-url", db_url, "status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:4] == ["name", "active_version", "last_success_at", "next_due_at"]
    jobs_header = out.index("jobs:") + 1
    assert out[jobs_header + 2].split()[1:5] == ["t", "incremental", "requested", "queued"]


def test_a_run_the_gate_rejects_is_reported_as_rejected(
        db_url: str, conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    conn.execute("CREATE TABLE public.ev (u text, i text)")
    conn.execute("INSERT INTO public.ev SELECT 'u' || (n % 40), 'i' || (n * 7 % 23)"
                 " FROM generate_series(1, 400) n")
    conn.execute("SELECT recsys.create_model('g', 'public.ev', 'u', 'i', params => recsys.als("
                 "factors => 2, iterations => 3, eval_split => 'random', gate_metric => 'ndcg',"
                 " gate_min => 1.0))")
    conn.execute("SELECT recsys.request_refresh('g')")
    code = worker.Worker(db_url, worker.WorkerOptions(once=True, poll=0.1, lease=5),
                         worker.Events(as_json=True, quiet=True)).run()
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["rejected"]
    assert events[0]["version"] is None and "below gate_min 1" in events[0]["error"]
    assert rows(conn, "SELECT status FROM recsys.runs") == [("rejected",)]


def test_worker_state_follows_its_job_at_once(db_url: str, conn: psycopg.Connection,
                                             procs: list[Proc], tmp_path: Path) -> None:
    """recsys.workers says busy when a job is claimed and idle when it ends, not one heartbeat
    (a quarter of the lease: 15 s here) later."""
    make_source(conn, "slow", pause=2.0)
    conn.execute(f"SELECT recsys.create_model('slow', 'public.slow', 'u', 'i', params => {SMALL})")
    procs.append(Proc(db_url, tmp_path / "w.jsonl", "--lease", "60"))
    wait_for(conn, "SELECT state FROM recsys.workers", lambda s: s == "idle")
    conn.execute("SELECT recsys.request_refresh('slow')")
    wait_for(conn, "SELECT state FROM recsys.workers", lambda s: s == "busy", timeout=5)
    wait_for(conn, "SELECT count(*) FROM recsys.jobs WHERE status = 'succeeded'",
             lambda n: n == 1, timeout=30)
    wait_for(conn, "SELECT state FROM recsys.workers", lambda s: s == "idle", timeout=3)
    assert procs[0].stop() == 0


def test_a_job_that_keeps_killing_its_workers_is_given_up(db_url: str,
                                                          conn: psycopg.Connection) -> None:
    """A dead worker's job is retried without using up an attempt, up to max attempts of such
    deaths; after that each death counts, so a job that kills every worker (out of memory)
    is given up instead of retried once a lease for ever."""
    from recsys_db import jobs

    make_source(conn, "t")
    conn.execute(f"SELECT recsys.create_model('t', 'public.t', 'u', 'i', params => {SMALL})")
    conn.execute("INSERT INTO recsys.job (model_id, mode, reason, status, attempts, worker)"
                 " SELECT id, 'full', 'requested', 'queued', 0, 'gone:1' FROM recsys.model")
    seen = []
    for _ in range(4):
        # claimed by a worker that then dies: running, its lease expired
        conn.execute("UPDATE recsys.job SET status = 'running', attempts = attempts + 1,"
                     " lease_until = clock_timestamp() - interval '1 minute'")
        jobs.recover(conn, lease=60, max_attempts=2, backoff=0)
        seen.append(rows(conn, "SELECT status, attempts, abandoned FROM recsys.job")[0])
    assert seen == [("queued", 0, 1), ("queued", 0, 2), ("queued", 1, 3), ("failed", 2, 4)]
