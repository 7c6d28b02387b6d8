"""The benchmarks' synthetic interactions: seeded, complete and skewed."""

from __future__ import annotations

import numpy as np

from benchmarks import synthetic


def test_synthetic_data_is_seeded_complete_and_skewed() -> None:
    scale = synthetic.Scale("tiny", 50_000, 1_000, 2_000)
    users, items, weights = synthetic.generate(scale)
    again = synthetic.generate(scale)
    assert all(np.array_equal(a, b) for a, b in zip((users, items, weights), again, strict=True))
    assert set(users.tolist()) == set(range(1, 1_001))
    assert set(items.tolist()) == set(range(1, 2_001))
    counts = np.bincount(items)[1:]
    assert counts.max() > 50 * np.median(counts)  # a power law, not uniform
    assert weights.min() >= 1 and weights.max() <= 5

