"""The life of a run, the same for full training, fold-in, tuning trials and any later engine.

``session`` connects, checks the schema revision, finds the model with its effective params,
takes the model's training lock (so that runs of one model never overlap) and cleans up after
runs of it whose process died. ``Session.run`` records a run in ``recsys.run``, checks that the
model's declarer may read its source, times its stages, and finishes the run: its outcome is
written on a fresh connection (retried while the server restarts), a failure is recorded with
its error, clean-ups registered by the run are called, and the exception goes on up.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from recsys_db import access, db, install, queries, store
from recsys_db.errors import ConfigError, RecsysError
from recsys_db.model import ModelConfig, effective_params, get_model

log = logging.getLogger(__name__)

# called with (stage, 'start') and (stage, its time) around each stage of a run
Progress = Callable[[str, str], None]

# how long a run's outcome is retried when the server is away (a restart)
FINISH_RETRY_SECONDS = 30.0


def worker_name() -> str:
    """Identifies this process in runs and logs: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def model_lock_key(model_id: int) -> int:
    """Advisory lock key that serialises the runs of one model."""
    return zlib.crc32(f"recsys-db model {model_id}".encode())


@dataclass
class RunRecord:
    """The columns of ``recsys.run`` a run fills in; the finish writes them."""

    run_id: int
    model: str
    status: str = "running"
    version: int | None = None
    rows_read: int | None = None
    rows_skipped_null: int | None = None
    rows_skipped_event: int | None = None
    users: int | None = None
    items: int | None = None
    nnz: int | None = None
    stages: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0  # wall-clock time of the whole run (stages may overlap)

    def finish_values(self) -> dict[str, Any]:
        """The parameters of the ``run_finish`` query."""
        return {"run_id": self.run_id, "status": self.status, "version": self.version,
                "rows_read": self.rows_read, "rows_skipped_null": self.rows_skipped_null,
                "rows_skipped_event": self.rows_skipped_event, "users": self.users,
                "items": self.items, "nnz": self.nnz, "stages": Jsonb(self.stages),
                "error": self.error}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, used by ``--json``."""
        return dict(self.__dict__)


R = TypeVar("R", bound=RunRecord)


class SafeProgress:
    """Reports stages to a progress callable that can never fail the run it reports on.

    Progress is output (a terminal, a pipe, a log); when reporting raises (a closed pipe:
    ``recsys-db train m | head -1``), the error is logged once and progress is not called
    again, and the run goes on.
    """

    def __init__(self, model: str, progress: Progress | None):
        self.model = model
        self.progress = progress

    def __call__(self, stage: str, state: str) -> None:
        """Report ``state`` of ``stage``, unless reporting failed before."""
        if self.progress is None:
            return
        try:
            self.progress(stage, state)
        except Exception as exc:  # output must never fail a run
            self.progress = None
            log.warning("%s: progress reporting failed and is off for this run: %s: %s",
                        self.model, type(exc).__name__, exc)


class Run(Generic[R]):
    """A run in progress: its record, stage timer and clean-ups."""

    def __init__(self, session: Session, record: R, progress: Progress | None):
        self.session = session
        self.record = record
        self.progress = SafeProgress(record.model, progress)
        self._cleanups: list[Callable[[psycopg.Connection], None]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name``: kept in the run's stages, logged and reported."""
        self.progress(name, "start")
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.record.stages[name] = round(seconds, 4)
            log.info("%s: %s took %.3fs", self.record.model, name, seconds)
            self.progress(name, f"{seconds:.2f}s")

    def background_stage(self, name: str, seconds: float, note: str) -> None:
        """A stage that ran in the background, reported once it is done."""
        self.record.stages[name] = round(seconds, 4)
        log.info("%s: %s took %.3fs (%s)", self.record.model, name, seconds, note)
        self.progress(name, "start")
        self.progress(name, f"{seconds:.2f}s ({note})")

    def on_failure(self, cleanup: Callable[[psycopg.Connection], None]) -> None:
        """Call ``cleanup`` on a fresh connection if the run fails (latest first)."""
        self._cleanups.append(cleanup)

    def _clean_up(self) -> None:
        if not self._cleanups:
            return
        try:
            with db.connect(self.session.url, pinned=True) as conn:
                for cleanup in reversed(self._cleanups):
                    cleanup(conn)
        except psycopg.Error as exc:  # the run is failed already; say so and move on
            log.warning("%s: could not clean up after failed run %d: %s", self.record.model,
                        self.record.run_id, exc)


@dataclass(frozen=True)
class ActiveVersion:
    """The model's active version, as a fold-in works on it."""

    version: int
    user_table: sql.Identifier
    item_table: sql.Identifier
    dims: int
    model: ModelConfig  # with the version's own params


