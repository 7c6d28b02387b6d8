"""Least privilege (issue 11): the NOLOGIN owner, pinned search_paths, the worker's limited
rights, declaration checks, explain as its caller, a managed database, and uninstall.

Each attack of the issue has a test: operator and function shadowing in public (1), the worker
planting in recsys and rewriting the registry (2), declaring over a catalog or an unreadable
table (3), and explain past row-level security (4).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from recsys_db import db, foldin, install, jobs, training, worker
from recsys_db.errors import ConfigError, RecsysError

from ..helpers import database_url, drop_database, new_database, rows

PINNED = "-c search_path=pg_catalog,pg_temp"


@pytest.fixture
def trained(db_url: str, conn: psycopg.Connection) -> str:
    conn.execute("CREATE TABLE public.secret_events AS SELECT 'u' || (g % 7) AS u,"
                 " 'i' || (g % 11) AS i FROM generate_series(1, 40) g")
    conn.execute("SELECT recsys.create_model('m', 'public.secret_events', 'u', 'i',"
                 " params => recsys.als(factors => 2))")
    training.train(db_url, "m")
    return db_url


@pytest.fixture
def login(conn: psycopg.Connection) -> Iterator[Callable[..., str]]:
    """Makes login roles, members of the given recsys groups; drops them afterwards."""
    created: list[str] = []

    def make(*member_of: str) -> str:
        name = f"login_{uuid.uuid4().hex[:8]}"
        groups = f" IN ROLE {', '.join(member_of)}" if member_of else ""
        conn.execute(f"CREATE ROLE {name} LOGIN{groups}")
        created.append(name)
        return name

    yield make
    for name in reversed(created):
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def as_role(url: str, role: str, *, pinned: bool = False) -> psycopg.Connection:
    info = make_conninfo(url, user=role, options=PINNED) if pinned else make_conninfo(url,
                                                                                      user=role)
    return psycopg.connect(info, autocommit=True)


def pinned(url: str) -> psycopg.Connection:
    """A superuser session that planted objects cannot reach (for the checks)."""
    return psycopg.connect(make_conninfo(url, options=PINNED), autocommit=True)


SERVING = [
    "SELECT * FROM recsys.recommend('m', 'u1', 3)",
    "SELECT * FROM recsys.recommend('m', 'u1', 3, exclude_seen => false)",
    "SELECT * FROM recsys.recommend('m', 'nobody', 3)",
    "SELECT * FROM recsys.popular('m', 3)",
    "SELECT * FROM recsys.similar_items('m', 'i1', 3)",
    "SELECT * FROM recsys.similar_users('m', 'u1', 3)",
    "SELECT * FROM recsys.interested_users('m', 'i1', 3)",
    "SELECT recsys.score('m', 'u1', 'i1')",
    "SELECT * FROM recsys.recommend_for_items('m', ARRAY['i1', 'i2'], 3)",
    "SELECT * FROM recsys.recommend_for_items('m', ARRAY['nothing'], 3)",
    "SELECT * FROM recsys.recommend_filtered('m', 'u1', ARRAY['i1', 'i2', 'x'], 2)",
    "SELECT * FROM recsys.recommend_filtered('m', 'nobody', ARRAY['i1', 'i2'], 2)",
    "SELECT * FROM recsys.explain('m', 'u1', 'i2')",
]


def serve(conn: psycopg.Connection) -> dict[str, Any]:
    """Every serving call's rows, or the class name of the error it raised."""
    out: dict[str, Any] = {}
    for query in SERVING:
        try:
            with conn.transaction():  # a savepoint inside a transaction
                out[query] = conn.execute(query).fetchall()
        except psycopg.Error as exc:
            out[query] = type(exc).__name__
    return out


def trap(planter: str) -> str:
    """PL/pgSQL statements that record who runs them and try to make `planter` a superuser."""
    return (" BEGIN INSERT INTO public.canary VALUES (current_user);"
            " EXCEPTION WHEN OTHERS THEN NULL; END;"
            f" BEGIN EXECUTE 'ALTER ROLE {planter} SUPERUSER';"
            " EXCEPTION WHEN OTHERS THEN NULL; END;")


# -- roles, owner, search_path ------------------------------------------------------------------


