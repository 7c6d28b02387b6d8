"""Grid search: every combination of training parameters fitted and scored on one split.

Each trial is recorded as a run of kind 'tune' (no version is written) with its holdout metrics
in ``recsys.metric``; the tuning itself, its best trial and whether it was applied to the model
are in ``recsys.tuning`` (views ``recsys.tunings`` and ``recsys.tuning_trials``).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from recsys_db import als, evaluation, load, queries, run, weighting
from recsys_db.errors import ConfigError, EngineError, TrainingError
from recsys_db.model import effective_params

log = logging.getLogger(__name__)

TUNABLE = ("factors", "regularization", "alpha", "iterations", "weighting", "bm25_k1", "bm25_b",
           "random_state")

# called after each trial with (trials done, trials in all, the trial)
TrialProgress = Callable[[int, int, "Trial"], None]


@dataclass
class Trial:
    """One combination of the grid and how it scored."""

    run_id: int
    params: dict[str, Any]
    value: float | None = None
    baseline: float | None = None
    seconds: float = 0.0
    error: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class TuningResult:
    """A finished tuning: trials ranked best first by ``metric`` at ``k``."""

    tuning_id: int
    model: str
    metric: str
    k: int
    trials: list[Trial]
    applied: bool = False

    @property
    def best(self) -> Trial | None:
        """The best trial that produced a score, if any did."""
        return self.trials[0] if self.trials and self.trials[0].value is not None else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, used by ``--json``."""
        return {"tuning_id": self.tuning_id, "model": self.model, "metric": self.metric,
                "k": self.k, "applied": self.applied,
                "trials": [dict(trial.__dict__) for trial in self.trials]}


def _value(name: str, text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word such as bm25
    # JSON, and so the database's checks, cannot carry these: say so here, naming the value
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number within double precision, not {text}")
    return value


def parse_grid(entries: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``name=v1,v2,...`` entries; numbers and booleans are read as JSON, the rest as text.

    Raises ConfigError on a malformed entry, a repeated or untunable name.
    """
    grid: dict[str, list[Any]] = {}
    for entry in entries:
        name, sep, values = entry.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ConfigError(f"grid entry {entry!r} must look like name=value1,value2")
        if name not in TUNABLE:
            raise ConfigError(f'"{name}" cannot be tuned; tunable parameters: '
                              + ", ".join(TUNABLE))
        if name in grid:
            raise ConfigError(f'"{name}" appears twice in the grid')
        grid[name] = [_value(name, value.strip()) for value in values.split(",")]
    if not grid:
        raise ConfigError("the grid is empty; give at least one name=value1,value2")
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in grid order."""
    names = list(grid)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(grid[name] for name in names))]


def tune(url: str, model_name: str, grid: dict[str, list[Any]], *, metric: str = "ndcg",
         apply: bool = False, progress: TrialProgress | None = None) -> TuningResult:
    """Fit and score every combination of ``grid`` on one holdout split of the model's data.

    Parameters
    ----------
    url : str
        Database URL.
    model_name : str
        A model registered with ``recsys.create_model``.
    grid : dict
        Parameter name to the values to try (see ``parse_grid``).
    metric : str
        The holdout metric that ranks the trials (one of ``evaluation.METRICS``).
    apply : bool
        Merge the best combination into the model's params; the next training uses it.
    progress : callable, optional
        Called after each trial.

    Like a training, it checks the schema revision, holds the model's training lock, checks
    that the model's declarer may read its source, refreshes a materialized-view source, and
    reads it as the declarer. A combination
    the parameter validation refuses raises before anything is fitted; a fit that fails is
    recorded on its trial and the search goes on.
    """
    if metric not in evaluation.METRICS:
        raise ConfigError(f'unknown metric "{metric}"; use one of: '
                          + ", ".join(evaluation.METRICS))
    with run.session(url, model_name) as session:
        conn, model = session.conn, session.model
        if evaluation.split_kind(model) == "off":
            raise ConfigError(f'tuning needs a holdout split, and model "{model.name}" has '
                              "eval_split off; set it to auto, random or time")
        candidates = [effective_params(conn, {**model.params, **combo})
                      for combo in combinations(grid)]
        als.preflight(model.params)
        k = int(model.params["eval_k"])
        # the same source handling as a training: the declarer's access is checked, then a
        # materialized view is refreshed, and the source read as the declarer
        session.check_access()
        load.refresh(conn, model)
        data = load.read(conn, model)
        split = evaluation.make_split(conn, model, data)
        conn.execute(queries.text("load_drop_maps"))
        assert split is not None
        row = conn.execute(queries.text("tuning_start"), {
            "model_id": model.id, "metric": metric, "k": k, "grid": Jsonb(grid)}).fetchone()
        assert row is not None
        result = TuningResult(tuning_id=int(row[0]), model=model.name, metric=metric, k=k,
                              trials=[])
        for number, (combo, params) in enumerate(
                zip(combinations(grid), candidates, strict=True), start=1):
            trial = _trial(session, result, combo, params, split, data)
            result.trials.append(trial)
            if progress is not None:
                progress(number, len(candidates), trial)
        result.trials.sort(key=lambda t: (t.value is None, -(t.value or 0.0), t.run_id))
        best = result.best
        if apply and best is not None:
            conn.execute(queries.text("tuning_apply_params"),
                         {"model_id": model.id, "params": Jsonb(best.params)})
            result.applied = True
        conn.execute(queries.text("tuning_finish"), {
            "tuning_id": result.tuning_id, "best_run_id": best.run_id if best else None,
            "best_params": Jsonb(best.params) if best else None, "applied": result.applied})
    return result


def _trial(session: run.Session, result: TuningResult, combo: dict[str, Any],
           params: dict[str, Any], split: evaluation.Split, data: load.Interactions) -> Trial:
    """Fit and score one combination as a run of kind 'tune'; a fit that fails is recorded
    on the trial (and its run), and the search goes on."""
    def record(run_id: int) -> run.RunRecord:
        return run.RunRecord(run_id, session.model.name, rows_read=data.rows_read,
                             rows_skipped_null=data.rows_skipped_null,
                             rows_skipped_event=data.rows_skipped_event,
                             users=split.train.shape[0], items=split.train.shape[1],
                             nnz=int(split.train.nnz))

    # a trial reads no source (the split is in memory): its access was checked once, by tune
    with session.run("tune", params, record, tuning_id=result.tuning_id,
                     reads_source=False) as current:
        trial = Trial(run_id=current.record.run_id, params=combo)
        try:
            with current.stage("trial"):
                user_factors, item_factors = als.fit(weighting.apply(split.train, params),
                                                     params)
                report = evaluation.evaluate(split, user_factors, item_factors, result.k)
        except (TrainingError, EngineError) as exc:
            # recorded on the trial and its run; the search goes on
            current.record.status, current.record.error = "failed", str(exc)
            trial.error = str(exc)
            log.warning("%s: trial %s failed: %s", session.model.name, combo, exc)
        else:
            evaluation.store(session.conn, trial.run_id, report, None, None)
            trial.metrics = report.metrics
            if report.metrics:
                trial.value = report.value("als", result.metric)
                trial.baseline = report.value("popular", result.metric)
    trial.seconds = current.record.stages.get("trial", 0.0)
    return trial
