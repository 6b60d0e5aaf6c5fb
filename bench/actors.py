"""Named actors (issue 12 item 8), measured against Ray's named actors in the same run.

    .venv/bin/pip install -e ".[bench,ray]"
    .venv/bin/python -m bench.actors [--reps 3] [--calls 2000] [--callers 16] [--no-ray]

One actor, the same class on both sides (``bench.workers.Counter``: ``add`` and ``echo``),
reached by name (``pool.actors.get`` / ``ray.get_actor``). Measured, each repetition, qoper8
and Ray taking turns (the first of each repetition alternates):

- round trip p50 and p99 of ``echo``, sequential calls from one caller; qoper8's plain
  ``pool.submit`` of the same no-op, in blocks alternating with the actor's calls;
- calls/s of ``add`` from one caller: sequential, and all in flight at once (pipelined);
- calls/s from many concurrent callers (16), each calling one after another;
- time to create: from the create call until the new actor's first call answered (Ray
  creates in the background: its first call waits for it), after a pause that lets each
  system have its warm process back; for qoper8 also with no idle child to adopt (its
  pool's children busy: a new child starts).

The bench's own heap (Ray's modules included) is collected and frozen before each timed
measure, on both sides (as ``python -m bench`` does: see bench/README.md).

Targets (issue 12): qoper8's p50 <= 0.1x Ray's, calls/s >= 5x Ray's, a local actor call's
p50 within 1.3x a plain submit's. Ray's figures are the better of its blocking API
(``ray.get``, threads) and its asyncio API for each measure. Prints medians with min and max
over repetitions, the CPU model, Python and Ray versions; writes ``bench/results/actors.md``
and ``actors.json``. Without Ray installed it says so and measures qoper8 alone (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import qoper8

from bench import actors_ray
from bench.scenarios import pct, quiet_heap

WORKER = "bench.workers:worker"
ACTOR = "bench.counter"
CHILDREN = 2  # the pool's own children (Ray gets num_cpus=2 to match)
RESULTS = Path(__file__).parent / "results"
# Sequential round trips are taken in blocks of this many, actor and submit in turn: both
# see the same moments of a noisy machine.
BLOCK = 100


@dataclasses.dataclass
class Sizes:
    calls: int = 2000  # sequential round trips (each side; qoper8's submits as many)
    pipelined: int = 5000  # calls in flight at once from one caller
    callers: int = 16  # concurrent callers
    per_caller: int = 200  # sequential calls each
    creates: int = 5  # actors created (each destroyed before the next)
    cold_creates: int = 2  # qoper8 creates with no idle child to adopt
    pause: float = 0.5  # seconds before each create
    busy_ms: float = 1000.0  # how long the pool's children are kept busy for a cold create
    reps: int = 3


# ---------------------------------------------------------------- qoper8


async def _create_ms(pool: qoper8.Pool, name: str) -> float:
    started = time.perf_counter()
    ref = await pool.actors.create(ACTOR, name)
    await ref.call("echo", value=0)
    took = (time.perf_counter() - started) * 1e3
    await pool.actors.destroy(name)
    return took


async def _cold_create_ms(pool: qoper8.Pool, name: str, busy_ms: float) -> float:
    """A create while both of the pool's children run a ``busy_ms`` action: none can be
    adopted, so the actor waits for a new actor child to start (its interpreter, the worker
    module). Only a new actor child takes it, even if a pool child frees meanwhile."""
    action = {"type": "sleep", "ms": busy_ms}
    busy = [asyncio.ensure_future(pool.submit(action)) for _ in range(CHILDREN)]
    async with asyncio.timeout(10):
        # No pool event says "every child busy"; the bench polls (it measures, never asserts).
        while pool.statistics().running < CHILDREN:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    known = {c.pid for c in pool.statistics().children}
    started = time.perf_counter()
    ref = await pool.actors.create(ACTOR, name)
    await ref.call("echo", value=0)
    took = (time.perf_counter() - started) * 1e3
    pid = ref.info().pid
    await pool.actors.destroy(name)
    await asyncio.gather(*busy)
    if pid in known:
        raise AssertionError("the cold create took a child that existed: it measured a warm one")
    return took


async def _round_trips(pool: qoper8.Pool, ref: Any, calls: int) -> dict[str, float]:
    actor: list[float] = []
    submit: list[float] = []
    elapsed = 0.0
    action = {"type": "echo", "value": 1}
    for start in range(0, calls, BLOCK):
        block = min(BLOCK, calls - start)
        began = time.perf_counter()
        for _ in range(block):
            t0 = time.perf_counter()
            await ref.call("echo", value=1)
            actor.append(time.perf_counter() - t0)
        elapsed += time.perf_counter() - began
        for _ in range(block):
            t0 = time.perf_counter()
            await pool.submit(action)
            submit.append(time.perf_counter() - t0)
    a_us = [s * 1e6 for s in actor]
    s_us = [s * 1e6 for s in submit]
    return {
        "p50_us": statistics.median(a_us),
        "p99_us": pct(a_us, 99),
        "sequential_per_s": len(actor) / elapsed,
        "submit_p50_us": statistics.median(s_us),
        "submit_p99_us": pct(s_us, 99),
    }


async def measure_qoper8(sizes: Sizes) -> dict[str, Any]:
    """qoper8's measures, on a pool of ``CHILDREN`` children started for them."""
    async with qoper8.Pool(WORKER, children=CHILDREN) as pool:
        for _ in range(20):
            await pool.submit({"type": "echo"})
        creates = []
        for i in range(sizes.creates):
            await asyncio.sleep(sizes.pause)
            creates.append(await _create_ms(pool, f"warm-{i}"))
        cold = []
        for i in range(sizes.cold_creates):
            await asyncio.sleep(sizes.pause)
            cold.append(await _cold_create_ms(pool, f"cold-{i}", sizes.busy_ms))

        owner = await pool.actors.create(ACTOR, "bench")
        ref = await pool.actors.get("bench")
        for _ in range(100):
            await ref.call("echo", value=1)
            await pool.submit({"type": "echo"})
        quiet_heap()
        out: dict[str, Any] = await _round_trips(pool, ref, sizes.calls)

        before = await ref.call("add", n=0)
        quiet_heap()
        started = time.perf_counter()
        await asyncio.gather(*(ref.call("add", n=1) for _ in range(sizes.pipelined)))
        out["pipelined_per_s"] = sizes.pipelined / (time.perf_counter() - started)

        async def caller() -> None:
            for _ in range(sizes.per_caller):
                await ref.call("add", n=1)

        quiet_heap()
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(sizes.callers)))
        elapsed = time.perf_counter() - started
        out["many_per_s"] = sizes.callers * sizes.per_caller / elapsed
        value = await owner.call("add", n=0)
        expected = before + sizes.pipelined + sizes.callers * sizes.per_caller
        if value != expected:
            raise AssertionError(f"qoper8's counter is {value}, expected {expected}")
        out["create_ms"] = statistics.median(creates) if creates else float("nan")
        out["cold_create_ms"] = statistics.median(cold) if cold else float("nan")
        await pool.actors.destroy("bench")
    return out


