"""Cold start from content: items or users without interactions get factor vectors.

A model may declare, per kind (item or user), a relation with a key column and content
(``recsys.set_features``): categorical columns (scalars such as a department, or arrays such
as genres or tags: one-hot tokens), text columns (embedded by the worker, ``embedding``) and a
vector column the user maintains. After each fit, a ridge regression from content to factors
(the *feature map*) is learned on the keys the model knows, its penalty declared or chosen by
cross-validation (``choose_regularization``), and stored with the version
(``recsys.feature_map``). Keys that only the feature relation has are mapped through it and
appended to the new version's factor tables, marked ``from_content``, so they take part in
recommend, similar_items, similar_users and interested_users like any other row (items with
popularity 0, users with no seen items). Every item with content also gets its mapped vector
in ``recsys.item_content``: the content side of ``similar_items(..., content_weight)``.

Between trainings, ``extend`` (run by an incremental refresh) maps keys that appeared in the
feature relation since, through the active version's stored map, without a retrain.

The content of a key is one row of the design matrix: its one-hot tokens, then its text's
embedding (unit length; zeros without text), then its vector scaled to unit length (zeros
without one), then a bias.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import psycopg
import scipy.sparse as sp
from psycopg import sql
from psycopg.types.json import Jsonb
from scipy.sparse.linalg import splu

from recsys_db import embedding, gram, queries
from recsys_db.access import as_declarer
from recsys_db.errors import DataError, RecsysError
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
    regularization: float | None  # None: chosen at each training (``choose_regularization``)
    text_columns: list[str]
    vector_column: str | None
    vector_dims: int | None
    embedding_model: str | None

    @property
    def label(self) -> str:
        """schema.table, as messages show it."""
        return f"{self.source_schema}.{self.source_table}"


@dataclass(frozen=True)
class Content:
    """What a feature relation says of its keys (sorted): tokens, texts and vectors."""

    keys: list[str]
    pairs: list[tuple[str, str]]  # (key, "column=value")
    texts: dict[str, str]
    vectors: dict[str, np.ndarray]


@dataclass(frozen=True)
class FeatureMap:
    """The ridge map of one kind: design columns (tokens, text, vector, bias) x factors."""

    tokens: list[str]
    text_dims: int
    vector_dims: int
    weights: np.ndarray
    regularization: float  # the ridge penalty it was fitted with
    max_norm: float  # the largest norm of a trained vector: mapped vectors are capped at it


def declared(conn: psycopg.Connection, model_id: int) -> list[FeatureSource]:
    """The feature relations a model declares (at most one per kind)."""
    return [FeatureSource(*row) for row in
            conn.execute(queries.text("features_of_model"), {"model_id": model_id})]


def relation_keys(conn: psycopg.Connection, model: ModelConfig, spec: FeatureSource
                  ) -> list[str]:
    """Every key of the feature relation, read as the model's declarer."""
    checked = SourceRelation(spec.source_schema, spec.source_table, (spec.key_column,),
                             f"the {spec.kind} features")
    with conn.transaction(), as_declarer(conn, model, checked):
        return [row[0] for row in conn.execute(queries.compose(
            "features_relation_keys", key=sql.Identifier(spec.key_column),
            source=sql.Identifier(spec.source_schema, spec.source_table)))]


