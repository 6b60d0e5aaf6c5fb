"""``python -m bench.redis_hosts``: Redis mode's own costs (issue 14, item 6), one run.

* hosts: 1 to 4 qoper8 hosts of 2 children each on one Redis, ``--job-ms`` (20) jobs
  enqueued all at once; efficiency = ideal time (jobs x job time / children) / actual, beside
  the local ``qoper8.Pool``'s with the same children and jobs. ``gap`` is what a child loses
  between one job and the next: job time x (1 / efficiency - 1).
* client: the CPU a ``RedisPool`` spends per submit (this process's CPU time over M
  no-op submits, 64 in flight, one host of 2 children answering), and its submits/s.

It asserts nothing and prints a markdown table with the CPU model.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import qoper8

from bench.redis_measure import private_redis
from bench.redis_vs_rq import DB, _stop_group, cpu_model, start_system

SLEEP_FUNC = "bench.redis_vs_rq.sleep_ms"
STAMPED_FUNC = "bench.redis_vs_rq.stamped_sleep_ms"


async def _enqueue(
    r: Any, queue: str, func: str, m: int, kwargs: dict[str, Any], reply_key: str | None = None
) -> None:
    from qoper8._redis import JOB_PREFIX, QUEUE_PREFIX, QUEUES_KEY, encode_job

    async with r.pipeline(transaction=False) as pipe:
        for _ in range(m):
            job_id = uuid.uuid4().hex
            action = {"type": func, **kwargs}
            mapping = encode_job(job_id, queue, action, timeout=None, reply_key=reply_key)
            pipe.hset(JOB_PREFIX + job_id, mapping=mapping)
            pipe.rpush(QUEUE_PREFIX + queue, job_id)
        pipe.sadd(QUEUES_KEY, QUEUE_PREFIX + queue)
        await pipe.execute()


async def _wait_hosts(r: Any, queue: str, n: int) -> None:
    """Until ``n`` qoper8 hosts registered for the queue (polled: nothing notifies)."""
    deadline = time.monotonic() + 60
    while await r.zcard(f"qoper8:consumers:{queue}") < n:
        if time.monotonic() > deadline:
            raise RuntimeError("hosts did not come up")
        await asyncio.sleep(0.05)


async def _replies(r: Any, key: str, m: int) -> list[Any]:
    """The results of ``m`` jobs, as the hosts push them to ``key`` (blocking, no polling)."""
    out: list[Any] = []
    while len(out) < m:
        got = await r.blpop([key], 30)
        if got is None:
            raise RuntimeError(f"{m - len(out)} jobs did not finish within 30 s")
        reply = orjson.loads(got[1])
        if "result" not in reply:
            raise RuntimeError(f"a job failed: {reply}")
        out.append(reply["result"])
    return out


@dataclass
class Run:
    """One batch of stamped jobs: efficiency by the bench's clock (enqueue to last outcome)
    and by the children's (first start to last end), and each child's gaps between jobs."""

    wall: float
    children: float
    gaps_ms: list[float]

    @classmethod
    def of(cls, stamps: list[Any], ideal: float, wall_seconds: float) -> Run:
        by_child: dict[int, list[tuple[float, float]]] = {}
        for pid, start, end in stamps:
            by_child.setdefault(pid, []).append((start, end))
        gaps = []
        for jobs in by_child.values():
            jobs.sort()
            gaps += [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(jobs)]
        span = max(e for _, _, e in stamps) - min(s for _, s, _ in stamps)
        return cls(ideal / wall_seconds, ideal / span, sorted(gaps))

    def row(self, name: str) -> str:
        g = self.gaps_ms
        return (
            f"| {name} | {self.wall:.3f} | {self.children:.3f} | {g[len(g) // 2]:.2f} "
            f"| {statistics.mean(g):.2f} | {g[int(len(g) * 0.9)]:.2f} |"
        )


async def hosts_efficiency(
    r: Any, url: str, hosts: int, children: int, job_ms: float, per_child: int
) -> Run:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    reply_key = f"qoper8:reply:{queue}"
    procs = [p for _ in range(hosts) for p in start_system("qoper8", url, queue, children)]
    try:
        await _wait_hosts(r, queue, hosts)
        warm = hosts * children * 4
        await _enqueue(r, queue, SLEEP_FUNC, warm, {"ms": 1}, reply_key)
        await _replies(r, reply_key, warm)
        m = hosts * children * per_child
        start = time.perf_counter()
        await _enqueue(r, queue, STAMPED_FUNC, m, {"ms": job_ms}, reply_key)
        stamps = await _replies(r, reply_key, m)
        seconds = time.perf_counter() - start
    finally:
        _stop_group(procs)
        keys = [k async for k in r.scan_iter(f"*{queue}*")]
        if keys:
            await r.delete(*keys)
    return Run.of(stamps, m * job_ms / 1000 / (hosts * children), seconds)


async def local_efficiency(children: int, job_ms: float, per_child: int) -> Run:
    async with qoper8.Pool("bench.redis_vs_rq:worker", children=children) as pool:
        await asyncio.gather(
            *(pool.submit({"type": "sleep_ms", "ms": 1}) for _ in range(children * 4))
        )
        m = children * per_child
        start = time.perf_counter()
        action = {"type": "stamped_sleep_ms", "ms": job_ms}
        stamps = await asyncio.gather(*(pool.submit(action) for _ in range(m)))
        seconds = time.perf_counter() - start
    return Run.of(list(stamps), m * job_ms / 1000 / children, seconds)


async def client_cost(r: Any, url: str, m: int, in_flight: int) -> tuple[float, float]:
    """(µs of this process's CPU per RedisPool submit, submits/s)."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    procs = start_system("qoper8", url, queue, 2)
    try:
        await _wait_hosts(r, queue, 1)
        async with qoper8.RedisPool(url, queue=queue) as pool:
            sem = asyncio.Semaphore(in_flight)

            async def one() -> None:
                async with sem:
                    await pool.submit({"type": "noop"}, timeout=30)

            await asyncio.gather(*(one() for _ in range(in_flight * 2)))  # warm up
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one() for _ in range(m)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        _stop_group(procs)
        keys = [k async for k in r.scan_iter(f"*{queue}*")]
        if keys:
            await r.delete(*keys)
    return cpu / m * 1e6, m / wall


async def run(args: argparse.Namespace) -> list[str]:
    import redis.asyncio as aioredis

    url = f"{args.redis.rstrip('/')}/{DB}" if args.redis.count("/") == 2 else args.redis
    r = aioredis.Redis.from_url(url)
    lines = []
    if "hosts" in args.parts:
        local = await local_efficiency(args.children, args.job_ms, args.per_child)
        lines += [
            f"{args.children} children per host, {args.job_ms:g} ms jobs, "
            f"{args.per_child} per child, all enqueued at once. Efficiency = ideal time / "
            "actual: wall, from the enqueue to the last outcome; children, from the first "
            "start to the last end as the children stamped them. Gap: a child's idle time "
            "between the end of one job and the start of its next (ms).",
            "",
            "| hosts | efficiency (wall) | efficiency (children) | gap p50 | gap mean | gap p90 |",
            "|---|---:|---:|---:|---:|---:|",
            local.row("local Pool"),
        ]
        for h in args.hosts:
            run = await hosts_efficiency(r, url, h, args.children, args.job_ms, args.per_child)
            lines.append(run.row(f"{h} host{'s' if h > 1 else ''}"))
            print(f"# {h} hosts: {run.wall:.3f} {run.children:.3f}", file=sys.stderr)
        lines.append("")
    if "client" in args.parts:
        us, rate = await client_cost(r, url, args.submits, 64)
        lines += [
            f"RedisPool: {us:.0f} µs CPU per submit, {rate:,.0f} submits/s "
            f"({args.submits} no-op submits, 64 in flight, one host of 2 children)",
            "",
        ]
    await r.aclose()
    lines.append(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs ({cpu_model()}), one run."
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_hosts", description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument(
        "--private-redis",
        action="store_true",
        help="start a redis-server of its own (alone with the bench) instead of --redis",
    )
    parser.add_argument("--parts", nargs="+", default=["hosts", "client"])
    parser.add_argument("--hosts", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--job-ms", type=float, default=20.0)
    parser.add_argument("--per-child", type=int, default=100)
    parser.add_argument("--submits", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.private_redis:
        with private_redis() as args.redis:
            print("\n".join(asyncio.run(run(args))))
        return
    print("\n".join(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
