"""Shared fixtures: a pool on the test handlers, and a guard against stray processes."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import pytest

import qoper8

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

HANDLERS = "tests.handlers:worker"


@pytest.fixture
async def pool() -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(HANDLERS, children=2) as p:
        yield p


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` for things nothing can notify us about (a pid disappearing)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.fixture
def fifo(tmp_path: Path) -> str:
    """A FIFO one ``block`` handler waits on; ``release(fifo)`` lets it finish. (One FIFO per
    blocked job: closing the writer releases every reader.)"""
    return new_fifo(tmp_path, "gate")


def new_fifo(directory: Path, name: str) -> str:
    path = os.path.join(str(directory), name)
    os.mkfifo(path)
    return path


def _write_line(path: str, line: str) -> None:
    with open(path, "w") as f:
        f.write(line + "\n")


async def release(path: str, line: str = "go") -> None:
    """Let one ``block`` handler waiting on ``path`` return ``line``."""
    await asyncio.to_thread(_write_line, path, line)
