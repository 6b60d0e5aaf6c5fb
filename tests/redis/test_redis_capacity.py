"""A host holds a Redis job only while a child is idle for it (issue 9): a job that arrives
after HTTP or local submits used the last idle child goes back to the queue front at once,
untouched, for a host with an idle child."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import fakeredis
import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from qoper8._redis import RedisConsumer, taking
from qoper8._redis.connection import _Backoff
from tests.conftest import wait_until

from .conftest import serving
from .fakes import FakePool

if TYPE_CHECKING:
    from pathlib import Path

    import redis


@pytest.mark.redis
async def test_a_job_taken_after_the_last_idle_child_went_busy_runs_on_a_free_host(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Host A's BLMOVE must still be outstanding when the job is pushed, however slow the
    # machine: block longer than the test takes (a stop cancels the wait anyway).
    monkeypatch.setattr(taking, "BLOCK_SECONDS", 5)
    started, release = tmp_path / "started", tmp_path / "release"
    q = Queue(queue_name, connection=sync_redis, serializer=JSONSerializer)
    async with asyncio.timeout(30), serving(redis_url, queue_name, children=1) as (pool_a, a):
        await wait_until(
            lambda: a._queue_seen_empty and a._interruptible, what="host A to wait for a job"
        )
        # an HTTP (or local) submit takes host A's only child while A waits in BLMOVE
        local = asyncio.create_task(
            pool_a.submit({"type": "block", "started": str(started), "release": str(release)})
        )
        await wait_until(started.exists, what="the local job to start")
        assert a._interruptible, "host A stopped waiting in BLMOVE too early"
        job = q.enqueue("pid")
        await wait_until(lambda: a.handed_back == 1, what="host A to hand the job back")
        # back at the queue front, untouched: no retry used, no execution left behind
        assert job.get_status() == JobStatus.QUEUED
        assert q.job_ids == [job.id]
        assert job.retries_left is None or job.retries_left == a.max_retries
        assert sync_redis.zcard(f"rq:executions:{job.id}") == 0
        assert StartedJobRegistry(queue_name, connection=sync_redis).get_job_ids() == []
        async with serving(redis_url, queue_name, children=1) as (_, b):
            # host B runs it while host A's child is still busy
            # (the count moves once B has the finish's answer, after Redis has the status)
            await wait_until(lambda: b.completed == 1, what="the job to run on host B")
            assert job.get_status(refresh=True) == JobStatus.FINISHED
        assert not local.done()
        assert job.return_value() != int(started.read_text())
        release.touch()
        await local
    assert a.completed == 0


async def test_a_next_job_taken_by_a_finish_goes_back_if_the_child_was_taken_meanwhile(
    server: fakeredis.FakeServer,
) -> None:
    """The finish of one job also takes the next for its child; if another transport used
    that child during the round trip, the next job goes back to the queue front."""
    r = fakeredis.FakeRedis(server=server)
    q = Queue("q", connection=r, serializer=JSONSerializer)
    pool = FakePool()
    pool.gate.clear()
    first = q.enqueue("add", 1, 2)
    consumer = RedisConsumer(pool, url="redis://fake", queue="q", lease=5)
    task = asyncio.create_task(consumer.run())
    await wait_until(lambda: pool.submitted == 1, timeout=5, what="the first job to run")
    second = q.enqueue("add", 2, 3)
    real_call = consumer._record

    async def call_then_occupy(keys: list[str], args: list[Any]) -> Any:
        reply = await real_call(keys, args)
        pool.occupy()  # an HTTP submit took the child while the finish was in flight
        return reply

    consumer._record = call_then_occupy  # type: ignore[method-assign]
    pool.gate.set()
    await wait_until(lambda: consumer.handed_back == 1, timeout=5, what="the hand-back")
    assert first.get_status() == JobStatus.FINISHED
    assert Job.fetch(second.id, connection=r).get_status() == JobStatus.QUEUED
    assert q.job_ids == [second.id]
    assert pool.submitted == 1  # the second job never reached the busy pool
    consumer._record = real_call  # type: ignore[method-assign]
    pool.free()  # the HTTP job ended: now the second job runs here
    await wait_until(
        lambda: second.get_status(refresh=True) == JobStatus.FINISHED, timeout=5, what="rerun"
    )
    await consumer.stop()
    await task


class _PermitPool(FakePool):
    """A FakePool whose jobs each wait for a permit from the test."""

    def __init__(self) -> None:
        super().__init__()
        self.permits: asyncio.Queue[None] = asyncio.Queue()

    async def submit(self, action: Any, **kwargs: Any) -> Any:
        self.slots -= 1
        self.submitted += 1
        try:
            await self.permits.get()
            result: int = action["a"] + action["b"]
            return result
        finally:
            self.free()


async def test_the_next_job_a_finish_takes_runs_in_the_same_task_and_can_be_stopped(
    server: fakeredis.FakeServer,
) -> None:
    """No task is created between a child's two jobs (the finish's answer goes straight on
    to the next job), and that next job is still stopped by its caller like any other."""
    r = fakeredis.FakeRedis(server=server)
    q = Queue("q", connection=r, serializer=JSONSerializer)
    pool = _PermitPool()
    first, second = q.enqueue("add", 1, 2), q.enqueue("add", 3, 4)
    consumer = RedisConsumer(pool, url="redis://fake", queue="q", lease=30)
    task = asyncio.create_task(consumer.run())
    await wait_until(lambda: pool.submitted == 1, timeout=5, what="the first job to run")
    [running] = consumer._running.values()
    pool.permits.put_nowait(None)
    await wait_until(lambda: pool.submitted == 2, timeout=5, what="the second job to run")
    [following] = consumer._running.values()
    assert following.job_id == second.id
    assert following.task is running.task
    assert first.get_status() == JobStatus.FINISHED
    r.hset(second.key, "qoper8_cancel", "1")  # its caller cancelled with kill_on_cancel
    assert await consumer._beat(_Backoff("test", "redis://fake"))
    await wait_until(lambda: consumer.completed == 2, timeout=5, what="the stop recorded")
    assert Job.fetch(second.id, connection=r).get_status() == JobStatus.STOPPED
    await consumer.stop()
    await task
