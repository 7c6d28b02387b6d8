"""Holdout splits computed in Python (no database)."""

from __future__ import annotations

import numpy as np

from recsys_db import evaluation


def test_random_split_is_per_user_and_repeatable() -> None:
    rng = np.random.default_rng(0)
    import scipy.sparse as sp

    matrix = sp.random(200, 50, density=0.2, format="csr", random_state=rng) * 5
    first = evaluation.split_random(matrix, 0.25, 10_000, 7)
    again = evaluation.split_random(matrix, 0.25, 10_000, 7)
    assert (first.test != again.test).nnz == 0
    counts = np.diff(matrix.indptr)
    held = np.diff(first.test.indptr)
    eligible = counts >= 2
    assert (held[eligible] == np.clip(np.rint(0.25 * counts[eligible]), 1,
                                      counts[eligible] - 1)).all()
    assert (held[~eligible] == 0).all()
    assert (first.train + first.test != matrix).nnz == 0
    capped = evaluation.split_random(matrix, 0.25, 30, 7)
    assert len(capped.test_users) == 30