def test_every_function_is_owned_by_the_owner_with_a_pinned_path(conn: psycopg.Connection
                                                                  ) -> None:
    """Issue 11, done when: the owner of every recsys function is the NOLOGIN owner role."""
    functions = rows(conn, "SELECT p.proname, r.rolname, p.prosecdef, p.proconfig"
                           " FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner"
                           " WHERE p.pronamespace = 'recsys'::regnamespace")
    assert len(functions) > 50
    assert {owner for _, owner, _, _ in functions} == {"recsys_owner"}
    assert all(config is not None and "search_path=pg_catalog, pg_temp" in config
               for _, _, _, config in functions), [
        f for f, _, _, c in functions if not c or "search_path=pg_catalog, pg_temp" not in c]
    definers = {name for name, _, definer, _ in functions if definer}
    assert definers == {
        "recommend", "similar_items", "similar_users", "interested_users", "popular", "score",
        "recommend_for_items", "recommend_filtered", "_history_sql", "_explain_scores",
        "drop_model", "rollback", "request_refresh", "set_features", "drop_features",
        "alter_model", "create_ranker", "drop_ranker",
        "_create_version_tables", "_seal_version_tables", "_create_hnsw", "_drop_hnsw",
        "_drop_version_tables", "_create_partition", "_attach_partition", "_drop_partitions",
        "_prune_history", "_track_active_version", "_record_model_change"}
    assert rows(conn, "SELECT rolcanlogin, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles"
                      " WHERE rolname = 'recsys_owner'") == [(False, False, False, False)]
    assert rows(conn, "SELECT nspowner::regrole::text FROM pg_namespace"
                      " WHERE nspname = 'recsys'") == [("recsys_owner",)]
    # per function, overloads apart (similar_items has two): each must have its name's callers
    per_function = rows(
        conn, "SELECT p.proname, array_agg(g ORDER BY g) FILTER (WHERE"
              " has_function_privilege(g, p.oid, 'EXECUTE')) FROM pg_proc p,"
              " unnest(ARRAY['public', 'recsys_modeler', 'recsys_reader', 'recsys_worker']) g"
              " WHERE p.pronamespace = 'recsys'::regnamespace AND p.prosecdef"
              " GROUP BY p.oid, p.proname")
    callers = dict(per_function)
    assert len({(name, tuple(who or ())) for name, who in per_function}) == len(callers)
    groups = {"reader": ["recsys_reader", "recsys_worker"], "modeler": ["recsys_modeler"],
              "worker": ["recsys_worker"]}
    expected: dict[str, list[str] | None] = {"_track_active_version": None,
                                             "_record_model_change": None}
    for group, names in (
            ("reader", ["recommend", "similar_items", "similar_users", "interested_users",
                        "popular", "score", "recommend_for_items", "recommend_filtered",
                        "_history_sql", "_explain_scores"]),
            ("modeler", ["drop_model", "rollback", "request_refresh", "set_features",
                         "drop_features", "alter_model", "create_ranker", "drop_ranker"]),
            ("worker", ["_create_version_tables", "_seal_version_tables", "_create_hnsw",
                        "_drop_hnsw", "_drop_version_tables", "_create_partition",
                        "_attach_partition", "_drop_partitions", "_prune_history"])):
        expected.update((name, groups[group]) for name in names)
    assert callers == expected
    assert rows(conn, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'recsys'::regnamespace"
                      " AND has_function_privilege('public', oid, 'EXECUTE')") == [(0,)]
    assert rows(conn, "SELECT g FROM unnest(ARRAY['public', 'recsys_reader', 'recsys_worker',"
                      " 'recsys_modeler']) g WHERE has_schema_privilege(g, 'recsys', 'CREATE')"
                      ) == []


def test_tables_a_training_creates_belong_to_the_owner(trained: str,
                                                       conn: psycopg.Connection) -> None:
    owners = rows(conn, "SELECT c.relname, c.relowner::regrole::text FROM pg_class c"
                        " WHERE c.relnamespace = 'recsys'::regnamespace"
                        " AND c.relkind IN ('r', 'p', 'v', 'm', 'S')")
    assert {"m1_v1_users", "m1_v1_items", "m1_v1_recs"} <= {name for name, _ in owners}
    assert {owner for _, owner in owners} == {"recsys_owner"}
    # the worker fills them, and may not change them
    assert rows(conn, "SELECT has_table_privilege('recsys_worker', 'recsys.m1_v1_items', p)"
                      " FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',"
                      " 'TRIGGER']) p") == [(True,), (True,), (True,), (False,), (False,),
                                            (False,)]


