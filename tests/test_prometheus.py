"""qoper8.prometheus (issue 15): a library user's collector exposes the daemon's /metrics,
the same names, labels, types and help texts, from any thread."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import qoper8
import qoper8.prometheus
import qoper8.sync
from qoper8._daemon.metrics import render_metrics
from tests.conftest import HANDLERS

if TYPE_CHECKING:
    from qoper8._engine.stats import PoolStatistics

Series = tuple[str, tuple[tuple[str, str], ...], float]


def _parse(text: str) -> tuple[set[tuple[str, str, str]], set[Series]]:
    """(name, type, help) of each family, and every (sample, labels, value)."""
    families, samples = set(), set()
    for family in text_string_to_metric_families(text):
        families.add((family.name, family.type, family.documentation))
        for s in family.samples:
            samples.add((s.name, tuple(sorted(s.labels.items())), s.value))
    return families, samples


def _exposition(collector: qoper8.prometheus.PoolCollector) -> str:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return generate_latest(registry).decode()


async def test_the_collector_exposes_exactly_the_daemons_metrics(pool: qoper8.Pool) -> None:
    await asyncio.gather(*(pool.submit({"type": "add", "a": i, "b": 1}) for i in range(20)))
    with pytest.raises(qoper8.JobFailed):
        await pool.submit({"type": "raise_error"})
    with pytest.raises(qoper8.InvalidAction):
        await pool.submit({"type": "add", "a": "x", "b": 1})
    await pool.wait_idle()
    ours = _exposition(qoper8.prometheus.PoolCollector(pool))
    daemons = render_metrics(pool.statistics())  # what GET /metrics answers
    our_families, our_samples = _parse(ours)
    daemon_families, daemon_samples = _parse(daemons)
    assert our_families == daemon_families
    assert our_samples == daemon_samples  # the pool is idle: the values agree too
    assert ("qoper8_jobs_total", (("outcome", "completed"),), 20.0) in our_samples
    assert ("qoper8_jobs_total", (("outcome", "failed"),), 1.0) in our_samples
    assert ("qoper8_children", (("state", "idle"),), 2.0) in our_samples
    assert {t for _, t, _ in our_families} == {"counter", "gauge", "histogram"}


async def test_one_line_adds_the_metrics_to_the_default_registry(pool: qoper8.Pool) -> None:
    collector = qoper8.prometheus.PoolCollector(pool)
    REGISTRY.register(collector)
    try:
        text = generate_latest(REGISTRY).decode()
    finally:
        REGISTRY.unregister(collector)
    assert "qoper8_jobs_submitted_total 0.0" in text
    assert 'qoper8_children{state="idle"} 2.0' in text
    assert "python_info" in text  # beside the app's own metrics


class _Recording:
    """A pool whose ``statistics()`` notes the thread it runs on."""

    def __init__(self, pool: qoper8.Pool) -> None:
        self.pool = pool
        self.threads: list[threading.Thread] = []

    def statistics(self) -> PoolStatistics:
        self.threads.append(threading.current_thread())
        return self.pool.statistics()


async def test_a_scrape_from_another_thread_takes_the_snapshot_on_the_pools_loop(
    pool: qoper8.Pool,
) -> None:
    """``start_http_server`` scrapes from its own thread; the pool's records belong to its
    loop's thread, so the snapshot is taken there."""
    source = _Recording(pool)
    collector = qoper8.prometheus.PoolCollector(source)
    async with asyncio.timeout(10):
        text = await asyncio.to_thread(_exposition, collector)
    assert "qoper8_jobs_total" in text
    assert source.threads  # registering collects once too: all on the loop thread
    assert set(source.threads) == {threading.current_thread()}


def test_a_sync_pool_is_collected_too() -> None:
    with qoper8.sync.Pool(HANDLERS, children=1) as pool:
        pool.submit({"type": "add", "a": 1, "b": 2})
        _, samples = _parse(_exposition(qoper8.prometheus.PoolCollector(pool)))
    assert ("qoper8_jobs_total", (("outcome", "completed"),), 1.0) in samples


def test_a_redis_pool_has_no_statistics_to_collect() -> None:
    redis_pool = qoper8.RedisPool("redis://127.0.0.1:6379/9")
    with pytest.raises(TypeError, match="RedisPool keeps no statistics"):
        qoper8.prometheus.PoolCollector(redis_pool)  # type: ignore[arg-type]


def test_qoper8_prometheus_is_reachable_as_an_attribute() -> None:
    assert qoper8.prometheus.PoolCollector is not None
