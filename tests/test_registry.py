"""recsys.create_model / drop_model / als: validation up front, clear errors, safe names."""

from __future__ import annotations

import psycopg
import pytest

from .conftest import rows


@pytest.fixture
def events(conn: psycopg.Connection) -> str:
    conn.execute("CREATE TABLE public.events (person text, thing integer, n integer, kind text,"
                 " at timestamptz, note jsonb)")
    conn.execute("INSERT INTO public.events VALUES ('a', 1, 1, 'view', now(), '{}')")
    return "public.events"


def error_of(conn: psycopg.Connection, query: str, params: object = None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value


def test_create_model_registers_config(conn: psycopg.Connection, events: str) -> None:
    conn.execute("SELECT recsys.create_model('shop', 'public.events', 'person', 'thing',"
                 " weight_column => 'n', event_column => 'kind',"
                 " event_weights => '{\"view\": 1, \"cart\": 10}', time_column => 'at',"
                 " params => recsys.als(factors => 8), refresh_every => interval '1 hour')")
    (row,) = rows(conn, "SELECT name, source, user_column, item_column, weight_column,"
                        " event_weights, params ->> 'factors', params ->> 'weighting',"
                        " refresh_every, active_version FROM recsys.models")
    assert row[:5] == ("shop", "public.events", "person", "thing", "n")
    assert row[5] == {"view": 1, "cart": 10}
    assert row[6:8] == ("8", "confidence")
    assert str(row[8]) == "1:00:00"
    assert row[9] is None


def test_als_merges_defaults(conn: psycopg.Connection) -> None:
    (params,) = rows(conn, "SELECT recsys.als(factors => 16, weighting => 'bm25')")[0]
    assert params["factors"] == 16 and params["weighting"] == "bm25"
    assert params["iterations"] == 15 and params["keep_versions"] == 2


@pytest.mark.parametrize(("call", "message"), [
    ("recsys.als(factors => 0)", "factors must be an integer between 1 and 2000, not 0"),
    ("recsys.als(factors => 5000)", "factors must be an integer between 1 and 2000, not 5000"),
    ("recsys.als(iterations => -1)", "iterations must be an integer between 1 and 1000, not -1"),
    ("recsys.als(regularization => -0.5)", "regularization must be non-negative, not -0.5"),
    ("recsys.als(alpha => 0)", "alpha must be positive, not 0"),
    ("recsys.als(alpha => 'NaN')", "parameter \"alpha\" must be a number, not string"),
    ("recsys.als(bm25_b => 2)", "bm25_b must be between 0 and 1, not 2"),
    ("recsys.als(weighting => 'magic')", "unknown weighting \"magic\""),
    ("recsys.als(keep_versions => 0)", "keep_versions must be an integer between 1 and 100, not 0"),
    ("recsys._check_params('{\"factor\": 3}')", "unknown parameter \"factor\""),
    ("recsys._check_params('[1]')", "params must be a json object, not array"),
    ("recsys._check_params('{\"factors\": \"64\"}')",
     "parameter \"factors\" must be a number, not string"),
])
def test_params_out_of_range(conn: psycopg.Connection, call: str, message: str) -> None:
    error = error_of(conn, f"SELECT {call}")
    assert isinstance(error, psycopg.errors.InvalidParameterValue)
    assert error.diag.message_primary == message


def test_missing_source(conn: psycopg.Connection) -> None:
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.nope', 'u', 'i')")
    assert isinstance(error, psycopg.errors.UndefinedTable)
    assert error.diag.message_primary == 'relation "public.nope" does not exist'


def test_missing_column(conn: psycopg.Connection, events: str) -> None:
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.events', 'user_id', 'thing')")
    assert isinstance(error, psycopg.errors.UndefinedColumn)
    assert error.diag.message_primary == 'column "user_id" does not exist in relation events'
    assert error.diag.message_hint == "columns: person, thing, n, kind, at, note"


def test_wrong_weight_type(conn: psycopg.Connection, events: str) -> None:
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.events', 'person', 'thing',"
                           " weight_column => 'kind')")
    assert isinstance(error, psycopg.errors.DatatypeMismatch)
    assert error.diag.message_primary.startswith('weight_column "kind" has type text, expected')


