"""``POST /v1/stream`` and ``Client.stream``: messages in order then the result, as SSE and
as NDJSON; progress; a failure after the messages; a client that leaves cancels the job
(a queued one never runs, a running one is killed with kill_on_cancel); keep-alives; a
client that stops reading holds the daemon's memory to a window."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest

import qoper8
from qoper8._engine.stream import STREAM_WINDOW
from tests.conftest import pid_alive, wait_until
from tests.http_messages_support import served

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.timeout(60)]


async def test_client_stream_gives_messages_in_order_then_the_result() -> None:
    async with served() as s, asyncio.timeout(20):
        progress: list[Any] = []
        async with s.client.stream({"type": "count", "n": 200}, on_progress=progress.append) as st:
            got = [m async for m in st]
            assert st.result == {"sent": 200}
        assert got == [{"i": i} for i in range(200)]
        async with s.client.stream({"type": "progress", "n": 3}, on_progress=progress.append) as st:
            assert [m async for m in st] == []
            assert st.result == 3
            assert st.progress == {"done": 3, "total": 3}  # the newest wins
        assert progress[-1] == {"done": 3, "total": 3}


async def test_a_failure_mid_stream_comes_after_the_messages_with_its_type() -> None:
    async with served() as s, asyncio.timeout(20):
        got: list[Any] = []
        with pytest.raises(qoper8.JobFailed) as failed:
            await collect(s.client, {"type": "fail_after", "n": 3}, got)
        assert got == [0, 1, 2]
        assert failed.value.remote_type == "LookupError"
        got = []
        with pytest.raises(qoper8.ChildDied) as died:
            await collect(s.client, {"type": "die_after", "n": 2}, got)
        assert (got, died.value.exitcode) == ([0, 1], 4)
        # Errors before the stream starts are the plain HTTP errors, raised on entering.
        with pytest.raises(qoper8.InvalidAction):
            async with s.client.stream({"type": "no.such.type"}):
                pytest.fail("entered a stream of an unknown type")


async def collect(client: qoper8.Client, action: dict[str, Any], into: list[Any]) -> Any:
    """Read a stream's messages into ``into`` (kept when the stream fails), then its result."""
    async with client.stream(action) as st:
        async for message in st:
            into.append(message)  # noqa: PERF401 (the list must fill before a failure)
        return st.result


async def test_sse_and_ndjson_carry_the_same_events() -> None:
    async with served() as s, asyncio.timeout(20), aiohttp.ClientSession() as http:
        action = orjson.dumps({"type": "fail_after", "n": 2})
        async with http.post(s.url + "/v1/stream", data=action, headers=s.auth) as resp:
            assert resp.content_type == "text/event-stream"
            text = (await resp.read()).decode()
        events = [block.split("\n") for block in text.strip().split("\n\n")]
        assert [e[0] for e in events] == ["event: message", "event: message", "event: error"]
        assert [e[1] for e in events[:2]] == ["data: 0", "data: 1"]
        error = orjson.loads(events[2][1].removeprefix("data: "))
        assert error["error"]["type"] == "JobFailed"  # /v1/submit's error body
        headers = {**s.auth, "Accept": "application/x-ndjson"}
        async with http.post(s.url + "/v1/stream", data=action, headers=headers) as resp:
            assert resp.content_type == "application/x-ndjson"
            lines = [orjson.loads(line) for line in (await resp.read()).splitlines()]
        assert lines[:2] == [{"message": 0}, {"message": 1}]
        assert lines[2]["error"]["type"] == "JobFailed"
        ok = orjson.dumps({"type": "count", "n": 1})
        async with http.post(s.url + "/v1/stream", data=ok, headers=headers) as resp:
            lines = (await resp.read()).splitlines()
        assert lines == [b'{"message":{"i":0}}', b'{"result":{"sent":1}}']


