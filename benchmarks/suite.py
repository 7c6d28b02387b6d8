"""The measurements of one data set; every figure is taken next to its peer in the same run."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import scipy.sparse as sp
from implicit.cpu import _als as implicit_als
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from benchmarks import live_search, measure, peers, session_math, synthetic
from recsys_db import (
    als,
    copybin,
    datasets,
    db,
    embedded,
    index,
    load,
    training,
    weighting,
)
from recsys_db.model import get_model

log = logging.getLogger(__name__)

MODEL = "bench"
TEXT_MODEL = "bench_text"  # the same rows with text keys, for the load figures
# The defaults a new user gets, except the promotion gate's baseline comparison: on synthetic
# logs without structure ALS may score below popularity, and a rejected run has no version to
# measure.
PARAMS = {"gate_baseline": False}
WRITE_ROWS = 200_000  # rows written by both write paths
LATENCY_QUERIES = 1000
EXACT_QUERIES_LARGE = 100  # exact scans over a million items take long
PGBENCH_SECONDS = 20
PGBENCH_CLIENTS = 8
LOOP_USERS = 20_000  # seed-000 loop: users timed, then scaled to all users
# Precompute ranks a dense block of 4,096 users x all items at a time (recsys_db/precompute.py):
# over 100k items that block and its argpartition outgrow a shared 24 GiB machine.
PRECOMPUTE_MAX_ITEMS = 100_000
SESSION_FACTORS = (256, 512)  # extra MovieLens models for recommend_for_items and explain


@dataclass(frozen=True)
class Dataset:
    """A benchmark data set in table ``table``."""

    name: str
    label: str  # synthetic | real
    table: sql.Identifier
    user: str
    item: str
    weight: str


def prepare(conn: psycopg.Connection, name: str) -> Dataset:
    """Load the data set ``name`` (``ml100k`` or a synthetic scale) and create the models.

    The model reads a materialized view with a unique index on (user, item), summing duplicate
    rows, as many applications feed recsys-db; each refresh refreshes it. ``TEXT_MODEL`` reads a
    copy of the view with text keys (uuid-formatted users, prefixed items).
    """
    conn.execute("CREATE SCHEMA IF NOT EXISTS bench")  # scratch tables of the benchmarks
    if name == "ml100k":
        datasets.write_movielens(conn, datasets.load_recbole())
        raw = Dataset(name, "real (MovieLens 100K ratings)",
                      sql.Identifier("movielens", "ratings"), "user_id", "item_id", "rating")
    else:
        table = sql.Identifier("bench", "events")
        synthetic.load(conn, synthetic.SCALES[name], table)
        raw = Dataset(name, "synthetic (power-law users and items, seeded)", table,
                      "user_id", "item_id", "weight")
    columns = {"u": sql.Identifier(raw.user), "i": sql.Identifier(raw.item),
               "w": sql.Identifier(raw.weight), "raw": raw.table}
    conn.execute(sql.SQL(
        "CREATE MATERIALIZED VIEW bench.interactions AS SELECT {u} AS user_id, {i} AS item_id,"
        " sum({w})::real AS weight FROM {raw} GROUP BY 1, 2").format(**columns))
    conn.execute("CREATE UNIQUE INDEX ON bench.interactions (user_id, item_id)")
    conn.execute("CREATE TABLE bench.interactions_text AS SELECT md5(user_id::text)::uuid::text"
                 " AS user_id, 'item-' || item_id AS item_id, weight FROM bench.interactions")
    conn.execute("VACUUM ANALYZE bench.interactions, bench.interactions_text")
    data = Dataset(name, raw.label, sql.Identifier("bench", "interactions"), "user_id",
                   "item_id", "weight")
    items = synthetic.SCALES[name].items if name in synthetic.SCALES else 0
    params = dict(PARAMS, **({} if items <= PRECOMPUTE_MAX_ITEMS else {"recommendations_k": 0}))
    for model, source in ((MODEL, "bench.interactions"), (TEXT_MODEL, "bench.interactions_text")):
        conn.execute(
            "SELECT recsys.create_model(%s, %s::regclass, 'user_id', 'item_id',"
            " weight_column => 'weight', params => %s::jsonb)",
            (model, source, json.dumps(params)))
    return data


def _keys(conn: psycopg.Connection, table: str) -> list[str]:
    return [row[0] for row in conn.execute(
        sql.SQL("SELECT key FROM {} ORDER BY idx").format(sql.Identifier(table)))]


def same_matrix(ours: sp.csr_matrix, our_users: list[str], our_items: list[str],
                theirs: sp.csr_matrix, their_users: list[str], their_items: list[str]) -> bool:
    """Whether two matrices hold the same (user key, item key, weight) entries."""
    if sorted(our_users) != sorted(their_users) or sorted(our_items) != sorted(their_items):
        return False
    user_at = {key: idx for idx, key in enumerate(our_users)}
    item_at = {key: idx for idx, key in enumerate(our_items)}
    rows = np.array([user_at[k] for k in their_users])
    cols = np.array([item_at[k] for k in their_items])
    coo = theirs.tocoo()
    moved = sp.csr_matrix((coo.data, (rows[coo.row], cols[coo.col])), shape=ours.shape)
    moved.sum_duplicates()
    difference = abs(moved - ours)
    return bool(difference.nnz == 0 or difference.max() < 1e-9)


def _bench_load(url: str, model_name: str, table: sql.Identifier,
                repeats: int) -> dict[str, Any]:
    with db.connect(url) as conn:
        model = get_model(conn, model_name)
        ours = measure.repeat(lambda: load.read(conn, model), repeats)
        loaded = load.read(conn, model)
        our_users, our_items = _keys(conn, "recsys_user_map"), _keys(conn, "recsys_item_map")
        conn.execute("DROP TABLE IF EXISTS recsys_user_map, recsys_item_map")
    theirs = measure.repeat(
        lambda: peers.pandas_load(url, table, "user_id", "item_id", "weight"), repeats)
    matrix, their_users, their_items = peers.pandas_load(url, table, "user_id", "item_id",
                                                         "weight")
    same = same_matrix(loaded.matrix, our_users, our_items, matrix, their_users, their_items)
    return {"ours": measure.summary(ours), "peer": measure.summary(theirs),
            "speedup": float(np.median(theirs) / np.median(ours)), "same_matrix": same,
            "rows": loaded.rows_read, "users": loaded.users, "items": loaded.items,
            "nnz": int(loaded.matrix.nnz)}


def bench_load(url: str, data: Dataset, repeats: int) -> dict[str, Any]:
    """load.read (into a CSR matrix with dense key maps) vs pandas.read_sql, with integer keys
    and with text keys; ``text_vs_integer`` is the ratio of the two load times."""
    found = _bench_load(url, MODEL, data.table, repeats)
    text = _bench_load(url, TEXT_MODEL, sql.Identifier("bench", "interactions_text"), repeats)
    found["text"] = text
    found["text_vs_integer"] = text["ours"]["median"] / found["ours"]["median"]
    return found


def _train_child(url: str) -> dict[str, Any]:
    with measure.system_memory() as memory:
        done = subprocess.run([sys.executable, "-m", "benchmarks.child", url, MODEL],
                              check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["system_peak_rise_bytes"] = memory["peak_rise_bytes"]
    result["index_log"] = [line for line in done.stderr.splitlines()
                           if line.startswith(("hnsw", "auto index"))]
    return result


def bench_refresh(url: str, repeats: int) -> dict[str, Any]:
    """A full refresh (recsys-db train, own process, the model's defaults: materialized view
    refresh, holdout fit and evaluation, fit, write, precompute, index) vs implicit's fit on
    the same matrix. Also the training loss of the version put into production (fitted on from
    the holdout model's factors) against the loss of implicit's fresh fit."""
    runs = [_train_child(url) for _ in range(repeats)]
    with db.connect(url) as conn:
        model = get_model(conn, MODEL)
        weighted = weighting.apply(load.read(conn, model).matrix, model.params)
        conn.execute("DROP TABLE IF EXISTS recsys_user_map, recsys_item_map")
    fits: list[float] = []
    for _ in range(repeats):
        elapsed, (user_factors, item_factors) = measure.timed(
            lambda: als.fit(weighted, model.params))
        fits.append(elapsed)
    seconds = [run["seconds"] for run in runs]
    return {"ours": measure.summary(seconds), "peer": measure.summary(fits),
            "ratio": float(np.median(seconds) / np.median(fits)),
            "stages": runs[-1]["stages"], "index_log": runs[-1]["index_log"],
            "status": runs[-1]["status"],
            "peak_rss_bytes": max(run["peak_rss_bytes"] for run in runs),
            "system_peak_rise_bytes": max(run["system_peak_rise_bytes"] for run in runs),
            "fresh_fit_loss": _loss(weighted, user_factors, item_factors,
                                    float(model.params["regularization"]))}


def _loss(weighted: sp.csr_matrix, user_factors: np.ndarray, item_factors: np.ndarray,
          regularization: float) -> float:
    """implicit's ALS training loss of the factors on the weighted matrix."""
    return float(implicit_als.calculate_loss(
        weighted.astype(np.float32), np.ascontiguousarray(user_factors, dtype=np.float32),
        np.ascontiguousarray(item_factors, dtype=np.float32), regularization, num_threads=0))


def _active(conn: psycopg.Connection) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(
            "SELECT v.* FROM recsys.model_version v JOIN recsys.model m ON m.id = v.model_id"
            " AND v.version = m.active_version WHERE m.name = %s", (MODEL,)).fetchone()
    assert row is not None
    return row


def _factors(conn: psycopg.Connection, table: str) -> tuple[list[str], np.ndarray]:
    keys, vectors = [], []
    with conn.cursor(binary=True) as cur:
        for key, factors in cur.execute(sql.SQL("SELECT key, factors FROM {} ORDER BY idx")
                                        .format(sql.Identifier("recsys", table))):
            keys.append(key)
            vectors.append(factors.to_numpy())
    return keys, np.stack(vectors)


def _seen(conn: psycopg.Connection, table: str, items: int) -> sp.csr_matrix:
    lists = [row[0] for row in conn.execute(sql.SQL("SELECT seen FROM {} ORDER BY idx")
                                            .format(sql.Identifier("recsys", table)))]
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(seen) for seen in lists], out=indptr[1:])
    indices = np.fromiter((i for seen in lists for i in seen), dtype=np.int32, count=indptr[-1])
    return sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                         shape=(len(lists), items))


