"""Messages in Redis mode (issue 11 item 5): a job's messages and progress travel on a Redis
stream of its own that ``RedisPool.stream`` reads; its newest progress is in the rq job's
``meta["progress"]`` too, read back here through rq itself."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

import qoper8
from qoper8._redis import stream_host, stream_reader
from qoper8._redis.stream_scripts import STREAM_MAXLEN, STREAM_WINDOW
from qoper8.errors import JobFailed, JobTimeout, TransportError
from tests.conftest import wait_until

from .conftest import serving

if TYPE_CHECKING:
    from pathlib import Path

    import redis

pytestmark = pytest.mark.redis


async def _collect(
    pool: qoper8.RedisPool, action: dict[str, Any], into: list[Any], timeout: float = 15
) -> None:
    """Read a stream to its end into ``into``; its error, if any, is raised after."""
    async with pool.stream(action, timeout=timeout) as stream:
        async for message in stream:
            into.append(message)  # noqa: PERF401  (the messages before a failure count)


async def test_stream_delivers_every_message_in_order_then_the_result(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name, children=1),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            async with rp.stream({"type": "count", "n": 3000}, timeout=15) as stream:
                got = [m async for m in stream]
                assert stream.result == {"sent": 3000}
            assert got == [{"i": i} for i in range(3000)]
            async with rp.stream({"type": "tokens", "words": ["a", "b"]}) as stream:
                assert [m async for m in stream] == ["a", "b"]
                assert stream.result is None


async def test_a_failure_mid_stream_raises_after_the_messages_sent_before_it(
    redis_url: str, queue_name: str
) -> None:
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name, children=1),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            got: list[Any] = []
            with pytest.raises(JobFailed) as info:
                await _collect(rp, {"type": "fail_after", "n": 5}, got)
            assert got == [0, 1, 2, 3, 4]
            assert info.value.remote_type == "LookupError"


def _meta(sync_redis: redis.Redis, job_id: str) -> dict[str, Any]:
    """The job's meta as rq users read it."""
    job = Job.fetch(job_id, connection=sync_redis, serializer=JSONSerializer)
    meta: dict[str, Any] = job.get_meta()
    return meta


async def test_progress_reaches_on_progress_and_rq_meta_without_overwriting_others(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    """The newest progress reaches ``submit(on_progress=...)`` and rq's ``get_meta()``; a
    key an rq user saves in meta mid-job (``save_meta``) survives the next progress."""
    gate = str(tmp_path / "gate")
    seen: list[Any] = []
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name, children=1),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            steps = [{"done": 1}, {"done": 2}]
            call = asyncio.create_task(
                rp.submit(
                    {"type": "progress_steps", "steps": steps, "gate": gate},
                    timeout=15,
                    on_progress=seen.append,
                )
            )
            await wait_until(lambda: seen == [{"done": 1}], what="the first progress")
            (job_id,) = StartedJobRegistry(queue_name, connection=sync_redis).get_job_ids()
            await wait_until(
                lambda: _meta(sync_redis, job_id) == {"progress": {"done": 1}},
                what="the first progress in rq's meta",
            )
            job = Job.fetch(job_id, connection=sync_redis, serializer=JSONSerializer)
            job.meta["note"] = "mine"
            job.save_meta()  # type: ignore[no-untyped-call]  # an rq user's own write
            (tmp_path / "gate.0").touch()
            await wait_until(lambda: seen[-1] == {"done": 2}, what="the second progress")
            (tmp_path / "gate.1").touch()
            assert await call == 2
    assert _meta(sync_redis, job_id) == {"note": "mine", "progress": {"done": 2}}


