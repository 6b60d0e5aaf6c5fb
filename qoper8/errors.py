"""Every exception qoper8 raises, in one tree.

A caller catches ``Qoper8Error`` for anything qoper8 decided, or one branch of it::

    Qoper8Error
    ├── ConfigError        bad configuration, raised when loading, never mid-run
    ├── StartFailed        children could not start: import error or failing start hook
    ├── PoolClosed         the pool was closed (your doing); submit refuses
    ├── QueueFull          the queue is at max_queue and the caller asked not to wait
    ├── InvalidAction      bad input: not a mapping, no/unknown type, params fail validation,
    │                      unencodable or oversized
    ├── TransportError     the daemon or Redis cannot be reached / answered garbage
    └── JobError           the job ran (or was due to) and produced no result; .job_id
        ├── JobFailed      the handler raised: .remote_type, .remote_message, .remote_traceback
        ├── JobTimeout     the deadline passed; a running child was killed and replaced
        └── ChildDied      the child died mid-job: .pid, .exitcode or .signal

Errors cross process boundaries as data (type name, message, traceback text), never as
pickled objects, so the same error can come back from a local child, the daemon or Redis.
"""

from __future__ import annotations

import signal as _signal
from typing import Any, Final

__all__ = [
    "ChildDied",
    "ConfigError",
    "InvalidAction",
    "JobError",
    "JobFailed",
    "JobTimeout",
    "PoolClosed",
    "Qoper8Error",
    "QueueFull",
    "RemoteTraceback",
    "StartFailed",
    "TransportError",
]


class Qoper8Error(Exception):
    """Base of every error qoper8 raises on purpose."""


class ConfigError(Qoper8Error):
    """A setting is invalid. Raised when a pool or daemon is configured, never mid-run."""


class PoolClosed(Qoper8Error):
    """The pool is closing or closed, so it takes no new action (your doing, not a fault)."""


class QueueFull(Qoper8Error):
    """The queue holds ``max_queue`` jobs and the caller asked not to wait for room."""


class InvalidAction(Qoper8Error):
    """The action was refused before it produced a result: it is malformed, names an unknown
    type, carries params the handler's annotations reject, or cannot be encoded."""


class TransportError(Qoper8Error):
    """The daemon or Redis could not be reached, or answered something qoper8 cannot read."""


class RemoteTraceback(Exception):
    """Carries a child's formatted traceback text; set as ``__cause__`` of ``JobFailed`` and
    ``StartFailed`` so that the remote frames print under the local ones."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


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
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.remote_exception = remote_exception
        if remote_traceback:
            self.__cause__ = RemoteTraceback(remote_traceback)


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


def describe_exit(exitcode: int | None, signum: int | None) -> str:
    """Say how a process ended in words an operator understands."""
    if signum is not None:
        try:
            name = _signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        hint = " (out of memory?)" if signum == _signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    if exitcode is not None:
        return f"exited with code {exitcode}"
    return "closed its channel"


# Maps a remote error's ``type`` field back to a class, for transports (HTTP, Redis) that
# carry qoper8's own errors as data.
ERROR_CLASSES: Final[dict[str, type[Qoper8Error]]] = {
    cls.__name__: cls
    for cls in (
        ConfigError,
        StartFailed,
        PoolClosed,
        QueueFull,
        InvalidAction,
        TransportError,
        JobError,
        JobFailed,
        JobTimeout,
        ChildDied,
    )
}


def error_to_dict(exc: Qoper8Error, *, include_traceback: bool = True) -> dict[str, Any]:
    """Encode a qoper8 error as JSON-able data, the form it takes on HTTP and Redis."""
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, JobError) and exc.job_id is not None:
        out["job_id"] = exc.job_id
    if isinstance(exc, JobFailed):
        out["remote_type"] = exc.remote_type
        out["remote_message"] = exc.remote_message
        if include_traceback:
            out["remote_traceback"] = exc.remote_traceback
    if isinstance(exc, ChildDied):
        out.update(pid=exc.pid, exitcode=exc.exitcode, signal=exc.signal)
    return out


def error_from_dict(data: dict[str, Any]) -> Qoper8Error:
    """Rebuild the typed error that ``error_to_dict`` encoded; unknown types become
    ``TransportError`` so that a garbled answer never escapes as a raw exception."""
    name = data.get("type")
    message = str(data.get("message", ""))
    cls = ERROR_CLASSES.get(name) if isinstance(name, str) else None
    job_id = data.get("job_id")
    if cls is JobFailed:
        return JobFailed(
            message,
            job_id=job_id,
            remote_type=str(data.get("remote_type", "Exception")),
            remote_message=str(data.get("remote_message", "")),
            remote_traceback=str(data.get("remote_traceback") or ""),
        )
    if cls is ChildDied:
        return ChildDied(
            message,
            job_id=job_id,
            pid=data.get("pid"),
            exitcode=data.get("exitcode"),
            signal=data.get("signal"),
        )
    if cls is not None and issubclass(cls, JobError):
        return cls(message, job_id=job_id)
    if cls is StartFailed:
        return StartFailed(message)
    if cls is not None:
        return cls(message)
    return TransportError(f"unrecognised error from the remote side: {data!r}")
