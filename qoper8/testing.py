"""Helpers for users' own tests: run a worker module's handlers in-process.

``InlinePool`` has the pool's ``submit()`` and raises the same typed errors, but runs each
handler right here, with the same validation and the same JSON round trip as a child. Handler
logic can then be unit-tested fast, and under a debugger, without starting processes; keep at
least one test against a real ``qoper8.Pool`` for the process boundary itself.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from ._engine import protocol as proto
from ._engine.reports import qualified_names
from ._engine.worker import ActionRefused, Worker, load_worker
from ._text import did_you_mean
from .errors import HandlerError, InvalidAction, JobFailed, PoolClosed

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from pydantic import BaseModel

    from ._types import JSONValue

__all__ = ["InlinePool"]


class InlinePool:
    """Runs a worker module's handlers in this process, one at a time.

    Example:
        ```python
        async with qoper8.testing.InlinePool("workers.users:worker") as pool:
            assert await pool.submit({"type": "user.get", "id": 1}) == {"id": 1, "name": "ada"}
        ```

    Args:
        worker: a ``"pkg.mod:attr"`` reference or a ``Worker``. Its start hooks run on
            entry and its stop hooks on exit, as in a child.
    """

    def __init__(self, worker: str | Worker) -> None:
        self._worker = worker if isinstance(worker, Worker) else load_worker(worker)
        self._open = False
        self._next_id = 1

    async def __aenter__(self) -> InlinePool:
        self._worker.run_start_hooks()
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        self._worker.run_stop_hooks()

    async def submit(self, action: Mapping[str, Any] | BaseModel, **_: Any) -> JSONValue:
        """As ``qoper8.Pool.submit`` (options are accepted and ignored).

        Raises:
            InvalidAction: as the pool would (bad shape, unknown type, rejected params,
                unencodable).
            JobFailed: the handler raised, or its result is not JSON.
        """
        if not self._open:
            raise PoolClosed("the inline pool is not open")
        job_id, self._next_id = self._next_id, self._next_id + 1
        action_type, payload = proto.encode_action(action)
        data = proto.loads(payload)
        data.pop("type")
        handler = self._worker.get(action_type)
        if handler is None:
            known = ", ".join(sorted(self._worker.handlers)) or "none"
            hint = did_you_mean(action_type, self._worker.handlers)
            raise InvalidAction(f"unknown action type {action_type!r}{hint} (known: {known})")
        try:
            kwargs = handler.bind(data)
        except ActionRefused as exc:
            errors_omitted = exc.errors_total - len(exc.errors)
            raise InvalidAction(str(exc), errors=exc.errors, errors_omitted=errors_omitted) from exc
        except Exception as exc:
            raise InvalidAction(f"{type(exc).__qualname__}: {exc}") from exc
        try:
            result = handler.func(**kwargs)
            if handler.is_async:
                result = await result
            body = proto.dumps(result)
            if body.find(b"null") >= 0 and (found := proto.find_non_finite(result)):
                raise ValueError(  # as a child refuses it: JSON has no NaN
                    f"the result of handler {action_type!r} is not JSON: "
                    f"{proto.format_path(found[0])} is {proto.number_name(found[1])}"
                )
            value: JSONValue = proto.loads(body)
        except Exception as exc:
            chosen = exc if isinstance(exc, HandlerError) else HandlerError()
            raise JobFailed(
                f"job {job_id} ({action_type}) failed: {type(exc).__qualname__}: {exc}",
                job_id=job_id,
                remote_type=type(exc).__qualname__,
                remote_message=str(exc),
                remote_traceback="".join(traceback.format_exception(exc)),
                remote_types=tuple(qualified_names(exc)),
                status=chosen.status,
                code=chosen.code,
                details=chosen.details,
            ) from exc
        return value
