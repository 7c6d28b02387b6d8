"""``--scale spark``: the Spark engine (``local[2]``) beside the implicit engine on the same
synthetic logs (1m, 10m): one full training each, the same model declaration but the engine,
stage times and stored holdout metrics from the run records.

Both models read one table; precompute and the ANN index are off (``recommendations_k => 0``,
``index => 'exact'``) so that the runs differ in the ALS stages alone. Spark's session (a JVM
start) is started before the runs and timed on its own.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import psycopg
from psycopg import sql

from benchmarks import synthetic
from recsys_db import db, spark_als, training

log = logging.getLogger(__name__)

SIZES = ("1m", "10m")
MASTER = "local[2]"
DRIVER_MEMORY = "8g"
PARAMS = ("recsys.als(recommendations_k => 0, similar_items_k => 0, index => 'exact',"
          " gate_baseline => false, engine => {engine})")


def run(url: str, sizes: tuple[str, ...] = SIZES) -> dict[str, Any]:
    """Train each of the synthetic ``sizes`` with both engines; the figures for the report."""
    os.environ[spark_als.ENV_MASTER] = MASTER
    os.environ[spark_als.ENV_CONF] = f"spark.driver.memory={DRIVER_MEMORY}"
    started = time.perf_counter()
    spark_als.session(spark_als.Settings.from_env())
    session_seconds = time.perf_counter() - started
    figures = {}
    for size in sizes:
        scale = synthetic.SCALES[size]
        table = sql.Identifier("public", f"events_{size}")
        with db.connect(url) as conn:
            t0 = time.perf_counter()
            synthetic.load(conn, scale, table)
            load_seconds = time.perf_counter() - t0
        engines = {}
        for engine in ("implicit", "spark"):
            name = f"{engine}_{size}"
            with db.connect(url) as conn:
                conn.execute(sql.SQL(
                    "SELECT recsys.create_model({}, {}, 'user_id', 'item_id',"
                    " weight_column => 'weight', params => " + PARAMS + ")").format(
                        sql.Literal(name), sql.Literal(f"public.events_{size}"),
                        engine=sql.Literal(engine)))
            log.info("training %s", name)
            result = training.train(url, name)
            with db.connect(url) as conn:
                metrics = _metrics(conn, result.run_id)
            engines[engine] = {"seconds": result.seconds, "stages": result.stages,
                               "status": result.status, "metrics": metrics}
            log.info("%s: %.1f s, stages %s", name, result.seconds, result.stages)
        figures[size] = {"interactions": scale.interactions, "users": scale.users,
                       "items": scale.items, "table_load_seconds": load_seconds,
                       "engines": engines}
    import pyspark

    spark_als.stop()
    return {"scale": "spark", "master": MASTER, "driver_memory": DRIVER_MEMORY,
            "pyspark": pyspark.__version__, "session_seconds": session_seconds,
            "sizes": figures}


def _metrics(conn: psycopg.Connection, run_id: int) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for recommender, metric, value in conn.execute(
            "SELECT recommender, metric, value FROM recsys.metrics WHERE run_id = %s",
            (run_id,)):
        found.setdefault(recommender, {})[metric] = value
    return found
