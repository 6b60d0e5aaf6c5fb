"""``RedisClient``: the submitting side behind ``qoper8.RedisPool``.

It enqueues rq jobs (as rq's ``Queue.enqueue`` would, in one script) and settles each waiting
``submit`` from the outcomes the hosts push to this client's reply list.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson
from redis.exceptions import RedisError, ResponseError

from ..errors import (
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    TransportError,
    error_from_dict,
)
from .connection import BLOCK_SECONDS, _Backoff, describe_url, is_redis_failure
from .jobs import _stored_error, encode_job
from .scripts import (
    ENQUEUE_LUA,
    JOB_PREFIX,
    QUEUE_PREFIX,
    QUEUES_KEY,
    REPLY_PREFIX,
    RESULTS_PREFIX,
    WITHDRAW_LUA,
)
from .whereabouts import locate
from .wire import Script, Wire

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._types import JSONValue

__all__ = ["RedisClient"]

logger = logging.getLogger("qoper8.redis")

# A timed-out submit reads where its job stood, to say so in the JobTimeout, and a cancelled
# one withdraws its job: longer delays the error (or close()) when Redis is slow, shorter
# gives up sooner (a vaguer message; a job that may still run).
WHEREABOUTS_TIMEOUT: Final = 1.0
# Outcomes taken off the reply list per round trip (BLMPOP's COUNT): under load one round
# trip settles this many submits; more only makes one reply bigger.
REPLIES_PER_POP: Final = 256

ENQUEUE: Final = Script(ENQUEUE_LUA)
WITHDRAW: Final = Script(WITHDRAW_LUA)


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[JSONValue]
    mapping: dict[str, bytes | str | int | float]
    enqueued: bool = False


class _Expired(Exception):
    """A submit's deadline passed (set on its future by a timer, not raised by a scope)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class RedisClient:
    """Enqueues rq jobs and waits for their outcomes, pushed to this client's reply list.

    Two connections, each a pipelining ``Wire``: one carries every enqueue (a submit writes
    one script call and awaits one future: no connection, task or timeout scope of its own),
    the other blocks in BLMPOP on ``qoper8:reply:{client}``, and each answer settles every
    outcome that has arrived. After Redis comes back from an outage, jobs whose hash vanished
    (a restart without persistence) are enqueued again, so an accepted ``submit`` is not
    silently lost.
    """

    def __init__(self, url: str, queue: str, *, result_ttl: int | None = None) -> None:
        self.url = url
        self.queue = queue
        self.result_ttl = result_ttl
        self.client_id = secrets.token_hex(16)
        self.reply_key = REPLY_PREFIX + self.client_id
        self._queue_key = QUEUE_PREFIX + queue
        self._wire: Wire | None = None
        self._replies: Wire | None = None  # blocked in BLMPOP; closing it ends the wait
        self._withdrawals: set[asyncio.Task[None]] = set()
        self._retries: set[asyncio.Task[None]] = set()
        self._pending: dict[str, _Pending] = {}
        self._listener: asyncio.Task[None] | None = None
        self._multi_pop = True  # BLMPOP (Redis 7); BLPOP, one reply a trip, before
        self._closed = False
        self._healthy = True
        self._last_error: BaseException | None = None

    async def open(self) -> None:
        self._wire = Wire(self.url)
        self._replies = Wire(self.url)
        self._listener = asyncio.create_task(self._listen())

    async def aclose(self) -> None:
        self._closed = True
        if self._withdrawals:
            await asyncio.wait(list(self._withdrawals), timeout=WHEREABOUTS_TIMEOUT)
        for task in list(self._retries):
            task.cancel()
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(PoolClosed("the RedisPool was closed"))
        self._pending.clear()
        if self._wire is not None:
            try:
                async with asyncio.timeout(WHEREABOUTS_TIMEOUT):
                    await self._wire.command("DEL", self.reply_key)
            except (TimeoutError, RedisError, OSError):
                pass  # the list expires by itself (REPLY_TTL)
        if self._replies is not None:
            await self._replies.aclose()  # ends the BLMPOP at once
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait([self._listener])
        if self._wire is not None:
            await self._wire.aclose()

    async def submit(
        self, action: Mapping[str, Any], deadline: float | None, *, kill_on_cancel: bool = False,
        job_id: str | None = None, stream: str = ""
    ) -> JSONValue:  # fmt: skip
        timeout = deadline
        if self._closed or self._wire is None:
            raise PoolClosed("the RedisPool is closed" if self._closed else "not opened")
        job_id = job_id or secrets.token_hex(16)
        mapping = encode_job(
            job_id,
            self.queue,
            action,
            timeout=timeout,
            reply_key=self.reply_key,
            result_ttl=self.result_ttl,
            stream=stream,
        )
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), mapping)
        self._pending[job_id] = pending
        timer = None if timeout is None else loop.call_later(timeout, _expire, pending.future)
        self._enqueue(job_id, pending)
        try:
            return await pending.future
        except _Expired:
            raise await self._timeout_error(job_id, action, timeout) from None
        except asyncio.CancelledError:
            # As the local pool drops a queued job, withdraw it if no host has taken it; in a
            # task of its own, since this one is being cancelled.
            task = asyncio.create_task(self.withdraw(job_id, kill_on_cancel))
            self._withdrawals.add(task)
            task.add_done_callback(self._withdrawals.discard)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(job_id, None)

    def expect(self, ident: str) -> asyncio.Future[JSONValue]:
        """A future settled by the reply pushed for ``ident`` to this client's reply list
        (an actor call's outcome, a waiter's answer), by the listener that settles jobs;
        ``forget(ident)`` once done with it. Never enqueued again after an outage."""
        future: asyncio.Future[JSONValue] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(PoolClosed("the RedisPool is closed"))
        else:
            self._pending[ident] = _Pending(future, {})
        return future

    def forget(self, ident: str) -> None:
        self._pending.pop(ident, None)

    @property
    def wire(self) -> Wire:
        """The pipelined connection that carries enqueues (and actors' scripts)."""
        if self._wire is None:
            raise PoolClosed("the RedisPool is not opened")
        return self._wire

    # ------------------------------------------------------------ enqueueing
    def _enqueue_call(self, job_id: str, pending: _Pending) -> asyncio.Future[Any]:
        assert self._wire is not None
        args: list[Any] = [job_id]
        for k, v in pending.mapping.items():
            args += (k, v)
        keys = [JOB_PREFIX + job_id, self._queue_key, QUEUES_KEY]
        return self._wire.script(ENQUEUE, keys, args)

    def _enqueue(self, job_id: str, pending: _Pending) -> None:
        """Send the enqueue; its answer is handled by ``_enqueued`` (no task per submit)."""
        self._enqueue_call(job_id, pending).add_done_callback(
            functools.partial(self._enqueued, job_id, pending)
        )

    def _enqueued(self, job_id: str, pending: _Pending, answer: asyncio.Future[Any]) -> None:
        if answer.cancelled():
            return  # nothing awaits it, so nothing cancels it; not worth a guess
        exc = answer.exception()
        if exc is None:
            pending.enqueued = True
            self._last_error = None
        elif not pending.future.done():
            if not is_redis_failure(exc):
                pending.future.set_exception(exc)
                return
            self._last_error = exc
            task = asyncio.create_task(self._enqueue_again(job_id, pending, exc))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    async def _enqueue_again(self, job_id: str, pending: _Pending, exc: BaseException) -> None:
        """Redis could not take the job: retry with backoff until it does, or the submit
        ends (its deadline, its caller, close())."""
        backoff = _Backoff(f"RedisPool {self.client_id[:8]}", self.url)
        while True:
            await backoff.failed(exc)
            if pending.future.done() or self._closed:
                return
            try:
                await self._enqueue_call(job_id, pending)
            except Exception as again:
                if not is_redis_failure(again):
                    if not pending.future.done():
                        pending.future.set_exception(again)
                    return
                self._last_error = exc = again
                continue
            self._last_error = None
            backoff.succeeded()
            pending.enqueued = True
            return

    async def withdraw(self, job_id: str, stop_running: bool) -> None:
        """Withdraw a job its caller left: dropped if queued, else stopped if asked."""
        assert self._wire is not None
        try:
            async with asyncio.timeout(WHEREABOUTS_TIMEOUT):
                n = await self._wire.script(
                    WITHDRAW,
                    [JOB_PREFIX + job_id, self._queue_key],
                    [job_id, "1" if stop_running else "0"],
                )
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning("RedisPool: could not withdraw cancelled job %s (%s)", job_id, exc)
            return
        if n == 0:
            logger.info(
                "RedisPool: job %s was cancelled by its caller after a host took it; it runs "
                "on there (submit with kill_on_cancel=True to stop it)",
                job_id,
            )

    # ------------------------------------------------------------ a deadline passed
    async def _timeout_error(
        self, job_id: str, action: Mapping[str, Any], timeout: float | None
    ) -> Qoper8Error:
        what = f"job {job_id} ({action.get('type')})"
        if not self._healthy or self._last_error is not None:
            return TransportError(
                f"{what}: Redis at {describe_url(self.url)} could not be reached within the "
                f"deadline of {timeout}s ({self._last_error}); the job may still run"
            )
        assert self._wire is not None
        where = await locate(self._wire, job_id, self.queue, WHEREABOUTS_TIMEOUT)
        return JobTimeout(
            f"{what} got no result within its deadline of {timeout}s on rq queue "
            f"{self.queue!r}: {where}",
            job_id=job_id,
        )

    # ------------------------------------------------------------ outcomes
    async def _listen(self) -> None:
        backoff = _Backoff(f"RedisPool {self.client_id[:8]} replies", self.url)
        while not self._closed:
            try:
                items = await self._pop()
                if not self._healthy:
                    await self._recover()
            except Exception as exc:
                if self._closing():
                    return  # aclose() closed the connection under the BLMPOP
                if not is_redis_failure(exc):
                    logger.exception("RedisPool reply listener failed; retrying")
                self._healthy = False
                self._last_error = exc
                await backoff.failed(exc)
                continue
            if not self._healthy:
                self._healthy = True
                self._last_error = None
            backoff.succeeded()
            for item in items:
                self.settle(item if isinstance(item, bytes) else b"")

    def _closing(self) -> bool:
        # a method, not the attribute: type checkers keep a test of the attribute narrowed
        # across an await, during which aclose() may set it
        return self._closed

    async def _pop(self) -> list[Any]:
        """The outcomes on this client's reply list, waiting up to BLOCK_SECONDS for one."""
        assert self._replies is not None
        if self._multi_pop:
            try:
                reply = await self._replies.command(
                    "BLMPOP",
                    BLOCK_SECONDS,
                    1,
                    self.reply_key,
                    "LEFT",
                    "COUNT",
                    REPLIES_PER_POP,
                    block=BLOCK_SECONDS,
                )
            except ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                self._multi_pop = False  # Redis before 7.0
            else:
                return [] if reply is None else list(reply[1])
        reply = await self._replies.command(
            "BLPOP", self.reply_key, BLOCK_SECONDS, block=BLOCK_SECONDS
        )
        return [] if reply is None else [reply[1]]

    def settle(self, payload: bytes) -> None:
        """Settle a submit from its reply (the reply list's, or its stream's end entry)."""
        try:
            msg = orjson.loads(payload)
            job_id = msg["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("RedisPool: unreadable reply %r ignored", payload[:200])
            return
        pending = self._pending.get(job_id) if isinstance(job_id, str) else None
        if pending is None or pending.future.done():
            return
        if "error" in msg and isinstance(msg["error"], dict):
            pending.future.set_exception(error_from_dict(msg["error"]))
        elif "result" in msg:
            pending.future.set_result(msg["result"])
        else:
            pending.future.set_exception(TransportError(f"unreadable reply for job {job_id}"))

    async def _recover(self) -> None:
        """After an outage: settle jobs that ended while we could not listen, and enqueue
        again those whose hash vanished (Redis restarted without persistence)."""
        assert self._wire is not None
        ids = [j for j, p in self._pending.items() if p.enqueued and not p.future.done()]
        if not ids:
            return
        wire = self._wire
        replies = await asyncio.gather(
            *(
                call
                for job_id in ids
                for call in (
                    wire.command("HMGET", JOB_PREFIX + job_id, "status", "qoper8_error"),
                    wire.command("XREVRANGE", RESULTS_PREFIX + job_id, "+", "-", "COUNT", 1),
                )
            )
        )
        lost = 0
        for i, job_id in enumerate(ids):
            (status, error), stream = replies[2 * i], replies[2 * i + 1]
            pending = self._pending.get(job_id)
            if pending is None or pending.future.done():
                continue
            if status is None:
                lost += 1
                pending.enqueued = False
                self._enqueue(job_id, pending)
            elif status == b"finished" and stream:
                entry = stream[0][1]  # [field, value, field, value...]
                fields = dict(zip(entry[::2], entry[1::2], strict=True))
                value = fields.get(b"return_value")
                result = orjson.loads(base64.b64decode(value)) if value else None
                pending.future.set_result(result)
            elif status == b"failed":
                pending.future.set_exception(_stored_error(job_id, error))
        if lost:
            logger.warning(
                "RedisPool: %d jobs vanished from Redis during the outage; enqueued again",
                lost,
            )
