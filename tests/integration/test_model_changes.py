"""recsys.alter_model: a model changed in SQL with create_model's checks, recorded, applied from
the next full refresh on; and refresh requests refused when they cannot succeed."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from recsys_db import foldin, training

from ..helpers import rows

SMALL = "recsys.als(factors => 4, iterations => 3)"


def make_model(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.ev (u text, i text, w real, kind text, at timestamptz)")
    conn.execute("INSERT INTO public.ev SELECT 'u' || (g % 20), 'i' || (g * 7 % 31), 1 + g % 3,"
                 " CASE WHEN g % 2 = 0 THEN 'view' ELSE 'buy' END,"
                 " now() - g * interval '1 minute' FROM generate_series(1, 600) g")
    conn.execute(f"SELECT recsys.create_model('m', 'public.ev', 'u', 'i', params => {SMALL})")


def test_alter_model_changes_validates_and_records(db_url: str,
                                                    conn: psycopg.Connection) -> None:
    make_model(conn)
    first = training.train(db_url, "m")
    (changes,), = rows(conn, "SELECT recsys.alter_model('m', weight_column => 'w',"
                             " params => '{\"factors\": 6}', refresh_every => '1 hour')")
    assert changes == {
        "weight_column": {"from": None, "to": "w"},
        "params": {"from": first_params(conn, 1), "to": {**first_params(conn, 1),
                                                           "factors": 6}},
        "refresh_every": {"from": None, "to": "01:00:00"}}
    assert rows(conn, "SELECT weight_column, params->>'factors', refresh_every::text"
                      " FROM recsys.models") == [("w", "6", "01:00:00")]
    # recorded, with who did it
    assert rows(conn, "SELECT model, changed_by = current_user, changes = %s"
                      " FROM recsys.model_changes", (Jsonb(changes),)) == [("m", True, True)]
    # the active version keeps serving as it was trained until the next full refresh
    assert rows(conn, "SELECT version, factors FROM recsys.versions") == [(1, 4)]
    second = training.train(db_url, "m")
    assert (first.version, second.version) == (1, 2)
    assert rows(conn, "SELECT version, factors FROM recsys.versions ORDER BY 1") == [
        (1, 4), (2, 6)]
    # unset clears; events with their weights
    conn.execute("SELECT recsys.alter_model('m', event_column => 'kind',"
                 " event_weights => '{\"view\": 1, \"buy\": 5}', unset => ARRAY['refresh_every'])")
    assert rows(conn, "SELECT event_column, event_weights->>'buy', refresh_every"
                      " FROM recsys.models") == [("kind", "5", None)]
    assert rows(conn, "SELECT count(*) FROM recsys.model_changes") == [(2,)]
    assert rows(conn, "SELECT recsys.alter_model('m')") == [({},)]  # nothing: nothing recorded
    assert rows(conn, "SELECT count(*) FROM recsys.model_changes") == [(2,)]


def first_params(conn: psycopg.Connection, version: int) -> dict[str, object]:
    (params,), = rows(conn, "SELECT params FROM recsys.model_version WHERE version = %s",
                      (version,))
    return dict(params)


@pytest.mark.parametrize(("call", "error"), [
    ("'nope'", 'model "nope" does not exist'),
    ("'m', weight_column => 'missing'", 'column "missing" does not exist'),
    ("'m', weight_column => 'kind'", "weight_column"),
    ("'m', event_column => 'kind'", "event_column needs event_weights"),
    ("'m', params => '{\"factors\": -1}'", "factors"),
    ("'m', refresh_every => '-1 hour'", "refresh_every must be a positive interval"),
    ("'m', unset => ARRAY['user_column']", "cannot unset 'user_column'"),
    ("'m', unset => ARRAY[NULL]", "cannot unset null"),
    ("'m', time_column => 'at', unset => ARRAY['time_column']",
     "time_column both given and unset"),
    ("'m', source => 'pg_catalog.pg_class'", "relation pg_class cannot be a model source"),
    ("'m', source => 'recsys.model'", "relation recsys.model cannot be a model source"),
    ("'m', user_column => 'u\"; DROP TABLE public.ev; --'", "does not exist"),
])
def test_alter_model_refuses_what_create_model_refuses(conn: psycopg.Connection, call: str,
                                                        error: str) -> None:
    make_model(conn)
    before = rows(conn, "SELECT * FROM recsys.model")
    with pytest.raises(psycopg.Error, match=error):
        conn.execute(f"SELECT recsys.alter_model({call})")
    assert rows(conn, "SELECT * FROM recsys.model") == before  # nothing changed
    assert rows(conn, "SELECT count(*) FROM recsys.model_changes") == [(0,)]
    assert rows(conn, "SELECT count(*) FROM public.ev") == [(600,)]


def test_tune_apply_is_recorded_as_a_change(db_url: str, conn: psycopg.Connection) -> None:
    from recsys_db import tuning

    make_model(conn)
    result = tuning.tune(db_url, "m", {"factors": [2, 3]}, apply=True)
    assert result.applied and result.best is not None
    (changes,), = rows(conn, "SELECT changes FROM recsys.model_changes")
    assert changes["params"]["to"]["factors"] == result.best.params["factors"]


def test_incremental_request_refused_for_weighting_fold_in_cannot_do(
        db_url: str, conn: psycopg.Connection) -> None:
    make_model(conn)
    conn.execute("SELECT recsys.alter_model('m', params => '{\"weighting\": \"bm25\"}')")
    training.train(db_url, "m")
    with pytest.raises(psycopg.errors.FeatureNotSupported,
                       match='model "m" cannot be refreshed incrementally: its active version 1'
                             ' is weighted by bm25'):
        conn.execute("SELECT recsys.request_refresh('m', 'incremental')")
    assert rows(conn, "SELECT count(*) FROM recsys.jobs") == [(0,)]
    assert rows(conn, "SELECT recsys.request_refresh('m', 'full') IS NOT NULL") == [(True,)]
    # a fold-in asked for directly is a recorded, failed run: recsys.models shows why
    with pytest.raises(Exception, match="does not support weighting bm25"):
        foldin.fold_in(db_url, "m")
    assert rows(conn, "SELECT last_run_status, last_error LIKE '%weighting bm25%'"
                      " FROM recsys.models") == [("failed", True)]


def test_alter_model_points_a_model_at_a_new_source_after_its_own_was_dropped(
        db_url: str, conn: psycopg.Connection) -> None:
    make_model(conn)
    conn.execute("CREATE TABLE public.ev2 AS SELECT * FROM public.ev")
    conn.execute("DROP TABLE public.ev")
    with pytest.raises(psycopg.errors.UndefinedTable,
                       match=r'source relation "public\.ev" of model "m" does not exist'):
        conn.execute("SELECT recsys.alter_model('m', refresh_every => '1 day')")
    (changes,), = rows(conn, "SELECT recsys.alter_model('m', source => 'public.ev2')")
    assert changes["source_table"] == {"from": "ev", "to": "ev2"}
    assert training.train(db_url, "m").version == 1
