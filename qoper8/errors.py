"""Every exception qoper8 raises, in one tree.

A caller catches ``Qoper8Error`` for anything qoper8 decided, or one branch of it::

    Qoper8Error
    ├── ConfigError        bad configuration, raised when loading, never mid-run
    ├── StartFailed        children could not start: import error or failing start hook
    ├── PoolClosed         the pool was closed (your doing); submit refuses
    ├── QueueFull          the queue is at max_queue and the caller asked not to wait
    ├── InvalidAction      bad input: not a mapping, no/unknown type, params fail validation,
    │                      not JSON (NaN, Infinity) or oversized; .errors [{loc, msg, type}]
    ├── TransportError     the daemon or Redis cannot be reached / answered garbage
    ├── HandlerError       raised *by a handler* to choose the caller's .status, .code and
    │   │                  .details; the caller gets JobFailed carrying them
    │   └── ReplaceChild   raised by a handler whose child is broken (its connection is
    │                      gone): JobFailed (503, "child_replaced"), then the child retires
    │                      and a fresh one replaces it; not a crash
    ├── ActorNotFound      no actor of that name (within get's wait)
    ├── ActorExists        create(if_exists="error") of a name that is taken
    ├── ActorUnavailable   the actor's restarts are used up, or it is being destroyed
    └── JobError           the job ran (or was due to) and produced no result; .job_id
        ├── JobFailed      the handler raised: .remote_type, .remote_types, .remote_is(),
        │                  .remote_message, .remote_traceback, .status, .code, .details
        ├── JobTimeout     the deadline passed; a running child was killed and replaced
        ├── ChildDied      the child died mid-job: .pid, .exitcode or .signal
        │   └── ActorDied  an actor's child died mid-call: .will_restart
        └── InvalidResult  the result does not fit submit's result_type: .errors, .result

Errors cross process boundaries as data (type names, message, traceback text), never as
pickled objects, so the same error can come back from a local child, the daemon or Redis.
``error_to_dict``, ``error_from_dict`` (that data form) and ``http_status`` (the daemon's
status for each error, public so that other web integrations answer alike) live in
``_error_data`` and are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._error_base import ErrorEntry, Qoper8Error, RemoteTraceback

if TYPE_CHECKING:
    from ._types import JSONValue

__all__ = [
    "ActorDied",
    "ActorExists",
    "ActorNotFound",
    "ActorUnavailable",
    "ChildDied",
    "ConfigError",
    "ErrorEntry",
    "HandlerError",
    "InvalidAction",
    "InvalidResult",
    "JobError",
    "JobFailed",
    "JobTimeout",
    "PoolClosed",
    "Qoper8Error",
    "QueueFull",
    "RemoteTraceback",
    "ReplaceChild",
    "StartFailed",
    "TransportError",
    "error_from_dict",
    "error_to_dict",
    "http_status",
]


class ConfigError(Qoper8Error):
    """A setting is invalid. Raised when a pool or daemon is configured, never mid-run."""


class PoolClosed(Qoper8Error):
    """The pool is closing or closed, so it takes no new action (your doing, not a fault)."""


class QueueFull(Qoper8Error):
    """The queue holds ``max_queue`` jobs and the caller asked not to wait for room."""


class InvalidAction(Qoper8Error):
    """The action was refused before it produced a result: it is malformed, names an unknown
    type, carries params the handler's annotations reject, or cannot be encoded as JSON.

    ``errors`` lists why, one entry per problem (at most ``MAX_REPORTED_ERRORS`` of the
    child's; ``errors_omitted`` counts the rest), so that a web app can answer 422 with a
    structured body instead of parsing the message.

    Args:
        message: the summary a person reads.
        errors: the entries; one built from ``message`` (``loc=[]``) when omitted.
        errors_omitted: how many more problems there were than ``errors`` lists.
    """

    def __init__(
        self,
        message: str,
        *,
        errors: list[ErrorEntry] | None = None,
        errors_omitted: int = 0,
    ) -> None:
        super().__init__(message)
        if errors is None:
            errors = [{"loc": [], "msg": message, "type": "invalid_action"}]
        self.errors = errors
        self.errors_omitted = errors_omitted


class TransportError(Qoper8Error):
    """The daemon or Redis could not be reached, or answered something qoper8 cannot read."""


class HandlerError(Qoper8Error):
    """Raise this (or a subclass) in a handler to tell the caller *what kind* of failure
    it is, not only that it failed. The caller gets ``JobFailed`` with the same ``status``,
    ``code`` and ``details``; the daemon answers with ``status`` (400-599, else 500) and puts
    ``code`` and ``details`` in its JSON error body.

    Example:
        ```python
        @worker.handler("user.get")
        def get_user(id: int) -> dict[str, object]:
            row = db.execute("SELECT name FROM users WHERE id = ?", (id,)).fetchone()
            if row is None:
                raise qoper8.HandlerError(
                    f"no user {id}", status=404, code="not_found", details={"id": id}
                )
            return {"id": id, "name": row[0]}
        ```

    Args:
        message: what went wrong, for a person.
        status: the HTTP status the daemon answers with (400-599; anything else means 500).
        code: a short machine-readable reason, e.g. ``"not_found"``.
        details: JSON data for the caller (dropped, with a note, if it is not JSON).
    """

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        details: JSONValue = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details


class ReplaceChild(HandlerError):
    """Raise this in a handler that knows its child can no longer serve (its database
    connection is gone and cannot be trusted, a C library's state is corrupt). The child
    answers the job with this error, then retires (its on_stop hooks run) and a fresh child
    takes its place: neither a crash nor a failed start, and the pool logs why (INFO).

    The caller gets ``JobFailed``, by default with ``status`` 503 and ``code``
    ``"child_replaced"`` (the daemon answers 503 with ``Retry-After``): the failure is
    temporary and another child may well succeed. The pool itself never runs the job again,
    since the handler may have done part of its work (a write may have committed before the
    connection broke); retry on ``code == "child_replaced"`` when the action is idempotent.
    To answer normally and still be replaced, call ``qoper8.replace_child_after(reason)``.

    Example:
        ```python
        @worker.handler("item.put")
        def put(key: str, value: str) -> None:
            try:
                conn.execute("INSERT ...", (key, value))
            except psycopg.OperationalError as exc:
                raise qoper8.ReplaceChild(f"connection lost: {exc}") from exc
        ```

    Args:
        reason: why the child is broken; the message of the caller's ``JobFailed`` and of
            the pool's log line.
        status, code, details: as ``HandlerError``'s.
    """

    def __init__(
        self,
        reason: str = "",
        *,
        status: int | None = 503,
        code: str | None = "child_replaced",
        details: JSONValue = None,
    ) -> None:
        super().__init__(reason, status=status, code=code, details=details)


class StartFailed(Qoper8Error):
    """Children could not start: the worker module failed to import, its start hook raised,
    or children kept dying before they were ready. The child's error travels with it."""

    def __init__(
        self,
        message: str,
        *,
        remote_type: str | None = None,
        remote_message: str | None = None,
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        if remote_traceback:
            self.__cause__ = RemoteTraceback(remote_traceback)


class JobError(Qoper8Error):
    """The job was accepted but produced no result."""

    def __init__(self, message: str, *, job_id: str | int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailed(JobError):
    """The handler raised. The child lives on; its traceback is kept as text.

    ``remote_type`` is the exception's class name as before (``"KeyError"``);
    ``remote_types`` its qualified name and those of its bases, most-derived first, up to
    but excluding ``object`` (``("builtins.KeyError", "builtins.LookupError",
    "builtins.Exception", "builtins.BaseException")``), which ``remote_is`` tests like
    ``isinstance``. ``status``, ``code`` and ``details`` are the ``HandlerError``'s when the
    handler raised one, else ``None``.

    ``remote_exception`` holds the original exception object when the job came from
    ``Pool.run`` or ``Pool.executor`` and the exception could be pickled back (the
    ``ProcessPoolExecutor`` face); it is ``None`` for actions, whose errors travel as JSON.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str | int | None = None,
        remote_type: str,
        remote_message: str,
        remote_traceback: str = "",
        remote_exception: BaseException | None = None,
        remote_types: tuple[str, ...] = (),
        status: int | None = None,
        code: str | None = None,
        details: JSONValue = None,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.remote_exception = remote_exception
        self.remote_types = remote_types
        self.status = status
        self.code = code
        self.details = details
        if remote_traceback:
            self.__cause__ = RemoteTraceback(remote_traceback)

    def remote_is(self, kind: str | type[BaseException]) -> bool:
        """Whether the handler's exception was an instance of ``kind``, judged by name
        since the class itself stayed in the child.

        Args:
            kind: a class (``LookupError``, ``myapp.errors.NotFound``), a qualified name
                (``"builtins.LookupError"``) or a bare name (``"LookupError"``).

        Example:
            ```python
            except qoper8.JobFailed as err:
                if err.remote_is(LookupError):  # true for a KeyError too
                    return 404
            ```
        """
        if isinstance(kind, type):
            name = f"{kind.__module__}.{kind.__qualname__}"
            return name in self.remote_types
        suffix = "." + kind
        names = self.remote_types or (self.remote_type,)
        return any(n == kind or n.endswith(suffix) for n in names)


class JobTimeout(JobError):
    """The job's deadline passed. If it was running, its child was killed and replaced."""


class ChildDied(JobError):
    """The child died while running the job. Only this job fails; the child is replaced."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str | int | None = None,
        pid: int | None = None,
        exitcode: int | None = None,
        signal: int | None = None,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal


class ActorDied(ChildDied):
    """An actor's child died while it ran the call (the call may have run in part). The
    actor is started again on a new child when it has restarts left (``will_restart``),
    from its last snapshot when it keeps one; calls queued behind this one wait for it."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str | int | None = None,
        pid: int | None = None,
        exitcode: int | None = None,
        signal: int | None = None,
        will_restart: bool = False,
    ) -> None:
        super().__init__(message, job_id=job_id, pid=pid, exitcode=exitcode, signal=signal)
        self.will_restart = will_restart


class ActorNotFound(Qoper8Error):
    """No actor has that name (``get`` waited ``wait`` seconds for one, if asked to)."""


class ActorExists(Qoper8Error):
    """``create(..., if_exists="error")`` for a name an actor already has."""


class ActorUnavailable(Qoper8Error):
    """The actor cannot take calls: its restarts are used up (``max_restarts``), it failed
    to start, or it is being destroyed."""


class InvalidResult(JobError):
    """The handler returned, but its result does not fit the ``result_type`` the caller
    asked for. A ``JobError`` (the job produced no usable result) and not a ``JobFailed``:
    nothing raised in the child, there is no remote traceback, and the check ran on the
    caller's side, often because caller and worker module disagree about a type.

    ``result`` is the JSON value that came back; ``errors`` says where it does not fit.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str | int | None = None,
        result: JSONValue = None,
        errors: list[ErrorEntry] | None = None,
        errors_omitted: int = 0,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.result = result
        self.errors: list[ErrorEntry] = errors or []
        self.errors_omitted = errors_omitted


# The data form and the statuses live in ``_error_data``, which needs the classes above: it is
# imported when first used, never at import time (no cycle; a child raising HandlerError pays
# nothing for it).


def http_status(exc: BaseException) -> int:
    """The HTTP status the daemon answers ``exc`` with (``JobFailed`` with a handler-chosen
    400-599 status gets that one); the same mapping serves any web framework in front of a
    pool."""
    from ._error_data import http_status as status_of

    return status_of(exc)


def error_to_dict(exc: Qoper8Error, *, include_traceback: bool = True) -> dict[str, Any]:
    """Encode a qoper8 error as JSON-able data, the form it takes on HTTP and Redis."""
    from ._error_data import error_to_dict as encode

    return encode(exc, include_traceback=include_traceback)


def error_from_dict(data: dict[str, Any]) -> Qoper8Error:
    """Rebuild the typed error that ``error_to_dict`` encoded; unknown types become
    ``TransportError`` so that a garbled answer never escapes as a raw exception."""
    from ._error_data import error_from_dict as decode

    return decode(data)