def bench_write(url: str, user_factors: np.ndarray, seen: sp.csr_matrix,
                repeats: int) -> dict[str, Any]:
    """Factor rows (idx, vector, int4[]) by binary COPY (store's path) vs executemany."""
    count = min(WRITE_ROWS, len(user_factors))
    factors, lists = user_factors[:count], seen[:count]
    table = sql.Identifier("bench", "write_test")
    with db.connect(url) as conn:
        def reset() -> None:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            conn.execute(sql.SQL("CREATE TABLE {} (idx integer, factors vector({}),"
                                 " seen integer[])").format(table, factors.shape[1]))

        def copy() -> None:
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    sql.SQL("COPY {} (idx, factors, seen) FROM STDIN (FORMAT BINARY)")
                    .format(table)) as out:
                for block in copybin.encode_vectors_arrays(
                        np.arange(count, dtype=np.int32), factors, lists):
                    out.write(block)

        ours, theirs = [], []
        for _ in range(repeats):
            reset()
            ours.append(measure.timed(copy)[0])
            reset()
            theirs.append(measure.timed(lambda: peers.executemany_write(conn, table, factors,
                                                                         lists))[0])
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return {"rows": count, "ours": measure.summary(ours), "peer": measure.summary(theirs),
            "speedup": float(np.median(theirs) / np.median(ours))}


