"""recsys.create_model / drop_model / als: validation up front, clear errors, safe names."""

from __future__ import annotations

import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from recsys_db import cli, training, tuning

from ..helpers import rows


@pytest.fixture
def events(conn: psycopg.Connection) -> str:
    conn.execute("CREATE TABLE public.events (person text, thing integer, n integer, kind text,"
                 " at timestamptz, note jsonb)")
    conn.execute("INSERT INTO public.events VALUES ('a', 1, 1, 'view', now(), '{}')")
    return "public.events"


def error_of(conn: psycopg.Connection, query: str, params: Any = None) -> psycopg.Error:
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
    ("recsys.als(regularization => -0.5)",
     "regularization must be a finite number greater than or equal to 0, not -0.5"),
    ("recsys.als(alpha => 0)", "alpha must be a finite number greater than 0, not 0"),
    ("recsys.als(alpha => 'NaN')", "alpha must be a finite number greater than 0, not NaN"),
    ("recsys.als(bm25_b => 2)", "bm25_b must be a number between 0 and 1, not 2"),
    ("recsys.als(weighting => 'magic')", "unknown weighting \"magic\""),
    ("recsys.als(keep_versions => 0)", "keep_versions must be an integer between 1 and 100, not 0"),
    ("recsys._check_params('{\"factor\": 3}')", "unknown parameter \"factor\""),
    ("recsys._check_params('[1]')", "params must be a json object, not array"),
    ("recsys._check_params('{\"factors\": \"64\"}')", 'factors must be a number, not "64"'),
    ("recsys._check_params('{\"factors\": 1.5}')",
     "factors must be an integer between 1 and 2000, not 1.5"),
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
    assert error.diag.message_primary == (
        'column "user_id" does not exist in relation public.events')
    assert error.diag.message_hint == "columns: person, thing, n, kind, at, note"


def test_wrong_weight_type(conn: psycopg.Connection, events: str) -> None:
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.events', 'person', 'thing',"
                           " weight_column => 'kind')")
    assert isinstance(error, psycopg.errors.DatatypeMismatch)
    assert str(error.diag.message_primary).startswith(
        'weight_column "kind" has type text, expected')


def test_wrong_time_type(conn: psycopg.Connection, events: str) -> None:
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.events', 'person', 'thing',"
                           " time_column => 'note')")
    assert isinstance(error, psycopg.errors.DatatypeMismatch)


@pytest.mark.parametrize(("extra", "message"), [
    ("event_column => 'kind'", "event_column needs event_weights"),
    ("event_weights => '{\"view\": 1}'", "event_weights needs event_column"),
    ("event_column => 'kind', event_weights => '{\"view\": -1}'",
     'event weight for "view" must be a finite number greater than or equal to 0, not -1'),
    ("event_column => 'kind', event_weights => '{\"view\": \"x\"}'",
     'event weight for "view" must be a number, not "x"'),
    ("event_column => 'kind', event_weights => '{}'", "event_weights must not be empty"),
    ("refresh_every => interval '-1 day'",
     "refresh_every must be a positive interval of at most 100 years, not -1 days"),
    ("refresh_every => 'infinity'",
     "refresh_every must be a positive interval of at most 100 years, not infinity"),
    ("refresh_every => interval '101 years'",
     "refresh_every must be a positive interval of at most 100 years, not 101 years"),
])
def test_bad_options(conn: psycopg.Connection, events: str, extra: str, message: str) -> None:
    if "infinity" in extra and conn.info.server_version < 170000:
        # infinite intervals are new in PostgreSQL 17: 16's parser refuses the literal
        message = 'invalid input syntax for type interval: "infinity"'
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
    assert "model name" in str(error.diag.message_primary)


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


