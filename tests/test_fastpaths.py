"""The fast paths give the same data as the slow ones: load, binary COPY, synthetic data."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import psycopg
import pytest
import scipy.sparse as sp

from benchmarks import synthetic
from recsys_db import copybin, source, training

from .conftest import rows

EVENTS = [
    ("alice", "apple", 1), ("alice", "apple", 2), ("alice", "pear", 5),
    ("bob", "apple", 1), ("Bob", "kiwi", 3), ("zoë", "pear", 1), ("a b", "kiwi", 4),
    (None, "apple", 1), ("carol", None, 1), ("carol", "apple", None), ("carol", "fig", 0),
    ("10", "apple", 1), ("9", "pear", 2),
]


def _slow_load(conn: psycopg.Connection) -> dict[tuple[str, str], float]:
    """Row by row, as text, summed in a dict: obviously right, and slow."""
    summed: dict[tuple[str, str], float] = defaultdict(float)
    for user, item, weight in rows(conn, "SELECT user_id::text, item_id::text, weight FROM events"
                                         " WHERE user_id IS NOT NULL AND item_id IS NOT NULL"
                                         " AND weight IS NOT NULL"):
        summed[(user, item)] += float(weight)
    return {pair: weight for pair, weight in summed.items() if weight != 0}


def _fast_load(conn: psycopg.Connection) -> tuple[source.Interactions, list[str], list[str]]:
    """Load model 'm' the fast way and assert it equals the row-by-row load."""
    data = source.load(conn, source.get_model(conn, "m"))
    users = [r[0] for r in rows(conn, "SELECT key FROM recsys_user_map ORDER BY idx")]
    items = [r[0] for r in rows(conn, "SELECT key FROM recsys_item_map ORDER BY idx")]
    coo = data.matrix.tocoo()
    fast = {(users[u], items[i]): float(w) for u, i, w in zip(coo.row, coo.col, coo.data,
                                                              strict=True)}
    assert fast == _slow_load(conn)
    return data, users, items


def test_fast_load_yields_the_same_matrix_as_the_slow_one(conn: psycopg.Connection,
                                                          db_url: str) -> None:
    conn.execute("CREATE TABLE events (user_id text, item_id text, weight integer)")
    with conn.cursor().copy("COPY events FROM STDIN") as copy:
        for event in EVENTS:
            copy.write_row(event)
    conn.execute("SELECT recsys.create_model('m', 'events', 'user_id', 'item_id',"
                 " weight_column => 'weight')")
    data, users, items = _fast_load(conn)
    assert (data.rows_read, data.rows_skipped_null) == (len(EVENTS), 3)
    # carol's only usable row weighs 0: she is a user with nothing seen
    assert data.matrix.shape == (len(users), len(items)) == (8, 4)
    result = training.train(db_url, "m")
    assert result.status == "succeeded"
    assert rows(conn, "SELECT key, seen FROM recsys.m1_v1_users WHERE key IN ('carol', 'alice')"
                      " ORDER BY key") == [("alice", [items.index("apple"), items.index("pear")]),
                                            ("carol", [])]


def test_fast_load_matches_on_synthetic_power_law_data(conn: psycopg.Connection) -> None:
    scale = synthetic.Scale("tiny", 20_000, 500, 300)
    conn.execute("CREATE SCHEMA bench")
    synthetic.load(conn, scale, psycopg.sql.Identifier("bench", "events"))
    conn.execute("CREATE VIEW events AS SELECT user_id, item_id, weight FROM bench.events")
    conn.execute("SELECT recsys.create_model('m', 'events', 'user_id', 'item_id',"
                 " weight_column => 'weight')")
    data, _, _ = _fast_load(conn)
    assert (data.users, data.items, data.rows_read) == (500, 300, 20_000)


def test_synthetic_data_is_seeded_complete_and_skewed() -> None:
    scale = synthetic.Scale("tiny", 50_000, 1_000, 2_000)
    users, items, weights = synthetic.generate(scale)
    again = synthetic.generate(scale)
    assert all(np.array_equal(a, b) for a, b in zip((users, items, weights), again, strict=True))
    assert set(users.tolist()) == set(range(1, 1_001))
    assert set(items.tolist()) == set(range(1, 2_001))
    counts = np.bincount(items)[1:]
    assert counts.max() > 50 * np.median(counts)  # a power law, not uniform
    assert weights.min() >= 1 and weights.max() <= 5


def test_binary_copy_writes_vectors_and_arrays_exactly(conn: psycopg.Connection) -> None:
    rng = np.random.default_rng(3)
    factors = rng.standard_normal((7, 5)).astype(np.float32)
    # rows with no items, several, and one block boundary (chunk=3) in the middle
    lists = sp.csr_matrix(np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0],
                                    [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]))
    conn.execute("CREATE TEMP TABLE t (idx integer, factors vector(5), seen integer[])")
    with conn.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
        for block in copybin.encode_vectors_arrays(np.arange(7, dtype=np.int32) + 100, factors,
                                                   lists, chunk=3):
            copy.write(block)
    found = rows(conn, "SELECT idx, factors, seen FROM t ORDER BY idx")
    assert [r[0] for r in found] == list(range(100, 107))
    assert np.array_equal(np.stack([r[1].to_numpy() for r in found]), factors)
    assert [r[2] for r in found] == [lists[i].indices.tolist() for i in range(7)]


def test_binary_copy_parse_rejects_other_streams() -> None:
    with pytest.raises(ValueError, match="not a binary copy stream"):
        copybin.parse_int_int_float(b"1\t2\t3.0\n")
    rows_with_text = copybin.HEADER + b"\x00\x03" + b"\x00" * 5 + copybin.TRAILER
    with pytest.raises(ValueError, match="not fixed-width"):
        copybin.parse_int_int_float(rows_with_text)
