"""PostgreSQL binary COPY, read and written with numpy instead of a Python loop per row.

Rows here are fixed-width except for one trailing int4[] column, so whole blocks are built or
parsed as numpy structured arrays; large values (arrays, packed records in a bytea) are read
straight out of the copy buffer.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
INT4_OID = 23


def parse_fixed(data: bytes | bytearray | memoryview,
                types: tuple[str, ...]) -> list[npt.NDArray[np.generic]]:
    """Parse binary COPY output of NOT NULL columns of fixed width, given as numpy type codes
    ('i4' for int4, 'f8' for float8, ...): one array per column, in native byte order."""
    view = memoryview(data)
    if bytes(view[:11]) != SIGNATURE:
        raise ValueError("not a binary copy stream")
    extension = int.from_bytes(view[15:19], "big")
    body = view[19 + extension : len(view) - 2]
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for number, code in enumerate(types):
        fields += [(f"l{number}", ">i4"), (f"c{number}", ">" + code)]
    row = np.dtype(fields)
    if len(body) % row.itemsize:
        raise ValueError("binary copy rows are not fixed-width (a NULL slipped through?)")
    rows = np.frombuffer(body, dtype=row)
    if rows.size and not ((rows["n"] == len(types)).all() and all(
            (rows[f"l{number}"] == np.dtype(code).itemsize).all()
            for number, code in enumerate(types))):
        raise ValueError("unexpected field layout in binary copy stream")
    return [rows[f"c{number}"].astype(code) for number, code in enumerate(types)]


def parse_int_int_float(data: bytes | bytearray | memoryview) -> tuple[
    npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64]
]:
    """Parse binary COPY output of rows (int4 NOT NULL, int4 NOT NULL, float8 NOT NULL)."""
    first, second, third = parse_fixed(data, ("i4", "i4", "f8"))
    return first.astype(np.int32), second.astype(np.int32), third.astype(np.float64)


def parse_rows(data: bytes | bytearray | memoryview) -> list[list[memoryview | None]]:
    """Split binary COPY output into rows of raw field values (None for NULL); meant for a
    few rows of large values, as it walks rows and fields in Python."""
    view = memoryview(data)
    if bytes(view[:11]) != SIGNATURE:
        raise ValueError("not a binary copy stream")
    offset = 19 + int.from_bytes(view[15:19], "big")
    rows: list[list[memoryview | None]] = []
    while True:
        if offset + 2 > len(view):
            raise ValueError("binary copy stream ends without its trailer")
        fields = int.from_bytes(view[offset:offset + 2], "big", signed=True)
        offset += 2
        if fields == -1:
            return rows
        row: list[memoryview | None] = []
        for _ in range(fields):
            length = int.from_bytes(view[offset:offset + 4], "big", signed=True)
            offset += 4
            if offset + max(length, 0) > len(view):
                raise ValueError("binary copy stream ends inside a field")
            if length < 0:
                row.append(None)
                continue
            row.append(view[offset:offset + length])
            offset += length
        rows.append(row)


def encode_index_keys(keys: npt.NDArray[np.integer], key_type: str) -> bytes:
    """Binary COPY body for rows (int4 index, integer key): row r is (r, keys[r]), the key in
    ``key_type``, its big-endian numpy type (``">i2"``, ``">i4"`` or ``">i8"``)."""
    width = np.dtype(key_type).itemsize
    rows = np.zeros(len(keys), dtype=[("n", ">i2"), ("l_idx", ">i4"), ("idx", ">i4"),
                                      ("l_key", ">i4"), ("key", key_type)])
    rows["n"] = 2
    rows["l_idx"] = 4
    rows["idx"] = np.arange(len(keys), dtype=np.int32)
    rows["l_key"] = width
    rows["key"] = keys
    return HEADER + rows.tobytes() + TRAILER


def _vector_rows(ids: npt.NDArray[np.integer], factors: npt.NDArray[np.floating],
                 extra_fields: int) -> npt.NDArray[np.void]:
    """Structured array for the fixed part: field count, int4 id, vector(dims)."""
    count, dims = factors.shape
    dtype = np.dtype(
        [("n", ">i2"), ("l_id", ">i4"), ("id", ">i4"), ("l_vec", ">i4"), ("dim", ">i2"),
         ("unused", ">i2"), ("vec", ">f4", (dims,))]
    )
    rows = np.zeros(count, dtype=dtype)
    rows["n"] = 2 + extra_fields
    rows["l_id"] = 4
    rows["id"] = ids
    rows["l_vec"] = 4 + 4 * dims
    rows["dim"] = dims
    rows["vec"] = factors
    return rows


def encode_vectors_ints(ids: npt.NDArray[np.integer], factors: npt.NDArray[np.floating],
                        values: npt.NDArray[np.integer]) -> bytes:
    """Binary COPY body for rows (int4, vector, int4)."""
    fixed = _vector_rows(ids, factors, 1)
    tail = np.zeros(len(ids), dtype=[("l", ">i4"), ("v", ">i4")])
    tail["l"] = 4
    tail["v"] = values
    merged = np.empty(len(ids), dtype=[("a", fixed.dtype), ("b", tail.dtype)])
    merged["a"] = fixed
    merged["b"] = tail
    return HEADER + merged.tobytes() + TRAILER


def encode_vectors_arrays(ids: npt.NDArray[np.integer], factors: npt.NDArray[np.floating],
                          lists: sp.csr_matrix, chunk: int = 20_000) -> list[bytes]:
    """Binary COPY body, in blocks, for rows (int4, vector, int4[]) where row r's array is
    the column indices of row r of ``lists`` (a CSR matrix, e.g. the items a user has seen)."""
    blocks = [HEADER]
    indptr = lists.indptr
    indices = lists.indices
    for start in range(0, len(ids), chunk):
        stop = min(start + chunk, len(ids))
        fixed = _vector_rows(ids[start:stop], factors[start:stop], 1)
        lengths = np.diff(indptr[start : stop + 1]).astype(np.int64)
        head = np.zeros(stop - start, dtype=[
            ("len", ">i4"), ("ndim", ">i4"), ("flags", ">i4"), ("oid", ">i4"), ("dim", ">i4"),
            ("lbound", ">i4")])
        head["len"] = 20 + 8 * lengths
        head["ndim"] = 1
        head["oid"] = INT4_OID
        head["dim"] = lengths
        head["lbound"] = 1
        # An empty array is sent with ndim 0 and no dimension fields.
        empty = lengths == 0
        head["len"][empty] = 12
        head["ndim"][empty] = 0
        row_bytes = fixed.dtype.itemsize + head.dtype.itemsize - 8 * empty + 8 * lengths
        starts = np.zeros(len(row_bytes) + 1, dtype=np.int64)
        np.cumsum(row_bytes, out=starts[1:])
        out = np.zeros(int(starts[-1]), dtype=np.uint8)
        fixed_bytes = fixed.view(np.uint8).reshape(len(fixed), -1)
        head_bytes = head.view(np.uint8).reshape(len(head), -1)
        width = fixed_bytes.shape[1]
        cols = np.arange(width)
        out[starts[:-1, None] + cols] = fixed_bytes
        full = ~empty
        head_cols = np.arange(head_bytes.shape[1])
        out[(starts[:-1][full] + width)[:, None] + head_cols] = head_bytes[full]
        # length, ndim, flags and element type: 16 bytes
        short_cols = np.arange(16)
        out[(starts[:-1][empty] + width)[:, None] + short_cols] = head_bytes[empty][:, :16]
        values = indices[indptr[start] : indptr[stop]]
        if values.size:
            elements = np.zeros(values.size, dtype=[("l", ">i4"), ("v", ">i4")])
            elements["l"] = 4
            elements["v"] = values
            element_bytes = elements.view(np.uint8).reshape(values.size, 8)
            row_of = np.repeat(np.arange(stop - start), lengths)
            position = np.arange(values.size) - (indptr[start:stop] - indptr[start])[row_of]
            offsets = starts[:-1][row_of] + width + head_bytes.shape[1] + 8 * position
            out[offsets[:, None] + np.arange(8)] = element_bytes
        blocks.append(out.tobytes())
    blocks.append(TRAILER)
    return blocks
