"""``POST /v1/broadcast`` and ``POST /v1/ask``: messages to the children's
``@worker.on_message`` functions, over HTTP. The pool's ``broadcast`` and ``ask`` decide
everything; this reads the request and writes the answer::

    POST /v1/broadcast {"topic", "payload", "timeout", "sticky"}
      -> 200 {"topic", "complete", "replies": [{"child", "pid", "value"}
                                              | {"child", "pid", "error": {...}}]}
    POST /v1/ask {"child" | "pid", "topic", "payload", "timeout"} -> 200 {"result": ...}

A broadcast answers 200 even when children failed: each entry says how (the error's data,
as ``/v1/submit``'s error body carries it), so a dead child and a slow one are told apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..errors import InvalidAction, Qoper8Error, error_to_dict
from .http_fields import read_body
from .http_replies import json_reply

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web

    from .._engine.pool_like import PoolLike
    from .http_submit import Submits

__all__ = ["Messages"]

_BROADCAST: Final = frozenset({"topic", "payload", "timeout", "sticky"})
_ASK: Final = frozenset({"child", "pid", "topic", "payload", "timeout"})


class Messages:
    """The broadcast and ask endpoints of one API (see the module)."""

    def __init__(
        self,
        pool: PoolLike,
        submits: Submits,
        max_body: int,
        error_response: Callable[..., web.Response],
        *,
        debug: Callable[[], bool],
    ) -> None:
        self._pool = pool
        self._submits = submits
        self._max_body = max_body
        self._error_response = error_response
        self._debug = debug

    async def broadcast(self, request: web.Request) -> web.Response:
        body = await read_body(request, self._max_body, _BROADCAST)
        topic = body.text("topic")
        payload = body.mapping("payload")
        kwargs: dict[str, Any] = {"sticky": body.flag("sticky")}
        body.timeout(kwargs)
        refused = await self._submits.admit(kwargs)
        if refused is not None:
            return refused
        try:
            report = await self._pool.broadcast(topic, payload, **kwargs)
        except ValueError as exc:  # not a dotted name, or a reserved one
            return self._error_response(_bad_topic(exc))
        except Qoper8Error as exc:
            return self._error_response(exc)
        debug = self._debug()
        replies: list[dict[str, Any]] = []
        for r in report.replies:
            entry: dict[str, Any] = {"child": r.child, "pid": r.pid}
            if r.error is None:
                entry["value"] = r.value
            else:
                entry["error"] = error_to_dict(r.error, include_traceback=debug)
            replies.append(entry)
        return json_reply({"topic": report.topic, "complete": report.complete, "replies": replies})

    async def ask(self, request: web.Request) -> web.Response:
        body = await read_body(request, self._max_body, _ASK)
        by_pid = "pid" in body.data
        if by_pid == ("child" in body.data):
            return self._error_response(
                InvalidAction('give exactly one of "child" (its id) and "pid"'), 400
            )
        child = body.count("pid" if by_pid else "child", 0)
        topic = body.text("topic")
        payload = body.mapping("payload")
        kwargs: dict[str, Any] = {"pid": by_pid}
        body.timeout(kwargs)
        refused = await self._submits.admit(kwargs)
        if refused is not None:
            return refused
        try:
            answer = await self._pool.ask(child, topic, payload, **kwargs)
        except ValueError as exc:
            return self._error_response(_bad_topic(exc))
        except Qoper8Error as exc:
            return self._error_response(exc)
        return json_reply({"result": answer})


def _bad_topic(exc: ValueError) -> InvalidAction:
    message = str(exc)
    return InvalidAction(
        message, errors=[{"loc": ["body", "topic"], "msg": message, "type": "invalid_topic"}]
    )
