"""Bad input is refused with InvalidAction, before any child sees it where the master can
tell, and never costs a child."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

import qoper8
from tests.conftest import HANDLERS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# One pool for the whole module: these tests check that bad input costs no child at all.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(HANDLERS, children=2) as p:
        yield p


@pytest.mark.parametrize(
    "action",
    [
        ["not", "a", "mapping"],
        "a string",
        42,
        None,
        {"no": "type"},
        {"type": 7},
        {"type": "no.such.type"},
        {"type": "echo", "value": b"\xffbytes are not JSON"},
        {"type": "echo", "value": {1, 2}},
        {"type": "echo", "value": object()},
        {"type": "echo", "value": {1: "non-string key"}},
        {"type": "echo", "value": 2**70},
    ],
    ids=[
        "list",
        "str",
        "int",
        "none",
        "no-type",
        "type-not-str",
        "unknown-type",
        "bytes",
        "set",
        "object",
        "int-key",
        "huge-int",
    ],
)
async def test_refused_at_submit_before_any_child_sees_it(
    pool: qoper8.Pool, action: object
) -> None:
    before = pool.statistics()
    with pytest.raises(qoper8.InvalidAction):
        await pool.submit(action)  # type: ignore[arg-type]
    after = pool.statistics()
    assert after.submitted == before.submitted
    assert [c.jobs_done for c in after.children] == [c.jobs_done for c in before.children]


@pytest.mark.parametrize(
    "action",
    [
        {"type": "add", "a": 1},
        {"type": "add", "a": "one", "b": 2},
        {"type": "add", "a": 1, "b": 2, "c": 3},
    ],
    ids=["missing-param", "wrong-type", "unexpected-param"],
)
async def test_params_that_fail_validation_are_invalid_action(
    pool: qoper8.Pool, action: dict[str, object]
) -> None:
    pids = {c.pid for c in pool.statistics().children}
    with pytest.raises(qoper8.InvalidAction) as info:
        await pool.submit(action)
    assert "ValidationError" in str(info.value)
    assert {c.pid for c in pool.statistics().children} == pids
    assert await pool.submit({"type": "add", "a": 1, "b": 2}) == 3


async def test_oversized_action_is_refused_at_submit() -> None:
    async with qoper8.Pool("tests.handlers:worker", children=1, max_message_bytes=4096) as pool:
        with pytest.raises(qoper8.InvalidAction) as info:
            await pool.submit({"type": "echo", "value": "x" * 10_000})
        assert "max_message_bytes" in str(info.value)
        assert pool.statistics().submitted == 0