def read(conn: psycopg.Connection, model: ModelConfig, spec: FeatureSource,
         only: list[str] | None = None) -> Content:
    """The content of every key of the feature relation (of the keys in ``only``, if given).

    The relation is read as the role that declared ``model``, which must be allowed to read
    its key and content columns. Array columns give one token per element; the text of a key
    is its text columns joined by newlines (empty or blank text: none); vectors must have the
    declared dimension and finite values."""
    relation = sql.Identifier(spec.source_schema, spec.source_table)
    key = sql.Identifier(spec.key_column)
    is_array: dict[str, bool] = dict(conn.execute(
        queries.text("features_column_kinds"), {"relation": relation.as_string(conn)}).fetchall())
    parts = []
    for column in (*spec.feature_columns, *spec.text_columns,
                   *([spec.vector_column] if spec.vector_column else [])):
        if column not in is_array:
            raise psycopg.errors.UndefinedColumn(
                f'feature column "{column}" does not exist in relation "{spec.label}"')
    for column in spec.feature_columns:
        name = "features_array_tokens" if is_array[column] else "features_scalar_tokens"
        parts.append(queries.compose(name, key=key, label=sql.Literal(column),
                                     column=sql.Identifier(column), source=relation))
    columns = (spec.key_column, *spec.feature_columns, *spec.text_columns,
               *([spec.vector_column] if spec.vector_column else []))
    checked = SourceRelation(spec.source_schema, spec.source_table, columns,
                             f"the {spec.kind} features")
    params = {"only": only}
    with conn.transaction(), as_declarer(conn, model, checked) as still_declarer:
        pairs: list[tuple[str, str]] = []
        if parts:
            pairs = conn.execute(sql.SQL(" UNION ").join(parts), params).fetchall()
            still_declarer()
        texts: dict[str, str] = {}
        if spec.text_columns:
            texts = dict(conn.execute(queries.compose(
                "features_texts", key=key, source=relation,
                text=sql.SQL(", ").join(sql.Identifier(c) for c in spec.text_columns)),
                params).fetchall())
            still_declarer()
        vector_rows: list[tuple[str, list[float]]] = []
        if spec.vector_column:
            vector_rows = conn.execute(queries.compose(
                "features_vectors", key=key, source=relation,
                column=sql.Identifier(spec.vector_column)), params).fetchall()
    vectors = _check_vectors(spec, vector_rows)
    keys = sorted({k for k, _ in pairs} | set(texts) | set(vectors))
    return Content(keys=keys, pairs=pairs, texts=texts, vectors=vectors)


def _check_vectors(spec: FeatureSource, rows: list[tuple[str, list[float]]]
                   ) -> dict[str, np.ndarray]:
    vectors: dict[str, np.ndarray] = {}
    for key, values in rows:
        where = f'vector column "{spec.vector_column}" of relation "{spec.label}"'
        if key in vectors:
            raise DataError(f"{where} has more than one vector for key {key!r}")
        if any(not isinstance(x, float | int) for x in values):
            raise DataError(f"{where} has a NULL element or is not a one-dimensional array "
                            f"for key {key!r}")
        vector = np.asarray(values, dtype=np.float64)
        if vector.shape != (spec.vector_dims,):
            raise DataError(f"{where} has a vector of {vector.size} dimensions for key "
                            f"{key!r}, not {spec.vector_dims} as declared")
        if not np.isfinite(vector).all():
            raise DataError(f"{where} has a NaN or infinite value for key {key!r}")
        norm = float(np.linalg.norm(vector))
        # a zero vector says nothing: the key has no vector
        if norm > 0:
            vectors[key] = vector / norm
    return vectors


def design(conn: psycopg.Connection, spec: FeatureSource, content: Content,
           tokens: list[str], text_dims: int | None = None) -> tuple[sp.csr_matrix, int]:
    """The design matrix of ``content`` (a row per key, bias last) over ``tokens`` (others are
    dropped), and its text dimensions (``text_dims`` where a stored map fixes them)."""
    row_of = {key: row for row, key in enumerate(content.keys)}
    col_of = {token: col for col, token in enumerate(tokens)}
    kept = [(row_of[k], col_of[t]) for k, t in content.pairs if t in col_of]
    blocks: list[sp.csr_matrix] = [sp.csr_matrix(
        (np.ones(len(kept)), ([r for r, _ in kept], [c for _, c in kept])),
        shape=(len(content.keys), len(tokens)))]
    if spec.text_columns:
        assert spec.embedding_model is not None
        with_text = [k for k in content.keys if k in content.texts]
        vectors = embedding.embed(conn, spec.embedding_model,
                                  [content.texts[k] for k in with_text])
        dims = vectors.shape[1] if with_text else (text_dims or
                                                    embedding.dimensions(spec.embedding_model))
        if text_dims is not None and dims != text_dims:
            raise RecsysError(f'embedding model "{spec.embedding_model}" embeds into {dims} '
                              f"dimensions, the version's feature map into {text_dims}; run a "
                              "full refresh")
        text_block = np.zeros((len(content.keys), dims))
        if with_text:
            text_block[[row_of[k] for k in with_text]] = vectors
        blocks.append(sp.csr_matrix(text_block))
    else:
        dims = 0
    if spec.vector_column:
        assert spec.vector_dims is not None
        vector_block = np.zeros((len(content.keys), spec.vector_dims))
        for key, vector in content.vectors.items():
            vector_block[row_of[key]] = vector
        blocks.append(sp.csr_matrix(vector_block))
    blocks.append(sp.csr_matrix(np.ones((len(content.keys), 1))))
    return sp.hstack(blocks, format="csr"), dims