def test_wrong_time_type(conn: psycopg.Connection, events: str) -> None:
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.events', 'person', 'thing',"
                           " time_column => 'note')")
    assert isinstance(error, psycopg.errors.DatatypeMismatch)


@pytest.mark.parametrize(("extra", "message"), [
    ("event_column => 'kind'", "event_column needs event_weights"),
    ("event_weights => '{\"view\": 1}'", "event_weights needs event_column"),
    ("event_column => 'kind', event_weights => '{\"view\": -1}'",
     'event weight for "view" must be a non-negative number, not -1'),
    ("event_column => 'kind', event_weights => '{\"view\": \"x\"}'",
     'event weight for "view" must be a non-negative number, not "x"'),
    ("event_column => 'kind', event_weights => '{}'", "event_weights must not be empty"),
    ("refresh_every => interval '-1 day'", "refresh_every must be positive, not -1 days"),
])
def test_bad_options(conn: psycopg.Connection, events: str, extra: str, message: str) -> None:
    error = error_of(conn, f"SELECT recsys.create_model('m', 'public.events', 'person', 'thing',"
                           f" {extra})")
    assert error.diag.message_primary == message


def test_same_user_and_item_column(conn: psycopg.Connection, events: str) -> None:
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.events', 'person', 'person')")
    assert error.diag.message_primary == (
        'user_column and item_column must differ, both are "person"')


def test_duplicate_name(conn: psycopg.Connection, events: str) -> None:
    conn.execute("SELECT recsys.create_model('m', 'public.events', 'person', 'thing')")
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.events', 'person', 'thing')")
    assert isinstance(error, psycopg.errors.DuplicateObject)
    assert error.diag.message_primary == 'model "m" already exists'


@pytest.mark.parametrize("name", ["", None, "bad\nname", "x" * 201])
def test_invalid_names(conn: psycopg.Connection, events: str, name: str | None) -> None:
    error = error_of(conn, "SELECT recsys.create_model(%s, 'public.events', 'person', 'thing')",
                     (name,))
    assert "model name" in error.diag.message_primary


def test_unknown_model(conn: psycopg.Connection) -> None:
    for query in ("SELECT recsys.drop_model('ghost')",
                  "SELECT * FROM recsys.recommend('ghost', 'u')",
                  "SELECT recsys.rollback('ghost', 1)"):
        error = error_of(conn, query)
        assert isinstance(error, psycopg.errors.UndefinedObject)
        assert error.diag.message_primary == 'model "ghost" does not exist'


def test_untrained_model(conn: psycopg.Connection, events: str) -> None:
    conn.execute("SELECT recsys.create_model('m', 'public.events', 'person', 'thing')")
    error = error_of(conn, "SELECT * FROM recsys.recommend('m', 'a')")
    assert error.diag.message_primary == 'model "m" has no trained version'
    assert error.diag.message_hint == "train it with: recsys-db train m"


def test_hostile_names_are_data_not_sql(conn: psycopg.Connection) -> None:
    conn.execute('CREATE SCHEMA "we ird; schema"')
    conn.execute('CREATE TABLE "we ird; schema"."Tab""le" ("us""er" text, "itém id" int,'
                 ' "select" int)')
    conn.execute('INSERT INTO "we ird; schema"."Tab""le" VALUES (\'a\', 1, 1)')
    hostile = "x'); DROP TABLE recsys.model; --\""
    conn.execute("SELECT recsys.create_model(%s, %s, 'us\"er', 'itém id', 'select')",
                 (hostile, '"we ird; schema"."Tab""le"'))
    (row,) = rows(conn, "SELECT name, source, user_column, item_column, weight_column"
                        " FROM recsys.models")
    assert row == (hostile, '"we ird; schema"."Tab""le"', 'us"er', "itém id", "select")
    conn.execute("SELECT recsys.drop_model(%s)", (hostile,))
    assert rows(conn, "SELECT count(*) FROM recsys.model") == [(0,)]


def test_drop_model_removes_its_tables(conn: psycopg.Connection, events: str) -> None:
    conn.execute("SELECT recsys.create_model('m', 'public.events', 'person', 'thing')")
    conn.execute("SELECT recsys.drop_model('m')")
    assert rows(conn, "SELECT count(*) FROM recsys.models") == [(0,)]
    assert rows(conn, "SELECT count(*) FROM public.events") == [(1,)]
