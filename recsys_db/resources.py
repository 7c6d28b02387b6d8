"""Locate the SQL files and alembic scripts, in a checkout or inside the installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"recsys-db resource directory {name!r} is missing from the install")


def sql_dir() -> Path:
    """Directory of the idempotent SQL files (``NNN-name.sql``)."""
    return _find("sql")


def alembic_dir() -> Path:
    """Directory of the alembic environment and revisions."""
    return _find("alembic")
