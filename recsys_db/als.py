"""The ALS stage: implicit's CPU alternating least squares on a weighted users x items matrix.

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


def fit(matrix: sp.csr_matrix, params: dict[str, Any],
        on_iteration: Callable[[int, float], None] | None = None,
        ) -> tuple[np.ndarray, np.ndarray]:
    """Fit on a weighted users x items matrix; returns (user, item) factors as float32.

    Raises TrainingError when the fit fails or its factors are not finite.
    """
    def callback(iteration: int, elapsed: float, _loss: float | None) -> None:
        if on_iteration is not None:
            on_iteration(iteration, elapsed)

    try:
        with solver(int(params["factors"]), params) as als:
            als.fit(matrix, show_progress=False, callback=callback)
    except ModelFitError as exc:
        raise TrainingError(f"als fit failed: {exc}") from exc
    user_factors = np.asarray(als.user_factors, dtype=np.float32)
    item_factors = np.asarray(als.item_factors, dtype=np.float32)
    check_finite(user_factors, item_factors, what="als fit",
                 hint="lower alpha or raise regularization")
    return user_factors, item_factors
