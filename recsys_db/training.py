"""One training run, recorded in recsys.run.

refresh, load, holdout (fit on the training part of a split) and evaluate (model and popularity
baseline, stored in recsys.metric), the promotion gate, then weight and fit on all data, write,
precompute (while the server builds the index), features, activate. The version put into
production is always refit on all interactions; the holdout fit only measures the configuration.
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
from typing import Any

import numpy as np
import psycopg
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.recommender_base import ModelFitError
from psycopg.types.json import Jsonb
from threadpoolctl import threadpool_limits

from recsys_db import (
    copybin,
    db,
    evaluation,
    features,
    install,
    precompute,
    queries,
    source,
    store,
    weighting,
)
from recsys_db import watermark as marks
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
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    precomputed: dict[str, int] = field(default_factory=dict)
    cold: dict[str, int] = field(default_factory=dict)  # feature-mapped items / users added
    seconds: float = 0.0  # wall-clock time of the whole run (stages may overlap)
    # the promotion gate's verdict (GateVerdict.as_dict); None when no gate was evaluated
    gate: dict[str, Any] | None = None

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


@dataclass(frozen=True)
class GateVerdict:
    """What the promotion gate checked, and why it blocked the version (None: it passed).

    ``metric`` is the gated metric at the evaluation's k (``ndcg@10``), ``value`` the model's
    holdout value, ``minimum`` the ``gate_min`` and ``baseline`` the popularity baseline's
    value; ``value`` and ``baseline`` are None when nothing could be measured.
    """

    rule: str
    reason: str | None
    metric: str = ""
    value: float | None = None
    minimum: float | None = None
    baseline: float | None = None

    @property
    def passed(self) -> bool:
        """Whether the version may be activated."""
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``RunResult.gate``."""
        return {"rule": self.rule, "metric": self.metric, "value": self.value,
                "minimum": self.minimum, "baseline": self.baseline, "passed": self.passed,
                "reason": self.reason}


def promotion_gate(params: dict[str, Any], report: evaluation.Report) -> GateVerdict | None:
    """Check the model's holdout metric against ``gate_min`` and the popularity baseline.

    Returns None when the params set no ``gate_metric``.
    """
    metric = params.get("gate_metric")
    if not metric:
        return None
    name = f"{metric}@{report.k}"
    minimum = params.get("gate_min")
    rules = ([f"{name} >= {minimum}"] if minimum is not None else []) + (
        [f"{name} >= popular"] if params["gate_baseline"] else [])
    rule = " and ".join(rules) or f"{name} evaluated"
    floor = float(minimum) if minimum is not None else None
    if not report.metrics:
        return GateVerdict(rule, f"not activated: no user has enough interactions to hold "
                                 f"out, so {name} cannot be measured", name, None, floor, None)
    value = report.value("als", metric)
    problems = []
    if floor is not None and value < floor:
        problems.append(f"below gate_min {minimum}")
    baseline = report.value("popular", metric)
    if params["gate_baseline"] and value < baseline:
        problems.append(f"below the popularity baseline {baseline:.6g}")
    reason = f"not activated: {name} {value:.6g} is " + " and ".join(problems) \
        if problems else None
    return GateVerdict(rule, reason, name, float(value), floor, float(baseline))


