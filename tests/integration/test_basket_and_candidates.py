"""Anonymous sessions and baskets (exact fold-in), the stored basis, and candidate filters."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
import scipy.sparse as sp
from psycopg import sql

from recsys_db import db, foldin, weighting

from ..helpers import rows
from ..helpers_foldin import Reference, create_events, train_model

TOLERANCE = 1e-4


def basket(conn: psycopg.Connection, model: str, items: list[str], k: int
           ) -> list[tuple[str, float, int, str]]:
    return rows(conn, "SELECT * FROM recsys.recommend_for_items(%s, %s, %s)", (model, items, k))


def fold_in(conn: psycopg.Connection, model: str, idx: list[int], raw: list[float]
            ) -> np.ndarray:
    (vector,), = rows(conn, "SELECT recsys._fold_in(recsys._active_version(%s), %s, %s)",
                      (model, idx, raw))
    return np.array(vector)


@pytest.mark.parametrize("scheme", weighting.SCHEMES)
def test_basket_is_implicits_recalculated_user(db_url: str, conn: psycopg.Connection,
                                               scheme: str) -> None:
    # A basket holding exactly one user's items, from a source with one row per pair, is
    # that user's training row: fold-in must give implicit's recalculate_user and ranking.
    create_events(conn)
    train_model(db_url, conn, "pairs", "public.pairs", weighted=False,
                params=f"factors => 8, iterations => 3, alpha => 3, weighting => '{scheme}'")
    ref = Reference(conn, "pairs")
    pairs = rows(conn, "SELECT user_id::text, item_id, 1.0 FROM public.pairs")
    weighted = ref.weighted(pairs)
    for user in ("3", "17", "40"):
        u = ref.user_index[user]
        items = [ref.item_keys[i] for i in weighted[u].indices]
        expected_vector = ref.als.recalculate_user(u, weighted[u])
        vector = fold_in(conn, "pairs", [int(i) for i in weighted[u].indices],
                         [1.0] * len(items))
        assert np.allclose(vector, expected_vector, rtol=TOLERANCE, atol=TOLERANCE)

        k = 30 - len(items)  # every other item
        ids, scores = ref.als.recommend(u, weighted[u], N=k, recalculate_user=True,
                                        filter_already_liked_items=True)
        ours = basket(conn, "pairs", items, k)
        assert [r[0] for r in ours] == [ref.item_keys[i] for i in ids]
        assert np.allclose([r[1] for r in ours], scores, atol=TOLERANCE)
        assert [r[2] for r in ours] == list(range(1, k + 1))
        assert {r[3] for r in ours} == {"als"}


@pytest.fixture(scope="module")
def ml(movielens_url: str) -> Iterator[tuple[psycopg.Connection, Reference]]:
    with db.connect(movielens_url) as conn:
        yield conn, Reference(conn, "ml")


@pytest.mark.slow
def test_movielens_basket_with_repeated_item(
        ml: tuple[psycopg.Connection, Reference]) -> None:
    conn, ref = ml
    # a key given twice is two interactions: confidence 1 + alpha * 2
    items = ["50", "172", "181", "50"]
    alpha = float(ref.params["alpha"])
    columns = [ref.item_index[i] for i in ("50", "172", "181")]
    user_items = np.zeros((1, len(ref.item_keys)), dtype=np.float32)
    user_items[0, columns] = [1 + 2 * alpha, 1 + alpha, 1 + alpha]
    row = sp.csr_matrix(user_items)
    ids, scores = ref.als.recommend(0, row, N=10, recalculate_user=True,
                                    filter_already_liked_items=True)
    with conn.transaction(force_rollback=True):  # the session database stays as it was
        ours = basket(conn, "ml", items, 10)
    assert [r[0] for r in ours] == [ref.item_keys[i] for i in ids]
    assert np.allclose([r[1] for r in ours], scores, atol=TOLERANCE)


@pytest.mark.slow
def test_movielens_basket_of_many_items(ml: tuple[psycopg.Connection, Reference]) -> None:
    # over 16 items the basket is not whitened up front: each step multiplies by the basis
    conn, ref = ml
    items = ref.item_keys[:40]
    alpha = float(ref.params["alpha"])
    user_items = np.zeros((1, len(ref.item_keys)), dtype=np.float32)
    user_items[0, [ref.item_index[i] for i in items]] = 1 + alpha
    ids, scores = ref.als.recommend(0, sp.csr_matrix(user_items), N=10, recalculate_user=True,
                                    filter_already_liked_items=True)
    with conn.transaction(force_rollback=True):
        ours = basket(conn, "ml", items, 10)
    assert [r[0] for r in ours] == [ref.item_keys[i] for i in ids]
    assert np.allclose([r[1] for r in ours], scores, atol=TOLERANCE)


def test_basket_excludes_its_items_and_fills_k(db_url: str, conn: psycopg.Connection) -> None:
    create_events(conn)
    train_model(db_url, conn, "pairs", "public.pairs", weighted=False,
                params="factors => 4, iterations => 2")
    items = ["item-1", "item-2", "item-3", "no-such-item"]
    result = basket(conn, "pairs", items, 27)
    assert len(result) == 27  # 30 items, 3 of them in the basket
    assert not {r[0] for r in result} & set(items)
    assert [r[2] for r in result] == list(range(1, 28))
    assert [r[1] for r in result] == sorted((r[1] for r in result), reverse=True)
    assert len(basket(conn, "pairs", items, 100)) == 27


def test_basket_of_unknown_items_gets_popular_items(db_url: str,
                                                    conn: psycopg.Connection) -> None:
    create_events(conn)
    train_model(db_url, conn, "pairs", "public.pairs", weighted=False,
                params="factors => 4, iterations => 2")
    popular = rows(conn, "SELECT item_key, score FROM recsys.popular('pairs', 6)")
    empty = basket(conn, "pairs", [], 5)
    assert [(r[0], r[1]) for r in empty] == popular[:5]
    assert {r[3] for r in empty} == {"popular"}
    unknown = basket(conn, "pairs", ["nope", popular[0][0] + "-x"], 5)
    assert [r[0] for r in unknown] == [p[0] for p in popular[:5]]
    assert [r[2] for r in unknown] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("args", "message"), [
    (("pairs", None, 5), "item_keys must not be null"),
    (("pairs", ["item-1", None], 5), "item_keys must not contain null"),
    (("pairs", ["item-1"], 0), "k must be a positive integer, not 0"),
    (("nope", ["item-1"], 5), 'model "nope" does not exist'),
])
def test_basket_errors(db_url: str, conn: psycopg.Connection, args: tuple[object, ...],
                       message: str) -> None:
    create_events(conn)
    train_model(db_url, conn, "pairs", "public.pairs", weighted=False,
                params="factors => 4, iterations => 2")
    with pytest.raises(psycopg.Error, match=message):
        conn.execute("SELECT * FROM recsys.recommend_for_items(%s, %s::text[], %s)", args)


def test_untrained_model_is_an_error(conn: psycopg.Connection) -> None:
    create_events(conn)
    conn.execute("SELECT recsys.create_model('new', 'public.pairs', 'user_id', 'item_id')")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState,
                       match='model "new" has no trained version'):
        basket(conn, "new", ["item-1"], 5)


def item_factors(conn: psycopg.Connection, model: str) -> np.ndarray:
    (table,), = rows(conn, "SELECT item_table FROM recsys.model_version v JOIN recsys.model m"
                           " ON m.id = v.model_id AND v.version = m.active_version"
                           " WHERE m.name = %s", (model,))
    return np.stack([r[0].to_numpy() for r in
                     rows(conn, sql.SQL("SELECT factors FROM {} ORDER BY idx").format(
                         sql.Identifier("recsys", table)))])


def stored_basis(conn: psycopg.Connection, model: str) -> tuple[set[int], np.ndarray, np.ndarray]:
    """The active version's recsys.version_basis: item counts, YᵀY and W."""
    found = rows(conn, "SELECT b.items, b.gram, b.w_column, b.w_row FROM recsys.version_basis b"
                       " JOIN recsys.model m ON m.id = b.model_id AND b.version = m.active_version"
                       " WHERE m.name = %s ORDER BY b.k", (model,))
    w = np.stack([r[2].to_numpy() for r in found], axis=1)
    assert np.array_equal(np.stack([r[3].to_numpy() for r in found]), w)
    return {r[0] for r in found}, np.array([r[1] for r in found]), w


