"""``--scale content``: cold start from content on MovieLens 100K, embedding throughput, and the
delay from a new item's INSERT to its audience.

Quality: every 10th movie (``item_id % 10 = 3``) is held out of the training view, as in
``tests/integration/test_cold_start_features.py``, so those movies are known by their content
only. Each content declaration (one-hot genres and year, the title's text embedding, both) is
a model of its own over the same view, trained with the same ALS seeds; the held-out movies'
vectors are the ones the feature map gave them. For every user who liked a held-out movie (and
is in the model), the held-out movies are ranked by user factor · mapped vector: AUC of the
liked ones against the other held-out ones (ties count half) and recall@50. Random scores are
the floor. The map's regularization is swept per declaration (``recsys.set_features``'
``regularization``, one model per value): ``auto``, the default (the argument omitted, so NULL:
chosen at each training by cross-validation over the warm keys; the penalty chosen is read from
``recsys.feature_maps``), and fixed values.

Throughput: every movie title through ``recsys_db.embedding.embed`` with an empty
``recsys.embedding`` (cold) and with every title cached (warm), beside sentence-transformers'
``encode`` alone; the model's load apart, in a fresh process (importing torch included) and
again in this one.

Delay: a real ``recsys-db worker`` process beside the trained genres + year + text model with
the default (automatic) regularization; a movie row
(title, genres, year, no ratings) is inserted, an incremental refresh requested, and
``recsys.interested_users`` polled every 50 ms until the movie has an audience. The first new
movie is the worker's cold start (it loads the embedding model then) and is reported apart.

``python -m benchmarks.content load`` is the fresh process that times the model's load.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from scipy.stats import rankdata

from benchmarks import measure
from recsys_db import datasets, db, embedding, features, training

SEEDS = (1, 2, 3)
# None: the default of recsys.set_features (regularization omitted, NULL), chosen at each
# training by cross-validation; reported as AUTO
REGULARIZATIONS: tuple[float | None, ...] = (None, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
DEFAULT_REGULARIZATION: float | None = None
AUTO = "auto"
TOP = 50
ALS = "recsys.als(factors => 32, iterations => 10, regularization => 0.05, random_state => %s)"
# label -> (short name for the models, set_features arguments after the key column)
DECLARATIONS: dict[str, tuple[str, str]] = {
    "one-hot genres + year": ("genres", "feature_columns => ARRAY['genres', 'year']"),
    "title text": ("text", "text_columns => ARRAY['title']"),
    "genres + year + title text": (
        "both", "feature_columns => ARRAY['genres', 'year'], text_columns => ARRAY['title']"),
}
DELAY_MODEL = "genres + year + title text"
# made-up movies for the delay: (title, year, genres); the first is the worker's cold start
NEW_MOVIES = [
    ("Midnight Train to the Northern Lights", 1998, ["Adventure", "Romance"]),
    ("The Haunted Lighthouse of Saint Clair", 1998, ["Horror", "Thriller"]),
    ("Galactic Rangers: Return of the Comet", 1998, ["Sci-Fi", "Action"]),
    ("A Quiet Summer in Provence", 1998, ["Drama", "Romance"]),
    ("Detective Marlowe and the Silver Key", 1998, ["Crime", "Mystery"]),
    ("Cartoon Critters Save Christmas", 1998, ["Animation", "Children's"]),
]
NEW_ID = 100_001
POLL = 0.05
AUDIENCE_GOAL = 5.0
COLD_TIMEOUT = 180.0
WARM_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def _label(regularization: float | None) -> str:
    """A regularization as the results name it: ``auto`` for the default (NULL)."""
    return AUTO if regularization is None else f"{regularization:g}"


def _model_name(short: str, seed: int, regularization: float | None) -> str:
    return f"{short}_s{seed}_r{_label(regularization)}"


def _summary(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": values}


# -- quality -------------------------------------------------------------------------------------

def _scores_quality(scores: np.ndarray, liked: np.ndarray) -> dict[str, float]:
    """Mean per-user AUC (ties count half) and recall@TOP of score rows against liked rows
    (users x held-out items, boolean); items are in key order, which breaks ties for the top."""
    ranks = rankdata(scores, axis=1)
    positives = liked.sum(axis=1)
    negatives = liked.shape[1] - positives
    auc = ((ranks * liked).sum(axis=1) - positives * (positives + 1) / 2) / (
        positives * negatives)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :TOP]
    hits = np.take_along_axis(liked, order, axis=1).sum(axis=1)
    return {"auc": float(auc.mean()), "recall": float((hits / positives).mean())}


def _vectors(conn: psycopg.Connection, model: str) -> tuple[dict[str, np.ndarray],
                                                              dict[str, np.ndarray],
                                                              set[str]]:
    """The active version's user vectors, item vectors and the items mapped from content."""
    [(users, items)] = conn.execute(
        "SELECT v.user_table, v.item_table FROM recsys.model_version v JOIN recsys.model m"
        " ON m.id = v.model_id AND v.version = m.active_version WHERE m.name = %s",
        (model,)).fetchall()
    user_vectors = {k: v.to_numpy() for k, v in conn.execute(
        sql.SQL("SELECT key, factors FROM {}").format(sql.Identifier("recsys", users)))}
    item_vectors: dict[str, np.ndarray] = {}
    mapped: set[str] = set()
    for key, vector, from_content in conn.execute(
            sql.SQL("SELECT key, factors, from_content FROM {}").format(
                sql.Identifier("recsys", items))):
        item_vectors[key] = vector.to_numpy()
        if from_content:
            mapped.add(key)
    return user_vectors, item_vectors, mapped


