"""The benchmark's own logic: the ideal schedule, percentiles, the verdicts against the
targets of issue 3, and the bare asyncio master that sets the floor of scenarios 3 and 4.
(Only the standard library and qoper8 are needed: the peers are imported by their drivers.)"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from typing import Any

from bench import report, scenarios
from bench.raw import RawPingPong


def test_ideal_schedule_sends_each_job_to_the_first_free_child() -> None:
    # Two children: 5 goes to A, 1 to B, the next 1 to B (free at 1), then 5 to B (free at 2).
    assert scenarios.ideal_finish_times([5, 1, 1, 5, 1], 2) == [5, 1, 2, 7, 6]


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert scenarios.pct(values, 50) == 51.0
    assert scenarios.pct(values, 99) == 99.0
    assert scenarios.pct(values, 100) == 100.0


def _entries(**fields: float) -> list[dict[str, Any]]:
    return [{"status": "ok", **fields}]


def test_targets_name_verdicts_and_the_bare_master_floor() -> None:
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        "throughput": {
            "qoper8": _entries(jobs_per_s=30_000),
            "peer": _entries(jobs_per_s=10_000),
            report.RAW: _entries(jobs_per_s=50_000),
        },
        "latency": {
            "qoper8": _entries(p50_us=40, p99_us=90),
            "peer": _entries(p50_us=100, p99_us=80),
        },
        "blocking": {
            "qoper8": _entries(efficiency=0.96),
            "peer": _entries(efficiency=0.95),
            report.RAW: _entries(efficiency=0.968),
        },
        "loop_lag": {
            "qoper8": _entries(p99_ms=0.4, max_ms=1.0),
            report.RAW: _entries(p99_ms=1.0, max_ms=1.0),
        },
    }
    rows = {r[0]: r for r in report.targets(report.summarise(results), ["qoper8", "peer"])}
    assert rows["throughput ≥ 1.5× best peer"][3] == "met: 3.00×"
    assert rows["throughput ≥ 0.5× raw limit"][3] == "met: 0.60×"
    assert rows["latency p50 ≤ 0.7× best peer"][3] == "met: 0.40×"
    assert rows["latency p99 ≤ best peer"][3] == "missed: 1.12×"
    efficiency = rows["blocking efficiency ≥ 0.97"]
    assert efficiency[2] == "best peer peer 0.950; bare asyncio master 0.968"
    assert efficiency[3] == "missed by 0.010"
    lag = rows["loop lag p99 ≤ 0.5 ms"]
    assert lag[2] == "–; bare asyncio master 1.000 ms"
    assert lag[3] == "met"


def test_quiet_heap_freezes_what_the_bench_holds() -> None:
    before = gc.get_freeze_count()
    held = [object() for _ in range(100)]
    try:
        scenarios.quiet_heap()
        assert gc.get_freeze_count() >= before + len(held)
    finally:
        gc.unfreeze()


async def test_bare_master_runs_the_blocking_scenario() -> None:
    """Calls wait in a FIFO for an idle child; the scenario measures efficiency and lag."""
    raw = RawPingPong()
    await raw.start(2)
    try:
        cfg = dataclasses.replace(
            scenarios.Config(), blocking_n=20, blocking_ms=2.0, blocking_children=2
        )
        blocking, lag = await scenarios.m_blocking_with_ticker(raw, cfg)
        assert 0.0 < blocking["efficiency"] <= 1.0
        assert blocking["ideal_s"] == 20 * 2.0 / 1000 / 2
        assert lag["ticks"] > 0
        # Everything answered: no call is left waiting and both children are idle again.
        results = await asyncio.gather(*(raw.call("sleep", 0.0) for _ in range(5)))
        assert results == [None] * 5
        assert len(raw._idle) == 2
        assert not raw._calls
    finally:
        await raw.close()
