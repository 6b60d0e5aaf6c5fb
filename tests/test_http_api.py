"""The HTTP API against hostile and sloppy requests, in process: the aiohttp app of
``HttpApi`` over a real pool, with a small fake of the daemon's side for resize.

Hostile input costs a typed 4xx and at most one log line, never a 500 or a traceback.
"""

from __future__ import annotations

import gzip
import logging
import os
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

import qoper8
from qoper8._daemon.http_api import HttpApi
from qoper8._daemon.http_input import FORCE_FACTOR, resize_target
from qoper8.config import MAX_CHILDREN
from qoper8.errors import ConfigError
from tests.daemon_support import HANDLERS, serve_like_the_daemon

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio(loop_scope="module")]

TOKEN = "s3cret"


class FakeControl:
    """The daemon's side of the API: records resizes instead of spawning children."""

    def __init__(self) -> None:
        self.draining = False
        self.default_timeout: float | None = None
        self.resized: list[int | tuple[int, int]] = []
        self.redis: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid()}

    def redis_state(self) -> dict[str, Any] | None:
        return self.redis

    async def wait_started(self) -> None:
        return None

    async def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> int:
        self.resized.append(children)
        return children if isinstance(children, int) else children[0]

    async def reload(self) -> int:
        return 2


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_pool() -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        yield pool


class Api:
    def __init__(self, http: TestClient[Any, Any], control: FakeControl, api: HttpApi) -> None:
        self.http = http
        self.control = control
        self.api = api

    async def call(
        self, method: str, path: str, *, data: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], Any]:
        hdrs = {"Authorization": f"Bearer {TOKEN}", **headers}
        resp = await self.http.request(method, path, data=data, headers=hdrs)
        body = await resp.read()
        try:
            parsed = resp.headers.get("Content-Type", "").startswith("application/json")
            value = await resp.json() if parsed and body else body
        except ValueError:
            value = body
        return resp.status, dict(resp.headers), value


@pytest_asyncio.fixture(loop_scope="module")
async def api(shared_pool: qoper8.Pool) -> AsyncIterator[Api]:
    control = FakeControl()
    http_api = HttpApi(shared_pool, control, token=TOKEN, max_body_bytes=4096)
    async with TestClient(serve_like_the_daemon(http_api)) as http:
        yield Api(http, control, http_api)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.exc_text or r.levelno >= logging.ERROR]


async def raw(api: Api, request: bytes) -> bytes:
    """Send bytes as they are (no client library fixing them up); the whole answer."""
    import asyncio

    server = api.http.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


# ==================================================================== item 12: no 500s


