"""`recsys-db train` stopped by SIGTERM or SIGINT, as a scheduler (cron, systemd, Kubernetes)
or a user stops it: the run is recorded failed with the stages done so far, what it half-built
is dropped, and the active version keeps serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psycopg
import pytest

from recsys_db import training

from ..helpers import rows
from .test_interruptions_and_concurrent_readers import served, wait_for


def sleeping_features(conn: psycopg.Connection) -> None:
    """A model whose item features are read through a view that sleeps while ``delay`` says:
    a training stopped there has written its version's tables already."""
    conn.execute("CREATE TABLE public.ev AS SELECT 'u' || (g % 60) AS u,"
                 " 'i' || ((g * 7919) % 97) AS i FROM generate_series(1, 3000) g")
    conn.execute("CREATE TABLE public.delay (seconds double precision)")
    conn.execute("INSERT INTO public.delay VALUES (0)")
    conn.execute("CREATE VIEW public.tags AS SELECT DISTINCT e.i AS item, 'g' || length(e.i)"
                 " AS genre FROM public.ev e CROSS JOIN (SELECT pg_sleep(seconds)"
                 " FROM public.delay) pause")
    conn.execute("SELECT recsys.create_model('m', 'public.ev', 'u', 'i',"
                 " params => recsys.als(factors => 8, iterations => 3))")
    conn.execute("SELECT recsys.set_features('m', 'item', 'public.tags', 'item',"
                 " ARRAY['genre'])")


def sleeping_backend(conn: psycopg.Connection) -> bool:
    return bool(rows(conn, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'recsys-db'"
                           " AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()"))


@pytest.mark.parametrize(("sig", "status", "said"), [
    (signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_stopped_training_records_a_failed_run_and_drops_its_tables(
        db_url: str, conn: psycopg.Connection, sig: signal.Signals, status: int,
        said: str) -> None:
    sleeping_features(conn)
    assert training.train(db_url, "m").version == 1
    before = served(conn)
    conn.execute("UPDATE public.delay SET seconds = 60")
    # as started from a terminal: a job started in the background by a shell without job
    # control (as CI may run the suite) inherits SIGINT ignored, and so would the trainer
    proc = subprocess.Popen([sys.executable, "-m", "recsys_db.cli", "--database-url", db_url,
                             "-q", "train", "m"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: sleeping_backend(conn))
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == status
    assert stderr.strip().endswith(said)
    (run_status, version, error, stages), = rows(
        conn, "SELECT status, version, error, stages FROM recsys.runs WHERE run_id = 2")
    assert (run_status, version) == ("failed", 2)
    assert error == ("stopped by SIGTERM" if sig == signal.SIGTERM else "KeyboardInterrupt")
    # the stages that finished are kept, the one stopped is timed up to the stop
    assert {"load", "fit", "write", "precompute", "index", "features"} <= set(stages)
    assert "activate" not in stages
    assert rows(conn, "SELECT version, active, status FROM recsys.versions ORDER BY version"
                ) == [(1, True, "ready"), (2, False, "failed")]
    assert rows(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'recsys'"
                      " AND tablename LIKE '%\\_v2\\_%'") == [(0,)]
    assert served(conn) == before
    assert not sleeping_backend(conn)  # the query in flight was cancelled