def test_reader_serves_but_cannot_change_anything(trained: str, conn: psycopg.Connection,
                                                  login: Callable[..., str]) -> None:
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
            "SELECT recsys.request_refresh('m')",
            "SELECT * FROM public.secret_events",
            "SELECT * FROM recsys.model",
            "UPDATE recsys.model SET active_version = NULL",
            "CREATE TABLE recsys.mine (x int)",
            f"SELECT * FROM recsys.{factor_table}",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(forbidden)
    # explain reads the history with its caller's rights
    conn.execute(sql.SQL("GRANT SELECT ON public.secret_events TO {}").format(sql.Identifier(role)))
    with as_role(trained, role) as reader:
        assert rows(reader, "SELECT count(*) > 0 FROM recsys.explain('m', 'u1', 'i1')") == [
            (True,)]


# -- attack 1: look-alikes in a schema others may write -----------------------------------------


def test_install_refuses_a_vector_schema_anyone_may_write(server_url: str) -> None:
    name, url = new_database(server_url, template="template1")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        with pytest.raises(RecsysError, match=r"^schema public, which holds extension vector, is"
                                              r" writable by PUBLIC: REVOKE CREATE ON SCHEMA"
                                              r" public FROM PUBLIC, or ALTER EXTENSION vector"
                                              r" SET SCHEMA"):
            install.install(url)
        with psycopg.connect(url, autocommit=True) as conn:  # nothing was left behind
            assert rows(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'recsys'"
                              " UNION ALL SELECT count(*) FROM pg_extension"
                              " WHERE extname = 'vector'") == [(0,), (0,)]
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        install.install(url)
    finally:
        drop_database(server_url, name)


def test_look_alikes_in_public_never_run_as_another_role(trained: str, conn: psycopg.Connection,
                                                         login: Callable[..., str]) -> None:
    """Issue 11, attack 1: a role that may create objects in public (where pgvector lives)
    plants an operator public.=(text, text) and exact-type look-alikes of polymorphic built-ins
    (cardinality(text[]) beats pg_catalog's cardinality(anyarray) wherever public is on the
    path); recsys's functions, called by the reader, by the planter and by a superuser, run none
    of them."""
    creator = login("recsys_reader")
    conn.execute("CREATE TABLE public.canary (who text)")
    conn.execute("GRANT INSERT ON public.canary TO PUBLIC")
    conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(creator)))
    conn.execute(sql.SQL("GRANT SELECT ON public.secret_events TO {}").format(
        sql.Identifier(creator)))
    with pinned(trained) as check:
        baseline = serve(check)
    body = "LANGUAGE plpgsql AS $f$ BEGIN" + trap(creator)
    with as_role(trained, creator, pinned=True) as planter:
        for statement in (
            f"CREATE FUNCTION public.rt_eq(a text, b text) RETURNS boolean {body}"
            " RETURN a OPERATOR(pg_catalog.=) b; END $f$",
            "CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text,"
            " FUNCTION = public.rt_eq)",
            f"CREATE FUNCTION public.rt_lt(a text, b text) RETURNS boolean {body}"
            " RETURN a OPERATOR(pg_catalog.<) b; END $f$",
            "CREATE OPERATOR public.< (LEFTARG = text, RIGHTARG = text,"
            " FUNCTION = public.rt_lt)",
            f"CREATE FUNCTION public.cardinality(a text[]) RETURNS integer {body}"
            " RETURN pg_catalog.cardinality(a); END $f$",
            f"CREATE FUNCTION public.cardinality(a integer[]) RETURNS integer {body}"
            " RETURN pg_catalog.cardinality(a); END $f$",
            f"CREATE FUNCTION public.array_position(a text[], b text) RETURNS integer {body}"
            " RETURN pg_catalog.array_position(a, b); END $f$",
            f"CREATE FUNCTION public.format(a text, b text) RETURNS text {body}"
            " RETURN pg_catalog.format(a, b); END $f$",
        ):
            planter.execute(statement)
    # each caller with the old, unsafe order: public before pg_catalog
    unsafe = "-c search_path=public,pg_catalog"
    for role in (creator, None):
        info = make_conninfo(trained, user=role, options=unsafe) if role else make_conninfo(
            trained, options=unsafe)
        with psycopg.connect(info, autocommit=True) as caller:
            assert serve(caller) == baseline
    with pinned(trained) as check:
        assert rows(check, "SELECT count(*) FROM public.canary") == [(0,)]
        assert rows(check, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (creator,)) == [
            (False,)]


# -- attack 2: the worker plants in recsys and rewrites the registry ----------------------------


