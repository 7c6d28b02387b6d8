"""Read a model's interactions out of its source relation as a sparse user x item matrix.

The source is read in one pass that returns counts and the usable rows packed into a few
binary values: integer keys as fixed-width records, other keys as their text joined by zero
bytes (``textkeys``). numpy maps the keys to dense indices in the byte order of their text and
the key maps are copied into temporary tables (``recsys_user_map``, ``recsys_item_map``).

Every statement that reads the source runs as the model's declarer (``access.as_declarer``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import scipy.sparse as sp
from psycopg import sql

from recsys_db import copybin, queries, textkeys
from recsys_db.access import as_declarer
from recsys_db.errors import ConfigError, DataError
from recsys_db.model import ModelConfig

log = logging.getLogger(__name__)

NUMERIC_TYPES = {"smallint", "integer", "bigint", "real", "double precision", "boolean"}
# Rows per packed-record query of integer keys: at most 24 bytes a row, under half of
# PostgreSQL's 1 GB value limit, so that a row estimate twice too low still fits.
ROWS_PER_CHUNK = 20_000_000
# Bytes of keys and weights per query of other keys: the row of one chunk, the three values
# together, stays under half of PostgreSQL's 1 GB limit when the estimate is right.
TEXT_BYTES_PER_CHUNK = 400_000_000
# work_mem of the load transaction. With the 4 MB default, the parallel DISTINCT of 10M rows
# into 500k keys spilled in every worker and took minutes instead of 3 s (measured).
LOAD_WORK_MEM = "256MB"
# Key types whose equality is equality of their text form: joined on as they are, not as text.
NATIVE_KEY_TYPES = {"smallint", "integer", "bigint", "text", "uuid"}
# Key types (base types, by pg_type name; domains over them too) whose text form depends on
# nothing but the value. Keys are compared as text, so a type whose output follows session
# settings (TimeZone, DateStyle, IntervalStyle, extra_float_digits, lc_monetary) would map
# the same user to different text in different sessions.
KEY_TYPES = {"int2", "int4", "int8", "numeric", "text", "varchar", "bpchar", "uuid"}
# Refused key types whose text depends on session settings, named as such in the error.
SESSION_DEPENDENT_TYPES = {"timestamptz", "timestamp", "date", "time", "timetz", "interval",
                           "float4", "float8", "money"}
# Integer key types read as binary: their send function and big-endian numpy type.
INTEGER_KEY_TYPES = {"smallint": ("int2send", ">i2"), "integer": ("int4send", ">i4"),
                     "bigint": ("int8send", ">i8")}


@dataclass
class Interactions:
    """Interactions of one snapshot of the source; indices match the temp key maps."""

    matrix: sp.csr_matrix  # users x items, summed weights
    rows_read: int
    rows_skipped_null: int
    rows_skipped_event: int

    @property
    def users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def items(self) -> int:
        return int(self.matrix.shape[1])


def refresh(conn: psycopg.Connection, model: ModelConfig) -> bool:
    """Refresh the source when it is a materialized view; returns whether it did.

    A plain REFRESH, which blocks readers of the view while it runs, unless the model's
    ``refresh_concurrently`` param is true: then REFRESH CONCURRENTLY, which lets them read
    but costs several times more and needs a unique index on columns of the view (ConfigError
    without one; a view not yet populated is refreshed plainly, as PostgreSQL requires).
    The refresh runs as the declarer, which must own the view (or, on PostgreSQL 17 and later,
    hold MAINTAIN on it); ConfigError otherwise.
    """
    row = conn.execute(
        queries.text("load_source_kind"),
        {"schema": model.source_schema, "table": model.source_table,
         "declarer": model.declarer},
    ).fetchone()
    if row is None:
        raise ConfigError(f'source relation "{model.source_label}" of model "{model.name}" '
                          "does not exist")
    relkind, populated, has_unique, may_refresh = row
    if relkind != "m":
        return False
    concurrently = bool(model.params.get("refresh_concurrently", False))
    with conn.transaction(), as_declarer(conn, model):
        if not may_refresh:
            raise ConfigError(
                f'role "{model.declarer}", which declared model "{model.name}", may not refresh '
                f'its source, materialized view "{model.source_label}": it must own it (or, on '
                "PostgreSQL 17 and later, hold MAINTAIN on it)")
        if concurrently and not has_unique:
            raise ConfigError(
                f'model "{model.name}" has refresh_concurrently on, but its source, '
                f'materialized view "{model.source_label}", has no unique index on columns '
                "alone (no expression, no WHERE), which REFRESH CONCURRENTLY needs; create one "
                "or set refresh_concurrently to false")
        name = ("load_refresh_matview_concurrently" if concurrently and populated
                else "load_refresh_matview")
        conn.execute(queries.compose(name, source=model.source))
    return True


def check_columns(conn: psycopg.Connection, model: ModelConfig) -> dict[str, str]:
    """The source's column types by name, once the model's columns are found there, the weight
    column is a number and the key types are supported (ConfigError otherwise)."""
    rows = conn.execute(
        queries.text("load_source_columns"),
        {"schema": model.source_schema, "table": model.source_table},
    ).fetchall()
    if not rows:
        raise ConfigError(f'source relation "{model.source_label}" of model "{model.name}" '
                          "does not exist")
    types: dict[str, str] = dict(rows)
    for role in ("user_column", "item_column", "weight_column", "event_column"):
        column = getattr(model, role)
        if column is not None and column not in types:
            raise ConfigError(
                f'column "{column}" does not exist in relation "{model.source_label}" '
                f"({role} of model \"{model.name}\")"
            )
    if model.weight_column is not None and types[model.weight_column] not in NUMERIC_TYPES \
            and not types[model.weight_column].startswith("numeric"):
        raise ConfigError(
            f'weight_column "{model.weight_column}" has type {types[model.weight_column]}, '
            "expected a number"
        )
    check_key_types(conn, model)
    return types


def check_key_types(conn: psycopg.Connection, model: ModelConfig) -> None:
    """Refuse key columns whose text form is not a function of the value alone.

    A view's column types can change after ``create_model`` checked them, so every training
    and fold-in checks again.
    """
    found = {row[0]: row[1:] for row in conn.execute(queries.text("load_key_types"), {
        "schema": model.source_schema, "table": model.source_table,
        "columns": [model.user_column, model.item_column]}).fetchall()}
    for role, column in (("user", model.user_column), ("item", model.item_column)):
        declared, base, base_label = found[column]
        if base in KEY_TYPES:
            continue
        described = declared if declared == base_label else f"{declared} (over {base_label})"
        why = ("whose text depends on session settings" if base in SESSION_DEPENDENT_TYPES
               else "which is not a supported key type")
        raise ConfigError(
            f'{role} column "{column}" of model "{model.name}" has type {described}, {why}; '
            "use a text, integer or uuid key (cast it in a view)")


def expressions(model: ModelConfig, types: dict[str, str]) -> dict[str, sql.Composable]:
    """The SQL a read of the source composes, over source alias ``s``: the source, the keys
    (as they are and in the key maps' ``native`` type), the raw weight, the weight times the
    event's weight, and whether the event is mapped. Full training and fold-in both use it."""
    def column(name: str) -> sql.Composable:
        return sql.SQL("s.{}").format(sql.Identifier(name))

    if model.weight_column is None:
        weight: sql.Composable = sql.SQL("1::double precision")
    elif types[model.weight_column] == "boolean":
        weight = sql.SQL("{}::integer::double precision").format(column(model.weight_column))
    else:
        weight = sql.SQL("{}::double precision").format(column(model.weight_column))
    raw_weight = weight
    event_ok: sql.Composable = sql.SQL("true")
    if model.event_column is not None and model.event_weights:
        cases = sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(sql.Literal(event), sql.Literal(float(value)))
            for event, value in sorted(model.event_weights.items())
        )
        event_weight = sql.SQL("(CASE {}::text {} END)").format(column(model.event_column), cases)
        weight = sql.SQL("({} * {})").format(weight, event_weight)
        event_ok = sql.SQL("{} IS NOT NULL").format(event_weight)
    def native(name: str) -> sql.Composable:
        if types[name] in NATIVE_KEY_TYPES:
            return column(name)
        return sql.SQL("{}::text").format(column(name))

    return {
        "source": model.source,
        "user": column(model.user_column),
        "item": column(model.item_column),
        "user_native": native(model.user_column),
        "item_native": native(model.item_column),
        "raw_weight": raw_weight,
        "weight": weight,
        "event_ok": event_ok,
    }


