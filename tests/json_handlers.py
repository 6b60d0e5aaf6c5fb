"""Handlers for the JSON-boundary, error-mapping and typed-result tests: what a handler
can return that JSON cannot say, and the errors a web app wants to map."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import os
import uuid
from typing import Any

from pydantic import BaseModel

import qoper8

worker = qoper8.Worker()


@worker.handler("echo")
def echo(value: Any = None) -> Any:
    return value


@worker.handler("pid")
def pid() -> int:
    return os.getpid()


@worker.handler("add")
def add(a: int, b: int) -> int:
    return a + b


@worker.handler("user")
def user(id: int, name: str = "ada") -> dict[str, Any]:
    return {"id": id, "name": name, "joined": "2024-01-02T03:04:05Z"}


@worker.handler("non_finite")
def non_finite(which: str = "nan") -> Any:
    number = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[which]
    return {"scores": [1.0, number]}


@worker.handler("nan_itself")
def nan_itself() -> float:
    return math.nan


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Spot:
    x: int
    tags: tuple[str, ...]


class Point(BaseModel):
    x: int
    at: datetime.datetime


@worker.handler("coercions")
def coercions() -> dict[str, Any]:
    """One of each value the README's JSON table lists, as a handler result."""
    return {
        "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "naive": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "date": datetime.date(2024, 1, 2),
        "uuid": uuid.UUID(int=1),
        "tuple": (1, 2),
        "enum": Colour.RED,
        "dataclass": Spot(1, ("a",)),
        "model": Point(x=1, at=datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)),
    }


class UserMissing(qoper8.HandlerError):
    """A worker module's own error type, built on HandlerError."""


class Outer:
    class NotThere(LookupError):
        """A nested class: its qualified name has a dot of its own."""


@worker.handler("not_found")
def not_found(id: int) -> None:
    raise qoper8.HandlerError(f"no user {id}", status=404, code="not_found", details={"id": id})


@worker.handler("gone")
def gone() -> None:
    raise UserMissing("that user left", status=410, code="gone")


@worker.handler("odd_status")
def odd_status(status: Any) -> None:
    raise qoper8.HandlerError("odd", status=status, code="odd")


@worker.handler("bad_details")
def bad_details(kind: str) -> None:
    details: Any = {"set": {1, 2}} if kind == "set" else {"x": math.nan}
    raise qoper8.HandlerError("with details", status=409, code="conflict", details=details)


@worker.handler("key_error")
def key_error() -> None:
    raise KeyError("missing")


@worker.handler("nested")
def nested() -> None:
    raise Outer.NotThere("deep")


@worker.handler("huge_error")
def huge_error(chars: int) -> None:
    raise ValueError("x" * chars)


@worker.handler("deep_error")
def deep_error(depth: int) -> None:
    """A traceback of ``depth`` frames, each line long."""

    def recurse(n: int, padding: str) -> None:
        if n == 0:
            raise RuntimeError("bottom")
        recurse(n - 1, padding)

    recurse(depth, "p" * 1000)


def raise_handler_error() -> None:
    """For Pool.run: a HandlerError through the pickled face."""
    raise qoper8.HandlerError("no such thing", status=404, code="not_found", details=[1])


def raise_key_error() -> None:
    raise KeyError("k")


@worker.handler("ints")
def ints(values: list[int]) -> int:
    return len(values)


def raise_huge(chars: int) -> None:
    """For Pool.run: an exception far larger than a small channel."""
    raise ValueError("z" * chars)
