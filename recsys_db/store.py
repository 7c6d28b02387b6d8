"""A version's tables: allocate, write the factors and item weights, activate it atomically
(dropping versions beyond retention), or discard what a failed run built."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from recsys_db import copybin, db, queries
from recsys_db.load import Interactions
from recsys_db.model import ModelConfig

log = logging.getLogger(__name__)

FLOAT8_OID = 701


@dataclass(frozen=True)
class VersionTables:
    """A version number, its two factor tables (in schema recsys) and how to index them."""

    model_id: int
    version: int
    user_table: str
    item_table: str
    index: str  # the model's index param: auto | exact | hnsw


def version_tables(model_id: int, version: int) -> tuple[str, str]:
    """The factor tables of a version (in schema recsys), as recsys names them: derived from
    the model id and version, never read from a row."""
    return f"m{model_id}_v{version}_users", f"m{model_id}_v{version}_items"


def allocate_version(conn: psycopg.Connection, model: ModelConfig, run_id: int) -> VersionTables:
    """Reserve the next version number for this model (status 'building')."""
    row = conn.execute(
        queries.text("store_next_version"),
        {"model_id": model.id, "run_id": run_id, "factors": int(model.params["factors"]),
         "params": psycopg.types.json.Jsonb(model.params)},
    ).fetchone()
    assert row is not None
    user_table, item_table = version_tables(model.id, int(row[0]))
    return VersionTables(model_id=model.id, version=int(row[0]), user_table=user_table,
                         item_table=item_table, index=str(model.params.get("index", "auto")))


def copy_blocks(conn: psycopg.Connection, query: str, blocks: list[bytes]) -> None:
    """Send binary COPY blocks through ``query`` (COPY ... FROM STDIN)."""
    with conn.cursor() as cur, cur.copy(query) as copy:
        for block in blocks:
            copy.write(block)


def create_stage_tables(conn: psycopg.Connection, dims: int) -> None:
    """The temp tables ``recsys_stage_users`` and ``recsys_stage_items`` that factors are copied
    into (``copy_stage_users`` / ``copy_stage_items``), their vector type named with its schema
    so that a pinned session can create them."""
    conn.execute(queries.compose("store_create_stage_tables", vector=db.vector_type(conn),
                                 dims=sql.Literal(dims)))


def write(conn: psycopg.Connection, tables: VersionTables, data: Interactions,
          user_factors: np.ndarray, item_factors: np.ndarray) -> None:
    """Fill the version's factor tables from the temp key maps and the fitted factors.

    recsys creates them empty (as its owner, with the version's number of factors), the worker
    inserts the rows, and recsys adds their keys and statistics. They are committed, still
    unused: the version stays 'building' until ``activate``, and ``discard`` (or the next run's
    clean-up after a crash) removes them. Their index comes next (``IndexBuild``)."""
    dims = user_factors.shape[1]
    user_table, item_table = version_tables(tables.model_id, tables.version)
    version = {"model_id": tables.model_id, "version": tables.version}
    with conn.transaction():
        conn.execute(queries.text("store_create_version_tables"), version)
        create_stage_tables(conn, dims)
        seen = data.matrix
        copy_blocks(conn, queries.text("store_copy_stage_users"), copybin.encode_vectors_arrays(
            np.arange(data.users, dtype=np.int32), user_factors, seen))
        popularity = np.diff(seen.tocsc().indptr)
        copy_blocks(conn, queries.text("store_copy_stage_items"), [copybin.encode_vectors_ints(
            np.arange(data.items, dtype=np.int32), item_factors, popularity)])
        conn.execute(queries.compose(
            "store_fill_user_table", table=sql.Identifier("recsys", user_table)))
        conn.execute(queries.compose(
            "store_fill_item_table", table=sql.Identifier("recsys", item_table)))
        conn.execute(queries.text("store_seal_version_tables"), version)
        conn.execute(queries.text("store_drop_stage_tables"))


def item_weight_copy(model_id: int, version: int, weights: np.ndarray) -> bytes:
    """Binary COPY body of one ``recsys.version_item_weight`` row (int4, int4, float8[])."""
    values = np.zeros(len(weights), dtype=[("length", ">i4"), ("value", ">f8")])
    values["length"] = 8
    values["value"] = weights
    array = (np.array([1, 0, FLOAT8_OID, len(weights), 1], dtype=">i4").tobytes()
             if len(weights) else np.array([0, 0, FLOAT8_OID], dtype=">i4").tobytes())
    array += values.tobytes()
    row = (np.array([3], dtype=">i2").tobytes()
           + np.array([4, model_id, 4, version, len(array)], dtype=">i4").tobytes() + array)
    return copybin.HEADER + row + copybin.TRAILER


def write_item_weights(conn: psycopg.Connection, tables: VersionTables,
                       data: Interactions) -> None:
    """Keep the version's summed raw weight per item index (before weighting) in
    ``recsys.version_item_weight``: the bm25 statistics of SQL fold-in
    (``recsys._confidences``) come from there instead of from a read of the source."""
    weights = np.asarray(data.matrix.sum(axis=0), dtype=np.float64).ravel()
    with conn.cursor() as cur, cur.copy(queries.text("store_copy_item_weight")) as copy:
        copy.write(item_weight_copy(tables.model_id, tables.version, weights))


def activate(conn: psycopg.Connection, model: ModelConfig, tables: VersionTables,
             data: Interactions) -> list[int]:
    """Mark the version ready and active in one transaction; drop versions beyond retention.

    Returns the versions whose tables were dropped.
    """
    dropped: list[int] = []
    with conn.transaction():
        conn.execute(queries.text("store_lock_model"), {"model_id": model.id})
        conn.execute(queries.text("store_mark_version"), {
            "status": "ready", "users": data.users, "items": data.items,
            "nnz": int(data.matrix.nnz), "model_id": model.id, "version": tables.version})
        conn.execute(queries.text("store_activate_version"),
                     {"model_id": model.id, "version": tables.version})
        expired = conn.execute(queries.text("store_expired_versions"), {
            "model_id": model.id, "active": tables.version,
            "keep": int(model.params["keep_versions"])}).fetchall()
        for version, _, _ in expired:
            try:
                # A reader still inside an old version holds a lock on its tables: do not wait
                # for it (nor make new readers queue behind the drop); try again next time.
                with conn.transaction():
                    conn.execute(queries.text("store_drop_lock_timeout"))
                    conn.execute(queries.text("store_drop_version_tables"),
                                 {"model_id": model.id, "version": int(version)})
            except psycopg.errors.LockNotAvailable:
                log.info("%s: version %d is still being read; dropped later", model.name, version)
                continue
            conn.execute(queries.text("store_mark_dropped"),
                         {"model_id": model.id, "version": version})
            dropped.append(int(version))
    return dropped


def discard(conn: psycopg.Connection, model: ModelConfig, tables: VersionTables) -> None:
    """Remove what a failed run built; the active version is not touched."""
    with conn.transaction():
        conn.execute(queries.text("store_drop_version_tables"),
                     {"model_id": model.id, "version": tables.version})
        conn.execute(queries.text("store_forget_content"),
                     {"model_id": model.id, "version": tables.version})
        conn.execute(queries.text("store_mark_version"), {
            "status": "failed", "users": None, "items": None, "nnz": None,
            "model_id": model.id, "version": tables.version})