async def test_a_client_that_leaves_a_running_stream_kills_it_with_kill_on_cancel(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    async with served() as s, asyncio.timeout(20):
        action = {"type": "send_then_wait", "n": 2, "path": str(gate)}
        async with s.client.stream(action, kill_on_cancel=True) as st:
            assert [await anext(st), await anext(st)] == [0, 1]
            busy = next(c for c in s.pool.statistics().children if c.state == "busy")
        # Left early: the connection closed, the daemon cancelled the job and killed its child.
        assert busy.pid is not None
        await wait_until(lambda: not pid_alive(busy.pid or 0), what="the killed child")
        assert s.pool.statistics().cancelled == 1
        # Without kill_on_cancel the job runs on to its end (its messages unheard).
        async with s.client.stream({**action, "n": 1}) as st:
            assert await anext(st) == 0
            running = next(c for c in s.pool.statistics().children if c.state == "busy")
        await wait_until(lambda: s.pool.statistics().cancelled == 2, what="the cancel")
        gate.touch()
        await wait_until(lambda: s.pool.statistics().running == 0, what="the job's end")
        after = {c.pid: c for c in s.pool.statistics().children}
        assert after[running.pid].jobs_done == running.jobs_done + 1  # ran on, not killed


async def test_a_client_that_leaves_a_queued_stream_drops_the_job(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with served(children=1) as s, asyncio.timeout(20):
        blocker = asyncio.create_task(
            s.client.submit({"type": "wait_file", "path": str(gate)}, timeout=15)
        )
        await wait_until(lambda: s.pool.statistics().running == 1, what="a busy child")
        reader = asyncio.create_task(_first_message(s.client, {"type": "count", "n": 1}))
        await wait_until(lambda: s.pool.statistics().queue_length == 1, what="a queued stream")
        reader.cancel()  # the client leaves while its job waits in the queue
        await wait_until(lambda: s.pool.statistics().queue_length == 0, what="the dropped job")
        gate.touch()
        await blocker
        stats = s.pool.statistics()
        assert (stats.cancelled, stats.completed) == (1, 1)  # the stream's job never ran


async def _first_message(client: qoper8.Client, action: dict[str, Any]) -> Any:
    async with client.stream(action) as st:
        return await anext(st)


async def test_keep_alives_while_a_job_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qoper8._daemon.http_stream as http_stream

    monkeypatch.setattr(http_stream, "PING_INTERVAL", 0.05)
    gate = tmp_path / "gate"
    async with served() as s, asyncio.timeout(20), aiohttp.ClientSession() as http:
        for accept, ping, end in (
            ("text/event-stream", b": ping\n", b"event: result\ndata: 7\n\n"),
            ("application/x-ndjson", b"\n", b'{"result":7}\n'),
        ):
            action = orjson.dumps({"type": "wait_file", "path": str(gate), "value": 7})
            headers = {**s.auth, "Accept": accept}
            async with http.post(s.url + "/v1/stream", data=action, headers=headers) as resp:
                assert await resp.content.readline() == ping
                gate.touch()
                assert (await resp.read()).endswith(end)
            gate.unlink()


async def test_the_client_skips_keep_alives() -> None:
    from qoper8._client_stream import ClientStream

    class Content:
        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks

        async def readany(self) -> bytes:
            return self.chunks.pop(0) if self.chunks else b""

    class Response:
        def __init__(self, chunks: list[bytes]) -> None:
            self.content = Content(chunks)

        def close(self) -> None:
            pass

    chunks = [b"\n", b'{"message":1}\n\n{"prog', b'ress":5}\n\n', b'{"result":2}\n']
    stream = ClientStream(Response(chunks), "a test", None)  # type: ignore[arg-type]
    assert [m async for m in stream] == [1]
    assert (stream.result, stream.progress) == (2, 5)


async def test_a_client_that_stops_reading_keeps_the_daemons_memory_bounded() -> None:
    size = 64 * 1024
    n = 2000  # 128 MB if the daemon kept them all
    async with served() as s, asyncio.timeout(30), aiohttp.ClientSession() as http:
        headers = {**s.auth, "Accept": "application/x-ndjson"}
        action = orjson.dumps({"type": "flood", "n": n, "size": size})
        async with http.post(s.url + "/v1/stream", data=action, headers=headers) as resp:
            await resp.content.readline()
            # The client reads nothing more: the child must end up blocked in send().
            await wait_until(
                lambda: s.api.pool.statistics().running == 1 and _paused(s.pool),
                what="the master to stop reading the child",
            )
            held = _held_messages(s.pool)
            assert held <= 2 * STREAM_WINDOW + 1, held
            got = 1 + len((await resp.read()).splitlines())
        assert got == n + 1  # every message, then the result


def _paused(pool: qoper8.Pool) -> bool:
    return any(c._paused for c in pool._supervisor.children.values())


def _held_messages(pool: qoper8.Pool) -> int:
    """Messages the master holds for the one running stream (its window and the outbox)."""
    import gc

    from qoper8._daemon.http_stream import _Outbox
    from qoper8._engine.stream import Stream

    held = 0
    for obj in gc.get_objects():
        if isinstance(obj, Stream):
            held += len(obj._messages)
        elif isinstance(obj, _Outbox):
            held += len(obj.messages)
    return held
