"""The HTTP API's routes, declared once: ``HttpApi`` registers its handlers from this table
and ``GET /v1/openapi.json`` is generated from it, so the document cannot drift from what
the daemon serves (a test checks both ways, and every status a test provokes is listed).

Each ``Operation`` says where it is (method, path), which handler serves it, what it
takes and every status it answers with, with the error types that status carries. A status
not listed here is a bug: 500 in particular means only ``JobFailed`` (a handler raised) or,
for reload, ``StartFailed`` (the new code cannot start; the old keeps serving). A submit may
also answer any 4xx or 5xx a handler chose (``HandlerError``), as ``JobFailed``.
"""

from __future__ import annotations

from typing import Any, Final

from .openapi_messages import MESSAGE_OPERATIONS, message_schemas
from .openapi_ops import (
    JSON,
    KILL_ON_CANCEL_PARAMETER,
    ROLE_QUERY_PARAMETER,
    TEXT,
    TIMEOUT_PARAMETER,
    TRACE_PARAMETERS,
    Operation,
    Reply,
)
from .openapi_schemas import component_schemas, ref

__all__ = ["JSON", "OPERATIONS", "Operation", "Reply", "openapi_document"]

OPENAPI_VERSION: Final = "3.1.0"


_UNAUTHORIZED: Final = Reply("missing or wrong token (Unauthorized)")
_TEXT: Final = TEXT


def _page(name: str, path: str, media_type: str, what: str) -> Operation:
    return Operation(
        name,
        "GET",
        path,
        what,
        {200: Reply(what, _TEXT, media_type)},
        public=True,
        dashboard=True,
    )


OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        "submit",
        "POST",
        "/v1/submit",
        "Run one action and answer its handler's result",
        {
            200: Reply("the handler's result", ref("Result")),
            400: Reply("the body is not a JSON object, or a header is malformed"),
            413: Reply("the body is over max_body_bytes"),
            422: Reply(
                "InvalidAction: unknown type or role, a type several roles handle without "
                "role, arguments the handler refuses"
            ),
            500: Reply("JobFailed: the handler raised (its traceback with --debug)"),
            502: Reply("ChildDied: the child died running the job"),
            503: Reply(
                "QueueFull, PoolClosed (draining), StartFailed or Starting; see Retry-After"
            ),
            504: Reply("JobTimeout: the job's deadline passed (the child was replaced)"),
            "4XX": Reply("JobFailed: a HandlerError with the status its handler chose"),
            "5XX": Reply("JobFailed: a HandlerError with the status its handler chose"),
        },
        request=ref("Action"),
        headers=(
            TIMEOUT_PARAMETER,
            KILL_ON_CANCEL_PARAMETER,
            ROLE_QUERY_PARAMETER,
            *TRACE_PARAMETERS,
        ),
    ),
    Operation(
        "status",
        "GET",
        "/v1/status",
        "The daemon, its roles and children, queue and totals",
        {200: Reply("the status", ref("Status"))},
    ),
    Operation(
        "health",
        "GET",
        "/v1/health",
        "Whether the daemon serves: 200 ready, else 503 with why",
        {
            200: Reply("ready", ref("Health")),
            503: Reply("starting, draining, degraded or paused", ref("Health")),
        },
        health=True,
    ),
    Operation(
        "metrics",
        "GET",
        "/metrics",
        "Prometheus metrics (text exposition format 0.0.4)",
        {200: Reply("the metrics", _TEXT, "text/plain")},
        health=True,
    ),
    Operation(
        "resize",
        "POST",
        "/v1/resize",
        "Set a role's number of children or autoscaling range (or change it by a delta)",
        {
            200: Reply("the new size", ref("Resized")),
            400: Reply("not one of the request forms"),
            413: Reply("the body is over max_body_bytes"),
            422: Reply(
                "ConfigError: a size out of range, over 4 per CPU without force, no role "
                "where the daemon has several, or an unknown role"
            ),
            503: Reply("PoolClosed (draining) or StartFailed (new children did not start)"),
        },
        request=ref("ResizeRequest"),
    ),
    Operation(
        "reload",
        "POST",
        "/v1/reload",
        "Reload settings and worker code (as HUP): a new generation of children",
        {
            200: Reply("the new generation", ref("Reloaded")),
            422: Reply("ConfigError: the new settings are invalid; nothing changed"),
            500: Reply("StartFailed: the new code cannot start; the old children serve on"),
            503: Reply("PoolClosed: the daemon is draining"),
        },
    ),
    Operation(
        "events",
        "GET",
        "/v1/events",
        "Server-Sent Events: a snapshot, then updates (what the dashboard shows)",
        {
            200: Reply("events: snapshot, update, bye", _TEXT, "text/event-stream"),
            503: Reply("TooManyStreams: the daemon serves 32 streams at most; see Retry-After"),
        },
    ),
    Operation(
        "openapi",
        "GET",
        "/v1/openapi.json",
        "This document",
        {200: Reply("the OpenAPI document", {"type": "object"})},
    ),
    *MESSAGE_OPERATIONS,
    _page("page", "/", "text/html", "The dashboard (a static page; its data needs the token)"),
    _page("page_script", "/dashboard/app.js", "text/javascript", "The dashboard's script"),
    _page("page_style", "/dashboard/app.css", "text/css", "The dashboard's style sheet"),
)


def served(*, dashboard: bool) -> tuple[Operation, ...]:
    """The operations a daemon with these settings serves."""
    return tuple(op for op in OPERATIONS if dashboard or not op.dashboard)


def openapi_document(
    *, version: str, token: bool, public_health: bool, dashboard: bool
) -> dict[str, Any]:
    """The OpenAPI document of a daemon with these settings."""
    paths: dict[str, dict[str, Any]] = {}
    for op in served(dashboard=dashboard):
        needs_token = token and not op.public and not (public_health and op.health)
        responses = dict(op.responses)
        if needs_token:
            responses[401] = _UNAUTHORIZED
        entry: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "security": [{"bearer": []}] if needs_token else [],
            "responses": {
                str(status): {"description": reply.description, "content": reply.content()}
                for status, reply in sorted(responses.items(), key=lambda item: str(item[0]))
            },
        }
        if op.headers:
            entry["parameters"] = list(op.headers)
        if op.request is not None:
            entry["requestBody"] = {"required": True, "content": {JSON: {"schema": op.request}}}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "qoper8 serve",
            "version": version,
            "description": "The HTTP/JSON API of a qoper8 daemon. Errors answer "
            '{"error": {"type": ..., "message": ...}}.',
        },
        "paths": paths,
        "components": {
            "schemas": {**component_schemas(), **message_schemas()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
