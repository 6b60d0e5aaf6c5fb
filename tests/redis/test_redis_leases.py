"""Leases (issue 9): a lost lease is reported only when it really was lost, not when a job's
own finish raced the heartbeat."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import fakeredis
import pytest
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

import qoper8
from qoper8._redis import RedisConsumer
from qoper8._redis.connection import _Backoff
from tests.conftest import wait_until

from .conftest import serving
from .fakes import FakePool

LOST = "was lost"


def _lost(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if LOST in r.getMessage()]


async def test_a_job_finishing_during_a_heartbeat_is_not_reported_lost(
    server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qoper8.redis")
    r = fakeredis.FakeRedis(server=server)
    q = Queue("q", connection=r, serializer=JSONSerializer)
    pool = FakePool()
    pool.gate.clear()
    job = q.enqueue("add", 1, 2)
    consumer = RedisConsumer(pool, url="redis://fake", queue="q", lease=30)
    task = asyncio.create_task(consumer.run())
    await wait_until(lambda: pool.submitted == 1, timeout=5, what="the job to run")
    real_call = consumer._record
    recorded, proceed = asyncio.Event(), asyncio.Event()

    async def slow_answer(keys: list[str], args: list[Any]) -> Any:
        reply = await real_call(keys, args)  # the finish ran in Redis...
        recorded.set()
        await proceed.wait()  # ...and its answer is still on its way
        return reply

    consumer._record = slow_answer  # type: ignore[method-assign]
    pool.gate.set()
    async with asyncio.timeout(5):
        await recorded.wait()
    # a renewal that reaches Redis after the finish and answers before it
    assert await consumer._beat(_Backoff("test", "redis://fake"))
    proceed.set()
    await wait_until(lambda: consumer.completed == 1, timeout=5, what="the outcome")
    assert job.get_status() == JobStatus.FINISHED
    await consumer.stop()
    await task
    assert _lost(caplog) == []


async def test_a_lease_reaped_under_a_running_job_is_reported_lost(
    server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qoper8.redis")
    r = fakeredis.FakeRedis(server=server)
    q = Queue("q", connection=r, serializer=JSONSerializer)
    pool = FakePool()
    pool.gate.clear()
    job = q.enqueue("add", 1, 2)
    consumer = RedisConsumer(pool, url="redis://fake", queue="q", lease=30)
    task = asyncio.create_task(consumer.run())
    await wait_until(lambda: pool.submitted == 1, timeout=5, what="the job to run")
    # another host's reaper, as if this host had been silent past its lease
    assert (await consumer.reap(now=time.time() + 60))[1] == [job.id]
    assert await consumer._beat(_Backoff("test", "redis://fake"))
    assert len(_lost(caplog)) == 1
    assert job.id in _lost(caplog)[0]
    pool.gate.set()  # the job ends here too; its outcome is not recorded (no lease)
    await wait_until(lambda: job.get_status() == JobStatus.FINISHED, timeout=5, what="rerun")
    await consumer.stop()
    await task


@pytest.mark.redis
async def test_no_lease_is_reported_lost_under_load_with_a_short_lease(
    redis_url: str, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Short jobs finish all the time while heartbeats run every lease / 6 = 0.33 s."""
    caplog.set_level(logging.WARNING, logger="qoper8.redis")
    async with (
        asyncio.timeout(30),
        serving(redis_url, queue_name, children=2, lease=2.0) as (_, a),
        serving(redis_url, queue_name, children=2, lease=2.0) as (_, b),
        qoper8.RedisPool(redis_url, queue=queue_name) as rp,
    ):
        deadline = time.monotonic() + 2.0  # a few heartbeats of each host
        n = 0
        while time.monotonic() < deadline:
            batch = [rp.submit({"type": "sleep_ms", "ms": 1}, timeout=20) for _ in range(20)]
            await asyncio.gather(*batch)
            n += len(batch)
        await wait_until(lambda: a.completed + b.completed == n, what="the counts")
    assert _lost(caplog) == []
