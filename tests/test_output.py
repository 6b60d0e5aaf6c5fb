"""Children's prints never touch the channel and reach the master line by line, prefixed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import qoper8
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
