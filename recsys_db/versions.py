"""The PostgreSQL and pgvector versions recsys-db supports, and the pgvector features it uses
only where the server has them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from recsys_db.errors import RecsysError

# The oldest versions the test suite runs on (the README's supported-versions table).
MIN_POSTGRES = 160000  # server_version_num
MIN_POSTGRES_NAME = "16"
MIN_PGVECTOR = (0, 6, 0)
# hnsw.iterative_scan: without it recsys._top_items widens ef_search instead
ITERATIVE_SCAN = (0, 8, 0)


def parse(version: str) -> tuple[int, ...]:
    """'0.8.1' -> (0, 8, 1); what follows the numbers ('0.9.0-dev') is ignored."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def _name(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class Server:
    """What install found: the server's version, and pgvector's in this database (installed)
    and on the server (available; None when the server has no pgvector)."""

    postgres_num: int
    postgres: str
    pgvector_installed: str | None
    pgvector_available: str | None

    @property
    def pgvector(self) -> str | None:
        """The pgvector version recsys will use: the installed one, else the one install
        creates."""
        return self.pgvector_installed or self.pgvector_available

    @property
    def iterative_scan(self) -> bool:
        """Whether pgvector has iterative index scans (0.8)."""
        return self.pgvector is not None and parse(self.pgvector) >= ITERATIVE_SCAN


def check(server: Server) -> None:
    """RecsysError naming what the server has and what recsys-db needs, unless both
    PostgreSQL and pgvector are supported."""
    needed = _name(MIN_PGVECTOR)
    if server.postgres_num < MIN_POSTGRES:
        raise RecsysError(
            f"PostgreSQL {server.postgres} is not supported: recsys-db needs PostgreSQL "
            f"{MIN_POSTGRES_NAME} or newer with pgvector {needed} or newer")
    installed, available = server.pgvector_installed, server.pgvector_available
    if installed is None and available is None:
        raise RecsysError(
            f"extension vector is not available on this server (PostgreSQL {server.postgres}):"
            f" install pgvector {needed} or newer on it (https://github.com/pgvector/pgvector)")
    if installed is not None and parse(installed) < MIN_PGVECTOR:
        newer = available is not None and parse(available) >= MIN_PGVECTOR
        how = ("ALTER EXTENSION vector UPDATE" if newer else
               f"install pgvector {needed} or newer on the server, then ALTER EXTENSION vector "
               "UPDATE")
        raise RecsysError(
            f"extension vector is at version {installed} in this database; recsys-db needs "
            f"{needed} or newer: {how}")
    if installed is None and available is not None and parse(available) < MIN_PGVECTOR:
        raise RecsysError(
            f"pgvector {available} is the newest on this server; recsys-db needs {needed} or "
            "newer: install a newer pgvector on the server")
