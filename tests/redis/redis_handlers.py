"""Handlers for the Redis tests: a worker module loaded by the pools that serve rq queues."""

from __future__ import annotations

import os
import pathlib
import signal
import time
from typing import Any

import qoper8

worker = qoper8.Worker()

# How often a blocked handler looks for the file the test creates. This is the handler
# waiting on something the test controls, not a test sleeping for a fixed time.
POLL_SECONDS = 0.01


@worker.handler("echo")
def echo(value: Any = None) -> Any:
    return value


@worker.handler("add")
def add(a: int, b: int) -> int:
    return a + b


@worker.handler("pid")
def pid() -> int:
    return os.getpid()


@worker.handler("sleep_ms")
def sleep_ms(ms: float = 5.0) -> int:
    time.sleep(ms / 1000)
    return os.getpid()


@worker.handler("fail")
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@worker.handler("kill_self")
def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@worker.handler("hang")
def hang() -> None:
    signal.pause()


@worker.handler("block")
def block(started: str, release: str) -> int:
    """Create ``started`` (the test learns which child runs it), then wait until the test
    creates ``release``; returns this child's pid."""
    tmp = pathlib.Path(f"{started}.{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(started)  # atomic: the test never reads a half-written file
    while not os.path.exists(release):
        time.sleep(POLL_SECONDS)
    return os.getpid()
