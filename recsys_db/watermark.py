"""How far in time a version has read its source: the newest value of the time column.

Recorded per version in ``recsys.watermark`` by every full training; incremental fold-in takes
users with rows newer than it.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from recsys_db import queries
from recsys_db.access import as_declarer
from recsys_db.model import ModelConfig


def time_expression(model: ModelConfig) -> sql.Composable:
    """The model's time column, qualified with the source alias ``s``."""
    assert model.time_column is not None
    return sql.SQL("s.{}").format(sql.Identifier(model.time_column))


def current(conn: psycopg.Connection, model: ModelConfig) -> str | None:
    """The newest value of the model's time column (as text), or None without one.

    Read as the model's declarer, in a transaction of its own (or a savepoint of the one open
    on ``conn``, whose snapshot it then shares)."""
    if model.time_column is None:
        return None
    with conn.transaction(), as_declarer(conn, model):
        row = conn.execute(queries.compose(
            "watermark_max_time", time=time_expression(model), source=model.source)).fetchone()
    return None if row is None else row[0]


def before_refresh(conn: psycopg.Connection, model: ModelConfig) -> str | None:
    """``current`` as a full training reads it, before it refreshes the source: rows that
    arrive meanwhile are newer and get folded in later. None while a materialized view is not
    populated yet (the refresh fills it)."""
    try:
        return current(conn, model)
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return None


def record(conn: psycopg.Connection, model_id: int, version: int, value: str | None) -> None:
    """Remember up to which time a version has seen the source (no-op for None)."""
    if value is not None:
        conn.execute(queries.text("watermark_record"),
                     {"model_id": model_id, "version": version, "value": value})
