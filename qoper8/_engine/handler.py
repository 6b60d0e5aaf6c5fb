"""``Handler``: one function of a worker module, as the child calls it: its parameters
validated from their annotations by a pydantic model built once, a ``qoper8.Job`` parameter
injected, a generator's yields streamed; and ``ActionRefused``, the child's side of
``InvalidAction``.

A ``ValidationError`` raised *inside* a handler is the handler's failure, not bad input: only
the fields of the action are validated here.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .child_api import Job
from .reports import MAX_REPORTED_ERRORS, error_entries, summarize

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import BaseModel, ValidationError

    from ..errors import ErrorEntry

__all__ = ["ActionRefused", "Handler", "HandlerInfo"]


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
        "is_async_generator",
        "is_generator",
        "job_param",
        "takes_extra",
    )

    def __init__(self, action_type: str, func: Callable[..., Any]) -> None:
        self.func = func
        self.is_async = inspect.iscoroutinefunction(func)
        # A generator handler streams what it yields (its return value is the result).
        self.is_generator = inspect.isgeneratorfunction(func)
        self.is_async_generator = inspect.isasyncgenfunction(func)
        sig = inspect.signature(func)
        names: list[str] = []
        self.takes_extra = False
        # The parameter annotated ``qoper8.Job``: injected at call time, never validated.
        self.job_param: str | None = None
        hints = _resolve_hints(func)
        for param in sig.parameters.values():
            if _is_job(hints.get(param.name, param.annotation)):
                self.job_param = param.name
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
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


def _is_job(annotation: object) -> bool:
    """Whether a parameter's annotation is ``qoper8.Job`` (or a string naming it, when the
    hints cannot be resolved)."""
    if annotation is Job:
        return True
    return isinstance(annotation, str) and annotation.rpartition(".")[2] == "Job"


def _resolve_hints(func: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable forward references: validate those params as Any
        return {}
