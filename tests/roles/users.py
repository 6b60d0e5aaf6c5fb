"""Role "users" of the role tests."""

from __future__ import annotations

import os
import time

import qoper8

worker = qoper8.Worker()


@worker.handler("user.get")
def user_get(id: int) -> dict[str, object]:
    return {"id": id, "role": "users"}


@worker.handler("whoami")
def whoami() -> dict[str, object]:
    return {"role": "users", "pid": os.getpid()}


@worker.handler("users.nap")
def nap(ms: float) -> str:
    time.sleep(ms / 1000)
    return "users"


@worker.on_message("roles.hello")
def hello() -> str:
    return "users"