def content_matrix(conn: psycopg.Connection, model: ModelConfig, spec: FeatureSource
                   ) -> tuple[list[str], sp.csr_matrix]:
    """Every key of the feature relation and its design row (over all its tokens)."""
    content = read(conn, model, spec)
    matrix, _ = design(conn, spec, content, sorted({token for _, token in content.pairs}))
    return content.keys, matrix


def fit_map(design_rows: sp.csr_matrix, factors: np.ndarray, regularization: float
            ) -> np.ndarray:
    """Ridge regression from design rows (bias included) to factors: columns x factors."""
    gram_matrix = (design_rows.T @ design_rows
                   + regularization * sp.identity(design_rows.shape[1])).tocsc()
    return np.asarray(splu(gram_matrix).solve(
        np.asarray(design_rows.T @ factors, dtype=np.float64)))


# the ridge penalties an automatic regularization chooses from, and the most design columns
# it handles (one dense eigendecomposition of the d x d Gram matrix per fold)
REGULARIZATION_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
MAX_AUTO_COLUMNS = 4000
FOLDS = 5


def choose_regularization(design_rows: sp.csr_matrix, factors: np.ndarray) -> float:
    """The ridge penalty of ``REGULARIZATION_GRID`` whose map predicts the factors of held-out
    keys best (squared error, 5-fold cross-validation over the keys, seeded): it adapts to
    how many keys and content columns there are. 1.0 with fewer than 2 keys or more than
    ``MAX_AUTO_COLUMNS`` columns (logged)."""
    rows, columns = design_rows.shape
    if rows < 2 or columns > MAX_AUTO_COLUMNS:
        if columns > MAX_AUTO_COLUMNS:
            log.warning("%d content columns: too many to choose the regularization; using 1.0 "
                        "(set it with recsys.set_features(..., regularization => r))", columns)
        return 1.0
    order = np.random.default_rng(0).permutation(rows)
    errors = np.zeros(len(REGULARIZATION_GRID))
    targets = np.asarray(factors, dtype=np.float64)
    for fold in np.array_split(order, min(FOLDS, rows)):
        train = np.setdiff1d(order, fold)
        x = design_rows[train].toarray()
        values, vectors = np.linalg.eigh(x.T @ x)
        projected = vectors.T @ (x.T @ targets[train])
        held = design_rows[fold].toarray() @ vectors
        for n, penalty in enumerate(REGULARIZATION_GRID):
            predicted = held @ (projected / (values + penalty)[:, None])
            errors[n] += float(((predicted - targets[fold]) ** 2).sum())
    return float(REGULARIZATION_GRID[int(np.argmin(errors))])


def map_rows(design_rows: sp.csr_matrix, weights: np.ndarray, max_norm: float | None = None
             ) -> np.ndarray:
    """Vectors for design rows, their norms capped at ``max_norm`` when given."""
    vectors = np.asarray(design_rows @ weights, dtype=np.float32)
    if max_norm is None:
        return vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scale = np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
    return (vectors * scale).astype(np.float32)