@dataclass
class Session:
    """A connection holding the model's training lock, and the model with effective params."""

    url: str
    conn: psycopg.Connection
    model: ModelConfig

    def check_access(self) -> None:
        """Raise unless the model's declarer may read its source, and this login act as it."""
        access.check_access(self.conn, self.model)

    def active_version(self) -> ActiveVersion:
        """The active version with the params it was trained with (not the model's of today,
        changed by ``tune --apply``, an UPDATE or a rollback since): one version, one set of
        params. Read under the lock, so no training activates another one meanwhile."""
        row = self.conn.execute(queries.text("run_active_version"),
                                {"model_id": self.model.id}).fetchone()
        if row is None:
            raise ConfigError(f'model "{self.model.name}" has no trained version to fold into; '
                              "run a full refresh first")
        version, user_table, item_table, dims, params = row
        model = replace(self.model, active_version=int(version),
                        params=effective_params(self.conn, params))
        return ActiveVersion(int(version), sql.Identifier("recsys", user_table),
                             sql.Identifier("recsys", item_table), int(dims), model)

    @contextmanager
    def run(self, kind: str, params: dict[str, Any], record: Callable[[int], R], *,
            progress: Progress | None = None, worker: str | None = None,
            tuning_id: int | None = None, reads_source: bool = True) -> Iterator[Run[R]]:
        """Record a run of ``kind`` ('full', 'incremental', 'tune') with ``params``.

        ``record`` makes the run's record from its id. Inside the run, first of all, the
        declarer's access to the source is checked (unless the run reads no source:
        ``reads_source=False``, a tuning trial on a split already in memory). The block fills
        the record in; a record still 'running' at the end succeeded. On an exception the run
        is recorded failed with its error, the clean-ups run, and the exception is re-raised.
        """
        started = time.perf_counter()
        row = self.conn.execute(queries.text("run_start"), {
            "model_id": self.model.id, "kind": kind, "worker": worker or worker_name(),
            "params": Jsonb(params), "tuning_id": tuning_id}).fetchone()
        assert row is not None
        current = Run(self, record(int(row[0])), progress)
        result = current.record
        try:
            if reads_source:
                self.check_access()  # before anything reads the source
            yield current
        except BaseException as exc:
            result.status = "failed"
            result.error = str(exc).strip() or type(exc).__name__
            log.error("%s: %s run %d failed: %s", self.model.name, kind, result.run_id,
                      result.error)
            current._clean_up()
            result.seconds = round(time.perf_counter() - started, 4)
            record_finish(self.url, result)
            raise
        if result.status == "running":
            result.status = "succeeded"
        result.seconds = round(time.perf_counter() - started, 4)
        record_finish(self.url, result)


@contextmanager
def session(url: str, model_name: str) -> Iterator[Session]:
    """Connect, check the server takes writes and the schema, find the model and take its
    training lock.

    Raises RecsysError for a read-only server (a hot standby: training runs on the primary),
    ConfigError for an unknown model and RecsysError when a run of the model holds the lock.
    Runs of the model whose process died are cleaned up first (``abandon``).
    """
    with db.connect(url, pinned=True) as conn:
        db.require_writable(conn)
        install.check_schema(conn)
        model = get_model(conn, model_name)
        model = replace(model, params=effective_params(conn, model.params))
        locked = conn.execute(queries.text("run_try_lock"),
                              {"key": model_lock_key(model.id)}).fetchone()
        if not (locked and locked[0]):
            raise RecsysError(f'model "{model_name}" is already being trained')
        abandon(conn, model)
        yield Session(url, conn, model)


def record_finish(url: str, record: RunRecord) -> None:
    """Write a run's outcome on a fresh connection.

    The run's connection may be the thing that broke; when the server itself went away (a
    restart), keep trying for a while so that the run does not stay 'running'.
    """
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    pause = 0.1
    while True:
        try:
            with db.connect(url, vector=False, pinned=True) as conn:
                conn.execute(queries.text("run_finish"), record.finish_values())
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("%s: cannot record run %d yet (%s); retrying", record.model,
                        record.run_id, str(exc).strip().splitlines()[0])
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def abandon(conn: psycopg.Connection, model: ModelConfig) -> tuple[list[int], list[int]]:
    """Clean up after runs of this model whose process died: mark their runs failed and
    discard their half-built versions. Call it only while holding the model's training lock:
    then no run of the model can be alive. Returns (failed run ids, discarded versions)."""
    runs = [int(r[0]) for r in conn.execute(queries.text("run_fail_abandoned"),
                                            {"model_id": model.id}).fetchall()]
    versions = conn.execute(queries.text("run_building_versions"),
                            {"model_id": model.id}).fetchall()
    for version, user_table, item_table in versions:
        store.discard(conn, model, store.VersionTables(
            model_id=model.id, version=int(version), user_table=user_table,
            item_table=item_table, index=str(model.params.get("index", "auto"))))
    if runs or versions:
        log.warning("%s: cleaned up after a dead run: runs %s failed, versions %s discarded",
                    model.name, runs, [int(v[0]) for v in versions])
    return runs, [int(v[0]) for v in versions]
