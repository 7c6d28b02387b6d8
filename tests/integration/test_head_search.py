"""The head search of big catalogs (recsys._top_items with index_head_by_k): the largest-norm
unseen items scored exactly, read on in norm order and joined by the hnsw graph's top k unless
Cauchy-Schwarz certifies them; never a seen item nor fewer than k rows; its tuning at build."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from psycopg import sql

from recsys_db import index

from ..helpers import rows
from .test_ann_index import ITEMS, _factors, _seen, _train, _version

KS = (1, 10, 37, 100)


def _serve_with(conn: psycopg.Connection, version: dict, head: int | None, ef: int = 10,
                kind: str = "hnsw") -> None:
    conn.execute("UPDATE recsys.model_version SET index_kind = %s, index_ef_search = %s,"
                 " index_ef_by_k = %s, index_head_by_k = %s"
                 " WHERE model_id = %s AND version = %s",
                 (kind, ef, [ef, max(ef, 20), max(ef, 50), max(ef, 100)],
                  None if head is None else [head] * 4, version["model_id"],
                  version["version"]))


def _top(conn: psycopg.Connection, version: dict, user: int, k: int,
         skip: list[int] | None = None) -> list[tuple]:
    """(idx, key, score) of a user's live search, skipping its seen items (or ``skip``)."""
    return rows(conn, sql.SQL(
        "SELECT t.idx, t.key, t.score FROM recsys.model_version v, {} u,"
        " LATERAL recsys._top_items(v, u.factors, coalesce(%s::integer[], u.seen), %s) t"
        " WHERE v.model_id = %s AND v.version = %s AND u.idx = %s"
        " ORDER BY t.score DESC, t.key COLLATE \"C\"").format(
            sql.Identifier("recsys", version["user_table"])),
        (skip, k, version["model_id"], version["version"], user))


def _exact(conn: psycopg.Connection, version: dict, users: list[int], k: int) -> dict:
    _serve_with(conn, version, None, kind="exact")
    return {user: _top(conn, version, user, k) for user in users}


def _check_rows(found: list[tuple], k: int, seen: set[int]) -> None:
    assert len(found) == k
    assert not {r[0] for r in found} & seen
    assert found == sorted(found, key=lambda r: (-r[2], r[1].encode()))


@pytest.fixture
def version(conn: psycopg.Connection, db_url: str) -> dict:
    _train(conn, db_url, "hnsw")
    found = _version(conn, "m")
    assert rows(conn, "SELECT count(*) FROM pg_indexes WHERE tablename = %s"
                      " AND indexname LIKE '%%_norm'", (found["item_table"],)) == [(1,)]
    return found


def test_a_head_holding_every_unseen_item_returns_the_exact_ranking(
        conn: psycopg.Connection, version: dict) -> None:
    """Fewer unseen items than the head: the answer is the exact scan's, row for row (ties by
    key), whatever the graph found."""
    users = list(range(0, 400, 13))
    exact = {k: _exact(conn, version, users, k) for k in KS}
    _serve_with(conn, version, head=ITEMS)
    for k in KS:
        for user in users:
            assert _top(conn, version, user, k) == exact[k][user], (user, k)