def native_keys(conn: psycopg.Connection,
                model: ModelConfig) -> tuple[sql.Composable, sql.Composable]:
    """The (user, item) expressions over source alias ``s`` that equal the temp maps'
    ``native`` column, so that joins with the maps compare keys in their own type."""
    parts = expressions(model, check_columns(conn, model))
    return parts["user_native"], parts["item_native"]


def check_weights(model: ModelConfig, weights: np.ndarray) -> None:
    """Raise DataError naming how many weights are NaN, infinite or negative."""
    label = f'weight column "{model.weight_column}"' if model.weight_column else "weights"
    nan = int(np.isnan(weights).sum())
    inf = int(np.isinf(weights).sum())
    negative = int((weights < 0).sum())
    problems = [f"{count} {what}" for count, what in
                ((nan, "NaN"), (inf, "infinite"), (negative, "negative")) if count]
    if problems:
        raise DataError(
            f"{label} of model \"{model.name}\" has {', '.join(problems)} "
            f"value{'s' if nan + inf + negative > 1 else ''}; weights must be finite and "
            "non-negative"
        )


@dataclass
class _Loaded:
    """What one load read: counts, and the usable rows as index triples."""

    rows_read: int
    skipped_null: int
    skipped_event: int
    users: int
    items: int
    user_idx: npt.NDArray[np.int32]
    item_idx: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float64]