# ---------------------------------------------------------------- the run


def _ray_measures(ray: actors_ray.RaySide, sizes: Sizes) -> dict[str, Any]:
    both = ray.measure(sizes.calls, sizes.pipelined, sizes.callers, sizes.per_caller)
    creates = ray.create_ms(sizes.creates, sizes.pause)
    # Creation is the same from either API (.options(name=...).remote()): one column has it.
    both["sync"]["create_ms"] = statistics.median(creates) if creates else float("nan")
    return both


def run(sizes: Sizes, *, use_ray: bool) -> dict[str, Any]:
    """Every repetition's measures: ``{"qoper8": [...], "ray": [...], "ray_async": [...]}``
    (Ray's lists empty without Ray), and what the run ran on."""
    version = actors_ray.available() if use_ray else None
    results: dict[str, Any] = {"qoper8": [], "ray": [], "ray_async": []}
    meta = _machine(version)
    ray = actors_ray.RaySide() if version is not None else None
    if ray is not None:
        meta["ray_init_s"] = ray.init_s
    try:
        for rep in range(sizes.reps):
            order = ["qoper8", "ray"] if rep % 2 == 0 else ["ray", "qoper8"]
            for side in order:
                if side == "qoper8":
                    results["qoper8"].append(asyncio.run(measure_qoper8(sizes)))
                elif ray is not None:
                    both = _ray_measures(ray, sizes)
                    results["ray"].append(both["sync"])
                    results["ray_async"].append(both["async"])
            print(f"repetition {rep + 1} of {sizes.reps} done", file=sys.stderr, flush=True)
    finally:
        if ray is not None:
            ray.close()
    meta["loadavg_end"] = os.getloadavg()
    return {"meta": meta, "sizes": dataclasses.asdict(sizes), "results": results}


def _machine(ray_version: str | None) -> dict[str, Any]:
    from bench.callgrind import _commit, _cpu_model

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "ray": ray_version,
        "git_commit": _commit(),
        "loadavg_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    from bench import actors_report

    p = argparse.ArgumentParser(prog="python -m bench.actors", description=__doc__)
    defaults = Sizes()
    for field in dataclasses.fields(Sizes):
        p.add_argument(
            "--" + field.name.replace("_", "-"),
            type=type(getattr(defaults, field.name)),
            default=getattr(defaults, field.name),
        )
    p.add_argument("--no-ray", action="store_true", help="measure qoper8 alone")
    p.add_argument("--out", type=Path, default=RESULTS, help="where actors.md and .json go")
    args = p.parse_args(argv)
    sizes = Sizes(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Sizes)})
    if not args.no_ray and actors_ray.available() is None:
        print(
            "Ray is not installed: measuring qoper8 alone "
            '(pip install -e ".[ray]" for the comparison)',
            flush=True,
        )
    run_data = run(sizes, use_ray=not args.no_ray)
    given = sys.argv[1:] if argv is None else argv
    run_data["meta"]["command"] = " ".join(["python -m bench.actors", *given])
    text = actors_report.markdown(run_data)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "actors.md").write_text(text + "\n")
    (args.out / "actors.json").write_text(json.dumps(run_data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
