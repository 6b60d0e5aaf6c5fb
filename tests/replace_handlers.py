"""Handlers that ask for their child to be replaced (``qoper8.ReplaceChild``,
``qoper8.replace_child_after``). Each child's on_stop writes ``stopped-<pid>`` into
``$TEST_QOPER8_STOP_DIR``, so a test can see that a replaced child retired gracefully."""

from __future__ import annotations

import os
from pathlib import Path

import qoper8

worker = qoper8.Worker()


@worker.on_stop
def stopped() -> None:
    directory = os.environ.get("TEST_QOPER8_STOP_DIR")
    if directory:
        (Path(directory) / f"stopped-{os.getpid()}").touch()


@worker.handler("pid")
def pid() -> int:
    return os.getpid()


@worker.handler("broken")
def broken(reason: str = "connection lost") -> None:
    raise qoper8.ReplaceChild(reason)


@worker.handler("renew")
def renew(reason: str = "leaks") -> int:
    qoper8.replace_child_after(reason)
    return os.getpid()


@worker.handler("renew_then_nan")
def renew_then_nan() -> float:
    """Asks for a fresh child, then returns what JSON cannot carry: the job fails on the
    child's side after the handler returned, and the child is replaced all the same."""
    qoper8.replace_child_after("then a bad result")
    return float("nan")


def broken_call(reason: str) -> None:
    """For ``Pool.run``: the ProcessPoolExecutor face asks the same way."""
    raise qoper8.ReplaceChild(reason)
