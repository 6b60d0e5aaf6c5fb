"""A worker module for tests/test_actor_call_args.py: an actor that answers what it got."""

from __future__ import annotations

from typing import Any

import qoper8

worker = qoper8.Worker()


@worker.actor("echoer")
class Echoer:
    def echo(self, value: Any = None, other: Any = None) -> Any:
        return {"value": value, "other": other}