def test_worker_cannot_plant_in_recsys_or_rewrite_the_registry(
        trained: str, conn: psycopg.Connection, login: Callable[..., str]) -> None:
    """Issue 11, attack 2: the worker pointed a version's item_table at its own view whose
    WHERE clause called its own function, which the next serving call ran as the owner."""
    role = login("recsys_worker")
    (model_id,), = rows(conn, "SELECT id FROM recsys.model")
    items = f"m{model_id}_v1_items"
    with pinned(trained) as check:
        baseline = serve(check)
    denied = psycopg.errors.InsufficientPrivilege
    cases: list[tuple[str, type[psycopg.Error]]] = [
        ("CREATE TABLE recsys.planted (x integer)", denied),
        ("CREATE VIEW recsys.planted AS SELECT 1 AS x", denied),
        ("CREATE FUNCTION recsys.als(factors integer) RETURNS jsonb LANGUAGE sql"
         " AS 'SELECT NULL::jsonb'", denied),
        (f"CREATE INDEX ON recsys.{items} (lower(key))", denied),
        ("CREATE TRIGGER rt AFTER UPDATE ON recsys.run FOR EACH ROW"
         " EXECUTE FUNCTION suppress_redundant_updates_trigger()", denied),
        (f"ALTER TABLE recsys.{items} ENABLE ROW LEVEL SECURITY", denied),
        (f"TRUNCATE recsys.{items}", denied),
        ("UPDATE recsys.model_version SET item_table = 'pg_authid'", denied),
        ("UPDATE recsys.model SET source_schema = 'pg_catalog', source_table = 'pg_authid'",
         denied),
        ("UPDATE recsys.model SET declarer = 'pg_read_all_data'", denied),
        ("UPDATE recsys.model SET event_weights = '{\"x\": 1}'", denied),
        ("UPDATE recsys.model SET params = '{\"factors\": \"x\"}'",
         psycopg.errors.InvalidParameterValue),
        ("DELETE FROM recsys.model", denied),
        ("UPDATE recsys.meta SET value = 'x'", denied),
        ("INSERT INTO recsys.model (name, source_schema, source_table, user_column, item_column,"
         " params) VALUES ('x', 'pg_catalog', 'pg_authid', 'rolname', 'rolpassword', '{}')",
         denied),
        (f"INSERT INTO recsys.model_version (model_id, version, factors, user_table, item_table,"
         f" params) VALUES ({model_id}, 99, 2, 'pg_authid', 'pg_authid', '{{}}')",
         psycopg.errors.CheckViolation),
        (f"SELECT recsys._drop_version_tables({model_id}, 1)", psycopg.errors.ObjectInUse),
        (f"SELECT recsys._create_version_tables({model_id}, 1)",
         psycopg.errors.ObjectNotInPrerequisiteState),
        (f"SELECT recsys._drop_hnsw({model_id}, 1)",
         psycopg.errors.ObjectNotInPrerequisiteState),
        (f"SELECT recsys._create_partition('pg_authid', {model_id}, 1)",
         psycopg.errors.InvalidParameterValue),
        (f"SELECT recsys._attach_partition('recommendation', {model_id}, 1)",
         psycopg.errors.ObjectNotInPrerequisiteState),
        ("SELECT recsys.create_model('x', 'pg_catalog.pg_authid', 'rolname', 'rolpassword')",
         denied),
    ]
    with as_role(trained, role, pinned=True) as worker_conn:
        for statement, error in cases:
            with pytest.raises(error), worker_conn.transaction():
                worker_conn.execute(statement)
        # a version of its own is fine, but it cannot be made active before it is ready
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState,
                           match='version 98 of model "m" is not ready'), \
                worker_conn.transaction():
            worker_conn.execute(
                "INSERT INTO recsys.model_version (model_id, version, factors, user_table,"
                f" item_table, params) VALUES ({model_id}, 98, 2, 'm{model_id}_v98_users',"
                f" 'm{model_id}_v98_items', '{{}}')")
            worker_conn.execute(f"UPDATE recsys.model SET active_version = 98"
                                f" WHERE id = {model_id}")
        # names that are no precomputed partition of a retired version are ignored
        worker_conn.execute("SELECT recsys._drop_partitions(ARRAY['model', 'model_version',"
                            f" '{items}', 'm{model_id}_v1_recs', 'x;y'])")
    with pinned(trained) as check:
        assert rows(check, "SELECT count(*) FROM pg_class WHERE relnamespace ="
                           " 'recsys'::regnamespace AND relname = ANY (%s)",
                    (["model", "model_version", items, f"m{model_id}_v1_recs"],)) == [(4,)]
        assert serve(check) == baseline


