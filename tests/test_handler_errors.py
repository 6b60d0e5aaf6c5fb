"""Errors a web app can map: the remote exception's qualified type and bases, a handler's
chosen status and code (HandlerError), and structured validation errors, on the pool, over
the daemon's HTTP API and through qoper8.Client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
import pytest
import pytest_asyncio

import qoper8
from qoper8.errors import http_status
from tests import json_handlers
from tests.http_support import Api, serving

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

HANDLERS = "tests.json_handlers:worker"
pytestmark = pytest.mark.asyncio(loop_scope="module")
BUILTIN_LOOKUP = ("builtins.LookupError", "builtins.Exception", "builtins.BaseException")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api() -> AsyncIterator[Api]:
    async with serving(HANDLERS) as served:
        yield served


async def _failed(api: Api, action: dict[str, Any]) -> qoper8.JobFailed:
    with pytest.raises(qoper8.JobFailed) as info:
        await api.pool.submit(action)
    return info.value


async def test_a_handler_error_carries_status_code_and_details(api: Api) -> None:
    err = await _failed(api, {"type": "not_found", "id": 7})
    assert (err.status, err.code, err.details) == (404, "not_found", {"id": 7})
    assert err.remote_type == "HandlerError"
    assert err.remote_types[:2] == ("qoper8.errors.HandlerError", "qoper8.errors.Qoper8Error")
    assert err.remote_is(qoper8.HandlerError)
    assert "no user 7" in str(err)


async def test_subclasses_of_handler_error_work_and_test_like_isinstance(api: Api) -> None:
    err = await _failed(api, {"type": "gone"})
    assert (err.status, err.code, err.details) == (410, "gone", None)
    assert err.remote_type == "UserMissing"
    assert err.remote_types[0] == "tests.json_handlers.UserMissing"
    assert err.remote_is(json_handlers.UserMissing)
    assert err.remote_is(qoper8.HandlerError)
    assert err.remote_is(Exception)
    assert not err.remote_is(LookupError)


async def test_remote_is_sees_the_bases_of_any_exception(api: Api) -> None:
    err = await _failed(api, {"type": "key_error"})
    assert err.remote_type == "KeyError"  # the short name, as before
    assert err.remote_types == ("builtins.KeyError", *BUILTIN_LOOKUP)
    assert err.remote_is(LookupError)
    assert err.remote_is("LookupError")
    assert err.remote_is("builtins.LookupError")
    assert not err.remote_is(ValueError)
    assert not err.remote_is("Error")
    assert (err.status, err.code, err.details) == (None, None, None)
    nested = await _failed(api, {"type": "nested"})
    assert nested.remote_type == "Outer.NotThere"
    assert nested.remote_types[0] == "tests.json_handlers.Outer.NotThere"
    assert nested.remote_is(json_handlers.Outer.NotThere)
    assert nested.remote_is("Outer.NotThere")
    assert nested.remote_is(LookupError)


async def test_run_carries_the_same_fields(api: Api) -> None:
    with pytest.raises(qoper8.JobFailed) as info:
        await api.pool.run(json_handlers.raise_handler_error)
    assert (info.value.status, info.value.code, info.value.details) == (404, "not_found", [1])
    with pytest.raises(qoper8.JobFailed) as info:
        await api.pool.run(json_handlers.raise_key_error)
    assert info.value.remote_is(LookupError)
    assert isinstance(info.value.remote_exception, KeyError)


@pytest.mark.parametrize("kind", ["set", "nan"])
async def test_details_that_are_not_json_are_dropped_with_a_note(api: Api, kind: str) -> None:
    err = await _failed(api, {"type": "bad_details", "kind": kind})
    assert (err.status, err.code, err.details) == (409, "conflict", None)
    assert "its details were dropped" in err.remote_message


@pytest.mark.parametrize(
    ("status", "answered"),
    [(404, 404), (400, 400), (599, 599), (302, 500), (200, 500), (600, 500), (True, 500)],
)
async def test_the_daemon_answers_with_the_chosen_status_within_400_599(
    api: Api, status: Any, answered: int
) -> None:
    code, body = await api.post({"type": "odd_status", "status": status})
    assert code == answered
    err = body["error"]
    assert (err["type"], err["code"]) == ("JobFailed", "odd")
    assert "remote_traceback" not in err, "tracebacks only with --debug"
    back = await _failed(api, {"type": "odd_status", "status": status})
    assert http_status(back) == answered


async def test_the_http_error_body_carries_code_details_and_types(api: Api) -> None:
    status, body = await api.post({"type": "not_found", "id": 3})
    assert status == 404
    err = body["error"]
    assert (err["code"], err["details"], err["status"]) == ("not_found", {"id": 3}, 404)
    assert err["remote_types"][0] == "qoper8.errors.HandlerError"
    status, body = await api.post({"type": "key_error"})
    assert status == 500
    assert body["error"]["remote_types"] == ["builtins.KeyError", *BUILTIN_LOOKUP]
    assert body["error"]["code"] is None


async def test_validation_errors_are_structured_over_http(api: Api) -> None:
    status, body = await api.post({"type": "add", "a": "x", "c": 1})
    assert status == 422
    err = body["error"]
    assert err["type"] == "InvalidAction"
    assert err["errors"] == [
        {
            "loc": ["a"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
        {"loc": ["b"], "msg": "Field required", "type": "missing"},
        {"loc": ["c"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
    ]
    assert err["errors_omitted"] == 0
    text = repr(body)
    assert "Params_" not in text
    assert "pydantic.dev" not in text
    status, body = await api.post({"type": "no.such"})
    assert status == 422
    assert [e["loc"] for e in body["error"]["errors"]] == [["type"]]
    assert body["error"]["errors"][0]["type"] == "unknown_action_type"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
async def test_the_daemon_refuses_nan_literals_in_a_body(api: Api, literal: bytes) -> None:
    status, body = await api.post(b'{"type": "echo", "value": ' + literal + b"}")
    assert status == 400
    assert body["error"]["type"] == "InvalidAction"


async def test_client_gets_the_same_typed_fields(api: Api) -> None:
    async with qoper8.Client(api.url) as client:
        with pytest.raises(qoper8.JobFailed) as failed:
            await client.submit({"type": "not_found", "id": 5})
        err = failed.value
        assert (err.status, err.code, err.details) == (404, "not_found", {"id": 5})
        assert err.remote_is(qoper8.HandlerError)
        with pytest.raises(qoper8.JobFailed) as failed:
            await client.submit({"type": "key_error"})
        assert failed.value.remote_is(LookupError)
        with pytest.raises(qoper8.InvalidAction) as invalid:
            await client.submit({"type": "add", "a": 1})
        assert invalid.value.errors == [{"loc": ["b"], "msg": "Field required", "type": "missing"}]


async def test_a_200kb_hostile_request_gets_a_small_answer(api: Api) -> None:
    action: dict[str, Any] = {"type": "add", "a": 1, "b": 2}
    action.update({f"field_{i:06d}": i for i in range(12_000)})
    body = orjson.dumps(action)
    assert len(body) > 200_000
    async with api.session.post(api.url + "/v1/submit", data=body) as resp:
        answer = await resp.read()
        assert resp.status == 422
    assert len(answer) < 10_000
    err = orjson.loads(answer)["error"]
    assert err["errors_omitted"] == 12_000 - len(err["errors"])


async def test_the_inline_pool_gives_the_same_fields() -> None:
    import qoper8.testing

    async with qoper8.testing.InlinePool(HANDLERS) as inline:
        with pytest.raises(qoper8.JobFailed) as info:
            await inline.submit({"type": "gone"})
        err = info.value
        assert (err.status, err.code, err.remote_types[0]) == (
            410,
            "gone",
            "tests.json_handlers.UserMissing",
        )
        assert err.remote_is(qoper8.HandlerError)
        assert http_status(err) == 410
        with pytest.raises(qoper8.JobFailed) as info:
            await inline.submit({"type": "key_error"})
        assert info.value.remote_is(LookupError)
        assert info.value.status is None


async def test_a_chosen_401_reaches_the_client_as_job_failed_not_a_refused_token(
    api: Api,
) -> None:
    async with qoper8.Client(api.url) as client:
        with pytest.raises(qoper8.JobFailed) as info:
            await client.submit({"type": "odd_status", "status": 401})
    assert info.value.status == 401
