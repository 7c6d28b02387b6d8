"""Turn summed interaction weights into the confidence values ALS is fitted on."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight, tfidf_weight

from recsys_db.errors import ConfigError

SCHEMES = ("none", "confidence", "bm25", "tfidf", "log")


def apply(matrix: sp.csr_matrix, params: dict[str, Any]) -> sp.csr_matrix:
    """Weighted copy of a users x items matrix, as float32 CSR.

    - ``none``: the summed weights as they are.
    - ``confidence``: Hu, Koren & Volinsky's ``1 + alpha * r``.
    - ``log``: ``1 + alpha * log(1 + r)``, for heavy-tailed counts.
    - ``bm25`` / ``tfidf``: implicit's weightings, computed over items (each item's users are
      its "document"), as in implicit's own examples; ``bm25_k1`` and ``bm25_b`` apply.
    """
    scheme = params["weighting"]
    if scheme not in SCHEMES:
        raise ConfigError(f'unknown weighting "{scheme}"; use one of: {", ".join(SCHEMES)}')
    alpha = float(params["alpha"])
    weighted = matrix.astype(np.float64, copy=True).tocsr()
    if scheme == "none":
        pass
    elif scheme == "confidence":
        weighted.data = 1.0 + alpha * weighted.data
    elif scheme == "log":
        weighted.data = 1.0 + alpha * np.log1p(weighted.data)
    elif scheme == "bm25":
        weighted = bm25_weight(weighted.T.tocoo(), K1=float(params["bm25_k1"]),
                               B=float(params["bm25_b"])).T.tocsr()
    else:  # tfidf
        weighted = tfidf_weight(weighted.T.tocoo()).T.tocsr()
    return weighted.astype(np.float32)
