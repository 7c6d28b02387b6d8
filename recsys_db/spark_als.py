"""The Spark engine of the ALS stage: ``pyspark.ml.recommendation.ALS`` with implicit
preferences, chosen by ``recsys.als(engine => 'spark')``.

Only the fit runs on Spark. The run lifecycle around it is the implicit engine's, unchanged:
the same load (event weights, NULL keys, duplicates summed), the same weighting, then
evaluation, write, precompute, index, activation and run records (``training``). The weighted
matrix goes to Spark as Parquet in a staging folder, split into one file per block, and the
factors come back the same way; on a cluster the folder must be shared storage that pyarrow
(in this process) and Spark both reach: an ``hdfs://`` URI (pyarrow then needs libhdfs,
``HADOOP_HOME`` and ``CLASSPATH``) or a folder mounted at the same path everywhere.

How the parameters map. implicit fits the confidence C of an observed pair as given (recsys
applies ``alpha`` in ``weighting.apply``); Spark's implicit ALS fits ``1 + alpha * r`` with a
preference only where ``r > 0``. Under ``confidence`` and ``log`` weighting (C = 1 + alpha·f(w)
> 1) Spark gets ``r = C - 1`` with alpha 1: the same confidences (a C that rounds to 1 in
float32 gets the smallest positive r). Under ``none``, ``bm25`` and ``tfidf``, whose values may
be 1 or less, it gets ``r = C``: confidences one higher than implicit's. Spark scales
``regularization`` by each user's and item's number of interactions (ALS-WR) where implicit
applies it as it is; ``factors``, ``iterations`` and ``random_state`` map to rank, maxIter and
seed. Spark has no warm start: the production fit runs all its iterations instead of
continuing from the holdout fit's factors.

Configuration (environment of the process that trains, the worker or ``recsys-db train``):
``RECSYS_SPARK_MASTER`` (default ``local[*]``), ``RECSYS_SPARK_CONF`` (``key=value`` pairs
separated by spaces, e.g. ``spark.driver.memory=8g spark.executor.memory=16g``),
``RECSYS_SPARK_BLOCKS`` (user and item blocks; default Spark's default parallelism) and
``RECSYS_SPARK_STAGING`` (default a temporary folder here).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from recsys_db.errors import ConfigError, EngineError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

ENV_MASTER = "RECSYS_SPARK_MASTER"
ENV_CONF = "RECSYS_SPARK_CONF"
ENV_BLOCKS = "RECSYS_SPARK_BLOCKS"
ENV_STAGING = "RECSYS_SPARK_STAGING"
MIN_JAVA = 17
INSTALL_HINT = 'pip install "recsys-db[spark]"'
MASTER_CONNECT_TIMEOUT = 5.0  # seconds to reach a standalone master before giving up


@dataclass(frozen=True)
class Settings:
    """Where and how Spark runs, from the environment."""

    master: str = "local[*]"
    conf: tuple[tuple[str, str], ...] = ()
    blocks: int | None = None
    staging: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of ``RECSYS_SPARK_*``; raises ConfigError on malformed values."""
        master = os.environ.get(ENV_MASTER, "").strip() or cls.master
        conf = []
        for pair in os.environ.get(ENV_CONF, "").split():
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ConfigError(f'{ENV_CONF} entry "{pair}" is not key=value')
            conf.append((key, value))
        blocks_text = os.environ.get(ENV_BLOCKS, "").strip()
        blocks = None
        if blocks_text:
            if not blocks_text.isdigit() or int(blocks_text) < 1:
                raise ConfigError(f'{ENV_BLOCKS} must be a positive integer, not "{blocks_text}"')
            blocks = int(blocks_text)
        staging = os.environ.get(ENV_STAGING, "").strip() or None
        if staging is None and not master.startswith("local"):
            raise ConfigError(f"spark master {master} needs {ENV_STAGING}: a folder that this "
                              "process and every executor reach (hdfs://... or a shared mount)")
        return cls(master, tuple(conf), blocks, staging)


def java_major(version_output: str) -> int | None:
    """The major version in what ``java -version`` prints (``1.8.0_x`` is 8), or None."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def check_java() -> str:
    """The java that Spark will start (``$JAVA_HOME/bin/java``, else the one on PATH);
    raises ConfigError when there is none or it is older than Java 17."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    where = f"JAVA_HOME={home}" if home else "PATH"
    if not java or not os.access(java, os.X_OK):
        raise ConfigError(f"engine spark needs java {MIN_JAVA} or newer, and there is no java "
                          f"on {where}: install one (apt install openjdk-17-jre-headless) or "
                          "set JAVA_HOME")
    try:
        shown = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"engine spark could not run {java}: {exc}") from exc
    major = java_major(shown.stderr + shown.stdout)
    if major is None or major < MIN_JAVA:
        found = f"java {major}" if major is not None else "a java of unknown version"
        raise ConfigError(f"engine spark needs java {MIN_JAVA} or newer, but {java} is {found}: "
                          "install java 17 or 21 and set JAVA_HOME")
    return java


