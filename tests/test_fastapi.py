"""qoper8.fastapi (issue 15): a lifespan that opens the pool on app.state and closes it, and
errors answered exactly as the daemon answers them (status, JSON body, Retry-After), the
handler-chosen status included. Tested through httpx's ASGI transport."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from typing import TYPE_CHECKING, Any, cast

import httpx
import orjson
import pytest
from fastapi import FastAPI

import qoper8
import qoper8.fastapi
from qoper8._daemon import http_replies as _http
from qoper8._daemon.http_api import HttpApi
from qoper8.errors import (
    ChildDied,
    ConfigError,
    InvalidAction,
    InvalidResult,
    JobFailed,
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    QueueFull,
    StartFailed,
    TransportError,
)
from tests.http_support import serving
from tests.test_http_api import FakeControl

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

JSON_WORKER = "tests.json_handlers:worker"
REPLACE_WORKER = "tests.replace_handlers:worker"


def make_app(worker: str, **settings: Any) -> FastAPI:
    app = FastAPI(lifespan=qoper8.fastapi.lifespan(worker, children=1, **settings))
    qoper8.fastapi.add_error_handler(app)

    @app.post("/submit")
    async def submit(action: dict[str, Any], pool: qoper8.fastapi.PoolDep) -> Any:
        return await pool.submit(action)

    return app


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (its lifespan entered, as uvicorn does) behind an ASGI client."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        yield client


async def test_the_lifespan_opens_the_pool_on_app_state_and_closes_it() -> None:
    app = make_app(JSON_WORKER)
    async with running(app) as client:
        pool = app.state.pool
        assert isinstance(pool, qoper8.Pool)
        opened = pool.is_open
        assert pool.size == 1
        answer = await client.post("/submit", json={"type": "echo", "value": [1, "a"]})
        assert (answer.status_code, answer.json()) == (200, [1, "a"])
    assert (opened, pool.is_open) == (True, False)
    assert not hasattr(app.state, "pool")


_ERRORS: list[Qoper8Error] = [
    InvalidAction("bad", errors=[{"loc": ["id"], "msg": "not an int", "type": "int_parsing"}]),
    ConfigError("bad setting"),
    QueueFull("full"),
    PoolClosed("closing"),
    StartFailed("cannot start", remote_type="ImportError", remote_message="no module"),
    JobTimeout("late", job_id=3),
    ChildDied("died", job_id=4, pid=42, signal=9),
    JobFailed("x", job_id=5, remote_type="KeyError", remote_message="k", remote_traceback="tb"),
    JobFailed("x", job_id=6, remote_type="E", remote_message="m", status=404, code="not_found"),
    JobFailed("x", job_id=7, remote_type="E", remote_message="m", status=418, details={"a": 1}),
    JobFailed("x", job_id=8, remote_type="ReplaceChild", remote_message="m", status=503),
    JobFailed("x", job_id=9, remote_type="E", remote_message="m", status=200),
    InvalidResult("does not fit", job_id=10, result=[1], errors=[]),
    TransportError("garbage"),
]


@pytest.mark.parametrize("include_traceback", [False, True])
@pytest.mark.parametrize(
    "exc", _ERRORS, ids=lambda e: f"{type(e).__name__}-{getattr(e, 'status', '')}"
)
def test_every_error_is_answered_byte_for_byte_as_the_daemon_answers_it(
    exc: Qoper8Error, include_traceback: bool
) -> None:
    api = HttpApi(
        cast("Any", None),
        FakeControl(),
        token=None,
        max_body_bytes=1 << 20,
        debug=include_traceback,
    )
    daemons = api._error_response(exc)
    ours = qoper8.fastapi.error_response(exc, include_traceback=include_traceback)
    assert ours.status_code == daemons.status
    assert ours.body == daemons.body
    assert ours.headers.get("retry-after") == daemons.headers.get("Retry-After")
    assert ours.headers["content-type"] == "application/json"
    assert orjson.loads(ours.body)["error"]["type"] == type(exc).__name__


def test_retry_after_is_the_daemons() -> None:
    assert qoper8.fastapi.RETRY_AFTER_SECONDS == _http.RETRY_AFTER_SECONDS


def _normal(body: Any) -> Any:
    """An error body without what differs between two runs of one action (its job id)."""
    error = dict(body["error"])
    error.pop("job_id", None)
    error["message"] = re.sub(r"job \d+", "job N", error["message"])
    return error


_ACTIONS = [
    (JSON_WORKER, {"type": "not_found", "id": 7}),  # the handler chose 404
    (JSON_WORKER, {"type": "odd_status", "status": 418}),
    (JSON_WORKER, {"type": "odd_status", "status": 200}),  # not an error status: 500
    (JSON_WORKER, {"type": "nope"}),  # unknown type: 422
    (JSON_WORKER, {"type": "not_found", "id": "x"}),  # params rejected: 422
    (REPLACE_WORKER, {"type": "broken", "reason": "db gone"}),  # ReplaceChild: 503
]


@pytest.mark.parametrize("worker", [JSON_WORKER, REPLACE_WORKER])
async def test_endpoint_errors_answer_as_the_daemons_submit_does(worker: str) -> None:
    actions = [action for w, action in _ACTIONS if w == worker]
    async with running(make_app(worker)) as client, serving(worker) as daemon:
        for action in actions:
            ours = await client.post("/submit", json=action)
            status, body = await daemon.post(action)
            assert ours.status_code == status, action
            assert ours.status_code >= 400, action
            assert _normal(ours.json()) == _normal(body), action
            expected_retry = "1" if status == 503 else None
            assert ours.headers.get("retry-after") == expected_retry, action


async def test_a_start_failure_stops_the_app_from_starting() -> None:
    app = make_app("tests.bad_workers.nonexistent_module_xyz:worker")
    with pytest.raises(qoper8.StartFailed):
        async with running(app):
            pass


def test_importing_qoper8_imports_neither_fastapi_nor_prometheus_client() -> None:
    code = (
        "import sys, qoper8; qoper8.Pool; qoper8.errors.http_status;"
        "print(sorted(set(sys.modules) & {'fastapi', 'starlette', 'prometheus_client'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
