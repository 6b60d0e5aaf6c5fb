"""An actor type's validators are built with the worker module's handlers' (``Worker.prepare``,
which a child runs before READY and the fork server before it forks): a new actor's first
call builds nothing (it cost 1.5-5 ms per method, charged to the time to create an actor)."""

from __future__ import annotations

import pytest

import qoper8
from qoper8._engine.handler import ActionRefused


def _worker() -> qoper8.Worker:
    worker = qoper8.Worker()

    @worker.actor("tally")
    class Tally:
        def __init__(self, start: int = 0) -> None:
            self.value = start

        def add(self, n: int = 1) -> int:
            self.value += n
            return self.value

        def reset(self) -> None:
            self.value = 0

        def odd(self, x: int, /) -> int:  # no validator can be built: fields are keywords
            return x

    return worker


def test_prepare_builds_every_method_and_init() -> None:
    worker = _worker()
    kind = worker.actors["tally"]
    assert not kind._handlers  # lazy until prepared
    worker.prepare()
    assert sorted(kind._handlers) == ["add", "reset"]
    assert all(h._validate is not None for h in kind._handlers.values())
    assert kind._init._validate is not None
    # The prepared validators are the ones calls use.
    tally = kind.create({"start": 2}, None)
    assert kind.call(tally, "add", {"n": 3}) == 5
    with pytest.raises(ActionRefused):
        kind.call(tally, "add", {"n": "many"})


def test_a_method_without_a_validator_fails_at_its_call_not_at_start() -> None:
    worker = _worker()
    kind = worker.actors["tally"]
    worker.prepare()  # does not raise: the child starts, its other methods work
    tally = kind.create(None, None)
    with pytest.raises(TypeError, match="cannot be positional-only"):
        kind.call(tally, "odd", {"x": 1})
    assert kind.call(tally, "add", {}) == 1
