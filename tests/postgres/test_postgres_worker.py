"""workers/postgres.py against the machine's real PostgreSQL (issue 15): one connection per
child, and what production does to it (``pg_terminate_backend``, ``idle_session_timeout``):
reads reconnect and run again, a write fails once and its child is replaced."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import TYPE_CHECKING

import pytest

import qoper8
from tests.conftest import wait_until
from tests.postgres.conftest import WORKER

if TYPE_CHECKING:
    from tests.postgres.conftest import Backends

pytestmark = pytest.mark.postgres


def _pids(pool: qoper8.Pool) -> set[int | None]:
    return {c.pid for c in pool.statistics().children}


async def test_each_child_keeps_one_connection_and_closes_it_on_stop(
    pg_env: str, backends: Backends
) -> None:
    async with asyncio.timeout(20):
        async with qoper8.Pool(WORKER, children=2) as pool:
            connections = backends.pids()
            assert len(connections) == 2  # opened in on_start, one per child
            put = await pool.submit({"type": "item.put", "key": "a", "value": "x"})
            assert put == {"key": "a", "value": "x", "count": 0}
            got = await asyncio.gather(
                *(pool.submit({"type": "item.get", "key": "a"}) for _ in range(20))
            )
            assert all(g == put for g in got)
            assert await pool.submit({"type": "counter.add", "key": "a", "by": 2}) == 2
            assert isinstance(await pool.submit({"type": "sql.now"}), str)
            with pytest.raises(qoper8.JobFailed) as info:
                await pool.submit({"type": "item.get", "key": "missing"})
            assert (info.value.status, info.value.code) == (404, "not_found")
            assert backends.pids() == connections  # the same two, all along
        await wait_until(lambda: not backends.pids(), what="on_stop closed the connections")


async def test_a_terminated_connection_is_reopened_for_a_read(
    pg_env: str, backends: Backends
) -> None:
    async with asyncio.timeout(20), qoper8.Pool(WORKER, children=1) as pool:
        await pool.submit({"type": "item.put", "key": "k", "value": "v"})
        children = _pids(pool)
        (old,) = backends.pids()
        assert backends.terminate_all() == 1
        await wait_until(lambda: old not in backends.pids(), what="the backend gone")
        assert await pool.submit({"type": "item.get", "key": "k"}) == {
            "key": "k",
            "value": "v",
            "count": 0,
        }
        assert len(backends.pids() - {old}) == 1  # a new connection...
        assert _pids(pool) == children  # ...in the same child
        assert pool.statistics().failed == 0


async def test_a_terminated_connection_fails_a_write_once_and_its_child_is_replaced(
    pg_env: str, backends: Backends
) -> None:
    async with asyncio.timeout(20), qoper8.Pool(WORKER, children=1) as pool:
        assert await pool.submit({"type": "counter.add", "key": "c"}) == 1
        children = _pids(pool)
        (old,) = backends.pids()
        backends.terminate_all()
        await wait_until(lambda: old not in backends.pids(), what="the backend gone")
        with pytest.raises(qoper8.JobFailed) as info:
            await pool.submit({"type": "counter.add", "key": "c"})
        assert info.value.remote_is(qoper8.ReplaceChild)
        assert (info.value.status, info.value.code) == (503, "child_replaced")
        # The backend was gone before the statement was sent: it never ran.
        assert await pool.submit({"type": "counter.add", "key": "c"}) == 2
        # A fresh child, with a fresh connection (a forked one is ready before the old one
        # has finished retiring).
        await wait_until(lambda: _pids(pool).isdisjoint(children), what="the old child gone")
        stats = pool.statistics()
        assert (stats.died, stats.degraded) == (0, False)


async def test_an_idle_session_timeout_is_survived(
    pg_env: str, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_DSN", f"{pg_env} options='-c idle_session_timeout=200'")
    async with asyncio.timeout(20), qoper8.Pool(WORKER, children=1) as pool:
        await pool.submit({"type": "item.put", "key": "k", "value": "v"})
        await wait_until(lambda: not backends.pids(), what="the server closing the idle session")
        got = await pool.submit({"type": "item.get", "key": "k"})
        assert got == {"key": "k", "value": "v", "count": 0}
        assert pool.statistics().failed == 0


_CHILD_PID = re.compile(r"child pid (\d+):")


async def test_terminating_every_childs_connection_under_load_fails_at_most_one_job_per_child(
    pg_env: str, backends: Backends
) -> None:
    """A few hundred concurrent submits, every child's connection terminated in the middle:
    reads and idempotent writes never fail, and a non-idempotent write fails at most once
    per child (the one that found the connection gone), never after."""
    children = 4
    total = 300
    async with asyncio.timeout(60), qoper8.Pool(WORKER, children=children) as pool:
        await pool.submit({"type": "item.put", "key": "k", "value": "v"})
        done = 0
        midway = asyncio.Event()

        async def one(i: int) -> object:
            nonlocal done
            kinds = (
                {"type": "item.get", "key": "k"},
                {"type": "item.put", "key": f"k{i % 7}", "value": str(i)},
                {"type": "counter.add", "key": "hits"},
                {"type": "sql.now"},
            )
            try:
                return await pool.submit(kinds[i % len(kinds)])
            finally:
                done += 1
                if done == total // 5:
                    midway.set()

        tasks = [asyncio.create_task(one(i)) for i in range(total)]
        await midway.wait()
        terminated = await asyncio.to_thread(backends.terminate_all)
        assert terminated == children
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            assert isinstance(failure, qoper8.JobFailed), repr(failure)
            assert failure.code == "child_replaced", failure
        per_child = Counter(
            int(m.group(1))
            for f in failures
            if isinstance(f, qoper8.JobFailed) and (m := _CHILD_PID.search(f.remote_message))
        )
        assert len(per_child) == len(failures)
        assert all(n == 1 for n in per_child.values()), per_child
        assert len(failures) <= children
        # And after: every request of a second wave succeeds.
        again = await asyncio.gather(*(one(i) for i in range(100)))
        assert len(again) == 100
        stats = pool.statistics()
        assert (stats.died, stats.degraded) == (0, False)
