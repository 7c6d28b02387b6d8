"""What a user would do without recsys-db: the peer of each figure."""

from __future__ import annotations

from collections import Counter

import numpy as np
import psycopg
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from psycopg import sql


def pandas_load(url: str, table: sql.Identifier, user: str, item: str,
                weight: str) -> tuple[sp.csr_matrix, list[str], list[str]]:
    """``pandas.read_sql`` of the raw rows, then categorical codes as indices (the usual
    notebook recipe); returns the matrix and the user and item keys by index, as text."""
    import pandas as pd
    import sqlalchemy

    engine = sqlalchemy.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url),
                                      poolclass=sqlalchemy.NullPool)
    query = sql.SQL("SELECT {u}, {i}, {w} FROM {t} WHERE {u} IS NOT NULL AND {i} IS NOT NULL"
                    " AND {w} IS NOT NULL").format(u=sql.Identifier(user), i=sql.Identifier(item),
                                                   w=sql.Identifier(weight), t=table)
    with engine.connect() as connection:
        frame = pd.read_sql(query.as_string(None), connection)
    users = frame[user].astype("category")
    items = frame[item].astype("category")
    matrix = sp.csr_matrix(
        (frame[weight].to_numpy(dtype=np.float64), (users.cat.codes, items.cat.codes)),
        shape=(len(users.cat.categories), len(items.cat.categories)))
    engine.dispose()
    return (matrix, [str(k) for k in users.cat.categories],
            [str(k) for k in items.cat.categories])


def executemany_write(conn: psycopg.Connection, table: sql.Identifier, factors: np.ndarray,
                      seen: sp.csr_matrix) -> None:
    """INSERT one row per user with ``executemany`` (pipelined by psycopg 3)."""
    query = sql.SQL("INSERT INTO {} (idx, factors, seen) VALUES (%s, %s, %s)").format(table)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(query, (
            (idx, factors[idx], seen.indices[seen.indptr[idx]:seen.indptr[idx + 1]].tolist())
            for idx in range(len(factors))))


def implicit_model(user_factors: np.ndarray, item_factors: np.ndarray) -> AlternatingLeastSquares:
    """An implicit CPU model holding given factors, for its in-process ``recommend``."""
    model = AlternatingLeastSquares(factors=user_factors.shape[1])
    model.user_factors = user_factors
    model.item_factors = item_factors
    return model


def seed000_interested_users(model: AlternatingLeastSquares, seen: sp.csr_matrix,
                             item: int, users: np.ndarray, k: int = 20) -> list[int]:
    """Seed 000's audience for an item: call ``recommend`` (N=20) for every user and keep
    those whose list holds the item, the most frequent first."""
    hits: Counter[int] = Counter()
    for user in users.tolist():
        items, _ = model.recommend(user, seen[user], N=20, filter_already_liked_items=False)
        if item in items:
            hits[user] += 1
    return [user for user, _ in hits.most_common(k)]
