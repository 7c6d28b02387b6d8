"""A full training run: a new version of a model, trained on all its data and activated.

Stages: refresh, load, holdout (fit on the training part of a split) and evaluate (model and
popularity baseline, stored in recsys.metric), the promotion gate, then weight and fit on all
data, write, precompute (while the server builds the index), features, ranker (when the model
declares one: ``ranker``), activate. The version
put into production is always fitted on all interactions; the holdout fit measures the
configuration, and the production fit continues from its factors, in fewer rounds than a fresh
fit (``als.refit_iterations``). The run's record, lock, timing and failure handling are ``run``'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg

from recsys_db import (
    als,
    evaluation,
    features,
    gate,
    gram,
    index,
    load,
    precompute,
    queries,
    ranker,
    run,
    store,
    weighting,
)
from recsys_db import watermark as marks
from recsys_db.model import ModelConfig

log = logging.getLogger(__name__)


@dataclass
class RunResult(run.RunRecord):
    """Outcome of a training run, as recorded in ``recsys.run``."""

    dropped_versions: list[int] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    precomputed: dict[str, int] = field(default_factory=dict)
    cold: dict[str, int] = field(default_factory=dict)  # feature-mapped items / users added
    # the promotion gate's verdict (GateVerdict.as_dict); None when no gate was evaluated
    gate: dict[str, Any] | None = None
    # the ranker stage's outcome (ranker.Outcome.as_dict); None when the model has no ranker
    ranker: dict[str, Any] | None = None


def train(url: str, model_name: str, *, progress: run.Progress | None = None,
          worker: str | None = None) -> RunResult:
    """Train a new version of a model and activate it.

    A failure at any stage is recorded on the run (status 'failed', error text) and re-raised;
    the active version stays as it was. ``progress`` is called with (stage, 'start') and
    (stage, its time) around each stage; an exception it raises is logged, never fails the run.
    """
    with run.session(url, model_name) as session:
        model = session.model
        with session.run("full", model.params, lambda run_id: RunResult(run_id, model.name),
                         progress=progress, worker=worker) as current:
            _stages(session.conn, model, current)
        session.conn.execute(queries.text("load_drop_maps"))
        _prune_quietly(session.conn, model)
    return current.record


def _stages(conn: psycopg.Connection, model: ModelConfig, current: run.Run[RunResult]) -> None:
    result, stage = current.record, current.stage
    als.preflight(model.params)
    since = marks.before_refresh(conn, model)
    with stage("refresh"):
        load.refresh(conn, model)
    with stage("load"):
        data = load.read(conn, model)
    result.rows_read = data.rows_read
    result.rows_skipped_null = data.rows_skipped_null
    result.rows_skipped_event = data.rows_skipped_event
    result.users, result.items, result.nnz = data.users, data.items, int(data.matrix.nnz)
    holdout = _holdout(conn, model, data, current)
    if result.status == "rejected":
        return
    with stage("weight"):
        weighted = weighting.apply(data.matrix, model.params)
    with stage("fit"):
        user_factors, item_factors = als.fit(weighted, model.params, start=holdout)
    tables = store.allocate_version(conn, model, result.run_id)
    result.version = tables.version
    current.on_failure(lambda fresh: _discard(fresh, model, tables))
    with stage("write"):
        store.write(conn, tables, data, user_factors, item_factors)
    build = index.IndexBuild(current.session.url, tables, data, user_factors, item_factors)
    try:
        with stage("precompute"):
            result.precomputed = _precompute(conn, model, tables, data, user_factors,
                                             item_factors)
    except BaseException:
        build.cancel()
        raise
    build.wait()
    current.background_stage("index", build.seconds, "alongside precompute")
    with stage("features"):
        result.cold = features.apply(conn, model, result.run_id, tables.version, tables.user_table,
                                     tables.item_table, user_factors, item_factors)
    if result.precomputed and not result.cold.get("items"):
        # cold items are in no precomputed row: with them, searches must run live
        precompute.serve(conn, model.id, tables.version, model.params, result.precomputed)
    spec = ranker.declared(conn, model.id)
    if spec is not None:
        with stage("ranker"):
            result.ranker = ranker.train(conn, model, spec, result.run_id, tables, data,
                                         user_factors, item_factors).as_dict()
    gram.write_version(conn, tables, item_factors, model.params)
    with stage("activate"):
        store.write_item_weights(conn, tables, data)
        result.dropped_versions = store.activate(conn, model, tables, data)
    marks.record(conn, model.id, tables.version, since)


def _holdout(conn: psycopg.Connection, model: ModelConfig, data: load.Interactions,
             current: run.Run[RunResult]) -> tuple[np.ndarray, np.ndarray] | None:
    """Fit on a holdout split, evaluate and store the metrics, and apply the promotion gate;
    a rejected run gets status 'rejected'. Returns the holdout model's factors, from which the
    production fit continues (``als.refit_iterations``); None without a holdout split."""
    if evaluation.split_kind(model) == "off":
        return None
    result = current.record
    with current.stage("holdout"):
        split = evaluation.make_split(conn, model, data)
        assert split is not None
        user_factors, item_factors = als.fit(weighting.apply(split.train, model.params),
                                             model.params)
    with current.stage("evaluate"):
        report = evaluation.evaluate(split, user_factors, item_factors,
                                     int(model.params["eval_k"]))
    result.metrics = report.metrics
    verdict = gate.promotion_gate(model.params, report)
    result.gate = verdict.as_dict() if verdict is not None else None
    evaluation.store(conn, result.run_id, report, verdict.rule if verdict else None,
                     verdict.passed if verdict else None)
    if verdict is not None and not verdict.passed:
        result.status, result.error = "rejected", verdict.reason
        # info, not a warning: the caller reports it (the CLI with exit 3, the worker as an
        # event)
        log.info("%s: run %d %s", model.name, result.run_id, verdict.reason)
    return user_factors, item_factors


def _precompute(conn: psycopg.Connection, model: ModelConfig, tables: store.VersionTables,
                data: load.Interactions, user_factors: np.ndarray,
                item_factors: np.ndarray) -> dict[str, int]:
    if not (int(model.params["recommendations_k"]) or int(model.params["similar_items_k"])):
        return {}
    user_keys = [row[0] for row in conn.execute(queries.text("load_user_keys"))]
    item_keys = [row[0] for row in conn.execute(queries.text("load_item_keys"))]
    return precompute.write(conn, model.id, tables.version, model.params, user_factors,
                            item_factors, data.matrix, user_keys, item_keys)


def _discard(conn: psycopg.Connection, model: ModelConfig, tables: store.VersionTables) -> None:
    precompute.discard(conn, model.id, tables.version)
    store.discard(conn, model, tables)


def _prune_quietly(conn: psycopg.Connection, model: ModelConfig) -> None:
    try:
        precompute.prune(conn)
    except psycopg.Error as exc:  # leftovers only cost space; the next run tries again
        log.warning("%s: could not drop stale precomputed partitions: %s", model.name, exc)
