"""Red-team suite (issue 11): attacks on recsys-db as every role, against the real database.

One arena per module: login roles for the threat model (``reader`` in recsys_reader, ``worker``
in recsys_worker and allowed to SET ROLE to the modeler, ``modeler`` in recsys_modeler with
SELECT on the source, ``stranger`` with no grants, ``creator`` with CREATE on public), a source
``public.events``, a ``public.secret`` table only the superuser may read, a ``public.canary``
that planted code writes ``current_user`` to, and two tiny models: ``m``, which must serve the
same results after every attack, and ``w``, which the worker cycle retrains. Every planted
function writes to the canary and then tries to make its planter a superuser.

After each attack ``Arena.assert_intact`` checks that no role attribute or membership changed,
that planted code ran as no one but its planter, that ``m`` serves exactly its baseline, and that
no attacker owns anything in schema recsys. The arena then drops whatever the attack left.

The tests assert the secure behaviour the issue asks for. Where this tree cannot yet run the
least-privilege cycle (a model declared by the modeler, trained by the worker as the modeler),
the arena falls back to the superuser so that the attacks still run, and
``test_least_privilege_cycle`` reports the gap.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from recsys_db import api, cli, foldin, install, training, worker
from recsys_db.errors import RecsysError

from ..helpers import database_url, drop_database, new_database

Row = tuple[Any, ...]
Outcome = list[Row] | str

# The harness's own sessions: nothing an attacker plants is ever on their path.
PINNED = "-c search_path=pg_catalog,pg_temp"
# m is weighted bm25 (its fold-in statistics read item weights); w uses confidence weighting,
# which incremental refreshes support.
PARAMS = ("recsys.als(factors => 2, iterations => 3, weighting => 'bm25', eval_split => 'off',"
          " similar_items_k => 5)")
W_PARAMS = PARAMS.replace("'bm25'", "'confidence'")
ATTRIBUTES = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolbypassrls", "rolreplication",
              "rolcanlogin", "rolinherit", "coalesce(array_to_string(rolconfig, ','), '')")
DENIED = "42501"  # insufficient_privilege, also "must be owner of ..."
SUPERUSER = "the superuser"  # what Arena.declare returns when the superuser declared
# a training that is refused, whatever the layer refusing it
REFUSED = (RecsysError, psycopg.Error)

# Every serving function, on its precomputed and live paths. Keys: m (model), u (a known user),
# i and i2 (known items).
SERVING: dict[str, str] = {
    "recommend": "SELECT * FROM recsys.recommend(%(m)s, %(u)s, 3)",
    "recommend live": "SELECT * FROM recsys.recommend(%(m)s, %(u)s, 3, exclude_seen => false)",
    "recommend k=20": "SELECT * FROM recsys.recommend(%(m)s, %(u)s, 20)",
    "recommend unknown user": "SELECT * FROM recsys.recommend(%(m)s, 'nobody', 3)",
    "popular": "SELECT * FROM recsys.popular(%(m)s, 3)",
    "similar_items": "SELECT * FROM recsys.similar_items(%(m)s, %(i)s, 3)",
    "similar_items live": "SELECT * FROM recsys.similar_items(%(m)s, %(i)s, 8)",
    "similar_users": "SELECT * FROM recsys.similar_users(%(m)s, %(u)s, 3)",
    "interested_users": "SELECT * FROM recsys.interested_users(%(m)s, %(i)s, 3)",
    "interested_users all": "SELECT * FROM recsys.interested_users(%(m)s, %(i)s, 3, false)",
    "score": "SELECT recsys.score(%(m)s, %(u)s, %(i)s)",
    "recommend_for_items": "SELECT * FROM recsys.recommend_for_items(%(m)s,"
                           " ARRAY[%(i)s, %(i2)s]::pg_catalog.text[], 3)",
    "recommend_for_items unknown": "SELECT * FROM recsys.recommend_for_items(%(m)s,"
                                   " ARRAY['nothing']::pg_catalog.text[], 3)",
    "recommend_filtered": "SELECT * FROM recsys.recommend_filtered(%(m)s, %(u)s,"
                          " ARRAY[%(i)s, %(i2)s, 'nothing']::pg_catalog.text[], 2)",
    "recommend_filtered unknown user": "SELECT * FROM recsys.recommend_filtered(%(m)s, 'nobody',"
                                       " ARRAY[%(i)s, %(i2)s]::pg_catalog.text[], 2)",
    "explain": "SELECT * FROM recsys.explain(%(m)s, %(u)s, %(i2)s)",
}
# Labels that read a factor table (all but the precomputed recommend path).
READS_FACTORS = [label for label in SERVING if label != "recommend"]


# Catalogs whose new rows (objects an attack created) the arena drops after each test.
CATALOGS: dict[str, str] = {
    "schema": "SELECT oid FROM pg_namespace",
    "proc": "SELECT oid FROM pg_proc",
    "operator": "SELECT oid FROM pg_operator",
    "class": "SELECT oid FROM pg_class",
    "type": "SELECT oid FROM pg_type",
    "policy": "SELECT oid FROM pg_policy",
    "trigger": "SELECT oid FROM pg_trigger",
    "rule": "SELECT oid FROM pg_rewrite",
}


@dataclass(frozen=True)
class Roles:
    """The arena's login roles (cluster-wide, so prefixed per run)."""

    reader: str
    worker: str
    modeler: str
    stranger: str
    creator: str

    def logins(self) -> list[str]:
        """Every arena login."""
        return [self.reader, self.worker, self.modeler, self.stranger, self.creator]


def lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def trap(planter: str, tag: str) -> str:
    """PL/pgSQL that records who runs it and tries to make `planter` a superuser."""
    return f"""
    BEGIN
        INSERT INTO public.canary (who, what) VALUES (current_user, {lit(tag)});
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    BEGIN
        EXECUTE 'ALTER ROLE {planter} SUPERUSER CREATEROLE BYPASSRLS';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    BEGIN
        EXECUTE 'GRANT pg_read_all_data TO {planter}';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;"""


def evil_function(schema: str, name: str, args: str, returns: str, body: str, planter: str,
                  tag: str, *, traps: bool = True) -> str:
    """CREATE FUNCTION for a planted function that springs the trap, then does `body`."""
    return (f"CREATE FUNCTION {schema}.{name}({args}) RETURNS {returns} LANGUAGE plpgsql"
            f" SET search_path = pg_catalog, pg_temp AS $evil$\nBEGIN"
            f"{trap(planter, tag) if traps else ''}\n    {body}\nEND\n$evil$")


# Exact-type look-alikes of polymorphic or variadic built-ins: an exact match beats
# pg_catalog's polymorphic function even when pg_catalog comes first on the path.
SHADOW_FUNCTIONS: list[tuple[str, str, str, str]] = [
    ("cardinality", "text[]", "integer", "RETURN pg_catalog.cardinality($1);"),
    ("cardinality", "integer[]", "integer", "RETURN pg_catalog.cardinality($1);"),
    ("array_position", "text[], text", "integer", "RETURN pg_catalog.array_position($1, $2);"),
    ("array_length", "text[], integer", "integer", "RETURN pg_catalog.array_length($1, $2);"),
    ("array_length", "integer[], integer", "integer",
     "RETURN pg_catalog.array_length($1, $2);"),
    ("array_to_string", "text[], text", "text", "RETURN pg_catalog.array_to_string($1, $2);"),
    ("array_fill", "real, integer[]", "real[]", "RETURN pg_catalog.array_fill($1, $2);"),
    ("array_fill", "double precision, integer[]", "double precision[]",
     "RETURN pg_catalog.array_fill($1, $2);"),
    ("format", "text, text", "text", "RETURN pg_catalog.format($1, $2);"),
    ("format", "text, text, text", "text", "RETURN pg_catalog.format($1, $2, $3);"),
    ("jsonb_build_object", "text, text", "jsonb",
     "RETURN pg_catalog.jsonb_build_object($1, $2);"),
    ("to_jsonb", "text", "jsonb", "RETURN pg_catalog.to_jsonb($1);"),
    ("unnest", "text[]", "SETOF text", "RETURN QUERY SELECT pg_catalog.unnest($1);"),
    ("unnest", "integer[]", "SETOF integer", "RETURN QUERY SELECT pg_catalog.unnest($1);"),
    ("unnest", "real[]", "SETOF real", "RETURN QUERY SELECT pg_catalog.unnest($1);"),
    ("unnest", "double precision[]", "SETOF double precision",
     "RETURN QUERY SELECT pg_catalog.unnest($1);"),
]
# Operators that win wherever the planting schema precedes pg_catalog.
SHADOW_OPERATORS: list[tuple[str, str, str, str]] = [
    ("=", "text", "text", "pg_catalog.="),
    ("<", "text", "text", "pg_catalog.<"),
    ("=", "integer", "integer", "pg_catalog.="),
    ("<>", "integer", "integer", "pg_catalog.<>"),
]
# pgvector's operators, planted with their exact types in a schema other than the vector schema.
VECTOR_OPERATORS: list[tuple[str, str]] = [
    ("<#>", "double precision"), ("<=>", "double precision"), ("*", "public.vector")]
SHADOW_AGGREGATES = ["integer", "text", "double precision"]


