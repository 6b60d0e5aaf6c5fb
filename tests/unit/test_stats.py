"""The statistics series: a batch of durations lands in the buckets, samples and totals
exactly as each value would on its own."""

from __future__ import annotations

import math
import random

import pytest

from qoper8._engine.stats import HISTOGRAM_BUCKETS, SAMPLE_WINDOW, _Series


def _bucket_of(value: float) -> int:
    """The first bucket whose upper bound is at least ``value`` (the overflow one past all)."""
    return next(
        (i for i, bound in enumerate(HISTOGRAM_BUCKETS) if value <= bound), len(HISTOGRAM_BUCKETS)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_batch_counts_like_each_value_on_its_own(seed: int) -> None:
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
    expected = [0] * (len(HISTOGRAM_BUCKETS) + 1)
    for v in values:
        expected[_bucket_of(v)] += 1
    assert batched.counts == expected
    assert list(batched.samples) == values[-SAMPLE_WINDOW:]
    assert batched.total == pytest.approx(math.fsum(values))
    cumulative = [sum(expected[: i + 1]) for i in range(len(HISTOGRAM_BUCKETS))]
    assert batched.histogram().buckets == tuple(zip(HISTOGRAM_BUCKETS, cumulative, strict=True))
    assert batched.histogram().count == len(values)
    ordered = sorted(values)
    percentiles = batched.percentiles()
    assert percentiles.count == len(values)
    assert percentiles.p50 == ordered[int(0.5 * len(values))]
    assert percentiles.p99 == ordered[int(0.99 * len(values))]
    assert percentiles.max == ordered[-1]


def test_samples_keep_only_the_most_recent_window() -> None:
    series = _Series()
    series.add_many([float(i) for i in range(SAMPLE_WINDOW + 10)])
    assert len(series.samples) == SAMPLE_WINDOW
    assert series.samples[0] == 10.0
    assert series.histogram().count == SAMPLE_WINDOW + 10
