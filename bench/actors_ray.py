"""Ray's side of ``bench.actors``: the same measures on Ray's named actors, in this process.

Ray runs in-process (``ray.init(num_cpus=2)``: its GCS, raylet and workers start beside the
bench and stay up for the whole run, so qoper8 is measured with them running too). The actor
is ``bench.workers.Counter`` itself, wrapped by ``ray.remote``: the very class qoper8 runs.

Ray is driven both ways its users drive it: blocking (``ray.get``, from threads for many
callers) and from asyncio (``await handle.method.remote()``, tasks for many callers). The
report compares qoper8 with the better of the two for each measure.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

from bench.scenarios import quiet_heap
from bench.workers import Counter

NUM_CPUS = 2  # the 2 children qoper8's pool has: the same number of worker CPUs


def available() -> str | None:
    """Ray's version, or None when it is not installed (the bench then measures qoper8)."""
    try:
        import ray
    except ImportError:
        return None
    return str(ray.__version__)


class RaySide:
    """A Ray instance started in this process, and the measures taken on it."""

    def __init__(self) -> None:
        import ray

        self.ray = ray
        started = time.perf_counter()
        ray.init(
            num_cpus=NUM_CPUS,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            configure_logging=False,
        )
        self.init_s = time.perf_counter() - started
        self.remote_counter = ray.remote(Counter)
        self._created = 0

    def close(self) -> None:
        self.ray.shutdown()

    def _new_name(self) -> str:
        self._created += 1
        return f"bench-{self._created}"

    # ------------------------------------------------------------ create

    def create_ms(self, count: int, pause: float) -> list[float]:
        """Milliseconds from ``.options(name=...).remote()`` until the new actor's first
        call answered (Ray creates it in the background: the first call waits for it),
        ``count`` times, each after ``pause`` seconds; each actor is killed afterwards."""
        ray = self.ray
        times = []
        for _ in range(count):
            time.sleep(pause)
            started = time.perf_counter()
            handle = self.remote_counter.options(name=self._new_name()).remote(0)
            ray.get(handle.echo.remote(0))
            times.append((time.perf_counter() - started) * 1e3)
            ray.kill(handle)
        return times

    # ------------------------------------------------------------ one actor, many calls

    def measure(self, calls: int, pipelined: int, callers: int, per_caller: int) -> dict[str, Any]:
        """Round trips, calls/s from one caller and from ``callers`` concurrent ones, on one
        named actor reached by ``ray.get_actor``; blocking and asyncio."""
        ray = self.ray
        name = self._new_name()
        owner = self.remote_counter.options(name=name).remote(0)
        handle = ray.get_actor(name)
        for _ in range(100):  # warm: its process is up and every path has run
            ray.get(handle.echo.remote(1))
        out: dict[str, Any] = {}

        quiet_heap()
        samples = []
        started = time.perf_counter()
        for _ in range(calls):
            t0 = time.perf_counter()
            ray.get(handle.echo.remote(1))
            samples.append(time.perf_counter() - t0)
        out["sync"] = _round_trips(samples, time.perf_counter() - started)

        before = ray.get(handle.add.remote(0))
        quiet_heap()
        started = time.perf_counter()
        ray.get([handle.add.remote(1) for _ in range(pipelined)])
        out["sync"]["pipelined_per_s"] = pipelined / (time.perf_counter() - started)

        def caller() -> None:
            for _ in range(per_caller):
                ray.get(handle.add.remote(1))

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        quiet_heap()
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out["sync"]["many_per_s"] = callers * per_caller / (time.perf_counter() - started)

        out["async"] = asyncio.run(_measure_async(handle, calls, pipelined, callers, per_caller))
        expected = before + 2 * (pipelined + callers * per_caller)
        value = ray.get(handle.add.remote(0))
        if value != expected:
            raise AssertionError(f"Ray's counter is {value}, expected {expected}")
        ray.kill(owner)
        return out


async def _measure_async(
    handle: Any, calls: int, pipelined: int, callers: int, per_caller: int
) -> dict[str, float]:
    for _ in range(100):
        await handle.echo.remote(1)
    quiet_heap()
    samples = []
    started = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        await handle.echo.remote(1)
        samples.append(time.perf_counter() - t0)
    out = _round_trips(samples, time.perf_counter() - started)

    quiet_heap()
    started = time.perf_counter()
    await asyncio.gather(*(handle.add.remote(1) for _ in range(pipelined)))
    out["pipelined_per_s"] = pipelined / (time.perf_counter() - started)

    async def caller() -> None:
        for _ in range(per_caller):
            await handle.add.remote(1)

    quiet_heap()
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    out["many_per_s"] = callers * per_caller / (time.perf_counter() - started)
    return out


def _round_trips(samples: list[float], elapsed: float) -> dict[str, float]:
    from bench.scenarios import pct

    us = [s * 1e6 for s in samples]
    return {
        "p50_us": statistics.median(us),
        "p99_us": pct(us, 99),
        "sequential_per_s": len(samples) / elapsed,
    }
