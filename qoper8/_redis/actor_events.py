"""Actors' events across hosts: the host that holds an actor publishes what it emits on the
actor's channel (``qoper8:actor-events:{queue}:{name}``); a ``RedisPool`` subscribes to the
channels its callers follow, on one pub/sub connection, and hands each event to every
subscription in order, each with a bounded buffer (a slow subscriber loses the oldest and is
told how many, as locally; it never holds the actor nor the connection back).

Pub/sub rather than a stream per actor: events reach those subscribed at the time, as
locally, and nothing is stored for nobody. What is emitted while a subscriber's connection
is down (a Redis outage) is lost to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import orjson
import redis.asyncio as aioredis

from .._engine.actor_ref import ActorEvent
from .connection import CONNECT_TIMEOUT, _Backoff, is_redis_failure

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["EventHub", "RedisSubscription"]

logger = logging.getLogger("qoper8.redis")

# How long the reader waits for a message per round: bounds how late it sees a close.
READ_TIMEOUT: Final = 1.0


class RedisSubscription:
    """An actor's events from whichever host holds it, in order, as ``ActorEvent`` s (use
    ``async with``, or ``async for`` and ``close()``). Subscribed once ``open()`` (or
    entering, or the first iteration) has returned; the iteration ends when the actor is
    destroyed."""

    def __init__(self, hub: EventHub, channel: bytes, buffer: int, check: Any) -> None:
        self._hub = hub
        self._channel = channel
        self._buffer = buffer
        self._check = check  # async: raises ActorNotFound
        self._events: deque[tuple[str, Any, int]] = deque()
        self._missed = 0
        self._waiter: asyncio.Future[None] | None = None
        self._opened = False
        self._live = False  # Redis confirmed its channel since it joined
        self._closed = False
        self.ended: str | None = None
        """Why the iteration ended ("destroyed"), once it did."""

    async def open(self) -> RedisSubscription:
        """Subscribe now.

        Raises:
            ActorNotFound: no actor has this name.
        """
        if not self._opened:
            self._opened = True
            await self._hub.subscribe(self._channel, self)
            try:
                await self._check()
            except BaseException:
                self.close()
                raise
        return self

    def push(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
            if "end" in msg:
                self.ended = str(msg["end"])
                self.close()
                return
            item = (str(msg["event"]), msg.get("payload"), int(msg.get("missed") or 0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("actor events: unreadable message %r ignored", data[:200])
            return
        if len(self._events) >= self._buffer:
            dropped = self._events.popleft()  # the oldest, and what it already missed
            self._missed += 1 + dropped[2]
        self._events.append(item)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> RedisSubscription:
        return self

    async def __anext__(self) -> ActorEvent:
        await self.open()
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event, payload, missed = self._events.popleft()
        missed, self._missed = missed + self._missed, 0
        return ActorEvent(event, payload, missed)

    def close(self) -> None:
        """Unsubscribe: the iteration ends after the events already here."""
        if not self._closed:
            self._closed = True
            self._hub.unsubscribe(self._channel, self)
        self._wake()

    async def __aenter__(self) -> RedisSubscription:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventHub:
    """One pub/sub connection for every subscription of a ``RedisPool``."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._redis: Any = None
        self._pubsub: Any = None
        self._subs: dict[bytes, set[RedisSubscription]] = {}
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._changes: set[asyncio.Task[Any]] = set()

    async def subscribe(self, channel: bytes, sub: RedisSubscription) -> None:
        """Add ``sub`` to ``channel``; returns once Redis confirmed the subscription."""
        subs = self._subs.setdefault(channel, set())
        subs.add(sub)
        if self._pubsub is None:
            self._redis = aioredis.Redis.from_url(
                self._url, socket_connect_timeout=CONNECT_TIMEOUT, protocol=2
            )
            self._pubsub = self._redis.pubsub()
        confirmed = self._confirmed.get(channel)
        if confirmed is not None and confirmed.done():
            sub._live = True
        if confirmed is None:
            confirmed = asyncio.get_running_loop().create_future()
            self._confirmed[channel] = confirmed
            await self._pubsub.subscribe(channel)
            if self._reader is None:
                self._reader = asyncio.create_task(self._read())
        await asyncio.shield(confirmed)

    def unsubscribe(self, channel: bytes, sub: RedisSubscription) -> None:
        subs = self._subs.get(channel)
        if subs is None:
            return
        subs.discard(sub)
        if not subs and self._pubsub is not None:
            del self._subs[channel]
            self._confirmed.pop(channel, None)
            task = asyncio.ensure_future(self._unsubscribe(channel))
            self._changes.add(task)
            task.add_done_callback(self._changes.discard)

    async def _unsubscribe(self, channel: bytes) -> None:
        if channel not in self._subs:  # unless a new subscription came meanwhile
            with contextlib.suppress(Exception):
                await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        backoff = _Backoff("actor events", self._url)
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=READ_TIMEOUT)
            except Exception as exc:
                if not is_redis_failure(exc):
                    raise
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            if msg is None:
                continue
            channel = msg.get("channel")
            if msg.get("type") == "subscribe":
                confirmed = self._confirmed.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
                for sub in self._subs.get(channel, ()):
                    sub._live = True
            elif msg.get("type") == "message":
                # A message before its subscriber's confirmation was published before it
                # joined (to an earlier subscription of the channel, being unsubscribed).
                for sub in [s for s in self._subs.get(channel, ()) if s._live]:
                    sub.push(msg["data"])

    async def aclose(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader])
        for task in list(self._changes):
            task.cancel()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            with contextlib.suppress(Exception):
                await self._redis.aclose()
