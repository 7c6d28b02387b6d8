"""The ranker's first stage: candidate items per user from several generators, and the
features of each (user, candidate) pair, all from what is known at a cut-off time.

Generators (each proposes unseen items that had at least one interaction before the cut-off):

- ``als``: the user's top items by ALS score (inner product of the factors);
- ``popular``: the items with the most distinct users in the last label window before the
  cut-off (then by all distinct users, then by item index);
- ``neighbour``: the items most similar (cosine of item factors) to one of the user's most
  recent items;
- ``content``: items without any interaction before the cut-off that the model knows from
  their features (``recsys.set_features``): their factors are mapped from the features, as
  cold start maps them, and the user's highest ALS scores among them are proposed.

Features of a pair are ``FEATURES`` (defined in the README, "Ranker features") followed by the
declared user and item feature columns. Nothing after the cut-off enters them: ``History`` is
built from the rows before it, and the factors passed in are fitted on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsys_db import ranking
from recsys_db.timeline import Timeline

DAY = 86400.0

FEATURES = (
    "als_score", "als_rank", "popular_rank", "neighbour_rank", "content_rank",
    "neighbour_max_similarity", "neighbour_mean_similarity",
    "item_users", "item_recent_users", "item_age_days", "item_idle_days",
    "user_items", "user_recent_events", "user_age_days", "user_idle_days",
)


@dataclass(frozen=True)
class Generators:
    """How many candidates each generator proposes per user, and how many recent items the
    neighbour generator starts from."""

    als: int
    popular: int
    neighbours: int
    recent_items: int
    content: int = 0


@dataclass
class History:
    """What is known at ``cutoff``: the rows before it, summarised per user and per item."""

    cutoff: float
    window: float  # seconds of one label window: "recent" means within it before the cut-off
    matrix: sp.csr_matrix  # users x items, summed weights before the cut-off
    item_users: npt.NDArray[np.float64]
    item_recent_users: npt.NDArray[np.float64]
    item_first: npt.NDArray[np.float64]
    item_last: npt.NDArray[np.float64]
    user_recent_events: npt.NDArray[np.float64]
    user_first: npt.NDArray[np.float64]
    user_last: npt.NDArray[np.float64]
    recent: npt.NDArray[np.int64]  # users x recent_items, latest first, -1 where none

    @property
    def alive(self) -> npt.NDArray[np.bool_]:
        """Items with at least one interaction before the cut-off: the only candidates."""
        return self.item_users > 0

    @property
    def warm_users(self) -> npt.NDArray[np.int64]:
        """Users with at least one interaction before the cut-off."""
        return np.flatnonzero(np.diff(self.matrix.indptr))

    def popular_order(self) -> npt.NDArray[np.int64]:
        """Items by recent distinct users, then all distinct users, then index; alive only."""
        order = np.lexsort((np.arange(len(self.item_users)), -self.item_users,
                            -self.item_recent_users))
        return order[self.alive[order]]


def _first_times(index: npt.NDArray[np.int32], times: npt.NDArray[np.float64],
                 size: int, last: bool) -> npt.NDArray[np.float64]:
    """Per index, the time of its first (or last) row of a time-sorted list; NaN where none."""
    out = np.full(size, np.nan)
    if last:
        index, times = index[::-1], times[::-1]
    found, where = np.unique(index, return_index=True)
    out[found] = times[where]
    return out


def history(timeline: Timeline, cutoff: float, window: float, recent_items: int) -> History:
    """Summarise the rows of ``timeline`` before ``cutoff``."""
    users, items = timeline.shape
    known = timeline.before(cutoff)
    matrix = known.matrix()
    recent = known.between(cutoff - window, cutoff)
    recent_pairs = np.unique(recent.users.astype(np.int64) * items + recent.items)
    # each user's latest distinct items: pairs by their latest time, newest first
    pairs = known.users.astype(np.int64)[::-1] * items + known.items[::-1]
    pair_keys, where = np.unique(pairs, return_index=True)
    pair_user, pair_item = pair_keys // items, pair_keys % items
    pair_time = known.times[::-1][where]
    order = np.lexsort((pair_item, -pair_time, pair_user))
    pair_user, pair_item = pair_user[order], pair_item[order]
    starts = np.searchsorted(pair_user, np.arange(users))
    position = np.arange(len(pair_user)) - starts[pair_user]
    keep = position < recent_items
    latest = np.full((users, recent_items), -1, dtype=np.int64)
    latest[pair_user[keep], position[keep]] = pair_item[keep]
    return History(
        cutoff=cutoff, window=window, matrix=matrix,
        item_users=np.bincount(matrix.indices, minlength=items).astype(np.float64),
        item_recent_users=np.bincount(recent_pairs % items, minlength=items).astype(np.float64),
        item_first=_first_times(known.items, known.times, items, last=False),
        item_last=_first_times(known.items, known.times, items, last=True),
        user_recent_events=np.bincount(recent.users, minlength=users).astype(np.float64),
        user_first=_first_times(known.users, known.times, users, last=False),
        user_last=_first_times(known.users, known.times, users, last=True),
        recent=latest)


@dataclass
class Frame:
    """Candidate pairs of some users, grouped by user (then by item index), with features."""

    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]  # pairs x features
    # per user of the frame, the top k of ALS alone and of popularity (for the holdout)
    baselines: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)


def _popular_picks(order: npt.NDArray[np.int64], blocked: npt.NDArray[np.bool_],
                   count: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                        npt.NDArray[np.int64]]:
    """Each row's first ``count`` items of ``order`` that it does not block: (row, item, rank)."""
    if count == 0 or not len(order):
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    pool = order[:count + int(blocked[:, order].sum(axis=1).max(initial=0))]
    free = ~blocked[:, pool]
    rank = np.cumsum(free, axis=1)
    rows, at = np.nonzero(free & (rank <= count))
    return rows.astype(np.int64), pool[at].astype(np.int64), rank[rows, at].astype(np.int64)


