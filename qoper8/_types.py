"""Type aliases shared by the master, the children and the transports, and the ``DEFAULT``
sentinel that the ``submit`` methods use for "not given"."""

from __future__ import annotations

import enum
from typing import Final, Literal, TypeAlias

JSONScalar: TypeAlias = str | int | float | bool | None
JSONValue: TypeAlias = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]
"""What crosses every boundary: an action's fields and a handler's result."""

JSONObject: TypeAlias = dict[str, JSONValue]


class _Default(enum.Enum):
    """An option left out, told apart from an explicit ``None`` ("no deadline"). An enum
    member rather than ``object()`` so that ``help()`` and signatures read ``DEFAULT``, not
    ``<object object at 0x...>``, and type checkers can narrow it with ``is``."""

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = _Default.DEFAULT
"""Use the pool's (or client's) own setting, e.g. its default ``timeout``."""
DefaultType: TypeAlias = Literal[_Default.DEFAULT]
