"""The recsys-db command line, run as a real subprocess against the test database."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from recsys_db import cli as recsys_cli

from ..helpers import rows


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recsys_db.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})}, check=False)


def small_model(conn: psycopg.Connection, name: str = "t", params: str = "factors => 4",
                pause: float = 0.0, time_column: bool = False) -> None:
    """Model ``name`` over a view of 400 interactions (30 users, 17 items) whose every read
    sleeps ``pause`` seconds once."""
    conn.execute("CREATE TABLE public.raw AS SELECT 'u' || (g % 30) AS u, 'i' || (g % 17) AS i,"
                 " timestamp '2024-01-01' + g * interval '1 hour' AS ts"
                 " FROM generate_series(1, 400) g")
    conn.execute("CREATE VIEW public.src AS SELECT r.* FROM public.raw r"
                 f" WHERE (SELECT pg_sleep({pause})) IS NOT NULL")
    conn.execute("SELECT recsys.create_model(%s, 'public.src', 'u', 'i', time_column => %s,"
                 f" params => recsys.als({params}))", (name, "ts" if time_column else None))


def run_status(conn: psycopg.Connection, model: str) -> list[tuple[str, ...]]:
    return [tuple(r) for r in rows(conn, "SELECT kind, status FROM recsys.runs WHERE model = %s"
                                         " ORDER BY run_id", (model,))]


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
    # the SQL is shown as a user would paste it: no developer comments
    assert "   SELECT r.rank, m.title" in out.stdout and "as the demo prints" not in out.stdout
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


def test_global_options_after_the_command(db_url: str, conn: psycopg.Connection) -> None:
    small_model(conn, params="factors => 4, eval_split => 'off'")
    out = cli("train", "t", "--json", "--database-url", db_url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "succeeded"
    # given before the command, an option is not reset by the command's copy of it
    listed = cli("--json", "--database-url", db_url, "runs", "t")
    assert [run["status"] for run in json.loads(listed.stdout)] == ["succeeded"]
    # -q: the result line only; no "training t", no progress
    quiet = cli("train", "t", "-q", "--database-url", db_url)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert len(quiet.stdout.splitlines()) == 1
    assert quiet.stdout.startswith("model t: version 2 active (30 users, 17 items, ")
    loud = cli("--database-url", db_url, "train", "t")
    assert loud.stderr.startswith("training t\n") and "  fit " in loud.stderr


def test_every_command_and_option_has_help() -> None:
    parser = recsys_cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in subparsers._choices_actions}
    assert set(summaries) == set(subparsers.choices)
    for name, command in subparsers.choices.items():
        assert summaries[name], f"{name} has no summary"
        assert command.description, f"{name} has no description"
        for action in command._actions:
            assert action.help and action.help != argparse.SUPPRESS, (
                f"{name} {action.option_strings or action.dest} has no help")
    for name in ("train", "runs", "recommend", "tune", "worker", "status", "models", "install"):
        assert f"recsys-db {name}" in (subparsers.choices[name].epilog or ""), name
    assert "3    train: the promotion gate rejected the run" in (parser.epilog or "")
    assert recsys_cli.EXIT_REJECTED == 3


def test_runs_of_unknown_model_fails(db_url: str, conn: psycopg.Connection) -> None:
    out = cli("--database-url", db_url, "runs", "nope")
    assert (out.returncode, out.stdout, out.stderr) == (
        1, "", 'error: model "nope" does not exist\n')
    out = cli("--database-url", db_url, "runs", "nope", "--json")
    assert out.returncode == 1
    assert json.loads(out.stdout) == {"error": 'model "nope" does not exist'}
    small_model(conn)
    out = cli("--database-url", db_url, "runs", "t")
    assert out.returncode == 0 and out.stdout.startswith("run_id")


def test_tune_bar_only_once_trials_run_and_shell_safe_hint(
        db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    out = cli("--database-url", db_url, "tune", "nope", "--grid", "factors=2,3")
    assert (out.returncode, out.stderr) == (1, 'error: model "nope" does not exist\n')
    name = "$(touch pwned)"
    small_model(conn, name)
    out = cli("--database-url", db_url, "tune", name, "--grid", "factors=2,3", "--apply")
    assert out.returncode == 0, out.stderr
    assert "2/2" in out.stderr  # the progress bar ran through both trials
    hint = out.stdout.strip().splitlines()[-1].split("train it with: ")[1]
    assert hint == "recsys-db train '$(touch pwned)'"
    assert shlex.split(hint) == ["recsys-db", "train", name]
    subprocess.run(["bash", "-c", f"echo {hint}"], cwd=tmp_path, check=True,
                   capture_output=True)
    assert not (tmp_path / "pwned").exists()


def test_worker_fold_in_without_blas_warning(db_url: str, conn: psycopg.Connection) -> None:
    small_model(conn)
    assert cli("--database-url", db_url, "train", "t").returncode == 0
    conn.execute("INSERT INTO public.raw VALUES ('u1', 'i3', now()), ('newcomer', 'i2', now())")
    conn.execute("SELECT recsys.request_refresh('t', mode => 'incremental')")
    # OpenBLAS with several threads, whatever the machine: implicit warns about that unless
    # BLAS is limited around its solvers
    out = cli("--database-url", db_url, "worker", "--once",
              env={"OPENBLAS_NUM_THREADS": "2", "PYTHONWARNINGS": "default"})
    assert out.returncode == 0, out.stderr
    assert run_status(conn, "t") == [("full", "succeeded"), ("incremental", "succeeded")]
    assert "succeeded" in out.stderr
    assert "RuntimeWarning" not in out.stderr and "OpenBLAS" not in out.stderr, out.stderr


def test_gate_rejection_exit_code_and_details(db_url: str, conn: psycopg.Connection) -> None:
    small_model(conn, params="factors => 4, gate_metric => 'ndcg', gate_min => 2")
    out = cli("--database-url", db_url, "train", "t", "--json")
    assert out.returncode == recsys_cli.EXIT_REJECTED == 3, out.stderr
    record = json.loads(out.stdout)
    gate = record["gate"]
    assert (record["status"], record["version"]) == ("rejected", None)
    assert (gate["metric"], gate["minimum"], gate["passed"]) == ("ndcg@10", 2.0, False)
    assert gate["value"] == record["metrics"]["als"]["ndcg"]
    assert gate["baseline"] == record["metrics"]["popular"]["ndcg"]
    out = cli("--database-url", db_url, "train", "t")
    assert out.returncode == 3
    lines = out.stdout.splitlines()
    assert lines[0].startswith("model t: run 2 rejected by the promotion gate (ndcg@10 >= 2")
    assert "version None" not in out.stdout
    assert "not activated" not in out.stderr  # said once, on stdout, not again as a log line
    value = rows(conn, "SELECT value FROM recsys.metrics WHERE run_id = 2 AND metric = 'ndcg'"
                       " ORDER BY recommender")
    assert lines[1] == (f"  ndcg@10 {value[0][0]:.4f}: gate_min 2, "
                        f"popularity baseline {value[1][0]:.4f}")
    assert run_status(conn, "t") == [("full", "rejected"), ("full", "rejected")]
    assert rows(conn, "SELECT active_version FROM recsys.models") == [(None,)]


def test_train_prints_wall_time_not_the_sum_of_stages(db_url: str,
                                                      conn: psycopg.Connection) -> None:
    # the watermark read (outside every stage) sleeps too: the stages add up to less than
    # the run, by at least that pause
    small_model(conn, params="factors => 4", pause=0.4, time_column=True)
    out = cli("--database-url", db_url, "-q", "train", "t")
    assert out.returncode == 0, out.stderr
    printed = float(out.stdout.split(" in ")[-1].strip().removesuffix("s"))
    [(duration, stages)] = rows(conn, "SELECT extract(epoch FROM duration)::float8, stages"
                                      " FROM recsys.runs")
    assert sum(stages.values()) < duration - 0.3
    assert duration - 0.05 <= printed <= duration + 1.0


def test_train_compares_with_popularity_and_warns(db_url: str, conn: psycopg.Connection) -> None:
    # every user has the same five items and three rare ones: popularity predicts the held-out
    # items well, and a regularization this large leaves ALS no signal
    conn.execute("CREATE TABLE public.p AS"
                 " SELECT 'u' || lpad(u::text, 3, '0') AS u, 'z' || h AS i"
                 "   FROM generate_series(1, 200) u, generate_series(1, 5) h"
                 " UNION ALL SELECT 'u' || lpad(u::text, 3, '0'),"
                 "        'a' || lpad(((u * 7 + j * 13) % 300)::text, 3, '0')"
                 "   FROM generate_series(1, 200) u, generate_series(1, 3) j")
    conn.execute("SELECT recsys.create_model('bad', 'public.p', 'u', 'i', params =>"
                 " recsys.als(factors => 8, regularization => 1000000, iterations => 2))")
    out = cli("--database-url", db_url, "--json", "train", "bad")
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)["metrics"]
    als, popular = metrics["als"]["ndcg"], metrics["popular"]["ndcg"]
    assert als < popular  # what this data is for
    warning = (f"warning: als ndcg@10 {als:.4f} is below the popularity baseline "
               f"{popular:.4f}; try: recsys-db tune bad --grid factors=32,64,128 "
               "regularization=0.01,0.1")
    assert warning in out.stderr.splitlines()
    text = cli("--database-url", db_url, "train", "bad")
    table = text.stdout.splitlines()[1:]
    assert table[0].split() == ["holdout", "als", "popular"]
    assert [line.split()[0] for line in table[2:]] == ["ndcg@10", "precision@10", "recall@10"]
    assert table[2].split()[1:] == [f"{als:.4f}", f"{popular:.4f}"]
    assert warning in text.stderr.splitlines()
    quiet = cli("--database-url", db_url, "train", "bad", "-q")
    assert len(quiet.stdout.splitlines()) == 1
    assert quiet.stderr.splitlines() == [warning]
    # a model at least as good as popularity gets the table and no warning
    small_model(conn, "good")
    good = cli("--database-url", db_url, "train", "good")
    assert good.returncode == 0 and "ndcg@10" in good.stdout
    assert "warning" not in good.stderr


def test_closed_output_never_fails_a_training(db_url: str, conn: psycopg.Connection) -> None:
    """``recsys-db train t 2>&1 | head -1``: the reader goes away after the first line."""
    small_model(conn, pause=1.0)  # the load stage outlasts the reader
    proc = subprocess.Popen([sys.executable, "-m", "recsys_db.cli", "--database-url", db_url,
                             "train", "t"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"training t\n"
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert run_status(conn, "t") == [("full", "succeeded")]
    # nothing can be written at all: stdout and stderr closed before the command starts
    read, write = os.pipe()
    os.close(read)
    try:
        code = subprocess.run([sys.executable, "-m", "recsys_db.cli", "--database-url", db_url,
                               "--json", "train", "t"], stdout=write, stderr=write,
                              timeout=120, check=False).returncode
    finally:
        os.close(write)
    assert code == 0
    assert run_status(conn, "t") == [("full", "succeeded"), ("full", "succeeded")]


def test_recommend_huge_k_returns_every_candidate(db_url: str, conn: psycopg.Connection) -> None:
    small_model(conn)
    assert cli("--database-url", db_url, "train", "t").returncode == 0
    out = cli("--database-url", db_url, "--json", "recommend", "t", "u1", "-k", "99999999999")
    assert out.returncode == 0, out.stderr
    every = rows(conn, "SELECT item_key FROM recsys.recommend('t', 'u1', k => 2147483647)")
    assert [r["item_key"] for r in json.loads(out.stdout)] == [r[0] for r in every]
    assert len(every) == 17 - len(rows(conn, "SELECT DISTINCT i FROM public.raw WHERE u = 'u1'"))
    out = cli("--database-url", db_url, "recommend", "t", "u1", "-k", "-99999999999")
    assert (out.returncode, out.stderr) == (
        1, "error: k must be a positive integer, not -99999999999\n")
