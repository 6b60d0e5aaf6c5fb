"""The framing of the API's long answers: Server-Sent Events (``/v1/stream`` by default, an
actor's events, the dashboard's ``/v1/events``) and NDJSON (``/v1/stream`` with
``Accept: application/x-ndjson``), and the keep-alive that holds an idle one open.

Framing only: what goes in each event is the routes' business. Every ``data`` is one line of
JSON (orjson never writes a newline), so an event is always ``event: NAME\\ndata: JSON\\n\\n``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "EVENT_STREAM_TYPE",
    "NDJSON_TYPE",
    "NDJSON_PING",
    "PING_INTERVAL",
    "SSE_PING",
    "open_stream",
    "sse",
    "wants_ndjson",
]

EVENT_STREAM_TYPE: Final = "text/event-stream"
NDJSON_TYPE: Final = "application/x-ndjson"
# Seconds of silence after which a stream sends a keep-alive. Proxies (nginx's default
# proxy_read_timeout is 60 s) and load balancers close a connection silent for long; much
# shorter only costs bytes.
PING_INTERVAL: Final = 15.0
# An SSE comment: every reader ignores it. NDJSON has no comment, so its keep-alive is an
# empty line, which readers skip (qoper8.Client does; say so to others).
SSE_PING: Final = b": ping\n\n"
NDJSON_PING: Final = b"\n"

_NO_BUFFERING: Final[Mapping[str, str]] = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # a proxy (nginx) must not hold events back
}


def sse(name: bytes, data: bytes) -> bytes:
    """One Server-Sent Event: ``data`` is one line of JSON."""
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


def wants_ndjson(request: web.Request) -> bool:
    """Whether the client asked for NDJSON rather than Server-Sent Events (the default)."""
    return NDJSON_TYPE in request.headers.get("Accept", "")


async def open_stream(request: web.Request, content_type: str) -> web.StreamResponse:
    """Send the headers of a 200 stream of ``content_type``; the body follows in writes."""
    response = web.StreamResponse(headers={"Content-Type": content_type, **_NO_BUFFERING})
    await response.prepare(request)
    return response