def shadow_statements(schema: str, planter: str, *, vector_ops: bool) -> list[str]:
    """CREATE statements for the whole shadow set in `schema`, each trapped."""
    out = []
    for n, (name, args, returns, body) in enumerate(SHADOW_FUNCTIONS):
        out.append(evil_function(schema, name, args, returns, body, planter,
                                 f"{schema}.{name}({args}) #{n}"))
    operators = [(op, left, right, f"OPERATOR({target}) ", "boolean")
                 for op, left, right, target in SHADOW_OPERATORS]
    if vector_ops:
        operators += [(op, "public.vector", "public.vector", f"OPERATOR(public.{op}) ", result)
                      for op, result in VECTOR_OPERATORS]
    for n, (op, left, right, call, result) in enumerate(operators):
        fn = f"rt_op_{n}"
        out.append(evil_function(schema, fn, f"a {left}, b {right}", result,
                                 f"RETURN a {call}b;", planter, f"{schema}.{op}({left},{right})"))
        out.append(f"CREATE OPERATOR {schema}.{op} (LEFTARG = {left}, RIGHTARG = {right},"
                   f" FUNCTION = {schema}.{fn})")
    for n, typ in enumerate(SHADOW_AGGREGATES):
        fn = f"rt_acc_{n}"
        out.append(
            f"CREATE FUNCTION {schema}.{fn}(state {typ}[], x {typ}) RETURNS {typ}[]"
            f" LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $evil$\nBEGIN\n"
            f"    IF state IS NULL THEN{trap(planter, f'{schema}.array_agg({typ})')}\n"
            f"    END IF;\n    RETURN pg_catalog.array_append(state, x);\nEND\n$evil$")
        out.append(f"CREATE AGGREGATE {schema}.array_agg({typ})"
                   f" (SFUNC = {schema}.{fn}, STYPE = {typ}[])")
    out.append(
        f"CREATE FUNCTION {schema}.rt_count(state bigint, x text) RETURNS bigint STRICT"
        f" LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $evil$\nBEGIN\n"
        f"    IF state = 0 THEN{trap(planter, f'{schema}.count(text)')}\n    END IF;\n"
        f"    RETURN state + 1;\nEND\n$evil$")
    out.append(f"CREATE AGGREGATE {schema}.count(text)"
               f" (SFUNC = {schema}.rt_count, STYPE = bigint, INITCOND = '0')")
    return out


def attempt(conn: psycopg.Connection, *statements: str) -> str | None:
    """Run `statements` in one transaction that is rolled back: the SQLSTATE of the first
    error, or None when they all succeeded."""
    try:
        with conn.transaction(force_rollback=True):
            for statement in statements:
                conn.execute(statement)
    except psycopg.Error as exc:
        return exc.sqlstate or type(exc).__name__
    return None


def serve(conn: psycopg.Connection, model: str = "m", user: str = "u1", item: str = "i1",
          item2: str = "i2") -> dict[str, Outcome]:
    """Every serving call's rows, or the name of the error it raised (each in a savepoint, so
    this also works inside an attacker's open transaction)."""
    params = {"m": model, "u": user, "i": item, "i2": item2}
    out: dict[str, Outcome] = {}
    for label, query in SERVING.items():
        try:
            with conn.transaction():
                out[label] = conn.execute(query, params).fetchall()
        except psycopg.Error as exc:
            out[label] = type(exc).__name__
    return out


def read_views(conn: psycopg.Connection, views: list[str]) -> None:
    """Read every row of every recsys view as text (planted code would run in them too);
    errors are ignored."""
    for view in views:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SELECT v::text FROM {} v").format(
                    sql.Identifier("recsys", view))).fetchall()
        except psycopg.Error:
            pass


