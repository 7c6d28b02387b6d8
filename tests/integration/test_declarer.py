"""Sources are read with the rights of the role that declared the model, through real roles.

A NOLOGIN declarer may read the source; a worker login (in recsys_worker) may not, and is
granted the declarer WITH INHERIT FALSE, SET TRUE: it can act as the declarer only through
SET ROLE, which is how every read of a source runs. The test server's default login is a
superuser; it declares the models and then hands them to the declarer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from recsys_db import access, foldin, training, tuning
from recsys_db.errors import ConfigError, RecsysError
from recsys_db.model import get_model

from ..helpers import rows

PARAMS = "recsys.als(factors => 2, iterations => 5, regularization => 0.05)"
USERS = 12


@dataclass(frozen=True)
class Arena:
    """Roles and URLs of one test: ``worker`` logs in and may become ``declarer``."""

    url: str  # the superuser
    declarer: str
    worker: str
    worker_url: str
    stranger: str  # a login in recsys_worker that was not granted the declarer
    stranger_url: str


def declare(conn: psycopg.Connection, model: str, source_relation: str, declarer: str,
            extra: str = "") -> None:
    """Declare a model as the superuser, then make ``declarer`` its declarer."""
    conn.execute(f"SELECT recsys.create_model(%s, %s, 'u', 'i', 'w'{extra}, params => {PARAMS})",
                 (model, source_relation))
    conn.execute("UPDATE recsys.model SET declarer = (SELECT oid FROM pg_roles"
                 " WHERE rolname = %s)::regrole WHERE name = %s", (declarer, model))


@pytest.fixture
def arena(db_url: str, conn: psycopg.Connection) -> Iterator[Arena]:
    """public.events (u, i, w, ts, note) readable by the declarer only, model 'm' over it
    (time column ts) declared by it."""
    suffix = uuid.uuid4().hex[:8]
    declarer, worker, stranger = f"decl_{suffix}", f"wrk_{suffix}", f"str_{suffix}"
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(declarer)))
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE recsys_worker").format(
        sql.Identifier(worker)))
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE recsys_worker").format(
        sql.Identifier(stranger)))
    conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(
        sql.Identifier(declarer), sql.Identifier(worker)))
    conn.execute("CREATE TABLE public.events (u text, i text, w integer, ts timestamptz,"
                 " note text)")
    conn.execute(f"INSERT INTO public.events SELECT 'u' || (g % {USERS}), 'i' || (g * 7 % 8),"
                 " 1 + g % 3, timestamptz '2024-01-01' + g * interval '1 hour', 'secret'"
                 " FROM generate_series(0, 59) g")
    conn.execute(sql.SQL("GRANT SELECT ON public.events TO {}").format(sql.Identifier(declarer)))
    declare(conn, "m", "public.events", declarer, ", time_column => 'ts'")
    yield Arena(db_url, declarer, worker, make_conninfo(db_url, user=worker), stranger,
                make_conninfo(db_url, user=stranger))
    for role in (worker, stranger, declarer):
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def user_keys(conn: psycopg.Connection, model: str = "m") -> set[str]:
    (table,), = rows(conn, "SELECT v.user_table FROM recsys.model_version v JOIN recsys.model m"
                           " ON m.id = v.model_id AND v.version = m.active_version"
                           " WHERE m.name = %s", (model,))
    return {r[0] for r in rows(conn, sql.SQL("SELECT key FROM {}").format(
        sql.Identifier("recsys", table)))}


def runs(conn: psycopg.Connection, model: str = "m") -> list[tuple[Any, ...]]:
    return rows(conn, "SELECT r.status, r.version, r.rows_read, r.error FROM recsys.run r"
                      " JOIN recsys.model m ON m.id = r.model_id WHERE m.name = %s"
                      " ORDER BY r.id", (model,))


def active_version(conn: psycopg.Connection, model: str = "m") -> int | None:
    (version,), = rows(conn, "SELECT active_version FROM recsys.model WHERE name = %s", (model,))
    return version


def test_worker_trains_and_folds_in_as_the_declarer(arena: Arena,
                                                    conn: psycopg.Connection) -> None:
    with psycopg.connect(arena.worker_url) as worker, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        worker.execute("SELECT count(*) FROM public.events")
    # item features too are read as the declarer; c1 is a cold item, in no interaction
    conn.execute("CREATE TABLE public.tags (i text, tag text)")
    conn.execute("INSERT INTO public.tags SELECT 'i' || g, 'odd' || (g % 2) FROM"
                 " generate_series(0, 7) g UNION ALL SELECT 'c1', 'odd1'")
    conn.execute(sql.SQL("GRANT SELECT ON public.tags TO {}").format(
        sql.Identifier(arena.declarer)))
    conn.execute("SELECT recsys.set_features('m', 'item', 'public.tags', 'i', ARRAY['tag'])")

    result = training.train(arena.worker_url, "m")
    assert (result.status, result.version, result.users, result.rows_read) == (
        "succeeded", 1, USERS, 60)
    assert result.metrics  # the time split read the time column as the declarer
    assert result.cold == {"items": 1, "users": 0}
    assert len(user_keys(conn)) == USERS
    assert rows(conn, "SELECT value::timestamptz = timestamptz '2024-01-01' + 59 * interval"
                      " '1 hour' FROM recsys.watermark") == [(True,)]

    conn.execute("INSERT INTO public.events VALUES ('newbie', 'i1', 1, '2025-01-01', 'x'),"
                 " ('newbie', 'fresh', 2, '2025-01-01', 'x')")
    folded = foldin.fold_in(arena.worker_url, "m")
    assert (folded.status, folded.users, folded.new_users, folded.new_items) == (
        "succeeded", 1, 1, 1)
    assert "newbie" in user_keys(conn)
    # the version's item weights: 8 trained items, the cold one (0), then the new one
    (weights,), = rows(conn, "SELECT item_weight FROM recsys.version_item_weight")
    assert len(weights) == 10 and weights[8:] == [0.0, 2.0]


@pytest.mark.parametrize("keys", ["text", "integer"])
def test_fold_in_without_time_column(arena: Arena, conn: psycopg.Connection, keys: str) -> None:
    if keys == "integer":
        conn.execute("CREATE VIEW public.numbered AS SELECT substr(u, 2)::integer AS u,"
                     " substr(i, 2)::integer AS i, w FROM public.events")
    else:
        conn.execute("CREATE VIEW public.numbered AS SELECT u, i, w FROM public.events")
    conn.execute(sql.SQL("GRANT SELECT ON public.numbered TO {}").format(
        sql.Identifier(arena.declarer)))
    declare(conn, "n", "public.numbered", arena.declarer)
    assert training.train(arena.worker_url, "n").users == USERS
    conn.execute("INSERT INTO public.events VALUES ('u1', 'i99', 1, now(), 'x')")
    folded = foldin.fold_in(arena.worker_url, "n")
    assert (folded.users, folded.new_users, folded.new_items) == (1, 0, 1)


def test_declarer_without_select_fails_the_run(arena: Arena, conn: psycopg.Connection) -> None:
    assert training.train(arena.worker_url, "m").version == 1
    conn.execute(sql.SQL("REVOKE SELECT ON public.events FROM {}").format(
        sql.Identifier(arena.declarer)))
    refused = rf"role {arena.declarer} may not read column u of (public\.)?events"
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refused):
        training.train(arena.worker_url, "m")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refused):
        foldin.fold_in(arena.worker_url, "m")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refused):
        tuning.tune(arena.worker_url, "m", {"factors": [2, 3]})
    assert active_version(conn) == 1
    history = runs(conn)
    # a run that fails before it reads anything counts nothing: users NULL, for every kind
    assert [r[:3] for r in history] == [("succeeded", 1, 60), ("failed", None, None),
                                        ("failed", 1, None)]
    assert all(r[3].startswith(f"role {arena.declarer} may not read column u")
               for r in history[1:])
    conn.execute(sql.SQL("GRANT SELECT ON public.events TO {}").format(
        sql.Identifier(arena.declarer)))
    assert training.train(arena.worker_url, "m").version == 2


def test_column_privileges_of_the_declarer_apply(arena: Arena,
                                                 conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("REVOKE SELECT ON public.events FROM {}").format(
        sql.Identifier(arena.declarer)))
    for column, missing in (("u", "i"), ("i", "w"), ("w", "ts")):
        conn.execute(sql.SQL("GRANT SELECT ({}) ON public.events TO {}").format(
            sql.Identifier(column), sql.Identifier(arena.declarer)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege,
                           match=rf"role {arena.declarer} may not read column {missing} of"):
            training.train(arena.worker_url, "m")
    conn.execute(sql.SQL("GRANT SELECT (ts) ON public.events TO {}").format(
        sql.Identifier(arena.declarer)))
    # every column the model uses, and not the others: enough
    assert rows(conn, "SELECT has_column_privilege(%s, 'public.events', 'note', 'SELECT')",
                (arena.declarer,)) == [(False,)]
    result = training.train(arena.worker_url, "m")
    assert (result.status, result.users) == ("succeeded", USERS)


def test_row_level_security_of_the_declarer_applies(arena: Arena,
                                                    conn: psycopg.Connection) -> None:
    conn.execute("ALTER TABLE public.events ENABLE ROW LEVEL SECURITY")
    conn.execute(sql.SQL("CREATE POLICY hide_u1 ON public.events FOR SELECT TO {}"
                         " USING (u <> 'u1')").format(sql.Identifier(arena.declarer)))
    result = training.train(arena.worker_url, "m")
    assert result.users == USERS - 1 and result.rows_read == 55
    keys = user_keys(conn)
    assert "u1" not in keys and "u2" in keys
    conn.execute("INSERT INTO public.events VALUES ('u1', 'i1', 1, '2025-01-01', 'x'),"
                 " ('u2', 'i1', 1, '2025-01-01', 'x')")
    folded = foldin.fold_in(arena.worker_url, "m")
    assert (folded.users, folded.new_users) == (1, 0)
    assert "u1" not in user_keys(conn)


def test_superuser_worker_refuses_a_declarer_that_is_not(arena: Arena,
                                                         conn: psycopg.Connection) -> None:
    assert training.train(arena.worker_url, "m").version == 1
    refused = (rf'worker login "\w+" is a superuser and model "m" was declared by '
               rf'"{arena.declarer}", which is not')
    with pytest.raises(ConfigError, match=refused):
        training.train(arena.url, "m")
    with pytest.raises(ConfigError, match=refused):
        foldin.fold_in(arena.url, "m")
    assert active_version(conn) == 1
    assert [r[:3] for r in runs(conn)] == [("succeeded", 1, 60), ("failed", None, None),
                                           ("failed", 1, None)]
    assert f"GRANT {arena.declarer} TO <worker login> WITH INHERIT FALSE, SET TRUE" in \
        runs(conn)[1][3]


def test_worker_not_granted_the_declarer_is_told_the_grant(arena: Arena,
                                                           conn: psycopg.Connection) -> None:
    with pytest.raises(ConfigError) as caught:
        training.train(arena.stranger_url, "m")
    assert str(caught.value) == (
        f'worker login "{arena.stranger}" may not act as "{arena.declarer}", the role that'
        f' declared model "m"\nHINT: GRANT {arena.declarer} TO {arena.stranger}'
        " WITH INHERIT FALSE, SET TRUE")
    assert [r[:3] for r in runs(conn)] == [("failed", None, None)]
    assert active_version(conn) is None


@pytest.mark.parametrize("keys", ["text", "integer"])
def test_source_that_changes_the_role_fails_the_run(arena: Arena, conn: psycopg.Connection,
                                                    keys: str) -> None:
    # what a hostile declarer could plant: leave SET ROLE, then act as the worker login
    conn.execute("CREATE TABLE public.canary (who text)")
    conn.execute("GRANT INSERT ON public.canary TO PUBLIC")
    conn.execute("CREATE FUNCTION public.escape() RETURNS boolean LANGUAGE plpgsql VOLATILE AS"
                 " $$ BEGIN PERFORM set_config('role', 'none', true);"
                 " INSERT INTO public.canary VALUES (current_user); RETURN true; END $$")
    columns = ("u, i" if keys == "text"
               else "substr(u, 2)::integer AS u, substr(i, 2)::integer AS i")
    conn.execute(f"CREATE VIEW public.sneaky AS SELECT {columns}, w FROM public.events"
                 " WHERE public.escape()")
    conn.execute(sql.SQL("GRANT SELECT ON public.sneaky TO {}").format(
        sql.Identifier(arena.declarer)))
    declare(conn, "s", "public.sneaky", arena.declarer)
    with pytest.raises(RecsysError,
                       match=rf'^the source of model "s" changed the session role: reading'
                             rf' public.sneaky left it "{arena.worker}" instead of'
                             rf' "{arena.declarer}"$'):
        training.train(arena.worker_url, "s")
    assert rows(conn, "SELECT count(*) FROM public.canary") == [(0,)]  # rolled back
    assert [r[0] for r in runs(conn, "s")] == ["failed"]
    assert active_version(conn, "s") is None


def test_materialized_view_is_refreshed_as_its_owner_the_declarer(
        arena: Arena, conn: psycopg.Connection) -> None:
    conn.execute("CREATE MATERIALIZED VIEW public.mine AS SELECT * FROM public.events")
    conn.execute(sql.SQL("ALTER MATERIALIZED VIEW public.mine OWNER TO {}").format(
        sql.Identifier(arena.declarer)))
    conn.execute("CREATE MATERIALIZED VIEW public.theirs AS SELECT * FROM public.events")
    conn.execute(sql.SQL("GRANT SELECT ON public.theirs TO {}").format(
        sql.Identifier(arena.declarer)))
    declare(conn, "mine", "public.mine", arena.declarer)
    declare(conn, "theirs", "public.theirs", arena.declarer)
    conn.execute("INSERT INTO public.events VALUES ('late', 'i1', 1, now(), 'x')")
    assert training.train(arena.worker_url, "mine").users == USERS + 1
    with pytest.raises(ConfigError, match=rf'^role "{arena.declarer}", which declared model'
                                          r' "theirs", may not refresh its source, materialized'
                                          r' view "public.theirs": it must own it'):
        training.train(arena.worker_url, "theirs")
    assert active_version(conn, "theirs") is None


def test_catalog_source_is_refused_before_reading(arena: Arena,
                                                  conn: psycopg.Connection) -> None:
    # a row create_model would refuse, written past its checks and triggers (a legacy row);
    # declared by the superuser itself, which may read pg_authid
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("INSERT INTO recsys.model (name, source_schema, source_table, user_column,"
                     " item_column, params) VALUES ('leak', 'pg_catalog', 'pg_authid',"
                     f" 'rolpassword', 'rolconnlimit', {PARAMS})")
    with pytest.raises(psycopg.errors.InsufficientPrivilege,
                       match="relation pg_authid cannot be a model source"):
        training.train(arena.url, "leak")
    assert [r[:3] for r in runs(conn, "leak")] == [("failed", None, None)]
    assert rows(conn, "SELECT count(*) FROM recsys.model_version v JOIN recsys.model m"
                      " ON m.id = v.model_id WHERE m.name = 'leak'") == [(0,)]


def test_unknown_declarer_is_refused(arena: Arena, conn: psycopg.Connection) -> None:
    gone = f"gone_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(gone)))
    conn.execute("UPDATE recsys.model SET declarer = %s::regrole WHERE name = 'm'", (gone,))
    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(gone)))
    with psycopg.connect(arena.url) as other:
        assert get_model(other, "m").declarer is None
    with pytest.raises(psycopg.errors.InsufficientPrivilege,
                       match=r"the role that declared the model over .*events is unknown"):
        training.train(arena.url, "m")


def test_as_declarer_switches_and_restores_the_role(arena: Arena) -> None:
    with psycopg.connect(arena.worker_url, autocommit=True) as worker:
        model = get_model(worker, "m")
        with worker.transaction():
            with access.as_declarer(worker, model):
                inside = rows(worker, "SELECT current_user::text")
                # a source's function may set a role for the session, and set it back locally
                worker.execute("SELECT set_config('role', %s, false)", (arena.declarer,))
            assert rows(worker, "SELECT current_user::text") == [(arena.worker,)]
        assert inside == [(arena.declarer,)]
        assert rows(worker, "SELECT current_user::text, current_setting('role')") == [
            (arena.worker, "none")]


def test_as_declarer_needs_a_transaction(arena: Arena, conn: psycopg.Connection) -> None:
    model = get_model(conn, "m")
    assert model.declarer == arena.declarer
    with pytest.raises(RuntimeError, match="needs an open transaction"), \
            access.as_declarer(conn, model):
        pass