def test_serving_never_trusts_a_stored_table_name(trained: str, conn: psycopg.Connection,
                                                  login: Callable[..., str]) -> None:
    role = login("recsys_worker")
    (model_id,), = rows(conn, "SELECT id FROM recsys.model")
    items = f"m{model_id}_v1_items"
    with pinned(trained) as check:
        baseline = serve(check)
        # stored names pointing elsewhere (written past the CHECK): not even read
        with check.transaction(force_rollback=True):
            check.execute("ALTER TABLE recsys.model_version"
                          " DROP CONSTRAINT model_version_derived_tables")
            check.execute("UPDATE recsys.model_version SET item_table = 'pg_authid',"
                          " user_table = 'pg_authid'")
            assert serve(check) == baseline
        # a factor table of the derived name that recsys's owner does not own: refused
        with check.transaction(force_rollback=True):
            check.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier("recsys", items), sql.Identifier(items + "_real")))
            check.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(
                sql.Identifier("recsys", items), sql.Identifier("recsys", items + "_real")))
            check.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                sql.Identifier("recsys", items), sql.Identifier(role)))
            now = serve(check)
    precomputed = SERVING[0]  # reads no factor table
    assert now.pop(precomputed) == baseline[precomputed]
    assert now == dict.fromkeys(SERVING[1:], "ObjectNotInPrerequisiteState")


# -- attack 3: declaring over what the declarer may not read ------------------------------------


def test_declaring_needs_rights_on_the_source(trained: str, conn: psycopg.Connection,
                                              login: Callable[..., str]) -> None:
    """Issue 11, attack 3: a worker login declared a model over pg_catalog.pg_authid, which a
    superuser training then read for recsys_reader."""
    modeler, worker_login = login("recsys_modeler"), login("recsys_worker")
    conn.execute("CREATE TABLE public.secret AS SELECT 'u' || g AS u, 'i' || g AS i, g AS w"
                 " FROM generate_series(1, 9) g")
    denied = psycopg.errors.InsufficientPrivilege
    with as_role(trained, modeler) as declarer:
        with pytest.raises(denied, match=r"^relation pg_authid cannot be a model source\n"):
            declarer.execute("SELECT recsys.create_model('leak', 'pg_catalog.pg_authid',"
                             " 'rolname', 'rolpassword')")
        with pytest.raises(denied, match=rf"^role {modeler} may not read column u of"
                                         r" public.secret\n"):
            declarer.execute("SELECT recsys.create_model('s', 'public.secret', 'u', 'i')")
        # past create_model, straight into the table: the trigger checks the same
        with pytest.raises(denied, match="cannot be a model source"):
            declarer.execute("INSERT INTO recsys.model (name, source_schema, source_table,"
                             " user_column, item_column, params) VALUES ('leak', 'pg_catalog',"
                             " 'pg_authid', 'rolname', 'rolpassword', '{}')")
        with pytest.raises(denied):  # the declarer is never written by the declaring role
            declarer.execute("INSERT INTO recsys.model (name, source_schema, source_table,"
                             " user_column, item_column, params, declarer) VALUES ('s', 'public',"
                             " 'secret', 'u', 'i', '{}', 'postgres')")
    conn.execute(sql.SQL("GRANT SELECT (u, i) ON public.secret TO {}").format(
        sql.Identifier(modeler)))
    with as_role(trained, modeler) as declarer:
        with pytest.raises(denied, match=rf"^role {modeler} may not read column w of"):
            declarer.execute("SELECT recsys.create_model('s', 'public.secret', 'u', 'i', 'w')")
        declarer.execute("SELECT recsys.create_model('s', 'public.secret', 'u', 'i')")
        with pytest.raises(denied, match=rf'^role {modeler} may not manage model "m"'):
            declarer.execute("SELECT recsys.drop_model('m')")
    assert rows(conn, "SELECT declarer::text FROM recsys.model WHERE name = 's'") == [(modeler,)]
    # even a superuser declares no catalog
    with pytest.raises(denied, match="relation pg_authid cannot be a model source"):
        conn.execute("SELECT recsys.create_model('leak', 'pg_authid', 'rolname', 'rolpassword')")
    with as_role(trained, worker_login) as worker_conn, pytest.raises(denied):
        worker_conn.execute("SELECT recsys.create_model('w', 'public.secret_events', 'u', 'i')")


