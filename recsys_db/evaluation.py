"""Holdout evaluation: split the interactions, rank held-out items, score the ranking.

Every evaluation scores two recommenders on the same split: the trained model ('als') and the
popularity baseline ('popular': items by number of distinct training users). Both exclude what
the user already has in the training part, as ``recsys.recommend`` does, and order equal
scores by item index, as ``recsys.recommend`` and ``recsys.popular`` do (``ranking``).

Metrics at ``k``, averaged over the test users (users with at least one held-out item):

- ``precision``: hits / k (the textbook definition).
- ``precision_capped``: sum of hits / sum of min(k, held-out items), over all test users;
  what ``implicit.evaluation.precision_at_k`` reports.
- ``recall``: hits / held-out items.
- ``map``: average precision, normalised by min(k, held-out items).
- ``ndcg``: binary-relevance DCG over the ideal DCG of min(k, held-out items) hits.
- ``auc``: implicit's AUC limited to the top k (items below k count as ranked in between).
- ``coverage``: distinct recommended items / items in the catalog.
- ``novelty``: mean self-information -log2(p) of recommended items, p being the share of
  training users who have the item (at least one user, so unseen items stay finite).

``map``, ``ndcg``, ``auc`` and ``precision_capped`` follow ``implicit.evaluation`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import psycopg
import scipy.sparse as sp
from psycopg import sql
from psycopg.types.json import Jsonb

from recsys_db import copybin, queries, ranking
from recsys_db.access import as_declarer
from recsys_db.errors import ConfigError
from recsys_db.load import Interactions, native_keys
from recsys_db.model import ModelConfig

METRICS = ("precision", "precision_capped", "recall", "map", "ndcg", "auc", "coverage", "novelty")
TIME_TYPES_EPOCH = ("timestamp with time zone", "timestamp without time zone", "date")


@dataclass
class Split:
    """Interactions divided into a training part and held-out test interactions."""

    kind: str  # 'random' or 'time'
    train: sp.csr_matrix  # users x items, summed weights; everything not held out
    test: sp.csr_matrix  # users x items, the held-out interactions

    @property
    def test_users(self) -> npt.NDArray[np.int64]:
        """Users with at least one held-out interaction."""
        return np.flatnonzero(np.diff(self.test.indptr))


@dataclass
class Report:
    """Metrics of the model and the popularity baseline on one split."""

    split: str
    k: int
    test_users: int
    test_interactions: int
    train_interactions: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def value(self, recommender: str, metric: str) -> float:
        """One metric of 'als' or 'popular'."""
        return self.metrics[recommender][metric]


def split_kind(model: ModelConfig) -> str:
    """The split a model's params ask for: 'off', 'random' or 'time' ('auto' resolved).

    Raises ConfigError when a time split is asked of a model without a time column.
    """
    kind = str(model.params["eval_split"])
    if kind == "auto":
        return "time" if model.time_column else "random"
    if kind == "time" and not model.time_column:
        raise ConfigError(f'eval_split "time" needs a time_column, and model "{model.name}" '
                          "has none")
    return kind


def _eval_users(eligible: npt.NDArray[np.int64], max_users: int,
                rng: np.random.Generator) -> npt.NDArray[np.int64]:
    if len(eligible) <= max_users:
        return eligible
    return np.sort(rng.choice(eligible, size=max_users, replace=False))


def _divide(matrix: sp.csr_matrix, held_out: npt.NDArray[np.bool_], kind: str) -> Split:
    coo = matrix.tocoo()
    keep = ~held_out

    def part(mask: npt.NDArray[np.bool_]) -> sp.csr_matrix:
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])),
                             shape=matrix.shape, dtype=matrix.dtype)

    return Split(kind=kind, train=part(keep), test=part(held_out))


def split_random(matrix: sp.csr_matrix, fraction: float, max_users: int,
                 random_state: int) -> Split:
    """Hold out a random ``fraction`` of each evaluated user's items.

    Users with at least two items are eligible (one always stays in training); at most
    ``max_users`` of them, drawn at random, are evaluated. Each loses round(fraction x items)
    items, at least one.
    """
    matrix = matrix.tocsr()
    rng = np.random.default_rng(random_state)
    counts = np.diff(matrix.indptr)
    users = _eval_users(np.flatnonzero(counts >= 2), max_users, rng)
    n_test = np.zeros(matrix.shape[0], dtype=np.int64)
    n_test[users] = np.clip(np.rint(fraction * counts[users]), 1, counts[users] - 1)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    # shuffle within each user, then the first n_test of each user go to the test part
    order = np.lexsort((rng.random(matrix.nnz), rows))
    position = np.empty(matrix.nnz, dtype=np.int64)
    position[order] = np.arange(matrix.nnz) - matrix.indptr[rows[order]]
    return _divide(matrix, position < n_test[rows], "random")


def split_by_time(matrix: sp.csr_matrix, times: npt.NDArray[np.float64], leave_last: int,
                  max_users: int, random_state: int) -> Split:
    """Hold out each evaluated user's ``leave_last`` most recent items.

    ``times`` holds, for each stored entry of the CSR ``matrix``, the time of the user's
    latest interaction with the item. Users with more than ``leave_last`` items are eligible;
    at most ``max_users`` of them, drawn at random, are evaluated. Equal times are broken by
    item index.
    """
    matrix = matrix.tocsr()
    rng = np.random.default_rng(random_state)
    counts = np.diff(matrix.indptr)
    users = _eval_users(np.flatnonzero(counts > leave_last), max_users, rng)
    n_test = np.zeros(matrix.shape[0], dtype=np.int64)
    n_test[users] = leave_last
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    # newest first within each user
    order = np.lexsort((-matrix.indices, -times, rows))
    position = np.empty(matrix.nnz, dtype=np.int64)
    position[order] = np.arange(matrix.nnz) - matrix.indptr[rows[order]]
    return _divide(matrix, position < n_test[rows], "time")


def time_seconds(conn: psycopg.Connection, model: ModelConfig) -> sql.Composable:
    """The model's time column over source alias ``s`` as seconds (double precision):
    timestamps and dates as Unix time, numbers as they are."""
    assert model.time_column is not None
    rows = conn.execute(queries.text("load_source_columns"),
                        {"schema": model.source_schema, "table": model.source_table}).fetchall()
    types: dict[str, str] = dict(rows)
    if model.time_column not in types:
        raise ConfigError(f'column "{model.time_column}" does not exist in relation '
                          f'"{model.source_label}" (time_column of model "{model.name}")')
    column = sql.SQL("s.{}").format(sql.Identifier(model.time_column))
    if types[model.time_column] in TIME_TYPES_EPOCH:
        return sql.SQL("extract(epoch FROM {})::double precision").format(column)
    return sql.SQL("{}::double precision").format(column)


def load_times(conn: psycopg.Connection, model: ModelConfig,
               matrix: sp.csr_matrix) -> npt.NDArray[np.float64]:
    """Latest interaction time of each stored (user, item) entry of ``matrix``.

    Uses the key maps that ``load.read`` left on ``conn``; the source is read as the model's
    declarer. Pairs without any non-NULL time get -inf: they count as the oldest.
    """
    user, item = native_keys(conn, model)
    query = queries.compose(
        "evaluation_copy_times", source=model.source, time=time_seconds(conn, model),
        user=user, item=item)
    buffer = bytearray()
    grants = {"recsys_user_map": "SELECT", "recsys_item_map": "SELECT"}
    with conn.transaction(), as_declarer(conn, model, grants=grants), conn.cursor() as cur, \
            cur.copy(query) as copy:
        for block in copy:
            buffer += block
    user_idx, item_idx, latest = copybin.parse_int_int_float(buffer)
    items = matrix.shape[1]
    stored = matrix.tocoo()  # of a canonical CSR: entries in the order of matrix.data
    stored_keys = stored.row.astype(np.int64) * items + stored.col
    found_keys = user_idx.astype(np.int64) * items + item_idx
    order = np.argsort(found_keys)
    found_keys, latest = found_keys[order], latest[order]
    where = np.searchsorted(found_keys, stored_keys)
    found = where < len(found_keys)
    found[found] = found_keys[where[found]] == stored_keys[found]
    times = np.full(len(stored_keys), -np.inf)
    times[found] = latest[where[found]]
    return times


def make_split(conn: psycopg.Connection, model: ModelConfig, data: Interactions) -> Split | None:
    """The holdout split the model's params ask for; None when evaluation is off."""
    params = model.params
    kind = split_kind(model)
    if kind == "off":
        return None
    matrix = data.matrix.tocsr()
    matrix.sort_indices()
    if kind == "time":
        times = load_times(conn, model, matrix)
        return split_by_time(matrix, times, int(params["eval_leave_last"]),
                             int(params["eval_max_users"]), int(params["random_state"]))
    return split_random(matrix, float(params["eval_test_fraction"]),
                        int(params["eval_max_users"]), int(params["random_state"]))


