"""``POST /v1/stream``: one action run with ``pool.stream``, and what its handler sends while
it runs relayed to the client as it comes, as Server-Sent Events or NDJSON::

    SSE (default)                      NDJSON (Accept: application/x-ndjson)
    event: message  data: MESSAGE      {"message": MESSAGE}
    event: progress data: PROGRESS     {"progress": PROGRESS}
    event: result   data: RESULT       {"result": RESULT}
    event: error    data: {"error": {...}}   (/v1/submit's error body, in both)

Everything before the job is queued (a bad body, an unknown type, QueueFull, draining) is a
plain HTTP error, as on ``/v1/submit``; once it is queued the answer is 200 and its outcome
is the stream's last event. A client that goes away cancels the job, as cancelling
``pool.stream`` does: a queued job is dropped, a running one is killed only with
``Qoper8-Kill-On-Cancel: 1``. A caller's W3C ``traceparent`` continues its trace, as on
``/v1/submit``.

Memory stays bounded whatever the client does: a pump moves the stream's messages into an
outbox of ``STREAM_WINDOW`` messages at most and then waits; the writer sends what the
outbox holds in one write and waits while the socket's buffer is full, so a client that
stops reading stops the pump, then the engine's window stops reading the child. Streams are
not counted apart: each is one job, bounded by the pool's queue (``max_queue``) as submits
are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._engine.stream import STREAM_WINDOW
from .._engine.tracing import continued
from ..errors import Qoper8Error, error_to_dict
from .http_sse import (
    EVENT_STREAM_TYPE,
    NDJSON_PING,
    NDJSON_TYPE,
    PING_INTERVAL,
    SSE_PING,
    open_stream,
    sse,
    wants_ndjson,
)
from .http_submit import job_options, read_action

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web

    from .._engine.pool_like import PoolLike
    from .._engine.stream import Stream
    from .http_submit import Submits

__all__ = ["JobStreams"]

_dumps: Final = orjson.dumps
# What a write raises when the client went away mid-stream (aiohttp's
# ClientConnectionResetError is one).
_GONE: Final = (ConnectionError,)


class _Outbox:
    """What the writer sends next: the messages in order (``STREAM_WINDOW`` at most, then
    the pump waits), the newest progress (older unsent ones are dropped, as the engine
    drops them), and last the end (the result or the error)."""

    def __init__(self) -> None:
        self.messages: deque[Any] = deque()
        self.progress: list[Any] = []  # the newest unsent one, or none
        self.end: tuple[str, Any] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None

    def _set(self, future: asyncio.Future[None] | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)

    async def put(self, message: Any) -> None:
        while len(self.messages) >= STREAM_WINDOW:
            self._room = asyncio.get_running_loop().create_future()
            await self._room
        self.messages.append(message)
        self._set(self._wake)

    def set_progress(self, value: Any) -> None:
        self.progress[:] = [value]
        self._set(self._wake)

    def finish(self, kind: str, value: Any) -> None:
        self.end = (kind, value)
        self._set(self._wake)

    async def wait(self, timeout: float) -> bool:
        """Wait until there is something to send; False after ``timeout`` with nothing."""
        if self.messages or self.progress or self.end is not None:
            return True
        self._wake = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._wake
        except TimeoutError:
            return False
        finally:
            self._wake = None
        return True

    def take(self) -> tuple[list[Any], list[Any]]:
        """The newest progress and the messages waiting, emptied (the pump may go on)."""
        messages = list(self.messages)
        self.messages.clear()
        progress, self.progress = self.progress, []
        self._set(self._room)
        return progress, messages


class JobStreams:
    """The ``/v1/stream`` endpoint of one API.

    Args:
        pool: where jobs go.
        submits: the submit endpoint, whose admission (draining, start-up hold) streams
            share.
        max_body: larger bodies get 413.
        error_response: how the API answers a qoper8 error.
        record_error: keeps an error a caller got, for the dashboard.
        debug: error events carry a failed job's traceback.
    """

    def __init__(
        self,
        pool: PoolLike,
        submits: Submits,
        max_body: int,
        error_response: Callable[..., web.Response],
        record_error: Callable[[object, Qoper8Error], None],
        *,
        debug: Callable[[], bool],
    ) -> None:
        self._pool = pool
        self._submits = submits
        self._max_body = max_body
        self._error_response = error_response
        self._record = record_error
        self._debug = debug

    async def stream(self, request: web.Request) -> web.StreamResponse:
        action = await read_action(request, self._max_body)
        kwargs = job_options(request)
        refused = await self._submits.admit(kwargs)
        if refused is not None:
            return refused
        outbox = _Outbox()
        opener = self._pool.stream(
            action, wait_for_room=False, on_progress=outbox.set_progress, **kwargs
        )
        try:
            # A caller's traceparent (OpenTelemetry): the job is made (and its spans and its
            # child continue that trace) on entering.
            with continued(request.headers):
                stream = await opener.__aenter__()
        except Qoper8Error as exc:
            self._record(action, exc)
            return self._error_response(exc)
        pump = asyncio.create_task(self._pump(stream, outbox, action))
        try:
            ndjson = wants_ndjson(request)
            response = await open_stream(request, NDJSON_TYPE if ndjson else EVENT_STREAM_TYPE)
            with contextlib.suppress(*_GONE):  # the client left: the finally cancels its job
                await self._relay(outbox, response, ndjson)
            return response
        finally:
            pump.cancel()
            # Leaving the stream cancels a job that has not ended (dropped, or killed with
            # kill_on_cancel): the client is gone, or the job is over and this does nothing.
            await opener.__aexit__(None, None, None)

    async def _pump(self, stream: Stream, outbox: _Outbox, action: object) -> None:
        try:
            async for message in stream:
                await outbox.put(message)
        except Qoper8Error as exc:
            self._record(action, exc)
            outbox.finish("error", exc)
            return
        outbox.finish("result", stream.result)

    async def _relay(self, outbox: _Outbox, response: web.StreamResponse, ndjson: bool) -> None:
        encode = _ndjson if ndjson else _sse
        ping = NDJSON_PING if ndjson else SSE_PING
        while True:
            if not await outbox.wait(PING_INTERVAL):
                await response.write(ping)
                continue
            progress, messages = outbox.take()
            # The newest progress goes after the messages that came with it: it is at least
            # as new as they are.
            chunk = [encode("message", m) for m in messages]
            chunk += [encode("progress", p) for p in progress]
            end = outbox.end  # set after the pump's last message: all are in the chunk
            if end is not None:
                kind, value = end
                if kind == "error":
                    value = {"error": error_to_dict(value, include_traceback=self._debug())}
                chunk.append(encode(kind, value))
            await response.write(b"".join(chunk))
            if end is not None:
                await response.write_eof()
                return


def _sse(kind: str, value: Any) -> bytes:
    return sse(kind.encode(), _dumps(value))


def _ndjson(kind: str, value: Any) -> bytes:
    if kind == "error":
        return _dumps(value) + b"\n"  # already {"error": {...}}
    return _dumps({kind: value}) + b"\n"
