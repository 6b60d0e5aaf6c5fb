"""Messages (issue 11), measured: how many messages a second one handler streams to one
caller (in process, and over HTTP through a real ``qoper8 serve``: with ``qoper8.Client``,
and with bare aiohttp counting NDJSON lines, in case the Client is the bottleneck; and
through Redis: ``RedisPool.stream`` from a host in its own process, beside a plain
``RedisPool.submit``'s p50), and a broadcast's round trip to 8 idle children against one
submit's, in one run.

    .venv/bin/python -m bench.messages [--messages 200000] [--rounds 5] [--redis URL]

``--redis none`` leaves Redis out. ``--redis-host URL QUEUE`` is the Redis host it starts
(a Pool of 2 children on ``bench.workers`` and a RedisConsumer).

Targets (issue 11): a local stream >= 50,000 messages/s; a broadcast to 8 idle children p50
below 3x one submit's p50. The bare asyncio master of bench/raw.py runs the same two round
trips (one child pinged; all 8 pinged at once, no encoding) in the same run: the floor the
machine sets. Prints medians and spread over rounds, with the CPU model.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import aiohttp
import orjson
import qoper8

from bench.callgrind import _cpu_model

WORKER = "bench.workers:worker"


async def _stream_rate(pool: qoper8.Pool | qoper8.RedisPool, n: int) -> float:
    started = time.perf_counter()
    count = 0
    async with pool.stream({"type": "stream", "n": n}) as stream:
        async for _ in stream:
            count += 1
        assert stream.result == n
    assert count == n
    return n / (time.perf_counter() - started)


async def _client_rate(client: qoper8.Client, n: int) -> float:
    started = time.perf_counter()
    count = 0
    async with client.stream({"type": "stream", "n": n}) as stream:
        async for _ in stream:
            count += 1
        assert stream.result == n
    assert count == n
    return n / (time.perf_counter() - started)


async def _raw_http_rate(http: aiohttp.ClientSession, url: str, n: int) -> float:
    """The same stream read by bare aiohttp: NDJSON lines counted in the chunks, no JSON
    decoded (what ``curl -N`` would cost)."""
    body = orjson.dumps({"type": "stream", "n": n})
    headers = {"Accept": "application/x-ndjson"}
    started = time.perf_counter()
    lines = 0
    async with http.post(url + "/v1/stream", data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        async for chunk in resp.content.iter_any():
            lines += chunk.count(b"\n")
    assert lines == n + 1  # the messages, then the result
    return n / (time.perf_counter() - started)


async def _http_rates(messages: int, rounds: int) -> tuple[list[float], list[float]]:
    """Messages/s over HTTP from a ``qoper8 serve`` of 2 children: through qoper8.Client,
    and through bare aiohttp, alternating, ``rounds`` times each."""
    from bench.http_path import _Daemon

    daemon = _Daemon(2)
    await asyncio.to_thread(daemon.wait_ready)
    client_rates: list[float] = []
    raw_rates: list[float] = []
    try:
        async with qoper8.Client(daemon.url) as client, aiohttp.ClientSession() as http:
            await _client_rate(client, 1000)  # warm
            await _raw_http_rate(http, daemon.url, 1000)
            for _ in range(rounds):
                client_rates.append(await _client_rate(client, messages))
                raw_rates.append(await _raw_http_rate(http, daemon.url, messages))
    finally:
        await asyncio.to_thread(daemon.stop)
    return client_rates, raw_rates


async def _redis_rates(url: str, messages: int, rounds: int) -> tuple[list[float], list[float]]:
    """Messages/s through Redis (RedisPool.stream, one host of 2 children in its own
    process), and a plain RedisPool.submit's p50 µs (sequential), ``rounds`` times each."""
    import uuid

    import redis.asyncio as aioredis

    from bench.redis_hosts import _wait_hosts
    from bench.redis_vs_rq import _start_group, _stop_group

    queue = f"bench-{uuid.uuid4().hex[:8]}"
    host = _start_group([sys.executable, "-m", "bench.messages", "--redis-host", url, queue])
    r = aioredis.Redis.from_url(url)
    rates: list[float] = []
    submits: list[float] = []
    try:
        await _wait_hosts(r, queue, 1)
        async with qoper8.RedisPool(url, queue=queue) as pool:
            await _stream_rate(pool, 1000)  # warm
            for _ in range(rounds):
                rates.append(await _stream_rate(pool, messages))
                samples = []
                for _ in range(300):
                    t0 = time.perf_counter()
                    await pool.submit({"type": "echo"}, timeout=30)
                    samples.append(time.perf_counter() - t0)
                submits.append(await _p50(samples))
    finally:
        _stop_group([host])
        keys = [k async for k in r.scan_iter(f"*{queue}*")]
        if keys:
            await r.delete(*keys)
        await r.aclose()
    return rates, submits


