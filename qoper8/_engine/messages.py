"""``Messenger``: the master's side of messages that are not a job's. It sends broadcasts and
asks to children's ``on_message`` functions (through the dispatcher, between their jobs),
keeps the sticky payloads that every child started later gets before its first job, relays
what a child publishes to every other child, and hands what children ``notify`` to the
``pool.on_message`` callbacks without ever blocking the loop's reading of children.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Final

from ..errors import JobTimeout, Qoper8Error
from . import protocol as proto
from .delivery import BroadcastResult, ChildReply, Delivery, Notice

if TYPE_CHECKING:
    from collections.abc import Callable

    from .child import Child
    from .dispatcher import Dispatcher
    from .supervisor import Supervisor

__all__ = ["Messenger"]

logger = logging.getLogger("qoper8")

# Notices waiting for a slow synchronous callback; past this many, new ones are dropped (and
# counted in the log) rather than letting children's chatter grow the master's memory.
MAX_PENDING_NOTICES: Final = 10_000
_DELIVER: Final = proto.Kind.DELIVER


class Messenger:
    """Broadcasts, asks, sticky replays, publish relays and notices (see the module)."""

    def __init__(
        self, dispatcher: Dispatcher, supervisor: Supervisor, children: Callable[[], list[Child]]
    ) -> None:
        self._dispatcher = dispatcher
        self._supervisor = supervisor
        self._all_children = children
        self._next_id = 1
        self._sticky: dict[str, bytes] = {}  # topic -> its newest DELIVER payload
        self._callbacks: dict[str, list[Callable[[Notice], object]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._thread: _CallbackThread | None = None
        dispatcher.notices = self._notice
        supervisor.greet = self._greet

    # ------------------------------------------------------------ to children

    def _delivery(self, topic: str, payload: bytes, future: asyncio.Future[Any] | None) -> Delivery:
        delivery_id, self._next_id = self._next_id, self._next_id + 1
        return Delivery(delivery_id, topic, proto.frame(_DELIVER, delivery_id, payload), future)

    @staticmethod
    def _payload(topic: str, payload: object, reply: bool, limit: int) -> bytes:
        body = {"topic": topic, "payload": payload, "reply": reply}
        try:
            return proto.encode_value(body, f"the message on {topic!r}", limit)
        except (TypeError, ValueError) as exc:
            from ..errors import InvalidAction

            raise InvalidAction(str(exc)) from None

    async def broadcast(
        self, topic: str, payload: object, *, timeout: float | None, sticky: bool
    ) -> BroadcastResult:
        proto.check_topic(topic)
        limit = self._dispatcher.max_bytes
        body = self._payload(topic, payload, True, limit)
        if sticky:
            self._sticky[topic] = self._payload(topic, payload, False, limit)
        loop = asyncio.get_running_loop()
        waits: list[tuple[Child, asyncio.Future[Any]]] = []
        replies: list[ChildReply] = []
        for child in self._live():
            if child.was_ready and topic not in child.topics:
                replies.append(ChildReply(child.id, child.pid, error=_unknown(topic, child)))
                continue
            future = loop.create_future()
            self._dispatcher.deliver(child, self._delivery(topic, body, future))
            waits.append((child, future))
        if waits:
            await asyncio.wait([f for _, f in waits], timeout=timeout)
        for child, future in waits:
            if not future.done():
                # The message still reaches the child (between its jobs); only its answer
                # comes too late to be reported.
                future.add_done_callback(_retrieve)
                error: Qoper8Error | None = JobTimeout(
                    f"{child.describe()} did not answer the message on {topic!r} within {timeout}s"
                )
                replies.append(ChildReply(child.id, child.pid, error=error))
            elif (exc := future.exception()) is not None:
                error = exc if isinstance(exc, Qoper8Error) else Qoper8Error(str(exc))
                replies.append(ChildReply(child.id, child.pid, error=error))
            else:
                replies.append(ChildReply(child.id, child.pid, value=future.result()))
        replies.sort(key=lambda r: r.child)
        return BroadcastResult(topic, tuple(replies))

    async def ask(self, child: Child, topic: str, payload: object, *, timeout: float | None) -> Any:
        proto.check_topic(topic)
        if child.was_ready and topic not in child.topics:
            raise _unknown(topic, child)
        body = self._payload(topic, payload, True, self._dispatcher.max_bytes)
        future = asyncio.get_running_loop().create_future()
        delivery = self._delivery(topic, body, future)
        self._dispatcher.deliver(child, delivery)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            self._dispatcher.withdraw(child, delivery)
            future.add_done_callback(_retrieve)
            raise JobTimeout(
                f"{child.describe()} did not answer {topic!r} within {timeout}s"
            ) from None

    def _live(self) -> list[Child]:
        return [
            c
            for c in self._all_children()
            if c.is_alive and not c.retiring and not c.retire_requested
        ]

    def _greet(self, child: Child) -> None:
        """A new child gets the sticky payloads first, before its first job."""
        for topic, body in self._sticky.items():
            child.inbox.append(self._delivery(topic, body, None))

    # ------------------------------------------------------------ from children

    def on_message(self, topic: str, callback: Callable[[Notice], object]) -> Callable[[], None]:
        proto.check_topic(topic)
        self._callbacks.setdefault(topic, []).append(callback)

        def remove() -> None:
            callbacks = self._callbacks.get(topic, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return remove

    def _notice(self, child: Child, kind: int, payload: bytes) -> None:
        try:
            info = proto.loads(payload)
            topic = proto.check_topic(info["topic"])
        except (ValueError, KeyError, TypeError) as exc:
            child.protocol_violation(f"bad notice: {exc}")
            return
        if kind == proto.Kind.PUBLISH:
            body = self._payload(topic, info.get("payload"), False, self._dispatcher.max_bytes)
            for other in self._live():
                if other is not child and (not other.was_ready or topic in other.topics):
                    self._dispatcher.deliver(other, self._delivery(topic, body, None))
            return
        notice = Notice(topic, info.get("payload"), child.id, child.pid)
        for callback in self._callbacks.get(topic, ()):
            self._run(callback, notice)

    def _run(self, callback: Callable[[Notice], object], notice: Notice) -> None:
        """An async callback runs as a task; a plain one on a thread of its own, in order,
        so that a slow one never holds up the loop."""
        if inspect.iscoroutinefunction(callback):
            task = asyncio.ensure_future(callback(notice))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
            return
        if self._thread is None:
            self._thread = _CallbackThread()
        self._thread.put(callback, notice)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("an on_message callback failed", exc_info=task.exception())

    def close(self) -> None:
        if self._thread is not None:
            self._thread.close()
        for task in self._tasks:
            task.cancel()


class _CallbackThread:
    """Runs plain ``on_message`` callbacks one after the other, off the loop."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Callable[[Notice], object], Notice] | None] = queue.Queue()
        self._dropped = 0
        self._thread = threading.Thread(target=self._work, name="qoper8-notices", daemon=True)
        self._thread.start()

    def put(self, callback: Callable[[Notice], object], notice: Notice) -> None:
        if self._queue.qsize() >= MAX_PENDING_NOTICES:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % MAX_PENDING_NOTICES == 0:
                logger.warning("on_message callbacks are behind: %d notices dropped", self._dropped)
            return
        self._queue.put((callback, notice))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            callback, notice = item
            try:
                callback(notice)
            except Exception:
                logger.exception("an on_message callback failed")

    def close(self) -> None:
        self._queue.put(None)


def _unknown(topic: str, child: Child) -> Qoper8Error:
    from ..errors import InvalidAction

    known = ", ".join(sorted(child.topics)) or "none"
    message = f"{child.describe()} has no on_message function for {topic!r} (known: {known})"
    return InvalidAction(
        message, errors=[{"loc": ["topic"], "msg": message, "type": "unknown_topic"}]
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
