"""A model's interactions in time order: what the ranker's time split cuts.

``read`` copies every source row that has a time (keys as indices of the load's key maps,
weights as training weighs them); ``Timeline.before`` is everything known at a cut-off and
``Timeline.between`` what happened in a window after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import psycopg
import scipy.sparse as sp

from recsys_db import copybin, evaluation, load, queries
from recsys_db.access import as_declarer
from recsys_db.model import ModelConfig


@dataclass(frozen=True)
class Timeline:
    """Source rows with a time, sorted by time: indices into the version's users and items."""

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


def read(conn: psycopg.Connection, model: ModelConfig,
         shape: tuple[int, int]) -> Timeline:
    """Every usable source row with a non-NULL time, read as the model's declarer through the
    key maps that ``load.read`` left on ``conn``; ``shape`` is the load's users x items."""
    parts = load.expressions(model, load.check_columns(conn, model))
    query = queries.compose(
        "timeline_copy_events", source=model.source, time=evaluation.time_seconds(conn, model),
        user=parts["user_native"], item=parts["item_native"], weight=parts["weight"],
        raw_weight=parts["raw_weight"], event_ok=parts["event_ok"])
    buffer = bytearray()
    grants = {"recsys_user_map": "SELECT", "recsys_item_map": "SELECT"}
    with conn.transaction(), as_declarer(conn, model, grants=grants), conn.cursor() as cur, \
            cur.copy(query) as copy:
        for block in copy:
            buffer += block
    users, items, times, weights = copybin.parse_fixed(buffer, ("i4", "i4", "f8", "f8"))
    order = np.argsort(times, kind="stable")
    return Timeline(users[order].astype(np.int32), items[order].astype(np.int32),
                    times[order].astype(np.float64), weights[order].astype(np.float64), shape)
