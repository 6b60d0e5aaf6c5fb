"""Named actors when a Redis host dies or stops: hosts run as processes of their own
(``tests.redis.actor_host``), SIGKILLed with their children like a power cut, or stopped
with TERM; the actor starts again on the other host within the lease, from its snapshot,
and the calls queued meanwhile are served."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

import pytest

import qoper8
from tests.conftest import new_fifo, wait_until

from .conftest import ROOT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    import redis

pytestmark = pytest.mark.redis

# Short, yet long enough that a loaded machine does not stall a live host past two thirds
# of it (its actors would move).
LEASE = 2.0


class ActorHostProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    def kill(self) -> None:
        """SIGKILL master and children, like a power cut."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Awaitable[ActorHostProcess]]]:
    """``await spawn(url, queue)``: a host with actors, once it printed READY."""
    hosts: list[ActorHostProcess] = []

    async def start(url: str, queue: str) -> ActorHostProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.redis.actor_host",
            url,
            queue,
            str(LEASE),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        host = ActorHostProcess(proc)
        hosts.append(host)
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
        if not line.startswith(b"READY"):
            raise RuntimeError(f"host did not start: {line!r}")
        return host

    yield start
    for host in hosts:
        host.terminate()
    for host in hosts:
        try:
            async with asyncio.timeout(10):
                await host.proc.wait()
        except TimeoutError:
            host.kill()
            await host.proc.wait()
        host.kill()


def holder(r: redis.Redis, queue: str, name: str) -> str:
    value = r.hget(f"qoper8:actor:{queue}:{name}", "host")
    return value.decode() if isinstance(value, bytes) else str(value or "")


def running(r: redis.Redis, queue: str, name: str) -> bool:
    return bool(r.hexists(f"qoper8:actor:{queue}:{name}", "running"))


async def test_actor_of_a_sigkilled_host_restarts_elsewhere_from_its_snapshot(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    spawn: Callable[..., Awaitable[ActorHostProcess]],
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(40):
        host_a = await spawn(redis_url, queue_name)
        async with qoper8.RedisPool(redis_url, queue=queue_name, timeout=30) as rp:
            room = await rp.actors.create("room", "lobby", args={"title": "Lobby"}, max_restarts=1)
            await room.call("join", user="ada")
            assert await room.call("say", user="ada", text="one") == 1
            first = await room.info()
            on_a = holder(sync_redis, queue_name, "lobby")
            await spawn(redis_url, queue_name)
            blocked = asyncio.ensure_future(room.call("wait", fifo=new_fifo(tmp_path, "gate")))
            await wait_until(lambda: running(sync_redis, queue_name, "lobby"), what="a call")
            queued = [
                asyncio.ensure_future(room.call("say", user="bob", text=str(i))) for i in range(3)
            ]
            await wait_until(lambda: sync_redis.llen(f"qoper8:actor-calls:{queue_name}:lobby") == 3)
            host_a.kill()  # master and children, mid-call: nothing is written back
            await host_a.proc.wait()
            with pytest.raises(qoper8.ActorDied) as died:
                await blocked
            assert died.value.will_restart
            assert [await q for q in queued] == [2, 3, 4]  # nothing queued was lost
            state = await room.call("state")
            assert isinstance(state, dict)
            assert state["users"] == ["ada"]  # from the snapshot, not __init__
            info = await room.info()
        assert holder(sync_redis, queue_name, "lobby") not in ("", on_a)
        assert (info.restarts, info.state, info.calls) == (1, "ready", 7)
        assert info.pid != first.pid
        assert state["pid"] == info.pid


async def test_actor_of_a_dead_host_without_restarts_becomes_unavailable(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    spawn: Callable[..., Awaitable[ActorHostProcess]],
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(40):
        host_a = await spawn(redis_url, queue_name)
        async with qoper8.RedisPool(redis_url, queue=queue_name, timeout=30) as rp:
            room = await rp.actors.create("room", "lobby", args={"title": "Lobby"})
            await spawn(redis_url, queue_name)
            blocked = asyncio.ensure_future(room.call("wait", fifo=new_fifo(tmp_path, "gate")))
            await wait_until(lambda: running(sync_redis, queue_name, "lobby"), what="a call")
            queued = asyncio.ensure_future(room.call("say", user="bob", text="x"))
            await wait_until(lambda: sync_redis.llen(f"qoper8:actor-calls:{queue_name}:lobby") == 1)
            host_a.kill()
            with pytest.raises(qoper8.ActorDied) as died:
                await blocked
            assert not died.value.will_restart
            with pytest.raises(qoper8.ActorUnavailable, match="restarts used: 0 of 0"):
                await queued
            with pytest.raises(qoper8.ActorUnavailable):
                await room.call("say", user="bob", text="y")
            assert (await room.info()).state == "unavailable"


async def test_a_stopping_host_hands_its_actors_over_without_a_restart(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    spawn: Callable[..., Awaitable[ActorHostProcess]],
) -> None:
    async with asyncio.timeout(40):
        host_a = await spawn(redis_url, queue_name)
        async with qoper8.RedisPool(redis_url, queue=queue_name, timeout=30) as rp:
            room = await rp.actors.create("room", "lobby", args={"title": "Lobby"})
            await room.call("join", user="ada")
            on_a = holder(sync_redis, queue_name, "lobby")
            await spawn(redis_url, queue_name)
            host_a.terminate()
            await host_a.proc.wait()
            assert await room.call("join", user="bob") == ["ada", "bob"]
            info = await room.info()
        assert holder(sync_redis, queue_name, "lobby") not in ("", on_a)
        assert (info.restarts, info.state) == (0, "ready")
