"""Install and upgrade the ``recsys`` schema: alembic revisions, then the idempotent SQL files."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import psycopg
import sqlalchemy
from alembic.config import Config

from alembic import command
from recsys_db import db, resources

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every recsys-db process.
INSTALL_LOCK = 0x7265637379730001


@dataclass(frozen=True)
class InstallResult:
    """What an install changed."""

    revision: str
    sql_applied: bool


def _sql_files() -> list[tuple[str, str]]:
    files = sorted(resources.sql_dir().glob("[0-9][0-9][0-9]-*.sql"))
    return [(path.name, path.read_text(encoding="utf-8")) for path in files]


def sql_hash() -> str:
    """Fingerprint of the shipped SQL files; install re-applies them only when it changes."""
    digest = hashlib.sha256()
    for name, text in _sql_files():
        digest.update(name.encode())
        digest.update(text.encode())
    return digest.hexdigest()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.alembic_dir()))
    return cfg


def head_revision() -> str:
    """The newest alembic revision this package ships."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _upgrade_tables(url: str) -> str:
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=sqlalchemy.NullPool
    )
    cfg = _alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
        revision = connection.exec_driver_sql(
            "SELECT version_num FROM recsys.alembic_version"
        ).scalar_one()
    engine.dispose()
    return str(revision)


def install(url: str) -> InstallResult:
    """Create or upgrade the recsys schema; running it again changes nothing."""
    with db.connect(url, vector=False) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (INSTALL_LOCK,))
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                conn.execute("CREATE SCHEMA IF NOT EXISTS recsys")
            revision = _upgrade_tables(url)
            wanted = sql_hash()
            current = conn.execute(
                "SELECT value FROM recsys.meta WHERE key = 'sql_hash'"
            ).fetchone()
            applied = current is None or current[0] != wanted
            if applied:
                with conn.transaction():
                    for name, text in _sql_files():
                        log.info("applying %s", name)
                        conn.execute(text.encode())
                    conn.execute(
                        "INSERT INTO recsys.meta (key, value) VALUES ('sql_hash', %s)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (wanted,),
                    )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (INSTALL_LOCK,))
    return InstallResult(revision=revision, sql_applied=applied)


def is_installed(conn: psycopg.Connection) -> bool:
    """True when the recsys schema has been installed in this database."""
    row = conn.execute("SELECT to_regclass('recsys.model') IS NOT NULL").fetchone()
    return bool(row and row[0])
