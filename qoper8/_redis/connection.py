"""Redis plumbing shared by the consumer and the client: connecting (the retries are ours,
not redis-py's), telling an outage from another error, backoff with one log line per outage,
retrying a call while Redis is away, and batching one script's calls into a pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["connect", "describe_url", "is_redis_failure"]

logger = logging.getLogger("qoper8.redis")
T = TypeVar("T")

# ---------------------------------------------------------------- timing
# An idle consumer blocks this long in BLMOVE per round; also how long a client's BLPOP for
# replies blocks. Longer means fewer idle round trips, shorter means a stop is seen sooner
# (stop() cancels the wait anyway, so this mostly bounds idle traffic).
BLOCK_SECONDS: Final = 1
# A command that takes longer than this counts as Redis being unreachable. Must exceed
# BLOCK_SECONDS or every idle BLMOVE would look like an outage.
SOCKET_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 2.0
# Reconnect backoff while Redis is away: doubles from BASE up to MAX, with jitter, so many
# hosts do not reconnect in lockstep.
BACKOFF_BASE: Final = 0.05
BACKOFF_MAX: Final = 2.0
# Errors Redis answers that pass (a replica promoted, memory freed, scripts reloaded); any
# other answered error is retried only MAX_ANSWERED_ERRORS times.
TRANSIENT_ERRORS: Final = (ReadOnlyError, OutOfMemoryError, NoScriptError)
MAX_ANSWERED_ERRORS: Final = 5


def describe_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in creds else '***'}@{host}"


def connect(url: str) -> aioredis.Redis:
    """An asyncio client for ``url`` (``redis://``, ``rediss://``, ``unix://``, with or
    without a password). Retries are ours, not redis-py's: a take or a finish must not be
    sent twice behind our back."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
    )
    return client


def is_redis_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis is unreachable or misbehaving (retry later)."""
    return isinstance(exc, RedisError | OSError | EOFError)


class _Health:
    """Whether Redis answers, as the latest command of any of one user's loops found: the
    consumer's heartbeat, take, reaper and finishes share one, so that a daemon's health
    check can say its Redis consumer is not connected."""

    def __init__(self) -> None:
        self.connected = False  # until a command has succeeded
        self.last_error: str | None = None

    def succeeded(self) -> None:
        self.connected = True
        self.last_error = None

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, ResponseError) and not isinstance(exc, TRANSIENT_ERRORS):
            return  # Redis answered (a script refused something): it is there
        self.connected = False
        self.last_error = f"{type(exc).__name__}: {exc}"


class _Backoff:
    """Exponential backoff with jitter, and one log line per outage rather than per retry."""

    def __init__(self, what: str, url: str, health: _Health | None = None) -> None:
        self.what = what
        self.url = describe_url(url)
        self.health = health
        self.delay = 0.0
        self.failing_since: float | None = None

    async def failed(self, exc: BaseException) -> None:
        if self.health is not None:
            self.health.failed(exc)
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            logger.warning("%s: Redis at %s unreachable (%s); retrying", self.what, self.url, exc)
        self.delay = min(BACKOFF_MAX, max(BACKOFF_BASE, self.delay * 2))
        await asyncio.sleep(self.delay * random.uniform(0.5, 1.0))

    async def attempt(self, call: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        """Run ``call`` once: ``(True, result)``, or ``(False, None)`` after a Redis failure
        (logged once per outage, then waited out). Any other error propagates."""
        try:
            result = await call()
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            await self.failed(exc)
            return False, None
        self.succeeded()
        return True, result

    def succeeded(self) -> None:
        if self.health is not None:
            self.health.succeeded()
        if self.failing_since is not None:
            logger.warning(
                "%s: Redis at %s is back after %.1fs",
                self.what,
                self.url,
                time.monotonic() - self.failing_since,
            )
        self.failing_since = None
        self.delay = 0.0


async def _retrying(
    what: str, backoff: _Backoff, call: Callable[[], Awaitable[T]], give_up: Callable[[], bool]
) -> T | None:
    """Run ``call`` until it succeeds, backing off while Redis is away; ``None`` once
    ``give_up()`` says to stop trying, or after a few errors that Redis answered (a script
    error is not an outage, and repeating it forever would hold a child's slot forever)."""
    answered = 0
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            if isinstance(exc, ResponseError) and not isinstance(exc, TRANSIENT_ERRORS):
                answered += 1
            if give_up() or answered >= MAX_ANSWERED_ERRORS:
                logger.error("%s: gave up: %s", what, exc)
                return None
            await backoff.failed(exc)
            continue
        backoff.succeeded()
        return result


class _Batcher:
    """Sends the calls of one script made in the same event-loop turn as one pipeline: when
    several children finish together, their outcomes cost one round trip, not one each."""

    def __init__(self, script: Any, client: aioredis.Redis) -> None:
        self._script = script
        self._client = client
        self._pending: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((keys, args, fut))
        return fut

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                keys, args, _ = batch[0]
                results: list[Any] = [await self._script(keys=keys, args=args)]
            else:
                # EVALSHA by hand: a pipeline given Script objects first asks SCRIPT EXISTS,
                # one more round trip each time. A NOSCRIPT answer (Redis restarted) is
                # retried below through the script, which loads it.
                sha = self._script.sha
                async with self._client.pipeline(transaction=False) as pipe:
                    for keys, args, _ in batch:
                        pipe.evalsha(sha, len(keys), *keys, *args)
                    results = await pipe.execute(raise_on_error=False)
                for i, result in enumerate(results):
                    if isinstance(result, NoScriptError):
                        keys, args, _ = batch[i]
                        results[i] = await self._script(keys=keys, args=args)
        except Exception as exc:
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException:
            for _, _, fut in batch:
                fut.cancel()
            raise
        for (_, _, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)