def test_basis_is_stored_at_training(db_url: str, conn: psycopg.Connection) -> None:
    create_events(conn)
    train_model(db_url, conn, "pairs", "public.pairs", weighted=False,
                params="factors => 6, iterations => 2, regularization => 0.1")
    items, gram, w = stored_basis(conn, "pairs")
    factors = item_factors(conn, "pairs").astype(np.float64)
    assert items == {30}
    assert np.allclose(gram, factors.T @ factors, rtol=1e-9, atol=1e-12)
    assert np.allclose(w @ w.T, np.linalg.inv(gram + 0.1 * np.eye(6)), rtol=1e-5, atol=1e-6)


def test_fold_in_that_adds_items_extends_the_basis(db_url: str,
                                                   conn: psycopg.Connection) -> None:
    create_events(conn)
    train_model(db_url, conn, "pairs", "public.pairs", weighted=False,
                params="factors => 6, iterations => 3, alpha => 2")
    conn.execute("INSERT INTO public.events VALUES (1, 'item-new', 1, 'view'),"
                 " (2, 'item-new', 1, 'view'), (3, 'item-new', 1, 'buy')")
    assert foldin.fold_in(db_url, "pairs").new_items == 1
    items, gram, _ = stored_basis(conn, "pairs")
    factors = item_factors(conn, "pairs").astype(np.float64)
    assert items == {31} and len(factors) == 31
    assert np.allclose(gram, factors.T @ factors, rtol=1e-6, atol=1e-9)
    # the basket is implicit's recalculated user over all 31 items
    ref = Reference(conn, "pairs")
    basket_items = ["item-new", "item-4", "item-9"]
    row = np.zeros((1, 31), dtype=np.float32)
    row[0, [ref.item_index[i] for i in basket_items]] = 1 + 2.0
    ids, scores = ref.als.recommend(0, sp.csr_matrix(row), N=10, recalculate_user=True,
                                    filter_already_liked_items=True)
    ours = basket(conn, "pairs", basket_items, 10)
    assert [r[0] for r in ours] == [ref.item_keys[i] for i in ids]
    assert np.allclose([r[1] for r in ours], scores, atol=TOLERANCE)


