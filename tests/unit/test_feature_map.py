"""The feature map's automatic ridge penalty: cross-validated, from a fixed grid."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_db import features


def design(rows: int, columns: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, columns))
    return sp.csr_matrix(np.hstack([values, np.ones((rows, 1))]))


def test_exact_linear_content_gets_the_smallest_penalty() -> None:
    x = design(400, 20, 1)
    weights = np.random.default_rng(2).normal(size=(21, 8))
    assert features.choose_regularization(x, x @ weights) == features.REGULARIZATION_GRID[0]


def test_content_that_predicts_nothing_gets_the_largest_penalty() -> None:
    x = design(60, 40, 3)
    noise = np.random.default_rng(4).normal(size=(60, 8))
    assert features.choose_regularization(x, noise) == features.REGULARIZATION_GRID[-1]


def test_noisy_content_gets_a_penalty_between_and_the_choice_is_repeatable() -> None:
    x = design(300, 60, 5)
    rng = np.random.default_rng(6)
    targets = x @ (0.1 * rng.normal(size=(61, 8))) + rng.normal(size=(300, 8))
    chosen = features.choose_regularization(x, targets)
    assert features.REGULARIZATION_GRID[0] < chosen < features.REGULARIZATION_GRID[-1]
    assert features.choose_regularization(x, targets) == chosen


def test_too_few_keys_or_too_many_columns_fall_back_to_one() -> None:
    assert features.choose_regularization(design(1, 3, 7), np.ones((1, 2))) == 1.0
    wide = sp.csr_matrix((3, features.MAX_AUTO_COLUMNS + 1))
    assert features.choose_regularization(wide, np.ones((3, 2))) == 1.0
