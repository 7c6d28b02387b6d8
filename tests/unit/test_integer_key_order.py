"""Integer keys ordered and indexed as their decimal text sorts."""

from __future__ import annotations

import numpy as np

from recsys_db import load

BIG = 2 ** 63 - 1


def test_decimal_text_order_of_integer_keys() -> None:
    rng = np.random.default_rng(5)
    for keys in (np.array([0, -1, 1, 9, 10, -10, -9, 99, 100, BIG, -BIG - 1, -BIG, BIG - 1,
                           10 ** 18, 10 ** 18 - 1, -(10 ** 18), 5, 50, 500, 51]),
                 rng.integers(-BIG - 1, BIG, 5_000, dtype=np.int64, endpoint=True),
                 rng.integers(-1_000, 100_000, 5_000)):
        distinct = np.unique(keys.astype(np.int64))
        assert [str(k) for k in distinct[load.text_order(distinct)]] == sorted(
            str(k) for k in distinct.tolist())
    # a table over the key span, and np.unique for keys spread too far for one
    for keys in (rng.integers(-50, 3_000, 100_000), rng.integers(-BIG - 1, BIG, 1_000)):
        distinct, index = load.dense_indices(keys.astype(np.int64))
        assert [str(k) for k in distinct] == sorted({str(k) for k in keys.tolist()})
        assert index.dtype == np.int32 and np.array_equal(distinct[index], keys)

