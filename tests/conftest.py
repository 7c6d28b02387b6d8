"""Test databases: one real PostgreSQL (embedded unless RECSYS_TEST_DATABASE_URL is set),
a template database with recsys installed, and a fresh copy of it per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from recsys_db import datasets, db, embedded, install, training

TEMPLATE = "recsys_test_template"


@pytest.fixture(scope="session")
def server_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """Data directory of the embedded test server; None with RECSYS_TEST_DATABASE_URL."""
    if os.environ.get("RECSYS_TEST_DATABASE_URL"):
        yield None
        return
    data = Path(os.environ.get("RECSYS_TEST_DATA_DIR") or tmp_path_factory.mktemp("pg")) / "data"
    embedded.start(data)
    yield data
    embedded.stop(data)


@pytest.fixture(scope="session")
def server_url(server_data: Path | None) -> str:
    """URL of the server the tests run against (its maintenance database)."""
    if server_data is None:
        return os.environ["RECSYS_TEST_DATABASE_URL"]
    return embedded.start(server_data)


@pytest.fixture
def restart_server(server_data: Path | None) -> Callable[[], None]:
    """Restarts the embedded test server (skips the test against an external server)."""
    if server_data is None:
        pytest.skip("restarting needs the embedded server")

    def restart() -> None:
        embedded.restart(server_data)

    return restart


def database_url(server_url: str, name: str) -> str:
    """URL of another database on the same server."""
    return make_conninfo(server_url, dbname=name)


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(server_url, autocommit=True)


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    """A database with the recsys schema installed, copied for every test."""
    with _admin(server_url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    url = database_url(server_url, TEMPLATE)
    install.install(url)
    return url


def new_database(server_url: str, template: str = TEMPLATE) -> tuple[str, str]:
    """Create a database from a template; returns (name, url)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _admin(server_url) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name, database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with _admin(server_url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh database with recsys installed, dropped after the test."""
    name, url = new_database(server_url)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """Autocommit connection to the test's database, pgvector types registered."""
    with db.connect(db_url) as connection:
        yield connection


def rows(conn: psycopg.Connection, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run a query and fetch all rows."""
    return conn.execute(query, params).fetchall()


@pytest.fixture(scope="session")
def movielens_data() -> datasets.MovieLens:
    """MovieLens 100K from the recbole wheel (downloaded once into the cache)."""
    return datasets.load_recbole()


@pytest.fixture(scope="session")
def movielens_url(server_url: str, template_url: str,
                  movielens_data: datasets.MovieLens) -> Iterator[str]:
    """A database with MovieLens loaded and model 'ml' trained once; tests must not change it."""
    name, url = new_database(server_url)
    with db.connect(url) as connection:
        datasets.write_movielens(connection, movielens_data)
        connection.execute(
            "SELECT recsys.create_model('ml', 'movielens.liked', 'user_id', 'item_id',"
            " params => recsys.als(factors => 32, iterations => 10, regularization => 0.05))")
    training.train(url, "ml")
    yield url
    drop_database(server_url, name)
