"""The refresh_concurrently param: a materialized-view source is refreshed plainly unless it is
on, and then CONCURRENTLY, which needs a unique index.

A plain REFRESH writes the view into a new file; CONCURRENTLY changes the rows of the one it
has, so the view's file node tells which one ran."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest

from recsys_db import load, training
from recsys_db.errors import ConfigError
from recsys_db.model import effective_params, get_model

from ..helpers import rows


def _view(conn: psycopg.Connection, unique: bool = True, populated: bool = True) -> None:
    conn.execute("CREATE TABLE public.likes (usr text, item text)")
    conn.execute("INSERT INTO public.likes SELECT 'u' || (g % 7), 'i' || (g % 5)"
                 " FROM generate_series(1, 30) g")
    conn.execute("CREATE MATERIALIZED VIEW public.likes_mv AS SELECT DISTINCT usr, item"
                 " FROM public.likes" + ("" if populated else " WITH NO DATA"))
    if unique:
        conn.execute("CREATE UNIQUE INDEX ON public.likes_mv (usr, item)")


def _create(conn: psycopg.Connection, params: str = "recsys.als(factors => 2)") -> None:
    conn.execute("SELECT recsys.create_model('mv', 'public.likes_mv', 'usr', 'item',"
                 f" params => {params})")


def _refresh(conn: psycopg.Connection) -> None:
    """load.refresh with the model's params as a run sees them (merged over the defaults)."""
    model = get_model(conn, "mv")
    load.refresh(conn, replace(model, params=effective_params(conn, model.params)))


def _file_node(conn: psycopg.Connection) -> int:
    (node,), = rows(conn, "SELECT pg_relation_filenode('public.likes_mv')")
    return int(node)


def _refreshed_once_more(conn: psycopg.Connection) -> tuple[bool, int]:
    """Add a user to the view's table, refresh; whether the view's file stayed the same, and
    how many rows the view has."""
    before = _file_node(conn)
    conn.execute("INSERT INTO public.likes SELECT 'late' || count(*), 'i1' FROM public.likes")
    _refresh(conn)
    (count,), = rows(conn, "SELECT count(*) FROM public.likes_mv")
    return _file_node(conn) == before, int(count)


def test_default_is_a_plain_refresh_even_with_a_unique_index(conn: psycopg.Connection) -> None:
    _view(conn)
    _create(conn)
    assert rows(conn, "SELECT params -> 'refresh_concurrently' FROM recsys.model") == [(False,)]
    assert _refreshed_once_more(conn) == (False, 31)


def test_refresh_concurrently_keeps_the_view_readable(conn: psycopg.Connection) -> None:
    _view(conn)
    _create(conn, "recsys.als(factors => 2, refresh_concurrently => true)")
    assert _refreshed_once_more(conn) == (True, 31)


def test_alter_model_switches_between_the_two(conn: psycopg.Connection) -> None:
    _view(conn)
    _create(conn)
    conn.execute("SELECT recsys.alter_model('mv', params => '{\"refresh_concurrently\": true}')")
    assert _refreshed_once_more(conn) == (True, 31)
    conn.execute("SELECT recsys.alter_model('mv', params => '{\"refresh_concurrently\": false}')")
    assert rows(conn, "SELECT params ->> 'factors' FROM recsys.model") == [("2",)]
    assert _refreshed_once_more(conn)[0] is False


def test_refresh_concurrently_needs_a_unique_index(conn: psycopg.Connection) -> None:
    _view(conn, unique=False)
    conn.execute("CREATE INDEX ON public.likes_mv (usr, item)")  # not unique
    conn.execute("CREATE UNIQUE INDEX ON public.likes_mv (usr, item) WHERE usr <> 'u1'")
    _create(conn, "recsys.als(factors => 2, refresh_concurrently => true)")
    with pytest.raises(ConfigError, match=r'^model "mv" has refresh_concurrently on, but its '
                       r'source, materialized view "public\.likes_mv", has no unique index on '
                       r"columns alone \(no expression, no WHERE\), which REFRESH CONCURRENTLY "
                       "needs; create one or set refresh_concurrently to false$"):
        _refresh(conn)
    conn.execute("SELECT recsys.alter_model('mv', params => '{\"refresh_concurrently\": false}')")
    assert _refreshed_once_more(conn) == (False, 31)


def test_a_view_not_yet_populated_is_refreshed_plainly(conn: psycopg.Connection) -> None:
    _view(conn, populated=False)
    _create(conn, "recsys.als(factors => 2, refresh_concurrently => true)")
    assert _refreshed_once_more(conn) == (False, 31)
    assert _refreshed_once_more(conn) == (True, 32)  # populated now


def test_training_reads_the_param(db_url: str, conn: psycopg.Connection) -> None:
    _view(conn)
    _create(conn, "recsys.als(factors => 2, eval_split => 'off', refresh_concurrently => true)")
    before = _file_node(conn)
    conn.execute("INSERT INTO public.likes VALUES ('late', 'i1')")
    assert training.train(db_url, "mv").users == 8
    assert _file_node(conn) == before
    conn.execute("SELECT recsys.alter_model('mv', params => '{\"refresh_concurrently\": false}')")
    conn.execute("INSERT INTO public.likes VALUES ('later', 'i1')")
    assert training.train(db_url, "mv").users == 9
    assert _file_node(conn) != before


@pytest.mark.parametrize("value", ['"yes"', "1"])
def test_refresh_concurrently_must_be_a_boolean(conn: psycopg.Connection, value: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute("SELECT recsys._check_params(%s::jsonb)",
                     (f'{{"refresh_concurrently": {value}}}',))
    assert caught.value.diag.message_primary == (
        f"refresh_concurrently must be a boolean, not {value}")
    assert rows(conn, "SELECT recsys._check_params('{\"refresh_concurrently\": null}')"
                      " -> 'refresh_concurrently'") == [(False,)]
