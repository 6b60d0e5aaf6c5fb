"""``RedisPool``: submit actions to pools on other hosts through an rq queue, with the same
``submit`` as the local ``Pool``.

It validates and encodes the action here, and leaves Redis (keys, scripts, reconnecting) to
``client``, which it imports only when opened, so that ``import qoper8`` never needs redis
installed.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final, TypeVar, final, overload

from .._engine.protocol import encode_action, loads
from .._engine.results import validate_result
from .._types import DEFAULT
from ..errors import ConfigError, InvalidAction, PoolClosed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from types import TracebackType

    from pydantic import BaseModel

    from .._engine.delivery import BroadcastResult
    from .._types import JSONValue
    from .actor_client import RedisActors
    from .client import RedisClient
    from .stream_reader import RedisStream
    from .stream_reads import StreamReads

__all__ = ["RedisPool"]

T = TypeVar("T")

_UNSET: Final[Any] = DEFAULT  # "not given": the RedisPool's own timeout applies


@final
class RedisPool:
    """Submit actions to the qoper8 hosts serving an rq queue, as if they were a local pool.

    Jobs are rq jobs (JSON serializer), so ``rq info`` and ``Job.fetch`` see them. Delivery
    is at least once: a job whose host dies mid-run runs again on another host.

    Example:
        ```python
        async with qoper8.RedisPool("redis://redis:6379/0", queue="users") as pool:
            user = await pool.submit({"type": "user.get", "id": 1}, timeout=5.0)
        ```

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL, password included if any.
        queue: the rq queue the hosts serve (``qoper8 serve --redis URL --queue NAME``).
        timeout: default deadline of each job in seconds; ``None`` waits as long as it takes.
        result_ttl: seconds rq keeps a finished job's result (rq's default: 500).

    Raises:
        ConfigError: the redis extra is not installed, or a setting is invalid.
    """

    def __init__(
        self,
        url: str,
        *,
        queue: str = "default",
        timeout: float | None = None,
        result_ttl: int | None = None,
    ) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(f"{url!r} is not a Redis URL like redis://host:6379/0")
        if not queue or any(c.isspace() for c in queue):
            raise ConfigError(f"{queue!r} is not a queue name")
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"timeout must be positive or None, not {timeout!r}")
        self.url = url
        self.queue = queue
        self.timeout = timeout
        self.result_ttl = result_ttl
        self._client: RedisClient | None = None
        self._actors: RedisActors | None = None
        self._reads: StreamReads | None = None  # opened with the first stream
        self._closed = False

    async def __aenter__(self) -> RedisPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connect lazily: Redis need not be up yet (submits retry until their deadline).

        Raises:
            ConfigError: the redis extra is not installed.
        """
        if self._client is not None or self._closed:
            raise RuntimeError("a RedisPool can be started only once")
        try:
            from .client import RedisClient
        except ImportError as exc:
            raise ConfigError(
                f"Redis mode needs the redis extra: pip install 'qoper8[redis]' ({exc})"
            ) from None
        self._client = RedisClient(self.url, self.queue, result_ttl=self.result_ttl)
        await self._client.open()

    async def aclose(self) -> None:
        """Stop waiting for outcomes; pending submits raise ``PoolClosed``. Jobs already in
        Redis still run. Safe to call twice."""
        self._closed = True
        if self._actors is not None:
            await self._actors.aclose()
        if self._reads is not None:
            await self._reads.aclose()
        if self._client is not None:
            await self._client.aclose()

    @property
    def actors(self) -> RedisActors:
        """The named actors of the hosts serving the queue (``create``, ``get``,
        ``destroy``, ``list``), as ``pool.actors``; see ``RedisActors``.

        Raises:
            PoolClosed: the RedisPool is not started.
        """
        if self._actors is None:
            if self._client is None:
                raise PoolClosed("the RedisPool is not started")
            from .actor_client import RedisActors

            self._actors = RedisActors(self)
        return self._actors

    @property
    def is_open(self) -> bool:
        """Whether the pool takes jobs."""
        return self._client is not None and not self._closed

    @overload
    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: None = None,
        on_progress: Callable[[Any], object] | None = ...,
    ) -> JSONValue: ...
    @overload
    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: type[T],
        on_progress: Callable[[Any], object] | None = ...,
    ) -> T: ...

    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        wait_for_room: bool = True,
        result_type: type[T] | None = None,
        on_progress: Callable[[Any], object] | None = None,
    ) -> T | JSONValue:
        """Run one action on an idle child of any host serving the queue.

        Args:
            action: a mapping with a string ``type`` and JSON-able fields, or a pydantic
                model with a ``type`` field (encoded exactly as ``Pool.submit`` encodes it).
            timeout: seconds from now; the pool's ``timeout`` when omitted.
            kill_on_cancel: as for ``Pool.submit``: if the awaiting task is cancelled
                while a host runs the job, that host kills and replaces its child (at its
                next heartbeat, within ``lease / 6``) and rq records the job as stopped;
                otherwise the job runs on to its end. A job no host has taken yet is
                withdrawn from Redis either way.
            wait_for_room: accepted for compatibility; Redis queues are unbounded.
            result_type: validate the result into this type and return that.
            on_progress: called with each value the handler reports with
                ``job.progress()`` (an async function runs as a task); the job's host
                then writes them to the job's Redis stream, which this pool reads.

        Returns:
            The handler's result, as JSON data, or as ``result_type``.

        Raises:
            InvalidAction: malformed, not JSON (NaN included), or refused by the host
                (unknown type, bad params). JobFailed, JobTimeout, ChildDied: as from
                ``Pool.submit``. InvalidResult: the result does not fit ``result_type``.
            JobError: the job was abandoned by dying hosts more often than its retries.
            TransportError: Redis could not be reached before the deadline.
            PoolClosed: the RedisPool is closed.
        """
        del wait_for_room
        if on_progress is not None:
            async with self._stream(action, timeout, kill_on_cancel, on_progress, "p") as s:
                async for _ in s:
                    pass  # none: a progress-only stream carries no messages
                result: JSONValue = s.result
        else:
            client, data, timeout = self._prepare(action, timeout)
            result = await client.submit(data, timeout, kill_on_cancel=kill_on_cancel)
        if result_type is None:
            return result
        return validate_result(result_type, result, job_id=None)

    def _prepare(
        self, action: Mapping[str, Any] | BaseModel, timeout: float | None
    ) -> tuple[RedisClient, dict[str, Any], float | None]:
        if not self.is_open:
            raise PoolClosed("the RedisPool is closed" if self._closed else "not started")
        assert self._client is not None
        # Encoded and decoded once, so that what reaches Redis is plain JSON data, coerced
        # (datetime, UUID, ...) and refused (NaN, sets, ...) exactly as by the local pool.
        _, payload = encode_action(action)
        data = loads(payload)
        if timeout is _UNSET:
            timeout = self.timeout
        if timeout is not None and timeout <= 0:
            raise InvalidAction(f"timeout must be positive or None, not {timeout!r}")
        return self._client, data, timeout

    @contextlib.asynccontextmanager
    async def stream(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        on_progress: Callable[[Any], object] | None = None,
        wait_for_room: bool = True,
    ) -> AsyncIterator[RedisStream]:
        """Run one action on a host and read what its handler sends while it runs
        (``job.send``, or a generator handler's yields), in order, then its result: as
        ``Pool.stream``. The host writes them to a Redis stream of the job's own
        (``qoper8:msgs:{job id}``, bounded, expiring with the result).

        Example:
            ```python
            async with pool.stream({"type": "tokens", "prompt": "hi"}, timeout=30) as s:
                async for token in s:
                    print(token, end="")
                print(s.result)
            ```

        Args:
            action, timeout, kill_on_cancel, wait_for_room: as ``submit``.
            on_progress: called with each progress value (``stream.progress`` keeps the
                newest); an async function runs as a task.

        Yields:
            The stream: an async iterator of the messages; leaving the block early
            cancels the job (see ``RedisStream``).

        Raises:
            InvalidAction, PoolClosed: on entering.
            JobFailed, JobTimeout, ChildDied, JobError, TransportError: from the iteration,
            after the messages sent before the failure (JobError: the job's host died
            after messages were delivered; see ``RedisStream``).
        """
        del wait_for_room
        async with self._stream(action, timeout, kill_on_cancel, on_progress, "1") as s:
            yield s

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        action: Mapping[str, Any] | BaseModel,
        timeout: float | None,
        kill_on_cancel: bool,
        on_progress: Callable[[Any], object] | None,
        mode: str,
    ) -> AsyncIterator[RedisStream]:
        from .stream_reader import open_stream
        from .stream_reads import StreamReads

        client, data, timeout = self._prepare(action, timeout)
        if self._reads is None:
            self._reads = StreamReads(self.url, client.settle)
        stream = open_stream(client, self._reads, data, timeout, kill_on_cancel, on_progress, mode)
        try:
            yield stream
        finally:
            stream.close()

    async def broadcast(
        self,
        topic: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        sticky: bool = False,
    ) -> BroadcastResult:
        """Send a message to every child of every live host serving the queue (each host
        runs its pool's ``broadcast``), and return each child's answer.

        Args:
            topic: a dotted name (``qoper8.`` is reserved).
            payload: the ``on_message`` function's keyword arguments, as JSON.
            timeout: seconds to wait; the pool's ``timeout`` when omitted; ``None``
                waits ``REDIS_BROADCAST_TIMEOUT`` (a dead host must not hold it forever).
            sticky: every host keeps the payload for its children started later, and a
                host started later gets it (kept in ``qoper8:sticky:{queue}``).

        Returns:
            One ``ChildReply`` per child, its ``host`` set: the reply or the error (as
            ``Pool.broadcast``); a host that did not answer in time is one entry with
            ``child`` 0 and a ``JobTimeout``.

        Raises:
            ValueError: not a dotted name, or a reserved one.
            InvalidAction: the payload is not JSON. TransportError: Redis unreachable.
            PoolClosed: the RedisPool is closed.
        """
        from .broadcast import broadcast

        if not self.is_open:
            raise PoolClosed("the RedisPool is closed" if self._closed else "not started")
        assert self._client is not None
        if timeout is _UNSET:
            timeout = self.timeout
        return await broadcast(self._client, topic, payload, timeout=timeout, sticky=sticky)
