"""Seeded synthetic interactions with power-law users and items (labelled synthetic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from recsys_db import copybin


@dataclass(frozen=True)
class Scale:
    """Shape of a synthetic data set."""

    name: str
    interactions: int
    users: int
    items: int


SCALES = {
    "1m": Scale("1m", 1_000_000, 50_000, 50_000),
    "4m": Scale("4m", 4_000_000, 200_000, 50_000),
    "10m": Scale("10m", 10_000_000, 500_000, 200_000),
    "25m": Scale("25m", 25_000_000, 1_000_000, 1_000_000),
}
EXPONENT = 0.9  # p(rank r) ~ r^-0.9 for both users and items
SEED = 20240601
CHUNK = 2_000_000


def _power_law(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """Ids 1..count, each at least once, the rest drawn with p(rank r) ~ r^-EXPONENT; the
    ranks are shuffled over ids so that popularity does not follow id order."""
    weights = np.arange(1, count + 1, dtype=np.float64) ** -EXPONENT
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    drawn = np.searchsorted(cumulative, rng.random(size - count), side="right")
    ranks = np.concatenate([np.arange(count), drawn])
    rng.shuffle(ranks)
    return rng.permutation(count)[ranks] + 1


def generate(scale: Scale, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_id, item_id, weight) arrays; weights are 1..5, mostly 1."""
    rng = np.random.default_rng(seed)
    users = _power_law(rng, scale.users, scale.interactions).astype(np.int64)
    items = _power_law(rng, scale.items, scale.interactions).astype(np.int64)
    weights = np.minimum(rng.geometric(0.6, scale.interactions), 5).astype(np.int16)
    return users, items, weights


def _copy_body(users: np.ndarray, items: np.ndarray, weights: np.ndarray) -> bytes:
    rows = np.zeros(len(users), dtype=[("n", ">i2"), ("l1", ">i4"), ("u", ">i8"), ("l2", ">i4"),
                                       ("i", ">i8"), ("l3", ">i4"), ("w", ">i2")])
    rows["n"], rows["l1"], rows["l2"], rows["l3"] = 3, 8, 8, 2
    rows["u"], rows["i"], rows["w"] = users, items, weights
    return rows.tobytes()


def load(conn: psycopg.Connection, scale: Scale, table: sql.Identifier) -> None:
    """(Re)create ``table`` (user_id bigint, item_id bigint, weight smallint) with the data."""
    users, items, weights = generate(scale)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    conn.execute(sql.SQL("CREATE TABLE {} (user_id bigint, item_id bigint, weight smallint)")
                 .format(table))
    copy_sql = sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(table)
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.write(copybin.HEADER)
        for start in range(0, len(users), CHUNK):
            stop = start + CHUNK
            copy.write(_copy_body(users[start:stop], items[start:stop], weights[start:stop]))
        copy.write(copybin.TRAILER)
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
