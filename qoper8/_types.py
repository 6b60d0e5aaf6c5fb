"""Type aliases shared by the master, the children and the transports."""

from __future__ import annotations

from typing import TypeAlias

JSONScalar: TypeAlias = str | int | float | bool | None
JSONValue: TypeAlias = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]
"""What crosses every boundary: an action's fields and a handler's result."""

JSONObject: TypeAlias = dict[str, JSONValue]
