"""Write a trained version into new factor tables and swap it in atomically."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from recsys_db import copybin, queries
from recsys_db.source import Interactions, ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionTables:
    """A version number and its two factor tables (in schema recsys)."""

    version: int
    user_table: str
    item_table: str


def allocate_version(conn: psycopg.Connection, model: ModelConfig, run_id: int) -> VersionTables:
    """Reserve the next version number for this model (status 'building')."""
    row = conn.execute(
        queries.text("next_version"),
        {"model_id": model.id, "run_id": run_id, "factors": int(model.params["factors"]),
         "params": psycopg.types.json.Jsonb(model.params)},
    ).fetchone()
    assert row is not None
    return VersionTables(version=int(row[0]), user_table=row[1], item_table=row[2])


def _copy_blocks(conn: psycopg.Connection, query: str, blocks: list[bytes]) -> None:
    with conn.cursor() as cur, cur.copy(query) as copy:
        for block in blocks:
            copy.write(block)


def write(conn: psycopg.Connection, tables: VersionTables, data: Interactions,
          user_factors: np.ndarray, item_factors: np.ndarray) -> None:
    """Create the version's factor tables from the temp key maps and the fitted factors."""
    dims = user_factors.shape[1]
    with conn.transaction():
        conn.execute(queries.compose("create_stage_tables", dims=sql.Literal(dims)))
        seen = data.matrix
        _copy_blocks(conn, queries.text("copy_stage_users"), copybin.encode_vectors_arrays(
            np.arange(data.users, dtype=np.int32), user_factors, seen))
        popularity = np.diff(seen.tocsc().indptr)
        _copy_blocks(conn, queries.text("copy_stage_items"), [copybin.encode_vectors_ints(
            np.arange(data.items, dtype=np.int32), item_factors, popularity)])
        conn.execute(queries.compose(
            "create_user_table", table=sql.Identifier("recsys", tables.user_table)))
        conn.execute(queries.compose(
            "create_item_table", table=sql.Identifier("recsys", tables.item_table)))
        conn.execute(queries.text("drop_stage_tables"))


def activate(conn: psycopg.Connection, model: ModelConfig, tables: VersionTables,
             data: Interactions) -> list[int]:
    """Mark the version ready and active in one transaction; drop versions beyond retention.

    Returns the versions whose tables were dropped.
    """
    dropped: list[int] = []
    with conn.transaction():
        conn.execute(queries.text("lock_model"), {"model_id": model.id})
        conn.execute(queries.text("mark_version"), {
            "status": "ready", "users": data.users, "items": data.items,
            "nnz": int(data.matrix.nnz), "model_id": model.id, "version": tables.version})
        conn.execute(queries.text("activate_version"),
                     {"model_id": model.id, "version": tables.version})
        expired = conn.execute(queries.text("expired_versions"), {
            "model_id": model.id, "active": tables.version,
            "keep": int(model.params["keep_versions"])}).fetchall()
        for version, user_table, item_table in expired:
            conn.execute(queries.compose(
                "drop_version_tables", user_table=sql.Identifier("recsys", user_table),
                item_table=sql.Identifier("recsys", item_table)))
            conn.execute(queries.text("mark_dropped"), {"model_id": model.id, "version": version})
            dropped.append(int(version))
    return dropped


def discard(conn: psycopg.Connection, model: ModelConfig, tables: VersionTables) -> None:
    """Remove what a failed run built; the active version is not touched."""
    with conn.transaction():
        conn.execute(queries.compose(
            "drop_version_tables", user_table=sql.Identifier("recsys", tables.user_table),
            item_table=sql.Identifier("recsys", tables.item_table)))
        conn.execute(queries.text("mark_version"), {
            "status": "failed", "users": None, "items": None, "nnz": None,
            "model_id": model.id, "version": tables.version})
