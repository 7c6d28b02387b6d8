"""recsys-db tune: every grid combination on one split, stored, ranked, optionally applied."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from recsys_db import training, tuning
from recsys_db.errors import ConfigError, RecsysError

from ..helpers import rows


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recsys_db.cli", *args], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ), check=False)


def make_groups(conn: psycopg.Connection, params: str = "recsys.als(factors => 2)") -> None:
    """Three taste groups of 12 users over 8 items each, plus some cross-group noise."""
    conn.execute("CREATE TABLE public.taste AS"
                 " SELECT 'u' || g AS u, 'i' || ((g % 3) * 8 + (g * 5 + j) % 8) AS i"
                 "   FROM generate_series(0, 35) g, generate_series(0, 4) j"
                 " UNION ALL SELECT 'u' || g, 'i' || (g * 7 % 24) FROM generate_series(0, 35) g")
    conn.execute(f"SELECT recsys.create_model('taste', 'public.taste', 'u', 'i',"
                 f" params => {params})")


def test_tune_ranks_stores_and_applies(db_url: str, conn: psycopg.Connection) -> None:
    make_groups(conn)
    out = cli("--database-url", db_url, "tune", "taste", "--grid", "factors=1,3",
              "regularization=0.01,0.1", "iterations=8", "--apply")
    assert out.returncode == 0, out.stderr
    assert "4/4" in out.stderr  # the progress bar got to the end
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["rank", "factors", "regularization", "iterations", "ndcg@10",
                                "popular", "seconds", "error"]
    table = [line.split() for line in lines[2:6]]
    assert [row[0] for row in table] == ["1", "2", "3", "4"]
    trials = rows(conn, "SELECT rank, run_id, status, params ->> 'factors',"
                        " params ->> 'regularization', value, baseline"
                        " FROM recsys.tuning_trials ORDER BY rank, run_id")
    assert len(trials) == 4 and {t[2] for t in trials} == {"succeeded"}
    assert [t[5] for t in trials] == sorted((t[5] for t in trials), reverse=True)
    assert [(row[1], row[2], f"{float(row[4]):.4f}") for row in table] == [
        (t[3], t[4], f"{t[5]:.4f}") for t in trials]
    # one split for all: the popularity baseline scores the same in every trial
    assert len({t[6] for t in trials}) == 1
    # each trial is a run of kind 'tune' with its metrics, and no version
    assert rows(conn, "SELECT DISTINCT kind, version FROM recsys.runs") == [("tune", None)]
    assert rows(conn, "SELECT count(*) FROM recsys.metrics WHERE kind = 'tune'") == [(4 * 2 * 8,)]
    best_factors, best_reg = trials[0][3], trials[0][4]
    assert rows(conn, "SELECT applied, best_params FROM recsys.tunings") == [
        (True, {"factors": int(best_factors), "regularization": float(best_reg),
                "iterations": 8})]
    (params,), = rows(conn, "SELECT params FROM recsys.model")
    assert (str(params["factors"]), str(params["regularization"]), params["iterations"]) == (
        best_factors, best_reg, 8)
    assert f"applied to model taste: factors={best_factors}" in out.stdout
    assert training.train(db_url, "taste").status == "succeeded"


def test_tune_json_without_apply(db_url: str, conn: psycopg.Connection) -> None:
    make_groups(conn)
    out = cli("--database-url", db_url, "--json", "tune", "taste", "--grid",
              "weighting=none,bm25", "--metric", "recall")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["metric"], result["k"], result["applied"]) == ("recall", 10, False)
    assert sorted(t["params"]["weighting"] for t in result["trials"]) == ["bm25", "none"]
    values = [t["value"] for t in result["trials"]]
    assert values == sorted(values, reverse=True)
    assert all(t["value"] == t["metrics"]["als"]["recall"] for t in result["trials"])
    assert rows(conn, "SELECT params ->> 'weighting' FROM recsys.model") == [("confidence",)]


def test_bad_values_metric_and_split(db_url: str, conn: psycopg.Connection) -> None:
    make_groups(conn)
    out = cli("--database-url", db_url, "tune", "taste", "--grid", "factors=4,0")
    assert out.returncode == 1
    assert "error: factors must be an integer between 1 and 2000, not 0" in out.stderr
    with pytest.raises(ConfigError, match='unknown metric "speed"; use one of: precision, '):
        tuning.tune(db_url, "taste", {"factors": [2]}, metric="speed")
    conn.execute("UPDATE recsys.model SET params = params || '{\"eval_split\": \"off\"}'")
    with pytest.raises(ConfigError, match='tuning needs a holdout split, and model "taste" has'
                                          " eval_split off"):
        tuning.tune(db_url, "taste", {"factors": [2]})
    # nothing was recorded for the refused tunings
    assert rows(conn, "SELECT count(*) FROM recsys.tunings") == [(0,)]


def test_tune_refreshes_a_materialized_view_source(db_url: str,
                                                   conn: psycopg.Connection) -> None:
    make_groups(conn)
    conn.execute("CREATE MATERIALIZED VIEW public.taste_mv AS SELECT * FROM public.taste")
    conn.execute("SELECT recsys.create_model('mv', 'public.taste_mv', 'u', 'i',"
                 " params => recsys.als(factors => 2))")
    # rows added after the view was built: a tuning must see them, as a training does
    conn.execute("INSERT INTO public.taste SELECT 'late' || g, 'i' || g FROM"
                 " generate_series(0, 3) g")
    result = tuning.tune(db_url, "mv", {"factors": [1, 2]})
    assert len(result.trials) == 2
    assert rows(conn, "SELECT DISTINCT rows_read, rows_skipped_null, users FROM recsys.runs"
                      " WHERE kind = 'tune'") == [(36 * 6 + 4, 0, 36 + 4)]
    assert rows(conn, "SELECT count(*) FROM public.taste_mv") == [(36 * 6 + 4,)]


def test_tune_refuses_a_schema_of_another_release(db_url: str, conn: psycopg.Connection) -> None:
    make_groups(conn)
    conn.execute("UPDATE recsys.alembic_version SET version_num = '9999'")
    with pytest.raises(RecsysError, match=r"the recsys schema is at revision 9999, which this"
                                          r" recsys-db \(up to \d+\) does not know"):
        tuning.tune(db_url, "taste", {"factors": [2]})
    assert rows(conn, "SELECT count(*) FROM recsys.tunings") == [(0,)]


def test_a_trial_whose_fit_fails_is_recorded_and_the_search_goes_on(
        db_url: str, conn: psycopg.Connection) -> None:
    make_groups(conn)
    result = tuning.tune(db_url, "taste", {"alpha": [1, 1e300]})
    failed = [t for t in result.trials if t.error is not None]
    assert [t.params for t in failed] == [{"alpha": 1e300}]
    assert failed[0].error == "als fit failed: NaN encountered in factors"
    assert failed[0].value is None
    assert result.best is not None and result.best.params == {"alpha": 1}
    assert rows(conn, "SELECT status, error LIKE 'als fit failed%' FROM recsys.runs"
                      " WHERE kind = 'tune' ORDER BY run_id") == [
        ("succeeded", None), ("failed", True)]
