"""Upgrading databases of earlier releases with the current install: the user's reporting views
over recsys keep working, every model keeps serving what it served before, history stays, and
training works afterwards.

Each database comes from rev<NNNN>.sql.gz, built by that release's own code (see
make_fixture.py): the previous release (the newest fixture) and the one before it, so that an
upgrade over two revisions is covered too.
"""

from __future__ import annotations

import gzip
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from recsys_db import db, install, training, versions

from ..helpers import database_url, drop_database

# the revisions of the releases the fixtures were built by, oldest first
REVISIONS = ("0009", "0010", "0011", "0012", "0013", "0014")

REPORT_VIEWS = ["model_report", "metric_report", "shop_top", "shop_precomputed", "shop_similar",
                "plays_top"]

# (label, query): what a user of the previous release got; the same rows after the upgrade
SERVING = [
    ("recommend precomputed", "SELECT * FROM recsys.recommend('shop', 'u1', k => 10)"),
    ("recommend live", "SELECT * FROM recsys.recommend('shop', 'u5', k => 25)"),
    ("recommend unknown user", "SELECT * FROM recsys.recommend('shop', 'nobody', k => 5)"),
    ("similar_items", "SELECT * FROM recsys.similar_items('shop', 'i7', k => 5)"),
    ("similar_items live", "SELECT * FROM recsys.similar_items('shop', 'i7', k => 12)"),
    ("popular", "SELECT * FROM recsys.popular('shop', k => 5)"),
    ("recommend integer keys", "SELECT * FROM recsys.recommend('plays', '7', k => 5)"),
    ("similar_items integer keys", "SELECT * FROM recsys.similar_items('plays', '7', k => 5)"),
    ("popular integer keys", "SELECT * FROM recsys.popular('plays', k => 5)"),
]

# history rows that must survive the upgrade unchanged
HISTORY = {
    "runs": "SELECT id, model_id, version, kind, status, users, items, nnz, error"
            " FROM recsys.run ORDER BY id",
    "versions": "SELECT model_id, version, status, factors, users, items, nnz, run_id,"
                " user_table, item_table FROM recsys.model_version ORDER BY model_id, version",
    "metrics": "SELECT run_id, recommender, metric, value FROM recsys.metric"
               " ORDER BY run_id, recommender, metric",
    "models": "SELECT id, name, active_version, params FROM recsys.model ORDER BY id",
}


def restore(server_url: str, name: str, revision: str) -> str:
    """A new database holding the fixture of ``revision``; returns its URL."""
    dump = gzip.decompress(Path(__file__).with_name(f"rev{revision}.sql.gz").read_bytes())
    with psycopg.connect(server_url, autocommit=True) as conn:
        (pgvector,), = fetch(conn, "SELECT default_version FROM pg_available_extensions"
                                   " WHERE name = 'vector'")
        if b"hnsw.iterative_scan" in dump and versions.parse(pgvector) < versions.ITERATIVE_SCAN:
            pytest.skip(f"the database of release {revision} was made on pgvector 0.8, and its"
                        " search sets hnsw.iterative_scan, which this server's pgvector"
                        f" {pgvector} refuses")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        # no parameters: one simple-protocol call runs the whole script
        conn.execute(dump)
    return url


def fetch(conn: psycopg.Connection, query: str | sql.Composed) -> list[tuple[Any, ...]]:
    return conn.execute(query).fetchall()


def report(conn: psycopg.Connection, view: str) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT * FROM {} ORDER BY 1, 2, 3").format(sql.Identifier("public", view))
    return fetch(conn, query)


def assert_same_rows(label: str, before: list[tuple[Any, ...]],
                     after: list[tuple[Any, ...]]) -> None:
    """Equal rows; floats equal to 1e-9 relative (the same stored factors, maybe another
    order of summation)."""
    assert len(after) == len(before), f"{label}: {len(before)} rows before, {len(after)} after"
    for old, new in zip(before, after, strict=True):
        assert len(old) == len(new), f"{label}: {old} became {new}"
        for a, b in zip(old, new, strict=True):
            if isinstance(a, float) and isinstance(b, float):
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{label}: {old} -> {new}"
            else:
                assert a == b, f"{label}: {old} became {new}"


@pytest.fixture(params=REVISIONS)
def old_url(server_url: str, template_url: str, request: pytest.FixtureRequest
            ) -> Iterator[str]:
    """A database as an earlier release left it. (The template's install has created the
    cluster-wide recsys roles, which fixtures from 0010 on name as owners and grantees.)"""
    name = f"t_upgrade_{uuid.uuid4().hex[:8]}"
    try:
        yield restore(server_url, name, request.param)
    finally:
        drop_database(server_url, name)


