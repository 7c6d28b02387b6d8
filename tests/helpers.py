"""Plain helpers the tests import: database names and URLs on the test server, queries.
Fixtures live in conftest.py."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

TEMPLATE = "recsys_test_template"


def database_url(server_url: str, name: str) -> str:
    """URL of another database on the same server."""
    return make_conninfo(server_url, dbname=name)


def admin(server_url: str) -> psycopg.Connection:
    """Autocommit connection to the server's maintenance database (CREATE/DROP DATABASE)."""
    return psycopg.connect(server_url, autocommit=True)


def new_database(server_url: str, template: str = TEMPLATE) -> tuple[str, str]:
    """Create a database from a template; returns (name, url)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with admin(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))
    return name, database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with admin(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def rows(conn: psycopg.Connection, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
    """Run a query and fetch all rows."""
    return conn.execute(query, params).fetchall()


def run_returning_rows(conn: psycopg.Connection, block: str) -> None:
    """Run a block of SQL statements (a docs example); every statement that returns rows must
    return at least one."""
    with conn.cursor() as cur:
        cur.execute(block.encode())
        while True:
            if cur.description is not None:
                assert cur.fetchall(), f"no rows from:\n{block}"
            if not cur.nextset():
                break
