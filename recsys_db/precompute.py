"""Precomputed top-N recommendations per user and similar items per item, for BI tools.

Rows are ranked in batches on the version's factors (``ranking``) and written with binary
COPY into a new table per version, which is then attached as a partition of
``recsys.recommendation`` / ``recsys.similar_item``. The views ``recsys.recommendations`` and
``recsys.similar_items_top`` show the active version's partition, so rows switch with the
version, atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import scipy.sparse as sp
from psycopg import sql

from recsys_db import copybin, queries, ranking

log = logging.getLogger(__name__)

FLOAT4_OID = 700

@dataclass(frozen=True)
class Kind:
    """One kind of precomputed rows: its partitioned parent, table suffix and key column."""

    parent: str
    suffix: str
    key_column: str


RECOMMENDATIONS = Kind("recommendation", "recs", "user_key")
SIMILAR_ITEMS = Kind("similar_item", "similar", "item_key")
RANKED = Kind("ranked_recommendation", "ranked", "user_key")  # written by ``ranker``
KINDS = (RECOMMENDATIONS, SIMILAR_ITEMS, RANKED)


class Keys:
    """Text keys by dense index, as UTF-8 bytes ready for fixed-width numpy records."""

    def __init__(self, keys: Sequence[str]):
        encoded = [key.encode() for key in keys]
        self.lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        self.bytes = np.array(encoded, dtype=np.bytes_)


def partition_name(model_id: int, version: int, kind: Kind) -> str:
    """Table name of one version's partition (in schema recsys)."""
    return f"m{model_id}_v{version}_{kind.suffix}"


def encode_rows(model_id: int, version: int, left: Keys, left_idx: npt.NDArray[np.integer],
                ranks: npt.NDArray[np.integer], right: Keys,
                right_idx: npt.NDArray[np.integer], scores: npt.NDArray[np.floating],
                features: npt.NDArray[np.float32] | None = None) -> bytes:
    """Binary COPY rows (model_id int4, version int4, left text, rank int4, right text,
    score float4), without header or trailer; with ``features`` (rows x n), a last column
    float4[] of each row's n values.

    Text fields vary in length, so rows are grouped by their two key lengths; within a group
    every row has the same layout and is built as one numpy record array.
    """
    if not len(left_idx):
        return b""
    left_len = left.lengths[left_idx]
    right_len = right.lengths[right_idx]
    group = left_len * (int(right.lengths.max(initial=0)) + 1) + right_len
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    parts = []
    for begin, end in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        rows = order[begin:end]
        a, b = int(left_len[rows[0]]), int(right_len[rows[0]])
        fields: list[tuple[Any, ...]] = [
            ("n", ">i2"), ("l_model", ">i4"), ("model", ">i4"), ("l_version", ">i4"),
            ("version", ">i4"), ("l_left", ">i4")]
        fields += [("left", f"S{a}")] if a else []
        fields += [("l_rank", ">i4"), ("rank", ">i4"), ("l_right", ">i4")]
        fields += [("right", f"S{b}")] if b else []
        fields += [("l_score", ">i4"), ("score", ">f4")]
        width = 0 if features is None else features.shape[1]
        if features is not None:
            # one-dimensional float4 array: ndim, has-null, element type, length, lower
            # bound, then (length, value) per element
            fields += [("l_array", ">i4"), ("ndim", ">i4"), ("nulls", ">i4"), ("oid", ">i4"),
                       ("dim", ">i4"), ("lbound", ">i4"), ("values", [("l", ">i4"), ("v", ">f4")],
                                                             (width,))]
        out = np.empty(len(rows), dtype=np.dtype(fields))
        out["n"] = 6 if features is None else 7
        out["l_model"] = out["l_version"] = out["l_rank"] = out["l_score"] = 4
        out["model"] = model_id
        out["version"] = version
        out["l_left"] = a
        out["l_right"] = b
        if a:
            out["left"] = left.bytes[left_idx[rows]]
        if b:
            out["right"] = right.bytes[right_idx[rows]]
        out["rank"] = ranks[rows]
        out["score"] = scores[rows]
        if features is not None:
            out["l_array"] = 20 + 8 * width
            out["ndim"], out["nulls"], out["oid"] = 1, 0, FLOAT4_OID
            out["dim"], out["lbound"] = width, 1
            out["values"]["l"] = 4
            out["values"]["v"] = features[rows]
        parts.append(out.tobytes())
    return b"".join(parts)


