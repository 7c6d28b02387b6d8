"""Weighting schemes on interactions read from the database: event weights times the weight
column, summed per (user, item), then turned into confidence."""

from __future__ import annotations

import math

import numpy as np
import psycopg
import pytest
import scipy.sparse as sp

from recsys_db import db, load, training, weighting
from recsys_db.errors import ConfigError
from recsys_db.model import ModelConfig, get_model

from ..helpers import rows

# user, item, event, weight; 'refund' is not in the event map and is skipped
EVENTS = [("a", "w", "view", 2), ("a", "w", "cart", 1), ("a", "x", "view", 1),
          ("b", "w", "view", 3), ("b", "y", "cart", 2), ("c", "z", "view", 4),
          ("c", "z", "refund", 9), ("d", "x", "cart", 1), ("d", "y", "view", 5)]
# summed: a: w = 2*1 + 1*10 = 12, x = 1; b: w = 3, y = 20; c: z = 4; d: x = 10, y = 5
SUMMED = np.array([[12, 1, 0, 0],
                   [3, 0, 20, 0],
                   [0, 0, 0, 4],
                   [0, 10, 5, 0]], dtype=np.float64)


def make_events(conn: psycopg.Connection, params: str) -> None:
    conn.execute("CREATE TABLE public.events (u text, i text, kind text, n integer)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.events VALUES (%s, %s, %s, %s)", EVENTS)
    conn.execute("SELECT recsys.create_model('ev', 'public.events', 'u', 'i', 'n',"
                 " event_column => 'kind', event_weights => '{\"view\": 1, \"cart\": 10}',"
                 f" params => {params})")


def loaded(url: str) -> tuple[ModelConfig, np.ndarray]:
    with db.connect(url) as conn:
        model = get_model(conn, "ev")
        return model, load.read(conn, model).matrix.toarray()


def by_hand_bm25(k1: float, b: float) -> np.ndarray:
    """BM25 with items as documents and users as terms, written out."""
    items = SUMMED.T  # 4 items x 4 users
    idf = [math.log(4) - math.log1p(np.count_nonzero(items[:, user])) for user in range(4)]
    lengths = items.sum(axis=1)
    expected = np.zeros_like(items)
    for item in range(4):
        norm = (1 - b) + b * lengths[item] / lengths.mean()
        for user in range(4):
            tf = items[item, user]
            if tf:
                expected[item, user] = tf * (k1 + 1) / (k1 * norm + tf) * idf[user]
    return expected.T


def by_hand_tfidf() -> np.ndarray:
    items = SUMMED.T
    idf = [math.log(4) - math.log1p(np.count_nonzero(items[:, user])) for user in range(4)]
    return np.sqrt(items).T * np.array(idf)[:, None] * (SUMMED > 0)


@pytest.mark.parametrize(("params", "expected"), [
    ("weighting => 'none'", SUMMED),
    ("weighting => 'confidence', alpha => 2", np.where(SUMMED > 0, 1 + 2 * SUMMED, 0)),
    ("weighting => 'log', alpha => 3", np.where(SUMMED > 0, 1 + 3 * np.log1p(SUMMED), 0)),
    ("weighting => 'bm25', bm25_k1 => 1.2, bm25_b => 0.75", by_hand_bm25(1.2, 0.75)),
    ("weighting => 'bm25', bm25_k1 => 100, bm25_b => 0", by_hand_bm25(100, 0)),
    ("weighting => 'tfidf'", by_hand_tfidf()),
])
def test_schemes_by_hand(db_url: str, conn: psycopg.Connection, params: str,
                         expected: np.ndarray) -> None:
    make_events(conn, f"recsys.als(factors => 2, {params})")
    model, summed = loaded(db_url)
    assert summed.tolist() == SUMMED.tolist()
    weighted = weighting.apply(load.read(conn, model).matrix, model.params)
    conn.execute("DROP TABLE recsys_user_map, recsys_item_map")
    assert weighted.dtype == np.float32
    assert np.allclose(weighted.toarray(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scheme", weighting.SCHEMES)
def test_every_scheme_trains_and_serves(db_url: str, conn: psycopg.Connection,
                                        scheme: str) -> None:
    conn.execute("CREATE TABLE public.grid AS SELECT 'u' || (g % 30) AS u,"
                 " 'i' || (g * 7 % 19) AS i, 1 + g % 4 AS n FROM generate_series(1, 400) g")
    conn.execute("SELECT recsys.create_model('g', 'public.grid', 'u', 'i', 'n',"
                 " params => recsys.als(factors => 4, iterations => 5, weighting => %s))",
                 (scheme,))
    result = training.train(db_url, "g")
    assert result.status == "succeeded"
    assert result.metrics["als"]["auc"] > 0
    assert rows(conn, "SELECT params ->> 'weighting' FROM recsys.versions") == [(scheme,)]
    assert len(rows(conn, "SELECT * FROM recsys.recommend('g', 'u1', 3)")) == 3


def test_unknown_scheme_is_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='unknown weighting "bm15"'):
        conn.execute("SELECT recsys.als(weighting => 'bm15')")
    with pytest.raises(ConfigError, match='unknown weighting "bm15"; use one of: none, '):
        weighting.apply(sp.csr_matrix(SUMMED), {"weighting": "bm15", "alpha": 1})
