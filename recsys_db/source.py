"""Read a model's interactions out of its source relation as a sparse user x item matrix.

Keys never leave the database: they are mapped to dense integer indices in temporary tables
(``recsys_user_map``, ``recsys_item_map``) and only (user_idx, item_idx, weight) triples are
copied out, in binary, straight into numpy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import scipy.sparse as sp
from psycopg import sql

from recsys_db import copybin, queries
from recsys_db.errors import ConfigError, DataError

log = logging.getLogger(__name__)

NUMERIC_TYPES = {"smallint", "integer", "bigint", "real", "double precision", "boolean"}
ROWS_PER_COPY = 40_000_000  # about 500 MB of binary arrays in one value
# work_mem of the load transaction. With the 4 MB default, the parallel DISTINCT of 10M rows
# into 500k keys spilled in every worker and took minutes instead of 3 s (measured).
LOAD_WORK_MEM = "256MB"
# Key types whose equality is equality of their text form: joined on as they are, not as text.
NATIVE_KEY_TYPES = {"smallint", "integer", "bigint", "text", "uuid"}


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

    @property
    def source(self) -> sql.Identifier:
        return sql.Identifier(self.source_schema, self.source_table)

    @property
    def source_label(self) -> str:
        return f"{self.source_schema}.{self.source_table}"


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
    """Refresh the source when it is a materialized view; returns whether it did."""
    row = conn.execute(
        queries.text("source_kind"),
        {"schema": model.source_schema, "table": model.source_table},
    ).fetchone()
    if row is None:
        raise ConfigError(f'source relation "{model.source_label}" of model "{model.name}" '
                          "does not exist")
    relkind, populated, has_unique = row
    if relkind != "m":
        return False
    name = "refresh_matview_concurrently" if populated and has_unique else "refresh_matview"
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
    return types


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


def load(conn: psycopg.Connection, model: ModelConfig) -> Interactions:
    """Map keys to indices in temp tables and copy the interactions into a CSR matrix.

    Runs in one REPEATABLE READ transaction so that the counts, the key maps and the rows
    all come from the same snapshot. The temp maps stay on ``conn`` for ``store``.
    """
    conn.execute(queries.text("drop_maps"))
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(queries.text("perf_load_memory"), {"memory": LOAD_WORK_MEM})
        types = _check_columns(conn, model)
        parts = _expressions(model, types)
        row = conn.execute(queries.compose("count_rows", **parts)).fetchone()
        assert row is not None
        rows_read, skipped_null, skipped_event = (int(x) for x in row)
        conn.execute(queries.compose("perf_create_user_map", **parts))
        conn.execute(queries.compose("perf_create_item_map", **parts))
        conn.execute(queries.text("index_maps"))
        users_row = conn.execute("SELECT count(*) FROM recsys_user_map").fetchone()
        items_row = conn.execute("SELECT count(*) FROM recsys_item_map").fetchone()
        assert users_row is not None and items_row is not None
        users, items = int(users_row[0]), int(items_row[0])
        # Users in ranges, so that no array nears PostgreSQL's 1 GB value limit.
        parts_of_users = max(1, -(-rows_read // ROWS_PER_COPY))
        step = -(-max(users, 1) // parts_of_users)
        pieces = []
        copy_query = queries.compose("perf_copy_interactions", **parts)
        for first in range(0, max(users, 1), step):
            buffer = bytearray()
            with conn.cursor() as cur, cur.copy(
                    copy_query, {"first": first, "last": first + step - 1}) as copy:
                for block in copy:
                    buffer += block
            pieces.append(copybin.parse_array_row(buffer, (">i4", ">i4", ">f8")))
            del buffer
    if rows_read == 0:
        raise DataError(f'source "{model.source_label}" of model "{model.name}" is empty')
    if users == 0:
        raise DataError(
            f'source "{model.source_label}" of model "{model.name}" has no usable rows: '
            f"{skipped_null} with NULL keys or weights, {skipped_event} with unmapped events"
        )
    user_idx, item_idx, weights = (np.concatenate(column) for column in zip(*pieces,
                                                                              strict=True))
    del pieces
    _check_weights(model, weights)
    matrix = sp.csr_matrix((weights, (user_idx, item_idx)), shape=(users, items), dtype=np.float64)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    log.info("loaded %d rows: %d users, %d items, %d non-zeros", rows_read, users, items,
             matrix.nnz)
    return Interactions(matrix=matrix, rows_read=rows_read, rows_skipped_null=skipped_null,
                        rows_skipped_event=skipped_event)
