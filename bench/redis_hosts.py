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
import os
import sys
import time
import uuid
from typing import Any

import qoper8

from bench.redis_vs_rq import DB, _stop_group, cpu_model, start_system

SLEEP_FUNC = "bench.redis_vs_rq.sleep_ms"


async def _enqueue(r: Any, queue: str, func: str, m: int, kwargs: dict[str, Any]) -> None:
    from qoper8._redis import JOB_PREFIX, QUEUE_PREFIX, QUEUES_KEY, encode_job

    async with r.pipeline(transaction=False) as pipe:
        for _ in range(m):
            job_id = uuid.uuid4().hex
            action = {"type": func, **kwargs}
            mapping = encode_job(job_id, queue, action, timeout=None, reply_key=None)
            pipe.hset(JOB_PREFIX + job_id, mapping=mapping)
            pipe.rpush(QUEUE_PREFIX + queue, job_id)
        pipe.sadd(QUEUES_KEY, QUEUE_PREFIX + queue)
        await pipe.execute()


async def _wait_finished(r: Any, queue: str, m: int) -> None:
    # polling the registry every 2 ms: seconds-long runs, so 0.1 % granularity
    while await r.zcard(f"rq:finished:{queue}") + await r.zcard(f"rq:failed:{queue}") < m:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    failed = await r.zcard(f"rq:failed:{queue}")
    if failed:
        raise RuntimeError(f"{failed} jobs failed")


async def _wait_hosts(r: Any, queue: str, n: int) -> None:
    """Until ``n`` qoper8 hosts registered for the queue (polled: nothing notifies)."""
    deadline = time.monotonic() + 60
    while await r.zcard(f"qoper8:consumers:{queue}") < n:
        if time.monotonic() > deadline:
            raise RuntimeError("hosts did not come up")
        await asyncio.sleep(0.05)


async def hosts_efficiency(
    r: Any, url: str, hosts: int, children: int, job_ms: float, per_child: int
) -> float:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    procs = [p for _ in range(hosts) for p in start_system("qoper8", url, queue, children)]
    try:
        await _wait_hosts(r, queue, hosts)
        await _enqueue(r, queue, SLEEP_FUNC, hosts * children * 4, {"ms": 1})  # warm up
        await _wait_finished(r, queue, hosts * children * 4)
        await r.delete(f"rq:finished:{queue}")
        m = hosts * children * per_child
        start = time.perf_counter()
        await _enqueue(r, queue, SLEEP_FUNC, m, {"ms": job_ms})
        await _wait_finished(r, queue, m)
        seconds = time.perf_counter() - start
    finally:
        _stop_group(procs)
        keys = [k async for k in r.scan_iter(f"*{queue}*")]
        if keys:
            await r.delete(*keys)
    return m * job_ms / 1000 / (hosts * children) / seconds


async def local_efficiency(children: int, job_ms: float, per_child: int) -> float:
    async with qoper8.Pool("bench.redis_vs_rq:worker", children=children) as pool:
        await asyncio.gather(
            *(pool.submit({"type": "sleep_ms", "ms": 1}) for _ in range(children * 4))
        )
        m = children * per_child
        start = time.perf_counter()
        await asyncio.gather(*(pool.submit({"type": "sleep_ms", "ms": job_ms}) for _ in range(m)))
        seconds = time.perf_counter() - start
    return m * job_ms / 1000 / children / seconds


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
            f"{args.per_child} per child, all enqueued at once.",
            "",
            "| hosts | efficiency | gap per job (ms) |",
            "|---:|---:|---:|",
            f"| local Pool | {local:.3f} | {args.job_ms * (1 / local - 1):.2f} |",
        ]
        for h in args.hosts:
            eff = await hosts_efficiency(r, url, h, args.children, args.job_ms, args.per_child)
            lines.append(f"| {h} | {eff:.3f} | {args.job_ms * (1 / eff - 1):.2f} |")
            print(f"# {h} hosts: {eff:.3f}", file=sys.stderr)
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
    parser.add_argument("--parts", nargs="+", default=["hosts", "client"])
    parser.add_argument("--hosts", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--job-ms", type=float, default=20.0)
    parser.add_argument("--per-child", type=int, default=100)
    parser.add_argument("--submits", type=int, default=3000)
    args = parser.parse_args(argv)
    print("\n".join(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