def effective_params(conn: psycopg.Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Stored params merged over the current defaults (models created by older releases
    lack newer parameters) and validated."""
    row = conn.execute(queries.text("quality_effective_params"),
                       {"params": Jsonb(params)}).fetchone()
    assert row is not None
    return dict(row[0])


def _holdout(conn: psycopg.Connection, model: source.ModelConfig, data: source.Interactions,
             stage: _Stages) -> evaluation.Report | None:
    if evaluation.split_kind(model) == "off":
        return None
    with stage("holdout"):
        split = evaluation.make_split(conn, model, data)
        assert split is not None
        user_factors, item_factors = fit(weighting.apply(split.train, model.params), model.params)
    with stage("evaluate"):
        return evaluation.evaluate(split, user_factors, item_factors, int(model.params["eval_k"]))


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
        except Exception as exc:  # output must never fail a training
            self.progress = None
            log.warning("%s: progress reporting failed and is off for this run: %s: %s",
                        self.model, type(exc).__name__, exc)


class _Stages:
    def __init__(self, result: RunResult, progress: Progress | None):
        self.result = result
        self.progress = SafeProgress(result.model, progress)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.progress(name, "start")
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.result.stages[name] = round(seconds, 4)
            log.info("%s: %s took %.3fs", self.result.model, name, seconds)
            self.progress(name, f"{seconds:.2f}s")

    def record(self, name: str, seconds: float, note: str) -> None:
        """A stage that ran in the background, reported once it is done."""
        self.result.stages[name] = round(seconds, 4)
        log.info("%s: %s took %.3fs (%s)", self.result.model, name, seconds, note)
        self.progress(name, "start")
        self.progress(name, f"{seconds:.2f}s ({note})")


FINISH_RETRY_SECONDS = 30.0


def record_finish(url: str, model: str, values: dict[str, Any]) -> None:
    """Write a run's outcome (the ``finish_run`` parameters) on a fresh connection.

    The training connection may be the thing that broke; when the server itself went away (a
    restart), keep trying for a while so that the run does not stay 'running'.
    """
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    pause = 0.1
    while True:
        try:
            with db.connect(url, vector=False, pinned=True) as conn:
                conn.execute(queries.text("finish_run"), values)
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("%s: cannot record run %d yet (%s); retrying", model, values["run_id"],
                        str(exc).strip().splitlines()[0])
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _finish(url: str, result: RunResult) -> None:
    record_finish(url, result.model, {
        "run_id": result.run_id, "status": result.status, "version": result.version,
        "rows_read": result.rows_read, "rows_skipped_null": result.rows_skipped_null,
        "rows_skipped_event": result.rows_skipped_event, "users": result.users,
        "items": result.items, "nnz": result.nnz, "stages": Jsonb(result.stages),
        "error": result.error})


def _watermark(conn: psycopg.Connection, model: source.ModelConfig) -> str | None:
    # Read before the refresh: rows that arrive meanwhile are newer and get folded in later.
    try:
        return marks.current(conn, model)
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return None  # a materialized view not populated yet; the refresh fills it


def abandon(conn: psycopg.Connection, model: source.ModelConfig) -> tuple[list[int], list[int]]:
    """Clean up after runs of this model whose process died: mark their runs failed and
    discard their half-built versions. Call it only while holding the model's training lock:
    then no run of the model can be alive. Returns (failed run ids, discarded versions)."""
    runs = [int(r[0]) for r in conn.execute(queries.text("job_fail_abandoned_runs"),
                                            {"model_id": model.id}).fetchall()]
    versions = conn.execute(queries.text("job_building_versions"),
                            {"model_id": model.id}).fetchall()
    for version, user_table, item_table in versions:
        store.discard(conn, model, store.VersionTables(
            model_id=model.id, version=int(version), user_table=user_table,
            item_table=item_table, index=str(model.params.get("index", "auto"))))
    if runs or versions:
        log.warning("%s: cleaned up after a dead run: runs %s failed, versions %s discarded",
                    model.name, runs, [int(v[0]) for v in versions])
    return runs, [int(v[0]) for v in versions]


def train(url: str, model_name: str, *, progress: Progress | None = None,
          worker: str | None = None) -> RunResult:
    """Train a new version of a model and activate it.

    A failure at any stage is recorded on the run (status 'failed', error text) and re-raised;
    the active version stays as it was. ``progress`` is called with (stage, 'start') and
    (stage, its time) around each stage; an exception it raises is logged, never fails the run.
    """
    started = time.perf_counter()
    with db.connect(url, pinned=True) as conn:
        install.check_schema(conn)
        model = source.get_model(conn, model_name)
        model = replace(model, params=effective_params(conn, model.params))
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)",
                              (model_lock_key(model.id),)).fetchone()
        if not (locked and locked[0]):
            raise RecsysError(f'model "{model_name}" is already being trained')
        abandon(conn, model)
        row = conn.execute(queries.text("start_run"), {
            "model_id": model.id, "kind": "full", "worker": worker or worker_name(),
            "params": Jsonb(model.params)}).fetchone()
        assert row is not None
        result = RunResult(run_id=int(row[0]), model=model.name)
        stage = _Stages(result, progress)
        tables: store.VersionTables | None = None
        try:
            # before anything reads the source: may its declarer, and may this worker as it?
            source.check_access(conn, model)
            since = _watermark(conn, model)
            with stage("refresh"):
                source.refresh(conn, model)
            with stage("load"):
                data = source.load(conn, model)
            result.rows_read = data.rows_read
            result.rows_skipped_null = data.rows_skipped_null
            result.rows_skipped_event = data.rows_skipped_event
            result.users, result.items, result.nnz = data.users, data.items, int(data.matrix.nnz)
            report = _holdout(conn, model, data, stage)
            if report is not None:
                result.metrics = report.metrics
                verdict = promotion_gate(model.params, report)
                result.gate = verdict.as_dict() if verdict is not None else None
                evaluation.store(conn, result.run_id, report,
                                 verdict.rule if verdict else None,
                                 verdict.passed if verdict else None)
                if verdict is not None and not verdict.passed:
                    result.status, result.error = "rejected", verdict.reason
                    log.warning("%s: run %d %s", model.name, result.run_id, verdict.reason)
            if result.status != "rejected":
                with stage("weight"):
                    weighted = weighting.apply(data.matrix, model.params)
                with stage("fit"):
                    user_factors, item_factors = fit(weighted, model.params)
                tables = store.allocate_version(conn, model, result.run_id)
                result.version = tables.version
                with stage("write"):
                    store.write(conn, tables, data, user_factors, item_factors)
                build = store.IndexBuild(url, tables, data, user_factors, item_factors)
                try:
                    with stage("precompute"):
                        result.precomputed = _precompute(conn, model, tables, data,
                                                         user_factors, item_factors)
                except BaseException:
                    build.cancel()
                    raise
                build.wait()
                stage.record("index", build.seconds, "alongside precompute")
                with stage("features"):
                    result.cold = features.apply(conn, model, result.run_id, tables.user_table,
                                                 tables.item_table, user_factors, item_factors)
                if result.precomputed and not result.cold.get("items"):
                    # cold items are in no precomputed row: with them, searches must run live
                    precompute.serve(conn, model.id, tables.version, model.params,
                                     result.precomputed)
                with stage("activate"):
                    store_item_weights(conn, tables, data)
                    result.dropped_versions = store.activate(conn, model, tables, data)
                marks.record(conn, model.id, tables.version, since)
                result.status = "succeeded"
        except BaseException as exc:
            result.status = "failed"
            result.error = str(exc).strip() or type(exc).__name__
            log.error("%s: run %d failed: %s", model.name, result.run_id, result.error)
            if tables is not None:
                _discard_quietly(url, model, tables)
            result.seconds = round(time.perf_counter() - started, 4)
            _finish(url, result)
            raise
        _finish(url, result)
        conn.execute(queries.text("drop_maps"))
        _prune_quietly(conn, model)
    result.seconds = round(time.perf_counter() - started, 4)
    return result


FLOAT8_OID = 701


def item_weight_copy(model_id: int, version: int, weights: np.ndarray) -> bytes:
    """Binary COPY body of one ``recsys.version_item_weight`` row (int4, int4, float8[])."""
    values = np.zeros(len(weights), dtype=[("length", ">i4"), ("value", ">f8")])
    values["length"] = 8
    values["value"] = weights
    array = (np.array([1, 0, FLOAT8_OID, len(weights), 1], dtype=">i4").tobytes()
             if len(weights) else np.array([0, 0, FLOAT8_OID], dtype=">i4").tobytes())
    array += values.tobytes()
    row = (np.array([3], dtype=">i2").tobytes()
           + np.array([4, model_id, 4, version, len(array)], dtype=">i4").tobytes() + array)
    return copybin.HEADER + row + copybin.TRAILER


def store_item_weights(conn: psycopg.Connection, tables: store.VersionTables,
                       data: source.Interactions) -> None:
    """Keep the version's summed raw weight per item index (before weighting) in
    ``recsys.version_item_weight``: the statistics of SQL fold-in (``recsys._version_stats``,
    bm25) come from there instead of from a read of the source."""
    weights = np.asarray(data.matrix.sum(axis=0), dtype=np.float64).ravel()
    with conn.cursor() as cur, cur.copy(queries.text("copy_item_weight")) as copy:
        copy.write(item_weight_copy(tables.model_id, tables.version, weights))


def _prune_quietly(conn: psycopg.Connection, model: source.ModelConfig) -> None:
    try:
        precompute.prune(conn)
    except psycopg.Error as exc:  # leftovers only cost space; the next run tries again
        log.warning("%s: could not drop stale precomputed partitions: %s", model.name, exc)


def _precompute(conn: psycopg.Connection, model: source.ModelConfig,
                tables: store.VersionTables, data: source.Interactions,
                user_factors: np.ndarray, item_factors: np.ndarray) -> dict[str, int]:
    if not (int(model.params["recommendations_k"]) or int(model.params["similar_items_k"])):
        return {}
    user_keys = [row[0] for row in conn.execute(queries.text("quality_user_keys"))]
    item_keys = [row[0] for row in conn.execute(queries.text("quality_item_keys"))]
    return precompute.write(conn, model.id, tables.version, model.params, user_factors,
                            item_factors, data.matrix, user_keys, item_keys)


def _discard_quietly(url: str, model: source.ModelConfig, tables: store.VersionTables) -> None:
    try:
        with db.connect(url, pinned=True) as conn:
            precompute.discard(conn, model.id, tables.version)
            store.discard(conn, model, tables)
    except psycopg.Error as exc:  # the run is failed already; say so and move on
        log.warning("%s: could not remove tables of failed version %d: %s",
                    model.name, tables.version, exc)
