"""Read sources with the rights of the role that declared the model (``recsys.model.declarer``).

Every statement that reads a source runs inside ``as_declarer``, which checks that the declarer
may read the columns used, then switches to it with ``SET LOCAL ROLE`` (so that its column
privileges and row-level security apply) and back. The worker creates every temporary table
itself and grants the declarer only what those statements need on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from recsys_db import queries
from recsys_db.errors import ConfigError, RecsysError
from recsys_db.model import ModelConfig, SourceRelation

# Privileges the worker may grant the declarer on its temporary tables.
TEMP_PRIVILEGES = frozenset({"SELECT", "INSERT", "SELECT, INSERT"})


def check_source(conn: psycopg.Connection, model: ModelConfig,
                 relation: SourceRelation | None = None) -> None:
    """Raise unless the model's declarer may read ``relation`` (default: the model's source).

    ``recsys._check_source`` refuses system catalogs, recsys's own tables and temporary tables
    as sources, an unknown declarer, and a declarer that may not read one of the columns
    (psycopg's InsufficientPrivilege, naming the column). ConfigError when the relation does
    not exist.
    """
    relation = relation or model.relation
    row = conn.execute(queries.text("access_check_source"), {
        "schema": relation.schema, "table": relation.table, "declarer": model.declarer,
        "columns": list(relation.columns)}).fetchone()
    if row is None:
        raise ConfigError(f'{relation.what} relation "{relation.label}" of model "{model.name}" '
                          "does not exist")


@dataclass(frozen=True)
class _Session:
    """Who the session is, as ``as_declarer`` found it before switching."""

    current: str  # current_user
    role_setting: str  # the role setting to restore ('none': the login itself)
    login: str  # session_user
    login_sql: str  # session_user as SQL writes it
    declarer_sql: str
    declarer_super: bool | None  # None: no such role


def _checked_session(conn: psycopg.Connection, model: ModelConfig,
                     relation: SourceRelation) -> _Session:
    row = conn.execute(queries.text("access_session"), {"declarer": model.declarer}).fetchone()
    assert row is not None
    current, role_setting, login, login_super, declarer_super, login_sql, declarer_sql = row
    if login_super and declarer_super is False:
        raise ConfigError(
            f'worker login "{login}" is a superuser and model "{model.name}" was declared by '
            f'"{model.declarer}", which is not: code in {relation.what} could leave SET ROLE '
            "and run as the superuser; nothing was read\n"
            "HINT: run the worker as a login that is not a superuser, granted the declarer: "
            f"GRANT {declarer_sql} TO <worker login> WITH INHERIT FALSE, SET TRUE")
    check_source(conn, model, relation)
    return _Session(current, role_setting, login, login_sql, declarer_sql, declarer_super)


def check_access(conn: psycopg.Connection, model: ModelConfig,
                 relation: SourceRelation | None = None) -> None:
    """The checks every ``as_declarer`` block starts with, for a run to make before anything.

    Raises ConfigError when the worker login is a superuser and the declarer is not (code in
    a source can leave ``SET ROLE``, and would then run as the superuser), and whatever
    ``check_source`` raises.
    """
    _checked_session(conn, model, relation or model.relation)


@contextmanager
def as_declarer(conn: psycopg.Connection, model: ModelConfig,
                relation: SourceRelation | None = None, *,
                grants: Mapping[str, str] | None = None) -> Iterator[Callable[[], None]]:
    """Run the statements of the block with the rights of the role that declared ``model``.

    Must be entered inside a transaction, by the worker as itself. In order:

    - ``check_access`` (``relation`` defaults to the model's source);
    - unless the declarer is already the current role (a superuser that declares and trains,
      say): grants the declarer ``grants`` (temporary table -> "SELECT", "INSERT" or
      "SELECT, INSERT") and ``SET LOCAL ROLE`` to it; a worker login that may not gets a
      ConfigError saying which GRANT it needs;
    - after the block, unless it raised (the transaction is aborted then, and rolls the role
      back with everything else): checks that the current role is still the one the block
      ran as, and raises RecsysError otherwise (a function in the source changed it); then
      sets the role the session had before, for the session, so that nothing a source set
      outlives the block.

    It yields that check of the role, for blocks of several statements to run between them:
    a statement that follows a change of role would run as the worker login, and fail on a
    source that only the declarer may read, with a less telling error.
    """
    relation = relation or model.relation
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        raise RuntimeError("as_declarer needs an open transaction")
    session = _checked_session(conn, model, relation)
    assert model.declarer is not None  # check_source refuses an unknown declarer
    switch = model.declarer != session.current
    if switch:
        role = sql.Identifier(model.declarer)
        for table, privileges in (grants or {}).items():
            if privileges not in TEMP_PRIVILEGES:
                raise ValueError(f"cannot grant {privileges!r} on {table}")
            conn.execute(queries.compose("access_grant_temp", privileges=sql.SQL(privileges),
                                         table=sql.Identifier(table), role=role))
        try:
            conn.execute(queries.compose("access_set_role", role=role))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ConfigError(_may_not_act_as(model, session)) from exc
    expected = model.declarer if switch else session.current

    def check(role: str | None) -> None:
        if role != expected:
            raise RecsysError(
                f'{relation.what} of model "{model.name}" changed the session role: reading '
                f'{relation.label} left it "{role}" instead of "{expected}"')

    def check_role() -> None:
        row = conn.execute(queries.text("access_current_role")).fetchone()
        check(None if row is None else row[0])

    yield check_role
    # current_user is read before set_config runs: select-list items are evaluated in order
    after = conn.execute(queries.text("access_leave"),
                         {"role": session.role_setting}).fetchone()
    check(None if after is None else after[0])


def _may_not_act_as(model: ModelConfig, session: _Session) -> str:
    if session.declarer_super:
        hint = (f'"{model.declarer}" is a superuser, and a worker granted it could become one: '
                "declare the model as a role that is not a superuser and may read its source, "
                f"and GRANT that role TO {session.login_sql} WITH INHERIT FALSE, SET TRUE")
    else:
        hint = (f"GRANT {session.declarer_sql} TO {session.login_sql} "
                "WITH INHERIT FALSE, SET TRUE")
    return (f'worker login "{session.login}" may not act as "{model.declarer}", the role that '
            f'declared model "{model.name}"\nHINT: {hint}')
