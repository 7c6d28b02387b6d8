"""Install and upgrade the ``recsys`` schema: alembic revisions, then the idempotent SQL files."""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass

import psycopg
import sqlalchemy
from alembic import command
from alembic.config import Config
from psycopg import sql

from recsys_db import db, queries, resources, versions
from recsys_db.errors import RecsysError

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every recsys-db process.
INSTALL_LOCK = 0x7265637379730001


@dataclass(frozen=True)
class InstallResult:
    """What an install changed."""

    revision: str
    sql_applied: bool
    postgres: str
    pgvector: str


def _sql_files() -> list[tuple[str, str]]:
    files = sorted(resources.sql_dir().glob("[0-9][0-9][0-9]-*.sql"))
    return [(path.name, path.read_text(encoding="utf-8")) for path in files]


# In the SQL files, the schema of the vector extension: every pgvector type, operator, function
# and operator class is named with it, since no recsys function has that schema on its path.
VECTOR_TOKEN = "@vector@"


def render(text: str, vector_schema: sql.Identifier, conn: psycopg.Connection) -> str:
    """A SQL file with ``@vector@`` replaced by the quoted schema of the vector extension."""
    return text.replace(VECTOR_TOKEN, vector_schema.as_string(conn))


def sql_hash(vector_schema: str, pgvector: str) -> str:
    """Fingerprint of what install applies: the shipped SQL files, the newest alembic revision
    (new tables get their owner and grants), the vector extension's schema (written into the
    files) and version (features of newer ones are switched on). Install re-applies the files
    only when it changes."""
    digest = hashlib.sha256()
    for name, text in _sql_files():
        digest.update(name.encode())
        digest.update(text.encode())
    digest.update(f"revision {head_revision()}".encode())
    digest.update(f"vector schema {vector_schema}".encode())
    digest.update(f"pgvector {pgvector}".encode())
    return digest.hexdigest()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.alembic_dir()))
    return cfg


def head_revision() -> str:
    """The newest alembic revision this package ships."""
    return known_revisions()[-1]


