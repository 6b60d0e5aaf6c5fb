"""Many jobs in one call (issue 14 item 1's fan-out face, item 4's blocking face): pool.map of
actions, pool.map_calls of a function, the executor's map and the sync face's map; results in
order, errors where they belong, nothing else lost."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Any

import pytest

import qoper8
from tests import handlers
from tests.conftest import HANDLERS, wait_until


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def test_map_returns_results_in_the_order_given() -> None:
    async with qoper8.Pool(HANDLERS, children=3) as pool:
        actions = [{"type": "nap", "value": i, "ms": (7 * i) % 5} for i in range(300)]
        assert await pool.map(actions) == list(range(300))
        assert await pool.map(iter([])) == []
        assert await pool.map([{"type": "point", "x": 1, "y": 2}], result_type=Point) == [
            Point(1, 2)
        ]
        stats = pool.statistics()
        assert stats.completed == 301
        assert stats.queue_length == stats.running == 0


async def test_map_refuses_a_bad_action_before_any_runs_and_says_which() -> None:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        bad: list[dict[str, Any]] = [{"type": "echo", "value": 1}, {"type": "nope"}]
        with pytest.raises(qoper8.InvalidAction, match="action 1: unknown action type") as info:
            await pool.map([bad[0], bad[1]] + [bad[0]] * 3)
        assert info.value.errors[0]["loc"][0] == 1
        assert pool.statistics().submitted == 0
        with pytest.raises(qoper8.InvalidAction, match="action 0"):
            await pool.map([{"type": "echo", "value": float("nan")}])


async def test_map_raises_the_first_error_and_drops_the_queued_rest() -> None:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        actions: list[dict[str, Any]] = [{"type": "raise_error", "message": "first"}] + [
            {"type": "nap", "ms": 1} for _ in range(50)
        ]
        with pytest.raises(qoper8.JobFailed, match="first"):
            await pool.map(actions)
        await pool.wait_idle()
        stats = pool.statistics()
        assert stats.failed == 1
        assert stats.completed + stats.cancelled == 50
        assert stats.cancelled >= 40  # one child: most were still queued
        assert await pool.submit({"type": "echo", "value": 5}) == 5  # the pool serves on


async def test_map_returns_errors_in_place_when_asked() -> None:
    async with qoper8.Pool(HANDLERS, children=2) as pool:
        actions: list[dict[str, Any]] = [
            {"type": "echo", "value": 1},
            {"type": "raise_error"},
            {"type": "kill_self"},
        ]
        results = await pool.map(actions * 2, return_exceptions=True)
        assert results[0] == results[3] == 1
        assert isinstance(results[1], qoper8.JobFailed)
        assert isinstance(results[2], qoper8.ChildDied)
        assert isinstance(results[5], qoper8.ChildDied)


async def test_map_times_out_what_is_unfinished_under_one_deadline() -> None:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        actions: list[dict[str, Any]] = [
            {"type": "echo", "value": 0},
            {"type": "hang"},
            {"type": "echo", "value": 2},
        ]
        results = await pool.map(actions, timeout=1.0, return_exceptions=True)
        assert results[0] == 0
        assert isinstance(results[1], qoper8.JobTimeout)  # running: its child is killed
        assert isinstance(results[2], qoper8.JobTimeout)  # still queued behind it
        assert await pool.submit({"type": "echo", "value": 3}, timeout=30) == 3


async def test_a_cancelled_map_drops_its_queued_jobs() -> None:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        task = asyncio.ensure_future(pool.map([{"type": "nap", "ms": 200}] * 20))
        await wait_until(lambda: pool.statistics().running == 1, what="the first job running")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pool.wait_idle()
        assert pool.statistics().completed <= 2
        assert pool.statistics().cancelled >= 18


async def test_map_with_a_bounded_queue_waits_for_room() -> None:
    async with qoper8.Pool(HANDLERS, children=1, max_queue=2) as pool:
        assert await pool.map({"type": "echo", "value": i} for i in range(20)) == list(range(20))


async def test_map_calls_applies_a_function_to_each_item() -> None:
    async with qoper8.Pool(HANDLERS, children=2) as pool:
        assert await pool.map_calls(handlers.add, range(5), range(5, 10)) == [5, 7, 9, 11, 13]
        results = await pool.map_calls(handlers.divide, [1, 2], [1, 0], return_exceptions=True)
        assert results[0] == 1
        assert isinstance(results[1], qoper8.JobFailed)


async def test_map_on_a_pool_not_started_or_closed_is_refused() -> None:
    pool = qoper8.Pool(HANDLERS, children=1)
    with pytest.raises(qoper8.PoolClosed):
        await pool.map([{"type": "echo"}])
    async with pool:
        pass
    with pytest.raises(qoper8.PoolClosed):
        await pool.map([{"type": "echo"}])


def test_the_executors_map_from_a_thread_batches_and_raises_where_the_error_is() -> None:
    with qoper8.sync.Pool(HANDLERS, children=2) as pool:
        ex = pool.executor()
        assert list(ex.map(handlers.square, range(2500))) == [i * i for i in range(2500)]
        results = ex.map(handlers.divide, [4, 1, 2], [2, 0, 1])
        assert next(results) == 2
        with pytest.raises(ZeroDivisionError):
            next(results)
        with pytest.raises(concurrent.futures.TimeoutError):
            list(ex.map(handlers.sleep_for, [1.0], timeout=0.1))
        ex.shutdown(wait=True)
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.map(handlers.square, [1])


def test_the_sync_face_maps_actions_in_one_hop() -> None:
    with qoper8.sync.Pool(HANDLERS, children=2) as pool:
        assert pool.map({"type": "echo", "value": i} for i in range(100)) == list(range(100))
        with pytest.raises(qoper8.JobFailed):
            pool.map([{"type": "raise_error"}])


async def test_a_pool_of_roles_maps_each_action_to_its_role() -> None:
    roles = {"users": "tests.roles.users:worker", "reports": "tests.roles.reports:worker"}
    async with qoper8.Pool(roles=roles, children=1) as pool:
        actions: list[dict[str, Any]] = [
            {"type": "user.get", "id": 1},
            {"type": "report.build"},
        ] * 3
        results = await pool.map(actions)
        assert [r["role"] for r in results] == ["users", "reports"] * 3
        with pytest.raises(qoper8.InvalidAction, match=r"action 0: .*pass role="):
            await pool.map([{"type": "whoami"}])
        assert [r["role"] for r in await pool.map([{"type": "whoami"}], role="reports")] == [
            "reports"
        ]
