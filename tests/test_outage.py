"""A dependency that goes away after the pool started (issue 9, items 1 and 2): the pool never
gives up by default, says it is degraded once per outage, keeps its healthy children, and
serves again by itself; killing idle children is not a failed start."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

import pytest

import qoper8
from qoper8._engine import health as _health
from tests.conftest import wait_until

if TYPE_CHECKING:
    from pathlib import Path

FLAKY = "tests.flaky_dependency:worker"


def _ready_pids(pool: qoper8.Pool) -> list[int]:
    return [c.pid for c in pool.statistics().children if c.state in ("idle", "busy") and c.pid]


async def _pid(pool: qoper8.Pool) -> int:
    pid = await pool.submit({"type": "pid"})
    assert isinstance(pid, int)
    return pid


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_pool_rides_out_a_dependency_outage_and_recovers_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dependency = tmp_path / "dependency"
    dependency.write_text("up")
    monkeypatch.setenv("TEST_QOPER8_DEPENDENCY", str(dependency))
    caplog.set_level(logging.INFO, logger="qoper8")
    async with qoper8.Pool(FLAKY, children=2, max_jobs_per_child=3, max_jobs_jitter=0) as pool:
        first = await _pid(pool)  # it served: no failed start
        (survivor,) = set(_ready_pids(pool)) - {first}
        dependency.write_text("down")
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: pool.statistics().failed_starts >= 3, what="three failed respawns")
        stats = pool.statistics()
        assert pool.is_degraded
        assert stats.degraded
        assert not pool.is_broken
        # The healthy child serves on and is never recycled (max_jobs_per_child=3) while
        # its replacement cannot start: the pool must not drain itself to zero.
        for _ in range(8):
            assert await pool.submit({"type": "pid"}) == survivor
        assert _ready_pids(pool) == [survivor]

        # Now the last child dies too: jobs wait for a child instead of failing.
        os.kill(survivor, signal.SIGKILL)
        await wait_until(lambda: not _ready_pids(pool), what="no child left")
        waiting = pool.submit({"type": "echo", "value": "served"}, timeout=30)
        dependency.write_text("up")
        assert await waiting == "served"
        await wait_until(
            lambda: not pool.is_degraded and len(_ready_pids(pool)) == 2,
            what="the pool back at full size and healthy",
        )
        assert pool.statistics().failed_starts == 0

    warnings = _messages(caplog, logging.WARNING)
    degraded = [m for m in warnings if m.startswith("degraded:")]
    assert len(degraded) == 1, warnings  # once per outage, not once per try
    assert "connection refused" in degraded[0]
    assert len([m for m in warnings if m.startswith("recovered:")]) == 1
    tries = [m for m in _messages(caplog, logging.INFO) if "failed to start" in m]
    assert len(tries) >= 3
    assert all("ConnectionError: connection refused" in m for m in tries)
    assert not any("while idle" in m for m in tries)


async def test_giving_up_is_an_explicit_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert qoper8.PoolConfig(worker=FLAKY).max_start_failures is None  # default: never
    dependency = tmp_path / "dependency"
    dependency.write_text("up")
    monkeypatch.setenv("TEST_QOPER8_DEPENDENCY", str(dependency))
    async with qoper8.Pool(FLAKY, children=1, max_start_failures=2) as pool:
        pid = await _pid(pool)
        dependency.write_text("down")
        os.kill(pid, signal.SIGKILL)
        why = await pool.wait_broken()
        assert "connection refused" in str(why)
        with pytest.raises(qoper8.StartFailed):
            await pool.submit({"type": "echo"})


async def test_killing_idle_children_is_not_a_failed_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Six SIGKILLs of ready, idle children (never given a job: the idle stack keeps using
    the same one) used to make the pool give up. A child counts as a failed start only if
    it dies before READY or on its own right after it."""
    monkeypatch.setattr(_health, "START_FAILURE_WINDOW", 0.2)
    caplog.set_level(logging.DEBUG, logger="qoper8")
    async with qoper8.Pool("tests.handlers:worker", children=2, max_start_failures=2) as pool:
        for _ in range(6):
            await wait_until(lambda: len(_ready_pids(pool)) == 2, what="two ready children")
            victim = pool._supervisor.children[min(pool._supervisor.children)]
            ready_at, pid = victim.ready_at, victim.pid
            assert pid is not None
            await wait_until(
                lambda: _health._monotonic() - ready_at > 0.2,  # noqa: B023
                what="the victim past the window",
            )
            os.kill(pid, signal.SIGKILL)
            await wait_until(
                lambda: pid not in _ready_pids(pool),  # noqa: B023
                what="the kill seen",
            )
        await wait_until(lambda: len(_ready_pids(pool)) == 2, what="two ready children")
        assert not pool.is_broken
        assert not pool.is_degraded
        assert pool.statistics().failed_starts == 0
        assert await pool.submit({"type": "echo", "value": 1}) == 1
    warnings = _messages(caplog, logging.WARNING)
    idle = [m for m in warnings if "while idle" in m]
    assert len(idle) == 6
    assert all("was killed by SIGKILL" in m for m in idle)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "failed to start" not in text
    assert "before it was ready" not in text


async def test_a_start_hook_failure_is_logged_as_one_and_never_as_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dependency = tmp_path / "dependency"
    dependency.write_text("up")
    monkeypatch.setenv("TEST_QOPER8_DEPENDENCY", str(dependency))
    caplog.set_level(logging.DEBUG, logger="qoper8")
    async with qoper8.Pool(FLAKY, children=1) as pool:
        pid = await _pid(pool)
        dependency.write_text("down")
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: pool.statistics().failed_starts >= 1, what="a failed start")
    records = [r for r in caplog.records if "failed to start" in r.getMessage()]
    assert records
    for record in records:
        text = record.getMessage()
        assert "ConnectionError" in text
        assert "idle" not in text
        assert "exited with code 3" not in text
        assert record.__dict__["child"] > 1
