"""Text keys mapped by numpy: indices in byte order (as COLLATE "C" sorts), whatever the keys."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from recsys_db import copybin, textkeys


def _joined(keys: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"\0".join(keys), dtype=np.uint8)


def _check(keys: list[bytes]) -> None:
    joined = _joined(keys)
    starts, lengths = textkeys.split(joined, len(keys))
    distinct = sorted(set(keys))
    for first, index in (textkeys.dense_indices(joined, starts, lengths),
                         textkeys._dense_by_python(joined.tobytes(), starts, lengths)):
        assert [keys[row] for row in first] == distinct
        assert index.dtype == np.int32 and [distinct[i] for i in index] == keys
        copied = copybin.parse_rows(textkeys.encode_index_texts(joined, starts[first],
                                                                lengths[first]))
        assert [tuple(None if field is None else bytes(field) for field in row)
                for row in copied] == [(i.to_bytes(4, "big"), key)
                                       for i, key in enumerate(distinct)]


RNG = np.random.default_rng(7)
CASES = {
    "words": [b"alice", b"bob", b"Bob", b"alice", b"", b"a", b"ab", b"a b", "zoë".encode(),
              b"10", b"9", b"", b"\x01", b"a\x01"],
    "one empty key": [b""],
    "two empty keys": [b"", b""],
    "one key": [b"x"],
    "decimal": [str(k).encode() for k in RNG.integers(1, 200_001, 20_000)],
    "common prefix": [b"user_%06d" % k for k in RNG.integers(1, 2_000, 5_000)],
    "random bytes": [bytes(RNG.integers(1, 256, RNG.integers(0, 40), dtype=np.uint8))
                     for _ in range(3_000)],
    "long random bytes, past the codes": [
        bytes(RNG.integers(1, 256, RNG.integers(0, 600), dtype=np.uint8)) for _ in range(300)] * 2,
    "uuid": [str(uuid.UUID(int=int(x))).encode() for x in RNG.integers(0, 2 ** 62, 3_000)] * 3,
    "two letters, long": [bytes(RNG.integers(1, 3, RNG.integers(0, 70), dtype=np.uint8))
                          for _ in range(3_000)],
}


@pytest.mark.parametrize("name", CASES)
def test_indices_follow_the_byte_order_of_the_keys(name: str) -> None:
    _check(CASES[name])


def test_long_keys_are_mapped_in_python() -> None:
    keys = CASES["long random bytes, past the codes"]
    joined = _joined(keys)
    starts, lengths = textkeys.split(joined, len(keys))
    assert textkeys._codes(joined, starts, lengths) is None
    decimal = _joined(CASES["decimal"])
    codes = textkeys._codes(decimal, *textkeys.split(decimal, len(CASES["decimal"])))
    assert codes is not None and len(codes) == 1  # one code, ranked through a table


def test_split_checks_the_count() -> None:
    assert [a.tolist() for a in textkeys.split(np.empty(0, dtype=np.uint8), 0)] == [[], []]
    with pytest.raises(ValueError, match="expected 3 keys joined by zero bytes, found 2"):
        textkeys.split(_joined([b"a", b"b"]), 3)
