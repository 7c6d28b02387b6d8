"""The ranker stage of a full training: a LightGBM LambdaRank model over each user's candidates.

A model with a ranker (``recsys.create_ranker``) gets, after its ALS stage:

1. Training windows on a time split: the last label window of the timeline is the holdout;
   ``training_windows`` windows before it train. For each window's cut-off, ALS is fitted on
   the rows before it only, candidates and their features come from those rows only
   (``candidates.history``), and a candidate is a positive when the user interacted with it,
   for the first time, within the window after the cut-off.
2. The ranker is fitted on the training windows (each user a query group, positives and
   ``negatives_per_positive`` random negatives per positive) and scored on the holdout window
   against ALS alone and popularity, all three on the same users; metrics go to
   ``recsys.metric`` as 'ranked', 'ranker_als' and 'ranker_popular'.
3. The gate: the ranker serves only if it beats ALS alone on the gate metric (the model's
   ``gate_metric``, ndcg by default, at ``eval_k``). Then each known user's candidates at the
   end of the timeline, from the version's own factors, are ranked and the top ``top_k`` are
   written with the version (``recsys.ranked_recommendation``, with their feature values).

The booster (LightGBM's model text), feature names and importances are stored per version in
``recsys.ranker_version``, so a rollback restores ALS and ranker together. Whatever fails in
this stage is recorded there (status 'failed') and the version serves ALS: the stage never
fails the training.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import scipy.sparse as sp
from psycopg import sql
from psycopg.types.json import Jsonb

from recsys_db import (
    als,
    candidates,
    evaluation,
    features,
    load,
    precompute,
    queries,
    timeline,
    weighting,
)
from recsys_db.access import as_declarer
from recsys_db.errors import ConfigError, RecsysError
from recsys_db.model import ModelConfig, SourceRelation
from recsys_db.store import VersionTables

log = logging.getLogger(__name__)

# LambdaRank with shallow trees and strong L2: chosen on MovieLens 100K time splits, where the
# default 31-leaf trees fitted the training windows and ranked no better than ALS alone
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "num_leaves": 7, "max_depth": 3, "min_data_in_leaf": 100,
    "lambda_l2": 10.0, "learning_rate": 0.05, "feature_fraction": 0.9,
    "bagging_fraction": 0.8, "bagging_freq": 1, "deterministic": True,
    "force_row_wise": True, "verbosity": -1,
}
ROUNDS = 200
# users whose candidates are built, scored and let go at once: about 190 candidates a user
# with 16 or more float32 features each, some 120 MB a batch
USER_BATCH = 10_000


class RankerError(RecsysError):
    """The ranker stage cannot train on this data; the version serves ALS."""


@dataclass(frozen=True)
class SideRelation:
    """A declared user or item feature relation of a ranker."""

    kind: str  # user | item
    schema: str
    table: str
    key_column: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """A row of ``recsys.ranker``."""

    label_window: str
    window: float  # seconds
    training_windows: int
    generators: candidates.Generators
    negatives_per_positive: int
    min_positives: int
    top_k: int
    sides: tuple[SideRelation, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, kept with each ranker version."""
        out = asdict(self)
        out["sides"] = [asdict(side) for side in self.sides]
        return out


