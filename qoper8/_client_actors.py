"""``Client.actors``: the daemon's named actors with the calls and errors of ``pool.actors``
(``RemoteActors``: create, get, destroy, list; ``RemoteActorRef``: call, events, info).

What reads the daemon's state is async here (``list()``, ``info()``), since it asks the
daemon; everything else has the local signature. Events read the actor's Server-Sent Events
stream (``GET /v1/actors/{name}/events``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import orjson

from ._client_stream import Lines
from ._client_wire import object_of
from ._daemon.http_wire import KILL_ON_CANCEL_HEADER
from ._engine.actor_ref import EVENT_BUFFER, ActorEvent
from ._engine.stats import ActorInfo
from ._types import DEFAULT
from .errors import TransportError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from ._client_base import ClientBase
    from ._types import JSONValue

__all__ = ["RemoteActorRef", "RemoteActors", "RemoteSubscription"]

_UNSET: Final[Any] = DEFAULT
_INFO_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(ActorInfo))


def _path(name: str, tail: str = "") -> str:
    return "/v1/actors/" + quote(name, safe="") + tail


def _info(data: Any) -> ActorInfo:
    fields = object_of(data)
    try:
        return ActorInfo(**{k: v for k, v in fields.items() if k in _INFO_FIELDS})
    except TypeError as exc:
        raise TransportError(f"the daemon answered {fields!r:.200} for an actor") from exc


class RemoteActors:
    """The daemon's named actors (``client.actors``), as ``pool.actors``."""

    def __init__(self, client: ClientBase) -> None:
        self._client = client

    async def create(
        self,
        type: str,
        name: str,
        *,
        args: Mapping[str, Any] | None = None,
        if_exists: Literal["error", "get"] = "error",
        max_restarts: int = 0,
    ) -> RemoteActorRef:
        """Create an actor on the daemon's pool (``pool.actors.create``); get-or-create is
        one atomic step there.

        Raises:
            ActorExists, InvalidAction, JobFailed, ActorUnavailable: as the pool's.
        """
        body = {
            "type": type,
            "name": name,
            "args": dict(args or {}),
            "if_exists": if_exists,
            "max_restarts": max_restarts,
        }
        await self._client._request("POST", "/v1/actors", orjson.dumps(body), ok=(200, 201))
        return RemoteActorRef(name, self._client)

    async def get(self, name: str, *, wait: float | None = None) -> RemoteActorRef:
        """A handle on the actor named ``name``; with ``wait``, wait up to that many seconds
        for it to be created.

        Raises:
            ActorNotFound: no such actor (within ``wait``).
        """
        query = "" if not wait else f"?wait={wait!r}"
        await self._client._request("GET", _path(name) + query, job_timeout=wait)
        return RemoteActorRef(name, self._client)

    async def destroy(self, name: str) -> None:
        """Destroy an actor: its queued calls fail, its subscribers' iterations end.

        Raises:
            ActorNotFound: no such actor.
        """
        await self._client._request("DELETE", _path(name))

    async def list(self) -> list[ActorInfo]:
        """Every actor of the daemon's pool: name, type, state, child, restarts, queued."""
        data = object_of(await self._client._request("GET", "/v1/actors"))
        return [_info(entry) for entry in data.get("actors") or ()]


class RemoteActorRef:
    """A handle on a named actor of the daemon (``client.actors.create`` or ``get``)."""

    def __init__(self, name: str, client: ClientBase) -> None:
        self.name = name
        self._client = client

    def __repr__(self) -> str:
        return f"<RemoteActorRef {self.name!r}>"

    async def call(
        self,
        method: str,
        args: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        **params: Any,
    ) -> JSONValue:
        """Call one of the actor's methods and return its result (``ActorRef.call``).

        Raises:
            ActorNotFound, ActorUnavailable, InvalidAction, JobFailed, ActorDied,
            JobTimeout: as the pool's. TransportError: the daemon could not be reached.
        """
        body: dict[str, Any] = {"method": method, "args": {**(args or {}), **params}}
        if timeout is _UNSET:
            timeout = self._client._timeout
            if timeout is not None:
                body["timeout"] = timeout
        else:
            body["timeout"] = timeout
        headers = {"Content-Type": "application/json"}
        if kill_on_cancel:
            headers[KILL_ON_CANCEL_HEADER] = "1"
        data = object_of(
            await self._client._request(
                "POST", _path(self.name, "/call"), orjson.dumps(body), headers, timeout
            )
        )
        result: JSONValue = data.get("result")
        return result

    def events(self, *, buffer: int = EVENT_BUFFER) -> RemoteSubscription:
        """Subscribe to the actor's events from now on (``async with`` it, or ``async
        for`` it and ``close()``). The subscription starts on entering, or on the first
        iteration.

        Raises:
            ActorNotFound: (on entering) no actor has this name.
        """
        return RemoteSubscription(self, buffer)

    async def info(self) -> ActorInfo:
        """Where the actor is and how it is doing."""
        return _info(await self._client._request("GET", _path(self.name)))


class RemoteSubscription:
    """An actor's events from the daemon, in order, as ``ActorEvent`` s; the iteration ends
    when the actor is destroyed (or the daemon stops)."""

    def __init__(self, ref: RemoteActorRef, buffer: int) -> None:
        self._ref = ref
        self._buffer = buffer
        self._lines: Lines | None = None
        self._closed = False
        self.ended: str | None = None
        """Why the daemon ended the stream ("destroyed", "draining"), once it did."""

    async def open(self) -> RemoteSubscription:
        """Subscribe now (entering ``async with`` does it)."""
        if self._lines is None:
            client = self._ref._client
            path = _path(self._ref.name, f"/events?buffer={self._buffer}")
            response = await client._open_response("GET", path, None, None, None)
            self._lines = Lines(response, f"the events of actor {self._ref.name!r}")
        return self

    def __aiter__(self) -> RemoteSubscription:
        return self

    async def __anext__(self) -> ActorEvent:
        if self._closed:
            raise StopAsyncIteration
        lines = (await self.open())._lines
        assert lines is not None
        event = b""
        while True:
            line = await lines.next()
            if line is None:
                self.close()
                if self.ended is None:
                    raise TransportError(f"the events of actor {self._ref.name!r} broke off")
                raise StopAsyncIteration
            if line.startswith(b"event: "):
                event = line[7:]
            elif line.startswith(b"data: "):
                data = orjson.loads(line[6:])
                if event == b"actor":
                    return ActorEvent(data["event"], data.get("payload"), data.get("missed", 0))
                if event == b"end":
                    self.ended = str(data.get("reason"))

    def close(self) -> None:
        """Unsubscribe: the connection closes."""
        self._closed = True
        if self._lines is not None:
            self._lines.close()

    async def __aenter__(self) -> RemoteSubscription:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
