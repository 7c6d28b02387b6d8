"""Incremental fold-in: fresh vectors for users with new events, written into the active version.

Between full retrains, users whose events changed get a new vector computed from their full
history against the active version's item factors (implicit's ``recalculate_user`` /
``partial_fit_users``: one ALS half-step with the item factors held fixed). Items that did not
exist get a vector from the users who interacted with them (``partial_fit_items``), computed
before and again after the users so that a new item seen only by new users is not left at
zero. Existing item vectors are not changed; that is what the next full retrain is for.

Which users changed: with a time column, those with rows newer than the version's watermark
(the newest time the version has taken into account, ``recsys.watermark``); otherwise those
whose set of items in the source differs from the ``seen`` items stored with the version
(a changed weight of an already seen item is then not noticed).

New users and items get indices after the current maximum; the write happens in one
transaction, so readers see the version before or after the fold-in, never half of it.

A model with content features (``recsys.set_features``) also gets the keys its feature
relations gained since the version was trained, mapped through the version's stored feature map
(``features.extend``): a new item with a text has a vector, similar items and an audience
within seconds. That part needs no elementwise weighting: a version weighted by bm25 or tfidf
gets its new content items, and its users (with new events or new content) wait for the next
full refresh. The users' fold-in is written first, then each kind of content keys, each in one
transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import psycopg
import scipy.sparse as sp
from psycopg import sql

from recsys_db import (
    als,
    copybin,
    embedding,
    features,
    gram,
    load,
    precompute,
    queries,
    run,
    store,
    weighting,
)
from recsys_db import watermark as marks
from recsys_db.access import as_declarer
from recsys_db.errors import ConfigError, DataError, RecsysError

log = logging.getLogger(__name__)

# Weightings that act on each interaction alone; bm25 and tfidf depend on whole-matrix
# statistics that a fold-in does not see.
ELEMENTWISE_WEIGHTING = ("none", "confidence", "log")


@dataclass
class FoldInResult(run.RunRecord):
    """Outcome of a fold-in, as recorded in ``recsys.run`` (kind 'incremental').

    ``users`` is the number of users given new vectors and ``items`` the number of new items;
    ``new_users`` and ``new_items`` say how many users and items were not in the version before.
    ``content_items`` and ``content_users`` were added from the feature relations' content.
    """

    new_users: int = 0
    new_items: int = 0
    watermark: str | None = None
    # keys the feature relations gained, mapped from content (recsys.run's cold_items/users)
    content_items: int = 0
    content_users: int = 0


@dataclass
class _Changes:
    """Events of the changed users, indexed like the active version (new ones appended)."""

    user_ids: np.ndarray  # sorted global user indices, one per matrix row
    new_users: int
    new_item_ids: np.ndarray  # global indices of items not in the version yet
    matrix: sp.csr_matrix  # changed users x all items, summed raw weights
    rows_read: int
    old_users: int
    old_items: int
    watermark: str | None


def fold_in(url: str, model_name: str, *, progress: run.Progress | None = None,
            worker: str | None = None) -> FoldInResult:
    """Fold users with new events (and new items) into the model's active version.

    Holds the model's training lock, so it never overlaps a full training run. New events are
    weighted and regularized with the params the active version was trained with
    (``recsys.model_version.params``), whatever the model's params are now. The run is
    recorded in ``recsys.run`` with kind 'incremental' (with those params); a failure is
    recorded there and re-raised, and leaves the active version as it was. An exception
    raised by ``progress`` is logged and never fails the fold-in.
    """
    with run.session(url, model_name) as session:
        active = session.active_version()
        model = active.model
        with session.run("incremental", model.params,
                         lambda run_id: FoldInResult(run_id, model.name,
                                                     version=active.version),
                         progress=progress, worker=worker) as current:
            _stages(session.conn, active, current)
        session.conn.execute(queries.text("foldin_drop_temp"))
    result = current.record
    log.info("%s: folded %d users (%d new) and %d new items into version %d; %d items and %d "
             "users added from content", model.name, result.users or 0, result.new_users,
             result.new_items, result.version, result.content_items, result.content_users)
    return result


def _stages(conn: psycopg.Connection, active: run.ActiveVersion,
            current: run.Run[FoldInResult]) -> None:
    result, model = current.record, active.model
    declared = features.declared(conn, model.id)
    declares_content = bool(declared)
    for spec in declared:  # before anything is written: a worker without the model fails now
        if spec.embedding_model is not None:
            embedding.check(spec.embedding_model)
    elementwise = model.params["weighting"] in ELEMENTWISE_WEIGHTING
    if elementwise:
        _fold_users(conn, active, current)
    elif declares_content:
        log.warning("%s: users with new events wait for a full refresh: version %d is "
                    "weighted by %s, which a fold-in cannot apply; adding new keys from content "
                    "only", model.name, active.version, model.params["weighting"])
    else:  # recorded as a failed run
        raise ConfigError(
            f'incremental refresh of version {active.version} of model "{model.name}" '
            f"does not support weighting {model.params['weighting']}; use one of "
            f"{', '.join(ELEMENTWISE_WEIGHTING)} or a full refresh")
    if declares_content:
        with current.stage("content"):
            # without the users' fold-in, a user key with events must not come in from content
            added = features.extend(conn, model, active.version,
                                    {"users": active.user_table, "items": active.item_table},
                                    kinds=("item", "user") if elementwise else ("item",))
        result.content_items, result.content_users = added["items"], added["users"]
        conn.execute(queries.text("features_record"), {
            "items": added["items"], "users": added["users"], "run_id": result.run_id})


def _fold_users(conn: psycopg.Connection, active: run.ActiveVersion,
                current: run.Run[FoldInResult]) -> None:
    """Fold users with new events (and the new items they saw) into the active version."""
    result, model = current.record, active.model
    with current.stage("load"):
        changes = _load_changes(conn, active)
    result.rows_read, result.watermark = changes.rows_read, changes.watermark
    result.users, result.new_users = len(changes.user_ids), changes.new_users
    result.new_items, result.nnz = len(changes.new_item_ids), int(changes.matrix.nnz)
    result.items = result.new_items
    if not result.users:
        marks.record(conn, model.id, active.version, changes.watermark)
        return
    with current.stage("fit"):
        user_vectors, item_vectors = _fit(conn, active, changes)
    with current.stage("write"):
        _write(conn, active, changes, user_vectors, item_vectors)


def _load_changes(conn: psycopg.Connection, active: run.ActiveVersion) -> _Changes:
    """Find the changed users and copy their full history out, all in one snapshot.

    Only the statements that read the source run as the model's declarer, and they read
    nothing of recsys but the worker's temp tables; the worker compares with the version."""
    model, version = active.model, active.version
    tables = {"users": active.user_table, "items": active.item_table}
    conn.execute(queries.text("foldin_drop_temp"))
    with conn.transaction():
        conn.execute(queries.text("load_repeatable_read"))
        # the same column checks and weight/event expressions a full training uses
        parts: dict[str, sql.Composable] = {
            **load.expressions(model, load.check_columns(conn, model)), **tables}
        conn.execute(queries.text("foldin_create_keys"))
        row = conn.execute(queries.text("foldin_watermark"),
                           {"model_id": model.id, "version": version}).fetchone()
        if model.time_column is not None and row is not None:
            with as_declarer(conn, model, grants={"recsys_foldin_keys": "INSERT"}):
                conn.execute(queries.compose("foldin_keys_since",
                                             time=marks.time_expression(model), **parts),
                             {"watermark": row[0]})
        else:
            conn.execute(queries.text("foldin_create_pairs"))
            with as_declarer(conn, model, grants={"recsys_foldin_pairs": "INSERT"}):
                conn.execute(queries.compose("foldin_copy_pairs", **parts))
            conn.execute(queries.compose("foldin_keys_changed", **parts))
        watermark = marks.current(conn, model)
        conn.execute(queries.compose("foldin_map_keys", map=sql.Identifier("recsys_foldin_users"),
                                     keys=sql.Identifier("recsys_foldin_keys"),
                                     factors=active.user_table))
        with as_declarer(conn, model, grants={"recsys_foldin_users": "SELECT",
                                                     "recsys_foldin_item_keys": "INSERT"}):
            conn.execute(queries.compose("foldin_item_keys", **parts))
        conn.execute(queries.compose("foldin_map_keys", map=sql.Identifier("recsys_foldin_items"),
                                     keys=sql.Identifier("recsys_foldin_item_keys"),
                                     factors=active.item_table))
        buffer = bytearray()
        with as_declarer(conn, model, grants={"recsys_foldin_items": "SELECT"}), \
                conn.cursor() as cur, \
                cur.copy(queries.compose("foldin_copy_events", **parts)) as copy:
            for block in copy:
                buffer += block
        changed = conn.execute(queries.text("foldin_changed_users")).fetchall()
        new_items = conn.execute(queries.text("foldin_new_items")).fetchall()
        size = conn.execute(queries.compose("foldin_size", **parts)).fetchone()
    assert size is not None
    users_count, users_next, items_count, items_next = (int(x) for x in size)
    if users_count != users_next or items_count != items_next:
        raise DataError(f'version {version} of model "{model.name}" has gaps in its user or '
                        f"item numbering ({users_count} users up to {users_next - 1}, "
                        f"{items_count} items up to {items_next - 1}); run a full refresh")
    user_ids = np.array([r[0] for r in changed], dtype=np.int64)
    new_item_ids = np.array([r[0] for r in new_items], dtype=np.int64)
    user_idx, item_idx, weights = copybin.parse_int_int_float(buffer)
    del buffer
    load.check_weights(model, weights)
    matrix = sp.csr_matrix(
        (weights, (np.searchsorted(user_ids, user_idx), item_idx)),
        shape=(len(user_ids), items_count + len(new_item_ids)), dtype=np.float64)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return _Changes(user_ids=user_ids, new_users=sum(1 for r in changed if r[1]),
                    new_item_ids=new_item_ids, matrix=matrix, rows_read=len(weights),
                    old_users=users_count, old_items=items_count, watermark=watermark)