def read(conn: psycopg.Connection, model: ModelConfig) -> Interactions:
    """Map keys to indices in temp tables and copy the interactions into a CSR matrix.

    Runs in one REPEATABLE READ transaction so that the counts, the key maps and the rows
    all come from the same snapshot; the statements that read the source run as the model's
    declarer (``as_declarer``). The temp maps stay on ``conn`` for ``store``.

    Indices follow the order of the keys' text byte by byte, as COLLATE "C" sorts it (for
    integer keys, of their decimal text; see ``text_order``). When both key columns are
    integers (smallint, integer, bigint) they are read as binary integers, otherwise as text.
    """
    conn.execute(queries.text("load_drop_maps"))
    with conn.transaction():
        conn.execute(queries.text("load_repeatable_read"))
        conn.execute(queries.text("load_work_mem"), {"memory": LOAD_WORK_MEM})
        types = check_columns(conn, model)
        parts = expressions(model, types)
        if types[model.user_column] in INTEGER_KEY_TYPES \
                and types[model.item_column] in INTEGER_KEY_TYPES:
            loaded = _load_integer_keys(conn, model, parts, types[model.user_column],
                                        types[model.item_column])
        else:
            loaded = _load_text_keys(conn, model, parts, types)
    if loaded.rows_read == 0:
        raise DataError(f'source "{model.source_label}" of model "{model.name}" is empty')
    if loaded.users == 0:
        raise DataError(
            f'source "{model.source_label}" of model "{model.name}" has no usable rows: '
            f"{loaded.skipped_null} with NULL keys or weights, {loaded.skipped_event} with "
            "unmapped events"
        )
    check_weights(model, loaded.weights)
    matrix = sp.csr_matrix((loaded.weights, (loaded.user_idx, loaded.item_idx)),
                           shape=(loaded.users, loaded.items), dtype=np.float64)
    del loaded.user_idx, loaded.item_idx, loaded.weights
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise DataError(_all_zero_message(model, loaded))
    log.info("loaded %d rows: %d users, %d items, %d non-zeros", loaded.rows_read,
             loaded.users, loaded.items, matrix.nnz)
    return Interactions(matrix=matrix, rows_read=loaded.rows_read,
                        rows_skipped_null=loaded.skipped_null,
                        rows_skipped_event=loaded.skipped_event)