def test_worker_trains_only_as_the_declarer(trained: str, conn: psycopg.Connection,
                                            login: Callable[..., str]) -> None:
    declarer, worker_login = login("recsys_modeler"), login("recsys_worker")
    conn.execute(sql.SQL("GRANT SELECT ON public.secret_events TO {}").format(
        sql.Identifier(declarer)))
    with as_role(trained, declarer) as modeler:
        modeler.execute("SELECT recsys.create_model('d', 'public.secret_events', 'u', 'i',"
                        " params => recsys.als(factors => 2))")
    worker_url = make_conninfo(trained, user=worker_login)
    with pytest.raises(ConfigError, match=f'may not act as "{declarer}"'):
        training.train(worker_url, "d")
    conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(
        sql.Identifier(declarer), sql.Identifier(worker_login)))
    result = training.train(worker_url, "d")
    assert result.status == "succeeded" and result.version == 1
    with as_role(trained, worker_login) as worker_conn:
        for statement in ("SELECT * FROM public.secret_events",
                          "DELETE FROM public.secret_events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                worker_conn.execute(statement)


def test_scheduler_reads_sources_as_their_declarer(trained: str, conn: psycopg.Connection,
                                                   login: Callable[..., str]) -> None:
    """recsys._enqueue_due (run by the worker) looks for new events as the model's declarer:
    its row-level security applies, and a worker that may not act as it queues nothing."""
    declarer, worker_login = login("recsys_modeler"), login("recsys_worker")
    conn.execute("CREATE TABLE public.timed AS SELECT 'u' || (g % 7) AS u, 'i' || (g % 11) AS i,"
                 " timestamptz '2024-01-01' + g * interval '1 hour' AS at"
                 " FROM generate_series(1, 40) g")
    conn.execute(sql.SQL("GRANT SELECT ON public.timed TO {}").format(sql.Identifier(declarer)))
    with as_role(trained, declarer) as modeler:
        modeler.execute("SELECT recsys.create_model('t', 'public.timed', 'u', 'i',"
                        " time_column => 'at', params => recsys.als(factors => 2))")
    conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(
        sql.Identifier(declarer), sql.Identifier(worker_login)))
    assert training.train(make_conninfo(trained, user=worker_login), "t").version == 1
    conn.execute("INSERT INTO public.timed VALUES ('hidden', 'i1', '2025-01-01')")
    conn.execute("ALTER TABLE public.timed ENABLE ROW LEVEL SECURITY")
    conn.execute(sql.SQL("CREATE POLICY no_hidden ON public.timed FOR SELECT TO {}"
                         " USING (u <> 'hidden')").format(sql.Identifier(declarer)))
    with as_role(trained, worker_login, pinned=True) as worker_conn:
        assert rows(worker_conn, "SELECT recsys._enqueue_due()") == [(0,)]  # hidden from it
        conn.execute("INSERT INTO public.timed VALUES ('seen', 'i1', '2025-01-01')")
        assert rows(worker_conn, "SELECT recsys._enqueue_due()") == [(1,)]
        assert rows(worker_conn, "SELECT current_user = session_user") == [(True,)]
    assert rows(conn, "SELECT mode, reason FROM recsys.jobs") == [("incremental", "new events")]
    conn.execute("DELETE FROM recsys.job")
    conn.execute(sql.SQL("REVOKE {} FROM {}").format(
        sql.Identifier(declarer), sql.Identifier(worker_login)))
    notices: list[str] = []
    with as_role(trained, worker_login, pinned=True) as worker_conn:
        worker_conn.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
        assert rows(worker_conn, "SELECT recsys._enqueue_due()") == [(0,)]
    assert notices == [f'cannot check model "t" for new events: permission denied to set role'
                       f' "{declarer}"']


