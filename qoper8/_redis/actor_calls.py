"""The plumbing of ``RedisPool.actors`` and its calls: a call is queued in the actor's Redis
list (``CALL_LUA``) and answered on the client's reply list, like a job's outcome; a caller
that gives up (deadline, cancellation) withdraws a call still queued, and with
``kill_on_cancel`` asks the actor's host to stop one it runs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

import orjson
from redis.exceptions import RedisError

from .._engine import protocol as proto
from ..errors import (
    ActorNotFound,
    ActorUnavailable,
    InvalidAction,
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    TransportError,
    error_from_dict,
)
from .actor_scripts import (
    CALL_LUA,
    CALLS_PREFIX,
    CREATE_LUA,
    DESTROY_LUA,
    GET_LUA,
    PLACING_PREFIX,
    RECORD_PREFIX,
    REGISTRY_PREFIX,
    WAKE_PREFIX,
    WITHDRAW_LUA,
)
from .connection import describe_url, is_redis_failure
from .wire import Script

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from .._types import JSONValue
    from .actor_events import EventHub
    from .client import RedisClient
    from .pool import RedisPool

__all__: list[str] = []

logger = logging.getLogger("qoper8.redis")

# A cancelled or timed-out call withdraws itself within this long, else it may still run.
WITHDRAW_TIMEOUT: Final = 1.0
# The largest call or args accepted (bytes of JSON): a call waits in Redis and in a host.
MAX_CALL_BYTES: Final = 16 * 1024 * 1024

SCRIPTS: Final = {
    name: Script(body)
    for name, body in {
        "create": CREATE_LUA,
        "get": GET_LUA,
        "call": CALL_LUA,
        "withdraw": WITHDRAW_LUA,
        "destroy": DESTROY_LUA,
    }.items()
}


class _ActorsBase:
    """What ``RedisActors`` stands on: its connection, key names and the calls."""

    def __init__(self, pool: RedisPool) -> None:
        self._pool = pool
        self._hub: EventHub | None = None
        self._withdrawals: set[asyncio.Task[None]] = set()
        q = pool.queue
        self._registry = REGISTRY_PREFIX + q
        self._placing = PLACING_PREFIX + q
        self._wake = f"{WAKE_PREFIX}{q}:"

    # ------------------------------------------------------------ plumbing
    def _client(self) -> RedisClient:
        client = self._pool._client
        if client is None or not self._pool.is_open:
            raise PoolClosed("the RedisPool is closed" if self._pool._closed else "not started")
        return client

    def _keys(self, prefix: str, name: str) -> str:
        return f"{prefix}{self._pool.queue}:{name}"

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._client().wire.script(SCRIPTS[script], keys, args)
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            raise TransportError(
                f"Redis at {describe_url(self._pool.url)} could not be reached: {exc}"
            ) from exc

    @staticmethod
    async def _answer(future: Awaitable[Any], timeout: float | None) -> Any:
        async with asyncio.timeout(timeout):
            return await future

    def _forget(self, ident: str) -> None:
        client = self._pool._client
        if client is not None:
            client.forget(ident)

    def _waiter(self) -> tuple[str, bytes]:
        ident = secrets.token_hex(16)
        return ident, orjson.dumps({"id": ident, "rk": self._client().reply_key})

    # ------------------------------------------------------------ calls
    async def _call(
        self,
        name: str,
        method: str,
        args: dict[str, Any],
        timeout: float | None,
        kill_on_cancel: bool,
    ) -> JSONValue:
        if not isinstance(method, str) or not method:
            raise InvalidAction(f"a method is a name, not {method!r}")
        if timeout is not None and timeout <= 0:
            raise InvalidAction(f"timeout must be positive or None, not {timeout!r}")
        client = self._client()
        ident = secrets.token_hex(16)
        deadline = None if timeout is None else time.time() + timeout
        body = {"id": ident, "m": method, "a": args, "rk": client.reply_key, "d": deadline}
        if kill_on_cancel:
            body["k"] = 1
        try:
            payload = proto.encode_value(body, f"the call {name}.{method}", MAX_CALL_BYTES)
        except (TypeError, ValueError) as exc:
            raise InvalidAction(str(exc)) from None
        future = client.expect(ident)
        keys = [self._keys(RECORD_PREFIX, name), self._keys(CALLS_PREFIX, name)]
        queued = False
        try:
            answer = await self._run("call", keys, [payload, self._wake, name])
            code = int(answer[0])
            if code == 0:
                raise ActorNotFound(f"no actor named {name!r}")
            if code == 1:
                raise _stored(answer[1], name)
            queued = True
            async with asyncio.timeout(timeout):
                result: JSONValue = await future
            return result
        except TimeoutError:
            self._withdraw(keys, payload, stop=False)
            raise JobTimeout(
                f"the call {name}.{method} got no result within its deadline of {timeout}s "
                f"(queued, or running on the actor's host, whose child is then killed)",
                job_id=ident,
            ) from None
        except asyncio.CancelledError:
            if queued:
                self._withdraw(keys, payload, stop=kill_on_cancel)
            raise
        finally:
            client.forget(ident)

    def _withdraw(self, keys: Sequence[str], payload: bytes, *, stop: bool) -> None:
        """Drop a call its caller gave up on (in a task: the caller may be cancelled)."""
        task = asyncio.create_task(self._withdrawing(keys, payload, stop))
        self._withdrawals.add(task)
        task.add_done_callback(self._withdrawals.discard)

    async def _withdrawing(self, keys: Sequence[str], payload: bytes, stop: bool) -> None:
        try:
            async with asyncio.timeout(WITHDRAW_TIMEOUT):
                await self._run("withdraw", [keys[1], keys[0]], [payload, "1" if stop else "0"])
        except (TimeoutError, Qoper8Error, RedisError, OSError) as exc:
            logger.warning("RedisPool: could not withdraw an actor call (%s)", exc)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: object) -> int | None:
    try:
        return int(_text(value)) if value not in (None, b"") else None
    except ValueError:
        return None


def _stored(raw: object, name: str) -> Qoper8Error:
    if isinstance(raw, bytes):
        try:
            data = orjson.loads(raw)
            if isinstance(data, dict):
                return error_from_dict(data)
        except orjson.JSONDecodeError:
            pass
    return ActorUnavailable(f"actor {name!r} is unavailable")
