"""Least privilege (reader and worker roles), pinned search_path, and uninstall."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from recsys_db import install, training
from recsys_db.errors import RecsysError

from .conftest import rows


@pytest.fixture
def trained(db_url: str, conn: psycopg.Connection) -> str:
    conn.execute("CREATE TABLE public.secret_events AS SELECT 'u' || (g % 7) AS u,"
                 " 'i' || (g % 11) AS i FROM generate_series(1, 40) g")
    conn.execute("SELECT recsys.create_model('m', 'public.secret_events', 'u', 'i',"
                 " params => recsys.als(factors => 2))")
    training.train(db_url, "m")
    return db_url


@pytest.fixture
def login(conn: psycopg.Connection) -> Iterator[Callable[[str], str]]:
    """Makes login roles that are members of a recsys role; drops them afterwards."""
    created: list[str] = []

    def make(member_of: str) -> str:
        name = f"login_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE ROLE {name} LOGIN IN ROLE {member_of}")
        created.append(name)
        return name

    yield make
    for name in created:
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")


def as_role(url: str, role: str) -> psycopg.Connection:
    return psycopg.connect(make_conninfo(url, user=role), autocommit=True)


def test_reader_serves_but_cannot_change_anything(trained: str, conn: psycopg.Connection,
                                                  login: Callable[[str], str]) -> None:
    role = login("recsys_reader")
    (factor_table,), = rows(conn, "SELECT user_table FROM recsys.model_version")
    with as_role(trained, role) as reader:
        assert len(rows(reader, "SELECT * FROM recsys.recommend('m', 'u1', 3)")) == 3
        assert len(rows(reader, "SELECT * FROM recsys.similar_items('m', 'i1', 3)")) == 3
        assert len(rows(reader, "SELECT * FROM recsys.interested_users('m', 'i1', 2)")) == 2
        assert rows(reader, "SELECT name FROM recsys.models") == [("m",)]
        assert rows(reader, "SELECT count(*) FROM recsys.runs") == [(1,)]
        assert len(rows(reader, "SELECT * FROM recsys.recommend_for_items('m', ARRAY['i1'],"
                                " 3)")) == 3
        for forbidden in (
            "SELECT * FROM recsys.explain('m', 'u1', 'i1')",
            "SELECT recsys.create_model('x', 'public.secret_events', 'u', 'i')",
            "SELECT recsys.drop_model('m')",
            "SELECT recsys.rollback('m', 1)",
            "SELECT * FROM public.secret_events",
            "SELECT * FROM recsys.model",
            "UPDATE recsys.model SET active_version = NULL",
            "CREATE TABLE recsys.mine (x int)",
            f"SELECT * FROM recsys.{factor_table}",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(forbidden)
    conn.execute(f"GRANT SELECT ON public.secret_events TO {role}")
    with as_role(trained, role) as reader:
        assert rows(reader, "SELECT count(*) > 0 FROM recsys.explain('m', 'u1', 'i1')") == [
            (True,)]


def test_serving_functions_pin_search_path(conn: psycopg.Connection) -> None:
    config = dict(rows(conn, "SELECT proname, array_to_string(proconfig, ',') FROM pg_proc"
                             " WHERE pronamespace = 'recsys'::regnamespace AND prosecdef"))
    assert {"recommend", "similar_items", "similar_users", "interested_users", "popular",
            "score"} <= set(config)
    assert all(c.startswith("search_path=") and c.endswith("pg_catalog, pg_temp")
               for c in config.values())
    public_exec = rows(conn, "SELECT count(*) FROM pg_proc WHERE pronamespace ="
                             " 'recsys'::regnamespace AND has_function_privilege('public', oid,"
                             " 'execute')")
    assert public_exec == [(0,)]


def test_worker_trains_only_what_it_may_read(trained: str, conn: psycopg.Connection,
                                             login: Callable[[str], str]) -> None:
    role = login("recsys_worker")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        training.train(make_conninfo(trained, user=role), "m")
    assert rows(conn, "SELECT status, error FROM recsys.runs ORDER BY run_id") == [
        ("succeeded", None), ("failed", "permission denied for table secret_events")]
    conn.execute(f"GRANT SELECT ON public.secret_events TO {role}")
    result = training.train(make_conninfo(trained, user=role), "m")
    assert result.status == "succeeded" and result.version == 2
    with as_role(trained, role) as worker, pytest.raises(psycopg.errors.InsufficientPrivilege):
        worker.execute("DELETE FROM public.secret_events")


def test_uninstall_refuses_when_user_views_depend(trained: str, conn: psycopg.Connection) -> None:
    conn.execute("CREATE VIEW public.audience AS SELECT * FROM recsys.interested_users('m', 'i1')")
    with pytest.raises(RecsysError,
                       match=r"cannot uninstall: 1 of your objects use recsys: audience"):
        install.uninstall(trained)
    assert rows(conn, "SELECT count(*) > 0 FROM public.audience") == [(True,)]
    result = install.uninstall(trained, force=True)
    assert result.dropped_dependents == ["audience"]
    assert rows(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'recsys'") == [(0,)]
    assert rows(conn, "SELECT count(*) FROM public.secret_events") == [(40,)]
    # roles are shared with the other test databases, so they stay
    assert "role recsys_reader (still used in another database)" in result.kept
    # reinstall works after uninstall
    install.install(trained)
    assert rows(conn, "SELECT count(*) FROM recsys.models") == [(0,)]


def test_uninstall_drops_extension_it_created(server_url: str) -> None:
    from .conftest import drop_database, new_database

    name, url = new_database(server_url, template="template1")
    try:
        install.install(url)
        result = install.uninstall(url)
        assert result.dropped_extension
        with psycopg.connect(url) as conn:
            assert rows(conn, "SELECT count(*) FROM pg_extension"
                              " WHERE extname = 'vector'") == [(0,)]
        install.install(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.mine (v vector(3))")
        result = install.uninstall(url)
        assert not result.dropped_extension
        assert "extension vector (other objects use it)" in result.kept
    finally:
        drop_database(server_url, name)


def test_uninstall_when_not_installed(server_url: str) -> None:
    from .conftest import drop_database, new_database

    name, url = new_database(server_url, template="template1")
    try:
        with pytest.raises(RecsysError, match="recsys is not installed in this database"):
            install.uninstall(url)
    finally:
        drop_database(server_url, name)
