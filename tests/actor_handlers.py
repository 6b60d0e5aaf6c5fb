"""A worker module with actors for the tests: a room that keeps its state across restarts
(snapshot/restore), a counter that does not, and ones that fail in the ways the tests need.
Blocking methods wait on FIFOs the test controls."""

from __future__ import annotations

import os
import signal
from typing import Any

import qoper8

worker = qoper8.Worker()


@worker.handler("echo")
def echo(value: Any = None) -> Any:
    return value


@worker.handler("pid")
def pid() -> int:
    return os.getpid()


@worker.actor("room")
class Room:
    def __init__(self, title: str) -> None:
        self.title = title
        self.users: list[str] = []
        self.lines = 0

    def join(self, user: str) -> list[str]:
        self.users.append(user)
        qoper8.actor_event("joined", {"user": user})
        return list(self.users)

    def say(self, user: str, text: str) -> int:
        self.lines += 1
        qoper8.actor_event("said", {"user": user, "text": text})
        return self.lines

    def state(self) -> dict[str, Any]:
        return {"title": self.title, "users": self.users, "lines": self.lines, "pid": os.getpid()}

    def crash(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def fail(self) -> None:
        raise LookupError("nobody here")

    def wait(self, fifo: str) -> str:
        with open(fifo) as f:
            return f.readline().strip()

    def chatter(self, n: int) -> int:
        for i in range(n):
            qoper8.actor_event("tick", i)
        return n

    def snapshot(self) -> dict[str, Any]:
        return {"title": self.title, "users": self.users, "lines": self.lines}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Room:
        room = cls(state["title"])
        room.users = list(state["users"])
        room.lines = int(state["lines"])
        return room


@worker.actor("counter")
class Counter:
    """No snapshot: a restart runs __init__ again with the original arguments."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def add(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def crash(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def where(self) -> int:
        return os.getpid()


@worker.actor("broken")
class Broken:
    def __init__(self) -> None:
        raise RuntimeError("cannot start")
