"""``POST /v1/broadcast`` and ``POST /v1/ask`` through ``qoper8.Client``: per-child replies,
a dead child and a slow one told apart, the same typed errors as the pool's."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import qoper8
from tests.conftest import wait_until
from tests.http_messages_support import served

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.timeout(60)]


async def test_a_broadcast_answers_per_child() -> None:
    async with served() as s, asyncio.timeout(20):
        report = await s.client.broadcast("ping", {"value": 3}, timeout=5, sticky=True)
        assert isinstance(report, qoper8.BroadcastResult)
        assert report.complete
        children = {c.id: c.pid for c in s.pool.statistics().children}
        assert report.values == {i: {"pid": pid, "value": 3} for i, pid in children.items()}
        failed = await s.client.broadcast("boom", timeout=5)
        assert not failed.complete
        assert all(isinstance(e, qoper8.JobFailed) for e in failed.errors.values())
        assert len(failed.errors) == 2
        unknown = await s.client.broadcast("no.such.topic", timeout=5)
        assert all(isinstance(e, qoper8.InvalidAction) for e in unknown.errors.values())
        with pytest.raises(qoper8.InvalidAction):
            await s.client.broadcast("qoper8.reserved")


async def test_a_broadcast_tells_a_dead_child_from_a_slow_one(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with served() as s, asyncio.timeout(20):
        slow = asyncio.create_task(
            s.client.submit({"type": "wait_file", "path": str(gate)}, timeout=15)
        )
        await wait_until(lambda: s.pool.statistics().running == 1, what="a busy child")
        before = {c.id: c.state for c in s.pool.statistics().children}
        report = await s.client.broadcast("die", timeout=0.5)
        (busy,) = [i for i, state in before.items() if state == "busy"]
        (idle,) = [i for i, state in before.items() if state == "idle"]
        errors = report.errors
        assert isinstance(errors[busy], qoper8.JobTimeout)  # slow: still on its job
        # dead: before it answered
        dead = errors[idle]
        assert isinstance(dead, qoper8.ChildDied)
        assert dead.exitcode == 5
        gate.touch()
        assert await slow is None  # its job ended; then it got the message (and died)


async def test_ask_one_child_by_id_by_pid_or_by_its_status_entry(tmp_path: Path) -> None:
    async with served() as s, asyncio.timeout(20):
        status = await s.client.status()
        entry = status["children"][0]
        mine = {"pid": entry["pid"], "value": None}
        assert await s.client.ask(entry["id"], "ping", {"value": 1}) == {**mine, "value": 1}
        assert await s.client.ask(entry["pid"], "ping", pid=True) == mine
        assert await s.client.ask(entry, "ping") == mine
        stats = s.pool.statistics().children[0]
        assert await s.client.ask(stats, "ping") == {"pid": stats.pid, "value": None}
        with pytest.raises(qoper8.InvalidAction):
            await s.client.ask(999, "ping")
        with pytest.raises(qoper8.InvalidAction):
            await s.client.ask(entry["id"], "no.such.topic")
        with pytest.raises(qoper8.JobFailed):
            await s.client.ask(entry["id"], "boom")
        gate = tmp_path / "gate"
        with pytest.raises(qoper8.JobTimeout):
            await s.client.ask(entry["id"], "wait_file", {"path": str(gate)}, timeout=0.2)
        gate.touch()
        with pytest.raises(qoper8.ChildDied) as died:
            await s.client.ask(entry["id"], "die", timeout=10)
        assert died.value.pid == entry["pid"]
