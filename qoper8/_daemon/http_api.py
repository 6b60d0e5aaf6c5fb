"""The daemon's HTTP/JSON API, served by aiohttp on the master's own event loop.

It owns the handlers, the status code of each error, the token check and the start-up hold.
It leaves every decision about the pool (resize, reload, drain) to the daemon, which it
reaches through the small ``Control`` protocol, and never imports the pool.

The routes are declared once, in ``openapi.OPERATIONS`` (served as ``/v1/openapi.json``)::

    POST /v1/submit   the action as a JSON object  -> 200 {"result": ...}
    POST /v1/stream   the same, answered as a stream of its messages (``http_stream``)
    POST /v1/broadcast, /v1/ask   to children's on_message functions (``http_messages``)
    /v1/actors...     create, list, get, call, destroy, events (``http_actors``)
    GET  /v1/status   pool statistics, roles, children with pid/state/generation, daemon info
    GET  /v1/health   200 when every child is ready, 503 otherwise
    GET  /metrics     Prometheus text format
    POST /v1/resize   {"children": N | [MIN, MAX]} or {"delta": +-N}; "role", "force": true
    POST /v1/reload   reload the config and start a new generation of children
    GET  /v1/events   Server-Sent Events for the dashboard (``events``)
    GET  /            the dashboard (``dashboard``; static, no token)

Errors come back as ``{"error": {"type": "<qoper8 error class>", "message": ...}}``; the
HTTP-only types are Unauthorized, NotFound, MethodNotAllowed, Starting, TooManyStreams and
InternalError. Reading requests defensively is ``http_input``'s job, rendering metrics
``metrics``'s, the sockets and stopping ``http_server``'s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web

from .. import __version__
from ..errors import Qoper8Error, StartFailed
from .dashboard import Dashboard
from .events import MAX_STREAMS, EventStreams, TooManyStreams
from .history import History, RecordingPool
from .http_access import ACCESS_LOGGER, SERVER_LOGGER, AccessLog
from .http_actors import ActorRoutes
from .http_input import (
    Refused,
    read_json,
    resize_role,
    resize_target,
    token_matches,
)
from .http_messages import Messages
from .http_replies import error_reply, json_reply, qoper8_error_reply
from .http_roles import chosen_role, role_statistics, roles_status
from .http_server import HttpServer
from .http_stream import JobStreams
from .http_submit import Submits
from .http_wire import KILL_ON_CANCEL_HEADER, TIMEOUT_HEADER, status_for
from .metrics import render_metrics
from .openapi import openapi_document, served
from .status import health_body, status_body

if TYPE_CHECKING:
    import socket
    from collections.abc import AsyncIterator, Awaitable, Callable

    from .._engine.pool_like import PoolLike

__all__ = [
    "KILL_ON_CANCEL_HEADER",
    "TIMEOUT_HEADER",
    "Control",
    "HttpApi",
    "status_for",
]

logger = logging.getLogger("qoper8.http")

# How long stop() lets in-flight requests finish writing their answers.
SHUTDOWN_TIMEOUT: Final = 5.0
# Headers of aiohttp's error answers kept when they are rewritten as JSON.
_KEPT_HEADERS: Final = frozenset({"allow"})

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

    async def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> int:
        """Set a role's size or autoscaling range; return its new size."""
        ...

    async def reload(self) -> int: ...


