"""The refresh job queue in ``recsys.job``: claim, settle, recover, report.

Jobs are queued by ``recsys.request_refresh`` (and NOTIFY ``recsys_refresh``) or by the
schedule (``recsys._enqueue_due``); a worker claims one at a time with ``FOR UPDATE SKIP
LOCKED``. A claimed job carries a lease that the worker's heartbeat extends; when a worker
dies, another one finds the expired lease, cleans up what the dead run left (its ``running``
run and ``building`` version) and puts the job back in the queue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from recsys_db import features, foldin, queries
from recsys_db.errors import ConfigError, DataError, RecsysError, TrainingError
from recsys_db.model import effective_params, get_model
from recsys_db.run import abandon, model_lock_key

log = logging.getLogger(__name__)

CHANNEL = "recsys_refresh"


@dataclass(frozen=True)
class Job:
    """A claimed job."""

    id: int
    model_id: int
    model: str
    mode: str  # 'full' | 'incremental'
    reason: str  # 'requested' | 'scheduled' | 'new events' | 'new content'
    attempts: int
    started_at: datetime


@dataclass(frozen=True)
class Recovered:
    """What recovery found for one model whose worker had died."""

    model: str
    failed_runs: list[int]
    discarded_versions: list[int]
    jobs: dict[int, str]  # job id -> its new status


def register_worker(conn: psycopg.Connection, name: str, lease: float) -> int:
    """Add a worker row (heartbeat now); returns its id."""
    row = conn.execute(queries.text("job_register_worker"),
                       {"name": name, "lease": lease}).fetchone()
    assert row is not None
    return int(row[0])


def heartbeat(conn: psycopg.Connection, worker_id: int, state: str) -> None:
    """Record that the worker is alive and extend the lease of the job it runs."""
    conn.execute(queries.text("job_heartbeat"), {"worker_id": worker_id, "state": state})


def revive_worker(conn: psycopg.Connection, worker_id: int, error: str,
                  error_at: datetime) -> None:
    """Mark a worker alive again after a reconnect, keeping the error that cut it off."""
    conn.execute(queries.text("job_revive_worker"),
                 {"worker_id": worker_id, "error": error, "error_at": error_at})


def stop_worker(conn: psycopg.Connection, worker_id: int) -> None:
    """Mark a worker as stopped; it disappears from ``recsys.workers``."""
    conn.execute(queries.text("job_stop_worker"), {"worker_id": worker_id})


def enqueue_due(conn: psycopg.Connection) -> int:
    """Queue scheduled full refreshes and fold-ins of new events; returns how many."""
    row = conn.execute(queries.text("job_enqueue_due")).fetchone()
    return int(row[0]) if row else 0


def enqueue_new_content(conn: psycopg.Connection) -> int:
    """Queue an incremental refresh of each model whose feature relations gained keys with
    content since its active version was trained (those ``features.extend`` would map:
    under bm25 or tfidf, items only); returns how many. A model whose feature relation
    cannot be read as its declarer is skipped with a warning, as ``recsys._enqueue_due``
    skips a source; so is one whose last finished job is a failed 'new content' job, until
    another of its jobs finishes."""
    queued = 0
    for model_id, name, version, params in conn.execute(
            queries.text("job_content_candidates")).fetchall():
        tables = {kind: sql.Identifier("recsys", f"m{model_id}_v{version}_{kind}")
                  for kind in ("users", "items")}
        elementwise = effective_params(conn, params)["weighting"] in foldin.ELEMENTWISE_WEIGHTING
        try:
            waiting = features.pending(conn, get_model(conn, name), version, tables,
                                       ("item", "user") if elementwise else ("item",))
        except (psycopg.Error, RecsysError) as exc:
            log.warning('cannot check model "%s" for new content: %s', name, exc)
            continue
        if waiting:
            log.info("%s: %d keys with content are new to version %d", name, waiting, version)
            row = conn.execute(queries.text("job_enqueue_content"),
                               {"model_id": model_id}).fetchone()
            queued += 0 if row is None else 1
    return queued


def claim(conn: psycopg.Connection, worker_id: int) -> Job | None:
    """Claim the next runnable job for this worker, or None when there is none."""
    row = conn.execute(queries.text("job_claim"), {"worker_id": worker_id}).fetchone()
    return Job(*row) if row else None


# SQLSTATE classes of errors that the same job meets again: data exceptions (22), integrity
# (23), invalid authorization (28), syntax, access and undefined objects (42)
PERMANENT_CLASSES = ("22", "23", "28", "42")
# SQLSTATEs of a server going away or not accepting connections yet: admin shutdown, crash
# shutdown, cannot connect now
SERVER_GONE = ("57P01", "57P02", "57P03")


def failure_kind(exc: BaseException) -> str:
    """How a job that raised ``exc`` is retried.

    - 'disconnected': the connection to the server was lost (a restart); the job is released
      at once, without using up an attempt.
    - 'permanent': retrying cannot help (the model's configuration, its data, a permission, a
      missing source or column); the job fails now.
    - 'transient': anything else (a lock held by a standalone training, a serialization
      failure, a cancelled query, ...); retried with backoff, counted as an attempt.
    """
    if isinstance(exc, (ConfigError, DataError, TrainingError)):
        return "permanent"
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        if state in SERVER_GONE or (isinstance(exc, psycopg.OperationalError)
                                    and (not state or state.startswith("08"))):
            return "disconnected"
        if state[:2] in PERMANENT_CLASSES:
            return "permanent"
    return "transient"


def run_of(conn: psycopg.Connection, job_id: int) -> tuple[int, str] | None:
    """(run id, status) of the newest run the job's worker started for it, if any."""
    row = conn.execute(queries.text("job_run_of"), {"job_id": job_id}).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def succeed(conn: psycopg.Connection, job_id: int, run_id: int | None) -> None:
    """Close a job as succeeded, linked to its run."""
    conn.execute(queries.text("job_succeed"), {"job_id": job_id, "run_id": run_id})


