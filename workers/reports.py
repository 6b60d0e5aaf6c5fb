"""A worker module that talks while it works (copy it): a long report that tells its caller
how far it got and streams its rows as it makes them, a generator that streams tokens, and a
cache that every child drops on a broadcast.

    async with qoper8.Pool("workers.reports:worker", children=2) as pool:
        async with pool.stream({"type": "report.build", "rows": 1000}) as stream:
            async for row in stream: ...           # every row, in order
            stream.progress, stream.result          # {"done": 1000, "total": 1000}, {"rows": 1000}
        await pool.broadcast("cache.clear", sticky=True)   # every child, between its jobs

Rows are made up (a checksum of their number) so that the example needs no database.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import qoper8

if TYPE_CHECKING:
    from collections.abc import Iterator

worker = qoper8.Worker()
_cache: dict[int, str] = {}  # per child: the rows it made before (dropped on cache.clear)


def _row(number: int) -> dict[str, object]:
    digest = _cache.get(number)
    if digest is None:
        digest = _cache[number] = hashlib.sha256(str(number).encode()).hexdigest()[:12]
    return {"number": number, "digest": digest}


@worker.handler("report.build")
def build(rows: int, job: qoper8.Job) -> dict[str, int]:
    """Stream ``rows`` rows, reporting progress as it goes; return how many."""
    for number in range(rows):
        job.send(_row(number))
        job.progress({"done": number + 1, "total": rows})  # paced: never a flood
    if rows >= 1000:
        qoper8.notify("report.done", {"rows": rows, "pid": os.getpid()})  # to the master
    return {"rows": rows}


@worker.handler("words")
def words(text: str) -> Iterator[str]:
    """A generator handler: each word is one message of the stream."""
    yield from text.split()


@worker.on_message("cache.clear")
def clear() -> int:
    """Drop this child's cache (between two jobs); answer how many rows it held."""
    held = len(_cache)
    _cache.clear()
    return held
