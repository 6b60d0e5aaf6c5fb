"""The daemon's HTTP/JSON API, served by aiohttp on the master's own event loop.

It owns the routes, the status code of each error, the token check, the body limit and the
Prometheus rendering. It leaves every decision about the pool (resize, reload, drain) to the
daemon, which it reaches through the small ``Control`` protocol, and never imports the pool.

Endpoints::

    POST /v1/submit   the action as a JSON object  -> 200 {"result": ...}
    GET  /v1/status   pool statistics, children with pid/state/generation, daemon info
    GET  /v1/health   200 when every child is ready, 503 otherwise
    GET  /metrics     Prometheus text format
    POST /v1/resize   {"children": N} or {"delta": +-N}
    POST /v1/reload   reload the config and start a new generation of children

Errors come back as ``{"error": {"type": "<qoper8 error class>", "message": ...}}``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import os
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson
from aiohttp import web

from ..errors import (
    ConfigError,
    InvalidAction,
    PoolClosed,
    Qoper8Error,
    StartFailed,
    error_to_dict,
    http_status,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._stats import Histogram, PoolStatistics
    from . import PoolLike

__all__ = [
    "KILL_ON_CANCEL_HEADER",
    "TIMEOUT_HEADER",
    "Control",
    "HttpApi",
    "render_metrics",
    "status_for",
]

logger = logging.getLogger("qoper8.http")

# Per-request job deadline in seconds ("none" for no deadline); absent means the daemon's
# default timeout. A header rather than a body field, so the body stays exactly the action.
TIMEOUT_HEADER: Final = "Qoper8-Timeout"
# What a 503 for QueueFull tells the caller to wait before trying again. One second is long
# against a job's run time and short against a human's patience.
RETRY_AFTER_SECONDS: Final = 1
# "1" asks that the job's child be killed if the caller goes away while the job runs (the
# pool's kill_on_cancel). A caller that goes away while its job is queued always drops it.
KILL_ON_CANCEL_HEADER: Final = "Qoper8-Kill-On-Cancel"
# How long stop() lets in-flight requests finish writing their answers.
SHUTDOWN_TIMEOUT: Final = 5.0

JSON_TYPE: Final = "application/json"
METRICS_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

CHILD_STATES: Final = ("starting", "idle", "busy", "retiring", "dead")


def status_for(exc: Qoper8Error) -> int:
    """The HTTP status that carries ``exc``: ``qoper8.errors.http_status``, which other web
    integrations reuse so that they answer exactly as the daemon does."""
    return http_status(exc)


class Control(Protocol):
    """What the API asks of the daemon: information, and operations it serialises."""

    @property
    def draining(self) -> bool: ...

    def info(self) -> dict[str, Any]: ...

    async def resize(self, children: int) -> int: ...

    async def reload(self) -> int: ...


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type=JSON_TYPE, headers=headers
    )


def _error(type_name: str, message: str, status: int) -> web.Response:
    return _json({"error": {"type": type_name, "message": message}}, status)


class HttpApi:
    """The routes of ``qoper8 serve`` over a pool and a daemon.

    Args:
        pool: the pool jobs go to.
        control: the daemon, for status information, resize and reload.
        token: when set, every request must send ``Authorization: Bearer <token>``.
        max_body_bytes: larger request bodies get 413.
        debug: include the child's traceback in JobFailed errors.
    """

    def __init__(
        self,
        pool: PoolLike,
        control: Control,
        *,
        token: str | None,
        max_body_bytes: int,
        debug: bool = False,
    ) -> None:
        self._pool = pool
        self._control = control
        self._token = token.encode() if token else None
        self._max_body = max_body_bytes
        self.debug = debug
        self._runner: web.AppRunner | None = None
        self._unix: str | None = None
        self.urls: list[str] = []

    def set_token(self, token: str | None) -> None:
        """Change the token (HUP with a new config); takes effect at the next request."""
        self._token = token.encode() if token else None

    # ------------------------------------------------------------ serving

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
        runner = web.AppRunner(
            self.make_app(),
            handle_signals=False,  # the daemon owns every signal
            # A client that disconnects cancels its submit, as cancelling Pool.submit does:
            # a queued job is dropped rather than run for nobody.
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
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
        if self._token is not None:
            given = request.headers.get("Authorization", "")
            scheme, _, credential = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), self._token
            ):
                return web.Response(
                    body=orjson.dumps(
                        {
                            "error": {
                                "type": "Unauthorized",
                                "message": "missing or wrong token: send 'Authorization: "
                                "Bearer <token>'",
                            }
                        }
                    ),
                    status=401,
                    content_type=JSON_TYPE,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(type(exc).__name__.removeprefix("HTTP"), exc.reason, exc.status)
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

    async def _read_json(self, request: web.Request) -> Any:
        """The body as JSON, or raise ``_Refused`` with the response to send."""
        length = request.content_length
        if length is not None and length > self._max_body:
            raise _Refused(self._too_large(length))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(self._too_large(None)) from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            err = InvalidAction(f"the request body is not valid JSON: {exc}")
            raise _Refused(self._error_response(err, 400)) from None

    def _too_large(self, length: int | None) -> web.Response:
        size = f"{length} bytes" if length is not None else "the request body"
        err = InvalidAction(f"{size} is over the daemon's limit of {self._max_body} bytes")
        return self._error_response(err, 413)

    # ------------------------------------------------------------ endpoints

    async def _submit(self, request: web.Request) -> web.Response:
        try:
            action = await self._read_json(request)
        except _Refused as refused:
            return refused.response
        if not isinstance(action, dict):
            err = InvalidAction(
                f"the body must be a JSON object with a 'type' field, not {type(action).__name__}"
            )
            return self._error_response(err, 400)
        kwargs: dict[str, Any] = {}
        raw = request.headers.get(TIMEOUT_HEADER)
        if raw is not None:
            try:
                kwargs["timeout"] = _parse_timeout(raw)
            except ValueError as exc:
                return self._error_response(InvalidAction(str(exc)), 400)
        if request.headers.get(KILL_ON_CANCEL_HEADER, "").strip().lower() in ("1", "true"):
            kwargs["kill_on_cancel"] = True
        if self._control.draining:
            return self._error_response(PoolClosed("the daemon is shutting down"))
        try:
            result = await self._pool.submit(action, wait_for_room=False, **kwargs)
        except Qoper8Error as exc:
            return self._error_response(exc)
        return web.Response(body=orjson.dumps({"result": result}), content_type=JSON_TYPE)

    async def _status(self, request: web.Request) -> web.Response:
        stats = self._pool.statistics().to_dict()
        return _json({**self._control.info(), **stats})

    async def _health(self, request: web.Request) -> web.Response:
        stats = self._pool.statistics()
        # Any generation counts: during a reload the old children serve until the new ones
        # are ready, and a load balancer must not take the daemon out of rotation for that.
        ready = sum(1 for c in stats.children if c.state in ("idle", "busy"))
        if self._control.draining:
            status = "draining"
        elif not self._pool.is_open:
            status = "starting"
        elif ready >= stats.target_size:
            status = "ready"
        else:
            status = "starting"
        body = {"status": status, "ready": ready, "target": stats.target_size}
        return _json(body, 200 if status == "ready" else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        text = render_metrics(self._pool.statistics())
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_TYPE})

    async def _resize(self, request: web.Request) -> web.Response:
        try:
            body = await self._read_json(request)
        except _Refused as refused:
            return refused.response
        children = body.get("children") if isinstance(body, dict) else None
        delta = body.get("delta") if isinstance(body, dict) else None
        if delta is not None and children is None and _is_int(delta):
            children = self._pool.size + delta
        if not isinstance(children, int) or isinstance(children, bool):
            err = ConfigError('send {"children": N} or {"delta": +1} with whole numbers')
            return self._error_response(err, 400)
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


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_timeout(raw: str) -> float | None:
    if raw.strip().lower() in ("none", "null", ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{TIMEOUT_HEADER} must be a positive number of seconds or 'none'")
    return value


# ---------------------------------------------------------------- Prometheus


def _histogram(lines: list[str], name: str, help_text: str, hist: Histogram) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} histogram")
    for bound, count in hist.buckets:
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {count}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {hist.count}')
    lines.append(f"{name}_sum {hist.sum!r}")
    lines.append(f"{name}_count {hist.count}")


def render_metrics(stats: PoolStatistics) -> str:
    """The pool's statistics in the Prometheus text exposition format (version 0.0.4)."""
    lines = [
        "# HELP qoper8_jobs_submitted_total Jobs accepted into the pool.",
        "# TYPE qoper8_jobs_submitted_total counter",
        f"qoper8_jobs_submitted_total {stats.submitted}",
        "# HELP qoper8_jobs_total Jobs that ended, by outcome.",
        "# TYPE qoper8_jobs_total counter",
    ]
    outcomes = {
        "completed": stats.completed,
        "failed": stats.failed,
        "invalid": stats.invalid,
        "timed_out": stats.timed_out,
        "died": stats.died,
        "cancelled": stats.cancelled,
        "rejected": stats.rejected,
    }
    lines.extend(f'qoper8_jobs_total{{outcome="{k}"}} {v}' for k, v in outcomes.items())
    by_state = dict.fromkeys(CHILD_STATES, 0)
    for child in stats.children:
        by_state[child.state] = by_state.get(child.state, 0) + 1
    lines += [
        "# HELP qoper8_queue_length Jobs waiting for an idle child.",
        "# TYPE qoper8_queue_length gauge",
        f"qoper8_queue_length {stats.queue_length}",
        "# HELP qoper8_jobs_running Jobs running in a child now.",
        "# TYPE qoper8_jobs_running gauge",
        f"qoper8_jobs_running {stats.running}",
        "# HELP qoper8_children Children by state.",
        "# TYPE qoper8_children gauge",
        *(f'qoper8_children{{state="{k}"}} {v}' for k, v in by_state.items()),
        "# HELP qoper8_children_target The number of children the pool converges on.",
        "# TYPE qoper8_children_target gauge",
        f"qoper8_children_target {stats.target_size}",
        "# HELP qoper8_generation The current generation of children (reload increments it).",
        "# TYPE qoper8_generation gauge",
        f"qoper8_generation {stats.generation}",
        "# HELP qoper8_children_recycled_total Children retired after max jobs or memory.",
        "# TYPE qoper8_children_recycled_total counter",
        f"qoper8_children_recycled_total {stats.recycled}",
    ]
    _histogram(
        lines,
        "qoper8_queue_wait_seconds",
        "Time from submit until a child took the job.",
        stats.queue_wait_histogram,
    )
    _histogram(
        lines, "qoper8_run_time_seconds", "Time a child spent on a job.", stats.run_time_histogram
    )
    return "\n".join(lines) + "\n"
