"""Loading a model's source: the fast load gives the same matrix as a row-by-row one, integer
keys load as their text does and fail as text keys do."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg
import pytest

from benchmarks import synthetic
from recsys_db import load, training
from recsys_db.errors import DataError
from recsys_db.model import get_model

from ..helpers import rows

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


def _fast_load(conn: psycopg.Connection) -> tuple[load.Interactions, list[str], list[str]]:
    """Load model 'm' the fast way and assert it equals the row-by-row load."""
    data = load.read(conn, get_model(conn, "m"))
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


BIG = 2 ** 63 - 1
KEYED_EVENTS = [  # (user, item, weight, event); keys fit every integer type unless noted
    (1, 10, 1.0, "view"), (1, 10, 2.0, "view"), (1, 9, 1.0, "cart"), (-3, 10, 1.0, "view"),
    (-30, -1, 4.0, "view"), (2, 100, 0.0, "view"), (0, 0, 1.5, "view"), (12, 9, 1.0, "view"),
    (None, 10, 1.0, "view"), (2, None, 1.0, "view"), (2, 9, None, "view"),
    (2, 9, 1.0, "unknown"), (2, 9, 1.0, None), (None, 9, 1.0, "unknown"),
    (1, 10, 0.5, "cart"), (7, 100, 0.0, "view"), (7, 100, 0.0, "cart"),
]
BIG_EVENTS = [(BIG, -BIG - 1, 1.0, "view"), (-BIG - 1, BIG, 2.0, "cart"),
              (BIG - 1, 10 ** 18, 1.0, "view"), (-BIG, -(10 ** 18), 1.0, "view")]


def _load_keyed(conn: psycopg.Connection, model: str) -> tuple[load.Interactions, list[str],
                                                                list[str]]:
    data = load.read(conn, get_model(conn, model))
    users = [r[0] for r in rows(conn, "SELECT key FROM recsys_user_map ORDER BY idx")]
    items = [r[0] for r in rows(conn, "SELECT key FROM recsys_item_map ORDER BY idx")]
    assert [r[0] for r in rows(conn, "SELECT idx FROM recsys_user_map ORDER BY idx")] == list(
        range(len(users)))
    return data, users, items


def _keyed_models(conn: psycopg.Connection, key_type: str, events: list[tuple]) -> None:
    """Model 'ints' reads integer keys in one pass, 'texts' the same keys as text in SQL."""
    conn.execute(f"CREATE TABLE keyed (u {key_type}, i {key_type}, w real, kind text)")
    with conn.cursor().copy("COPY keyed FROM STDIN") as copy:
        for event in events:
            copy.write_row(event)
    conn.execute("CREATE VIEW keyed_text AS SELECT u::text AS u, i::text AS i, w, kind"
                 " FROM keyed")
    for name, relation in (("ints", "keyed"), ("texts", "keyed_text")):
        conn.execute("SELECT recsys.create_model(%s, %s, 'u', 'i', 'w',"
                     " event_column => 'kind', event_weights => '{\"view\": 1, \"cart\": 10}')",
                     (name, relation))


@pytest.mark.parametrize(("key_type", "events"), [
    ("smallint", KEYED_EVENTS), ("integer", KEYED_EVENTS),
    ("bigint", KEYED_EVENTS + BIG_EVENTS),
])
def test_integer_keys_load_as_their_text_does(conn: psycopg.Connection, key_type: str,
                                              events: list[tuple]) -> None:
    _keyed_models(conn, key_type, events)
    ints, int_users, int_items = _load_keyed(conn, "ints")
    texts, text_users, text_items = _load_keyed(conn, "texts")
    # same indices (the text order of the keys), same summed weights, same counts
    assert (int_users, int_items) == (text_users, text_items)
    assert (ints.matrix != texts.matrix).nnz == 0 and ints.matrix.shape == texts.matrix.shape
    assert (ints.rows_read, ints.rows_skipped_null, ints.rows_skipped_event) == (
        texts.rows_read, texts.rows_skipped_null, texts.rows_skipped_event) == (
        len(events), 4, 2)
    assert rows(conn, "SELECT pg_typeof(native)::text FROM recsys_user_map LIMIT 1") == [
        ("text",)]
    ints, _, _ = _load_keyed(conn, "ints")
    assert rows(conn, "SELECT pg_typeof(native)::text FROM recsys_user_map LIMIT 1") == [
        (key_type,)]
    weights = {(int_users[u], int_items[i]): w for u, i, w in zip(
        *ints.matrix.tocoo().coords, ints.matrix.tocoo().data, strict=True)}
    assert weights[("1", "10")] == 1 + 2 + 5  # duplicates summed, 'cart' weighs 10
    assert ("7", "100") not in weights and "7" in int_users  # weighs zero: kept as a user
    if key_type == "bigint":
        assert weights[(str(BIG), str(-BIG - 1))] == 1.0
        assert weights[(str(-BIG - 1), str(BIG))] == 20.0


def test_integer_keys_in_several_chunks_and_after_a_too_low_estimate(
        conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    _keyed_models(conn, "bigint", KEYED_EVENTS + BIG_EVENTS)
    whole, users, items = _load_keyed(conn, "ints")
    monkeypatch.setattr(load, "ROWS_PER_CHUNK", 3)  # NULL users and negative keys too
    chunked, chunked_users, chunked_items = _load_keyed(conn, "ints")
    calls: list[int] = []
    read = load._read_key_records

    def fail_first(*args: Any) -> Any:
        calls.append(args[3])  # (conn, parts, record, chunks, check_role)
        if len(calls) == 1:  # as a chunk past PostgreSQL's 1 GB value limit fails
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'string buffer exceeds maximum allowed"
                         " length' USING ERRCODE = 'program_limit_exceeded'; END $$")
        return read(*args)

    monkeypatch.setattr(load, "ROWS_PER_CHUNK", 10)
    monkeypatch.setattr(load, "_read_key_records", fail_first)
    retried, retried_users, retried_items = _load_keyed(conn, "ints")
    # from the exact count, and at least twice the chunks that failed
    assert calls[1] == max(2 * calls[0], -(-(len(KEYED_EVENTS) + len(BIG_EVENTS)) // 10))
    for data, data_users, data_items in ((chunked, chunked_users, chunked_items),
                                         (retried, retried_users, retried_items)):
        assert (data_users, data_items) == (users, items)
        assert (data.matrix != whole.matrix).nnz == 0
        assert (data.rows_read, data.rows_skipped_null, data.rows_skipped_event) == (
            whole.rows_read, whole.rows_skipped_null, whole.rows_skipped_event)


@pytest.mark.parametrize(("values", "message"), [
    ("", r'source "public\.ik" of model "ik" is empty'),
    ("(NULL, 1, 1), (2, 1, NULL)", "has no usable rows: 2 with NULL keys or weights, 0 with"),
    ("(1, 1, 1), (2, 1, 'NaN')", 'weight column "w" of model "ik" has 1 NaN value'),
    ("(1, 1, -1), (2, 1, '-Infinity')", "has 1 infinite, 2 negative values; weights must"),
])
def test_integer_key_sources_fail_as_text_key_ones(conn: psycopg.Connection, values: str,
                                                   message: str) -> None:
    conn.execute("CREATE TABLE public.ik (u integer, i bigint, w double precision)")
    if values:
        conn.execute(f"INSERT INTO public.ik VALUES {values}")
    conn.execute("SELECT recsys.create_model('ik', 'public.ik', 'u', 'i', 'w')")
    with pytest.raises(DataError, match=message):
        load.read(conn, get_model(conn, "ik"))


