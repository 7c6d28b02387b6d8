"""One training run: refresh, load, weight, fit, write, activate — recorded in recsys.run."""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.recommender_base import ModelFitError
from psycopg.types.json import Jsonb
from threadpoolctl import threadpool_limits

from recsys_db import db, queries, source, store, weighting
from recsys_db.errors import RecsysError, TrainingError

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]


@dataclass
class RunResult:
    """Outcome of a training run, as recorded in ``recsys.run``."""

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
    dropped_versions: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, used by ``--json``."""
        return dict(self.__dict__)


def worker_name() -> str:
    """Identifies this process in runs and logs: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def model_lock_key(model_id: int) -> int:
    """Advisory lock key that serialises training runs of one model."""
    return zlib.crc32(f"recsys-db model {model_id}".encode())


def fit(matrix: sp.csr_matrix, params: dict[str, Any],
        on_iteration: Callable[[int, float], None] | None = None,
        ) -> tuple[np.ndarray, np.ndarray]:
    """Fit implicit's CPU ALS on a weighted users x items matrix; returns (user, item) factors.

    Raises TrainingError when the factors are not finite.
    """
    def callback(iteration: int, elapsed: float, _loss: float | None) -> None:
        if on_iteration is not None:
            on_iteration(iteration, elapsed)

    try:
        # implicit runs its own threads; a multithreaded BLAS underneath only contends with them.
        with threadpool_limits(1, "blas"):
            als = AlternatingLeastSquares(
                factors=int(params["factors"]),
                regularization=float(params["regularization"]),
                alpha=1.0,  # confidence is already applied by weighting.apply
                iterations=int(params["iterations"]),
                random_state=int(params["random_state"]),
            )
            als.fit(matrix, show_progress=False, callback=callback)
    except ModelFitError as exc:
        raise TrainingError(f"als fit failed: {exc}") from exc
    user_factors = np.asarray(als.user_factors, dtype=np.float32)
    item_factors = np.asarray(als.item_factors, dtype=np.float32)
    if not (np.isfinite(user_factors).all() and np.isfinite(item_factors).all()):
        raise TrainingError("als fit produced non-finite factors; lower alpha or raise "
                            "regularization")
    return user_factors, item_factors


class _Stages:
    def __init__(self, result: RunResult, progress: Progress | None):
        self.result = result
        self.progress = progress

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.progress:
            self.progress(name, "start")
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.result.stages[name] = round(seconds, 4)
            log.info("%s: %s took %.3fs", self.result.model, name, seconds)
            if self.progress:
                self.progress(name, f"{seconds:.2f}s")


def _finish(url: str, result: RunResult) -> None:
    # A fresh connection: the training connection may be the thing that broke.
    with db.connect(url, vector=False) as conn:
        conn.execute(queries.text("finish_run"), {
            "run_id": result.run_id, "status": result.status, "version": result.version,
            "rows_read": result.rows_read, "rows_skipped_null": result.rows_skipped_null,
            "rows_skipped_event": result.rows_skipped_event, "users": result.users,
            "items": result.items, "nnz": result.nnz, "stages": Jsonb(result.stages),
            "error": result.error})


def train(url: str, model_name: str, *, progress: Progress | None = None,
          worker: str | None = None) -> RunResult:
    """Train a new version of a model and activate it.

    A failure at any stage is recorded on the run (status 'failed', error text) and re-raised;
    the active version stays as it was.
    """
    with db.connect(url) as conn:
        model = source.get_model(conn, model_name)
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)",
                              (model_lock_key(model.id),)).fetchone()
        if not (locked and locked[0]):
            raise RecsysError(f'model "{model_name}" is already being trained')
        row = conn.execute(queries.text("start_run"), {
            "model_id": model.id, "kind": "full", "worker": worker or worker_name(),
            "params": Jsonb(model.params)}).fetchone()
        assert row is not None
        result = RunResult(run_id=int(row[0]), model=model.name)
        stage = _Stages(result, progress)
        tables: store.VersionTables | None = None
        try:
            with stage("refresh"):
                source.refresh(conn, model)
            with stage("load"):
                data = source.load(conn, model)
            result.rows_read = data.rows_read
            result.rows_skipped_null = data.rows_skipped_null
            result.rows_skipped_event = data.rows_skipped_event
            result.users, result.items, result.nnz = data.users, data.items, int(data.matrix.nnz)
            with stage("weight"):
                weighted = weighting.apply(data.matrix, model.params)
            with stage("fit"):
                user_factors, item_factors = fit(weighted, model.params)
            tables = store.allocate_version(conn, model, result.run_id)
            result.version = tables.version
            with stage("write"):
                store.write(conn, tables, data, user_factors, item_factors)
            with stage("activate"):
                result.dropped_versions = store.activate(conn, model, tables, data)
            result.status = "succeeded"
        except BaseException as exc:
            result.status = "failed"
            result.error = str(exc).strip() or type(exc).__name__
            log.error("%s: run %d failed: %s", model.name, result.run_id, result.error)
            if tables is not None:
                _discard_quietly(url, model, tables)
            _finish(url, result)
            raise
        _finish(url, result)
        conn.execute(queries.text("drop_maps"))
    return result


def _discard_quietly(url: str, model: source.ModelConfig, tables: store.VersionTables) -> None:
    try:
        with db.connect(url) as conn:
            store.discard(conn, model, tables)
    except psycopg.Error as exc:  # the run is failed already; say so and move on
        log.warning("%s: could not remove tables of failed version %d: %s",
                    model.name, tables.version, exc)
