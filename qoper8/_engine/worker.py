"""``Worker``: the registry a worker module fills (handlers, message handlers, start and stop
hooks), and the loader that finds it from a ``"pkg.mod:attr"`` reference.

A worker module is imported in each child, never in the master.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar, overload

from .actor_type import ActorType
from .handler import ActionRefused, Handler, HandlerInfo
from .protocol import check_topic

__all__ = ["ActionRefused", "HandlerInfo", "Worker", "load_worker"]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)
Hook = Callable[[], object]

DEFAULT_ATTRIBUTE: Final = "worker"


class Worker:
    """The registry a worker module creates: its handlers and its start and stop hooks.

    Example:
        ```python
        worker = qoper8.Worker()

        @worker.on_start
        def connect() -> None: ...

        @worker.handler("user.get")
        def get_user(id: int) -> dict[str, object]: ...
        ```
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._message_handlers: dict[str, Handler] = {}
        self._actors: dict[str, ActorType] = {}
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []

    @overload
    def handler(self, action_type: F, /) -> F: ...
    @overload
    def handler(self, action_type: str | None = None, /) -> Callable[[F], F]: ...

    def handler(self, action_type: str | F | None = None, /) -> Callable[[F], F] | F:
        """Register a function as the handler of one action type.

        Args:
            action_type: the ``type`` field it answers; the function's name when omitted.

        Raises:
            ValueError: the type already has a handler.
            TypeError: the signature takes positional-only or ``*args`` parameters.
        """
        if callable(action_type):
            return self._register(action_type.__name__, action_type)

        def register(func: F) -> F:
            return self._register(action_type or func.__name__, func)

        return register

    def _register(self, action_type: str, func: F) -> F:
        if not isinstance(action_type, str) or not action_type:
            raise TypeError("an action type is a non-empty string")
        if action_type in self._handlers:
            raise ValueError(f"action type {action_type!r} already has a handler")
        self._handlers[action_type] = Handler(action_type, func)
        return func

    def on_message(self, topic: str, /) -> Callable[[F], F]:
        """Register a function for the messages of one topic: broadcasts and asks from the
        master, and what other children ``publish``. It runs between two jobs, never during
        one; the payload's fields arrive as keyword arguments, validated like a handler's.

        Example:
            ```python
            @worker.on_message("cache.invalidate")
            def invalidate(keys: list[str]) -> int: ...
            ```

        Raises:
            ValueError: the topic is not a dotted name, is under ``qoper8.``, or already has a
                function.
        """
        check_topic(topic)
        if topic in self._message_handlers:
            raise ValueError(f"topic {topic!r} already has an on_message function")

        def register(func: F) -> F:
            handler = Handler(topic, func)
            if handler.job_param is not None or handler.is_generator:
                raise TypeError(
                    f"on_message function {func.__qualname__!r}: a message is not a job, it has "
                    "no qoper8.Job and streams nothing (return the reply)"
                )
            self._message_handlers[topic] = handler
            return func

        return register

    def actor(self, name: str, /) -> Callable[[C], C]:
        """Register a class as an actor type: a stateful object the pool creates by name on
        a child of its own (``pool.actors.create(name, ...)``) and calls one method at a
        time. Its public methods are its calls (JSON arguments, validated from their
        annotations like a handler's); ``snapshot()`` and a classmethod ``restore(state)``
        keep its state across a restart.

        Example:
            ```python
            @worker.actor("room")
            class Room:
                def __init__(self, title: str) -> None: ...
                def join(self, user: str) -> list[str]: ...
            ```

        Raises:
            ValueError: the name is not a dotted name, or already has a class.
        """
        check_topic(name)
        if name in self._actors:
            raise ValueError(f"actor type {name!r} already has a class")

        def register(cls: C) -> C:
            self._actors[name] = ActorType(name, cls)
            return cls

        return register

    @property
    def actors(self) -> dict[str, ActorType]:
        """The registered actor types by name."""
        return dict(self._actors)

    def on_start(self, func: F) -> F:
        """Run ``func()`` once in each child, before its first action (open connections here)."""
        self._on_start.append(func)
        return func

    def on_stop(self, func: F) -> F:
        """Run ``func()`` once in each child when it retires (close connections here)."""
        self._on_stop.append(func)
        return func

    @property
    def handlers(self) -> dict[str, HandlerInfo]:
        """The registered action types and what the master needs to know of each."""
        return {t: h.info for t, h in self._handlers.items()}

    def get(self, action_type: str) -> Handler | None:
        """The handler for ``action_type``, if one is registered."""
        return self._handlers.get(action_type)

    @property
    def topics(self) -> list[str]:
        """The topics this worker module has an ``on_message`` function for."""
        return sorted(self._message_handlers)

    def message_handler(self, topic: str) -> Handler | None:
        """The ``on_message`` function of ``topic``, if one is registered."""
        return self._message_handlers.get(topic)

    def run_start_hooks(self) -> None:
        """Run the start hooks in registration order."""
        for hook in self._on_start:
            hook()

    def prepare(self) -> None:
        """Build every handler's validator (see ``Handler.prepare``), and every actor
        type's (``ActorType.prepare``)."""
        for handler in (*self._handlers.values(), *self._message_handlers.values()):
            handler.prepare()
        for actor_type in self._actors.values():
            actor_type.prepare()

    def run_stop_hooks(self) -> None:
        """Run the stop hooks in reverse order (last opened, first closed)."""
        for hook in reversed(self._on_stop):
            hook()


def load_worker(ref: str) -> Worker:
    """Import ``"pkg.mod:attr"`` (``attr`` defaults to ``worker``) and return the ``Worker``.

    Raises:
        ModuleNotFoundError: the module is not on ``sys.path`` (the message lists the
            first entries searched).
        ImportError: importing the module failed (its own error, unchanged).
        AttributeError: the module has no such attribute (the message says where the
            module was found).
        TypeError: the attribute is not a ``Worker``.
    """
    module_name, _, attr = ref.partition(":")
    attr = attr or DEFAULT_ATTRIBUTE
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise  # the worker module itself imports something missing: its own error
        raise ModuleNotFoundError(
            f"no module named {missing!r} (for worker module {module_name!r}); "
            f"searched sys.path: {_search_path()}",
            name=missing,
        ) from None
    where = getattr(module, "__file__", None) or "a namespace package"
    if not hasattr(module, attr):
        raise AttributeError(
            f"module {module_name!r} (found at {where}) has no attribute {attr!r}; a worker "
            f"module defines `{attr} = qoper8.Worker()`"
        )
    obj = getattr(module, attr)
    if not isinstance(obj, Worker):
        raise TypeError(
            f"{module_name}.{attr} (in {where}) is {type(obj).__name__}, not a qoper8.Worker "
            f"(a worker module defines `worker = qoper8.Worker()`)"
        )
    return obj


# Entries of sys.path named in a "no module named" message: where it was looked for first.
SEARCH_PATH_SHOWN: Final = 5


def _search_path() -> str:
    shown = [p or "(the working directory)" for p in sys.path[:SEARCH_PATH_SHOWN]]
    more = len(sys.path) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