def popularity(train: sp.csr_matrix) -> npt.NDArray[np.int64]:
    """Distinct training users per item."""
    return np.bincount(train.indices, minlength=train.shape[1]).astype(np.int64)


def score(ids: npt.NDArray[np.integer], real: npt.NDArray[np.bool_], test: sp.csr_matrix,
          users: npt.NDArray[np.integer], train_popularity: npt.NDArray[np.integer],
          train_users: int) -> dict[str, float]:
    """Metrics of ranked lists ``ids`` (one row per user in ``users``) against ``test``.

    ``train_popularity`` (distinct training users per item) and ``train_users`` feed novelty.
    """
    n_users, k = ids.shape
    items = test.shape[1]
    test_rows = test[users].tocsr()
    test_rows.sort_indices()
    n_pos = np.diff(test_rows.indptr).astype(np.float64)
    row_of = np.repeat(np.arange(n_users, dtype=np.int64), k)
    wanted = row_of * items + ids.ravel()
    held = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(test_rows.indptr)) * items \
        + test_rows.indices
    hits = (np.isin(wanted, held) & real.ravel()).reshape(n_users, k)

    hit_count = hits.sum(axis=1).astype(np.float64)
    capped = np.minimum(k, n_pos)
    cumulative = np.cumsum(hits, axis=1)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    average_precision = (hits * cumulative / ranks).sum(axis=1) / capped
    gains = 1.0 / np.log2(ranks + 1)
    ideal = np.cumsum(gains)[capped.astype(np.int64) - 1]
    ndcg = (hits * gains).sum(axis=1) / ideal
    # implicit's AUC: each miss in the top k ranks below the hits before it; the rest of the
    # negatives are assumed to rank halfway.
    misses = k - hit_count
    n_neg = items - n_pos
    auc = ((cumulative * ~hits).sum(axis=1) + (hit_count + n_pos) / 2.0 * (n_neg - misses)) \
        / (n_pos * n_neg)

    shown = ids[real]
    self_information = -np.log2(np.maximum(train_popularity[shown], 1) / train_users)
    return {
        "precision": float(np.mean(hit_count / k)),
        "precision_capped": float(hit_count.sum() / capped.sum()),
        "recall": float(np.mean(hit_count / n_pos)),
        "map": float(np.mean(average_precision)),
        "ndcg": float(np.mean(ndcg)),
        "auc": float(np.mean(auc)),
        "coverage": float(len(np.unique(shown)) / items),
        "novelty": float(np.mean(self_information)) if shown.size else 0.0,
    }


