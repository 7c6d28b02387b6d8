"""Where the database is: an explicit URL, ``RECSYS_DATABASE_URL``, or the embedded server."""

from __future__ import annotations

import os

from recsys_db import embedded

ENV_URL = "RECSYS_DATABASE_URL"


def database_url(explicit: str | None = None) -> str:
    """Resolve the database URL, starting the embedded server when none is configured."""
    if explicit:
        return explicit
    from_env = os.environ.get(ENV_URL)
    if from_env:
        return from_env
    return embedded.start()
