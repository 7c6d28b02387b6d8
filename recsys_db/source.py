"""Read a model's interactions out of its source relation as a sparse user x item matrix.

Either way the keys end up mapped to dense integer indices in temporary tables
(``recsys_user_map``, ``recsys_item_map``). Integer keys are read in one pass, as packed binary
records, and mapped by numpy; other keys never leave the database: they are mapped in SQL and
only (user_idx, item_idx, weight) triples are copied out, in binary, straight into numpy.

Sources are read with the rights of the role that declared the model (``recsys.model.declarer``):
every statement that reads a source runs inside ``as_declarer``, which checks that the declarer
may read the columns used, then switches to it with ``SET LOCAL ROLE`` (so that its column
privileges and row-level security apply) and back. The worker creates every temporary table
itself and grants the declarer only what those statements need on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import scipy.sparse as sp
from psycopg import sql
from psycopg.pq import TransactionStatus

from recsys_db import copybin, queries
from recsys_db.errors import ConfigError, DataError, RecsysError

log = logging.getLogger(__name__)

NUMERIC_TYPES = {"smallint", "integer", "bigint", "real", "double precision", "boolean"}
ROWS_PER_COPY = 40_000_000  # about 500 MB of binary arrays in one value
# Rows per packed-record query of integer keys: at most 24 bytes a row, under half of
# PostgreSQL's 1 GB value limit, so that a row estimate twice too low still fits.
ROWS_PER_CHUNK = 20_000_000
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


@dataclass(frozen=True)
class ModelConfig:
    """A row of ``recsys.model``."""

    id: int
    name: str
    source_schema: str
    source_table: str
    user_column: str
    item_column: str
    weight_column: str | None
    event_column: str | None
    event_weights: dict[str, float] | None
    time_column: str | None
    params: dict[str, Any]
    refresh_every: Any
    active_version: int | None
    # the role that declared the model, whose rights every read of its sources has; None when
    # unknown (its role was dropped), and then nothing is read
    declarer: str | None = None

    @property
    def source(self) -> sql.Identifier:
        return sql.Identifier(self.source_schema, self.source_table)

    @property
    def source_label(self) -> str:
        return f"{self.source_schema}.{self.source_table}"

    @property
    def relation(self) -> SourceRelation:
        """The model's source and the columns a training or fold-in reads from it."""
        columns = (self.user_column, self.item_column, self.weight_column, self.event_column,
                   self.time_column)
        return SourceRelation(self.source_schema, self.source_table,
                              tuple(c for c in columns if c is not None), "the source")


@dataclass(frozen=True)
class SourceRelation:
    """A relation read for a model (its source, or a feature relation) and the columns read."""

    schema: str
    table: str
    columns: tuple[str, ...]
    what: str  # how messages name it: "the source", "the item features"

    @property
    def label(self) -> str:
        """schema.table, as messages show it."""
        return f"{self.schema}.{self.table}"


# Privileges the worker may grant the declarer on its temporary tables.
TEMP_PRIVILEGES = frozenset({"SELECT", "INSERT", "SELECT, INSERT"})


def check_source(conn: psycopg.Connection, model: ModelConfig,
                 relation: SourceRelation | None = None) -> None:
    """Raise unless the model's declarer may read ``relation`` (default: the model's source).

    ``recsys._check_source`` refuses system catalogs, recsys's own tables and temporary tables
    as sources, an unknown declarer, and a declarer that may not read one of the columns
    (psycopg's InsufficientPrivilege, naming the column). ConfigError when the relation does
    not exist.
    """
    relation = relation or model.relation
    row = conn.execute(queries.text("check_source"), {
        "schema": relation.schema, "table": relation.table, "declarer": model.declarer,
        "columns": list(relation.columns)}).fetchone()
    if row is None:
        raise ConfigError(f'{relation.what} relation "{relation.label}" of model "{model.name}" '
                          "does not exist")


@dataclass(frozen=True)
class _Session:
    """Who the session is, as ``as_declarer`` found it before switching."""

    current: str  # current_user
    role_setting: str  # the role setting to restore ('none': the login itself)
    login: str  # session_user
    login_sql: str  # session_user as SQL writes it
    declarer_sql: str
    declarer_super: bool | None  # None: no such role


