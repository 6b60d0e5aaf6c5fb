"""A worker module whose start hook needs a "dependency" the test switches off and on: a file
whose content is ``up`` or ``down`` (as a database that refuses connections for a while)."""

from __future__ import annotations

import os
from pathlib import Path

import qoper8

worker = qoper8.Worker()


@worker.on_start
def connect() -> None:
    state = Path(os.environ["TEST_QOPER8_DEPENDENCY"]).read_text().strip()
    if state != "up":
        raise ConnectionError("connection refused (the dependency is down)")


@worker.handler("echo")
def echo(value: object = None) -> object:
    return value


@worker.handler("pid")
def pid() -> int:
    return os.getpid()
