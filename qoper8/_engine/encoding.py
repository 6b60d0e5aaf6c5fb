"""What a job carries, encoded once at submit: an action as JSON (the slow path of
``Pool.submit``, with every refusal worded), or a function call pickled for ``Pool.run``.

``Pool.submit`` encodes a plain dict of a known type itself, inline; anything unusual (and
every error message) comes here.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any, Final

from .._text import did_you_mean
from ..errors import InvalidAction
from . import protocol as proto

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pydantic import BaseModel

    from ..errors import ErrorEntry
    from .worker import HandlerInfo

__all__ = ["check_timeout", "encode_action", "encode_call", "refuse_ambiguous_timeout"]

_INF: Final = float("inf")


def encode_action(
    action: Mapping[str, Any] | BaseModel, handlers: Mapping[str, HandlerInfo], max_bytes: int
) -> tuple[str, bytes]:
    """The action's type and JSON.

    Raises:
        InvalidAction: not a mapping or model, no string ``type``, a type no handler
            answers (once the handlers are known), not JSON (NaN included), over
            ``max_bytes``; with structured ``errors``.
    """
    action_type, payload = proto.encode_action(action)
    if handlers and action_type not in handlers:
        known = ", ".join(sorted(handlers)) or "none"
        hint = did_you_mean(action_type, handlers)
        message = f"unknown action type {action_type!r}{hint} (known: {known})"
        entry: ErrorEntry = {"loc": ["type"], "msg": message, "type": "unknown_action_type"}
        raise InvalidAction(message, errors=[entry])
    if len(payload) > max_bytes:
        message = (
            f"action {action_type!r} is {len(payload)} bytes encoded, over "
            f"max_message_bytes={max_bytes}"
        )
        raise InvalidAction(message, errors=[{"loc": [], "msg": message, "type": "too_long"}])
    return action_type, payload


def encode_call(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    main_importable: bool,
    max_bytes: int,
) -> tuple[bytes, str]:
    """Pickle a call for a CALL frame; refuse what a child could never unpickle.

    Raises:
        InvalidAction: ``func`` lives in a ``__main__`` a child cannot import, or the call
            cannot be pickled, or it is over ``max_bytes``.
    """
    if getattr(func, "__module__", None) == "__main__" and not main_importable:
        raise InvalidAction(
            f"{getattr(func, '__qualname__', func)!r} is defined in __main__, which a child "
            "cannot import here (an interactive session, -c, or a package's __main__): "
            "move it into a module"
        )
    try:
        payload = pickle.dumps((func, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise InvalidAction(f"cannot pickle the call to {func!r}: {exc}") from None
    if len(payload) > max_bytes:
        raise InvalidAction(f"the pickled call is {len(payload)} bytes, over max_message_bytes")
    return payload, getattr(func, "__qualname__", repr(func))


def refuse_ambiguous_timeout(func: Callable[..., Any]) -> None:
    """``run(f, timeout=...)`` is the job's deadline; if ``f`` itself takes a ``timeout``, the
    caller may have meant that one: refuse rather than guess. (A ``functools.partial`` has no
    ``__code__``: binding the function's own ``timeout`` there is the unambiguous way.)

    Raises:
        TypeError: ``func`` has a ``timeout`` parameter.
    """
    code = getattr(func, "__code__", None)
    if code is None:
        return
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    if "timeout" in names:
        raise TypeError(
            f"{func.__qualname__}() takes a timeout of its own; run(timeout=...) is the job's "
            "deadline: pass the function's with functools.partial(func, timeout=...)"
        )


def check_timeout(timeout: object) -> None:
    """Refuse a deadline that is not a positive, finite number (0 would send the job and
    kill its child at once; NaN would never fire)."""
    if (type(timeout) is not float and type(timeout) is not int) or not 0 < timeout < _INF:
        raise InvalidAction(
            f"timeout must be a positive, finite number of seconds or None, not {timeout!r}"
        )
