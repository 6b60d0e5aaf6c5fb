"""``python -m bench.redis_vs_rq``: qoper8's Redis mode against rq's own workers and the
other Redis-backed queues (dramatiq, arq), same run.

Same Redis, same number of processes. rq and qoper8 take the same rq jobs (rq's job hash with
the JSON serializer, naming ``bench.redis_vs_rq.noop`` or ``bench.redis_vs_rq.sleep5``): a
qoper8 host (one master, N warm children, one RedisConsumer); N forking rq ``Worker``
processes; N rq ``SimpleWorker`` processes; ``rq worker-pool -n N``. dramatiq (Redis broker,
N processes of one thread) and arq (N processes) take the same jobs as their own messages
(``bench/redis_peers.py``).

* throughput: workers up and idle, M jobs enqueued in one pipeline, until all M are done;
* latency (qoper8 and rq): N closed-loop clients, each enqueues one job and blocks (XREAD) on
  rq's results stream for it; p50/p99 of enqueue-to-result; for qoper8 also ``RedisPool``;
* Redis commands per job on the consumer side, counted with MONITOR on a small sample.

It asserts nothing and prints a markdown table. ``--host URL QUEUE N`` is the qoper8 host
it starts (a Pool plus a RedisConsumer), so this module is also the worker module.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import qoper8

from bench.redis_measure import (
    commands_per_job,
    latency,
    peer_throughput,
    private_redis,
    redis_pool_latency,
    throughput,
)

worker = qoper8.Worker()


@worker.handler("noop")
def noop() -> None:
    return None


@worker.handler("sleep5")
def sleep5() -> None:
    time.sleep(0.005)


@worker.handler("sleep_ms")
def sleep_ms(ms: float) -> None:
    time.sleep(ms / 1000)


@worker.handler("stamped_sleep_ms")
def stamped_sleep_ms(ms: float) -> list[float]:
    """Sleeps like sleep_ms and says when, by whom: the gaps between jobs, per child."""
    start = time.time()
    time.sleep(ms / 1000)
    return [os.getpid(), start, time.time()]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return "?"


JOBS = {"noop": "bench.redis_vs_rq.noop", "5ms": "bench.redis_vs_rq.sleep5"}
DB = 12  # a database of our own on the shared Redis
SYSTEMS = ["qoper8", "rq SimpleWorker", "rq worker-pool", "rq Worker", "dramatiq", "arq"]
PEERS = ("dramatiq", "arq")  # not rq's data model: bench/redis_peers.py drives them


@dataclass
class Row:
    system: str
    job: str
    jobs: int
    seconds: float
    latencies: list[float]
    commands_per_job: float | None = None
    spread: tuple[float, float] | None = None  # min and max throughput over repetitions

    @property
    def throughput(self) -> float:
        return self.jobs / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


# ---------------------------------------------------------------- the systems under test
def _start_group(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env={**os.environ, **(env or {})},
    )


def _stop_group(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def start_system(system: str, url: str, queue: str, n: int) -> list[subprocess.Popen[bytes]]:
    py = sys.executable
    rq = shutil.which("rq", path=os.path.dirname(py)) or "rq"
    common = ["-u", url, "-S", "json", "-q"]
    if system == "qoper8":
        return [_start_group([py, "-m", "bench.redis_vs_rq", "--host", url, queue, str(n)])]
    if system == "rq Worker":
        return [_start_group([rq, "worker", *common, queue]) for _ in range(n)]
    if system == "rq SimpleWorker":
        return [
            _start_group([rq, "worker", *common, "-w", "rq.worker.SimpleWorker", queue])
            for _ in range(n)
        ]
    if system == "rq worker-pool":
        return [_start_group([rq, "worker-pool", *common, "-n", str(n), queue])]
    if system in PEERS:
        from bench import redis_peers

        env = redis_peers.environment(system, url, queue)
        return [_start_group(args, env) for args in redis_peers.command(system, py, n)]
    raise ValueError(system)


async def wait_ready(r: Any, system: str, queue: str, n: int) -> None:
    """Until the system's consumers are registered with Redis and idle."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if system == "qoper8":
            if await r.zcard(f"qoper8:consumers:{queue}") >= 1:
                return
        elif system in PEERS:
            from bench import redis_peers

            if await redis_peers.ready(r, system, queue, n):
                return
        else:
            count = 0
            for key in await r.smembers(f"rq:workers:{queue}"):
                if await r.hget(key, "state") == b"idle":
                    count += 1
            if count >= n:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{system} did not come up")


async def measure_peer(r: Any, system: str, queue: str, job: str, func: str, args: Any) -> Row:
    """dramatiq or arq: throughput only (neither keeps a result to wait for by default)."""
    await peer_throughput(r, system, queue, func, args.processes * 20)  # warm up
    m = args.jobs
    seconds = await peer_throughput(r, system, queue, func, m)
    print(f"# {system} {job}: {m / seconds:.0f} jobs/s", file=sys.stderr)
    return Row(system, job, m, seconds, [], None)


