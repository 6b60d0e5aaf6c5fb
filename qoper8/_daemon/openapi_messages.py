"""The route table's entries for messages and actors (``/v1/stream``, ``/v1/broadcast``,
``/v1/ask``, ``/v1/actors...``) and the schemas of their bodies; ``openapi`` puts them in
the one table the daemon serves and documents.
"""

from __future__ import annotations

from typing import Any, Final

from .openapi_ops import (
    KILL_ON_CANCEL_PARAMETER,
    ROLE_QUERY_PARAMETER,
    TEXT,
    TIMEOUT_PARAMETER,
    TRACE_PARAMETERS,
    Operation,
    Reply,
    path_parameter,
    query_parameter,
)
from .openapi_schemas import ref

__all__ = ["MESSAGE_OPERATIONS", "message_schemas"]

_EVENTS: Final = "text/event-stream"
_NDJSON: Final = "application/x-ndjson"
_ANY: Final[dict[str, Any]] = {"description": "any JSON value"}
_TIMEOUT: Final = {
    "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}],
    "description": "seconds; null for no deadline; absent: the daemon's --timeout",
}
_NAME: Final = path_parameter("name", "the actor's name (percent-encode a '/')")

_R400: Final = Reply("the body is not a JSON object of the documented fields")
_R413: Final = Reply("the body is over max_body_bytes")
_R404: Final = Reply("ActorNotFound: no actor of that name")
_R503: Final = Reply("PoolClosed (draining), StartFailed or Starting; see Retry-After")
_JOB_ERRORS: Final[dict[int | str, Reply]] = {
    500: Reply("JobFailed: the function raised (its traceback with --debug)"),
    502: Reply("ChildDied (ActorDied for an actor): its child died first"),
    504: Reply("JobTimeout: no answer within the deadline"),
    "4XX": Reply("JobFailed: a HandlerError with the status its function chose"),
    "5XX": Reply("JobFailed: a HandlerError with the status its function chose"),
}


MESSAGE_OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        "stream",
        "POST",
        "/v1/stream",
        "Run one action and stream what its handler sends, then its result",
        {
            200: Reply(
                "Server-Sent Events (message, progress, result, error: /v1/submit's error "
                "body), or with Accept: application/x-ndjson one JSON object a line "
                '({"message"}, {"progress"}, {"result"}, {"error"}); keep-alives while it '
                "runs (an SSE comment, an empty NDJSON line)",
                TEXT,
                _EVENTS,
                also=((_NDJSON, TEXT),),
            ),
            400: Reply("the body is not a JSON object, or a header is malformed"),
            413: _R413,
            422: Reply(
                "InvalidAction: unknown type or role, a type several roles handle without "
                "role, arguments the handler refuses"
            ),
            503: Reply(
                "QueueFull, PoolClosed (draining), StartFailed or Starting; see Retry-After"
            ),
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
        "broadcast",
        "POST",
        "/v1/broadcast",
        "Send a message to every live child's on_message function; each one's answer",
        {
            200: Reply("per child, its reply or the error in its place", ref("BroadcastReport")),
            400: _R400,
            413: _R413,
            422: Reply("InvalidAction: not a dotted topic, a reserved one, a payload refused"),
            503: _R503,
        },
        request=ref("BroadcastRequest"),
    ),
    Operation(
        "ask",
        "POST",
        "/v1/ask",
        "Send a message to one child's on_message function and answer its reply",
        {
            200: Reply("the function's reply", ref("Result")),
            400: _R400,
            413: _R413,
            422: Reply("InvalidAction: no such live child, no function for the topic"),
            503: _R503,
            **_JOB_ERRORS,
        },
        request=ref("AskRequest"),
    ),
    Operation(
        "actor_create",
        "POST",
        "/v1/actors",
        "Create a named actor (get-or-create is one atomic step)",
        {
            200: Reply("it existed and if_exists was 'get'", ref("ActorInfo")),
            201: Reply("created and started", ref("ActorInfo")),
            400: _R400,
            409: Reply("ActorExists: the name is taken (if_exists 'error')"),
            413: _R413,
            422: Reply("InvalidAction: an unknown type, a bad name, arguments refused"),
            500: Reply("JobFailed: its __init__ raised"),
            502: Reply("ChildDied: its child died while it started"),
            503: Reply("ActorUnavailable (max_actors), PoolClosed, Starting; see Retry-After"),
        },
        request=ref("ActorCreateRequest"),
    ),
    Operation(
        "actor_list",
        "GET",
        "/v1/actors",
        "Every actor: name, type, state, child and pid, restarts, queued calls",
        {200: Reply("the actors", ref("ActorList"))},
    ),
    Operation(
        "actor_get",
        "GET",
        "/v1/actors/{name}",
        "One actor's info (with ?wait=, once it exists)",
        {
            200: Reply("the actor", ref("ActorInfo")),
            400: Reply("a malformed ?wait="),
            404: _R404,
        },
        headers=(
            _NAME,
            query_parameter(
                "wait", "seconds to wait for it to be created", {"type": "number", "minimum": 0}
            ),
        ),
    ),
    Operation(
        "actor_call",
        "POST",
        "/v1/actors/{name}/call",
        "Call one of an actor's methods and answer its result",
        {
            200: Reply("the method's result", ref("Result")),
            400: _R400,
            404: _R404,
            413: _R413,
            422: Reply("InvalidAction: no such method, arguments it refuses"),
            503: Reply("ActorUnavailable (restarts used up, destroyed), PoolClosed, Starting"),
            **_JOB_ERRORS,
        },
        request=ref("ActorCallRequest"),
        headers=(_NAME, KILL_ON_CANCEL_PARAMETER),
    ),
    Operation(
        "actor_destroy",
        "DELETE",
        "/v1/actors/{name}",
        "Destroy an actor: its queued calls fail, its name is free",
        {200: Reply("destroyed", ref("ActorDestroyed")), 404: _R404},
        headers=(_NAME,),
    ),
    Operation(
        "actor_events",
        "GET",
        "/v1/actors/{name}/events",
        "Server-Sent Events of what the actor emits, until it is destroyed or you leave",
        {
            200: Reply(
                'events: actor {"event", "payload", "missed"}, then end {"reason"}',
                TEXT,
                _EVENTS,
            ),
            400: Reply("a malformed ?buffer="),
            404: _R404,
            503: Reply("TooManyStreams: the daemon's limit of actor event streams"),
        },
        headers=(
            _NAME,
            query_parameter(
                "buffer",
                "events kept for you when you fall behind (the oldest are dropped, counted "
                "in missed)",
                {"type": "integer", "minimum": 1, "maximum": 10_000},
            ),
        ),
    ),
)


def _object(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def message_schemas() -> dict[str, Any]:
    """The bodies of the routes above (ActorInfo comes with the status's schemas)."""
    payload = {
        "anyOf": [{"type": "object"}, {"type": "null"}],
        "description": "keyword arguments of the on_message function",
    }
    reply = {
        "type": "object",
        "properties": {
            "child": {"type": "integer"},
            "pid": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "value": _ANY,
            "error": ref("ErrorInfo"),
        },
        "required": ["child", "pid"],
        "additionalProperties": False,
    }
    args = {"anyOf": [{"type": "object"}, {"type": "null"}]}
    return {
        "BroadcastRequest": _object(
            {"topic": TEXT, "payload": payload, "timeout": _TIMEOUT, "sticky": {"type": "boolean"}},
            "topic",
        ),
        "BroadcastReport": _object(
            {
                "topic": TEXT,
                "complete": {"type": "boolean"},
                "replies": {"type": "array", "items": reply},
            },
            "topic",
            "complete",
            "replies",
        ),
        "AskRequest": {
            **_object(
                {
                    "child": {"type": "integer", "minimum": 0},
                    "pid": {"type": "integer", "minimum": 0},
                    "topic": TEXT,
                    "payload": payload,
                    "timeout": _TIMEOUT,
                },
                "topic",
            ),
            "description": 'exactly one of "child" (its id in /v1/status) and "pid"',
        },
        "ActorCreateRequest": _object(
            {
                "type": TEXT,
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "args": args,
                "if_exists": {"type": "string", "enum": ["error", "get"]},
                "max_restarts": {"type": "integer", "minimum": 0},
            },
            "type",
            "name",
        ),
        "ActorCallRequest": _object({"method": TEXT, "args": args, "timeout": _TIMEOUT}, "method"),
        "ActorList": _object({"actors": {"type": "array", "items": ref("ActorInfo")}}, "actors"),
        "ActorDestroyed": _object(
            {"name": TEXT, "destroyed": {"type": "boolean", "const": True}}, "name", "destroyed"
        ),
    }