async def test_an_authorization_header_that_is_not_utf8_is_401(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for credential in (b"Bearer \xff", b"Bearer " + TOKEN.encode() + b"\xff", b"\xff\xfe"):
        answer = await raw(
            api,
            b"GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + credential
            + b"\r\nConnection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
        assert b'"Unauthorized"' in answer
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_a_body_that_does_not_match_its_content_encoding_is_400(
    api: Api, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    caplog.set_level(logging.DEBUG)
    garbage = b"this is not " + encoding.encode()
    for path in ("/v1/submit", "/v1/resize"):
        answer = await raw(
            api,
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Encoding: {encoding}\r\nContent-Length: {len(garbage)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + garbage,
        )
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), answer[:300]
        if encoding in ("gzip", "deflate"):  # the others: aiohttp refuses them unread
            assert b'"InvalidAction"' in answer
    assert tracebacks(caplog) == []
    said = [r for r in caplog.records if r.name.startswith("qoper8") and r.name != "qoper8.access"]
    assert len(said) <= 2, said  # one line per refused request at most
    # the server serves on
    assert (await api.call("POST", "/v1/submit", data=b'{"type": "add", "a": 1, "b": 1}'))[0] == 200


async def test_a_real_gzip_body_is_read(api: Api) -> None:
    body = gzip.compress(b'{"type": "add", "a": 2, "b": 3}')
    status, _, data = await api.call(
        "POST", "/v1/submit", data=body, **{"Content-Encoding": "gzip"}
    )
    assert (status, data) == (200, {"result": 5})


# ==================================================================== item 12/14: resize


@pytest.mark.parametrize(
    "body",
    [
        b'{"children": 2, "delta": 1}',
        b'{"children": 2, "colour": "red"}',
        b'{"delta": 1, "force": "yes"}',
        b'{"force": true}',
        b'{"children": 2.0}',
        b'{"delta": true}',
        b"[2]",
        b"null",
    ],
)
async def test_a_resize_that_is_not_exactly_children_or_delta_is_400(api: Api, body: bytes) -> None:
    status, _, data = await api.call("POST", "/v1/resize", data=body)
    assert (status, data["error"]["type"]) == (400, "ConfigError"), data
    assert api.control.resized == []


@pytest.mark.parametrize("body", [b'{"children": 0}', b'{"children": 1025}', b'{"delta": -5}'])
async def test_a_resize_out_of_bounds_is_422(api: Api, body: bytes) -> None:
    status, _, data = await api.call("POST", "/v1/resize", data=body)
    assert (status, data["error"]["type"]) == (422, "ConfigError"), data
    assert api.control.resized == []


async def test_growing_past_four_children_per_cpu_needs_force(api: Api) -> None:
    many = FORCE_FACTOR * (os.cpu_count() or 1) + 1
    status, _, data = await api.call("POST", "/v1/resize", data=f'{{"children": {many}}}'.encode())
    assert (status, data["error"]["type"]) == (422, "ConfigError")
    assert "force" in data["error"]["message"]
    body = f'{{"children": {many}, "force": true}}'.encode()
    assert (await api.call("POST", "/v1/resize", data=body))[2] == {
        "children": many,
        "generation": 1,
        "role": "daemon_handlers",
        "min_size": None,
        "max_size": None,
    }
    assert api.control.resized == [many]


async def test_client_resize_sends_force(api: Api) -> None:
    many = FORCE_FACTOR * (os.cpu_count() or 1) + 1
    server = api.http.server
    async with qoper8.Client(f"http://{server.host}:{server.port}", token=TOKEN) as client:
        with pytest.raises(ConfigError, match="force"):
            await client.resize(many)
        assert await client.resize(many, force=True) == many
        assert await client.resize(delta=1) == 2  # the pool's size (1) + 1


@pytest.mark.parametrize(
    ("body", "size", "expected"),
    [
        ({"children": 3}, 1, 3),
        ({"delta": 2}, 3, 5),
        ({"delta": -2}, 3, 1),
        ({"children": 100}, 200, 100),  # shrinking past the rule needs no force
        ({"children": 9, "force": True}, 1, 9),
        ({"children": MAX_CHILDREN, "force": True}, 1, MAX_CHILDREN),
    ],
)
async def test_resize_target(body: dict[str, Any], size: int, expected: int) -> None:
    assert resize_target(body, size, cpus=2) == expected


# ==================================================================== item 14: 405 Allow


async def test_a_wrong_method_is_405_with_allow(api: Api) -> None:
    for method, path, allowed in (
        ("GET", "/v1/submit", "POST"),
        ("DELETE", "/v1/status", "GET"),
        ("PUT", "/v1/resize", "POST"),
    ):
        status, headers, data = await api.call(method, path)
        assert (status, data["error"]["type"]) == (405, "MethodNotAllowed")
        assert allowed in headers["Allow"].split(",")


# ==================================================================== --public-health


async def test_public_health_opens_health_and_metrics_only(shared_pool: qoper8.Pool) -> None:
    http_api = HttpApi(
        shared_pool, FakeControl(), token=TOKEN, max_body_bytes=4096, public_health=True
    )
    async with TestClient(serve_like_the_daemon(http_api)) as http:
        assert (await http.get("/v1/health")).status == 200
        assert (await http.get("/metrics")).status == 200
        assert (await http.get("/v1/status")).status == 401
        assert (await http.post("/v1/submit", data=b'{"type": "echo"}')).status == 401
        http_api.public_health = False  # HUP can turn it off
        assert (await http.get("/v1/health")).status == 401
