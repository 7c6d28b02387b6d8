"""Precomputed recommendations and similar items: same rows as the live SQL functions,
switched with the active version, binary COPY of awkward keys."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
import scipy.sparse as sp
from psycopg import sql

from recsys_db import db, precompute, training

from ..helpers import rows

TOLERANCE = 1e-5


def assert_same_ranking(ours: list[tuple[str, float]], theirs: list[tuple[str, float]]) -> None:
    """Position by position the same scores (within float noise); a key may differ only for
    another with its score, also one that ``theirs`` (pass a longer list) ranks beyond ours."""
    assert len(ours) <= len(theirs)
    assert len({key for key, _ in ours}) == len(ours)
    for (our_key, our_score), (_, their_score) in zip(ours, theirs[:len(ours)], strict=True):
        assert abs(our_score - their_score) <= TOLERANCE
        assert our_key in {k for k, s in theirs if abs(s - our_score) <= TOLERANCE}


def live_recommend(conn: psycopg.Connection, model: str, user: str,
                   k: int) -> list[tuple[str, float]]:
    """(item, score) of a live search, as recsys.recommend serves without precomputed rows."""
    return rows(conn, "SELECT r.item_key, r.score FROM recsys.model_version v"
                      " JOIN recsys.model m ON m.id = v.model_id AND v.version = m.active_version,"
                      " recsys._recommend_live(v, m.name, %s, %s, true) r WHERE m.name = %s",
                (user, k, model))


@pytest.mark.slow
def test_precomputed_rows_equal_live_recommend(movielens_url: str) -> None:
    with db.connect(movielens_url) as conn:
        (count, users), = rows(conn, "SELECT count(*), count(DISTINCT user_key)"
                                     " FROM recsys.recommendations WHERE model = 'ml'")
        (trained,), = rows(conn, "SELECT users FROM recsys.versions WHERE model = 'ml' AND active")
        assert (count, users) == (trained * 10, trained)
        sample = [r[0] for r in rows(conn, "SELECT DISTINCT user_key FROM recsys.recommendations"
                                           " ORDER BY user_key LIMIT 60")]
        for user in sample:
            live = live_recommend(conn, "ml", user, 15)
            stored = rows(conn, "SELECT item_key, score FROM recsys.recommendations"
                                " WHERE model = 'ml' AND user_key = %s ORDER BY rank", (user,))
            assert_same_ranking(stored, live)
        assert rows(conn, "SELECT min(rank), max(rank) FROM recsys.recommendations") == [(1, 10)]


def make_catalog(conn: psycopg.Connection, params: str) -> None:
    """Keys of every length and alphabet, including an empty one, quotes and tabs."""
    users = ["", "u", "ü-ユーザー", "tab\there", "quote'\"", "x" * 300, "7", "back\\slash"]
    items = ["", "i", "ítem", "商品-42", "new\nline", "y" * 120, "8"]
    pairs = [(u, i) for n, u in enumerate(users) for m, i in enumerate(items) if (n + m) % 3]
    conn.execute("CREATE TABLE public.odd (u text, i text)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.odd VALUES (%s, %s)", pairs)
    conn.execute(f"SELECT recsys.create_model('odd', 'public.odd', 'u', 'i', params => {params})")


def test_awkward_keys_round_trip_and_match_live(db_url: str, conn: psycopg.Connection) -> None:
    make_catalog(conn, "recsys.als(factors => 3, recommendations_k => 3, similar_items_k => 2)")
    result = training.train(db_url, "odd")
    users = [r[0] for r in rows(conn, "SELECT DISTINCT u FROM public.odd ORDER BY 1")]
    assert result.precomputed == {"recommendation": sum(
        len(live_recommend(conn, "odd", u, 3)) for u in users),
        "similar_item": 7 * 2}
    for user in users:
        live = live_recommend(conn, "odd", user, 6)
        stored = rows(conn, "SELECT item_key, score FROM recsys.recommendations"
                            " WHERE model = 'odd' AND user_key = %s ORDER BY rank", (user,))
        assert live and all(reason == "als" for (reason,) in rows(
            conn, "SELECT reason FROM recsys.recommend('odd', %s, 3)", (user,)))
        assert_same_ranking(stored, live)
        assert_same_ranking(rows(conn, "SELECT item_key, score FROM recsys.recommend('odd', %s, 3)",
                                 (user,)), live)
    for (item,) in rows(conn, "SELECT DISTINCT i FROM public.odd"):
        # k 6 > similar_items_k: a live search
        live = rows(conn, "SELECT item_key, score FROM recsys.similar_items('odd', %s, 6)",
                    (item,))
        stored = rows(conn, "SELECT similar_item_key, score FROM recsys.similar_items_top"
                            " WHERE model = 'odd' AND item_key = %s ORDER BY rank", (item,))
        assert_same_ranking(stored, live)


def test_users_with_few_unseen_items_get_fewer_rows(db_url: str,
                                                    conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.few (u text, i text)")
    conn.execute("INSERT INTO public.few VALUES ('a', 'x'), ('a', 'y'), ('b', 'x'), ('c', 'z')")
    conn.execute("SELECT recsys.create_model('few', 'public.few', 'u', 'i',"
                 " params => recsys.als(factors => 2, recommendations_k => 5))")
    training.train(db_url, "few")
    live = {user: [key for key, _ in live_recommend(conn, "few", user, 5)] for user in "abc"}
    assert live["a"] == ["z"] and len(live["b"]) == len(live["c"]) == 2
    assert rows(conn, "SELECT user_key, rank, item_key FROM recsys.recommendations"
                      " ORDER BY user_key, rank") == [
        (user, rank, key) for user in "abc" for rank, key in enumerate(live[user], 1)]
    # a user's every row is served, however few; k beyond recommendations_k searches and
    # finds no more
    for k in (5, 6):
        assert [r[0] for r in rows(conn, "SELECT item_key FROM recsys.recommend('few', 'b', %s)",
                                   (k,))] == live["b"]


def partitions(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in rows(conn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c"
                                     " ON c.oid = i.inhrelid ORDER BY 1")]


def test_rows_follow_the_active_version(db_url: str, conn: psycopg.Connection) -> None:
    make_catalog(conn, "recsys.als(factors => 3, recommendations_k => 2, keep_versions => 2)")
    (model_id,), = rows(conn, "SELECT id FROM recsys.model")
    training.train(db_url, "odd")
    first = rows(conn, "SELECT * FROM recsys.recommendations ORDER BY user_key, rank")
    conn.execute("INSERT INTO public.odd VALUES ('u', 'fresh'), ('7', 'fresh')")
    training.train(db_url, "odd")
    second = rows(conn, "SELECT * FROM recsys.recommendations ORDER BY user_key, rank")
    assert "fresh" in {r[3] for r in second} and "fresh" not in {r[3] for r in first}
    conn.execute("SELECT recsys.rollback('odd', 1)")
    assert rows(conn, "SELECT * FROM recsys.recommendations ORDER BY user_key, rank") == first
    conn.execute("SELECT recsys.rollback('odd', 2)")
    # a third version expires the first: its partition goes with it
    training.train(db_url, "odd")
    assert partitions(conn) == [f"m{model_id}_v2_recs", f"m{model_id}_v3_recs"]
    assert len(rows(conn, "SELECT * FROM recsys.recommendations")) == len(second)


def test_failed_run_and_dropped_model_leave_no_partitions(db_url: str,
                                                          conn: psycopg.Connection) -> None:
    make_catalog(conn, "recsys.als(factors => 3, similar_items_k => 1)")
    (model_id,), = rows(conn, "SELECT id FROM recsys.model")
    training.train(db_url, "odd")
    assert partitions(conn) == [f"m{model_id}_v1_recs", f"m{model_id}_v1_similar"]
    # the second version fails while being written: its partitions are not left behind
    conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(
        sql.Identifier("recsys", f"m{model_id}_v2_similar")))
    with pytest.raises(psycopg.errors.DuplicateTable):
        training.train(db_url, "odd")
    assert partitions(conn) == [f"m{model_id}_v1_recs", f"m{model_id}_v1_similar"]
    assert rows(conn, "SELECT count(*) > 0 FROM recsys.similar_items_top") == [(True,)]
    conn.execute("SELECT recsys.drop_model('odd')")
    assert rows(conn, "SELECT count(*) FROM recsys.recommendations") == [(0,)]
    assert partitions(conn) == []
    assert precompute.prune(conn) == []


def test_drop_model_does_not_queue_recommend_behind_a_reader(db_url: str,
                                                             conn: psycopg.Connection) -> None:
    make_catalog(conn, "recsys.als(factors => 3, recommendations_k => 2)")
    conn.execute("SELECT recsys.create_model('other', 'public.odd', 'i', 'u',"
                 " params => recsys.als(factors => 3, recommendations_k => 2))")
    training.train(db_url, "odd")
    training.train(db_url, "other")
    (odd_id,), = rows(conn, "SELECT id FROM recsys.model WHERE name = 'odd'")
    with db.connect(db_url, autocommit=False) as reader:
        # an open transaction that read another model's precomputed rows
        assert rows(reader, "SELECT * FROM recsys.recommend('other', 'i', 1)")
        conn.execute("SET lock_timeout = '20s'")  # what a patient caller may have set
        with conn.transaction():
            conn.execute("SELECT recsys.drop_model('odd')")
            # the caller's own lock_timeout is back after the partition drop gave up
            assert rows(conn, "SHOW lock_timeout") == [("20s",)]
        conn.execute("RESET lock_timeout")
        assert f"m{odd_id}_v1_recs" in partitions(conn)  # left for the next prune
        assert rows(conn, "SELECT count(*) FROM recsys.recommendations WHERE model = 'odd'") == [
            (0,)]
    training.train(db_url, "other")
    assert [p for p in partitions(conn) if p.startswith(f"m{odd_id}_")] == []


def test_nothing_left_to_recommend(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.solo AS SELECT 'only' AS u, i FROM unnest('{x,y}'::text[]) i")
    conn.execute("SELECT recsys.create_model('solo', 'public.solo', 'u', 'i',"
                 " params => recsys.als(factors => 2, similar_items_k => 3))")
    result = training.train(db_url, "solo")
    assert result.precomputed == {"recommendation": 0, "similar_item": 2}
    assert rows(conn, "SELECT count(*) FROM recsys.recommendations") == [(0,)]
    assert rows(conn, "SELECT item_key, similar_item_key FROM recsys.similar_items_top"
                      " ORDER BY 1") == [("x", "y"), ("y", "x")]


def test_precompute_off(db_url: str, conn: psycopg.Connection) -> None:
    make_catalog(conn, "recsys.als(factors => 3, recommendations_k => 0)")
    result = training.train(db_url, "odd")
    assert result.precomputed == {}
    assert partitions(conn) == []


def test_equal_scores_rank_by_key_bytes_live_and_precomputed(
        db_url: str, conn: psycopg.Connection) -> None:
    """Items with equal factors tie on every score: the live SQL functions and the precomputed
    rows both list them in byte order of the key."""
    tied = ["b", "B", "a", "_x", "A1"]
    other = ["p", "q", "r", "s"]
    pairs = [(f"u{n}", item) for n in range(6) for item in tied + other
             if (n + len(item) + ord(item[0])) % 2]
    conn.execute("CREATE TABLE public.ties (u text, i text)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.ties VALUES (%s, %s)", pairs)
    conn.execute("SELECT recsys.create_model('ties', 'public.ties', 'u', 'i', params =>"
                 " recsys.als(factors => 3, recommendations_k => 8, similar_items_k => 8))")
    training.train(db_url, "ties")
    (model_id, version, items_table, users_table), = rows(
        conn, "SELECT model_id, version, item_table, user_table FROM recsys.model_version")
    # every tied item gets the first one's factors, and the precomputed rows are ranked anew
    conn.execute(sql.SQL("UPDATE {} SET factors = (SELECT factors FROM"
                         " {} WHERE key = 'b') WHERE key = ANY (%s)").format(
                             sql.Identifier("recsys", items_table),
                             sql.Identifier("recsys", items_table)), (tied,))
    item_rows = rows(conn, sql.SQL("SELECT key, factors FROM {} ORDER BY idx").format(
        sql.Identifier("recsys", items_table)))
    item_keys = [r[0] for r in item_rows]
    assert item_keys == sorted(item_keys, key=str.encode)  # items are numbered in byte order
    user_rows = rows(conn, sql.SQL("SELECT key, factors, seen FROM {} ORDER BY idx").format(
        sql.Identifier("recsys", users_table)))
    seen = sp.lil_matrix((len(user_rows), len(item_keys)))
    for user, (_, _, items) in enumerate(user_rows):
        seen[user, items] = 1
    # the active version's partitions are written again (recsys writes partitions only of a
    # version being built, and never drops the active version's: the superuser steps in)
    conn.execute(sql.SQL("DROP TABLE {}, {}").format(
        sql.Identifier("recsys", f"m{model_id}_v{version}_recs"),
        sql.Identifier("recsys", f"m{model_id}_v{version}_similar")))
    conn.execute("UPDATE recsys.model_version SET status = 'building'")
    precompute.write(conn, model_id, version, {"recommendations_k": 8, "similar_items_k": 8},
                     np.stack([r[1].to_numpy() for r in user_rows]),
                     np.stack([r[1].to_numpy() for r in item_rows]), seen.tocsr(),
                     [r[0] for r in user_rows], item_keys)
    conn.execute("UPDATE recsys.model_version SET status = 'ready'")
    # live searches from here on: compare them with the rows just written
    conn.execute("UPDATE recsys.model_version SET precomputed_k = 0, similar_k = 0")
    byte_order = sorted(tied, key=str.encode)
    for item in other:
        stored = [r[0] for r in rows(conn, "SELECT similar_item_key FROM recsys.similar_items_top"
                                           " WHERE item_key = %s ORDER BY rank", (item,))]
        live = [r[0] for r in rows(conn, "SELECT item_key FROM recsys.similar_items('ties', %s, 8)",
                                   (item,))]
        assert live == stored
        assert [key for key in live if key in tied] == byte_order
    for user, _, _ in user_rows:
        stored = [r[0] for r in rows(conn, "SELECT item_key FROM recsys.recommendations"
                                           " WHERE user_key = %s ORDER BY rank", (user,))]
        live = [r[0] for r in rows(conn, "SELECT item_key FROM recsys.recommend('ties', %s, 8)",
                                   (user,))]
        assert live == stored
        assert [key for key in live if key in tied] == [k for k in byte_order if k in live]
