"""``PoolBatch``: many jobs in one call, ``map`` of actions and ``map_calls`` of a function,
results in the order given. One call, one queue insertion, one future the caller awaits
(``batch.py``): the master's cost per job drops to its own work (encode, send, read, decode)
with none of asyncio's per-awaiter machinery.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson

from .._types import DEFAULT
from ..errors import InvalidAction
from . import protocol as proto
from .batch import Batch
from .encoding import encode_action, refuse_ambiguous_timeout
from .job import JobKind
from .results import validate_result
from .role import unknown_role

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from pydantic import BaseModel

    from .dispatcher import Dispatcher

__all__ = ["PoolBatch"]

T = TypeVar("T")
_UNSET: Final[Any] = DEFAULT
_dumps: Final = orjson.dumps
_encode_model: Final = proto.encode_model


class PoolBatch:
    """``map()`` and ``map_calls()`` (``qoper8.Pool`` inherits them)."""

    _name: str
    _dispatcher: Dispatcher

    def _encode_call(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bytes, str]:
        raise NotImplementedError

    async def map(
        self,
        actions: Iterable[Mapping[str, Any] | BaseModel],
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        return_exceptions: bool = False,
        kill_on_cancel: bool = False,
        result_type: type[T] | None = None,
    ) -> list[Any]:
        """Run many actions and return their results in the order given: what ``submit``
        does for each, at a fraction of the master's cost per job.

        Example:
            ```python
            users = await pool.map({"type": "user.get", "id": i} for i in range(1000))
            ```

        Args:
            actions: the actions (each as ``submit`` takes one). Every one is checked before
                any runs: a malformed one refuses the whole batch.
            role: as ``submit`` (a pool of roles finds each action's role from its type).
            timeout: seconds from now until each unfinished job's ``JobTimeout``; the pool's
                ``timeout`` when omitted.
            return_exceptions: put each job's error in its place in the list (as
                ``asyncio.gather`` does) instead of raising the first one; raising drops the
                jobs still queued (running ones finish, their results unused).
            kill_on_cancel: as ``submit``, for the running jobs if the caller is cancelled.
            result_type: validate each result into this type.

        Raises:
            InvalidAction: an action is refused (``errors`` locate it by index).
            JobFailed, JobTimeout, ChildDied, QueueFull, PoolClosed, StartFailed: the first
                job's error, unless ``return_exceptions``.
        """
        if role is not None and role != self._name:
            raise unknown_role(role, (self._name,))
        encoded = self._encode_actions(actions)
        results = await self._run_batch(
            JobKind.ACTION, encoded, timeout, return_exceptions, kill_on_cancel
        )
        if result_type is None:
            return results
        return [
            r if isinstance(r, BaseException) else validate_result(result_type, r, job_id=None)
            for r in results
        ]

    async def map_calls(
        self,
        func: Callable[..., T],
        /,
        *iterables: Iterable[Any],
        timeout: float | None = _UNSET,
        return_exceptions: bool = False,
    ) -> list[T]:
        """``func`` applied to each item (or to the items of several ``iterables`` zipped, as
        ``map`` does) in the children: ``run`` for each, as one batch.

        Raises:
            InvalidAction: ``func`` or an argument cannot be pickled (before any runs).
            JobFailed and the rest: as ``run`` (the first error, unless
                ``return_exceptions``).
        """
        if timeout is not _UNSET:
            refuse_ambiguous_timeout(func)
        encoded = [self._encode_call(func, args, {}) for args in zip(*iterables, strict=False)]
        return await self._run_batch(JobKind.CALL, encoded, timeout, return_exceptions, False)

    def _encode_actions(
        self, actions: Iterable[Mapping[str, Any] | BaseModel]
    ) -> list[tuple[bytes, str]]:
        dispatcher = self._dispatcher
        handlers, max_bytes = dispatcher.handlers, dispatcher.max_bytes
        encoded: list[tuple[bytes, str]] = []
        for index, action in enumerate(actions):
            # As Pool.submit: a plain dict of a known type in one call; the rest, and every
            # refusal, through encode_action.
            action_type = action.get("type") if type(action) is dict else None
            payload = None
            if type(action_type) is str and action_type in handlers:
                try:
                    payload = _dumps(action, default=_encode_model)
                except TypeError:
                    payload = None
            try:
                if payload is None or len(payload) > max_bytes:
                    action_type, payload = encode_action(action, handlers, max_bytes)
                elif payload.find(b"null") >= 0:
                    proto.refuse_non_finite(action, str(action_type))
            except InvalidAction as exc:
                raise _located(exc, index) from None
            assert action_type is not None
            encoded.append((payload, action_type))
        return encoded

    async def _run_batch(
        self,
        kind: JobKind,
        encoded: list[tuple[bytes, str]],
        timeout: float | None,
        return_exceptions: bool,
        kill_on_cancel: bool,
    ) -> list[Any]:
        dispatcher = self._dispatcher
        if dispatcher.bounded:
            # A bounded queue: each job waits for room as submit's would.
            return await self._one_by_one(kind, encoded, timeout, return_exceptions)
        loop = dispatcher.loop
        if loop is None:
            dispatcher.admit(timeout)  # raises: not started
        assert loop is not None
        batch = Batch(len(encoded), loop, return_exceptions)
        dispatcher.enqueue_batch(kind, encoded, batch, timeout)
        try:
            return await batch.done
        except BaseException as exc:
            kill = kill_on_cancel and isinstance(exc, asyncio.CancelledError)
            for job in batch.jobs:
                if not job.ended:
                    dispatcher.cancel(job, kill)
            raise

    async def _one_by_one(
        self,
        kind: JobKind,
        encoded: list[tuple[bytes, str]],
        timeout: float | None,
        return_exceptions: bool,
    ) -> list[Any]:
        dispatcher = self._dispatcher

        async def one(payload: bytes, name: str) -> Any:
            job = dispatcher.enqueue(kind, payload, name, timeout, True)
            if job is None:
                job = await dispatcher.enqueue_when_room(kind, payload, name, timeout)
            try:
                return await job.future
            except asyncio.CancelledError:
                dispatcher.cancel(job, False)
                raise

        return await asyncio.gather(
            *(one(p, n) for p, n in encoded), return_exceptions=return_exceptions
        )


def _located(exc: InvalidAction, index: int) -> InvalidAction:
    """``exc`` about the action at ``index`` of a batch."""
    errors = [{**e, "loc": [index, *e["loc"]]} for e in exc.errors]
    return InvalidAction(f"action {index}: {exc}", errors=errors)  # type: ignore[arg-type]