class _Split:
    """The held-out movies, and which of them each user liked (``movielens.liked``)."""

    def __init__(self, conn: psycopg.Connection):
        self.held_out = sorted(r[0] for r in conn.execute(
            "SELECT item_id::text FROM movielens.movies WHERE item_id % 10 = 3"))
        self.liked: dict[str, set[str]] = {}
        for user, item in conn.execute("SELECT user_id::text, item_id::text FROM"
                                       " movielens.liked WHERE item_id % 10 = 3"):
            self.liked.setdefault(user, set()).add(item)

    def users(self, known: dict[str, np.ndarray]) -> list[str]:
        """Users the model knows who liked some but not every held-out movie."""
        return sorted(u for u, items in self.liked.items()
                      if u in known and 0 < len(items) < len(self.held_out))

    def matrix(self, users: list[str]) -> np.ndarray:
        """Users x held-out movies: liked or not."""
        column = {item: n for n, item in enumerate(self.held_out)}
        liked = np.zeros((len(users), len(self.held_out)), dtype=bool)
        for row, user in enumerate(users):
            liked[row, [column[i] for i in self.liked[user]]] = True
        return liked


def _evaluate(conn: psycopg.Connection, model: str, split: _Split) -> dict[str, Any]:
    """AUC and recall@TOP of one trained model's held-out movies, and its user vectors."""
    user_vectors, item_vectors, mapped = _vectors(conn, model)
    missing = [i for i in split.held_out if i not in mapped]
    assert not missing, f"{model}: held-out movies not mapped from content: {missing[:5]}"
    users = split.users(user_vectors)
    u = np.stack([user_vectors[k] for k in users]).astype(np.float64)
    h = np.stack([item_vectors[k] for k in split.held_out]).astype(np.float64)
    quality = _scores_quality(u @ h.T, split.matrix(users))
    # as the test computes it: every cold item is a negative, strict > (ties count nothing)
    cold = sorted(mapped)
    c = np.stack([item_vectors[k] for k in cold]).astype(np.float64)
    position = {k: n for n, k in enumerate(cold)}
    aucs = []
    for row, user in enumerate(users):
        scores = c @ u[row]
        liked = [position[i] for i in split.liked[user]]
        aucs.append(float((scores[liked][:, None] > np.delete(scores, liked)[None, :]).mean()))
    return {**quality, "auc_all_cold": float(np.mean(aucs)), "users": len(users),
            "cold_items": len(cold), "map_regularization": _map_regularization(conn, model),
            "user_factors": {k: user_vectors[k] for k in users}}