def test_reading_on_in_norm_order_returns_the_exact_ranking(
        conn: psycopg.Connection, version: dict) -> None:
    """A head of half the catalog: what the bound leaves open always fits in the read-on of
    as many items again, so every answer is the exact scan's, row for row."""
    users = list(range(0, 400, 13))
    exact = {k: _exact(conn, version, users, k) for k in KS}
    _serve_with(conn, version, head=ITEMS // 2 + 1)
    for k in KS:
        for user in users:
            assert _top(conn, version, user, k) == exact[k][user], (user, k)


def test_answers_that_the_bound_certifies_are_exact(
        conn: psycopg.Connection, version: dict) -> None:
    """A head of 40 and a poor graph (ef_search 10): wherever the exact k-th score beats
    |user| times the norm of the head's last item and the exact top k lie in the head, the
    bound certifies the first answer, which must then be the exact one; every answer has k
    unseen rows in score order."""
    head = 40
    user_keys, user_factors = _factors(conn, version["user_table"])
    _, item_factors = _factors(conn, version["item_table"])
    seen = _seen(conn, version["user_table"], len(item_factors))
    norms = np.linalg.norm(item_factors.astype(np.float64), axis=1)
    by_norm = np.lexsort((-np.arange(len(norms)), -norms))  # norm desc, idx desc
    users = list(range(0, len(user_keys), 3))
    certified = 0
    for k in (1, 10):
        exact = _exact(conn, version, users, k)
        _serve_with(conn, version, head=head)
        for user in users:
            mine = set(seen.indices[seen.indptr[user]:seen.indptr[user + 1]].tolist())
            found = _top(conn, version, user, k)
            _check_rows(found, k, mine)
            unseen = by_norm[~np.isin(by_norm, list(mine))]
            floor = norms[unseen[head - 1]]
            want = exact[user]
            if ({r[0] for r in want} <= set(unseen[:head].tolist()) and want[-1][2]
                    > np.linalg.norm(user_factors[user]) * floor * (1 + 1e-3)):
                certified += 1
                assert found == want, (user, k)
    assert certified >= 10  # the case is exercised


def test_more_seen_items_than_head_and_graph_still_gives_k_unseen_rows(
        conn: psycopg.Connection, version: dict) -> None:
    """A user who has seen the 500 largest-norm items (more than the head of 40, its read-on
    and the ef_search of 10 together): k unseen rows; exact with a head of every item."""
    _, item_factors = _factors(conn, version["item_table"])
    largest = np.argsort(-np.linalg.norm(item_factors, axis=1))[:500]
    conn.execute(sql.SQL("UPDATE {} SET seen = %s WHERE idx = 0").format(
        sql.Identifier("recsys", version["user_table"])), (sorted(largest.tolist()),))
    exact = {k: _exact(conn, version, [0], k)[0] for k in KS}
    for head in (40, ITEMS):
        _serve_with(conn, version, head=head)
        for k in KS:
            found = _top(conn, version, 0, k)
            _check_rows(found, k, set(largest.tolist()))
            if head == ITEMS:
                assert found == exact[k]


def test_recommend_through_the_head_excludes_seen_items(
        conn: psycopg.Connection, version: dict) -> None:
    _serve_with(conn, version, head=40)
    user_keys, _ = _factors(conn, version["user_table"])
    item_keys, item_factors = _factors(conn, version["item_table"])
    seen = _seen(conn, version["user_table"], len(item_factors))
    for user in range(0, 400, 40):
        served = rows(conn, "SELECT item_key, rank FROM recsys.recommend('m', %s, 100)",
                      (user_keys[user],))
        assert [r for _, r in served] == list(range(1, 101))
        mine = set(seen.indices[seen.indptr[user]:seen.indptr[user + 1]].tolist())
        assert not {item_keys.index(key) for key, _ in served} & mine


def test_a_version_without_head_sizes_searches_the_graph_alone(
        conn: psycopg.Connection, version: dict) -> None:
    """Versions built before the head search (index_head_by_k null, no norm index) are
    served by the graph as before."""
    conn.execute(sql.SQL("DROP INDEX recsys.{}").format(
        sql.Identifier(version["item_table"] + "_norm")))
    _serve_with(conn, version, head=None, ef=40)
    user_keys, _ = _factors(conn, version["user_table"])
    (count,), = rows(conn, "SELECT count(*) FROM recsys.recommend('m', %s, 10)",
                     (user_keys[0],))
    assert count == 10


def test_build_tunes_the_head_where_the_graph_alone_misses(
        conn: psycopg.Connection, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph that cannot reach the target alone (a sparse graph searched at ef_search 10,
    against a target of 0.999): the build tunes a head per k, stores it with the recall
    it measured, and recommend then reaches that recall."""
    monkeypatch.setattr(index, "RECALL_TARGET", 0.999)
    monkeypatch.setattr(index, "GRAPHS", ((4, 8, 10),))
    monkeypatch.setattr(index, "HEAD_STEPS", (20, ITEMS))
    _train(conn, db_url, "hnsw")
    version = _version(conn, "m")
    heads, recalls = version["index_head_by_k"], version["index_recall_by_k"]
    assert version["index_kind"] == "hnsw" and heads is not None
    assert len(heads) == len(recalls) == len(index.RECALL_KS)
    tuned = [h for h in heads if h is not None]
    assert tuned and tuned == sorted(tuned)
    assert all(r >= 0.999 for r, h in zip(recalls, heads, strict=True) if h is not None)
    assert version["index_recall"] == recalls[0]


def test_auto_builds_nothing_while_the_exact_scan_is_within_budget(
        conn: psycopg.Connection, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "LIVE_BUDGET_MS", 1e6)
    _train(conn, db_url, "auto")
    version = _version(conn, "m")
    assert (version["index_kind"], version["index_head_by_k"]) == ("exact", None)
    assert rows(conn, "SELECT indexname FROM pg_indexes WHERE tablename = %s AND"
                      " (indexname LIKE '%%hnsw' OR indexname LIKE '%%norm')",
                (version["item_table"],)) == []
