"""``recsys-db worker``: runs refresh jobs, on request, on schedule, until told to stop.

One loop per process: clean up after dead workers, queue what is due, claim one job, run it
(full training or incremental fold-in), repeat; with nothing to do, wait for a NOTIFY from
``recsys.request_refresh`` or the poll interval, whichever comes first. A heartbeat thread
keeps the worker row and the lease of the running job fresh.

SIGTERM or SIGINT stops claiming; a running job gets ``grace`` seconds to finish, after which
it is interrupted (its run is recorded as failed, its version discarded) and the job goes
back to the queue without using up an attempt. A second signal interrupts at once. Either
way the worker exits 0.

When the database goes away (a restart), the worker reconnects with backoff for up to
``reconnect_timeout`` seconds, then settles the job it was running (released without using up
an attempt when the connection loss failed it) and carries on; it gives up with the original
error when the server stays away longer.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import psycopg
from threadpoolctl import threadpool_limits

from recsys_db import db, foldin, install, jobs, queries, run, training
from recsys_db.cli import write_line
from recsys_db.errors import RecsysError
from recsys_db.model import get_model

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  # seconds between history prunes of one worker (and one at its start)


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker behaves; the CLI flags of ``recsys-db worker``."""

    poll: float = 5.0  # seconds between looks at the queue without a NOTIFY
    lease: float = 60.0  # a worker silent this long is dead and its job is taken over
    grace: float = 30.0  # seconds a running job may take to finish after SIGTERM
    max_attempts: int = 3
    backoff: float = 30.0  # seconds before the first retry; doubles per attempt
    once: bool = False  # run what is due now, then exit (cron)
    name: str | None = None  # default host:pid
    reconnect_timeout: float = 600.0  # how long to keep reconnecting after the server went away
    keep_days: int = 30  # history: finished runs and jobs younger than this are kept
    keep_runs: int = 100  # history: each model's newest runs kept, whatever their age

    def check(self) -> None:
        """Raise RecsysError on settings that cannot work."""
        for name in ("poll", "lease"):
            if getattr(self, name) <= 0:
                raise RecsysError(f"worker {name} must be positive, not {getattr(self, name):g}")
        for name in ("grace", "backoff", "reconnect_timeout"):
            if getattr(self, name) < 0:
                raise RecsysError(
                    f"worker {name.replace('_', ' ')} must not be negative, not "
                    f"{getattr(self, name):g}")
        if self.max_attempts < 1:
            raise RecsysError(f"max attempts must be at least 1, not {self.max_attempts}")
        for name in ("keep_days", "keep_runs"):
            if getattr(self, name) < 1:
                raise RecsysError(f"worker {name.replace('_', ' ')} must be at least 1, not "
                                  f"{getattr(self, name)}")

    @property
    def heartbeat(self) -> float:
        """Seconds between heartbeats: several per lease, so one slow beat is not fatal."""
        return self.lease / 4


class Events:
    """Structured log of what the worker does: JSON lines on stdout, or text on stderr.

    Output never stops the worker: once its stream is closed, events are dropped.
    """

    QUIET_SHOWS = frozenset({"failed", "recovered", "rejected", "disconnected", "reconnected"})

    def __init__(self, *, as_json: bool = False, quiet: bool = False):
        self.as_json = as_json
        self.quiet = quiet
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        """Emit one event."""
        if self.quiet and event not in self.QUIET_SHOWS:
            return
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock:
            if self.as_json:
                write_line(json.dumps({"ts": stamp, "event": event, **fields}, default=str))
            else:
                details = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
                write_line(f"{stamp} {event} {details}".rstrip(), err=True)


@dataclass
class _Outcome:
    """How a job ended: its result, or the kind of failure (``jobs.failure_kind``, or
    'released' on shutdown) with its error."""

    job: jobs.Job
    result: training.RunResult | foldin.FoldInResult | None = None
    kind: str = "succeeded"
    error: str = ""
    seconds: float = 0.0


class ShutdownRequested(BaseException):
    """Raised in the main thread when a running job must stop for shutdown.

    A BaseException so that it passes through ``except Exception`` on its way out, like
    KeyboardInterrupt; training records the run as failed and discards its version.
    """