def _checked_session(conn: psycopg.Connection, model: ModelConfig,
                     relation: SourceRelation) -> _Session:
    row = conn.execute(queries.text("declarer_session"), {"declarer": model.declarer}).fetchone()
    assert row is not None
    current, role_setting, login, login_super, declarer_super, login_sql, declarer_sql = row
    if login_super and declarer_super is False:
        raise ConfigError(
            f'worker login "{login}" is a superuser and model "{model.name}" was declared by '
            f'"{model.declarer}", which is not: code in {relation.what} could leave SET ROLE '
            "and run as the superuser; nothing was read\n"
            "HINT: run the worker as a login that is not a superuser, granted the declarer: "
            f"GRANT {declarer_sql} TO <worker login> WITH INHERIT FALSE, SET TRUE")
    check_source(conn, model, relation)
    return _Session(current, role_setting, login, login_sql, declarer_sql, declarer_super)


def check_access(conn: psycopg.Connection, model: ModelConfig,
                 relation: SourceRelation | None = None) -> None:
    """The checks every ``as_declarer`` block starts with, for a run to make before anything.

    Raises ConfigError when the worker login is a superuser and the declarer is not (code in
    a source can leave ``SET ROLE``, and would then run as the superuser), and whatever
    ``check_source`` raises.
    """
    _checked_session(conn, model, relation or model.relation)


@contextmanager
def as_declarer(conn: psycopg.Connection, model: ModelConfig,
                relation: SourceRelation | None = None, *,
                grants: Mapping[str, str] | None = None) -> Iterator[Callable[[], None]]:
    """Run the statements of the block with the rights of the role that declared ``model``.

    Must be entered inside a transaction, by the worker as itself. In order:

    - ``check_access`` (``relation`` defaults to the model's source);
    - unless the declarer is already the current role (a superuser that declares and trains,
      say): grants the declarer ``grants`` (temporary table -> "SELECT", "INSERT" or
      "SELECT, INSERT") and ``SET LOCAL ROLE`` to it; a worker login that may not gets a
      ConfigError saying which GRANT it needs;
    - after the block, unless it raised (the transaction is aborted then, and rolls the role
      back with everything else): checks that the current role is still the one the block
      ran as, and raises RecsysError otherwise (a function in the source changed it); then
      sets the role the session had before, for the session, so that nothing a source set
      outlives the block.

    It yields that check of the role, for blocks of several statements to run between them:
    a statement that follows a change of role would run as the worker login, and fail on a
    source that only the declarer may read, with a less telling error.
    """
    relation = relation or model.relation
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        raise RuntimeError("as_declarer needs an open transaction")
    session = _checked_session(conn, model, relation)
    assert model.declarer is not None  # check_source refuses an unknown declarer
    switch = model.declarer != session.current
    if switch:
        role = sql.Identifier(model.declarer)
        for table, privileges in (grants or {}).items():
            if privileges not in TEMP_PRIVILEGES:
                raise ValueError(f"cannot grant {privileges!r} on {table}")
            conn.execute(queries.compose("declarer_grant_temp", privileges=sql.SQL(privileges),
                                         table=sql.Identifier(table), role=role))
        try:
            conn.execute(queries.compose("declarer_set_role", role=role))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ConfigError(_may_not_act_as(model, session)) from exc
    expected = model.declarer if switch else session.current

    def check(role: str | None) -> None:
        if role != expected:
            raise RecsysError(
                f'{relation.what} of model "{model.name}" changed the session role: reading '
                f'{relation.label} left it "{role}" instead of "{expected}"')

    def check_role() -> None:
        row = conn.execute(queries.text("declarer_current_role")).fetchone()
        check(None if row is None else row[0])

    yield check_role
    # current_user is read before set_config runs: select-list items are evaluated in order
    after = conn.execute(queries.text("declarer_leave"),
                         {"role": session.role_setting}).fetchone()
    check(None if after is None else after[0])


def _may_not_act_as(model: ModelConfig, session: _Session) -> str:
    if session.declarer_super:
        hint = (f'"{model.declarer}" is a superuser, and a worker granted it could become one: '
                "declare the model as a role that is not a superuser and may read its source, "
                f"and GRANT that role TO {session.login_sql} WITH INHERIT FALSE, SET TRUE")
    else:
        hint = (f"GRANT {session.declarer_sql} TO {session.login_sql} "
                "WITH INHERIT FALSE, SET TRUE")
    return (f'worker login "{session.login}" may not act as "{model.declarer}", the role that '
            f'declared model "{model.name}"\nHINT: {hint}')


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


