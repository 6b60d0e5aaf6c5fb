"""What the daemon's HTTP API accepts: the token, the body, the deadline header and the
resize request, each read defensively and refused with a typed error and its status.

Anything from the network may be hostile: a header that is not UTF-8, a body that does not
match its ``Content-Encoding``, a length that lies. None of these may cost a 500 or a
traceback in the log; each becomes a ``Refused`` that ``http_api`` answers as JSON.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
from typing import Any, Final

import orjson
from aiohttp import web

from ..config import MAX_CHILDREN
from ..errors import ConfigError, InvalidAction, Qoper8Error
from .http_wire import TIMEOUT_HEADER

__all__ = [
    "FORCE_FACTOR",
    "Refused",
    "parse_timeout",
    "read_json",
    "resize_role",
    "resize_target",
    "token_matches",
]

logger = logging.getLogger("qoper8.http")

# A resize to more than this many children per CPU needs "force": past it the children
# mostly wait for a CPU (and memory), so it is more likely a typo ("40" for "4") than a plan.
FORCE_FACTOR: Final = 4
_RESIZE_FIELDS: Final = frozenset({"children", "delta", "force", "role"})


class Refused(Exception):
    """A request the API refuses: the typed error to send and its HTTP status."""

    def __init__(self, error: Qoper8Error, status: int, *, close: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.status = status
        self.close = close  # the connection cannot carry another request


def token_matches(header: str | None, token: bytes) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant time).

    The header is compared as the bytes the client sent: aiohttp keeps bytes that are not
    UTF-8 as surrogates, which must not make the comparison raise."""
    scheme, _, credential = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = credential.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, token)


async def read_json(request: web.Request, max_body: int) -> Any:
    """The body as JSON.

    Raises:
        Refused: over ``max_body`` (413); not decodable by its Content-Encoding, a broken
            chunked stream, or not JSON (400).
    """
    length = request.content_length
    if length is not None and length > max_body:
        raise _too_large(length, max_body)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(None, max_body) from None
    except web.RequestPayloadError as exc:
        # gzip or deflate garbage, a chunked stream that lies: the client's fault, said in
        # one line. The rest of the body cannot be read either; end the stream, or aiohttp
        # trips on it again after we answer (and logs that as an unhandled error).
        logger.info("refused a body from %s: %s", request.remote, _one_line(exc))
        request.content.feed_eof()
        err = InvalidAction(f"the request body could not be read: {_one_line(exc)}")
        raise Refused(err, 400, close=True) from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(InvalidAction(f"the request body is not valid JSON: {exc}"), 400) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _too_large(length: int | None, max_body: int) -> Refused:
    size = f"{length} bytes" if length is not None else "the request body"
    err = InvalidAction(f"{size} is over the daemon's limit of {max_body} bytes")
    return Refused(err, 413)


def parse_timeout(raw: str) -> float | None:
    """The ``Qoper8-Timeout`` header: seconds, or None for "none".

    Raises:
        Refused: not a positive, finite number or "none" (400).
    """
    if raw.strip().lower() in ("none", "null", ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        err = InvalidAction(f"{TIMEOUT_HEADER} must be a positive number of seconds or 'none'")
        raise Refused(err, 400)
    return value


def resize_role(body: object) -> str | None:
    """The role ``POST /v1/resize`` names (None: the only one).

    Raises:
        Refused: not a JSON object, or a role that is not a string (400).
    """
    if not isinstance(body, dict):
        raise _bad_resize("the body must be a JSON object")
    role = body.get("role")
    if role is not None and not isinstance(role, str):
        raise _bad_resize("role must be a role's name")
    return role


def resize_target(
    body: object,
    size: int,
    cpus: int | None = None,
    *,
    scaled: tuple[int, int] | None = None,
) -> int | tuple[int, int]:
    """The size ``POST /v1/resize`` asks for, from ``{"children": N}``, ``{"children":
    [MIN, MAX]}`` (autoscale between the two) or ``{"delta": ±N}`` (exactly one of them,
    plus an optional ``"force": true`` and ``"role"``).

    Args:
        body: the decoded request body.
        size: the role's current size (for ``delta``).
        cpus: the machine's CPU count (default ``os.cpu_count()``).
        scaled: the role's autoscaling range, if it has one: ``delta`` moves its least (and
            its most, when the least would pass it), as TTIN and TTOU do.

    Raises:
        Refused: a malformed request (400); a size out of 1..MAX_CHILDREN, a range out of
            0..MAX_CHILDREN, or growing past FORCE_FACTOR children per CPU without
            ``force`` (422 ConfigError).
    """
    resize_role(body)
    assert isinstance(body, dict)
    unknown = sorted(set(body) - _RESIZE_FIELDS)
    if unknown:
        raise _bad_resize(f"unknown fields {unknown}")
    given = [name for name in ("children", "delta") if name in body]
    if len(given) != 1:
        raise _bad_resize("give exactly one of children and delta")
    value = body[given[0]]
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise _bad_resize("force must be true or false")
    target: int | tuple[int, int]
    if given[0] == "children" and isinstance(value, list):
        if len(value) != 2 or not all(_whole(v) for v in value):
            raise _bad_resize("a range of children is [MIN, MAX], two whole numbers")
        target = (value[0], value[1])
    elif not _whole(value):
        raise _bad_resize(f"{given[0]} must be a whole number")
    elif given[0] == "children":
        target = value
    elif scaled is not None:
        least = scaled[0] + value
        target = (least, max(scaled[1], least))
    else:
        target = size + value
    _check_bounds(target)
    most = target[1] if isinstance(target, tuple) else target
    before = scaled[1] if scaled is not None else size
    cpus = cpus or os.cpu_count() or 1
    if most > before and most > FORCE_FACTOR * cpus and not force:
        err = ConfigError(
            f"{most} children is more than {FORCE_FACTOR} per CPU ({cpus} CPUs here); "
            'send "force": true (qoper8 resize --force) if you mean it'
        )
        raise Refused(err, 422)
    return target


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bounds(target: int | tuple[int, int]) -> None:
    if isinstance(target, tuple):
        least, most = target
        if not (0 <= least <= most <= MAX_CHILDREN and most >= 1):
            err = ConfigError(
                f"a range of children must be [MIN, MAX] with 0 <= MIN <= MAX <= "
                f"{MAX_CHILDREN} and MAX >= 1, not [{least}, {most}]"
            )
            raise Refused(err, 422)
    elif not 1 <= target <= MAX_CHILDREN:
        err = ConfigError(f"children must be between 1 and {MAX_CHILDREN}, not {target}")
        raise Refused(err, 422)


def _bad_resize(why: str) -> Refused:
    err = ConfigError(
        f'send {{"children": N}}, {{"children": [MIN, MAX]}} or {{"delta": +-N}} (optional '
        f'"force", "role"): {why}'
    )
    return Refused(err, 400)
