"""``Wire``: one Redis connection that pipelines, for the commands that run once per job.

redis-py's asyncio client spends 150-200 µs of CPU on each command before it reaches the
socket (a connection borrowed from a pool under a lock, a read under a zero timeout to check
that connection, a timeout scope, a retry wrapper) and holds a connection per command in
flight. Here a command is a future: it is packed, written with the other commands of the same
event-loop turn in one syscall, and settled by its reply, replies coming back in order.
redis-py still opens the connection, so that a URL means what it always meant (TLS, AUTH,
SELECT, unix sockets); the Wire then takes its socket over.

Nothing is retried behind the caller's back (a take or a finish must not run twice), with one
exception: an EVALSHA that Redis answers NOSCRIPT did not run, and is sent again as EVAL.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connection import CONNECT_TIMEOUT, SOCKET_TIMEOUT, describe_url, is_redis_failure
from .resp import REPLY_ERRORS, new_reader, pack, reply_error

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Script", "Wire"]

# redis-py PINGs before a command on a connection idle this long; the Wire sends its commands
# itself, each under a deadline (SOCKET_TIMEOUT), so 0: no PING when redis-py connects.
_HEALTH_CHECK_INTERVAL: Final = 0


class Script:
    """A Lua script and the SHA1 Redis caches it under."""

    __slots__ = ("body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body.encode()
        self.sha = hashlib.sha1(self.body).hexdigest().encode()


@dataclass(slots=True)
class _Call:
    future: asyncio.Future[Any]
    deadline: float
    # a script call's EVAL form, to send if Redis lost its script cache (a restart)
    script: tuple[Script, Sequence[Any], Sequence[Any]] | None


class _Protocol(asyncio.Protocol):
    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    def data_received(self, data: bytes) -> None:
        self.wire._feed(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.wire._lost(self, RedisConnectionError("Connection closed by server."))

    def eof_received(self) -> bool:
        return False  # close the transport: Redis is gone


class Wire:
    """One pipelined connection to ``url``, opened on first use and again after a loss.

    ``command()`` and ``script()`` return futures; a command still unanswered ``SOCKET_TIMEOUT``
    seconds after it was sent (plus ``block`` for a blocking one) counts as Redis being
    unreachable: the connection is dropped, and every command in flight fails with a
    ``redis.exceptions`` error, as redis-py's own would.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._calls: deque[_Call] = deque()
        self._out: list[bytes] = []
        self._flush_soon = False
        self._protocol: _Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._writer: Any = None  # redis-py's StreamWriter: held, or its __del__ closes ours
        self._connecting: asyncio.Task[None] | None = None
        self._reader = new_reader()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def command(self, *args: Any, block: float = 0.0) -> asyncio.Future[Any]:
        """Send one command; ``block``: the seconds a blocking command may wait in Redis."""
        return self._send(pack(args), block, None)

    def script(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Run a Lua script by its SHA1 (loading it, if Redis does not have it)."""
        packed = pack(("EVALSHA", script.sha, len(keys), *keys, *args))
        return self._send(packed, 0.0, (script, keys, args))

    async def aclose(self) -> None:
        """Drop the connection; commands in flight fail. Later commands fail at once."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.wait([self._connecting])
        self._drop(RedisConnectionError("the connection was closed"))

    # ------------------------------------------------------------ sending
    def _send(
        self,
        packed: bytes,
        block: float,
        script: tuple[Script, Sequence[Any], Sequence[Any]] | None,
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            future.set_exception(RedisConnectionError("the connection was closed"))
            return future
        idle = not self._calls
        self._calls.append(_Call(future, loop.time() + block + SOCKET_TIMEOUT, script))
        self._out.append(packed)
        if self._transport is not None:
            if idle:
                # Nothing in flight: out at once (a lone finish is on a child's critical
                # path). Behind commands in flight, wait for the loop turn's others.
                self._flush()
            elif not self._flush_soon:
                self._flush_soon = True
                loop.call_soon(self._flush)
        elif self._connecting is None:
            self._connecting = loop.create_task(self._connect())
        if self._timer is None:
            self._timer = loop.call_at(self._calls[0].deadline, self._check_deadline)
        return future

    def _flush(self) -> None:
        self._flush_soon = False
        if self._transport is None or not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._transport.write(data)

    async def _connect(self) -> None:
        conn: Any = None  # redis-py's asyncio Connection (untyped)
        try:
            pool: Any = ConnectionPool.from_url(
                self.url,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=CONNECT_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=_HEALTH_CHECK_INTERVAL,
                # RESP2 whatever redis-py's default (8.x says HELLO 3): the reply shapes the
                # callers and the Lua scripts' answers are written for
                protocol=2,
            )
            conn = pool.make_connection()
            await conn.connect()
        except BaseException as exc:
            self._connecting = None
            if conn is not None and conn._writer is not None:
                conn._writer.transport.abort()
                conn._reader = conn._writer = None
            if not isinstance(exc, Exception):
                raise  # aclose() cancelled the connect
            if not is_redis_failure(exc):
                exc = RedisConnectionError(f"connecting to {describe_url(self.url)}: {exc!r}")
            self._drop(exc)
            return
        self._connecting = None
        # redis-py's connection did the handshake; its socket is ours from here on (and its
        # __del__ must not close it)
        writer = conn._writer
        conn._reader = conn._writer = None
        transport = writer.transport
        if self._closed:
            transport.abort()
            return
        self._protocol = _Protocol(self)
        self._reader = new_reader()
        transport.set_protocol(self._protocol)
        self._transport, self._writer = transport, writer
        self._flush()

    # ------------------------------------------------------------ replies
    def _feed(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return  # a connection dropped earlier
        reader = self._reader
        calls = self._calls
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not calls:
                    raise RedisError("Redis answered a command that was not sent")
                call = calls.popleft()
                if isinstance(reply, REPLY_ERRORS):
                    exc = reply_error(str(reply))
                    if isinstance(exc, NoScriptError) and call.script is not None:
                        self._eval(call)
                    elif not call.future.done():
                        call.future.set_exception(exc)
                elif not call.future.done():
                    call.future.set_result(reply)
        except Exception as exc:  # a protocol error: nothing more on this connection is sane
            self._drop(exc if isinstance(exc, RedisError) else RedisError(repr(exc)))

    def _eval(self, call: _Call) -> None:
        """Send a script again as EVAL (which also caches it) for the same caller."""
        assert call.script is not None
        script, keys, args = call.script
        packed = pack(("EVAL", script.body, len(keys), *keys, *args))
        self._calls.append(_Call(call.future, call.deadline, None))
        self._out.append(packed)
        self._flush()

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._calls:
            return
        loop = asyncio.get_running_loop()
        deadline = self._calls[0].deadline
        if deadline <= loop.time():
            self._drop(RedisTimeoutError(f"Timeout reading from {describe_url(self.url)}"))
        else:
            self._timer = loop.call_at(deadline, self._check_deadline)

    def _lost(self, protocol: _Protocol, exc: Exception) -> None:
        if protocol is self._protocol:
            self._drop(exc)

    def _drop(self, exc: Exception) -> None:
        """Close the connection; every command in flight (or waiting for it) fails."""
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.abort()
        self._writer = None  # after the abort: a writer collected on an open socket closes it
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        calls, self._calls = self._calls, deque()
        self._out.clear()
        for call in calls:
            if not call.future.done():
                call.future.set_exception(exc)