@pytest.mark.parametrize(("name", "argument"), [
    ("My-Model_2.v1@x", "My-Model_2.v1@x"),
    ("Select", "Select"),  # a keyword: quoted for SQL before, but the shell needs nothing
    ("two words", "'two words'"),
    ("$(touch PWNED)", "'$(touch PWNED)'"),
    ("`touch PWNED`; touch PWNED", "'`touch PWNED`; touch PWNED'"),
    ("it's", "'it'\"'\"'s'"),
    ("x\"); drop", "'x\"); drop'"),
    ("ünï", "'ünï'"),
    ("-x", "-- -x"),  # not an option of recsys-db train
])
def test_untrained_hint_is_quoted_for_the_shell(conn: psycopg.Connection, events: str,
                                                tmp_path: Path, name: str,
                                                argument: str) -> None:
    conn.execute("SELECT recsys.create_model(%s, 'public.events', 'person', 'thing')", (name,))
    error = error_of(conn, "SELECT * FROM recsys.recommend(%s, 'a')", (name,))
    hint = error.diag.message_hint
    assert hint == f"train it with: recsys-db train {argument}"
    command = hint.removeprefix("train it with: ")
    if not name.startswith("-"):
        assert command == f"recsys-db train {shlex.quote(name)}"
    # pasted into a POSIX shell, the command gets the name as one word and runs nothing else
    args = command.removeprefix("recsys-db ")
    out = subprocess.run(["sh", "-c", f"printf '%s\\0' {args}"], cwd=tmp_path,
                         capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == shlex.split(args)
    assert not any(tmp_path.iterdir())
    assert cli.build_parser().parse_args(shlex.split(args)).model == name


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


# --- numbers: finite, representable as double precision, in range, checked at declaration ---

# every numeric parameter: what its message expects, whether recsys.als takes it as double
# precision (so that NaN and infinities can reach it), and a value below its range
NUMBERS: dict[str, tuple[str, bool, str]] = {
    "factors": ("an integer between 1 and 2000", False, "0"),
    "regularization": ("a finite number greater than or equal to 0", True, "-0.01"),
    "alpha": ("a finite number greater than 0", True, "0"),
    "iterations": ("an integer between 1 and 1000", False, "0"),
    "bm25_k1": ("a finite number greater than or equal to 0", True, "-1"),
    "bm25_b": ("a number between 0 and 1", True, "-0.1"),
    "random_state": ("an integer between 0 and 2147483647", False, "-1"),
    "keep_versions": ("an integer between 1 and 100", False, "0"),
    "eval_k": ("an integer between 1 and 1000", False, "0"),
    "eval_test_fraction": ("a number between 0 and 1 (exclusive)", True, "0"),
    "eval_leave_last": ("an integer between 1 and 1000", False, "0"),
    "eval_max_users": ("an integer between 1 and 100000000", False, "0"),
    "gate_min": ("a finite number", True, ""),
    "recommendations_k": ("an integer between 0 and 1000", False, "-1"),
    "similar_items_k": ("an integer between 0 and 1000", False, "-1"),
}


def test_every_number_of_the_params_is_checked(conn: psycopg.Connection) -> None:
    (defaults,), = rows(conn, "SELECT recsys._default_params()")
    numbers = {k for k, v in defaults.items() if isinstance(v, int | float)
               and not isinstance(v, bool)} | {"gate_min"}
    assert numbers == set(NUMBERS)
    assert rows(conn, "SELECT array_agg(name ORDER BY name) FROM recsys._number_params()") == [
        (sorted(NUMBERS),)]


def create_with(conn: psycopg.Connection, params: str) -> psycopg.Error:
    """create_model with params given as JSON text (numbers as written: 1e-400 stays 1e-400)."""
    return error_of(conn, "SELECT recsys.create_model('m', 'public.events', 'person', 'thing',"
                          " params => %s::jsonb)", (params,))


@pytest.mark.parametrize("name", NUMBERS)
@pytest.mark.parametrize(("value", "shown"), [
    ("1e400", "1e+400"), ("-1e400", "-1e+400"), ("1e-400", "1e-400")])
def test_numbers_beyond_double_precision(conn: psycopg.Connection, events: str, name: str,
                                         value: str, shown: str) -> None:
    # jsonb holds any numeric; training reads every number as a float (1e400: OverflowError)
    gate = ', "gate_metric": "ndcg"' if name == "gate_min" else ""
    error = create_with(conn, f'{{"{name}": {value}{gate}}}')
    assert isinstance(error, psycopg.errors.InvalidParameterValue)
    assert error.diag.message_primary == f"{name} must be {NUMBERS[name][0]}, not {shown}"
    assert error.diag.message_detail == f"{shown} is out of range for type double precision"
    assert rows(conn, "SELECT count(*) FROM recsys.model") == [(0,)]


@pytest.mark.parametrize("name", [n for n, (_, is_float, _) in NUMBERS.items() if is_float])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_als_refuses_nan_and_infinities(conn: psycopg.Connection, name: str, value: str) -> None:
    error = error_of(conn, f"SELECT recsys.als({name} => %s::double precision)", (value,))
    assert isinstance(error, psycopg.errors.InvalidParameterValue)
    assert error.diag.message_primary == f"{name} must be {NUMBERS[name][0]}, not {value}"


@pytest.mark.parametrize("name", [n for n, (_, _, below) in NUMBERS.items() if below])
def test_numbers_below_their_range(conn: psycopg.Connection, events: str, name: str) -> None:
    below = NUMBERS[name][2]
    error = error_of(conn, f"SELECT recsys.als({name} => {below})")
    assert error.diag.message_primary == f"{name} must be {NUMBERS[name][0]}, not {below}"
    error = create_with(conn, f'{{"{name}": {below}}}')
    assert error.diag.message_primary == f"{name} must be {NUMBERS[name][0]}, not {below}"


def test_numbers_at_the_edges_are_accepted(conn: psycopg.Connection, events: str) -> None:
    edges = {"factors": 2000, "regularization": 0, "alpha": 1e-310, "iterations": 1000,
             "bm25_k1": 1.7e308, "bm25_b": 1, "random_state": 2147483647, "keep_versions": 100,
             "eval_k": 1000, "eval_test_fraction": 0.999, "eval_leave_last": 1000,
             "eval_max_users": 100000000, "gate_min": -1.5, "gate_metric": "ndcg",
             "recommendations_k": 0, "similar_items_k": 1000}
    conn.execute("SELECT recsys.create_model('m', 'public.events', 'person', 'thing',"
                 " params => %s)", (Jsonb(edges),))
    (params,), = rows(conn, "SELECT params FROM recsys.model")
    # as training reads them: jsonb gives 1.7e308 back as a 309-digit int, which float() takes
    assert {k: float(params[k]) if k != "gate_metric" else params[k] for k in edges} == edges


@pytest.mark.parametrize(("weight", "shown", "detail"), [
    ("1e400", "1e+400", "1e+400 is out of range for type double precision"),
    ("1e-400", "1e-400", "1e-400 is out of range for type double precision"),
    ("-1e400", "-1e+400", "-1e+400 is out of range for type double precision"),
    ("-0.5", "-0.5", None),
])
def test_event_weights_beyond_double_precision(conn: psycopg.Connection, events: str,
                                               weight: str, shown: str,
                                               detail: str | None) -> None:
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.events', 'person', 'thing',"
                           " event_column => 'kind', event_weights => %s::jsonb)",
                     (f'{{"view": 1, "cart": {weight}}}',))
    assert isinstance(error, psycopg.errors.InvalidParameterValue)
    assert error.diag.message_primary == (
        f'event weight for "cart" must be a finite number greater than or equal to 0, not {shown}')
    assert error.diag.message_detail == detail