class Worker:
    """One worker process; ``run`` returns the exit code."""

    def __init__(self, url: str, options: WorkerOptions, events: Events | None = None):
        options.check()
        self.url = url
        self.options = options
        self.events = events or Events()
        self.name = options.name or run.worker_name()
        self.worker_id: int | None = None
        # Set by a signal handler or stop(): plain attributes, because a handler must not take
        # a lock the interrupted main thread may hold (the events lock, an Event's condition).
        self._stopping = False
        self._stop_signal: int | None = None  # the signal that asked, announced by _announce
        self._stop_in_job = False  # whether a job was running when it came (a grace applies)
        self._announced = False
        self._announce_lock = threading.Lock()  # never taken in a signal handler
        self._stop_heartbeat = threading.Event()
        self._in_job = False
        self._state = "idle"
        self._failures = 0
        # a finished job whose outcome could not be written (the connection was lost)
        self._unsettled: _Outcome | None = None
        self._pruned_at: float | None = None  # monotonic time of the last history prune

    # -- signals -----------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only attribute writes and a timer here: the "stopping" event is written by
        # _announce, from the heartbeat thread or the main loop.
        if self._stopping:
            if self._in_job:
                raise ShutdownRequested(f"worker {self.name} interrupted by a second signal")
            return
        self._stop_in_job = self._in_job
        self._stop_signal = signum
        self._stopping = True
        self._state = "stopping"
        if self._in_job:
            signal.setitimer(signal.ITIMER_REAL, max(self.options.grace, 0.001))

    def _announce(self) -> None:
        """Write the "stopping" event once, after a signal asked the worker to stop."""
        if self._stop_signal is None or self._announced:
            return
        with self._announce_lock:
            if self._announced:
                return
            self._announced = True
            self.events("stopping", worker=self.name,
                        signal=signal.Signals(self._stop_signal).name,
                        grace=self.options.grace if self._stop_in_job else None)

    def _on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        if self._in_job:
            raise ShutdownRequested(
                f"worker {self.name} shut down; the run did not finish within the "
                f"{self.options.grace:g}s grace period")

    def stop(self) -> None:
        """Ask the loop to stop after the current job (for embedding without signals)."""
        self._stopping = True

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped (or, with ``once``, until nothing is runnable); exit code."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self._on_signal)
            handlers[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        heartbeat: threading.Thread | None = None
        conn: psycopg.Connection | None = None
        try:
            conn = db.connect(self.url, pinned=True)
            db.require_writable(conn)  # a standby: refused before the worker registers
            install.check_schema(conn)
            self.worker_id = jobs.register_worker(conn, self.name, self.options.lease)
            conn.execute(queries.text("worker_listen"))
            heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                         name="recsys-heartbeat")
            heartbeat.start()
            self.events("started", worker=self.name, worker_id=self.worker_id,
                        once=self.options.once, poll=self.options.poll,
                        lease=self.options.lease)
            while True:
                try:
                    self._loop(conn)
                    break
                except psycopg.OperationalError as exc:
                    if not (conn.broken or conn.closed):
                        raise
                    conn.close()
                    conn = self._reconnect(exc)
                    if conn is None:  # stopped while the database was away
                        break
            if conn is not None:
                jobs.stop_worker(conn, self._id)
        finally:
            self._stop_heartbeat.set()
            if heartbeat is not None:
                heartbeat.join()
            if conn is not None:
                conn.close()
            for sig, previous in handlers.items():
                signal.signal(sig, previous)
        self._announce()
        self.events("stopped", worker=self.name, failures=self._failures)
        return 1 if self.options.once and self._failures else 0

    def _reconnect(self, lost: psycopg.OperationalError) -> psycopg.Connection | None:
        """A new connection after ``lost``, retried with backoff (0.5 s doubling, at most
        15 s between tries) for up to ``reconnect_timeout`` seconds; then ``lost`` is raised
        again, the error that stopped the worker. A server that is back read-only (a standby
        not yet promoted in a failover) counts as not back; if it stays so, its RecsysError
        is raised instead. Stopping the worker stops the retries (and returns None)."""
        error = str(lost).strip().splitlines()[0] if str(lost).strip() else type(lost).__name__
        lost_at = datetime.now(UTC)
        self._state = "reconnecting"
        self.events("disconnected", worker=self.name, error=error,
                    reconnect_timeout=self.options.reconnect_timeout)
        deadline = time.monotonic() + self.options.reconnect_timeout
        pause, attempt = 0.5, 0
        while not self._sleep(min(pause, max(0.0, deadline - time.monotonic()))):
            attempt += 1
            try:
                conn = db.connect(self.url, pinned=True)
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    log.error("worker %s: the database stayed away for %gs: %s", self.name,
                              self.options.reconnect_timeout, str(exc).strip())
                    raise lost from exc
                log.info("worker %s: reconnect attempt %d failed: %s", self.name, attempt,
                         str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
                pause = min(pause * 2, 15.0)
                continue
            try:
                db.require_writable(conn)
            except RecsysError as exc:
                conn.close()
                if time.monotonic() >= deadline:
                    log.error("worker %s: the database stayed read-only for %gs: %s",
                              self.name, self.options.reconnect_timeout, exc)
                    raise
                log.info("worker %s: reconnect attempt %d reached a read-only server: %s",
                         self.name, attempt, exc)
                pause = min(pause * 2, 15.0)
                continue
            try:
                jobs.revive_worker(conn, self._id, error, lost_at)
                conn.execute(queries.text("worker_listen"))
            except BaseException:
                conn.close()
                raise
            self._state = "idle"
            self.events("reconnected", worker=self.name, attempts=attempt,
                        seconds=round((datetime.now(UTC) - lost_at).total_seconds(), 3))
            return conn
        return None

    def _loop(self, conn: psycopg.Connection) -> None:
        if self._unsettled is not None:
            self._settle(conn, self._unsettled)
        while not self._stopping:
            self._housekeeping(conn)
            job = None if self._stopping else jobs.claim(conn, self._id)
            if job is not None:
                self._execute(conn, job)
            elif self.options.once:
                return
            else:
                self._wait(conn)

    @property
    def _id(self) -> int:
        assert self.worker_id is not None
        return self.worker_id

    def _housekeeping(self, conn: psycopg.Connection) -> None:
        for found in jobs.recover(conn, lease=self.options.lease,
                                  max_attempts=self.options.max_attempts,
                                  backoff=self.options.backoff):
            self.events("recovered", worker=self.name, model=found.model,
                        failed_runs=found.failed_runs,
                        discarded_versions=found.discarded_versions, jobs=found.jobs)
        queued = jobs.enqueue_due(conn) + jobs.enqueue_new_content(conn)
        if queued:
            self.events("scheduled", worker=self.name, jobs=queued)
        now = time.monotonic()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            pruned = jobs.prune_history(conn, keep_runs=self.options.keep_runs,
                                        keep_days=self.options.keep_days)
            if any(pruned.values()):
                self.events("pruned", worker=self.name, **pruned)

    def _wait(self, conn: psycopg.Connection) -> None:
        """Until a NOTIFY, the poll interval or a stop; in short slices to notice the stop."""
        deadline = time.monotonic() + self.options.poll
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for notify in conn.notifies(timeout=min(left, 0.2), stop_after=1):
                self.events("notified", worker=self.name, model=notify.payload)
                return

    def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in short slices; whether a stop was asked for."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.2))
        return True

    def _heartbeat_loop(self) -> None:
        conn: psycopg.Connection | None = None
        beat_at = time.monotonic() + self.options.heartbeat
        # short slices: this thread also announces a stop that a signal asked for
        while not self._stop_heartbeat.wait(min(0.2, self.options.heartbeat)):
            self._announce()
            if time.monotonic() < beat_at:
                continue
            beat_at = time.monotonic() + self.options.heartbeat
            try:
                if conn is None or conn.closed:
                    conn = db.connect(self.url, vector=False, pinned=True)
                jobs.heartbeat(conn, self._id, self._state)
            except psycopg.Error as exc:  # the next beat tries a new connection
                log.warning("heartbeat failed: %s", exc)
                conn = None
        if conn is not None:
            conn.close()

    # -- one job -----------------------------------------------------------------------------

    def _execute(self, conn: psycopg.Connection, job: jobs.Job) -> None:
        self._state = "busy"
        jobs.heartbeat(conn, self._id, self._state)  # recsys.workers shows it at once
        self.events("claimed", worker=self.name, job=job.id, model=job.model, mode=job.mode,
                    reason=job.reason, attempt=job.attempts)
        started = time.perf_counter()
        outcome = _Outcome(job)
        self._in_job = True
        try:
            outcome.result = self._run_job(conn, job)
        except ShutdownRequested as exc:
            outcome.kind, outcome.error = "released", str(exc)
        except Exception as exc:  # every failure is recorded on the job, retried or not
            outcome.kind = jobs.failure_kind(exc)
            outcome.error = str(exc).strip() or type(exc).__name__
        finally:
            self._in_job = False
            if threading.current_thread() is threading.main_thread():
                signal.setitimer(signal.ITIMER_REAL, 0)  # a grace timer must not outlive the job
        outcome.seconds = round(time.perf_counter() - started, 3)
        self._unsettled = outcome  # until its outcome is written: a reconnect settles it
        self._settle(conn, outcome)

    def _settle(self, conn: psycopg.Connection, outcome: _Outcome) -> None:
        """Write a finished job's outcome: succeeded, or retried as its failure allows."""
        self._announce()  # before the job's outcome, which the stop may have caused
        job, result = outcome.job, outcome.result
        if result is not None:
            jobs.succeed(conn, job.id, result.run_id)
            # a run the promotion gate rejected is done (not retried), but activated nothing
            event = "rejected" if result.status == "rejected" else "succeeded"
            ranked = getattr(result, "ranker", None)  # the ranker stage's outcome, if any
            extra: dict[str, object] = {"error": result.error} if result.error else {}
            if isinstance(result, foldin.FoldInResult):
                extra.update(users=result.users or 0, new_items=result.new_items,
                             content_items=result.content_items,
                             content_users=result.content_users)
            if ranked is not None:
                extra.update(ranker=ranked["status"], **(
                    {"ranker_reason": ranked["reason"]} if ranked["reason"] else {}))
            self.events(event, worker=self.name, job=job.id, model=job.model,
                        run=result.run_id, version=result.version, seconds=outcome.seconds,
                        stages=result.stages, **extra)
        else:
            run = jobs.run_of(conn, job.id)
            if run is not None:
                conn.execute(queries.text("job_set_run"), {"job_id": job.id, "run_id": run[0]})
            # a lost connection or a shutdown is not the job's fault; what cannot succeed
            # (configuration, data, permissions) is not tried again
            status = jobs.retry(
                conn, job.id, outcome.error, backoff=self.options.backoff,
                max_attempts=0 if outcome.kind == "permanent" else self.options.max_attempts,
                count_attempt=outcome.kind in ("permanent", "transient"), worker_id=self._id)
            event = "released" if outcome.kind in ("released", "disconnected") else "failed"
            if event == "failed":
                self._failures += 1
            self.events(event, worker=self.name, job=job.id, model=job.model,
                        error=outcome.error, job_status=status, retry=outcome.kind,
                        seconds=outcome.seconds)
        self._unsettled = None
        self._state = "stopping" if self._stopping else "idle"
        jobs.heartbeat(conn, self._id, self._state)

    def _run_job(self, conn: psycopg.Connection, job: jobs.Job
                 ) -> training.RunResult | foldin.FoldInResult:
        def progress(stage: str, state: str) -> None:
            self.events("stage", worker=self.name, job=job.id, model=job.model, stage=stage,
                        state=state)

        model = get_model(conn, job.model)
        if job.mode == "incremental" and model.active_version is not None:
            # implicit's solvers must not run on a multithreaded BLAS (implicit warns when it
            # finds one); a fold-in is mostly those solvers, so BLAS stays single-threaded for it
            with threadpool_limits(1, "blas"):
                return foldin.fold_in(self.url, job.model, progress=progress, worker=self.name)
        return training.train(self.url, job.model, progress=progress, worker=self.name)