async def redis_host(url: str, queue: str) -> None:
    import signal

    from qoper8._redis import RedisConsumer

    async with qoper8.Pool(WORKER, children=2) as pool:
        consumer = RedisConsumer(pool, url=url, queue=queue)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(consumer.stop()))
        await consumer.run()


async def _p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def _round_trips(pool: qoper8.Pool, count: int) -> tuple[float, float]:
    """Median µs of one sequential submit, and of one broadcast to every child."""
    submits, broadcasts = [], []
    for _ in range(count):
        t0 = time.perf_counter()
        await pool.submit({"type": "echo"})
        submits.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = await pool.broadcast("bench.ping", timeout=10)
        broadcasts.append(time.perf_counter() - t0)
        assert result.complete
    return await _p50(submits), await _p50(broadcasts)


async def _raw_round_trips(count: int) -> tuple[float, float]:
    """The bare master's median µs: one child pinged, and all 8 pinged at once."""
    from bench.raw import RawPingPong

    raw = RawPingPong()
    await raw.start(8)
    try:
        single, all8 = [], []
        for _ in range(count):
            t0 = time.perf_counter()
            await raw.call("sleep", 0.0)
            single.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await asyncio.gather(*(raw.call("sleep", 0.0) for _ in range(8)))
            all8.append(time.perf_counter() - t0)
    finally:
        await raw.close()
    return await _p50(single), await _p50(all8)


async def main_async(messages: int, rounds: int, round_trips: int, redis: str) -> None:
    raw_ratios: list[float] = []
    rates: list[float] = []
    ratios: list[float] = []
    submit_p50s: list[float] = []
    broadcast_p50s: list[float] = []
    async with qoper8.Pool(WORKER, children=2) as small:
        await _stream_rate(small, 1000)  # warm
        rates.extend([await _stream_rate(small, messages) for _ in range(rounds)])
    client_rates, raw_rates = await _http_rates(messages, rounds)
    redis_rates, redis_submits = (
        ([], []) if redis == "none" else await _redis_rates(redis, messages, rounds)
    )
    for _ in range(rounds):
        async with qoper8.Pool(WORKER, children=8) as pool:
            await _round_trips(pool, 20)  # warm
            submit, broadcast = await _round_trips(pool, round_trips)
        submit_p50s.append(submit)
        broadcast_p50s.append(broadcast)
        ratios.append(broadcast / submit)
        one, eight = await _raw_round_trips(round_trips)
        raw_ratios.append(eight / one)
    print(f"CPU {_cpu_model()}, Python {sys.version.split()[0]}, {rounds} rounds")
    print("| measure | median | min | max | target |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| local stream, messages/s (2 children, {messages:,} per round) | "
        f"{statistics.median(rates):,.0f} | {min(rates):,.0f} | {max(rates):,.0f} | >= 50,000 |"
    )
    for what, got in (("qoper8.Client", client_rates), ("bare aiohttp, NDJSON", raw_rates)):
        print(
            f"| HTTP stream via {what}, messages/s (qoper8 serve, 2 children) | "
            f"{statistics.median(got):,.0f} | {min(got):,.0f} | {max(got):,.0f} | |"
        )
    if redis_rates:
        print(
            f"| Redis stream via RedisPool, messages/s (one host, 2 children) | "
            f"{statistics.median(redis_rates):,.0f} | {min(redis_rates):,.0f} | "
            f"{max(redis_rates):,.0f} | |"
        )
        print(
            f"| RedisPool.submit p50 µs, same host, same run | "
            f"{statistics.median(redis_submits):.1f} | {min(redis_submits):.1f} | "
            f"{max(redis_submits):.1f} | |"
        )
    print(
        f"| submit p50 µs (8 children) | {statistics.median(submit_p50s):.1f} | "
        f"{min(submit_p50s):.1f} | {max(submit_p50s):.1f} | |"
    )
    print(
        f"| broadcast to 8 idle children p50 µs | {statistics.median(broadcast_p50s):.1f} | "
        f"{min(broadcast_p50s):.1f} | {max(broadcast_p50s):.1f} | |"
    )
    print(
        f"| broadcast p50 / submit p50 | {statistics.median(ratios):.2f} | {min(ratios):.2f} | "
        f"{max(ratios):.2f} | < 3 |"
    )
    print(
        f"| bare master: 8 children pinged at once / one pinged, p50 | "
        f"{statistics.median(raw_ratios):.2f} | {min(raw_ratios):.2f} | "
        f"{max(raw_ratios):.2f} | (the floor) |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.messages", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--redis-host", nargs=2, metavar=("URL", "QUEUE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.redis_host:
        asyncio.run(redis_host(*args.redis_host))
        return 0
    asyncio.run(main_async(args.messages, args.rounds, args.round_trips, args.redis))
    return 0


if __name__ == "__main__":
    sys.exit(main())
