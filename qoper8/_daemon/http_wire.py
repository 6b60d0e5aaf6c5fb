"""The HTTP API's wire contract that the server and ``qoper8.Client`` share: the request
headers beyond the body, and the status that carries each error. No aiohttp server here, so
the client imports this and never the server."""

from __future__ import annotations

from typing import Final

from ..errors import Qoper8Error, http_status

__all__ = ["KILL_ON_CANCEL_HEADER", "TIMEOUT_HEADER", "status_for"]

# Per-request job deadline in seconds ("none" for no deadline); absent means the daemon's
# default timeout. A header rather than a body field, so the body stays exactly the action.
TIMEOUT_HEADER: Final = "Qoper8-Timeout"
# "1" asks that the job's child be killed if the caller goes away while the job runs (the
# pool's kill_on_cancel). A caller that goes away while its job is queued always drops it.
KILL_ON_CANCEL_HEADER: Final = "Qoper8-Kill-On-Cancel"


def status_for(exc: Qoper8Error) -> int:
    """The HTTP status that carries ``exc``: ``qoper8.errors.http_status``, which other web
    integrations reuse so that they answer exactly as the daemon does."""
    return http_status(exc)