def _map_regularization(conn: psycopg.Connection, model: str) -> float:
    """The ridge penalty the active version's item feature map was fitted with: declared, or
    chosen by cross-validation (``recsys.feature_maps``)."""
    [(penalty,)] = conn.execute(
        "SELECT f.regularization FROM recsys.feature_maps f JOIN recsys.model m"
        " ON m.name = f.model AND f.version = m.active_version"
        " WHERE f.model = %s AND f.kind = 'item'", (model,)).fetchall()
    return float(penalty)


def _declare(conn: psycopg.Connection, name: str, arguments: str,
             regularization: float | None) -> None:
    """``recsys.set_features`` for one model: the default (regularization omitted) for None."""
    if regularization is None:
        conn.execute("SELECT recsys.set_features(%s, 'item', 'movielens.movies', 'item_id',"
                     f" {arguments})", (name,))
    else:
        conn.execute("SELECT recsys.set_features(%s, 'item', 'movielens.movies', 'item_id',"
                     f" {arguments}, regularization => %s)", (name, regularization))


def _quality(url: str, split_conn: psycopg.Connection) -> dict[str, Any]:
    """Train every declaration x regularization x seed and evaluate it; random scores as the
    floor on the same users."""
    split = _Split(split_conn)
    with db.connect(url) as conn:
        for seed in SEEDS:
            for short, arguments in DECLARATIONS.values():
                for regularization in REGULARIZATIONS:
                    name = _model_name(short, seed, regularization)
                    conn.execute("SELECT recsys.create_model(%s, 'public.train', 'user_id',"
                                 f" 'item_id', params => {ALS})", (name, seed))
                    _declare(conn, name, arguments, regularization)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        label: {_label(r): [] for r in REGULARIZATIONS} for label in DECLARATIONS}
    random: list[dict[str, float]] = []
    same_factors: list[bool] = []
    for seed in SEEDS:
        factors_of_seed: list[dict[str, np.ndarray]] = []
        for label, (short, _) in DECLARATIONS.items():
            for regularization in REGULARIZATIONS:
                name = _model_name(short, seed, regularization)
                result = training.train(url, name)
                assert result.status == "succeeded", f"{name}: {result.status}"
                with db.connect(url) as conn:
                    found = _evaluate(conn, name, split)
                if regularization is not None:
                    assert found["map_regularization"] == regularization, name
                factors_of_seed.append(found.pop("user_factors"))
                found.update(seed=seed, features_seconds=result.stages["features"],
                             refresh_seconds=result.seconds, cold=result.cold["items"])
                runs[label][_label(regularization)].append(found)
                print(f"seed {seed}, {label}, regularization {_label(regularization)} (map "
                      f"{found['map_regularization']:g}): AUC {found['auc']:.4f}, "
                      f"recall@{TOP} {found['recall']:.4f}", flush=True)
        first = factors_of_seed[0]
        same_factors.append(all(
            f.keys() == first.keys() and all(np.array_equal(f[k], first[k]) for k in first)
            for f in factors_of_seed[1:]))
        users = sorted(first)
        scores = np.random.default_rng(seed).random((len(users), len(split.held_out)))
        random.append(_scores_quality(scores, split.matrix(users)))
    table = {label: {reg: {key: _summary([r[key] for r in found])
                           for key in ("auc", "recall", "auc_all_cold", "features_seconds")}
                     for reg, found in by_reg.items()}
             for label, by_reg in runs.items()}
    # the best fixed value of each declaration (auto is a choice among such values)
    best = {label: max((reg for reg in by_reg if reg != AUTO),
                       key=lambda reg: float(by_reg[reg]["auc"]["mean"]))
            for label, by_reg in table.items()}
    default = _label(DEFAULT_REGULARIZATION)
    genres, both = "one-hot genres + year", "genres + year + title text"

    def paired(reg_both: str, reg_genres: str, key: str) -> dict[str, Any]:
        return _summary([b[key] - g[key] for b, g in zip(
            runs[both][reg_both], runs[genres][reg_genres], strict=True)])

    # per declaration and seed, the penalty cross-validation chose, and whether the automatic
    # model's AUC equals the fixed model's at that penalty (when the sweep has it)
    chosen = {label: [r["map_regularization"] for r in by_reg[AUTO]]
              for label, by_reg in runs.items()}
    same_as_fixed = {label: [None if f"{penalty:g}" not in by_reg else
                             auto["auc"] == by_reg[f"{penalty:g}"][n]["auc"]
                             for n, (penalty, auto) in enumerate(zip(
                                 chosen[label], by_reg[AUTO], strict=True))]
                     for label, by_reg in runs.items()}
    first_run = runs[genres][default][0]
    return {
        "held_out": len(split.held_out), "users": first_run["users"],
        "cold_items": first_run["cold_items"],
        "random": {key: _summary([r[key] for r in random]) for key in ("auc", "recall")},
        "by_regularization": table, "best_regularization": best,
        "chosen_regularization": chosen, "auto_same_as_fixed": same_as_fixed,
        "gain_default": {k: paired(default, default, k) for k in ("auc", "recall")},
        "gain_by_regularization": {reg: {k: paired(reg, reg, k) for k in ("auc", "recall")}
                                   for reg in table[both]},
        "gain_best": {k: paired(best[both], best[genres], k) for k in ("auc", "recall")},
        "same_als_factors_per_seed": same_factors, "per_run": runs,
    }