def apply(conn: psycopg.Connection, model: ModelConfig, run_id: int, version: int,
          user_table: str, item_table: str, user_factors: np.ndarray, item_factors: np.ndarray
          ) -> dict[str, int]:
    """Fit and store each declared kind's feature map, append mapped rows for keys without
    interactions and store items' mapped content; returns the cold counts per kind."""
    counts = {"items": 0, "users": 0}
    for spec in declared(conn, model.id):
        table = sql.Identifier("recsys", item_table if spec.kind == "item" else user_table)
        trained = item_factors if spec.kind == "item" else user_factors
        known: dict[str, int] = dict(
            conn.execute(queries.compose("features_keys", table=table)).fetchall())
        content = read(conn, model, spec)
        known_rows = [r for r, key in enumerate(content.keys) if key in known]
        if not known_rows:
            log.warning("%s: no %s of the feature relation %s has interactions; nothing to "
                        "learn the feature map from", model.name, spec.kind, spec.label)
            continue
        tokens = sorted({token for _, token in content.pairs})
        matrix, text_dims = design(conn, spec, content, tokens)
        targets = trained[[known[content.keys[r]] for r in known_rows]]
        penalty = spec.regularization or choose_regularization(matrix[known_rows], targets)
        fmap = FeatureMap(
            tokens=tokens, text_dims=text_dims, vector_dims=spec.vector_dims or 0,
            weights=fit_map(matrix[known_rows], targets, penalty), regularization=penalty,
            max_norm=float(np.linalg.norm(trained, axis=1).max()))
        _store_map(conn, model.id, version, spec, fmap)
        mapped = map_rows(matrix, fmap.weights)
        start = max(known.values()) + 1
        cold = [r for r, key in enumerate(content.keys) if key not in known]
        with conn.transaction():
            _append(conn, spec.kind, table, start, [content.keys[r] for r in cold],
                    map_rows(matrix[cold], fmap.weights, fmap.max_norm))
            if spec.kind == "item":
                idx = [known.get(key, -1) for key in content.keys]
                for offset, row in enumerate(cold):
                    idx[row] = start + offset
                _store_content(conn, model.id, version, idx, mapped)
        counts["items" if spec.kind == "item" else "users"] = len(cold)
        log.info("%s: %d cold %ss mapped from %d tokens, %d text and %d vector dimensions "
                 "(regularization %g)", model.name, len(cold), spec.kind, len(tokens), text_dims,
                 fmap.vector_dims, penalty)
    conn.execute(queries.text("features_record"),
                 {"items": counts["items"], "users": counts["users"], "run_id": run_id})
    conn.execute(queries.text("features_count_content"),
                 {"items": counts["items"], "model_id": model.id, "version": version})
    return counts


@dataclass(frozen=True)
class _NewContent:
    """Keys of one kind that a version lacks or lacks the content of, and their content."""

    spec: FeatureSource
    table: sql.Identifier
    known: dict[str, int]  # the version's keys and indices
    content: Content  # of the new keys and of the lacking ones (empty: nothing to do)
    stored: tuple[list[str], int, bytes, float]  # the version's map: tokens, text dims,
    # weights, norm cap


def _new_content(conn: psycopg.Connection, model: ModelConfig, version: int,
                 tables: dict[str, sql.Identifier], kinds: tuple[str, ...], *, warn: bool
                 ) -> list[_NewContent]:
    """Per declared kind of ``kinds`` whose stored map still fits the declaration: the keys
    its feature relation gained since ``version`` was trained (and, for items, the keys the
    version has without their content), with their content. Reads only, as the declarer.
    A kind whose declaration changed is left out, with a warning if ``warn``."""
    found = []
    for spec in declared(conn, model.id):
        if spec.kind not in kinds:
            continue
        row = conn.execute(queries.text("features_read_map"), {
            "model_id": model.id, "version": version, "kind": spec.kind}).fetchone()
        if row is None:
            continue
        definition, tokens, text_dims, weights, max_norm = row
        if definition != _definition(spec):
            log.log(logging.WARNING if warn else logging.DEBUG,
                    "%s: the %s features changed since version %d was trained; new %ss wait "
                    "for a full refresh", model.name, spec.kind, version, spec.kind)
            continue
        table = tables["items" if spec.kind == "item" else "users"]
        known: dict[str, int] = dict(
            conn.execute(queries.compose("features_keys", table=table)).fetchall())
        in_relation = set(relation_keys(conn, model, spec))
        new = sorted(in_relation - set(known))
        lacking = sorted(in_relation & {key for (key,) in conn.execute(
            queries.compose("features_keys_without_content", table=table),
            {"model_id": model.id, "version": version})}) if spec.kind == "item" else []
        if not new and not lacking:
            continue
        content = read(conn, model, spec, only=new + lacking)
        if content.keys:
            found.append(_NewContent(spec, table, known, content,
                                     (list(tokens), text_dims, weights, float(max_norm))))
    return found


def pending(conn: psycopg.Connection, model: ModelConfig, version: int,
            tables: dict[str, sql.Identifier], kinds: tuple[str, ...] = ("item", "user")
            ) -> int:
    """How many keys ``extend`` would map now (new keys with content, and items without
    their content); reads only. The worker's schedule queues an incremental refresh for it."""
    return sum(len(part.content.keys)
               for part in _new_content(conn, model, version, tables, kinds, warn=False))


