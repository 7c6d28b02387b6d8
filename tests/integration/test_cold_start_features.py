"""Cold start: items and users known only by their features get vectors from a ridge map."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from psycopg import sql

from recsys_db import datasets, db, training

from ..helpers import rows


def test_set_features_validates(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.ev (u text, i text)")
    conn.execute("CREATE TABLE public.tags (item text, tags text[], kind text)")
    conn.execute("SELECT recsys.create_model('m', 'public.ev', 'u', 'i')")
    conn.execute("SELECT recsys.set_features('m', 'item', 'public.tags', 'item',"
                 " ARRAY['tags', 'kind'])")
    assert rows(conn, "SELECT model, kind, source, feature_columns, text_columns, vector_column"
                      " FROM recsys.features") == [
        ("m", "item", "public.tags", ["tags", "kind"], [], None)]
    for call, message in [
        ("'ghost', 'item', 'public.tags', 'item', ARRAY['tags']", 'model "ghost" does not exist'),
        ("'m', 'thing', 'public.tags', 'item', ARRAY['tags']", "kind must be item or user, not"
                                                              " 'thing'"),
        ("'m', 'item', 'public.tags', 'nope', ARRAY['tags']",
         'column "nope" does not exist in relation public.tags'),
        ("'m', 'item', 'public.tags', 'item', ARRAY['tags', 'x']",
         'column "x" does not exist in relation public.tags'),
        ("'m', 'item', 'public.tags', 'item', ARRAY[]::text[]",
         "feature_columns, text_columns or vector_column must name at least one column"),
        ("'m', 'item', 'public.tags', 'item', ARRAY['tags'], 0",
         "regularization must be a finite number greater than 0, not 0"),
        # NaN > 0 is true in PostgreSQL: NaN was accepted, and training then failed with
        # "Factor is exactly singular"
        ("'m', 'item', 'public.tags', 'item', ARRAY['tags'], 'NaN'",
         "regularization must be a finite number greater than 0, not NaN"),
        ("'m', 'item', 'public.tags', 'item', ARRAY['tags'], 'Infinity'",
         "regularization must be a finite number greater than 0, not Infinity"),
        ("'m', 'item', 'public.tags', 'item', ARRAY['tags'], '-Infinity'",
         "regularization must be a finite number greater than 0, not -Infinity"),
        ("'m', 'item', 'public.tags', 'item', ARRAY['tags'], -1",
         "regularization must be a finite number greater than 0, not -1"),
    ]:
        with pytest.raises(psycopg.Error) as info:
            conn.execute(f"SELECT recsys.set_features({call})")
        assert info.value.diag.message_primary == message
    # no regularization (or NULL): chosen at each training
    conn.execute("SELECT recsys.set_features('m', 'item', 'public.tags', 'item', ARRAY['tags'],"
                 " NULL)")
    assert rows(conn, "SELECT regularization FROM recsys.features") == [(None,)]
    assert rows(conn, "SELECT recsys.drop_features('m', 'item'),"
                      " recsys.drop_features('m', 'item')") == [(True, False)]


def test_cold_users_and_items_from_features(db_url: str, conn: psycopg.Connection) -> None:
    # two departments, each with its own trainings; newcomers have only a department
    conn.execute("CREATE TABLE public.taken (person text, training text)")
    conn.execute("INSERT INTO public.taken SELECT 'd' || p, 'data-' || t"
                 " FROM generate_series(1, 6) p, generate_series(1, 4) t WHERE (p + t) % 4 <> 0")
    conn.execute("INSERT INTO public.taken SELECT 's' || p, 'sales-' || t"
                 " FROM generate_series(1, 6) p, generate_series(1, 4) t WHERE (p + t) % 4 <> 0")
    conn.execute("CREATE TABLE public.people (person text, department text, skills text[])")
    conn.execute("INSERT INTO public.people SELECT 'd' || p, 'data', ARRAY['sql', 'python']"
                 " FROM generate_series(1, 7) p")
    conn.execute("INSERT INTO public.people SELECT 's' || p, 'sales', ARRAY['crm']"
                 " FROM generate_series(1, 7) p")
    conn.execute("CREATE TABLE public.trainings (training text, topic text)")
    conn.execute("INSERT INTO public.trainings SELECT 'data-' || t, 'data'"
                 " FROM generate_series(1, 5) t")
    conn.execute("INSERT INTO public.trainings SELECT 'sales-' || t, 'sales'"
                 " FROM generate_series(1, 5) t")
    conn.execute("SELECT recsys.create_model('t', 'public.taken', 'person', 'training',"
                 " params => recsys.als(factors => 2, iterations => 20, alpha => 10))")
    conn.execute("SELECT recsys.set_features('t', 'user', 'public.people', 'person',"
                 " ARRAY['department', 'skills'], 0.1)")
    conn.execute("SELECT recsys.set_features('t', 'item', 'public.trainings', 'training',"
                 " ARRAY['topic'], 0.1)")
    result = training.train(db_url, "t")
    # d7 and s7 have no interactions; data-5 and sales-5 were never taken
    assert result.cold == {"users": 2, "items": 2}
    assert rows(conn, "SELECT cold_users, cold_items FROM recsys.run") == [(2, 2)]
    top = rows(conn, "SELECT item_key FROM recsys.recommend('t', 'd7', 4)")
    assert {k for (k,) in top} == {"data-1", "data-2", "data-3", "data-4"}
    top = rows(conn, "SELECT item_key FROM recsys.recommend('t', 's7', 4)")
    assert {k for (k,) in top} == {"sales-1", "sales-2", "sales-3", "sales-4"}
    similar = rows(conn, "SELECT item_key FROM recsys.similar_items('t', 'data-5', 4)")
    assert {k for (k,) in similar} == {"data-1", "data-2", "data-3", "data-4"}
    audience = rows(conn, "SELECT user_key FROM recsys.interested_users('t', 'sales-5', 7)")
    assert {k for (k,) in audience} <= {f"s{p}" for p in range(1, 8)}
    # the mapped items stay out of the popular list (popularity 0)
    assert ("data-5",) not in rows(conn, "SELECT item_key FROM recsys.popular('t', 8)")


@pytest.mark.slow
def test_held_out_movies_ranked_better_than_random(
        db_url: str, movielens_data: datasets.MovieLens) -> None:
    held_out = {m.item_id for m in movielens_data.movies if m.item_id % 10 == 3}
    with db.connect(db_url) as conn:
        datasets.write_movielens(conn, movielens_data)
        conn.execute("CREATE VIEW public.train AS SELECT * FROM movielens.liked"
                     " WHERE item_id % 10 <> 3")
        conn.execute("SELECT recsys.create_model('ml', 'public.train', 'user_id', 'item_id',"
                     " params => recsys.als(factors => 32, iterations => 10,"
                     " regularization => 0.05))")
        conn.execute("SELECT recsys.set_features('ml', 'item', 'movielens.movies', 'item_id',"
                     " ARRAY['genres', 'year'], 1.0)")
    result = training.train(db_url, "ml")
    with db.connect(db_url) as conn:
        (users, items), = rows(conn, "SELECT user_table, item_table FROM recsys.model_version")
        user_vectors = {k: v.to_numpy() for k, v in rows(
            conn, sql.SQL("SELECT key, factors FROM {}").format(sql.Identifier("recsys", users)))}
        cold = {k: v.to_numpy() for k, v in rows(
            conn, sql.SQL("SELECT key, factors FROM {} WHERE popularity = 0").format(
                sql.Identifier("recsys", items)))}
        liked = rows(conn, "SELECT user_id::text, item_id::text FROM movielens.liked"
                           " WHERE item_id % 10 = 3")
    # the held-out movies, and the ones nobody rated 4 or more, are known by genres and year only
    assert result.items is not None
    assert result.cold["items"] == len(cold) == len(movielens_data.movies) - result.items
    assert {str(i) for i in held_out} <= set(cold)
    keys = sorted(cold)
    matrix = np.stack([cold[k] for k in keys])
    position = {k: n for n, k in enumerate(keys)}
    # AUC over held-out movies: a liked one should outrank a not-liked one
    by_user: dict[str, set[str]] = {}
    for user, item in liked:
        if user in user_vectors:
            by_user.setdefault(user, set()).add(item)
    aucs = []
    for user, items_liked in by_user.items():
        scores = matrix @ user_vectors[user]
        positive = np.array([scores[position[i]] for i in items_liked])
        negative = np.delete(scores, [position[i] for i in items_liked])
        aucs.append(float((positive[:, None] > negative[None, :]).mean()))
    assert len(aucs) > 200
    assert np.mean(aucs) > 0.6  # random order gives 0.5
