"""Named SQL queries, kept in ``queries.sql`` and ``demo.sql`` rather than in the code."""

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
    for filename in ("queries.sql", "demo.sql"):
        text = (Path(__file__).parent / filename).read_text(encoding="utf-8")
        parts = _NAME.split(text)
        found.update((name, body.strip())
                     for name, body in zip(parts[1::2], parts[2::2], strict=True))
    return found


def text(name: str) -> str:
    """The raw text of a named query."""
    return _load()[name]


def compose(name: str, **parts: Any) -> sql.Composed:
    """A named query with its ``{placeholders}`` filled by psycopg.sql objects."""
    return sql.SQL(text(name)).format(**parts)  # type: ignore[arg-type]