# -- embedding throughput ------------------------------------------------------------------------

def load_in_fresh_process() -> None:
    """Print, as JSON, the seconds to import sentence-transformers (torch with it) and to load
    the default embedding model, in this (fresh) process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    import sentence_transformers  # noqa: F401

    imported = time.perf_counter() - started
    started = time.perf_counter()
    embedding.dimensions(embedding.DEFAULT_MODEL)
    print(json.dumps({"import_s": imported, "load_s": time.perf_counter() - started}))


def _throughput(url: str, repeat: int) -> dict[str, Any]:
    """Every title embedded with a cold and with a warm cache, and by the model alone."""
    name = embedding.DEFAULT_MODEL
    load_before = os.getloadavg()[0]
    fresh = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-m", "benchmarks.content", "load"],
                             capture_output=True, text=True, check=True, timeout=600)
        fresh.append(json.loads(out.stdout.strip().splitlines()[-1]))
    in_process, _ = measure.timed(lambda: embedding.dimensions(name))  # this process's first
    reloads = []
    for _ in range(repeat):
        embedding._load.cache_clear()
        reloads.append(measure.timed(lambda: embedding.dimensions(name))[0])
    with db.connect(url) as conn:
        titles = [r[0] for r in conn.execute(
            "SELECT title FROM movielens.movies ORDER BY item_id")]
        cold = []
        for _ in range(repeat):
            conn.execute("DELETE FROM recsys.embedding")
            seconds, vectors = measure.timed(lambda: embedding.embed(conn, name, titles))
            cold.append(seconds)
        warm = measure.repeat(lambda: embedding.embed(conn, name, titles), repeat)
        [(cached,)] = conn.execute("SELECT count(*) FROM recsys.embedding").fetchall()
    unique = list(dict.fromkeys(titles))
    alone = measure.repeat(lambda: embedding.encode(name, unique), repeat)
    return {
        "model": name, "items": len(titles), "unique_texts": len(unique), "cached": cached,
        "dimensions": int(vectors.shape[1]),
        "mean_title_chars": statistics.fmean(len(t) for t in titles),
        "load_fresh_process": {
            "import": measure.summary([f["import_s"] for f in fresh]),
            "load": measure.summary([f["load_s"] for f in fresh]),
            "total": measure.summary([f["import_s"] + f["load_s"] for f in fresh])},
        "load_first_in_benchmark": in_process, "reload": measure.summary(reloads),
        "cold": measure.summary(cold), "warm": measure.summary(warm),
        "encode_alone": measure.summary(alone),
        "cold_items_per_s": len(titles) / float(np.median(cold)),
        "warm_items_per_s": len(titles) / float(np.median(warm)),
        "encode_texts_per_s": len(unique) / float(np.median(alone)),
        # the fastest run: the least disturbed by other work on the machine
        "cold_items_per_s_best": len(titles) / min(cold),
        "warm_items_per_s_best": len(titles) / min(warm),
        "encode_texts_per_s_best": len(unique) / min(alone),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "torch_threads": _torch_threads(),
        "versions": _versions(),
    }


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {p: metadata.version(p) for p in ("torch", "sentence-transformers", "transformers")}


# -- new item delay ------------------------------------------------------------------------------

def _worker_command(url: str) -> list[str]:
    script = Path(sys.executable).with_name("recsys-db")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "recsys_db.cli"]
    return [*base, "worker", "--database-url", url, "--json", "--grace", "5"]


def _wait_for_worker(conn: psycopg.Connection, worker: subprocess.Popen[bytes]) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < 60:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")
        if conn.execute("SELECT 1 FROM recsys.workers WHERE state = 'idle'").fetchone():
            return time.perf_counter() - started
        time.sleep(POLL)
    raise RuntimeError("the worker did not register within 60 s")


def _job_of(conn: psycopg.Connection, model: str) -> tuple[int, str] | None:
    """The model's newest job and its status."""
    row = conn.execute("SELECT j.id, j.status FROM recsys.job j JOIN recsys.model m"
                       " ON m.id = j.model_id WHERE m.name = %s ORDER BY j.id DESC LIMIT 1",
                       (model,)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def _settled(conn: psycopg.Connection, model: str, timeout: float = WARM_TIMEOUT) -> None:
    """Wait until the model has no queued or running job."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        job = _job_of(conn, model)
        if job is None or job[1] not in ("queued", "running"):
            return
        time.sleep(POLL)
    raise RuntimeError(f"{model}: a job is still queued or running after {timeout:.0f} s")


def _new_item(conn: psycopg.Connection, model: str, item_id: int, title: str, year: int,
              genres: list[str], timeout: float) -> dict[str, Any]:
    """INSERT a movie, request an incremental refresh, poll for its audience; then the job's
    times (from the INSERT) and its run's stages."""
    _settled(conn, model)
    started = time.perf_counter()
    [(inserted_at,)] = conn.execute(
        "INSERT INTO movielens.movies (item_id, title, year, genres) VALUES (%s, %s, %s, %s)"
        " RETURNING clock_timestamp()", (item_id, title, year, genres)).fetchall()
    conn.execute("SELECT recsys.request_refresh(%s, 'incremental')", (model,))
    requested = time.perf_counter() - started
    job = _job_of(conn, model)
    assert job is not None
    polls, audience = 0, 0
    while time.perf_counter() - started < timeout:
        polls += 1
        try:
            audience = len(conn.execute("SELECT user_key FROM recsys.interested_users(%s, %s,"
                                        " 10)", (model, str(item_id))).fetchall())
        except psycopg.errors.NoDataFound:
            audience = 0
        if audience:
            break
        if polls % 10 == 0 and _job_of(conn, model) == (job[0], "failed"):
            break  # the refresh failed: no audience will come
        time.sleep(POLL)
    seconds = time.perf_counter() - started
    _settled(conn, model)
    row = conn.execute(
        "SELECT j.status, extract(epoch FROM j.started_at - %(t)s),"
        " extract(epoch FROM j.finished_at - %(t)s), r.stages, r.cold_items,"
        " extract(epoch FROM r.finished_at - r.started_at), j.error"
        " FROM recsys.job j LEFT JOIN recsys.run r ON r.id = j.run_id WHERE j.id = %(j)s",
        {"t": inserted_at, "j": job[0]}).fetchone()
    assert row is not None

    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    return {"title": title, "seconds": seconds if audience else None, "audience": audience,
            "polls": polls, "request_seconds": requested, "job_status": row[0],
            "job_started_after": number(row[1]), "job_finished_after": number(row[2]),
            "run_seconds": number(row[5]), "run_stages": row[3], "run_cold_items": row[4],
            "error": row[6]}


def _stop(worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    started = time.perf_counter()
    worker.send_signal(signal.SIGTERM)
    try:
        code = worker.wait(timeout=STOP_TIMEOUT)
        killed = False
    except subprocess.TimeoutExpired:
        worker.kill()
        code = worker.wait(timeout=STOP_TIMEOUT)
        killed = True
    return {"exit_code": code, "killed": killed, "stop_seconds": time.perf_counter() - started}


def _delay(url: str) -> dict[str, Any]:
    model = _model_name(DECLARATIONS[DELAY_MODEL][0], SEEDS[0], DEFAULT_REGULARIZATION)
    with tempfile.TemporaryDirectory(prefix="recsys-content-worker-") as folder:
        log_path = Path(folder) / "worker.jsonl"
        with open(log_path, "wb") as log, psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            worker = subprocess.Popen(_worker_command(url), stdout=log,
                                      stderr=subprocess.STDOUT)
            try:
                penalty_before = _map_regularization(conn, model)
                ready = _wait_for_worker(conn, worker)
                ready_total = time.perf_counter() - started
                runs = []
                for n, (title, year, genres) in enumerate(NEW_MOVIES):
                    found = _new_item(conn, model, NEW_ID + n, title, year, genres,
                                      COLD_TIMEOUT if n == 0 else WARM_TIMEOUT)
                    runs.append(found)
                    print(f"new movie {n} ({'cold' if n == 0 else 'warm'} worker): audience "
                          f"after {found['seconds']} s", flush=True)
                penalty_after = _map_regularization(conn, model)
            finally:
                stopped = _stop(worker)
        events = [json.loads(line) for line in log_path.read_text().splitlines()
                  if line.startswith("{")]
    warm = [r["seconds"] for r in runs[1:]]
    reached = [s for s in warm if s is not None]
    return {
        "model": model, "regularization": _label(DEFAULT_REGULARIZATION),
        "map_regularization": {"before": penalty_before, "after": penalty_after},
        "worker_ready_seconds": ready, "worker_start_seconds": ready_total,
        "cold_worker": runs[0], "warm": runs[1:],
        "median_seconds": float(np.median(reached)) if reached else None,
        "max_seconds": max(reached) if len(reached) == len(warm) else None,
        "all_reached": len(reached) == len(warm), "goal_seconds": AUDIENCE_GOAL,
        "poll_seconds": POLL, "stop": stopped,
        "worker_events": [e for e in events if e.get("event") in ("succeeded", "failed")],
    }


# -- the scale -----------------------------------------------------------------------------------

def run(url: str, repeat: int = 3) -> dict[str, Any]:
    """Load MovieLens 100K and the held-out view; embedding throughput (while the cache is
    empty), cold-start quality of every declaration, then the new-item delay."""
    with db.connect(url) as conn:
        datasets.write_movielens(conn, datasets.load_recbole())
        conn.execute("CREATE VIEW public.train AS SELECT * FROM movielens.liked"
                     " WHERE item_id % 10 <> 3")
        [(movies, liked, users)] = conn.execute(
            "SELECT (SELECT count(*) FROM movielens.movies), count(*), count(DISTINCT user_id)"
            " FROM public.train").fetchall()
    throughput = _throughput(url, repeat)
    print(f"embedding: cold {throughput['cold_items_per_s']:.0f} items/s, warm "
          f"{throughput['warm_items_per_s']:.0f} items/s", flush=True)
    with db.connect(url) as conn:
        quality = _quality(url, conn)
    delay = _delay(url)
    return {"dataset": "content", "movies": movies, "train_pairs": liked,
            "train_users": users, "seeds": list(SEEDS),
            "regularizations": [_label(r) for r in REGULARIZATIONS],
            "default_regularization": _label(DEFAULT_REGULARIZATION),
            "regularization_grid": list(features.REGULARIZATION_GRID), "top": TOP,
            "declarations": {label: arguments for label, (_, arguments) in DECLARATIONS.items()},
            "quality": quality, "throughput": throughput, "delay": delay}


if __name__ == "__main__":
    if sys.argv[1:] == ["load"]:
        load_in_fresh_process()
    else:
        sys.exit("usage: python -m benchmarks.content load")