def check_master(master: str) -> None:
    """Refuse a master URL Spark cannot use, and a standalone master that does not answer
    (Spark itself would retry for a minute before failing)."""
    if re.fullmatch(r"local(\[(\*|\d+)(,\d+)?\])?", master) or master == "yarn" \
            or master.startswith("k8s://"):
        return
    if not master.startswith("spark://"):
        raise ConfigError(f'unknown spark master "{master}": use local[N], local[*], '
                          "spark://host:port, yarn or k8s://...")
    errors = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f'spark master "{master}" needs host:port')
        try:
            with socket.create_connection((host, int(port)), timeout=MASTER_CONNECT_TIMEOUT):
                return
        except OSError as exc:
            errors.append(f"{address}: {exc.strerror or exc}")
    raise EngineError(f"spark master {master} is unreachable ({'; '.join(errors)})")


def _pyspark() -> None:
    """Raise ConfigError unless pyspark and pyarrow import."""
    try:
        import pyspark.ml.recommendation  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"engine spark needs pyspark: {INSTALL_HINT}") from exc
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"engine spark needs pyarrow: {INSTALL_HINT}") from exc


_session: SparkSession | None = None
_session_key: tuple[str, tuple[tuple[str, str], ...]] | None = None


def session(settings: Settings) -> SparkSession:
    """This process's Spark session for ``settings``, started once and kept (a JVM start
    costs seconds); a different master or configuration stops the old one first. pyspark
    keeps its JVM for the life of the process, so what sizes the JVM (``spark.driver.memory``,
    ``JAVA_HOME``) applies at the first start only."""
    global _session, _session_key
    key = (settings.master, settings.conf)
    if _session is not None and _session_key == key:
        return _session
    stop()
    check_master(settings.master)
    # pyspark installs a SIGINT handler of its own when its context starts (cancel the jobs,
    # raise KeyboardInterrupt); the worker's graceful stop must stay in charge of signals
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(settings.master).appName("recsys-db")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false"))
    for name, value in settings.conf:
        builder = builder.config(name, value)
    try:
        started = builder.getOrCreate()
        started.sparkContext.setLogLevel("ERROR")
    except Exception as exc:
        raise EngineError(f"spark did not start on {settings.master}: {_short(exc)}") from exc
    finally:
        if main and sigint is not None:
            signal.signal(signal.SIGINT, sigint)
    _session, _session_key = started, key
    return started


def stop() -> None:
    """Stop this process's Spark session, if one runs."""
    global _session, _session_key
    running, _session, _session_key = _session, None, None
    if running is not None:
        try:
            running.stop()
        except Exception as exc:  # a JVM already gone: nothing left to stop
            log.warning("stopping spark failed: %s", _short(exc))


def _short(exc: BaseException) -> str:
    """The first line of a (Java) exception's message, without py4j's framing."""
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("An error occurred while calling", "Traceback")):
            return line[:500]
    return type(exc).__name__


