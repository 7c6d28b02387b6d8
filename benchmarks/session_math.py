"""Per-call latency of the fold-in math: recsys.recommend_for_items (baskets of 10 and 100
items) and recsys.explain (a user with a median-sized history), on a trained model.

Hook for the suite: ``bench_session_math(url, model, repeats)`` on any database with a trained
model; the baskets are drawn from the model's 500 most popular items, the same for every call.
"""

from __future__ import annotations

import random
from typing import Any

import psycopg
from psycopg import sql

from benchmarks import measure
from recsys_db import db


def _keys(conn: psycopg.Connection, table: str, order: str) -> list[str]:
    query = sql.SQL("SELECT key FROM {} ORDER BY " + order).format(sql.Identifier("recsys", table))
    return [row[0] for row in conn.execute(query)]


def bench_session_math(url: str, model: str, repeats: int = 20, seed: int = 0) -> dict[str, Any]:
    """p50/p99 of recommend_for_items (10 and 100 items) and explain, ``repeats`` calls each."""
    rng = random.Random(seed)
    with db.connect(url) as conn:
        (items, users, factors), = conn.execute(
            "SELECT v.item_table, v.user_table, v.factors FROM recsys.model_version v"
            " JOIN recsys.model m ON m.id = v.model_id AND v.version = m.active_version"
            " WHERE m.name = %s", (model,)).fetchall()
        popular = _keys(conn, items, "popularity DESC, key")[:500]
        by_history = _keys(conn, users, "cardinality(seen), key")
        user = by_history[len(by_history) // 2]
        out: dict[str, Any] = {"model": model, "factors": factors}
        for size in (10, 100):
            basket = rng.sample(popular, min(size, len(popular)))
            out[f"basket_{size}"] = measure.latency(measure.repeat(
                lambda b=basket: conn.execute(  # type: ignore[misc]
                    "SELECT * FROM recsys.recommend_for_items(%s, %s, 10)", (model, b)
                ).fetchall(), repeats))
        out["explain"] = measure.latency(measure.repeat(
            lambda: conn.execute("SELECT * FROM recsys.explain(%s, %s, %s, 10)",
                                 (model, user, popular[0])).fetchall(), repeats))
    return out
