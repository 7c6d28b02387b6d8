"""Ranking parity with implicit on MovieLens 100K: same factors, same ranking, in SQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from psycopg import sql

from recsys_db import db

from ..helpers import rows

pytestmark = pytest.mark.slow
TOLERANCE = 1e-5


class Reference:
    """implicit's model rebuilt from the factors stored in the database."""

    def __init__(self, conn: psycopg.Connection) -> None:
        (users, items), = rows(conn, "SELECT user_table, item_table FROM recsys.model_version v"
                                     " JOIN recsys.model m ON m.id = v.model_id"
                                     " AND v.version = m.active_version WHERE m.name = 'ml'")
        user_rows = rows(conn, sql.SQL("SELECT idx, key, factors FROM {} ORDER BY idx").format(
            sql.Identifier("recsys", users)))
        item_rows = rows(conn, sql.SQL("SELECT idx, key, factors FROM {} ORDER BY idx").format(
            sql.Identifier("recsys", items)))
        assert [r[0] for r in user_rows] == list(range(len(user_rows)))
        self.user_keys = [r[1] for r in user_rows]
        self.item_keys = [r[1] for r in item_rows]
        self.user_index = {k: i for i, k in enumerate(self.user_keys)}
        self.item_index = {k: i for i, k in enumerate(self.item_keys)}
        self.model = AlternatingLeastSquares(factors=len(user_rows[0][2].to_numpy()))
        self.model.user_factors = np.stack([r[2].to_numpy() for r in user_rows])
        self.model.item_factors = np.stack([r[2].to_numpy() for r in item_rows])
        # what each user liked, built straight from the source, not from our tables
        pairs = rows(conn, "SELECT DISTINCT user_id::text, item_id::text FROM movielens.liked")
        self.user_items = sp.csr_matrix(
            (np.ones(len(pairs), dtype=np.float32),
             ([self.user_index[u] for u, _ in pairs], [self.item_index[i] for _, i in pairs])),
            shape=(len(self.user_keys), len(self.item_keys)))


@pytest.fixture(scope="module")
def ml(movielens_url: str) -> Iterator[tuple[psycopg.Connection, Reference]]:
    with db.connect(movielens_url) as conn:
        yield conn, Reference(conn)


def assert_same_ranking(ours: list[tuple[str, float]], theirs: list[tuple[str, float]],
                        score_of: Callable[[str], float | None]) -> None:
    """Our list is implicit's up to the order of tied scores, wherever a tied group ends.

    Position by position our score equals implicit's (so only items with the same score as
    implicit's item there can stand in for it, even one implicit ranked just past the list),
    each score is the one ``score_of`` computes from the stored factors for that key (None:
    the key may not be listed), and exactly equal scores are in byte order of the key, the
    documented tie order.
    """
    assert len(ours) == len(theirs)
    keys = [key for key, _ in ours]
    assert len(set(keys)) == len(keys)
    for position, ((key, score), (their_key, their_score)) in enumerate(
            zip(ours, theirs, strict=True)):
        expected = score_of(key)
        assert expected is not None, f"position {position}: {key} must not be listed"
        assert abs(score - expected) <= TOLERANCE, f"position {position}: {key} scores {expected}"
        assert abs(score - their_score) <= TOLERANCE, (
            f"position {position}: {key} ({score}) vs {their_key} ({their_score})")
    for (key, score), (next_key, next_score) in itertools.pairwise(ours):
        assert score >= next_score
        if score == next_score:
            assert key.encode() < next_key.encode(), f"tie {key}, {next_key} not in key order"


def _inner_product(query: np.ndarray, factors: np.ndarray, index: dict[str, int],
                   excluded: set[int]) -> Callable[[str], float | None]:
    exact = factors.astype(np.float64) @ query.astype(np.float64)
    return lambda key: None if index[key] in excluded else float(exact[index[key]])


def _cosine(factors: np.ndarray, index: dict[str, int], of: int) -> Callable[[str], float | None]:
    unit = factors.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    return lambda key: None if index[key] == of else float(unit[index[key]] @ unit[of])


def test_recommend_matches_implicit(ml: tuple[psycopg.Connection, Reference]) -> None:
    conn, ref = ml
    users = ref.user_keys[:: max(1, len(ref.user_keys) // 60)][:60]
    assert len(users) >= 50
    for user in users:
        uid = ref.user_index[user]
        ids, scores = ref.model.recommend(uid, ref.user_items[uid], N=10,
                                          filter_already_liked_items=True)
        theirs = [(ref.item_keys[i], float(s)) for i, s in zip(ids, scores, strict=True)]
        ours = rows(conn, "SELECT item_key, score FROM recsys.recommend('ml', %s, 10)", (user,))
        assert_same_ranking(ours, theirs, _inner_product(
            ref.model.user_factors[uid], ref.model.item_factors, ref.item_index,
            set(ref.user_items[uid].indices.tolist())))


def test_similar_items_matches_implicit(ml: tuple[psycopg.Connection, Reference]) -> None:
    conn, ref = ml
    items = ref.item_keys[:: max(1, len(ref.item_keys) // 60)][:60]
    assert len(items) >= 50
    for item in items:
        iid = ref.item_index[item]
        ids, scores = ref.model.similar_items(iid, N=11)
        # implicit lists the item itself first; recsys.similar_items leaves it out
        theirs = [(ref.item_keys[i], float(s)) for i, s in zip(ids, scores, strict=True)
                  if i != iid][:10]
        ours = rows(conn, "SELECT item_key, score FROM recsys.similar_items('ml', %s, 10)", (item,))
        assert_same_ranking(ours, theirs, _cosine(ref.model.item_factors, ref.item_index, iid))


def test_similar_users_matches_implicit(ml: tuple[psycopg.Connection, Reference]) -> None:
    conn, ref = ml
    for user in ref.user_keys[:: len(ref.user_keys) // 20]:
        uid = ref.user_index[user]
        ids, scores = ref.model.similar_users(uid, N=11)
        theirs = [(ref.user_keys[i], float(s)) for i, s in zip(ids, scores, strict=True)
                  if i != uid][:10]
        ours = rows(conn, "SELECT user_key, score FROM recsys.similar_users('ml', %s, 10)", (user,))
        assert_same_ranking(ours, theirs, _cosine(ref.model.user_factors, ref.user_index, uid))


def test_interested_users_ranks_users_by_score(ml: tuple[psycopg.Connection, Reference]) -> None:
    conn, ref = ml
    item = "50"  # Star Wars: many users liked it, some have not seen it
    iid = ref.item_index[item]
    scores = ref.model.user_factors @ ref.model.item_factors[iid]
    seen = set(ref.user_items[:, iid].nonzero()[0])
    order = [u for u in np.argsort(-scores, kind="stable") if u not in seen][:20]
    theirs = [(ref.user_keys[u], float(scores[u])) for u in order]
    ours = rows(conn, "SELECT user_key, score FROM recsys.interested_users('ml', %s, 20)", (item,))
    assert_same_ranking(ours, theirs, _inner_product(
        ref.model.item_factors[iid], ref.model.user_factors, ref.user_index, seen))
    assert not {k for k, _ in ours} & {ref.user_keys[u] for u in seen}
