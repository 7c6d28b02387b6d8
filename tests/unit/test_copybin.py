"""Binary COPY streams: parsing rows and fields, refusing other formats."""

from __future__ import annotations

import pytest

from recsys_db import copybin


def test_binary_copy_rows_split_into_fields() -> None:
    body = (b"\x00\x02" + b"\x00\x00\x00\x01" + b"a" + b"\xff\xff\xff\xff"
            + b"\x00\x01" + b"\x00\x00\x00\x00")
    found = copybin.parse_rows(copybin.HEADER + body + copybin.TRAILER)
    assert [[None if f is None else bytes(f) for f in row] for row in found] == [
        [b"a", None], [b""]]
    with pytest.raises(ValueError, match="ends inside a field"):
        copybin.parse_rows(copybin.HEADER + b"\x00\x01\x00\x00\x00\x09ab")
    with pytest.raises(ValueError, match="without its trailer"):
        copybin.parse_rows(copybin.HEADER + body)



def test_binary_copy_parse_rejects_other_streams() -> None:
    with pytest.raises(ValueError, match="not a binary copy stream"):
        copybin.parse_int_int_float(b"1\t2\t3.0\n")
    rows_with_text = copybin.HEADER + b"\x00\x03" + b"\x00" * 5 + copybin.TRAILER
    with pytest.raises(ValueError, match="not fixed-width"):
        copybin.parse_int_int_float(rows_with_text)