def declared(conn: psycopg.Connection, model_id: int) -> Spec | None:
    """The model's ranker declaration, or None."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(queries.text("ranker_declared"), {"model_id": model_id}).fetchone()
    if row is None:
        return None
    sides = tuple(
        SideRelation(kind, row[f"{kind}_features_schema"], row[f"{kind}_features_table"],
                     row[f"{kind}_key_column"], tuple(row[f"{kind}_feature_columns"]))
        for kind in ("user", "item") if row[f"{kind}_features_table"] is not None)
    return Spec(
        label_window=row["label_window_text"], window=float(row["window_seconds"]),
        training_windows=int(row["training_windows"]),
        generators=candidates.Generators(int(row["als_candidates"]),
                                         int(row["popular_candidates"]),
                                         int(row["neighbour_candidates"]),
                                         int(row["recent_items"]),
                                         int(row["content_candidates"])),
        negatives_per_positive=int(row["negatives_per_positive"]),
        min_positives=int(row["min_positives"]), top_k=int(row["top_k"]), sides=sides)


@dataclass
class Side:
    """Declared feature columns of users or items, by index: NaN where missing; categories
    (text columns) as the index of their value in ``categories[name]``."""

    names: list[str]
    values: npt.NDArray[np.float32]
    categories: dict[str, list[str]]


def load_side(conn: psycopg.Connection, model: ModelConfig, side: SideRelation,
              keys: list[str], categories: dict[str, list[str]] | None = None) -> Side:
    """Read a feature relation as the model's declarer, one row per key (the first by its
    values when a key has several); ``keys`` are the model's keys in index order. Text
    columns are coded by their sorted values, or by ``categories`` when given (the codes a
    ranker was trained with; other values are missing)."""
    relation = sql.Identifier(side.schema, side.table)
    kinds: dict[str, str] = dict(conn.execute(queries.text("ranker_column_kinds"), {
        "schema": side.schema, "table": side.table,
        "columns": list(side.columns)}).fetchall())
    if not kinds and conn.execute(queries.text("ranker_relation_exists"), {
            "schema": side.schema, "table": side.table}).fetchone() == (False,):
        raise ConfigError(f'relation "{side.schema}.{side.table}" (the ranker\'s {side.kind} '
                          f'features of model "{model.name}") does not exist')
    columns = []
    for column in side.columns:
        kind = kinds.get(column)
        if kind is None:
            raise ConfigError(f'{side.kind} feature column "{column}" does not exist in '
                              f'relation "{side.schema}.{side.table}"')
        if kind not in ("N", "B", "S", "E"):
            raise ConfigError(f'{side.kind} feature column "{column}" of relation '
                              f'"{side.schema}.{side.table}" is no longer numeric, boolean or '
                              "text")
        ident = sql.Identifier(column)
        columns.append(sql.SQL("{}::double precision").format(ident) if kind == "N"
                       else sql.SQL("{}::integer::double precision").format(ident)
                       if kind == "B" else sql.SQL("{}::text").format(ident))
    query = queries.compose("ranker_side_rows", key=sql.Identifier(side.key_column),
                            columns=sql.SQL(", ").join(columns), relation=relation,
                            order=sql.SQL(", ").join(sql.Literal(n) for n in
                                                     range(1, len(columns) + 2)))
    checked = SourceRelation(side.schema, side.table, (side.key_column, *side.columns),
                             f"the ranker's {side.kind} features")
    with conn.transaction(), as_declarer(conn, model, checked):
        rows = conn.execute(query).fetchall()
    index = {key: position for position, key in enumerate(keys)}
    values = np.full((len(keys), len(side.columns)), np.nan, dtype=np.float32)
    coded: dict[str, list[str]] = {}
    for number, column in enumerate(side.columns):
        name = f"{side.kind}.{column}"
        found = [(index[row[0]], row[number + 1]) for row in rows
                 if row[0] in index and row[number + 1] is not None]
        if kinds[column] in ("S", "E"):
            levels = (categories or {}).get(name) or sorted({value for _, value in found})
            code = {value: float(level) for level, value in enumerate(levels)}
            coded[name] = levels
            found = [(at, code.get(value, np.nan)) for at, value in found]
        for at, value in found:
            if np.isfinite(value):
                values[at, number] = value
    return Side([f"{side.kind}.{c}" for c in side.columns], values, coded)


def _no_side(count: int) -> Side:
    return Side([], np.empty((count, 0), dtype=np.float32), {})


def labels(line: timeline.Timeline, hist: candidates.History) -> sp.csr_matrix:
    """Users x items: 1 where the user met the item for the first time within the label
    window after the history's cut-off."""
    window = line.between(hist.cutoff, hist.cutoff + hist.window)
    found = sp.csr_matrix((np.ones(len(window.users)), (window.users, window.items)),
                          shape=line.shape)
    found.sum_duplicates()
    found.data[:] = 1.0
    new = found - found.multiply(hist.matrix != 0)
    new.eliminate_zeros()
    return sp.csr_matrix(new)


