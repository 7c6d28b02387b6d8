"""The promotion gate: may a trained version be activated, judged by its holdout metrics?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recsys_db.evaluation import Report


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


def promotion_gate(params: dict[str, Any], report: Report) -> GateVerdict | None:
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
