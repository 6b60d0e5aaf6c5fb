"""``python -m bench.redis_vs_rq``: qoper8's Redis mode against rq's own workers, same run.

Same Redis, same number of processes, the same rq jobs (enqueued by rq's ``Queue`` with the
JSON serializer, naming ``bench.redis_vs_rq.noop`` or ``bench.redis_vs_rq.sleep5``), taken
by: a qoper8 host (one master, N warm children, one RedisConsumer); N forking rq ``Worker``
processes; N rq ``SimpleWorker`` processes; and ``rq worker-pool -n N``.

* throughput: workers up and idle, M jobs enqueued in one pipeline, until all M are in the
  finished registry;
* latency: N closed-loop clients, each enqueues one job and blocks (XREAD) on rq's results
  stream for it; p50/p99 of enqueue-to-result; for qoper8 also through ``RedisPool``;
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
SYSTEMS = ["qoper8", "rq SimpleWorker", "rq worker-pool", "rq Worker"]


@dataclass
class Row:
    system: str
    job: str
    jobs: int
    seconds: float
    latencies: list[float]
    commands_per_job: float | None = None

    @property
    def throughput(self) -> float:
        return self.jobs / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


# ---------------------------------------------------------------- the systems under test
def _start_group(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
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
    raise ValueError(system)


async def wait_ready(r: Any, system: str, queue: str, n: int) -> None:
    """Until the system's consumers are registered with Redis and idle."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if system == "qoper8":
            if await r.zcard(f"qoper8:consumers:{queue}") >= 1:
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


# ---------------------------------------------------------------- the measurements
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


# ---------------------------------------------------------------- the run
async def run(args: argparse.Namespace) -> list[Row]:
    import redis.asyncio as aioredis

    url = f"{args.redis.rstrip('/')}/{DB}" if args.redis.count("/") == 2 else args.redis
    r = aioredis.Redis.from_url(url)
    rows: list[Row] = []
    for system in args.systems:
        for job, func in JOBS.items():
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            procs = start_system(system, url, queue, args.processes)
            try:
                await wait_ready(r, system, queue, args.processes)
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
                if args.count_commands:
                    cmds = await commands_per_job(url, r, queue, func, 100 if forking else 300)
                    await r.delete(f"rq:finished:{queue}")
                rows.append(Row(system, job, m, seconds, lat, cmds))
                print(f"# {system} {job}: {m / seconds:.0f} jobs/s", file=sys.stderr)
                if system == "qoper8":
                    lat = await redis_pool_latency(
                        url, queue, func, args.latency_jobs, args.processes
                    )
                    rows.append(Row("qoper8 RedisPool", job, m, seconds, lat, None))
            finally:
                _stop_group(procs)
                keys = [k async for k in r.scan_iter(f"*{queue}*")]
                if keys:
                    await r.delete(*keys)
    await r.aclose()
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
        cmds = f"{row.commands_per_job:.1f}" if row.commands_per_job is not None else ""
        lines.append(
            f"| {row.system} | {row.job} | {tput} | {row.pct(0.5):.2f} | {row.pct(0.99):.2f} "
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
    parser.add_argument("--host", nargs=3, metavar=("URL", "QUEUE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host:
        asyncio.run(host(args.host[0], args.host[1], int(args.host[2])))
        return
    rows = asyncio.run(run(args))
    print(table(rows, args.processes))
    print()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        "one run each; p50 x = the system's p50 / qoper8's p50."
    )


if __name__ == "__main__":
    main()
