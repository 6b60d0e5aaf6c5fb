"""Role "reports" of the role tests: a slow handler, a type "users" also has, an actor."""

from __future__ import annotations

import os
import time

import qoper8

worker = qoper8.Worker()


@worker.handler("report.build")
def build(ms: float = 0) -> dict[str, object]:
    time.sleep(ms / 1000)
    return {"role": "reports", "pid": os.getpid()}


@worker.handler("whoami")
def whoami() -> dict[str, object]:
    return {"role": "reports", "pid": os.getpid()}


@worker.handler("report.lines")
def lines(job: qoper8.Job, n: int) -> int:
    for i in range(n):
        job.send(i)
    return n


@worker.on_message("roles.hello")
def hello() -> str:
    return "reports"


@worker.actor("tally")
class Tally:
    def __init__(self) -> None:
        self.total = 0

    def add(self, n: int) -> int:
        self.total += n
        return self.total


@worker.handler("report.wait")
def wait(path: str) -> str:
    """Runs until the test creates ``path``: a backlog the test controls."""
    while not os.path.exists(path):
        time.sleep(0.005)
    return "reports"
