"""Start-up: children are ready before the pool is, a broken worker module fails fast and
leaves nothing behind, and a child that keeps dying is not respawned in a tight loop."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

import qoper8
from tests.conftest import HANDLERS, pid_alive, wait_until


def _child_pids() -> set[int]:
    """Live processes whose parent is this test process."""
    me = os.getpid()
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            out.add(int(entry))
    return out


@pytest.mark.parametrize(
    ("ref", "remote_type", "text"),
    [
        (
            "tests.bad_workers.import_error:worker",
            "ModuleNotFoundError",
            "this_module_does_not_exist",
        ),
        ("tests.bad_workers.start_fails:worker", "ConnectionError", "database is down"),
        ("tests.bad_workers.not_a_worker:worker", "TypeError", "not a qoper8.Worker"),
        ("tests.no_such_module:worker", "ModuleNotFoundError", "tests.no_such_module"),
    ],
    ids=["import-error", "start-hook-raises", "not-a-worker", "no-module"],
)
async def test_broken_worker_module_fails_fast_with_the_childs_error(
    ref: str, remote_type: str, text: str
) -> None:
    before = _child_pids()
    started = time.monotonic()
    with pytest.raises(qoper8.StartFailed) as info:
        async with qoper8.Pool(ref, children=3):
            pytest.fail("the pool must not open")
    assert time.monotonic() - started < 10
    err = info.value
    assert err.remote_type == remote_type
    assert text in str(err)
    assert err.remote_traceback
    assert text in err.remote_traceback
    await wait_until(lambda: _child_pids() <= before, what="no child left behind")


async def test_bad_setting_is_config_error_naming_it() -> None:
    with pytest.raises(qoper8.ConfigError) as info:
        qoper8.Pool(HANDLERS, children=0)
    assert "children" in str(info.value)
    with pytest.raises(qoper8.ConfigError):
        qoper8.Pool("not a module ref!")
    with pytest.raises(qoper8.ConfigError):
        qoper8.Pool(HANDLERS, no_such_setting=1)


async def test_pool_enters_only_when_every_child_is_ready() -> None:
    async with qoper8.Pool(HANDLERS, children=3) as pool:
        stats = pool.statistics()
        assert [c.state for c in stats.children] == ["idle"] * 3
        assert all(c.pid is not None and pid_alive(c.pid) for c in stats.children)


async def test_child_that_keeps_dying_at_start_is_not_respawned_forever(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker module breaks after the pool started (say its database went away): the
    replacements fail, back off, and the pool stops trying and says so."""
    async with qoper8.Pool(HANDLERS, children=1, max_start_failures=3) as pool:
        pool._supervisor._child_config = {
            **pool._supervisor._child_config,
            "worker": "tests.bad_workers.start_fails:worker",
        }
        victim = pool.statistics().children[0].pid
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        why = await asyncio.wait_for(pool.wait_broken(), 20)
        assert "database is down" in str(why)
        assert pool.is_broken
        assert pool._supervisor.health.failures == 3
        with pytest.raises(qoper8.StartFailed) as info:
            await pool.submit({"type": "echo", "value": 1})
        assert "database is down" in str(info.value)
        assert all(t.done() for t in pool._supervisor._tasks), (
            "no respawn is pending after giving up"
        )


async def test_children_that_die_idle_right_after_start_are_not_respawned_forever() -> None:
    async with qoper8.Pool(
        "tests.bad_workers.dies_after_ready:worker", children=1, max_start_failures=3
    ) as pool:
        await wait_until(
            lambda: pool._dispatcher.broken is not None, what="the pool to give up", timeout=20
        )
        with pytest.raises(qoper8.StartFailed) as info:
            await pool.submit({"type": "echo", "value": 1})
        assert "exited with code 7" in str(info.value)