def test_items_appended_without_their_basis_are_refused(db_url: str,
                                                        conn: psycopg.Connection) -> None:
    create_events(conn)
    train_model(db_url, conn, "pairs", "public.pairs", weighted=False,
                params="factors => 6, iterations => 2")
    (table,), = rows(conn, "SELECT item_table FROM recsys.model_version")
    conn.execute(sql.SQL("INSERT INTO {} VALUES (30, 'new-item', '[1,2,3,4,5,6]', 0)").format(
        sql.Identifier("recsys", table)))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState,
                       match='version 1 of model "pairs" has no basis for its 31 items'):
        basket(conn, "pairs", ["item-1"], 3)


def test_serving_writes_nothing(db_url: str, conn: psycopg.Connection) -> None:
    # a hot standby serves baskets and explanations: no cache is filled on the first call
    create_events(conn)
    train_model(db_url, conn, "pairs", "public.pairs", weighted=False,
                params="factors => 4, iterations => 2")
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        read_only = basket(conn, "pairs", ["item-1", "item-2"], 5)
        explained = rows(conn, "SELECT * FROM recsys.explain('pairs', '5', 'item-1')")
    assert basket(conn, "pairs", ["item-1", "item-2"], 5) == read_only
    assert rows(conn, "SELECT * FROM recsys.explain('pairs', '5', 'item-1')") == explained
    assert explained and {r[3] for r in read_only} == {"als"}


# --- candidate filters ---------------------------------------------------------------------

def filtered(conn: psycopg.Connection, user: str, candidates: list[str] | None, k: int,
             exclude_seen: bool = True) -> list[tuple[str, float, int, str]]:
    return rows(conn, "SELECT * FROM recsys.recommend_filtered('pairs', %s, %s::text[], %s, %s)",
                (user, candidates, k, exclude_seen))


@pytest.fixture
def pairs_model(db_url: str, conn: psycopg.Connection) -> psycopg.Connection:
    create_events(conn)
    train_model(db_url, conn, "pairs", "public.pairs", weighted=False,
                params="factors => 4, iterations => 2")
    return conn


