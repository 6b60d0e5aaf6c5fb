"""Hosts that die or freeze (issue 9): rq stops listing them once reaped, a frozen idle host
gives back the job its BLMOVE took, and a caller whose job was on a dead host is told so."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import TYPE_CHECKING

import fakeredis
import pytest
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.worker import Worker

import qoper8
from qoper8._redis import RedisConsumer
from qoper8._redis.connection import _Backoff
from qoper8._redis.whereabouts import whereabouts
from tests.conftest import wait_until

from .conftest import serving
from .fakes import FakePool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import redis

    from .conftest import Host

LEASE = 1.5


def _workers(sync_redis: redis.Redis, queue: str) -> list[str]:
    q = Queue(queue, connection=sync_redis, serializer=JSONSerializer)
    return sorted(w.name for w in Worker.all(queue=q))


@pytest.mark.redis
async def test_a_killed_host_leaves_rqs_worker_registry_once_reaped(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    spawn_host: Callable[..., Awaitable[Host]],
    tmp_path: Path,
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    q = Queue(queue_name, connection=sync_redis, serializer=JSONSerializer)
    async with asyncio.timeout(30):
        host = await spawn_host(redis_url, queue_name, children=1, lease=LEASE)
        job = q.enqueue("block", started=str(started), release=str(release))
        await wait_until(started.exists, what="host A to start the job")
        await wait_until(lambda: len(_workers(sync_redis, queue_name)) == 1, what="rq to list A")
        [name_a] = _workers(sync_redis, queue_name)
        host.kill()  # SIGKILL, mid-job: nothing is unregistered
        await host.proc.wait()
        release.touch()
        async with serving(redis_url, queue_name, children=1, lease=LEASE) as (_, b):
            await wait_until(
                lambda: _workers(sync_redis, queue_name) == [b.name],
                what="the reaper to take host A off rq's workers",
            )
            await wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED)
    assert not sync_redis.exists(f"rq:worker:{name_a}")
    assert not sync_redis.sismember("rq:workers", f"rq:worker:{name_a}")
    assert not sync_redis.sismember(f"rq:workers:{queue_name}", f"rq:worker:{name_a}")


@pytest.mark.redis
async def test_a_frozen_idle_host_gives_back_the_job_its_blmove_took(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    spawn_host: Callable[..., Awaitable[Host]],
) -> None:
    q = Queue(queue_name, connection=sync_redis, serializer=JSONSerializer)
    async with asyncio.timeout(30):
        host = await spawn_host(redis_url, queue_name, children=1, lease=LEASE)
        await wait_until(lambda: len(_workers(sync_redis, queue_name)) == 1, what="rq to list A")
        [name_a] = _workers(sync_redis, queue_name)
        os.kill(host.pid, signal.SIGSTOP)  # the master only: idle, its BLMOVE outstanding
        try:
            job = q.enqueue("add", 1, 2)
            async with serving(redis_url, queue_name, children=1, lease=LEASE) as (_, b):
                # (the count moves once B has the finish's answer, after Redis has the status)
                await wait_until(lambda: b.completed == 1, what="the job to run on host B")
                assert job.get_status(refresh=True) == JobStatus.FINISHED
                await wait_until(lambda: _workers(sync_redis, queue_name) == [b.name])
            assert job.return_value() == 3
            assert not sync_redis.exists(f"qoper8:claim:{queue_name}:{name_a}")
        finally:
            os.kill(host.pid, signal.SIGCONT)


async def test_a_consumer_registration_lapses_after_two_missed_heartbeats(
    server: fakeredis.FakeServer,
) -> None:
    """The window after which an idle host's claims go back: lease / 3, not the lease's."""
    r = fakeredis.FakeRedis(server=server)
    consumer = RedisConsumer(FakePool(), url="redis://fake", queue="q", lease=30)
    consumer._start_client()
    before = time.time()
    assert await consumer._beat(_Backoff("test", "redis://fake"))
    expiry = r.zscore("qoper8:consumers:q", consumer.name)
    assert expiry is not None
    assert before + 10 <= expiry <= time.time() + 10  # 2 heartbeats of 5 s


@pytest.mark.redis
async def test_a_caller_whose_job_was_on_a_dead_host_is_told_so(
    redis_url: str,
    queue_name: str,
    spawn_host: Callable[..., Awaitable[Host]],
    tmp_path: Path,
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    async with asyncio.timeout(30), qoper8.RedisPool(redis_url, queue=queue_name) as rp:
        host = await spawn_host(redis_url, queue_name, children=1, lease=LEASE)
        call = asyncio.create_task(
            rp.submit(
                {"type": "block", "started": str(started), "release": str(release)},
                timeout=3,  # longer than the host's registration (lease / 3) outlives it
            )
        )
        await wait_until(started.exists, what="the host to start the job")
        host.kill()
        await host.proc.wait()
        release.touch()
        with pytest.raises(qoper8.JobTimeout) as err:
            await call
    message = str(err.value)
    assert "was running on host qoper8." in message
    assert "stopped renewing its lease" in message
    assert "runs it again once its lease expires (3 retries left)" in message
    assert "no idle child" not in message


def test_whereabouts_words_each_state() -> None:
    now = 1000.0
    live, dead = {"h1": now + 5}, {"h1": now - 1}
    started = {"status": "started", "worker_name": "h1", "retries_left": "2"}
    assert "still running on host h1" in whereabouts(started, live, now)
    for hosts in (dead, {}):
        text = whereabouts(started, hosts, now)
        assert "running on host h1, which stopped renewing its lease" in text
        assert "(2 retries left)" in text
    last = {**started, "retries_left": "0", "last_heartbeat": "1970-01-01T00:16:30.000000Z"}
    text = whereabouts(last, dead, now)
    assert "(last heartbeat 10.0s ago)" in text
    assert "fails with AbandonedJobError" in text
    requeued = {"status": "queued", "worker_name": "h1", "retries_left": "1"}
    assert "queued again (1 retries left)" in whereabouts(requeued, live, now)
    assert "still queued: no idle child" in whereabouts({"status": "queued"}, live, now)
    assert "no host serving the queue" in whereabouts({}, {}, now)
