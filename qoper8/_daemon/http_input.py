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
    "resize_target",
    "token_matches",
]

logger = logging.getLogger("qoper8.http")

# A resize to more than this many children per CPU needs "force": past it the children
# mostly wait for a CPU (and memory), so it is more likely a typo ("40" for "4") than a plan.
FORCE_FACTOR: Final = 4
_RESIZE_FIELDS: Final = frozenset({"children", "delta", "force"})


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


def resize_target(body: object, size: int, cpus: int | None = None) -> int:
    """The size ``POST /v1/resize`` asks for, from ``{"children": N}`` or ``{"delta": ±N}``
    (exactly one of them, plus an optional ``"force": true``).

    Args:
        body: the decoded request body.
        size: the pool's current size (for ``delta``).
        cpus: the machine's CPU count (default ``os.cpu_count()``).

    Raises:
        Refused: a malformed request (400); a size out of 1..MAX_CHILDREN, or growing past
            FORCE_FACTOR children per CPU without ``force`` (422 ConfigError).
    """
    if not isinstance(body, dict):
        raise _bad_resize("the body must be a JSON object")
    unknown = sorted(set(body) - _RESIZE_FIELDS)
    if unknown:
        raise _bad_resize(f"unknown fields {unknown}")
    given = [name for name in ("children", "delta") if name in body]
    if len(given) != 1:
        raise _bad_resize("give exactly one of children and delta")
    value = body[given[0]]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad_resize(f"{given[0]} must be a whole number")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise _bad_resize("force must be true or false")
    target = value if given[0] == "children" else size + value
    if not 1 <= target <= MAX_CHILDREN:
        err = ConfigError(f"children must be between 1 and {MAX_CHILDREN}, not {target}")
        raise Refused(err, 422)
    cpus = cpus or os.cpu_count() or 1
    if target > size and target > FORCE_FACTOR * cpus and not force:
        err = ConfigError(
            f"{target} children is more than {FORCE_FACTOR} per CPU ({cpus} CPUs here); "
            'send "force": true (qoper8 resize --force) if you mean it'
        )
        raise Refused(err, 422)
    return target


def _bad_resize(why: str) -> Refused:
    err = ConfigError(f'send {{"children": N}} or {{"delta": +-N}} (optional "force"): {why}')
    return Refused(err, 400)
