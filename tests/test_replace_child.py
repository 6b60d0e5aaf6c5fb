"""A handler that knows its child is broken asks for a fresh one (issue 15): ``raise
qoper8.ReplaceChild(reason)`` fails the job with a retryable 503, ``replace_child_after``
keeps the answer; either way the child answers, retires gracefully (its on_stop runs) and is
replaced, without counting as a crash or a failed start, and the log says why."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING

import pytest

import qoper8
from qoper8._engine import protocol as proto
from qoper8._engine.channel import RECV_SIZE
from qoper8._engine.child import Child
from qoper8._engine.protocol import Kind
from tests.conftest import wait_until
from tests.replace_handlers import broken_call

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

HANDLERS = "tests.replace_handlers:worker"


@pytest.fixture
def stop_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_QOPER8_STOP_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
async def one_child(stop_dir: Path) -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        yield pool


async def _replaced(pool: qoper8.Pool, stop_dir: Path, old_pid: int) -> int:
    """Wait until ``old_pid`` ran its on_stop and left, and return its successor's pid."""
    await wait_until(lambda: (stop_dir / f"stopped-{old_pid}").exists(), what="on_stop ran")
    # ...and exited (a forked replacement can be ready before the old child has left).
    await wait_until(
        lambda: old_pid not in {c.pid for c in pool.statistics().children}, what="it left"
    )
    # The old child never takes another job: this one waits for the replacement if need be.
    new_pid = await pool.submit({"type": "pid"})
    assert isinstance(new_pid, int)
    return new_pid


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_replace_child_fails_the_job_with_a_retryable_503_and_replaces_the_child(
    one_child: qoper8.Pool, stop_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qoper8")
    pool = one_child
    old_pid = pool.statistics().children[0].pid
    assert old_pid is not None
    with pytest.raises(qoper8.JobFailed) as info:  # the first job, right after READY
        await pool.submit({"type": "broken", "reason": "server closed the connection"})
    err = info.value
    assert err.remote_is(qoper8.ReplaceChild)
    assert err.remote_is(qoper8.HandlerError)
    assert (err.status, err.code) == (503, "child_replaced")
    assert err.remote_message == "server closed the connection"
    assert qoper8.errors.http_status(err) == 503
    new_pid = await _replaced(pool, stop_dir, old_pid)
    assert new_pid != old_pid
    stats = pool.statistics()
    assert (stats.died, stats.failed, stats.recycled, stats.degraded) == (0, 1, 0, False)
    assert len(stats.children) == 1
    assert not pool.is_degraded
    retired = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and r.getMessage().startswith("retiring child")
    ]
    assert len(retired) == 1
    assert f"(pid {old_pid})" in retired[0]
    assert "server closed the connection" in retired[0]
    # The job's own failure (a 5xx) is the one WARNING: no crash, no failed start, no outage.
    (warning,) = _warnings(caplog)
    assert "failed in child 1" in warning
    assert "ReplaceChild: server closed the connection" in warning


async def test_replace_child_after_keeps_the_answer_and_replaces_the_child(
    one_child: qoper8.Pool, stop_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qoper8")
    pool = one_child
    old_pid = await pool.submit({"type": "renew", "reason": "renderer leaks"})
    assert isinstance(old_pid, int)
    assert await _replaced(pool, stop_dir, old_pid) != old_pid
    stats = pool.statistics()
    assert (stats.completed, stats.failed, stats.died, stats.degraded) == (2, 0, 0, False)
    assert any("renderer leaks" in r.getMessage() for r in caplog.records)
    assert _warnings(caplog) == []


async def test_a_request_stands_when_the_result_then_fails_to_encode(
    one_child: qoper8.Pool, stop_dir: Path
) -> None:
    pool = one_child
    old_pid = pool.statistics().children[0].pid
    assert old_pid is not None
    with pytest.raises(qoper8.JobFailed, match="NaN"):
        await pool.submit({"type": "renew_then_nan"})
    assert await _replaced(pool, stop_dir, old_pid) != old_pid


async def test_run_face_replaces_the_child_too(one_child: qoper8.Pool, stop_dir: Path) -> None:
    pool = one_child
    old_pid = pool.statistics().children[0].pid
    assert old_pid is not None
    with pytest.raises(qoper8.JobFailed) as info:
        await pool.run(broken_call, "driver state corrupt")
    assert isinstance(info.value.remote_exception, qoper8.ReplaceChild)
    assert await _replaced(pool, stop_dir, old_pid) != old_pid


async def test_replacing_children_under_load_loses_no_queued_job(stop_dir: Path) -> None:
    async with asyncio.timeout(20), qoper8.Pool(HANDLERS, children=2) as pool:
        jobs = [pool.submit({"type": "renew" if i % 10 == 0 else "pid"}) for i in range(60)]
        pids = await asyncio.gather(*jobs)
        assert all(isinstance(p, int) for p in pids)
        # Every renew retired its child after answering: at least 6 children did jobs.
        assert len(set(pids)) >= 6
        await wait_until(lambda: len(os.listdir(stop_dir)) >= 6, what="6 on_stop hooks")
        await wait_until(lambda: pool.size == 2, what="the pool back at 2 children")
        stats = pool.statistics()
        assert (stats.completed, stats.died, stats.degraded) == (60, 0, False)


class _Events:
    """A fake ``ChildEvents`` that records what the child reports."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, int]] = []
        self.messages: list[tuple[int, int, bytes]] = []

    def child_ready(self, child: Child) -> None:
        raise AssertionError("not expected")

    def child_frame(self, child: Child, kind: int, job_id: int, extra: int, payload: bytes) -> None:
        self.frames.append((kind, job_id))

    def child_exited(self, child: Child) -> None:
        raise AssertionError("not expected")

    def child_message(self, child: Child, kind: int, ident: int, payload: bytes) -> None:
        self.messages.append((kind, ident, payload))

    def child_output(self, child: Child, line: str) -> None:
        raise AssertionError("not expected")

    def child_proved(self, child: Child) -> None:
        raise AssertionError("not expected")

    def retire_if_due(self, child: Child) -> bool:
        raise AssertionError("not expected")


def test_a_replace_me_frame_alone_in_one_read_is_a_notice_not_a_reply() -> None:
    """The master's fast path takes a read holding exactly one frame as a job's answer: a
    REPLACE_ME that arrives alone must not be taken for one (the child sends it and its
    reply separately, so a read may hold either or both)."""
    events = _Events()
    child = Child(events, 1, 1, max_jobs=None)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        child._sock = ours
        child._reader = proto.FrameReader(1 << 20)
        child._recv_buffer = bytearray(RECV_SIZE)
        child._recv_view = memoryview(child._recv_buffer)
        notice = proto.dumps({"reason": "gone"})
        theirs.sendall(proto.frame(Kind.REPLACE_ME, 7, notice))
        child._on_readable()
        assert events.messages == [(Kind.REPLACE_ME, 7, notice)]
        assert events.frames == []
        theirs.sendall(proto.frame(Kind.RESULT, 7, b"1"))
        child._on_readable()
        assert events.frames == [(Kind.RESULT, 7)]
        child._sock = None