def get_model(conn: psycopg.Connection, name: str) -> ModelConfig:
    """Load a model's configuration; raises ConfigError when it does not exist."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(queries.text("model_by_name"), {"name": name}).fetchone()
    if row is None:
        raise ConfigError(f'model "{name}" does not exist')
    return ModelConfig(**row)


def refresh(conn: psycopg.Connection, model: ModelConfig) -> bool:
    """Refresh the source when it is a materialized view; returns whether it did.

    The refresh runs as the declarer, which must own the view (or, on PostgreSQL 17 and later,
    hold MAINTAIN on it); ConfigError otherwise.
    """
    row = conn.execute(
        queries.text("source_kind"),
        {"schema": model.source_schema, "table": model.source_table,
         "declarer": model.declarer},
    ).fetchone()
    if row is None:
        raise ConfigError(f'source relation "{model.source_label}" of model "{model.name}" '
                          "does not exist")
    relkind, populated, has_unique, may_refresh = row
    if relkind != "m":
        return False
    name = "refresh_matview_concurrently" if populated and has_unique else "refresh_matview"
    with conn.transaction(), as_declarer(conn, model):
        if not may_refresh:
            raise ConfigError(
                f'role "{model.declarer}", which declared model "{model.name}", may not refresh '
                f'its source, materialized view "{model.source_label}": it must own it (or, on '
                "PostgreSQL 17 and later, hold MAINTAIN on it)")
        conn.execute(queries.compose(name, source=model.source))
    return True


def _check_columns(conn: psycopg.Connection, model: ModelConfig) -> dict[str, str]:
    rows = conn.execute(
        queries.text("source_columns"),
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
    _check_key_types(conn, model)
    return types


def _check_key_types(conn: psycopg.Connection, model: ModelConfig) -> None:
    """Refuse key columns whose text form is not a function of the value alone.

    A view's column types can change after ``create_model`` checked them, so every training
    and fold-in checks again.
    """
    found = {row[0]: row[1:] for row in conn.execute(queries.text("source_key_types"), {
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


def _expressions(model: ModelConfig, types: dict[str, str]) -> dict[str, sql.Composable]:
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
    parts = _expressions(model, _check_columns(conn, model))
    return parts["user_native"], parts["item_native"]


def _check_weights(model: ModelConfig, weights: np.ndarray) -> None:
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


def load(conn: psycopg.Connection, model: ModelConfig) -> Interactions:
    """Map keys to indices in temp tables and copy the interactions into a CSR matrix.

    Runs in one REPEATABLE READ transaction so that the counts, the key maps and the rows
    all come from the same snapshot; the statements that read the source run as the model's
    declarer (``as_declarer``). The temp maps stay on ``conn`` for ``store``.

    Indices follow the order of the keys' text (for integer keys, of their decimal text byte
    by byte, the same for non-negative keys; see ``text_order``). When both key columns are
    integers (smallint, integer, bigint) the source is read in one pass and the keys mapped
    by numpy; other keys are mapped in SQL.
    """
    conn.execute(queries.text("drop_maps"))
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(queries.text("perf_load_memory"), {"memory": LOAD_WORK_MEM})
        types = _check_columns(conn, model)
        parts = _expressions(model, types)
        if types[model.user_column] in INTEGER_KEY_TYPES \
                and types[model.item_column] in INTEGER_KEY_TYPES:
            loaded = _load_integer_keys(conn, model, parts, types[model.user_column],
                                        types[model.item_column])
        else:
            loaded = _load_mapped_in_sql(conn, model, parts, types)
    if loaded.rows_read == 0:
        raise DataError(f'source "{model.source_label}" of model "{model.name}" is empty')
    if loaded.users == 0:
        raise DataError(
            f'source "{model.source_label}" of model "{model.name}" has no usable rows: '
            f"{loaded.skipped_null} with NULL keys or weights, {loaded.skipped_event} with "
            "unmapped events"
        )
    _check_weights(model, loaded.weights)
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
    """The SQL type of a key map's ``native`` column (see ``_expressions``)."""
    return sql.SQL(types[column] if types[column] in NATIVE_KEY_TYPES else "text")


