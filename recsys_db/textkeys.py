"""Keys read as text, mapped to dense indices by numpy in the byte order of their text.

The keys of a column arrive as one buffer, each key's bytes followed by a zero byte but the
last (text holds no zero byte). Byte order is the order of ``COLLATE "C"``: bytes compared
one by one, and a key that is a prefix of another first, which padding with zero bytes keeps.
Each byte position takes only the byte values some key has there (ten digits, a constant
prefix: one), so the keys are numbered in mixed radix over those values, in as few 63-bit
codes as it takes; one small code is ranked through a table over its span, as integer keys
are (``load.dense_indices``), and more are sorted.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recsys_db import copybin

# Most bits in one code: each code is an unsigned 64-bit integer, and the product of the
# radixes of its byte positions stays under 2**63.
CODE_SPAN = 2 ** 63
# Most codes per key (63 bits each: 504 bytes of random text) before the keys are sorted as
# Python bytes instead, so that memory stays a few times the keys' own size.
MAX_CODES = 8
# The first k bytes of a big-endian 8-byte word, k from 0 to 8.
_KEPT_BYTES = np.array([(2 ** 64 - 1) ^ ((1 << (8 * (8 - k))) - 1) for k in range(9)],
                       dtype=np.uint64)


def split(keys: npt.NDArray[np.uint8],
          count: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Start and length of each of the ``count`` keys in ``keys`` (joined by zero bytes)."""
    buffer = keys
    ends = np.flatnonzero(buffer == 0)
    if count == 0 and len(buffer) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if count == 0 or len(ends) != count - 1:
        raise ValueError(f"expected {count} keys joined by zero bytes, found {len(ends) + 1}")
    starts = np.empty(count, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends + 1
    lengths = np.empty(count, dtype=np.int64)
    lengths[:-1] = ends - starts[:-1]
    lengths[-1] = len(buffer) - starts[-1]
    return starts, lengths


def dense_indices(keys: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64],
                  lengths: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64],
                                                          npt.NDArray[np.int32]]:
    """For the keys at ``starts`` (of ``lengths`` bytes) in ``keys``: one key number per
    distinct key, in byte order of the keys (any of its occurrences), and each key's index
    among the distinct keys."""
    if len(starts) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
    codes = _codes(keys, starts, lengths)
    if codes is None:
        return _dense_by_python(keys.tobytes(), starts, lengths)
    count = len(starts)
    if len(codes) == 1 and codes[0][1] <= 2 * count + 1_000_000:
        code = codes[0][0]
        present = np.zeros(codes[0][1], dtype=bool)
        present[code] = True
        rank = np.cumsum(present, dtype=np.int32) - 1
        index = rank[code]
        del rank, present
    else:
        index = _dense_by_hashing([code for code, _ in codes])
    first = np.empty(int(index.max()) + 1, dtype=np.int64)
    first[index] = np.arange(count, dtype=np.int64)
    return first, index


def _dense_by_hashing(codes: list[npt.NDArray[np.uint64]]) -> npt.NDArray[np.int32]:
    """Each row's index among the distinct rows of ``codes`` (compared column by column, the
    first the most significant), through an open-addressing hash table built a round at a
    time: sorting every row costs several times more when most rows repeat a key."""
    count = len(codes[0])
    mixed = codes[0].copy()
    for code in codes[1:]:
        mixed *= np.uint64(0x9E3779B97F4A7C15)  # wraps around: any mixing will do
        mixed ^= code
    bits = max(4, int(2 * count - 1).bit_length())  # the table at most half full
    slot = ((mixed * np.uint64(0xBF58476D1CE4E5B9)) >> np.uint64(64 - bits)).astype(np.int64)
    del mixed
    owner = np.full(1 << bits, -1, dtype=np.int64)  # the first row seen of each slot's key
    pending = np.arange(count, dtype=np.int64)
    while len(pending):
        at = slot[pending]
        free = owner[at] < 0
        owner[at[free]] = pending[free]  # of the rows that try a free slot, one keeps it
        same = np.ones(len(pending), dtype=bool)
        holder = owner[at]
        for code in codes:
            same &= code[holder] == code[pending]
        moved = pending[~same]  # another key holds the slot: try the next one
        slot[moved] = (slot[moved] + 1) & ((1 << bits) - 1)
        pending = moved
    # the keys in order: their codes sorted, the first code the most significant
    taken = np.flatnonzero(owner >= 0)
    holders = owner[taken]
    order = np.lexsort([code[holders] for code in reversed(codes)])
    rank = np.empty(1 << bits, dtype=np.int32)
    rank[taken[order]] = np.arange(len(taken), dtype=np.int32)
    return rank[slot]