def _read_factors(conn: psycopg.Connection, table: sql.Identifier, dims: int,
                  count: int) -> np.ndarray:
    """All vectors of a factor table as a (count, dims) float32 array, row i = idx i."""
    buffer = bytearray()
    with conn.cursor() as cur, cur.copy(queries.compose("foldin_copy_factors", table=table)) \
            as copy:
        for block in copy:
            buffer += block
    view = memoryview(buffer)
    if bytes(view[:11]) != copybin.SIGNATURE:
        raise ValueError("not a binary copy stream")
    extension = int.from_bytes(view[15:19], "big")
    row = np.dtype([("n", ">i2"), ("l_idx", ">i4"), ("idx", ">i4"), ("l_vec", ">i4"),
                    ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f4", (dims,))])
    rows = np.frombuffer(view[19 + extension: len(view) - 2], dtype=row)
    if len(rows) != count or not (rows["idx"] == np.arange(count)).all() \
            or not (rows["dim"] == dims).all():
        raise ValueError(f"factor table {table.as_string()} is not numbered 0..{count - 1} "
                         f"with {dims} dimensions")
    return rows["vec"].astype(np.float32)


def _fit(conn: psycopg.Connection, active: run.ActiveVersion,
         changes: _Changes) -> tuple[np.ndarray, np.ndarray]:
    """New vectors for the changed users and the new items, as implicit computes them."""
    weighted = weighting.apply(changes.matrix, active.model.params)
    dims = active.dims
    with als.solver(dims, active.model.params) as solver:
        solver.item_factors = _read_factors(conn, active.item_table, dims, changes.old_items)
        if len(changes.new_item_ids) == 0:
            user_vectors = solver.recalculate_user(changes.user_ids, weighted)
            item_vectors = np.zeros((0, dims), dtype=np.float32)
        else:
            # new users start at zero: they add nothing to a new item until they have a vector
            known = _read_factors(conn, active.user_table, dims, changes.old_users)
            total_users = max(changes.old_users, int(changes.user_ids.max()) + 1)
            solver.user_factors = np.vstack(
                [known, np.zeros((total_users - changes.old_users, dims), dtype=np.float32)])
            item_users = _item_users(weighted, changes, total_users)
            solver.partial_fit_items(changes.new_item_ids, item_users)
            solver.partial_fit_users(changes.user_ids, weighted)
            solver.partial_fit_items(changes.new_item_ids, item_users)
            user_vectors = solver.user_factors[changes.user_ids]
            item_vectors = solver.item_factors[changes.new_item_ids]
    user_vectors = np.asarray(user_vectors, dtype=np.float32)
    item_vectors = np.asarray(item_vectors, dtype=np.float32)
    als.check_finite(user_vectors, item_vectors, what="fold-in", hint="raise regularization")
    return user_vectors, item_vectors


def _item_users(weighted: sp.csr_matrix, changes: _Changes, total_users: int) -> sp.csr_matrix:
    """New items x all users (global user indices) from the changed users' weighted rows."""
    columns = weighted.tocsc()[:, changes.new_item_ids].tocoo()
    return sp.csr_matrix((columns.data, (columns.col, changes.user_ids[columns.row])),
                         shape=(len(changes.new_item_ids), total_users), dtype=np.float32)


def _write(conn: psycopg.Connection, active: run.ActiveVersion, changes: _Changes,
           user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
    """Write the new vectors into the active version's tables in one transaction."""
    model, version = active.model, active.version
    tables = {"users": active.user_table, "items": active.item_table}
    with conn.transaction():
        row = conn.execute(queries.text("store_lock_model"), {"model_id": model.id}).fetchone()
        if row is None or row[0] != version:
            raise RecsysError(f'model "{model.name}" changed its active version during the '
                              "fold-in; nothing was written")
        store.create_stage_tables(conn, active.dims)
        store.copy_blocks(conn, queries.text("store_copy_stage_users"),
                          copybin.encode_vectors_arrays(changes.user_ids.astype(np.int32),
                                                        user_vectors, changes.matrix))
        store.copy_blocks(conn, queries.text("store_copy_stage_items"), [
            copybin.encode_vectors_ints(changes.new_item_ids.astype(np.int32), item_vectors,
            np.zeros(len(changes.new_item_ids), dtype=np.int32))])
        # order matters: popularity and counts compare with the users' old seen items
        conn.execute(queries.compose("foldin_insert_items", **tables))
        conn.execute(queries.compose("foldin_popularity", **tables))
        conn.execute(queries.compose("foldin_version_counts", **tables), {
            "new_users": changes.new_users, "new_items": len(changes.new_item_ids),
            "model_id": model.id, "version": version})
        if len(changes.new_item_ids):
            new_weights = np.asarray(changes.matrix[:, changes.new_item_ids].sum(axis=0))
            conn.execute(queries.text("foldin_extend_item_weight"), {
                "old_items": changes.old_items, "new_weights": new_weights.ravel().tolist(),
                "model_id": model.id, "version": version})
            gram.add_items(conn, model.id, version, item_vectors)
        conn.execute(queries.compose("foldin_update_users", **tables))
        conn.execute(queries.compose("foldin_insert_users", **tables))
        precompute.refresh_users(conn, model.name, model.id, version, tables["users"])
        precompute.forget_ranked(conn, model.id, version, tables["users"])
        marks.record(conn, model.id, version, changes.watermark)
        conn.execute(queries.text("store_drop_stage_tables"))
