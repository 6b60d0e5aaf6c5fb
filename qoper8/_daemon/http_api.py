"""The daemon's HTTP/JSON API, served by aiohttp on the master's own event loop.

It owns the routes, the status code of each error, the token check and the start-up hold.
It leaves every decision about the pool (resize, reload, drain) to the daemon, which it
reaches through the small ``Control`` protocol, and never imports the pool.

Endpoints::

    POST /v1/submit   the action as a JSON object  -> 200 {"result": ...}
    GET  /v1/status   pool statistics, children with pid/state/generation, daemon info
    GET  /v1/health   200 when every child is ready, 503 otherwise
    GET  /metrics     Prometheus text format
    POST /v1/resize   {"children": N} or {"delta": +-N}, optionally "force": true
    POST /v1/reload   reload the config and start a new generation of children

Errors come back as ``{"error": {"type": "<qoper8 error class>", "message": ...}}``; the
HTTP-only types are Unauthorized, NotFound, MethodNotAllowed, Starting and InternalError.
Reading requests defensively is ``http_input``'s job, rendering metrics ``metrics``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson
from aiohttp import web

from ..errors import InvalidAction, PoolClosed, Qoper8Error, StartFailed, error_to_dict
from .http_access import ACCESS_LOGGER, SERVER_LOGGER, AccessLog
from .http_input import (
    Refused,
    parse_timeout,
    read_json,
    resize_target,
    token_matches,
)
from .http_wire import KILL_ON_CANCEL_HEADER, TIMEOUT_HEADER, status_for
from .metrics import render_metrics

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._engine.pool_like import PoolLike

__all__ = [
    "KILL_ON_CANCEL_HEADER",
    "TIMEOUT_HEADER",
    "Control",
    "HttpApi",
    "status_for",
]

logger = logging.getLogger("qoper8.http")

# What a 503 for QueueFull tells the caller to wait before trying again. One second is long
# against a job's run time and short against a human's patience.
RETRY_AFTER_SECONDS: Final = 1
# How long stop() lets in-flight requests finish writing their answers.
SHUTDOWN_TIMEOUT: Final = 5.0
# The error type of a submit whose deadline passed while the daemon was still starting
# (503 with Retry-After: the daemon will serve, just not yet).
STARTING: Final = "Starting"
# What is left of a deadline after a start-up hold is never less than this: the pool refuses
# a zero timeout, and the job should still get its one chance to run.
MIN_TIMEOUT: Final = 0.001
# Paths served without the token under --public-health (for probes and scrapers).
PUBLIC_PATHS: Final = frozenset({"/v1/health", "/metrics"})
# Headers of aiohttp's error answers kept when they are rewritten as JSON.
_KEPT_HEADERS: Final = frozenset({"allow"})

JSON_TYPE: Final = "application/json"
METRICS_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class Control(Protocol):
    """What the API asks of the daemon: information, and operations it serialises."""

    @property
    def draining(self) -> bool: ...

    @property
    def default_timeout(self) -> float | None:
        """The pool's default job deadline, which also bounds a submit held at start-up."""
        ...

    def info(self) -> dict[str, Any]: ...

    def redis_state(self) -> dict[str, Any] | None:
        """The Redis intake's connection (``connected``, ``last_error``), None without one."""
        ...

    async def wait_started(self) -> None:
        """Return once the pool is open; raise StartFailed or PoolClosed if it never will."""
        ...

    async def resize(self, children: int) -> int: ...

    async def reload(self) -> int: ...


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type=JSON_TYPE, headers=headers
    )