def test_scheduler_reads_feature_relations_as_their_declarer(
        trained: str, conn: psycopg.Connection, login: Callable[..., str],
        caplog: pytest.LogCaptureFixture) -> None:
    """The worker's look for keys new in a model's feature relations (jobs.enqueue_new_content)
    reads them as the model's declarer: its row-level security applies, and a worker that may
    not act as it queues nothing."""
    declarer, worker_login = login("recsys_modeler"), login("recsys_worker")
    conn.execute("CREATE TABLE public.kinds AS SELECT 'i' || g AS i, 'k' || (g % 3) AS kind"
                 " FROM generate_series(0, 10) g")
    conn.execute("CREATE TABLE public.plays AS SELECT 'u' || (g % 7) AS u, 'i' || (g % 11) AS i"
                 " FROM generate_series(1, 40) g")
    conn.execute(sql.SQL("GRANT SELECT ON public.plays, public.kinds TO {}").format(
        sql.Identifier(declarer)))
    with as_role(trained, declarer) as modeler:
        modeler.execute("SELECT recsys.create_model('k', 'public.plays', 'u', 'i',"
                        " params => recsys.als(factors => 2))")
        modeler.execute("SELECT recsys.set_features('k', 'item', 'public.kinds', 'i',"
                        " ARRAY['kind'])")
    conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(
        sql.Identifier(declarer), sql.Identifier(worker_login)))
    assert training.train(make_conninfo(trained, user=worker_login), "k").version == 1
    conn.execute("INSERT INTO public.kinds VALUES ('hidden', 'k1')")
    conn.execute("ALTER TABLE public.kinds ENABLE ROW LEVEL SECURITY")
    conn.execute(sql.SQL("CREATE POLICY no_hidden ON public.kinds FOR SELECT TO {}"
                         " USING (i <> 'hidden')").format(sql.Identifier(declarer)))
    with as_role(trained, worker_login, pinned=True) as worker_conn:
        assert jobs.enqueue_new_content(worker_conn) == 0  # hidden from the declarer
        conn.execute("INSERT INTO public.kinds VALUES ('seen', 'k1')")
        assert jobs.enqueue_new_content(worker_conn) == 1
        assert rows(worker_conn, "SELECT current_user = session_user") == [(True,)]
    assert rows(conn, "SELECT mode, reason FROM recsys.jobs") == [("incremental", "new content")]
    conn.execute("DELETE FROM recsys.job")
    conn.execute(sql.SQL("REVOKE {} FROM {}").format(
        sql.Identifier(declarer), sql.Identifier(worker_login)))
    with as_role(trained, worker_login, pinned=True) as worker_conn:
        caplog.clear()
        assert jobs.enqueue_new_content(worker_conn) == 0
    assert [r.getMessage().splitlines()[0] for r in caplog.records
            if r.getMessage().startswith("cannot check")] == [
        f'cannot check model "k" for new content: worker login "{worker_login}" may not act as'
        f' "{declarer}", the role that declared model "k"']


def test_schedule_waits_shows_readers_and_modelers_no_job(trained: str,
                                                          login: Callable[..., str]) -> None:
    """recsys._schedule_waits (SECURITY INVOKER, used by the worker's schedule) reads the job
    queue with its caller's rights: a reader or a modeler learns nothing about any model's jobs
    through it; the worker gets its answer."""
    for group in ("recsys_reader", "recsys_modeler"):
        with as_role(trained, login(group)) as other, pytest.raises(
                psycopg.errors.InsufficientPrivilege, match="permission denied for table job"):
            other.execute("SELECT recsys._schedule_waits(1, 'new events')")
    with as_role(trained, login("recsys_worker")) as worker_conn:
        assert rows(worker_conn, "SELECT recsys._schedule_waits(id, 'new events')"
                                 " FROM recsys.model") == [(False,)]


# -- attack 4: explain and row-level security ---------------------------------------------------


def test_explain_reads_the_history_as_its_caller(trained: str, conn: psycopg.Connection,
                                                 login: Callable[..., str]) -> None:
    """Issue 11, attack 4: explain checked has_table_privilege(session_user, ...) and then read
    the source as the owner, past the reader's row-level security."""
    reader = login("recsys_reader")
    conn.execute(sql.SQL("GRANT SELECT ON public.secret_events TO {}").format(
        sql.Identifier(reader)))
    conn.execute("ALTER TABLE public.secret_events ENABLE ROW LEVEL SECURITY")
    conn.execute(sql.SQL("CREATE POLICY hide_u1 ON public.secret_events FOR SELECT TO {}"
                         " USING (u <> 'u1')").format(sql.Identifier(reader)))
    explain = "SELECT * FROM recsys.explain('m', %s, 'i2')"
    with as_role(trained, reader) as caller:
        assert rows(caller, explain, ("u1",)) == []
        assert rows(caller, explain, ("u2",)) != []
    assert rows(conn, explain, ("u1",)) != []
    # a security_invoker view is read with the caller's rights too
    conn.execute("CREATE VIEW public.by_invoker WITH (security_invoker = true)"
                 " AS SELECT * FROM public.secret_events")
    conn.execute(sql.SQL("GRANT SELECT ON public.by_invoker TO {}").format(sql.Identifier(reader)))
    conn.execute("SELECT recsys.create_model('v', 'public.by_invoker', 'u', 'i',"
                 " params => recsys.als(factors => 2))")
    training.train(trained, "v")
    with as_role(trained, reader) as caller:
        assert rows(caller, "SELECT * FROM recsys.explain('v', 'u1', 'i2')") == []
    conn.execute(sql.SQL("REVOKE SELECT ON public.secret_events FROM {}").format(
        sql.Identifier(reader)))
    with as_role(trained, reader) as caller, pytest.raises(
            psycopg.errors.InsufficientPrivilege, match="permission denied for table"):
        caller.execute("SELECT * FROM recsys.explain('v', 'u2', 'i2')")
    assert rows(conn, "SELECT prosecdef FROM pg_proc WHERE oid = 'recsys.explain'::regproc") == [
        (False,)]


