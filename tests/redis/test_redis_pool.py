"""RedisPool and RedisConsumer against the real Redis: results, typed errors, rq's view."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker

import qoper8
from qoper8._redis import RedisConsumer
from tests.conftest import wait_until

from .conftest import HANDLERS, ROOT, serving

if TYPE_CHECKING:
    import redis

pytestmark = pytest.mark.redis


async def test_submit_returns_the_handler_result(redis_url: str, queue_name: str) -> None:
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            assert await rp.submit({"type": "add", "a": 2, "b": 3}, timeout=5) == 5
            assert await rp.submit({"type": "echo", "value": {"x": [1, "y"]}}, timeout=5) == {
                "x": [1, "y"]
            }
            assert await rp.submit({"type": "echo"}, timeout=5) is None
            results = await asyncio.gather(
                *(rp.submit({"type": "add", "a": i, "b": 1}, timeout=5) for i in range(50))
            )
            assert results == [i + 1 for i in range(50)]
            assert await rp.submit(Add(a=4, b=5), timeout=5) == 9  # a pydantic action


class Add(BaseModel):
    type: str = "add"
    a: int
    b: int


async def test_no_host_serving_the_queue_is_a_job_timeout(redis_url: str, queue_name: str) -> None:
    async with asyncio.timeout(10), qoper8.RedisPool(redis_url, queue=queue_name) as rp:
        with pytest.raises(qoper8.JobTimeout, match="no host serving the queue"):
            await rp.submit({"type": "echo"}, timeout=0.3)
        with pytest.raises(qoper8.InvalidAction):
            await rp.submit({"type": "echo"}, timeout=-1)
    with pytest.raises(qoper8.PoolClosed):
        await rp.submit({"type": "echo"}, timeout=1)


async def test_typed_errors_match_the_local_pool(redis_url: str, queue_name: str) -> None:
    async with asyncio.timeout(30):
        async with (
            serving(redis_url, queue_name),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            with pytest.raises(qoper8.JobFailed) as failed:
                await rp.submit({"type": "fail", "message": "nope"}, timeout=5)
            assert failed.value.remote_type == "ValueError"
            assert failed.value.remote_message == "nope"
            assert "raise ValueError" in failed.value.remote_traceback
            with pytest.raises(qoper8.InvalidAction, match="not a handler registered"):
                await rp.submit({"type": "nope"}, timeout=5)
            with pytest.raises(qoper8.InvalidAction):
                await rp.submit({"type": "add", "a": "x", "b": 1}, timeout=5)
            with pytest.raises(qoper8.ChildDied) as died:
                await rp.submit({"type": "kill_self"}, timeout=5)
            assert died.value.signal == 9
            with pytest.raises(qoper8.JobTimeout):
                await rp.submit({"type": "hang"}, timeout=0.5)
            with pytest.raises(qoper8.InvalidAction):
                await rp.submit({"no": "type"}, timeout=5)
            with pytest.raises(qoper8.InvalidAction):
                await rp.submit({"type": "echo", "value": object()}, timeout=5)
            # the pool is whole again after each fault
            assert await rp.submit({"type": "add", "a": 1, "b": 1}, timeout=5) == 2


async def test_rq_sees_true_states_and_results(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name) as (_, consumer),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            await rp.submit({"type": "add", "a": 40, "b": 2}, timeout=5)
            with pytest.raises(qoper8.JobFailed) as failed:
                await rp.submit({"type": "fail", "message": "bad"}, timeout=5)
            # the host is listed as an rq worker of the queue, with its job counts
            q = Queue(queue_name, connection=sync_redis, serializer=JSONSerializer)
            [listed] = Worker.all(queue=q)
            assert listed.name == consumer.name
            assert listed.successful_job_count == 1
            assert listed.failed_job_count == 1
        assert Worker.all(queue=q) == []  # unregistered on stop
    finished = FinishedJobRegistry(queue_name, connection=sync_redis)
    ids = finished.get_job_ids()
    assert len(ids) == 1
    job = Job.fetch(ids[0], connection=sync_redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == 42
    assert job.func_name == "add"
    assert job.kwargs == {"a": 40, "b": 2}
    assert job.origin == queue_name
    failed_ids = FailedJobRegistry(queue_name, connection=sync_redis).get_job_ids()
    assert failed_ids == [failed.value.job_id]
    fjob = Job.fetch(failed_ids[0], connection=sync_redis, serializer=JSONSerializer)
    assert fjob.get_status() == JobStatus.FAILED
    latest = fjob.latest_result()
    assert latest is not None
    assert latest.exc_string is not None
    assert "ValueError: bad" in latest.exc_string
    assert StartedJobRegistry(queue_name, connection=sync_redis).get_job_ids() == []
    assert q.count == 0
    rq_cli = Path(sys.executable).with_name("rq")
    info = await asyncio.create_subprocess_exec(
        str(rq_cli), "info", "-u", redis_url, queue_name, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await info.communicate()
    assert b"0 executing, 1 finished, 1 failed" in out


async def test_plain_rq_producer_feeds_the_pool(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    q = Queue(queue_name, connection=sync_redis, serializer=JSONSerializer)
    by_type = q.enqueue("add", a=1, b=2)
    by_path = q.enqueue("tests.redis.redis_handlers.add", 5, b=6)
    positional = q.enqueue("tests.redis.redis_handlers.add", 7, 8)
    hostile = q.enqueue("os.system", "touch /tmp/qoper8-pwned")
    failing = q.enqueue("fail", message="from rq")

    def done() -> bool:
        return all(
            j.get_status() in (JobStatus.FINISHED, JobStatus.FAILED)
            for j in (by_type, by_path, positional, hostile, failing)
        )

    async with asyncio.timeout(20), serving(redis_url, queue_name):
        await wait_until(done, what="rq jobs to end")
    assert by_type.return_value(refresh=True) == 3
    assert by_path.return_value(refresh=True) == 11
    assert positional.return_value(refresh=True) == 15
    assert hostile.get_status() == JobStatus.FAILED
    result = hostile.latest_result()
    assert result is not None
    assert result.exc_string is not None
    assert "'os.system' is not a handler registered" in result.exc_string
    assert failing.get_status() == JobStatus.FAILED


async def test_two_consumers_share_one_queue(redis_url: str, queue_name: str) -> None:
    async with asyncio.timeout(30):
        async with (
            serving(redis_url, queue_name, children=2) as (_pool_a, consumer_a),
            serving(redis_url, queue_name, children=2) as (_pool_b, consumer_b),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            pids = await asyncio.gather(
                *(rp.submit({"type": "sleep_ms", "ms": 20}, timeout=10) for _ in range(40))
            )
            # the client hears of a result (pushed by the host's finish script) a moment
            # before the host's own coroutine counts it
            await wait_until(
                lambda: consumer_a.completed + consumer_b.completed == 40, what="the counts"
            )
            assert consumer_a.completed > 0
            assert consumer_b.completed > 0
            assert len(set(pids)) == 4


async def test_stop_hands_back_running_jobs(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Any
) -> None:
    started = tmp_path / "started"
    release = tmp_path / "release"
    q = Queue(queue_name, connection=sync_redis, serializer=JSONSerializer)
    job = q.enqueue("block", started=str(started), release=str(release))
    async with asyncio.timeout(30):
        async with serving(redis_url, queue_name, grace=0.2):
            await wait_until(started.exists, what="the job to start")
            assert job.get_status() == JobStatus.STARTED
        # stopped: the job was handed back, not left started
        assert job.get_status() == JobStatus.QUEUED
        assert q.job_ids == [job.id]
        assert StartedJobRegistry(queue_name, connection=sync_redis).get_job_ids() == []
        release.touch()
        async with serving(redis_url, queue_name):
            await wait_until(lambda: job.get_status() == JobStatus.FINISHED, what="rerun")


async def _serve(tmp_path: Path, url: str, queue: str, name: str) -> asyncio.subprocess.Process:
    """``qoper8 serve --redis`` in its own process group; returns once it logged ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qoper8",
        "serve",
        "--worker",
        HANDLERS,
        "--children",
        "2",
        "--unix",
        str(tmp_path / f"{name}.sock"),
        "--redis",
        url,
        "--queue",
        queue,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stderr is not None
    while True:
        line = await proc.stderr.readline()
        if not line:
            raise RuntimeError(f"qoper8 serve {name} exited before it was ready")
        if b"consuming Redis queue" in line:
            # keep reading, so that a full pipe never blocks the daemon's logging
            drain = asyncio.create_task(proc.stderr.read())
            _drains.add(drain)
            drain.add_done_callback(_drains.discard)
            return proc


