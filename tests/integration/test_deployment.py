"""The deployment roles script against the server, and the SQL examples of the BI and
business-rules docs."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from recsys_db import db, embedded

from ..helpers import run_returning_rows

ROOT = Path(__file__).resolve().parents[2]
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
            run_returning_rows(conn, block)


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

