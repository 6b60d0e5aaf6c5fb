"""The blocking face behaves like the async pool."""

from __future__ import annotations

import concurrent.futures

import pytest

import qoper8
import qoper8.sync
from tests import handlers
from tests.conftest import HANDLERS


def test_sync_pool_submits_runs_and_reports() -> None:
    with qoper8.sync.Pool(HANDLERS, children=2) as pool:
        assert pool.submit({"type": "add", "a": 1, "b": 2}) == 3
        assert pool.run(handlers.square, 9) == 81
        with concurrent.futures.ThreadPoolExecutor(4) as threads:
            results = list(
                threads.map(lambda i: pool.submit({"type": "echo", "value": i}), range(40))
            )
        assert results == list(range(40))
        assert list(pool.executor().map(handlers.square, range(5))) == [0, 1, 4, 9, 16]
        stats = pool.statistics()
        assert stats.completed == 47
        assert len(stats.children) == 2
        assert "add" in pool.handlers


def test_sync_pool_raises_the_same_typed_errors() -> None:
    with qoper8.sync.Pool(HANDLERS, children=1) as pool:
        with pytest.raises(qoper8.JobFailed):
            pool.submit({"type": "raise_error"})
        with pytest.raises(qoper8.ChildDied):
            pool.submit({"type": "exit_hard"})
        with pytest.raises(qoper8.JobTimeout):
            pool.submit({"type": "hang"}, timeout=0.2)
        with pytest.raises(qoper8.JobTimeout):
            pool.run(handlers.hang_call, timeout=0.2)
        with pytest.raises(qoper8.InvalidAction):
            pool.submit({"type": "nope"})
        assert pool.submit({"type": "echo", "value": "still serving"}) == "still serving"
    with pytest.raises(qoper8.PoolClosed):
        pool.submit({"type": "echo"})


def test_sync_pool_start_failure_is_start_failed_and_stops_the_thread() -> None:
    pool = qoper8.sync.Pool("tests.bad_workers.start_fails:worker", children=1)
    with pytest.raises(qoper8.StartFailed):
        pool.start()
    assert pool._thread is None


def test_sync_pool_streams_broadcasts_asks_and_hears_notices() -> None:
    """Messages on the blocking face (issue 11 item 5): the same calls as the async pool."""
    import threading

    with qoper8.sync.Pool("tests.message_handlers:worker", children=2) as pool:
        with pool.stream({"type": "count", "n": 100}) as stream:
            assert list(stream) == [{"i": i} for i in range(100)]
            assert stream.result == {"sent": 100}
        seen: list[object] = []
        assert pool.submit({"type": "progress", "n": 5}, on_progress=seen.append) == 5
        assert seen[-1] == {"done": 5, "total": 5}
        result = pool.broadcast("cache.invalidate", {"keys": ["k"]}, timeout=10)
        assert result.complete
        assert len(result.values) == 2
        child = pool.statistics().children[0]
        assert pool.ask(child, "debug.stats", timeout=10) == {"pid": child.pid, "seen": 1}
        heard = threading.Event()
        pool.on_message("audit", lambda notice: heard.set())
        pool.submit({"type": "notify", "topic": "audit"})
        assert heard.wait(10)
        got: list[object] = []
        with pytest.raises(qoper8.ChildDied), pool.stream({"type": "die_after", "n": 2}) as dying:
            _read_into(dying, got)
        assert got == [0, 1]


def _read_into(stream: qoper8.sync.SyncStream, into: list[object]) -> None:
    for message in stream:
        into.append(message)  # noqa: PERF402  (the messages before a failure count)
