"""Installing and upgrading the recsys schema."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from recsys_db import install

from ..helpers import rows


def test_install_twice_is_a_no_op(db_url: str, conn: psycopg.Connection) -> None:
    before = rows(conn, "SELECT p.oid, p.xmin::text FROM pg_proc p"
                        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'recsys'"
                        " ORDER BY p.oid")
    result = install.install(db_url)
    after = rows(conn, "SELECT p.oid, p.xmin::text FROM pg_proc p"
                       " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'recsys'"
                       " ORDER BY p.oid")
    assert result.sql_applied is False
    assert result.revision == install.head_revision()
    assert before == after  # not even re-created


def test_install_creates_schema_functions_and_views(conn: psycopg.Connection) -> None:
    functions = {r[0] for r in rows(
        conn, "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
              " WHERE nspname = 'recsys' AND proname NOT LIKE '\\_%'")}
    assert {"create_model", "drop_model", "rollback", "recommend", "similar_items",
            "similar_users", "interested_users", "popular", "score", "als"} <= functions
    views = {r[0] for r in rows(conn, "SELECT viewname FROM pg_views WHERE schemaname = 'recsys'")}
    assert {"models", "runs", "versions"} <= views


def test_changed_sql_is_reapplied(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("UPDATE recsys.meta SET value = 'stale' WHERE key = 'sql_hash'")
    conn.execute("CREATE OR REPLACE FUNCTION recsys.popular(model text, k integer DEFAULT 10)"
                 " RETURNS TABLE (item_key text, score double precision, rank integer)"
                 " LANGUAGE sql AS $$ SELECT 'broken', 0::float8, 0 $$")
    assert install.install(db_url).sql_applied is True
    source = rows(conn, "SELECT prosrc FROM pg_proc WHERE proname = 'popular'")[0][0]
    assert "broken" not in source


def test_install_into_empty_database_creates_extension(server_url: str) -> None:
    from ..helpers import drop_database, new_database

    name, url = new_database(server_url, template="template1")
    try:
        install.install(url)
        with psycopg.connect(url) as conn:
            assert rows(conn, "SELECT extname FROM pg_extension WHERE extname = 'vector'")
            assert rows(conn, "SELECT version_num FROM recsys.alembic_version") == [
                (install.head_revision(),)]
    finally:
        drop_database(server_url, name)


@pytest.mark.slow
def test_each_function_view_and_trigger_comes_from_one_sql_file(
        conn: psycopg.Connection) -> None:
    """Statements moved between the SQL files are neither duplicated (two CREATE OR REPLACE of
    one object, the later silently winning) nor lost: each function, view and trigger of
    schema recsys is created by one statement of one file, and the install has exactly those."""
    root = next(p for p in Path(__file__).resolve().parents
                if (p / "sql").is_dir() and (p / "alembic").is_dir())
    statement = re.compile(r"^CREATE OR REPLACE (FUNCTION|VIEW) recsys\.(\w+)"
                           r"|^CREATE TRIGGER (\w+)", re.MULTILINE)
    created: dict[tuple[str, str], list[str]] = {}
    for path in sorted((root / "sql").glob("[0-9][0-9][0-9]-*.sql")):
        for match in statement.finditer(path.read_text(encoding="utf-8")):
            kind, name = (match[1], match[2]) if match[1] else ("TRIGGER", match[3])
            created.setdefault((kind, name), []).append(path.name)
    assert {k: v for k, v in created.items()
            if len(v) > len(OVERLOADS.get(k[1], [k[1]]))} == {}
    installed = {("FUNCTION", r[0]) for r in rows(
        conn, "SELECT proname FROM pg_proc WHERE pronamespace = 'recsys'::regnamespace")}
    installed |= {("VIEW", r[0]) for r in rows(
        conn, "SELECT relname FROM pg_class WHERE relnamespace = 'recsys'::regnamespace"
              " AND relkind = 'v'")}
    installed |= {("TRIGGER", r[0]) for r in rows(
        conn, "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
              " WHERE c.relnamespace = 'recsys'::regnamespace AND NOT t.tgisinternal")}
    assert installed == set(created)


def test_wheel_ships_sql_and_alembic(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                    str(root)], check=True)
    (wheel,) = tmp_path.glob("recsys_db-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "recsys_db/sql/003-serving.sql" in names
    assert "recsys_db/alembic/env.py" in names
    assert "recsys_db/alembic/versions/0001_registry.py" in names
    assert "recsys_db/run.sql" in names


# Functions with more than one signature on purpose: similar_items with content_weight is an
# overload so that views over the 3-argument function survive the upgrade to it (0014).
OVERLOADS = {"similar_items": ["similar_items(text,text,integer)",
                               "similar_items(text,text,integer,double precision)"]}


def test_no_leftover_function_overloads(conn: psycopg.Connection) -> None:
    # a changed signature needs a DROP of the old one in an alembic revision
    found = dict(rows(
        conn, "SELECT proname, array_agg(replace(oid::regprocedure::text, 'recsys.', '')"
              " ORDER BY oid::regprocedure::text) FROM pg_proc"
              " WHERE pronamespace = 'recsys'::regnamespace GROUP BY proname HAVING count(*) > 1"))
    assert found == OVERLOADS


def test_training_refuses_a_schema_of_another_release(db_url: str,
                                                      conn: psycopg.Connection) -> None:
    from recsys_db import foldin, training, worker
    from recsys_db.errors import RecsysError

    conn.execute("CREATE TABLE public.ev AS SELECT 'u' || g % 5 AS u, 'i' || g % 7 AS i"
                 " FROM generate_series(1, 60) g")
    conn.execute("SELECT recsys.create_model('m', 'public.ev', 'u', 'i',"
                 " params => recsys.als(factors => 2, iterations => 1))")
    training.train(db_url, "m")
    assert install.known_revisions()[0] == "0001"
    conn.execute("UPDATE recsys.alembic_version SET version_num = '9999'")
    newer = r"the recsys schema is at revision 9999, which this recsys-db \(up to \d+\) does" \
            " not know; upgrade recsys-db"
    with pytest.raises(RecsysError, match=newer):
        training.train(db_url, "m")
    with pytest.raises(RecsysError, match=newer):
        foldin.fold_in(db_url, "m")
    with pytest.raises(RecsysError, match=newer):
        worker.Worker(db_url, worker.WorkerOptions(once=True, poll=0.1, lease=5),
                      worker.Events(quiet=True)).run()
    older = install.known_revisions()[-2]
    conn.execute("UPDATE recsys.alembic_version SET version_num = %s", (older,))
    with pytest.raises(RecsysError, match=f"the recsys schema is at revision {older} and this"
                                          " recsys-db needs .*; run: recsys-db install"):
        training.train(db_url, "m")
    assert rows(conn, "SELECT version, status FROM recsys.runs") == [(1, "succeeded")]
    conn.execute("DROP SCHEMA recsys CASCADE")
    with pytest.raises(RecsysError, match="recsys is not installed in this database; run:"
                                          " recsys-db install"):
        training.train(db_url, "m")