def _all_zero_message(model: ModelConfig, loaded: _Loaded) -> str:
    """Why a source whose usable rows all weigh 0 cannot be trained, with the counts."""
    usable = loaded.rows_read - loaded.skipped_null - loaded.skipped_event
    causes = ([f'weight column "{model.weight_column}"'] if model.weight_column else []) + (
        ["event_weights"] if model.event_column is not None and model.event_weights else [])
    read = f"{loaded.rows_read} row{'s' if loaded.rows_read != 1 else ''} read"
    if usable == loaded.rows_read:
        counts = f"{read}, all weighted 0"
    else:
        counts = (f"{read}, {loaded.rows_read - usable} skipped, the other {usable} all "
                  "weighted 0")
    return (f'no interaction of model "{model.name}" has a positive weight: {counts}'
            + (f" by {' and '.join(causes)}" if causes else ""))


def _native_type(types: dict[str, str], column: str) -> sql.Composable:
    """The SQL type of a key map's ``native`` column (see ``expressions``)."""
    return sql.SQL(types[column] if types[column] in NATIVE_KEY_TYPES else "text")


def _load_text_keys(conn: psycopg.Connection, model: ModelConfig,
                    parts: dict[str, sql.Composable], types: dict[str, str]) -> _Loaded:
    """Keys of any type, read as their text: one pass reads the counts, the keys and the
    weights; numpy maps the keys to indices (``textkeys``), and the maps are copied into the
    temp tables."""
    # Keys come as the server stores them, so that their bytes sort as COLLATE "C" does.
    conn.execute(queries.text("load_server_encoding"))
    uuids = {side: types[getattr(model, f"{side}_column")] == "uuid" for side in ("user", "item")}
    # uuid keys as their 16 bytes, which sort as their text does, with no text to print
    parts = dict(parts, **{
        f"{side}_text": sql.SQL("uuid_send({})" if uuids[side] else "textsend(({})::text)").format(
            parts[f"{side}_native"]) for side in ("user", "item")}, **{
        f"{side}_delimiter": sql.Literal(b"" if uuids[side] else b"\0")
        for side in ("user", "item")},
                 usable=sql.SQL("{} IS NOT NULL AND {} IS NOT NULL AND {} IS NOT NULL").format(
                     parts["user"], parts["item"], parts["weight"]))
    with as_declarer(conn, model) as check_role:
        plan = conn.execute(queries.compose("load_estimate_key_text", **parts)).fetchone()
        assert plan is not None
        estimate = plan[0][0]["Plan"]
        check_role()  # planning may have run a source's immutable functions
        # the two keys, two zero bytes and a float8 a row
        chunks = _text_chunks(float(estimate["Plan Rows"]) * (estimate["Plan Width"] + 10))
        while True:
            try:
                with conn.transaction():  # a savepoint: a chunk past the value limit fails alone
                    read = _read_text_keys(conn, parts, chunks, check_role,
                                           (uuids["user"], uuids["item"]))
                break
            except (psycopg.errors.ProgramLimitExceeded, psycopg.errors.OutOfMemory):
                check_role()
                log.info("%d chunks of keys were too large; reading again in %d", chunks,
                         4 * chunks)
                chunks *= 4
    rows_read, skipped_null, user_keys, item_keys, weights = read
    # numpy lets go of the GIL: the two sides map on two cores
    with ThreadPoolExecutor(2) as pool:
        user_map, item_map = pool.map(
            lambda side: _map_text_keys(side[0], len(weights), side[1]),
            ((user_keys, uuids["user"]), (item_keys, uuids["item"])))
    del read, user_keys, item_keys
    for name, column, key_map in (("recsys_user_map", model.user_column, user_map),
                                  ("recsys_item_map", model.item_column, item_map)):
        native_type = _native_type(types, column)
        conn.execute(queries.compose(
            "load_create_uuid_map" if types[column] == "uuid" else "load_create_text_map",
            map=sql.Identifier(name), native_type=native_type))
        copied = sql.Identifier("native" if types[column] == "uuid" else "key")
        with conn.cursor() as cur, cur.copy(queries.compose(
                "load_copy_key_map", map=sql.Identifier(name), column=copied)) as copy:
            copy.write(key_map[0])
    conn.execute(queries.text("load_analyze_maps"))
    (_, users, user_idx), (_, items, item_idx) = user_map, item_map
    skipped_event = rows_read - skipped_null - len(weights)
    return _Loaded(rows_read, skipped_null, skipped_event, users, items, user_idx, item_idx,
                   weights)