@contextmanager
def _staging(settings: Settings) -> Iterator[tuple[Any, str, str]]:
    """A fresh folder for one fit: (pyarrow filesystem, its path there, its URI for Spark);
    removed afterwards."""
    from pyarrow import fs

    if settings.staging is None:
        local = tempfile.mkdtemp(prefix="recsys-spark-")
        try:
            yield fs.LocalFileSystem(), local, f"file://{local}"
        finally:
            shutil.rmtree(local, ignore_errors=True)
        return
    staging = settings.staging
    try:
        if "://" not in staging:  # a folder: mounted at the same path on every executor
            staging = os.path.abspath(os.path.expanduser(staging))
            filesystem: Any = fs.LocalFileSystem()
            base, spark_base = staging, f"file://{staging}"
        else:
            filesystem, base = fs.FileSystem.from_uri(staging)
            spark_base = staging.rstrip("/")
        name = f"recsys-{uuid.uuid4().hex}"
        path = f"{base.rstrip('/')}/{name}"
        filesystem.create_dir(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigError(f"{ENV_STAGING} {settings.staging} cannot be used: {exc}") from exc
    try:
        yield filesystem, path, f"{spark_base}/{name}"
    finally:
        try:
            filesystem.delete_dir(path)
        except OSError as exc:  # leftovers cost space only
            log.warning("could not remove the spark staging folder %s: %s", path, exc)


SHIFTED = ("confidence", "log")  # weightings whose confidences all exceed 1


def ratings(matrix: sp.csr_matrix, weighting: str
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(users, items, r, shift): the matrix weighted by ``weighting`` as Spark's implicit
    ratings, with the shift that maps implicit's confidence C to Spark's ``1 + r`` (see the
    module's doc). The shift follows the weighting, not the data, so the holdout and the
    production fit of a run map alike."""
    coo = matrix.tocoo()
    shift = 1.0 if weighting in SHIFTED else 0.0
    values = coo.data.astype(np.float64) - shift
    if shift:  # a C that rounded to 1 in float32 keeps its preference: r must stay positive
        values = np.maximum(values, float(np.finfo(np.float32).tiny))
    return (coo.row.astype(np.int32), coo.col.astype(np.int32), values.astype(np.float32),
            shift)


def preflight() -> tuple[Settings, SparkSession]:
    """Everything that can be checked before a run reads its source: the settings, pyspark,
    java, the master; returns the settings and the session (started, or the running one)."""
    settings = Settings.from_env()
    _pyspark()
    check_java()  # each run: JAVA_HOME may have changed since the session started
    return settings, session(settings)


def fit(matrix: sp.csr_matrix, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Fit on a weighted users x items matrix with Spark; (user, item) factors as float32.

    Raises ConfigError when pyspark or java is missing or the settings are wrong, EngineError
    when Spark fails (an unreachable master, a failed task); after a failure the session is
    stopped, so the next fit starts a fresh one.
    """
    settings, spark = preflight()
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.ml.recommendation import ALS

    users, items, values, shift = ratings(matrix, str(params["weighting"]))
    rank = int(params["factors"])
    try:
        blocks = settings.blocks or max(1, spark.sparkContext.defaultParallelism)
        log.info("spark: %d ratings, %d x %d, rank %d, %d blocks on %s", values.size,
                 matrix.shape[0], matrix.shape[1], rank, blocks, settings.master)
        with _staging(settings) as (filesystem, path, uri):
            # one Parquet file per block, so that Spark reads them in parallel
            bounds = np.linspace(0, values.size, blocks + 1).astype(np.int64)
            filesystem.create_dir(f"{path}/ratings")
            for part in range(blocks):
                low, high = int(bounds[part]), int(bounds[part + 1])
                table = pa.table({"user": users[low:high], "item": items[low:high],
                                  "rating": values[low:high]})
                pq.write_table(table, f"{path}/ratings/part-{part:05d}.parquet",
                               filesystem=filesystem)
            frame = spark.read.parquet(f"{uri}/ratings")
            spark.sparkContext.setCheckpointDir(f"{uri}/checkpoints")
            model = ALS(rank=rank, maxIter=int(params["iterations"]),
                        regParam=float(params["regularization"]), implicitPrefs=True,
                        alpha=1.0, seed=int(params["random_state"]), userCol="user",
                        itemCol="item", ratingCol="rating", numUserBlocks=blocks,
                        numItemBlocks=blocks, nonnegative=False,
                        coldStartStrategy="nan").fit(frame)
            model.userFactors.write.parquet(f"{uri}/users")
            model.itemFactors.write.parquet(f"{uri}/items")
            user_factors = _factors(pq.read_table(f"{path}/users", filesystem=filesystem),
                                    matrix.shape[0], rank)
            item_factors = _factors(pq.read_table(f"{path}/items", filesystem=filesystem),
                                    matrix.shape[1], rank)
    except ConfigError:
        raise
    except Exception as exc:
        stop()
        raise EngineError(f"spark als failed: {_short(exc)}") from exc
    except BaseException:  # a shutdown or Ctrl-C: the jobs must not run on without us
        try:
            spark.sparkContext.cancelAllJobs()
        except Exception as exc:  # the original interruption matters, not this
            log.warning("cancelling the spark jobs failed: %s", _short(exc))
        raise
    log.info("spark: fitted (confidence shift %g)", shift)
    return user_factors, item_factors


def _factors(table: Any, rows: int, rank: int) -> np.ndarray:
    """Spark's (id, features) rows as a dense float32 array; ids Spark did not see (none in a
    matrix built from the interactions) stay zero."""
    out = np.zeros((rows, rank), dtype=np.float32)
    ids = table.column("id").to_numpy()
    features = table.column("features").combine_chunks()
    out[ids] = features.flatten().to_numpy().astype(np.float32).reshape(len(ids), rank)
    return out
