"""Top-k in numpy, one rule everywhere: the highest score first, equal scores by index.

Items are numbered in the byte order of their keys, so "by index" is the SQL functions' tie
rule (equal scores by key, ``COLLATE "C"``). Used by precompute (recommendations, similar
items), evaluation (the model and the popularity baseline) and the index recall check.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

# users (or items) ranked at once: at most 4096, and fewer for big catalogs so that the
# batch x items float32 score matrix (plus argpartition's int64 indices) stays near 1 GiB
BATCH_USERS = 4096
BATCH_SCORES = 2**26


def batch_size(items: int, itemsize: int = 4) -> int:
    """Rows ranked at once against ``items`` columns of ``itemsize``-byte scores."""
    return max(1, min(BATCH_USERS, BATCH_SCORES * 4 // itemsize // max(1, items)))


def normalized(factors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), in float32: cosine by inner product."""
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return (factors / np.where(norms > 0, norms, 1)).astype(np.float32)


def top_k(scores: np.ndarray, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """Column indices and values of each row's k largest scores, ordered by (-score, index).

    Exact threshold selection, instead of partitioning every row: the columns are dealt into
    interleaved groups (column j into group j mod groups). The k-th largest group maximum is
    reached by k distinct columns, so it bounds the row's k-th best score from below, and only
    the groups whose maximum reaches that bound can hold the top k. Rows with a NaN score are
    ranked by partitioning (NaN counts as the largest), as before.
    """
    rows, items = scores.shape
    if k <= 0 or rows == 0:
        return np.zeros((rows, 0), np.int64), np.zeros((rows, 0), scores.dtype)
    # balances ranking the group maxima (rows x groups) against reading the chosen groups
    # (about rows x k x items / groups scattered reads); a small catalog gets one column a group
    groups = min(items, max(4 * k, int(np.sqrt(2.5 * k * items))))
    depth, rest = divmod(items, groups)
    best = scores[:, :depth * groups].reshape(rows, depth, groups).max(axis=1)
    if rest:
        np.maximum(best[:, :rest], scores[:, depth * groups:], out=best[:, :rest])
    bound = np.partition(best, groups - k, axis=1)[:, groups - k]
    broken = np.isnan(best).any(axis=1)
    bound[broken] = np.nan  # selects nothing; these rows are ranked separately

    hits = np.flatnonzero(best >= bound[:, None])
    row = hits // groups
    col = (hits - row * groups)[:, None] + groups * np.arange(depth + 1)
    member = col < items  # only the first `rest` groups have a column in the last round
    row, col = np.broadcast_to(row[:, None], col.shape)[member], col[member]
    value = scores[row, col]
    keep = value >= bound[row]
    row, col, value = row[keep], col[keep], value[keep]
    order = np.lexsort((col, -value, row))
    # rows come in order, and each one not broken has at least k candidates
    counts = np.bincount(row, minlength=rows)
    good = ~broken
    take = order[(np.cumsum(counts) - counts)[good, None] + np.arange(k)]
    ids = np.empty((rows, k), np.int64)
    top = np.empty((rows, k), scores.dtype)
    ids[good], top[good] = col[take], value[take]
    if broken.any():
        ids[broken], top[broken] = _partition_top_k(scores[broken], k)
    return ids, top


def _partition_top_k(scores: np.ndarray,
                     k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    items = scores.shape[1]
    candidates = np.argpartition(scores, items - k, axis=1)[:, items - k:]
    top = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -top), axis=1)
    return (np.take_along_axis(candidates, order, axis=1),
            np.take_along_axis(top, order, axis=1))


# Items are scored in blocks of decreasing norm: the first holds the HEAD_ITEMS largest-norm
# items, each later one GROWTH times as many as all before it, the last the rest.
HEAD_ITEMS = 2048
GROWTH = 2