def test_candidates_are_ranked_exactly_without_seen_items(pairs_model: psycopg.Connection
                                                          ) -> None:
    conn = pairs_model
    seen = {r[0] for r in rows(conn, "SELECT item_id FROM public.pairs WHERE user_id = 5")}
    candidates = [f"item-{i}" for i in range(1, 31)] + ["not-in-model"]
    unseen = [c for c in candidates[:-1] if c not in seen]
    scores = {c: rows(conn, "SELECT recsys.score('pairs', '5', %s)", (c,))[0][0] for c in unseen}
    expected = sorted(unseen, key=lambda c: -scores[c])
    result = filtered(conn, "5", candidates, len(unseen) + 5)
    assert [r[0] for r in result] == expected  # every unseen candidate, none seen, none unknown
    assert np.allclose([r[1] for r in result], [scores[c] for c in expected], atol=1e-6)
    top = filtered(conn, "5", candidates, 3)
    assert [r[0] for r in top] == expected[:3] and [r[2] for r in top] == [1, 2, 3]
    with_seen = filtered(conn, "5", sorted(seen), 50, exclude_seen=False)
    assert {r[0] for r in with_seen} == seen


def test_candidates_agree_with_recommend_when_all_items_are_candidates(
        pairs_model: psycopg.Connection) -> None:
    conn = pairs_model
    everything = [f"item-{i}" for i in range(1, 31)]
    for user in ("1", "22"):
        ours = filtered(conn, user, everything, 7)
        # recommend serves the precomputed rows here, scored by numpy in float32: the same
        # ranking, scores equal to the last float32 bit or so
        theirs = rows(conn, "SELECT * FROM recsys.recommend('pairs', %s, 7)", (user,))
        assert [(r[0], r[2], r[3]) for r in ours] == [(r[0], r[2], r[3]) for r in theirs]
        assert np.allclose([r[1] for r in ours], [r[1] for r in theirs], rtol=1e-6, atol=1e-7)


def test_unknown_user_gets_popular_candidates(pairs_model: psycopg.Connection) -> None:
    conn = pairs_model
    candidates = ["item-3", "item-9", "item-12", "item-20"]
    popularity = dict(rows(conn, "SELECT item_id, count(*) FROM public.pairs"
                                 " WHERE item_id = ANY (%s) GROUP BY 1", (candidates,)))
    result = filtered(conn, "nobody", candidates, 3)
    assert [r[0] for r in result] == sorted(candidates, key=lambda c: (-popularity[c], c))[:3]
    assert {r[3] for r in result} == {"popular"}


def test_candidate_errors(pairs_model: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="candidates must not be null"):
        filtered(pairs_model, "1", None, 3)
    with pytest.raises(psycopg.Error, match="k must be a positive integer, not -1"):
        filtered(pairs_model, "1", ["item-1"], -1)
    assert filtered(pairs_model, "1", [], 3) == []


# --- huge k: every candidate, never an integer overflow -----------------------------------------

K_MAX = 2147483647


def test_huge_k_returns_every_candidate(pairs_model: psycopg.Connection) -> None:
    conn = pairs_model
    everything = [f"item-{i}" for i in range(1, 31)]
    # basket of known items (k + basket size overflowed integer) and of unknown items only
    known = basket(conn, "pairs", ["item-1", "item-2", "item-2"], K_MAX)
    assert len(known) == 28 and {r[0] for r in known} == set(everything) - {"item-1", "item-2"}
    assert [r[2] for r in known] == list(range(1, 29)) and {r[3] for r in known} == {"als"}
    unknown = basket(conn, "pairs", ["nope"], K_MAX)
    assert [r[0] for r in unknown] == [r[0] for r in rows(
        conn, "SELECT item_key FROM recsys.popular('pairs', %s)", (K_MAX,))]
    assert len(unknown) == 30 and {r[3] for r in unknown} == {"popular"}
    assert len(basket(conn, "pairs", [], K_MAX)) == 30

    seen = {r[0] for r in rows(conn, "SELECT item_id FROM public.pairs WHERE user_id = 5")}
    assert {r[0] for r in filtered(conn, "5", everything, K_MAX)} == set(everything) - seen
    assert len(filtered(conn, "5", everything, K_MAX, exclude_seen=False)) == 30
    assert len(filtered(conn, "nobody", everything, K_MAX)) == 30

    explained = rows(conn, "SELECT * FROM recsys.explain('pairs', '5', 'item-1', %s)", (K_MAX,))
    assert {r[0] for r in explained} == seen
