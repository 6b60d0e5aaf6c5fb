"""Named actors (issue 12), on the local pool: placement on actor children, calls, atomic
names, deaths and restarts (with and without a snapshot), events, destroy."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import pytest

import qoper8
from tests.conftest import new_fifo, release, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

WORKER = "tests.actor_handlers:worker"


@pytest.fixture
async def apool() -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(WORKER, children=2) as p:
        yield p


def _pool_pids(pool: qoper8.Pool) -> set[int]:
    return {c.pid for c in pool._supervisor.children.values() if c.pid}


async def test_an_actor_lives_on_a_child_of_its_own_and_keeps_state(apool: qoper8.Pool) -> None:
    room = await apool.actors.create("room", "lobby", args={"title": "Lobby"})
    assert await room.call("join", user="ada") == ["ada"]
    assert await room.call("join", {"user": "bob"}) == ["ada", "bob"]
    state = await room.call("state", timeout=5)
    assert isinstance(state, dict)
    assert state["users"] == ["ada", "bob"]
    # Its child serves no ordinary action, and the pool kept its own two children.
    assert state["pid"] not in _pool_pids(apool)
    await wait_until(lambda: len(_pool_pids(apool)) == 2, what="the pool's children")
    pids = {await apool.submit({"type": "pid"}) for _ in range(20)}
    assert state["pid"] not in pids
    (info,) = apool.actors.list()
    assert (info.name, info.type, info.state, info.pid) == ("lobby", "room", "ready", state["pid"])
    assert info.has_snapshot


async def test_a_method_that_raises_is_job_failed_and_the_actor_lives_on(
    apool: qoper8.Pool,
) -> None:
    room = await apool.actors.create("room", "r", args={"title": "t"})
    with pytest.raises(qoper8.JobFailed) as info:
        await room.call("fail")
    assert info.value.remote_type == "LookupError"
    with pytest.raises(qoper8.InvalidAction, match="no method"):
        await room.call("nope")
    with pytest.raises(qoper8.InvalidAction):
        await room.call("join", user=3.5)
    with pytest.raises(qoper8.InvalidAction):
        await room.call("_private")
    assert await room.call("join", user="ada") == ["ada"]


async def test_calls_run_one_at_a_time_in_arrival_order(apool: qoper8.Pool) -> None:
    room = await apool.actors.create("room", "r", args={"title": "t"})
    results = await asyncio.gather(*(room.call("say", user="u", text=str(i)) for i in range(50)))
    assert results == list(range(1, 51))


async def test_get_or_create_is_one_atomic_step(apool: qoper8.Pool) -> None:
    refs = await asyncio.gather(
        *(
            apool.actors.create("counter", "one", args={"start": 0}, if_exists="get")
            for _ in range(100)
        )
    )
    assert len(apool.actors.list()) == 1
    assert await refs[0].call("add") == 1
    assert await refs[99].call("add") == 2  # every handle reaches the one actor
    with pytest.raises(qoper8.ActorExists):
        await apool.actors.create("counter", "one")


async def test_get_waits_for_the_name_to_appear(apool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.ActorNotFound):
        await apool.actors.get("later")
    with pytest.raises(qoper8.ActorNotFound):
        await apool.actors.get("later", wait=0.2)
    waiting = asyncio.create_task(apool.actors.get("later", wait=10))
    await asyncio.sleep(0)
    assert not waiting.done()
    await apool.actors.create("counter", "later")
    ref = await waiting
    assert await ref.call("add", n=5) == 5


async def test_a_dead_actor_child_restarts_the_actor_from_its_snapshot(
    apool: qoper8.Pool,
) -> None:
    room = await apool.actors.create("room", "r", args={"title": "t"}, max_restarts=1)
    await room.call("join", user="ada")
    await room.call("say", user="ada", text="hi")
    before = await room.call("state")
    assert isinstance(before, dict)
    queued = [asyncio.ensure_future(room.call("say", user="bob", text=str(i))) for i in range(3)]
    with pytest.raises(qoper8.ActorDied) as died:
        await room.call("crash")
    assert died.value.will_restart
    assert died.value.signal == signal.SIGKILL
    # The calls queued behind the crash waited for the restart, and got the restored state.
    assert await asyncio.gather(*queued) == [2, 3, 4]
    after = await room.call("state")
    assert isinstance(after, dict)
    assert after["pid"] != before["pid"]
    assert (after["users"], after["lines"]) == (["ada"], 4)
    (info,) = apool.actors.list()
    assert (info.restarts, info.state) == (1, "ready")
    # Restarts used up: the next death leaves it unavailable.
    with pytest.raises(qoper8.ActorDied) as again:
        await room.call("crash")
    assert not again.value.will_restart
    with pytest.raises(qoper8.ActorUnavailable):
        await room.call("state")


async def test_an_actor_without_a_snapshot_restarts_from_its_arguments(
    apool: qoper8.Pool,
) -> None:
    counter = await apool.actors.create("counter", "c", args={"start": 10}, max_restarts=2)
    assert await counter.call("add", n=5) == 15
    with pytest.raises(qoper8.ActorDied):
        await counter.call("crash")
    assert await counter.call("add") == 11  # __init__ ran again with start=10


async def test_a_killed_actor_child_mid_call_from_outside(
    apool: qoper8.Pool, tmp_path: Path
) -> None:
    room = await apool.actors.create("room", "r", args={"title": "t"}, max_restarts=1)
    await room.call("join", user="ada")
    fifo = new_fifo(tmp_path, "gate")
    waiting = asyncio.ensure_future(room.call("wait", fifo=fifo))
    pid = room.info().pid
    assert pid is not None
    await wait_until(lambda: apool.actors.list()[0].queued == 0, what="the call running")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(qoper8.ActorDied):
        await waiting
    state = await room.call("state", timeout=10)
    assert isinstance(state, dict)
    assert state["users"] == ["ada"]


async def test_a_call_past_its_deadline_kills_the_child_and_the_actor_restarts(
    apool: qoper8.Pool, tmp_path: Path
) -> None:
    room = await apool.actors.create("room", "r", args={"title": "t"}, max_restarts=1)
    await room.call("join", user="ada")
    with pytest.raises(qoper8.JobTimeout):
        await room.call("wait", fifo=new_fifo(tmp_path, "gate"), timeout=0.3)
    assert await room.call("join", user="bob", timeout=10) == ["ada", "bob"]


async def test_destroy_fails_queued_calls_and_frees_the_name(
    apool: qoper8.Pool, tmp_path: Path
) -> None:
    room = await apool.actors.create("room", "r", args={"title": "t"})
    fifo = new_fifo(tmp_path, "gate")
    running = asyncio.ensure_future(room.call("wait", fifo=fifo))
    await wait_until(lambda: apool.actors.list()[0].queued == 0, what="the call running")
    queued = [asyncio.ensure_future(room.call("join", user=str(i))) for i in range(3)]
    await asyncio.sleep(0)
    pid = room.info().pid
    await apool.actors.destroy("r")
    for call in queued:
        with pytest.raises(qoper8.ActorUnavailable, match="destroyed"):
            await call
    await release(fifo)
    assert await running == "go"  # the running call finished
    with pytest.raises(qoper8.ActorNotFound):
        await room.call("state")
    await wait_until(
        lambda: pid not in {c.pid for c in apool.statistics().children}, what="its child retired"
    )
    again = await apool.actors.create("room", "r", args={"title": "new"})
    state = await again.call("state")
    assert isinstance(state, dict)
    assert state["title"] == "new"


async def test_events_reach_every_subscriber_in_order(apool: qoper8.Pool) -> None:
    room = await apool.actors.create("room", "r", args={"title": "t"})
    first, second = room.events(), room.events()
    await room.call("join", user="ada")
    await room.call("say", user="ada", text="hello")
    for sub in (first, second):
        got = [await sub.__anext__() for _ in range(2)]
        assert [(e.event, e.payload) for e in got] == [
            ("joined", {"user": "ada"}),
            ("said", {"user": "ada", "text": "hello"}),
        ]
        sub.close()


async def test_a_slow_subscriber_loses_the_oldest_and_is_told_how_many(
    apool: qoper8.Pool,
) -> None:
    room = await apool.actors.create("room", "r", args={"title": "t"})
    async with room.events(buffer=10) as events:
        assert await room.call("chatter", n=25) == 25
        got = [await events.__anext__() for _ in range(10)]
    assert [e.payload for e in got] == list(range(15, 25))
    assert got[0].missed == 15
    assert all(e.missed == 0 for e in got[1:])


async def test_an_unknown_type_or_a_broken_init_is_refused(apool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.InvalidAction, match="unknown actor type"):
        await apool.actors.create("os.system", "x")
    with pytest.raises(qoper8.JobFailed, match="cannot start"):
        await apool.actors.create("broken", "b")
    with pytest.raises(qoper8.InvalidAction):
        await apool.actors.create("room", "bad", args={"title": 5.5})
    assert apool.actors.list() == []  # a failed first start frees the name
    room = await apool.actors.create("room", "bad", args={"title": "ok"})
    assert await room.call("join", user="a") == ["a"]


async def test_many_light_actors_share_a_child() -> None:
    async with qoper8.Pool(WORKER, children=1, max_actors_per_child=3, max_actors=4) as pool:
        refs = [await pool.actors.create("counter", f"c{i}") for i in range(3)]
        pids = {await r.call("where") for r in refs}
        assert len(pids) == 1
        fourth = await pool.actors.create("counter", "c3")
        assert await fourth.call("where") not in pids
        with pytest.raises(qoper8.ActorUnavailable, match="max_actors"):
            await pool.actors.create("counter", "c4")


async def test_recycling_never_retires_a_child_that_holds_actors() -> None:
    async with qoper8.Pool(WORKER, children=1, max_jobs_per_child=2, max_jobs_jitter=0) as pool:
        counter = await pool.actors.create("counter", "c")
        pid = await counter.call("where")
        for _ in range(10):
            await counter.call("add")
        assert await counter.call("where") == pid
