"""Handlers for the daemon's tests (``tests.daemon_handlers:worker``).

A handler that must block waits for a file the test creates, so that one ``touch`` releases
every job at once and no test sleeps for a fixed time.
"""

from __future__ import annotations

import os
import time
from typing import Any

import qoper8

worker = qoper8.Worker()

# Polling interval of ``wait_file``: short against a test, long against a busy loop.
POLL: float = 0.005


@worker.on_start
def slow_start() -> None:
    """Children start slowly when the test asks: while the file named by
    TEST_QOPER8_START_GATE exists (bounded); or until a line arrives on the FIFO named by
    TEST_QOPER8_START_FIFO (``conftest.release``), failing the start if that line is "fail".
    (The variables do not start with QOPER8_: the daemon warns about unknown ones.)"""
    gate = os.environ.get("TEST_QOPER8_START_GATE")
    deadline = time.monotonic() + 120
    while gate and os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(POLL)
    fifo = os.environ.get("TEST_QOPER8_START_FIFO")
    if fifo:
        with open(fifo) as f:  # blocks until the test opens the other end
            if f.readline().strip() == "fail":
                raise RuntimeError("the test failed this start")


@worker.handler("say")
def say(text: str) -> None:
    """Print a line: the daemon logs it as the child's output."""
    print(text, flush=True)


@worker.handler("echo")
def echo(value: Any = None) -> Any:
    return value


@worker.handler("add")
def add(a: int, b: int) -> int:
    return a + b


@worker.handler("pid")
def pid() -> int:
    return os.getpid()


@worker.handler("fail")
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@worker.handler("refuse")
def refuse(status: int = 409) -> None:
    """Fail with the HTTP status the handler chooses (the daemon answers with it)."""
    raise qoper8.HandlerError("refused on purpose", status=status, code="refused")


@worker.handler("die")
def die(code: int = 3) -> None:
    os._exit(code)


@worker.handler("wait_file")
def wait_file(path: str, value: Any = None, limit: float = 30.0) -> Any:
    """Block until ``path`` exists (or ``limit`` seconds pass), then return ``value``."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {limit}s")
        time.sleep(POLL)
    return value
