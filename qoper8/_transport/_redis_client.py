"""``RedisClient``: the submitting side behind ``qoper8.RedisPool``.

It enqueues rq jobs (as rq's ``Queue.enqueue`` would, in one script) and settles each waiting
``submit`` from the outcomes the hosts push to this client's reply list.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
from redis.exceptions import RedisError

from .._engine.tracing import carrier
from ..errors import (
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    TransportError,
    error_from_dict,
)
from ._redis_connection import BLOCK_SECONDS, _Backoff, connect, describe_url, is_redis_failure
from ._rq_jobs import TIMESTAMP_FORMAT, _stored_error, _text, encode_job
from ._rq_scripts import (
    CONSUMERS_PREFIX,
    ENQUEUE_LUA,
    JOB_PREFIX,
    QUEUE_PREFIX,
    QUEUES_KEY,
    REPLY_PREFIX,
    RESULTS_PREFIX,
    WITHDRAW_LUA,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import redis.asyncio as aioredis

    from .._types import JSONValue

__all__ = ["RedisClient"]

logger = logging.getLogger("qoper8.redis")

# Concurrent enqueues per RedisPool; each holds one connection while in flight.
MAX_CLIENT_CONNECTIONS: Final = 32
# A timed-out submit reads where its job stood, to say so in the JobTimeout, and a cancelled
# one withdraws its job: longer delays the error (or close()) when Redis is slow, shorter
# gives up sooner (a vaguer message; a job that may still run).
WHEREABOUTS_TIMEOUT: Final = 1.0


# ---------------------------------------------------------------- the submitting side
@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[JSONValue]
    mapping: dict[str, bytes | str | int | float]
    enqueued: bool = False


class RedisClient:
    """Enqueues rq jobs and waits for their outcomes, pushed to this client's reply list.

    One connection blocks in BLPOP on ``qoper8:reply:{client}`` and settles every waiting
    ``submit``; so each job costs two round trips here (enqueue, and its share of BLPOP).
    After Redis comes back from an outage, jobs whose hash vanished (a restart without
    persistence) are enqueued again, so an accepted ``submit`` is not silently lost.
    """

    def __init__(self, url: str, queue: str, *, result_ttl: int | None = None) -> None:
        self.url = url
        self.queue = queue
        self.result_ttl = result_ttl
        self.client_id = uuid.uuid4().hex
        self.reply_key = REPLY_PREFIX + self.client_id
        self._queue_key = QUEUE_PREFIX + queue
        self._redis: aioredis.Redis | None = None
        self._enqueue: Any = None
        self._withdraw_script: Any = None
        self._withdrawals: set[asyncio.Task[None]] = set()
        self._pending: dict[str, _Pending] = {}
        # redis-py opens a connection per concurrent command: bound them, so that a burst of
        # submits does not open thousands of connections to Redis
        self._enqueue_slots = asyncio.Semaphore(MAX_CLIENT_CONNECTIONS)
        self._listener: asyncio.Task[None] | None = None
        self._closed = False
        self._healthy = True
        self._last_error: BaseException | None = None

    async def open(self) -> None:
        self._redis = connect(self.url)
        self._enqueue = self._redis.register_script(ENQUEUE_LUA)
        self._withdraw_script = self._redis.register_script(WITHDRAW_LUA)
        self._listener = asyncio.create_task(self._listen())

    async def aclose(self) -> None:
        self._closed = True
        if self._withdrawals:
            await asyncio.wait(list(self._withdrawals), timeout=WHEREABOUTS_TIMEOUT)
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(PoolClosed("the RedisPool was closed"))
        self._pending.clear()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.delete(self.reply_key)
        if self._listener is not None:
            # A cancelled BLPOP can sit until its server-side timeout in redis-py; closing
            # the client's connections below ends it at once.
            self._listener.cancel()
            await asyncio.wait([self._listener], timeout=0.05)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            with contextlib.suppress(Exception):
                await self._redis.connection_pool.disconnect()
        if self._listener is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener

    async def submit(
        self, action: Mapping[str, Any], deadline: float | None, *, kill_on_cancel: bool = False
    ) -> JSONValue:
        timeout = deadline
        if self._closed or self._redis is None:
            raise PoolClosed("the RedisPool is closed" if self._closed else "not opened")
        job_id = uuid.uuid4().hex
        mapping = encode_job(
            job_id,
            self.queue,
            action,
            timeout=timeout,
            reply_key=self.reply_key,
            result_ttl=self.result_ttl,
            trace=carrier(),  # OpenTelemetry's active span: the host continues it
        )
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), mapping)
        self._pending[job_id] = pending
        try:
            async with asyncio.timeout(timeout):
                await self._enqueue_job(job_id, pending)
                return await pending.future
        except TimeoutError:
            raise await self._timeout_error(job_id, action, timeout) from None
        except asyncio.CancelledError:
            # As the local pool drops a queued job, withdraw it if no host has taken it; in a
            # task of its own, since this one is being cancelled.
            task = asyncio.create_task(self._withdraw(job_id, kill_on_cancel))
            self._withdrawals.add(task)
            task.add_done_callback(self._withdrawals.discard)
            raise
        finally:
            self._pending.pop(job_id, None)

    async def _withdraw(self, job_id: str, stop_running: bool) -> None:
        try:
            async with asyncio.timeout(WHEREABOUTS_TIMEOUT):
                n = await self._withdraw_script(
                    keys=[JOB_PREFIX + job_id, self._queue_key],
                    args=[job_id, "1" if stop_running else "0"],
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

    async def _timeout_error(
        self, job_id: str, action: Mapping[str, Any], timeout: float | None
    ) -> Qoper8Error:
        what = f"job {job_id} ({action.get('type')})"
        if not self._healthy or self._last_error is not None:
            return TransportError(
                f"{what}: Redis at {describe_url(self.url)} could not be reached within the "
                f"deadline of {timeout}s ({self._last_error}); the job may still run"
            )
        where = await self._whereabouts(job_id)
        return JobTimeout(
            f"{what} got no result within its deadline of {timeout}s on rq queue "
            f"{self.queue!r}: {where}",
            job_id=job_id,
        )

    async def _whereabouts(self, job_id: str) -> str:
        """Where the job stood when its caller's deadline passed, read from the job hash and
        the hosts' registrations (one round trip, bounded: it only words an error)."""
        assert self._redis is not None
        try:
            async with asyncio.timeout(WHEREABOUTS_TIMEOUT):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hmget(JOB_PREFIX + job_id, list(_WHEREABOUTS_FIELDS))
                    pipe.zrange(CONSUMERS_PREFIX + self.queue, 0, -1, withscores=True)
                    fields, consumers = await pipe.execute()
        except (TimeoutError, RedisError, OSError):
            return _NOWHERE
        job = {k: _text(v) for k, v in zip(_WHEREABOUTS_FIELDS, fields, strict=True) if v}
        hosts = {_text(name): float(score) for name, score in consumers}
        return whereabouts(job, hosts, time.time())

    async def _enqueue_job(self, job_id: str, pending: _Pending) -> None:
        backoff = _Backoff(f"RedisPool {self.client_id[:8]}", self.url)
        args: list[Any] = [job_id]
        for k, v in pending.mapping.items():
            args += [k, v]
        keys = [JOB_PREFIX + job_id, self._queue_key, QUEUES_KEY]
        while True:
            try:
                async with self._enqueue_slots:
                    await self._enqueue(keys=keys, args=args)
            except Exception as exc:
                if not is_redis_failure(exc):
                    raise
                self._last_error = exc
                await backoff.failed(exc)
                continue
            self._last_error = None
            backoff.succeeded()
            pending.enqueued = True
            return

    async def _listen(self) -> None:
        assert self._redis is not None
        backoff = _Backoff(f"RedisPool {self.client_id[:8]} replies", self.url)
        while not self._closed:
            try:
                item = await self._redis.blpop([self.reply_key], BLOCK_SECONDS)
                if not self._healthy:
                    await self._recover()
            except Exception as exc:
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
            if item is not None:
                self._settle(bytes(item[1]) if isinstance(item[1], bytes) else b"")

    def _settle(self, payload: bytes) -> None:
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
        assert self._redis is not None
        ids = [j for j, p in self._pending.items() if p.enqueued and not p.future.done()]
        if not ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(JOB_PREFIX + job_id, ["status", "qoper8_error"])
                pipe.xrevrange(RESULTS_PREFIX + job_id, "+", "-", count=1)
            replies = await pipe.execute()
        lost = 0
        for i, job_id in enumerate(ids):
            (status, error), stream = replies[2 * i], replies[2 * i + 1]
            pending = self._pending.get(job_id)
            if pending is None or pending.future.done():
                continue
            if status is None:
                lost += 1
                pending.enqueued = False
                task = asyncio.create_task(self._enqueue_job(job_id, pending))
                task.add_done_callback(_log_failure)
            elif status == b"finished" and stream:
                value = stream[0][1].get(b"return_value")
                result = orjson.loads(base64.b64decode(value)) if value else None
                pending.future.set_result(result)
            elif status == b"failed":
                pending.future.set_exception(_stored_error(job_id, error))
        if lost:
            logger.warning(
                "RedisPool: %d jobs vanished from Redis during the outage; enqueued again",
                lost,
            )


