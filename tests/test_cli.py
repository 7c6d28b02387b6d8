"""The recsys-db command line, run as a real subprocess against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from .conftest import rows


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recsys_db.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})}, check=False)


def test_help_teaches() -> None:
    out = cli("--help")
    assert out.returncode == 0
    assert "SELECT * FROM recsys.recommend" in out.stdout
    for command in ("install", "db", "train", "demo", "models", "runs"):
        assert command in out.stdout


def test_install_and_train_json(db_url: str, conn: psycopg.Connection) -> None:
    assert json.loads(cli("--database-url", db_url, "--json", "install").stdout)[
        "sql_applied"] is False
    conn.execute("CREATE TABLE public.t AS SELECT 'u' || (g % 9) AS u, 'i' || (g % 13) AS i"
                 " FROM generate_series(1, 40) g")
    conn.execute("SELECT recsys.create_model('t', 'public.t', 'u', 'i',"
                 " params => recsys.als(factors => 4))")
    out = cli("--database-url", db_url, "--json", "train", "t")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["status"], result["version"], result["users"], result["items"]) == (
        "succeeded", 1, 9, 13)
    assert set(result["stages"]) >= {"load", "fit", "write", "activate"}
    listed = json.loads(cli("--database-url", db_url, "--json", "models").stdout)
    assert listed[0]["name"] == "t" and listed[0]["active_version"] == 1
    recs = json.loads(cli("--database-url", db_url, "--json", "recommend", "t", "u1", "-k",
                          "3").stdout)
    assert [r["rank"] for r in recs] == [1, 2, 3]


def test_train_progress_and_errors(db_url: str, conn: psycopg.Connection) -> None:
    out = cli("--database-url", db_url, "train", "ghost")
    assert out.returncode == 1
    assert out.stderr.strip().endswith('error: model "ghost" does not exist')
    conn.execute("CREATE TABLE public.t (u text, i text)")
    conn.execute("INSERT INTO public.t VALUES ('a', 'x'), ('b', 'y')")
    conn.execute("SELECT recsys.create_model('t', 'public.t', 'u', 'i',"
                 " params => recsys.als(factors => 2))")
    out = cli("--database-url", db_url, "train", "t")
    assert out.returncode == 0
    assert "fit" in out.stderr and "version 1 active" in out.stdout
    out = cli("--database-url", db_url, "--json", "recommend", "t", "a", "-k", "0")
    assert out.returncode == 1
    assert json.loads(out.stdout) == {"error": "k must be a positive integer, not 0"}


def test_embedded_server_commands(tmp_path: Path) -> None:
    env = {"RECSYS_DATA_DIR": str(tmp_path / "pg")}
    try:
        started = cli("db", "start", env=env)
        assert started.returncode == 0, started.stderr
        url = cli("db", "url", env=env).stdout.strip()
        with psycopg.connect(url) as conn:
            assert rows(conn, "SELECT 1") == [(1,)]
        psql = cli("db", "psql", "-tAc", "SELECT 40 + 2", env=env)
        assert psql.stdout.strip() == "42"
    finally:
        stopped = cli("db", "stop", env=env)
    assert stopped.stdout.strip() == "embedded postgres stopped"
    assert cli("db", "stop", env=env).stdout.strip() == "embedded postgres was not running"


@pytest.mark.slow
def test_demo_end_to_end(db_url: str, conn: psycopg.Connection) -> None:
    out = cli("--database-url", db_url, "demo")
    assert out.returncode == 0, out.stderr
    assert "FROM recsys.recommend('movielens', '196', k => 10)" in out.stdout
    assert "Return of the Jedi" in out.stdout.split("movies similar to Star Wars")[1]
    assert "quality on a held-out split" in out.stdout
    liked = {r[0] for r in rows(conn, "SELECT item_id::text FROM movielens.liked"
                                      " WHERE user_id = 196")}
    recs = rows(conn, "SELECT item_key, reason FROM recsys.recommend('movielens', '196', 10)")
    assert len(recs) == 10 and {r[1] for r in recs} == {"als"}
    assert not liked & {r[0] for r in recs}
    # running it again replaces the demo data and model cleanly
    again = json.loads(cli("--database-url", db_url, "--json", "demo").stdout)
    assert again["run"]["version"] == 1 and len(again["recommendations"]) == 10
    ndcg = {m["metric"]: m for m in again["metrics"]}["ndcg"]
    assert float(ndcg["als"]) > float(ndcg["popular"])


def test_demo_refuses_foreign_schema(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA movielens")
    conn.execute("CREATE TABLE movielens.precious (x int)")
    out = cli("--database-url", db_url, "demo")
    assert out.returncode == 1
    assert 'schema "movielens" exists and was not created by recsys-db' in out.stderr
    assert rows(conn, "SELECT count(*) FROM movielens.precious") == [(0,)]
