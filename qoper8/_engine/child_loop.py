"""``ChildLoop``: a child's life after READY. It runs one job at a time (an action for a
handler, or a pickled call), and between jobs the messages the master delivers (broadcasts,
asks, what other children publish) for the worker module's ``on_message`` functions.

Imports only the stdlib and the child's side of the engine; pydantic comes with the first
handler that validates.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import traceback
from typing import TYPE_CHECKING, Any, Final

from ..errors import ReplaceChild
from . import child_api, replacing
from . import protocol as proto
from .child_api import Job, Outbox
from .main_module import import_main
from .protocol import Kind
from .reports import MAX_LOC_CHARS, clip, error_report
from .worker import ActionRefused

if TYPE_CHECKING:
    from ..errors import ErrorEntry
    from .actor_type import ActorType
    from .child_main import Channel
    from .handler import Handler
    from .worker import Worker

__all__ = ["EXIT_OK", "ChildLoop"]

EXIT_OK: Final = 0
# Kinds used per job, bound once: reading a member off an Enum class is slow in Python 3.11.
_ACTION: Final = Kind.ACTION
_CALL: Final = Kind.CALL
_RESULT: Final = Kind.RESULT
_INVALID: Final = proto.ErrorCategory.INVALID.value
_FAILED: Final = proto.ErrorCategory.FAILED.value
# A handler's request to replace this child (ReplaceChild, replace_child_after), read per job.
_PENDING: Final = replacing.pending


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _unknown(what: str, name: object) -> ActionRefused:
    """The report of an action (or a message) that no handler answers (the master checks
    this already once it knows the handlers; a child checks again, for the early ones)."""
    message = f"no {what} for {clip(repr(name), MAX_LOC_CHARS)}"
    loc = "type" if what.startswith("handler") else "topic"
    entry: ErrorEntry = {"loc": [loc], "msg": message, "type": f"unknown_{loc}"}
    return ActionRefused(message, [entry], 1)


class ChildLoop:
    """Runs jobs for the master, one at a time, until told to retire or the master goes."""

    def __init__(
        self,
        channel: Channel,
        worker: Worker,
        report_memory: bool,
        main: dict[str, str] | None = None,
    ) -> None:
        self.channel = channel
        self.worker = worker
        self.report_memory = report_memory
        # The master's main script, imported as __mp_main__ when a call first needs it.
        self._main = main
        self._loop: Any = None  # an asyncio loop, created only if a handler is async
        self.outbox = Outbox(channel.send, channel.limit)
        child_api.install(self.outbox)
        # The actors living in this child, by name: their type and the object.
        self._actors: dict[str, tuple[ActorType, object]] = {}

    def run(self) -> int:
        channel = self.channel
        while True:
            message = channel.read()
            if message is None:
                self._stop()
                return EXIT_OK
            kind, job_id, payload = message
            if kind == _ACTION:
                self._run_action(job_id, payload)
            elif kind == _CALL:
                self._run_call(job_id, payload)
            elif kind == Kind.DELIVER:
                self._deliver(job_id, payload)
            elif kind == Kind.ACTOR_CALL:
                self._actor_call(job_id, payload)
            elif kind == Kind.ACTOR_START:
                self._actor_start(job_id, payload)
            elif kind == Kind.ACTOR_STOP:
                self._actors.pop(str(proto.loads(payload).get("actor")), None)
            elif kind == Kind.RETIRE:
                self._stop()
                return EXIT_OK
            elif kind == Kind.TRACE:
                if not self._traced(job_id, payload):
                    self._stop()
                    return EXIT_OK
            else:
                raise proto.ProtocolError(f"unexpected frame kind {kind}")
            # Prints end up in the master line by line, with the job that made them.
            sys.stdout.flush()

    def _traced(self, job_id: int, trace: bytes) -> bool:
        """Run the job that follows a TRACE frame (the master writes both at once) inside
        its caller's trace context, so that the spans its handler starts are children of
        the caller's span; they are exported only if the worker module set up an
        OpenTelemetry SDK (in ``on_start``). False when the master went away meanwhile."""
        message = self.channel.read()
        if message is None:
            return False
        kind, next_id, payload = message
        if next_id != job_id or kind not in (_ACTION, _CALL):
            raise proto.ProtocolError(f"TRACE for job {job_id} followed by frame {kind}")
        from .tracing import continued

        with continued(trace):
            if kind == _ACTION:
                self._run_action(job_id, payload)
            else:
                self._run_call(job_id, payload)
        return True

    def _extra(self) -> int:
        return _rss_bytes() if self.report_memory else 0

    def _reply(self, kind: Kind, job_id: int, body: bytes, extra: int = 0) -> None:
        """Send a job's answer, preceded by REPLACE_ME when its handler asked for this child
        to be replaced: the master reads it first, so it retires the child after this
        answer instead of giving it another job."""
        if _PENDING.reason is not None:
            notice = proto.dumps({"reason": replacing.take()})
            self.channel.send(Kind.REPLACE_ME, job_id, notice)
        self.channel.send(kind, job_id, body, extra)

    def _run_action(self, job_id: int, payload: bytes) -> None:
        send = self._reply
        try:
            action = proto.loads(payload)
            action_type = action.pop("type")
            handler = self.worker.get(action_type)
            if handler is None:
                raise _unknown("handler for action type", action_type)
            kwargs = handler.bind(action)
        except Exception as exc:
            send(Kind.ERROR, job_id, self._report(_INVALID, exc))
            return
        outbox = self.outbox
        outbox.begin(job_id)
        try:
            result = self._call(handler, kwargs, job_id)
        except BaseException as exc:
            if isinstance(exc, SystemExit | KeyboardInterrupt):
                raise
            if isinstance(exc, ReplaceChild):
                replacing.replace_child_after(str(exc))
            outbox.end()
            send(Kind.ERROR, job_id, self._report(_FAILED, exc), self._extra())
            return
        outbox.end()
        try:
            body = proto.dumps(result)
        except TypeError as exc:
            self._fail(
                job_id, TypeError(f"the result of handler {action_type!r} is not JSON: {exc}")
            )
            return
        if body.find(b"null") >= 0 and (found := proto.find_non_finite(result)) is not None:
            path, number = found
            where = "it is" if not path else f"field {proto.format_path(path)} is"
            self._fail(
                job_id,
                ValueError(
                    f"the result of handler {action_type!r} is not JSON: {where} "
                    f"{proto.number_name(number)}, which JSON cannot carry"
                ),
            )
            return
        if len(body) > self.channel.limit:
            self._fail(
                job_id,
                ValueError(
                    f"the result of handler {action_type!r} is {len(body)} bytes, over the "
                    f"pool's max_message_bytes of {self.channel.limit}"
                ),
            )
            return
        send(_RESULT, job_id, body, self._extra())

    def _call(self, handler: Handler, kwargs: dict[str, Any], job_id: int) -> Any:
        """Call ``handler``: a ``qoper8.Job`` parameter injected, a coroutine run to its end,
        a generator's yields sent as the job's messages (its return value is the result)."""
        if handler.job_param is not None:
            kwargs[handler.job_param] = Job(job_id)
        result = handler.func(**kwargs)
        if handler.is_async:
            return self._run_coroutine(result)
        if handler.is_generator:
            return self._drain(result, job_id)
        if handler.is_async_generator:
            return self._run_coroutine(self._drain_async(result, job_id))
        return result

    def _drain(self, generator: Any, job_id: int) -> Any:
        message = self.outbox.message
        while True:
            try:
                item = next(generator)
            except StopIteration as stop:
                return stop.value
            message(job_id, item)

    async def _drain_async(self, generator: Any, job_id: int) -> None:
        async for item in generator:
            self.outbox.message(job_id, item)

    def _deliver(self, delivery_id: int, payload: bytes) -> None:
        """A message from the master, between two jobs: run its topic's ``on_message``
        function and answer if asked (REPLY or REPLY_ERROR, with the delivery's id)."""
        reply = True
        try:
            info = proto.loads(payload)
            reply = bool(info.get("reply"))
            topic = info["topic"]
            handler = self.worker.message_handler(topic)
            if handler is None:
                raise _unknown("on_message function for topic", topic)
            fields = info.get("payload")
            kwargs = handler.bind({} if fields is None else fields)
        except Exception as exc:
            if reply:
                self.channel.send(Kind.REPLY_ERROR, delivery_id, self._report(_INVALID, exc))
            return
        try:
            result = self._call(handler, kwargs, 0)
            body = proto.encode_value(result, f"the reply to {topic!r}", self.channel.limit)
        except BaseException as exc:
            if isinstance(exc, SystemExit | KeyboardInterrupt):
                raise
            if reply:
                self.channel.send(Kind.REPLY_ERROR, delivery_id, self._report(_FAILED, exc))
            else:
                traceback.print_exc()  # nobody waits for an answer: the log is the witness
            return
        if reply:
            self.channel.send(Kind.REPLY, delivery_id, body)

    def _actor_start(self, job_id: int, payload: bytes) -> None:
        """Make an actor (the job's id names it from now on) and answer with its first
        snapshot, or null when its class keeps none."""
        try:
            info = proto.loads(payload)
            kind = self.worker.actors.get(info["type"])
            if kind is None:
                raise _unknown("actor type", info["type"])
            name = str(info["name"])
        except Exception as exc:
            self.channel.send(Kind.ERROR, job_id, self._report(_INVALID, exc))
            return
        self.outbox.actor = name
        try:
            instance = kind.create(info.get("args"), info.get("state"))
            body = self._snapshot(kind, instance, name)
        except BaseException as exc:
            if isinstance(exc, SystemExit | KeyboardInterrupt):
                raise
            category = _INVALID if isinstance(exc, ActionRefused) else _FAILED
            self.channel.send(Kind.ERROR, job_id, self._report(category, exc))
            return
        finally:
            self.outbox.actor = ""
        self._actors[name] = (kind, instance)
        self.channel.send(_RESULT, job_id, body or b"null")

    def _snapshot(self, kind: ActorType, instance: object, name: str) -> bytes | None:
        if not kind.has_snapshot:
            return None
        state = instance.snapshot()  # type: ignore[attr-defined]
        return proto.encode_value(state, f"actor {name!r}'s snapshot", self.channel.limit)

    def _actor_call(self, job_id: int, payload: bytes) -> None:
        """One method call: its events as it runs, then its snapshot (if the class keeps
        one), then its reply."""
        send = self.channel.send
        try:
            info = proto.loads(payload)
            name = str(info["actor"])
            found = self._actors.get(name)
            if found is None:
                raise _unknown("actor", name)
            kind, instance = found
            method, args = info["method"], info.get("args")
        except Exception as exc:
            send(Kind.ERROR, job_id, self._report(_INVALID, exc))
            return
        self.outbox.actor = name
        try:
            result = kind.call(instance, method, args)
            body = proto.encode_value(result, f"the result of {name}.{method}", self.channel.limit)
            snapshot = self._snapshot(kind, instance, name)
        except BaseException as exc:
            if isinstance(exc, SystemExit | KeyboardInterrupt):
                raise
            category = _INVALID if isinstance(exc, ActionRefused) else _FAILED
            send(Kind.ERROR, job_id, self._report(category, exc), self._extra())
            return
        finally:
            self.outbox.actor = ""
        if snapshot is not None:
            send(Kind.ACTOR_SNAPSHOT, job_id, snapshot)
        send(_RESULT, job_id, body, self._extra())

    def _report(self, category: str, exc: BaseException) -> bytes:
        return error_report(category, exc, limit=self.channel.limit)

    def _fail(self, job_id: int, exc: BaseException) -> None:
        self._reply(Kind.ERROR, job_id, self._report(_FAILED, exc), self._extra())

    def _run_call(self, job_id: int, payload: bytes) -> None:
        try:
            if self._main is not None and b"__main__" in payload:
                main, self._main = self._main, None
                import_main(main)
            func, args, kwargs = pickle.loads(payload)
            result = func(*args, **kwargs)
            body = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            if len(body) > self.channel.limit:
                raise ValueError(f"the result is {len(body)} bytes, over max_message_bytes")
        except BaseException as exc:
            if isinstance(exc, SystemExit | KeyboardInterrupt):
                raise
            if isinstance(exc, ReplaceChild):
                replacing.replace_child_after(str(exc))
            self._reply(Kind.ERROR_PICKLE, job_id, self._pickled_report(exc), self._extra())
            return
        self._reply(Kind.RESULT_PICKLE, job_id, body, self._extra())

    def _pickled_report(self, exc: BaseException) -> bytes:
        """The ERROR_PICKLE payload: the JSON report's fields plus the exception itself
        when it round-trips, within the channel's limit like every report."""
        info: dict[str, Any] = proto.loads(self._report(_FAILED, exc))
        info["exception"] = None
        with contextlib.suppress(Exception):
            pickled = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(pickled)  # an exception that cannot round-trip stays text only
            info["exception"] = pickled
        body = pickle.dumps(info)
        if len(body) > self.channel.limit:  # the exception object itself is too big
            info["exception"] = None
            body = pickle.dumps(info)
        return body

    def _run_coroutine(self, coro: Any) -> Any:
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def _stop(self) -> None:
        try:
            self.worker.run_stop_hooks()
        except Exception:
            traceback.print_exc()
        if self._loop is not None:
            self._loop.close()
