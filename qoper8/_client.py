"""``Client``: the daemon's HTTP API behind the pool's own ``submit()``.

Application code written against ``Pool.submit`` runs unchanged against ``qoper8 serve``:
the same call, the same results, the same typed errors. Every aiohttp or socket failure is
translated into ``TransportError`` here, so none escapes the public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, final, overload
from urllib.parse import quote

import orjson

from ._client_actors import RemoteActors
from ._client_ops import ClientOperations
from ._client_stream import NDJSON_TYPE, ClientStream
from ._client_wire import (
    DEFAULT_URL,
    ROOM_POLL_MAX,
    ROOM_POLL_START,
    Unauthorized,
    broadcast_result,
    encode,
    object_of,
)
from ._daemon.http_wire import KILL_ON_CANCEL_HEADER, TIMEOUT_HEADER
from ._engine.results import validate_result
from ._engine.tracing import carrier
from ._types import DEFAULT
from .errors import JobTimeout, QueueFull, TransportError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from pydantic import BaseModel

    from ._engine.delivery import BroadcastResult
    from ._engine.stats import ChildStatistics
    from ._types import JSONValue

__all__ = ["DEFAULT_URL", "Client", "Unauthorized"]

T = TypeVar("T")
R = TypeVar("R")

_UNSET: Final[Any] = DEFAULT  # "not given": the client's own timeout applies


@final
class Client(ClientOperations):
    """Submit actions to a running ``qoper8 serve``.

    Example:
        ```python
        async with qoper8.Client("http://127.0.0.1:8765", token=token) as client:
            user = await client.submit({"type": "user.get", "id": 1}, timeout=5.0)
        ```

    Args:
        url: ``http://host:port`` or ``unix:/path/to/socket``.
        token: the daemon's token, sent as ``Authorization: Bearer``.
        timeout: default job deadline in seconds; None leaves it to the daemon.
        max_connections: connections kept open to the daemon (0 for no limit).
    """

    # ------------------------------------------------------------ the pool's face

    @overload
    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = ...,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: None = None,
    ) -> JSONValue: ...
    @overload
    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = ...,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: type[T],
    ) -> T: ...

    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        wait_for_room: bool = True,
        result_type: type[T] | None = None,
    ) -> T | JSONValue:
        """Run one action on the daemon's pool and return the handler's result.

        Args:
            action: a mapping with a string ``type`` and JSON-able fields, or a pydantic
                model with a ``type`` field (encoded exactly as ``Pool.submit`` encodes it).
            role: the daemon's role to run it (sent as ``?role=``); a daemon of several
                roles finds it from the type, and needs it for a type several handle.
            timeout: seconds until ``JobTimeout``; None for no deadline; the client's
                ``timeout`` (or else the daemon's) when omitted.
            kill_on_cancel: if this call is cancelled while its job runs, the daemon kills
                and replaces that child (otherwise the job runs to its end). A call
                cancelled while its job is queued drops the job either way.
            wait_for_room: when the daemon's queue is full, retry until there is room or
                the deadline passes (True), or raise ``QueueFull`` at once (False).
            result_type: validate the result into this type and return that.

        Returns:
            The handler's result, as JSON data, or as ``result_type``.

        Raises:
            InvalidAction, JobFailed, JobTimeout, ChildDied, QueueFull, PoolClosed,
            StartFailed, InvalidResult: as ``Pool.submit`` raises them.
            TransportError: the daemon could not be reached or answered garbage.
        """
        body = encode(action)
        path = _with_role("/v1/submit", role)

        async def send(headers: dict[str, str], limit: float | None) -> Any:
            return await self._request("POST", path, body, headers, limit)

        data = await self._with_room(send, timeout, kill_on_cancel, wait_for_room)
        if not isinstance(data, dict) or "result" not in data:
            raise TransportError(f"the daemon answered without a result: {data!r:.200}")
        result: JSONValue = data["result"]
        if result_type is None:
            return result
        return validate_result(result_type, result, job_id=None)

    async def _with_room(
        self,
        send: Callable[[dict[str, str], float | None], Awaitable[R]],
        timeout: float | None,
        kill_on_cancel: bool,
        wait_for_room: bool,
    ) -> R:
        """Send a job's request (``send(headers, timeout)``) with its deadline and
        kill_on_cancel headers, and the caller's OpenTelemetry span as ``traceparent``; with
        ``wait_for_room``, again after each QueueFull until the deadline passes (the deadline
        header says what is left of it each time)."""
        headers = {"Content-Type": "application/json"}
        trace = carrier()  # OpenTelemetry's active span: the daemon's spans continue it
        if trace is not None:
            headers.update(trace)
        if kill_on_cancel:
            headers[KILL_ON_CANCEL_HEADER] = "1"
        if timeout is _UNSET:
            timeout = self._timeout  # None here leaves the deadline to the daemon
        elif timeout is None:
            headers[TIMEOUT_HEADER] = "none"
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = ROOM_POLL_START
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JobTimeout(f"no room in the daemon's queue within {timeout}s")
                headers[TIMEOUT_HEADER] = repr(left)
            try:
                return await send(headers, timeout)
            except QueueFull:
                if not wait_for_room:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, ROOM_POLL_MAX)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        on_progress: Callable[[Any], object] | None = None,
        wait_for_room: bool = True,
    ) -> AsyncIterator[ClientStream]:
        """Run one action on the daemon's pool and read what its handler sends while it
        runs, in order, then its result: ``Pool.stream`` over ``POST /v1/stream``.

        Example:
            ```python
            async with client.stream({"type": "tokens", "prompt": "hi"}) as stream:
                async for token in stream:
                    print(token, end="")
                print(stream.result)
            ```

        Args:
            action, role, timeout, kill_on_cancel, wait_for_room: as ``submit``.
            on_progress: called with each progress value (``stream.progress`` keeps the
                newest); an async function runs as a task.

        Yields:
            A stream with ``Stream``'s interface; leaving the block early closes the
            connection, which cancels the job on the daemon.

        Raises:
            InvalidAction, QueueFull, PoolClosed, StartFailed: on entering, as ``submit``.
            JobFailed, JobTimeout, ChildDied, TransportError: from the iteration, after the
            messages sent before the failure.
        """
        body = encode(action)
        path = _with_role("/v1/stream", role)

        async def send(headers: dict[str, str], limit: float | None) -> ClientStream:
            response = await self._open_response(
                "POST", path, body, {**headers, "Accept": NDJSON_TYPE}, limit
            )
            return ClientStream(response, f"the daemon's stream at {self.url}", on_progress)

        stream = await self._with_room(send, timeout, kill_on_cancel, wait_for_room)
        try:
            yield stream
        finally:
            stream.close()

    async def broadcast(
        self,
        topic: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        sticky: bool = False,
    ) -> BroadcastResult:
        """Send a message to every live child of the daemon's pool (``Pool.broadcast``):
        per child, its reply or the typed error in its place.

        Raises:
            InvalidAction: not a dotted topic, a reserved one, a payload refused.
            PoolClosed, StartFailed, TransportError: as ``submit``.
        """
        request: dict[str, Any] = {"topic": topic, "payload": payload, "sticky": sticky}
        if timeout is _UNSET:
            timeout = self._timeout
            if timeout is not None:
                request["timeout"] = timeout
        else:
            request["timeout"] = timeout
        data = object_of(
            await self._request("POST", "/v1/broadcast", orjson.dumps(request), None, timeout)
        )
        return broadcast_result(data)

    async def ask(
        self,
        child: int | ChildStatistics | Mapping[str, Any],
        topic: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        pid: bool = False,
    ) -> JSONValue:
        """Send a message to one child of the daemon's pool and return its answer
        (``Pool.ask``).

        Args:
            child: the child's id, an entry of ``status()["children"]`` (or a
                ``ChildStatistics``), or with ``pid=True`` its process id.
            topic, payload, timeout: as ``broadcast``.

        Raises:
            InvalidAction, JobFailed, ChildDied, JobTimeout: as ``Pool.ask``.
        """
        if isinstance(child, int):
            number = child
        elif isinstance(child, Mapping):
            number = int(child["pid" if pid else "id"])
        else:
            number = int((child.pid if pid else child.id) or 0)
        request: dict[str, Any] = {"pid" if pid else "child": number, "topic": topic}
        request["payload"] = payload
        if timeout is _UNSET:
            timeout = self._timeout
        if timeout is not None:
            request["timeout"] = timeout
        data = object_of(
            await self._request("POST", "/v1/ask", orjson.dumps(request), None, timeout)
        )
        answer: JSONValue = data.get("result")
        return answer

    @property
    def actors(self) -> RemoteActors:
        """The daemon's named actors: ``create``, ``get``, ``destroy``, ``list`` (async
        here: it asks the daemon), as ``Pool.actors``."""
        if self._actors is None:
            self._actors = RemoteActors(self)
        return self._actors


def _with_role(path: str, role: str | None) -> str:
    """A job route with the role to run it (``?role=NAME``, quoted)."""
    return path if role is None else f"{path}?role={quote(role, safe='')}"