def _norms(factors: np.ndarray) -> npt.NDArray[np.float64]:
    """Row norms in float64, without a float64 copy of the rows."""
    return np.sqrt(np.einsum("ij,ij->i", factors, factors, dtype=np.float64))


@dataclass(frozen=True)
class _Blocks:
    """Items rearranged into norm blocks, each block's items in index order.

    A computed score of an item after block ``b`` is at most |u| * ``rest[b]`` + ``floor``
    (``rest``: None after the last block).
    """

    order: npt.NDArray[np.int64]
    position: npt.NDArray[np.int64]
    edges: list[int]
    factors: np.ndarray
    rest: list[float | None]
    floor: float


def _blocks(item_factors: np.ndarray, user_norm_max: float, k: int) -> _Blocks:
    """Norm blocks of the items, or one block of them all when a score could overflow (then
    NaN could occur, which only a full ranking orders as before) or there is nothing to prune."""
    count, factors = item_factors.shape
    norms = _norms(item_factors)
    finfo = np.finfo(item_factors.dtype)
    # a computed inner product exceeds |u||v| by at most factors * unit roundoff relative
    # (any order of summation) plus the absolute error of underflowing products
    slack = 1 + 2 * factors * float(finfo.eps)
    edges = [0]
    if (k > 0 and np.isfinite(norms).all()
            and user_norm_max * float(norms.max(initial=0)) * slack < float(finfo.max) / 4):
        size = max(HEAD_ITEMS, k)
        while size < count:
            edges.append(size)
            size *= GROWTH + 1
    edges.append(count)
    by_norm = np.argsort(-norms, kind="stable")
    order = np.concatenate([np.sort(by_norm[a:b]) for a, b in pairwise(edges)])
    position = np.empty(count, np.int64)
    position[order] = np.arange(count)
    rest: list[float | None] = [
        float(norms[by_norm[b]]) * slack for b in edges[1:-1]] + [None]
    return _Blocks(order.astype(np.int64), position, edges,
                   np.ascontiguousarray(item_factors[order]), rest,
                   2 * factors * float(finfo.smallest_subnormal))


