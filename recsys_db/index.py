"""Index choice: how a version's items are searched (exact scan or hnsw), built, measured and
recorded, while the trainer precomputes (``IndexBuild``)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
import psycopg
from psycopg import sql

from recsys_db import db, queries, ranking
from recsys_db.load import Interactions
from recsys_db.store import VersionTables, version_tables

log = logging.getLogger(__name__)

RECALL_TARGET = 0.98  # recall@k an hnsw index must reach against exact search to be served
RECALL_K = 10
# the k recommend is tuned for: each k up to one of these searches with that one's ef_search
# (recsys._top_items); a k whose target is missed, and any k above the last, searches exactly
RECALL_KS = (10, 20, 50, 100)
RECALL_SAMPLE = 200  # users whose top-10 is compared
RECALL_SAMPLE_LARGE_K = 100  # users compared at k above 10 (each brings k items)
TIMING_SAMPLE = 40  # users timed per strategy when index = 'auto'
EF_SEARCH_STEPS = (10, 20, 40, 80, 160, 320, 640)
# hnsw graphs tried in turn, (m, ef_construction, the largest ef_search tried on it): a sparse
# graph builds about 3x faster than pgvector's default (16, 64) and reached recall@10 0.987 at
# ef_search 40 on 50k power-law items (BENCHMARKS.md); where it does not reach the target by
# ef_search 160, the default graph is built. Big catalogs go straight to the default graph.
GRAPHS = ((8, 32, 160), (16, 64, EF_SEARCH_STEPS[-1]))
SPARSE_GRAPH_MAX_ITEMS = 200_000
# Beside the graph's top k, the head search (recsys._top_items) scores exactly this many of the
# largest-norm unseen items: the smallest step reaching the recall target at each k is kept.
# At 200k synthetic power-law items, where no ef_search reaches 0.98 on the graph alone, the
# true top-10 lies at median norm rank 23 and 88% of the graph's misses are among the 2,000
# largest norms (issue 12).
HEAD_STEPS = (250, 500, 1_000, 2_000, 5_000, 10_000, 20_000)
HEAD_EF_SEARCH = 40  # the graph's ef_search beside the head (k where k is larger)
# index = 'auto' does not even build hnsw below this many items: an exact scan takes about a
# millisecond there (BENCHMARKS.md, MovieLens).
AUTO_EXACT_BELOW = 5_000
# Above it, 'auto' first times the exact scan on the timing sample and builds nothing while its
# median is within the budget: a version that precomputes rows (recommendations_k > 0) serves
# recommend at the default k from them, so the live path only meets larger k, exclude_seen =>
# false and users folded in later; without precomputed rows every call is live. A build costs
# seconds per refresh (14-19 s at 36k items; 15 s at 50k items, where an exact scan took
# 25-28 ms, and slowing the precompute it runs beside: BENCHMARKS.md, 1m). The timing runs
# beside precompute too, which inflates it: the precomputed budget leaves room for that.
LIVE_BUDGET_MS = 5.0
LIVE_BUDGET_PRECOMPUTED_MS = 50.0
BUILD_MEMORY = "1GB"  # maintenance_work_mem for the hnsw build; beyond it the build crawls

@dataclass(frozen=True)
class IndexChoice:
    """How a version's items are searched, as measured when it was built."""

    kind: str  # exact | hnsw
    recall: float  # recall@10 against exact search over a sample of users
    ef_search: int | None = None
    exact_ms: float | None = None  # median per query over the timing sample, 'auto' only
    hnsw_ms: float | None = None
    # per k of RECALL_KS: the ef_search served (None: exact) and its recall; hnsw only
    ef_by_k: tuple[int | None, ...] | None = None
    recall_by_k: tuple[float, ...] | None = None
    # per k of RECALL_KS: the largest-norm items scored beside the graph (None: graph alone)
    head_by_k: tuple[int | None, ...] | None = None



class IndexBuild:
    """``build_index`` in a transaction of its own connection, on a background thread: the
    server builds the index and checks its recall while this process ranks the precomputed rows
    (the build waits on the server, so the thread holds no GIL while it runs)."""

    def __init__(self, url: str, tables: VersionTables, data: Interactions,
                 user_factors: np.ndarray, item_factors: np.ndarray):
        self.seconds = 0.0
        self._choice: IndexChoice | None = None
        self._error: BaseException | None = None
        self._conn = db.connect(url, pinned=True)
        self._thread = threading.Thread(
            target=self._run, args=(tables, data, user_factors, item_factors),
            name=f"index-{tables.item_table}", daemon=True)
        self._thread.start()

    def _run(self, tables: VersionTables, data: Interactions, user_factors: np.ndarray,
             item_factors: np.ndarray) -> None:
        started = time.perf_counter()
        try:
            with self._conn.transaction():
                self._choice = build_index(self._conn, tables, data, user_factors, item_factors)
        except BaseException as exc:  # handed to the caller by wait()
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - started

    def wait(self) -> IndexChoice:
        """The recorded choice once the build is done; re-raises what made it fail."""
        try:
            self._thread.join()
        except BaseException:  # interrupted while waiting: do not leave the build running
            self.cancel()
            raise
        self._conn.close()
        if self._error is not None:
            raise self._error
        assert self._choice is not None
        return self._choice

    def cancel(self) -> None:
        """Stop the build (its transaction rolls back) and wait for the thread.

        A cancel only stops the statement running at that moment, and the build runs several
        (graph builds, recall queries) with numpy work between them: keep cancelling until the
        thread is done.
        """
        while self._thread.is_alive():
            self._conn.cancel_safe(timeout=5.0)
            self._thread.join(timeout=0.2)
        self._conn.close()


