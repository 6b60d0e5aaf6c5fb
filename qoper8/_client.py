"""``Client``: the daemon's HTTP API behind the pool's own ``submit()``.

Application code written against ``Pool.submit`` runs unchanged against ``qoper8 serve``:
the same call, the same results, the same typed errors. Every aiohttp or socket failure is
translated into ``TransportError`` here, so none escapes the public API.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar, final, overload

import aiohttp
import orjson

from ._daemon.http_wire import KILL_ON_CANCEL_HEADER, TIMEOUT_HEADER
from ._engine.protocol import encode_action
from ._engine.results import validate_result
from ._engine.tracing import carrier
from ._types import DEFAULT
from .errors import (
    JobTimeout,
    Qoper8Error,
    QueueFull,
    TransportError,
    error_from_dict,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from pydantic import BaseModel

    from ._types import JSONValue

__all__ = ["DEFAULT_URL", "Client", "Unauthorized"]

T = TypeVar("T")

DEFAULT_URL: Final = "http://127.0.0.1:8765"
# An answer may take the job's whole deadline; the HTTP request gets this much more before
# the client gives up on the daemon itself (TransportError rather than JobTimeout).
TIMEOUT_MARGIN: Final = 5.0
CONNECT_TIMEOUT: Final = 10.0
# With wait_for_room, a QueueFull answer is retried after a pause that starts here and
# doubles up to MAX (the daemon's Retry-After is a coarse whole second).
ROOM_POLL_START: Final = 0.005
ROOM_POLL_MAX: Final = 0.5

_UNSET: Final[Any] = DEFAULT  # "not given": the client's own timeout applies


class Unauthorized(TransportError):
    """The daemon refused the token (401): a wrong or missing token, not an unreachable
    daemon. A ``TransportError``, so code that catches those keeps working; the CLI tells
    the two apart (exit 1 "unauthorized", not 6 "unreachable")."""


@final
class Client:
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

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float | None = None,
        max_connections: int = 100,
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._max_connections = max_connections
        if url.startswith("unix:"):
            self._socket_path: str | None = url.removeprefix("unix:").removeprefix("//")
            self._base = "http://localhost"
        elif url.startswith(("http://", "https://")):
            self._socket_path = None
            self._base = url.rstrip("/")
        else:
            raise ValueError(f"url must start with http://, https:// or unix:, not {url!r}")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector: aiohttp.BaseConnector
            if self._socket_path is not None:
                connector = aiohttp.UnixConnector(self._socket_path, limit=self._max_connections)
            else:
                connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            )
        return self._session

    async def aclose(self) -> None:
        """Close the connections. Safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # ------------------------------------------------------------ the pool's face

    @overload
    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
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
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: type[T],
    ) -> T: ...

    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        wait_for_room: bool = True,
        result_type: type[T] | None = None,
    ) -> T | JSONValue:
        """Run one action on the daemon's pool and return the handler's result.

        Args:
            action: a mapping with a string ``type`` and JSON-able fields, or a pydantic
                model with a ``type`` field (encoded exactly as ``Pool.submit`` encodes it).
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
        body = _encode(action)
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
                data = await self._request("POST", "/v1/submit", body, headers, timeout)
            except QueueFull:
                if not wait_for_room:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, ROOM_POLL_MAX)
                continue
            if not isinstance(data, dict) or "result" not in data:
                raise TransportError(f"the daemon answered without a result: {data!r:.200}")
            result: JSONValue = data["result"]
            if result_type is None:
                return result
            return validate_result(result_type, result, job_id=None)

    # ------------------------------------------------------------ operations

    async def status(self) -> dict[str, Any]:
        """The daemon's ``/v1/status``: children (pid, state, generation), queue, totals."""
        return _object(await self._request("GET", "/v1/status"))

    async def health(self) -> dict[str, Any]:
        """The daemon's ``/v1/health`` (also answered when not ready: see ``status``)."""
        return _object(await self._request("GET", "/v1/health", ok=(200, 503)))

    async def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        session = self._open()
        try:
            async with session.get(self._base + "/metrics") as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise _error_of(resp.status, text.encode())
                return text
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"cannot reach the daemon at {self.url}: {exc}") from exc

    async def resize(
        self, children: int | None = None, *, delta: int | None = None, force: bool = False
    ) -> int:
        """Set the number of children (or change it by ``delta``); returns the new size.

        Args:
            children: the new number of children.
            delta: change the number by this much instead.
            force: allow more than 4 children per CPU of the daemon's machine (a likely
                typo otherwise, refused with ``ConfigError``).
        """
        body: dict[str, object] = (
            {"children": children} if children is not None else {"delta": delta}
        )
        if force:
            body["force"] = True
        data = _object(await self._request("POST", "/v1/resize", orjson.dumps(body)))
        return int(data["children"])

    async def reload(self) -> int:
        """Reload the daemon's settings and worker code (as HUP); returns the generation."""
        data = _object(await self._request("POST", "/v1/reload", b"{}"))
        return int(data["generation"])

    async def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        job_timeout: float | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        session = self._open()
        limit = None if job_timeout is None else job_timeout + TIMEOUT_MARGIN
        try:
            async with session.request(
                method,
                self._base + path,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=limit, sock_connect=CONNECT_TIMEOUT),
            ) as resp:
                raw = await resp.read()
                status = resp.status
                if status not in ok:
                    raise _error_of(status, raw)
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"cannot reach the daemon at {self.url}: {exc}") from exc
        except TimeoutError as exc:
            raise TransportError(
                f"the daemon at {self.url} did not answer {method} {path} within {limit}s"
            ) from exc
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TransportError(
                f"the daemon answered {method} {path} with something that is not JSON: "
                f"{raw[:200]!r}"
            ) from None


def _encode(action: Mapping[str, Any] | BaseModel) -> bytes:
    return encode_action(action)[1]


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TransportError(f"the daemon answered {data!r:.200} where an object was expected")
    return data


def _error_of(status: int, raw: bytes) -> Qoper8Error:
    """The typed error an error answer carries; TransportError when it carries none."""
    try:
        info = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        info = None
    if not isinstance(info, dict):
        return TransportError(f"the daemon answered HTTP {status}: {raw[:200]!r}")
    if status == 401 and info.get("type") != "JobFailed":  # a handler may choose 401 too
        return Unauthorized(f"the daemon refused the request (401): {info.get('message')}")
    err = error_from_dict(info)
    if type(err) is TransportError and status >= 400:
        err = TransportError(f"the daemon answered HTTP {status}: {info.get('message', info)}")
    return err