_WHEREABOUTS_FIELDS: Final = ("status", "worker_name", "retries_left", "last_heartbeat")
_NOWHERE: Final = "no idle child on any host, or no host serving the queue?"


def whereabouts(job: Mapping[str, str], hosts: Mapping[str, float], now: float) -> str:
    """Words for where a job stood when its caller gave up on it.

    Args:
        job: its hash's ``status``, ``worker_name``, ``retries_left`` and ``last_heartbeat``
            (absent when empty).
        hosts: each live host's registration expiry (``qoper8:consumers:{queue}``).
        now: the current time (the hosts' clocks are assumed in sync, as for deadlines).
    """
    status, host = job.get("status"), job.get("worker_name")
    retries = job.get("retries_left", "0")
    if status == "started" and host:
        expiry = hosts.get(host)
        if expiry is not None and expiry >= now:
            return (
                f"it was still running on host {host} (the host ends it at its deadline "
                f"and records a JobTimeout)"
            )
        seen = _ago(job.get("last_heartbeat"), now)
        then = (
            f"a host serving the queue runs it again once its lease expires ({retries} "
            f"retries left), and its result will not reach this call"
            if retries not in ("", "0")
            else "no retries are left: it fails with AbandonedJobError once its lease expires"
        )
        return (
            f"it was running on host {host}, which stopped renewing its lease{seen} "
            f"(the host died, froze or lost Redis?); {then}"
        )
    if status == "queued" and host:
        return (
            f"it had been running on host {host}, which stopped renewing its lease; it was "
            f"queued again ({retries} retries left) and no idle child took it in time"
        )
    if status == "queued":
        return f"it was still queued: {_NOWHERE}"
    return _NOWHERE


def _ago(stamp: str | None, now: float) -> str:
    if not stamp:
        return ""
    try:
        then = datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return ""
    return f" (last heartbeat {max(0.0, now - then):.1f}s ago)"


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("RedisPool: re-enqueue failed: %s", task.exception())
