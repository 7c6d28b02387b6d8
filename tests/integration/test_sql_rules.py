"""Rules kept in both Python and SQL agree: the weighting schemes (weighting.apply and
recsys._confidences), the holdout metric names (evaluation.METRICS and recsys._metric_names)
and what a source holds per item (the matrix a training loads and
recsys._source_item_weights_sql). Each pair is compared on the same input, through the public
names only."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
import scipy.sparse as sp
from psycopg import sql
from psycopg.types.json import Jsonb

from recsys_db import evaluation, training, weighting

from ..helpers import rows

# users x items summed weights: rows with 1 to 6 items (the idf of bm25 and tfidf depends on
# a row's item count), items with unequal totals (bm25's length normalisation)
SUMMED = np.array([[0.5, 0, 0, 0, 0, 0],
                   [1, 2, 0, 0, 0, 0],
                   [3, 0, 0.25, 4, 0, 0],
                   [0, 7.5, 1, 0, 2, 0],
                   [1, 1, 1, 1, 1, 9],
                   [2, 0, 6, 0.75, 3, 1.5]])


def _train_summed(db_url: str, conn: psycopg.Connection) -> None:
    """Model 'w' trained on one source row per non-zero cell of SUMMED (user u<r>, item i<c>)."""
    conn.execute("CREATE TABLE public.w (u text, i text, w double precision)")
    users, items = np.nonzero(SUMMED)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.w VALUES (%s, %s, %s)",
                        [(f"u{u}", f"i{i}", float(SUMMED[u, i]))
                         for u, i in zip(users, items, strict=True)])
    conn.execute("SELECT recsys.create_model('w', 'public.w', 'u', 'i', 'w',"
                 " params => recsys.als(factors => 2, iterations => 1, eval_split => 'off'))")
    training.train(db_url, "w")


def _item_index(conn: psycopg.Connection, model: str) -> dict[str, int]:
    """Item key -> index in the active version of a model."""
    (table,), = rows(conn, "SELECT mv.item_table FROM recsys.model m JOIN recsys.model_version mv"
                           " ON mv.model_id = m.id AND mv.version = m.active_version"
                           " WHERE m.name = %s", (model,))
    query = sql.SQL("SELECT key, idx FROM recsys.{}").format(sql.Identifier(table))
    return dict(rows(conn, query.as_string(conn)))


@pytest.mark.parametrize("params", [
    {"weighting": "none"},
    {"weighting": "confidence", "alpha": 2.5},
    {"weighting": "log", "alpha": 3.0},
    {"weighting": "bm25", "bm25_k1": 1.2, "bm25_b": 0.75},
    {"weighting": "bm25"},  # the defaults: bm25_k1 100, bm25_b 0.8
    {"weighting": "tfidf"},
], ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_confidences_are_weighting_apply(db_url: str, conn: psycopg.Connection,
                                         params: dict[str, Any]) -> None:
    """recsys._confidences (fold-in, explain) gives each row of a matrix the confidences that
    weighting.apply (training) gives it, with the same parameters and item totals."""
    _train_summed(db_url, conn)
    index = _item_index(conn, "w")
    assert index == {f"i{c}": c for c in range(SUMMED.shape[1])}
    # the version's item totals, which bm25 normalises by, are those of SUMMED
    (item_weight,), = rows(conn, "SELECT item_weight FROM recsys.version_item_weight")
    assert np.allclose(item_weight, SUMMED.sum(axis=0))

    (merged,), = rows(conn, "SELECT params || %s FROM recsys.versions", (Jsonb(params),))
    expected = weighting.apply(sp.csr_matrix(SUMMED), merged)
    for u in range(SUMMED.shape[0]):
        idx = [int(i) for i in np.nonzero(SUMMED[u])[0]]
        (confidences,), = rows(
            conn,
            "SELECT recsys._confidences(v, %s, %s)"
            "  FROM jsonb_populate_record(recsys._active_version('w'),"
            "                             jsonb_build_object('params', %s::jsonb)) v",
            (idx, [float(SUMMED[u, i]) for i in idx], Jsonb(merged)))
        row = expected[u]
        assert row.indices.tolist() == idx
        assert np.allclose(confidences, row.data, rtol=1e-6, atol=1e-6), (u, confidences,
                                                                          row.data)


def test_metric_names_are_evaluation_metrics(conn: psycopg.Connection) -> None:
    """The metrics the gate may name (recsys._metric_names) are those evaluation stores."""
    (names,), = rows(conn, "SELECT recsys._metric_names()")
    assert len(names) == len(set(names))
    assert set(names) == set(evaluation.METRICS)


@pytest.mark.parametrize(("weight_type", "with_events"), [
    ("numeric", True), ("double precision", False), ("boolean", True), ("boolean", False),
    (None, True), (None, False),
])
def test_source_query_sums_what_training_loads(db_url: str, conn: psycopg.Connection,
                                               weight_type: str | None,
                                               with_events: bool) -> None:
    """recsys._source_item_weights_sql (explain's history) reads a source as training does:
    same NULL and event filters, same weight expression, duplicates summed. Training stores
    each item's summed weight of the matrix it loaded (recsys.version_item_weight); the
    function's query over the same source gives the same sums per item."""
    # (user, item, weight, event): duplicate pairs; a NULL user, item, weight or event; an
    # event not in the map; an item whose only rows are skipped ('gone'); weights of 0
    events = [("a", "x", 2, "view"), ("a", "x", 3, "view"), ("a", "x", 1, "cart"),
              ("a", "y", 1, "view"), ("b", "y", 0, "cart"), ("b", "z", 4, "view"),
              ("b", "z", 1, "refund"), ("c", "x", 5, None), ("c", "z", 0, "view"),
              ("c", "y", None, "view"), (None, "x", 1, "view"), ("d", None, 1, "cart"),
              ("d", "z", 2.5, "cart"), ("d", "gone", None, "view"), ("e", "gone", 1, "refund"),
              ("e", "w", 0, "view"), ("f", "y", 0.5, "cart"), ("f", "w", 3, "view")]
    column = f", w {weight_type}" if weight_type else ""
    conn.execute(f"CREATE TABLE public.ev (u text, i text, kind text{column})")
    with conn.cursor() as cur:
        for u, i, w, kind in events:
            if weight_type == "boolean":
                w = None if w is None else w > 1
            values = (u, i, kind) + ((w,) if weight_type else ())
            cur.execute(f"INSERT INTO public.ev VALUES ({', '.join(['%s'] * len(values))})",
                        values)
    conn.execute(
        "SELECT recsys.create_model('ev', 'public.ev', 'u', 'i', %s, event_column => %s,"
        " event_weights => %s, params => recsys.als(factors => 2, iterations => 1,"
        " eval_split => 'off'))",
        ("w" if weight_type else None, "kind" if with_events else None,
         Jsonb({"view": 1, "cart": 10.5}) if with_events else None))
    training.train(db_url, "ev")

    index = _item_index(conn, "ev")
    (item_weight,), = rows(conn, "SELECT item_weight FROM recsys.version_item_weight")
    loaded = {key: item_weight[i] for key, i in index.items()}
    (query,), = rows(conn, "SELECT recsys._source_item_weights_sql(recsys._model('ev'::text),"
                           " false)")
    computed = dict(rows(conn, query))
    assert set(computed) == set(loaded)
    for key, raw in computed.items():
        assert raw == pytest.approx(loaded[key], rel=1e-12, abs=1e-12), key
