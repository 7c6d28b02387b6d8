"""recsys.explain: which of the user's items make an item's score, as implicit's explain."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from recsys_db import db, weighting

from ..helpers import rows
from ..helpers_foldin import EVENT_WEIGHTS, Reference, create_events, train_model

TOLERANCE = 1e-4


def explain(conn: psycopg.Connection, model: str, user: str, item: str, k: int
            ) -> list[tuple[str, float, int]]:
    return rows(conn, "SELECT * FROM recsys.explain(%s, %s, %s, %s)", (model, user, item, k))


def assert_explains_like_implicit(conn: psycopg.Connection, ref: Reference, weighted: object,
                                  model: str, user: str, item: str, k: int) -> None:
    total, expected, _ = ref.als.explain(ref.user_index[user], weighted, ref.item_index[item],
                                         N=k)
    ours = explain(conn, model, user, item, k)
    assert [r[0] for r in ours] == [ref.item_keys[i] for i, _ in expected]
    assert np.allclose([r[1] for r in ours], [s for _, s in expected], atol=TOLERANCE)
    assert [r[2] for r in ours] == list(range(1, len(expected) + 1))
    everything = explain(conn, model, user, item, 1000)
    assert np.isclose(sum(r[1] for r in everything), total, atol=TOLERANCE)


@pytest.mark.parametrize("scheme", weighting.SCHEMES)
def test_explain_matches_implicit(db_url: str, conn: psycopg.Connection, scheme: str) -> None:
    # weights and event weights summed per pair, then the model's weighting: the same
    # confidences training used, which implicit's explain is given here
    events = create_events(conn)
    train_model(db_url, conn, "shop", "public.events", weighted=True,
                params=f"factors => 8, iterations => 3, alpha => 2, weighting => '{scheme}'")
    ref = Reference(conn, "shop")
    weighted = ref.weighted([(str(u), i, w * EVENT_WEIGHTS[e]) for u, i, w, e in events])
    for user, item in (("1", "item-5"), ("12", "item-30"), ("33", "item-17")):
        assert_explains_like_implicit(conn, ref, weighted, "shop", user, item, 4)


@pytest.fixture(scope="module")
def ml(movielens_url: str) -> Iterator[tuple[psycopg.Connection, Reference]]:
    with db.connect(movielens_url) as conn:
        yield conn, Reference(conn, "ml")


@pytest.mark.slow
def test_movielens_explain_matches_implicit(ml: tuple[psycopg.Connection, Reference]) -> None:
    conn, ref = ml
    pairs = rows(conn, "SELECT user_id::text, item_id::text, 1.0 FROM movielens.liked")
    weighted = ref.weighted(pairs)
    with conn.transaction(force_rollback=True):  # the session database stays as it was
        for user, item in (("196", "50"), ("1", "181"), ("405", "1")):
            assert_explains_like_implicit(conn, ref, weighted, "ml", user, item, 10)


def test_explain_reads_the_users_current_history(db_url: str, conn: psycopg.Connection) -> None:
    create_events(conn)
    train_model(db_url, conn, "shop", "public.events", weighted=True,
                params="factors => 8, iterations => 3")
    before = explain(conn, "shop", "2", "item-1", 50)
    dropped = before[0][0]
    conn.execute("DELETE FROM public.events WHERE user_id = 2 AND item_id = %s", (dropped,))
    after = explain(conn, "shop", "2", "item-1", 50)
    assert {r[0] for r in after} == {r[0] for r in before} - {dropped}
    conn.execute("DELETE FROM public.events WHERE user_id = 2")
    assert explain(conn, "shop", "2", "item-1", 50) == []


@pytest.mark.parametrize(("args", "error", "message"), [
    (("shop", "999", "item-1", 5), psycopg.errors.NoDataFound, "user '999' is not in model"),
    (("shop", "1", "item-99", 5), psycopg.errors.NoDataFound, "item 'item-99' is not in model"),
    (("shop", None, "item-1", 5), psycopg.errors.NoDataFound, "user null is not in model"),
    (("shop", "1", "item-1", 0), psycopg.errors.InvalidParameterValue, "k must be a positive"),
    (("nope", "1", "item-1", 5), psycopg.errors.UndefinedObject, 'model "nope" does not exist'),
])
def test_explain_errors(db_url: str, conn: psycopg.Connection, args: tuple[object, ...],
                        error: type[Exception], message: str) -> None:
    create_events(conn)
    train_model(db_url, conn, "shop", "public.events", weighted=True,
                params="factors => 4, iterations => 2")
    with pytest.raises(error, match=message):
        conn.execute("SELECT * FROM recsys.explain(%s, %s, %s, %s)", args)


def test_explain_without_source_is_an_error(db_url: str, conn: psycopg.Connection) -> None:
    create_events(conn)
    train_model(db_url, conn, "shop", "public.events", weighted=True,
                params="factors => 4, iterations => 2")
    conn.execute("ALTER TABLE public.events RENAME TO gone")
    with pytest.raises(psycopg.errors.UndefinedTable,
                       match=r'source public\.events of model "shop" does not exist'):
        explain(conn, "shop", "1", "item-1", 3)