def test_fixtures_are_at_their_revisions_and_the_newest_precedes_head(old_url: str) -> None:
    with psycopg.connect(old_url) as conn:
        (revision,), = fetch(conn, "SELECT version_num FROM recsys.alembic_version")
    assert revision in REVISIONS
    known = install.known_revisions()
    # a new revision means a new release to upgrade from: add its fixture (make_fixture.py)
    assert known.index(REVISIONS[-1]) == len(known) - 2, "add a fixture: see make_fixture.py"


def test_upgrade_keeps_reports_serving_and_history(old_url: str) -> None:
    with db.connect(old_url) as conn:
        # views over a serving function and a view whose signatures later releases extended
        conn.execute("CREATE VIEW public.my_similar AS"
                     " SELECT * FROM recsys.similar_items('shop', 'i7', 5)")
        conn.execute("CREATE VIEW public.my_features AS SELECT * FROM recsys.features")
        reports = {view: report(conn, view)
                   for view in [*REPORT_VIEWS, "my_similar", "my_features"]}
        served = {label: fetch(conn, query) for label, query in SERVING}
        history = {label: fetch(conn, query) for label, query in HISTORY.items()}
    assert all(reports[view] for view in REPORT_VIEWS) and all(served.values())
    assert all(history.values())

    result = install.install(old_url)
    assert result.revision == install.head_revision()
    assert result.sql_applied

    with db.connect(old_url) as conn:
        for view, rows_before in reports.items():
            assert_same_rows(view, rows_before, report(conn, view))
        assert sorted(fetch(conn, "SELECT * FROM recsys.similar_items('shop', 'i7', 5, 0)")) \
            == reports["my_similar"]
        for label, query in SERVING:
            assert_same_rows(label, served[label], fetch(conn, query))
        for label, query in HISTORY.items():
            assert fetch(conn, query) == history[label], label
        # 0010 records who declared each model: for older ones, the owner of the source
        assert fetch(conn, """
            SELECT m.name, m.declarer = c.relowner::regrole FROM recsys.model m
              JOIN pg_class c ON c.oid = format('%I.%I', m.source_schema, m.source_table)::regclass
             ORDER BY m.id""") == [("shop", True), ("plays", True)]
        # everything recsys has, the old factor tables included, belongs to the owner role
        assert fetch(conn, """
            SELECT c.relname, c.relowner::regrole::text FROM pg_class c
             WHERE c.relnamespace = 'recsys'::regnamespace
               AND c.relowner <> 'recsys_owner'::regrole ORDER BY 1""") == []
    assert install.install(old_url).sql_applied is False


# fold-in math that the upgrade moves from a per-call solve to a stored basis (0012): the same
# rows, scores equal to float32 precision (model plays weighs with bm25, whose item weights
# versions before 0010 lack)
FOLD_IN = [
    ("recommend_for_items", "SELECT * FROM recsys.recommend_for_items('shop', ARRAY['i1', 'i2',"
                            " 'i3', 'i7'], 8)"),
    ("explain", "SELECT * FROM recsys.explain('shop', 'u1', 'i7', 5)"),
]


def test_upgrade_stores_a_basis_for_every_ready_version(old_url: str) -> None:
    with db.connect(old_url) as conn:
        served = {label: fetch(conn, query) for label, query in FOLD_IN}
    assert all(served.values())
    install.install(old_url)
    with db.connect(old_url) as conn:
        assert fetch(conn, "SELECT v.model_id, v.version, v.factors, v.items"
                           " FROM recsys.model_version v WHERE v.status = 'ready'"
                           " ORDER BY 1, 2") == fetch(
            conn, "SELECT model_id, version, count(*)::integer, min(items)"
                  " FROM recsys.version_basis GROUP BY 1, 2 ORDER BY 1, 2")
        for label, query in FOLD_IN:
            after = fetch(conn, query)
            assert [(r[0], *r[2:]) for r in after] == [(r[0], *r[2:]) for r in served[label]]
            assert all(math.isclose(a[1], b[1], rel_tol=1e-4, abs_tol=1e-5)
                       for a, b in zip(after, served[label], strict=True)), label


def test_training_after_the_upgrade_activates_a_new_version(old_url: str) -> None:
    install.install(old_url)
    for model, version, user in [("shop", 3, "u7"), ("plays", 2, "7")]:
        training.train(old_url, model)
        with db.connect(old_url) as conn:
            assert fetch(conn, sql.SQL("SELECT active_version FROM recsys.model"
                                       " WHERE name = {}").format(model)) == [(version,)]
            assert fetch(conn, sql.SQL("SELECT count(*) FROM recsys.recommend({}, {}, k => 5)")
                         .format(model, user)) == [(5,)]
    with db.connect(old_url) as conn:
        for view in REPORT_VIEWS:
            assert report(conn, view), view
        assert fetch(conn, "SELECT name, version FROM public.model_report"
                           " WHERE version = active_version ORDER BY 1") == [
            ("plays", 2), ("shop", 3)]
