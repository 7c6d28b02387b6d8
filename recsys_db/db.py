"""Connections: one place that opens them and registers pgvector's types."""

from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector

# How often a backend working on a long query checks that recsys-db is still connected; without
# it a killed worker's query (and its advisory lock) lives on until the query ends.
CLIENT_CHECK = "2s"


def connect(url: str, *, autocommit: bool = True, vector: bool = True) -> psycopg.Connection:
    """Open a connection; ``vector=False`` when the extension may not exist yet."""
    conn = psycopg.connect(url, autocommit=autocommit, application_name="recsys-db")
    if conn.info.server_version >= 140000:
        conn.execute("SELECT set_config('client_connection_check_interval', %s, false)",
                     (CLIENT_CHECK,))
        if not autocommit:
            conn.commit()
    if vector:
        register_vector(conn)
    return conn
