"""Named actors across hosts (issue 12 item 6), against the machine's Redis: the registry's
atomic get-or-create from two clients, calls in order, errors as local, restarts, destroy
with queued calls, events through Redis, waiting for a name, hostile input. Hosts killed
mid-call are in ``test_redis_actor_faults``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import orjson
import pytest

import qoper8
from qoper8._redis import RedisConsumer
from tests.conftest import new_fifo, release, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import redis

pytestmark = pytest.mark.redis

ACTORS = "tests.actor_handlers:worker"


@contextlib.asynccontextmanager
async def actor_host(
    url: str, queue: str, *, lease: float = 30.0, max_actors: int = 8
) -> AsyncIterator[RedisConsumer]:
    """A pool of the actor handlers and the consumer that hosts its actors."""
    async with qoper8.Pool(ACTORS, children=1, max_actors=max_actors) as pool:
        consumer = RedisConsumer(pool, url=url, queue=queue, lease=lease)
        task = asyncio.create_task(consumer.run())
        try:
            yield consumer
        finally:
            await consumer.stop()
            await task


async def test_concurrent_get_or_create_from_two_clients_makes_one_actor(
    redis_url: str, queue_name: str
) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name),
        actor_host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as one,
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as two,
    ):
        creates = [
            (one if i % 2 else two).actors.create("counter", "shared", if_exists="get")
            for i in range(100)
        ]
        refs = await asyncio.gather(*creates)
        assert [info.name for info in await one.actors.list()] == ["shared"]
        totals = await asyncio.gather(*(ref.call("add", n=1) for ref in refs))
        assert sorted(int(str(t)) for t in totals) == list(
            range(1, 101)
        )  # one counter saw every call
        assert len({await ref.call("where") for ref in refs[:10]}) == 1
        with pytest.raises(qoper8.ActorExists):
            await two.actors.create("counter", "shared")


async def test_calls_run_one_at_a_time_in_arrival_order(redis_url: str, queue_name: str) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as rp,
    ):
        room = await rp.actors.create("room", "lobby", args={"title": "Lobby"})
        calls = [room.call("say", user="ada", text=str(i)) for i in range(50)]
        lines = await asyncio.gather(*calls)
        assert lines == list(range(1, 51))
        info = await room.info()
        assert (info.calls, info.queued, info.state, info.has_snapshot) == (50, 0, "ready", True)


async def test_errors_are_the_local_ones(redis_url: str, queue_name: str) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as rp,
    ):
        room = await rp.actors.create("room", "lobby", args={"title": "Lobby"})
        with pytest.raises(qoper8.JobFailed) as failed:
            await room.call("fail")
        assert failed.value.remote_type == "LookupError"
        assert await room.call("join", user="ada") == ["ada"]  # it lives on
        with pytest.raises(qoper8.InvalidAction, match="no method"):
            await room.call("nope")
        with pytest.raises(qoper8.InvalidAction):
            await room.call("join", users=3)
        with pytest.raises(qoper8.ActorNotFound):
            await rp.actors.get("nobody")
        with pytest.raises(qoper8.ActorNotFound):
            await rp.actors.destroy("nobody")
        with pytest.raises(qoper8.JobFailed, match="cannot start"):
            await rp.actors.create("broken", "b")
        assert [i.name for i in await rp.actors.list()] == ["lobby"]  # its name was freed


async def test_restarts_then_unavailable(redis_url: str, queue_name: str) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as rp,
    ):
        counter = await rp.actors.create("counter", "c", args={"start": 5}, max_restarts=1)
        await counter.call("add", n=1)
        with pytest.raises(qoper8.ActorDied) as died:
            await counter.call("crash")
        assert died.value.will_restart
        assert await counter.call("add", n=1) == 6  # no snapshot: __init__ ran again
        assert (await counter.info()).restarts == 1
        with pytest.raises(qoper8.ActorDied) as died:
            await counter.call("crash")
        assert not died.value.will_restart
        with pytest.raises(qoper8.ActorUnavailable):
            await counter.call("add")
        assert (await counter.info()).state == "unavailable"


async def test_destroy_fails_queued_calls_and_frees_the_name(
    redis_url: str, queue_name: str, tmp_path: Path, sync_redis: redis.Redis
) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as rp,
    ):
        room = await rp.actors.create("room", "lobby", args={"title": "Lobby"})
        fifo = new_fifo(tmp_path, "gate")
        running = asyncio.ensure_future(room.call("wait", fifo=fifo))
        queued = [asyncio.ensure_future(room.call("say", user="a", text="x")) for _ in range(3)]
        async with room.events() as sub:
            await wait_until(
                lambda: calls_in_redis(sync_redis, queue_name, "lobby") == 4, what="4 calls"
            )
            await rp.actors.destroy("lobby")
            for call in queued:
                with pytest.raises(qoper8.ActorUnavailable, match="destroyed"):
                    await call
            assert [e async for e in sub] == []  # the subscription ended
        assert sub.ended == "destroyed"
        await release(fifo, "done")
        assert await running == "done"  # a running call finishes
        with pytest.raises(qoper8.ActorNotFound):
            await room.call("say", user="a", text="x")
        again = await rp.actors.create("room", "lobby", args={"title": "Again"})
        state = await again.call("state")
        assert isinstance(state, dict)
        assert state["title"] == "Again"


def calls_in_redis(r: redis.Redis, queue: str, name: str) -> int:
    """The actor's calls in Redis: queued, and the one in flight."""
    running = r.hexists(f"qoper8:actor:{queue}:{name}", "running")
    return int(r.llen(f"qoper8:actor-calls:{queue}:{name}")) + int(running)


