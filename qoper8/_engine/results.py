"""Typed results: ``submit(action, result_type=User)`` validates the JSON result into a
``User`` with a pydantic ``TypeAdapter``, built once per type and cached.

Every face (``Pool``, ``sync.Pool``, ``Client``, ``RedisPool``) calls ``validate_result``
only when the caller passed a ``result_type``; without one nothing here runs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..errors import InvalidResult
from .reports import error_entries, summarize

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from .._types import JSONValue

__all__ = ["validate_result"]

T = TypeVar("T")

# Adapters kept, one per result type. Building one costs about a millisecond; a program
# uses a handful of result types, so the cache only has to be bounded against a program
# that builds types on the fly.
ADAPTER_CACHE_SIZE: Final = 256


@functools.lru_cache(maxsize=ADAPTER_CACHE_SIZE)
def _cached_adapter(result_type: Any) -> TypeAdapter[Any]:
    from pydantic import TypeAdapter

    return TypeAdapter(result_type)


def _adapter(result_type: Any) -> TypeAdapter[Any]:
    try:
        return _cached_adapter(result_type)
    except TypeError:  # an unhashable type form (Annotated with a list, ...): not cached
        from pydantic import TypeAdapter

        return TypeAdapter(result_type)


def validate_result(result_type: type[T], value: JSONValue, *, job_id: str | int | None) -> T:
    """``value`` (a JSON result) validated into ``result_type``.

    Raises:
        InvalidResult: it does not fit; carries the value and the bounded entries.
    """
    from pydantic import ValidationError

    try:
        validated: T = _adapter(result_type).validate_python(value)
    except ValidationError as exc:
        options: dict[str, Any] = {
            "include_url": False,
            "include_context": False,
            "include_input": False,
        }
        entries = error_entries(exc.errors(**options))
        total = exc.error_count()
        name = getattr(result_type, "__qualname__", None) or repr(result_type)
        raise InvalidResult(
            f"job {job_id}: the result does not fit {name}: {summarize(entries, total)}",
            job_id=job_id,
            result=value,
            errors=entries,
            errors_omitted=total - len(entries),
        ) from None
    return validated
