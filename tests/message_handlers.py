"""A worker module that talks while it works: progress, streams, generator handlers, and
on_message functions (for broadcasts, asks and publishes). Blocking handlers wait on FIFOs
the test controls, never on sleeps."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import qoper8

if TYPE_CHECKING:
    from collections.abc import Generator

worker = qoper8.Worker()
_seen: list[Any] = []  # what on_message functions received in this child, in order
_started: list[int] = []


@worker.on_start
def started() -> None:
    _started.append(os.getpid())


@worker.handler("count")
def count(n: int, job: qoper8.Job) -> dict[str, int]:
    for i in range(n):
        job.send({"i": i})
    return {"sent": n}


@worker.handler("progress")
def progress(n: int, job: qoper8.Job) -> int:
    for i in range(n):
        job.progress({"done": i + 1, "total": n})
    return n


@worker.handler("tokens")
def tokens(words: list[str]) -> Generator[str, None, str]:
    yield from words
    return "done"  # a generator's return value is the job's result


@worker.handler("die_after")
def die_after(n: int, job: qoper8.Job) -> None:
    for i in range(n):
        job.send(i)
    os.kill(os.getpid(), signal.SIGKILL)


@worker.handler("fail_after")
def fail_after(n: int, job: qoper8.Job) -> None:
    for i in range(n):
        job.send(i)
    raise LookupError("no more rows")


@worker.handler("bad_message")
def bad_message(kind: str, job: qoper8.Job) -> str:
    try:
        job.send({1, 2} if kind == "set" else float("nan") if kind == "nan" else "x" * 2_000_000)
    except (TypeError, ValueError) as exc:
        return f"refused: {type(exc).__name__}"
    return "sent"


@worker.handler("block")
def block(fifo: str) -> str:
    with open(fifo) as f:
        return f.readline().strip()


@worker.handler("send_then_block")
def send_then_block(n: int, fifo: str, job: qoper8.Job) -> str:
    for i in range(n):
        job.send(i)
    with open(fifo) as f:
        return f.readline().strip()


@worker.handler("flood")
def flood(n: int, size: int, job: qoper8.Job) -> int:
    chunk = "m" * size
    for _ in range(n):
        job.send(chunk)
    return n


@worker.handler("notify")
def notify(topic: str, value: Any = None) -> int:
    qoper8.notify(topic, {"value": value, "pid": os.getpid()})
    return os.getpid()


@worker.handler("publish")
def publish(topic: str, value: Any = None) -> int:
    qoper8.publish(topic, {"value": value, "from": os.getpid()})
    return os.getpid()


@worker.handler("seen")
def seen() -> list[Any]:
    return list(_seen)


@worker.handler("pid")
def pid() -> int:
    return os.getpid()


@worker.on_message("cache.invalidate")
def invalidate(keys: list[str]) -> dict[str, Any]:
    _seen.append({"cache.invalidate": keys})
    return {"pid": os.getpid(), "dropped": len(keys)}


@worker.on_message("debug.stats")
def stats() -> dict[str, Any]:
    return {"pid": os.getpid(), "seen": len(_seen)}


@worker.on_message("explode")
def explode() -> None:
    raise RuntimeError("on_message failed")


@worker.on_message("die")
def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@worker.on_message("chat.line")
def chat_line(value: Any = None, **extra: Any) -> None:
    _seen.append({"chat.line": value, **extra})