def _ranked(ids: npt.NDArray[np.integer], scores: npt.NDArray[np.floating],
            first: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                 npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Flatten (rows x k) results into (row index, rank, id, score), dropping padding."""
    count, k = ids.shape
    real = np.isfinite(scores)
    rows = np.repeat(np.arange(first, first + count, dtype=np.int64), k)[real.ravel()]
    ranks = np.tile(np.arange(1, k + 1, dtype=np.int64), count)[real.ravel()]
    return rows, ranks, ids[real].astype(np.int64), scores[real].astype(np.float32)


def recommendation_blocks(user_factors: np.ndarray, item_factors: np.ndarray,
                          seen: sp.csr_matrix, k: int, model_id: int, version: int, users: Keys,
                          items: Keys) -> Iterator[bytes]:
    """COPY blocks of each user's top k unseen items, in batches of users."""
    for start, ids, values in ranking.unseen_batches(user_factors, item_factors, seen, k):
        rows, ranks, item_idx, scores = _ranked(ids, values, start)
        yield encode_rows(model_id, version, users, rows, ranks, items, item_idx, scores)


def similar_item_blocks(item_factors: np.ndarray, k: int, model_id: int, version: int,
                        items: Keys) -> Iterator[bytes]:
    """COPY blocks of each item's k most similar items (cosine), the item itself left out;
    equal scores by item index, as ``recsys.similar_items`` orders them."""
    count = item_factors.shape[0]
    k = min(k, count - 1)
    if k <= 0:
        return
    unit = ranking.normalized(item_factors)
    batch = ranking.batch_size(count)
    buffer = np.empty((min(batch, count), count), np.float32)
    for start in range(0, count, batch):
        stop = min(start + batch, count)
        scores = buffer[:stop - start]
        np.matmul(unit[start:stop], unit.T, out=scores)
        scores[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        ids, values = ranking.top_k(scores, k)
        rows, ranks, similar_idx, values = _ranked(ids, values, start)
        yield encode_rows(model_id, version, items, rows, ranks, items, similar_idx, values)


def write_partition(conn: psycopg.Connection, model_id: int, version: int, kind: Kind,
                     blocks: Iterator[bytes]) -> int:
    """Create the version's partition (recsys does, as its owner), copy the rows in, and have
    recsys index and attach it."""
    partition = {"parent": kind.parent, "model_id": model_id, "version": version}
    with conn.transaction():
        row = conn.execute(queries.text("precompute_create_partition"), partition).fetchone()
        assert row is not None and row[0] == partition_name(model_id, version, kind)
        table = sql.Identifier("recsys", row[0])
        with conn.cursor() as cur:
            with cur.copy(queries.compose("precompute_copy_partition", table=table)) as copy:
                copy.write(copybin.HEADER)
                for block in blocks:
                    copy.write(block)
                copy.write(copybin.TRAILER)
            rows = cur.rowcount
        conn.execute(queries.text("precompute_attach_partition"), partition)
    return int(rows)


def write(conn: psycopg.Connection, model_id: int, version: int, params: dict[str, int],
          user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix,
          user_keys: Sequence[str], item_keys: Sequence[str]) -> dict[str, int]:
    """Write the version's precomputed partitions that ``params`` ask for.

    ``params['recommendations_k']`` and ``params['similar_items_k']`` give the rows per user
    and per item (0: none). Returns the number of rows written per kind.
    """
    written: dict[str, int] = {}
    user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    items = Keys(item_keys)
    if int(params["recommendations_k"]) > 0:
        blocks = recommendation_blocks(user_factors, item_factors, seen.tocsr(),
                                       int(params["recommendations_k"]), model_id, version,
                                       Keys(user_keys), items)
        written[RECOMMENDATIONS.parent] = write_partition(conn, model_id, version,
                                                           RECOMMENDATIONS, blocks)
    if int(params["similar_items_k"]) > 0:
        blocks = similar_item_blocks(item_factors, int(params["similar_items_k"]),
                                     model_id, version, items)
        written[SIMILAR_ITEMS.parent] = write_partition(conn, model_id, version,
                                                         SIMILAR_ITEMS, blocks)
    return written


def serve(conn: psycopg.Connection, model_id: int, version: int, params: dict[str, int],
          written: dict[str, int]) -> None:
    """Let ``recsys.recommend`` and ``recsys.similar_items`` answer from the partitions just
    written (for k up to the rows each holds per key). Call it only when the version's items
    are exactly the ranked ones: an item added later (from features) is in no precomputed row."""
    conn.execute(queries.text("precompute_set_served"), {
        "k": int(params["recommendations_k"]) if RECOMMENDATIONS.parent in written else 0,
        "similar_k": int(params["similar_items_k"]) if SIMILAR_ITEMS.parent in written else 0,
        "model_id": model_id, "version": version})


def _existing(conn: psycopg.Connection, model_id: int, version: int,
              kind: Kind) -> sql.Identifier | None:
    """The version's partition of ``kind``, or None when the version has none."""
    name = partition_name(model_id, version, kind)
    row = conn.execute(queries.text("precompute_partition_exists"),
                       {"name": f"recsys.{name}"}).fetchone()
    return None if row is None or row[0] is None else sql.Identifier("recsys", name)


def refresh_users(conn: psycopg.Connection, model: str, model_id: int, version: int,
                  users: sql.Identifier) -> int:
    """Recompute the precomputed rows of the users staged by a fold-in (``recsys_stage_users``)
    from a live search (``recsys._recommend_live``: ``recsys.recommend`` would read the rows
    being replaced), as many per user as the version was trained with (the model's params may
    have changed since); returns the rows written (0 when the version has none)."""
    partition = _existing(conn, model_id, version, RECOMMENDATIONS)
    if partition is None:
        return 0
    cur = conn.execute(
        queries.compose("precompute_refresh_users", users=users, partition=partition),
        {"model_id": model_id, "version": version, "model": model})
    return int(cur.rowcount)


def forget_ranked(conn: psycopg.Connection, model_id: int, version: int,
                  users: sql.Identifier) -> int:
    """Delete the ranked rows of the users staged by a fold-in (``recsys_stage_users``): they
    were ranked on a history that has changed since, so ``recsys.recommend`` serves these users
    from their refreshed ALS rows until the next training ranks them again. Returns the rows
    deleted (0 when the version has no ranked rows)."""
    partition = _existing(conn, model_id, version, RANKED)
    if partition is None:
        return 0
    cur = conn.execute(queries.compose("precompute_forget_ranked", users=users,
                                       partition=partition))
    return int(cur.rowcount)


def _drop_partitions(conn: psycopg.Connection, names: Sequence[str]) -> bool:
    """Drop partitions (in schema recsys) unless readers hold their parent; returns whether
    it did (``recsys._drop_partitions``: ``recsys.recommend`` must not queue behind the drop;
    it drops only precomputed partitions of recsys's owner, never the active version's)."""
    row = conn.execute(queries.text("precompute_drop_partitions"),
                       {"names": list(names)}).fetchone()
    return bool(row and row[0])


def discard(conn: psycopg.Connection, model_id: int, version: int) -> None:
    """Drop a version's partitions (those that exist; when readers hold the parent they stay
    for ``prune``)."""
    _drop_partitions(conn, [partition_name(model_id, version, kind) for kind in KINDS])


def prune(conn: psycopg.Connection) -> list[str]:
    """Drop partitions of versions that were dropped or failed, or whose model is gone.

    Versions still building (another model's training in progress) are left alone, and so is
    everything while readers hold the parent (see ``_drop_partitions``). Returns the partitions
    dropped.
    """
    stale = [row[0] for row in conn.execute(queries.text("precompute_stale_partitions"))]
    return stale if _drop_partitions(conn, stale) else []
