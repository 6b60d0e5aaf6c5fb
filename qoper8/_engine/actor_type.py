"""``ActorType``: a class a worker module registered with ``@worker.actor(name)``, as a child
uses it: make an instance (from ``__init__``'s arguments, or ``restore(state)``), call one of
its public methods with validated arguments, take its ``snapshot()``.

A child-side module: imports the handler machinery (pydantic once a method validates), never
the master's rooms.
"""

from __future__ import annotations

import contextlib
import inspect
import types
from typing import TYPE_CHECKING, Any

from .handler import ActionRefused, Handler
from .reports import MAX_LOC_CHARS, clip

if TYPE_CHECKING:
    from ..errors import ErrorEntry

__all__ = ["ActorType"]

# Methods that are part of the actor protocol, never calls.
_PROTOCOL: frozenset[str] = frozenset({"snapshot", "restore"})


class ActorType:
    """One actor class: its calls are its public methods (validated from their annotations
    like handlers' fields); ``snapshot()`` and the classmethod ``restore(state)`` are
    optional, for state that survives a restart."""

    def __init__(self, name: str, cls: type) -> None:
        if not inspect.isclass(cls):
            raise TypeError(f"@worker.actor({name!r}) decorates a class, not {cls!r}")
        self.name = name
        self.cls = cls
        self.has_snapshot = callable(getattr(cls, "snapshot", None))
        restore = inspect.getattr_static(cls, "restore", None)
        self.has_restore = isinstance(restore, classmethod | staticmethod)
        self.methods = sorted(
            n
            for n, member in inspect.getmembers(cls, inspect.isfunction)
            if not n.startswith("_") and n not in _PROTOCOL
        )
        self._init = Handler(f"{name}.__init__", _unbound(cls.__init__))
        self._handlers: dict[str, Handler] = {}

    def prepare(self) -> None:
        """Build the validators of ``__init__`` and of every method now: a child does this
        before READY (the fork server before it forks), so that an actor's first call on a
        child is as fast as the rest (building one costs milliseconds, measured by
        ``bench.actors`` as part of the time to create an actor).

        A method whose validator cannot be built is left to be built at its first call,
        where its error reaches that call's caller as before, not the child's start.
        """
        with contextlib.suppress(Exception):
            self._init.prepare()
        for method in self.methods:
            try:
                handler = Handler(f"{self.name}.{method}", _unbound(getattr(self.cls, method)))
                handler.prepare()
            except Exception:
                continue
            self._handlers[method] = handler

    def create(self, args: dict[str, Any] | None, state: Any) -> object:
        """A new instance: ``restore(state)`` when there is a state and the class can
        restore one, else ``cls(**args)`` (its original arguments).

        Raises:
            ActionRefused: the arguments do not fit ``__init__``.
            Exception: whatever ``__init__`` or ``restore`` raised.
        """
        if state is not None and self.has_restore:
            return self.cls.restore(state)  # type: ignore[attr-defined]
        kwargs = self._init.bind(args or {})
        return self.cls(**kwargs)

    def call(self, instance: object, method: str, args: dict[str, Any] | None) -> Any:
        """Call ``instance.method(**args)``.

        Raises:
            ActionRefused: no such public method, or arguments that do not fit it.
        """
        handler = self._handlers.get(method)
        if handler is None:
            if method not in self.methods:
                known = ", ".join(self.methods) or "none"
                message = (
                    f"actor type {self.name!r} has no method {clip(repr(method), MAX_LOC_CHARS)}"
                    f" (its calls: {known})"
                )
                entry: ErrorEntry = {"loc": ["method"], "msg": message, "type": "unknown_method"}
                raise ActionRefused(message, [entry], 1)
            handler = self._handlers[method] = Handler(
                f"{self.name}.{method}", _unbound(getattr(self.cls, method))
            )
        kwargs = handler.bind(args or {})
        return getattr(instance, method)(**kwargs)


def _unbound(func: Any) -> Any:
    """A stand-in for ``func`` without its ``self``: same parameters, same annotations, and
    ``func``'s globals (so that string annotations resolve as they would for ``func``). The
    validator reads only the signature and the hints; the stand-in is never called."""
    if func is object.__init__:  # a class without an __init__ of its own takes nothing

        def nothing() -> None: ...

        return nothing
    signature = inspect.signature(func)

    def stand_in(**kwargs: Any) -> Any:
        raise NotImplementedError

    copy = types.FunctionType(stand_in.__code__, func.__globals__, func.__name__)
    copy.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    copy.__annotations__ = {
        k: v for k, v in getattr(func, "__annotations__", {}).items() if k != "self"
    }
    copy.__module__ = func.__module__
    copy.__qualname__ = func.__qualname__
    return copy
