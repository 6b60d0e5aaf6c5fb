"""How a job ends when it does not end with a plain result: the typed error a caller gets
from a child's report, from an undecodable reply, or from its child's death, and the log line
that says so.

The plain RESULT, the hot path, is settled by ``Dispatcher.child_frame`` itself; everything
rarer comes here, so that the dispatcher stays about moving jobs.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from typing import TYPE_CHECKING, Any

from .._error_base import describe_exit
from .._error_data import error_entries
from ..errors import (
    ActorDied,
    ChildDied,
    InvalidAction,
    JobFailed,
    JobTimeout,
    StartFailed,
)
from . import protocol as proto
from .protocol import ErrorCategory, Kind

if TYPE_CHECKING:
    from .child import Child
    from .job import Job
    from .stats import Counters

__all__ = [
    "child_died",
    "copy_start_failed",
    "queued_too_long",
    "ran_too_long",
    "settle",
    "undecodable",
]

logger = logging.getLogger("qoper8")


def settle(job: Job, kind: int, payload: bytes, child: Child, counters: Counters) -> None:
    """Settle ``job`` from any reply but a plain RESULT."""
    try:
        if kind == Kind.ERROR:
            info = proto.loads(payload)
            if info.get("category") == ErrorCategory.INVALID:
                counters.invalid += 1
                job.fail(_invalid_action(info))
            else:
                counters.failed += 1
                failed = _job_failed(job, info, None)
                _log_failure(job, child, failed)
                job.fail(failed)
        elif kind == Kind.RESULT_PICKLE:
            value = pickle.loads(payload)
            counters.completed += 1
            job.resolve(value)
        elif kind == Kind.ERROR_PICKLE:
            info = pickle.loads(payload)
            remote = None
            if info.get("exception") is not None:
                with contextlib.suppress(Exception):
                    remote = pickle.loads(info["exception"])
            counters.failed += 1
            failed = _job_failed(job, info, remote)
            _log_failure(job, child, failed)
            job.fail(failed)
        else:
            raise proto.ProtocolError(f"unexpected frame kind {kind}")
    except Exception as exc:  # undecodable reply: fail this job, distrust the child
        undecodable(job, child, exc, counters)


def undecodable(job: Job, child: Child, exc: Exception, counters: Counters) -> None:
    """Fail ``job`` over a reply that cannot be decoded, and stop trusting its child."""
    counters.failed += 1
    job.fail(
        JobFailed(
            f"job {job.id}: {child.describe()} sent a reply that cannot be decoded: {exc}",
            job_id=job.id,
            remote_type=type(exc).__name__,
            remote_message=str(exc),
        )
    )
    child.protocol_violation(str(exc))


def child_died(child: Child, job: Job) -> ChildDied:
    """The error of the job a child was running when it died."""
    how = describe_exit(child.exitcode, child.signal)
    reason = f" ({child.kill_reason})" if child.kill_reason else ""
    actor = job.actor
    if actor is not None:
        again = "it will be started again" if actor.will_restart else "it will not restart"
        return ActorDied(
            f"{child.describe()} {how}{reason} while actor {actor.name!r} ran "
            f"{job.action_type}; {again}",
            job_id=job.id,
            pid=child.pid,
            exitcode=child.exitcode,
            signal=child.signal,
            will_restart=actor.will_restart,
        )
    return ChildDied(
        f"{child.describe()} {how}{reason} while running job {job.id} "
        f"({job.action_type}); it is being replaced",
        job_id=job.id,
        pid=child.pid,
        exitcode=child.exitcode,
        signal=child.signal,
    )


def queued_too_long(job: Job, timeout: float) -> JobTimeout:
    """The error of a job whose deadline passed while it waited for a child."""
    return JobTimeout(
        f"job {job.id} ({job.action_type}) waited in the queue past its deadline "
        f"of {timeout}s; no child was free",
        job_id=job.id,
    )


def ran_too_long(job: Job, timeout: float, child: Child) -> JobTimeout:
    """The error of a job whose deadline passed while it ran; ``child`` is about to be
    killed (its late reply could otherwise be read as the next job's), which the log says."""
    logger.warning(
        "job %s (%s) ran past its deadline of %gs: killing %s",
        job.id,
        job.action_type,
        timeout,
        child.describe(),
        extra={
            "child": child.id,
            "pid": child.pid,
            "job_id": job.id,
            "action_type": job.action_type,
        },
    )
    return JobTimeout(
        f"job {job.id} ({job.action_type}) ran past its deadline of {timeout}s; "
        f"{child.describe()} was killed and is being replaced",
        job_id=job.id,
    )


def copy_start_failed(err: StartFailed) -> StartFailed:
    """A fresh copy of ``err`` for each caller (one exception object raised many times would
    pile up everyone's tracebacks)."""
    return StartFailed(
        str(err),
        remote_type=err.remote_type,
        remote_message=err.remote_message,
        remote_traceback=err.remote_traceback,
    )


def _invalid_action(info: dict[str, Any]) -> InvalidAction:
    """The caller's InvalidAction from a child's report: its structured entries when it sent
    some (a validation failure, an unknown type), else its exception as text."""
    entries = error_entries(info.get("errors"))
    if entries:
        return InvalidAction(
            str(info["message"]),
            errors=entries,
            errors_omitted=int(info.get("errors_omitted") or 0),
        )
    return InvalidAction(f"{info['type']}: {info['message']}")


def _job_failed(job: Job, info: dict[str, Any], remote: BaseException | None) -> JobFailed:
    status, code = info.get("status"), info.get("code")
    return JobFailed(
        f"job {job.id} ({job.action_type}) failed: {info['type']}: {info['message']}",
        job_id=job.id,
        remote_type=str(info["type"]),
        remote_message=str(info["message"]),
        remote_traceback=str(info.get("traceback", "")),
        remote_exception=remote,
        remote_types=tuple(str(t) for t in info.get("types") or ()),
        status=status if type(status) is int else None,
        code=None if code is None else str(code),
        details=info.get("details"),
    )


def _log_failure(job: Job, child: Child, failed: JobFailed) -> None:
    """A handler raised: one WARNING line with the fields a JSON log carries, the child's
    traceback at DEBUG (the daemon's ``--debug``). A ``HandlerError`` the handler chose a
    4xx status for is the caller's mistake, not the service's: INFO."""
    extra = {
        "child": child.id,
        "pid": child.pid,
        "job_id": job.id,
        "action_type": job.action_type,
        "remote_type": failed.remote_type,
    }
    level = logging.INFO if failed.status is not None and failed.status < 500 else logging.WARNING
    logger.log(
        level,
        "job %s (%s) failed in %s: %s: %s",
        job.id,
        job.action_type,
        child.describe(),
        failed.remote_type,
        failed.remote_message,
        extra=extra,
    )
    if failed.remote_traceback and logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "job %s (%s): the child's traceback:\n%s",
            job.id,
            job.action_type,
            failed.remote_traceback.rstrip(),
            extra=extra,
        )
