"""The JSON Schemas of the HTTP API's bodies, for its OpenAPI document (``openapi``).

The pool's statistics are described by pydantic from the very dataclasses ``/v1/status``
serialises, so a field added there is described here with no edit; the daemon's own fields
are listed by hand, and ``additionalProperties: false`` makes a field added to the answer
but not here fail the tests that check answers against this document.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import TypeAdapter

from .._engine.stats import PoolStatistics
from ..config import MAX_CHILDREN

__all__ = ["HEALTH_STATES", "component_schemas", "ref"]

# What /v1/health's "status" may say.
HEALTH_STATES: Final = ("ready", "starting", "draining", "degraded", "paused")

_PREFIX: Final = "#/components/schemas/"

_INT: Final = {"type": "integer"}
_NUMBER: Final = {"type": "number"}
_STRING: Final = {"type": "string"}
_BOOL: Final = {"type": "boolean"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": _PREFIX + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(
    properties: dict[str, Any], *, optional: tuple[str, ...] = (), description: str = ""
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


# The daemon's fields of /v1/status, beside the pool's statistics.
_DAEMON_STATUS: Final[dict[str, Any]] = {
    "pid": _INT,
    "version": _STRING,
    "worker": _STRING,
    "uptime": _NUMBER,
    "draining": _BOOL,
    "paused": _BOOL,
    "handlers": {"type": "array", "items": _STRING},
    "urls": {"type": "array", "items": _STRING},
    "redis": _nullable(_object({"connected": _BOOL, "last_error": _nullable(_STRING)})),
    "held": _INT,
    "roles": {"type": "array", "items": ref("Role")},
}


def _statistics() -> tuple[dict[str, Any], dict[str, Any]]:
    """PoolStatistics' schema, and the schemas it refers to, as pydantic describes them."""
    schema = TypeAdapter(PoolStatistics).json_schema(
        ref_template=_PREFIX + "{model}", mode="serialization"
    )
    defs = schema.pop("$defs", {})
    for sub in defs.values():
        sub["additionalProperties"] = False
    return schema, defs


def component_schemas() -> dict[str, Any]:
    """Every schema the document names, by name."""
    stats, defs = _statistics()
    properties = {**stats["properties"], **_DAEMON_STATUS}
    entry = {
        "type": "object",
        "description": "one problem: where (loc), what (msg) and its kind (type)",
        "properties": {"loc": {"type": "array"}, "msg": _STRING, "type": _STRING},
        "required": ["loc", "msg", "type"],
    }
    fields: dict[str, Any] = {
        "type": _STRING,
        "message": _STRING,
        "job_id": _nullable(_INT),
        # JobFailed: the handler's exception; status, code and details of a HandlerError.
        "remote_type": _STRING,
        "remote_types": {"type": "array", "items": _STRING},
        "remote_message": _STRING,
        "remote_traceback": _STRING,
        "status": _nullable(_INT),
        "code": _nullable(_STRING),
        "details": {"description": "JSON data the handler attached"},
        # InvalidAction, InvalidResult: one entry per problem.
        "errors": {"type": "array", "items": entry},
        "errors_omitted": _INT,
        # ChildDied.
        "pid": _nullable(_INT),
        "exitcode": _nullable(_INT),
        "signal": _nullable(_INT),
        # ActorDied: whether the actor is being started again.
        "will_restart": _BOOL,
    }
    error_info = _object(
        fields,
        optional=tuple(name for name in fields if name not in ("type", "message")),
        description="The qoper8 error class (or an HTTP-only type: Unauthorized, NotFound, "
        "MethodNotAllowed, Starting, TooManyStreams) and its message.",
    )
    children = {
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_CHILDREN},
            {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": MAX_CHILDREN},
                "minItems": 2,
                "maxItems": 2,
                "description": "[MIN, MAX]: autoscale between the two",
            },
        ],
        "description": "the size, or a range to autoscale between (a size fixes it)",
    }
    force = {"type": "boolean", "description": "allow more than 4 children per CPU"}
    role = {"type": "string", "description": "the role (needed when the daemon has several)"}
    size_or_none = _nullable(_INT)
    return {
        **defs,
        "Action": {
            "type": "object",
            "description": "An action: its handler's type and the handler's arguments.",
            "required": ["type"],
            "properties": {"type": {"type": "string", "minLength": 1}},
            "additionalProperties": True,
        },
        "Result": _object({"result": {"description": "the handler's result, as JSON"}}),
        "Error": _object({"error": ref("ErrorInfo")}),
        "ErrorInfo": error_info,
        "Status": _object(properties, description="The daemon and its pool, now."),
        "Role": _object(
            {
                "name": _STRING,
                "worker": _STRING,
                "target_size": _INT,
                "min_size": size_or_none,
                "max_size": size_or_none,
                "paused": _BOOL,
                "generation": _INT,
                "queue_length": _INT,
                "running": _INT,
                "completed": _INT,
                "failed": _INT,
                "children": {"type": "array", "items": _INT, "description": "child ids"},
            },
            description="A group of children running one worker module, with its own queue "
            "and size (min_size, max_size: its autoscaling range, null for a fixed size).",
        ),
        "Health": _object(
            {
                "status": {"type": "string", "enum": list(HEALTH_STATES)},
                "ready": _INT,
                "target": _INT,
                "failed_starts": _INT,
                "redis": {"type": "string", "enum": ["connected", "disconnected"]},
                "redis_error": _STRING,
            },
            optional=("failed_starts", "redis", "redis_error"),
        ),
        "ResizeRequest": {
            "oneOf": [
                _object(
                    {"children": children, "force": force, "role": role},
                    optional=("force", "role"),
                ),
                _object({"delta": _INT, "force": force, "role": role}, optional=("force", "role")),
            ]
        },
        "Resized": _object(
            {
                "children": _INT,
                "generation": _INT,
                "role": _STRING,
                "min_size": size_or_none,
                "max_size": size_or_none,
            }
        ),
        "Reloaded": _object({"generation": _INT, "children": _INT}),
    }