def _map_text_keys(keys: npt.NDArray[np.uint8], count: int,
                   uuid: bool) -> tuple[bytes, int, npt.NDArray[np.int32]]:
    """The binary COPY of a key map, its size and each row's index, for ``count`` keys
    joined by zero bytes, or (``uuid``) for ``count`` uuids of 16 bytes each."""
    if uuid:
        starts = np.arange(count, dtype=np.int64) * 16
        lengths = np.full(count, 16, dtype=np.int64)
    else:
        starts, lengths = textkeys.split(keys, count)
    first, index = textkeys.dense_indices(keys, starts, lengths)
    return (textkeys.encode_index_texts(keys, starts[first], lengths[first]), len(first),
            index)


def _text_chunks(bytes_: float) -> int:
    return max(1, int(-(-bytes_ // TEXT_BYTES_PER_CHUNK)))


def _read_text_keys(conn: psycopg.Connection, parts: dict[str, sql.Composable], chunks: int,
                    check_role: Callable[[], None], uuids: tuple[bool, bool]) -> tuple[
        int, int, npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """Rows read, rows with a NULL key or weight, and the user keys, item keys (each joined by
    zero bytes) and weights of the usable rows, in ``chunks`` queries (of one snapshot) that
    split the rows by a hash of the user key; ``check_role`` runs between them."""
    rows_read = skipped_null = 0
    users: list[npt.NDArray[np.uint8]] = []
    items: list[npt.NDArray[np.uint8]] = []
    weights: list[npt.NDArray[np.float64]] = []
    for chunk in range(chunks):
        if chunk:
            check_role()
        if chunks == 1:
            where: sql.Composable = sql.SQL("true")
        else:  # NULL users fall in chunk 0, so that every chunk's counts add up
            where = sql.SQL("coalesce(mod(mod(hashtext(({user})::text), {n}) + {n}, {n}), 0)"
                            " = {k}").format(user=parts["user_native"], n=sql.Literal(chunks),
                                             k=sql.Literal(chunk))
        read, null, user_keys, item_keys, packed = _copy_chunk(conn, "load_copy_key_text",
                                                               parts, where)
        rows_read += read
        skipped_null += null
        if packed is not None:
            assert user_keys is not None and item_keys is not None
            users.append(np.frombuffer(user_keys, dtype=np.uint8))
            items.append(np.frombuffer(item_keys, dtype=np.uint8))
            weights.append(np.frombuffer(packed, dtype=">f8").astype(np.float64))
        del user_keys, item_keys, packed  # the keys still hold the buffer
    return (rows_read, skipped_null, _joined(users, uuids[0]), _joined(items, uuids[1]),
            np.concatenate(weights) if weights else np.empty(0, dtype=np.float64))


def _joined(pieces: list[npt.NDArray[np.uint8]], uuid: bool) -> npt.NDArray[np.uint8]:
    """Keys joined by zero bytes (uuids: one after the other), from pieces of such keys."""
    if len(pieces) <= 1:
        return pieces[0] if pieces else np.empty(0, dtype=np.uint8)
    if uuid:
        return np.concatenate(pieces)
    separator = np.zeros(1, dtype=np.uint8)
    return np.concatenate([pieces[0], *(part for piece in pieces[1:]
                                        for part in (separator, piece))])


def _load_integer_keys(conn: psycopg.Connection, model: ModelConfig,
                       parts: dict[str, sql.Composable], user_type: str,
                       item_type: str) -> _Loaded:
    """Integer keys: one pass reads counts and raw (user, item, weight) records; numpy maps
    the keys to indices, and the maps are copied into the temp tables."""
    user_send, user_dtype = INTEGER_KEY_TYPES[user_type]
    item_send, item_dtype = INTEGER_KEY_TYPES[item_type]
    parts = dict(parts,
                 user_bytes=sql.SQL(user_send + "({})").format(parts["user"]),
                 item_bytes=sql.SQL(item_send + "({})").format(parts["item"]))
    record = np.dtype([("user", user_dtype), ("item", item_dtype), ("weight", ">f8")])
    with as_declarer(conn, model) as check_role:
        plan = conn.execute(queries.compose("load_estimate_rows", **parts)).fetchone()
        assert plan is not None
        estimate = float(plan[0][0]["Plan"]["Plan Rows"])
        check_role()  # planning may have run a source's immutable functions
        try:
            with conn.transaction():  # a savepoint: a chunk past the value limit fails alone
                chunks = _chunks_for(estimate)
                read = _read_key_records(conn, parts, record, chunks, check_role)
        except (psycopg.errors.ProgramLimitExceeded, psycopg.errors.OutOfMemory):
            row = conn.execute(queries.compose("load_count_rows", **parts)).fetchone()
            assert row is not None
            check_role()
            log.info("row estimate %d was too low: %d rows; reading again in more chunks",
                     estimate, row[0])
            # at least twice as many: with a good estimate the exact count alone changes nothing
            read = _read_key_records(conn, parts, record,
                                     max(2 * chunks, _chunks_for(int(row[0]))), check_role)
    rows_read, skipped_null, users, items, weights = read
    user_keys, user_idx = dense_indices(users)
    item_keys, item_idx = dense_indices(items)
    del read, users, items
    conn.execute(queries.compose("load_create_int_maps", user_type=sql.SQL(user_type),
                                 item_type=sql.SQL(item_type)))
    for name, keys, dtype in (("load_copy_user_map", user_keys, user_dtype),
                              ("load_copy_item_map", item_keys, item_dtype)):
        with conn.cursor() as cur, cur.copy(queries.text(name)) as copy:
            copy.write(copybin.encode_index_keys(keys, dtype))
    conn.execute(queries.text("load_analyze_maps"))
    # Rows with an unmapped event are the rest: their weight, and so their record, is NULL.
    skipped_event = rows_read - skipped_null - len(weights)
    return _Loaded(rows_read, skipped_null, skipped_event, len(user_keys), len(item_keys),
                   user_idx, item_idx, weights)


def _copy_chunk(conn: psycopg.Connection, query: str, parts: dict[str, sql.Composable],
                where: sql.Composable) -> tuple[Any, ...]:
    """The one row a load query returns for the source rows ``where`` selects: rows read and
    rows with a NULL key or weight as integers, then its other fields as bytes (or None)."""
    buffer = bytearray()
    with conn.cursor() as cur, cur.copy(queries.compose(query, **parts, chunk=where)) as copy:
        for block in copy:
            buffer += block
    (row,) = copybin.parse_rows(buffer)
    read, null, *rest = row
    assert read is not None and null is not None
    return (int.from_bytes(read, "big", signed=True), int.from_bytes(null, "big", signed=True),
            *rest)


def _chunks_for(rows: float) -> int:
    return max(1, int(-(-rows // ROWS_PER_CHUNK)))


def _read_key_records(conn: psycopg.Connection, parts: dict[str, sql.Composable],
                      record: np.dtype[np.void], chunks: int,
                      check_role: Callable[[], None]) -> tuple[
        int, int, npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Rows read, rows with a NULL key or weight, and the user keys, item keys and weights
    of the usable rows, in ``chunks`` queries (of one snapshot) that split the rows by user
    key modulo ``chunks``; ``check_role`` runs between them (see ``as_declarer``)."""
    rows_read = skipped_null = 0
    pieces: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                       npt.NDArray[np.float64]]] = []
    for chunk in range(chunks):
        if chunk:
            check_role()
        if chunks == 1:
            where: sql.Composable = sql.SQL("true")
        else:
            # Hashed, so that keys with a common stride spread out; NULL users fall in chunk 0,
            # so that every chunk's counts add up.
            where = sql.SQL("coalesce(mod(mod(hashint8({user}::bigint), {n}) + {n}, {n}), 0)"
                            " = {k}").format(
                user=parts["user"], n=sql.Literal(chunks), k=sql.Literal(chunk))
        read, null, packed = _copy_chunk(conn, "load_copy_key_records", parts, where)
        rows_read += read
        skipped_null += null
        if packed is not None:
            if len(packed) % record.itemsize:
                raise ValueError("packed key records are not a whole number of records")
            records = np.frombuffer(packed, dtype=record)
            pieces.append((records["user"].astype(np.int64), records["item"].astype(np.int64),
                           records["weight"].astype(np.float64)))
            del records
        del packed
    if not pieces:
        empty = np.empty(0, dtype=np.int64)
        return rows_read, skipped_null, empty, empty, np.empty(0, dtype=np.float64)
    if len(pieces) == 1:
        return rows_read, skipped_null, *pieces[0]
    users, items, weights = (np.concatenate(column) for column in zip(*pieces, strict=True))
    return rows_read, skipped_null, users, items, weights


def dense_indices(keys: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64],
                                                        npt.NDArray[np.int32]]:
    """The distinct ``keys`` in the order of their decimal text (see ``text_order``), and
    each key's index among them."""
    if keys.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
    low, high = int(keys.min()), int(keys.max())
    span = high - low + 1  # a Python int: no overflow between keys near both int64 limits
    if span <= 2 * keys.size + 1_000_000:
        # A table over the whole span costs less than np.unique's sort (10x at 1M keys).
        offsets = keys - np.int64(low)
        present = np.zeros(span, dtype=bool)
        present[offsets] = True
        distinct = np.flatnonzero(present).astype(np.int64) + np.int64(low)
        numeric = (np.cumsum(present, dtype=np.int32) - 1)[offsets]
        del offsets, present
    else:
        distinct, inverse = np.unique(keys, return_inverse=True)
        numeric = inverse.reshape(-1).astype(np.int32)
    order = text_order(distinct)
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return distinct[order], rank[numeric]


_POWERS_OF_TEN = np.array([10 ** k for k in range(1, 20)], dtype=np.uint64)


def text_order(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """The permutation that sorts integer keys as their decimal text sorts byte by byte:
    the order the keys' text has in the database for non-negative keys (and for negative
    ones too under the C collations), so indices do not depend on the key column's type."""
    negative = keys < 0
    wrapped = keys.astype(np.uint64)  # two's complement: a negative key wraps around 2**64
    magnitude = np.where(negative, np.uint64(0) - wrapped, wrapped)
    digits = 1 + np.searchsorted(_POWERS_OF_TEN, magnitude, side="right")
    # Digits padded with zeros on the right to 19 (the most an int64 has) compare as the
    # text does; on a tie one text is a prefix of the other, and the shorter comes first.
    padded = magnitude * np.concatenate(([np.uint64(1)], _POWERS_OF_TEN))[19 - digits]
    return np.lexsort((digits, padded, ~negative))
