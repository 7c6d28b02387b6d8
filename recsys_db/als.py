"""The ALS stage: implicit's CPU alternating least squares on a weighted users x items matrix
(or Spark's, for models with ``engine = 'spark'``: ``spark_als``).

Full training fits both sides (``fit``); fold-in holds the item factors and solves for some users
and new items (``solver``). Confidence is applied beforehand by ``weighting.apply``, so
implicit's own ``alpha`` stays 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.recommender_base import ModelFitError
from threadpoolctl import threadpool_limits

from recsys_db.errors import TrainingError


@contextmanager
def solver(factors: int, params: dict[str, Any]) -> Iterator[AlternatingLeastSquares]:
    """An implicit ALS model with the params' regularization, iterations and random state.

    implicit runs its own threads (and warns at construction when BLAS runs threads of its
    own): BLAS is limited to one thread while the block runs.
    """
    with threadpool_limits(1, "blas"):
        yield AlternatingLeastSquares(
            factors=factors,
            regularization=float(params["regularization"]),
            alpha=1.0,  # confidence is already applied by weighting.apply
            iterations=int(params["iterations"]),
            random_state=int(params["random_state"]),
        )


def check_finite(*factors: np.ndarray, what: str, hint: str) -> None:
    """Raise TrainingError when any of the factor arrays holds NaN or infinity."""
    if not all(np.isfinite(array).all() for array in factors):
        raise TrainingError(f"{what} produced non-finite factors; {hint}")


def refit_iterations(iterations: int) -> int:
    """Rounds of a fit that continues from a holdout model's factors (``fit(start=...)``).

    A third of the model's iterations, at least two: from the factors of the model fitted on
    the training part of an evaluation split (which differs from all data only in the held-out
    interactions), that many rounds on all data reach the training loss of a fresh fit with all
    the iterations (measured: within 0.03% on MovieLens 100K, below it on the 1m synthetic log;
    BENCHMARKS.md reports the ratio on each run).
    """
    return max(2, -(-iterations // 3))


def preflight(params: dict[str, Any]) -> None:
    """Check what the params' engine needs before a run reads its source (for ``spark``: the
    settings, pyspark, java, the master), so that a run fails at once, not after its load."""
    if params.get("engine", "implicit") == "spark":
        from recsys_db import spark_als

        spark_als.preflight()


def fit(matrix: sp.csr_matrix, params: dict[str, Any],
        on_iteration: Callable[[int, float], None] | None = None,
        start: tuple[np.ndarray, np.ndarray] | None = None,
        ) -> tuple[np.ndarray, np.ndarray]:
    """Fit on a weighted users x items matrix; returns (user, item) factors as float32.

    With ``start`` (user and item factors of the matrix's shape) the fit continues from them
    for ``refit_iterations`` rounds instead of starting from random factors. With
    ``engine = 'spark'`` the fit runs on Spark (``spark_als``), which has no warm start.
    Raises TrainingError when the fit fails or its factors are not finite.
    """
    if params.get("engine", "implicit") == "spark":
        from recsys_db import spark_als

        user_factors, item_factors = spark_als.fit(matrix, params)
        check_finite(user_factors, item_factors, what="spark als fit",
                     hint="lower alpha or raise regularization")
        return user_factors, item_factors

    def callback(iteration: int, elapsed: float, _loss: float | None) -> None:
        if on_iteration is not None:
            on_iteration(iteration, elapsed)

    if start is not None:
        params = {**params, "iterations": refit_iterations(int(params["iterations"]))}
    try:
        with solver(int(params["factors"]), params) as als:
            if start is not None:
                als.user_factors = np.array(start[0], dtype=np.float32)
                als.item_factors = np.array(start[1], dtype=np.float32)
            als.fit(matrix, show_progress=False, callback=callback)
    except ModelFitError as exc:
        raise TrainingError(f"als fit failed: {exc}") from exc
    user_factors = np.asarray(als.user_factors, dtype=np.float32)
    item_factors = np.asarray(als.item_factors, dtype=np.float32)
    check_finite(user_factors, item_factors, what="als fit",
                 hint="lower alpha or raise regularization")
    return user_factors, item_factors
