"""Autoscaling (issue 13 item 2), measured: a bursty load (idle, a burst, idle) on a pool of
``(1, 8)`` against fixed pools of 1 and of 8, in the same run.

    .venv/bin/python -m bench.autoscale [--burst 200] [--ms 20] [--rounds 3]

Per pool: the burst's p50/p99 latency (submit to result) and the child-seconds it spent over
the whole run (live children integrated over time, sampled every 10 ms). Targets: the
autoscaled pool's p99 within 1.5x of the fixed 8's, its child-seconds within 1.5x of the fixed
1's plus the burst's own work (jobs x ms). Medians over rounds, with the CPU model.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import qoper8

from bench.callgrind import _cpu_model

WORKER = "bench.workers:worker"
IDLE_BEFORE = 1.0
IDLE_AFTER = 3.0
IDLE_TIMEOUT = 1.0
SAMPLE = 0.01


async def _run(children: Any, burst: int, ms: float) -> dict[str, float]:
    async with qoper8.Pool(WORKER, children=children, idle_timeout=IDLE_TIMEOUT) as pool:
        child_seconds = 0.0
        stop = asyncio.Event()

        async def integrate() -> None:
            nonlocal child_seconds
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(SAMPLE)
                now = time.perf_counter()
                live = sum(
                    1 for c in pool.statistics().children if c.state in ("starting", "idle", "busy")
                )
                child_seconds += live * (now - last)
                last = now

        meter = asyncio.create_task(integrate())
        await asyncio.sleep(IDLE_BEFORE)

        async def one() -> float:
            t0 = time.perf_counter()
            await pool.submit({"type": "sleep", "ms": ms}, timeout=120)
            return time.perf_counter() - t0

        latencies = sorted(await asyncio.gather(*(one() for _ in range(burst))))
        await asyncio.sleep(IDLE_AFTER)
        stop.set()
        await meter
    n = len(latencies)
    return {
        "p50": latencies[n // 2],
        "p99": latencies[min(n - 1, int(n * 0.99))],
        "child_seconds": child_seconds,
    }


async def main_async(burst: int, ms: float, rounds: int) -> None:
    pools: list[tuple[str, Any]] = [("fixed 1", 1), ("fixed 8", 8), ("autoscaled (1, 8)", (1, 8))]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in pools}
    for r in range(rounds):
        order = pools if r % 2 == 0 else list(reversed(pools))
        for name, children in order:
            results[name].append(await _run(children, burst, ms))
    work = burst * ms / 1000
    med = {
        name: {k: statistics.median(x[k] for x in rows) for k in rows[0]}
        for name, rows in results.items()
    }
    print(
        f"CPU {_cpu_model()}, Python {sys.version.split()[0]}, {rounds} rounds; burst of "
        f"{burst} x {ms:g} ms ({work:.1f} child-s of work), {IDLE_BEFORE:g} s idle before, "
        f"{IDLE_AFTER:g} s after, idle_timeout {IDLE_TIMEOUT:g} s"
    )
    print("| pool | p50 ms | p99 ms (min-max) | child-seconds (min-max) |")
    print("|---|---:|---:|---:|")
    for name, m in med.items():
        rows = results[name]
        p99s = [r["p99"] * 1000 for r in rows]
        secs = [r["child_seconds"] for r in rows]
        print(
            f"| {name} | {m['p50'] * 1000:.0f} | {m['p99'] * 1000:.0f} "
            f"({min(p99s):.0f}-{max(p99s):.0f}) | {m['child_seconds']:.2f} "
            f"({min(secs):.2f}-{max(secs):.2f}) |"
        )
    auto, eight, one = med["autoscaled (1, 8)"], med["fixed 8"], med["fixed 1"]
    budget = one["child_seconds"] + work
    print()
    print(
        f"p99 autoscaled / fixed 8: {auto['p99'] / eight['p99']:.2f} (target <= 1.5); "
        f"child-seconds autoscaled / (fixed 1 + work): {auto['child_seconds'] / budget:.2f} "
        f"(target <= 1.5)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.burst, args.ms, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
