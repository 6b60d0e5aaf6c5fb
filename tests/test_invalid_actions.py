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
        await pool.submit(action)  # type: ignore[call-overload]
    after = pool.statistics()
    assert after.submitted == before.submitted
    assert [c.jobs_done for c in after.children] == [c.jobs_done for c in before.children]


@pytest.mark.parametrize(
    ("action", "errors"),
    [
        ({"type": "add", "a": 1}, [{"loc": ["b"], "msg": "Field required", "type": "missing"}]),
        (
            {"type": "add", "a": "one", "b": 2},
            [
                {
                    "loc": ["a"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "type": "int_parsing",
                }
            ],
        ),
        (
            {"type": "add", "a": 1, "b": 2, "c": 3},
            [{"loc": ["c"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}],
        ),
        (
            {"type": "add", "b": "x", "c": 3, "d": 4},
            [
                {"loc": ["a"], "msg": "Field required", "type": "missing"},
                {
                    "loc": ["b"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "type": "int_parsing",
                },
                {"loc": ["c"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
                {"loc": ["d"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
            ],
        ),
    ],
    ids=["missing-param", "wrong-type", "unexpected-param", "all-at-once"],
)
async def test_params_that_fail_validation_are_invalid_action_with_structured_errors(
    pool: qoper8.Pool, action: dict[str, object], errors: list[dict[str, object]]
) -> None:
    pids = {c.pid for c in pool.statistics().children}
    with pytest.raises(qoper8.InvalidAction) as info:
        await pool.submit(action)
    assert info.value.errors == errors
    assert info.value.errors_omitted == 0
    text = str(info.value)
    assert text.startswith("invalid params for action 'add': ")
    assert "Params_" not in text, "no internal model name"
    assert "pydantic.dev" not in text, "no pydantic URL"
    assert {c.pid for c in pool.statistics().children} == pids
    assert await pool.submit({"type": "add", "a": 1, "b": 2}) == 3


async def test_oversized_action_is_refused_at_submit() -> None:
    async with qoper8.Pool("tests.handlers:worker", children=1, max_message_bytes=4096) as pool:
        with pytest.raises(qoper8.InvalidAction) as info:
            await pool.submit({"type": "echo", "value": "x" * 10_000})
        assert "max_message_bytes" in str(info.value)
        assert pool.statistics().submitted == 0