@dataclass
class Arena:
    """The attacked database, its roles, and what it looked like before any attack."""

    server_url: str
    dbname: str
    url: str
    prefix: str
    roles: Roles
    su: psycopg.Connection
    model_id: int = 0
    version: int = 0
    declared_by: str = ""
    trained_by: str = ""
    cycle_error: str | None = None
    views: list[str] = field(default_factory=list)
    baseline: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    role_baseline: list[Row] = field(default_factory=list)
    member_baseline: set[Row] = field(default_factory=set)
    catalog_baseline: dict[str, list[int]] = field(default_factory=dict)
    model_baseline: set[str] = field(default_factory=set)
    undo: list[str] = field(default_factory=list)

    # -- connections ------------------------------------------------------------------------

    @property
    def items_table(self) -> str:
        """The active version's item factor table of model m."""
        return f"m{self.model_id}_v{self.version}_items"

    @property
    def users_table(self) -> str:
        """The active version's user factor table of model m."""
        return f"m{self.model_id}_v{self.version}_users"

    @property
    def lab(self) -> str:
        """A schema the modeler owns (for its own views and functions)."""
        return f"{self.prefix}_lab"

    @property
    def evil(self) -> str:
        """A schema the creator owns."""
        return f"{self.prefix}_evil"

    def url_for(self, role: str | None = None) -> str:
        """URL of the arena database as `role` (the superuser when None)."""
        return make_conninfo(self.url, user=role) if role else self.url

    def connect(self, role: str | None = None, *,
                options: str | None = None) -> psycopg.Connection:
        """An autocommit connection as `role` (default search_path unless `options`)."""
        url = self.url_for(role)
        return psycopg.connect(make_conninfo(url, options=options) if options else url,
                               autocommit=True)

    def rows(self, query: str, params: Any = None) -> list[Row]:
        """Rows of a query run by the harness's pinned superuser session."""
        cur = self.su.execute(query, params)
        return cur.fetchall() if cur.description else []

    def execute_as(self, role: str, *statements: str) -> None:
        """Run statements as `role` (a fresh login session, autocommit)."""
        with self.connect(role) as conn:
            for statement in statements:
                conn.execute(statement)

    def make_login(self, suffix: str, *groups: str) -> str:
        """A new login role in those of `groups` that exist; dropped after the test."""
        name = f"{self.prefix}_{suffix}"
        existing = [g for g in groups if self.role_exists(g)]
        self.su.execute(f"CREATE ROLE {name} LOGIN"
                        + (f" IN ROLE {', '.join(existing)}" if existing else ""))
        self.undo.append(f"DROP OWNED BY {name} CASCADE; DROP ROLE IF EXISTS {name}")
        return name

    def role_exists(self, name: str) -> bool:
        """Whether a role of that name exists."""
        return bool(self.rows("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)))

    # -- models -----------------------------------------------------------------------------

    def declare(self, name: str, source: str, user: str = "u", item: str = "i",
                weight: str | None = "w", *, by: str | None = None,
                as_superuser: bool = False, fallback: bool = False,
                params: str = PARAMS) -> str:
        """Declare a model as `by` (default: the modeler) or as the superuser; with
        `fallback`, as the superuser when `by` is refused. Returns who declared it."""
        role = by or self.roles.modeler
        statement = sql.SQL(
            "SELECT recsys.create_model({name}, {source}::regclass, {user}, {item},"
            " weight_column => {weight}, params => " + params + ")").format(
            name=name, source=source, user=user, item=item, weight=weight)
        if not as_superuser:
            try:
                with self.connect(role) as conn:
                    conn.execute(statement)
                return role
            except psycopg.Error:
                if not fallback:
                    raise
        self.su.execute(statement)
        return SUPERUSER

    def train(self, model: str, *, as_superuser: bool = False) -> training.RunResult:
        """Train a model as the worker login, or as the superuser."""
        return training.train(self.url_for(None if as_superuser else self.roles.worker), model)

    def worker_once(self) -> None:
        """Run the worker loop once as the worker login; raises unless it exits 0."""
        code = worker.Worker(self.url_for(self.roles.worker),
                             worker.WorkerOptions(once=True, poll=0.1, lease=5),
                             worker.Events(quiet=True)).run()
        if code != 0:
            raise AssertionError(f"worker exited {code}")

    def worker_cycle(self) -> list[str]:
        """Train w, fold into it, request a refresh as the modeler and run the worker once, all
        as least-privilege logins; returns the steps that failed."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("train w", lambda: self.train("w")),
            ("fold-in w", lambda: foldin.fold_in(self.url_for(self.roles.worker), "w")),
            ("request_refresh w", lambda: self.execute_as(
                self.roles.modeler, "SELECT recsys.request_refresh('w')")),
            ("worker once", self.worker_once),
        ]
        failures = []
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # any failure of a step is reported, not raised
                failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        return failures

    def call_everything(self) -> None:
        """Every serving function as the reader, the worker and the superuser, every view, and
        the worker cycle (which must succeed wherever it succeeded before the attack)."""
        for role in (self.roles.reader, self.roles.worker, None):
            with self.connect(role) as conn:
                serve(conn)
                read_views(conn, self.views)
        failures = self.worker_cycle()
        if self.cycle_error is None:
            assert not failures, f"the worker cycle failed after the attack: {failures}"
        # the operations functions, rolled back: a change to a model (its checks and the
        # trigger that records it) and the worker's history prune
        with self.connect(self.roles.modeler) as conn:
            altered = attempt(conn, "SELECT recsys.alter_model('m', refresh_every => '1 hour',"
                                    " params => '{\"factors\": 3}')")
        with self.connect(self.roles.worker) as conn:
            pruned = attempt(conn, "SELECT * FROM recsys._prune_history(100, 30)")
        assert (altered, pruned) == (None, None)

    # -- invariants -------------------------------------------------------------------------

    def watched(self) -> list[str]:
        """Roles whose attributes and memberships must never change: the arena's logins and
        recsys's own roles."""
        found = self.rows("SELECT rolname FROM pg_roles WHERE rolname LIKE 'recsys\\_%'")
        return sorted([*self.roles.logins(), *(r for (r,) in found)])

    def role_state(self, conn: psycopg.Connection | None = None) -> list[Row]:
        """Attributes of the watched roles."""
        query = (f"SELECT rolname, {', '.join(ATTRIBUTES)} FROM pg_catalog.pg_roles"
                 " WHERE rolname = ANY (%s) ORDER BY rolname")
        return (conn or self.su).execute(query, (self.watched(),)).fetchall()

    def memberships(self, conn: psycopg.Connection | None = None) -> set[Row]:
        """(role, member) pairs whose member is a watched role."""
        query = ("SELECT g.rolname, m.rolname FROM pg_catalog.pg_auth_members a"
                 " JOIN pg_catalog.pg_roles g ON g.oid = a.roleid"
                 " JOIN pg_catalog.pg_roles m ON m.oid = a.member WHERE m.rolname = ANY (%s)")
        return set((conn or self.su).execute(query, (self.watched(),)).fetchall())

    def canary(self, conn: psycopg.Connection | None = None) -> list[Row]:
        """(who, what) of every planted call that got to write."""
        return (conn or self.su).execute(
            "SELECT who, what FROM public.canary ORDER BY 1, 2").fetchall()

    def problems(self, conn: psycopg.Connection | None = None,
                 planters: Collection[str] = ()) -> list[str]:
        """Broken invariants visible to `conn` (default: the harness), e.g. inside an attacker's
        own open transaction."""
        found = []
        if (state := self.role_state(conn)) != self.role_baseline:
            changed = sorted(set(state) - set(self.role_baseline))
            found.append(f"role attributes changed: {changed}")
        if added := self.memberships(conn) - self.member_baseline:
            found.append(f"new role memberships: {sorted(added)}")
        foreign = sorted({(who, what) for who, what in self.canary(conn)
                          if who not in set(planters)})
        if foreign:
            found.append(f"planted code ran as another role: {foreign[:5]}")
        return found

    def assert_intact(self, planters: Collection[str] = ()) -> None:
        """The invariants of every attack: see the module docstring."""
        found = self.problems(None, planters)
        for who, role in (("reader", self.roles.reader), ("superuser", None)):
            with self.connect(role) as conn:
                now = serve(conn)
            if changed := [k for k, v in self.baseline[who].items() if now[k] != v]:
                found.append(f"model m serves the {who} differently: "
                             + ", ".join(f"{k}: {now[k]!r:.80}" for k in changed))
        if self.rows("SELECT active_version FROM recsys.model WHERE name = 'm'") != [
                (self.version,)]:
            found.append("the active version of m changed")
        owned = self.rows(
            "SELECT c.oid::regclass::text, r.rolname FROM pg_class c"
            " JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE c.relnamespace = 'recsys'::regnamespace AND r.rolname = ANY (%s)"
            " UNION ALL SELECT p.oid::regprocedure::text, r.rolname FROM pg_proc p"
            " JOIN pg_roles r ON r.oid = p.proowner"
            " WHERE p.pronamespace = 'recsys'::regnamespace AND r.rolname = ANY (%s)",
            (self.roles.logins(), self.roles.logins()))
        if owned:
            found.append(f"attackers own objects in schema recsys: {owned[:5]}")
        assert not found, "; ".join(found)

    # -- snapshots and cleanup --------------------------------------------------------------

    def take_baseline(self) -> None:
        """Record what every attack must leave as it was."""
        with self.connect(self.roles.reader) as reader, self.connect() as superuser:
            self.baseline = {"reader": serve(reader), "superuser": serve(superuser)}
        self.role_baseline = self.role_state()
        self.member_baseline = self.memberships()
        self.catalog_baseline = {k: [o for (o,) in self.rows(q)] for k, q in CATALOGS.items()}
        self.model_baseline = {n for (n,) in self.rows("SELECT name FROM recsys.model")}

    def drop_statements(self) -> list[str]:
        """DROP statements for every object created since the baseline, outside the catalogs
        (new factor tables of the models are kept)."""
        b = self.catalog_baseline
        user_space = "n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'"
        queries = [
            ("SELECT format('DROP POLICY IF EXISTS %%I ON %%s', polname, polrelid::regclass)"
             " FROM pg_policy WHERE oid <> ALL (%s)", b["policy"]),
            ("SELECT format('DROP TRIGGER IF EXISTS %%I ON %%s', tgname, tgrelid::regclass)"
             " FROM pg_trigger WHERE NOT tgisinternal AND oid <> ALL (%s)", b["trigger"]),
            ("SELECT format('DROP RULE IF EXISTS %%I ON %%s', rulename, ev_class::regclass)"
             " FROM pg_rewrite WHERE rulename <> '_RETURN' AND oid <> ALL (%s)", b["rule"]),
            ("SELECT format('DROP INDEX IF EXISTS %%s', i.indexrelid::regclass) FROM pg_index i"
             " WHERE i.indexrelid <> ALL (%s) AND i.indrelid = ANY (%s)",
             (b["class"], b["class"])),
            ("SELECT format('DROP %%s IF EXISTS %%s CASCADE', CASE c.relkind WHEN 'v' THEN 'VIEW'"
             " WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'"
             " WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid::regclass)"
             " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
             " WHERE c.oid <> ALL (%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
             " AND NOT c.relispartition AND " + user_space
             + " AND NOT (n.nspname = 'recsys' AND c.relname ~ '^m[0-9]+_v[0-9]+_')", b["class"]),
            ("SELECT format('DROP ROUTINE IF EXISTS %%s CASCADE', p.oid::regprocedure)"
             " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
             " WHERE p.oid <> ALL (%s) AND " + user_space, b["proc"]),
            ("SELECT format('DROP OPERATOR IF EXISTS %%s CASCADE', o.oid::regoperator)"
             " FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace"
             " WHERE o.oid <> ALL (%s) AND " + user_space, b["operator"]),
            ("SELECT format('DROP TYPE IF EXISTS %%s CASCADE', t.oid::regtype)"
             " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
             " WHERE t.oid <> ALL (%s) AND " + user_space + " AND (t.typtype IN ('d', 'e', 'r')"
             " OR t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')",
             b["type"]),
            ("SELECT format('DROP SCHEMA IF EXISTS %%I CASCADE', nspname) FROM pg_namespace n"
             " WHERE oid <> ALL (%s) AND " + user_space, b["schema"]),
        ]
        out: list[str] = []
        for query, params in queries:
            args = params if isinstance(params, tuple) else (params,)
            out += [s for (s,) in self.rows(query, args)]
        return out

    def revert(self) -> None:
        """Undo what the test itself set up (grants, policies, roles), newest first."""
        statements = list(reversed(self.undo))
        self.undo.clear()
        for statement in statements:
            with contextlib.suppress(psycopg.Error):  # gone already
                self.su.execute(statement)

    def restore(self) -> None:
        """Undo what a test did and whatever its attack left (run after every test)."""
        self.revert()
        statements = [f"SELECT recsys.drop_model({lit(name)})"
                       for (name,) in self.rows("SELECT name FROM recsys.model")
                       if name not in self.model_baseline]
        for row in self.role_state():
            base = next((b for b in self.role_baseline if b[0] == row[0]), None)
            if base is not None and base != row:
                flags = ["SUPERUSER", "CREATEROLE", "CREATEDB", "BYPASSRLS", "REPLICATION",
                         "LOGIN", "INHERIT"]
                statements.append(f"ALTER ROLE {row[0]} " + " ".join(
                    f if on else f"NO{f}" for f, on in zip(flags, base[1:8], strict=True)))
        statements += [s for (s,) in self.rows(
            "SELECT format('REVOKE %%I FROM %%I GRANTED BY %%I', g.rolname, m.rolname, gr.rolname)"
            " FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid"
            " JOIN pg_roles m ON m.oid = a.member JOIN pg_roles gr ON gr.oid = a.grantor"
            " WHERE m.rolname = ANY (%s) AND NOT EXISTS (SELECT 1 FROM unnest(%s::text[],"
            " %s::text[]) b (g, m) WHERE b.g = g.rolname AND b.m = m.rolname)",
            (self.watched(), [g for g, _ in self.member_baseline],
             [m for _, m in self.member_baseline]))]
        for statement in statements:
            with contextlib.suppress(psycopg.Error):  # gone already, or dropped before
                self.su.execute(statement)
        for statement in self.drop_statements():
            with contextlib.suppress(psycopg.Error):
                self.su.execute(statement)
        self.su.execute("TRUNCATE public.canary")


def build_arena(server_url: str) -> Arena:
    """Create the arena database, roles, tables and models (see the module docstring)."""
    name, url = new_database(server_url)
    prefix = f"rt{uuid.uuid4().hex[:6]}"
    roles = Roles(*(f"{prefix}_{r}" for r in ("reader", "worker", "modeler", "stranger",
                                             "creator")))
    su = psycopg.connect(make_conninfo(url, options=PINNED), autocommit=True)
    arena = Arena(server_url=server_url, dbname=name, url=url, prefix=prefix, roles=roles, su=su)
    modeler_group = " IN ROLE recsys_modeler" if arena.role_exists("recsys_modeler") else ""
    for statement in (
        f"CREATE ROLE {roles.reader} LOGIN IN ROLE recsys_reader",
        f"CREATE ROLE {roles.worker} LOGIN IN ROLE recsys_worker",
        f"CREATE ROLE {roles.modeler} LOGIN{modeler_group}",
        f"CREATE ROLE {roles.stranger} LOGIN",
        f"CREATE ROLE {roles.creator} LOGIN IN ROLE recsys_reader",
        f"GRANT {roles.modeler} TO {roles.worker} WITH INHERIT FALSE, SET TRUE",
        f"GRANT CREATE ON SCHEMA public TO {roles.creator}",
        f"CREATE SCHEMA {arena.lab} AUTHORIZATION {roles.modeler}",
        f"CREATE SCHEMA {arena.evil} AUTHORIZATION {roles.creator}",
        f"GRANT USAGE ON SCHEMA {arena.evil} TO PUBLIC",
        "CREATE TABLE public.events AS SELECT 'u' || (g % 8) AS u, 'i' || ((g * 5) % 12) AS i,"
        " (1 + g % 3)::double precision AS w, 'n' || (g % 2) AS note"
        " FROM generate_series(1, 96) g",
        "CREATE TABLE public.secret AS SELECT 'S-u' || (g % 5) AS u, 'S-i' || (g % 7) AS i,"
        " 1::double precision AS w, md5(g::text) AS password FROM generate_series(1, 40) g",
        "CREATE TABLE public.canary (who text, what text)",
        "GRANT SELECT, INSERT ON public.canary TO PUBLIC",
        f"GRANT SELECT ON public.events TO {roles.modeler}",
    ):
        su.execute(statement)
    arena.declared_by = arena.declare("m", "public.events", fallback=True)
    arena.declare("w", "public.events", fallback=True, params=W_PARAMS)
    failures = []
    try:
        arena.train("m")
        arena.trained_by = roles.worker
    except Exception as exc:  # reported by test_least_privilege_cycle
        failures.append(f"train m: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        arena.train("m", as_superuser=True)
        arena.trained_by = SUPERUSER
    failures += arena.worker_cycle()
    arena.cycle_error = "; ".join(failures) or None
    [(arena.model_id, arena.version)] = arena.rows(
        "SELECT id, active_version FROM recsys.model WHERE name = 'm'")
    arena.views = [v for (v,) in arena.rows(
        "SELECT relname FROM pg_class WHERE relnamespace = 'recsys'::regnamespace"
        " AND relkind = 'v' ORDER BY 1")]
    arena.take_baseline()
    return arena


@pytest.fixture(scope="module")
def arena(server_url: str, template_url: str) -> Iterator[Arena]:
    """The module's arena; its database and roles are dropped afterwards."""
    built = build_arena(server_url)
    try:
        yield built
    finally:
        built.su.close()
        drop_database(server_url, built.dbname)
        with psycopg.connect(server_url, autocommit=True) as conn:
            for role in built.roles.logins()[::-1]:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Restores the arena after every test that uses it."""
    yield
    if "arena" in request.fixturenames:
        request.getfixturevalue("arena").restore()


def plant(arena: Arena, role: str, statements: list[str]) -> None:
    """Create objects as `role`, committed, in one session."""
    with arena.connect(role) as conn:
        for statement in statements:
            conn.execute(statement)


# -- 0. the least-privilege cycle itself ------------------------------------------------------


def test_least_privilege_cycle(arena: Arena) -> None:
    """The arena's models were declared by the modeler and trained, folded into and refreshed
    by the worker login reading the source as the modeler."""
    assert arena.declared_by == arena.roles.modeler, "the modeler could not declare model m"
    assert arena.rows("SELECT declarer::text FROM recsys.model WHERE name = 'm'") == [
        (arena.roles.modeler,)]
    assert arena.trained_by == arena.roles.worker and arena.cycle_error is None, \
        arena.cycle_error


# -- 1. static checks -------------------------------------------------------------------------


def test_every_recsys_function_is_owned_by_the_nologin_owner(arena: Arena) -> None:
    bad = arena.rows(
        "SELECT p.oid::regprocedure::text, r.rolname FROM pg_proc p"
        " JOIN pg_roles r ON r.oid = p.proowner WHERE p.pronamespace = 'recsys'::regnamespace"
        " AND (r.rolname <> 'recsys_owner' OR r.rolsuper OR r.rolcanlogin) ORDER BY 1")
    assert not bad, f"{len(bad)} recsys functions not owned by recsys_owner, e.g. {bad[:3]}"


def test_owner_role_is_nologin_and_reads_no_source(arena: Arena) -> None:
    assert arena.rows(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls,"
        " rolreplication FROM pg_roles WHERE rolname = 'recsys_owner'") == [(False,) * 6]
    assert arena.rows("SELECT nspowner::regrole::text FROM pg_namespace"
                      " WHERE nspname = 'recsys'") == [("recsys_owner",)]
    assert arena.rows(
        "SELECT has_table_privilege('recsys_owner', 'public.events', 'SELECT'),"
        " has_table_privilege('recsys_owner', 'public.secret', 'SELECT')") == [(False, False)]


def test_every_recsys_function_pins_a_safe_search_path(arena: Arena) -> None:
    writable = {n for (n,) in arena.rows(
        "SELECT n.nspname FROM pg_namespace n WHERE EXISTS (SELECT 1"
        " FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a"
        " LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE a.privilege_type = 'CREATE'"
        " AND (a.grantee = 0 OR NOT (r.rolsuper OR r.rolname = 'recsys_owner')))")}
    bad = []
    for fn, config in arena.rows("SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p"
                                 " WHERE p.pronamespace = 'recsys'::regnamespace ORDER BY 1"):
        setting = next((c.split("=", 1)[1] for c in config or [] if c.startswith("search_path=")),
                       None)
        path = [s.strip().strip('"') for s in setting.split(",")] if setting else []
        if (not path or path[0] != "pg_catalog" or path[-1] != "pg_temp"
                or any(s in writable or s.startswith("$") for s in path[1:-1])):
            bad.append(f"{fn}: {setting}")
    assert not bad, f"{len(bad)} recsys functions without a safe pinned search_path: {bad[:4]}"


def test_no_definer_function_is_executable_by_public_or_a_stranger(arena: Arena) -> None:
    stranger = arena.roles.stranger
    assert arena.rows(
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " WHERE p.pronamespace = 'recsys'::regnamespace AND (p.prosecdef"
        " AND has_function_privilege('public', p.oid, 'EXECUTE')"
        " OR has_function_privilege(%s, p.oid, 'EXECUTE'))", (stranger,)) == []
    assert arena.rows(
        "SELECT has_schema_privilege(%s, 'recsys', 'USAGE'), count(*) FILTER (WHERE"
        " has_table_privilege(%s, c.oid, 'SELECT')) FROM pg_class c"
        " WHERE c.relnamespace = 'recsys'::regnamespace", (stranger, stranger)) == [(False, 0)]


def test_every_recsys_relation_is_owned_by_the_owner(arena: Arena) -> None:
    bad = arena.rows(
        "SELECT c.oid::regclass::text, c.relowner::regrole::text FROM pg_class c"
        " WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        " AND c.relowner <> (SELECT nspowner FROM pg_namespace WHERE nspname = 'recsys')"
        " ORDER BY 1")
    assert arena.rows("SELECT nspowner::regrole::text FROM pg_namespace"
                      " WHERE nspname = 'recsys'") == [("recsys_owner",)]
    assert not bad, f"{len(bad)} relations in recsys not owned by its owner, e.g. {bad[:4]}"


def test_no_role_holds_create_on_recsys_or_owner_level_table_rights(arena: Arena) -> None:
    groups = [g for g in ("recsys_reader", "recsys_worker", "recsys_modeler")
              if arena.role_exists(g)]
    roles = ["public", *groups, *arena.roles.logins()]
    assert arena.rows("SELECT r FROM unnest(%s::text[]) r"
                      " WHERE has_schema_privilege(r, 'recsys', 'CREATE')", (roles,)) == []
    privileges = ["TRIGGER", "TRUNCATE", "REFERENCES"]
    if arena.su.info.server_version >= 170000:
        privileges.append("MAINTAIN")
    rights = arena.rows(
        "SELECT r, c.oid::regclass::text, p FROM unnest(%s::text[]) r, unnest(%s::text[]) p,"
        " pg_class c WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind IN ('r', 'p')"
        " AND has_table_privilege(r, c.oid, p) ORDER BY 1, 2, 3", (roles, privileges))
    assert not rights, f"{len(rights)} owner-level table rights, e.g. {rights[:4]}"


def test_explain_runs_as_its_caller(arena: Arena) -> None:
    assert arena.rows("SELECT bool_or(prosecdef) FROM pg_proc"
                      " WHERE oid = 'recsys.explain'::regproc") == [(False,)]


# -- 2. install refuses a writable vector schema ----------------------------------------------


@pytest.mark.parametrize("writer", ["PUBLIC", "creator"])
def test_install_refuses_a_vector_schema_others_can_write(arena: Arena, writer: str) -> None:
    role = "PUBLIC" if writer == "PUBLIC" else arena.roles.creator
    name = f"{arena.prefix}_w{writer.lower()}"
    url = database_url(arena.server_url, name)
    with psycopg.connect(arena.server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template1").format(sql.Identifier(name)))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            # PUBLIC is a keyword, not a role name: it must not be quoted
            grantee = sql.SQL(role) if role == "PUBLIC" else sql.Identifier(role)
            conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(grantee))
        with pytest.raises(RecsysError, match=rf"writable by .*{re.escape(role)}"):
            install.install(url)
    finally:
        drop_database(arena.server_url, name)


# -- 3. shadowing operators and functions -----------------------------------------------------


@pytest.mark.parametrize("planter", ["creator", "stranger after GRANT CREATE TO PUBLIC"])
def test_shadowing_in_public(arena: Arena, planter: str) -> None:
    """Look-alikes of built-ins in public (where pgvector lives), then everything is called by
    every role and the worker cycle runs."""
    role = arena.roles.creator
    if planter != "creator":
        role = arena.roles.stranger
        arena.su.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        arena.undo.append("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    plant(arena, role, shadow_statements("public", role, vector_ops=False))
    arena.call_everything()
    arena.assert_intact(planters={role})


@pytest.mark.parametrize("caller", ["reader", "superuser"])
def test_caller_search_path_and_settings(arena: Arena, caller: str) -> None:
    """A caller puts a schema full of look-alikes (pgvector's operators too) before pg_catalog
    and changes the settings that change how text is read and written."""
    creator = arena.roles.creator
    plant(arena, creator, shadow_statements(arena.evil, creator, vector_ops=True))
    options = (f"-c search_path={arena.evil},pg_catalog,public,pg_temp -c DateStyle=SQL,DMY"
               " -c TimeZone=Pacific/Chatham -c IntervalStyle=sql_standard"
               " -c standard_conforming_strings=off -c lc_monetary=C")
    role = arena.roles.reader if caller == "reader" else None
    with arena.connect(role, options=options) as conn:
        now = serve(conn)
        read_views(conn, arena.views)
    changed = [k for k, v in arena.baseline[caller].items() if now[k] != v]
    assert not changed, f"results changed under the caller's settings: {changed}"
    arena.assert_intact(planters={creator})


def test_worker_session_ignores_look_alikes_on_its_own_path(arena: Arena) -> None:
    """The worker's own session: look-alikes in a schema named after the worker login
    ("$user", first on the default search_path, and on no serving function's path) must not
    run as the worker while it trains, folds in and runs jobs."""
    creator, login = arena.roles.creator, arena.roles.worker
    arena.su.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
        sql.Identifier(login), sql.Identifier(creator)))
    arena.su.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(sql.Identifier(login)))
    plant(arena, creator, shadow_statements(login, creator, vector_ops=True))
    failures = arena.worker_cycle()
    with arena.connect(login) as conn:
        serve(conn)
    arena.assert_intact(planters={creator})
    if arena.cycle_error is None:
        assert not failures


def test_admin_sessions_ignore_look_alikes_in_public(arena: Arena,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """recsys-db's own sessions that an administrator (a superuser) runs: install, the CLI's
    status, models and runs, the Python API and uninstall, in a database where the creator
    planted look-alikes in public. None of them may run the creator's code."""
    creator = arena.roles.creator
    name, url = new_database(arena.server_url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.canary (who text, what text)")
            conn.execute("GRANT SELECT, INSERT ON public.canary TO PUBLIC")
            conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(
                sql.Identifier(creator)))
        with psycopg.connect(make_conninfo(url, user=creator), autocommit=True) as conn:
            for statement in shadow_statements("public", creator, vector_ops=False):
                conn.execute(statement)
        with pytest.raises(RecsysError, match="writable by"):
            install.install(url)
        for command in ("status", "models", "runs"):
            assert cli.main([command, "--database-url", url]) == 0, command
        with api.connect(url) as rs:
            rs.models()
            rs.runs()
        install.uninstall(url, force=True)
        with psycopg.connect(url, autocommit=True) as conn:
            ran = conn.execute("SELECT DISTINCT who, what FROM public.canary"
                               " WHERE who <> %s ORDER BY 1, 2", (creator,)).fetchall()
    finally:
        drop_database(arena.server_url, name)
        capsys.readouterr()
    found = arena.problems(planters={creator})
    assert not ran and not found, (ran[:5], found)


# -- 4. pg_temp ---------------------------------------------------------------------------------


def temp_plants(arena: Arena, attacker: str) -> list[str]:
    """Temporary tables named like registry and factor tables (with rows of their own),
    temporary domains over text, jsonb and vector, and a temporary cardinality(text[])."""
    out = [
        evil_function("pg_temp", "rt_check", "x anyelement", "boolean", "RETURN true;",
                      attacker, "pg_temp domain check"),
        "CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.rt_check(VALUE))",
        "CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (pg_temp.rt_check(VALUE))",
        "CREATE DOMAIN pg_temp.vector AS public.vector CHECK (pg_temp.rt_check(VALUE))",
        evil_function("pg_temp", "cardinality", "text[]", "integer",
                      "RETURN pg_catalog.cardinality($1);", attacker, "pg_temp.cardinality"),
    ]
    leak = "'LEAK'::pg_catalog.text"
    for table, columns in (
        ("model", f"1 AS id, {leak} AS name, 1 AS active_version"),
        ("model_version", f"{arena.model_id} AS model_id, {arena.version} AS version,"
                          f" {leak} AS item_table, {leak} AS user_table"),
        ("recommendation", f"{arena.model_id} AS model_id, {arena.version} AS version,"
                           f" 'u1'::pg_catalog.text AS user_key, 1 AS rank,"
                           f" {leak} AS item_key, 9::real AS score"),
        ("similar_item", f"{leak} AS item_key, 1 AS rank, {leak} AS similar_item_key"),
        ("version_basis", "0 AS items"),
        ("pg_class", f"{leak} AS relname"),
        (arena.items_table, f"0 AS idx, {leak} AS key, 1000000 AS popularity"),
        (arena.users_table, f"0 AS idx, {leak} AS key"),
    ):
        out.append(f"CREATE TEMP TABLE {table} AS SELECT {columns}")
    return out


@pytest.mark.parametrize("who", ["reader", "worker"])
def test_temporary_objects_do_not_redirect_serving(arena: Arena, who: str) -> None:
    attacker = getattr(arena.roles, who)
    with arena.connect(attacker) as conn:
        for statement in temp_plants(arena, attacker):
            conn.execute(statement)
        conn.execute("SET search_path = pg_temp, \"$user\", public")
        now = serve(conn)
        read_views(conn, arena.views)
        changed = [k for k, v in arena.baseline["reader"].items() if now[k] != v]
        assert not changed, f"temporary objects changed what serving returns: {changed}"
        assert not arena.problems(conn, planters={attacker})
    arena.assert_intact(planters={attacker})


@pytest.mark.parametrize("who", ["reader", "worker"])
def test_plpgsql_compile_cache_attack(arena: Arena, who: str) -> None:
    """Plan §0: compile every recsys function first under a path where `vector`, `text` and
    `jsonb` are the attacker's temporary domains, then call the serving functions: a function
    without a pinned path would keep the attacker's types and run the domain check as its
    definer."""
    attacker = getattr(arena.roles, who)
    functions = arena.rows(
        "SELECT 'recsys.' || quote_ident(p.proname), array_agg(quote_ident(tn.nspname) || '.'"
        " || quote_ident(t.typname) ORDER BY a.n) FILTER (WHERE a.n IS NOT NULL)"
        " FROM pg_proc p LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY"
        " a (typ, n) ON true LEFT JOIN pg_type t ON t.oid = a.typ"
        " LEFT JOIN pg_namespace tn ON tn.oid = t.typnamespace"
        " WHERE p.pronamespace = 'recsys'::regnamespace AND p.prokind = 'f'"
        " AND p.prorettype <> 'trigger'::regtype GROUP BY p.oid, p.proname")
    with arena.connect(attacker) as conn:
        for statement in temp_plants(arena, attacker)[:4]:
            conn.execute(statement)
        conn.execute("SET statement_timeout = '5s'")
        conn.execute("SET search_path = pg_temp, public")
        for fn, types in functions:
            args = ", ".join(f"NULL::{t}" for t in types or [])
            attempt(conn, f"SELECT {fn}({args})")
        conn.execute("RESET search_path")
        now = serve(conn)
        changed = [k for k, v in arena.baseline["reader"].items() if now[k] != v]
        assert not arena.problems(conn, planters={attacker})
        assert not changed, f"serving changed after the compile-cache attack: {changed}"
    arena.assert_intact(planters={attacker})


# -- 5. planting in schema recsys ---------------------------------------------------------------


def planting_statements(arena: Arena, role: str) -> list[str]:
    """Objects an attacker would want in recsys (each must be refused)."""
    p, items, mid = arena.prefix, arena.items_table, arena.model_id
    statements = [
        f"CREATE TABLE recsys.m{mid}_v99_items (idx integer, key text)",
        f"CREATE TABLE recsys.{p}_t (x integer)",
        f"CREATE VIEW recsys.{p}_v AS SELECT 1 AS x",
        f"CREATE MATERIALIZED VIEW recsys.{p}_mv AS SELECT 1 AS x",
        f"CREATE SEQUENCE recsys.{p}_s",
        f"CREATE DOMAIN recsys.{p}_d AS integer",
        f"CREATE TYPE recsys.{p}_e AS ENUM ('a')",
        "CREATE FUNCTION recsys.als(factors integer) RETURNS jsonb LANGUAGE sql"
        " AS 'SELECT NULL::jsonb'",
        "CREATE FUNCTION recsys._check_k(k bigint) RETURNS void LANGUAGE sql AS ''",
        "CREATE OR REPLACE FUNCTION recsys._check_k(k integer) RETURNS void LANGUAGE sql AS ''",
        f"CREATE AGGREGATE recsys.{p}_agg(integer) (SFUNC = int4pl, STYPE = integer)",
        "CREATE OPERATOR recsys.= (LEFTARG = text, RIGHTARG = text, FUNCTION = texteq)",
        f"CREATE STATISTICS recsys.{p}_st ON idx, key FROM recsys.{items}",
        "ALTER FUNCTION recsys.recommend(text, text, integer, boolean) SET search_path = public",
        "ALTER FUNCTION recsys.recommend(text, text, integer, boolean) SECURITY INVOKER",
        "COMMENT ON FUNCTION recsys.recommend(text, text, integer, boolean) IS 'x'",
        "COMMENT ON TABLE recsys.model IS 'x'",
        "ALTER SCHEMA recsys RENAME TO recsys_x",
        "DROP FUNCTION recsys._check_k(integer)",
        f"DROP TABLE recsys.{items}",
        "CREATE TRIGGER rt AFTER UPDATE ON recsys.run FOR EACH ROW"
        " EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        "CREATE RULE rt AS ON INSERT TO recsys.run DO INSTEAD NOTHING",
        f"CREATE INDEX ON recsys.{items} (lower(key))",
        "CREATE POLICY rt ON recsys.model USING (true)",
        f"ALTER TABLE recsys.{items} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY rt ON recsys.{items} USING (true)",
        f"ALTER TABLE recsys.{items} ADD COLUMN x integer",
        f"ALTER TABLE recsys.recommendation ADD COLUMN {p}_x integer",
        "ALTER TABLE recsys.model_version DROP CONSTRAINT model_version_pkey",
        "REINDEX TABLE recsys.model",
        "TRUNCATE recsys.version_basis",
        # a relation created where the role may create, then moved into recsys
        f"CREATE TABLE public.{p}_moved (x integer); ALTER TABLE public.{p}_moved SET SCHEMA"
        " recsys",
    ]
    if role != arena.roles.worker:
        statements.append("LOCK TABLE recsys.recommendation IN ACCESS EXCLUSIVE MODE")
    return statements


@pytest.mark.parametrize("who", ["reader", "worker", "modeler", "stranger", "creator"])
def test_no_role_can_plant_or_change_objects_in_recsys(arena: Arena, who: str) -> None:
    role = getattr(arena.roles, who)
    with arena.connect(role) as conn:
        outcomes = {s: attempt(conn, *s.split("; ")) for s in planting_statements(arena, role)}
    allowed = [f"{s[:70]} -> {o or 'succeeded'}" for s, o in outcomes.items() if o != DENIED]
    assert not allowed, f"{len(allowed)} of {len(outcomes)} not refused: {allowed}"
    arena.assert_intact()


# -- 6. the worker rewriting the registry -------------------------------------------------------


def test_worker_cannot_rewrite_the_registry(arena: Arena) -> None:
    """Direct DML on the registry by the worker is impossible or re-validated (issue 11, attack
    2): nothing may point serving or training at a foreign relation."""
    mid, v = arena.model_id, arena.version
    where = f"WHERE model_id = {mid} AND version = {v}"
    injected = '{"n0": "x\\" FROM pg_authid --"}'
    cases: list[tuple[str, set[str] | None]] = [
        (f"UPDATE recsys.model_version SET item_table = 'pg_authid' {where}", {DENIED, "23514"}),
        (f"UPDATE recsys.model_version SET item_table = user_table {where}", {DENIED, "23514"}),
        ("UPDATE recsys.model SET source_schema = 'pg_catalog', source_table = 'pg_authid',"
         " user_column = 'rolpassword', item_column = 'rolconnlimit' WHERE name = 'm'",
         {DENIED}),
        (f"UPDATE recsys.model SET event_column = 'note', event_weights = {lit(injected)}"
         " WHERE name = 'm'", {DENIED, "22023"}),
        ("UPDATE recsys.model SET params = '{\"factors\": \"x\"}' WHERE name = 'm'",
         {DENIED, "22023"}),
        ("UPDATE recsys.model SET declarer = 'pg_read_all_data' WHERE name = 'm'", {DENIED}),
        ("DELETE FROM recsys.model", {DENIED}),
        ("UPDATE recsys.meta SET value = 'x'", {DENIED}),
        ("INSERT INTO recsys.meta (key, value) VALUES ('rt', 'x')", {DENIED}),
        ("UPDATE recsys.alembic_version SET version_num = '0001'", {DENIED}),
        ("INSERT INTO recsys.model (name, source_schema, source_table, user_column,"
         " item_column, params) VALUES ('rt', 'pg_catalog', 'pg_authid', 'rolpassword',"
         " 'rolconnlimit', '{}')", {DENIED}),
        ("INSERT INTO recsys.model_version (model_id, version, factors, user_table, item_table,"
         f" params) VALUES ({mid}, 99, 2, 'pg_authid', 'pg_authid', '{{}}')", {DENIED, "23514"}),
        ("UPDATE recsys.model_feature SET source_schema = 'pg_catalog'", {DENIED}),
        ("SET CONSTRAINTS ALL IMMEDIATE; INSERT INTO recsys.model_version (model_id, version,"
         f" factors, user_table, item_table, params) VALUES ({mid}, 98, 2, 'm{mid}_v98_users',"
         f" 'm{mid}_v98_items', '{{}}'); UPDATE recsys.model SET active_version = 98"
         " WHERE name = 'm'", None),
    ]
    with arena.connect(arena.roles.worker) as conn:
        outcomes = [(s, attempt(conn, *s.split("; ")), allowed) for s, allowed in cases]
    wrong = [f"{s[:90]} -> {o or 'succeeded'}" for s, o, allowed in outcomes
             if o is None or (allowed is not None and o not in allowed)]
    assert not wrong, f"{len(wrong)} registry rewrites not refused: {wrong}"
    arena.assert_intact()


def test_basis_is_written_by_the_worker_alone_and_checked_where_it_is_read(
        arena: Arena) -> None:
    """recsys.version_basis (the numbers recommend_for_items and explain solve with, written
    at training) is written by the worker and no other group; whatever the worker writes there,
    the definer functions reading it refuse a basis that does not fit the version, run no code
    of the worker's and stay within what it could already do by writing factors."""
    where = f"WHERE model_id = {arena.model_id} AND version = {arena.version}"
    for who in ("reader", "modeler", "stranger"):
        with arena.connect(getattr(arena.roles, who)) as conn:
            for statement in (f"UPDATE recsys.version_basis SET items = 0 {where}",
                              f"DELETE FROM recsys.version_basis {where}",
                              "INSERT INTO recsys.version_basis (model_id, version, k, items,"
                              f" gram) VALUES ({arena.model_id}, {arena.version}, 99, 1, '{{}}')"):
                assert attempt(conn, statement) == DENIED, (who, statement)
    basket = ("SELECT * FROM recsys.recommend_for_items('m', ARRAY['i1', 'i2']"
              "::pg_catalog.text[], 3)")
    # explain's half that reads the basis (its other half reads the source as its caller)
    explained = ("SELECT * FROM recsys._explain_scores('m', 'i2', 3, ARRAY['i1', 'i3']"
                 "::pg_catalog.text[], ARRAY[1, 2]::pg_catalog.float8[])")
    cases = [
        (f"DELETE FROM recsys.version_basis {where} AND k = 1", "XX001"),  # a column missing
        (f"UPDATE recsys.version_basis SET items = items + 1 {where}", "55000"),  # stale
        (f"UPDATE recsys.version_basis SET w_column = NULL, w_row = NULL {where}", "22000"),
        # a vector of another length
        (f"UPDATE recsys.version_basis SET w_column = '[1,2,3,4,5,6,7,8,9]' {where} AND k = 1",
         "22000"),
    ]
    with arena.connect(arena.roles.worker) as conn:
        for statement, sqlstate in cases:
            for query in (basket, explained):
                assert attempt(conn, statement, query) == sqlstate, (statement, query)
        assert not arena.problems(conn, planters={arena.roles.worker})
    arena.assert_intact(planters={arena.roles.worker})


def test_serving_derives_factor_table_names(arena: Arena) -> None:
    """Even rewritten by a superuser, the stored names are not used: serving derives them."""
    items, users, p = arena.items_table, arena.users_table, arena.prefix
    conn = arena.su
    with conn.transaction(force_rollback=True):
        for (name,) in arena.rows(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'recsys.model_version'"
                "::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%%item_table%%'"):
            conn.execute(sql.SQL("ALTER TABLE recsys.model_version DROP CONSTRAINT {}").format(
                sql.Identifier(name)))
        conn.execute(f"CREATE VIEW recsys.{p}_leak_items AS SELECT idx, 'LEAK-' || key AS key,"
                     f" factors, popularity FROM recsys.{items}")
        conn.execute(f"CREATE VIEW recsys.{p}_leak_users AS SELECT idx, 'LEAK-' || key AS key,"
                     f" factors, seen FROM recsys.{users}")
        conn.execute(f"GRANT SELECT ON recsys.{p}_leak_items, recsys.{p}_leak_users TO PUBLIC")
        conn.execute(f"UPDATE recsys.model_version SET item_table = '{p}_leak_items',"
                     f" user_table = '{p}_leak_users' WHERE model_id = {arena.model_id}"
                     f" AND version = {arena.version}")
        conn.execute(sql.SQL("SET LOCAL SESSION AUTHORIZATION {}").format(
            sql.Identifier(arena.roles.reader)))
        now = serve(conn)
    changed = {k: now[k] for k, v in arena.baseline["reader"].items() if now[k] != v}
    assert not changed, f"serving followed the stored table names: {list(changed)}"
    arena.assert_intact()


def test_serving_refuses_factor_tables_it_does_not_own(arena: Arena) -> None:
    """Swap the active version's item table for a worker-owned one whose row-level policy
    calls the worker's function: serving must refuse it (object_not_in_prerequisite_state)
    before reading it, and the policy must never run as the owner."""
    items, login = arena.items_table, arena.roles.worker
    conn = arena.su
    with conn.transaction(force_rollback=True):
        conn.execute(f"ALTER TABLE recsys.{items} RENAME TO {items}_real")
        conn.execute(f"CREATE TABLE recsys.{items} AS SELECT * FROM recsys.{items}_real")
        conn.execute(evil_function("public", f"{arena.prefix}_policy", "k text", "boolean",
                                   "RETURN true;", login, "policy on a swapped factor table"))
        conn.execute(f"ALTER FUNCTION public.{arena.prefix}_policy(text) OWNER TO {login}")
        conn.execute(f"ALTER TABLE recsys.{items} OWNER TO {login}")
        conn.execute(f"ALTER TABLE recsys.{items} ENABLE ROW LEVEL SECURITY")
        conn.execute(f"CREATE POLICY rt ON recsys.{items}"
                     f" USING (public.{arena.prefix}_policy(key))")
        conn.execute(sql.SQL("SET LOCAL SESSION AUTHORIZATION {}").format(
            sql.Identifier(arena.roles.reader)))
        now = serve(conn)
        found = arena.problems(conn, planters={login})
    assert not found, found
    assert now["recommend"] == arena.baseline["reader"]["recommend"]
    wrong = {k: now[k] for k in READS_FACTORS
             if k != "explain" and now[k] != "ObjectNotInPrerequisiteState"}
    assert not wrong, f"served from a factor table the owner does not own: {list(wrong)}"
    assert isinstance(now["explain"], str)
    arena.assert_intact()


SERVING_FUNCTIONS = ["recommend", "popular", "similar_items", "similar_users",
                     "interested_users", "score", "recommend_for_items", "recommend_filtered",
                     "explain"]


def hostile_argument(typ: str, ints: Iterator[int], names: list[str]) -> str:
    """A hostile value for an argument of type `typ` (pg_type.typname): the model's id, then
    its active version for integers; foreign or active relation names for names."""
    if typ in ("int2", "int4", "int8"):
        return str(next(ints, 1))
    if typ in ("text", "name", "regclass"):
        return "'pg_authid'"
    if typ == "_text":
        return "ARRAY[" + ", ".join(lit(n) for n in names) + "]"
    return {"bool": "true", "jsonb": "'{}'"}.get(typ, "NULL")


def test_worker_functions_refuse_foreign_and_active_tables(arena: Arena) -> None:
    """Every definer function the worker may call (the storage functions) and the partition
    dropper, called with the active version and with foreign names, in the worker's own
    transaction: nothing the active version or the registry needs may go."""
    mid, v, items, users = arena.model_id, arena.version, arena.items_table, arena.users_table
    names = ["model", "model_version", items, users, f"m{mid}_v{v}_recs", "x;y", "pg_authid"]
    functions = arena.rows(
        "SELECT 'recsys.' || quote_ident(p.proname), array_agg(quote_ident(tn.nspname) || '.'"
        " || quote_ident(t.typname) ORDER BY a.n) FILTER (WHERE a.n IS NOT NULL),"
        " array_agg(t.typname::text ORDER BY a.n) FILTER (WHERE a.n IS NOT NULL)"
        " FROM pg_proc p LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY"
        " a (typ, n) ON true LEFT JOIN pg_type t ON t.oid = a.typ"
        " LEFT JOIN pg_namespace tn ON tn.oid = t.typnamespace"
        " WHERE p.pronamespace = 'recsys'::regnamespace AND p.prosecdef AND p.prokind = 'f'"
        " AND p.proname <> ALL (%s) AND has_function_privilege(%s, p.oid, 'EXECUTE')"
        " GROUP BY p.oid, p.proname", (SERVING_FUNCTIONS, arena.roles.worker))
    calls = [f"SELECT recsys._drop_partitions({hostile_argument('_text', iter([]), names)})"]
    for fn, types, typnames in functions:
        ints = iter([mid, v, v])
        args = [f"{hostile_argument(typ, ints, names)}::{qualified}"
                for qualified, typ in zip(types or [], typnames or [], strict=True)]
        calls.append(f"SELECT {fn}({', '.join(args)})")
    with arena.connect(arena.roles.worker) as conn, conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL lock_timeout = '2s'")
        for call in calls:
            try:
                with conn.transaction():
                    conn.execute(call)
            except psycopg.Error:
                pass
        missing = [t for t in ("model", "model_version", "run", items, users)
                   if conn.execute("SELECT to_regclass(%s)", (f"recsys.{t}",)).fetchone()
                   == (None,)]
        now = serve(conn)
        found = arena.problems(conn)
    assert not missing, f"the worker dropped {missing} through {calls}"
    changed = [k for k, val in arena.baseline["reader"].items() if now[k] != val]
    assert not changed and not found, (changed, found)
    arena.assert_intact()


# -- 7. declaring sources ---------------------------------------------------------------------

CATALOG_SOURCES = [
    ("pg_catalog.pg_authid", "rolpassword", "rolconnlimit"),
    ("pg_catalog.pg_statistic", "staattnum", "stawidth"),
    ("information_schema.columns", "column_default", "ordinal_position"),
    ("recsys.model", "name", "source_table"),
]


@pytest.mark.parametrize("who", ["superuser", "modeler"])
def test_catalogs_and_temporary_tables_are_never_sources(arena: Arena, who: str) -> None:
    role = None if who == "superuser" else arena.roles.modeler
    with arena.connect(role) as conn:
        conn.execute(f"CREATE TEMP TABLE {arena.prefix}_tmp AS SELECT u, i FROM public.events"
                     if role is None else
                     f"CREATE TEMP TABLE {arena.prefix}_tmp (u text, i text)")
        sources = [*CATALOG_SOURCES, (f"pg_temp.{arena.prefix}_tmp", "u", "i")]
        outcomes = {
            src: attempt(conn, f"SELECT recsys.create_model('rt_cat', {lit(src)}::regclass,"
                               f" {lit(u)}, {lit(i)})")
            for src, u, i in sources}
    wrong = {src: o for src, o in outcomes.items() if o != DENIED}
    assert not wrong, f"declarations over catalogs not refused with {DENIED}: {wrong}"
    arena.assert_intact()


def test_worker_cannot_declare_models(arena: Arena) -> None:
    """Issue 11, attack 3: the worker declared a model over pg_authid."""
    with arena.connect(arena.roles.worker) as conn:
        outcomes = [attempt(conn, f"SELECT recsys.create_model('rt_w', {lit(src)}::regclass,"
                                  f" {lit(u)}, {lit(i)})")
                    for src, u, i in (("public.events", "u", "i"),
                                      ("pg_catalog.pg_authid", "rolpassword", "rolconnlimit"))]
    assert outcomes == [DENIED, DENIED]
    arena.assert_intact()


def test_unchecked_registry_row_over_a_catalog_is_never_trained(arena: Arena) -> None:
    """A registry row that bypassed create_model's checks (triggers off) pointing at pg_authid:
    neither the worker nor a superuser trains it."""
    has_declarer = bool(arena.rows(
        "SELECT 1 FROM pg_attribute WHERE attrelid = 'recsys.model'::regclass"
        " AND attname = 'declarer' AND NOT attisdropped"))
    with arena.su.transaction():
        arena.su.execute("SET LOCAL session_replication_role = replica")
        arena.su.execute(
            "INSERT INTO recsys.model (name, source_schema, source_table, user_column,"
            " item_column, params" + (", declarer" if has_declarer else "") + ")"
            f" VALUES ('rt_legacy', 'pg_catalog', 'pg_authid', 'rolpassword', 'rolconnlimit',"
            f" {PARAMS}" + (f", {lit(arena.roles.modeler)}::regrole" if has_declarer else "")
            + ")")
    for role in (arena.roles.worker, None):
        with pytest.raises(REFUSED):
            training.train(arena.url_for(role), "rt_legacy")
    assert arena.rows("SELECT active_version FROM recsys.model WHERE name = 'rt_legacy'") == [
        (None,)]
    assert arena.rows("SELECT count(*) FROM recsys.model_version v JOIN recsys.model m"
                      " ON m.id = v.model_id WHERE m.name = 'rt_legacy'") == [(0,)]
    arena.assert_intact()


def test_declarer_must_read_every_column_it_uses(arena: Arena) -> None:
    modeler = arena.roles.modeler
    with pytest.raises(errors.InsufficientPrivilege):
        arena.declare("rt_secret", "public.secret", by=modeler)
    columns = arena.make_login("cols", "recsys_modeler")
    arena.su.execute(sql.SQL("GRANT SELECT (u) ON public.events TO {}").format(
        sql.Identifier(columns)))
    with pytest.raises(errors.InsufficientPrivilege, match=r"column i\b"):
        arena.declare("rt_c1", "public.events", weight=None, by=columns)
    arena.su.execute(sql.SQL("GRANT SELECT (i) ON public.events TO {}").format(
        sql.Identifier(columns)))
    with pytest.raises(errors.InsufficientPrivilege, match=r"column w\b"):
        arena.declare("rt_c2", "public.events", by=columns)
    assert arena.declare("rt_c3", "public.events", weight=None, by=columns) == columns
    arena.assert_intact()


def test_revoked_source_stops_training_and_the_active_version_stays(arena: Arena) -> None:
    modeler = arena.roles.modeler
    arena.declare("rt_rev", "public.events")
    first = arena.train("rt_rev").version
    arena.su.execute(sql.SQL("REVOKE SELECT ON public.events FROM {}").format(
        sql.Identifier(modeler)))
    arena.undo.append(f"GRANT SELECT ON public.events TO {modeler}")
    with pytest.raises(REFUSED):
        arena.train("rt_rev")
    with pytest.raises(REFUSED):  # nor may a superuser read it on the modeler's behalf
        arena.train("rt_rev", as_superuser=True)
    assert arena.rows("SELECT active_version FROM recsys.model WHERE name = 'rt_rev'") == [
        (first,)]
    with arena.connect(arena.roles.reader) as conn:
        assert len(conn.execute("SELECT * FROM recsys.recommend('rt_rev', 'u1', 3)")
                   .fetchall()) == 3
    arena.su.execute(sql.SQL("GRANT SELECT ON public.events TO {}").format(sql.Identifier(modeler)))
    assert arena.train("rt_rev").status == "succeeded"
    arena.assert_intact()


def test_model_of_a_dropped_declarer_is_never_trained(arena: Arena) -> None:
    """The declarer is dropped (and its name reused by a role with more rights): nobody may
    read the source on its behalf any more."""
    gone = arena.make_login("gone", "recsys_modeler")
    arena.su.execute(sql.SQL("GRANT SELECT ON public.events TO {}").format(sql.Identifier(gone)))
    arena.declare("rt_gone", "public.events", by=gone)
    arena.su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(gone)))
    arena.su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(gone)))
    arena.su.execute(sql.SQL("CREATE ROLE {} NOLOGIN IN ROLE pg_read_all_data").format(
        sql.Identifier(gone)))
    arena.su.execute(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(
        sql.Identifier(gone), sql.Identifier(arena.roles.worker)))
    arena.undo.append(f"REVOKE {gone} FROM {arena.roles.worker}")
    for as_superuser in (False, True):
        with pytest.raises(REFUSED):
            arena.train("rt_gone", as_superuser=as_superuser)
    assert arena.rows("SELECT active_version FROM recsys.model WHERE name = 'rt_gone'") == [
        (None,)]
    arena.revert()
    arena.assert_intact()


def test_superuser_will_not_train_what_a_non_superuser_declared(arena: Arena) -> None:
    """A superuser session would read past the declarer's grants and row-level security."""
    arena.declare("rt_sup", "public.events")
    with pytest.raises(RecsysError):
        arena.train("rt_sup", as_superuser=True)
    assert arena.rows("SELECT active_version FROM recsys.model WHERE name = 'rt_sup'") == [
        (None,)]
    arena.assert_intact()


# -- 8. row-level security, column privileges, security_invoker views --------------------------


def test_training_reads_the_source_under_the_declarers_row_level_security(arena: Arena) -> None:
    modeler = arena.roles.modeler
    arena.su.execute("ALTER TABLE public.events ENABLE ROW LEVEL SECURITY")
    arena.undo.append("ALTER TABLE public.events DISABLE ROW LEVEL SECURITY")
    arena.su.execute(sql.SQL("CREATE POLICY rt_hide_u1 ON public.events FOR SELECT TO {}"
                             " USING (u <> 'u1')").format(sql.Identifier(modeler)))
    arena.declare("rt_rls", "public.events")
    arena.train("rt_rls")
    with arena.connect(arena.roles.reader) as reader:
        with pytest.raises(errors.NoDataFound):
            reader.execute("SELECT * FROM recsys.similar_users('rt_rls', 'u1', 3)")
        assert reader.execute("SELECT users FROM recsys.versions"
                              " WHERE model = 'rt_rls' AND active").fetchall() == [(7,)]
    arena.assert_intact()


def test_explain_respects_the_readers_row_level_security(arena: Arena) -> None:
    """Issue 11, attack 4: explain read a user's history past the reader's policy."""
    reader = arena.roles.reader
    arena.su.execute(sql.SQL("GRANT SELECT ON public.events TO {}").format(sql.Identifier(reader)))
    arena.undo.append(f"REVOKE SELECT ON public.events FROM {reader}")
    arena.su.execute("ALTER TABLE public.events ENABLE ROW LEVEL SECURITY")
    arena.undo.append("ALTER TABLE public.events DISABLE ROW LEVEL SECURITY")
    arena.su.execute(sql.SQL("CREATE POLICY rt_hide_u1 ON public.events FOR SELECT TO {}"
                             " USING (u <> 'u1')").format(sql.Identifier(reader)))
    explain = "SELECT * FROM recsys.explain('m', %s, 'i2')"
    with arena.connect(reader) as conn:
        assert conn.execute(explain, ("u1",)).fetchall() == []
        assert conn.execute(explain, ("u3",)).fetchall() != []
    with arena.connect() as conn:
        assert conn.execute(explain, ("u1",)).fetchall() != []
    arena.revert()
    arena.assert_intact()


def test_explain_respects_the_readers_column_privileges(arena: Arena) -> None:
    reader = arena.roles.reader
    arena.su.execute(sql.SQL("GRANT SELECT (u, i) ON public.events TO {}").format(
        sql.Identifier(reader)))
    arena.undo.append(f"REVOKE SELECT (u, i) ON public.events FROM {reader}")
    with arena.connect(reader) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM recsys.explain('m', 'u1', 'i2')")
    arena.revert()
    arena.assert_intact()


def test_security_invoker_view_over_a_secret(arena: Arena) -> None:
    """SELECT on a security_invoker view is no right to the table under it: training as the
    declarer fails, and explain reads the view as its caller."""
    modeler, reader = arena.roles.modeler, arena.roles.reader
    arena.su.execute("CREATE VIEW public.rt_sv WITH (security_invoker = true)"
                     " AS SELECT u, i, w FROM public.secret")
    arena.su.execute(sql.SQL("GRANT SELECT ON public.rt_sv TO {}, {}").format(
        sql.Identifier(modeler), sql.Identifier(reader)))
    try:
        arena.declare("rt_sv", "public.rt_sv")
    except errors.InsufficientPrivilege:
        pass  # refusing it at declaration is as good
    else:
        with pytest.raises(REFUSED):  # permission denied for table secret
            arena.train("rt_sv")
        assert arena.rows("SELECT active_version FROM recsys.model WHERE name = 'rt_sv'") == [
            (None,)]
    arena.declare("rt_sv_su", "public.rt_sv", as_superuser=True)
    arena.train("rt_sv_su", as_superuser=True)
    with arena.connect(reader) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM recsys.explain('rt_sv_su', 'S-u1', 'S-i1')")
    arena.assert_intact()


# -- 9. code in a declarer's source -------------------------------------------------------------


def test_sources_are_read_as_the_declarer(arena: Arena) -> None:
    """A view that tags every item with current_user: the trained keys name the role that read
    the source."""
    modeler = arena.roles.modeler
    arena.execute_as(modeler, f"CREATE VIEW {arena.lab}.who AS SELECT u,"
                              " current_user || ':' || i AS i, w FROM public.events")
    arena.declare("rt_who", f"{arena.lab}.who")
    arena.train("rt_who")
    keys = {k for (k,) in arena.rows("SELECT item_key FROM recsys.popular('rt_who', 100)")}
    assert keys and {k.split(":")[0] for k in keys} == {modeler}
    arena.assert_intact()


def test_a_source_cannot_escape_the_declarers_role(arena: Arena) -> None:
    """A function in the declarer's view resets the role to the worker login mid-read and
    writes: the run fails, and nothing it wrote as the worker stays."""
    modeler = arena.roles.modeler
    arena.execute_as(
        modeler,
        f"CREATE FUNCTION {arena.lab}.escape(x text) RETURNS text LANGUAGE plpgsql AS $f$\n"
        "BEGIN\n    PERFORM pg_catalog.set_config('role', 'none', true);\n"
        "    BEGIN INSERT INTO public.canary (who, what) VALUES (current_user, 'escaped');\n"
        "    EXCEPTION WHEN OTHERS THEN NULL; END;\n"
        "    BEGIN UPDATE recsys.run SET error = 'pwned';\n"
        "    EXCEPTION WHEN OTHERS THEN NULL; END;\n    RETURN x;\nEND\n$f$",
        f"CREATE VIEW {arena.lab}.esc AS SELECT {arena.lab}.escape(u) AS u, i, w"
        " FROM public.events")
    arena.declare("rt_esc", f"{arena.lab}.esc")
    with pytest.raises(RecsysError, match="role"):
        arena.train("rt_esc")
    assert arena.rows("SELECT count(*) FROM recsys.run WHERE error = 'pwned'") == [(0,)]
    assert arena.rows("SELECT active_version FROM recsys.model WHERE name = 'rt_esc'") == [
        (None,)]
    arena.assert_intact(planters={modeler})


# -- 10. roles that must get nothing ------------------------------------------------------------


def test_stranger_is_denied_everything(arena: Arena) -> None:
    with arena.connect(arena.roles.stranger) as conn:
        outcomes = serve(conn)
        views = {v: attempt(conn, f"SELECT * FROM recsys.{v}") for v in arena.views}
        manage = [attempt(conn, s) for s in (
            "SELECT recsys.create_model('rt_x', 'public.events', 'u', 'i')",
            "SELECT recsys.request_refresh('m')", "SELECT recsys.drop_model('m')",
            "SELECT recsys.alter_model('m', refresh_every => '1 hour')")]
    assert set(outcomes.values()) == {"InsufficientPrivilege"}, outcomes
    assert set(views.values()) == {DENIED}, views
    assert manage == [DENIED] * 4
    arena.assert_intact()


def test_reader_cannot_manage_models(arena: Arena) -> None:
    with arena.connect(arena.roles.reader) as conn:
        outcomes = {s: attempt(conn, s) for s in (
            "SELECT recsys.create_model('rt_x', 'public.events', 'u', 'i')",
            "SELECT recsys.request_refresh('m')", "SELECT recsys.drop_model('m')",
            "SELECT recsys.alter_model('m', refresh_every => '1 hour')",
            f"SELECT recsys.rollback('m', {arena.version})",
            "SELECT * FROM recsys.model", "SELECT * FROM public.events",
            f"SELECT * FROM recsys.{arena.items_table}")}
    assert set(outcomes.values()) == {DENIED}, outcomes
    arena.assert_intact()


def test_alter_model_needs_a_manager_and_the_new_declarers_rights(arena: Arena) -> None:
    """Another modeler may not change a model it did not declare, the worker may not change
    one at all, and whoever points a model at a source makes its own rights the ones that
    read it: a relation it may not read is refused. Nothing changes on refusal."""
    other = arena.make_login("alt", "recsys_modeler")
    alter = "SELECT recsys.alter_model('m', refresh_every => '1 hour')"
    with arena.connect(other) as conn:
        by_other = attempt(conn, alter)
    with arena.connect(arena.roles.worker) as conn:
        by_worker = attempt(conn, alter)
    arena.su.execute("CREATE TABLE public.rt_secret AS SELECT u, i FROM public.events")
    arena.undo.append("DROP TABLE IF EXISTS public.rt_secret")
    with arena.connect(arena.roles.modeler) as conn:
        by_declarer = attempt(conn, alter)  # rolled back, as every attempt
        unreadable = attempt(conn, "SELECT recsys.alter_model('m', source => 'public.rt_secret')")
    assert (by_other, by_worker, by_declarer, unreadable) == (DENIED, DENIED, None, DENIED)
    assert arena.rows("SELECT count(*) FROM recsys.model_change") == [(0,)]
    arena.assert_intact()


# -- 11. hostile names ----------------------------------------------------------------------------


def test_hostile_names_through_the_whole_cycle(arena: Arena) -> None:
    schema, table = 'rt we"ird.s', "ev'ts;x"
    model = "m'\"; DROP TABLE public.canary; -- %s%I"
    qualified = sql.Identifier(schema, table)
    arena.su.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
        sql.Identifier(schema), sql.Identifier(arena.roles.modeler)))
    with arena.connect(arena.roles.modeler) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT u AS {}, i AS {}, w AS {}"
                             " FROM public.events").format(
            qualified, sql.Identifier('u"ser'), sql.Identifier("it em"), sql.Identifier("w't")))
    source = qualified.as_string(arena.su)
    declared = arena.declare(model, source, 'u"ser', "it em", "w't", fallback=True)
    arena.train(model, as_superuser=declared == SUPERUSER)
    with arena.connect(arena.roles.reader) as conn:
        now = serve(conn, model=model)
    errors_seen = {k: v for k, v in now.items() if isinstance(v, str) and k != "explain"}
    assert not errors_seen, errors_seen
    assert len(now["recommend"]) == 3 and now["explain"] == "InsufficientPrivilege"
    arena.assert_intact()