def _set_index(conn: psycopg.Connection, tables: VersionTables, choice: IndexChoice) -> None:
    ef_by_k = choice.ef_by_k
    if choice.kind == "hnsw" and ef_by_k is None:  # measured at k 10 only so far
        ef_by_k = (choice.ef_search,) + (None,) * (len(RECALL_KS) - 1)
    conn.execute(queries.text("index_set_choice"), {
        "kind": choice.kind, "ef_search": choice.ef_search,
        "recall": choice.recall, "model_id": tables.model_id, "version": tables.version,
        "ef_by_k": list(ef_by_k) if ef_by_k else None,
        "recall_by_k": list(choice.recall_by_k) if choice.recall_by_k else None,
        "head_by_k": list(choice.head_by_k) if choice.head_by_k else None})


def _served_top_items(conn: psycopg.Connection, tables: VersionTables, users: np.ndarray,
                      k: int) -> tuple[dict[int, set[int]], float]:
    """Top-k per user through recsys._top_items as the version is now configured; also returns
    the median seconds per user."""
    found: dict[int, set[int]] = {}
    timings = []
    for user in users.tolist():
        start = time.perf_counter()
        rows = conn.execute(queries.compose(
            "index_top_items",
            users=sql.Identifier("recsys", version_tables(tables.model_id, tables.version)[0])),
            {"model_id": tables.model_id, "version": tables.version, "user": user,
             "k": k}).fetchall()
        timings.append(time.perf_counter() - start)
        found[user] = {int(r[0]) for r in rows}
    return found, float(np.median(timings)) if timings else 0.0


def _recall(expected: list[set[int]], users: np.ndarray, found: dict[int, set[int]]) -> float:
    hits = sum(len(want & found[user]) for want, user in zip(expected, users.tolist(),
                                                              strict=True))
    total = sum(len(want) for want in expected)
    return hits / total if total else 1.0


