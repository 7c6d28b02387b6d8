"""Which servers install accepts: the version checks, with the message each refusal gives."""

from __future__ import annotations

import pytest

from recsys_db import versions
from recsys_db.errors import RecsysError


@pytest.mark.parametrize(("server", "message"), [
    (versions.Server(150008, "15.8", "0.8.0", "0.8.0"),
     "PostgreSQL 15.8 is not supported: recsys-db needs PostgreSQL 16 or newer with pgvector "
     "0.6.0 or newer"),
    (versions.Server(160002, "16.2", None, None),
     "extension vector is not available on this server (PostgreSQL 16.2): install pgvector "
     "0.6.0 or newer on it"),
    (versions.Server(160002, "16.2", None, "0.5.1"),
     "pgvector 0.5.1 is the newest on this server; recsys-db needs 0.6.0 or newer"),
    (versions.Server(160002, "16.2", "0.5.1", "0.8.0"),
     "extension vector is at version 0.5.1 in this database; recsys-db needs 0.6.0 or newer: "
     "ALTER EXTENSION vector UPDATE"),
    (versions.Server(160002, "16.2", "0.5.1", "0.5.1"),
     "extension vector is at version 0.5.1 in this database; recsys-db needs 0.6.0 or newer: "
     "install pgvector 0.6.0 or newer on the server, then ALTER EXTENSION vector UPDATE"),
])
def test_unsupported_servers_are_refused_by_name(server: versions.Server, message: str) -> None:
    with pytest.raises(RecsysError) as raised:
        versions.check(server)
    assert str(raised.value).startswith(message)


def test_supported_servers_pass() -> None:
    versions.check(versions.Server(160002, "16.2", "0.6.2", "0.6.2"))
    versions.check(versions.Server(180004, "18.4", None, "0.8.5"))
    assert versions.parse("0.8.1") == (0, 8, 1)
    assert versions.parse("0.9.0-dev") == (0, 9, 0)
