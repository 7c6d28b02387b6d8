"""Norm-pruned ranking equals the full ranking: ties at the k-th place and with the bound,
users with fewer than k unseen items, users who have seen the whole head, overflow."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_db import ranking


def full_sort(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix,
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every item scored, seen ones -inf, rows sorted by (-score, item index)."""
    scores = user_factors @ item_factors.T
    scores[seen.toarray() != 0] = -np.inf
    index = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((index, -scores), axis=1)[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 8, 16, 48, ... items: small catalogs go through several blocks."""
    monkeypatch.setattr(ranking, "HEAD_ITEMS", 8)
    monkeypatch.setattr(ranking, "GROWTH", 2)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize(("users", "items", "k", "seed"), [
    (400, 600, 10, 1), (300, 200, 3, 2), (200, 90, 25, 3), (100, 9, 8, 4)])
def test_pruned_ranking_equals_the_full_sort(users: int, items: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # small integers: exact float scores, many ties, also with the bound; a few items far
    # longer than the rest, so that pruning certifies many users early
    user_factors = rng.integers(-2, 4, (users, 3)).astype(np.float32)
    item_factors = rng.integers(-2, 3, (items, 3)).astype(np.float32)
    item_factors[rng.choice(items, items // 10, replace=False)] *= 6
    user_factors[3] = 0
    seen = sp.random(users, items, density=0.1, format="lil", random_state=rng,
                     dtype=np.float32)
    norms = np.linalg.norm(item_factors, axis=1)
    head = np.argsort(-norms, kind="stable")[:40]
    seen[0, :] = 1  # all seen
    seen[1, : items - max(1, k // 2)] = 1  # fewer than k unseen
    seen[2, :] = 0
    seen[4:20, head] = 1  # the head (and more) seen
    seen = seen.tocsr()
    ids, scores = ranking.top_unseen(user_factors, item_factors, seen, k)
    expected_ids, expected_scores = full_sort(user_factors, item_factors, seen, k)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)


@pytest.mark.usefixtures("small_blocks")
def test_an_item_left_out_that_ties_the_kth_score_comes_first_by_index() -> None:
    # item 0 lies outside the head (norm 1) but scores exactly |u| * 1 = 1, as the head's
    # best does: equality with the bound certifies nothing, and item 0 wins the tie
    head = np.tile(np.array([[1.0, 5.0]], np.float32), (8, 1))
    item_factors = np.vstack([np.array([[1.0, 0.0]], np.float32), head,
                              np.full((40, 2), 0.1, np.float32)])
    user_factors = np.array([[1.0, 0.0]], np.float32)
    seen = sp.csr_matrix((1, len(item_factors)), dtype=np.float32)
    for k in (1, 3):
        ids, scores = ranking.top_unseen(user_factors, item_factors, seen, k)
        expected_ids, expected_scores = full_sort(user_factors, item_factors, seen, k)
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_array_equal(scores, expected_scores)
        assert ids[0, 0] == 0


@pytest.mark.usefixtures("small_blocks")
def test_pruned_ranking_of_real_valued_factors_in_float32_and_float64() -> None:
    rng = np.random.default_rng(7)
    # norms falling off like ALS item factors: most users are certified in the first blocks
    item_factors = (rng.standard_normal((500, 16))
                    / np.arange(1, 501)[:, None] ** 0.7).astype(np.float32)
    user_factors = rng.standard_normal((300, 16)).astype(np.float32)
    seen = sp.random(300, 500, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    for dtype in (np.float32, np.float64):
        ids, scores = ranking.top_unseen(user_factors.astype(dtype), item_factors.astype(dtype),
                                         seen, 10)
        expected_ids, expected_scores = full_sort(user_factors.astype(dtype),
                                                  item_factors.astype(dtype), seen, 10)
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)


def test_scores_that_could_overflow_are_ranked_without_pruning() -> None:
    item_factors = np.array([[3e38, 3e38], [1.0, 0.0], [-3e38, 3e38]], np.float32)
    user_factors = np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)
    seen = sp.csr_matrix((2, 3), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        ids, scores = ranking.top_unseen(user_factors, item_factors, seen, 2)
        reference_ids, reference_scores = ranking.top_k(user_factors @ item_factors.T, 2)
    np.testing.assert_array_equal(ids, reference_ids)
    np.testing.assert_array_equal(scores, reference_scores)