def extend(conn: psycopg.Connection, model: ModelConfig, version: int,
           tables: dict[str, sql.Identifier], kinds: tuple[str, ...] = ("item", "user")
           ) -> dict[str, int]:
    """Map keys that the feature relations of ``kinds`` gained since ``version`` was trained
    through its stored feature maps, and add them to the version (one transaction per kind).
    Items the version has (a fold-in added them from events) but whose content it lacks get
    their mapped content too. Returns how many items and users were added. A kind whose
    declaration changed since the version was trained waits for the next full training
    (logged)."""
    counts = {"items": 0, "users": 0}
    for part in _new_content(conn, model, version, tables, kinds, warn=True):
        spec, table, known, content = part.spec, part.table, part.known, part.content
        tokens, text_dims, weights, max_norm = part.stored
        matrix, _ = design(conn, spec, content, tokens, text_dims)
        stored = np.frombuffer(weights, dtype="<f8").reshape(matrix.shape[1], -1)
        mapped = map_rows(matrix, stored)
        added = [r for r, key in enumerate(content.keys) if key not in known]
        with conn.transaction():
            active = conn.execute(queries.text("store_lock_model"),
                                  {"model_id": model.id}).fetchone()
            if active is None or active[0] != version:
                raise RecsysError(f'model "{model.name}" changed its active version during '
                                  "the incremental refresh; nothing was written")
            (start,) = conn.execute(queries.compose("features_next_idx", table=table)
                                    ).fetchone() or (0,)
            vectors = map_rows(matrix[added], stored, max_norm)
            _append(conn, spec.kind, table, int(start), [content.keys[r] for r in added],
                    vectors)
            if spec.kind == "item":
                idx = [known.get(key, -1) for key in content.keys]
                for offset, r in enumerate(added):
                    idx[r] = int(start) + offset
                _store_content(conn, model.id, version, idx, mapped)
                if added:
                    gram.add_items(conn, model.id, version, vectors)
                    conn.execute(queries.text("features_stop_precomputed"),
                                 {"model_id": model.id, "version": version,
                                  "added": len(added)})
        counts["items" if spec.kind == "item" else "users"] += len(added)
        log.info("%s: %d new %ss mapped from content into version %d", model.name,
                 len(added), spec.kind, version)
    return counts


def _definition(spec: FeatureSource) -> dict[str, object]:
    """What of a declaration a stored map depends on (not its regularization)."""
    fields = asdict(spec)
    del fields["regularization"]
    return fields


def _store_map(conn: psycopg.Connection, model_id: int, version: int, spec: FeatureSource,
               fmap: FeatureMap) -> None:
    if not math.isfinite(fmap.max_norm) or not np.isfinite(fmap.weights).all():
        raise DataError(f"the {spec.kind} feature map is not finite; raise regularization")
    conn.execute(queries.text("features_store_map"), {
        "model_id": model_id, "version": version, "kind": spec.kind,
        "definition": Jsonb(_definition(spec)), "tokens": fmap.tokens,
        "text_dims": fmap.text_dims,
        "weights": np.ascontiguousarray(fmap.weights, dtype="<f8").tobytes(),
        "regularization": fmap.regularization, "max_norm": fmap.max_norm})


def _append(conn: psycopg.Connection, kind: str, table: sql.Identifier, start: int,
            keys: list[str], vectors: np.ndarray) -> None:
    """Rows mapped from content, numbered from ``start``, into a version's factor table."""
    if not keys:
        return
    name = "features_copy_items" if kind == "item" else "features_copy_users"
    with conn.cursor() as cur, cur.copy(queries.compose(name, table=table)) as copy:
        for offset, (key, vector) in enumerate(zip(keys, vectors, strict=True)):
            copy.write_row((start + offset, key, vector, 0 if kind == "item" else [], True))


def _store_content(conn: psycopg.Connection, model_id: int, version: int, idx: list[int],
                   vectors: np.ndarray) -> None:
    """Items' mapped content into ``recsys.item_content``."""
    with conn.cursor() as cur, cur.copy(queries.text("features_copy_content")) as copy:
        for item, vector in zip(idx, vectors, strict=True):
            copy.write_row((model_id, version, item, vector))
