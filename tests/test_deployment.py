"""The Docker deployment files and the SQL examples of the BI and business-rules docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys_db import cli, config, db

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


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

