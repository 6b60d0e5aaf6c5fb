"""``Worker``: the registry a worker module fills (handlers, start and stop hooks), and the
loader that finds it from a ``"pkg.mod:attr"`` reference.

A worker module is imported in each child, never in the master. Handler parameters are
validated from their annotations by a pydantic model built once per handler, so that a
``ValidationError`` raised *inside* a handler is the handler's failure, not bad input.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

from .reports import MAX_REPORTED_ERRORS, error_entries, summarize

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from ..errors import ErrorEntry

__all__ = ["ActionRefused", "HandlerInfo", "Worker", "load_worker"]

F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[[], object]

DEFAULT_ATTRIBUTE: Final = "worker"


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """What the master knows of a handler without importing its module: the action type, the
    handler's import path (``module.function``, how rq jobs name it) and its parameters in
    order (how an rq job's positional arguments bind)."""

    type: str
    import_path: str
    params: tuple[str, ...]


class Handler:
    """One registered handler with its lazily built parameter validator."""

    __slots__ = (
        "_aliases",
        "_fields",
        "_max_fields",
        "_model",
        "_names",
        "_validate",
        "func",
        "info",
        "is_async",
        "takes_extra",
    )

    def __init__(self, action_type: str, func: Callable[..., Any]) -> None:
        self.func = func
        self.is_async = inspect.iscoroutinefunction(func)
        sig = inspect.signature(func)
        names: list[str] = []
        self.takes_extra = False
        for param in sig.parameters.values():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                self.takes_extra = True
            elif param.kind in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.POSITIONAL_ONLY,
            ):
                raise TypeError(
                    f"handler {func.__qualname__!r} for {action_type!r}: action fields arrive "
                    f"as keyword arguments, so parameter {param.name!r} cannot be "
                    f"{param.kind.description}"
                )
            else:
                names.append(param.name)
        self._names = tuple(names)
        self._model: type[BaseModel] | None = None
        self._validate: Callable[[Any], Any] | None = None
        self._fields = tuple((name, f"p_{name}") for name in names)
        self._aliases = {field: name for name, field in self._fields}
        # More fields than this cannot be valid (one comparison per job in bind).
        self._max_fields = sys.maxsize if self.takes_extra else len(names)
        self.info = HandlerInfo(action_type, f"{func.__module__}.{func.__qualname__}", self._names)

    def _build_model(self) -> type[BaseModel]:
        from pydantic import ConfigDict, Field, create_model

        sig = inspect.signature(self.func)
        hints = _resolve_hints(self.func)
        fields: dict[str, Any] = {}
        for name in self._names:
            param = sig.parameters[name]
            annotation = hints.get(name, Any)
            default = ... if param.default is inspect.Parameter.empty else param.default
            # Internal field names avoid clashes with BaseModel attributes ("json", "copy",
            # "model_*"); the alias is the action's field name.
            fields[f"p_{name}"] = (annotation, Field(default, alias=name))
        config = ConfigDict(
            extra="allow" if self.takes_extra else "forbid",
            arbitrary_types_allowed=True,
        )
        return create_model(f"Params_{self.func.__name__}", __config__=config, **fields)

    def prepare(self) -> Callable[[Any], Any]:
        """Build the parameter validator now: a child does this before READY, so that its
        first action is as fast as the rest (building one costs milliseconds)."""
        if self._validate is None:
            self._model = self._build_model()
            # The core validator directly: model_validate's Python wrapper costs as much as
            # the validation itself on small actions.
            self._validate = self._model.__pydantic_validator__.validate_python
        return self._validate

    def bind(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate an action's fields into the handler's keyword arguments.

        Raises:
            ActionRefused: the fields do not fit the handler's signature (at most
                ``MAX_REPORTED_ERRORS`` entries, however many problems there were).
        """
        validate = self._validate or self.prepare()
        if len(params) > self._max_fields:
            # More fields than parameters: some are unknown for sure. Checked before
            # pydantic, which would build one error (and one Python dict) per unknown field.
            raise self._refused(params)
        try:
            validated = validate(params)
        except Exception as exc:
            from pydantic import ValidationError

            if isinstance(exc, ValidationError):
                raise self._refused(params, exc) from None
            raise
        values = validated.__dict__
        kwargs = {name: values[field] for name, field in self._fields}
        if self.takes_extra and validated.__pydantic_extra__:
            kwargs.update(validated.__pydantic_extra__)
        return kwargs

    def _refused(self, params: dict[str, Any], exc: ValidationError | None = None) -> ActionRefused:
        """The bounded report of why ``params`` do not fit: pydantic's entries with the
        caller's field names, unknown fields last (pydantic's order), never the internal
        model's name or a documentation URL."""
        from pydantic import ValidationError

        entries: list[ErrorEntry] = []
        total = 0
        if exc is None:
            names = set(self._names)
            unknown = [k for k in params if k not in names]
            try:
                self.prepare()({k: params[k] for k in names if k in params})
            except ValidationError as known_exc:
                exc = known_exc
            extra: list[dict[str, Any]] = [
                {"loc": (k,), "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
                for k in unknown[:MAX_REPORTED_ERRORS]
            ]
            total += len(unknown)
        else:
            extra = []
        if exc is not None:
            assert self._model is not None
            total += exc.error_count()
            hide = (self._model.__name__, f"the params of {self.info.type!r}")
            options = {"include_url": False, "include_context": False, "include_input": False}
            entries = error_entries(exc.errors(**options), aliases=self._aliases, hide=hide)
        entries += error_entries(extra)[: MAX_REPORTED_ERRORS - len(entries)]
        message = f"invalid params for action {self.info.type!r}: {summarize(entries, total)}"
        return ActionRefused(message, entries, total)


class ActionRefused(ValueError):
    """The child's side of ``InvalidAction``: the action names no handler, or its fields do
    not fit the handler. Carries the bounded entries that travel to the caller.

    Args:
        message: the summary.
        errors: at most ``MAX_REPORTED_ERRORS`` entries.
        errors_total: how many problems there were in all.
    """

    def __init__(self, message: str, errors: list[ErrorEntry], errors_total: int) -> None:
        super().__init__(message)
        self.errors = errors
        self.errors_total = errors_total


def _resolve_hints(func: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable forward references: validate those params as Any
        return {}


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

    def run_start_hooks(self) -> None:
        """Run the start hooks in registration order."""
        for hook in self._on_start:
            hook()

    def prepare(self) -> None:
        """Build every handler's validator (see ``Handler.prepare``)."""
        for handler in self._handlers.values():
            handler.prepare()

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