def _error(
    type_name: str, message: str, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    return _json({"error": {"type": type_name, "message": message}}, status, headers)


class HttpApi:
    """The routes of ``qoper8 serve`` over a pool and a daemon.

    Args:
        pool: the pool jobs go to.
        control: the daemon, for status information, start-up, resize and reload.
        token: when set, every request must send ``Authorization: Bearer <token>``.
        max_body_bytes: larger request bodies get 413.
        debug: include the child's traceback in JobFailed errors.
        access_log: log one line per request on ``qoper8.access``.
        public_health: serve ``/v1/health`` and ``/metrics`` without the token.
    """

    def __init__(
        self,
        pool: PoolLike,
        control: Control,
        *,
        token: str | None,
        max_body_bytes: int,
        debug: bool = False,
        access_log: bool = False,
        public_health: bool = False,
    ) -> None:
        self._pool = pool
        self._control = control
        self._token = token.encode() if token else None
        self._max_body = max_body_bytes
        self.debug = debug
        self.public_health = public_health
        self._access_log = access_log
        self.held = 0  # submits waiting for the start-up to end (in /v1/status)
        self._runner: web.AppRunner | None = None
        self._unix: str | None = None
        self.urls: list[str] = []

    def set_token(self, token: str | None) -> None:
        """Change the token (HUP with a new config); takes effect at the next request."""
        self._token = token.encode() if token else None

    # ------------------------------------------------------------ serving

    def runner_options(self) -> dict[str, Any]:
        """How aiohttp serves the app (``AppRunner``'s options; tests pass them to their
        ``TestServer`` so they serve it the same way)."""
        return {
            "handle_signals": False,  # the daemon owns every signal
            # A client that disconnects cancels its submit, as cancelling Pool.submit does:
            # a queued job is dropped rather than run for nobody.
            "handler_cancellation": True,
            "access_log": ACCESS_LOGGER if self._access_log else None,
            "access_log_class": AccessLog,
            "logger": SERVER_LOGGER,
            "shutdown_timeout": SHUTDOWN_TIMEOUT,
        }

    def make_app(self) -> web.Application:
        """The aiohttp application (used by ``start()``, and by tests directly)."""
        # aiohttp enforces client_max_size while it reads a body sent without a length.
        app = web.Application(client_max_size=self._max_body, middlewares=[self._middleware])
        app.router.add_post("/v1/submit", self._submit)
        app.router.add_get("/v1/status", self._status)
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/v1/resize", self._resize)
        app.router.add_post("/v1/reload", self._reload)
        return app

    async def start(self, *, host: str, port: int, unix: str | None = None) -> list[str]:
        """Listen on ``unix`` if given, else on ``host:port``; return the URLs served.

        Raises:
            OSError: the address is taken or cannot be bound.
        """
        runner = web.AppRunner(self.make_app(), **self.runner_options())
        await runner.setup()
        self._runner = runner
        try:
            if unix is not None:
                await web.UnixSite(runner, unix).start()
                self._unix = unix
                self.urls = [f"unix:{unix}"]
            else:
                await web.TCPSite(runner, host, port).start()
                self.urls = []
                for addr in runner.addresses:
                    h, p = addr[0], addr[1]
                    self.urls.append(f"http://[{h}]:{p}" if ":" in h else f"http://{h}:{p}")
        except BaseException:
            await self.stop()
            raise
        return self.urls

    async def stop(self) -> None:
        """Stop listening and let in-flight requests finish writing (bounded)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        unix, self._unix = self._unix, None
        if unix is not None:  # asyncio leaves the socket file behind (before Python 3.13)
            with contextlib.suppress(OSError):
                os.unlink(unix)

    # ------------------------------------------------------------ middleware

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if (
            self._token is not None
            and not (self.public_health and request.path in PUBLIC_PATHS)
            and not token_matches(request.headers.get("Authorization"), self._token)
        ):
            return _error(
                "Unauthorized",
                "missing or wrong token: send 'Authorization: Bearer <token>'",
                401,
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            return await handler(request)
        except Refused as refused:
            response = self._error_response(refused.error, refused.status)
            if refused.close:
                response.force_close()
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # Keep what the client needs to act on (405's Allow); drop the text body's own.
            kept = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_HEADERS}
            return _error(type(exc).__name__.removeprefix("HTTP"), exc.reason, exc.status, kept)
        except Exception:
            logger.exception("unexpected error answering %s %s", request.method, request.path)
            return _error("InternalError", "the daemon failed to answer; see its log", 500)

    def _error_response(self, exc: Qoper8Error, status: int | None = None) -> web.Response:
        status = status or status_for(exc)
        headers = None
        if status == 503:
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        body = {"error": error_to_dict(exc, include_traceback=self.debug)}
        return _json(body, status, headers)

    # ------------------------------------------------------------ endpoints

    async def _submit(self, request: web.Request) -> web.Response:
        action = await read_json(request, self._max_body)
        if not isinstance(action, dict):
            err = InvalidAction(
                f"the body must be a JSON object with a 'type' field, not {type(action).__name__}"
            )
            return self._error_response(err, 400)
        kwargs: dict[str, Any] = {}
        raw = request.headers.get(TIMEOUT_HEADER)
        if raw is not None:
            kwargs["timeout"] = parse_timeout(raw)
        if request.headers.get(KILL_ON_CANCEL_HEADER, "").strip().lower() in ("1", "true"):
            kwargs["kill_on_cancel"] = True
        if self._control.draining:
            return self._error_response(PoolClosed("the daemon is shutting down"))
        if not self._pool.is_open:
            refused = await self._wait_started(kwargs)
            if refused is not None:
                return refused
        try:
            result = await self._pool.submit(action, wait_for_room=False, **kwargs)
        except Qoper8Error as exc:
            return self._error_response(exc)
        return web.Response(body=orjson.dumps({"result": result}), content_type=JSON_TYPE)

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
            return _error(
                STARTING,
                f"the daemon is still starting: its children were not ready within the job's "
                f"deadline ({timeout:g}s); try again",
                503,
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        except Qoper8Error as exc:
            return self._error_response(exc)
        finally:
            self.held -= 1
        if timeout is not None:
            kwargs["timeout"] = max(timeout - (time.monotonic() - started), MIN_TIMEOUT)
        return None

    async def _status(self, request: web.Request) -> web.Response:
        stats = self._pool.statistics().to_dict()
        return _json({**self._control.info(), **stats, "held": self.held})

    async def _health(self, request: web.Request) -> web.Response:
        stats = self._pool.statistics()
        # Any generation counts: during a reload the old children serve until the new ones
        # are ready, and a load balancer must not take the daemon out of rotation for that.
        ready = sum(1 for c in stats.children if c.state in ("idle", "busy"))
        redis = self._control.redis_state()
        redis_down = redis is not None and not redis["connected"]
        if self._control.draining:
            status = "draining"
        elif not self._pool.is_open:
            status = "starting"
        elif self._pool.is_degraded or redis_down:
            # Children fail to start (a dependency is down), or the Redis intake cannot reach
            # Redis: the daemon recovers by itself, but it does not do all its work meanwhile.
            status = "degraded"
        elif ready >= stats.target_size:
            status = "ready"
        else:
            status = "starting"
        body: dict[str, Any] = {"status": status, "ready": ready, "target": stats.target_size}
        if stats.degraded:
            body["failed_starts"] = stats.failed_starts
        if redis is not None:
            body["redis"] = "connected" if redis["connected"] else "disconnected"
            if redis_down and redis.get("last_error"):
                body["redis_error"] = redis["last_error"]
        return _json(body, 200 if status == "ready" else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        text = render_metrics(self._pool.statistics())
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_TYPE})

    async def _resize(self, request: web.Request) -> web.Response:
        body = await read_json(request, self._max_body)
        children = resize_target(body, self._pool.size)
        try:
            size = await self._control.resize(children)
        except Qoper8Error as exc:
            return self._error_response(exc)
        return _json({"children": size, "generation": self._pool.generation})

    async def _reload(self, request: web.Request) -> web.Response:
        try:
            generation = await self._control.reload()
        except StartFailed as exc:
            # The old generation keeps serving: the daemon is fine, the new code is not.
            return self._error_response(exc, 500)
        except Qoper8Error as exc:
            return self._error_response(exc)
        return _json({"generation": generation, "children": self._pool.size})
