"""A handler's request that its child be replaced once it has answered: the child's side of
``qoper8.ReplaceChild`` and ``qoper8.replace_child_after``.

A handler (or anything it calls) records the request here; the child's loop sends it to the
master as a REPLACE_ME frame just before the job's reply, and the master's dispatcher marks
the child (``mark``), so that when the reply is in the supervisor's ``retire_if_due`` retires
it instead of giving it another job, and ``reconcile`` starts its replacement. Stdlib and
``protocol`` only: children import it before any worker module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from . import protocol as proto

if TYPE_CHECKING:
    from .child import Child

__all__ = ["MAX_REASON_CHARS", "mark", "pending", "replace_child_after", "take"]

# Characters of a reason sent to the master; it goes into one log line, and a longer one
# (a whole driver error with its query) would only flood the log.
MAX_REASON_CHARS: Final = 1_000


class _Pending:
    """The one request of the current job (a later call replaces the reason)."""

    reason: str | None = None


pending: Final = _Pending()


def replace_child_after(reason: str) -> None:
    """Have this child replaced once it has answered its current job, whatever the answer.

    For a handler that still gives a good answer but knows its child should not serve
    another job (it reconnected and suspects more state went bad, a C library leaked): the
    caller gets the handler's result; the child then retires (its on_stop hooks run) while
    a fresh child starts, and the pool logs the reason (INFO). It is neither a crash nor a
    failed start. To fail the job as well, raise ``qoper8.ReplaceChild``.

    Called in a start hook or an ``on_message`` function, it takes effect after the
    child's next job. Outside a child
    (a plain call, ``qoper8.testing.InlinePool``) nothing reads the request.

    Example:
        ```python
        @worker.handler("report.render")
        def render(id: int) -> str:
            html = renderer.render(id)
            if renderer.leaked_bytes() > LIMIT:
                qoper8.replace_child_after("renderer leaks; a fresh child starts clean")
            return html
        ```

    Args:
        reason: why, for the pool's log line.
    """
    pending.reason = str(reason)[:MAX_REASON_CHARS] or "no reason given"


def take() -> str | None:
    """The pending request's reason, clearing it (the child loop sends it once)."""
    reason, pending.reason = pending.reason, None
    return reason


def mark(child: Child, job_id: int, payload: bytes) -> bool:
    """The master's side of REPLACE_ME: mark ``child`` to be retired once its answer to
    ``job_id`` is in (``watch_retire`` has the dispatcher ask the supervisor then, and
    ``retire_requested`` keeps it out of the count it reconciles). False, with the child
    killed, when the frame is not about its current job or is not readable."""
    job = child.job
    try:
        if job is None or job.id != job_id:
            raise ValueError(f"for job {job_id}, expected {job and job.id}")
        reason = str(proto.loads(payload)["reason"])[:MAX_REASON_CHARS]
    except (ValueError, KeyError, TypeError) as exc:
        child.protocol_violation(f"bad REPLACE_ME: {exc}")
        return False
    child.replace_reason = f"its handler asked for a fresh child: {reason}"
    child.retire_requested = child.watch_retire = True
    return True
