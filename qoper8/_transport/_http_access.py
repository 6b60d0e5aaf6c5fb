"""The daemon's access log (``--access-log``): one record per HTTP request on the
``qoper8.access`` logger, with its fields as ``extra=`` so the JSON log format gets them as
keys (method, path, status, duration, remote, bytes).

Off by default: on a busy daemon it would be most of the log. aiohttp calls ``log`` after
each response; the record goes to the daemon's non-blocking log, never to a disk directly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from aiohttp.abc import AbstractAccessLogger

if TYPE_CHECKING:
    from aiohttp.web import BaseRequest, StreamResponse

__all__ = ["ACCESS_LOGGER", "AccessLog"]

ACCESS_LOGGER: Final = logging.getLogger("qoper8.access")


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
