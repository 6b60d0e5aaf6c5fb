"""The worker registry and handler validation, in-process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest

import qoper8
from qoper8._engine.reports import MAX_REPORTED_ERRORS
from qoper8._engine.worker import ActionRefused, load_worker
from tests import handlers


def test_handler_binds_validated_keyword_arguments() -> None:
    worker = qoper8.Worker()

    @worker.handler("add")
    def add(a: int, b: int = 10) -> int:
        return a + b

    handler = worker.get("add")
    assert handler is not None
    assert handler.bind({"a": "1"}) == {"a": 1, "b": 10}
    # pydantic's errors, as data with the caller's field names, not its ValidationError
    with pytest.raises(ActionRefused) as info:
        handler.bind({"a": 1, "c": 2})
    assert info.value.errors == [
        {"loc": ["c"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]
    with pytest.raises(ActionRefused) as info:
        handler.bind({})
    assert info.value.errors == [{"loc": ["a"], "msg": "Field required", "type": "missing"}]


def test_params_named_like_basemodel_attributes_work() -> None:
    worker = qoper8.Worker()

    @worker.handler("odd")
    def odd(json: str, copy: int, model_config: Any = None) -> str:
        return json

    handler = worker.get("odd")
    assert handler is not None
    assert handler.bind({"json": "j", "copy": 2}) == {"json": "j", "copy": 2, "model_config": None}


def test_var_keyword_handlers_take_extra_fields() -> None:
    worker = qoper8.Worker()

    @worker.handler("any")
    def anything(**fields: Any) -> dict[str, Any]:
        return fields

    handler = worker.get("any")
    assert handler is not None
    assert handler.bind({"x": 1, "y": [2]}) == {"x": 1, "y": [2]}


def test_handler_type_defaults_to_the_function_name_and_reports_its_import_path() -> None:
    worker = qoper8.Worker()

    @worker.handler
    def ping() -> str:
        return "pong"

    assert worker.handlers["ping"].import_path.endswith(
        "test_worker.test_handler_type_defaults_to_the_function_name_and_reports_its_import_path.<locals>.ping"
    )


def test_duplicate_types_and_positional_only_params_are_refused() -> None:
    worker = qoper8.Worker()

    @worker.handler("x")
    def x() -> None: ...

    with pytest.raises(ValueError, match="already"):
        worker.handler("x")(x)
    with pytest.raises(TypeError):

        @worker.handler("y")
        def y(a: int, /) -> None: ...

    with pytest.raises(TypeError):

        @worker.handler("z")
        def z(*args: int) -> None: ...


def test_load_worker_finds_the_registry_and_refuses_other_objects() -> None:
    assert isinstance(load_worker("tests.handlers:worker"), qoper8.Worker)
    assert isinstance(load_worker("tests.handlers"), qoper8.Worker)
    with pytest.raises(TypeError):
        load_worker("tests.bad_workers.not_a_worker:worker")
    with pytest.raises(ImportError):
        load_worker("tests.no_such_module")


def test_stop_hooks_run_in_reverse_order() -> None:
    worker = qoper8.Worker()
    calls: list[str] = []
    worker.on_start(lambda: calls.append("start1"))
    worker.on_start(lambda: calls.append("start2"))
    worker.on_stop(lambda: calls.append("stop1"))
    worker.on_stop(lambda: calls.append("stop2"))
    worker.run_start_hooks()
    worker.run_stop_hooks()
    assert calls == ["start1", "start2", "stop2", "stop1"]


def test_prepare_builds_validators_up_front() -> None:
    worker = qoper8.Worker()

    @worker.handler("ok")
    def ok(a: int) -> int:
        return a

    handler = worker.get("ok")
    assert handler is not None
    before = handler._validate
    worker.prepare()
    built = handler._validate
    assert before is None
    assert built is not None
    assert handler.bind({"a": "3"}) == {"a": 3}
    assert handler.prepare() is built, "bind() reuses the validator built up front"


def test_many_unknown_fields_are_reported_without_one_error_each() -> None:
    worker = qoper8.Worker()

    @worker.handler("add")
    def add(a: int, b: int) -> int:
        return a + b

    handler = worker.get("add")
    assert handler is not None
    params: dict[str, Any] = {"b": "x", **{f"f{i}": i for i in range(250_000)}}
    with pytest.raises(ActionRefused) as info:
        handler.bind(params)
    err = info.value
    assert err.errors_total == 250_002
    assert len(err.errors) == MAX_REPORTED_ERRORS
    # pydantic's order: the handler's fields first, then the unknown ones
    assert [e["loc"] for e in err.errors[:3]] == [["a"], ["b"], ["f0"]]
    assert str(err).endswith("(and 249999 more errors)")


def test_messages_never_name_the_internal_model() -> None:
    worker = qoper8.Worker()

    @worker.handler("point")
    def point(p: Point) -> int:
        return p.x

    handler = worker.get("point")
    assert handler is not None
    with pytest.raises(ActionRefused) as info:
        handler.bind({"p": "not an object"})
    assert "Params_" not in repr(info.value.errors)
    assert "Params_" not in str(info.value)
    assert info.value.errors[0]["loc"] == ["p"]


class Point(pydantic.BaseModel):
    x: int


def test_a_missing_attribute_says_so_and_where_the_module_is() -> None:
    with pytest.raises(AttributeError) as info:
        load_worker("tests.handlers:nope")
    text = str(info.value)
    assert "module 'tests.handlers'" in text
    assert "has no attribute 'nope'" in text
    assert str(Path(handlers.__file__)) in text
    assert "NoneType" not in text
    with pytest.raises(TypeError, match=r"tests\.bad_workers\.not_a_worker\.worker \(in /"):
        load_worker("tests.bad_workers.not_a_worker:worker")


def test_a_missing_module_lists_the_path_searched() -> None:
    with pytest.raises(ModuleNotFoundError) as info:
        load_worker("no_such_package.users:worker")
    text = str(info.value)
    assert "no module named 'no_such_package'" in text
    assert f"searched sys.path: {sys.path[0] or '(the working directory)'}" in text
    # a module that exists but imports something missing keeps its own error
    with pytest.raises(ModuleNotFoundError, match="this_module_does_not_exist") as own:
        load_worker("tests.bad_workers.import_error:worker")
    assert "searched sys.path" not in str(own.value)


def test_an_unknown_field_named_like_an_internal_one_is_reported_as_sent() -> None:
    worker = qoper8.Worker()

    @worker.handler("add")
    def add(a: int, b: int) -> int:
        return a + b

    handler = worker.get("add")
    assert handler is not None
    with pytest.raises(ActionRefused) as info:
        handler.bind({"a": 1, "p_b": 2})
    assert [(e["loc"], e["type"]) for e in info.value.errors] == [
        (["b"], "missing"),
        (["p_b"], "extra_forbidden"),
    ]
