"""What ``ActorRef.call`` sends: its arguments are encoded on a fast path (one orjson call,
measured by ``bench.actors`` against a plain submit), and everything that path cannot take is
refused with the same words as before, before anything reaches the actor."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pydantic
import pytest

import qoper8

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WORKER = "tests.actor_call_handlers:worker"


class Point(pydantic.BaseModel):
    x: int
    y: int


@pytest.fixture
async def echoer() -> AsyncIterator[qoper8.ActorRef]:
    async with qoper8.Pool(WORKER, children=1) as pool:
        yield await pool.actors.create("echoer", "e")


async def test_arguments_arrive_as_json(echoer: qoper8.ActorRef) -> None:
    assert await echoer.call("echo", value=1) == {"value": 1, "other": None}
    # A mapping and keywords merge; a keyword wins.
    assert await echoer.call("echo", {"value": 1, "other": 2}, other=3) == {"value": 1, "other": 3}
    assert await echoer.call("echo", {"value": [1, "a"]}) == {"value": [1, "a"], "other": None}
    # JSON null is not NaN: it goes through.
    assert await echoer.call("echo", value=None, other={"k": None}) == {
        "value": None,
        "other": {"k": None},
    }
    # A pydantic model arrives as its JSON form.
    assert await echoer.call("echo", value=Point(x=1, y=2)) == {
        "value": {"x": 1, "y": 2},
        "other": None,
    }


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (math.nan, "field args.value is NaN"),
        ([1, math.inf], "field args.value[1] is Infinity"),
        (object(), "is not JSON"),
        ({1j: 2}, "is not JSON"),
    ],
)
async def test_what_json_cannot_carry_is_refused_before_the_actor_runs(
    echoer: qoper8.ActorRef, value: object, words: str
) -> None:
    with pytest.raises(qoper8.InvalidAction, match=r"the call e\.echo is not JSON") as info:
        await echoer.call("echo", value=value)
    assert words in str(info.value)
    assert echoer.info().calls == 0  # nothing was queued
