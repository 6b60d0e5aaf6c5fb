"""The statistics series: folding a batch of samples at once counts exactly as adding each."""

from __future__ import annotations

import random

import pytest

from qoper8._stats import HISTOGRAM_BUCKETS, _Series


def _one_by_one(values: list[float]) -> _Series:
    series = _Series()
    for v in values:
        series.add(v)
    return series


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_add_many_counts_like_add(seed: int) -> None:
    rng = random.Random(seed)
    # Values on every bucket bound (a bound belongs to its own bucket), between bounds,
    # below the first and above the last.
    values = [*HISTOGRAM_BUCKETS, 0.0, 1e-6, 99.0, 1e9]
    values += [rng.uniform(0, 70) ** 2 / 70 for _ in range(500)]
    rng.shuffle(values)
    batched = _Series()
    batched.add_many(values[:200])
    batched.add_many([])
    batched.add_many(values[200:])
    expected = _one_by_one(values)
    assert batched.counts == expected.counts
    assert list(batched.samples) == list(expected.samples)
    assert batched.total == pytest.approx(expected.total)
    assert batched.histogram().buckets == expected.histogram().buckets
    assert batched.percentiles() == expected.percentiles()


def test_samples_keep_only_the_most_recent_window() -> None:
    series = _Series()
    window = series.samples.maxlen
    assert window is not None
    series.add_many([float(i) for i in range(window + 10)])
    assert len(series.samples) == window
    assert series.samples[0] == 10.0
    assert series.histogram().count == window + 10