# -- 12. a managed database: owner, not superuser -------------------------------------------------


def test_managed_database_owner_runs_the_whole_cycle(arena: Arena) -> None:
    """Issue 11's managed-Postgres case: install, declare, train, fold in and run the worker as
    a database owner that is no superuser, with vector created by an administrator."""
    p = arena.prefix
    owner, reader, name = f"{p}_dbo", f"{p}_mreader", f"{p}_managed"
    url = database_url(arena.server_url, name)
    with psycopg.connect(arena.server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(owner)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE recsys_reader").format(
            sql.Identifier(reader)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template1").format(
            sql.Identifier(name), sql.Identifier(owner)))
        if arena.role_exists("recsys_owner"):
            admin.execute(sql.SQL("GRANT recsys_owner TO {}").format(sql.Identifier(owner)))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
        owner_url = make_conninfo(url, user=owner)
        install.install(owner_url)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.ev AS SELECT 'u' || (g % 8) AS u,"
                         " 'i' || ((g * 5) % 12) AS i FROM generate_series(1, 96) g")
            conn.execute(f"SELECT recsys.create_model('mm', 'public.ev', 'u', 'i',"
                         f" params => {W_PARAMS})")
        assert training.train(owner_url, "mm").status == "succeeded"
        assert foldin.fold_in(owner_url, "mm").status == "succeeded"
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute("SELECT recsys.request_refresh('mm')")
        assert worker.Worker(owner_url, worker.WorkerOptions(once=True, poll=0.1, lease=5),
                             worker.Events(quiet=True)).run() == 0
        with psycopg.connect(make_conninfo(url, user=reader), autocommit=True) as conn:
            assert len(conn.execute("SELECT * FROM recsys.recommend('mm', 'u1', 3)")
                       .fetchall()) == 3
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'recsys'::regnamespace"
                " AND p.proowner <> 'recsys_owner'::regrole").fetchall() == [(0,)]
    finally:
        drop_database(arena.server_url, name)
        with psycopg.connect(arena.server_url, autocommit=True) as admin:
            # memberships the owner granted while installing keep it from being dropped
            for (statement,) in admin.execute(
                    "SELECT format('REVOKE %%s FROM %%s GRANTED BY %%s', a.roleid::regrole,"
                    " a.member::regrole, a.grantor::regrole) FROM pg_auth_members a"
                    " WHERE a.grantor = (SELECT oid FROM pg_roles WHERE rolname = %s)",
                    (owner,)).fetchall():
                admin.execute(statement)
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(reader)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))
    arena.assert_intact()
