"""Python API for notebooks: a thin layer over the recsys SQL functions and training.

Every method runs one SQL function or view (queries in ``api.sql``) or calls
:func:`recsys_db.training.train`; nothing is computed twice. Keys may be given as any
type and are passed as text, as the SQL functions expect.

>>> import recsys_db
>>> rs = recsys_db.connect()                        # embedded server unless a URL is given
>>> rs.create_model("shop", "public.events", "user_id", "item_id", params={"factors": 32})
>>> rs.train("shop")
>>> rs.recommend("shop", 42, k=5).to_pandas()
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from recsys_db import config, db, install, queries, run, training
from recsys_db.errors import RecsysError

if TYPE_CHECKING:
    import pandas


K_MAX = 2**31 - 1  # the largest k the SQL functions take


class Rows(list[dict[str, Any]]):
    """Result rows as dicts, in the order the SQL returned them."""

    def __init__(self, columns: Iterable[str], records: Iterable[Iterable[Any]]) -> None:
        self.columns = list(columns)
        super().__init__(dict(zip(self.columns, record, strict=True)) for record in records)

    def to_pandas(self) -> pandas.DataFrame:
        """The rows as a pandas DataFrame (pandas must be installed)."""
        try:
            import pandas
        except ImportError as exc:
            raise RecsysError("to_pandas needs pandas; install it with: pip install pandas"
                              ) from exc
        return pandas.DataFrame.from_records(list(self), columns=self.columns)


class Recsys:
    """A connection to a database with recsys installed; create with :func:`connect`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn = db.connect(url)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Recsys:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _rows(self, query: str, /, **params: Any) -> Rows:
        with self._conn.cursor() as cur:
            cur.execute(queries.text(query), params)
            return Rows([d.name for d in cur.description or []], cur.fetchall())

    def install(self) -> install.InstallResult:
        """Create or upgrade the recsys schema (idempotent), as ``recsys-db install``."""
        result = install.install(self.url)
        self._conn.close()  # pgvector's types may be new; register them again
        self._conn = db.connect(self.url)
        return result

    def create_model(self, name: str, source: str, user_column: str, item_column: str, *,
                     weight_column: str | None = None, event_column: str | None = None,
                     event_weights: Mapping[str, float] | None = None,
                     time_column: str | None = None, params: Mapping[str, Any] | None = None,
                     refresh_every: timedelta | str | None = None) -> int:
        """Register a model over a table, view or materialized view; returns its id.

        Parameters
        ----------
        source : str
            The relation, e.g. ``"analytics.events"``.
        params : mapping, optional
            Training parameters, e.g. ``{"factors": 64, "weighting": "bm25"}``; validated
            and merged over the defaults by ``recsys.als``'s rules.
        """
        rows = self._rows(
            "api_create_model", name=name, source=source, user_column=user_column,
            item_column=item_column, weight_column=weight_column, event_column=event_column,
            event_weights=None if event_weights is None else _numbers(event_weights,
                                                                      "event weight for"),
            time_column=time_column, params=None if params is None else _numbers(params, ""),
            refresh_every=refresh_every)
        return int(rows[0]["create_model"])

    def drop_model(self, name: str) -> None:
        """Drop a model and the factor tables of all its versions."""
        self._rows("api_drop_model", name=name)

    def train(self, name: str, *, progress: run.Progress | None = None
              ) -> training.RunResult:
        """Train a new version of a model and activate it (see ``recsys-db train``)."""
        return training.train(self.url, name, progress=progress)

    def models(self) -> Rows:
        """The ``recsys.models`` view: configuration, active version, last run."""
        return self._rows("api_models")

    def runs(self, model: str | None = None, limit: int = 20) -> Rows:
        """The most recent training runs, of one model or of all."""
        return self._rows("api_runs", model=model, limit=limit)

    def recommend(self, model: str, user: Any, k: int = 10, *, exclude_seen: bool = True,
                  candidates: Iterable[Any] | None = None) -> Rows:
        """Top-k items for a user: ``recsys.recommend``, or ``recsys.recommend_filtered``
        when candidate item keys are given (business rules)."""
        if candidates is None:
            return self._rows("api_recommend", model=model, user=str(user), k=_k(k),
                              exclude_seen=exclude_seen)
        return self._rows("api_recommend_filtered", model=model, user=str(user),
                          candidates=_keys(candidates, "candidates"), k=_k(k),
                          exclude_seen=exclude_seen)

    def recommend_for_items(self, model: str, items: Iterable[Any], k: int = 10) -> Rows:
        """Top-k items for an anonymous session or basket (``recsys.recommend_for_items``)."""
        return self._rows("api_recommend_for_items", model=model, items=_keys(items, "items"),
                          k=_k(k))

    def explain(self, model: str, user: Any, item: Any, k: int = 10) -> Rows:
        """The user's items that contribute most to the item's score (``recsys.explain``)."""
        return self._rows("api_explain", model=model, user=str(user), item=str(item), k=_k(k))

    def similar_items(self, model: str, item: Any, k: int = 10, *,
                      content_weight: float = 0.0) -> Rows:
        """Items closest to an item by cosine of their factors, blended with the cosine of
        their content by ``content_weight`` (0 to 1)."""
        return self._rows("api_similar_items", model=model, item=str(item), k=_k(k),
                          content_weight=content_weight)

    def similar_users(self, model: str, user: Any, k: int = 10) -> Rows:
        """Users closest to a user by cosine of their factors."""
        return self._rows("api_similar_users", model=model, user=str(user), k=_k(k))

    def interested_users(self, model: str, item: Any, k: int = 10, *,
                         exclude_seen: bool = True) -> Rows:
        """The audience for an item: users with the highest predicted score for it."""
        return self._rows("api_interested_users", model=model, item=str(item), k=_k(k),
                          exclude_seen=exclude_seen)

    def popular(self, model: str, k: int = 10) -> Rows:
        """The items with the most distinct users in the active version."""
        return self._rows("api_popular", model=model, k=_k(k))

    def score(self, model: str, user: Any, item: Any) -> float | None:
        """Predicted preference of a user for an item; None when either is unknown."""
        value = self._rows("api_score", model=model, user=str(user), item=str(item))[0]["score"]
        return None if value is None else float(value)

    def sql(self, query: str, params: Mapping[str, Any] | None = None) -> Rows:
        """Run any SQL (e.g. a recommendation joined with a product table) and return rows."""
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            return Rows([d.name for d in cur.description or []],
                        cur.fetchall() if cur.description else [])


def _numbers(values: Mapping[str, Any], label: str) -> Jsonb:
    """``values`` as jsonb; a NaN or infinite float (which JSON cannot carry to the database's
    checks) is refused here, by name."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RecsysError(f"{label} {name}".strip()
                              + f" must be a finite number within double precision, not {value}")
    return Jsonb(dict(values))


def _k(k: int) -> int:
    """``k`` as the SQL functions take it (an integer): beyond every candidate is every
    candidate, so a larger ``k`` is capped rather than sent as a bigint no function takes."""
    return min(int(k), K_MAX) if k is not None else k


def _keys(keys: Iterable[Any], role: str) -> list[str | None]:
    if isinstance(keys, (str, bytes)):
        raise TypeError(f"{role} must be a list of keys, not a single {type(keys).__name__}")
    return [None if key is None else str(key) for key in keys]


def connect(url: str | None = None) -> Recsys:
    """Connect to a database: ``url``, else ``$RECSYS_DATABASE_URL``, else the embedded server.

    The schema must be installed (``recsys-db install`` or :meth:`Recsys.install`).
    """
    return Recsys(config.database_url(url))