_drains: set[asyncio.Task[bytes]] = set()


async def test_two_daemons_serve_one_queue_and_stop_cleanly(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    daemons: list[asyncio.subprocess.Process] = []
    try:
        async with asyncio.timeout(60):
            daemons = [await _serve(tmp_path, redis_url, queue_name, n) for n in ("a", "b")]
            async with qoper8.RedisPool(redis_url, queue=queue_name) as rp:
                pids = await asyncio.gather(
                    *(rp.submit({"type": "sleep_ms", "ms": 30}, timeout=20) for _ in range(40))
                )
            assert len(set(pids)) == 4  # both hosts, both children each
            for d in daemons:
                d.send_signal(signal.SIGTERM)
            for d in daemons:
                assert await d.wait() == 0
    finally:
        for d in daemons:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.pid, signal.SIGKILL)
    assert StartedJobRegistry(queue_name, connection=sync_redis).get_job_ids() == []


@pytest.mark.parametrize("how", ["stop(grace=0)", "cancel run()"])
async def test_fast_stops_hand_running_jobs_back(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Path, how: str
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    q = Queue(queue_name, connection=sync_redis, serializer=JSONSerializer)
    job = q.enqueue("block", started=str(started), release=str(release))
    async with asyncio.timeout(20), qoper8.Pool(HANDLERS, children=1) as pool:
        consumer = RedisConsumer(pool, url=redis_url, queue=queue_name, grace=30)
        task = asyncio.create_task(consumer.run())
        await wait_until(started.exists, what="the job to start")
        if how == "stop(grace=0)":
            await consumer.stop(grace=0)
            await task
        else:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert job.get_status() == JobStatus.QUEUED
    assert q.job_ids == [job.id]
    assert StartedJobRegistry(queue_name, connection=sync_redis).get_job_ids() == []
    assert Worker.all(queue=q) == []
