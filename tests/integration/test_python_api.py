"""The notebook API: recsys_db.connect(...) over the SQL functions and training."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta

import pandas
import psycopg
import pytest

import recsys_db
from recsys_db.errors import RecsysError

from ..helpers import rows
from ..helpers_foldin import create_events


@pytest.fixture
def rs(db_url: str, conn: psycopg.Connection) -> Iterator[recsys_db.Recsys]:
    create_events(conn)
    with recsys_db.connect(db_url) as api:
        yield api


@pytest.fixture
def trained(rs: recsys_db.Recsys) -> recsys_db.Recsys:
    rs.create_model("shop", "public.pairs", "user_id", "item_id",
                    params={"factors": 4, "iterations": 2})
    result = rs.train("shop")
    assert (result.status, result.version, result.users, result.items) == ("succeeded", 1, 40, 30)
    return rs


def test_create_model_passes_every_option(rs: recsys_db.Recsys, conn: psycopg.Connection
                                          ) -> None:
    model_id = rs.create_model(
        "events", "public.events", "user_id", "item_id", weight_column="weight",
        event_column="event", event_weights={"view": 1, "buy": 5},
        params={"factors": 16, "weighting": "bm25"}, refresh_every=timedelta(hours=6))
    (row,) = rows(conn, "SELECT id, weight_column, event_column, event_weights,"
                        " params ->> 'factors', params ->> 'weighting', refresh_every"
                        " FROM recsys.model WHERE name = 'events'")
    assert row == (model_id, "weight", "event", {"view": 1, "buy": 5}, "16", "bm25",
                   timedelta(hours=6))
    [model] = rs.models()
    assert (model["name"], model["source"], model["active_version"]) == (
        "events", "public.events", None)
    rs.drop_model("events")
    assert rs.models() == []


def test_create_model_errors_come_from_sql(rs: recsys_db.Recsys) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='unknown parameter "factor"'):
        rs.create_model("bad", "public.pairs", "user_id", "item_id", params={"factor": 8})
    with pytest.raises(psycopg.errors.UndefinedTable):
        rs.create_model("bad", "public.nope", "user_id", "item_id")
    with pytest.raises(psycopg.errors.UndefinedObject, match='model "nope" does not exist'):
        rs.recommend("nope", 1)


def test_serving_methods_return_what_the_sql_functions_return(
        trained: recsys_db.Recsys, conn: psycopg.Connection) -> None:
    rs = trained

    def sql(query: str, *params: object) -> list[dict[str, object]]:
        with conn.cursor() as cur:
            cur.execute(query, params)
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    assert rs.recommend("shop", 7, k=5) == sql(
        "SELECT * FROM recsys.recommend('shop', '7', 5)")
    assert rs.recommend("shop", 7, k=5, exclude_seen=False) == sql(
        "SELECT * FROM recsys.recommend('shop', '7', 5, false)")
    assert rs.recommend("shop", "7", k=3, candidates=["item-1", "item-2", "item-9"]) == sql(
        "SELECT * FROM recsys.recommend_filtered('shop', '7', ARRAY['item-1','item-2','item-9'],"
        " 3)")
    assert rs.recommend_for_items("shop", ["item-4", "item-8"], k=4) == sql(
        "SELECT * FROM recsys.recommend_for_items('shop', ARRAY['item-4','item-8'], 4)")
    assert rs.explain("shop", 7, "item-3", k=3) == sql(
        "SELECT * FROM recsys.explain('shop', '7', 'item-3', 3)")
    assert rs.similar_items("shop", "item-3", k=3) == sql(
        "SELECT * FROM recsys.similar_items('shop', 'item-3', 3)")
    assert rs.similar_users("shop", 7, k=3) == sql(
        "SELECT * FROM recsys.similar_users('shop', '7', 3)")
    assert rs.interested_users("shop", "item-3", k=3) == sql(
        "SELECT * FROM recsys.interested_users('shop', 'item-3', 3)")
    assert rs.popular("shop", k=3) == sql("SELECT * FROM recsys.popular('shop', 3)")
    assert rs.score("shop", 7, "item-3") == sql(
        "SELECT recsys.score('shop', '7', 'item-3')")[0]["score"]
    assert rs.score("shop", "nobody", "item-3") is None
    [run] = rs.runs("shop")
    assert (run["model"], run["status"], run["version"]) == ("shop", "succeeded", 1)
    assert rs.runs("other") == []


def test_rows_become_a_dataframe(trained: recsys_db.Recsys) -> None:
    result = trained.recommend("shop", 7, k=5)
    frame = result.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["item_key", "score", "rank", "reason"] == result.columns
    assert frame["item_key"].tolist() == [r["item_key"] for r in result]
    assert frame["rank"].tolist() == [1, 2, 3, 4, 5]
    empty = trained.recommend("shop", 7, k=5, candidates=[])
    assert empty == [] and list(empty.to_pandas().columns) == result.columns


def test_to_pandas_without_pandas_says_how_to_get_it(trained: recsys_db.Recsys,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    result = trained.popular("shop", k=2)
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an uninstalled module looks like
    with pytest.raises(RecsysError, match="to_pandas needs pandas; install it with"):
        result.to_pandas()


def test_business_rules_by_sql(trained: recsys_db.Recsys, conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE products AS SELECT 'item-' || n AS id, n % 2 = 0 AS in_stock"
                 " FROM generate_series(1, 30) n")
    in_stock = trained.sql(
        "SELECT r.item_key, r.score FROM recsys.recommend('shop', %(user)s, k => 30) r"
        " JOIN products p ON p.id = r.item_key WHERE p.in_stock ORDER BY r.rank LIMIT 3",
        {"user": "7"})
    assert len(in_stock) == 3
    assert all(int(r["item_key"].split("-")[1]) % 2 == 0 for r in in_stock)
    assert trained.sql("SELECT 1 AS one") == [{"one": 1}]


def test_key_lists_are_checked(trained: recsys_db.Recsys) -> None:
    with pytest.raises(TypeError, match="items must be a list of keys, not a single str"):
        trained.recommend_for_items("shop", "item-1")
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="must not contain null"):
        trained.recommend_for_items("shop", ["item-1", None])


def test_connect_uses_the_configured_url(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_DATABASE_URL", db_url)
    with recsys_db.connect() as api:
        assert api.url == db_url
        assert api.models() == []
        assert api.install().revision  # already installed: a no-op that still answers


def test_huge_k_returns_every_candidate(trained: recsys_db.Recsys) -> None:
    """A k beyond the integer range is every candidate, as in SQL, not a missing function."""
    user = 7
    everything = trained.recommend("shop", user, k=10_000)
    assert everything and trained.recommend("shop", user, k=10**12) == everything
    assert trained.popular("shop", k=10**12) == trained.popular("shop", k=10_000)
    assert trained.similar_items("shop", everything[0]["item_key"], k=10**12)


def test_non_finite_numbers_are_refused_by_name(rs: recsys_db.Recsys) -> None:
    with pytest.raises(RecsysError, match=r"alpha must be a finite number .*, not nan"):
        rs.create_model("bad", "public.pairs", "user_id", "item_id",
                        params={"alpha": float("nan")})
    with pytest.raises(RecsysError, match=r'event weight for buy must be a finite .*, not inf'):
        rs.create_model("bad", "public.pairs", "user_id", "item_id", event_column="user_id",
                        event_weights={"buy": float("inf")})
    assert rs.models() == []
