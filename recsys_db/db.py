"""Connections: one place that opens them and registers pgvector's types."""

from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector


def connect(url: str, *, autocommit: bool = True, vector: bool = True) -> psycopg.Connection:
    """Open a connection; ``vector=False`` when the extension may not exist yet."""
    conn = psycopg.connect(url, autocommit=autocommit, application_name="recsys-db")
    if vector:
        register_vector(conn)
    return conn