def retry(conn: psycopg.Connection, job_id: int, error: str, *, max_attempts: int,
          backoff: float, count_attempt: bool = True, worker_id: int | None = None
          ) -> str | None:
    """Requeue a running job after a failure (with backoff) or give up after max_attempts.

    Returns the job's new status ('queued' or 'failed'), or None when it was not running (or,
    given ``worker_id``, is not that worker's any more: another worker took it over).
    ``count_attempt=False`` releases the job without using up an attempt; ``max_attempts=0``
    fails it at once.
    """
    row = conn.execute(queries.text("job_retry"), {
        "job_id": job_id, "error": error, "max_attempts": max_attempts, "backoff": backoff,
        "count_attempt": count_attempt, "worker_id": worker_id}).fetchone()
    return row[0] if row else None


def recover(conn: psycopg.Connection, *, lease: float, max_attempts: int,
            backoff: float) -> list[Recovered]:
    """Clean up after dead workers.

    Workers past their lease are marked dead. For every model with an expired job lease or an
    old running run or building version, the model's training lock decides: a live run
    (of a worker, or of ``recsys-db train``) holds it, so when it can be taken the leftovers
    are abandoned. Their runs are marked failed, their versions discarded (the active version
    is never touched) and their jobs retried or given up.
    """
    for worker_id, name in conn.execute(queries.text("job_mark_dead_workers")).fetchall():
        log.warning("worker %s (id %d) missed its heartbeats; marked dead", name, worker_id)
    conn.execute(queries.text("job_forget_workers"))
    found: list[Recovered] = []
    suspects = conn.execute(queries.text("job_suspect_models"), {"lease": lease}).fetchall()
    for model_id, model_name in suspects:
        with conn.transaction():
            locked = conn.execute(queries.text("job_try_model_lock"),
                                  {"key": model_lock_key(model_id)}).fetchone()
            if not (locked and locked[0]):
                continue  # a live run holds the model
            found.append(_recover_model(conn, model_id, model_name,
                                        max_attempts=max_attempts, backoff=backoff))
    return [r for r in found if r.failed_runs or r.discarded_versions or r.jobs]


def _recover_model(conn: psycopg.Connection, model_id: int, model_name: str, *,
                   max_attempts: int, backoff: float) -> Recovered:
    runs, versions = abandon(conn, get_model(conn, model_name))
    jobs: dict[int, str] = {}
    for job_id, worker in conn.execute(queries.text("job_expired"),
                                       {"model_id": model_id}).fetchall():
        run = run_of(conn, job_id)
        if run is not None and run[1] == "succeeded":
            # the worker died after its run succeeded, before it closed the job
            succeed(conn, job_id, run[0])
            jobs[job_id] = "succeeded"
            continue
        if run is not None:
            conn.execute(queries.text("job_set_run"), {"job_id": job_id, "run_id": run[0]})
        # not the job's fault: retried at once, without using up an attempt; unless it keeps
        # killing its workers (out of memory, say), which then counts like any failure
        row = conn.execute(queries.text("job_note_abandoned"), {"job_id": job_id}).fetchone()
        abandoned = int(row[0]) if row else 1
        status = retry(conn, job_id, f"worker {worker} stopped heartbeating (lease expired)",
                       max_attempts=max_attempts, backoff=backoff,
                       count_attempt=abandoned > max_attempts)
        jobs[job_id] = status or "unchanged"
    recovered = Recovered(model=model_name, failed_runs=runs, discarded_versions=versions,
                          jobs=jobs)
    log.warning("%s: recovered after a dead worker: %s", model_name, recovered)
    return recovered


def prune_history(conn: psycopg.Connection, *, keep_runs: int, keep_days: int
                  ) -> dict[str, int]:
    """Delete history beyond the retention rule (``recsys._prune_history``); returns how many
    runs, jobs and tunings went."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(queries.text("job_prune_history"),
                          {"keep_runs": keep_runs, "keep_days": keep_days}).fetchone()
    assert row is not None
    return {key: int(value) for key, value in row.items()}


def status(conn: psycopg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Models (with schedule and open job), live workers and open jobs, for ``status``."""
    report: dict[str, list[dict[str, Any]]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for key, name in (("models", "job_status_models"), ("workers", "job_status_workers"),
                          ("jobs", "job_status_jobs")):
            report[key] = cur.execute(queries.text(name)).fetchall()
    return report