# ---------------------------------------------------------------- the run
async def measure_system(r: Any, url: str, system: str, args: Any, count: bool) -> list[Row]:
    """Start the system, measure both jobs, stop it, delete what it left in Redis."""
    rows: list[Row] = []
    for job, func in JOBS.items():
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        procs = start_system(system, url, queue, args.processes)
        try:
            await wait_ready(r, system, queue, args.processes)
            if system in PEERS:
                name = func.rsplit(".", 1)[1]
                rows.append(await measure_peer(r, system, queue, job, name, args))
                continue
            forking = system in ("rq Worker", "rq worker-pool")
            m = args.jobs // (5 if forking else 1)
            # warm up (imports, first job per child), then measure
            await throughput(r, queue, func, args.processes * 4)
            await r.delete(f"rq:finished:{queue}")
            seconds = await throughput(r, queue, func, m)
            await r.delete(f"rq:finished:{queue}")
            lat = await latency(r, queue, func, args.latency_jobs, args.processes)
            await r.delete(f"rq:finished:{queue}")
            cmds = None
            if count:
                cmds = await commands_per_job(url, r, queue, func, 100 if forking else 300)
                await r.delete(f"rq:finished:{queue}")
            rows.append(Row(system, job, m, seconds, lat, cmds))
            print(f"# {system} {job}: {m / seconds:.0f} jobs/s", file=sys.stderr)
            if system == "qoper8":
                lat = await redis_pool_latency(url, queue, func, args.latency_jobs, args.processes)
                rows.append(Row("qoper8 RedisPool", job, m, seconds, lat, None))
        finally:
            _stop_group(procs)
            patterns = [f"*{queue}*"]
            if system in PEERS:
                from bench import redis_peers

                patterns = redis_peers.keys(system, queue)
            for pattern in patterns:
                keys = [k async for k in r.scan_iter(pattern)]
                if keys:
                    await r.delete(*keys)
    return rows


async def run(args: argparse.Namespace) -> list[Row]:
    """``--reps`` repetitions, each system once per repetition, each repetition starting
    with the next system (none always runs first on a machine whose load drifts); every
    (system, job) reports its median repetition, with the others' spread."""
    import redis.asyncio as aioredis

    url = f"{args.redis.rstrip('/')}/{DB}" if args.redis.count("/") == 2 else args.redis
    r = aioredis.Redis.from_url(url)
    seen: dict[tuple[str, str], list[Row]] = {}
    systems = list(args.systems)
    for rep in range(args.reps):
        k = rep % len(systems)
        for system in systems[k:] + systems[:k]:
            count = args.count_commands and rep == 0
            for row in await measure_system(r, url, system, args, count):
                seen.setdefault((row.system, row.job), []).append(row)
    await r.aclose()
    rows = []
    for runs in seen.values():
        ordered = sorted(runs, key=lambda row: row.throughput)
        median = ordered[(len(ordered) - 1) // 2]
        median.spread = (ordered[0].throughput, ordered[-1].throughput)
        median.commands_per_job = next(
            (x.commands_per_job for x in runs if x.commands_per_job is not None), None
        )
        rows.append(median)
    order = {s: i for i, s in enumerate([*SYSTEMS[:1], "qoper8 RedisPool", *SYSTEMS[1:]])}
    rows.sort(key=lambda row: (order.get(row.system, 99), list(JOBS).index(row.job)))
    return rows


def table(rows: list[Row], processes: int) -> str:
    base = {(row.system, row.job): row for row in rows}
    lines = [
        f"{processes} processes each side; throughput: M jobs enqueued at once; latency: "
        f"{processes} closed-loop clients, enqueue to result (p50/p99).",
        "",
        "| system | job | throughput (jobs/s) | p50 ms | p99 ms | qoper8 throughput x "
        "| qoper8 p50 x faster | consumer commands/job |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        q = base.get(("qoper8", row.job))
        ratio = f"{q.throughput / row.throughput:.1f}" if q and row.system != "qoper8" else ""
        lat_ratio = f"{row.pct(0.5) / q.pct(0.5):.1f}" if q and row.system != "qoper8" else ""
        if row.system == "qoper8 RedisPool":
            ratio = lat_ratio = ""
        tput = f"{row.throughput:,.0f}" if row.system != "qoper8 RedisPool" else "(same run)"
        if (
            row.spread is not None
            and row.spread[0] != row.spread[1]
            and row.system != "qoper8 RedisPool"
        ):
            tput += f" ({row.spread[0]:,.0f}–{row.spread[1]:,.0f})"
        cmds = f"{row.commands_per_job:.1f}" if row.commands_per_job is not None else ""
        p50, p99 = (f"{row.pct(q):.2f}" if row.latencies else "–" for q in (0.5, 0.99))
        if not row.latencies:
            lat_ratio = ""
        lines.append(
            f"| {row.system} | {row.job} | {tput} | {p50} | {p99} "
            f"| {ratio} | {lat_ratio} | {cmds} |"
        )
    return "\n".join(lines)


async def host(url: str, queue: str, children: int) -> None:
    from qoper8._redis import RedisConsumer

    async with qoper8.Pool("bench.redis_vs_rq:worker", children=children) as pool:
        consumer = RedisConsumer(pool, url=url, queue=queue)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(consumer.stop()))
        await consumer.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_vs_rq", description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument(
        "--private-redis",
        action="store_true",
        help="start a redis-server of its own (alone with the bench) instead of --redis",
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=4000, help="throughput jobs (forking: /5)")
    parser.add_argument("--latency-jobs", type=int, default=400)
    parser.add_argument(
        "--systems",
        nargs="+",
        default=SYSTEMS,
        choices=SYSTEMS,
        metavar="SYSTEM",
        help=f"which to run (default: all of {SYSTEMS})",
    )
    parser.add_argument("--no-count-commands", dest="count_commands", action="store_false")
    parser.add_argument("--reps", type=int, default=1, help="repetitions, alternating")
    parser.add_argument("--host", nargs=3, metavar=("URL", "QUEUE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host:
        asyncio.run(host(args.host[0], args.host[1], int(args.host[2])))
        return
    if args.private_redis:
        with private_redis() as args.redis:
            rows = asyncio.run(run(args))
    else:
        rows = asyncio.run(run(args))
    print(table(rows, args.processes))
    print()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs ({cpu_model()}), "
        f"{args.reps} repetition(s), median shown (min–max); p50 x = the system's p50 / "
        "qoper8's p50."
    )


if __name__ == "__main__":
    main()
