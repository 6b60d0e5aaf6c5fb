"""``POST /v1/submit``: one action from the network to the pool, and its result or typed
error back; and the start-up hold, which keeps a submit that arrives while the daemon starts
waiting (within its deadline) instead of refusing it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from .._engine.tracing import continued
from ..errors import InvalidAction, PoolClosed, Qoper8Error
from .http_input import Refused, parse_timeout, read_json
from .http_replies import JSON_TYPE, error_reply
from .http_wire import KILL_ON_CANCEL_HEADER, TIMEOUT_HEADER

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._engine.pool_like import PoolLike
    from .http_api import Control

__all__ = ["MIN_TIMEOUT", "ROLE_PARAMETER", "STARTING", "Submits", "job_options", "read_action"]

# The query parameter that names the role to run a job (a pool of roles finds it from the
# action's type; a type several roles handle needs it).
ROLE_PARAMETER: Final = "role"

# The error type of a submit whose deadline passed while the daemon was still starting
# (503 with Retry-After: the daemon will serve, just not yet).
STARTING: Final = "Starting"
# What is left of a deadline after a start-up hold is never less than this: the pool refuses
# a zero timeout, and the job should still get its one chance to run.
MIN_TIMEOUT: Final = 0.001


async def read_action(request: web.Request, max_body: int) -> dict[str, Any]:
    """The body as an action: a JSON object (its ``type`` is the pool's to check).

    Raises:
        Refused: not JSON, too big (``read_json``), or not an object (400).
    """
    action = await read_json(request, max_body)
    if not isinstance(action, dict):
        err = InvalidAction(
            f"the body must be a JSON object with a 'type' field, not {type(action).__name__}"
        )
        raise Refused(err, 400)
    return action


def job_options(request: web.Request) -> dict[str, Any]:
    """The job's options from the request: its deadline and kill_on_cancel (headers), and
    the role to run it (``?role=NAME``: the body stays the action as the caller wrote it).
    An unknown role is the pool's to refuse (422 InvalidAction, with the roles it has).

    Raises:
        Refused: a malformed deadline (400).
    """
    kwargs: dict[str, Any] = {}
    role = request.query.get(ROLE_PARAMETER)
    if role is not None:
        kwargs["role"] = role
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is not None:
        kwargs["timeout"] = parse_timeout(raw)
    if request.headers.get(KILL_ON_CANCEL_HEADER, "").strip().lower() in ("1", "true"):
        kwargs["kill_on_cancel"] = True
    return kwargs


class Submits:
    """The submit endpoint of one API.

    Args:
        pool: where jobs go.
        control: the daemon (draining, start-up, default deadline).
        max_body: larger bodies get 413.
        error_response: how the API answers a qoper8 error (with its debug setting).
    """

    def __init__(
        self,
        pool: PoolLike,
        control: Control,
        max_body: int,
        error_response: Callable[..., web.Response],
    ) -> None:
        self._pool = pool
        self._control = control
        self._max_body = max_body
        self._error_response = error_response
        self.held = 0  # submits waiting for the start-up to end

    async def submit(self, request: web.Request) -> web.Response:
        action = await read_action(request, self._max_body)
        kwargs = job_options(request)
        refused = await self.admit(kwargs)
        if refused is not None:
            return refused
        try:
            # A caller's traceparent (OpenTelemetry): the pool's spans and the child continue it.
            with continued(request.headers):
                result = await self._pool.submit(action, wait_for_room=False, **kwargs)
        except Qoper8Error as exc:
            return self._error_response(exc)
        return web.Response(body=orjson.dumps({"result": result}), content_type=JSON_TYPE)

    async def admit(self, kwargs: dict[str, Any]) -> web.Response | None:
        """Whether a request for the pool may go on now: None if so (after holding it
        through the start-up, its deadline in ``kwargs`` shortened by the time held), else
        the answer: 503 PoolClosed while draining, or what ``_wait_started`` says."""
        if self._control.draining:
            return self._error_response(PoolClosed("the daemon is shutting down"))
        if not self._pool.is_open:
            return await self._wait_started(kwargs)
        return None

    async def _wait_started(self, kwargs: dict[str, Any]) -> web.Response | None:
        """Hold a submit that arrives while the daemon starts, until its pool is open or
        the job's deadline (its header, else the default timeout) passes; in the deadline's
        place, shorten it by the time held. Returns the answer when it cannot go on: 503
        ``Starting`` (deadline passed) or the start-up's own error (StartFailed, PoolClosed).
        """
        timeout = kwargs.get("timeout", self._control.default_timeout)
        started = time.monotonic()
        self.held += 1
        try:
            async with asyncio.timeout(timeout):
                await self._control.wait_started()
        except TimeoutError:
            return error_reply(
                STARTING,
                f"the daemon is still starting: its children were not ready within the job's "
                f"deadline ({timeout:g}s); try again",
                503,
            )
        except Qoper8Error as exc:
            return self._error_response(exc)
        finally:
            self.held -= 1
        if timeout is not None:
            kwargs["timeout"] = max(timeout - (time.monotonic() - started), MIN_TIMEOUT)
        return None
