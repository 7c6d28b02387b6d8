"""History kept bounded: the worker's housekeeping deletes old runs, jobs and tunings by the
documented rule (recsys._prune_history) and keeps what serving and scheduling need."""

from __future__ import annotations

import psycopg

from recsys_db import jobs, training, worker

from ..helpers import rows

SMALL = "recsys.als(factors => 2, iterations => 3, keep_versions => 2)"


def trained(db_url: str, conn: psycopg.Connection, *, times: int) -> None:
    """Model 'm' over a small table, trained ``times`` times (versions 1..times)."""
    conn.execute("CREATE TABLE public.ev AS SELECT 'u' || (g % 20) AS u, 'i' || (g * 7 % 31)"
                 " AS i FROM generate_series(1, 400) g")
    conn.execute(f"SELECT recsys.create_model('m', 'public.ev', 'u', 'i', params => {SMALL})")
    for _ in range(times):
        training.train(db_url, "m")


def age(conn: psycopg.Connection, table: str, ids: list[int], days: int) -> None:
    """Move rows of recsys.run or recsys.job ``days`` into the past."""
    column = "started_at" if table == "run" else "created_at"
    conn.execute(f"UPDATE recsys.{table} SET {column} = {column} - %s * interval '1 day',"
                 f" finished_at = finished_at - %s * interval '1 day' WHERE id = ANY(%s)",
                 (days, days, ids))


def test_prune_keeps_what_serving_and_scheduling_need(db_url: str,
                                                        conn: psycopg.Connection) -> None:
    trained(db_url, conn, times=4)
    # a failed full job and a finished one, both old; a queued one
    conn.execute("INSERT INTO recsys.job (model_id, mode, reason, status, finished_at)"
                 " SELECT id, 'full', 'requested', s, clock_timestamp() FROM recsys.model,"
                 " unnest(ARRAY['failed', 'succeeded', 'failed']) s")
    all_runs = [r[0] for r in rows(conn, "SELECT id FROM recsys.run ORDER BY id")]
    all_jobs = [r[0] for r in rows(conn, "SELECT id FROM recsys.job ORDER BY id")]
    age(conn, "run", all_runs, 60)
    age(conn, "job", all_jobs, 60)
    conn.execute("INSERT INTO recsys.job (model_id, mode, reason) SELECT id, 'full', 'requested'"
                 " FROM recsys.model")
    versions = rows(conn, "SELECT version, status, run_id FROM recsys.model_version"
                          " ORDER BY version")
    assert [v[1] for v in versions] == ["dropped", "dropped", "ready", "ready"]

    assert jobs.prune_history(conn, keep_runs=1, keep_days=30) == {
        "runs": 2, "jobs": 2, "tunings": 0}
    # kept: the runs of the two versions still kept (the newest is also the newest success)
    assert rows(conn, "SELECT id FROM recsys.run ORDER BY id") == [(all_runs[2],),
                                                                   (all_runs[3],)]
    # kept: the newest failed full job (the schedule counts from it) and the open one
    assert rows(conn, "SELECT status FROM recsys.job ORDER BY id") == [("failed",), ("queued",)]
    assert rows(conn, "SELECT id FROM recsys.job WHERE status = 'failed'") == [(all_jobs[2],)]
    # serving and the models view are as before
    assert rows(conn, "SELECT active_version, last_run_status FROM recsys.models") == [
        (4, "succeeded")]
    assert len(rows(conn, "SELECT * FROM recsys.recommend('m', 'u1', 3)")) == 3
    # young history stays, whatever its count
    assert jobs.prune_history(conn, keep_runs=1, keep_days=90) == {
        "runs": 0, "jobs": 0, "tunings": 0}


def test_worker_prunes_on_start_with_its_settings(db_url: str, conn: psycopg.Connection
                                                  ) -> None:
    trained(db_url, conn, times=3)
    conn.execute("UPDATE recsys.run SET started_at = started_at - interval '10 days',"
                 " finished_at = finished_at - interval '10 days'")
    events: list[tuple[str, dict[str, object]]] = []

    class Record(worker.Events):
        def __call__(self, event: str, **fields: object) -> None:
            events.append((event, fields))

    options = worker.WorkerOptions(once=True, keep_days=5, keep_runs=1)
    assert worker.Worker(db_url, options, Record()).run() == 0
    pruned = [fields for event, fields in events if event == "pruned"]
    assert len(pruned) == 1 and pruned[0]["runs"] == 1
    assert rows(conn, "SELECT count(*) FROM recsys.run") == [(2,)]


def test_prune_refuses_settings_that_keep_nothing(conn: psycopg.Connection) -> None:
    for keep_runs, keep_days in ((0, 30), (100, 0), (None, 30)):
        try:
            jobs.prune_history(conn, keep_runs=keep_runs, keep_days=keep_days)  # type: ignore[arg-type]
        except psycopg.errors.InvalidParameterValue as exc:
            assert "keep_runs and keep_days must be at least 1" in str(exc)
        else:
            raise AssertionError("accepted")
