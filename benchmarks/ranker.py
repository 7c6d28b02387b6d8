"""``--scale ranker``: the two-stage recommender on MovieLens 100K with a time split.

For each seed (the model's ``random_state``: ALS starts, negative sampling, LightGBM's
bagging), a full training of a model with a ranker: its stored holdout metrics for popular,
ALS alone and ALS + ranker on the same users of the last label window, the ranker stage's time
and its share of the refresh. Beside it, on the same training windows and holdout (the same
candidates and features), the learners the choice was made between: recsys-db's LightGBM
LambdaRank, LightGBM LambdaRank with its default trees, and CatBoost as seed 004 uses it
(Logloss classifier) and with its ranking loss YetiRank (when catboost is installed: the
``bench`` extra).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import psycopg

from recsys_db import datasets, db, load, ranker, training
from recsys_db.model import get_model

SEEDS = (1, 2, 3, 4, 5)
LABEL_WINDOW = "30 days"
ALS = "recsys.als(factors => 32, iterations => 10, regularization => 0.05, random_state => %s)"
METRICS = ("ndcg", "recall", "precision", "map", "coverage")
# seed 004's classifier, and CatBoost's ranking loss with the same trees; then both with trees
# as small and as regularised as recsys-db's LightGBM
CATBOOST = {"iterations": 1000, "learning_rate": 0.1, "depth": 6, "verbose": False,
            "allow_writing_files": False}
CATBOOST_SHALLOW = {"iterations": ranker.ROUNDS, "learning_rate": 0.05, "depth": 3,
                    "l2_leaf_reg": 10.0, "verbose": False, "allow_writing_files": False}


class _Predictor:
    """A fitted model as ``ranker._Stage.holdout`` calls it."""

    def __init__(self, predict: Any):
        self.predict = predict


def _learners() -> dict[str, Any]:
    """name -> fit(features, target, groups, categorical positions, seed) -> predictor."""
    import lightgbm

    def default_lightgbm(x: np.ndarray, y: np.ndarray, groups: np.ndarray, _cat: list[int],
                         seed: int) -> Any:
        data = lightgbm.Dataset(x, label=y, group=groups, params={"verbosity": -1})
        return lightgbm.train({"objective": "lambdarank", "seed": seed, "verbosity": -1,
                               "deterministic": True, "force_row_wise": True}, data,
                              num_boost_round=ranker.ROUNDS)

    learners: dict[str, Any] = {
        "LightGBM LambdaRank, recsys-db's trees (7 leaves, depth 3, L2 10)":
            lambda x, y, g, cat, seed: ranker.fit(
                x, y, g, [f"c{i}" for i in range(x.shape[1])], [f"c{i}" for i in cat], seed),
        "LightGBM LambdaRank, default trees (31 leaves)": default_lightgbm,
    }
    try:
        import catboost
    except ImportError:
        return learners

    def groups_of(groups: np.ndarray) -> np.ndarray:
        return np.repeat(np.arange(len(groups)), groups)

    def yetirank(settings: dict[str, Any]) -> Any:
        def learn(x: np.ndarray, y: np.ndarray, groups: np.ndarray, _cat: list[int],
                  seed: int) -> Any:
            model = catboost.CatBoost(dict(settings, loss_function="YetiRank",
                                           random_seed=seed))
            model.fit(catboost.Pool(x, y, group_id=groups_of(groups)))
            return _Predictor(model.predict)
        return learn

    def logloss(settings: dict[str, Any]) -> Any:
        def learn(x: np.ndarray, y: np.ndarray, _groups: np.ndarray, _cat: list[int],
                  seed: int) -> Any:
            model = catboost.CatBoostClassifier(**settings, loss_function="Logloss",
                                                random_seed=seed)
            model.fit(x, y)
            return _Predictor(lambda f: model.predict_proba(f)[:, 1])
        return learn

    learners["CatBoost YetiRank, 1000 trees of depth 6"] = yetirank(CATBOOST)
    learners["CatBoost Logloss classifier, seed 004's settings (1000 trees, depth 6)"] = \
        logloss(CATBOOST)
    learners["CatBoost YetiRank, recsys-db's budget (200 trees, depth 3, L2 10)"] = \
        yetirank(CATBOOST_SHALLOW)
    learners["CatBoost Logloss classifier, recsys-db's budget"] = logloss(CATBOOST_SHALLOW)
    return learners


def _metrics(conn: psycopg.Connection, run_id: int) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for recommender, metric, value in conn.execute(
            "SELECT recommender, metric, value FROM recsys.metric WHERE run_id = %s"
            " AND recommender IN ('ranked', 'ranker_als', 'ranker_popular')", (run_id,)):
        found.setdefault(recommender, {})[metric] = float(value)
    return found


def _compare_learners(url: str, model_name: str, seed: int) -> dict[str, dict[str, float]]:
    """Each learner fitted on the same training windows, scored on the same holdout."""
    out: dict[str, dict[str, float]] = {}
    with db.connect(url, pinned=True) as conn:
        model = get_model(conn, model_name)
        data = load.read(conn, model)
        spec = ranker.declared(conn, model.id)
        assert spec is not None
        stage = ranker._Stage(conn, model, spec, data)
        cutoffs, holdout = stage.cutoffs()
        features, target, groups = stage.training_set(cutoffs)
        categorical = [stage.names.index(name) for name in stage.categorical]
        for name, learn in _learners().items():
            started = time.perf_counter()
            fitted = learn(features, target, groups, categorical, seed)
            seconds = time.perf_counter() - started
            scores = stage.holdout(fitted, holdout)["ranked"]
            out[name] = {"ndcg": scores["ndcg"], "recall": scores["recall"],
                         "fit_seconds": seconds}
    return out


def _summary(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values),
            "runs": values}


def run(url: str) -> dict[str, Any]:
    """Train the models of each seed with their rankers; compare the learners on each seed's
    split. Model ``ml_<seed>`` has the ranker's defaults; ``ml_<seed>_content`` also declares
    the movies' genres and year as item features, which turns the content generator on."""
    with db.connect(url) as conn:
        datasets.write_movielens(conn, datasets.load_recbole())
        for seed in SEEDS:
            for name, candidates in ((f"ml_{seed}", 0), (f"ml_{seed}_content", 20)):
                conn.execute(
                    "SELECT recsys.create_model(%s, 'movielens.ratings', 'user_id', 'item_id',"
                    f" time_column => 'rated_at', params => {ALS})", (name, seed))
                conn.execute("SELECT recsys.create_ranker(%s, %s::interval,"
                             " content_candidates => %s)", (name, LABEL_WINDOW, candidates))
            conn.execute("SELECT recsys.set_features(%s, 'item', 'movielens.movies', 'item_id',"
                         " ARRAY['genres', 'year'])", (f"ml_{seed}_content",))
    per_seed: list[dict[str, Any]] = []
    for seed in SEEDS:
        name = f"ml_{seed}"
        result = training.train(url, name)
        content = training.train(url, f"{name}_content")
        assert result.ranker is not None and content.ranker is not None, "no ranker stage"
        with db.connect(url) as conn:
            metrics = _metrics(conn, result.run_id)
            metrics["ranked_content"] = _metrics(conn, content.run_id)["ranked"]
        per_seed.append({
            "seed": seed, "status": result.ranker["status"],
            "content_status": content.ranker["status"], "metrics": metrics,
            "ranker_seconds": result.stages["ranker"], "refresh_seconds": result.seconds,
            "train_pairs": result.ranker["train_pairs"],
            "train_positives": result.ranker["train_positives"],
            "learners": _compare_learners(url, name, seed)})
        print(f"seed {seed}: ranked ndcg@10 {metrics['ranked']['ndcg']:.4f} (with content "
              f"{metrics['ranked_content']['ndcg']:.4f}), ALS "
              f"{metrics['ranker_als']['ndcg']:.4f}, ranker {result.stages['ranker']:.2f}s of "
              f"{result.seconds:.2f}s", flush=True)
    with db.connect(url) as conn:
        [(users, windows)] = conn.execute(
            "SELECT count(DISTINCT user_id), max(rated_at) - min(rated_at)"
            " FROM movielens.ratings").fetchall()
    names = {"ranker_popular": "popular", "ranker_als": "ALS alone",
             "ranked": "ALS + ranker",
             "ranked_content": "ALS + ranker, content generator on (genres, year)"}
    quality = {label: {metric: _summary([s["metrics"][recommender][metric] for s in per_seed])
                       for metric in METRICS}
               for recommender, label in names.items()}
    learners = {name: {key: _summary([s["learners"][name][key] for s in per_seed])
                       for key in ("ndcg", "recall", "fit_seconds")}
                for name in per_seed[0]["learners"]}
    gains = [s["metrics"]["ranked"]["ndcg"] - s["metrics"]["ranker_als"]["ndcg"]
             for s in per_seed]
    return {
        "dataset": "ranker", "label": LABEL_WINDOW, "users": users, "span": str(windows),
        "seeds": list(SEEDS), "per_seed": per_seed, "quality": quality,
        "learners": learners, "ndcg_gain": _summary(gains),
        "ranker_seconds": _summary([s["ranker_seconds"] for s in per_seed]),
        "refresh_seconds": _summary([s["refresh_seconds"] for s in per_seed]),
        "share": _summary([s["ranker_seconds"] / s["refresh_seconds"] for s in per_seed]),
        "train_pairs": per_seed[0]["train_pairs"],
        "train_positives": per_seed[0]["train_positives"],
    }
