"""Binary COPY of factor rows into the database: vectors and integer arrays exactly."""

from __future__ import annotations

import numpy as np
import psycopg
import scipy.sparse as sp

from recsys_db import copybin

from ..helpers import rows


def test_binary_copy_writes_vectors_and_arrays_exactly(conn: psycopg.Connection) -> None:
    rng = np.random.default_rng(3)
    factors = rng.standard_normal((7, 5)).astype(np.float32)
    # rows with no items, several, and one block boundary (chunk=3) in the middle
    lists = sp.csr_matrix(np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0],
                                    [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]))
    conn.execute("CREATE TEMP TABLE t (idx integer, factors vector(5), seen integer[])")
    with conn.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
        for block in copybin.encode_vectors_arrays(np.arange(7, dtype=np.int32) + 100, factors,
                                                   lists, chunk=3):
            copy.write(block)
    found = rows(conn, "SELECT idx, factors, seen FROM t ORDER BY idx")
    assert [r[0] for r in found] == list(range(100, 107))
    assert np.array_equal(np.stack([r[1].to_numpy() for r in found]), factors)
    assert [r[2] for r in found] == [lists[i].indices.tolist() for i in range(7)]