async def test_events_reach_subscribers_of_other_clients_in_order(
    redis_url: str, queue_name: str
) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as caller,
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as listener,
    ):
        await caller.actors.create("room", "lobby", args={"title": "Lobby"})
        theirs = await listener.actors.get("lobby")
        async with theirs.events() as sub, theirs.events(buffer=2) as slow:
            room = await caller.actors.get("lobby")
            await room.call("join", user="ada")
            await room.call("chatter", n=10)
            got = []
            async for event in sub:
                got.append((event.event, event.payload, event.missed))
                if event.payload == 9:
                    break
            # the slow one read nothing meanwhile: it kept the newest two, and says so
            assert [await anext(slow), await anext(slow)] == [
                qoper8.ActorEvent("tick", 8, missed=9),
                qoper8.ActorEvent("tick", 9, missed=0),
            ]
        assert got == [("joined", {"user": "ada"}, 0)] + [("tick", i, 0) for i in range(10)]
        await caller.actors.destroy("lobby")
        with pytest.raises(qoper8.ActorNotFound):
            async with theirs.events():
                pass


async def test_get_waits_for_a_name_any_client_creates(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as one,
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as two,
    ):
        with pytest.raises(qoper8.ActorNotFound, match="within"):
            await one.actors.get("late", wait=0.2)
        waiting = asyncio.ensure_future(one.actors.get("late", wait=10))
        named = f"qoper8:actor-named:{queue_name}:late"
        await wait_until(lambda: bool(sync_redis.llen(named)), what="get() to wait")
        assert not waiting.done()
        await two.actors.create("counter", "late")
        ref = await waiting
        assert await ref.call("add", n=2) == 2


async def test_a_queued_call_past_its_deadline_is_withdrawn(
    redis_url: str, queue_name: str, tmp_path: Path, sync_redis: redis.Redis
) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as rp,
    ):
        room = await rp.actors.create("room", "lobby", args={"title": "Lobby"})
        fifo = new_fifo(tmp_path, "gate")
        running = asyncio.ensure_future(room.call("wait", fifo=fifo))
        await wait_until(
            lambda: calls_in_redis(sync_redis, queue_name, "lobby") == 1, what="a call"
        )
        with pytest.raises(qoper8.JobTimeout):
            await room.call("say", user="a", text="late", timeout=0.3)
        await release(fifo)
        assert await running == "go"
        assert await room.call("say", user="a", text="next") == 1  # the late one never ran


async def test_hostile_input_is_refused_and_nothing_runs(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as rp,
    ):
        with pytest.raises(qoper8.InvalidAction, match=r"unknown actor type 'os\.system'"):
            await rp.actors.create("os.system", "evil", args={"command": "touch /tmp/x"})
        assert await rp.actors.list() == []  # refused, and its name freed
        for name in ("", "x" * 201, "a\nb"):
            with pytest.raises(qoper8.InvalidAction):
                await rp.actors.create("room", name, args={"title": "t"})
        with pytest.raises(qoper8.InvalidAction, match="not JSON"):
            await rp.actors.create("room", "r", args={"title": float("nan")})
        room = await rp.actors.create("room", "lobby", args={"title": "Lobby"})
        with pytest.raises(qoper8.InvalidAction, match="no method '__init__'"):
            await room.call("__init__", title="again")
        with pytest.raises(qoper8.InvalidAction, match="no method 'snapshot'"):
            await room.call("snapshot")
        # calls written straight into Redis: garbage, a foreign reply key, a bad shape
        calls = f"qoper8:actor-calls:{queue_name}:lobby"
        hostile: list[Any] = [
            b"not json",
            b"[1, 2]",
            orjson.dumps({"id": "x", "m": "say", "a": {"user": "e", "text": "t"}, "rk": "victim"}),
            orjson.dumps({"id": 1, "m": "say", "a": [], "rk": "qoper8:reply:x"}),
        ]
        sync_redis.rpush(calls, *hostile)
        assert await room.call("say", user="a", text="ok") == 1  # none of them ran
        assert not sync_redis.exists("victim")
        assert (await room.info()).queued == 0


async def test_a_cancelled_running_call_with_kill_on_cancel_kills_its_child(
    redis_url: str, queue_name: str, tmp_path: Path, sync_redis: redis.Redis
) -> None:
    async with (
        asyncio.timeout(30),
        actor_host(redis_url, queue_name, lease=1.2),  # heartbeats every 0.2 s
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=20) as rp,
    ):
        room = await rp.actors.create("room", "lobby", args={"title": "Lobby"}, max_restarts=1)
        await room.call("join", user="ada")
        before = await room.info()
        fifo = new_fifo(tmp_path, "gate")
        blocked = asyncio.ensure_future(room.call("wait", fifo=fifo, kill_on_cancel=True))
        await wait_until(lambda: calls_in_redis(sync_redis, queue_name, "lobby") == 1)
        blocked.cancel()
        state = await room.call("state")  # runs once the cancelled call has ended
        assert isinstance(state, dict)
        assert state["users"] == ["ada"]  # restarted from its snapshot
        after = await room.info()
        assert after.pid != before.pid
        assert after.pid == state["pid"]
        assert after.restarts == 1
