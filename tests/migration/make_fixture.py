"""Generate ``rev<NNNN>.sql.gz``: a database built by an earlier release of recsys-db, for
tests/migration/test_upgrade.py to upgrade with the current code.

The fixture is committed because the test must not need git history (a shallow CI clone has
none) nor the earlier release's code at test time.

What it holds (built by the earlier release's own install and training code):

* synthetic data, seeded: ``public.events`` (text keys, event column with weights, a time
  column; two trainings, so model ``shop`` has versions 1 and 2, with precomputed
  recommendations and similar items) and ``public.plays`` (integer keys, summed weights,
  bm25 weighting, served live: no precomputed rows);
* reporting views of a user, created before the upgrade over recsys's views and functions:
  ``public.model_report`` (over recsys.models and recsys.versions),
  ``public.metric_report`` (over recsys.metrics and recsys.runs),
  ``public.shop_top`` (recsys.recommend for a few users), ``public.shop_precomputed`` (over
  recsys.recommendations), ``public.shop_similar`` (recsys.similar_items_top) and
  ``public.plays_top`` (recsys.recommend and recsys.popular over integer keys).

The dump is plain SQL from the embedded server's pg_dump (see ``pg_dump()``) with
``--no-owner --no-privileges`` and ``--inserts`` (so psycopg can run it: no COPY blocks;
psql's ``\\restrict`` lines are dropped). Owners: releases up to 0009 had every recsys
object owned by the role that ran install and training (a superuser in practice, as here);
restoring as the test server's superuser re-creates exactly that. Grants (to recsys_reader,
recsys_worker) are left out: the upgrade re-applies every grant. From 0010 on, recsys_owner
owns recsys's objects and the recsys roles hold grants: those fixtures keep owners and grants
(the test server has the roles: the test template's install created them).

Regenerate (from the repository root, with the development venv)::

    python tests/migration/make_fixture.py <git revision> tests/migration/rev<NNNN>.sql.gz

For the release before 0010 that revision is the parent of the commit that added
``alembic/versions/0010_declarer.py``::

    git log --oneline -- alembic/versions/0010_declarer.py     # fc453ba
    python tests/migration/make_fixture.py fc453ba^ tests/migration/rev0009.sql.gz

The 0010 release is the last commit before revision 0011 was added (05d21ba)::

    python tests/migration/make_fixture.py 05d21ba tests/migration/rev0010.sql.gz

When a release ships revision 0011 and the next revision (0012) is added: run this with the
parent of the commit that adds 0012, write ``rev0011.sql.gz`` and add "0011" to ``REVISIONS``
in test_upgrade.py (a test there fails until then). The builder script below uses only the
API every release so far has had (``recsys_db.install.install``, ``recsys.create_model``,
``recsys.als``, ``recsys_db.training.train``); adapt it if a release changes those.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from recsys_db import embedded

DATABASE = "recsys_migration_fixture"

# Runs with the earlier release's code first on sys.path; argv[1] is the database URL.
BUILD = r'''
import random
import sys

import psycopg

from recsys_db import install, training

url = sys.argv[1]
install.install(url)
rnd = random.Random(20261202)
users, items = 300, 120
events = []
for u in range(users):
    for _ in range(rnd.randint(3, 25)):
        # skewed item popularity, so popular() and the rankings are not ties
        i = min(int(rnd.paretovariate(1.2)) - 1, items - 1)
        i = (i * 7 + u % 3) % items
        events.append((f"u{u}", f"i{i}", rnd.choice(["view", "view", "view", "buy"]),
                       rnd.randint(0, 10**6)))
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("CREATE TABLE public.events (user_id text, item_id text, event text,"
                 " ts timestamptz)")
    with conn.cursor().copy("COPY public.events FROM STDIN") as copy:
        for user, item, event, second in events[: len(events) * 9 // 10]:
            copy.write_row((user, item, event, f"2026-01-01 00:00:00+00"))
    conn.execute("UPDATE public.events SET ts = ts + make_interval(secs => abs(hashtext("
                 "user_id || item_id)) % 1000000)")
    conn.execute(
        "SELECT recsys.create_model('shop', 'public.events', 'user_id', 'item_id',"
        " event_column => 'event', event_weights => '{\"view\": 1, \"buy\": 5}',"
        " time_column => 'ts', params => recsys.als(factors => 8, iterations => 5,"
        " recommendations_k => 10, similar_items_k => 5))")
    conn.execute("CREATE TABLE public.plays (user_id integer, item_id integer,"
                 " weight double precision)")
    with conn.cursor().copy("COPY public.plays FROM STDIN") as copy:
        for user, item, _, second in events:
            copy.write_row((int(user[1:]), int(item[1:]), 1 + second % 4))
    conn.execute(
        "SELECT recsys.create_model('plays', 'public.plays', 'user_id', 'item_id',"
        " weight_column => 'weight', params => recsys.als(factors => 6, iterations => 4,"
        " weighting => 'bm25', recommendations_k => 0, eval_split => 'random'))")
training.train(url, "shop")
with psycopg.connect(url, autocommit=True) as conn:
    for user, item, event, _ in events[len(events) * 9 // 10:]:
        conn.execute("INSERT INTO public.events VALUES (%s, %s, %s, '2026-02-01+00')",
                     (user, item, event))
training.train(url, "shop")
training.train(url, "plays")
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("""
        CREATE VIEW public.model_report AS
        SELECT m.name, m.source, m.active_version, m.users, m.items, m.last_run_status,
               m.holdout_metric, m.holdout_als, v.version, v.factors, v.status
          FROM recsys.models m JOIN recsys.versions v ON v.model = m.name;
        CREATE VIEW public.metric_report AS
        SELECT r.model, r.run_id, r.kind, r.status, r.version, r.users, r.items,
               mt.recommender, mt.metric, mt.value
          FROM recsys.runs r LEFT JOIN recsys.metrics mt ON mt.run_id = r.run_id;
        CREATE VIEW public.shop_top AS
        SELECT u.user_id, r.*
          FROM (VALUES ('u1'), ('u2'), ('u3'), ('nobody')) u (user_id)
         CROSS JOIN LATERAL recsys.recommend('shop', u.user_id, k => 5) r;
        CREATE VIEW public.shop_precomputed AS
        SELECT model, user_key, rank, item_key, score FROM recsys.recommendations
         WHERE model = 'shop';
        CREATE VIEW public.shop_similar AS
        SELECT * FROM recsys.similar_items_top WHERE model = 'shop';
        CREATE VIEW public.plays_top AS
        SELECT 'recommend' AS kind, r.item_key, r.score
          FROM recsys.recommend('plays', '7', k => 5) r
        UNION ALL
        SELECT 'popular', p.item_key, p.score FROM recsys.popular('plays', k => 5) p;
    """)
'''


def pg_dump() -> Path:
    """The embedded server's pg_dump (of the server's own version)."""
    return embedded.bin_dir() / "pg_dump"


def build(revision: str, out: Path) -> None:
    """Build the fixture of the release at ``revision`` (any git revision) into ``out``."""
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="recsys-fixture-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        archive = subprocess.run(["git", "-C", str(root), "archive", revision],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        data = Path(tmp) / "pg"
        server = embedded.start(data)
        try:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(DATABASE)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            url = make_conninfo(server, dbname=DATABASE)
            env = {**os.environ, "PYTHONPATH": str(src)}
            subprocess.run([sys.executable, "-c", BUILD, url], cwd=src, env=env, check=True)
            # from 0010 on, recsys_owner owns recsys's objects and the recsys roles hold
            # grants: a fixture keeps both (the test server has those roles). Before, the
            # installer owned everything: ownership and grants are left to the restorer.
            keep = (src / "sql" / "090-security.sql").exists()
            dump = subprocess.run(
                [str(pg_dump()), *([] if keep else ["--no-owner", "--no-privileges"]),
                 "--inserts", "--rows-per-insert=200", "--dbname", url],
                capture_output=True, text=True)
            if dump.returncode:
                raise SystemExit(f"pg_dump failed: {dump.stderr}")
        finally:
            embedded.stop(data)
    # psql's meta-commands, and settings of newer servers that a PostgreSQL 16 restore refuses
    # (pg_dump 17+ writes transaction_timeout)
    lines = [line for line in dump.stdout.splitlines()
             if not line.startswith(("\\", "SET transaction_timeout"))]
    text = "\n".join(lines) + "\n"
    out.write_bytes(gzip.compress(text.encode(), mtime=0))
    print(f"{out}: {len(text)} bytes of SQL, {out.stat().st_size} gzipped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="git revision of the earlier release")
    parser.add_argument("out", type=Path, help="fixture to write (.sql.gz)")
    args = parser.parse_args()
    build(args.revision, args.out)


if __name__ == "__main__":
    main()