def is_positive(frame: candidates.Frame, found: sp.csr_matrix) -> npt.NDArray[np.bool_]:
    """Which candidate pairs of ``frame`` are labelled positive in ``found``."""
    coo = found.tocoo()
    keys = np.sort(coo.row.astype(np.int64) * found.shape[1] + coo.col)
    return np.isin(frame.users * found.shape[1] + frame.items, keys)


def sample(frame: candidates.Frame, positive: npt.NDArray[np.bool_], negatives: int,
           rng: np.random.Generator) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows of ``frame`` to train on, grouped by user, and the group sizes: users with at
    least one positive candidate, their positives, and ``negatives`` random negatives per
    positive (all of them when 0)."""
    users = frame.users
    user_ids, user_of = np.unique(users, return_inverse=True)
    pos_count = np.bincount(user_of, weights=positive, minlength=len(user_ids))
    keep = pos_count[user_of] > 0
    if negatives:
        draw = rng.random(len(users))
        order = np.lexsort((draw, positive, user_of))  # negatives first, in random order
        first = np.searchsorted(user_of[order], np.arange(len(user_ids)))
        position = np.empty(len(users), dtype=np.int64)
        position[order] = np.arange(len(users)) - first[user_of[order]]
        keep &= positive | (position < negatives * pos_count[user_of])
    rows = np.flatnonzero(keep)  # frames are grouped by user already
    groups = np.bincount(user_of[rows], minlength=len(user_ids))
    return rows, groups[groups > 0]


def fit(features: np.ndarray, target: np.ndarray, groups: np.ndarray, names: list[str],
        categorical: list[str], seed: int) -> Any:
    """A LambdaRank booster on query groups (consecutive rows per user)."""
    import lightgbm

    params = dict(LIGHTGBM_PARAMS, seed=seed, num_threads=os.cpu_count() or 1,
                  min_data_in_leaf=min(int(LIGHTGBM_PARAMS["min_data_in_leaf"]),
                                       max(5, len(target) // 50)))
    # LightGBM refuses some characters in feature names (a column may be named anything):
    # it sees positions, recsys.ranker_version keeps the names
    position = {name: f"f{number}" for number, name in enumerate(names)}
    data = lightgbm.Dataset(features, label=target, group=groups,
                            feature_name=[position[name] for name in names],
                            categorical_feature=[position[name] for name in categorical]
                            or "auto", free_raw_data=True, params={"verbosity": -1})
    return lightgbm.train(params, data, num_boost_round=ROUNDS)


def top_per_user(frame: candidates.Frame, scores: np.ndarray,
                 k: int) -> npt.NDArray[np.int64]:
    """Rows of ``frame``: each user's ``k`` best by score (descending), equal scores by item
    index; in user order, best first."""
    order = np.lexsort((frame.items, -scores, frame.users))
    users = frame.users[order]
    first = np.searchsorted(users, users, side="left")
    return order[np.arange(len(order)) - first < k]


def _ranked_ids(frame: candidates.Frame, rows: np.ndarray, users: np.ndarray,
                k: int) -> npt.NDArray[np.int64]:
    """users x k items from ``top_per_user`` rows, -1 where a user has fewer."""
    ids = np.full((len(users), k), -1, dtype=np.int64)
    where = np.searchsorted(users, frame.users[rows])
    first = np.searchsorted(frame.users[rows], frame.users[rows], side="left")
    ids[where, np.arange(len(rows)) - first] = frame.items[rows]
    return ids


@dataclass
class Outcome:
    """What the stage made of a version's ranker: ``RunResult.ranker``."""

    status: str  # active | rejected | failed
    reason: str | None = None
    ranked_k: int = 0
    metric: str | None = None
    ranked: float | None = None
    als: float | None = None
    train_pairs: int | None = None
    train_positives: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class _Trained:
    booster: Any
    names: list[str]
    categories: dict[str, list[str]]
    metrics: dict[str, dict[str, float]]
    outcome: Outcome
    cutoffs: list[float]


