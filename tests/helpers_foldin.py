"""A small synthetic interaction source and implicit rebuilt from a trained version's factors,
shared by the session and explanation tests."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import psycopg
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from psycopg import sql

from recsys_db import training, weighting

from .helpers import rows

EVENT_WEIGHTS = {"view": 1.0, "cart": 4.0, "buy": 10.0}


def create_events(conn: psycopg.Connection, seed: int = 7) -> list[tuple[int, str, float, str]]:
    """Table public.events (user_id, item_id, weight, event) with repeated user/item pairs,
    and view public.pairs of its distinct (user_id, item_id); returns the event rows."""
    rng = random.Random(seed)
    events = []
    for user in range(1, 41):
        for item in rng.sample(range(1, 31), rng.randint(3, 12)):
            for _ in range(rng.randint(1, 3)):
                events.append((user, f"item-{item}", round(rng.uniform(0.5, 3.0), 2),
                               rng.choice(list(EVENT_WEIGHTS))))
    conn.execute("CREATE TABLE public.events (user_id integer, item_id text,"
                 " weight double precision, event text)")
    conn.execute("CREATE INDEX ON public.events (user_id)")
    with conn.cursor() as cur, cur.copy("COPY public.events FROM STDIN") as copy:
        for event in events:
            copy.write_row(event)
    conn.execute("CREATE VIEW public.pairs AS SELECT DISTINCT user_id, item_id FROM public.events")
    return events


def train_model(url: str, conn: psycopg.Connection, name: str, source: str, *,
                weighted: bool, params: str) -> None:
    """Create and train a model on public.events (weight and event columns) or public.pairs."""
    if weighted:
        conn.execute(
            "SELECT recsys.create_model(%s, %s, 'user_id', 'item_id', weight_column => 'weight',"
            " event_column => 'event', event_weights => %s::jsonb,"
            f" params => recsys.als({params}))",
            (name, source, psycopg.types.json.Jsonb(EVENT_WEIGHTS)))
    else:
        conn.execute("SELECT recsys.create_model(%s, %s, 'user_id', 'item_id',"
                     f" params => recsys.als({params}))", (name, source))
    training.train(url, name)


class Reference:
    """implicit's ALS holding the item factors of a model's active version."""

    def __init__(self, conn: psycopg.Connection, model: str) -> None:
        (users, items, params), = rows(
            conn, "SELECT user_table, item_table, v.params FROM recsys.model_version v"
                  " JOIN recsys.model m ON m.id = v.model_id AND v.version = m.active_version"
                  " WHERE m.name = %s", (model,))
        self.params: dict[str, Any] = params
        user_rows = rows(conn, sql.SQL("SELECT idx, key FROM {} ORDER BY idx").format(
            sql.Identifier("recsys", users)))
        item_rows = rows(conn, sql.SQL("SELECT idx, key, factors FROM {} ORDER BY idx").format(
            sql.Identifier("recsys", items)))
        self.user_keys = [r[1] for r in user_rows]
        self.item_keys = [r[1] for r in item_rows]
        self.user_index = {k: i for i, k in enumerate(self.user_keys)}
        self.item_index = {k: i for i, k in enumerate(self.item_keys)}
        self.item_factors = np.stack([r[2].to_numpy() for r in item_rows])
        self.als = AlternatingLeastSquares(factors=self.item_factors.shape[1],
                                           regularization=float(params["regularization"]),
                                           alpha=1.0)
        self.als.item_factors = self.item_factors
        self.als.user_factors = np.zeros((len(self.user_keys), self.item_factors.shape[1]),
                                         dtype=np.float32)

    def weighted(self, triples: list[tuple[str, str, float]]) -> sp.csr_matrix:
        """The confidences training fits on, from (user key, item key, weight) triples:
        summed per pair, then weighted with the project's training code."""
        matrix = sp.csr_matrix(
            ([w for _, _, w in triples],
             ([self.user_index[u] for u, _, _ in triples],
              [self.item_index[i] for _, i, _ in triples])),
            shape=(len(self.user_keys), len(self.item_keys)), dtype=np.float64)
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        return weighting.apply(matrix, self.params)
