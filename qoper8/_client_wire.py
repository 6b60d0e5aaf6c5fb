"""What ``qoper8.Client``'s rooms share: the client's constants and reading the daemon's
answers (typed errors from error bodies, objects). Internal; ``_client`` re-exports the
public names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson

from ._engine.protocol import encode_action
from .errors import Qoper8Error, TransportError, error_from_dict

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from ._engine.delivery import BroadcastResult

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_URL",
    "ROOM_POLL_MAX",
    "ROOM_POLL_START",
    "TIMEOUT_MARGIN",
    "Unauthorized",
    "broadcast_result",
    "encode",
    "error_of",
    "object_of",
]

DEFAULT_URL: Final = "http://127.0.0.1:8765"
# An answer may take the job's whole deadline; the HTTP request gets this much more before
# the client gives up on the daemon itself (TransportError rather than JobTimeout).
TIMEOUT_MARGIN: Final = 5.0
CONNECT_TIMEOUT: Final = 10.0
# With wait_for_room, a QueueFull answer is retried after a pause that starts here and
# doubles up to MAX (the daemon's Retry-After is a coarse whole second).
ROOM_POLL_START: Final = 0.005
ROOM_POLL_MAX: Final = 0.5


class Unauthorized(TransportError):
    """The daemon refused the token (401): a wrong or missing token, not an unreachable
    daemon. A ``TransportError``, so code that catches those keeps working; the CLI tells
    the two apart (exit 1 "unauthorized", not 6 "unreachable")."""


def encode(action: Mapping[str, Any] | BaseModel) -> bytes:
    return encode_action(action)[1]


def object_of(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TransportError(f"the daemon answered {data!r:.200} where an object was expected")
    return data


def error_of(status: int, raw: bytes) -> Qoper8Error:
    """The typed error an error answer carries; TransportError when it carries none."""
    try:
        info = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        info = None
    if not isinstance(info, dict):
        return TransportError(f"the daemon answered HTTP {status}: {raw[:200]!r}")
    if status == 401 and info.get("type") != "JobFailed":  # a handler may choose 401 too
        return Unauthorized(f"the daemon refused the request (401): {info.get('message')}")
    err = error_from_dict(info)
    if type(err) is TransportError and status >= 400:
        err = TransportError(f"the daemon answered HTTP {status}: {info.get('message', info)}")
    return err


def broadcast_result(data: dict[str, Any]) -> BroadcastResult:
    """``/v1/broadcast``'s answer as the pool's ``BroadcastResult`` (errors rebuilt)."""
    from ._engine.delivery import BroadcastResult, ChildReply

    replies = []
    for entry in data.get("replies") or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("child"), int):
            raise TransportError(f"the daemon answered a broadcast with {entry!r:.200}")
        error = entry.get("error")
        replies.append(
            ChildReply(
                entry["child"],
                entry.get("pid"),
                entry.get("value"),
                error_from_dict(error) if isinstance(error, dict) else None,
            )
        )
    return BroadcastResult(str(data.get("topic", "")), tuple(replies))
