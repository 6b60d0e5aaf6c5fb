"""``Delivery``: one message for one child's ``on_message`` function (a broadcast's share, an
ask, a relayed publish), and the typed answers it can end in. A plain record, owned by the
loop thread; the dispatcher moves it, the messenger makes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._error_base import describe_exit
from ..errors import ChildDied, InvalidAction, JobFailed, Qoper8Error
from . import protocol as proto

if TYPE_CHECKING:
    import asyncio

    from .._types import JSONValue
    from .child import Child

__all__ = ["BroadcastResult", "ChildReply", "Delivery", "Notice"]


class Delivery:
    """A message on its way to one child: its DELIVER frame, built once, and the future of
    its answer (None when nobody waits for one: a publish, a sticky replay)."""

    __slots__ = ("frame", "future", "id", "topic")

    def __init__(
        self, delivery_id: int, topic: str, frame: bytes, future: asyncio.Future[Any] | None
    ) -> None:
        self.id = delivery_id
        self.topic = topic
        self.frame = frame
        self.future = future

    def answer(self, kind: int, payload: bytes, child: Child) -> None:
        """Settle the future from the child's REPLY or REPLY_ERROR."""
        future = self.future
        if future is None or future.done():
            return
        try:
            info = proto.loads(payload)
        except ValueError as exc:
            future.set_exception(JobFailed(str(exc), remote_type="ValueError", remote_message=""))
            return
        if kind == proto.Kind.REPLY:
            future.set_result(info)
        else:
            future.set_exception(reply_error(info, self.topic, child))

    def lost(self, child: Child, before: bool) -> None:
        """``child`` died before it answered (``before``: before it even got the message)."""
        future = self.future
        if future is None or future.done():
            return
        how = describe_exit(child.exitcode, child.signal)
        when = "before it got" if before else "before it answered"
        future.set_exception(
            ChildDied(
                f"{child.describe()} {how} {when} the message on {self.topic!r}",
                pid=child.pid,
                exitcode=child.exitcode,
                signal=child.signal,
            )
        )


def reply_error(info: dict[str, Any], topic: str, child: Child) -> Qoper8Error:
    """The typed error of a child's REPLY_ERROR report (an unknown topic or a payload its
    function refused is InvalidAction; a function that raised is JobFailed)."""
    from .._error_data import error_entries

    message = str(info.get("message", ""))
    if info.get("category") == proto.ErrorCategory.INVALID:
        entries = error_entries(info.get("errors"))
        return InvalidAction(message, errors=entries or None)
    status, code = info.get("status"), info.get("code")
    return JobFailed(
        f"{child.describe()}: on_message {topic!r} failed: {info.get('type')}: {message}",
        remote_type=str(info.get("type")),
        remote_message=message,
        remote_traceback=str(info.get("traceback", "")),
        remote_types=tuple(str(t) for t in info.get("types") or ()),
        status=status if type(status) is int else None,
        code=None if code is None else str(code),
        details=info.get("details"),
    )


@dataclass(frozen=True, slots=True)
class ChildReply:
    """One child's answer to a broadcast: its reply, or the error that took its place.
    ``host``: the Redis host (its consumer name) of the child, from ``RedisPool.broadcast``
    (child ids are a host's own, so ``BroadcastResult.values`` merges hosts: read
    ``replies``); child 0 there is a host that did not answer as a whole. None locally."""

    child: int
    pid: int | None
    value: JSONValue = None
    error: Qoper8Error | None = None
    host: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """What ``broadcast`` got back, one entry per live child: the reply, or ``JobFailed``
    (its function raised), ``InvalidAction`` (it has no function for the topic),
    ``ChildDied`` (it died first) or ``JobTimeout`` (no answer in time): a dead child and a
    slow one are told apart."""

    topic: str
    replies: tuple[ChildReply, ...] = field(default_factory=tuple)

    @property
    def values(self) -> dict[int, JSONValue]:
        """The replies of the children that answered, by child id."""
        return {r.child: r.value for r in self.replies if r.error is None}

    @property
    def errors(self) -> dict[int, Qoper8Error]:
        """The errors in place of a reply, by child id."""
        return {r.child: r.error for r in self.replies if r.error is not None}

    @property
    def complete(self) -> bool:
        """Whether every child answered."""
        return all(r.error is None for r in self.replies)


@dataclass(frozen=True, slots=True)
class Notice:
    """What a child said with ``qoper8.notify(topic, payload)``, as ``pool.on_message``
    callbacks get it."""

    topic: str
    payload: JSONValue
    child: int
    pid: int | None
