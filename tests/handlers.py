"""Handlers for the test suite: one per behaviour the fault matrix needs.

Handlers that must block do so on something the test controls (a FIFO path the test opens),
never on a fixed sleep, so tests synchronise on events.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from pydantic import BaseModel

import qoper8

worker = qoper8.Worker()
_started: list[int] = []


@worker.on_start
def started() -> None:
    _started.append(os.getpid())


@worker.handler("echo")
def echo(value: Any = None) -> Any:
    return value


@worker.handler("add")
def add(a: int, b: int) -> int:
    return a + b


@worker.handler("pid")
def pid() -> int:
    return os.getpid()


@worker.handler("start_count")
def start_count() -> int:
    """How many times on_start ran in this child (must be exactly once)."""
    return len(_started)


class Point(BaseModel):
    x: int
    y: int


@worker.handler("point")
def point(x: int, y: int) -> Point:
    return Point(x=x, y=y)


@worker.handler("raise_error")
def raise_error(message: str = "boom") -> None:
    raise ValueError(message)


@worker.handler("exit_hard")
def exit_hard(code: int = 3) -> None:
    os._exit(code)


@worker.handler("kill_self")
def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@worker.handler("block")
def block(fifo: str) -> str:
    """Wait until the test writes a line into ``fifo`` (a rendezvous: opening a FIFO blocks
    until the other end opens too). Blocks as long as the test wants, with no sleep."""
    with open(fifo) as f:
        return f.readline().strip()


@worker.handler("nap")
def nap(value: Any = None, ms: float = 1.0) -> Any:
    """Take a little time (load for the chaos test), then echo."""
    time.sleep(ms / 1000)
    return value


@worker.handler("hang")
def hang() -> None:
    signal.pause()  # until killed


@worker.handler("print_noise")
def print_noise(lines: int = 3) -> int:
    for i in range(lines):
        print(f"noise line {i}")
        print(f"error line {i}", file=sys.stderr)
    return lines


@worker.handler("flood")
def flood(mib: int = 1) -> int:
    chunk = "x" * 1023 + "\n"
    for _ in range(mib * 1024):
        sys.stdout.write(chunk)
        sys.stderr.write(chunk)
    sys.stdout.flush()
    return mib


@worker.handler("big_result")
def big_result(mib: int = 20) -> str:
    return "y" * (mib * 1024 * 1024)


@worker.handler("bad_result")
def bad_result() -> Any:
    return {1, 2, 3}


@worker.handler("allocate")
def allocate(mib: int) -> int:
    global _ballast
    _ballast = bytearray(mib * 1024 * 1024)
    for i in range(0, len(_ballast), 4096):
        _ballast[i] = 1
    return len(_ballast)


_ballast = bytearray()


@worker.handler("corrupt_channel")
def corrupt_channel() -> None:
    """Write garbage onto this child's own channel to the master, then wait to be killed."""
    os.write(int(sys.argv[2]), b"\xff" * 64)
    signal.pause()


@worker.handler("validation_inside")
def validation_inside() -> None:
    Point.model_validate({"x": "not a number", "y": 1})


def square(x: int) -> int:
    """A plain module-level function for Pool.run."""
    return x * x


def divide(a: float, b: float) -> float:
    return a / b


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("no pickling")


def raise_unpicklable() -> None:
    raise Unpicklable("cannot travel")


def wait_on(fifo: str) -> str:
    """``block`` for Pool.run and executors: return the line the test writes into ``fifo``."""
    with open(fifo) as f:
        return f.readline().strip()


def touch(path: str) -> str:
    """Leave a trace that the call ran (for tests that check a call never ran)."""
    with open(path, "w"):
        pass
    return path


def takes_timeout(x: int, timeout: float = 1.0) -> float:
    """A function with a ``timeout`` of its own, which ``run(timeout=...)`` must not take."""
    return x * timeout


def hang_call() -> None:
    """``hang`` for Pool.run: blocks until killed."""
    signal.pause()


def sleep_for(seconds: float) -> float:
    """A function that takes a while, for Pool.run and executors."""
    time.sleep(seconds)
    return seconds
