"""What code running in a child can say while it runs: progress and a stream of messages to the
caller of its job (``qoper8.Job``, or a generator handler's yields), a notice to the master
(``qoper8.notify``) and, through the master, a message to every other child
(``qoper8.publish``).

The child loop installs the ``Outbox`` these write to; in any other process they raise
``RuntimeError``. Everything is JSON, refused as a result is (not JSON, NaN, too big). The
child writes with blocking sends: when the caller stops reading a stream, the master stops
reading this child, and ``send()`` blocks until the caller catches up (backpressure).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, final

from . import protocol as proto
from .protocol import Kind

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Job", "Outbox", "actor_event", "notify", "publish"]

# A job sends at most one PROGRESS frame per this many seconds; in between, a newer value
# replaces the unsent one (latest wins). Shorter floods a slow caller with stale values;
# longer makes a progress bar look stuck.
PROGRESS_INTERVAL: Final = 0.05

_monotonic: Final = time.monotonic


class Outbox:
    """The frames a child sends besides its replies; one per child, owned by its loop."""

    def __init__(self, send: Callable[[Kind, int, bytes], None], limit: int) -> None:
        self._send = send
        self.limit = limit
        self.job_id = 0  # the job running now (0 between jobs)
        self.actor = ""  # the actor whose method runs now ("" outside one)
        self._progress: bytes | None = None  # the newest value not sent yet
        self._progress_sent = 0.0

    def begin(self, job_id: int) -> None:
        self.job_id = job_id
        self._progress = None
        self._progress_sent = 0.0

    def end(self) -> None:
        """The job's reply is next: its newest progress goes first, then no more."""
        if self._progress is not None:
            self._send(Kind.PROGRESS, self.job_id, self._progress)
            self._progress = None
        self.job_id = 0

    def message(self, job_id: int, value: object) -> None:
        self._check(job_id)
        body = proto.encode_value(value, "a message", self.limit)
        if self._progress is not None:  # a held-back progress goes out with the stream
            self._send(Kind.PROGRESS, job_id, self._progress)
            self._progress = None
            self._progress_sent = _monotonic()
        self._send(Kind.MESSAGE, job_id, body)

    def progress(self, job_id: int, value: object) -> None:
        self._check(job_id)
        body = proto.encode_value(value, "a progress value", self.limit)
        now = _monotonic()
        if now - self._progress_sent >= PROGRESS_INTERVAL:
            self._progress = None
            self._progress_sent = now
            self._send(Kind.PROGRESS, job_id, body)
        else:
            self._progress = body  # replaces an older unsent one

    def speak(self, kind: Kind, topic: str, payload: object) -> None:
        """A NOTIFY or PUBLISH frame (``notify`` and ``publish``)."""
        proto.check_topic(topic)
        body = proto.encode_value({"topic": topic, "payload": payload}, "a notice", self.limit)
        self._send(kind, self.job_id, body)

    def actor_event(self, event: str, payload: object) -> None:
        if not self.actor:
            raise RuntimeError("qoper8.actor_event runs only inside an actor's method")
        body = {"actor": self.actor, "event": event, "payload": payload}
        self._send(Kind.ACTOR_EVENT, 0, proto.encode_value(body, "an actor event", self.limit))

    def _check(self, job_id: int) -> None:
        if job_id != self.job_id:
            raise RuntimeError(f"job {job_id} is over: it can no longer send messages")


# Installed by the child loop; None in any process that is not a qoper8 child.
_outbox: Outbox | None = None


def install(outbox: Outbox | None) -> None:
    global _outbox
    _outbox = outbox


def _current() -> Outbox:
    if _outbox is None:
        raise RuntimeError("this runs only inside a qoper8 child")
    return _outbox


@final
class Job:
    """The job a handler is running, given to a handler that declares a parameter annotated
    ``qoper8.Job`` (injected, never read from the action).

    Example:
        ```python
        @worker.handler("report.build")
        def build(month: str, job: qoper8.Job) -> dict:
            for i, row in enumerate(rows(month)):
                job.progress({"done": i})     # the newest wins; paced, never a flood
                job.send({"row": row})        # every message, in order
            return {"rows": i + 1}
        ```
    """

    __slots__ = ("id",)

    def __init__(self, job_id: int) -> None:
        self.id = job_id

    def progress(self, value: Any) -> None:
        """Report progress to the caller (``on_progress``, ``stream.progress``). Only the
        newest value matters: one sent within the last 50 ms is replaced, not queued.

        Raises:
            TypeError, ValueError: ``value`` is not JSON, or is too big.
            RuntimeError: the job is over.
        """
        _current().progress(self.id, value)

    def send(self, value: Any) -> None:
        """Send one message of the job's stream; the caller gets every one, in order. Blocks
        while the caller is a full window behind (backpressure).

        Raises:
            TypeError, ValueError: ``value`` is not JSON, or is too big.
            RuntimeError: the job is over.
        """
        _current().message(self.id, value)

    def __repr__(self) -> str:
        return f"<qoper8.Job {self.id}>"


def notify(topic: str, payload: Any = None) -> None:
    """From a handler or a hook, tell the master: its ``pool.on_message(topic, callback)``
    callbacks get ``payload``.

    Raises:
        ValueError: ``topic`` is not a dotted name, or under ``qoper8.``; ``payload`` is not
            JSON or too big (``TypeError`` for a non-JSON type).
        RuntimeError: not inside a qoper8 child.
    """
    _current().speak(Kind.NOTIFY, topic, payload)


def publish(topic: str, payload: Any = None) -> None:
    """From a handler or a hook, send ``payload`` to every *other* child's
    ``@worker.on_message(topic)`` handler, through the master (each runs it between its jobs).

    Raises:
        ValueError, TypeError, RuntimeError: as ``notify``.
    """
    _current().speak(Kind.PUBLISH, topic, payload)


def actor_event(event: str, payload: Any = None) -> None:
    """From inside an actor's method, send an event to every current subscriber of that
    actor (``async for event in ref.events()``), in order.

    Raises:
        ValueError, TypeError: ``payload`` is not JSON, or too big.
        RuntimeError: not inside an actor's method.
    """
    _current().actor_event(event, payload)
