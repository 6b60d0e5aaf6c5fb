"""``PoolMessages``: the messages face of a pool. A running handler's stream and progress
(``stream``), messages to children's ``on_message`` functions (``broadcast`` to all, ``ask``
one), and what children ``notify`` (``on_message``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

from .._types import DEFAULT
from ..errors import InvalidAction
from .encoding import encode_action
from .job import JobKind
from .role import unknown_role
from .stream import Stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from pydantic import BaseModel

    from .._types import JSONValue
    from .child import Child
    from .delivery import BroadcastResult, Notice
    from .dispatcher import Dispatcher
    from .messages import Messenger
    from .stats import ChildStatistics
    from .supervisor import Supervisor

__all__ = ["PoolMessages"]

# "Not given": the pool's own timeout applies; reads DEFAULT in help() and signatures.
_UNSET: Final[Any] = DEFAULT


class PoolMessages:
    """``stream``, ``broadcast``, ``ask`` and ``on_message`` (``qoper8.Pool`` inherits them)."""

    _name: str
    _dispatcher: Dispatcher
    _supervisor: Supervisor
    _messenger: Messenger

    @contextlib.asynccontextmanager
    async def stream(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        on_progress: Callable[[Any], object] | None = None,
        wait_for_room: bool = True,
    ) -> AsyncIterator[Stream]:
        """Run one action and read what its handler sends while it runs (``job.send``, or a
        generator handler's yields), in order, then its result.

        Example:
            ```python
            async with pool.stream({"type": "tokens", "prompt": "hi"}, timeout=30) as s:
                async for token in s:
                    print(token, end="")
                print(s.result)
            ```

        Args:
            action, role, timeout, kill_on_cancel, wait_for_room: as ``submit``.
            on_progress: called with each progress value (``stream.progress`` keeps the
                newest); an async function runs as a task.

        Yields:
            The ``Stream``: an async iterator of the messages; leaving the block early
            cancels the job (see ``Stream``).

        Raises:
            InvalidAction, QueueFull, PoolClosed, StartFailed: as ``submit``, on entering.
            JobFailed, JobTimeout, ChildDied: from the iteration, after the messages sent
            before the failure.
        """
        dispatcher = self._dispatcher
        if role is not None and role != self._name:
            raise unknown_role(role, (self._name,))
        action_type, payload = encode_action(action, dispatcher.handlers, dispatcher.max_bytes)
        job = dispatcher.enqueue(JobKind.ACTION, payload, action_type, timeout, wait_for_room)
        if job is None:
            job = await dispatcher.enqueue_when_room(JobKind.ACTION, payload, action_type, timeout)
        stream = Stream(job, dispatcher, kill_on_cancel=kill_on_cancel, on_progress=on_progress)
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
        """Send a message to every live child's ``@worker.on_message(topic)`` function: an
        idle child at once, a busy one right after its current job and before its next, a
        starting one after its ``on_start``. Returns once every child answered, or at
        ``timeout`` (a slow child then gets its message all the same, after its job).

        Args:
            topic: a dotted name (``qoper8.`` is reserved).
            payload: the function's keyword arguments, as JSON.
            timeout: seconds to wait for the answers; the pool's ``timeout`` when omitted.
            sticky: keep this payload as the topic's latest and give it to every child
                started later (respawn, recycling, resize, reload) before its first job.

        Returns:
            Per child, its reply or the error in its place (see ``BroadcastResult``).

        Raises:
            ValueError: not a dotted name, or a reserved one.
            InvalidAction: the payload is not JSON or too big.
        """
        if timeout is _UNSET:
            timeout = self._dispatcher.default_timeout
        return await self._messenger.broadcast(topic, payload, timeout=timeout, sticky=sticky)

    async def ask(
        self,
        child: int | ChildStatistics,
        topic: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        pid: bool = False,
    ) -> JSONValue:
        """Send a message to one child's ``on_message(topic)`` function (between its jobs)
        and return its answer.

        Args:
            child: the child's id (``statistics().children[i].id``), its statistics entry,
                or with ``pid=True`` its process id.
            topic, payload: as ``broadcast``.
            timeout: seconds to wait; the pool's ``timeout`` when omitted.

        Raises:
            InvalidAction: no such child, no function for the topic, or a payload refused.
            JobFailed: the function raised. ChildDied: the child died before it answered.
            JobTimeout: no answer in time (a message it had not got yet is withdrawn).
        """
        if timeout is _UNSET:
            timeout = self._dispatcher.default_timeout
        target = self._child(child, pid)
        answer: JSONValue = await self._messenger.ask(target, topic, payload, timeout=timeout)
        return answer

    def _child(self, ref: int | ChildStatistics, by_pid: bool) -> Child:
        children = self._supervisor.children
        if not isinstance(ref, int):
            found = children.get(ref.id)
        elif by_pid:
            found = next((c for c in children.values() if c.pid == ref), None)
        else:
            found = children.get(ref)
        if found is None or not found.is_alive:
            what = "pid" if by_pid else "child"
            raise InvalidAction(f"no live {what} {getattr(ref, 'id', ref)} in this pool")
        return found

    def on_message(self, topic: str, callback: Callable[[Notice], object]) -> Callable[[], None]:
        """Call ``callback`` with every ``Notice`` a child sends with
        ``qoper8.notify(topic, payload)``. A plain function runs on a thread of its own, in
        order; an async one as a task: neither ever holds up the loop's reading of children.

        Returns:
            A function that removes the callback.

        Raises:
            ValueError: not a dotted name, or a reserved one.
        """
        return self._messenger.on_message(topic, callback)
