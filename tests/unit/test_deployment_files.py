"""The Docker deployment files: compose services, roles script, Dockerfile."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys_db import cli, config

from .. import servers

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
ROLES_SCRIPT = DOCKER / "initdb" / "10-roles.sh"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_pins_a_supported_server(compose: dict[str, Any]) -> None:
    """The image's tag names pgvector's version and PostgreSQL's major: a row of the README's
    supported-versions table, which CI runs the suite on (tests/servers.py)."""
    tag = compose["services"]["db"]["image"].removeprefix("pgvector/pgvector:")
    match = re.fullmatch(r"(\d+\.\d+)\.\d+-pg(\d+)", tag)
    assert match, f"unpinned image tag {tag}"
    rows = {(b.postgres.split(".")[0], ".".join(b.pgvector.split(".")[:2]))
            for b in servers.BUILDS.values()}
    assert (match[2], match[1]) in rows


def test_compose_runs_pgvector_then_install_then_worker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["db"]["image"].startswith("pgvector/pgvector:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["install"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["worker"]["depends_on"]["install"] == {
        "condition": "service_completed_successfully"}
    parser = cli.build_parser()
    for name in ("install", "worker"):
        service = services[name]
        assert (DOCKER.parent / service["build"]["context"].replace("..", ".")
                / service["build"]["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        parser.parse_args(service["command"])  # a real subcommand (exits on an unknown one)
        environment = service["environment"]
        assert set(environment) == {config.ENV_URL, "PGPASSWORD"}
        assert "host=db " in environment[config.ENV_URL]
    assert services["metabase"]["profiles"] == ["bi"]



def login(service: dict[str, Any]) -> tuple[str, str]:
    """(user, password variable) a recsys-db service logs in with."""
    environment = service["environment"]
    user = re.search(r"\buser=(\S+)", environment[config.ENV_URL])
    password = re.fullmatch(r"\$\{(\w+):\?.+\}", environment["PGPASSWORD"])
    assert user and password, environment
    return user.group(1), password.group(1)



def test_compose_logs_in_with_least_privilege(compose: dict[str, Any]) -> None:
    """Only install uses the superuser; the worker is recsys_app (recsys_worker) and Metabase
    is told to use metabase (recsys_reader), both created by the db's init script."""
    services = compose["services"]
    db_env = services["db"]["environment"]
    assert login(services["install"]) == (db_env["POSTGRES_USER"], "POSTGRES_PASSWORD")
    assert login(services["worker"]) == ("recsys_app", "WORKER_PASSWORD")
    assert {"WORKER_PASSWORD", "METABASE_PASSWORD"} <= set(db_env)
    assert "./initdb:/docker-entrypoint-initdb.d:ro" in services["db"]["volumes"]
    assert "-h 127.0.0.1" in " ".join(services["db"]["healthcheck"]["test"])
    header = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    assert re.search(r"metabase .*recsys_reader", header)
    assert "POSTGRES_PASSWORD" not in str(services["metabase"])



def test_roles_script_is_an_executable_shell_script() -> None:
    assert ROLES_SCRIPT.stat().st_mode & stat.S_IXUSR
    subprocess.run(["sh", "-n", str(ROLES_SCRIPT)], check=True)
    text = ROLES_SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/sh\n") and "set -eu" in text
    assert "ON_ERROR_STOP=1" in text and "--single-transaction" in text



def test_dockerfile_copies_files_that_exist() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    sources = [part for line in text.splitlines() if line.startswith("COPY ")
               and "--from" not in line for part in line.split()[1:-1]]
    assert {"pyproject.toml", "recsys_db", "sql", "alembic"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["recsys-db"]' in text

