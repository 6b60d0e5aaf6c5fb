"""Taking jobs for ``RedisConsumer``: wait for an idle child, take (or claim) one job, run it
on the pool, record its outcome and, in the same call, take the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from .._engine.tracing import continued
from ..errors import JobError, JobTimeout, PoolClosed, Qoper8Error, QueueFull, StartFailed
from .connection import BLOCK_SECONDS, _retrying
from .consumer_base import _Running
from .jobs import (
    DEFAULT_FAILURE_TTL,
    DEFAULT_RESULT_TTL,
    _int_or_none,
    _job_timeout,
    _text,
    decode_job,
    rq_now,
)
from .leases import _Leases
from .outcome import _Outcome, _Outcomes
from .scripts import REPLY_PREFIX
from .stream_host import _Streaming

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["_HandBack"]

logger = logging.getLogger("qoper8.redis")


class _Taking(_Streaming, _Leases, _Outcomes):
    """Takes a job only when the pool has an idle child, runs it, records its outcome."""

    async def _take_loop(self) -> None:
        backoff = self._backoff(f"consumer {self.name}")
        pool = self.pool
        self._interruptible = True
        try:
            await self._listening_ready.wait()  # the queue's sticky topics go first
        finally:
            self._interruptible = False
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
            assert self._blocking is not None
            self._interruptible = True
            try:
                moved = await self._blocking.command(
                    "BLMOVE",
                    self._queue_key,
                    self._claim_key,
                    "LEFT",
                    "RIGHT",
                    BLOCK_SECONDS,
                    block=BLOCK_SECONDS,
                )
            except Exception:
                # stop() closed the connection (an id moved meanwhile stays claimed, and the
                # final hand back returns it)
                if self._stop_requested():
                    return None
                raise
            finally:
                self._interruptible = False
            if moved is None or self._stopping:
                return None
            raw = await self._take_script()
        return raw

    def _take_args(self, now: float) -> list[Any]:
        self._executions += 1
        return [
            now,
            now + self._window,
            self.name,
            f"{self._execution_prefix}{self._executions:016x}",  # as unique as rq's uuid4
            self.max_retries,
            rq_now(now),
            int(self.lease * 2) + 60,
        ]

    async def _take_script(self) -> list[Any] | None:
        args = self._take_args(time.time())
        raw, skipped = await self._script("take")(
            keys=[self._queue_key, self._wip_key, self._claim_key], args=args
        )
        self._log_skipped(skipped)
        if raw is None:
            return None
        result: list[Any] = [*raw, args[3]]
        return result

    def _log_skipped(self, skipped: list[Any] | None) -> None:
        """Ids the take left in no state at all (no hash, not a hash, not waiting): the
        line is the only trace they leave."""
        if skipped:
            pairs = [
                f"{_text(i)} ({_text(why)})"
                for i, why in zip(skipped[::2], skipped[1::2], strict=True)
            ]
            logger.warning(
                "consumer %s: dropped %d ids from rq queue %r that name no job to run: %s",
                self.name,
                len(pairs),
                self.queue,
                ", ".join(pairs[:10]),
            )

    def _start(self, raw: list[Any]) -> None:
        running = self._register(raw)
        task = asyncio.create_task(self._run_jobs(running, raw))
        running.task = task
        self._jobs_task.add(task)
        task.add_done_callback(self._jobs_task.discard)

    def _register(self, raw: list[Any]) -> _Running:
        running = _Running(
            job_id=_text(raw[0]),
            execution_id=raw[9],
            started=time.time(),
            reply_key=_reply_key(raw[3]),
            result_ttl=_int_or_none(raw[5]),
            failure_ttl=_int_or_none(raw[6]),
            stream=_text(raw[7]) if raw[7] else "",
        )
        self._running[running.member] = running
        self.taken += 1
        return running

    async def _run_jobs(self, running: _Running, raw: list[Any]) -> None:
        """Run a job and, when its finish took the child's next one, run that one too, in
        this same task: no task to create and schedule between a child's two jobs."""
        nxt: tuple[_Running, list[Any]] | None = (running, raw)
        while nxt is not None:
            running, raw = nxt
            nxt = await self._run_job(running, raw[1], raw[2], raw[4], raw[8])

    async def _run_job(
        self,
        running: _Running,
        data: bytes,
        timeout_raw: object,
        deadline_raw: object,
        trace: bytes | None,
    ) -> tuple[_Running, list[Any]] | None:
        """Run one job and record its outcome; returns the next job the finish took."""
        try:
            outcome = await self._execute(running, data, timeout_raw, deadline_raw, trace)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not running.stop_requested or self._stopping or task is None:
                return None  # stop() hands it back
            task.uncancel()  # the heartbeat's doing: the child is killed; record it
            outcome = self._failure(
                running,
                JobError(f"job {running.job_id} was cancelled by its caller; its child was killed"),
            )
            outcome.status = "stopped"  # rq's JobStatus.STOPPED, in the FailedJobRegistry
        except _NoIdleChild:
            # Routine on a host that also serves HTTP or local submits: not worth a line each.
            logger.debug(
                "consumer %s: job %s handed back: no idle child", self.name, running.job_id
            )
            self.handed_back += 1
            await self._hand_back([running])
            return None
        except _HandBack as hb:
            logger.info("consumer %s: job %s handed back: %s", self.name, running.job_id, hb)
            self.handed_back += 1
            await self._hand_back([running])
            return None
        except Exception as exc:  # a bug here must not leave the job leased forever
            logger.exception("consumer %s: job %s failed inside qoper8", self.name, running.job_id)
            outcome = self._failure(
                running, JobError(f"qoper8 failed to run job {running.job_id}: {exc!r}")
            )
        if running.meta is not None or running.writer is not None:
            await self._end_messages(running, outcome)
        return await self._write_outcome(running, outcome)

    async def _execute(
        self,
        running: _Running,
        data: bytes,
        timeout_raw: object,
        deadline_raw: object,
        trace: bytes | None = None,
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
        # Hold a Redis job only while a child is idle for it. The take (or the BLMOVE) went
        # out when one was, but HTTP or local submits may have used it since; queued here,
        # the job would wait for this host while other hosts have idle children. Nothing
        # awaits between this check and the pool's dispatch inside submit().
        if not self.pool.has_capacity():
            raise _NoIdleChild
        try:
            if trace is None:
                value = await self._run_action(running, action, timeout)
            else:  # the caller's span (OpenTelemetry): the pool's spans continue it
                with continued(trace):
                    value = await self._run_action(running, action, timeout)
        except (PoolClosed, StartFailed, QueueFull) as exc:
            raise _HandBack(str(exc)) from None
        except Qoper8Error as exc:
            if isinstance(exc, JobError):
                exc.job_id = job_id
            return self._failure(running, exc)
        return self._success(running, value)

    async def _write_outcome(
        self, running: _Running, outcome: _Outcome
    ) -> tuple[_Running, list[Any]] | None:
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
            "e": rq_now(now := time.time()),
            "reg": registry,
            "sc": "+inf" if ttl < 0 else repr(now + ttl),
            "ttl": "-1" if ttl < 0 else str(ttl),
            "rk": running.reply_key,
            "rp": outcome.reply,
            "jf": outcome.job_fields,
            "sf": outcome.stream_fields,
            "w": self._worker_key,
        }
        take_args: list[Any] = []
        if not self._stopping and pool.is_open and pool.has_capacity():
            take_args = arg["t"] = [str(a) for a in self._take_args(now)]
        args = [orjson.dumps(arg)]
        keys = [self._wip_key, self._queue_key, self._claim_key]
        backoff = self._backoff(f"consumer {self.name} job {job_id}")
        running.recording = True
        reply = await _retrying(
            f"consumer {self.name}: recording job {job_id}",
            backoff,
            lambda: self._record(keys, args),
            self._give_up,
        )
        written, nxt, skipped = reply if reply is not None else (None, None, None)
        self._log_skipped(skipped)
        running.finished = True
        following = None
        if nxt:
            self._queue_seen_empty = False
            # registered before this job leaves: the child's slot passes on
            raw = [*nxt, take_args[3]]
            following = (self._register(raw), raw)
            following[0].task = running.task
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
        return following

    def _record(self, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        """The finish script: records an outcome and may take the child's next job. The
        Wire pipelines it with the other finishes of the same loop turn."""
        future: Awaitable[Any] = self._script("finish")(keys=keys, args=args)
        return future


class _HandBack(Exception):
    """The pool could not run the job (closing, broken): give it back untouched."""


class _NoIdleChild(_HandBack):
    """The child that was idle when the job was taken is busy now: give the job back to
    the queue front, where the next host with an idle child takes it."""


def _reply_key(value: object) -> str:
    """A job's reply list, if it names one of ours: a job written by anyone who can reach
    Redis must not make a host push to (and set an expiry on) an arbitrary key."""
    key = _text(value) if value else ""
    return key if key.startswith(REPLY_PREFIX) else ""
