"""``/v1/openapi.json`` is true: every route the app registers is documented and nothing
else is; every status the tests provoke is listed for its route, with a body that fits the
documented schema; and schemathesis, generating requests from the document against a served
API, finds no undocumented status, no body that breaks its schema, and no 500 but a
``JobFailed`` (or reload's ``StartFailed``)."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

import qoper8
from qoper8._daemon.http_api import HttpApi
from qoper8._daemon.openapi import OPERATIONS, openapi_document
from qoper8._daemon.openapi_messages import MESSAGE_OPERATIONS
from qoper8.errors import ConfigError, PoolClosed, StartFailed
from tests.daemon_support import HANDLERS, serve_like_the_daemon

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiohttp import web

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]

TOKEN = "openapi-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeControl:
    """The daemon's side: operations that answer as a test sets them, no real resize."""

    def __init__(self) -> None:
        self.draining = False
        self.default_timeout: float | None = 10.0
        self.reload_error: Exception | None = None
        self.resize_error: Exception | None = None

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": qoper8.__version__,
            "worker": HANDLERS,
            "uptime": 1.0,
            "draining": self.draining,
            "handlers": [],
            "urls": [],
            "redis": None,
        }

    def redis_state(self) -> dict[str, Any] | None:
        return None

    async def wait_started(self) -> None:
        return None

    async def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> int:
        if self.resize_error is not None:
            raise self.resize_error
        return children if isinstance(children, int) else children[0]

    async def reload(self) -> int:
        if self.reload_error is not None:
            raise self.reload_error
        return 2


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


