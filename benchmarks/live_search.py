"""Live recommend at big catalogs: latency and recall@k of ``recsys.recommend`` searching the
active version live (its precomputed rows set aside), exclude-seen on, against the exact
ranking computed here in float64; and the exact scan's latency beside it.

``measure(url, model)`` is the hook for the suite. Run alone it trains a model on a synthetic
power-law log first (labelled synthetic)::

    python -m benchmarks.live_search --items 200000 --users 100000 --interactions 2000000
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
import scipy.sparse as sp
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks import measure as timing
from benchmarks import synthetic
from recsys_db import db, embedded, install, ranking, training

log = logging.getLogger(__name__)

KS = (10, 100)
QUERIES = 200  # users searched per k
EXACT_QUERIES = 20  # users timed with the exact scan (256 ms each at 1M items)
SEED = 20261202


def _version(conn: psycopg.Connection, model: str) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(
            "SELECT v.* FROM recsys.model_version v JOIN recsys.model m ON m.id = v.model_id"
            " AND v.version = m.active_version WHERE m.name = %s", (model,)).fetchone()
    assert row is not None, f"model {model} has no active version"
    return row


def _factors(conn: psycopg.Connection, table: str) -> tuple[list[str], np.ndarray]:
    keys, vectors = [], []
    with conn.transaction(), conn.cursor(name="factors") as cur:
        cur.itersize = 50_000
        cur.execute(sql.SQL("SELECT key, factors FROM {} ORDER BY idx").format(
            sql.Identifier("recsys", table)))
        for key, factors in cur:
            keys.append(key)
            vectors.append(factors.to_numpy())
    return keys, np.stack(vectors)


def _seen(conn: psycopg.Connection, table: str, users: np.ndarray, items: int) -> sp.csr_matrix:
    """The seen rows of ``users`` (a matrix over all users, empty elsewhere)."""
    query = sql.SQL("SELECT idx, seen FROM {} WHERE idx = ANY(%s)").format(
        sql.Identifier("recsys", table))
    found: dict[int, list[int]] = dict(conn.execute(query, (users.tolist(),)).fetchall())
    lengths = np.zeros(int(users.max()) + 1, dtype=np.int64)
    for user, seen in found.items():
        lengths[user] = len(seen)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([np.asarray(found.get(u, []), dtype=np.int32)
                              for u in range(len(lengths))]) if lengths.sum() else np.zeros(0)
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(lengths), items))


@contextmanager
def served_with(url: str, version: dict[str, Any], **columns: Any) -> Iterator[None]:
    """The version's serving columns set to ``columns`` (committed, so that other sessions such
    as pgbench see them) and put back afterwards."""
    def update(values: dict[str, Any]) -> None:
        with db.connect(url) as conn:
            conn.execute(sql.SQL("UPDATE recsys.model_version SET {}"
                                 " WHERE model_id = %(model_id)s AND version = %(version)s")
                         .format(sql.SQL(", ").join(
                             sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c))
                             for c in values)),
                         {**values, "model_id": version["model_id"],
                          "version": version["version"]})

    update(columns)
    try:
        yield
    finally:
        update({column: version[column] for column in columns})


def _certified(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix,
               users: np.ndarray, k: int, head: int) -> float:
    """Share of ``users`` whose answer the head of ``head`` largest-norm unseen items
    certifies alone (recsys._top_items skips the graph for them)."""
    norms = np.linalg.norm(item_factors.astype(np.float64), axis=1)
    order = np.argsort(-norms, kind="stable")
    certified = 0
    for user in users.tolist():
        mine = seen.indices[seen.indptr[user]:seen.indptr[user + 1]]
        near = order[:head + len(mine)]
        top = near[~np.isin(near, mine)][:head]
        scores = np.sort(item_factors[top].astype(np.float64) @ user_factors[user])[::-1]
        bound = np.linalg.norm(user_factors[user]) * norms[top[-1]] * (1 + 1e-4)
        certified += len(top) < head or (scores[k - 1] > 0 and scores[k - 1] > bound)
    return certified / len(users)


def _serve(url: str, model: str, keys: list[str], k: int) -> tuple[list[float], list[list[str]]]:
    seconds, results = [], []
    query = "SELECT item_key FROM recsys.recommend(%s, %s, %s)"
    with db.connect(url) as conn:
        conn.execute(query, (model, keys[0], k), prepare=True)
        for key in keys:
            start = time.perf_counter()
            rows = conn.execute(query, (model, key, k), prepare=True).fetchall()
            seconds.append(time.perf_counter() - start)
            results.append([row[0] for row in rows])
    return seconds, results


def measure(url: str, model: str, queries: int = QUERIES,
            exact_queries: int = EXACT_QUERIES) -> dict[str, Any]:
    """Live ``recsys.recommend`` of ``model``'s active version at each k of ``KS`` (exclude
    seen, precomputed rows set aside): p50/p99 latency, recall@k against the exact float64
    ranking, and the rows in exact order (score desc, key) where the lists agree; the exact
    scan's latency at k 10 beside it; and what the build stored."""
    with db.connect(url) as conn:
        version = _version(conn, model)
        user_keys, user_factors = _factors(conn, version["user_table"])
        item_keys, item_factors = _factors(conn, version["item_table"])
        # not the build's recall sample (seeded by the version number)
        rng = np.random.default_rng(SEED)
        sample = np.sort(rng.choice(len(user_keys), size=min(queries, len(user_keys)),
                                    replace=False))
        seen = _seen(conn, version["user_table"], sample, len(item_keys))
    truth = ranking.exact_ranked_items(user_factors, item_factors, seen, sample, max(KS))
    keys = [user_keys[u] for u in sample.tolist()]
    result: dict[str, Any] = {
        "items": version["items"], "users": version["users"], "factors": version["factors"],
        "index_kind": version["index_kind"], "ef_by_k": version["index_ef_by_k"],
        "head_by_k": version.get("index_head_by_k"),
        "recall_by_k_stored": version["index_recall_by_k"],
        "seen_median": float(np.median(np.diff(seen[sample].indptr)))}
    heads = version.get("index_head_by_k")
    with served_with(url, version, precomputed_k=0):
        for slot, k in zip((0, 3), KS, strict=True):
            seconds, lists = _serve(url, model, keys, k)
            hits = sum(len({item_keys[i] for i in want[:k]} & set(got))
                       for want, got in zip(truth, lists, strict=True))
            total = sum(min(k, len(want)) for want in truth)
            result[f"live_k{k}"] = {**timing.latency(seconds), "recall": hits / total}
            if heads and heads[slot]:
                result[f"live_k{k}"]["certified"] = _certified(
                    user_factors, item_factors, seen, sample, k, heads[slot])
    with served_with(url, version, precomputed_k=0, index_kind="exact"):
        seconds, _ = _serve(url, model, keys[:exact_queries], 10)
        result["exact_k10"] = timing.latency(seconds)
    return result


def _train(url: str, scale: synthetic.Scale, factors: int) -> dict[str, Any]:
    with db.connect(url) as conn:
        synthetic.load(conn, scale, sql.Identifier("public", "events"))
        conn.execute("SELECT recsys.create_model('live', 'public.events', 'user_id', 'item_id',"
                     " weight_column => 'weight', params => recsys.als(factors => %s,"
                     " recommendations_k => 0, eval_split => 'off'))", (factors,))
    started = time.perf_counter()
    record = training.train(url, "live")
    return {"train_seconds": time.perf_counter() - started, "stages": record.stages}


def main() -> None:
    """Train on a synthetic log in a fresh database of the embedded server, then measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--database", default="recsys_live")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = embedded.start()
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                      .format(sql.Identifier(args.database)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.database)))
    url = make_conninfo(server, dbname=args.database)
    install.install(url)
    scale = synthetic.Scale(f"live-{args.items}", args.interactions, args.users, args.items)
    built = _train(url, scale, args.factors)
    print(json.dumps({"scale": vars(args), **built, **measure(url, "live")}, indent=1,
                     default=str))


if __name__ == "__main__":
    main()