async def test_an_rq_job_gets_its_progress_in_meta_beside_what_it_was_enqueued_with(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    q = Queue(queue_name, connection=sync_redis, serializer=JSONSerializer)
    steps = [{"row": i} for i in range(50)]
    job = q.enqueue("progress_steps", steps=steps, meta={"owner": "rq"})
    async with asyncio.timeout(20), serving(redis_url, queue_name, children=1):
        await wait_until(
            lambda: job.get_status(refresh=True) == JobStatus.FINISHED, what="the rq job"
        )
    assert job.return_value() == 50
    # paced (not 50 writes), the newest value last, and rq's own key kept
    assert _meta(sync_redis, job.id) == {"owner": "rq", "progress": {"row": 49}}


async def test_a_reader_that_stops_reading_holds_the_host_and_redis_to_a_window(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    n = 5 * STREAM_MAXLEN
    async with asyncio.timeout(30):
        async with (
            serving(redis_url, queue_name, children=1) as (_, consumer),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            async with rp.stream({"type": "count", "n": n}, timeout=25) as stream:
                got = [await anext(stream) for _ in range(10)]

                def held() -> bool:
                    running = list(consumer._running.values())
                    return bool(running) and running[0].writer._waiting

                await wait_until(held, what="the host to wait for its reader")
                key = f"qoper8:msgs:{stream.job_id}"
                assert sync_redis.xlen(key) <= STREAM_WINDOW + stream_reader.READ_WINDOW + 20
                assert len(stream._ready) <= 2 * stream_reader.READ_WINDOW
                got += [m async for m in stream]
                assert stream.result == {"sent": n}
            assert got == [{"i": i} for i in range(n)]
            # the stream expires with the result
            assert 0 < sync_redis.ttl(key) <= 500


async def test_leaving_a_stream_withdraws_a_queued_job_and_stops_a_running_one(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    async with asyncio.timeout(20):
        async with (
            # a short lease: the heartbeat that finds the stop mark comes every lease / 6
            serving(redis_url, queue_name, children=1, lease=1.2),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            # running, kill_on_cancel: its child is killed, rq records it stopped
            args = {"n": 3, "started": str(started), "release": str(release)}
            async with rp.stream(
                {"type": "send_then_block", **args}, timeout=15, kill_on_cancel=True
            ) as stream:
                assert [await anext(stream) for _ in range(3)] == [0, 1, 2]
                running_id = stream.job_id
            await wait_until(
                lambda: (
                    Job.fetch(running_id, connection=sync_redis).get_status() == JobStatus.STOPPED
                ),
                what="the running job to be stopped",
            )
            # queued behind a busy child: withdrawn, never runs
            blocker = asyncio.create_task(
                rp.submit({"type": "block", "started": str(started) + "2", "release": str(release)})
            )
            await wait_until((tmp_path / "started2").exists, what="the child to be busy")
            async with rp.stream({"type": "count", "n": 3}, timeout=15) as stream:
                queued_id = stream.job_id
                await wait_until(
                    lambda: sync_redis.hget(f"rq:job:{queued_id}", "status") == b"queued",
                    what="the second job to be queued",
                )
            release.touch()
            await blocker
            await wait_until(
                lambda: not sync_redis.exists(f"rq:job:{queued_id}"),
                what="the queued job to be withdrawn",
            )
            assert sync_redis.lrange(f"rq:queue:{queue_name}", 0, -1) == []


async def test_leaving_a_running_stream_without_kill_lets_the_job_end_unread(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    """Its host stops writing messages nobody reads, rather than waiting for the reader."""
    n = 20 * STREAM_MAXLEN
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name, children=1),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            async with rp.stream({"type": "count", "n": n}, timeout=15) as stream:
                assert await anext(stream) == {"i": 0}
                job_id = stream.job_id
            job = Job.fetch(job_id, connection=sync_redis, serializer=JSONSerializer)
            await wait_until(
                lambda: job.get_status(refresh=True) == JobStatus.FINISHED,
                what="the job to end",
            )
            assert job.return_value() == {"sent": n}
            assert sync_redis.xlen(f"qoper8:msgs:{job_id}") < STREAM_MAXLEN + 100


async def test_a_timeout_mid_stream_raises_after_the_messages(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    action = {
        "type": "send_then_block",
        "n": 3,
        "started": str(tmp_path / "started"),
        "release": str(tmp_path / "release"),
    }
    got: list[Any] = []
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name, children=1),
            qoper8.RedisPool(redis_url, queue=queue_name, timeout=1.0) as rp,
        ):
            with pytest.raises(JobTimeout):
                await _collect(rp, action, got, timeout=1.0)
    assert got == [0, 1, 2]


async def test_a_reader_gone_silent_past_the_stall_limit_finds_messages_trimmed(
    redis_url: str, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host waits for a silent reader only so long (it may have vanished without a
    word); one that comes back after trimming gets TransportError, never a silent gap."""
    monkeypatch.setattr(stream_host, "STALL_SECONDS", 0.2)
    n = 2 * STREAM_MAXLEN + 200  # enough that trimming reaches what the reader left
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name, children=1) as (_, consumer),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
            rp.stream({"type": "count", "n": n}, timeout=15) as stream,
        ):
            assert await anext(stream) == {"i": 0}
            await wait_until(lambda: consumer.running_jobs == 0, what="the job to end")
            with pytest.raises(TransportError, match="trimmed"):
                async for _ in stream:
                    pass


async def test_a_stream_outlives_a_result_kept_for_no_time(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rq's result_ttl=0 drops the result at once; the stream stays a minute, so that a
    reader behind the handler still reads it to its end."""
    monkeypatch.setattr(stream_reader, "READ_WINDOW", 16)  # most of it left in Redis
    n = STREAM_WINDOW - 20  # the host need not wait for the reader: the job ends
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name, children=1),
            qoper8.RedisPool(redis_url, queue=queue_name, result_ttl=0) as rp,
            rp.stream({"type": "count", "n": n}, timeout=15) as stream,
        ):
            first = await anext(stream)
            await wait_until(
                lambda: not sync_redis.exists(f"rq:job:{stream.job_id}"), what="the job's end"
            )
            rest = [m async for m in stream]
            assert stream.result == {"sent": n}
    assert [first, *rest] == [{"i": i} for i in range(n)]
