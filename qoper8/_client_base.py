"""``ClientBase``: the connection side of ``qoper8.Client``: its session (TCP or a Unix
socket), requests that answer JSON, and responses kept open to be read as streams. Every
aiohttp or socket failure becomes ``TransportError`` here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import aiohttp
import orjson

from ._client_wire import CONNECT_TIMEOUT, DEFAULT_URL, TIMEOUT_MARGIN, error_of
from .errors import TransportError

if TYPE_CHECKING:
    from types import TracebackType

    from ._client_actors import RemoteActors

__all__ = ["ClientBase"]


class ClientBase:
    """The session and the requests of a ``qoper8.Client`` (its arguments are there)."""

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
        self._actors: RemoteActors | None = None

    async def __aenter__(self) -> Self:
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
                    raise error_of(status, raw)
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

    async def _open_response(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        job_timeout: float | None,
    ) -> aiohttp.ClientResponse:
        """A 200 response whose body is left to read as it comes (a stream); any other
        status is its typed error. The caller closes it."""
        session = self._open()
        limit = None if job_timeout is None else job_timeout + TIMEOUT_MARGIN
        try:
            resp = await session.request(
                method,
                self._base + path,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=limit, sock_connect=CONNECT_TIMEOUT),
            )
            if resp.status != 200:
                try:
                    raw = await resp.read()
                finally:
                    resp.release()
                raise error_of(resp.status, raw)
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"cannot reach the daemon at {self.url}: {exc}") from exc
        except TimeoutError as exc:
            raise TransportError(
                f"the daemon at {self.url} did not answer {method} {path} within {limit}s"
            ) from exc
        return resp
