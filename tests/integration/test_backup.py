"""Backup and restore of a database with trained models, with PostgreSQL's own tools:
``pg_dump -Fc`` of the suite's database, ``pg_restore`` into a fresh database of the same
server, and into a fresh cluster once recsys's roles are there (``pg_dumpall --roles-only``:
roles are global, no database dump has them). Every serving function gives the rows it gave
before, ``recsys-db install`` finds nothing to change, and training goes on from the versions
and run ids of the dump."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from recsys_db import db, install, training

from .. import servers
from ..helpers import admin, database_url, drop_database, new_database, rows
from .test_replica import MODEL, SERVING_CALLS, create_shop, served


def client(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a client program of the suite's build (pg_dump, pg_restore, pg_dumpall, psql)."""
    return subprocess.run([str(servers.bin_dir() / program), *args], capture_output=True,
                          text=True, check=False, timeout=300)


@dataclass(frozen=True)
class Source:
    """The database that was dumped, what it served, and its dump."""

    url: str
    served: dict[str, list[tuple[Any, ...]]]
    last_run: int
    dump: Path


def state(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """The versions of model shop and their status."""
    return rows(conn, "SELECT version, status FROM recsys.versions WHERE model = 'shop'"
                      " ORDER BY version")


@pytest.fixture(scope="module")
def source(server_url: str, template_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """Model shop trained twice (versions 1 and 2, with precomputed rows, an hnsw index and
    item features), its database dumped with ``pg_dump -Fc``."""
    if os.environ.get("RECSYS_TEST_DATABASE_URL"):
        with admin(server_url) as conn:
            major = conn.info.server_version // 10000
        dump_version = client("pg_dump", "--version").stdout
        if f" {major}." not in dump_version:
            pytest.skip(f"the suite's pg_dump ({dump_version.strip()}) is not of the server's "
                        f"major version {major}")
    name, url = new_database(server_url)
    with db.connect(url) as conn:
        create_shop(conn)
    training.train(url, MODEL)
    with db.connect(url) as conn:
        conn.execute("INSERT INTO public.events SELECT 1, 'item-' || i, 3.0, 'buy'"
                     " FROM generate_series(21, 30) i")
    training.train(url, MODEL)
    dump = tmp_path_factory.mktemp("dump") / "shop.dump"
    dumped = client("pg_dump", "-Fc", "-f", str(dump), "-d", url)
    assert dumped.returncode == 0, dumped.stderr
    with db.connect(url) as conn:
        assert state(conn) == [(1, "ready"), (2, "ready")]
        yield Source(url, served(conn), rows(conn, "SELECT max(id) FROM recsys.run")[0][0],
                     dump)
    drop_database(server_url, name)


def check_restored(url: str, source: Source) -> None:
    """Same rows from every serving function; install changes nothing; a new training makes
    version 3 with a run id after the dump's."""
    with db.connect(url) as conn:
        assert served(conn) == source.served
        assert state(conn) == [(1, "ready"), (2, "ready")]
    assert install.install(url).sql_applied is False
    result = training.train(url, MODEL)
    assert result.status == "succeeded"
    assert result.version == 3 and result.run_id > source.last_run
    with db.connect(url) as conn:
        assert state(conn)[-1] == (3, "ready")
        assert rows(conn, "SELECT active_version FROM recsys.models") == [(3,)]
        assert all(rows(conn, call) for call in SERVING_CALLS)


def empty_database(server_url: str) -> tuple[str, str]:
    """A new empty database on the server (not from the suite's template, which has recsys);
    returns (name, url)."""
    name = "restored_" + os.urandom(4).hex()
    with admin(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, database_url(server_url, name)


def test_restore_into_a_new_database_of_the_same_server(server_url: str,
                                                         source: Source) -> None:
    name, url = empty_database(server_url)
    try:
        # the dump creates the vector extension itself; the roles are the server's
        restored = client("pg_restore", "--exit-on-error", "-d", url, str(source.dump))
        assert restored.returncode == 0, restored.stderr
        check_restored(url, source)
    finally:
        drop_database(server_url, name)


def test_restore_without_owners_does_not_serve(server_url: str, source: Source) -> None:
    # --no-owner makes the restoring role own everything: the factor tables fail recsys's
    # ownership check (and the SECURITY DEFINER functions would run as that role)
    name, url = empty_database(server_url)
    try:
        restored = client("pg_restore", "--no-owner", "--exit-on-error", "-d", url,
                          str(source.dump))
        assert restored.returncode == 0, restored.stderr
        with db.connect(url) as conn, pytest.raises(
                psycopg.errors.ObjectNotInPrerequisiteState) as refused:
            conn.execute("SELECT * FROM recsys.recommend('shop', '1', 25)")
        assert refused.value.diag.message_primary == (
            'factor tables of version 2 of model "shop" are missing or not owned by '
            "recsys_owner")
    finally:
        drop_database(server_url, name)


def test_restore_into_a_new_cluster_needs_the_roles_first(
        server_url: str, source: Source, tmp_path: Path) -> None:
    cluster = servers.Cluster(servers.bin_dir(), passwords=False)
    try:
        cluster.start()
        url = cluster.url(dbname="shop")
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        # without recsys's roles the restore stops at the first object owned by one
        refused = client("pg_restore", "--exit-on-error", "-d", url, str(source.dump))
        assert refused.returncode != 0
        assert 'role "recsys_owner" does not exist' in refused.stderr, refused.stderr
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("DROP DATABASE shop")
            conn.execute("CREATE DATABASE shop")

        roles = tmp_path / "roles.sql"
        dumped = client("pg_dumpall", "--roles-only", "-f", str(roles), "-d", server_url)
        assert dumped.returncode == 0, dumped.stderr
        # the superuser exists on both sides: its CREATE ROLE fails, the rest applies
        applied = client("psql", "-X", "-q", "-d", cluster.url(), "-f", str(roles))
        assert applied.returncode == 0, applied.stderr
        assert all(line.endswith('ERROR:  role "postgres" already exists')
                   for line in applied.stderr.splitlines() if "ERROR" in line), applied.stderr
        restored = client("pg_restore", "--exit-on-error", "-d", url, str(source.dump))
        assert restored.returncode == 0, restored.stderr
        check_restored(url, source)
    finally:
        cluster.stop()
