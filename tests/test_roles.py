"""Roles (issue 13 item 1): one pool runs several worker modules, each with its own children,
queue and settings; actions go to the role that handles their type."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import qoper8
from tests.conftest import HANDLERS, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

USERS = "tests.roles.users:worker"
REPORTS = "tests.roles.reports:worker"


@pytest.fixture
async def pool() -> AsyncIterator[qoper8.Pool]:
    roles = {"users": qoper8.Role(USERS, children=2), "reports": qoper8.Role(REPORTS, children=1)}
    async with qoper8.Pool(roles=roles, timeout=30) as p:
        yield p


async def test_actions_go_to_the_role_that_handles_their_type(pool: qoper8.Pool) -> None:
    assert isinstance(pool, qoper8.Pool)
    assert pool.roles == ("users", "reports")
    assert await pool.submit({"type": "user.get", "id": 7}) == {"id": 7, "role": "users"}
    built = await pool.submit({"type": "report.build"}, result_type=dict)
    assert built["role"] == "reports"
    by_role = {c.pid: c.role for c in pool.statistics().children}
    assert by_role[built["pid"]] == "reports"
    assert sorted(str(r) for r in by_role.values()) == ["reports", "users", "users"]
    assert set(pool.handlers) >= {"user.get", "report.build", "whoami"}


async def test_a_type_two_roles_handle_needs_role(pool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.InvalidAction, match=r"handled by roles users and reports") as info:
        await pool.submit({"type": "whoami"})
    assert info.value.errors[0]["loc"] == ["role"]
    assert (await pool.submit({"type": "whoami"}, role="users", result_type=dict))[
        "role"
    ] == "users"
    assert (await pool.submit({"type": "whoami"}, role="reports", result_type=dict))[
        "role"
    ] == "reports"
    with pytest.raises(qoper8.InvalidAction, match=r"unknown role 'user'.*did you mean 'users'"):
        await pool.submit({"type": "whoami"}, role="user")
    with pytest.raises(qoper8.InvalidAction, match=r"unknown action type 'user.gte'.*user.get"):
        await pool.submit({"type": "user.gte", "id": 1})
    with pytest.raises(qoper8.InvalidAction, match=r"user.get"):
        await pool.submit({"type": "user.get"})  # its params are checked by its role


async def test_one_roles_backlog_never_delays_another(pool: qoper8.Pool) -> None:
    # The one "reports" child is busy and five more reports wait for it; "users" answers.
    build = {"type": "report.build", "ms": 300}
    slow = [asyncio.ensure_future(pool.submit(build)) for _ in range(6)]
    await asyncio.sleep(0)
    assert pool.role("reports").statistics().queue_length >= 5
    for i in range(20):
        assert (await pool.submit({"type": "user.get", "id": i}, result_type=dict))["id"] == i
    assert pool.statistics(role="users").queue_length == 0
    assert not any(s.done() for s in slow[1:])  # the reports were still waiting
    await asyncio.gather(*slow)
    assert pool.statistics().completed == 26


async def test_each_role_is_sized_and_paused_on_its_own(pool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.ConfigError, match=r"roles users, reports"):
        await pool.resize(3)
    await pool.resize(3, role="reports")
    assert pool.statistics(role="reports").target_size == 3
    assert pool.statistics(role="users").target_size == 2
    assert pool.size == 5
    with pytest.raises(qoper8.ConfigError, match=r"unknown role"):
        await pool.resize(1, role="nobody")
    await pool.pause()
    assert pool.is_paused
    await pool.resize(1, role="users")
    assert not pool.statistics().paused  # "reports" still is; "users" is back
    assert (await pool.submit({"type": "user.get", "id": 1}, result_type=dict))["id"] == 1


async def test_messages_streams_and_actors_span_the_roles(pool: qoper8.Pool) -> None:
    result = await pool.broadcast("roles.hello")
    assert sorted(str(v) for v in result.values.values()) == ["reports", "users", "users"]
    child = next(c for c in pool.statistics().children if c.role == "reports")
    assert await pool.ask(child, "roles.hello") == "reports"
    async with pool.stream({"type": "report.lines", "n": 3}) as stream:
        assert [m async for m in stream] == [0, 1, 2]
    tally = await pool.actors.create("tally", "t")
    assert await tally.call("add", n=5) == 5
    assert [a.name for a in pool.actors.list()] == ["t"]
    assert await (await pool.actors.get("t")).call("add", n=1) == 6
    with pytest.raises(qoper8.ActorExists):
        await pool.actors.create("tally", "t")
    with pytest.raises(qoper8.InvalidAction, match=r"unknown actor type 'tallly'.*tally"):
        await pool.actors.create("tallly", "u")
    await pool.actors.destroy("t")
    with pytest.raises(qoper8.ActorNotFound):
        await pool.actors.get("t")


async def test_settings_are_per_role_over_the_pools_defaults() -> None:
    roles: dict[str, qoper8.Role | str] = {
        "users": USERS,
        "reports": qoper8.Role(REPORTS, timeout=0.2, children=1),
    }
    async with qoper8.Pool(roles=roles, children=1, timeout=30) as pool:
        assert pool.role("users").config.timeout == 30
        with pytest.raises(qoper8.JobTimeout):
            await pool.submit({"type": "report.build", "ms": 2000})
        assert await pool.submit({"type": "users.nap", "ms": 300}) == "users"


async def test_a_role_that_cannot_start_fails_the_start_naming_it() -> None:
    roles = {"users": USERS, "broken": "tests.no_such_module:worker"}
    with pytest.raises(qoper8.StartFailed, match=r"role 'broken'"):
        async with qoper8.Pool(roles=roles, children=1):
            pass


def test_bad_roles_are_refused_before_anything_starts() -> None:
    with pytest.raises(qoper8.ConfigError, match=r"at least one role"):
        qoper8.Pool(roles={})
    with pytest.raises(qoper8.ConfigError, match=r"role name"):
        qoper8.Pool(roles={"no spaces": USERS})
    with pytest.raises(qoper8.ConfigError, match=r"either a worker"):
        qoper8.Pool(HANDLERS, roles={"users": USERS})
    with pytest.raises(qoper8.ConfigError, match=r"children"):
        qoper8.Role(USERS, children=-1)
    with pytest.raises(qoper8.ConfigError, match=r"role 'users'.*timeout"):
        qoper8.Pool(roles={"users": USERS}, timeout=-1)


async def test_a_pool_of_one_worker_module_is_a_pool_of_one_role() -> None:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        assert pool.roles == ("handlers",)
        assert pool.role("handlers") is pool
        assert await pool.submit({"type": "echo", "value": 1}, role="handlers") == 1
        with pytest.raises(qoper8.InvalidAction, match=r"unknown role"):
            await pool.submit({"type": "echo", "value": 1}, role="users")
        assert pool.statistics().children[0].role is None


def test_every_public_method_of_a_pool_works_on_a_pool_of_roles() -> None:
    """A pool of roles is made without Pool.__init__: each public name must be its own."""
    from qoper8._engine.roles_pool import RolesPool
    from qoper8._engine.roles_view import RolesView

    public = {n for n in dir(qoper8.Pool) if not n.startswith("_")} - {"actors", "config"}
    owners = {n: next(c for c in RolesPool.__mro__ if n in vars(c)) for n in public}
    missing = sorted(n for n, owner in owners.items() if owner not in (RolesPool, RolesView))
    assert missing == []


def test_the_synchronous_pool_takes_roles() -> None:
    roles = {"users": USERS, "reports": REPORTS}
    with qoper8.sync.Pool(roles=roles, children=1) as pool:
        assert (
            pool.submit({"type": "whoami"}, role="reports", result_type=dict)["role"] == "reports"
        )
        assert pool.submit({"type": "user.get", "id": 2}, result_type=dict)["id"] == 2


async def test_jobs_wait_for_a_starting_pool_of_roles_and_refuse_one_not_started() -> None:
    pool = qoper8.Pool(roles={"users": USERS, "reports": REPORTS}, children=1)
    with pytest.raises(qoper8.PoolClosed):
        await pool.submit({"type": "user.get", "id": 1})
    early = asyncio.ensure_future(pool.submit({"type": "user.get", "id": 3}, result_type=dict))
    await pool.start()
    try:
        assert (await early)["id"] == 3
    finally:
        await pool.aclose()


async def test_a_role_reloaded_then_scaled_to_none_grows_again() -> None:
    """A resize waits for children its supervisor is still getting a fork server for."""
    roles = {"users": qoper8.Role(USERS, children=1), "reports": qoper8.Role(REPORTS, children=1)}
    async with qoper8.Pool(roles=roles, idle_timeout=0.2, timeout=30) as pool:
        await pool.resize((0, 3), role="reports")
        await pool.reload(pool.role("reports").config, role="reports")
        live = ("starting", "idle", "busy")
        await wait_until(
            lambda: all(c.state not in live for c in pool.statistics(role="reports").children),
            what="reports down to none",
        )
        await pool.resize(1, role="reports")
        assert (await pool.submit({"type": "report.build"}, result_type=dict))["role"] == "reports"