class _Stage:
    """One run of the stage: the timeline, side features and the windows' fits."""

    def __init__(self, conn: psycopg.Connection, model: ModelConfig, spec: Spec,
                 data: load.Interactions):
        self.model, self.spec = model, spec
        self.params = model.params
        if model.time_column is None:
            raise RankerError(f'model "{model.name}" has no time_column: a ranker is trained on '
                              "a time split (features before a cut-off, labels after it)")
        shape = data.matrix.shape
        self.line = timeline.read(conn, model, shape, data.rows_read)
        # what the version counts as seen: also rows without a time, which the timeline lacks
        self.seen = data.matrix.tocsr()
        if not len(self.line.times):
            raise RankerError(f'no usable row of the source of model "{model.name}" has a '
                              f'time in column "{model.time_column}"; a ranker learns from a '
                              "time split")
        user_keys = [row[0] for row in conn.execute(queries.text("load_user_keys"))]
        item_keys = [row[0] for row in conn.execute(queries.text("load_item_keys"))]
        self.keys = {"user": user_keys, "item": item_keys}
        loaded = {side.kind: load_side(conn, model, side, self.keys[side.kind])
                  for side in spec.sides}
        self.user_side = loaded.get("user") or _no_side(shape[0])
        self.item_side = loaded.get("item") or _no_side(shape[1])
        self.names = [*candidates.FEATURES, *self.user_side.names, *self.item_side.names]
        self.categorical = [*self.user_side.categories, *self.item_side.categories]
        # the content generator: the model's item features (recsys.set_features), if any
        self.content: sp.csr_matrix | None = None
        self.content_regularization: float | None = None  # None: chosen per window
        declared_items = [f for f in features.declared(conn, model.id) if f.kind == "item"]
        if spec.generators.content and declared_items:
            content_keys, self.content = features.content_matrix(conn, model, declared_items[0])
            self.content_regularization = declared_items[0].regularization
            row_of = {key: row for row, key in enumerate(content_keys)}
            self.feature_row = np.array([row_of.get(key, -1) for key in item_keys],
                                        dtype=np.int64)

    def window(self, cutoff: float) -> Window:
        """ALS fitted on the rows before ``cutoff``, the users with a label in the window after
        it, and those labels."""
        hist = candidates.history(self.line, cutoff, self.spec.window,
                                  self.spec.generators.recent_items)
        found = labels(self.line, hist)
        warm = np.zeros(self.line.shape[0], dtype=bool)
        warm[hist.warm_users] = True
        users = np.flatnonzero(warm & (np.diff(found.indptr) > 0))
        if not len(users):
            raise RankerError(
                f'the label window from {_when(cutoff)} to {_when(cutoff + self.spec.window)} '
                f'of model "{self.model.name}" has no interactions of users known before it; '
                "a ranker learns from what they did after the cut-off: lengthen label_window "
                "or lower training_windows")
        user_factors, item_factors = self.fit_before(hist)
        cold = self.map_cold(hist, item_factors)
        return Window(hist, found, users, user_factors, item_factors, cold)

    def frames(self, window: Window, users: np.ndarray | None = None, baseline_k: int = 0
               ) -> Iterator[tuple[npt.NDArray[np.int64], candidates.Frame]]:
        """The candidates of the window's users (or of ``users``), ``USER_BATCH`` users at a
        time (memory stays bounded whatever the number of users): (the batch's users, their
        frame, which lacks users without any candidate)."""
        users = window.users if users is None else users
        for start in range(0, len(users), USER_BATCH):
            batch = users[start:start + USER_BATCH]
            yield batch, candidates.frame(window.hist, window.user_factors,
                                          window.item_factors, batch, self.spec.generators,
                                          self.user_side.values, self.item_side.values,
                                          baseline_k, window.cold)

    def map_cold(self, hist: candidates.History,
                 item_factors: np.ndarray) -> npt.NDArray[np.bool_] | None:
        """Give the items with features but no interaction before the cut-off factors mapped
        from their features (in place), as cold start does with the items of a version; returns
        which items those are (None without item features)."""
        if self.content is None:
            return None
        has_features = self.feature_row >= 0
        known, cold = hist.alive & has_features, ~hist.alive & has_features
        if not known.any() or not cold.any():
            return cold
        design = self.content[self.feature_row[known]]
        penalty = self.content_regularization or features.choose_regularization(
            design, item_factors[known])
        weights = features.fit_map(design, item_factors[known], penalty)
        item_factors[cold] = features.map_rows(
            self.content[self.feature_row[cold]], weights,
            float(np.linalg.norm(item_factors[known], axis=1).max()))
        return cold

    def fit_before(self, hist: candidates.History) -> tuple[np.ndarray, np.ndarray]:
        """ALS on the rows before the cut-off, over the users and items they hold only: a user
        or item first seen later, even as an empty row, would move the factors (through the
        random start and YᵀY). Others get zero factors."""
        warm, alive = hist.warm_users, np.flatnonzero(hist.alive)
        known = hist.matrix[warm][:, alive]
        fitted_users, fitted_items = als.fit(weighting.apply(known, self.params), self.params)
        user_factors = np.zeros((hist.matrix.shape[0], fitted_users.shape[1]), np.float32)
        item_factors = np.zeros((hist.matrix.shape[1], fitted_items.shape[1]), np.float32)
        user_factors[warm], item_factors[alive] = fitted_users, fitted_items
        return user_factors, item_factors

    def cutoffs(self) -> tuple[list[float], float]:
        """The training windows' cut-offs (oldest first) and the holdout's."""
        spec, line = self.spec, self.line
        windows = spec.training_windows + 1
        span = line.end - line.start
        if span < windows * spec.window:
            raise RankerError(
                f'the interactions of model "{self.model.name}" span {span / 86400:.4g} days, '
                f"less than the {windows} label windows of {spec.label_window} its ranker "
                f"needs ({spec.training_windows} to train on and one holdout): shorten "
                "label_window or lower training_windows")
        # the holdout's labels run up to and including the last row
        holdout = float(np.nextafter(line.end, np.inf)) - spec.window
        return [holdout - step * spec.window
                for step in range(spec.training_windows, 0, -1)], holdout

    def training_set(self, cutoffs: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features, labels (1.0 positive) and query group sizes of the training windows."""
        spec = self.spec
        rng = np.random.default_rng(int(self.params["random_state"]))
        parts, groups = [], []
        for cutoff in cutoffs:
            window = self.window(cutoff)
            for _, frame in self.frames(window):
                positive = is_positive(frame, window.found)
                rows, sizes = sample(frame, positive, spec.negatives_per_positive, rng)
                parts.append((frame.features[rows], positive[rows]))
                groups.append(sizes)
        target = np.concatenate([p[1] for p in parts]).astype(np.float64)
        positives = int(target.sum())
        if positives < spec.min_positives:
            raise RankerError(
                f'the ranker of model "{self.model.name}" found {positives} positive '
                f"candidate{'s' if positives != 1 else ''} in its {spec.training_windows} "
                f"training window{'s' if spec.training_windows > 1 else ''}, fewer than "
                f"min_positives {spec.min_positives}: lengthen label_window, add "
                "training_windows or propose more candidates")
        return np.concatenate([p[0] for p in parts]), target, np.concatenate(groups)

    def train(self) -> _Trained:
        cutoffs, holdout_cut = self.cutoffs()
        features, target, groups = self.training_set(cutoffs)
        booster = fit(features, target, groups, self.names, self.categorical,
                      int(self.params["random_state"]))
        metrics = self.holdout(booster, holdout_cut)
        metric = str(self.params.get("gate_metric") or "ndcg")
        k = int(self.params["eval_k"])
        ranked, alone = metrics["ranked"][metric], metrics["ranker_als"][metric]
        name = f"{metric}@{k}"
        reason = None if ranked > alone else (
            f"not activated: ranked {name} {ranked:.6g} is not above ALS alone {alone:.6g} on "
            f"the holdout window from {_when(holdout_cut)}")
        outcome = Outcome("active" if reason is None else "rejected", reason, 0, name, ranked,
                          alone, len(target), int(target.sum()))
        return _Trained(booster, self.names,
                        {**self.user_side.categories, **self.item_side.categories},
                        metrics, outcome, [*cutoffs, holdout_cut])

    def holdout(self, booster: Any, cutoff: float) -> dict[str, dict[str, float]]:
        """Ranked, ALS alone and popular on the holdout window, for the same users."""
        k = int(self.params["eval_k"])
        window = self.window(cutoff)
        users: list[np.ndarray] = []
        lists: dict[str, list[np.ndarray]] = {"ranked": [], "ranker_als": [],
                                              "ranker_popular": []}
        for batch, frame in self.frames(window, baseline_k=k):
            # every user of the batch, those without candidates too (an empty list), as the
            # baselines have them
            rows = top_per_user(frame, booster.predict(frame.features), k)
            users.append(batch)
            lists["ranked"].append(_ranked_ids(frame, rows, batch, k))
            lists["ranker_als"].append(frame.baselines["als"])
            lists["ranker_popular"].append(frame.baselines["popular"])
        hist, evaluated = window.hist, np.concatenate(users)
        popularity = hist.item_users.astype(np.int64)
        return {name: evaluation.score(np.maximum(ids, 0), ids >= 0, window.found, evaluated,
                                       popularity, len(hist.warm_users))
                for name, ids in ((name, np.concatenate(parts)) for name, parts in lists.items())}

    def serve(self, conn: psycopg.Connection, tables: VersionTables, booster: Any,
              user_factors: np.ndarray, item_factors: np.ndarray) -> Iterator[bytes]:
        """Binary COPY blocks of every known user's top ``top_k`` candidates at the end of the
        timeline, from the version's factors, ``USER_BATCH`` users at a time; with the content
        generator, the version's items mapped from features (cold start) are candidates too.
        What it reads from the database it reads now; the blocks are made as they are
        consumed."""
        line, item_side = self.line, self.item_side.values
        keys = self.keys["item"]
        cold = None
        if self.content is not None:
            extra = conn.execute(queries.compose(
                "ranker_cold_items", table=sql.Identifier("recsys", tables.item_table)),
                {"items": len(keys)}).fetchall()
            if extra:
                keys = [*keys, *(key for _, key, _ in extra)]
                item_factors = np.vstack([item_factors, np.array(
                    [vector.to_numpy() for _, _, vector in extra], np.float32)])
                line = replace(line, shape=(line.shape[0], len(keys)))
                more = np.full((len(extra), item_side.shape[1]), np.nan, dtype=np.float32)
                for side in self.spec.sides:
                    if side.kind == "item":
                        more = load_side(conn, self.model, side, keys[len(self.keys["item"]):],
                                         self.item_side.categories).values
                item_side = np.vstack([item_side, more])
                cold = np.arange(len(keys)) >= len(self.keys["item"])
        hist = candidates.history(line, np.nextafter(line.end, np.inf), self.spec.window,
                                  self.spec.generators.recent_items)
        seen = sp.csr_matrix((self.seen.data, self.seen.indices, self.seen.indptr),
                             shape=(self.seen.shape[0], len(keys)))
        return self._blocks(tables, booster, hist, seen, user_factors, item_factors,
                            item_side, keys, cold)

    def _blocks(self, tables: VersionTables, booster: Any, hist: candidates.History,
                seen: sp.csr_matrix, user_factors: np.ndarray, item_factors: np.ndarray,
                item_side: np.ndarray, keys: list[str],
                cold: npt.NDArray[np.bool_] | None) -> Iterator[bytes]:
        """``serve``'s blocks: made while they are copied, so they read nothing from the
        database."""
        user_keys, item_keys = precompute.Keys(self.keys["user"]), precompute.Keys(keys)
        users = hist.warm_users
        for start in range(0, len(users), USER_BATCH):
            frame = candidates.frame(hist, user_factors, item_factors,
                                     users[start:start + USER_BATCH], self.spec.generators,
                                     self.user_side.values, item_side, cold=cold,
                                     seen=seen)
            # ranked by the scores as stored (float32), so equal stored scores follow the rule
            scores = np.asarray(booster.predict(frame.features), dtype=np.float32)
            rows = top_per_user(frame, scores, self.spec.top_k)
            user_of = frame.users[rows]
            ranks = np.arange(len(rows)) - np.searchsorted(user_of, user_of, side="left") + 1
            yield precompute.encode_rows(self.model.id, tables.version, user_keys, user_of,
                                         ranks, item_keys, frame.items[rows],
                                         scores[rows],
                                         frame.features[rows])


@dataclass
class Window:
    """A cut-off of the time split: its history, labels, labelled users and window factors
    (cold items' mapped from features where ``cold``)."""

    hist: candidates.History
    found: sp.csr_matrix
    users: npt.NDArray[np.int64]
    user_factors: np.ndarray
    item_factors: np.ndarray
    cold: npt.NDArray[np.bool_] | None


def _when(seconds: float) -> str:
    """A cut-off as messages show it (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def train(conn: psycopg.Connection, model: ModelConfig, spec: Spec, run_id: int,
          tables: VersionTables, data: load.Interactions, user_factors: np.ndarray,
          item_factors: np.ndarray) -> Outcome:
    """Train, gate and (when it passes) serve the model's ranker ``spec`` with version
    ``tables``. Never raises for a failure of its own: the version then serves ALS, and the
    outcome (also in ``recsys.ranker_version``) says why."""
    started = time.perf_counter()
    trained: _Trained | None = None
    try:
        stage = _Stage(conn, model, spec, data)
        trained = stage.train()
        outcome = trained.outcome
        if outcome.status == "active":
            precompute.write_partition(
                conn, model.id, tables.version, precompute.RANKED,
                stage.serve(conn, tables, trained.booster, user_factors, item_factors))
            outcome.ranked_k = spec.top_k
        else:
            log.info("%s: ranker %s", model.name, outcome.reason)
    except Exception as exc:  # the ALS version goes on without a ranker
        message = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, (RecsysError, psycopg.Error)):
            log.exception("%s: ranker stage failed", model.name)
        log.warning("%s: ranker not trained: %s", model.name, message)
        outcome = Outcome("failed", message)
    outcome.seconds = round(time.perf_counter() - started, 4)
    _record(conn, model, run_id, tables, spec, trained, outcome)
    return outcome


def _record(conn: psycopg.Connection, model: ModelConfig, run_id: int, tables: VersionTables,
            spec: Spec, trained: _Trained | None, outcome: Outcome) -> None:
    definition = {**spec.as_dict(), "lightgbm": dict(LIGHTGBM_PARAMS, rounds=ROUNDS)}
    booster = names = gain = splits = None
    if trained is not None:
        definition.update(categories=trained.categories, cutoffs=[_when(c) for c in
                                                                  trained.cutoffs])
        booster = trained.booster.model_to_string()
        names = trained.names
        gain = [float(g) for g in trained.booster.feature_importance("gain")]
        splits = [int(s) for s in trained.booster.feature_importance("split")]
    with conn.transaction():
        conn.execute(queries.text("ranker_insert_version"), {
            "model_id": model.id, "version": tables.version, "run_id": run_id,
            "status": outcome.status, "reason": outcome.reason, "booster": booster,
            "features": names, "gain": gain, "splits": splits, "ranked_k": outcome.ranked_k,
            "train_pairs": outcome.train_pairs, "train_positives": outcome.train_positives,
            "definition": Jsonb(definition), "seconds": outcome.seconds})
        if trained is not None:
            conn.execute(queries.text("evaluation_insert_metrics"),
                         {"run_id": run_id, "metrics": Jsonb(trained.metrics)})
        conn.execute(queries.text("ranker_set_ranked_k"), {
            "model_id": model.id, "version": tables.version, "ranked_k": outcome.ranked_k})
