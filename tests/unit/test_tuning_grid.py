"""Parsing and checking a tuning grid."""

from __future__ import annotations

import pytest

from recsys_db import tuning
from recsys_db.errors import ConfigError


def test_parse_grid() -> None:
    assert tuning.parse_grid(["factors=8, 16", "weighting=bm25,none", "alpha=0.5"]) == {
        "factors": [8, 16], "weighting": ["bm25", "none"], "alpha": [0.5]}
    assert tuning.combinations({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]



@pytest.mark.parametrize(("grid", "message"), [
    (["factors"], "grid entry 'factors' must look like name=value1,value2"),
    (["factors="], "grid entry 'factors=' must look like name=value1,value2"),
    (["eval_k=5,10"], '"eval_k" cannot be tuned; tunable parameters: factors, regularization'),
    (["factors=2", "factors=4"], '"factors" appears twice in the grid'),
    ([], "the grid is empty"),
    (["alpha=1,1e400"], "alpha must be a finite number within double precision, not 1e400"),
    (["regularization=NaN"], "regularization must be a finite number .*, not NaN"),
    (["alpha=-Infinity"], "alpha must be a finite number within double precision, not -Infinity"),
])
def test_bad_grids(grid: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tuning.parse_grid(grid)