def _similarities(unit: np.ndarray, recent: npt.NDArray[np.int64]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Max and mean cosine of every item to each row's recent items (NaN for rows without)."""
    rows, items = recent.shape[0], unit.shape[0]
    best = np.full((rows, items), -np.inf, dtype=np.float32)
    total = np.zeros((rows, items), dtype=np.float32)
    count = np.zeros((rows, 1), dtype=np.float32)
    for column in recent.T:
        has = column >= 0
        if not has.any():
            continue
        sims = unit[np.where(has, column, 0)] @ unit.T
        sims[~has] = 0.0
        np.maximum(best, np.where(has[:, None], sims, -np.inf), out=best)
        total += sims
        count[has] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    best[count[:, 0] == 0] = np.nan
    return best, mean


def frame(hist: History, user_factors: np.ndarray, item_factors: np.ndarray,
          users: npt.NDArray[np.int64], generators: Generators,
          user_side: np.ndarray, item_side: np.ndarray, baseline_k: int = 0,
          cold: npt.NDArray[np.bool_] | None = None,
          seen: sp.csr_matrix | None = None) -> Frame:
    """Candidates of ``users`` (warm at the cut-off) and their features.

    ``user_side`` / ``item_side`` hold the declared feature columns per user / item (zero
    columns when none). ``cold`` marks the items without interactions before the cut-off whose
    ``item_factors`` were mapped from features: only the content generator proposes them. With
    ``baseline_k``, each user's top ``baseline_k`` unseen items by ALS alone and by popularity
    are kept too (``Frame.baselines``). ``seen`` (default: the history's rows) is what no
    generator may propose to a user.
    """
    items = item_factors.shape[0]
    user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    unit = ranking.normalized(item_factors)
    dead = ~hist.alive
    popular = hist.popular_order()
    by_users = np.lexsort((np.arange(items), -hist.item_users))
    by_users = by_users[hist.alive[by_users]]
    seen = hist.matrix if seen is None else seen
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    als_top, popular_top = [], []
    batch = ranking.batch_size(items, itemsize=4 * (8 + generators.recent_items))
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        rows = len(chunk)
        blocked = seen[chunk].toarray() != 0
        blocked |= dead
        scores = user_factors[chunk] @ item_factors.T
        als_scores = np.where(blocked, -np.inf, scores)
        ranks = np.full((4, rows, items), np.nan, dtype=np.float32)
        if generators.als:
            ids, values = ranking.top_k(als_scores, min(generators.als, items))
            real = np.isfinite(values)
            r, c = np.nonzero(real)
            ranks[0, r, ids[r, c]] = c + 1
        if generators.popular:
            r, picked, rank = _popular_picks(popular, blocked, generators.popular)
            ranks[1, r, picked] = rank
        best, mean = _similarities(unit, hist.recent[chunk])
        if generators.neighbours:
            ids, values = ranking.top_k(np.where(blocked | np.isnan(best), -np.inf, best),
                                        min(generators.neighbours, items))
            real = np.isfinite(values)
            r, c = np.nonzero(real)
            ranks[2, r, ids[r, c]] = c + 1
        if generators.content and cold is not None and cold.any():
            ids, values = ranking.top_k(np.where(cold, scores, -np.inf),
                                        min(generators.content, items))
            real = np.isfinite(values)
            r, c = np.nonzero(real)
            ranks[3, r, ids[r, c]] = c + 1
        r, c = np.nonzero(~np.isnan(ranks).all(axis=0))
        pair_users = chunk[r]
        columns = [scores[r, c], ranks[0, r, c], ranks[1, r, c], ranks[2, r, c], ranks[3, r, c],
                   best[r, c], mean[r, c],
                   hist.item_users[c], hist.item_recent_users[c],
                   (hist.cutoff - hist.item_first[c]) / DAY,
                   (hist.cutoff - hist.item_last[c]) / DAY,
                   np.diff(hist.matrix.indptr)[pair_users], hist.user_recent_events[pair_users],
                   (hist.cutoff - hist.user_first[pair_users]) / DAY,
                   (hist.cutoff - hist.user_last[pair_users]) / DAY]
        values_ = np.column_stack([np.asarray(col, dtype=np.float32) for col in columns]
                                  + [user_side[pair_users], item_side[c]])
        parts.append((pair_users.astype(np.int64), c.astype(np.int64),
                      values_.astype(np.float32)))
        if baseline_k:
            ids, values = ranking.top_k(als_scores, min(baseline_k, items))
            als_top.append(np.where(np.isfinite(values), ids, -1))
            popular_top.append(_padded(_popular_picks(by_users, blocked, baseline_k), rows,
                                       baseline_k))
    width = len(FEATURES) + user_side.shape[1] + item_side.shape[1]
    result = Frame(
        users=np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64),
        items=np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64),
        features=np.concatenate([p[2] for p in parts]) if parts
        else np.empty((0, width), np.float32))
    if baseline_k and als_top:
        result.baselines = {"als": np.concatenate(als_top),
                            "popular": np.concatenate(popular_top)}
    return result


def _padded(picks: tuple[np.ndarray, np.ndarray, np.ndarray], rows: int,
            k: int) -> npt.NDArray[np.int64]:
    """(row, item, rank) picks as rows x k item ids, -1 where a row has fewer."""
    out = np.full((rows, k), -1, dtype=np.int64)
    row, item, rank = picks
    out[row, rank - 1] = item
    return out
