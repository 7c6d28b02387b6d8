"""Cold start from features: items or users without interactions get factor vectors.

A model may declare, per kind (item or user), a relation with a key column and feature
columns (scalars such as a department, or arrays such as genres or tags). After each fit, a
ridge regression from one-hot features to factors is learned on the keys the model knows;
keys that only the feature relation has are mapped through it and appended to the new
version's factor tables, so they take part in recommend, similar_items, similar_users and
interested_users like any other row (items with popularity 0, users with no seen items).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import psycopg
import scipy.sparse as sp
from psycopg import sql
from scipy.sparse.linalg import splu

from recsys_db import queries
from recsys_db.access import as_declarer
from recsys_db.model import ModelConfig, SourceRelation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSource:
    """A row of ``recsys.model_feature``."""

    kind: str  # item | user
    source_schema: str
    source_table: str
    key_column: str
    feature_columns: list[str]
    regularization: float


@dataclass(frozen=True)
class Features:
    """One-hot features: row r of ``matrix`` belongs to ``keys[r]``."""

    keys: list[str]
    tokens: list[str]
    matrix: sp.csr_matrix


def declared(conn: psycopg.Connection, model_id: int) -> list[FeatureSource]:
    """The feature relations a model declares (at most one per kind)."""
    return [FeatureSource(*row) for row in
            conn.execute(queries.text("features_of_model"), {"model_id": model_id})]


def load(conn: psycopg.Connection, model: ModelConfig, spec: FeatureSource) -> Features:
    """Read ``column=value`` tokens per key; array columns give one token per element.

    The feature relation is read as the role that declared ``model``, which must be allowed to
    read its key and feature columns."""
    relation = sql.Identifier(spec.source_schema, spec.source_table)
    is_array: dict[str, bool] = dict(conn.execute(
        queries.text("features_column_kinds"), {"relation": relation.as_string(conn)}).fetchall())
    parts = []
    for column in spec.feature_columns:
        if column not in is_array:
            raise psycopg.errors.UndefinedColumn(
                f'feature column "{column}" does not exist in relation '
                f'"{spec.source_schema}.{spec.source_table}"')
        name = "features_array_tokens" if is_array[column] else "features_scalar_tokens"
        parts.append(queries.compose(name, key=sql.Identifier(spec.key_column),
                                     label=sql.Literal(column), column=sql.Identifier(column),
                                     source=relation))
    checked = SourceRelation(spec.source_schema, spec.source_table,
                             (spec.key_column, *spec.feature_columns), f"the {spec.kind} features")
    with conn.transaction(), as_declarer(conn, model, checked):
        pairs = conn.execute(sql.SQL(" UNION ").join(parts)).fetchall()
    keys = sorted({key for key, _ in pairs})
    tokens = sorted({token for _, token in pairs})
    key_row = {key: row for row, key in enumerate(keys)}
    token_col = {token: col for col, token in enumerate(tokens)}
    matrix = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.float64),
         ([key_row[k] for k, _ in pairs], [token_col[t] for _, t in pairs])),
        shape=(len(keys), len(tokens)))
    return Features(keys=keys, tokens=tokens, matrix=matrix)


def _with_bias(matrix: sp.csr_matrix) -> sp.csr_matrix:
    return sp.hstack([matrix, np.ones((matrix.shape[0], 1))], format="csr")


def fit_map(features: sp.csr_matrix, factors: np.ndarray, regularization: float) -> np.ndarray:
    """Ridge regression from features (plus a bias) to factors: (tokens + 1) x factors."""
    design = _with_bias(features)
    gram = (design.T @ design + regularization * sp.identity(design.shape[1])).tocsc()
    return np.asarray(splu(gram).solve(np.asarray(design.T @ factors, dtype=np.float64)))


def map_cold(features: sp.csr_matrix, weights: np.ndarray, max_norm: float) -> np.ndarray:
    """Vectors for feature rows, their norms capped at the largest norm of a trained vector."""
    vectors = np.asarray(_with_bias(features) @ weights, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scale = np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
    return (vectors * scale).astype(np.float32)


def apply(conn: psycopg.Connection, model: ModelConfig, run_id: int, user_table: str,
          item_table: str, user_factors: np.ndarray, item_factors: np.ndarray
          ) -> dict[str, int]:
    """Append feature-mapped rows for keys without interactions; returns counts per kind."""
    counts = {"items": 0, "users": 0}
    for spec in declared(conn, model.id):
        table = sql.Identifier("recsys", item_table if spec.kind == "item" else user_table)
        trained = item_factors if spec.kind == "item" else user_factors
        known: dict[str, int] = dict(
            conn.execute(queries.compose("features_keys", table=table)).fetchall())
        feats = load(conn, model, spec)
        known_rows = [r for r, key in enumerate(feats.keys) if key in known]
        cold_rows = [r for r, key in enumerate(feats.keys) if key not in known]
        if not known_rows or not cold_rows:
            continue
        weights = fit_map(feats.matrix[known_rows],
                          trained[[known[feats.keys[r]] for r in known_rows]],
                          spec.regularization)
        vectors = map_cold(feats.matrix[cold_rows], weights,
                           float(np.linalg.norm(trained, axis=1).max()))
        start = max(known.values()) + 1
        name = "features_copy_items" if spec.kind == "item" else "features_copy_users"
        with conn.cursor() as cur, cur.copy(queries.compose(name, table=table)) as copy:
            for offset, (row, vector) in enumerate(zip(cold_rows, vectors, strict=True)):
                extra: object = 0 if spec.kind == "item" else []
                copy.write_row((start + offset, feats.keys[row], vector, extra))
        counts["items" if spec.kind == "item" else "users"] = len(cold_rows)
        log.info("%s: %d cold %ss mapped from %d features", model.name, len(cold_rows),
                 spec.kind, len(feats.tokens))
    conn.execute(queries.text("features_record"),
                 {"items": counts["items"], "users": counts["users"], "run_id": run_id})
    return counts