def build_index(conn: psycopg.Connection, tables: VersionTables, data: Interactions,
                user_factors: np.ndarray, item_factors: np.ndarray) -> IndexChoice:
    """Choose how recommend searches this version's items, build it and record it.

    - ``exact``: no index; a scan is exact (recall 1).
    - ``hnsw``: an hnsw inner-product index over the item factors; the smallest
      ``ef_search`` of ``EF_SEARCH_STEPS`` reaching ``RECALL_TARGET`` is kept, with its measured
      recall@10. The sparse graph of ``GRAPHS`` is tried first on catalogs up to
      ``SPARSE_GRAPH_MAX_ITEMS``. Where the graph alone misses the target (big power-law
      catalogs: it strands the few far, popular items), the head search is tuned on it
      (``_tune_head``) before a denser graph is built; above ``SPARSE_GRAPH_MAX_ITEMS`` the
      default graph goes straight to it. When neither reaches the target, the graph is kept
      at its largest ``ef_search``. (Lifting the items to one norm so that l2 order equals
      inner-product order measured worse; see BENCHMARKS.md.)
    - ``auto``: exact below ``AUTO_EXACT_BELOW`` items, and where the exact scan's median over
      the timing sample is within the live budget (``LIVE_BUDGET_MS``, or
      ``LIVE_BUDGET_PRECOMPUTED_MS`` when the version precomputes rows); otherwise the index is
      built as for ``hnsw`` and kept only when it reaches the recall target and is faster than
      the exact scan.

    Runs in the caller's transaction, on tables no reader uses yet.
    """
    if tables.index == "exact" or (tables.index == "auto" and data.items < AUTO_EXACT_BELOW):
        choice = IndexChoice(kind="exact", recall=1.0)
        _set_index(conn, tables, choice)
        return choice
    rng = np.random.default_rng(tables.version)
    sample = np.sort(rng.choice(data.users, size=min(RECALL_SAMPLE, data.users), replace=False))
    timed = sample[:TIMING_SAMPLE]
    exact_ms = None
    if tables.index == "auto":
        _set_index(conn, tables, IndexChoice(kind="exact", recall=1.0))
        exact_ms = _served_top_items(conn, tables, timed, RECALL_K)[1] * 1e3
        budget = _live_budget_ms(conn, tables)
        if exact_ms <= budget:
            log.info("auto index: exact (%.2f ms, within the live budget of %.0f ms)",
                     exact_ms, budget)
            choice = IndexChoice(kind="exact", recall=1.0, exact_ms=exact_ms)
            _set_index(conn, tables, choice)
            return choice
    conn.execute(queries.text("index_build_memory"), {"memory": BUILD_MEMORY})
    large = sample[:RECALL_SAMPLE_LARGE_K]
    truth = Truth(sample, ranking.exact_top_items(user_factors, item_factors, data.matrix, sample,
                                                  RECALL_K),
                  large, ranking.exact_ranked_items(user_factors, item_factors, data.matrix,
                                                    large, RECALL_KS[-1]))
    choice = _build_graph(conn, tables, data.items, truth)
    if tables.index == "auto":
        _set_index(conn, tables, choice)
        hnsw_ms = _served_top_items(conn, tables, timed, RECALL_K)[1] * 1e3
        if choice.recall < RECALL_TARGET or (exact_ms is not None and exact_ms <= hnsw_ms):
            log.info("auto index: exact (%.2f ms) over hnsw (%.2f ms, recall %.4f)",
                     exact_ms, hnsw_ms, choice.recall)
            conn.execute(queries.text("index_drop_hnsw"),
                         {"model_id": tables.model_id, "version": tables.version})
            choice = IndexChoice(kind="exact", recall=1.0, exact_ms=exact_ms, hnsw_ms=hnsw_ms)
        else:
            log.info("auto index: hnsw (%.2f ms, recall %.4f) over exact (%.2f ms)",
                     hnsw_ms, choice.recall, exact_ms)
            choice = replace(choice, exact_ms=exact_ms, hnsw_ms=hnsw_ms)
    if choice.kind == "hnsw" and choice.head_by_k is None:
        choice = _tune_larger_k(conn, tables, choice, truth.large, truth.ranked)
    _set_index(conn, tables, choice)
    return choice


@dataclass(frozen=True)
class Truth:
    """The exact answers a build's recall is measured against."""

    sample: np.ndarray  # users compared at k = RECALL_K
    top: list[set[int]]  # their exact top RECALL_K
    large: np.ndarray  # users compared at larger k
    ranked: list[np.ndarray]  # their exact top RECALL_KS[-1], best first


def _live_budget_ms(conn: psycopg.Connection, tables: VersionTables) -> float:
    row = conn.execute(queries.text("index_precomputed_k"),
                       {"model_id": tables.model_id, "version": tables.version}).fetchone()
    return LIVE_BUDGET_PRECOMPUTED_MS if row and row[0] else LIVE_BUDGET_MS


def _build_graph(conn: psycopg.Connection, tables: VersionTables, items: int,
                 truth: Truth) -> IndexChoice:
    """Build the graphs of ``GRAPHS`` in turn until one reaches the recall target at k 10,
    alone or with the head search; the choice measured on the last one otherwise. On each
    graph the ef_search steps up to ``HEAD_EF_SEARCH`` come first, then the head search, then
    the larger steps: at 200k synthetic items the graph alone needed ef_search 160 (8 ms)."""
    version = {"model_id": tables.model_id, "version": tables.version}
    graphs = GRAPHS if items <= SPARSE_GRAPH_MAX_ITEMS else ((*GRAPHS[-1][:2], 0),)
    choice = IndexChoice(kind="hnsw", recall=0.0)
    for number, (m, ef_construction, max_ef_search) in enumerate(graphs):
        if number:  # the previous graph missed the target
            conn.execute(queries.text("index_drop_hnsw"), version)
        started = time.perf_counter()
        conn.execute(queries.text("index_create_hnsw"),
                     {**version, "m": m, "ef_construction": ef_construction})
        log.info("hnsw index (m %d, ef_construction %d) on %d items built in %.1fs", m,
                 ef_construction, items, time.perf_counter() - started)
        tried_head = False
        for ef_search in (ef for ef in EF_SEARCH_STEPS if ef <= max_ef_search):
            if ef_search > HEAD_EF_SEARCH and not tried_head:
                # the head beside the graph at this ef_search costs less than doubling it
                headed = _tune_head(conn, tables, truth)
                if headed is not None:
                    return headed
                tried_head = True
            choice = IndexChoice(kind="hnsw", recall=0.0, ef_search=ef_search)
            _set_index(conn, tables, choice)
            found, _ = _served_top_items(conn, tables, truth.sample, RECALL_K)
            choice = replace(choice, recall=_recall(truth.top, truth.sample, found))
            log.info("hnsw ef_search=%d: recall@%d %.4f", ef_search, RECALL_K, choice.recall)
            if choice.recall >= RECALL_TARGET:
                return choice
        if not tried_head:
            headed = _tune_head(conn, tables, truth)
            if headed is not None:
                return headed
    if choice.ef_search is None:  # no ef_search tried on the graph alone
        choice = IndexChoice(kind="hnsw", recall=0.0, ef_search=EF_SEARCH_STEPS[-1])
        _set_index(conn, tables, choice)
        found, _ = _served_top_items(conn, tables, truth.sample, RECALL_K)
        choice = replace(choice, recall=_recall(truth.top, truth.sample, found))
    return choice


