"""The per-version basis of session fold-in and explanations (``recsys.version_basis``).

For item factors Y and regularization λ, ``recsys.recommend_for_items`` and ``recsys.explain``
solve (YᵀY + λI + Yₙᵀ D Yₙ) x = b for the n items of a basket or history. With a matrix W such
that W Wᵀ = (YᵀY + λI)⁻¹, the system becomes (I + Ŷₙᵀ D Ŷₙ) x̂ = Wᵀ b with ŷ = Wᵀ y and x = W x̂:
the identity plus a term of rank n, well conditioned whatever YᵀY is, which the database
solves with pgvector's operators. W = V Λ^-½ from the eigendecomposition V Λ Vᵀ of YᵀY + λI:
an orthogonal change of basis and a scaling, so that float32 products with it lose nothing.

Computed here in numpy when a version is written (training; revision 0012 for the versions
before it) and when a fold-in adds items (which changes YᵀY); serving only reads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from recsys_db import db, queries
from recsys_db.store import VersionTables


def basis(gram: np.ndarray, regularization: float) -> np.ndarray | None:
    """W: column k is eigenvector k of YᵀY + λI over the root of its eigenvalue; None when
    YᵀY + λI is not positive definite (regularization 0 and too few items)."""
    values, vectors = np.linalg.eigh(gram + regularization * np.eye(len(gram)))
    if not values.min() > values.max() * 1e-12:
        return None
    return np.asarray(vectors / np.sqrt(values))


def gram_of(item_factors: np.ndarray) -> np.ndarray:
    """YᵀY in float64 of (float32) item factors."""
    y = np.asarray(item_factors, dtype=np.float64)
    return y.T @ y


def _vector_text(row: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in row.astype(np.float32)) + "]"


def write(conn: psycopg.Connection, model_id: int, version: int, gram: np.ndarray, items: int,
          regularization: float) -> None:
    """Store YᵀY and the basis of a version covering its first ``items`` items (replacing what
    it had), and remove the rows of the model's versions that no longer serve."""
    w = basis(gram, regularization)
    key = {"model_id": model_id, "version": version}
    conn.execute(queries.text("gram_delete"), key)
    with conn.cursor() as cur, cur.copy(queries.text("gram_copy")) as copy:
        for k, row in enumerate(gram):
            copy.write_row((model_id, version, k + 1, items, row.tolist(),
                            None if w is None else _vector_text(w[:, k]),
                            None if w is None else _vector_text(w[k])))


def write_version(conn: psycopg.Connection, tables: VersionTables, item_factors: np.ndarray,
                  params: dict[str, Any]) -> None:
    """The basis of a new version (training): its fitted item factors and the feature-mapped
    items appended to its item table after them."""
    mapped = [row[0] for row in conn.execute(
        queries.compose("gram_items_from", table=sql.Identifier("recsys", tables.item_table)),
        {"start": len(item_factors)})]
    gram = gram_of(item_factors)
    if mapped:
        gram += gram_of(np.array(mapped, dtype=np.float32))
    write(conn, tables.model_id, tables.version, gram, len(item_factors) + len(mapped),
          float(params["regularization"]))


def add_items(conn: psycopg.Connection, model_id: int, version: int,
              item_vectors: np.ndarray) -> None:
    """A fold-in appended ``item_vectors`` to the version: add them to its YᵀY and recompute
    its basis, in the caller's transaction (readers see the items and the basis together)."""
    rows = conn.execute(queries.text("gram_read_for_update"),
                        {"model_id": model_id, "version": version}).fetchall()
    if not rows:
        raise LookupError(f"version {version} of model {model_id} has no stored YᵀY")
    items, regularization = int(rows[0][0]), float(rows[0][1])
    stored = np.array([r[2] for r in rows], dtype=np.float64)
    write(conn, model_id, version, stored + gram_of(item_vectors), items + len(item_vectors),
          regularization)


def backfill(conn: psycopg.Connection) -> int:
    """Store the basis of every ready version that has none (versions trained before revision
    0012); YᵀY is summed by pgvector from the item table. Returns how many were written."""
    missing = conn.execute(queries.text("gram_missing")).fetchall()
    if missing:
        vector = sql.Identifier(db.vector_schema(conn))
    for model_id, version, item_table, dims, regularization in missing:
        (flat, items), = conn.execute(queries.compose(
            "gram_sum", table=sql.Identifier("recsys", item_table), dims=sql.Literal(dims),
            vector=vector)).fetchall()
        write(conn, model_id, version, np.array(flat, dtype=np.float64).reshape(dims, dims),
              items, float(regularization))
    return len(missing)