def test_tuning_grid_numbers_are_checked_before_fitting(db_url: str, conn: psycopg.Connection,
                                                        events: str) -> None:
    conn.execute("SELECT recsys.create_model('m', 'public.events', 'person', 'thing')")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        tuning.tune(db_url, "m", {"alpha": [1, 10 ** 400]})
    assert info.value.diag.message_primary == (
        "alpha must be a finite number greater than 0, not 1e+400")
    assert rows(conn, "SELECT count(*) FROM recsys.run") == [(0,)]


# --- key types: their text must not depend on session settings ------------------------------

@pytest.fixture
def typed(conn: psycopg.Connection) -> str:
    conn.execute("CREATE DOMAIN public.sku AS text")
    conn.execute("CREATE DOMAIN public.sku2 AS public.sku")  # a domain over a domain
    conn.execute("CREATE DOMAIN public.moment AS timestamptz")
    conn.execute("CREATE TYPE public.mood AS ENUM ('view', 'buy')")
    conn.execute("CREATE TABLE public.typed (t text, i integer, b bigint, s smallint, n numeric,"
                 " v varchar(20), c char(4), u uuid, d public.sku2, ts timestamptz,"
                 " ts0 timestamp, day date, f float8, r real, span interval, cash money,"
                 " raw bytea, at public.moment, tags timestamptz[], doc jsonb, mood public.mood,"
                 " ok boolean)")
    return "public.typed"