def _tune_head(conn: psycopg.Connection, tables: VersionTables,
               truth: Truth) -> IndexChoice | None:
    """The head search on the graph built: for each k of ``RECALL_KS``, the smallest head of
    ``HEAD_STEPS`` (at least the previous k's) reaching the recall target at k, the graph at
    ef_search ``HEAD_EF_SEARCH`` or k. A k that misses it searches exactly, and so does every
    larger k; None when k 10 misses it.

    Recall is measured through recsys._top_items as served (seen items skipped, the
    the certificate and the read-on included)."""
    efs: list[int | None] = []
    heads: list[int | None] = []
    recalls: list[float] = []
    floor = 0
    for k in RECALL_KS:
        users, expected = ((truth.sample, truth.top) if k == RECALL_K else
                           (truth.large, [{int(i) for i in top[:k]} for top in truth.ranked]))
        ef = max(HEAD_EF_SEARCH, k)
        picked: tuple[int | None, float] = (None, 1.0)
        for head in (h for h in HEAD_STEPS if h >= max(floor, k)):
            pad = (None,) * (len(RECALL_KS) - len(efs) - 1)
            _set_index(conn, tables, IndexChoice(
                kind="hnsw", recall=0.0, ef_search=efs[0] if efs else ef,
                ef_by_k=(*efs, ef, *pad), head_by_k=(*heads, head, *pad)))
            found, _ = _served_top_items(conn, tables, users, k)
            recall = _recall(expected, users, found)
            log.info("hnsw ef_search=%d with a head of %d: recall@%d %.4f", ef, head, k, recall)
            if recall >= RECALL_TARGET:
                picked = (head, recall)
                break
        if picked[0] is None:
            break
        efs.append(ef)
        heads.append(picked[0])
        recalls.append(picked[1])
        floor = picked[0]
    if not efs:
        return None
    missing = len(RECALL_KS) - len(efs)
    return IndexChoice(kind="hnsw", recall=recalls[0], ef_search=efs[0],
                       ef_by_k=(*efs, *(None,) * missing),
                       recall_by_k=(*recalls, *(1.0,) * missing),
                       head_by_k=(*heads, *(None,) * missing))


def _tune_larger_k(conn: psycopg.Connection, tables: VersionTables, choice: IndexChoice,
                   sample: np.ndarray, ranked: list[np.ndarray]) -> IndexChoice:
    """Find the ef_search for each k of ``RECALL_KS`` above 10: the smallest step, at least k
    and at least the previous k's, that reaches the recall target at k. A k that misses it
    searches exactly, and so does every larger k (also with ``index = 'hnsw'``, which decides
    the search at k 10 only).

    Without this, ef_search tuned at k 10 and raised to k lost recall as k grew (recall@50
    0.92-0.96 measured on public datasets).
    """
    assert choice.ef_search is not None
    ef_by_k: list[int | None] = [choice.ef_search]
    recall_by_k = [choice.recall]
    floor = choice.ef_search
    for k in RECALL_KS[1:]:
        expected = [{int(i) for i in top[:k]} for top in ranked]
        steps = [ef for ef in EF_SEARCH_STEPS if ef >= max(floor, k)]
        picked: tuple[int | None, float] = (None, 1.0)
        for ef_search in steps:
            trial = replace(choice, ef_by_k=(*ef_by_k, ef_search,
                                             *(None,) * (len(RECALL_KS) - len(ef_by_k) - 1)))
            _set_index(conn, tables, trial)
            found, _ = _served_top_items(conn, tables, sample, k)
            recall = _recall(expected, sample, found)
            log.info("hnsw ef_search=%d: recall@%d %.4f", ef_search, k, recall)
            if recall >= RECALL_TARGET:
                picked = (ef_search, recall)
                break
        ef_by_k.append(picked[0])
        recall_by_k.append(picked[1])
        if picked[0] is None:
            break
        floor = picked[0]
    ef_by_k += [None] * (len(RECALL_KS) - len(ef_by_k))
    recall_by_k += [1.0] * (len(RECALL_KS) - len(recall_by_k))
    return replace(choice, ef_by_k=tuple(ef_by_k), recall_by_k=tuple(recall_by_k))