# -- a managed database: its owner installs and runs everything ---------------------------------


def test_managed_database_owner_installs_trains_and_serves(server_url: str,
                                                           template_url: str) -> None:
    """As on hosted PostgreSQL: an administrator creates the database (owned by a role that is
    no superuser but may create roles) and the vector extension, and grants that owner
    recsys_owner; the owner installs, declares, trains, folds in and runs the worker, and a
    reader login serves."""
    suffix = uuid.uuid4().hex[:8]
    owner, reader, name = f"dbo_{suffix}", f"rd_{suffix}", f"managed_{suffix}"
    url = database_url(server_url, name)
    owner_url = make_conninfo(url, user=owner)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(owner)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE recsys_reader").format(
            sql.Identifier(reader)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template1").format(
            sql.Identifier(name), sql.Identifier(owner)))
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION vector")
        # the roles exist (created by another database's install): the owner must be granted
        with pytest.raises(psycopg.errors.InsufficientPrivilege,
                           match=f"role {owner} is not a member of recsys_owner and may not make"
                                 " itself one"):
            install.install(owner_url)
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("GRANT recsys_owner TO {}").format(sql.Identifier(owner)))
        assert install.install(owner_url).sql_applied
        assert not install.install(owner_url).sql_applied
        with db.connect(owner_url) as conn:
            conn.execute("CREATE TABLE public.ev AS SELECT 'u' || (g % 8) AS u,"
                         " 'i' || ((g * 5) % 12) AS i FROM generate_series(1, 96) g")
            conn.execute("SELECT recsys.create_model('mm', 'public.ev', 'u', 'i',"
                         " params => recsys.als(factors => 2, iterations => 3,"
                         " similar_items_k => 3))")
        assert training.train(owner_url, "mm").status == "succeeded"
        with db.connect(owner_url) as conn:
            conn.execute("INSERT INTO public.ev VALUES ('newbie', 'i1'), ('newbie', 'i2')")
        assert foldin.fold_in(owner_url, "mm").new_users == 1
        with db.connect(owner_url) as conn:
            conn.execute("SELECT recsys.request_refresh('mm')")
        assert worker.Worker(owner_url, worker.WorkerOptions(once=True, poll=0.1, lease=5),
                             worker.Events(quiet=True)).run() == 0
        with psycopg.connect(make_conninfo(url, user=reader), autocommit=True) as conn:
            assert len(rows(conn, "SELECT * FROM recsys.recommend('mm', 'u1', 3)")) == 3
            assert len(rows(conn, "SELECT * FROM recsys.similar_items('mm', 'i1', 2)")) == 2
            assert rows(conn, "SELECT version FROM recsys.versions WHERE active") == [(2,)]
        with psycopg.connect(url, autocommit=True) as admin:
            assert rows(admin, "SELECT count(*) FROM pg_proc WHERE pronamespace ="
                               " 'recsys'::regnamespace AND proowner <> 'recsys_owner'::regrole"
                               " UNION ALL SELECT count(*) FROM pg_class WHERE relnamespace ="
                               " 'recsys'::regnamespace AND relowner <>"
                               " 'recsys_owner'::regrole") == [(0,), (0,)]
    finally:
        drop_database(server_url, name)
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(reader)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))


def test_install_refuses_an_owner_role_that_can_log_in(db_url: str,
                                                      conn: psycopg.Connection) -> None:
    conn.execute("ALTER ROLE recsys_owner LOGIN")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege,
                           match="role recsys_owner must be NOLOGIN, without SUPERUSER"):
            install.install(db_url)
    finally:
        conn.execute("ALTER ROLE recsys_owner NOLOGIN")
    assert not install.install(db_url).sql_applied


# -- uninstall ------------------------------------------------------------------------------------


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
    assert "role recsys_owner (still used in another database)" in result.kept
    # reinstall works after uninstall
    install.install(trained)
    assert rows(conn, "SELECT count(*) FROM recsys.models") == [(0,)]


def test_uninstall_drops_extension_it_created(server_url: str) -> None:
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
    name, url = new_database(server_url, template="template1")
    try:
        with pytest.raises(RecsysError, match="recsys is not installed in this database"):
            install.uninstall(url)
    finally:
        drop_database(server_url, name)