class HttpApi:
    """The routes of ``qoper8 serve`` over a pool and a daemon.

    Args:
        pool: the pool jobs go to.
        control: the daemon, for status information, start-up, resize and reload.
        token: when set, every request must send ``Authorization: Bearer <token>``
            (but for the dashboard's static page).
        max_body_bytes: larger request bodies get 413.
        debug: include the child's traceback in JobFailed errors.
        access_log: log one line per request on ``qoper8.access``.
        public_health: serve ``/v1/health`` and ``/metrics`` without the token.
        dashboard: serve the dashboard's page at ``/``.
        max_streams: ``/v1/events`` streams open at once before 503.
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
        dashboard: bool = True,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.history = History()
        # What the daemon's intakes submit through: errors their callers get are kept for
        # the dashboard (the Redis intake gets this one too).
        self.pool = RecordingPool(pool, self.history)
        self._control = control
        self._token = token.encode() if token else None
        self._max_body = max_body_bytes
        self.debug = debug
        self.public_health = public_health
        self._access_log = access_log
        self.dashboard = dashboard
        ops = served(dashboard=dashboard)
        self._public_paths = {
            health: frozenset(op.path for op in ops if op.public or (health and op.health))
            for health in (False, True)
        }
        self._submits = Submits(self.pool, control, max_body_bytes, self._error_response)
        debug_now = lambda: self.debug  # noqa: E731 (HUP may change it)
        self._streams = JobStreams(
            self.pool, self._submits, max_body_bytes, self._error_response,
            self.history.record_error, debug=debug_now,
        )  # fmt: skip
        self._messages = Messages(
            self.pool, self._submits, max_body_bytes, self._error_response, debug=debug_now
        )
        self.actor_routes = ActorRoutes(
            self.pool, self._submits, max_body_bytes, self._error_response
        )
        self.events = EventStreams(self.status_data, self.history, max_streams=max_streams)
        self._page = Dashboard() if dashboard else None
        self.server = HttpServer(self.make_app, self.runner_options())

    def set_token(self, token: str | None) -> None:
        """Change the token (HUP with a new config); takes effect at the next request."""
        self._token = token.encode() if token else None

    @property
    def held(self) -> int:
        """Submits waiting for the start-up to end (in /v1/status)."""
        return self._submits.held

    @property
    def urls(self) -> list[str]:
        return self.server.urls

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

    def handlers(self) -> dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]:
        """The handler of each operation ``openapi.OPERATIONS`` names."""
        table: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "submit": self._submits.submit,
            "stream": self._streams.stream,
            "broadcast": self._messages.broadcast,
            "ask": self._messages.ask,
            "actor_create": self.actor_routes.create,
            "actor_list": self.actor_routes.list,
            "actor_get": self.actor_routes.get,
            "actor_call": self.actor_routes.call,
            "actor_destroy": self.actor_routes.destroy,
            "actor_events": self.actor_routes.events,
            "status": self._status,
            "health": self._health,
            "metrics": self._metrics,
            "resize": self._resize,
            "reload": self._reload,
            "events": self._events,
            "openapi": self._openapi,
        }
        if self._page is not None:
            serve = self._page.serve
            table.update(page=serve, page_script=serve, page_style=serve)
        return table

    def make_app(self) -> web.Application:
        """The aiohttp application (used by ``start()``, and by tests directly)."""
        # aiohttp enforces client_max_size while it reads a body sent without a length.
        app = web.Application(client_max_size=self._max_body, middlewares=[self._middleware])
        handlers = self.handlers()
        for op in served(dashboard=self.dashboard):
            app.router.add_route(op.method, op.path, handlers.pop(op.name))
        assert not handlers, f"handlers no operation declares: {sorted(handlers)}"
        app.cleanup_ctx.append(self._sampling)
        app.on_shutdown.append(self._close_streams)
        return app

    async def _sampling(self, app: web.Application) -> AsyncIterator[None]:
        """The history's sampler runs while the app is served."""
        task = asyncio.create_task(self.history.run(self.pool.statistics))
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _close_streams(self, app: web.Application) -> None:
        self.events.close_all()
        self.actor_routes.close_all()

    async def start(self, sockets: list[socket.socket], *, owned_unix: str | None = None) -> None:
        """Serve on ``sockets`` (``owned_unix``: a socket file to remove at stop).

        Raises:
            OSError: a socket cannot be listened on.
        """
        await self.server.start(sockets, owned_unix=owned_unix)

    async def stop(self) -> None:
        """Stop listening and let in-flight requests finish writing (bounded)."""
        self.events.close_all()
        self.actor_routes.close_all()
        await self.server.stop()

    def _public(self, path: str) -> bool:
        """Whether ``path`` is served without the token (``public_health`` may change)."""
        return path in self._public_paths[self.public_health]

    # ------------------------------------------------------------ middleware

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await self._answer(request, handler)
        if self.server.closing_connections:
            response.force_close()  # a handover: this client's next request goes to the new master
        return response

    async def _answer(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if (
            self._token is not None
            and not self._public(request.path)
            and not token_matches(request.headers.get("Authorization"), self._token)
        ):
            return error_reply(
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
            return error_reply(
                type(exc).__name__.removeprefix("HTTP"), exc.reason, exc.status, kept
            )
        except Exception:
            logger.exception("unexpected error answering %s %s", request.method, request.path)
            return error_reply("InternalError", "the daemon failed to answer; see its log", 500)

    def _error_response(self, exc: Qoper8Error, status: int | None = None) -> web.Response:
        return qoper8_error_reply(exc, status, debug=self.debug)

    # ------------------------------------------------------------ endpoints

    def status_data(self) -> dict[str, Any]:
        """The body of ``/v1/status`` (and of each ``/v1/events`` event)."""
        stats = self.pool.statistics()
        roles = roles_status(self.pool, role_statistics(self.pool, stats))
        return status_body(self._control.info(), stats, held=self.held, roles=roles)

    async def _status(self, request: web.Request) -> web.Response:
        return json_reply(self.status_data())

    async def _health(self, request: web.Request) -> web.Response:
        body = health_body(
            self.pool.statistics(),
            is_open=self.pool.is_open,
            degraded=self.pool.is_degraded,
            draining=self._control.draining,
            redis=self._control.redis_state(),
        )
        return json_reply(body, 200 if body["status"] == "ready" else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        stats = self.pool.statistics()
        parts = role_statistics(self.pool, stats)
        text = render_metrics(stats, roles=parts if len(parts) > 1 else None)
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_TYPE})

    async def _resize(self, request: web.Request) -> web.Response:
        body = await read_json(request, self._max_body)
        role = chosen_role(self.pool, resize_role(body))
        now = self.pool.statistics(role=role)
        scaled = None if now.max_size is None else (now.min_size or 0, now.max_size)
        children = resize_target(body, now.target_size, scaled=scaled)
        try:
            size = await self._control.resize(children, role=role)
        except Qoper8Error as exc:
            return self._error_response(exc)
        after = self.pool.statistics(role=role)
        return json_reply(
            {
                "children": size,
                "generation": self.pool.generation,
                "role": role,
                "min_size": after.min_size,
                "max_size": after.max_size,
            }
        )

    async def _reload(self, request: web.Request) -> web.Response:
        try:
            generation = await self._control.reload()
        except StartFailed as exc:
            # The old generation keeps serving: the daemon is fine, the new code is not.
            return self._error_response(exc, 500)
        except Qoper8Error as exc:
            return self._error_response(exc)
        return json_reply({"generation": generation, "children": self.pool.size})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self.events.serve(request)
        except TooManyStreams as exc:
            return error_reply("TooManyStreams", str(exc), 503)

    async def _openapi(self, request: web.Request) -> web.Response:
        return json_reply(
            openapi_document(
                version=__version__,
                token=self._token is not None,
                public_health=self.public_health,
                dashboard=self.dashboard,
            )
        )