@pytest.mark.parametrize(("column", "shown", "setting"), [
    ("ts", "timestamp with time zone", "TimeZone and DateStyle"),
    ("ts0", "timestamp without time zone", "DateStyle"),
    ("day", "date", "DateStyle"),
    ("f", "double precision", "extra_float_digits"),
    ("r", "real", "extra_float_digits"),
    ("span", "interval", "IntervalStyle"),
    ("cash", "money", "lc_monetary"),
    ("raw", "bytea", "bytea_output"),
    ("at", "public.moment (a domain over timestamp with time zone)", "TimeZone and DateStyle"),
    ("tags", "timestamp with time zone[]", "TimeZone and DateStyle"),
])
def test_keys_whose_text_depends_on_session_settings(conn: psycopg.Connection, typed: str,
                                                     column: str, shown: str,
                                                     setting: str) -> None:
    for user, item, role in ((column, "t", "user_column"), ("t", column, "item_column")):
        error = error_of(conn, "SELECT recsys.create_model('m', 'public.typed', %s, %s)",
                         (user, item))
        assert isinstance(error, psycopg.errors.DatatypeMismatch)
        assert error.diag.message_primary == (
            f'{role} "{column}" has type {shown}, whose text depends on session settings')
        base = shown.split(" (a domain over ")[-1].rstrip(")").removesuffix("[]")
        assert error.diag.message_detail == (
            f"keys are compared as text, and the text of {base} changes with {setting}")
        assert error.diag.message_hint == "use a text, integer or uuid key (cast it in a view)"
    conn.execute("SELECT recsys.create_model('m', 'public.typed', 't', 'i')")
    error = error_of(conn, "SELECT recsys.set_features('m', 'item', 'public.typed', %s,"
                           " ARRAY['t'])", (column,))
    assert error.diag.message_primary == (
        f'key_column "{column}" has type {shown}, whose text depends on session settings')
    error = error_of(conn, "SELECT recsys.create_model('e', 'public.typed', 't', 'i',"
                           " event_column => %s, event_weights => '{\"1\": 1}')", (column,))
    assert error.diag.message_primary == (
        f'event_column "{column}" has type {shown}, whose text depends on session settings')
    assert rows(conn, "SELECT name FROM recsys.model") == [("m",)]
    assert rows(conn, "SELECT count(*) FROM recsys.features") == [(0,)]


def test_keys_of_other_types_are_refused(conn: psycopg.Connection, typed: str) -> None:
    error = error_of(conn, "SELECT recsys.create_model('m', 'public.typed', 'doc', 't')")
    assert isinstance(error, psycopg.errors.DatatypeMismatch)
    assert error.diag.message_primary == (
        'user_column "doc" has type jsonb, expected one of: smallint, integer, bigint, numeric,'
        " text, character varying, character, uuid (or a domain over one)")
    for column in ("mood", "ok"):  # stable text, but not a key type
        error = error_of(conn, "SELECT recsys.create_model('m', 'public.typed', 't', %s)",
                         (column,))
        assert str(error.diag.message_primary).startswith(f'item_column "{column}" has type ')


@pytest.mark.parametrize(("user", "item"), [
    ("t", "i"), ("b", "s"), ("n", "u"), ("v", "c"), ("d", "t"), ("i", "d")])
def test_stable_key_types_are_accepted(conn: psycopg.Connection, typed: str, user: str,
                                       item: str) -> None:
    conn.execute("SELECT recsys.create_model('m', 'public.typed', %s, %s,"
                 " event_column => 'mood', event_weights => '{\"buy\": 1}')", (user, item))
    conn.execute("SELECT recsys.create_model('m2', 'public.typed', %s, %s,"
                 " event_column => 'ok', event_weights => '{\"true\": 1}')", (user, item))
    conn.execute("SELECT recsys.set_features('m', 'user', 'public.typed', %s, ARRAY['ts'])",
                 (user,))
    assert rows(conn, "SELECT count(*) FROM recsys.models") == [(2,)]


def test_domain_and_uuid_keys_train_and_serve(db_url: str, conn: psycopg.Connection,
                                              typed: str) -> None:
    conn.execute("INSERT INTO public.typed (d, u) SELECT 'user-' || g % 9,"
                 " md5((g % 9 + g % 4)::text)::uuid FROM generate_series(1, 120) g")
    conn.execute("SELECT recsys.create_model('m', 'public.typed', 'd', 'u',"
                 " params => recsys.als(factors => 2, iterations => 2))")
    assert training.train(db_url, "m").status == "succeeded"
    assert {r[3] for r in rows(conn, "SELECT * FROM recsys.recommend('m', 'user-1', 3)")} == {
        "als"}


# --- recsys.als for the reader role ----------------------------------------------------------

