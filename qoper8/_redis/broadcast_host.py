"""Broadcasts on a host's side (``RedisConsumer``): read the queue's broadcast stream, run
each request through the pool's ``broadcast`` and push the children's answers back (the
caller's side, and why: ``broadcast``). At start, the queue's sticky topics are given to the
pool, so that a host started after a sticky broadcast has it too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..errors import Qoper8Error, error_to_dict
from .connection import BLOCK_SECONDS, is_redis_failure
from .consumer_base import _ConsumerBase
from .jobs import _text
from .stream_scripts import BCAST_PREFIX, BREPLY_PREFIX, BREPLY_TTL, STICKY_PREFIX

if TYPE_CHECKING:
    from .wire import Wire

__all__: list[str] = []

logger = logging.getLogger("qoper8.redis")

# A host gives its pool's broadcast this share of the caller's timeout, so that its answer
# (a slow child's JobTimeout included) reaches the caller before the caller gives up on it.
HOST_SHARE: Final = 0.8
# How long a host waits for its children to take a sticky payload at start.
STICKY_TIMEOUT: Final = 10.0


class _Broadcasts(_ConsumerBase):
    """Answers the broadcasts sent to this consumer's queue."""

    _listening: Wire | None = None
    _answering: set[asyncio.Task[None]]

    async def _broadcast_loop(self) -> None:
        self._answering = set()
        wire = self._listening
        assert wire is not None
        key = BCAST_PREFIX + self.queue
        backoff = self._backoff(f"consumer {self.name} broadcasts")
        last: bytes | None = None
        while not self._stop_requested():
            try:
                if last is None:  # first the position, then the sticky topics: none missed
                    tail = await wire.command("XREVRANGE", key, "+", "-", "COUNT", 1)
                    sticky = await wire.command("HGETALL", STICKY_PREFIX + self.queue)
                    last = tail[0][0] if tail else b"0-0"
                    for topic, body in _pairs(sticky).items():
                        self._spawn(self._sticky(_text(topic), body))
                    await asyncio.sleep(0)  # each pool.broadcast delivers in its first step
                    self._listening_ready.set()
                reply = await wire.command(
                    "XREAD",
                    "BLOCK",
                    BLOCK_SECONDS * 1000,
                    "STREAMS",
                    key,
                    last,
                    block=BLOCK_SECONDS,
                )
            except Exception as exc:
                if self._stop_requested():
                    return  # stop() closed the connection
                if not is_redis_failure(exc):
                    raise
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id
                    self._spawn(self._answer(_pairs(fields)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _close_broadcasts(self) -> None:
        if self._listening is not None:
            await self._listening.aclose()
        for task in list(getattr(self, "_answering", ())):
            task.cancel()

    async def _sticky(self, topic: str, body: bytes) -> None:
        try:
            payload = orjson.loads(body)
            await self.pool.broadcast(topic, payload, timeout=STICKY_TIMEOUT, sticky=True)
        except (Qoper8Error, ValueError) as exc:
            logger.warning("consumer %s: sticky topic %r not taken: %s", self.name, topic, exc)

    async def _answer(self, f: dict[bytes, bytes]) -> None:
        reply_key = _text(f.get(b"reply", b""))
        if not reply_key.startswith(BREPLY_PREFIX):
            return  # not a request of RedisPool's: nowhere safe to answer
        topic = _text(f.get(b"topic", b""))
        answer: dict[str, Any] = {"host": self.name}
        try:
            payload = orjson.loads(f.get(b"payload", b"null"))
            timeout = float(f.get(b"timeout", b"0")) * HOST_SHARE
            result = await self.pool.broadcast(
                topic, payload, timeout=timeout, sticky=f.get(b"sticky") == b"1"
            )
        except (Qoper8Error, ValueError) as exc:
            error = exc if isinstance(exc, Qoper8Error) else Qoper8Error(str(exc))
            answer["error"] = error_to_dict(error)
        else:
            answer["replies"] = [
                {"child": r.child, "pid": r.pid, "value": r.value}
                if r.error is None
                else {"child": r.child, "pid": r.pid, "error": error_to_dict(r.error)}
                for r in result.replies
            ]
        assert self._wire is not None
        try:
            await asyncio.gather(
                self._wire.command("RPUSH", reply_key, orjson.dumps(answer)),
                self._wire.command("EXPIRE", reply_key, BREPLY_TTL),
            )
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            logger.warning("consumer %s: broadcast %r not answered: %s", self.name, topic, exc)


def _pairs(reply: Any) -> dict[bytes, bytes]:
    """A RESP2 field/value list as a dict (a redis-py client, as in the fast tests' fake
    connection, has made it one already)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))
