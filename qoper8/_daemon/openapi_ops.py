"""The pieces the route table is made of (``openapi`` holds the table): an ``Operation`` per
route, a ``Reply`` per status, and the request parameters several routes share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from .._engine.tracing import TRACE_FIELDS
from .http_wire import KILL_ON_CANCEL_HEADER, TIMEOUT_HEADER
from .openapi_schemas import ref

__all__ = [
    "JSON",
    "KILL_ON_CANCEL_PARAMETER",
    "ROLE_QUERY_PARAMETER",
    "TEXT",
    "TIMEOUT_PARAMETER",
    "TRACE_PARAMETERS",
    "Operation",
    "Reply",
    "path_parameter",
    "query_parameter",
]

JSON: Final = "application/json"
TEXT: Final = {"type": "string"}


@dataclass(frozen=True, slots=True)
class Reply:
    """One status an operation answers with: what it means and what the body is (more
    than one media type when the client chooses, e.g. a stream's SSE or NDJSON)."""

    description: str
    schema: dict[str, Any] = field(default_factory=lambda: ref("Error"))
    media_type: str = JSON
    also: tuple[tuple[str, dict[str, Any]], ...] = ()  # more (media type, schema) pairs

    def content(self) -> dict[str, Any]:
        return {
            media_type: {"schema": schema}
            for media_type, schema in ((self.media_type, self.schema), *self.also)
        }


@dataclass(frozen=True, slots=True)
class Operation:
    """One route of the API."""

    name: str  # the handler that serves it (HttpApi's handler table)
    method: str
    path: str
    summary: str
    responses: dict[int | str, Reply]  # a status, or a range: "4XX"
    request: dict[str, Any] | None = None  # the JSON body's schema
    headers: tuple[dict[str, Any], ...] = ()  # its parameters: headers, path, query
    public: bool = False  # served without the token (the dashboard's static page)
    health: bool = False  # served without the token under --public-health
    dashboard: bool = False  # served only with the dashboard on


TIMEOUT_PARAMETER: Final = {
    "name": TIMEOUT_HEADER,
    "in": "header",
    "required": False,
    "description": "the job's deadline in seconds, or 'none'; default: the daemon's --timeout",
    "schema": TEXT,
}
KILL_ON_CANCEL_PARAMETER: Final = {
    "name": KILL_ON_CANCEL_HEADER,
    "in": "header",
    "required": False,
    "description": "'1': if the client goes away while the job runs, kill and replace its child",
    "schema": TEXT,
}

# traceparent, tracestate: the routes that run a job continue a caller's trace.
TRACE_PARAMETERS: Final = tuple(
    {
        "name": name,
        "in": "header",
        "required": False,
        "description": "W3C trace context (OpenTelemetry): the job's spans, and its "
        "handler's, continue the caller's trace",
        "schema": TEXT,
    }
    for name in TRACE_FIELDS
)


ROLE_QUERY_PARAMETER: Final = {
    "name": "role",
    "in": "query",
    "required": False,
    "description": "the role to run the job (a daemon of several roles finds it from the "
    "action's type; a type several roles handle needs it); an unknown role is 422 "
    "InvalidAction",
    "schema": TEXT,
}


def path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": TEXT,
    }


def query_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }
