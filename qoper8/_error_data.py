"""qoper8's errors as JSON data (how they cross HTTP and Redis) and as HTTP statuses.

``errors`` re-exports everything here; this module exists only to keep that one short. The
data form is read back from other processes and the network, so ``error_from_dict`` trusts
no field's type and never raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast

from .errors import (
    ActorDied,
    ActorExists,
    ActorNotFound,
    ActorUnavailable,
    ChildDied,
    ConfigError,
    ErrorEntry,
    HandlerError,
    InvalidAction,
    InvalidResult,
    JobError,
    JobFailed,
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    QueueFull,
    StartFailed,
    TransportError,
)

if TYPE_CHECKING:
    from ._types import JSONValue

__all__ = ["ERROR_CLASSES", "error_from_dict", "error_to_dict", "http_status"]

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
        InvalidResult,
        ActorDied,
        ActorExists,
        ActorNotFound,
        ActorUnavailable,
    )
}

# The daemon's HTTP status for each error; the first matching class wins, so subclasses
# come before their bases. Changing one changes what every HTTP client of the daemon sees.
_STATUS: Final[tuple[tuple[type[Qoper8Error], int], ...]] = (
    (ActorNotFound, 404),
    (ActorExists, 409),
    (ActorUnavailable, 503),
    (InvalidAction, 422),
    (ConfigError, 422),
    (QueueFull, 503),
    (PoolClosed, 503),
    (StartFailed, 503),
    (JobTimeout, 504),
    (ChildDied, 502),
    (JobFailed, 500),
    (InvalidResult, 500),
    (TransportError, 502),
)
# A handler may choose any error status; 1xx-3xx would tell an HTTP client the job worked.
_CHOSEN_STATUS: Final = range(400, 600)


def http_status(exc: BaseException) -> int:
    """The HTTP status the daemon answers ``exc`` with; the same mapping serves any web
    framework in front of a pool.

    A ``JobFailed`` from a ``HandlerError`` (or a ``HandlerError`` itself) gets the status
    the handler chose, when it is within 400-599; other handler errors are 500.

    Example:
        ```python
        except qoper8.Qoper8Error as err:
            return JSONResponse({"error": error_to_dict(err)}, http_status(err))
        ```
    """
    if isinstance(exc, JobFailed | HandlerError):
        chosen = exc.status
        if type(chosen) is int and chosen in _CHOSEN_STATUS:
            return chosen
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_to_dict(exc: Qoper8Error, *, include_traceback: bool = True) -> dict[str, Any]:
    """Encode a qoper8 error as JSON-able data, the form it takes on HTTP and Redis.

    Args:
        exc: the error.
        include_traceback: keep a ``JobFailed``'s remote traceback (the daemon does only
            with ``--debug``: a traceback tells a stranger about your code).
    """
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, JobError) and exc.job_id is not None:
        out["job_id"] = exc.job_id
    if isinstance(exc, JobFailed):
        out["remote_type"] = exc.remote_type
        out["remote_types"] = list(exc.remote_types)
        out["remote_message"] = exc.remote_message
        if include_traceback:
            out["remote_traceback"] = exc.remote_traceback
        out.update(status=exc.status, code=exc.code, details=exc.details)
    if isinstance(exc, InvalidAction | InvalidResult):
        out["errors"] = exc.errors
        out["errors_omitted"] = exc.errors_omitted
    if isinstance(exc, ChildDied):
        out.update(pid=exc.pid, exitcode=exc.exitcode, signal=exc.signal)
    if isinstance(exc, ActorDied):
        out["will_restart"] = exc.will_restart
    return out


def error_from_dict(data: dict[str, Any]) -> Qoper8Error:
    """Rebuild the typed error that ``error_to_dict`` encoded; unknown types become
    ``TransportError`` so that a garbled answer never escapes as a raw exception."""
    name = data.get("type")
    message = str(data.get("message", ""))
    cls = ERROR_CLASSES.get(name) if isinstance(name, str) else None
    job_id = data.get("job_id")
    if cls is JobFailed:
        types = data.get("remote_types")
        status = data.get("status")
        code = data.get("code")
        return JobFailed(
            message,
            job_id=job_id,
            remote_type=str(data.get("remote_type", "Exception")),
            remote_message=str(data.get("remote_message", "")),
            remote_traceback=str(data.get("remote_traceback") or ""),
            remote_types=tuple(t for t in types if isinstance(t, str))
            if isinstance(types, list)
            else (),
            status=status if type(status) is int else None,
            code=code if isinstance(code, str) else None,
            details=_json_value(data.get("details")),
        )
    if cls is ActorDied:
        return ActorDied(
            message,
            job_id=job_id,
            pid=data.get("pid"),
            exitcode=data.get("exitcode"),
            signal=data.get("signal"),
            will_restart=data.get("will_restart") is True,
        )
    if cls is ChildDied:
        return ChildDied(
            message,
            job_id=job_id,
            pid=data.get("pid"),
            exitcode=data.get("exitcode"),
            signal=data.get("signal"),
        )
    if cls is InvalidAction:
        entries = error_entries(data.get("errors"))
        return InvalidAction(
            message, errors=entries or None, errors_omitted=_count(data.get("errors_omitted"))
        )
    if cls is InvalidResult:
        return InvalidResult(
            message,
            job_id=job_id,
            errors=error_entries(data.get("errors")),
            errors_omitted=_count(data.get("errors_omitted")),
        )
    if cls is not None and issubclass(cls, JobError):
        return cls(message, job_id=job_id)
    if cls is StartFailed:
        return StartFailed(message)
    if cls is not None:
        return cls(message)
    return TransportError(f"unrecognised error from the remote side: {data!r:.500}")


def error_entries(raw: object) -> list[ErrorEntry]:
    """The well-formed ``{loc, msg, type}`` entries of ``raw``; anything else is dropped."""
    if not isinstance(raw, list):
        return []
    out: list[ErrorEntry] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        loc, msg, kind = item.get("loc"), item.get("msg"), item.get("type")
        if not (isinstance(loc, list) and isinstance(msg, str) and isinstance(kind, str)):
            continue
        clean: list[str | int] = [p for p in loc if isinstance(p, str | int)]
        out.append({"loc": clean, "msg": msg, "type": kind})
    return out


def _count(raw: object) -> int:
    return raw if type(raw) is int and raw > 0 else 0


def _json_value(raw: object) -> JSONValue:
    # Whatever arrived was parsed from JSON already; this only narrows the static type.
    return cast("JSONValue", raw)
