"""Handlers for the Redis tests: a worker module loaded by the pools that serve rq queues."""

from __future__ import annotations

import os
import pathlib
import signal
import time
from typing import TYPE_CHECKING, Any

import qoper8

if TYPE_CHECKING:
    from collections.abc import Iterator

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


# ---------------------------------------------------------------- messages (issue 11)
@worker.handler("count")
def count(n: int, job: qoper8.Job) -> dict[str, int]:
    for i in range(n):
        job.send({"i": i})
    return {"sent": n}


@worker.handler("tokens")
def tokens(words: list[str]) -> Iterator[str]:
    yield from words


@worker.handler("fail_after")
def fail_after(n: int, job: qoper8.Job) -> None:
    for i in range(n):
        job.send(i)
    raise LookupError("no more rows")


@worker.handler("progress_steps")
def progress_steps(steps: list[Any], job: qoper8.Job, gate: str = "") -> int:
    """Report each step as progress; with ``gate``, after each one wait for the test to
    create ``{gate}.{i}`` (it reads the progress meanwhile)."""
    for i, step in enumerate(steps):
        job.progress(step)
        if gate:
            # the child holds a progress back for up to 50 ms (paced) until its next frame;
            # a message sends it before this handler blocks (submit's callers drop it)
            job.send(i)
            while not os.path.exists(f"{gate}.{i}"):
                time.sleep(POLL_SECONDS)
    return len(steps)


@worker.handler("send_then_block")
def send_then_block(n: int, started: str, release: str, job: qoper8.Job) -> int:
    """Send ``n`` messages, then as ``block``: create ``started`` and wait for ``release``."""
    for i in range(n):
        job.send(i)
    return block(started, release)


# ---------------------------------------------------------------- broadcasts (issue 11)
_config: dict[str, Any] = {}  # what config.set broadcasts gave this child


@worker.on_message("config.set")
def config_set(value: Any) -> int:
    _config["value"] = value
    return os.getpid()


@worker.handler("config.get")
def config_get() -> Any:
    return _config.get("value")