def evaluate(split: Split, user_factors: np.ndarray, item_factors: np.ndarray,
             k: int) -> Report:
    """Score factors fitted on ``split.train`` and the popularity baseline on ``split.test``."""
    users = split.test_users
    k = min(k, split.train.shape[1])
    report = Report(split=split.kind, k=k, test_users=len(users),
                    test_interactions=int(split.test.nnz),
                    train_interactions=int(split.train.nnz))
    if not len(users):
        return report
    counts = popularity(split.train)
    seen = split.train[users]
    recommenders = {
        "als": (user_factors[users], item_factors),
        # every user ranks items by their number of training users
        "popular": (np.ones((len(users), 1)), counts[:, None]),
    }
    for name, (left, right) in recommenders.items():
        ids, scores = ranking.top_unseen(np.ascontiguousarray(left, dtype=np.float32),
                                         np.ascontiguousarray(right, dtype=np.float32), seen, k)
        report.metrics[name] = score(ids, np.isfinite(scores), split.test, users, counts,
                                     split.train.shape[0])
    return report


def store(conn: psycopg.Connection, run_id: int, report: Report, gate: str | None,
          gate_passed: bool | None) -> None:
    """Record a report (and the gate's verdict, if any) for a run."""
    with conn.transaction():
        conn.execute(queries.text("evaluation_insert"), {
            "run_id": run_id, "split": report.split, "k": report.k,
            "test_users": report.test_users, "test_interactions": report.test_interactions,
            "train_interactions": report.train_interactions, "gate": gate,
            "gate_passed": gate_passed})
        conn.execute(queries.text("evaluation_insert_metrics"), {
            "run_id": run_id, "metrics": Jsonb(report.metrics)})

