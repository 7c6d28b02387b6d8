"""A server of your own, as hosted PostgreSQL is: the suite's build (RECSYS_TEST_SERVER) started
outside recsys-db's embedded manager, reached over TCP with password authentication by a login
that is no superuser and owns the database, with the vector extension created beforehand by an
administrator. recsys-db runs through RECSYS_DATABASE_URL, as its command line is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from recsys_db import datasets, db

from .. import servers
from ..helpers import rows

OWNER, READER = "shop_owner", "shop_bi"
OWNER_PASSWORD, READER_PASSWORD = "owner's s3cret", "bi pass"


@pytest.fixture(scope="module")
def own_server() -> Iterator[servers.Cluster]:
    cluster = servers.Cluster(servers.bin_dir(), passwords=True)
    cluster.start()
    with psycopg.connect(cluster.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
            sql.Identifier(OWNER), sql.Literal(OWNER_PASSWORD)))
    yield cluster
    cluster.stop()


def _database(cluster: servers.Cluster, name: str, *, vector: bool) -> str:
    """A database the owner owns (vector created in it by the administrator, if asked);
    returns the owner's URL."""
    with psycopg.connect(cluster.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(OWNER)))
    if vector:
        with psycopg.connect(cluster.url(dbname=name), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION vector")
    return cluster.url(OWNER, OWNER_PASSWORD, name)


def _recsys_db(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recsys_db.cli", *args], capture_output=True,
                          text=True, check=False, timeout=600,
                          env={**os.environ, "RECSYS_DATABASE_URL": url})


def test_database_owner_installs_trains_and_serves(
        own_server: servers.Cluster, movielens_data: datasets.MovieLens) -> None:
    url = _database(own_server, "shop", vector=True)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(own_server.url(OWNER, "wrong", "shop")).close()
    installed = _recsys_db(url, "install", "--json")
    assert installed.returncode == 0, installed.stderr
    report = json.loads(installed.stdout)
    with psycopg.connect(url, autocommit=True) as conn:
        assert rows(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [
            (False,)]
        assert [report["postgres"], report["pgvector"]] == list(rows(
            conn, "SELECT current_setting('server_version'), extversion FROM pg_extension"
                  " WHERE extname = 'vector'")[0])
        # the owner made the roles, so it may give a BI login recsys_reader (PostgreSQL 16+)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE recsys_reader").format(
            sql.Identifier(READER), sql.Literal(READER_PASSWORD)))
    with db.connect(url) as conn:
        datasets.write_movielens(conn, movielens_data)
        conn.execute("SELECT recsys.create_model('ml', 'movielens.liked', 'user_id', 'item_id',"
                     " params => recsys.als(factors => 16, iterations => 5))")
    trained = _recsys_db(url, "train", "ml", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["status"] == "succeeded"
    with psycopg.connect(own_server.url(READER, READER_PASSWORD, "shop")) as bi:
        assert len(rows(bi, "SELECT * FROM recsys.recommend('ml', '1', 10)")) == 10
        assert len(rows(bi, "SELECT * FROM recsys.similar_items('ml', '50', 5)")) == 5
        assert len(rows(bi, "SELECT * FROM recsys.interested_users('ml', '50', 5)")) == 5
        assert rows(bi, "SELECT count(*) FROM recsys.metrics WHERE model = 'ml'")[0][0] > 0


def test_install_without_vector_asks_the_administrator(own_server: servers.Cluster) -> None:
    url = _database(own_server, "bare", vector=False)
    refused = _recsys_db(url, "install")
    assert refused.returncode != 0
    assert ("extension vector is not installed in database bare and role shop_owner may not "
            "create it: have an administrator run CREATE EXTENSION vector in database bare"
            ) in refused.stderr
    with psycopg.connect(url) as conn:
        assert rows(conn, "SELECT to_regnamespace('recsys')") == [(None,)]
