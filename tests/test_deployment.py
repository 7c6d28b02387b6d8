"""The Docker deployment files and the SQL examples of the BI and business-rules docs."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys_db import cli, config, db, embedded

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
ROLES_SCRIPT = DOCKER / "initdb" / "10-roles.sh"
# the roles docker/initdb/10-roles.sh creates, as (login, superuser, groups it is in)
DEPLOYED_ROLES = {
    "recsys_owner": (False, False, set()),
    "recsys_reader": (False, False, set()),
    "recsys_modeler": (False, False, set()),
    "recsys_worker": (False, False, {"recsys_reader"}),
    "analytics": (False, False, {"recsys_modeler"}),
    "recsys_app": (True, False, {"recsys_worker", "analytics"}),
    "metabase": (True, False, {"recsys_reader"}),
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


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


def test_roles_script_creates_least_privilege_roles(server_url: str) -> None:
    """Runs the script's SQL with the real psql (prefixed role names, in a transaction that is
    rolled back) and reads the roles it made."""
    text = ROLES_SCRIPT.read_text(encoding="utf-8")
    [body] = re.findall(r"<<'SQL'\n(.*?)^SQL$", text, flags=re.MULTILINE | re.DOTALL)
    prefix = f"rt{uuid.uuid4().hex[:6]}_"
    names = "|".join(sorted(DEPLOYED_ROLES, key=len, reverse=True))
    body = re.sub(rf"\b({names})\b", rf"{prefix}\1", body)
    check = f"""
SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
       a.rolpassword IS NOT NULL,
       coalesce((SELECT string_agg(g.rolname || ':' || m.inherit_option || ':' || m.set_option,
                                   ',' ORDER BY g.rolname)
                   FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                  WHERE m.member = r.oid), '')
  FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid
 WHERE r.rolname LIKE '{prefix}%' ORDER BY 1;
"""
    password = "it's a \\secret; DROP ROLE x"
    psql = embedded.bin_dir() / "psql"
    if not psql.exists():
        pytest.skip("needs the embedded server's psql")
    out = subprocess.run(
        [str(psql), "-X", "-q", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1",
         "-v", f"worker_password={password}", "-v", f"metabase_password={password}",
         server_url],
        input=f"BEGIN;\n{body}\n{check}\nROLLBACK;\n", capture_output=True, text=True,
        check=False, env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
        timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        name, can_login, superuser, createrole, createdb, bypassrls, has_password, groups = \
            line.split("|")
        assert (superuser, createrole, createdb, bypassrls) == ("f", "f", "f", "f"), line
        assert has_password == can_login, line
        rows[name.removeprefix(prefix)] = (can_login == "t", groups)
    assert set(rows) == set(DEPLOYED_ROLES)
    for name, (login_expected, _, member_of) in DEPLOYED_ROLES.items():
        got_login, got_groups = rows[name]
        assert got_login == login_expected, name
        memberships = dict(g.removeprefix(prefix).split(":", 1)
                           for g in got_groups.split(",") if g)
        assert set(memberships) == member_of, name
        if name == "recsys_app":
            # the worker may become the declarer, but inherits none of its rights
            assert memberships["analytics"] == "false:true"
            assert memberships["recsys_worker"] == "true:true"
    with db.connect(server_url, vector=False) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                            (prefix + "%",)).fetchone() == (0,)


def test_dockerfile_copies_files_that_exist() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    sources = [part for line in text.splitlines() if line.startswith("COPY ")
               and "--from" not in line for part in line.split()[1:-1]]
    assert {"pyproject.toml", "recsys_db", "sql", "alembic"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["recsys-db"]' in text


def sql_blocks(doc: str) -> list[str]:
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    return re.findall(r"^```sql\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.slow
@pytest.mark.parametrize("doc", ["bi.md", "business-rules.md"])
def test_doc_examples_run_and_return_rows(movielens_url: str, doc: str) -> None:
    blocks = sql_blocks(doc)
    assert len(blocks) >= 5
    with db.connect(movielens_url) as conn, conn.transaction(force_rollback=True):
        # the docs use the demo's model name; the session database calls it 'ml'
        conn.execute("UPDATE recsys.model SET name = 'movielens' WHERE name = 'ml'")
        for block in blocks:
            with conn.cursor() as cur:
                cur.execute(block.encode())
                while True:
                    if cur.description is not None:
                        assert cur.fetchall(), f"no rows from:\n{block}"
                    if not cur.nextset():
                        break


@pytest.mark.slow
def test_candidate_example_returns_ten_comedies(movielens_url: str) -> None:
    [block] = [b for b in sql_blocks("business-rules.md") if "ten comedies" in b]
    with db.connect(movielens_url) as conn, conn.transaction(force_rollback=True):
        conn.execute("UPDATE recsys.model SET name = 'movielens' WHERE name = 'ml'")
        result = conn.execute(block.encode()).fetchall()
        comedies = {title for (title,) in conn.execute(
            "SELECT title FROM movielens.movies WHERE 'Comedy' = ANY (genres)")}
        seen = {title for (title,) in conn.execute(
            "SELECT m.title FROM movielens.liked l JOIN movielens.movies m USING (item_id)"
            " WHERE l.user_id = 196")}
    assert [rank for rank, _, _ in result] == list(range(1, 11))
    assert {title for _, title, _ in result} <= comedies - seen

