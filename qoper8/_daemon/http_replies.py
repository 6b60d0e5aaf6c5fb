"""How the HTTP API answers: JSON bodies, and errors as ``{"error": {"type", "message",
...}}`` with the status ``http_wire`` assigns to each qoper8 error (and Retry-After on 503).
"""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web

from ..errors import Qoper8Error, error_to_dict
from .http_wire import status_for

__all__ = ["JSON_TYPE", "RETRY_AFTER_SECONDS", "error_reply", "json_reply", "qoper8_error_reply"]

# What a 503 (QueueFull, Starting, ...) tells the caller to wait before trying again. One
# second is long against a job's run time and short against a human's patience.
RETRY_AFTER_SECONDS: Final = 1

JSON_TYPE: Final = "application/json"


def json_reply(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type=JSON_TYPE, headers=headers
    )


def error_reply(
    type_name: str, message: str, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """An error that is not a qoper8 error (Unauthorized, NotFound, Starting, ...)."""
    if status == 503 and headers is None:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return json_reply({"error": {"type": type_name, "message": message}}, status, headers)


def qoper8_error_reply(
    exc: Qoper8Error, status: int | None = None, *, debug: bool = False
) -> web.Response:
    """A qoper8 error with its status (``status_for``'s unless given); ``debug`` adds a
    failed job's traceback."""
    status = status or status_for(exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    body = {"error": error_to_dict(exc, include_traceback=debug)}
    return json_reply(body, status, headers)