def _serve(conn: psycopg.Connection, keys: list[str]) -> tuple[list[float], list[set[str]]]:
    seconds, results = [], []
    query = "SELECT item_key FROM recsys.recommend(%s, %s, 10)"
    conn.execute(query, (MODEL, keys[0]), prepare=True)
    for key in keys:
        start = time.perf_counter()
        rows = conn.execute(query, (MODEL, key), prepare=True).fetchall()
        seconds.append(time.perf_counter() - start)
        results.append({row[0] for row in rows})
    return seconds, results


def _recall(found: list[set[str]], expected: list[set[str]]) -> float:
    hits = sum(len(a & b) for a, b in zip(found, expected, strict=False))
    return hits / sum(len(b) for b in expected)


def bench_recommend(url: str, version: dict[str, Any], user_keys: list[str],
                    user_factors: np.ndarray, item_factors: np.ndarray,
                    seen: sp.csr_matrix) -> dict[str, Any]:
    """recsys.recommend as served (precomputed rows where the version has them), as a live
    search of the version's index, and forced to an exact scan, vs implicit's in-process
    recommend; recall@10 of the served and the searched lists against the exact ones."""
    rng = np.random.default_rng(1)
    sample = rng.choice(len(user_keys), size=min(LATENCY_QUERIES, len(user_keys)), replace=False)
    keys = [user_keys[i] for i in sample]
    exact_count = len(keys) if version["items"] <= 200_000 else EXACT_QUERIES_LARGE
    with db.connect(url) as conn:
        served, served_lists = _serve(conn, keys)
    live, live_lists = served, served_lists  # the same path without precomputed rows
    if version["precomputed_k"]:
        with live_search.served_with(url, version, precomputed_k=0), db.connect(url) as conn:
            live, live_lists = _serve(conn, keys)
    with live_search.served_with(url, version, precomputed_k=0, index_kind="exact"), \
            db.connect(url) as conn:
        exact, exact_lists = _serve(conn, keys[:exact_count])
    model = peers.implicit_model(user_factors, item_factors)
    in_process = []
    for user in sample.tolist():
        start = time.perf_counter()
        model.recommend(user, seen[user], N=10)
        in_process.append(time.perf_counter() - start)
    return {"index_kind": version["index_kind"], "index_recall_stored": version["index_recall"],
            "index_ef_search": version["index_ef_search"], "items": version["items"],
            "precomputed_k": version["precomputed_k"],
            "ours": measure.latency(served), "live": measure.latency(live),
            "exact": measure.latency(exact), "implicit": measure.latency(in_process),
            "recall_vs_exact": _recall(served_lists, exact_lists),
            "live_recall_vs_exact": _recall(live_lists, exact_lists)}


