"""The state a ``RedisConsumer`` shares between its parts: settings, Redis key names, and
the jobs it holds. The parts (taking, leases, reaper) are mixins over ``_ConsumerBase``;
``consumer`` combines them and owns the lifecycle.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import secrets
import socket
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from .connection import _Backoff, _Health
from .jobs import rq_now
from .scripts import (
    CLAIM_PREFIX,
    CONSUMERS_PREFIX,
    FAILED_PREFIX,
    FINISH_LUA,
    FINISHED_PREFIX,
    HANDBACK_LUA,
    HEARTBEAT_LUA,
    QUEUE_PREFIX,
    REAP_LUA,
    TAKE_LUA,
    WIP_PREFIX,
    WORKER_PREFIX,
    WORKERS_KEY,
)
from .wire import Script

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from .._engine.delivery import BroadcastResult
    from .._engine.stream import Stream
    from .._engine.worker import HandlerInfo
    from .._types import JSONValue
    from .wire import Wire

__all__ = ["PoolLike"]

logger = logging.getLogger("qoper8.redis")

# How ``lease`` (the longest a dead host's jobs wait before they are queued again) splits:
# each renewal extends the lease by WINDOW x lease, renewals come every HEARTBEAT x lease and
# every host reaps every REAP x lease (times 0.5-1 jitter). Death to requeue is at most
# (WINDOW + REAP) x lease = 5/6 of it; a host whose loop stalls for WINDOW x lease (20 s by
# default) loses its leases and its jobs may run twice.
LEASE_WINDOW_FRACTION: Final = 2 / 3
HEARTBEAT_FRACTION: Final = 1 / 6
REAP_FRACTION: Final = 1 / 6
# A consumer's own registration (qoper8:consumers) lapses after two missed heartbeats, and
# the reaper then hands its claimed ids back and takes it off rq's worker registry: an idle
# host frozen (SIGSTOP) or killed while its BLMOVE was answered gives the job back within
# (REGISTRATION + REAP) x lease = lease / 2 (15 s by default), not 5/6 of the lease. Safe to
# be short: a claim is not a lease, and a live host whose claims were handed back takes the
# next job from the queue instead; its next heartbeat registers it again. Shorter than two
# heartbeats, a routine delay of one heartbeat would flap it.
REGISTRATION_FRACTION: Final = 2 * HEARTBEAT_FRACTION
# A cancelled consumer spends at most this long handing its running jobs back.
ABANDON_TIMEOUT: Final = 2.0
# Expired leases handled per reaper run (the next run takes the rest).
REAP_BATCH: Final = 100

SCRIPTS: Final = {
    "take": Script(TAKE_LUA),
    "finish": Script(FINISH_LUA),
    "heartbeat": Script(HEARTBEAT_LUA),
    "reap": Script(REAP_LUA),
    "handback": Script(HANDBACK_LUA),
}


class PoolLike(Protocol):
    """What the consumer needs of a pool (``qoper8.Pool`` fits); transports never import it."""

    @property
    def is_open(self) -> bool: ...

    @property
    def handlers(self) -> Mapping[str, HandlerInfo]: ...

    @property
    def size(self) -> int: ...

    def has_capacity(self) -> bool: ...

    async def wait_capacity(self) -> None: ...

    async def submit(
        self,
        action: Mapping[str, Any],
        *,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        on_progress: Callable[[Any], object] | None = ...,
    ) -> JSONValue: ...

    def stream(
        self,
        action: Mapping[str, Any],
        *,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        on_progress: Callable[[Any], object] | None = ...,
    ) -> AbstractAsyncContextManager[Stream]: ...

    async def broadcast(
        self,
        topic: str,
        payload: Mapping[str, Any] | None = ...,
        *,
        timeout: float | None = ...,
        sticky: bool = ...,
    ) -> BroadcastResult: ...


@dataclass(slots=True)
class _Running:
    """One job this consumer leased: enough to renew, finish or hand it back."""

    job_id: str
    execution_id: str
    started: float
    reply_key: str
    result_ttl: int | None
    failure_ttl: int | None
    task: asyncio.Task[None] | None = None
    recording: bool = False  # its outcome is on its way to Redis
    stop_requested: bool = False  # its caller cancelled it with kill_on_cancel
    finished: bool = False
    stream: str = ""  # its qoper8_stream: "1" messages and progress, "p" progress only
    writer: Any = None  # its stream's writer (stream_host), when it has a stream
    meta: Any = None  # its progress writer into rq's meta, once it reported progress

    @property
    def member(self) -> str:
        return f"{self.job_id}:{self.execution_id}"


class _ConsumerBase:
    """The consumer's settings, key names and the jobs it holds, shared by the mixins
    that take jobs, renew leases, reap and stop (``RedisConsumer`` combines them)."""

    def __init__(
        self,
        pool: PoolLike,
        *,
        url: str,
        queue: str,
        lease: float = 30.0,
        max_retries: int = 3,
        grace: float = 10.0,
        name: str | None = None,
    ) -> None:
        if lease <= 0:
            raise ValueError(f"lease must be positive, not {lease!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, not {max_retries!r}")
        if not queue or any(c.isspace() for c in queue):
            raise ValueError(f"{queue!r} is not a queue name")
        self.pool = pool
        self.url = url
        self.queue = queue
        self.lease = lease
        self._window = lease * LEASE_WINDOW_FRACTION
        self.max_retries = max_retries
        self.grace = grace
        self.name = name or f"qoper8.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self._queue_key = QUEUE_PREFIX + queue
        self._wip_key = WIP_PREFIX + queue
        self._failed_key = FAILED_PREFIX + queue
        self._finished_key = FINISHED_PREFIX + queue
        self._claim_key = f"{CLAIM_PREFIX}{queue}:{self.name}"
        self._consumers_key = CONSUMERS_PREFIX + queue
        self._worker_key = WORKER_PREFIX + self.name
        self._queue_workers_key = f"{WORKERS_KEY}:{queue}"
        self._birth = rq_now()
        # execution ids: this consumer's random prefix and a count, 32 hex digits like rq's
        self._execution_prefix = secrets.token_hex(8)
        self._executions = 0
        self._running: dict[str, _Running] = {}
        self._slot_freed = asyncio.Event()
        self._queue_seen_empty = False
        self._stopping = False
        self._interruptible = False
        self._take_task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._wire: Wire | None = None
        # BLMOVE gets a connection of its own: stop() closes it to end the wait at once.
        self._blocking: Wire | None = None
        self._stop_deadline: float | None = None
        # set once the broadcasts are read and the queue's sticky topics given to the pool:
        # the consumer then registers (broadcasts reach it) and takes jobs (after them)
        self._listening_ready = asyncio.Event()
        self._jobs_task: set[asyncio.Task[None]] = set()
        self._health = _Health()
        reason = (
            f"AbandonedJobError: the host running this job stopped renewing its {lease:g}s "
            f"lease (did it die or lose Redis?) and no retries were left"
        )
        self._reason = reason
        self._reason_b64 = base64.b64encode(zlib.compress(reason.encode())).decode()
        err = orjson.dumps({"type": "JobError", "message": reason}).decode()
        # the reaper builds {"type":..., "message":..., "job_id": "<id>"} around each id
        self._error_prefix = err[:-1] + ',"job_id":"'
        self._error_suffix = '"}'
        self.taken = 0
        self.completed = 0
        # jobs given back to the queue front untouched (no idle child by the time they
        # arrived, or the pool was closing): no retry and no execution counted
        self.handed_back = 0

    @property
    def running_jobs(self) -> int:
        """Jobs leased by this consumer and not yet finished."""
        return len(self._running)

    @property
    def connected(self) -> bool:
        """Whether Redis answers: False until a Redis command of this consumer has
        succeeded, False again during an outage (or with a URL nothing answers at), True
        once Redis answers again. A daemon's health check reports it."""
        return self._health.connected

    @property
    def last_error(self) -> str | None:
        """Why the consumer is not connected (its latest Redis failure); None once Redis
        answers."""
        return self._health.last_error

    def _backoff(self, what: str) -> _Backoff:
        return _Backoff(what, self.url, self._health)

    def _script(self, name: str) -> Any:
        """``self._script(name)(keys=..., args=...)`` runs that script: a future."""
        assert self._wire is not None
        return functools.partial(self._wire.script, SCRIPTS[name])

    def _stop_requested(self) -> bool:
        # a method, not the attribute: type checkers keep a test of the attribute narrowed
        # across an await, during which stop() may set it
        return self._stopping

    def _give_up(self) -> bool:
        return self._stopping and (
            self._stop_deadline is not None and time.monotonic() > self._stop_deadline
        )
