"""The model: its row in ``recsys.model`` (``ModelConfig``) and its training parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from recsys_db import queries
from recsys_db.errors import ConfigError


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


def get_model(conn: psycopg.Connection, name: str) -> ModelConfig:
    """Load a model's configuration; raises ConfigError when it does not exist."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(queries.text("model_by_name"), {"name": name}).fetchone()
    if row is None:
        raise ConfigError(f'model "{name}" does not exist')
    return ModelConfig(**row)



def effective_params(conn: psycopg.Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Stored params merged over the current defaults (models created by older releases
    lack newer parameters) and validated by the database's own checks."""
    row = conn.execute(queries.text("model_effective_params"),
                       {"params": Jsonb(params)}).fetchone()
    assert row is not None
    return dict(row[0])
