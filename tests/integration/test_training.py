"""Training runs end to end on small hand-made data: counts, versions, failures, serving."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest
from psycopg import sql

from recsys_db import load, run, training
from recsys_db.errors import ConfigError, DataError, RecsysError
from recsys_db.model import get_model

from ..helpers import rows

SMALL = "recsys.als(factors => 2, iterations => 20, regularization => 0.01, alpha => 10)"


def make_blocks(conn: psycopg.Connection) -> None:
    """Two taste groups: u1..u4 like a1..a3, v1..v4 like b1..b3; u1 has not seen a3,
    v1 has not seen b3."""
    conn.execute("CREATE TABLE public.likes (usr text, item text, n integer)")
    pairs = [(u, i) for u in ("u1", "u2", "u3", "u4") for i in ("a1", "a2", "a3")]
    pairs += [(u, i) for u in ("v1", "v2", "v3", "v4") for i in ("b1", "b2", "b3")]
    pairs = [p for p in pairs if p not in {("u1", "a3"), ("v1", "b3")}]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.likes VALUES (%s, %s, 1)", pairs)
    conn.execute(f"SELECT recsys.create_model('blocks', 'public.likes', 'usr', 'item', 'n',"
                 f" params => {SMALL})")


def test_known_answer_on_blocks(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    result = training.train(db_url, "blocks")
    assert (result.status, result.version, result.users, result.items, result.nnz) == (
        "succeeded", 1, 8, 6, 22)
    assert rows(conn, "SELECT item_key, reason FROM recsys.recommend('blocks', 'u1', 1)") == [
        ("a3", "als")]
    assert rows(conn, "SELECT item_key FROM recsys.recommend('blocks', 'v1', 1)") == [("b3",)]
    assert {r[0] for r in rows(conn, "SELECT item_key FROM recsys.similar_items('blocks', 'a1', 2)")
            } == {"a2", "a3"}
    assert {r[0] for r in rows(conn, "SELECT user_key FROM recsys.similar_users('blocks', 'u1', 3)")
            } == {"u2", "u3", "u4"}
    # the audience for a3 is the one a-user who has not seen it yet
    audience = rows(conn, "SELECT user_key FROM recsys.interested_users('blocks', 'a3', 1)")
    assert audience == [("u1",)]
    (in_group, other), = rows(conn, "SELECT recsys.score('blocks', 'u1', 'a3'),"
                                    " recsys.score('blocks', 'u1', 'b3')")
    assert in_group > 0.5 > other


def test_scores_are_inner_products_of_stored_factors(db_url: str,
                                                     conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.rnd AS SELECT 'u' || (g % 40) AS u, 'i' || (g * 7 % 23) AS i"
                 " FROM generate_series(1, 300) g")
    conn.execute("SELECT recsys.create_model('rnd', 'public.rnd', 'u', 'i',"
                 " params => recsys.als(factors => 8))")
    training.train(db_url, "rnd")
    (users, items), = rows(conn, "SELECT user_table, item_table FROM recsys.model_version")
    user = rows(conn, sql.SQL("SELECT factors FROM {} WHERE key = 'u2'").format(
        sql.Identifier("recsys", users)))[0][0].to_numpy()
    item_factors = dict(rows(conn, sql.SQL("SELECT key, factors FROM {}").format(
        sql.Identifier("recsys", items))))
    served = rows(conn, "SELECT item_key, score, rank FROM recsys.recommend('rnd', 'u2', 23,"
                        " exclude_seen => false)")
    expected = sorted(((float(np.dot(user, v.to_numpy())), k) for k, v in item_factors.items()),
                      reverse=True)
    assert np.allclose([r[1] for r in served], [s for s, _ in expected], atol=1e-5)
    assert [r[0] for r in served] == [k for _, k in expected]
    assert [r[2] for r in served] == list(range(1, 24))


def test_exclude_seen_returns_k_unseen_rows(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    training.train(db_url, "blocks")
    got = rows(conn, "SELECT item_key FROM recsys.recommend('blocks', 'u2', 3)")
    assert len(got) == 3 and not {"a1", "a2", "a3"} & {r[0] for r in got}
    # only 3 unseen items exist: asking for more returns all of them, no seen ones
    assert len(rows(conn, "SELECT 1 FROM recsys.recommend('blocks', 'u2', 100)")) == 3
    assert len(rows(conn, "SELECT 1 FROM recsys.recommend('blocks', 'u2', 100, false)")) == 6


def test_unknown_user_gets_popular_items(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    training.train(db_url, "blocks")
    got = rows(conn, "SELECT item_key, score, rank, reason FROM recsys.recommend('blocks',"
                     " 'stranger', 3)")
    assert [r[3] for r in got] == ["popular"] * 3
    assert got == [(k, s, r, "popular") for k, s, r in
                   rows(conn, "SELECT * FROM recsys.popular('blocks', 3)")]
    # a1, a2, b1, b2 have 4 users each; ties broken by key
    assert [r[0] for r in got] == ["a1", "a2", "b1"] and got[0][1] == 4
    assert rows(conn, "SELECT * FROM recsys.recommend('blocks', NULL, 1)")[0][3] == "popular"


@pytest.mark.parametrize("call", [
    "recsys.recommend('blocks', 'u1', 0)", "recsys.recommend('blocks', 'u1', -3)",
    "recsys.recommend('blocks', 'u1', NULL)", "recsys.similar_items('blocks', 'a1', 0)",
    "recsys.similar_users('blocks', 'u1', 0)", "recsys.interested_users('blocks', 'a1', 0)",
    "recsys.popular('blocks', 0)"])
def test_k_must_be_positive(db_url: str, conn: psycopg.Connection, call: str) -> None:
    make_blocks(conn)
    training.train(db_url, "blocks")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be a positive integer"):
        conn.execute(f"SELECT * FROM {call}")


def test_unknown_item_and_user(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    training.train(db_url, "blocks")
    with pytest.raises(psycopg.errors.NoDataFound, match="item 'zz' is not in model \"blocks\""):
        conn.execute("SELECT * FROM recsys.similar_items('blocks', 'zz')")
    with pytest.raises(psycopg.errors.NoDataFound, match="item 'zz' is not in model"):
        conn.execute("SELECT * FROM recsys.interested_users('blocks', 'zz')")
    with pytest.raises(psycopg.errors.NoDataFound, match="user 'zz' is not in model"):
        conn.execute("SELECT * FROM recsys.similar_users('blocks', 'zz')")
    assert rows(conn, "SELECT recsys.score('blocks', 'zz', 'a1'),"
                      " recsys.score('blocks', 'u1', 'zz')") == [(None, None)]


def test_null_keys_and_weights_are_skipped_and_counted(db_url: str,
                                                       conn: psycopg.Connection) -> None:
    make_blocks(conn)
    conn.execute("INSERT INTO public.likes VALUES (NULL, 'a1', 1), ('u9', NULL, 1),"
                 " ('u9', 'a1', NULL), (NULL, NULL, NULL)")
    result = training.train(db_url, "blocks")
    assert (result.rows_read, result.rows_skipped_null, result.users) == (26, 4, 8)
    assert rows(conn, "SELECT rows_read, rows_skipped_null, users FROM recsys.runs") == [(26, 4, 8)]


def test_duplicates_are_summed_and_event_weights_applied(db_url: str,
                                                         conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.ev (u text, i text, kind text)")
    conn.execute("INSERT INTO public.ev VALUES ('a', 'x', 'view'), ('a', 'x', 'view'),"
                 " ('a', 'y', 'cart'), ('b', 'y', 'view'), ('b', 'z', 'unknown'),"
                 " ('c', 'z', NULL)")
    conn.execute("SELECT recsys.create_model('ev', 'public.ev', 'u', 'i', event_column => 'kind',"
                 " event_weights => '{\"view\": 1, \"cart\": 10}',"
                 " params => recsys.als(factors => 2, weighting => 'none'))")
    result = training.train(db_url, "ev")
    # 'unknown' and NULL events are not in the map: skipped and counted
    assert (result.rows_read, result.rows_skipped_event, result.users, result.nnz) == (6, 2, 2, 3)
    from recsys_db import db

    with db.connect(db_url) as other:
        data = load.read(other, get_model(other, "ev"))
    dense = data.matrix.toarray()
    assert dense.tolist() == [[2.0, 10.0], [0.0, 1.0]]  # users a, b x items x, y
    # the version keeps each item's summed weight (event weights applied), by item index
    assert rows(conn, "SELECT w.version, w.item_weight, array_agg(i.key ORDER BY i.idx)"
                      " FROM recsys.version_item_weight w, recsys.m1_v1_items i"
                      " GROUP BY 1, 2") == [(1, [2.0, 11.0], ["x", "y"])]


@pytest.mark.parametrize(("bad", "message"), [
    ("'NaN'", 'weight column "w" of model "bad" has 1 NaN value; weights must be finite'),
    ("-1", 'weight column "w" of model "bad" has 1 negative value; weights must be finite'),
    ("'Infinity'", 'weight column "w" of model "bad" has 1 infinite value; weights must be'),
])
def test_bad_weights_fail_the_run_and_keep_the_active_version(
        db_url: str, conn: psycopg.Connection, bad: str, message: str) -> None:
    conn.execute("CREATE TABLE public.w (u text, i text, w double precision)")
    conn.execute("INSERT INTO public.w VALUES ('a', 'x', 1), ('a', 'y', 2), ('b', 'y', 1)")
    conn.execute("SELECT recsys.create_model('bad', 'public.w', 'u', 'i', 'w',"
                 " params => recsys.als(factors => 2))")
    training.train(db_url, "bad")
    before = rows(conn, "SELECT * FROM recsys.recommend('bad', 'a', 5, false)")
    conn.execute(f"INSERT INTO public.w VALUES ('c', 'x', {bad})")
    with pytest.raises(DataError, match=message):
        training.train(db_url, "bad")
    assert rows(conn, "SELECT active_version, last_run_status FROM recsys.models") == [
        (1, "failed")]
    (error,), = rows(conn, "SELECT error FROM recsys.runs WHERE status = 'failed'")
    assert error.startswith('weight column "w" of model "bad" has 1 ')
    assert rows(conn, "SELECT * FROM recsys.recommend('bad', 'a', 5, false)") == before


def test_empty_source(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.empty (u text, i text)")
    conn.execute("SELECT recsys.create_model('e', 'public.empty', 'u', 'i')")
    with pytest.raises(DataError, match=r'source "public\.empty" of model "e" is empty'):
        training.train(db_url, "e")
    conn.execute("INSERT INTO public.empty VALUES (NULL, 'x')")
    with pytest.raises(DataError, match=r"has no usable rows: 1 with NULL keys or weights"):
        training.train(db_url, "e")
    assert rows(conn, "SELECT status FROM recsys.runs ORDER BY run_id") == [("failed",),
                                                                             ("failed",)]


def test_source_dropped_or_changed_after_create(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    conn.execute("ALTER TABLE public.likes RENAME COLUMN item TO product")
    with pytest.raises(ConfigError, match='column "item" does not exist in relation'):
        training.train(db_url, "blocks")
    conn.execute("DROP TABLE public.likes")
    with pytest.raises(ConfigError, match=r'source relation "public\.likes" of model "blocks"'
                                          r" does not exist"):
        training.train(db_url, "blocks")


def test_unknown_model_train(db_url: str) -> None:
    with pytest.raises(ConfigError, match='model "ghost" does not exist'):
        training.train(db_url, "ghost")


def test_concurrent_training_is_refused(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    model_id = rows(conn, "SELECT id FROM recsys.model")[0][0]
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (run.model_lock_key(model_id),))
        with pytest.raises(RecsysError, match='model "blocks" is already being trained'):
            training.train(db_url, "blocks")


def test_versions_swap_and_rollback(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    training.train(db_url, "blocks")
    # the new version learns a new item that only u1 has
    conn.execute("INSERT INTO public.likes VALUES ('u1', 'new', 5)")
    second = training.train(db_url, "blocks")
    assert second.version == 2
    assert ("new",) in rows(conn, "SELECT item_key FROM recsys.popular('blocks', 10)")
    assert rows(conn, "SELECT recsys.rollback('blocks', 1)") == [(1,)]
    assert ("new",) not in rows(conn, "SELECT item_key FROM recsys.popular('blocks', 10)")
    assert rows(conn, "SELECT version, active FROM recsys.versions ORDER BY version") == [
        (1, True), (2, False)]
    conn.execute("SELECT recsys.rollback('blocks', 2)")
    assert ("new",) in rows(conn, "SELECT item_key FROM recsys.popular('blocks', 10)")
    with pytest.raises(psycopg.errors.UndefinedObject, match='model "blocks" has no version 7'):
        conn.execute("SELECT recsys.rollback('blocks', 7)")


def test_retention_drops_old_versions(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    conn.execute("UPDATE recsys.model SET params = params || '{\"keep_versions\": 2}'")
    for _ in range(3):
        training.train(db_url, "blocks")
    assert rows(conn, "SELECT version, status FROM recsys.versions ORDER BY version") == [
        (1, "dropped"), (2, "ready"), (3, "ready")]
    assert rows(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'recsys'"
                      " AND tablename ~ '^m[0-9]+_v1_'") == [(0,)]
    assert rows(conn, "SELECT version FROM recsys.version_item_weight ORDER BY 1") == [
        (2,), (3,)]
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="is dropped, not ready"):
        conn.execute("SELECT recsys.rollback('blocks', 1)")


def test_materialized_view_is_refreshed(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    conn.execute("CREATE MATERIALIZED VIEW public.likes_mv AS SELECT * FROM public.likes")
    conn.execute("SELECT recsys.create_model('mv', 'public.likes_mv', 'usr', 'item',"
                 f" params => {SMALL})")
    conn.execute("INSERT INTO public.likes VALUES ('late', 'a1', 1)")
    result = training.train(db_url, "mv")
    assert result.users == 9  # the row added after the view was built is in
    conn.execute("CREATE UNIQUE INDEX ON public.likes_mv (usr, item)")  # now CONCURRENTLY
    conn.execute("INSERT INTO public.likes VALUES ('later', 'a1', 1)")
    assert training.train(db_url, "mv").users == 10


def test_view_source_and_hostile_identifiers(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute('CREATE SCHEMA "s; drop"')
    conn.execute('CREATE TABLE "s; drop"."t""x" ("us er" text, "ité""m" text, "key" text,'
                 ' "idx" int)')
    conn.execute('INSERT INTO "s; drop"."t""x" SELECT \'u\' || (g % 5), \'i\' || (g % 7),'
                 " 'k', 1 FROM generate_series(1, 30) g")
    conn.execute('CREATE VIEW "s; drop"."v w" AS SELECT * FROM "s; drop"."t""x"')
    name = "m'; DROP SCHEMA recsys CASCADE; --"
    conn.execute("SELECT recsys.create_model(%s, %s, 'us er', 'ité\"m',"
                 " params => recsys.als(factors => 2))", (name, '"s; drop"."v w"'))
    result = training.train(db_url, name)
    assert (result.users, result.items) == (5, 7)
    assert len(rows(conn, "SELECT * FROM recsys.recommend(%s, 'u1', 2, false)", (name,))) == 2


def test_one_user_or_one_item(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.solo (u text, i text)")
    conn.execute("INSERT INTO public.solo VALUES ('only', 'x'), ('only', 'y'), ('only', 'z')")
    conn.execute("SELECT recsys.create_model('solo', 'public.solo', 'u', 'i',"
                 " params => recsys.als(factors => 2))")
    result = training.train(db_url, "solo")
    assert (result.users, result.items) == (1, 3)
    # every item is seen already: nothing left to recommend, and no error
    assert rows(conn, "SELECT * FROM recsys.recommend('solo', 'only', 5)") == []
    assert len(rows(conn, "SELECT * FROM recsys.recommend('solo', 'only', 5, false)")) == 3
    assert rows(conn, "SELECT * FROM recsys.similar_users('solo', 'only', 5)") == []
    conn.execute("CREATE TABLE public.one_item (u text, i text)")
    conn.execute("INSERT INTO public.one_item VALUES ('a', 'x'), ('b', 'x')")
    conn.execute("SELECT recsys.create_model('one', 'public.one_item', 'u', 'i',"
                 " params => recsys.als(factors => 2))")
    assert training.train(db_url, "one").items == 1
    assert rows(conn, "SELECT * FROM recsys.similar_items('one', 'x', 5)") == []
    assert rows(conn, "SELECT item_key FROM recsys.recommend('one', 'new', 5)") == [("x",)]


def test_huge_k_returns_every_candidate(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    training.train(db_url, "blocks")
    assert len(rows(conn, "SELECT * FROM recsys.recommend('blocks', 'u1', 2147483647)")) == 4
    assert len(rows(conn, "SELECT * FROM recsys.popular('blocks', 2147483647)")) == 6


@pytest.mark.parametrize(("setup", "zero", "message"), [
    # integer keys (read by numpy), a weight column only
    ("CREATE TABLE public.z (u integer, i integer, w real);"
     " INSERT INTO public.z VALUES (1, 10, 1), (1, 11, 2), (2, 11, 1);"
     " SELECT recsys.create_model('zero', 'public.z', 'u', 'i', 'w',"
     " params => recsys.als(factors => 2))",
     "UPDATE public.z SET w = 0",
     'no interaction of model "zero" has a positive weight: 3 rows read, all weighted 0 by'
     ' weight column "w"'),
    # text keys (mapped in SQL), event weights all 0; the unmapped event is counted apart
    ("CREATE TABLE public.z (u text, i text, kind text);"
     " INSERT INTO public.z VALUES ('a', 'x', 'view'), ('a', 'y', 'buy'), ('b', 'y', 'view'),"
     " ('b', 'x', 'other');"
     " SELECT recsys.create_model('zero', 'public.z', 'u', 'i', event_column => 'kind',"
     " event_weights => '{\"view\": 1, \"buy\": 5}', params => recsys.als(factors => 2))",
     "UPDATE recsys.model SET event_weights = '{\"view\": 0, \"buy\": 0}'",
     'no interaction of model "zero" has a positive weight: 4 rows read, 1 skipped, the other 3'
     " all weighted 0 by event_weights"),
])
def test_all_zero_weights_fail_the_run_and_keep_the_active_version(
        db_url: str, conn: psycopg.Connection, setup: str, zero: str, message: str) -> None:
    for statement in setup.split(";"):
        conn.execute(statement)
    assert training.train(db_url, "zero").version == 1
    (users,), = rows(conn, "SELECT user_table FROM recsys.model_version")
    (user,), = rows(conn, sql.SQL("SELECT min(key) FROM {}").format(
        sql.Identifier("recsys", users)))
    before = rows(conn, "SELECT * FROM recsys.recommend('zero', %s, 5, false)", (user,))
    assert len(before) == 2 and {r[3] for r in before} == {"als"}
    conn.execute(zero)
    with pytest.raises(DataError, match=f"^{message}$"):
        training.train(db_url, "zero")
    assert rows(conn, "SELECT status, error FROM recsys.runs ORDER BY run_id") == [
        ("succeeded", None), ("failed", message)]
    assert rows(conn, "SELECT active_version FROM recsys.model") == [(1,)]
    assert rows(conn, "SELECT version, status FROM recsys.versions") == [(1, "ready")]
    assert rows(conn, "SELECT * FROM recsys.recommend('zero', %s, 5, false)", (user,)) == before


def test_progress_that_raises_never_fails_the_run(db_url: str, conn: psycopg.Connection,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    make_blocks(conn)
    calls: list[tuple[str, str]] = []

    def broken_pipe(stage: str, state: str) -> None:  # recsys-db train m | head -1
        calls.append((stage, state))
        raise BrokenPipeError(32, "Broken pipe")

    result = training.train(db_url, "blocks", progress=broken_pipe)
    assert (result.status, result.version) == ("succeeded", 1)
    assert calls == [("refresh", "start")]  # reported to once, then never again
    assert [r.getMessage() for r in caplog.records if "progress" in r.getMessage()] == [
        "blocks: progress reporting failed and is off for this run: BrokenPipeError:"
        " [Errno 32] Broken pipe"]
    assert rows(conn, "SELECT status, error FROM recsys.runs") == [("succeeded", None)]
    assert rows(conn, "SELECT item_key, reason FROM recsys.recommend('blocks', 'u1', 1)") == [
        ("a3", "als")]


def test_run_seconds_is_wall_time(db_url: str, conn: psycopg.Connection) -> None:
    make_blocks(conn)
    started = time.perf_counter()
    result = training.train(db_url, "blocks")
    elapsed = time.perf_counter() - started
    # the index is built alongside precompute: the stages overlap, the wall time does not
    sequential = sum(seconds for name, seconds in result.stages.items() if name != "index")
    assert sequential <= result.seconds <= elapsed
    assert result.as_dict()["seconds"] == result.seconds
    assert result.gate is None and result.as_dict()["gate"] is None  # no gate_metric


@pytest.mark.parametrize(("expression", "message"), [
    ("at", 'user column "who" of model "keys" has type timestamp with time zone, whose text'
           " depends on session settings"),
    ("at::timestamp", 'user column "who" of model "keys" has type timestamp without time zone,'
                      " whose text depends on session settings"),
    ("at::date", 'user column "who" of model "keys" has type date, whose text depends on'),
    ("(at - '2024-01-01')", 'user column "who" of model "keys" has type interval, whose text'),
    ("extract(day FROM at)::float8", 'user column "who" of model "keys" has type double'
                                     " precision, whose text depends on session settings"),
    # training's session has search_path pg_catalog, pg_temp: the domain's name is qualified
    ("at::stamp", 'user column "who" of model "keys" has type public\\.stamp \\(over timestamp'
                  ' with time zone\\), whose text depends on session settings'),
    ("usr = 'u1'", 'user column "who" of model "keys" has type boolean, which is not a'
                   " supported key type"),
])
def test_session_dependent_key_types_are_refused(db_url: str, conn: psycopg.Connection,
                                                 expression: str, message: str) -> None:
    conn.execute("CREATE DOMAIN public.stamp AS timestamptz")
    conn.execute("CREATE TABLE public.stamped AS SELECT 'u' || g % 5 AS usr,"
                 " timestamptz '2024-01-01' + g % 5 * interval '1 day' AS at, 'i' || g % 7 AS item"
                 " FROM generate_series(1, 60) g")
    conn.execute("CREATE VIEW public.keyed AS SELECT usr AS who, item FROM public.stamped")
    conn.execute("SELECT recsys.create_model('keys', 'public.keyed', 'who', 'item',"
                 " params => recsys.als(factors => 2))")
    assert training.train(db_url, "keys").version == 1
    before = rows(conn, "SELECT * FROM recsys.recommend('keys', 'u1', 3)")
    # the view's key column changes type after the model was declared
    conn.execute("DROP VIEW public.keyed")
    conn.execute(f"CREATE VIEW public.keyed AS SELECT {expression} AS who, item"
                 " FROM public.stamped")
    full = f"^{message}.*; use a text, integer or uuid key \\(cast it in a view\\)$"
    with pytest.raises(ConfigError, match=full):
        training.train(db_url, "keys")
    from recsys_db import foldin

    with pytest.raises(ConfigError, match=full):
        foldin.fold_in(db_url, "keys")
    assert rows(conn, "SELECT kind, status FROM recsys.runs ORDER BY run_id") == [
        ("full", "succeeded"), ("full", "failed"), ("incremental", "failed")]
    assert rows(conn, "SELECT active_version FROM recsys.model") == [(1,)]
    assert rows(conn, "SELECT * FROM recsys.recommend('keys', 'u1', 3)") == before


@pytest.mark.parametrize("expression", [
    "usr::varchar(8)", "usr::char(3)", "usr::name_key", "g % 5", "(g % 5)::smallint",
    "(g % 5)::bigint", "(g % 5)::numeric(4, 1)", "md5(usr)::uuid"])
def test_key_types_with_stable_text_train(db_url: str, conn: psycopg.Connection,
                                          expression: str) -> None:
    conn.execute("CREATE DOMAIN public.name_key AS varchar(20)")
    conn.execute(f"CREATE VIEW public.keyed AS SELECT {expression} AS who, 'i' || g % 7 AS item"
                 " FROM (SELECT g, 'u' || g % 5 AS usr FROM generate_series(1, 60) g) s")
    conn.execute("SELECT recsys.create_model('keys', 'public.keyed', 'who', 'item',"
                 " params => recsys.als(factors => 2))")
    result = training.train(db_url, "keys")
    assert (result.status, result.users, result.items) == ("succeeded", 5, 7)
