"""What every pool in the bench runs: a qoper8 worker module and the same functions at module
level (picklable, for the executor-style peers), plus coroutine twins for aiomultiprocess,
which runs coroutines only.

The handlers are annotated the way a user would write them, so qoper8 pays for validating
its actions in the child exactly as it would in an application.
"""

from __future__ import annotations

import os
import time

import qoper8

worker = qoper8.Worker()


@worker.handler("echo")
def echo_handler(value: int = 0) -> int:
    return value


@worker.handler("sleep")
def sleep_handler(ms: float) -> int:
    time.sleep(ms / 1000.0)
    return os.getpid()


@worker.handler("pid")
def pid_handler() -> int:
    return os.getpid()


@worker.handler("crash")
def crash_handler() -> None:
    os._exit(1)


# ---------------------------------------------------------------- plain functions (peers)


def echo(value: int = 0) -> int:
    return value


def sleep_ms(ms: float) -> int:
    time.sleep(ms / 1000.0)
    return os.getpid()


def crash() -> None:
    os._exit(1)


# ---------------------------------------------------------------- coroutines (aiomultiprocess)


async def aecho(value: int = 0) -> int:
    return value


async def asleep_ms(ms: float) -> int:
    # Blocking on purpose: the bench measures pools that run blocking work.
    time.sleep(ms / 1000.0)
    return os.getpid()


async def acrash() -> None:
    os._exit(1)


# ---------------------------------------------------------------- messages (issue 11)


@worker.handler("stream")
def stream_handler(n: int, job: qoper8.Job) -> int:
    """Send ``n`` small messages, then return ``n``: a stream's cost per message."""
    send = job.send
    for i in range(n):
        send(i)
    return n


@worker.on_message("bench.ping")
def ping_message() -> int:
    return os.getpid()


# ---------------------------------------------------------------- actors (issue 12)


@worker.actor("bench.counter")
class Counter:
    """The actor of ``bench.actors``: qoper8 registers it here, and Ray wraps the very same
    class with ``ray.remote`` there, so both run identical methods (no snapshot: Ray has
    none to match)."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def add(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def echo(self, value: int = 0) -> int:
        return value
