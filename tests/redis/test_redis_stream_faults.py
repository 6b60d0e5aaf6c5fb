"""A Redis host killed while streaming (issue 11 item 7). What a reader sees: the messages
already written, then ``JobError`` once the reaper finds the host's lease expired; the job,
queued again, is withdrawn (a second run's messages would start over and repeat the first's).
A host that dies before any message was delivered is invisible: the job runs again elsewhere
and the stream carries that run."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from rq.registry import FinishedJobRegistry

import qoper8
from qoper8.errors import JobError
from tests.conftest import wait_until

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import redis

    from .conftest import Host

pytestmark = pytest.mark.redis

# A short lease, yet long enough that a loaded machine never stalls host B past two thirds
# of it (as in test_redis_faults).
LEASE = 2.0


async def test_a_host_killed_mid_stream_gives_the_messages_then_job_error(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    spawn_host: Callable[..., Awaitable[Host]],
    tmp_path: Path,
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    action = {"type": "send_then_block", "n": 5, "started": str(started), "release": str(release)}
    async with asyncio.timeout(40):
        host_a = await spawn_host(redis_url, queue_name, children=1, lease=LEASE)
        async with (
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
            rp.stream(action, timeout=30) as stream,
        ):
            assert [await anext(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
            await wait_until(started.exists, what="host A to block")
            host_a.kill()  # master and children: nothing more is written
            await host_a.proc.wait()
            await spawn_host(redis_url, queue_name, children=1, lease=LEASE)  # it reaps
            with pytest.raises(JobError, match="its host stopped"):
                await anext(stream)
            job_key = f"rq:job:{stream.job_id}"
            # withdrawn from the queue, or stopped if host B took it first
            await wait_until(
                lambda: sync_redis.hget(job_key, "status") in (None, b"stopped"),
                what="the job queued again to be withdrawn",
            )
            release.touch()
    assert FinishedJobRegistry(queue_name, connection=sync_redis).get_job_ids() == []


async def test_a_host_killed_before_any_message_is_invisible_to_the_stream(
    redis_url: str,
    queue_name: str,
    spawn_host: Callable[..., Awaitable[Host]],
    tmp_path: Path,
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    action = {"type": "send_then_block", "n": 0, "started": str(started), "release": str(release)}
    async with asyncio.timeout(40):
        host_a = await spawn_host(redis_url, queue_name, children=1, lease=LEASE)
        async with (
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
            rp.stream(action, timeout=30) as stream,
        ):
            await wait_until(started.exists, what="host A to block")
            first_pid = int(started.read_text())
            host_a.kill()
            await host_a.proc.wait()
            release.touch()
            await spawn_host(redis_url, queue_name, children=1, lease=LEASE)
            assert [m async for m in stream] == []
            assert stream.result != first_pid  # run again on host B