@functools.cache
def known_revisions() -> tuple[str, ...]:
    """The alembic revisions this package ships, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config())
    return tuple(reversed([script.revision for script in scripts.walk_revisions()]))


def check_schema(conn: psycopg.Connection) -> None:
    """Refuse to train on a database whose recsys tables are not the ones this package was
    written for: not installed, an older revision (run install), or a newer one (a newer
    recsys-db installed it, and this one would write what that one no longer reads)."""
    installed = _scalar(conn, queries.text("install_has_revision_table"))
    if not installed:
        raise RecsysError("recsys is not installed in this database; run: recsys-db install")
    revision = str(_scalar(conn, queries.text("install_current_revision")))
    known = known_revisions()
    if revision not in known:
        raise RecsysError(
            f"the recsys schema is at revision {revision}, which this recsys-db "
            f"(up to {known[-1]}) does not know; upgrade recsys-db")
    if revision != known[-1]:
        raise RecsysError(
            f"the recsys schema is at revision {revision} and this recsys-db needs "
            f"{known[-1]}; run: recsys-db install")


def _pinned_connection(url: str) -> psycopg.Connection:
    conn = db.connect(url, autocommit=False, vector=False, pinned=True)
    return conn


def _upgrade_tables(url: str) -> str:
    # the revisions run with the pinned search_path too: a default or a view they create binds
    # its functions when created, and none may bind to a look-alike in a writable schema
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: _pinned_connection(url),
        poolclass=sqlalchemy.NullPool
    )
    cfg = _alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
        revision = connection.exec_driver_sql(
            queries.text("install_current_revision")).scalar_one()
    engine.dispose()
    return str(revision)


def _pin(conn: psycopg.Connection) -> None:
    """The rest of the transaction runs with the search_path of every recsys function."""
    conn.execute(queries.text("install_pin_search_path"), {"path": db.PINNED_SEARCH_PATH})


def _check_vector_schema(conn: psycopg.Connection) -> tuple[int, str]:
    """The vector extension's schema (oid, name); RecsysError when roles other than trusted ones
    may create objects in it (a look-alike of a pgvector function or operator there could be
    picked by name)."""
    row = conn.execute(queries.text("install_vector_schema")).fetchone()
    if row is None:
        raise RecsysError("extension vector is not installed in this database")
    oid, name, shown = int(row[0]), str(row[1]), str(row[2])
    writers = [r[0] for r in conn.execute(queries.text("install_schema_writers"),
                                          {"schema": oid})]
    if writers:
        revoke = "; ".join(f"REVOKE CREATE ON SCHEMA {shown} FROM {w}" for w in writers)
        raise RecsysError(
            f"schema {shown}, which holds extension vector, is writable by "
            f"{', '.join(writers)}: {revoke}, or ALTER EXTENSION vector SET SCHEMA <a schema "
            "only trusted roles can write>")
    return oid, name


def install(url: str) -> InstallResult:
    """Create or upgrade the recsys schema; running it again changes nothing.

    Runs as a superuser, or as a role that may create roles (or finds recsys's four roles
    created by an administrator) and is, or may become, a member of recsys_owner, which owns
    everything recsys creates. Refuses a vector extension in a schema that roles other than
    the installer, superusers and the database's owner may write.
    """
    with db.connect(url, vector=False) as conn:
        db.require_writable(conn, "install")
        conn.execute(queries.text("install_lock"), {"key": INSTALL_LOCK})
        try:
            with conn.transaction():
                server = _server(conn)
                versions.check(server)
                had_vector = server.pgvector_installed is not None
                if not had_vector:
                    _create_vector(conn)
                    server = _server(conn)
                _pin(conn)
                _, vector_schema = _check_vector_schema(conn)
                conn.execute(queries.text("install_roles"))
                conn.execute(queries.text("install_schema"))
            revision = _upgrade_tables(url)
            with conn.transaction():
                _pin(conn)
                if not had_vector:
                    conn.execute(queries.text("install_remember_extension"))
                assert server.pgvector is not None
                wanted = sql_hash(vector_schema, server.pgvector)
                current = conn.execute(queries.text("install_sql_hash")).fetchone()
                applied = current is None or current[0] != wanted
                if applied:
                    schema = sql.Identifier(vector_schema)
                    # loads pgvector's library, which defines its settings (hnsw.*): a role that
                    # is no superuser may name them in a function's SET clause only then
                    conn.execute(queries.compose("install_load_vector", vector=sql.Identifier(
                        vector_schema, "vector")))
                    for name, text in _sql_files():
                        log.info("applying %s", name)
                        conn.execute(render(text, schema, conn).encode())
                    if server.iterative_scan:
                        conn.execute(queries.compose("install_iterative_scan", vector=schema))
                    conn.execute(queries.text("install_set_sql_hash"), {"hash": wanted})
        finally:
            conn.execute(queries.text("install_unlock"), {"key": INSTALL_LOCK})
    return InstallResult(revision=revision, sql_applied=applied, postgres=server.postgres,
                         pgvector=server.pgvector)


def _server(conn: psycopg.Connection) -> versions.Server:
    row = conn.execute(queries.text("install_server_versions")).fetchone()
    assert row is not None
    return versions.Server(postgres_num=int(row[0]), postgres=str(row[1]),
                           pgvector_installed=row[2], pgvector_available=row[3])


def _create_vector(conn: psycopg.Connection) -> None:
    """CREATE EXTENSION vector, in the session's default schema as any extension; pgvector is
    not a trusted extension, so only a superuser may (hosted services let their admin role)."""
    try:
        with conn.transaction():
            conn.execute(queries.text("install_create_vector"))
    except psycopg.errors.InsufficientPrivilege as exc:
        database, user = conn.info.dbname, conn.info.user
        raise RecsysError(
            f"extension vector is not installed in database {database} and role {user} may not"
            f" create it: have an administrator run CREATE EXTENSION vector in database "
            f"{database}") from exc


@dataclass(frozen=True)
class UninstallResult:
    """What an uninstall removed and what it had to keep."""

    dropped_dependents: list[str]
    dropped_extension: bool
    dropped_roles: list[str]
    kept: list[str]


def _scalar(conn: psycopg.Connection, query: str) -> object:
    row = conn.execute(query).fetchone()
    return row[0] if row else None


def uninstall(url: str, *, force: bool = False) -> UninstallResult:
    """Remove schema recsys and what install created (the vector extension when recsys created
    it and nothing else uses it; the recsys roles when no other database still uses them).

    Views of yours that call recsys functions would be dropped with it: without ``force`` that
    is refused with the list of those views.
    """
    kept: list[str] = []
    with db.connect(url, vector=False) as conn:
        if not is_installed(conn):
            raise RecsysError("recsys is not installed in this database")
        dependents = [r[0] for r in conn.execute(queries.text("uninstall_dependents"))]
        if dependents and not force:
            raise RecsysError(
                f"cannot uninstall: {len(dependents)} of your objects use recsys: "
                f"{', '.join(dependents)}; drop them first or pass --force to drop them too")
        state = conn.execute(queries.text("uninstall_state")).fetchone()
        assert state is not None
        created_extension, vector_schema = state
        roles = [r[0] for r in conn.execute(queries.text("uninstall_recsys_roles"))]
        with conn.transaction():
            conn.execute(queries.text("uninstall_drop_schema"))
            for role in roles:
                conn.execute(queries.compose("uninstall_revoke_vector", schema=sql.Identifier(
                    vector_schema), role=sql.Identifier(role)))
        dropped_extension = False
        if created_extension:
            try:
                with conn.transaction():
                    conn.execute(queries.text("uninstall_drop_vector"))
                dropped_extension = True
            except psycopg.errors.DependentObjectsStillExist:
                kept.append("extension vector (other objects use it)")
        dropped_roles = []
        for role in roles:
            try:
                with conn.transaction():
                    conn.execute(queries.compose("uninstall_drop_role", role=sql.Identifier(role)))
                dropped_roles.append(role)
            except psycopg.errors.DependentObjectsStillExist:
                kept.append(f"role {role} (still used in another database)")
    return UninstallResult(dropped_dependents=dependents, dropped_extension=dropped_extension,
                           dropped_roles=dropped_roles, kept=kept)


def is_installed(conn: psycopg.Connection) -> bool:
    """True when the recsys schema has been installed in this database."""
    row = conn.execute(queries.text("install_is_installed")).fetchone()
    return bool(row and row[0])
