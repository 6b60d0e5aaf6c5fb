"""``RedisConsumer``: feeds one pool from one rq queue.

It takes a job only when the pool has an idle child, leases it in rq's StartedJobRegistry,
renews the lease by heartbeat, and writes the outcome where rq's tools look (job hash,
registries, results stream). It never imports the pool (it is handed one) and never
unpickles. The keys it touches are listed in ``_redis``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import os
import random
import socket
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson
from redis.exceptions import RedisError

from ..errors import (
    InvalidAction,
    JobError,
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    QueueFull,
    StartFailed,
    error_to_dict,
)
from ._redis_connection import (
    BLOCK_SECONDS,
    _Backoff,
    _Batcher,
    _retrying,
    connect,
    describe_url,
)
from ._rq_jobs import (
    DEFAULT_FAILURE_TTL,
    DEFAULT_RESULT_TTL,
    RESULT_FAILED,
    RESULT_SUCCESSFUL,
    _int_or_none,
    _job_timeout,
    _text,
    decode_job,
    rq_now,
)
from ._rq_scripts import (
    CLAIM_PREFIX,
    CONSUMERS_PREFIX,
    FAILED_PREFIX,
    FINISH_LUA,
    FINISHED_PREFIX,
    HANDBACK_LUA,
    HEARTBEAT_LUA,
    QUEUE_PREFIX,
    REAP_LUA,
    REPLY_PREFIX,
    TAKE_LUA,
    WIP_PREFIX,
    WORKER_PREFIX,
    WORKERS_KEY,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import redis.asyncio as aioredis

    from .._types import JSONValue
    from .._worker import HandlerInfo

__all__ = ["PoolLike", "RedisConsumer"]

logger = logging.getLogger("qoper8.redis")

# How ``lease`` (the longest a dead host's jobs wait before they are queued again) splits:
# each renewal extends the lease by WINDOW x lease, renewals come every HEARTBEAT x lease and
# every host reaps every REAP x lease (times 0.5-1 jitter). Death to requeue is at most
# (WINDOW + REAP) x lease = 5/6 of it; a host whose loop stalls for WINDOW x lease (20 s by
# default) loses its leases and its jobs may run twice.
LEASE_WINDOW_FRACTION: Final = 2 / 3
HEARTBEAT_FRACTION: Final = 1 / 6
REAP_FRACTION: Final = 1 / 6
# A cancelled consumer spends at most this long handing its running jobs back.
ABANDON_TIMEOUT: Final = 2.0
# Expired leases handled per reaper run (the next run takes the rest).
REAP_BATCH: Final = 100


# ---------------------------------------------------------------- the consumer
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
    ) -> JSONValue: ...


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
    finished: bool = False

    @property
    def member(self) -> str:
        return f"{self.job_id}:{self.execution_id}"


@dataclass(slots=True)
class _Outcome:
    status: str  # "finished" or "failed"
    reply: str
    job_fields: list[str] = field(default_factory=list)
    stream_fields: list[str] = field(default_factory=list)


class RedisConsumer:
    """Feeds a pool from one rq queue, taking a job only when the pool has an idle child.

    Example:
        ```python
        async with qoper8.Pool("workers.users:worker", children=8) as pool:
            consumer = RedisConsumer(pool, url="redis://redis:6379/0", queue="users")
            await consumer.run()          # until another task awaits consumer.stop()
        ```

    Args:
        pool: a started pool (``qoper8.Pool``).
        url: ``redis://``, ``rediss://`` or ``unix://`` URL, password included if any.
        queue: the rq queue name.
        lease: at most this many seconds after a host dies, its running jobs are queued
            again (heartbeats renew leases every ``lease / 6``; any host reaps).
        max_retries: times a job whose lease expired is queued again, when the job does
            not set rq's ``retries_left`` itself; after that it fails with the reason.
        grace: how long ``stop()`` waits for running jobs before handing them back
            (default: 10 s).
        name: this consumer's rq ``worker_name`` (default: host, pid and a random suffix).
    """

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
        self._running: dict[str, _Running] = {}
        self._slot_freed = asyncio.Event()
        self._queue_seen_empty = False
        self._stopping = False
        self._interruptible = False
        self._take_task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._finisher: _Batcher
        self._stop_deadline: float | None = None
        self._jobs_task: set[asyncio.Task[None]] = set()
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

    # ------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Take and run jobs until ``stop()`` (or the pool closes). Redis outages are
        logged and retried with backoff; they never end the loop."""
        if self._take_task is not None:
            raise RuntimeError("a RedisConsumer runs once")
        r = await self._start_client()
        logger.info(
            "consumer %s: taking jobs from rq queue %r at %s (lease %gs)",
            self.name,
            self.queue,
            describe_url(self.url),
            self.lease,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                beat = tg.create_task(self._heartbeat_loop())
                reap = tg.create_task(self._reap_loop())
                self._take_task = tg.create_task(self._take_loop())
                try:
                    await self._take_task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # run() itself is cancelled, not just the take loop by stop()
                self._stopping = True
                await self._finish_running()
                beat.cancel()
                reap.cancel()
        except asyncio.CancelledError:
            # Cancelled (a daemon's fast stop): still hand back what runs, briefly, so that
            # it is queued again now rather than when its lease expires.
            await self._abandon()
            raise
        finally:
            self._stopping = True
            with contextlib.suppress(Exception):
                await r.aclose()
            self._done.set()

    async def _start_client(self) -> aioredis.Redis:
        self._redis = r = connect(self.url)
        self._scripts = {
            "take": r.register_script(TAKE_LUA),
            "finish": r.register_script(FINISH_LUA),
            "heartbeat": r.register_script(HEARTBEAT_LUA),
            "reap": r.register_script(REAP_LUA),
            "handback": r.register_script(HANDBACK_LUA),
        }
        self._finisher = _Batcher(self._scripts["finish"], r)
        return r

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop taking jobs; let running ones finish for up to ``grace`` seconds (default:
        the consumer's ``grace``; 0 hands them back at once), then hand the rest back to the
        queue front (their children are killed). Returns once ``run`` has returned. No job is
        left "started"."""
        if self._take_task is None:
            self._stopping = True
            self._done.set()
            return
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = time.monotonic() + (self.grace if grace is None else grace)
            if self._interruptible and not self._take_task.done():
                self._take_task.cancel()
        await self._done.wait()

    @property
    def running_jobs(self) -> int:
        """Jobs leased by this consumer and not yet finished."""
        return len(self._running)

    def _script(self, name: str) -> Any:
        return self._scripts[name]

    def _give_up(self) -> bool:
        return self._stopping and (
            self._stop_deadline is not None and time.monotonic() > self._stop_deadline
        )

    # ------------------------------------------------------------ taking
    async def _take_loop(self) -> None:
        backoff = _Backoff(f"consumer {self.name}", self.url)
        pool = self.pool
        while not self._stopping:
            if not pool.is_open:
                logger.info("consumer %s: the pool closed; no more jobs taken", self.name)
                return
            if not pool.has_capacity():
                self._interruptible = True
                try:
                    await pool.wait_capacity()
                finally:
                    self._interruptible = False
                continue
            if len(self._running) >= pool.size:
                # An idle child whose job is being recorded: that job's finish call takes
                # the child's next job itself; wait until a job ends without a successor.
                self._slot_freed.clear()
                self._interruptible = True
                try:
                    await self._slot_freed.wait()
                finally:
                    self._interruptible = False
                continue
            ok, raw = await backoff.attempt(self._take_one)
            if not ok:
                continue
            if raw is not None:
                self._start(raw)
                # let the job's task reach pool.submit, so has_capacity() counts it
                await asyncio.sleep(0)

    async def _take_one(self) -> list[Any] | None:
        # After the queue was seen empty, go straight to BLMOVE (it returns at once if a job
        # arrived meanwhile): one round trip fewer per job on a lightly loaded queue.
        raw = None if self._queue_seen_empty else await self._take_script()
        self._queue_seen_empty = raw is None
        if raw is None and not self._stopping:
            assert self._redis is not None
            self._interruptible = True
            try:
                moved = await self._redis.blmove(
                    self._queue_key, self._claim_key, BLOCK_SECONDS, "LEFT", "RIGHT"
                )
            finally:
                self._interruptible = False
            if moved is None or self._stopping:
                return None
            raw = await self._take_script()
        return raw

    def _take_args(self, now_text: str | None = None) -> list[Any]:
        now = time.time()
        return [
            now,
            now + self._window,
            self.name,
            uuid.uuid4().hex,  # the execution id
            self.max_retries,
            now_text or rq_now(),
            int(self.lease * 2) + 60,
        ]

    async def _take_script(self) -> list[Any] | None:
        args = self._take_args()
        raw = await self._script("take")(
            keys=[self._queue_key, self._wip_key, self._claim_key], args=args
        )
        if raw is None:
            return None
        result: list[Any] = [*raw, args[3]]
        return result

    def _start(self, raw: list[Any]) -> None:
        job_id = _text(raw[0])
        execution_id = raw[7]
        running = _Running(
            job_id=job_id,
            execution_id=execution_id,
            started=time.time(),
            reply_key=_reply_key(raw[3]),
            result_ttl=_int_or_none(raw[5]),
            failure_ttl=_int_or_none(raw[6]),
        )
        self._running[running.member] = running
        self.taken += 1
        task = asyncio.create_task(self._run_job(running, raw[1], raw[2], raw[4]))
        running.task = task
        self._jobs_task.add(task)
        task.add_done_callback(self._jobs_task.discard)

    async def _run_job(
        self, running: _Running, data: bytes, timeout_raw: object, deadline_raw: object
    ) -> None:
        try:
            outcome = await self._execute(running, data, timeout_raw, deadline_raw)
        except asyncio.CancelledError:
            return  # stop() hands it back
        except _HandBack as hb:
            logger.info("consumer %s: job %s handed back: %s", self.name, running.job_id, hb)
            await self._hand_back([running])
            return
        except Exception as exc:  # a bug here must not leave the job leased forever
            logger.exception("consumer %s: job %s failed inside qoper8", self.name, running.job_id)
            outcome = self._failure(
                running, JobError(f"qoper8 failed to run job {running.job_id}: {exc!r}")
            )
        await self._write_outcome(running, outcome)

    async def _execute(
        self, running: _Running, data: bytes, timeout_raw: object, deadline_raw: object
    ) -> _Outcome:
        job_id = running.job_id
        try:
            action = decode_job(data, self.pool.handlers)
            timeout = _job_timeout(timeout_raw, deadline_raw)
        except Qoper8Error as exc:
            return self._failure(running, exc)
        if timeout is not None and timeout <= 0:
            return self._failure(
                running,
                JobTimeout(
                    f"job {job_id} waited in rq queue {self.queue!r} past its deadline; "
                    f"it was not run",
                    job_id=job_id,
                ),
            )
        try:
            value = await self.pool.submit(action, timeout=timeout, kill_on_cancel=True)
        except (PoolClosed, StartFailed, QueueFull) as exc:
            raise _HandBack(str(exc)) from None
        except Qoper8Error as exc:
            if isinstance(exc, JobError):
                exc.job_id = job_id
            return self._failure(running, exc)
        return self._success(running, value)

    def _success(self, running: _Running, value: JSONValue) -> _Outcome:
        try:
            encoded = orjson.dumps(value)
        except TypeError as exc:  # a pool result is JSON already; belt and braces
            return self._failure(running, InvalidAction(f"result is not JSON: {exc}"))
        ended = time.time()
        stream: list[str] = [
            "type",
            str(RESULT_SUCCESSFUL),
            "worker_name",
            self.name,
            "execution_id",
            running.execution_id,
            "execution_started_at",
            repr(running.started),
            "execution_ended_at",
            repr(ended),
        ]
        if value is not None:  # rq stores no return_value for None
            stream += ["return_value", base64.b64encode(encoded).decode()]
        reply = b'{"id":' + orjson.dumps(running.job_id) + b',"result":' + encoded + b"}"
        return _Outcome("finished", reply.decode(), [], stream)

    def _failure(self, running: _Running, exc: Qoper8Error) -> _Outcome:
        if isinstance(exc, JobError) and exc.job_id is None:
            exc.job_id = running.job_id
        info = error_to_dict(exc)
        tb = info.get("remote_traceback") or ""
        exc_string = f"{tb.rstrip()}\n" if tb else ""
        exc_string += f"qoper8.{type(exc).__name__}: {exc}"
        err_json = orjson.dumps(info)
        stream: list[str] = [
            "type",
            str(RESULT_FAILED),
            "worker_name",
            self.name,
            "exc_string",
            base64.b64encode(zlib.compress(exc_string.encode())).decode(),
            "execution_id",
            running.execution_id,
            "execution_started_at",
            repr(running.started),
            "execution_ended_at",
            repr(time.time()),
        ]
        # rq reads exc_info zlib-compressed or, failing that, as plain text (Job.restore);
        # plain text travels in the script's JSON argument
        fields = ["exc_info", exc_string, "qoper8_error", err_json.decode()]
        reply = b'{"id":' + orjson.dumps(running.job_id) + b',"error":' + err_json + b"}"
        return _Outcome("failed", reply.decode(), fields, stream)

    async def _write_outcome(self, running: _Running, outcome: _Outcome) -> None:
        job_id = running.job_id
        if outcome.status == "finished":
            ttl = DEFAULT_RESULT_TTL if running.result_ttl is None else running.result_ttl
            registry = self._finished_key
        else:
            ttl = DEFAULT_FAILURE_TTL if running.failure_ttl is None else running.failure_ttl
            registry = self._failed_key
        pool = self.pool
        arg: dict[str, Any] = {
            "id": job_id,
            "m": running.member,
            "x": running.execution_id,
            "s": outcome.status,
            "e": (ended := rq_now()),
            "reg": registry,
            "sc": "+inf" if ttl < 0 else repr(time.time() + ttl),
            "ttl": "-1" if ttl < 0 else str(ttl),
            "rk": running.reply_key,
            "rp": outcome.reply,
            "jf": outcome.job_fields,
            "sf": outcome.stream_fields,
            "w": self._worker_key,
        }
        take_args: list[Any] = []
        if not self._stopping and pool.is_open and pool.has_capacity():
            take_args = arg["t"] = [str(a) for a in self._take_args(ended)]
        args = [orjson.dumps(arg)]
        keys = [self._wip_key, self._queue_key, self._claim_key]
        backoff = _Backoff(f"consumer {self.name} job {job_id}", self.url)
        reply = await _retrying(
            f"consumer {self.name}: recording job {job_id}",
            backoff,
            lambda: self._finisher.call(keys, args),
            self._give_up,
        )
        written, nxt = reply if reply is not None else (None, None)
        running.finished = True
        if nxt:
            self._queue_seen_empty = False
            self._start([*nxt, take_args[3]])  # before this job leaves: the child's slot passes on
        self._running.pop(running.member, None)
        if not nxt:
            self._slot_freed.set()
        self.completed += 1
        if written == 0:
            logger.warning(
                "consumer %s: job %s ended after its lease was gone (reaped and queued "
                "again, or lost with a Redis restart); this outcome (%s) was not recorded, "
                "only sent to a waiting RedisPool if the job itself was gone too",
                self.name,
                job_id,
                outcome.status,
            )

    # ------------------------------------------------------------ leases
    async def _heartbeat_loop(self) -> None:
        backoff = _Backoff(f"consumer {self.name} heartbeat", self.url)
        interval = self.lease * HEARTBEAT_FRACTION
        while True:
            members = list(self._running)
            ok, lost = await backoff.attempt(functools.partial(self._heartbeat, members))
            if not ok:
                continue  # the backoff waited
            for m in lost or ():
                running = self._running.get(_text(m))
                if running is not None and not running.finished:
                    logger.warning(
                        "consumer %s: lease of job %s was lost (reaped while Redis could not "
                        "be reached?); it may run twice",
                        self.name,
                        running.job_id,
                    )
            await asyncio.sleep(interval)

    async def _heartbeat(self, members: list[str]) -> Any:
        """Renew this consumer's leases on ``members`` and its rq worker entry; returns
        the members whose lease was already gone."""
        return await self._script("heartbeat")(
            keys=[
                self._wip_key,
                self._consumers_key,
                WORKERS_KEY,
                self._queue_workers_key,
                self._worker_key,
            ],
            args=[
                time.time() + self._window,
                self.name,
                rq_now(),
                "busy" if members else "idle",
                int(self.lease * 2) + 60,
                self._birth,
                socket.gethostname(),
                os.getpid(),
                self.queue,
                *members,
            ],
        )

    async def _reap_loop(self) -> None:
        # Every host reaps; the script is atomic, so two reapers never requeue a job twice.
        backoff = _Backoff(f"consumer {self.name} reaper", self.url)
        interval = self.lease * REAP_FRACTION
        while True:
            await asyncio.sleep(interval * random.uniform(0.5, 1.0))
            await backoff.attempt(self.reap)

    async def reap(self, *, now: float | None = None) -> tuple[int, list[str], list[str]]:
        """Hand back dead consumers' claims and queue again (or fail) jobs whose lease
        expired by ``now`` (default: the current time). Returns (claims returned, job ids
        queued again, job ids failed)."""
        now = time.time() if now is None else now
        returned, requeued, failed = await self._script("reap")(
            keys=[self._wip_key, self._queue_key, self._failed_key, self._consumers_key],
            args=[
                now,
                rq_now(),
                DEFAULT_FAILURE_TTL,
                self._reason,
                self._reason_b64,
                self._error_prefix,
                self._error_suffix,
                REAP_BATCH,
            ],
        )
        req = [_text(x) for x in requeued]
        fail = [_text(x) for x in failed]
        if returned or req or fail:
            logger.warning(
                "reaper on %r: %d claimed ids of dead consumers returned, lease expired: "
                "%d queued again %s, %d failed %s",
                self.queue,
                returned,
                len(req),
                req[:10],
                len(fail),
                fail[:10],
            )
        return int(returned), req, fail

    # ------------------------------------------------------------ stopping
    async def _finish_running(self) -> None:
        """After the take loop ended: wait for running jobs up to the grace period, then
        cancel the rest (their children are killed) and hand them back."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.grace
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks:
            remaining = max(0.0, self._stop_deadline - time.monotonic())
            await asyncio.wait(tasks, timeout=remaining)
        leftovers = [r for r in self._running.values() if not r.finished]
        for r in leftovers:
            if r.task is not None:
                r.task.cancel()
        if self._jobs_task:
            await asyncio.wait(list(self._jobs_task), timeout=self.grace + 1)
        await self._hand_back(leftovers, final=True)

    async def _abandon(self) -> None:
        self._stopping = True
        leftovers = [r for r in self._running.values() if not r.finished]
        for r in leftovers:
            if r.task is not None:
                r.task.cancel()
        try:
            async with asyncio.timeout(ABANDON_TIMEOUT):
                await self._hand_back(leftovers, final=True)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.error(
                "consumer %s: cancelled; could not hand back %d jobs (%s); their leases will "
                "expire and the reaper will queue them again",
                self.name,
                len(leftovers),
                exc,
            )

    async def _hand_back(self, jobs: list[_Running], *, final: bool = False) -> None:
        members = [r.member for r in jobs]
        for r in jobs:
            r.finished = True
            self._running.pop(r.member, None)
        self._slot_freed.set()
        backoff = _Backoff(f"consumer {self.name} hand back", self.url)
        deadline = time.monotonic() + max(self.grace, 1.0)
        n = await _retrying(
            f"consumer {self.name}: handing back {len(members)} jobs",
            backoff,
            lambda: self._script("handback")(
                keys=[
                    self._wip_key,
                    self._queue_key,
                    self._claim_key,
                    self._consumers_key,
                    WORKERS_KEY,
                    self._queue_workers_key,
                    self._worker_key,
                ],
                args=[self.name, "1" if final else "0", *members],
            ),
            lambda: time.monotonic() > deadline,
        )
        if n:
            logger.info("consumer %s: handed %s jobs back to %r", self.name, n, self.queue)
        elif n is None and members:
            logger.error(
                "consumer %s: could not hand back %s; their leases will expire and the "
                "reaper will queue them again",
                self.name,
                members,
            )


class _HandBack(Exception):
    """The pool could not run the job (closing, broken): give it back untouched."""


def _reply_key(value: object) -> str:
    """A job's reply list, if it names one of ours: a job written by anyone who can reach
    Redis must not make a host push to (and set an expiry on) an arbitrary key."""
    key = _text(value) if value else ""
    return key if key.startswith(REPLY_PREFIX) else ""