def _improve(ids: np.ndarray, values: np.ndarray, scores: np.ndarray,
             items: npt.NDArray[np.int64]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best by (-score, index) of its current k (``ids``, ``values``) and its
    ``scores`` of ``items``. Only scores reaching the current k-th can enter: they are found
    by one comparison instead of ranking the rows anew (rows still short of k unseen items
    are ranked whole)."""
    rows, k = ids.shape
    threshold = values[:, -1]
    short = np.isneginf(threshold)
    hit = scores >= threshold[:, None]
    hit[short] = False
    row, col = np.divmod(np.flatnonzero(hit), scores.shape[1])  # much faster than nonzero
    if short.any():
        more_ids = top_k(scores[short], min(k, scores.shape[1]))[0]
        row = np.concatenate([row, np.repeat(np.flatnonzero(short), more_ids.shape[1])])
        col = np.concatenate([col, more_ids.ravel()])
    value = np.concatenate([scores[row, col], values.ravel()])
    index = np.concatenate([items[col], ids.ravel()])
    row = np.concatenate([row, np.repeat(np.arange(rows), k)])
    order = np.lexsort((index, -value, row))
    counts = np.bincount(row, minlength=rows)
    take = order[(np.cumsum(counts) - counts)[:, None] + np.arange(k)]
    return index[take], value[take]


def unseen_batches(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix,
                   k: int) -> Iterator[tuple[int, npt.NDArray[np.int64], np.ndarray]]:
    """Each user's k highest inner-product items not in their row of ``seen``, a batch of
    users at a time: (first user, ids, scores), as ``top_k`` returns them.

    Scores have the factors' common dtype. Rows with fewer than k unseen items are padded with
    -inf scores (their ids: seen items, by index). The same ranking as implicit's
    ``recommend(..., filter_already_liked_items=True)`` apart from the order of equal scores.

    Exact, with pruning: items are scored in blocks of decreasing norm, and a user stops as
    soon as their k-th best unseen score so far exceeds |u| times the largest norm left
    (Cauchy-Schwarz, widened by the rounding error of a float inner product). Strictly
    exceeds: an item left out could otherwise tie and come first by index.
    """
    k = min(k, item_factors.shape[0])
    dtype = np.result_type(user_factors, item_factors)
    user_norms = _norms(user_factors)
    blocks = _blocks(item_factors.astype(dtype, copy=False),
                     float(user_norms.max(initial=0)), k)
    batch = batch_size(item_factors.shape[0], dtype.itemsize)
    # one score buffer for all batches: a fresh one per batch costs its page faults each time
    buffer = np.empty(min(batch, seen.shape[0]) * item_factors.shape[0], dtype)
    for start in range(0, seen.shape[0], batch):
        stop = min(start + batch, seen.shape[0])
        rows = seen[start:stop]
        seen_row = np.repeat(np.arange(stop - start), np.diff(rows.indptr))
        seen_at = blocks.position[rows.indices]
        ids = np.empty((stop - start, k), np.int64)
        values = np.empty((stop - start, k), dtype)
        active = np.arange(stop - start)
        best_ids, best = ids[:0], values[:0]
        for block, (first, last) in enumerate(pairwise(blocks.edges)):
            scores = buffer[:len(active) * (last - first)].reshape(len(active), last - first)
            np.matmul(user_factors[start:stop][active], blocks.factors[first:last].T,
                      out=scores)
            slot = np.full(stop - start, -1)
            slot[active] = np.arange(len(active))
            hit = (seen_at >= first) & (seen_at < last) & (slot[seen_row] >= 0)
            scores[slot[seen_row[hit]], seen_at[hit] - first] = -np.inf
            if block:
                best_ids, best = _improve(best_ids, best, scores, blocks.order[first:last])
            else:
                best_ids, best = top_k(scores, k)
                best_ids = blocks.order[best_ids]
            bound = blocks.rest[block]
            done = (np.ones(len(active), bool) if bound is None else
                    best[:, k - 1] > user_norms[start:stop][active] * bound + blocks.floor)
            ids[active[done]], values[active[done]] = best_ids[done], best[done]
            active, best_ids, best = active[~done], best_ids[~done], best[~done]
            if not len(active):
                break
        yield start, ids, values


def top_unseen(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix,
               k: int) -> tuple[npt.NDArray[np.int64], np.ndarray]:
    """``unseen_batches`` for all users at once: (users x k ids, users x k scores)."""
    k = min(k, item_factors.shape[0])
    ids = np.empty((seen.shape[0], k), np.int64)
    scores = np.empty((seen.shape[0], k), np.result_type(user_factors, item_factors))
    for start, batch_ids, batch_scores in unseen_batches(user_factors, item_factors, seen, k):
        ids[start:start + len(batch_ids)] = batch_ids
        scores[start:start + len(batch_ids)] = batch_scores
    return ids, scores


def exact_ranked_items(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix,
                       users: np.ndarray, k: int) -> list[np.ndarray]:
    """Exact top-k item indices for some users, in float64, best first, skipping what they
    have seen (fewer where fewer are unseen): the ground truth of an index's recall.

    ``seen`` is the users x items CSR matrix of the version.
    """
    ids, scores = top_unseen(user_factors[users].astype(np.float64),
                             item_factors.astype(np.float64), seen[users], k)
    return [row_ids[np.isfinite(row_scores)] for row_ids, row_scores in zip(ids, scores,
                                                                          strict=True)]


def exact_top_items(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix,
                    users: np.ndarray, k: int) -> list[set[int]]:
    """The sets of ``exact_ranked_items``."""
    return [{int(i) for i in best}
            for best in exact_ranked_items(user_factors, item_factors, seen, users, k)]
