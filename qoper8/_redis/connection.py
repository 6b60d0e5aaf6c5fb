"""Redis plumbing shared by the consumer and the client: timing constants, telling an outage
from another error, backoff with one log line per outage, and retrying a call while Redis is
away (the retries are ours, never redis-py's nor the ``Wire``'s).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Final, TypeVar

from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["describe_url", "is_redis_failure"]

logger = logging.getLogger("qoper8.redis")
T = TypeVar("T")

# ---------------------------------------------------------------- timing
# An idle consumer blocks this long in BLMOVE per round; also how long a client's BLMPOP for
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
