"""Top-k selection of precomputation: equal to a full sort, ties, NaN, batch sizes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_db import ranking


def test_batches_shrink_for_big_catalogs() -> None:

    assert ranking.batch_size(2_000) == ranking.BATCH_USERS
    assert ranking.batch_size(1_000_000) * 1_000_000 <= ranking.BATCH_SCORES
    assert ranking.batch_size(10**9) == 1



def reference_top_unseen(user_factors: np.ndarray, item_factors: np.ndarray,
                         seen: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full sort of every row by (-score, item index), seen items scored -inf."""
    scores = user_factors @ item_factors.T
    scores[seen.toarray() != 0] = -np.inf
    index = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((index, -scores), axis=1)[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)



@pytest.mark.parametrize(("users", "items", "k"), [
    (300, 5_000, 10), (200, 3_000, 50), (120, 1_682, 10), (50, 40, 30), (40, 7, 3), (30, 5, 5)])
def test_top_unseen_equals_full_sort(users: int, items: int, k: int) -> None:
    rng = np.random.default_rng(users * items + k)
    # few distinct values: many ties, also at the k-th place
    user_factors = rng.integers(-2, 3, (users, 3)).astype(np.float32)
    item_factors = rng.integers(-2, 3, (items, 3)).astype(np.float32)
    user_factors[: users // 2] = rng.standard_normal((users // 2, 3))
    seen = sp.random(users, items, density=0.3, format="lil", random_state=rng, dtype=np.float32)
    seen[0, :] = 1  # all seen
    seen[1, : items - max(1, k // 2)] = 1  # fewer than k unseen
    seen[2, :] = 0
    seen = seen.tocsr()
    ids, scores = ranking.top_unseen(user_factors, item_factors, seen, k)
    expected_ids, expected_scores = reference_top_unseen(user_factors, item_factors, seen, k)
    assert ids.dtype == np.int64 and ids.shape == (users, k)
    np.testing.assert_array_equal(scores, expected_scores)
    np.testing.assert_array_equal(ids, expected_ids)
    assert np.isneginf(scores[0]).all() and np.isfinite(scores[2]).all()



def test_top_k_ranks_nan_scores_first_and_other_rows_by_score() -> None:
    scores = np.array([[1.0, np.nan, 3.0, 2.0, -np.inf, 0.5] * 50,
                       [1.0, 4.0, 3.0, 2.0, -np.inf, 0.5] * 50], dtype=np.float32)
    ids, top = ranking.top_k(scores, 3)
    assert np.isnan(top[0]).all() and set(ids[0]) <= set(range(1, 300, 6))
    np.testing.assert_array_equal(ids[1], [1, 7, 13])
    np.testing.assert_array_equal(top[1], [4.0, 4.0, 4.0])

