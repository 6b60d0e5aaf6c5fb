"""qoper8's metrics for an app that already exposes Prometheus metrics: a ``prometheus_client``
collector with the daemon's ``/metrics`` names, labels, types and help texts (both come from
one list), so dashboards and alerts built for one work for the other.

```python
from prometheus_client import REGISTRY

REGISTRY.register(qoper8.prometheus.PoolCollector(pool))
```

Optional: needs ``prometheus-client`` (``pip install 'qoper8[prometheus]'``); nothing of it
is imported until this module is. ``RedisPool`` keeps no figures to collect: its jobs run in
the hosts' pools, whose metrics are the hosts' own (the daemon's ``/metrics``, or a
``PoolCollector`` on the pool of a ``RedisConsumer``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final, Protocol

from prometheus_client.metrics_core import Metric

from ._engine.metrics import metric_families

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._engine.stats import PoolStatistics

__all__ = ["PoolCollector", "StatisticsSource"]

# Seconds a scrape from another thread waits for the pool's event loop to take the
# snapshot. A loop blocked this long has bigger problems; the scrape then fails (the
# exporter answers 500) instead of hanging the exporter's thread.
SNAPSHOT_TIMEOUT: Final = 5.0


class StatisticsSource(Protocol):
    """Anything with the pool's ``statistics()``: ``qoper8.Pool``, ``qoper8.sync.Pool``."""

    def statistics(self) -> PoolStatistics: ...


class PoolCollector:
    """Collects one pool's statistics for ``prometheus_client``, as the daemon's
    ``/metrics`` exposes them: ``qoper8_jobs_total{outcome}``, ``qoper8_queue_length``,
    ``qoper8_children{state}``, the queue-wait and run-time histograms and the rest.

    Each scrape takes one snapshot (``pool.statistics()``, which never asks a child). A
    scrape from another thread (``prometheus_client.start_http_server``) takes it on the
    pool's event loop, the one running when the collector was made, since the pool's
    records belong to that loop's thread.

    Example:
        ```python
        from prometheus_client import REGISTRY, make_asgi_app

        async with qoper8.Pool("workers.users:worker", children=4) as pool:
            REGISTRY.register(qoper8.prometheus.PoolCollector(pool))
            app.mount("/metrics", make_asgi_app())
        ```

    Args:
        pool: a ``qoper8.Pool`` (made inside its event loop) or a ``qoper8.sync.Pool``.

    Raises:
        TypeError: ``pool`` keeps no statistics (a ``RedisPool``, a ``Client``).
    """

    def __init__(self, pool: StatisticsSource) -> None:
        if not callable(getattr(pool, "statistics", None)):
            raise TypeError(
                f"{type(pool).__name__} keeps no statistics to collect: a RedisPool's jobs run "
                f"in the hosts' pools, so collect there (PoolCollector on the host's pool, or "
                f"the daemon's /metrics)"
            )
        self._pool = pool
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # qoper8.sync.Pool: its statistics() crosses threads itself

    def collect(self) -> Iterator[Metric]:
        """The pool's metric families, as ``prometheus_client`` asks of a collector (a
        pool of several roles: one series per role, labelled ``role``, as ``/metrics``)."""
        whole, roles = self._snapshot()
        for family in metric_families(whole, roles=roles):
            # prometheus_client names a counter family without "_total" and adds it back
            # when it writes the text; its samples keep their full names.
            name = family.name.removesuffix("_total") if family.type == "counter" else family.name
            metric = Metric(name, family.help, family.type)
            for sample in family.samples:
                metric.add_sample(sample.name, dict(sample.labels), float(sample.value))
            yield metric

    def _snapshot(self) -> tuple[PoolStatistics, dict[str, PoolStatistics] | None]:
        loop = self._loop
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return _snapshots(self._pool)
        return asyncio.run_coroutine_threadsafe(_statistics(self._pool), loop).result(
            SNAPSHOT_TIMEOUT
        )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _statistics(
    pool: StatisticsSource,
) -> tuple[PoolStatistics, dict[str, PoolStatistics] | None]:
    return _snapshots(pool)


def _snapshots(pool: StatisticsSource) -> tuple[PoolStatistics, dict[str, PoolStatistics] | None]:
    """The whole pool's snapshot, and each role's when it has several (``qoper8.Pool`` and
    ``qoper8.sync.Pool`` take ``statistics(role=...)``)."""
    roles: tuple[str, ...] = getattr(pool, "roles", ())
    whole = pool.statistics()
    if len(roles) < 2:
        return whole, None
    by_role: Any = pool.statistics
    return whole, {name: by_role(role=name) for name in roles}
