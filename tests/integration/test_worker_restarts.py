"""The worker rides out a database restart without a supervisor: idle, it reconnects and takes
the next job; busy, its run is recorded failed, the job goes back to the queue without using up
an attempt, and it is trained again once the server is back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from ..helpers import rows
from .test_worker import SMALL, Proc, make_source, procs, wait_for

__all__ = ["procs"]  # the fixture, used by name


def reconnected(db_url: str) -> psycopg.Connection:
    """A fresh connection once the server accepts them again."""
    def accepts() -> bool:
        try:
            psycopg.connect(db_url, autocommit=True).close()
        except psycopg.OperationalError:
            return False
        return True

    deadline = time.monotonic() + 30
    while not accepts():
        assert time.monotonic() < deadline, "the server did not come back"
        time.sleep(0.2)
    return psycopg.connect(db_url, autocommit=True)


def test_idle_and_busy_workers_ride_out_a_restart(
        db_url: str, conn: psycopg.Connection, procs: list[Proc], tmp_path: Path,
        restart_server: Callable[[], object]) -> None:
    make_source(conn, "quick")
    conn.execute("CREATE TABLE public.delay (seconds double precision)")
    conn.execute("INSERT INTO public.delay VALUES (30)")
    conn.execute("CREATE TABLE public.slow_t AS SELECT 'u' || (g % 12) AS u,"
                 " 'i' || (g * 7 % 9) AS i FROM generate_series(1, 60) g")
    conn.execute("CREATE VIEW public.slow AS WITH pause AS MATERIALIZED"
                 " (SELECT pg_sleep(seconds) FROM public.delay) SELECT t.* FROM public.slow_t t,"
                 " pause")
    for name in ("quick", "slow"):
        conn.execute(f"SELECT recsys.create_model('{name}', 'public.{name}', 'u', 'i',"
                     f" params => {SMALL})")
    procs += [Proc(db_url, tmp_path / f"w{i}.jsonl") for i in range(2)]
    wait_for(conn, "SELECT count(*) FROM recsys.workers", lambda n: n == 2)
    conn.execute("SELECT recsys.request_refresh('slow')")
    busy = wait_for(conn, "SELECT worker FROM recsys.jobs WHERE status = 'running'",
                    lambda w: w is not None)
    wait_for(conn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
             lambda n: n == 1)
    conn.close()

    restart_server()
    conn = reconnected(db_url)
    conn.execute("UPDATE public.delay SET seconds = 0")
    # the idle worker takes new work; the busy one's job comes back and is trained
    conn.execute("SELECT recsys.request_refresh('quick')")
    wait_for(conn, "SELECT count(*) FROM recsys.jobs WHERE status = 'succeeded'",
             lambda n: n == 2)
    assert rows(conn, "SELECT name, active_version FROM recsys.models ORDER BY name") == [
        ("quick", 1), ("slow", 1)]
    assert all(p.popen.poll() is None for p in procs), [p.events() for p in procs]
    runs = rows(conn, "SELECT model, status, error FROM recsys.runs ORDER BY run_id")
    assert runs[0][:2] == ("slow", "failed") and "terminat" in runs[0][2]
    assert sorted(r[:2] for r in runs[1:]) == [("quick", "succeeded"), ("slow", "succeeded")]
    # not the job's fault: one attempt, not two
    assert rows(conn, "SELECT model, status, attempts FROM recsys.jobs ORDER BY job_id") == [
        ("slow", "succeeded", 1), ("quick", "succeeded", 1)]
    # both reconnected, and say so with the error that cut them off
    wait_for(conn, "SELECT count(*) FROM recsys.worker WHERE reconnects = 1"
                   " AND stopped_at IS NULL AND last_error IS NOT NULL", lambda n: n == 2)
    for proc in procs:
        kinds = [e["event"] for e in proc.events()]
        assert kinds.index("disconnected") < kinds.index("reconnected"), kinds
        # the server's own words, not a later "the connection is closed"
        error = next(e for e in proc.events() if e["event"] == "disconnected")["error"]
        assert "terminat" in error or "server closed the connection" in error, error
    released = [e for p in procs for e in p.events() if e["event"] == "released"]
    assert [(e["model"], e["retry"], e["job_status"]) for e in released] == [
        ("slow", "disconnected", "queued")]
    assert busy in {p.name for p in procs}
    for proc in procs:
        assert proc.stop() == 0
    conn.close()
