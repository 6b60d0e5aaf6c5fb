"""What the HTTP server writes to the daemon's log: the access log (``--access-log``) and
aiohttp's own error records.

The access log is one record per HTTP request on the ``qoper8.access`` logger, with its
fields as ``extra=`` so the JSON log format gets them as keys (method, path, status,
duration, remote, bytes). Off by default: on a busy daemon it would be most of the log.

aiohttp logs every request it cannot parse (a bad header, a lying length, an encoding it
cannot decode) with a traceback at ERROR: any client could flood the log. Its records go
to ``qoper8.http.server`` instead, where those become one DEBUG line, and only a real fault
of the server keeps its traceback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

if TYPE_CHECKING:
    from aiohttp.web import BaseRequest, StreamResponse

__all__ = ["ACCESS_LOGGER", "SERVER_LOGGER", "AccessLog"]

ACCESS_LOGGER: Final = logging.getLogger("qoper8.access")
SERVER_LOGGER: Final = logging.getLogger("qoper8.http.server")


def _quiet_client_errors(record: logging.LogRecord) -> bool:
    """A request aiohttp refused as malformed (a 4xx it answers itself) is the client's
    fault: one DEBUG line, no traceback. Anything else passes unchanged."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, RequestPayloadError):  # a broken body aiohttp read after our answer
        exc = exc.__cause__
    if not isinstance(exc, HttpProcessingError) or not 400 <= exc.code < 500:
        return True
    record.msg = "refused a malformed request: %s %s"
    record.args = (
        record.args[0] if isinstance(record.args, tuple) and record.args else "-",
        " ".join(f"{type(exc).__name__}: {exc.message}".split()),
    )
    record.exc_info = None
    record.exc_text = None
    record.levelno = logging.DEBUG
    record.levelname = logging.getLevelName(logging.DEBUG)
    return SERVER_LOGGER.isEnabledFor(logging.DEBUG)


SERVER_LOGGER.addFilter(_quiet_client_errors)


def _printable(text: str) -> str:
    """The request's own bytes as safe text: a hostile path must not forge log lines or
    break the encoder (aiohttp keeps undecodable bytes as surrogates)."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


class AccessLog(AbstractAccessLogger):
    """``127.0.0.1 "POST /v1/submit" 200 17 0.001234s``, or those fields in JSON."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        remote = request.remote or "-"
        method = _printable(request.method)
        path = _printable(request.raw_path)
        # The body's size (as the common log format's %b); aiohttp's body_length counts
        # the headers too.
        size = response.content_length
        if size is None:
            size = response.body_length
        self.logger.info(
            '%s "%s %s" %d %d %.6fs',
            remote,
            method,
            path,
            response.status,
            size,
            time,
            extra={
                "method": method,
                "path": path,
                "status": response.status,
                "duration": round(time, 6),
                "remote": remote,
                "bytes": size,
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
