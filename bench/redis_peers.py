"""The Redis-backed queues ``bench.redis_vs_rq`` measures beside rq: dramatiq (Redis broker)
and arq. This module is also their worker module: ``dramatiq bench.redis_peers`` and
``arq bench.redis_peers.ArqSettings`` import it, with the Redis URL and the queue name in
``BENCH_REDIS_URL`` and ``BENCH_QUEUE``.

Jobs are enqueued as each library writes them (dramatiq: the message hash and id list its
``enqueue`` script fills; arq: the job key and the queue's sorted set), all in one pipeline,
and a run is over when the library has removed every job from its queue (dramatiq deletes a
message once acked, arq takes a job off its queue once finished): polled every 2 ms.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, ClassVar

PEERS = ["dramatiq", "arq"]
_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
_QUEUE = os.environ.get("BENCH_QUEUE", "bench")


# ---------------------------------------------------------------- dramatiq
def _dramatiq_actors() -> dict[str, Any]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    dramatiq.set_broker(RedisBroker(url=_URL))

    @dramatiq.actor(queue_name=_QUEUE, max_retries=0)
    def noop() -> None:
        return None

    @dramatiq.actor(queue_name=_QUEUE, max_retries=0)
    def sleep5() -> None:
        time.sleep(0.005)

    return {"noop": noop, "sleep5": sleep5}


if os.environ.get("BENCH_PEER") == "dramatiq":
    DRAMATIQ_ACTORS = _dramatiq_actors()


# ---------------------------------------------------------------- arq
async def arq_noop(ctx: dict[str, Any]) -> None:
    return None


async def arq_sleep5(ctx: dict[str, Any]) -> None:
    time.sleep(0.005)  # blocking, as the other systems' 5 ms job


if os.environ.get("BENCH_PEER") == "arq":
    from arq.connections import RedisSettings

    class ArqSettings:
        """``arq bench.redis_peers.ArqSettings``: arq's defaults otherwise (10 jobs in flight
        per process, results kept an hour)."""

        functions: ClassVar[list[Any]] = [arq_noop, arq_sleep5]
        queue_name = f"arq:{_QUEUE}"
        redis_settings = RedisSettings.from_dsn(_URL)


# ---------------------------------------------------------------- the bench's side
def command(peer: str, python: str, n: int) -> list[list[str]]:
    """The processes that make ``n`` workers of ``peer`` (one job at a time each for
    dramatiq, as every other system in the table; arq runs its default 10 per process)."""
    bindir = os.path.dirname(python)
    if peer == "dramatiq":
        exe = os.path.join(bindir, "dramatiq")
        return [[exe, "bench.redis_peers", "--processes", str(n), "--threads", "1"]]
    if peer == "arq":
        exe = os.path.join(bindir, "arq")
        return [[exe, "bench.redis_peers.ArqSettings"] for _ in range(n)]
    raise ValueError(peer)


def environment(peer: str, url: str, queue: str) -> dict[str, str]:
    return {"BENCH_PEER": peer, "BENCH_REDIS_URL": url, "BENCH_QUEUE": queue}


async def ready(r: Any, peer: str, queue: str, n: int) -> bool:
    if peer == "dramatiq":
        return int(await r.zcard("dramatiq:__heartbeats__")) >= 1
    return bool(await r.exists(f"arq:{queue}:health-check"))


async def enqueue(r: Any, peer: str, queue: str, job: str, m: int) -> None:
    async with r.pipeline(transaction=False) as pipe:
        if peer == "dramatiq":
            import dramatiq

            for _ in range(m):
                redis_id = str(uuid.uuid4())  # as RedisBroker.enqueue names it in Redis
                message = dramatiq.Message(
                    queue_name=queue,
                    actor_name=job,
                    args=(),
                    kwargs={},
                    options={"redis_message_id": redis_id},
                    message_id=str(uuid.uuid4()),
                    message_timestamp=int(time.time() * 1000),
                )
                pipe.hset(f"dramatiq:{queue}.msgs", redis_id, message.encode())
                pipe.rpush(f"dramatiq:{queue}", redis_id)
        else:
            from arq.constants import expires_extra_ms, job_key_prefix
            from arq.jobs import serialize_job

            now = int(time.time() * 1000)
            for _ in range(m):
                job_id = uuid.uuid4().hex
                data = serialize_job(f"arq_{job}", (), {}, None, now)
                pipe.psetex(job_key_prefix + job_id, expires_extra_ms, data)
                pipe.zadd(f"arq:{queue}", {job_id: now})
        await pipe.execute()


async def remaining(r: Any, peer: str, queue: str) -> int:
    if peer == "dramatiq":
        return int(await r.hlen(f"dramatiq:{queue}.msgs"))
    return int(await r.zcard(f"arq:{queue}"))


def keys(peer: str, queue: str) -> list[str]:
    """Patterns of the keys a run leaves behind."""
    if peer == "dramatiq":
        return [f"dramatiq:*{queue}*", "dramatiq:__heartbeats__"]
    return [f"arq:{queue}*", "arq:job:*", "arq:result:*", "arq:in-progress:*", "arq:retry:*"]
