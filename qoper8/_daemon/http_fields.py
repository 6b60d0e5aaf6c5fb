"""The JSON request bodies of the messages and actors routes (``/v1/broadcast``, ``/v1/ask``,
``/v1/actors``...), read field by field: an object with known fields only, each of the type
it must be. Anything else is a ``Refused`` 400 ``InvalidAction`` that names the field, never
a 500.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from ..errors import InvalidAction
from .http_input import Refused, read_json

if TYPE_CHECKING:
    from aiohttp import web

    from ..errors import ErrorEntry

__all__ = ["MISSING", "Body", "read_body"]

MISSING: Final[Any] = object()  # a field the body does not have (null is a value)


def _refuse(message: str, field: str | None = None) -> Refused:
    errors: list[ErrorEntry] | None = None
    if field is not None:
        errors = [{"loc": ["body", field], "msg": message, "type": "invalid_field"}]
    return Refused(InvalidAction(message, errors=errors), 400)


async def read_body(request: web.Request, max_body: int, fields: frozenset[str]) -> Body:
    """The body, a JSON object with no field outside ``fields``.

    Raises:
        Refused: not JSON, too big, not an object, or an unknown field.
    """
    data = await read_json(request, max_body)
    if not isinstance(data, dict):
        raise _refuse(f"the body must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - fields)
    if unknown:
        raise _refuse(f"unknown fields {unknown}; known: {sorted(fields)}", unknown[0])
    return Body(data)


class Body:
    """Typed reads of a request body's fields."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def text(self, name: str) -> str:
        """A required string."""
        value = self.data.get(name, MISSING)
        if value is MISSING:
            raise _refuse(f"the field {name!r} is required", name)
        if not isinstance(value, str):
            raise _refuse(f"{name} must be a string", name)
        return value

    def mapping(self, name: str) -> dict[str, Any] | None:
        """An object, or None when absent or null."""
        value = self.data.get(name)
        if value is not None and not isinstance(value, dict):
            raise _refuse(f"{name} must be a JSON object or null", name)
        return value

    def flag(self, name: str) -> bool:
        value = self.data.get(name, False)
        if not isinstance(value, bool):
            raise _refuse(f"{name} must be true or false", name)
        return value

    def count(self, name: str, default: int) -> int:
        value = self.data.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _refuse(f"{name} must be a whole number, 0 or more", name)
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.data.get(name, choices[0])
        if value not in choices:
            raise _refuse(f"{name} must be one of {list(choices)}", name)
        return str(value)

    def timeout(self, into: dict[str, Any]) -> None:
        """``timeout``: seconds, or null for none; when absent ``into`` gets nothing (the
        pool's default applies)."""
        if "timeout" not in self.data:
            return
        value = self.data["timeout"]
        if value is not None and (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not (value > 0 and math.isfinite(value))
        ):
            raise _refuse("timeout must be a positive number of seconds or null", "timeout")
        into["timeout"] = value
