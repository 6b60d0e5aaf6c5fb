"""Actors over HTTP (``/v1/actors...``) through ``qoper8.Client``: the same calls and the
same typed errors as ``pool.actors``; the create race (one actor of a name however many ask
at once), an actor child killed mid-call (ActorDied, a restart from the snapshot, queued calls
then served), destroy with calls queued, events as Server-Sent Events, hostile input, and
actors in /v1/status and /metrics."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import aiohttp
import orjson
import pytest

import qoper8
from tests.conftest import wait_until
from tests.http_messages_support import served

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.timeout(60)]


def busy(pool: qoper8.Pool, pid: int | None) -> bool:
    return any(c.pid == pid and c.state == "busy" for c in pool.statistics().children)


async def test_many_concurrent_creates_of_one_name_make_one_actor() -> None:
    async with served() as s, asyncio.timeout(30), aiohttp.ClientSession() as http:
        body = orjson.dumps({"type": "counter", "name": "race", "if_exists": "get"})

        async def create() -> int:
            async with http.post(s.url + "/v1/actors", data=body, headers=s.auth) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(create() for _ in range(100)))
        assert sorted(statuses) == [200] * 99 + [201]
        assert [a.name for a in await s.client.actors.list()] == ["race"]
        assert [a.name for a in s.pool.actors.list()] == ["race"]
        # if_exists="error": the name is taken, for every one of them.
        results = await asyncio.gather(
            *(s.client.actors.create("counter", "race") for _ in range(10)),
            return_exceptions=True,
        )
        assert all(isinstance(r, qoper8.ActorExists) for r in results)


async def test_calls_keep_state_and_errors_are_the_pools() -> None:
    async with served() as s, asyncio.timeout(30):
        actors = s.client.actors
        room = await actors.create("counter", "c", args={"start": 10})
        assert await room.call("add", n=5) == 15
        assert await room.call("add", {"n": 1}) == 16
        info = await room.info()
        assert (info.name, info.type, info.state, info.calls) == ("c", "counter", "ready", 2)
        assert info.pid == (await room.call("pid"))
        with pytest.raises(qoper8.JobFailed) as failed:
            await room.call("fail")
        assert failed.value.remote_type == "LookupError"
        assert await room.call("add") == 17  # the actor lives on
        with pytest.raises(qoper8.JobFailed) as refused:
            await room.call("refuse", status=409)
        assert (refused.value.status, refused.value.code) == (409, "refused")
        with pytest.raises(qoper8.ActorNotFound):
            await actors.get("nobody")
        with pytest.raises(qoper8.ActorNotFound):
            await actors.get("nobody", wait=0.1)
        with pytest.raises(qoper8.ActorNotFound):
            await actors.destroy("nobody")
        with pytest.raises(qoper8.JobFailed):
            await actors.create("broken", "b")
        # get(wait=) waits for the name to appear.
        waiting = asyncio.create_task(actors.get("later", wait=20))
        host = s.pool._actor_host
        await wait_until(lambda: "later" in host._waiters, what="the daemon to wait for it")
        await actors.create("counter", "later")
        assert (await waiting).name == "later"


async def test_hostile_input_is_refused_and_nothing_is_imported() -> None:
    async with served() as s, asyncio.timeout(30):
        for kind in ("os.system", "builtins.eval", "tests.daemon_handlers.Counter"):
            with pytest.raises(qoper8.InvalidAction) as refused:
                await s.client.actors.create(kind, "x")
            assert refused.value.errors[0]["type"] == "unknown_actor_type"
        room = await s.client.actors.create("counter", "c")
        for method in ("__init__", "snapshot_", "_private", "os.system", "__class__"):
            with pytest.raises(qoper8.InvalidAction):
                await room.call(method)
        with pytest.raises(qoper8.InvalidAction):
            await room.call("add", n="many")  # validated from the annotations
        with pytest.raises(qoper8.InvalidAction):
            await s.client.actors.create("counter", "")  # a name is 1 to 200 characters
        assert [a.name for a in await s.client.actors.list()] == ["c"]


async def test_an_actor_child_killed_mid_call_is_actor_died_then_restarts_from_its_snapshot(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    async with served() as s, asyncio.timeout(30):
        room = await s.client.actors.create("counter", "c", max_restarts=2)
        assert await room.call("add", n=5) == 5
        first = (await room.info()).pid
        assert first is not None
        running = asyncio.create_task(room.call("wait_file", path=str(gate)))
        await wait_until(lambda: busy(s.pool, first), what="the call to run")
        queued = [asyncio.create_task(room.call("add")) for _ in range(2)]
        await wait_until(lambda: s.pool.actors.list()[0].queued == 2, what="two queued calls")
        os.kill(first, signal.SIGKILL)
        with pytest.raises(qoper8.ActorDied) as died:
            await running
        assert (died.value.pid, died.value.signal, died.value.will_restart) == (
            first,
            signal.SIGKILL,
            True,
        )
        # The queued calls waited for the restart, from the snapshot after the last call.
        assert sorted(await asyncio.gather(*queued), key=str) == [6, 7]
        info = await room.info()
        assert (info.restarts, info.state) == (1, "ready")
        assert info.pid not in (None, first)
        # A method that kills its own child: the same error, and the restart policy.
        with pytest.raises(qoper8.ActorDied):
            await room.call("crash")
        assert await room.call("add") == 8
        with pytest.raises(qoper8.ActorDied) as last:
            await room.call("crash")
        assert last.value.will_restart is False
        with pytest.raises(qoper8.ActorUnavailable):
            await room.call("add")


async def test_destroy_fails_the_queued_calls_and_ends_the_subscriptions(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with served() as s, asyncio.timeout(30):
        room = await s.client.actors.create("counter", "c")
        async with room.events() as events:
            assert await room.call("add", n=2) == 2
            assert await room.call("add", n=3) == 5
            running = asyncio.create_task(room.call("wait_file", path=str(gate)))
            pid = s.pool.actors.list()[0].pid
            await wait_until(lambda: busy(s.pool, pid), what="the call to run")
            queued = [asyncio.create_task(room.call("add")) for _ in range(2)]
            await wait_until(lambda: s.pool.actors.list()[0].queued == 2, what="queued calls")
            await s.client.actors.destroy("c")
            for call in queued:
                with pytest.raises(qoper8.ActorUnavailable, match="destroyed"):
                    await call
            gate.touch()
            assert await running == "released"  # the running call finished
            got = [(e.event, e.payload, e.missed) async for e in events]
        assert got == [
            ("added", {"n": 2, "value": 2}, 0),
            ("added", {"n": 3, "value": 5}, 0),
        ]
        assert events.ended == "destroyed"
        with pytest.raises(qoper8.ActorNotFound):
            await room.call("add")
        with pytest.raises(qoper8.ActorNotFound):
            async with room.events():
                pytest.fail("subscribed to a destroyed actor")
        # The name is free again: a new actor, which the old handle reaches.
        await s.client.actors.create("counter", "c", args={"start": 100})
        assert await room.call("add") == 101


async def test_actors_are_in_the_status_and_the_metrics() -> None:
    async with served() as s, asyncio.timeout(30):
        room = await s.client.actors.create("counter", "c", max_restarts=1)
        with pytest.raises(qoper8.ActorDied):
            await room.call("crash")
        await wait_until(
            lambda: s.pool.actors.list()[0].state == "ready", what="the actor's restart"
        )
        status = await s.client.status()
        (entry,) = status["actors"]
        assert (entry["name"], entry["type"], entry["state"], entry["restarts"]) == (
            "c",
            "counter",
            "ready",
            1,
        )
        assert entry["pid"] in [c["pid"] for c in status["children"]]
        assert status["actor_restarts"] == 1
        metrics = await s.client.metrics()
        assert 'qoper8_actors{state="ready"} 1' in metrics.splitlines()
        assert 'qoper8_actors{state="restarting"} 0' in metrics.splitlines()
        assert "qoper8_actor_restarts_total 1" in metrics.splitlines()
        await s.client.actors.destroy("c")
        metrics = await s.client.metrics()
        assert "qoper8_actor_restarts_total 1" in metrics.splitlines()  # a counter stays
        assert 'qoper8_actors{state="ready"} 0' in metrics.splitlines()