def _load_mapped_in_sql(conn: psycopg.Connection, model: ModelConfig,
                        parts: dict[str, sql.Composable], types: dict[str, str]) -> _Loaded:
    """Keys of any type: counted, mapped in SQL (text order) and joined, in four passes.

    The worker creates the maps; the declarer fills them from the source and reads the
    interactions through them."""
    maps = (("recsys_user_map", parts["user_native"], model.user_column),
            ("recsys_item_map", parts["item_native"], model.item_column))
    for name, _, column in maps:
        conn.execute(queries.compose("declarer_create_key_map", map=sql.Identifier(name),
                                     native_type=_native_type(types, column)))
    grants = {"recsys_user_map": "SELECT, INSERT", "recsys_item_map": "SELECT, INSERT"}
    with as_declarer(conn, model, grants=grants) as check_role:
        row = conn.execute(queries.compose("count_rows", **parts)).fetchone()
        assert row is not None
        rows_read, skipped_null, skipped_event = (int(x) for x in row)
        for name, native, _ in maps:
            check_role()
            conn.execute(queries.compose("declarer_fill_key_map", map=sql.Identifier(name),
                                         native=native, **parts))
    conn.execute(queries.text("analyze_maps"))
    users_row = conn.execute("SELECT count(*) FROM recsys_user_map").fetchone()
    items_row = conn.execute("SELECT count(*) FROM recsys_item_map").fetchone()
    assert users_row is not None and items_row is not None
    users, items = int(users_row[0]), int(items_row[0])
    # Users in ranges, so that no array nears PostgreSQL's 1 GB value limit.
    parts_of_users = max(1, -(-rows_read // ROWS_PER_COPY))
    step = -(-max(users, 1) // parts_of_users)
    pieces = []
    copy_query = queries.compose("perf_copy_interactions", **parts)
    with as_declarer(conn, model) as check_role:  # the maps were granted above
        for first in range(0, max(users, 1), step):
            if first:
                check_role()
            buffer = bytearray()
            with conn.cursor() as cur, cur.copy(
                    copy_query, {"first": first, "last": first + step - 1}) as copy:
                for block in copy:
                    buffer += block
            pieces.append(copybin.parse_array_row(buffer, (">i4", ">i4", ">f8")))
            del buffer
    user_idx, item_idx, weights = (np.concatenate(column) for column in zip(*pieces,
                                                                              strict=True))
    return _Loaded(rows_read, skipped_null, skipped_event, users, items,
                   user_idx.astype(np.int32), item_idx.astype(np.int32),
                   weights.astype(np.float64))


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
        plan = conn.execute(queries.compose("perf_estimate_rows", **parts)).fetchone()
        assert plan is not None
        estimate = float(plan[0][0]["Plan"]["Plan Rows"])
        check_role()  # planning may have run a source's immutable functions
        try:
            with conn.transaction():  # a savepoint: a chunk past the value limit fails alone
                chunks = _chunks_for(estimate)
                read = _read_key_records(conn, parts, record, chunks, check_role)
        except (psycopg.errors.ProgramLimitExceeded, psycopg.errors.OutOfMemory):
            row = conn.execute(queries.compose("count_rows", **parts)).fetchone()
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
    conn.execute(queries.compose("perf_create_int_maps", user_type=sql.SQL(user_type),
                                 item_type=sql.SQL(item_type)))
    for name, keys, dtype in (("perf_copy_user_map", user_keys, user_dtype),
                              ("perf_copy_item_map", item_keys, item_dtype)):
        with conn.cursor() as cur, cur.copy(queries.text(name)) as copy:
            copy.write(copybin.encode_index_keys(keys, dtype))
    conn.execute(queries.text("analyze_maps"))
    # Rows with an unmapped event are the rest: their weight, and so their record, is NULL.
    skipped_event = rows_read - skipped_null - len(weights)
    return _Loaded(rows_read, skipped_null, skipped_event, len(user_keys), len(item_keys),
                   user_idx, item_idx, weights)


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
        buffer = bytearray()
        with conn.cursor() as cur, cur.copy(
                queries.compose("perf_copy_key_records", **parts, chunk=where)) as copy:
            for block in copy:
                buffer += block
        (row,) = copybin.parse_rows(buffer)
        read, null, packed = row
        assert read is not None and null is not None
        rows_read += int.from_bytes(read, "big", signed=True)
        skipped_null += int.from_bytes(null, "big", signed=True)
        if packed is not None:
            if len(packed) % record.itemsize:
                raise ValueError("packed key records are not a whole number of records")
            records = np.frombuffer(packed, dtype=record)
            pieces.append((records["user"].astype(np.int64), records["item"].astype(np.int64),
                           records["weight"].astype(np.float64)))
            del records
        del row, read, null, packed, buffer
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
