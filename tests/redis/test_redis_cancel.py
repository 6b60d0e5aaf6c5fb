"""A cancelled ``RedisPool.submit`` (issue 9): its job is withdrawn while no host has taken
it, as the local pool drops a queued job; a job a host already runs goes on there, unless
the caller asked for ``kill_on_cancel``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

import qoper8
from qoper8._redis.jobs import _text
from tests.conftest import pid_alive, wait_until

from .conftest import serving

if TYPE_CHECKING:
    from pathlib import Path

    import redis

pytestmark = pytest.mark.redis


def _job_ids(sync_redis: redis.Redis, queue: str) -> list[str]:
    return [_text(i) for i in sync_redis.lrange(f"rq:queue:{queue}", 0, -1)]


async def test_a_cancelled_submit_withdraws_its_queued_job(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    async with asyncio.timeout(20), qoper8.RedisPool(redis_url, queue=queue_name) as rp:
        call = asyncio.create_task(rp.submit({"type": "add", "a": 1, "b": 2}, timeout=30))
        await wait_until(lambda: len(_job_ids(sync_redis, queue_name)) == 1, what="enqueue")
        [job_id] = _job_ids(sync_redis, queue_name)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(
            lambda: not sync_redis.exists(f"rq:job:{job_id}"), what="the job to be withdrawn"
        )
        assert _job_ids(sync_redis, queue_name) == []
        # a host that comes later runs only what is still wanted
        async with serving(redis_url, queue_name, children=1) as (_, consumer):
            assert await rp.submit({"type": "add", "a": 2, "b": 2}, timeout=10) == 4
            assert consumer.taken == 1


async def test_a_cancelled_submit_leaves_a_running_job_to_finish(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    async with (
        asyncio.timeout(20),
        serving(redis_url, queue_name, children=1) as (_, consumer),
        qoper8.RedisPool(redis_url, queue=queue_name) as rp,
    ):
        action = {"type": "block", "started": str(started), "release": str(release)}
        call = asyncio.create_task(rp.submit(action, timeout=30))
        await wait_until(started.exists, what="the job to start")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        release.touch()
        await wait_until(lambda: consumer.completed == 1, what="the job to finish")
    [job_id] = [_text(i) for i in sync_redis.zrange(f"rq:finished:{queue_name}", 0, -1)]
    job = Job.fetch(job_id, connection=sync_redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == int(started.read_text())


async def test_kill_on_cancel_stops_a_running_job_on_its_host(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    """As with the local pool's ``kill_on_cancel=True``: the host kills and replaces the
    child (at its next heartbeat) and rq records the job as stopped."""
    started, release = tmp_path / "started", tmp_path / "release"
    async with (
        asyncio.timeout(20),
        serving(redis_url, queue_name, children=1, lease=1.2) as (pool, consumer),
        qoper8.RedisPool(redis_url, queue=queue_name) as rp,
    ):
        action = {"type": "block", "started": str(started), "release": str(release)}
        call = asyncio.create_task(rp.submit(action, timeout=30, kill_on_cancel=True))
        await wait_until(started.exists, what="the job to start")
        child = int(started.read_text())
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(lambda: consumer.completed == 1, what="the host to stop the job")
        await wait_until(lambda: not pid_alive(child), what="the child to be killed")
        # the host carries on with a new child
        assert await rp.submit({"type": "add", "a": 1, "b": 1}, timeout=10) == 2
        assert pool.size == 1
    [job_id] = [_text(i) for i in sync_redis.zrange(f"rq:failed:{queue_name}", 0, -1)]
    job = Job.fetch(job_id, connection=sync_redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.STOPPED
    result = job.latest_result()
    assert result is not None
    assert "cancelled by its caller" in (result.exc_string or "")
