"""The measurements of ``bench.redis_vs_rq``: a batch's throughput (rq's data model, or a
peer's own), closed-loop latency on rq's results stream and through ``RedisPool``, and the
Redis commands a consumer sends per job (MONITOR)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
import uuid
from typing import TYPE_CHECKING, Any

import qoper8

if TYPE_CHECKING:
    from collections.abc import Iterator


async def throughput(r: Any, queue: str, func: str, m: int) -> float:
    from qoper8._redis import JOB_PREFIX, QUEUE_PREFIX, QUEUES_KEY, encode_job

    ids = [uuid.uuid4().hex for _ in range(m)]
    start = time.perf_counter()
    async with r.pipeline(transaction=False) as pipe:
        for job_id in ids:
            mapping = encode_job(job_id, queue, {"type": func}, timeout=None, reply_key=None)
            pipe.hset(JOB_PREFIX + job_id, mapping=mapping)
            pipe.rpush(QUEUE_PREFIX + queue, job_id)
        pipe.sadd(QUEUES_KEY, QUEUE_PREFIX + queue)
        await pipe.execute()
    # polling the registries: rq workers notify nobody (2 ms granularity on seconds-long runs)
    while await r.zcard(f"rq:finished:{queue}") + await r.zcard(f"rq:failed:{queue}") < m:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    seconds = time.perf_counter() - start
    failed = await r.zcard(f"rq:failed:{queue}")
    if failed:
        raise RuntimeError(f"{failed} jobs failed")
    return seconds


async def peer_throughput(r: Any, system: str, queue: str, job: str, m: int) -> float:
    from bench import redis_peers

    start = time.perf_counter()
    await redis_peers.enqueue(r, system, queue, job, m)
    while await redis_peers.remaining(r, system, queue) > 0:  # noqa: ASYNC110 (as above)
        await asyncio.sleep(0.002)
    return time.perf_counter() - start


async def latency(r: Any, queue: str, func: str, m: int, clients: int) -> list[float]:
    from qoper8._redis import encode_job

    script = r.register_script(
        "local f = {} for i = 2, #ARGV do f[#f + 1] = ARGV[i] end "
        "redis.call('HSET', KEYS[1], unpack(f)) redis.call('RPUSH', KEYS[2], ARGV[1]) return 1"
    )
    out: list[float] = []
    per_client = m // clients

    async def client() -> None:
        for _ in range(per_client):
            job_id = uuid.uuid4().hex
            mapping = encode_job(job_id, queue, {"type": func}, timeout=None, reply_key=None)
            args: list[Any] = [job_id]
            for k, v in mapping.items():
                args += [k, v]
            t = time.perf_counter()
            await script(keys=[f"rq:job:{job_id}", f"rq:queue:{queue}"], args=args)
            got = await r.xread({f"rq:results:{job_id}": "0-0"}, block=10_000)
            if not got:
                raise RuntimeError("no result within 10 s")
            out.append(time.perf_counter() - t)

    await asyncio.gather(*(client() for _ in range(clients)))
    return out


async def redis_pool_latency(url: str, queue: str, func: str, m: int, clients: int) -> list[float]:
    out: list[float] = []
    async with qoper8.RedisPool(url, queue=queue) as pool:

        async def client() -> None:
            for _ in range(m // clients):
                t = time.perf_counter()
                await pool.submit({"type": func}, timeout=10)
                out.append(time.perf_counter() - t)

        await asyncio.gather(*(client() for _ in range(clients)))
    return out


async def commands_per_job(url: str, r: Any, queue: str, func: str, m: int) -> float:
    """Top-level commands the consumer side sends per job (MONITOR; calls made inside Lua
    scripts are not counted, pipelined commands are each counted)."""
    import redis.asyncio as aioredis

    await r.client_setname("bench-producer")
    mine = set()
    for c in await r.client_list():
        if c.get("name") == "bench-producer":
            mine.add(c["addr"])
    mon_client = aioredis.Redis.from_url(url)
    count = 0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal count
        async with mon_client.monitor() as mon:
            ready.set()
            async for cmd in mon.listen():
                if stop.is_set():
                    return
                addr = f"{cmd.get('client_address')}:{cmd.get('client_port')}"
                if cmd.get("client_type") == "lua" or addr in mine:
                    continue
                count += 1

    ready = asyncio.Event()
    task = asyncio.create_task(watch())
    await ready.wait()
    await asyncio.sleep(0.2)
    idle = count  # commands while idle (blocking waits, heartbeats): subtract their rate
    t0 = time.perf_counter()
    await asyncio.sleep(0.5)
    idle_rate = (count - idle) / (time.perf_counter() - t0)
    before = count
    t1 = time.perf_counter()
    await throughput(r, queue, func, m)
    took = time.perf_counter() - t1
    used = count - before - idle_rate * took
    stop.set()
    await r.rpush("bench-monitor-poke", 1)  # wake the monitor loop
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    with contextlib.suppress(Exception):
        await mon_client.aclose()
    return max(0.0, used) / m


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the bench's own on a free port (no persistence), so that other
    users of the machine's Redis do not queue their commands ahead of the measured ones."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
