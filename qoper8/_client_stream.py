"""The daemon's streams as ``qoper8.Client`` reads them: a job's messages (``/v1/stream``,
NDJSON) behind the pool's ``Stream`` interface, and the lines of a Server-Sent Events
answer (an actor's events). Every aiohttp or socket failure becomes ``TransportError``.

Reading is by chunks split into lines here (not a ``readline`` per message): a stream of
small messages costs one read for many of them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import orjson

from .errors import Qoper8Error, TransportError, error_from_dict

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from ._types import JSONValue

__all__ = ["NDJSON_TYPE", "ClientStream", "Lines"]

logger = logging.getLogger("qoper8")

NDJSON_TYPE: Final = "application/x-ndjson"
_loads: Final = orjson.loads


class Lines:
    """The lines of a response body, as they come (without their newline)."""

    def __init__(self, response: aiohttp.ClientResponse, where: str) -> None:
        self._response = response
        self._where = where
        self._lines: deque[bytes] = deque()
        self._tail = b""

    async def next(self) -> bytes | None:
        """The next line; None at the end of the body."""
        lines = self._lines
        while not lines:
            try:
                chunk = await self._response.content.readany()
            except (aiohttp.ClientError, OSError) as exc:
                raise TransportError(f"the stream from {self._where} broke: {exc}") from exc
            except TimeoutError as exc:
                raise TransportError(f"the stream from {self._where} timed out") from exc
            if not chunk:
                if self._tail:
                    line, self._tail = self._tail, b""
                    return line
                return None
            parts = (self._tail + chunk).split(b"\n")
            self._tail = parts.pop()
            lines.extend(parts)
        return lines.popleft()

    def close(self) -> None:
        """Drop the connection: the daemon sees the client leave."""
        self._response.close()


class ClientStream:
    """One job's messages from the daemon, in order, then its result: the interface of
    ``qoper8.Stream`` (``async for``, ``.result``, ``.progress``, ``.done``, ``close()``).

    Leaving ``Client.stream``'s block early closes the connection, which cancels the job on
    the daemon (a queued one never runs; a running one is killed with ``kill_on_cancel``).
    A failure raises its typed error from the iteration, after the messages sent before it.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        where: str,
        on_progress: Callable[[Any], object] | None,
    ) -> None:
        self._lines = Lines(response, where)
        self._where = where
        self._on_progress = on_progress
        self._tasks: set[asyncio.Future[Any]] = set()
        self._outcome: tuple[bool, Any] | None = None  # (ok, result or error)
        self.progress: JSONValue = None
        """The newest progress value the handler reported (None before any)."""

    def __aiter__(self) -> ClientStream:
        return self

    async def __anext__(self) -> JSONValue:
        while self._outcome is None:
            line = await self._lines.next()
            if line is None:
                self._outcome = (False, TransportError(f"{self._where} ended before its result"))
                break
            if not line:
                continue  # a keep-alive
            try:
                item = _loads(line)
            except orjson.JSONDecodeError:
                item = None
            if not isinstance(item, dict):
                self._outcome = (False, TransportError(f"{self._where} sent {line[:200]!r}"))
                break
            if "message" in item:
                message: JSONValue = item["message"]
                return message
            if "progress" in item:
                self._progress(item["progress"])
            elif "result" in item:
                self._outcome = (True, item["result"])
            else:
                error = item.get("error")
                if not isinstance(error, dict):
                    error = {"type": "?", "message": f"{self._where} sent {line[:200]!r}"}
                self._outcome = (False, error_from_dict(error))
        self._lines.close()
        ok, outcome = self._outcome
        if not ok:
            assert isinstance(outcome, Qoper8Error)
            raise outcome
        raise StopAsyncIteration

    def _progress(self, value: JSONValue) -> None:
        self.progress = value
        if self._on_progress is None:
            return
        try:
            out = self._on_progress(value)
        except Exception:
            logger.exception("a progress callback failed")
            return
        if inspect.isawaitable(out):
            task = asyncio.ensure_future(out)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(_report)

    @property
    def done(self) -> bool:
        """Whether the job has ended and every message was read."""
        return self._outcome is not None

    @property
    def result(self) -> JSONValue:
        """The handler's return value, once the stream is read to its end.

        Raises:
            RuntimeError: the stream is not read to its end yet.
            JobFailed, JobTimeout, ChildDied, TransportError, ...: the job's error.
        """
        if self._outcome is None:
            raise RuntimeError("read the stream to its end before its result")
        ok, value = self._outcome
        if not ok:
            assert isinstance(value, Qoper8Error)
            raise value
        result: JSONValue = value
        return result

    def close(self) -> None:
        """Stop listening: the connection closes, and the daemon cancels the job if it has
        not ended."""
        self._lines.close()

    async def __aenter__(self) -> ClientStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _report(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("a progress callback failed", exc_info=task.exception())
