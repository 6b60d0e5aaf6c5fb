"""The actors routes: ``pool.actors`` over HTTP. The engine decides everything (placement,
the atomic registry, restarts); this reads requests and writes answers::

    POST   /v1/actors {"type", "name", "args", "if_exists", "max_restarts"}
                                 -> 201 the actor's info (created), 200 (if_exists "get" found it)
    GET    /v1/actors            -> {"actors": [info, ...]}
    GET    /v1/actors/{name}     -> info (?wait=SECONDS: wait for it to be created)
    POST   /v1/actors/{name}/call {"method", "args", "timeout"} -> {"result": ...}
    DELETE /v1/actors/{name}     -> {"name", "destroyed": true}
    GET    /v1/actors/{name}/events
                                 -> Server-Sent Events: "actor" {"event", "payload", "missed"}
                                    ..., then "end" {"reason": "destroyed" | "draining"}

Errors are ``/v1/submit``'s: ActorNotFound 404, ActorExists 409, ActorUnavailable 503,
ActorDied 502, InvalidAction 422 (an unknown type or method: refused from what the children
reported, nothing imported), JobFailed 500 (or a HandlerError's status), JobTimeout 504.
Event streams are bounded (``MAX_ACTOR_STREAMS``, then 503 TooManyStreams): each holds a
connection and a subscriber's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._engine.actor_ref import EVENT_BUFFER
from ..errors import ActorExists, InvalidAction, Qoper8Error
from .http_fields import read_body
from .http_input import Refused
from .http_replies import error_reply, json_reply
from .http_sse import EVENT_STREAM_TYPE, PING_INTERVAL, SSE_PING, open_stream, sse
from .http_wire import KILL_ON_CANCEL_HEADER

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web

    from .._engine.actor_ref import ActorRef, Subscription
    from .._engine.pool_like import PoolLike
    from .http_submit import Submits

__all__ = ["MAX_ACTOR_STREAMS", "ActorRoutes"]

# Actor event streams open at once; the next gets 503 TooManyStreams. Each holds a
# connection and up to EVENT_BUFFER events for a slow reader: a chat of a few hundred
# people fits, a runaway script cannot pile them up.
MAX_ACTOR_STREAMS: Final = 256
# The largest ?buffer= a subscriber may ask for (events kept for it when it falls behind).
MAX_EVENT_BUFFER: Final = 10_000

_CREATE: Final = frozenset({"type", "name", "args", "if_exists", "max_restarts"})
_CALL: Final = frozenset({"method", "args", "timeout"})
_GONE: Final = (ConnectionError,)


def _query_number(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        err = InvalidAction(f"?{name}= must be a number, 0 or more")
        raise Refused(err, 400)
    return value


class ActorRoutes:
    """The actors endpoints of one API (see the module)."""

    def __init__(
        self,
        pool: PoolLike,
        submits: Submits,
        max_body: int,
        error_response: Callable[..., web.Response],
        *,
        max_streams: int = MAX_ACTOR_STREAMS,
    ) -> None:
        self._pool = pool
        self._submits = submits
        self._max_body = max_body
        self._error_response = error_response
        self.max_streams = max_streams
        self._open: set[Subscription] = set()
        self._closing: str | None = None

    def _info(self, ref: ActorRef, status: int = 200) -> web.Response:
        return json_reply(asdict(ref.info()), status)

    async def create(self, request: web.Request) -> web.Response:
        body = await read_body(request, self._max_body, _CREATE)
        type_name, name = body.text("type"), body.text("name")
        args = body.mapping("args")
        if_exists = body.choice("if_exists", ("error", "get"))
        max_restarts = body.count("max_restarts", 0)
        refused = await self._submits.admit({})
        if refused is not None:
            return refused
        actors = self._pool.actors
        try:
            try:
                ref = await actors.create(
                    type_name, name, args=args, if_exists="error", max_restarts=max_restarts
                )
            except ActorExists:
                if if_exists != "get":
                    raise
                ref = await actors.create(type_name, name, args=args, if_exists="get")
                return self._info(ref)
            return self._info(ref, 201)
        except Qoper8Error as exc:
            return self._error_response(exc)

    async def list(self, request: web.Request) -> web.Response:
        return json_reply({"actors": [asdict(info) for info in self._pool.actors.list()]})

    async def get(self, request: web.Request) -> web.Response:
        wait = _query_number(request, "wait")
        try:
            ref = await self._pool.actors.get(request.match_info["name"], wait=wait)
            return self._info(ref)
        except Qoper8Error as exc:
            return self._error_response(exc)

    async def call(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await read_body(request, self._max_body, _CALL)
        method = body.text("method")
        args = body.mapping("args")
        kwargs: dict[str, Any] = {}
        body.timeout(kwargs)
        if request.headers.get(KILL_ON_CANCEL_HEADER, "").strip().lower() in ("1", "true"):
            kwargs["kill_on_cancel"] = True
        refused = await self._submits.admit(kwargs)
        if refused is not None:
            return refused
        try:
            ref = await self._pool.actors.get(name)
            result = await ref.call(method, args, **kwargs)
        except Qoper8Error as exc:
            return self._error_response(exc)
        return json_reply({"result": result})

    async def destroy(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            await self._pool.actors.destroy(name)
        except Qoper8Error as exc:
            return self._error_response(exc)
        return json_reply({"name": name, "destroyed": True})

    # ------------------------------------------------------------ events

    async def events(self, request: web.Request) -> web.StreamResponse:
        if self._closing is not None or len(self._open) >= self.max_streams:
            return error_reply(
                "TooManyStreams",
                f"{len(self._open)} actor event streams are open, the most this daemon "
                "serves at once; try again later",
                503,
            )
        buffer = _query_number(request, "buffer")
        size = EVENT_BUFFER if buffer is None else int(buffer)
        if not 1 <= size <= MAX_EVENT_BUFFER:
            err = InvalidAction(f"?buffer= must be 1 to {MAX_EVENT_BUFFER} events")
            return self._error_response(err, 400)
        try:
            ref = await self._pool.actors.get(request.match_info["name"])
            subscription = ref.events(buffer=size)
        except Qoper8Error as exc:
            return self._error_response(exc)
        self._open.add(subscription)
        try:
            response = await open_stream(request, EVENT_STREAM_TYPE)
            with contextlib.suppress(*_GONE):
                await self._relay(subscription, response)
            return response
        finally:
            self._open.discard(subscription)
            subscription.close()

    async def _relay(self, subscription: Subscription, response: web.StreamResponse) -> None:
        events = aiter(subscription)
        while True:
            try:
                event = await asyncio.wait_for(anext(events), PING_INTERVAL)
            except TimeoutError:
                await response.write(SSE_PING)
                continue
            except StopAsyncIteration:
                break
            data = {"event": event.event, "payload": event.payload, "missed": event.missed}
            await response.write(sse(b"actor", orjson.dumps(data)))
        reason = self._closing or "destroyed"
        await response.write(sse(b"end", orjson.dumps({"reason": reason})))
        await response.write_eof()

    def close_all(self, reason: str = "draining") -> None:
        """End every event stream (the daemon stops): each says why in its ``end``."""
        self._closing = reason
        for subscription in list(self._open):
            subscription.close()