def _codes(keys: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64],
           lengths: npt.NDArray[np.int64]) -> list[tuple[npt.NDArray[np.uint64], int]] | None:
    """The keys in mixed radix: (code, span) pairs, the first code the most significant;
    None past ``MAX_CODES`` codes."""
    padded = np.zeros(len(keys) + 8, dtype=np.uint8)
    padded[:len(keys)] = keys
    # the 8 bytes from each byte on, as a big-endian integer
    words_at = np.ndarray((len(keys) + 1,), dtype=">u8", buffer=padded, strides=(1,))
    codes: list[tuple[npt.NDArray[np.uint64], int]] = []
    code = np.zeros(len(starts), dtype=np.uint64)  # stays 0 when every key is the same
    span = 1
    width = int(lengths.max())
    column = np.empty(len(starts), dtype=np.int64)
    digit = np.empty(len(starts), dtype=np.uint64)
    for offset in range(0, width, 8):
        at = starts + offset
        np.minimum(at, len(keys), out=at)
        word = words_at[at].byteswap()
        word = word.view(word.dtype.newbyteorder())  # the same numbers, in native order
        # bytes past the key's end (its zero byte and the next keys) become zero padding
        kept = lengths - offset
        np.clip(kept, 0, 8, out=kept)
        word &= _KEPT_BYTES[kept]
        del at, kept
        signed = word.view(np.int64)  # int64 values index arrays without a conversion
        # two bytes at a time: a position pair holds fewer values than its bytes' product
        for shift in range(48, -16, -16):
            if offset + (48 - shift) // 8 >= width:
                break  # all padding from here on
            np.right_shift(signed, shift, out=column)
            np.bitwise_and(column, 0xFFFF, out=column)
            present = np.bincount(column, minlength=1 << 16) > 0
            radix = int(present.sum())
            if radix == 1:
                continue  # one value (a common prefix): it orders nothing
            if span * radix >= CODE_SPAN:
                codes.append((code, span))
                if len(codes) == MAX_CODES:
                    return None
                code = np.empty(len(starts), dtype=np.uint64)
                span = 1
            rank = (np.cumsum(present) - 1).astype(np.uint64)
            if span == 1:
                np.take(rank, column, out=code)
            else:
                np.multiply(code, np.uint64(radix), out=code)
                np.add(code, np.take(rank, column, out=digit), out=code)
            span *= radix
    codes.append((code, span))
    return codes


def _dense_by_python(blob: bytes, starts: npt.NDArray[np.int64],
                     lengths: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64],
                                                             npt.NDArray[np.int32]]:
    """``dense_indices`` for long keys: a dict of the keys as bytes, then sorted."""
    numbers: dict[bytes, int] = {}
    first: list[int] = []
    index = np.empty(len(starts), dtype=np.int32)
    for row, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        key = blob[start:start + length]
        number = numbers.get(key)
        if number is None:
            number = numbers[key] = len(first)
            first.append(row)
        index[row] = number
    order = sorted(numbers)
    rank = np.empty(len(order), dtype=np.int32)
    rank[[numbers[key] for key in order]] = np.arange(len(order), dtype=np.int32)
    return np.asarray([first[numbers[key]] for key in order], dtype=np.int64), rank[index]


def encode_index_texts(keys: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64],
                       lengths: npt.NDArray[np.int64]) -> bytes:
    """Binary COPY of rows (int4 index, text key): row r is (r, the key at starts[r])."""
    count = len(starts)
    head = np.zeros(count, dtype=[("n", ">i2"), ("l_idx", ">i4"), ("idx", ">i4"),
                                  ("l_key", ">i4")])
    head["n"] = 2
    head["l_idx"] = 4
    head["idx"] = np.arange(count, dtype=np.int32)
    head["l_key"] = lengths
    width = head.dtype.itemsize
    row_starts = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(width + lengths, out=row_starts[1:])
    out = np.empty(int(row_starts[-1]), dtype=np.uint8)
    head_bytes = head.view(np.uint8).reshape(count, width)
    for column in range(width):
        out[row_starts[:-1] + column] = head_bytes[:, column]
    # every key's bytes: position p of the concatenated keys comes from shift + p
    before = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    within = np.arange(total, dtype=np.int64)
    source = np.repeat(starts - before, lengths) + within
    target = np.repeat(row_starts[:-1] + width - before, lengths) + within
    out[target] = keys[source]
    return copybin.HEADER + out.tobytes() + copybin.TRAILER
