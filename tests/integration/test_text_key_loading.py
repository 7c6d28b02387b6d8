"""Keys other than integers, read in one pass and mapped by numpy: every key type, in the byte
order of the keys' text (COLLATE "C"), in chunks, and whatever the client's encoding."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from recsys_db import load
from recsys_db.model import get_model

from ..helpers import rows

KEYS = ["alice", "Bob", "bob", "zoë", "Zoe", "", "a b", "a\x01b", "10", "9", "éa", "ea",
        "日本", "x" * 300]


def _loaded(conn: psycopg.Connection, model: str) -> dict[tuple[str, str], float]:
    """(user, item) -> weight of load.read, after checking the maps against the server's own
    order of the keys."""
    data = load.read(conn, get_model(conn, model))
    for side in ("user", "item"):
        keys = rows(conn, f"SELECT idx, key FROM recsys_{side}_map ORDER BY idx")
        assert [idx for idx, _ in keys] == list(range(len(keys)))
        assert rows(conn, f"SELECT key FROM recsys_{side}_map ORDER BY key COLLATE \"C\"") == [
            (key,) for _, key in keys]
        assert rows(conn, f"SELECT count(*) FROM recsys_{side}_map"
                          " WHERE native::text IS DISTINCT FROM key") == [(0,)]
    users = [key for key, in rows(conn, "SELECT key FROM recsys_user_map ORDER BY idx")]
    items = [key for key, in rows(conn, "SELECT key FROM recsys_item_map ORDER BY idx")]
    coo = data.matrix.tocoo()
    return {(users[u], items[i]): float(w)
            for u, i, w in zip(coo.row, coo.col, coo.data, strict=True)}


def _expected(conn: psycopg.Connection, relation: str) -> dict[tuple[str, str], float]:
    return {(u, i): float(w) for u, i, w in rows(
        conn, f"SELECT u::text, i::text, sum(w) FROM {relation} WHERE u IS NOT NULL"
              " AND i IS NOT NULL AND w IS NOT NULL GROUP BY 1, 2 HAVING sum(w) <> 0")}


def _events(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE ev (u text, i text, w real)")
    with conn.cursor().copy("COPY ev FROM STDIN") as copy:
        for n, user in enumerate(KEYS):
            for m, item in enumerate(KEYS[::-1]):
                if (n + m) % 3:
                    copy.write_row((user, item, (n * m) % 4))
        for row in ((None, "a", 1), ("a", None, 1), ("a", "b", None), ("alice", "Bob", 2)):
            copy.write_row(row)
    conn.execute("SELECT recsys.create_model('ev', 'ev', 'u', 'i', 'w')")


def test_text_keys_of_every_kind(conn: psycopg.Connection) -> None:
    _events(conn)
    assert _loaded(conn, "ev") == _expected(conn, "ev")
    data = load.read(conn, get_model(conn, "ev"))
    assert (data.rows_read, data.rows_skipped_null, data.rows_skipped_event) == (
        sum(1 for n in range(len(KEYS)) for m in range(len(KEYS)) if (n + m) % 3) + 4, 3, 0)


@pytest.mark.parametrize(("user_type", "item_type", "user", "item"), [
    ("varchar(10)", "char(6)", "'u' || (g % 13)", "'i' || (g % 7)"),
    ("uuid", "numeric", "md5((g % 13)::text)::uuid", "(g % 7) / 4.0"),
    ("integer", "text", "g % 13 - 3", "'i' || (g % 7)"),
    ("text", "uuid", "'u' || (g % 13)", "md5((g % 7)::text)::uuid"),
    ("text", "bigint", "'u' || (g % 13)", "(g % 7) * 10000000000"),
])
def test_key_types(conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, user_type: str,
                   item_type: str, user: str, item: str) -> None:
    conn.execute(f"CREATE TABLE typed (u {user_type}, i {item_type}, w integer)")
    conn.execute(f"INSERT INTO typed SELECT {user}, {item}, 1 + g % 3"
                 " FROM generate_series(1, 200) g")
    conn.execute("SELECT recsys.create_model('typed', 'typed', 'u', 'i', 'w')")
    assert _loaded(conn, "typed") == _expected(conn, "typed")
    monkeypatch.setattr(load, "TEXT_BYTES_PER_CHUNK", 500)  # about ten chunks
    assert _loaded(conn, "typed") == _expected(conn, "typed")
    native = "text" if user_type.startswith("varchar") else user_type
    assert rows(conn, "SELECT pg_typeof(native)::text FROM recsys_user_map LIMIT 1") == [
        (native,)]


def test_in_chunks_and_after_a_chunk_too_large(conn: psycopg.Connection,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _events(conn)
    whole = _loaded(conn, "ev")
    monkeypatch.setattr(load, "TEXT_BYTES_PER_CHUNK", 200)  # NULL users fall in chunk 0
    chunks: list[int] = []
    read = load._read_text_keys

    def count_chunks(*args: Any) -> Any:
        chunks.append(args[2])  # (conn, parts, chunks, check_role)
        return read(*args)

    monkeypatch.setattr(load, "_read_text_keys", count_chunks)
    assert _loaded(conn, "ev") == whole
    assert chunks[0] > 5

    def fail_first(*args: Any) -> Any:
        chunks.append(args[2])
        if len(chunks) == 1:  # as a chunk past PostgreSQL's 1 GB value limit fails
            args[0].execute("DO $$ BEGIN RAISE EXCEPTION 'string buffer exceeds maximum"
                            " allowed length' USING ERRCODE = 'program_limit_exceeded'; END $$")
        return read(*args)

    chunks.clear()
    monkeypatch.setattr(load, "TEXT_BYTES_PER_CHUNK", 10 ** 9)
    monkeypatch.setattr(load, "_read_text_keys", fail_first)
    assert _loaded(conn, "ev") == whole
    assert chunks == [1, 4]


def test_keys_in_a_client_encoding_other_than_the_servers(conn: psycopg.Connection) -> None:
    _events(conn)
    conn.execute("DELETE FROM ev WHERE u ~ '日本' OR i ~ '日本'")  # not in LATIN1
    whole = _loaded(conn, "ev")
    conn.execute("SET client_encoding TO 'LATIN1'")
    assert _loaded(conn, "ev") == whole
    assert rows(conn, "SHOW client_encoding") == [("LATIN1",)]