@pytest.fixture
def reader(db_url: str, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A connection as a new login that is a member of recsys_reader only."""
    name = f"reader_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE recsys_reader").format(sql.Identifier(name)))
    with psycopg.connect(make_conninfo(db_url, user=name), autocommit=True) as connection:
        yield connection
    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_reader_builds_params_with_als(reader: psycopg.Connection, conn: psycopg.Connection,
                                       events: str) -> None:
    (params,), = rows(reader, "SELECT recsys.als(factors => 8, alpha => 2, gate_metric => 'ndcg',"
                              " gate_min => 0.1, eval_split => 'random')")
    assert (params["factors"], params["alpha"], params["gate_metric"]) == (8, 2, "ndcg")
    assert params == rows(conn, "SELECT recsys.als(factors => 8, alpha => 2, gate_metric =>"
                                " 'ndcg', gate_min => 0.1, eval_split => 'random')")[0][0]
    for call, message in (("alpha => 'NaN'", "alpha must be a finite number greater than 0,"
                                             " not NaN"),
                          ("factors => 0", "factors must be an integer between 1 and 2000, not 0"),
                          ("gate_metric => 'speed'", 'unknown gate_metric "speed"')):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            reader.execute(f"SELECT recsys.als({call})")
        assert info.value.diag.message_primary == message
    # still nothing that changes a model
    for forbidden in ("SELECT recsys.create_model('x', 'public.events', 'person', 'thing')",
                      "SELECT * FROM recsys.model"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(forbidden)


# --- recsys.models: the active version's holdout quality against popularity ------------------

HOLDOUT = ["holdout_metric", "holdout_k", "holdout_als", "holdout_popular", "below_popular"]


def holdout(conn: psycopg.Connection, model: str = "m") -> tuple[object, ...]:
    (row,) = rows(conn, f"SELECT {', '.join(HOLDOUT)} FROM recsys.models WHERE name = %s",
                  (model,))
    return row


def stored(conn: psycopg.Connection, version: int, metric: str) -> tuple[object, ...]:
    """(metric, k, als, popular, als < popular) from recsys.metrics for a version's run."""
    values = dict(rows(conn, "SELECT mt.recommender, mt.value FROM recsys.metrics mt"
                             " JOIN recsys.versions v ON v.run_id = mt.run_id"
                             " WHERE v.version = %s AND mt.metric = %s", (version, metric)))
    (k,), = rows(conn, "SELECT DISTINCT mt.k FROM recsys.metrics mt JOIN recsys.versions v"
                       " ON v.run_id = mt.run_id WHERE v.version = %s", (version,))
    return metric, k, values["als"], values["popular"], values["als"] < values["popular"]


def test_models_show_the_active_versions_quality(db_url: str, conn: psycopg.Connection) -> None:
    columns = [r[0] for r in rows(conn, "SELECT column_name FROM information_schema.columns"
                                        " WHERE table_schema = 'recsys' AND table_name = 'models'"
                                        " ORDER BY ordinal_position")]
    assert columns[:4] == ["name", "source", "user_column", "item_column"]
    assert columns[-len(HOLDOUT):] == HOLDOUT  # appended: views over recsys.models keep working
    conn.execute("CREATE TABLE public.taste AS SELECT 'u' || (g % 30) AS u,"
                 " 'i' || ((g * 7) % 41 % (3 + g % 30)) AS i FROM generate_series(1, 900) g")
    conn.execute("SELECT recsys.create_model('m', 'public.taste', 'u', 'i',"
                 " params => recsys.als(factors => 4, iterations => 3, eval_split => 'random'))")
    assert holdout(conn) == (None, None, None, None, None)  # not trained
    assert training.train(db_url, "m").status == "succeeded"
    first = stored(conn, 1, "ndcg")
    assert holdout(conn) == first
    assert all(value is not None for value in first)

    # the gate's metric, once one is set
    conn.execute("UPDATE recsys.model SET params = recsys._check_params(params ||"
                 " '{\"gate_metric\": \"recall\", \"gate_baseline\": false, \"factors\": 8}')")
    assert training.train(db_url, "m").version == 2
    assert holdout(conn) == stored(conn, 2, "recall")

    # the active version's run, not the latest run
    conn.execute("SELECT recsys.rollback('m', 1)")
    assert holdout(conn) == first

    # below popularity
    conn.execute("UPDATE recsys.metric mt SET value = 0 FROM recsys.model_version v"
                 " WHERE v.version = 1 AND mt.run_id = v.run_id AND mt.recommender = 'als'"
                 " AND mt.metric = 'ndcg'")
    conn.execute("UPDATE recsys.metric mt SET value = 0.5 FROM recsys.model_version v"
                 " WHERE v.version = 1 AND mt.run_id = v.run_id AND mt.recommender = 'popular'"
                 " AND mt.metric = 'ndcg'")
    assert holdout(conn) == ("ndcg", first[1], 0, 0.5, True)


def test_models_without_evaluation_show_no_quality(db_url: str, conn: psycopg.Connection,
                                                   events: str) -> None:
    conn.execute("INSERT INTO public.events SELECT 'p' || g % 5, g % 7, 1, 'view', now(), '{}'"
                 " FROM generate_series(1, 40) g")
    conn.execute("SELECT recsys.create_model('m', 'public.events', 'person', 'thing',"
                 " params => recsys.als(factors => 2, eval_split => 'off'))")
    assert training.train(db_url, "m").status == "succeeded"
    assert holdout(conn) == (None, None, None, None, None)
