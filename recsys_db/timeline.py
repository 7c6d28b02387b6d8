"""A model's interactions in time order: what the ranker's time split cuts.

``read`` reads every source row that has a time and a weight above 0 (keys as indices of the
load's key maps, weights as training weighs them); ``Timeline.before`` is everything known at a
cut-off and ``Timeline.between`` what happened in a window after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import psycopg
import scipy.sparse as sp
from psycopg import sql

from recsys_db import evaluation, load, queries
from recsys_db.access import as_declarer
from recsys_db.model import ModelConfig

RECORD = np.dtype([("user", ">i4"), ("item", ">i4"), ("time", ">f8"), ("weight", ">f8")])
# rows per query: 24-byte records, 240 MB a value at most (bytea holds up to 1 GB)
CHUNK_ROWS = 10_000_000


@dataclass(frozen=True)
class Timeline:
    """Source rows with a time, sorted by time (then user, item, weight): indices into the
    version's users and items."""

    users: npt.NDArray[np.int32]
    items: npt.NDArray[np.int32]
    times: npt.NDArray[np.float64]  # seconds (Unix time for timestamps and dates)
    weights: npt.NDArray[np.float64]
    shape: tuple[int, int]  # users x items of the load

    @property
    def start(self) -> float:
        """Time of the first row."""
        return float(self.times[0])

    @property
    def end(self) -> float:
        """Time of the last row."""
        return float(self.times[-1])

    def _span(self, low: float, high: float) -> slice:
        return slice(int(np.searchsorted(self.times, low, "left")),
                     int(np.searchsorted(self.times, high, "left")))

    def between(self, low: float, high: float) -> Timeline:
        """The rows with low <= time < high."""
        part = self._span(low, high)
        return Timeline(self.users[part], self.items[part], self.times[part],
                        self.weights[part], self.shape)

    def before(self, cutoff: float) -> Timeline:
        """The rows with time < cutoff: everything known at the cut-off."""
        return self.between(-np.inf, cutoff)

    def matrix(self) -> sp.csr_matrix:
        """Users x items, weights summed, entries of weight 0 dropped (as ``load.read``)."""
        matrix = sp.csr_matrix((self.weights, (self.users, self.items)), shape=self.shape,
                               dtype=np.float64)
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        return matrix


def read(conn: psycopg.Connection, model: ModelConfig, shape: tuple[int, int],
         rows: int) -> Timeline:
    """Every usable source row with a non-NULL time, read as the model's declarer through the
    key maps that ``load.read`` left on ``conn``; ``shape`` is the load's users x items and
    ``rows`` the rows it read (which sizes the chunks)."""
    parts = load.expressions(model, load.check_columns(conn, model))
    chunks = max(1, -(-rows // CHUNK_ROWS))
    pieces = []
    grants = {"recsys_user_map": "SELECT", "recsys_item_map": "SELECT"}
    with conn.transaction(), as_declarer(conn, model, grants=grants) as check_role:
        for part in range(chunks):
            chunk = sql.SQL("u.idx % {} = {}").format(sql.Literal(chunks), sql.Literal(part))
            query = queries.compose(
                "timeline_events", source=model.source,
                time=evaluation.time_seconds(conn, model), user=parts["user_native"],
                item=parts["item_native"], weight=parts["weight"],
                raw_weight=parts["raw_weight"], event_ok=parts["event_ok"], chunk=chunk)
            row = conn.execute(query, binary=True).fetchone()
            check_role()
            assert row is not None
            pieces.append(np.frombuffer(row[0], dtype=RECORD))
    records = np.concatenate(pieces)
    users, items = records["user"].astype(np.int32), records["item"].astype(np.int32)
    times, weights = records["time"].astype(np.float64), records["weight"].astype(np.float64)
    counted = weights > 0  # as in training, where entries of weight 0 are dropped
    users, items, times, weights = (users[counted], items[counted], times[counted],
                                    weights[counted])
    # by time, then user, item and weight: the same order whatever order the rows came in
    order = np.lexsort((weights, items, users, times))
    return Timeline(users[order].astype(np.int32), items[order].astype(np.int32),
                    times[order].astype(np.float64), weights[order].astype(np.float64), shape)