def bench_pgbench(url: str, users: int) -> dict[str, Any]:
    """pgbench (shipped with the embedded server), 8 clients calling recsys.recommend."""
    params = conninfo_to_dict(url)
    env = dict(os.environ, PGHOST=str(params.get("host", "")), PGPORT=str(params.get("port", "")),
               PGUSER=str(params.get("user", "")), PGDATABASE=str(params.get("dbname", "")),
               PGPASSWORD=str(params.get("password", "")))
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(f"\\set uid random(1, {users})\n"
                     f"SELECT * FROM recsys.recommend('{MODEL}', :uid::text, 10);\n")
    try:
        done = subprocess.run(
            [str(embedded.bin_dir() / "pgbench"), "-n", "-M", "prepared",
             "-c", str(PGBENCH_CLIENTS), "-j", "2", "-T", str(PGBENCH_SECONDS), "-f", script.name],
            check=True, capture_output=True, text=True, env=env)
    finally:
        os.unlink(script.name)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    assert tps is not None, done.stdout
    return {"clients": PGBENCH_CLIENTS, "seconds": PGBENCH_SECONDS, "qps": float(tps.group(1)),
            "latency_avg_ms": float(latency.group(1)) if latency else None}


def bench_precompute(url: str, version: dict[str, Any], stages: dict[str, float], users: int,
                     items: int, user_keys: list[str]) -> dict[str, Any]:
    """All users' top-10 written by the refresh (stage 'precompute') vs the same rows from a SQL
    loop of recsys.recommend (searching, not reading precomputed rows) into a table."""
    count = min(LOOP_USERS, len(user_keys), LOOP_USERS * 10_000 // max(items, 1) + 100)
    with live_search.served_with(url, version, precomputed_k=0), db.connect(url) as conn:
        conn.execute("CREATE TEMP TABLE loop_top (user_key text, item_key text, rank integer)")
        seconds, _ = measure.timed(lambda: conn.execute(
            "INSERT INTO loop_top SELECT u.key, r.item_key, r.rank"
            " FROM unnest(%s::text[]) u (key), LATERAL recsys.recommend(%s, u.key, 10) r",
            (user_keys[:count], MODEL)))
    ours = users / stages["precompute"]
    peer = count / seconds
    return {"users": users, "ours_users_per_s": ours, "peer_users_per_s": peer,
            "peer_users": count, "speedup": ours / peer}


def bench_interested(url: str, version: dict[str, Any], user_factors: np.ndarray,
                     item_factors: np.ndarray, seen: sp.csr_matrix,
                     item_keys: list[str]) -> dict[str, Any]:
    """recsys.interested_users vs seed 000's loop of recommend over every user."""
    popularity = np.diff(seen.tocsc().indptr)
    item = int(np.argsort(popularity)[len(popularity) // 2])  # a middling item
    with db.connect(url) as conn:
        query = "SELECT user_key FROM recsys.interested_users(%s, %s, 20)"
        conn.execute(query, (MODEL, item_keys[item]), prepare=True)
        ours = measure.repeat(lambda: conn.execute(query, (MODEL, item_keys[item]),
                                                   prepare=True).fetchall(), 5)
    model = peers.implicit_model(user_factors, item_factors)
    users = np.arange(min(LOOP_USERS, len(user_factors)))
    loop, _ = measure.timed(lambda: peers.seed000_interested_users(model, seen, item, users))
    peer = loop * len(user_factors) / len(users)
    return {"ours_s": float(np.median(ours)), "peer_s": peer, "peer_users_timed": len(users),
            "users": len(user_factors), "speedup": peer / float(np.median(ours))}


def bench_session_math(url: str, name: str) -> dict[str, Any]:
    """recsys.recommend_for_items and recsys.explain on the benchmark model and, on MovieLens,
    on models with 256 and 512 factors (evaluation, precompute and index off: only their
    factors and basis matter here)."""
    found: dict[str, dict[str, Any]] = {"factors": {}}
    models = [(MODEL, 64)]
    if name == "ml100k":
        with db.connect(url) as conn:
            for factors in SESSION_FACTORS:
                conn.execute(
                    "SELECT recsys.create_model(%s, 'bench.interactions'::regclass, 'user_id',"
                    " 'item_id', weight_column => 'weight', params => %s::jsonb)",
                    (f"bench_f{factors}", json.dumps({
                        "factors": factors, "eval_split": "off", "recommendations_k": 0,
                        "index": "exact"})))
        for factors in SESSION_FACTORS:
            training.train(url, f"bench_f{factors}")
            models.append((f"bench_f{factors}", factors))
    for model, factors in models:
        figures = session_math.bench_session_math(url, model)
        found["factors"][str(factors)] = {
            "recommend_for_items, 10 items": figures["basket_10"],
            "recommend_for_items, 100 items": figures["basket_100"],
            "explain": figures["explain"]}
    return found


def _variant_recall(conn: psycopg.Connection, order: str, queries: np.ndarray,
                    expected: list[set[int]], ef_search: int) -> float:
    conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(ef_search))
    hits = 0
    for query, want in zip(queries, expected, strict=True):
        found = conn.execute(sql.SQL("SELECT idx FROM bench.items ORDER BY {} LIMIT 10")
                             .format(sql.SQL(order)), {"q": query}).fetchall()
        hits += len(want & {row[0] for row in found})
    return hits / sum(len(want) for want in expected)


def bench_index_variants(url: str, version: dict[str, Any], user_factors: np.ndarray,
                         item_factors: np.ndarray) -> dict[str, Any]:
    """hnsw recall@10 (no filter) of the two ways to search inner product: over the factors
    (what store builds) and over items lifted to one norm by an extra dimension (l2)."""
    rng = np.random.default_rng(2)
    sample = rng.choice(len(user_factors), size=min(200, len(user_factors)), replace=False)
    expected = [{int(i) for i in np.argpartition(-(item_factors @ user_factors[u]), 10)[:10]}
                for u in sample]
    norm = float(np.linalg.norm(item_factors.astype(np.float64), axis=1).max())
    dims = item_factors.shape[1] + 1
    lifted = (f"(factors || ARRAY[sqrt(greatest({norm!r} ^ 2 - vector_norm(factors) ^ 2, 0))]"
              f"::vector)::vector({dims})")
    variants = {
        "inner product over factors": ("factors vector_ip_ops", "factors <#> %(q)s"),
        "lifted, l2": (f"({lifted}) vector_l2_ops",
                       f"{lifted} <-> (%(q)s || '[0]'::vector)::vector({dims})"),
    }
    found: dict[str, Any] = {}
    with db.connect(url) as conn:
        conn.execute(sql.SQL("CREATE TABLE bench.items AS SELECT idx, factors FROM {}")
                     .format(sql.Identifier("recsys", version["item_table"])))
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET enable_seqscan = off")
        for name, (index, order) in variants.items():
            create = sql.SQL("CREATE INDEX bench_items_hnsw ON bench.items USING hnsw ({})"
                             ).format(sql.SQL(index))
            start = time.perf_counter()
            conn.execute(create)
            build = time.perf_counter() - start
            found[name] = {"build_s": build, **{
                f"recall_ef{ef}": _variant_recall(conn, order, user_factors[sample], expected, ef)
                for ef in (40, 200)}}
            conn.execute("DROP INDEX bench.bench_items_hnsw")
        conn.execute("DROP TABLE bench.items")
    return found


def run(url: str, name: str, repeats: int) -> dict[str, Any]:
    """Every figure for data set ``name`` in database ``url`` (recsys installed, empty)."""
    with db.connect(url) as conn:
        log.info("%s: loading data", name)
        data = prepare(conn, name)
    results: dict[str, Any] = {"dataset": name, "label": data.label}
    log.info("%s: load", name)
    results["load"] = bench_load(url, data, repeats)
    log.info("%s: refresh", name)
    results["refresh"] = bench_refresh(url, repeats)
    with db.connect(url) as conn:
        version = _active(conn)
        user_keys, user_factors = _factors(conn, version["user_table"])
        item_keys, item_factors = _factors(conn, version["item_table"])
        seen = _seen(conn, version["user_table"], len(item_keys))
    with db.connect(url) as conn:
        model = get_model(conn, MODEL)
        weighted = weighting.apply(load.read(conn, model).matrix, model.params)
        conn.execute("DROP TABLE IF EXISTS recsys_user_map, recsys_item_map")
    refresh = results["refresh"]
    refresh["version_loss"] = _loss(weighted, user_factors, item_factors,
                                    float(model.params["regularization"]))
    refresh["loss_ratio"] = refresh["version_loss"] / refresh["fresh_fit_loss"]
    results["version"] = {k: version[k] for k in ("users", "items", "nnz", "factors",
                                                  "index_kind", "index_recall",
                                                  "index_ef_search", "precomputed_k")}
    log.info("%s: write", name)
    results["write"] = bench_write(url, user_factors, seen, repeats)
    log.info("%s: recommend", name)
    results["recommend"] = bench_recommend(url, version, user_keys, user_factors, item_factors,
                                           seen)
    log.info("%s: pgbench", name)
    results["pgbench"] = bench_pgbench(url, len(user_keys))
    if version["precomputed_k"]:
        with live_search.served_with(url, version, precomputed_k=0):
            results["pgbench_live"] = bench_pgbench(url, len(user_keys))
    if int(version["params"].get("recommendations_k", 0)) > 0:
        log.info("%s: precompute", name)
        results["precompute"] = bench_precompute(url, version, results["refresh"]["stages"],
                                                 len(user_keys), len(item_keys), user_keys)
    log.info("%s: interested_users", name)
    results["interested"] = bench_interested(url, version, user_factors, item_factors, seen,
                                             item_keys)
    log.info("%s: live search", name)
    results["live_search"] = live_search.measure(url, MODEL)
    log.info("%s: recommend_for_items and explain", name)
    results["session_math"] = bench_session_math(url, name)
    if version["items"] >= index.AUTO_EXACT_BELOW and version["items"] <= 200_000:
        log.info("%s: index variants", name)
        results["index_variants"] = bench_index_variants(url, version, user_factors,
                                                         item_factors)
    return results