class Documented:
    """Checks answers against one OpenAPI document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        responses = self.doc["paths"][path][method.lower()]["responses"]
        key = str(status) if str(status) in responses else f"{status // 100}XX"  # a range
        assert key in responses, f"{method} {path} answered {status}, not documented"
        media_type = content_type.split(";")[0].strip()
        content = responses[key]["content"]
        assert media_type in content, f"{method} {path} {status} answered {media_type}"
        schema = content[media_type]["schema"]
        value: Any = orjson.loads(body) if media_type == "application/json" else body.decode()
        validator = jsonschema_rs.validator_for({**schema, "components": self.doc["components"]})
        errors = [str(e) for e in validator.iter_errors(value)]
        assert errors == [], f"{method} {path} {status}: {errors} in {value!r:.300}"
        self.seen.add((method, path, key))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_pool() -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(HANDLERS, children=1, max_queue=1) as pool:
        yield pool


@pytest.mark.parametrize(
    ("dashboard", "token", "public_health"),
    list(itertools.product([True, False], repeat=3)),
)
async def test_every_route_is_documented_and_only_those(
    shared_pool: qoper8.Pool, dashboard: bool, token: bool, public_health: bool
) -> None:
    api = HttpApi(
        shared_pool, FakeControl(), token=TOKEN if token else None, max_body_bytes=4096,
        dashboard=dashboard, public_health=public_health,
    )  # fmt: skip
    doc = openapi_document(
        version="0", token=token, public_health=public_health, dashboard=dashboard
    )
    assert routes_of(api.make_app()) == documented(doc)
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert ("401" in op["responses"]) == bool(op["security"]), path
    # Every schema the document names is a valid JSON Schema (2020-12, as OpenAPI 3.1 says).
    for name, schema in doc["components"]["schemas"].items():
        jsonschema_rs.meta.validate(schema)  # raises on an invalid one
        assert name


async def test_every_status_the_tests_provoke_is_documented(
    shared_pool: qoper8.Pool, tmp_path: Any
) -> None:
    control = FakeControl()
    api = HttpApi(shared_pool, control, token=TOKEN, max_body_bytes=4096, max_streams=1)
    async with TestClient(serve_like_the_daemon(api)) as http:
        resp = await http.get("/v1/openapi.json", headers=AUTH)
        answers = Documented(await resp.json())
        assert {op.path for op in OPERATIONS} == set(answers.doc["paths"])

        async def call(
            method: str,
            path: str,
            body: Any = None,
            *,
            raw: bytes | None = None,
            headers: dict[str, str] | None = None,
        ) -> int:
            data = raw if raw is not None else (None if body is None else orjson.dumps(body))
            hdrs = {**AUTH, **(headers or {})}
            async with http.request(method, path, data=data, headers=hdrs) as resp:
                payload = await resp.read()
                answers.check(method, path, resp.status, resp.content_type, payload)
                return resp.status

        submit = "/v1/submit"
        assert await call("POST", submit, {"type": "echo", "value": 1}) == 200
        assert await call("POST", submit, raw=b"[1]") == 400
        assert (
            await call("POST", submit, {"type": "echo"}, headers={"Qoper8-Timeout": "soon"}) == 400
        )
        assert (
            await call("POST", submit, {"type": "echo"}, headers={"Authorization": "Bearer no"})
            == 401
        )
        assert await call("POST", submit, raw=b"x" * 5000) == 413
        assert await call("POST", submit, {"type": "no.such.type"}) == 422
        assert await call("POST", submit, {"type": "fail"}) == 500
        assert await call("POST", submit, {"type": "die"}) == 502
        assert await call("POST", submit, {"type": "refuse", "status": 409}) == 409  # 4XX
        assert await call("POST", submit, {"type": "refuse", "status": 507}) == 507  # 5XX
        gate = tmp_path / "gate"
        slow = {"type": "wait_file", "path": str(gate)}
        assert await call("POST", submit, slow, headers={"Qoper8-Timeout": "0.2"}) == 504
        # One job runs, the queue holds one more (max_queue=1): a third is QueueFull.
        await wait_for(lambda: [c.state for c in shared_pool.statistics().children] == ["idle"])
        blockers = [
            asyncio.create_task(call("POST", submit, slow, headers={"Qoper8-Timeout": "30"}))
        ]
        await wait_for(lambda: shared_pool.statistics().running == 1)
        blockers.append(asyncio.create_task(call("POST", submit, slow)))
        await wait_for(lambda: shared_pool.statistics().queue_length == 1)
        assert await call("POST", submit, {"type": "echo"}) == 503
        gate.touch()
        assert await asyncio.gather(*blockers) == [200, 200]

        assert await call("GET", "/v1/status") == 200
        assert await call("GET", "/v1/health") == 200
        assert await call("GET", "/metrics") == 200
        assert await call("GET", "/v1/openapi.json") == 200
        for path in ("/", "/dashboard/app.js", "/dashboard/app.css"):
            assert await call("GET", path, headers={"Authorization": ""}) == 200

        assert await call("POST", "/v1/resize", {"children": 1}) == 200
        assert await call("POST", "/v1/resize", {"children": 1, "delta": 1}) == 400
        assert await call("POST", "/v1/resize", {"children": 0}) == 422
        control.resize_error = StartFailed("new children did not start")
        assert await call("POST", "/v1/resize", {"delta": 1}) == 503
        assert await call("POST", "/v1/resize", raw=b"{" * 5000) == 413

        assert await call("POST", "/v1/reload") == 200
        control.reload_error = ConfigError("bad file")
        assert await call("POST", "/v1/reload") == 422
        control.reload_error = StartFailed("the new code does not start")
        assert await call("POST", "/v1/reload") == 500
        control.reload_error = PoolClosed("the daemon is shutting down")
        assert await call("POST", "/v1/reload") == 503

        # One stream at most here: the second is refused.
        async with http.get("/v1/events", headers=AUTH) as stream:
            answers.check("GET", "/v1/events", stream.status, stream.content_type, b"")
            async with http.get("/v1/events", headers=AUTH) as over:
                answers.check("GET", "/v1/events", over.status, over.content_type,
                              await over.read())  # fmt: skip
                assert over.status == 503

        control.draining = True
        assert await call("GET", "/v1/health") == 503
        assert await call("POST", submit, {"type": "echo"}) == 503

    # Every status the document lists was provoked, but the 503 Starting of a submit held
    # at start-up (tests/test_daemon_startup.py) and 401 where 401 was already shown. The
    # messages and actors routes have their own test (tests/test_openapi_messages.py).
    theirs = {op.path for op in MESSAGE_OPERATIONS}
    listed = {
        (method.upper(), path, status)
        for path, ops in answers.doc["paths"].items()
        for method, op in ops.items()
        for status in op["responses"]
        if path not in theirs
    }
    assert {(m, p, s) for m, p, s in listed - answers.seen if s != "401"} == set()


async def wait_for(predicate: Any) -> None:
    from tests.conftest import wait_until

    await wait_until(predicate, what="the pool's state")
