"""Messages (issue 11): streams and progress from a running handler, broadcasts and asks to
children's on_message functions, and what children notify and publish."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

import pytest

import qoper8
from qoper8._engine.stream import STREAM_WINDOW
from tests.conftest import new_fifo, release, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

WORKER = "tests.message_handlers:worker"


@pytest.fixture
async def mpool() -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(WORKER, children=2) as p:
        yield p


async def _collect(pool: qoper8.Pool, action: dict[str, Any], into: list[Any], **kw: Any) -> None:
    """Read a stream to its end into ``into``; its error, if any, is raised after."""
    async with pool.stream(action, **kw) as stream:
        async for message in stream:
            into.append(message)  # noqa: PERF401  (the messages before a failure count)


def _ready(pool: qoper8.Pool) -> list[qoper8.ChildStatistics]:
    return [c for c in pool.statistics().children if c.state in ("idle", "busy")]


# ==================================================================== streams


async def test_a_stream_delivers_every_message_in_order_then_the_result(mpool: qoper8.Pool) -> None:
    async with mpool.stream({"type": "count", "n": 500}) as stream:
        got = [m async for m in stream]
        assert stream.result == {"sent": 500}
    assert got == [{"i": i} for i in range(500)]


async def test_a_generator_handler_streams_its_yields(mpool: qoper8.Pool) -> None:
    async with mpool.stream({"type": "tokens", "words": ["a", "b", "c"]}) as stream:
        assert [m async for m in stream] == ["a", "b", "c"]
        assert stream.result == "done"
    # Through submit, the yields are dropped and the return value is the result.
    assert await mpool.submit({"type": "tokens", "words": ["x"]}) == "done"


async def test_progress_keeps_only_the_newest_value(mpool: qoper8.Pool) -> None:
    seen: list[Any] = []
    n = 20_000
    assert await mpool.submit({"type": "progress", "n": n}, on_progress=seen.append) == n
    assert seen[-1] == {"done": n, "total": n}  # the newest always arrives, last
    assert 1 <= len(seen) < n // 10  # paced: a fast loop never floods the caller
    assert [s["done"] for s in seen] == sorted(s["done"] for s in seen)
    async with mpool.stream({"type": "progress", "n": 3}) as stream:
        assert [m async for m in stream] == []
        assert stream.progress == {"done": 3, "total": 3}


async def test_an_async_progress_callback_runs_as_a_task(mpool: qoper8.Pool) -> None:
    got = asyncio.Event()

    async def on_progress(value: Any) -> None:
        got.set()

    await mpool.submit({"type": "progress", "n": 1}, on_progress=on_progress)
    await asyncio.wait_for(got.wait(), 10)


async def test_a_child_killed_mid_stream_gives_the_messages_then_child_died(
    mpool: qoper8.Pool,
) -> None:
    got: list[Any] = []
    with pytest.raises(qoper8.ChildDied) as info:
        await _collect(mpool, {"type": "die_after", "n": 5}, got)
    assert got == [0, 1, 2, 3, 4]
    assert info.value.signal == signal.SIGKILL
    await wait_until(lambda: len(_ready(mpool)) == 2, what="the child replaced")


async def test_a_failure_mid_stream_comes_after_the_messages(mpool: qoper8.Pool) -> None:
    got: list[Any] = []
    with pytest.raises(qoper8.JobFailed) as info:
        await _collect(mpool, {"type": "fail_after", "n": 3}, got)
    assert got == [0, 1, 2]
    assert info.value.remote_type == "LookupError"


async def test_a_timeout_mid_stream(mpool: qoper8.Pool, tmp_path: Path) -> None:
    fifo = new_fifo(tmp_path, "gate")
    got: list[Any] = []
    with pytest.raises(qoper8.JobTimeout):
        await _collect(mpool, {"type": "send_then_block", "n": 3, "fifo": fifo}, got, timeout=0.5)
    assert got == [0, 1, 2]


async def test_a_caller_that_never_reads_holds_at_most_a_window(mpool: qoper8.Pool) -> None:
    n, size = 5_000, 1_000
    async with mpool.stream({"type": "flood", "n": n, "size": size}) as stream:
        child = next(c for c in mpool._supervisor.children.values() if c.job is not None)
        await wait_until(lambda: child._paused, what="the master to stop reading the child")
        # One read of the socket may land past the window: at most 64 KiB of frames.
        bound = STREAM_WINDOW + (64 * 1024) // size + 1
        assert len(stream._messages) <= bound
        count = 0
        async for message in stream:
            assert len(stream._messages) <= bound
            assert message == "m" * size
            count += 1
        assert count == n
        assert stream.result == n


async def test_a_caller_that_leaves_drops_a_queued_job(mpool: qoper8.Pool, tmp_path: Path) -> None:
    gates = [new_fifo(tmp_path, f"g{i}") for i in range(2)]
    blocked = [asyncio.create_task(mpool.submit({"type": "block", "fifo": g})) for g in gates]
    await wait_until(lambda: mpool.statistics().running == 2, what="both children busy")
    async with mpool.stream({"type": "count", "n": 3}):
        assert mpool.statistics().queue_length == 1
    stats = mpool.statistics()
    assert (stats.queue_length, stats.cancelled) == (0, 1)
    for gate in gates:
        await release(gate)
    await asyncio.gather(*blocked)
    assert mpool.statistics().completed == 2  # the stream's job never ran


async def test_a_caller_that_leaves_a_running_job_kills_it_on_request(
    mpool: qoper8.Pool, tmp_path: Path
) -> None:
    fifo = new_fifo(tmp_path, "gate")
    action = {"type": "send_then_block", "n": 2, "fifo": fifo}
    async with mpool.stream(action, kill_on_cancel=True) as stream:
        assert await stream.__anext__() == 0
        pid = next(c.pid for c in mpool.statistics().children if c.state == "busy")
    await wait_until(
        lambda: pid not in [c.pid for c in _ready(mpool)], what="the running child killed"
    )
    assert mpool.statistics().cancelled == 1


async def test_a_message_of_a_job_no_longer_current_never_reaches_the_next(
    tmp_path: Path,
) -> None:
    async with qoper8.Pool(WORKER, children=1) as pool:
        fifo = new_fifo(tmp_path, "gate")
        async with pool.stream({"type": "send_then_block", "n": 50, "fifo": fifo}) as stream:
            assert await stream.__anext__() == 0  # then leave: the job runs on, unheard
        await release(fifo)
        async with pool.stream({"type": "count", "n": 3}) as stream:
            assert [m async for m in stream] == [{"i": 0}, {"i": 1}, {"i": 2}]


async def test_an_oversized_or_non_json_message_is_a_typed_error_and_the_child_serves_on(
    mpool: qoper8.Pool,
) -> None:
    for kind, error in (("set", "TypeError"), ("nan", "ValueError")):
        assert await mpool.submit({"type": "bad_message", "kind": kind}) == f"refused: {error}"
    small = qoper8.Pool(WORKER, children=1, max_message_bytes=1024)
    async with small:
        assert await small.submit({"type": "bad_message", "kind": "big"}) == "refused: ValueError"
        assert await small.submit({"type": "pid"}, result_type=int) > 0


# ==================================================================== broadcasts and asks


async def test_a_broadcast_reaches_every_child_and_says_what_each_answered(
    mpool: qoper8.Pool,
) -> None:
    result = await mpool.broadcast("cache.invalidate", {"keys": ["a", "b"]}, timeout=10)
    assert result.complete
    pids = sorted(c.pid for c in _ready(mpool) if c.pid)
    values = [v for v in result.values.values() if isinstance(v, dict)]
    assert sorted(int(str(v["pid"])) for v in values) == pids
    assert [v["dropped"] for v in values] == [2, 2]


async def test_a_broadcast_reaches_a_busy_child_after_its_job_and_before_its_next(
    tmp_path: Path,
) -> None:
    async with qoper8.Pool(WORKER, children=1) as pool:
        fifo = new_fifo(tmp_path, "gate")
        busy = asyncio.create_task(pool.submit({"type": "block", "fifo": fifo}))
        await wait_until(lambda: pool.statistics().running == 1, what="the child busy")
        after = asyncio.create_task(pool.submit({"type": "seen"}))  # queued behind it
        broadcast = asyncio.create_task(pool.broadcast("cache.invalidate", {"keys": ["k"]}))
        await asyncio.sleep(0)
        assert not broadcast.done()
        await release(fifo)
        assert await busy == "go"
        assert (await broadcast).complete
        assert await after == [{"cache.invalidate": ["k"]}]


async def test_a_slow_child_is_told_apart_from_a_dead_one(
    mpool: qoper8.Pool, tmp_path: Path
) -> None:
    fifo = new_fifo(tmp_path, "gate")
    busy = asyncio.create_task(mpool.submit({"type": "block", "fifo": fifo}))
    await wait_until(lambda: mpool.statistics().running == 1, what="one child busy")
    result = await mpool.broadcast("cache.invalidate", {"keys": []}, timeout=0.3)
    errors = list(result.errors.values())
    assert len(result.values) == 1
    assert len(errors) == 1
    assert isinstance(errors[0], qoper8.JobTimeout)
    await release(fifo)
    await busy
    died = await mpool.broadcast("die", timeout=10)
    assert len(died.errors) == 2
    assert all(isinstance(e, qoper8.ChildDied) for e in died.errors.values())
    await wait_until(lambda: len(_ready(mpool)) == 2, what="both replaced")


async def test_a_topic_no_child_knows_is_an_error_in_each_entry(mpool: qoper8.Pool) -> None:
    result = await mpool.broadcast("no.such.topic", timeout=10)
    assert len(result.replies) == 2
    assert all(isinstance(e, qoper8.InvalidAction) for e in result.errors.values())
    failed = await mpool.broadcast("explode", timeout=10)
    assert all(isinstance(e, qoper8.JobFailed) for e in failed.errors.values())
    with pytest.raises(ValueError, match="reserved"):
        await mpool.broadcast("qoper8.internal")
    with pytest.raises(ValueError, match="dotted name"):
        await mpool.broadcast("not a topic")


async def test_sticky_messages_reach_children_started_later(mpool: qoper8.Pool) -> None:
    await mpool.broadcast("cache.invalidate", {"keys": ["v1"]}, sticky=True, timeout=10)
    await mpool.broadcast("cache.invalidate", {"keys": ["v2"]}, sticky=True, timeout=10)
    victim = _ready(mpool)[0].pid
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    await wait_until(
        lambda: len(_ready(mpool)) == 2 and victim not in [c.pid for c in _ready(mpool)],
        what="a replacement",
    )
    replacement = next(c for c in _ready(mpool) if c.pid != victim)
    assert await mpool.ask(replacement, "debug.stats", timeout=10) is not None
    await mpool.reload()
    for child in _ready(mpool):
        seen = await mpool.ask(child, "debug.stats", timeout=10)
        assert isinstance(seen, dict)
        assert seen["seen"] == 1  # only the newest sticky payload, before its first job
    answers = await asyncio.gather(*(mpool.submit({"type": "seen"}) for _ in range(4)))
    assert all(a == [{"cache.invalidate": ["v2"]}] for a in answers)


async def test_ask_one_child_by_id_or_pid(mpool: qoper8.Pool) -> None:
    child = _ready(mpool)[0]
    by_id = await mpool.ask(child.id, "debug.stats", timeout=10)
    by_pid = await mpool.ask(child.pid or 0, "debug.stats", timeout=10, pid=True)
    assert by_id == by_pid == {"pid": child.pid, "seen": 0}
    with pytest.raises(qoper8.InvalidAction):
        await mpool.ask(999, "debug.stats")
    with pytest.raises(qoper8.InvalidAction):
        await mpool.ask(child, "no.such.topic")
    with pytest.raises(qoper8.JobFailed):
        await mpool.ask(child, "explode", timeout=10)
    with pytest.raises(qoper8.ChildDied):
        await mpool.ask(child, "die", timeout=10)


async def test_an_ask_that_times_out_is_withdrawn(mpool: qoper8.Pool, tmp_path: Path) -> None:
    fifo = new_fifo(tmp_path, "gate")
    busy = asyncio.create_task(mpool.submit({"type": "block", "fifo": fifo}))
    await wait_until(lambda: mpool.statistics().running == 1, what="one child busy")
    child = next(c for c in mpool.statistics().children if c.state == "busy")
    with pytest.raises(qoper8.JobTimeout):
        await mpool.ask(child, "cache.invalidate", {"keys": ["late"]}, timeout=0.2)
    await release(fifo)
    await busy
    seen = await mpool.ask(child, "debug.stats", timeout=10)
    assert isinstance(seen, dict)
    assert seen["seen"] == 0  # the withdrawn ask never ran


# ==================================================================== children speak first


async def test_notify_reaches_the_masters_callbacks_without_blocking_it(
    mpool: qoper8.Pool,
) -> None:
    gate = threading.Event()
    got: list[qoper8.Notice] = []
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(notice: qoper8.Notice) -> None:
        gate.wait(10)  # a slow callback: runs on its own thread
        got.append(notice)

    async def quick(notice: qoper8.Notice) -> None:
        arrived.set()

    remove = mpool.on_message("audit", slow)
    mpool.on_message("audit", quick)
    pid = await mpool.submit({"type": "notify", "topic": "audit", "value": 7})
    await asyncio.wait_for(arrived.wait(), 10)
    # The loop serves on while the slow callback waits.
    assert await mpool.submit({"type": "pid"}, result_type=int) > 0
    gate.set()
    await wait_until(lambda: len(got) == 1, what="the slow callback")
    notice = got[0]
    assert (notice.topic, notice.payload, notice.pid) == ("audit", {"value": 7, "pid": pid}, pid)
    remove()
    del loop


async def test_publish_reaches_every_other_child_between_their_jobs(mpool: qoper8.Pool) -> None:
    sender = await mpool.submit({"type": "publish", "topic": "chat.line", "value": "hi"})
    others = [c for c in _ready(mpool) if c.pid != sender]
    for child in others:
        answer = await mpool.ask(child, "debug.stats", timeout=10)
        assert isinstance(answer, dict)
        assert answer["seen"] == 1
    sender_child = next(c for c in _ready(mpool) if c.pid == sender)
    answer = await mpool.ask(sender_child, "debug.stats", timeout=10)
    assert isinstance(answer, dict)
    assert answer["seen"] == 0


def test_message_functions_are_refused_what_they_cannot_have() -> None:
    worker = qoper8.Worker()
    with pytest.raises(ValueError, match="reserved"):
        worker.on_message("qoper8.x")
    with pytest.raises(TypeError, match="not a job"):

        @worker.on_message("a.b")
        def with_job(job: qoper8.Job) -> None: ...

    with pytest.raises(RuntimeError, match="inside a qoper8 child"):
        qoper8.notify("a.b", 1)
