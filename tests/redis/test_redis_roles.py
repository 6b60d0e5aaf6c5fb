"""Roles in Redis mode (issue 13 item 1): ``qoper8 serve --redis`` with two roles runs one
consumer per role, each on its role's own queue; a ``RedisPool`` targets a role by its queue,
and one role's backlog never delays the other's jobs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import qoper8
from tests.conftest import wait_until
from tests.daemon_support import Daemon, write_toml

from .conftest import forget_queue

if TYPE_CHECKING:
    from pathlib import Path

    import redis

pytestmark = pytest.mark.timeout(60)

USERS = "tests.roles.users:worker"
REPORTS = "tests.roles.reports:worker"


@pytest.mark.redis
async def test_each_role_consumes_its_own_queue_and_a_backlog_stays_in_its_role(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    users_queue, reports_queue = f"{queue_name}-users", f"{queue_name}-reports"
    config = write_toml(
        tmp_path / "roles.toml",
        [
            "[roles.users]",
            f'worker = "{USERS}"',
            "children = 1",
            f'queue = "{users_queue}"',
            "[roles.reports]",
            f'worker = "{REPORTS}"',
            "children = 1",
            f'queue = "{reports_queue}"',
        ],
    )
    d = Daemon(tmp_path, "-c", str(config), "--redis", redis_url, "--grace", "1", worker=None)
    d.start()
    gate = tmp_path / "gate"
    try:
        d.wait_ready()
        async with (
            asyncio.timeout(40),
            qoper8.RedisPool(redis_url, queue=users_queue, timeout=30) as users,
            qoper8.RedisPool(redis_url, queue=reports_queue, timeout=30) as reports,
        ):
            mine = await users.submit({"type": "whoami"})
            assert isinstance(mine, dict)
            assert mine["role"] == "users"
            theirs = await reports.submit({"type": "whoami"})
            assert isinstance(theirs, dict)
            assert theirs["role"] == "reports"

            # The one "reports" child runs a job the test holds; three more wait for it.
            wait = {"type": "report.wait", "path": str(gate)}
            backlog = [asyncio.create_task(reports.submit(wait)) for _ in range(4)]

            def reports_busy() -> bool:
                role = next(r for r in d.status()["roles"] if r["name"] == "reports")
                return bool(role["running"] == 1)

            await wait_until(reports_busy, timeout=20, what="the reports child to be busy")
            # "users" serves its own queue meanwhile.
            for i in range(3):
                assert await users.submit({"type": "user.get", "id": i}) == {
                    "id": i,
                    "role": "users",
                }
            assert not any(task.done() for task in backlog)
            assert sync_redis.llen(f"rq:queue:{reports_queue}") == 3  # never taken by users
            gate.touch()
            assert await asyncio.gather(*backlog) == ["reports"] * 4
        log = d.log_text()
        assert f"consuming Redis queue {users_queue!r} for role users" in log
        assert f"consuming Redis queue {reports_queue!r} for role reports" in log
    finally:
        gate.touch()
        d.stop()
        for name in (users_queue, reports_queue):
            forget_queue(sync_redis, name)
