"""``python -m workers``: a real run of both example worker modules on local pools.

An asyncio program keeps a 1 ms heartbeat on its event loop while four children answer
SQLite queries and two crunch CPU-bound work, and reports how late the heartbeat fired while
the pools served. (While six interpreters boot at once on a small machine, the master only
gets its share of the CPUs; the heartbeat starts once the pools are ready.)
"""

from __future__ import annotations

import asyncio
import time

import qoper8


async def heartbeat(lags: list[float], stop: asyncio.Event) -> None:
    """Measure how late a 1 ms timer fires: the event loop's responsiveness."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - before - 0.001)


async def main() -> None:
    lags: list[float] = []
    stop = asyncio.Event()
    started = time.perf_counter()
    async with (
        qoper8.Pool("workers.users:worker", children=4) as users,
        qoper8.Pool("workers.cpu:worker", children=2) as cpu,
    ):
        print(f"pools ready in {time.perf_counter() - started:.2f}s")
        beat = asyncio.create_task(heartbeat(lags, stop))
        print("user 1:", await users.submit({"type": "user.get", "id": 1}, timeout=5.0))
        found = await asyncio.gather(
            *(users.submit({"type": "user.get", "id": i % 4 + 1}) for i in range(1000))
        )
        names = sorted({str(u["name"]) for u in found if isinstance(u, dict)})
        print(f"1000 concurrent queries answered; names seen: {names}")
        try:
            await users.submit({"type": "user.get", "id": 999})
        except qoper8.JobFailed as err:
            print(f"user 999: {type(err).__name__}: {err.remote_type}: {err.remote_message}")
        primes = await asyncio.gather(
            *(cpu.submit({"type": "primes.count", "below": n}) for n in (10**6, 2 * 10**6))
        )
        print(f"primes below 1e6 and 2e6: {primes}")
        stats = users.statistics()
        p50 = (stats.run_time.p50 or 0.0) * 1e6
        print(
            f"users pool: {stats.completed} completed, {stats.failed} failed, "
            f"run time p50 {p50:.0f} us, "
            f"children {[c.jobs_done for c in stats.children]} jobs each"
        )
        stop.set()
        await beat
    lags.sort()
    print(
        f"event loop lag while the pools served: p50 {lags[len(lags) // 2] * 1e3:.2f} ms, "
        f"p99 {lags[int(len(lags) * 0.99)] * 1e3:.2f} ms, max {lags[-1] * 1e3:.2f} ms "
        f"over {len(lags)} ticks (the max includes creating 1,000 tasks at once)"
    )


if __name__ == "__main__":
    asyncio.run(main())
