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


# ---------------------------------------------------------------- messages and streams


@worker.handler("count")
def count(n: int, job: qoper8.Job) -> dict[str, int]:
    """Send ``n`` messages, then answer how many."""
    for i in range(n):
        job.send({"i": i})
    return {"sent": n}


@worker.handler("progress")
def progress(n: int, job: qoper8.Job) -> int:
    for i in range(n):
        job.progress({"done": i + 1, "total": n})
    return n


@worker.handler("fail_after")
def fail_after(n: int, job: qoper8.Job) -> None:
    for i in range(n):
        job.send(i)
    raise LookupError("no more rows")


@worker.handler("die_after")
def die_after(n: int, job: qoper8.Job) -> None:
    for i in range(n):
        job.send(i)
    os._exit(4)


@worker.handler("send_then_wait")
def send_then_wait(n: int, path: str, job: qoper8.Job) -> str:
    """Send ``n`` messages, then block until ``path`` exists (a stream the test leaves)."""
    for i in range(n):
        job.send(i)
    wait_file(path)
    return "released"


@worker.on_message("ping")
def ping(value: Any = None) -> dict[str, Any]:
    return {"pid": os.getpid(), "value": value}


@worker.on_message("boom")
def boom() -> None:
    raise RuntimeError("on_message failed")


@worker.on_message("refuse")
def refuse_message(status: int = 409) -> None:
    raise qoper8.HandlerError("refused on purpose", status=status, code="refused")


@worker.on_message("die")
def die_message() -> None:
    os._exit(5)


@worker.on_message("wait_file")
def wait_file_message(path: str) -> str:
    wait_file(path)
    return "released"


# ---------------------------------------------------------------- actors


@worker.actor("counter")
class Counter:
    """A counter that keeps its value across restarts (snapshot/restore)."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def add(self, n: int = 1) -> int:
        self.value += n
        qoper8.actor_event("added", {"n": n, "value": self.value})
        return self.value

    def pid(self) -> int:
        return os.getpid()

    def fail(self) -> None:
        raise LookupError("nothing to count")

    def refuse(self, status: int = 409) -> None:
        raise qoper8.HandlerError("refused on purpose", status=status, code="refused")

    def crash(self) -> None:
        os._exit(6)

    def wait_file(self, path: str) -> str:
        wait_file(path)
        return "released"

    def snapshot(self) -> dict[str, int]:
        return {"value": self.value}

    @classmethod
    def restore(cls, state: dict[str, int]) -> Counter:
        return cls(state["value"])


@worker.actor("broken")
class Broken:
    def __init__(self) -> None:
        raise RuntimeError("cannot start")


@worker.actor("dies_at_start")
class DiesAtStart:
    def __init__(self) -> None:
        os._exit(7)


@worker.handler("flood")
def flood(n: int, size: int, job: qoper8.Job) -> int:
    """Send ``n`` messages of ``size`` characters (a reader that stops reading)."""
    chunk = "m" * size
    for _ in range(n):
        job.send(chunk)
    return n
