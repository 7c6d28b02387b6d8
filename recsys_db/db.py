"""Connections: one place that opens them and registers pgvector's types."""

from __future__ import annotations

from typing import Any

import psycopg
from pgvector.psycopg.bit import register_bit_info
from pgvector.psycopg.halfvec import register_halfvec_info
from pgvector.psycopg.sparsevec import register_sparsevec_info
from pgvector.psycopg.vector import register_vector_info
from psycopg import sql
from psycopg.types import TypeInfo

from recsys_db import queries
from recsys_db.errors import RecsysError

# How often a backend working on a long query checks that recsys-db is still connected; without
# it a killed worker's query (and its advisory lock) lives on until the query ends.
CLIENT_CHECK = "2s"

# The search_path of a pinned session, as every recsys function has it: no schema another role
# may write is on it (a function or operator planted there with a better-matching signature
# would run with this session's rights), pg_temp last so that no temporary table or type hides
# a real one. Everything such a session names outside pg_catalog it names with its schema.
PINNED_SEARCH_PATH = "pg_catalog, pg_temp"


def connect(url: str, *, autocommit: bool = True, vector: bool = True,
            pinned: bool = False) -> psycopg.Connection:
    """Open a connection; ``vector=False`` when the extension may not exist yet.

    ``pinned`` sets the session's search_path to ``PINNED_SEARCH_PATH``: for sessions that run
    recsys-db's own queries (install, training, fold-in, the worker), never for one that runs
    queries written for the user's search_path.
    """
    conn = psycopg.connect(url, autocommit=autocommit, application_name="recsys-db")
    if conn.info.server_version >= 140000:
        conn.execute(queries.text("db_connection_check"), {"interval": CLIENT_CHECK})
    if pinned:
        conn.execute(queries.text("db_pin_search_path"), {"path": PINNED_SEARCH_PATH})
    if not autocommit:
        conn.commit()
    if vector:
        register_vector_types(conn)
    return conn


def require_writable(conn: psycopg.Connection[Any], action: str = "train") -> None:
    """Refuse, before anything is written, a server that cannot take writes: a hot standby
    (``pg_is_in_recovery()``), or a session whose transactions are read-only
    (``default_transaction_read_only``). ``action`` names what must run elsewhere."""
    row = conn.execute(queries.text("db_read_only")).fetchone()
    assert row is not None
    in_recovery, read_only = row
    if in_recovery:
        raise RecsysError(f"database is a read-only standby: {action} on the primary "
                          "(serving works on a standby)")
    if read_only:
        raise RecsysError(f"database session is read-only (default_transaction_read_only is "
                          f"on): {action} with a session that may write")


def vector_schema(conn: psycopg.Connection[Any]) -> str:
    """The schema that holds the vector extension; RecsysError when it is not installed.

    Leaves the connection as it found it: idle, or in the transaction it was in."""
    with conn.transaction():
        row = conn.execute(queries.text("db_vector_schema")).fetchone()
    if row is None:
        raise RecsysError("extension vector is not installed in this database; run: "
                          "recsys-db install")
    return str(row[0])


def vector_type(conn: psycopg.Connection[Any]) -> sql.Identifier:
    """pgvector's type ``vector``, named with its schema (for queries of pinned sessions)."""
    return sql.Identifier(vector_schema(conn), "vector")


def register_vector_types(conn: psycopg.Connection[Any]) -> None:
    """pgvector's types, looked up by their schema-qualified names: works whatever the session's
    search_path (pgvector's own ``register_vector`` looks them up on it)."""
    schema = vector_schema(conn)
    vector_info = TypeInfo.fetch(conn, sql.Identifier(schema, "vector"))
    if vector_info is None:
        raise RecsysError(f'type vector not found in schema "{schema}"')
    register_vector_info(conn, vector_info)
    bit_info = TypeInfo.fetch(conn, "pg_catalog.bit")
    if bit_info is not None:
        register_bit_info(conn, bit_info)
    halfvec_info = TypeInfo.fetch(conn, sql.Identifier(schema, "halfvec"))
    if halfvec_info is not None:
        register_halfvec_info(conn, halfvec_info)
    sparsevec_info = TypeInfo.fetch(conn, sql.Identifier(schema, "sparsevec"))
    if sparsevec_info is not None:
        register_sparsevec_info(conn, sparsevec_info)
