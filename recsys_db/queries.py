"""Named SQL queries, kept in the package's ``*.sql`` files rather than in the code."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from psycopg import sql

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def _load() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(Path(__file__).parent.glob("*.sql")):
        parts = _NAME.split(path.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"query {name!r} is defined twice ({path.name})")
            found[name] = body.strip()
    return found


def text(name: str) -> str:
    """The raw text of a named query."""
    return _load()[name]


def compose(name: str, **parts: Any) -> sql.Composed:
    """A named query with its ``{placeholders}`` filled by psycopg.sql objects."""
    return sql.SQL(text(name)).format(**parts)
