"""Children's prints never touch the channel and reach the master line by line, prefixed."""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from typing import TYPE_CHECKING

import qoper8
from qoper8._engine.output import StderrWriter
from tests.conftest import HANDLERS, wait_until

if TYPE_CHECKING:
    import pytest


async def test_prints_reach_the_callback_with_the_child_id() -> None:
    lines: list[tuple[int, int, str]] = []
    async with qoper8.Pool(
        HANDLERS, children=1, on_output=lambda c, p, line: lines.append((c, p, line))
    ) as pool:
        assert await pool.submit({"type": "print_noise", "lines": 3}) == 3
        await wait_until(lambda: len(lines) >= 6, what="six lines")
        pid = pool.statistics().children[0].pid
    texts = sorted(line for _, _, line in lines)
    assert texts == sorted(
        [f"noise line {i}" for i in range(3)] + [f"error line {i}" for i in range(3)]
    )
    assert {(c, p) for c, p, _ in lines} == {(1, pid)}


async def test_default_output_goes_to_stderr_prefixed(capfd: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    def printed() -> bool:
        seen.append(capfd.readouterr().err)
        return "error line 0" in "".join(seen)

    async with qoper8.Pool(HANDLERS, children=1) as pool:
        await pool.submit({"type": "print_noise", "lines": 1})
        pid = pool.statistics().children[0].pid
        await wait_until(printed, what="the child's line on stderr")
    assert f"[qoper8 child 1 pid {pid}] error line 0\n" in "".join(seen)


async def test_a_mebibyte_on_stdout_and_stderr_does_not_corrupt_the_channel() -> None:
    received = bytearray()
    count = [0]

    def collect(child: int, pid: int, line: str) -> None:
        count[0] += 1
        received.extend(line.encode())

    async with qoper8.Pool(HANDLERS, children=1, on_output=collect) as pool:
        assert await pool.submit({"type": "flood", "mib": 1}) == 1
        assert await pool.submit({"type": "echo", "value": "intact"}) == "intact"
        await wait_until(lambda: count[0] >= 2048, what="2048 lines")
    assert count[0] == 2048
    assert set(received) == {ord("x")}


class _StalledStderr:
    """A stderr whose reader has stopped: each write waits until ``moving`` is set (or
    records that it gave up waiting, which means somebody blocked on it)."""

    def __init__(self) -> None:
        self.moving = threading.Event()
        self.gave_up = False
        self.text: list[str] = []

    def write(self, text: str) -> int:
        if not self.moving.wait(timeout=20):
            self.gave_up = True
        self.text.append(text)
        return len(text)

    def flush(self) -> None:
        pass


async def test_a_stalled_stderr_never_blocks_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children print into a stderr nobody reads: the pool keeps answering, lines beyond the
    queue are dropped and counted, and once stderr moves the writer says how many."""
    stderr = _StalledStderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    writer = StderrWriter(max_pending=5)
    async with qoper8.Pool(HANDLERS, children=1, on_output=writer) as pool:
        assert await pool.submit({"type": "print_noise", "lines": 20}) == 20
        await wait_until(lambda: writer.dropped > 0, what="lines dropped")
        # The loop is free while the writer thread is stuck in stderr.write.
        assert await pool.submit({"type": "echo", "value": "still serving"}) == "still serving"
        stderr.moving.set()

        def all_accounted() -> bool:
            lines = "".join(stderr.text).splitlines()
            printed = [line for line in lines if line.startswith("[qoper8 child ")]
            return len(printed) + writer.dropped == 40

        await wait_until(all_accounted, what="every line written or counted as dropped")
    assert await asyncio.to_thread(writer.flush, 5.0)
    assert not stderr.gave_up
    notes = [line for line in "".join(stderr.text).splitlines() if "dropped" in line]
    # Every drop is reported, in one note or several (lines may still be dropping while the
    # first note is written, when the machine is slow).
    pattern = re.compile(r"\[qoper8\] (\d+) lines of child output dropped: stderr did not keep up")
    counts = [int(m.group(1)) for m in map(pattern.fullmatch, notes) if m]
    assert len(counts) == len(notes) >= 1
    assert sum(counts) == writer.dropped
