"""Broadcasts in Redis mode (issue 11 item 5): ``RedisPool.broadcast`` reaches every child of
every live host, each answer says its host and child, and a host that does not answer in
time is an error entry of its own; sticky payloads reach hosts started later."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import qoper8
from qoper8.errors import InvalidAction, JobTimeout
from tests.conftest import wait_until

from .conftest import serving

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import redis

    from .conftest import Host

pytestmark = pytest.mark.redis


async def _registered(sync_redis: redis.Redis, queue: str, n: int) -> None:
    """Wait until ``n`` hosts serve ``queue``: a host counts once registered (and it
    registers once it listens for broadcasts)."""
    await wait_until(lambda: sync_redis.zcard(f"qoper8:consumers:{queue}") == n, what=f"{n} hosts")


async def test_a_broadcast_reaches_every_child_of_every_host_and_names_a_dead_one(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    spawn_host: Callable[..., Awaitable[Host]],
) -> None:
    async with asyncio.timeout(30):
        live = await spawn_host(redis_url, queue_name, children=2)
        dead = await spawn_host(redis_url, queue_name, children=1)
        await _registered(sync_redis, queue_name, 2)
        async with qoper8.RedisPool(redis_url, queue=queue_name) as rp:
            report = await rp.broadcast("config.set", {"value": 1}, timeout=10)
            assert report.complete
            by_host = {r.host: r for r in report.replies}
            assert len(report.replies) == 3
            assert len(by_host) == 2  # two hosts, their own child ids
            assert {r.value for r in report.replies} == {r.pid for r in report.replies}
            dead.kill()  # still registered: a host that died without a word
            await dead.proc.wait()
            report = await rp.broadcast("config.set", {"value": 2}, timeout=1.5)
    answered = [r for r in report.replies if r.ok]
    assert len(answered) == 2
    assert all(f".{live.pid}." in (r.host or "") for r in answered)
    (silent,) = [r for r in report.replies if not r.ok]
    assert f".{dead.pid}." in (silent.host or "")
    assert silent.child == 0
    assert isinstance(silent.error, JobTimeout)
    assert "did not answer" in str(silent.error)


async def test_an_unknown_topic_is_an_error_per_child(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    async with (
        asyncio.timeout(20),
        serving(redis_url, queue_name, children=2),
        qoper8.RedisPool(redis_url, queue=queue_name) as rp,
    ):
        await _registered(sync_redis, queue_name, 1)
        report = await rp.broadcast("no.such.topic", {}, timeout=5)
    assert len(report.replies) == 2
    assert all(isinstance(r.error, InvalidAction) for r in report.replies)


async def test_a_sticky_broadcast_reaches_a_host_started_later(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    async with asyncio.timeout(20), qoper8.RedisPool(redis_url, queue=queue_name) as rp:
        async with serving(redis_url, queue_name, children=1):
            await _registered(sync_redis, queue_name, 1)
            report = await rp.broadcast("config.set", {"value": "v1"}, timeout=5, sticky=True)
            assert report.complete
            assert len(report.replies) == 1
        # the first host is gone; a new one (its children new) has the payload
        async with serving(redis_url, queue_name, children=1):
            assert await rp.submit({"type": "config.get"}, timeout=10) == "v1"


async def test_a_busy_child_is_a_slow_one_of_a_host_that_answers(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    """A child busy past the deadline is a ``JobTimeout`` entry of its own (its host named),
    told apart from a host that did not answer at all (child 0)."""
    started, release = tmp_path / "started", tmp_path / "release"
    async with (
        asyncio.timeout(20),
        serving(redis_url, queue_name, children=2),
        qoper8.RedisPool(redis_url, queue=queue_name) as rp,
    ):
        await _registered(sync_redis, queue_name, 1)
        busy = asyncio.create_task(
            rp.submit({"type": "block", "started": str(started), "release": str(release)})
        )
        await wait_until(started.exists, what="a child to be busy")
        report = await rp.broadcast("config.set", {"value": 3}, timeout=1.0)
        release.touch()
        busy_pid = await busy
    (slow,) = [r for r in report.replies if not r.ok]
    (quick,) = [r for r in report.replies if r.ok]
    assert isinstance(slow.error, JobTimeout)
    assert slow.child != 0
    assert slow.pid == busy_pid
    assert slow.host == quick.host is not None
